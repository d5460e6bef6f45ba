"""In-process builder and runner for MetaSchedule.

MetaSchedule's ``LocalBuilder``/``LocalRunner`` build and time each candidate in worker
processes that each import TVM first; on a 2-core machine that startup dominates a small
tuning budget (tens of seconds per batch). CPU candidates can be compiled and timed in this
process instead: LLVM code generation of one kernel takes milliseconds, and a kernel that
fails to build reports an error rather than crashing.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

_BUILT: dict[str, Any] = {}
_IDS = itertools.count()


def random_args(args_info: Any, device: Any) -> list[Any]:
    """Seeded random tensors matching MetaSchedule ``ArgInfo`` (small ints for integers)."""
    import tvm

    rng = np.random.default_rng(0)
    args = []
    for info in args_info:
        dtype, shape = str(info.dtype), [int(d) for d in info.shape]
        data = rng.integers(-3, 3, shape) if "int" in dtype else rng.standard_normal(shape)
        args.append(tvm.runtime.tensor(data.astype(dtype), device))
    return args


def time_function(func: Any, args: list[Any], device: Any) -> list[float]:
    timer = func.time_evaluator("main", device, number=3, repeat=2, min_repeat_ms=40)
    return [float(t) for t in timer(*args).results]


def builder() -> Any:
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                try:
                    lib = tvm.compile(item.mod, item.target)
                except Exception as e:  # reported to MetaSchedule as a failed candidate
                    results.append(BuilderResult(None, f"{type(e).__name__}: {e}"))
                    continue
                key = f"inprocess:{next(_IDS)}"
                _BUILT[key] = lib.mod
                results.append(BuilderResult(key, None))
            return results

    return InProcessBuilder()


def runner() -> Any:
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    @derived_object
    class Done(PyRunnerFuture):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self.value = result

        def done(self) -> bool:
            return True

        def result(self) -> Any:
            return self.value

    @derived_object
    class InProcessRunner(PyRunner):
        def run(self, runner_inputs: list[Any]) -> list[Any]:
            futures = []
            device = tvm.cpu()
            for item in runner_inputs:
                module = _BUILT.pop(str(item.artifact_path), None)
                if module is None:
                    futures.append(Done(RunnerResult(None, "artifact not built")))
                    continue
                try:
                    secs = time_function(module, random_args(item.args_info, device), device)
                    futures.append(Done(RunnerResult(secs, None)))
                except Exception as e:
                    futures.append(Done(RunnerResult(None, f"{type(e).__name__}: {e}")))
            return futures

    return InProcessRunner()
