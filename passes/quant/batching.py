"""Calibration samples: take the forms users have, check them, run a graph over them in batches.

Accepted forms of ``calibration_data`` (``normalize_samples``):

- a dict ``input name -> array`` of stacked samples (what ``np.load`` of an ``.npz`` gives):
  the first axis counts samples; an array of the input's own rank is split along its batch
  axis (a ``[300, 1, 8, 8]`` stack for a ``f32[1,1,8,8]`` input is 300 samples);
- one array (single-input graphs), stacked the same way;
- a list, tuple or iterator of samples, each a tuple/list of arrays (one per input), a dict,
  or one array; each may itself be a stack.

Every sample is checked against the graph's input types: wrong rank, shape or dtype kind and
NaN/Inf are each a ``CalibrationError`` naming the input and the sample.

``BatchedRunner`` runs a graph over the samples in batches: it concatenates samples along
the batch axis when the graph's batch dimension is symbolic or 1 (a batch-1 graph is
respecialized: a copy with batch N, types re-inferred). It checks once that a batched run
gives the per-sample results and otherwise falls back to one sample at a time, so statistics
never depend on whether batching was possible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from compiler.errors import CalibrationError, TapeoutError
from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Node, Value, clean_name
from compiler.ir.op_facts import node_macs
from compiler.ir.ops import infer_types
from compiler.ir.types import NUMPY_DTYPES, TensorType, is_float
from compiler.ir.verifier import verify

log = logging.getLogger(__name__)

Sample = tuple[np.ndarray, ...]

#: Fewer samples than this calibrate, with a warning that the scales may not generalize.
FEW_SAMPLES = 8
#: Interpreter memory per batch (every intermediate value of a run stays alive).
MEMORY_BUDGET_BYTES = 384 << 20
MAX_BATCH = 256
HOW_TO_PASS = (
    "pass calibration_data to quantize_graph()/compile() (a list of input tuples, an array, "
    "or a dict name -> stacked array such as an .npz), or run the pipeline with "
    "`PassContext(calibration_data=data)`"
)


def normalize_samples(graph: Graph, data: Any) -> list[Sample]:
    """Calibration data in any accepted form -> checked per-sample input tuples."""
    if data is None:
        raise CalibrationError(f"no calibration data: {HOW_TO_PASS}")
    if isinstance(data, dict):
        samples = _from_dict(graph, data)
    elif isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        samples = _from_dict(graph, {graph.inputs[0].name: data}) if _single(graph) else []
    else:
        samples = []
        for item in _iterate(data):
            samples.extend(_from_item(graph, item))
    if not samples:
        raise CalibrationError(
            f"calibration data is empty: at least one sample is needed; {HOW_TO_PASS}"
        )
    for index, sample in enumerate(samples):
        samples[index] = _check_sample(graph, sample, index)
    if len(samples) < FEW_SAMPLES:
        log.warning(
            "calibrating on %d sample(s) only: scales may not represent real inputs "
            "(a few hundred are typical)",
            len(samples),
        )
    return samples


def _single(graph: Graph) -> bool:
    if len(graph.inputs) != 1:
        names = ", ".join("%" + v.name for v in graph.inputs)
        raise CalibrationError(
            f"graph @{graph.name} has {len(graph.inputs)} inputs ({names}): give calibration "
            "data as a dict name -> array or a list of tuples, not one array"
        )
    return True


def _iterate(data: Any) -> Iterable[Any]:
    try:
        return iter(data)
    except TypeError:
        raise CalibrationError(
            f"calibration data of type {type(data).__name__} is not iterable; {HOW_TO_PASS}"
        ) from None


def _from_item(graph: Graph, item: Any) -> list[Sample]:
    if isinstance(item, dict):
        return _from_dict(graph, item)
    if isinstance(item, list | tuple):
        if len(item) != len(graph.inputs):
            raise CalibrationError(
                f"a calibration sample has {len(item)} array(s) but graph @{graph.name} takes "
                f"{len(graph.inputs)} input(s)"
            )
        return _from_dict(graph, {v.name: a for v, a in zip(graph.inputs, item, strict=True)})
    _single(graph)
    return _from_dict(graph, {graph.inputs[0].name: item})


def _by_input_name(graph: Graph, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keys as IR input names, and the keys that name no input: a model's own spelling
    (``gpu_0/data_0``) is accepted for the IR's (``gpu_0_data_0``)."""
    names = {v.name for v in graph.inputs}
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, array in data.items():
        name = key if key in names else clean_name(str(key).strip("/") or str(key))
        if name in names:
            out[name] = array
        else:
            unknown.append(str(key))
    return out, unknown


def _from_dict(graph: Graph, data: dict[str, Any]) -> list[Sample]:
    import difflib

    given = sorted(map(str, data))
    data, unknown = _by_input_name(graph, data)
    missing = [v.name for v in graph.inputs if v.name not in data]
    if missing:
        raise CalibrationError(
            f"calibration data has no array for input(s) {', '.join('%' + m for m in missing)} "
            f"(it has {given})"
        )
    if unknown:  # a typo would otherwise be ignored silently
        names = sorted(v.name for v in graph.inputs)
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CalibrationError(
            f"calibration array(s) {unknown} match no input of graph @{graph.name} "
            f"(inputs: {', '.join(names)}){hint}"
        )
    per_input = [_split_input(v, data[v.name]) for v in graph.inputs]
    counts = {len(s) for s in per_input}
    if len(counts) != 1:
        raise CalibrationError(f"calibration inputs hold different sample counts: {sorted(counts)}")
    return [tuple(parts) for parts in zip(*per_input, strict=True)]


def _split_input(value: Value, data: Any) -> list[np.ndarray]:
    """One input's array -> per-sample arrays of the input's rank."""
    arr = np.asarray(data)
    t = value.type
    if arr.ndim == t.rank + 1:
        return list(arr)
    if arr.ndim == t.rank and t.rank > 0:
        unit = t.shape[0] if isinstance(t.shape[0], int) else 1
        if unit > 0 and arr.shape[0] % unit == 0:
            return [arr[i : i + unit] for i in range(0, arr.shape[0], unit)]
    if arr.ndim == t.rank == 0:
        return [arr]
    raise CalibrationError(
        f"calibration data for input %{value.name} has shape {list(arr.shape)}; expected "
        f"samples of {t} (or a stack of them along a new first axis)"
    )


def _check_sample(graph: Graph, sample: Sample, index: int) -> Sample:
    checked = []
    for value, arr in zip(graph.inputs, sample, strict=True):
        t = value.type
        where = f"calibration sample {index}, input %{value.name}"
        for want, got in zip(t.shape, arr.shape, strict=True):
            if isinstance(want, int) and want != got:
                raise CalibrationError(f"{where}: shape {list(arr.shape)} does not match {t}")
        want_dt = NUMPY_DTYPES[t.dtype]
        kinds = {"f": "floating", "i": "integer", "u": "integer", "b": "bool"}
        got_kind = kinds.get(arr.dtype.kind, arr.dtype.kind)
        if kinds.get(want_dt.kind) != got_kind and not (
            want_dt.kind in "iu" and got_kind == "integer"
        ):
            raise CalibrationError(f"{where}: dtype {arr.dtype} does not fit {t.dtype} ({t})")
        if is_float(t.dtype) and not np.all(np.isfinite(arr)):
            raise CalibrationError(f"{where} contains NaN or Inf")
        checked.append(np.ascontiguousarray(arr, dtype=want_dt))
    return tuple(checked)


# ---- batched runs ---------------------------------------------------------------------------
def respecialize(graph: Graph, batch: int) -> Graph:
    """A copy of ``graph`` whose inputs have batch ``batch`` on axis 0, types re-inferred.

    Reshape/expand targets whose first entry is 1 on a batched operand become ``batch``.
    Raises TapeoutError (or ValueError) when the graph does not take it.
    """
    g = graph.copy()
    for v in g.inputs:
        v.type = TensorType(v.type.dtype, (batch, *v.type.shape[1:]), v.type.quant)
    for node in g.nodes:
        if node.op == "const":
            continue
        _batch_attrs(node, batch)
        inferred = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
        for out, t in zip(node.outputs, inferred, strict=True):
            out.type = TensorType(out.type.dtype, t.shape, out.type.quant)
    verify(g)
    return g


def _batch_attrs(node: Node, batch: int) -> None:
    shape = node.attrs.get("shape")
    if node.op not in ("tensor.reshape", "tensor.expand") or not shape or shape[0] != 1:
        return
    if node.inputs and node.inputs[0].type.rank and node.inputs[0].type.shape[0] == batch:
        node.attrs = {**node.attrs, "shape": [batch, *shape[1:]]}


class BatchedRunner:
    """Runs a graph over checked samples, ``batch`` samples per interpreter call."""

    def __init__(self, graph: Graph, samples: Sequence[Sample]):
        self.graph = graph
        self.samples = list(samples)
        self._variants: dict[int, Graph] = {}
        self.batch = self._batch_size() if self._stackable() else 1
        if self.batch > 1 and not self._batching_is_exact():
            log.info("graph @%s cannot run batched; calibrating one sample at a time", graph.name)
            self.batch = 1

    def _stackable(self) -> bool:
        if len(self.samples) < 2:
            return False
        for i, v in enumerate(self.graph.inputs):
            if v.type.rank == 0 or (isinstance(v.type.shape[0], int) and v.type.shape[0] != 1):
                return False
            if len({s[i].shape[1:] for s in self.samples}) != 1:
                return False
        return True

    def _batch_size(self) -> int:
        per_sample = 0
        for v in self.graph.values():
            dims = [d if isinstance(d, int) else 128 for d in v.type.shape[1:]]
            per_sample += int(np.prod(dims, dtype=np.int64)) * v.type.np_dtype.itemsize
        return int(np.clip(MEMORY_BUDGET_BYTES // max(per_sample, 1), 1, MAX_BATCH))

    def variant(self, rows: int) -> Graph:
        """The graph to run on ``rows`` stacked rows (the graph itself if its batch is symbolic)."""
        dims = [v.type.shape[0] for v in self.graph.inputs if v.type.rank]
        if all(isinstance(d, str) or d == rows for d in dims):
            return self.graph
        if rows not in self._variants:
            self._variants[rows] = respecialize(self.graph, rows)
        return self._variants[rows]

    def _batching_is_exact(self) -> bool:
        """Does sample 1 of a batched run of samples 0 and 1 match its own run?"""
        two = self.samples[:2]
        try:
            stacked = interpret(self.variant(_rows(two)), *_stack(two))
        except (TapeoutError, ValueError) as e:
            log.debug("batched run failed: %s", e)
            return False
        single = interpret(self.graph, *two[1])
        first = _rows(two[:1])
        for out, ref in zip(stacked, single, strict=True):
            if out.ndim == 0 or out[first:].shape != ref.shape:
                return False
            ref64 = ref.astype(np.float64)
            tol = 1e-4 * (np.max(np.abs(ref64[np.isfinite(ref64)]), initial=0.0) + 1e-6)
            if not np.allclose(out[first:], ref64, rtol=1e-4, atol=tol, equal_nan=True):
                return False
        return True

    def chunks(self, limit: int | None = None) -> Iterator[tuple[Graph, list[np.ndarray]]]:
        """(graph variant, stacked inputs) for consecutive batches of the first ``limit``."""
        samples = self.samples[:limit] if limit else self.samples
        for start in range(0, len(samples), self.batch):
            group = samples[start : start + self.batch]
            yield self.variant(_rows(group)), _stack(group)

    def run(
        self, graph: Graph | None = None, limit: int | None = None, **kwargs: Any
    ) -> list[list[np.ndarray]]:
        """Outputs of ``graph`` (default: the runner's) per batch; kwargs go to interpret."""
        runner = self if graph is None else BatchedRunner.like(self, graph)
        return [interpret(g, *xs, **kwargs) for g, xs in runner.chunks(limit)]

    @staticmethod
    def like(other: BatchedRunner, graph: Graph) -> BatchedRunner:
        """A runner for another graph with the same inputs, batching as ``other`` does."""
        runner = BatchedRunner.__new__(BatchedRunner)
        runner.graph, runner.samples, runner._variants = graph, other.samples, {}
        runner.batch = other.batch
        if runner.batch > 1:
            try:
                runner.variant(_rows(runner.samples[: runner.batch]))
            except (TapeoutError, ValueError) as e:
                log.debug("graph @%s cannot run batched: %s", graph.name, e)
                runner.batch = 1
        return runner


def _rows(group: Sequence[Sample]) -> int:
    return sum(s[0].shape[0] for s in group) if group and group[0] and group[0][0].ndim else 1


def _stack(group: Sequence[Sample]) -> list[np.ndarray]:
    if len(group) == 1:
        return list(group[0])
    return [np.concatenate([s[i] for s in group]) for i in range(len(group[0]))]


def macs_per_sample(graph: Graph) -> int:
    """Multiply-accumulates of one run of ``graph`` in the layers quantization makes integer
    (conv, dense, matmul: ``compiler.ir.op_facts.node_macs``; symbolic dims count 128)."""
    return sum(node_macs(node, symbolic=128) for node in graph.nodes if node.op in _MAC_LAYERS)


#: The layers whose work sizes the report's sample count (the quantizer's anchors).
_MAC_LAYERS = ("nn.conv1d", "nn.conv2d", "nn.dense", "nn.matmul")
