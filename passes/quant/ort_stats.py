"""Calibration statistics computed by onnxruntime instead of the reference interpreter.

The interpreter is the oracle, not a fast engine: a ResNet-18 costs it about a second per
sample. When onnxruntime and the ONNX exporter (``backends.onnx``) are available, the float
graph (each batch variant) is exported with every value to calibrate added as a graph output
and run by onnxruntime, ~50x faster. The same ``TensorStats`` collect the values, and
onnxruntime's values are first checked against the interpreter's on one sample; any failure
(toolchain missing, an op the exporter lacks, a mismatch) falls back to the interpreter.

Statistics then differ from the interpreter's only by float rounding of the kernels, and the
calibrators put every threshold on the histogram's power-of-two grid, so the chosen scales
are the same either way (except a value within rounding of a bin edge).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from compiler.errors import TapeoutError
from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Node
from passes.calibrate import TensorStats, collect_stats
from passes.quant.batching import BatchedRunner

log = logging.getLogger(__name__)

#: Largest relative difference from the interpreter accepted on the check sample.
TOLERANCE = 1e-3


def collect_stats_fast(
    runner: BatchedRunner, names: Iterable[str], engine: str = "auto"
) -> dict[str, TensorStats]:
    """``collect_stats`` through onnxruntime when ``engine`` allows and it works."""
    wanted = sorted(set(names))
    if engine != "interpreter" and wanted:
        try:
            return _collect_with_ort(runner, wanted)
        except Exception as e:  # any export or runtime failure: the oracle still works
            if engine == "onnxruntime":
                raise TapeoutError(f"calibration with onnxruntime failed: {e}") from e
            log.info("calibrating with the interpreter (onnxruntime: %s)", e)
    return collect_stats(runner, wanted)


def _session(graph: Graph, wanted: list[str]) -> Any:
    from onnx import helper

    from backends.onnx.backend import ort_session
    from backends.onnx.export import export_onnx

    model = export_onnx(graph)
    outputs = {o.name for o in model.graph.output}
    info = {v.name: v for v in model.graph.value_info}
    inputs = {i.name for i in model.graph.input}
    for name in wanted:
        if name in outputs or name in inputs:
            continue
        if name in info:
            model.graph.output.append(info[name])
        else:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    return ort_session(model)


def _collect_with_ort(runner: BatchedRunner, wanted: list[str]) -> dict[str, TensorStats]:
    sessions: dict[int, Any] = {}
    stats = {n: TensorStats(n) for n in wanted}
    _check_against_interpreter(runner, wanted)
    for graph, inputs in runner.chunks():
        if id(graph) not in sessions:
            sessions[id(graph)] = _session(graph, wanted)
        values = _run(sessions[id(graph)], graph, inputs, wanted)
        for name in wanted:
            stats[name].add(values[name], "onnxruntime")
    return stats


def _run(
    session: Any, graph: Graph, inputs: list[np.ndarray], wanted: list[str]
) -> dict[str, np.ndarray]:
    feeds = {v.name: a for v, a in zip(graph.inputs, inputs, strict=True)}
    fetch = [n for n in wanted if n not in feeds]
    values = dict(zip(fetch, session.run(fetch, feeds), strict=True))
    values.update({n: feeds[n] for n in wanted if n in feeds})
    return values


def _check_against_interpreter(runner: BatchedRunner, wanted: list[str]) -> None:
    graph, inputs = next(BatchedRunner.like(runner, runner.graph).chunks(1))
    seen: dict[str, np.ndarray] = {}

    def observe(node: Node, outs: list[np.ndarray]) -> None:
        for value, array in zip(node.outputs, outs, strict=True):
            if value.name in wanted:
                seen[value.name] = array

    interpret(graph, *inputs, observe=observe)
    got = _run(_session(graph, wanted), graph, inputs, wanted)
    for name, ref in seen.items():
        ref64 = ref.astype(np.float64)
        scale = float(np.max(np.abs(ref64), initial=0.0)) or 1.0
        diff = float(np.max(np.abs(got[name].astype(np.float64) - ref64), initial=0.0))
        if got[name].shape != ref.shape or diff > TOLERANCE * scale:
            raise TapeoutError(f"onnxruntime differs from the interpreter at %{name}")
