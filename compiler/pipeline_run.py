"""Run a staged ``MultiArtifact`` as a pipeline: one worker process per stage.

Micro-batches flow through bounded queues (``queue_size`` deep, so a fast stage cannot run
away from a slow one and memory stays bounded); each worker loads its stage from the artifact
folder (TVM modules cannot be pickled), optionally pins itself to its cores
(``stage_cores=[[0], [1]]``) and sets its runtime to that many threads; a stage whose device
is an RPC address (``stage_devices``) is run on that server from its worker. Worker start-up (the
imports, the module load and one warm-up call on zeros) happens before the clock starts, so the
throughput figure is the steady state. A worker that fails sends its error down the pipe; the
caller gets a ``BackendError`` naming the stage, and every worker is stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import BackendError

if TYPE_CHECKING:
    from compiler.multi import MultiArtifact

_DONE = "done"
_READY = "ready"
_ERROR = "error"


def run_pipelined(
    art: MultiArtifact,
    batches: list[tuple[np.ndarray, ...]],
    stage_cores: list[list[int]] | None = None,
    stage_devices: list[str] | None = None,
    queue_size: int = 2,
    timeout_s: float = 600.0,
) -> tuple[list[list[np.ndarray]], dict[str, Any]]:
    """Outputs for every batch (in order) and the run's figures: throughput, latency per
    batch end to end, and per stage its time per batch and the rate it alone sustains."""
    assert art.path is not None
    cores = stage_cores or art.summary.get("stage_cores")
    if cores is not None and len(cores) != len(art.parts):
        raise BackendError(f"stage_cores lists {len(cores)} core sets for {len(art.parts)} stages")
    if stage_devices is not None:
        art.stage_devices = stage_devices
    devices = art.stage_devices
    keep = _needed_after(art)
    ctx = mp.get_context("spawn")  # fork after TVM has started threads is unsafe
    queues = [ctx.Queue(maxsize=queue_size) for _ in range(len(art.parts) + 1)]
    workers = [
        ctx.Process(
            target=_worker,
            args=(
                str(Path(art.path) / part["dir"]),
                part["inputs"],
                part["outputs"],
                keep[i],
                queues[i],
                queues[i + 1],
                cores[i] if cores else None,
                devices[i],
            ),
            daemon=True,
        )
        for i, part in enumerate(art.parts)
    ]
    for w in workers:
        w.start()
    try:
        _wait_ready(queues[-1], len(workers), timeout_s)
        names = [v.name for v in art.graph.inputs]
        start = time.perf_counter()
        entered: dict[int, float] = {}
        feeder = threading.Thread(
            target=_feed,
            args=(queues[0], [dict(zip(names, b, strict=True)) for b in batches], entered),
            daemon=True,
        )
        feeder.start()
        results, left, times = _collect(queues[-1], len(batches), len(workers), timeout_s)
        wall = time.perf_counter() - start
        feeder.join(timeout_s)
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.terminate()
    outs = [[env[v.name] for v in art.graph.outputs] for env in results]
    latency = [(left[i] - entered[i]) * 1e3 for i in range(len(batches))]
    stats = {
        "batches": len(batches),
        "wall_s": round(wall, 4),
        "batches_per_s": round(len(batches) / wall, 2) if wall else None,
        # End to end, from entering the first queue to leaving the last (queueing included).
        "latency_ms": _spread(latency),
        **_per_stage(times),
        "stage_cores": cores,
        "stage_devices": devices,
    }
    return outs, stats


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = np.sort(np.asarray(values))
    return {
        "median": round(float(np.median(ordered)), 3),
        "p90": round(float(ordered[int(0.9 * (len(ordered) - 1))]), 3),
        "max": round(float(ordered[-1]), 3),
    }


def _per_stage(times: list[list[float]]) -> dict[str, Any]:
    """Each stage's busy time, its time per batch (median ms: the stage's latency) and the
    rate it alone could sustain (batches/s); the slowest stage bounds the pipeline."""
    medians = [float(np.median(t)) if t else 0.0 for t in times]
    return {
        "stage_busy_s": [round(sum(t), 4) for t in times],
        "stage_ms_per_batch": [round(m * 1e3, 3) for m in medians],
        "stage_batches_per_s": [round(1 / m, 2) if m else None for m in medians],
        "bottleneck_stage": int(np.argmax(medians)) if medians else None,
    }


def _needed_after(art: MultiArtifact) -> list[set[str]]:
    """Per stage: the value names some later stage or the graph's outputs still read."""
    needed = {v.name for v in art.graph.outputs}
    keep: list[set[str]] = []
    for part in reversed(art.parts):
        keep.append(set(needed))
        needed |= set(part["inputs"])
    return list(reversed(keep))


def _feed(queue: Any, envs: list[dict[str, np.ndarray]], entered: dict[int, float]) -> None:
    for seq, env in enumerate(envs):
        queue.put((seq, env))
        entered[seq] = time.perf_counter()
    queue.put(None)


def _wait_ready(queue: Any, count: int, timeout_s: float) -> None:
    # Workers announce themselves through the last queue: each stage passes "ready" on.
    ready = 0
    while ready < count:
        item = queue.get(timeout=timeout_s)
        if item[0] == _ERROR:
            raise BackendError(f"pipeline stage {item[1]} failed to start: {item[2]}")
        ready += item[0] == _READY


def _collect(
    queue: Any, count: int, stages: int, timeout_s: float
) -> tuple[list[dict[str, np.ndarray]], dict[int, float], list[list[float]]]:
    """The outputs in order, when each batch left the pipeline, and each stage's times."""
    results: dict[int, dict[str, np.ndarray]] = {}
    left: dict[int, float] = {}
    busy: list[list[float]] = [[] for _ in range(stages)]
    done = 0
    while done < stages:
        item = queue.get(timeout=timeout_s)
        if item[0] == _ERROR:
            raise BackendError(f"pipeline stage {item[1]} failed: {item[2]}")
        if item[0] == _DONE:
            busy[item[1]] = item[2]
            done += 1
        else:
            results[item[0]] = item[1]
            left[item[0]] = time.perf_counter()
    if len(results) != count:
        raise BackendError(f"pipeline returned {len(results)} of {count} batches")
    return [results[i] for i in range(count)], left, busy


def _worker(
    folder: str,
    inputs: list[str],
    outputs: list[str],
    keep: set[str],
    inbox: Any,
    outbox: Any,
    cores: list[int] | None,
    device: str,
) -> None:
    """One stage: load, announce, then run every batch that arrives until the end marker.
    Control messages from earlier stages (ready, done, error) are passed on unchanged."""
    index = int(Path(folder).name.removeprefix("part"))
    try:
        if cores:
            os.sched_setaffinity(0, set(cores))
            os.environ["TVM_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(len(cores))
        from compiler.api import load
        from compiler.multi import open_stage

        loaded = load(folder)
        stage = open_stage(loaded, index, device)
        # The first call of a module pays its one-time set-up (seconds for a TVM module: the
        # constants are laid out and the memory planned); run it on zeros before the clock.
        types = [v.type for v in loaded.graph.inputs]
        shapes = [tuple(d for d in t.shape if isinstance(d, int)) for t in types]
        if all(len(s) == len(t.shape) for s, t in zip(shapes, types, strict=True)):
            stage.run(*(np.zeros(s, t.np_dtype) for s, t in zip(shapes, types, strict=True)))
    except Exception as e:
        outbox.put((_ERROR, index, f"{type(e).__name__}: {e}"))
        outbox.put(None)
        return
    outbox.put((_READY, index))
    busy: list[float] = []
    while (item := inbox.get()) is not None:
        if isinstance(item[0], str):
            outbox.put(item)
            continue
        seq, env = item
        try:
            t0 = time.perf_counter()
            results = stage.run(*(env[name] for name in inputs))
            busy.append(time.perf_counter() - t0)
        except Exception as e:
            outbox.put((_ERROR, index, "".join(traceback.format_exception_only(e)).strip()))
            break
        env.update(zip(outputs, results, strict=True))
        outbox.put((seq, {k: v for k, v in env.items() if k in keep}))
    outbox.put((_DONE, index, busy))
    outbox.put(None)
