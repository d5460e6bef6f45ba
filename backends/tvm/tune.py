"""MetaSchedule tuning of the heavy kernels, with a database cached per workload.

``compile(..., tune=N)`` (``--tune N``) runs N MetaSchedule trials, ``tune_minutes=M`` runs
for M minutes instead. Candidates are built and timed in this process
(``backends.tvm.measure``). Only the kernels worth it are tuned (conv2d, dense, batched matmul:
the functions holding a ``tapeout_*`` reduction); everything else keeps our rules.

The database (MetaSchedule's ``JSONDatabase``: one JSON line per measured schedule, appended
as it is measured) lives in ``<cache>/<workload hash>/``, where ``<cache>`` is the
``cache_dir`` option, else ``$TAPEOUT_CACHE/tvm``, else ``~/.cache/tapeout/tvm``, and the
hash covers the fused kernels' TIR and the target. ``state.json`` beside it counts the trials
and seconds spent. A compile holds the folder's lock while it tunes (a second compile of the
same workload waits, then finds the trials done); a folder with a corrupt database or state
file is moved aside with a warning and tuned afresh (``compiler.cache``). A recompile with
the same budget finds them and skips tuning; a bigger budget tunes only the difference; a run
interrupted mid-way keeps every record it measured and the next run continues from there.

Before searching, each tuned kernel's schedule from our own rules is measured and committed
as a record too, so the database's best is never worse than the untuned build.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.tvm.kernels import PREFIX
from backends.tvm.rpc import Tracker, builder_and_runner, free_servers, parse_tracker
from compiler import cache
from compiler.errors import BackendError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """What the user asked for: a trial count and/or a time budget, and where to cache."""

    trials: int | None
    minutes: float | None
    cache_dir: Path
    progress: bool = True
    #: Measure on the RPC servers behind this tracker instead of in this process.
    rpc: Tracker | None = None


def tune_options(options: dict[str, Any]) -> Tuning | None:
    trials = int(options.get("tune") or 0) or None
    minutes = float(options.get("tune_minutes") or 0) or None
    rpc = (
        parse_tracker(options["rpc_tracker"], options.get("rpc_key"))
        if options.get("rpc_tracker") else None
    )
    if trials is None and minutes is None:
        if rpc is not None:
            raise BackendError("rpc_tracker is given but no tuning budget: add tune=N")
        return None
    return Tuning(
        trials, minutes, cache_root(options), bool(options.get("tune_progress", True)), rpc
    )


def cache_root(options: dict[str, Any]) -> Path:
    if options.get("cache_dir"):
        return Path(options["cache_dir"])
    return cache.cache_root() / "tvm"


#: Kernels reading an operand bigger than this are left to our rules. MetaSchedule times each
#: candidate alone, over and over, with its weights in cache; in the model such weights stream
#: from memory, and its pick for them was slower than ours (ResNet-18's 512-channel 3x3 conv
#: with 9.4 MB of weights: 0.92 ms a call in the model after tuning, 0.70 ms untuned).
STREAMED_OPERAND_BYTES = 4 << 20


def heavy_functions(mod: Any) -> list[str]:
    """Names of the PrimFuncs that hold one of our reductions (the ones worth tuning), less
    those with an operand too big to stay in cache (``STREAMED_OPERAND_BYTES``)."""
    from tvm import tirx

    names = []
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and f'sblock("{PREFIX}' in func.script():
            if any(
                f'sblock("{PREFIX}{k}' in func.script() for k in ("conv", "gconv", "dense", "bmm")
            ) and _largest_operand_bytes(func) <= STREAMED_OPERAND_BYTES:
                names.append(gv.name_hint)
    return sorted(names)


def _largest_operand_bytes(func: Any) -> int:
    sizes = [0]
    for param in func.params:
        shape = getattr(param, "shape", None)
        if shape is not None and all(isinstance(d, int) or hasattr(d, "value") for d in shape):
            count = int(np.prod([int(d) for d in shape]))
            sizes.append(count * max(int(param.dtype.bits) // 8, 1))
    return max(sizes)


def workload_key(mod: Any, tgt: Any) -> str:
    import tvm
    import tvm_ffi

    # Structural hashes ignore variable names, which differ from one import to the next.
    hashes = sorted(str(tvm_ffi.structural_hash(mod[name])) for name in heavy_functions(mod))
    digest = hashlib.sha256(f"{tvm.__version__}|{tgt}|{','.join(hashes)}".encode())
    return digest.hexdigest()[:20]


DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


def _valid_state(data: Any) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("trials"), int)
            and isinstance(data.get("seconds"), int | float))


def _state(folder: Path) -> dict[str, Any]:
    return dict(cache.read_json(folder / "state.json", {"trials": 0, "seconds": 0.0},
                                _valid_state))


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    cache.write_json(folder / "state.json", state)


def check_tuning_folder(folder: Path) -> None:
    """Move ``folder`` aside if its database or state file is corrupt: the records and the
    trial count go together, so the workload is tuned afresh."""
    why = next(filter(None, (cache.json_lines_ok(folder / n) for n in DATABASE_FILES)), None)
    state = folder / "state.json"
    if why is None and state.exists():
        before = state.exists()
        _state(folder)  # quarantines a corrupt state file on its own
        why = "state.json is corrupt" if before and not state.exists() else None
    if why is not None:
        cache.quarantine(folder, why)


def _open_database(folder: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    check_tuning_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return ms.database.JSONDatabase(work_dir=str(folder))
    except Exception as e:  # records that are JSON but not MetaSchedule's: TVM's RuntimeError
        cache.quarantine(folder, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        folder.mkdir(parents=True, exist_ok=True)
        return ms.database.JSONDatabase(work_dir=str(folder))


def tuned_database(mod: Any, tgt: Any, target: Any, tuning: Tuning) -> tuple[Any, dict]:
    """Tune what the budget still asks for; return the database and what was done (the
    ``tune_trials`` total and ``tune_workload`` hash go in the report, the rest varies from
    run to run and goes in the artifact's timings)."""
    folder = tuning.cache_dir / workload_key(mod, tgt)
    with cache.locked(folder):
        return _tune_locked(mod, tgt, target, tuning, folder)


def _tune_locked(
    mod: Any, tgt: Any, target: Any, tuning: Tuning, folder: Path
) -> tuple[Any, dict]:
    database = _open_database(folder)
    state = _state(folder)
    remaining = None if tuning.trials is None else tuning.trials - int(state["trials"])
    seconds_left = None if tuning.minutes is None else tuning.minutes * 60 - state["seconds"]
    started = time.perf_counter()
    ran = 0
    if (remaining is None or remaining > 0) and (seconds_left is None or seconds_left > 0):
        tasks, weights = _tasks(mod, tgt, folder)
        if tasks:
            if not state.get("seeded"):
                _seed_with_our_rules(tasks, database, tgt, target)
                state["seeded"] = True
                _save_state(folder, state)
            if seconds_left is not None:  # task extraction and seeding count against it
                seconds_left -= time.perf_counter() - started
            ran = _search(
                tasks, weights, database, folder, state, remaining, seconds_left, tuning
            )
    info = {
        "tune_trials": int(_state(folder)["trials"]),
        "tune_workload": folder.name,
        "tune_trials_this_run": ran,
        "tune_seconds_this_run": round(time.perf_counter() - started, 1),
        "tune_seconds_total": round(float(_state(folder)["seconds"]), 1),
        "tune_cache": str(folder),
    }
    return database, info


def _tasks(mod: Any, tgt: Any, folder: Path) -> tuple[list[Any], list[float]]:
    from tvm.s_tir import meta_schedule as ms

    heavy = set(heavy_functions(mod))
    extracted = [t for t in ms.relax_integration.extract_tasks(mod, tgt) if t.task_name in heavy]
    # A smaller population than MetaSchedule's default (512, 4 generations): on a 2-core
    # machine the search itself, not the measurements, otherwise eats a small budget.
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=128, init_min_unmeasured=32, genetic_num_iters=2
    )
    with _unnamed_handlers_aside():
        return ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted,
            str(folder / "logs"),
            strategy=strategy,
            num_threads=max(int(tgt.attrs["num-cores"]), 1),
        )


@contextmanager
def _unnamed_handlers_aside() -> Iterator[None]:
    """MetaSchedule rebuilds its loggers with ``logging.config.dictConfig``, listing the
    handlers already on its logger by name; a handler with no name (pytest's log capture
    attaches some after a first tuning run in the process) makes it fail with
    ``'NoneType' object has no attribute 'format'``. Such handlers are set aside while it
    configures and put back afterwards."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for handler in unnamed:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in unnamed:
            logger.addHandler(handler)


def _seed_with_our_rules(tasks: list[Any], database: Any, tgt: Any, target: Any) -> None:
    """Measure our rule's schedule of every task and commit it as a tuning record."""
    from tvm.s_tir import meta_schedule as ms

    from backends.tvm.schedules import KernelRule, cpu_params

    rule = KernelRule(cpu_params(target))
    for task in tasks:
        func = task.mod["main"]
        sch = rule.apply(func, tgt, False)
        if sch is None:
            continue
        try:
            seconds = _measure(sch.mod["main"], tgt)
        except Exception as e:  # a schedule that fails to build is simply not seeded
            log.warning("could not measure our schedule of %s: %s", task.task_name, e)
            continue
        workload = database.commit_workload(task.mod)
        database.commit_tuning_record(
            ms.database.TuningRecord(
                sch.trace, workload, [seconds], tgt, ms.arg_info.ArgInfo.from_prim_func(func)
            )
        )


def _measure(func: Any, tgt: Any) -> float:
    """Median seconds of one call of ``func`` on random arguments, in this process."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from backends.tvm.measure import random_args, time_function

    lib = tvm.compile(func, tgt)
    dev = tvm.cpu()
    args = random_args(ms.arg_info.ArgInfo.from_prim_func(func), dev)
    return float(np.median(time_function(lib.mod, args, dev)))


def _search(
    tasks: list[Any],
    weights: list[float],
    database: Any,
    folder: Path,
    state: dict[str, Any],
    remaining: int | None,
    seconds_left: float | None,
    tuning: Tuning,
) -> int:
    """Run MetaSchedule; returns the trials measured in this run."""
    from tvm.s_tir import meta_schedule as ms

    total = remaining if remaining is not None else 1_000_000
    builder, runner = _measurers(tuning)
    callback = _ProgressCallback(
        folder, state, total if remaining is not None else None, seconds_left, tuning.progress
    )
    # Small batches under a time budget: the budget is checked after every batch.
    cap = 8 if seconds_left is not None else 32
    per_iter = max(2, min(cap, total // max(len(tasks), 1)))
    quiet = logging.getLogger("tvm.s_tir.meta_schedule")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        ms.tune.tune_tasks(
            tasks=tasks,
            task_weights=weights,
            work_dir=str(folder),
            builder=builder,
            runner=runner,
            max_trials_global=total,
            num_trials_per_iter=per_iter,
            database=database,
            measure_callbacks=[
                ms.measure_callback.AddToDatabase(),
                ms.measure_callback.UpdateCostModel(),
                callback.as_callback(),
            ],
        )
    except Exception:
        if not callback.expired:
            raise
        log.info("tuning stopped at its time budget after %d trials", callback.measured)
    finally:
        callback.close()
        quiet.setLevel(level)
    return callback.measured


def _measurers(tuning: Tuning) -> tuple[Any, Any]:
    """In-process builder and runner, or a builder pool and the RPC servers' runner."""
    if tuning.rpc is not None:
        return builder_and_runner(tuning.rpc, free_servers(tuning.rpc))
    from backends.tvm import measure

    return measure.builder(), measure.runner()


class TimeBudgetSpent(RuntimeError):
    """Raised from the measure callback to stop MetaSchedule when the time is up."""


class _ProgressCallback:
    """Counts measured trials into state.json after every batch, draws a progress bar and
    stops the task scheduler when the time budget is spent."""

    def __init__(
        self,
        folder: Path,
        state: dict[str, Any],
        total: int | None,
        seconds_left: float | None,
        show: bool,
    ):
        self.folder, self.state, self.total = folder, state, total
        self.deadline = None if seconds_left is None else time.perf_counter() + seconds_left
        self.measured = 0
        self.expired = False
        self.last = time.perf_counter()
        self.bar: Any = None
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("tuning"),
                BarColumn(),
                TextColumn(
                    "{task.completed}/{task.total} trials" if total else "{task.completed} trials"
                ),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("tune", total=total)

    def apply(
        self, scheduler: Any, task_id: int, candidates: list, builds: list, runs: list
    ) -> None:
        now = time.perf_counter()
        self.measured += len(candidates)
        self.state["trials"] = int(self.state["trials"]) + len(candidates)
        self.state["seconds"] = float(self.state["seconds"]) + (now - self.last)
        self.last = now
        _save_state(self.folder, self.state)
        if self.bar is not None:
            self.bar.update(self.task, advance=len(candidates))
        if self.deadline is not None and now >= self.deadline:
            # MetaSchedule has no clean stop from inside a callback (terminating the task it
            # is joining trips its checks), so end the run with an exception that _search
            # catches; every record measured so far is already in the database.
            self.expired = True
            raise TimeBudgetSpent("tuning time budget spent")

    def as_callback(self) -> Any:
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        outer = self

        @derived_object
        class Callback(PyMeasureCallback):
            def apply(
                self,
                task_scheduler: Any,
                task_id: int,
                measure_candidates: list,
                builder_results: list,
                runner_results: list,
            ) -> None:
                outer.apply(
                    task_scheduler, task_id, measure_candidates, builder_results, runner_results
                )

        return Callback()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
