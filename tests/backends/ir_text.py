"""Backend test graphs written as IR text (``compiler.ir.parser``), not built in Python.

A test graph is the text a hardware engineer reads: every value named and typed, every
attribute visible. Weights are by name and shape only; their data comes from a dict where a
test needs particular values (a positive variance, a boolean mask, calibrated integers) and is
seeded random, drawn from the type the text gives, everywhere else.

Graphs shared by a test module live in ``.ir`` files beside it. Their ``$name`` placeholders
(``string.Template``, which fails on a missing key) stand for what a test varies, a row
length or a symbolic batch, or for numbers computed from a calibration.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.ir import Graph, TensorType, parse, verify
from compiler.ir.printer import format_attr


def _random_float(rng: np.random.Generator, t: TensorType) -> np.ndarray:
    return rng.standard_normal(t.shape).astype(t.np_dtype)


def _random_int(rng: np.random.Generator, t: TensorType) -> np.ndarray:
    info = np.iinfo(t.np_dtype)
    # small magnitudes: a random i32 bias or index stays meaningful, an i8 weight uses its range
    low, high = max(int(info.min) + 1, -127), min(int(info.max), 127)
    return rng.integers(low, high + 1, t.shape).astype(t.np_dtype)


def _random_bool(rng: np.random.Generator, t: TensorType) -> np.ndarray:
    return rng.random(t.shape) > 0.5


#: numpy dtype kind -> how a constant of that kind is drawn when the test gives no data
_RANDOM: dict[str, Callable[[np.random.Generator, TensorType], np.ndarray]] = {
    "f": _random_float,
    "i": _random_int,
    "u": _random_int,
    "b": _random_bool,
}


def substitute(text: str, values: Mapping[str, Any]) -> str:
    """Fill ``$name`` placeholders outside ``//`` comments; a string goes in as written (a
    dimension such as ``batch``), anything else as an attribute value (``[1, 2]``, ``0.5``)."""
    texts = {k: v if isinstance(v, str) else format_attr(v) for k, v in values.items()}
    return "\n".join(
        line if line.lstrip().startswith("//") else string.Template(line).substitute(texts)
        for line in text.splitlines()
    )


def graph_from_text(
    text: str,
    constants: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    **values: Any,
) -> Graph:
    """Parse and verify ``text``; ``constants`` gives data by ``@ref``, every other
    constant is seeded random data of the type its line gives; ``values`` fill placeholders."""
    if values:
        text = substitute(text, values)
    given = dict(constants or {})
    graph = parse(text, given, allow_missing_constants=True)
    refs = [node.attrs["ref"] for node in graph.nodes_of("const")]
    unknown = sorted(set(given) - set(refs))
    assert not unknown, f"data for constants the text does not define: {unknown}"
    rng = np.random.default_rng(seed)
    for node in graph.nodes_of("const"):
        ref, t = node.attrs["ref"], node.outputs[0].type
        if ref not in graph.constants:
            graph.constants[ref] = _RANDOM[np.dtype(t.np_dtype).kind](rng, t)
    verify(graph)
    return graph


def load_graph(
    path: Path,
    constants: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    **values: Any,
) -> Graph:
    """``graph_from_text`` of an ``.ir`` file (see there)."""
    return graph_from_text(path.read_text(), constants, seed, **values)
