"""Calibration statistics computed by a faster executor than the reference interpreter.

The interpreter is the oracle, not a fast engine: a ResNet-18 costs it about a second per
sample. ``compile()`` puts onnxruntime in the pass context (``backends.onnx.executor``: the
float graph, each batch variant, exported with every value to calibrate as a graph output),
~50x faster; passes never import a backend, they call ``ctx.executor``. The same
``TensorStats`` collect the values, and the executor's values are first checked against the
interpreter's on one sample; any failure (toolchain missing, an op the exporter lacks, a
mismatch) falls back to the interpreter unless ``engine="executor"`` insists.

Statistics then differ from the interpreter's only by float rounding of the kernels, and the
calibrators put every threshold on the histogram's power-of-two grid, so the chosen scales
are the same either way (except a value within rounding of a bin edge).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from compiler.context import Executor, interpreter_executor
from compiler.errors import TapeoutError
from passes.quant.batching import BatchedRunner
from passes.quant.stats import TensorStats, collect_stats

log = logging.getLogger(__name__)

#: Largest relative difference from the interpreter accepted on the check sample.
TOLERANCE = 1e-3


def collect_stats_fast(
    runner: BatchedRunner,
    names: Iterable[str],
    engine: str = "auto",
    executor: Executor = interpreter_executor,
) -> dict[str, TensorStats]:
    """``collect_stats`` through ``executor`` when ``engine`` allows and it works."""
    wanted = sorted(set(names))
    # The interpreter streams each value into its statistics (no batch of values kept alive).
    if engine != "interpreter" and wanted and executor is not interpreter_executor:
        try:
            return _collect_with(executor, runner, wanted)
        except Exception as e:  # any export or runtime failure: the oracle still works
            if engine == "executor":
                raise TapeoutError(f"calibration with the executor failed: {e}") from e
            log.info("calibrating with the interpreter (executor: %s)", e)
    return collect_stats(runner, wanted)


def _collect_with(
    executor: Executor, runner: BatchedRunner, wanted: list[str]
) -> dict[str, TensorStats]:
    stats = {n: TensorStats(n) for n in wanted}
    _check_against_interpreter(executor, runner, wanted)
    for graph, inputs in runner.chunks():
        values = executor(graph, inputs, wanted)
        for name in wanted:
            stats[name].add(values[name], "executor")
    return stats


def _check_against_interpreter(
    executor: Executor, runner: BatchedRunner, wanted: list[str]
) -> None:
    graph, inputs = next(BatchedRunner.like(runner, runner.graph).chunks(1))
    seen = interpreter_executor(graph, inputs, wanted)
    got = executor(graph, inputs, wanted)
    for name, ref in seen.items():
        ref64 = ref.astype(np.float64)
        scale = float(np.max(np.abs(ref64), initial=0.0)) or 1.0
        diff = float(np.max(np.abs(got[name].astype(np.float64) - ref64), initial=0.0))
        if got[name].shape != ref.shape or diff > TOLERANCE * scale:
            raise TapeoutError(f"the executor differs from the interpreter at %{name}")
