"""The ONNX backend node tests as a conformance suite for tapeout's targets.

    cases = node_cases()                       # ~1,900 single-node models with inputs/outputs
    outcome = run_case(cases[0], "reference")  # Outcome(name, status, detail)

The cases are generated from the installed ``onnx`` package's own case definitions
(``onnx.backend.test.case.node``; the wheel need not ship the ``data/node`` folders). Each
model goes through ``compiler.compile()`` and the artifact's ``run()``, and the results are
compared as ONNX's backend runner compares them: ``rtol``/``atol`` of the case (1e-3 / 1e-7)
for floats (bfloat16 results: one bf16 rounding step, 2^-7), exact for integers and
booleans, and the result dtype must match. A case ends as
one of ``STATUSES``:

- ``pass``: every output matches;
- ``unsupported``: refused with ``UnsupportedOpsError`` (the reason is kept as the detail);
- ``error``: another typed tapeout error (``FrontendError``, ``ShapeError``, ...);
- ``wrong``: it ran, and an output differs (or has another shape or dtype);
- ``raw``: an exception that is not a ``TapeoutError``, which is always a bug.

``run_onnxruntime`` measures the same cases on onnxruntime (the peer) for the table.
onnx, onnxruntime and the toolchains are imported lazily, inside the functions.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import TapeoutError, UnsupportedOpsError

if TYPE_CHECKING:
    from onnx.backend.test.case.test_case import TestCase

log = logging.getLogger(__name__)

STATUSES = ("pass", "unsupported", "error", "wrong", "raw")
"""Outcome statuses, in the order the table prints them."""

_SEED = 0  # the case definitions draw random inputs at collection time


@dataclass(frozen=True)
class Outcome:
    """How one case ended on one engine: a status from ``STATUSES`` and a one-line detail."""

    name: str
    status: str
    detail: str = ""


def node_cases(pattern: str | None = None) -> list[TestCase]:
    """The ONNX backend node test cases (sorted by name), those matching ``pattern`` (a
    regular expression searched in the name) when given."""
    from onnx.backend.test.case import node

    state = np.random.get_state()
    np.random.seed(_SEED)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the definitions divide by zero on purpose
            cases = list(node.collect_testcases())
    finally:
        np.random.set_state(state)
    seen: dict[str, TestCase] = {}
    for case in cases:
        seen.setdefault(case.name, case)
    found = sorted(seen.values(), key=lambda c: c.name)
    if pattern:
        regex = re.compile(pattern)
        found = [c for c in found if regex.search(c.name)]
    return found


def _one_line(text: str, limit: int = 200) -> str:
    """The first informative line of an error message, trimmed (tables and files hold it)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]  # UnsupportedOpsError's header line; the first op line says more
    line = lines[0] if lines else ""
    line = re.sub(r"0x[0-9a-f]+", "0x?", line)  # addresses would make details unstable
    return line[:limit]


def _storage(array: np.ndarray) -> np.ndarray:
    """An expected or input array in the NumPy dtype tapeout keeps it in: ml_dtypes types
    (bfloat16, int4, float8) have no IR NumPy dtype, their values travel as float32/int8."""
    if array.dtype.kind in "fiub" and array.dtype.type.__module__ == "numpy":
        return array
    name = array.dtype.name
    if "int4" in name or "int2" in name:
        return array.astype(np.uint8 if name.startswith("u") else np.int8)
    return array.astype(np.float32)


def compare(expected: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> str | None:
    """None if ``got`` matches ``expected`` as ONNX's backend runner judges it, else why not."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    if expected.dtype == object or expected.dtype.kind in "US":
        return None if np.array_equal(expected, got) else "different strings"
    want = _storage(expected)
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype} ({expected.dtype})"
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype.kind in "iub":
        bad = int(np.count_nonzero(got != want))
        return f"{bad} of {want.size} integer values differ" if bad else None
    if expected.dtype.name == "bfloat16":
        # bfloat16 keeps 8 significant bits: rtol 1e-3 would demand the same rounding of
        # every intermediate result, which ONNX does not specify. Allow one bf16 step.
        rtol = max(rtol, 2.0**-7)
    with np.errstate(invalid="ignore"):
        close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return (
        f"{int((~close).sum())} of {want.size} values differ (max abs diff {np.nanmax(diff):.3g})"
    )


def _as_array(x: Any) -> Any:
    """A case's datum as NumPy: some cases give ``TensorProto``s (types NumPy lacks)."""
    from onnx import TensorProto, numpy_helper

    if isinstance(x, TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, list):
        return [_as_array(v) for v in x]
    return x


def _inputs(case: TestCase) -> tuple[list[Any], list[Any]]:
    assert case.data_sets is not None and case.model is not None
    inputs, outputs = case.data_sets[0]
    return [_as_array(x) for x in inputs], [_as_array(x) for x in outputs]


def _check_outputs(case: TestCase, got: Sequence[Any], expected: Sequence[Any]) -> Outcome:
    if len(got) != len(expected):
        return Outcome(case.name, "wrong", f"{len(got)} outputs, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if isinstance(e, list):  # a sequence output: compare element by element
            if not isinstance(g, list) or len(g) != len(e):
                return Outcome(case.name, "wrong", f"output {i}: not a sequence of {len(e)}")
            whys = [compare(ee, gg, case.rtol, case.atol) for ee, gg in zip(e, g, strict=True)]
            why = next((w for w in whys if w), None)
        else:
            why = compare(e, g, case.rtol, case.atol)
        if why:
            return Outcome(case.name, "wrong", f"output {i}: {why}")
    return Outcome(case.name, "pass")


def _examples(inputs: Sequence[Any]) -> list[np.ndarray] | None:
    """The case's inputs as example inputs; None where one is not an array tapeout holds
    (strings, sequences: those cases are refused by the importer, as without examples)."""
    present = [x for x in inputs if x is not None]
    if any(isinstance(x, list) or np.asarray(x).dtype.kind in "OUS" for x in present):
        return None
    return [_storage(np.asarray(x)) for x in present]


def run_case(case: TestCase, target: str = "reference") -> Outcome:
    """Compile the case's model for ``target``, run it on the case's inputs, compare."""
    import compiler

    inputs, expected = _inputs(case)
    try:
        with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
            # The case's inputs are the example inputs (a static-shape target specializes
            # the inputs that decide shapes to them, as a user's example would).
            examples = _examples(inputs)
            art = compiler.compile(case.model, target=target, example_inputs=examples,
                                   output_dir=f"{tmp}/artifact")
            feeds = [None if x is None else _storage(np.asarray(x)) for x in inputs]
            got = art.run(*[x for x in feeds if x is not None])
    except UnsupportedOpsError as e:
        return Outcome(case.name, "unsupported", _one_line(str(e)))
    except TapeoutError as e:
        return Outcome(case.name, "error", f"{type(e).__name__}: {_one_line(str(e))}")
    except Exception as e:  # noqa: BLE001  (a raw error is an outcome to report: a bug)
        return Outcome(case.name, "raw", f"{type(e).__name__}: {_one_line(str(e))}")
    return _check_outputs(case, got, expected)


def run_onnxruntime(case: TestCase) -> Outcome:
    """The same case on onnxruntime's CPU provider (the peer row of the table)."""
    import onnxruntime as ort

    inputs, expected = _inputs(case)
    assert case.model is not None
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(
            case.model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in case.model.graph.input]
        feeds = {n: x for n, x in zip(names, inputs, strict=False) if x is not None}
        got = session.run(None, feeds)
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own untyped errors)
        text = f"{type(e).__name__}: {_one_line(str(e))}"
        status = "unsupported" if "NOT_IMPLEMENTED" in text or "NotImplemented" in text else "error"
        return Outcome(case.name, status, text)
    return _check_outputs(case, got, expected)


def run_all(
    cases: Sequence[TestCase],
    run: Callable[[TestCase], Outcome],
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """``run`` over ``cases`` with the library's warnings and logs kept quiet."""
    outcomes: list[Outcome] = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for case in cases:
                outcome = run(case)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
    finally:
        root.setLevel(level)
    return outcomes


def tally(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many outcomes have each status (every status present, zero or not)."""
    counts = dict.fromkeys(STATUSES, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts
