"""Run a staged ``MultiArtifact`` as a pipeline: one worker process per stage.

Micro-batches flow through bounded queues (``queue_size`` deep, so a fast stage cannot run
away from a slow one and memory stays bounded); each worker loads its stage from the artifact
folder (TVM modules cannot be pickled), optionally pins itself to its cores
(``stage_cores=[[0], [1]]``) and sets its runtime to that many threads; a stage whose device
is an RPC address (``stage_devices``) is run on that server from its worker. Worker start-up (the
imports and the module load) happens before the clock starts, so the throughput figure is the
steady state. A worker that fails sends its error down the pipe; the caller gets a
``BackendError`` naming the stage, and every worker is stopped.
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
    """Outputs for every batch (in order) and the run's figures (throughput, busy time per
    stage)."""
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
        feeder = threading.Thread(
            target=_feed,
            args=(queues[0], [dict(zip(names, b, strict=True)) for b in batches]),
            daemon=True,
        )
        feeder.start()
        results, busy = _collect(queues[-1], len(batches), len(workers), timeout_s)
        wall = time.perf_counter() - start
        feeder.join(timeout_s)
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.terminate()
    outs = [[env[v.name] for v in art.graph.outputs] for env in results]
    stats = {
        "batches": len(batches),
        "wall_s": round(wall, 4),
        "batches_per_s": round(len(batches) / wall, 2) if wall else None,
        "stage_busy_s": [round(b, 4) for b in busy],
        "stage_cores": cores,
        "stage_devices": devices,
    }
    return outs, stats


def _needed_after(art: MultiArtifact) -> list[set[str]]:
    """Per stage: the value names some later stage or the graph's outputs still read."""
    needed = {v.name for v in art.graph.outputs}
    keep: list[set[str]] = []
    for part in reversed(art.parts):
        keep.append(set(needed))
        needed |= set(part["inputs"])
    return list(reversed(keep))


def _feed(queue: Any, envs: list[dict[str, np.ndarray]]) -> None:
    for seq, env in enumerate(envs):
        queue.put((seq, env))
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
) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    results: dict[int, dict[str, np.ndarray]] = {}
    busy = [0.0] * stages
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
    if len(results) != count:
        raise BackendError(f"pipeline returned {len(results)} of {count} batches")
    return [results[i] for i in range(count)], busy


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

        stage = open_stage(load(folder), index, device)
    except Exception as e:
        outbox.put((_ERROR, index, f"{type(e).__name__}: {e}"))
        outbox.put(None)
        return
    outbox.put((_READY, index))
    busy = 0.0
    while (item := inbox.get()) is not None:
        if isinstance(item[0], str):
            outbox.put(item)
            continue
        seq, env = item
        try:
            t0 = time.perf_counter()
            results = stage.run(*(env[name] for name in inputs))
            busy += time.perf_counter() - t0
        except Exception as e:
            outbox.put((_ERROR, index, "".join(traceback.format_exception_only(e)).strip()))
            break
        env.update(zip(outputs, results, strict=True))
        outbox.put((seq, {k: v for k, v in env.items() if k in keep}))
    outbox.put((_DONE, index, busy))
    outbox.put(None)
