"""Scale-out: a pipeline of stages against one core, and RPC tuning with one and two servers.

    python bench/scaleout_bench.py                       # both parts, ResNet-18, ~10 minutes
    python bench/scaleout_bench.py --part pipeline --model digits_cnn --batches 200

Pipeline: the model compiled for ``--target`` as one stage pinned to one core, as one stage on
all cores, and as two stages (``pipeline_stages=2``) with one core each; every row streams the
same micro-batches through ``MultiArtifact.run_pipelined`` (worker processes, bounded queues;
worker start-up excluded from the clock), in interleaved rounds; the table gives the median
throughput, its spread over the rounds and the ratio to the one-core row. Outputs of the
two-stage run are checked equal to the single-device artifact's.

RPC tuning: a TVM tracker and N servers on loopback (N = 1, then 2, alternating for
``--rpc-rounds`` rounds), the same trial budget each time with a fresh database; the median wall
time of the compile, its spread, and the ratio to one server. On a
2-core machine two servers share the cores with the builders and the tuner itself: the figure
says what this machine gives, not what two machines would.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler import api  # noqa: E402
from compiler.report import format_table  # noqa: E402
from tests.cases import get_case  # noqa: E402


def bench_pipeline(model_name: str, target: str, batches: int, rounds: int) -> list[dict]:
    case = get_case(model_name)
    model, example = case.build(), case.example_inputs()
    cores = sorted(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="tapeout-bench-"))
    one = api.compile(model, target, example_inputs=example, output_dir=work / "one",
                      pipeline_stages=1)
    two = api.compile(model, target, example_inputs=example, output_dir=work / "two",
                      pipeline_stages=2)
    rng = np.random.default_rng(0)
    shape = tuple(example[0].shape)
    data = [(rng.standard_normal(shape).astype(np.float32),) for _ in range(batches)]
    configs = {
        "1 stage, 1 core": (one, [[cores[0]]]),
        f"1 stage, {len(cores)} cores": (one, [cores]),
        "2 stages, 1 core each": (two, [[cores[0]], [cores[-1]]]),
    }
    rates: dict[str, list[float]] = {k: [] for k in configs}
    busy: dict[str, list] = {}
    reference = None
    for _ in range(rounds):
        for label, (art, pin) in configs.items():
            outs = art.run_pipelined(data, stage_cores=pin)  # type: ignore[attr-defined]
            stats = art.summary["pipeline"]
            rates[label].append(stats["batches_per_s"])
            busy[label] = [stats["stage_ms_per_batch"], stats["latency_ms"].get("median")]
            if label.startswith("2 stages") and reference is None:
                reference = [one.run(*b)[0] for b in data[:8]]
                for got, want in zip(outs[:8], reference, strict=True):
                    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
            time.sleep(0.3)
    base = statistics.median(rates["1 stage, 1 core"])
    rows = []
    for label, values in rates.items():
        med = statistics.median(values)
        rows.append({
            "model": model_name, "config": label, "batches/s (median)": round(med, 1),
            "spread": f"{min(values):.1f}-{max(values):.1f}",
            "vs 1 core": f"{med / base:.2f}x",
            "ms/batch per stage": ", ".join(f"{b:.2f}" for b in busy[label][0]),
            "latency ms (median)": busy[label][1],
        })
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_rpc(model_name: str, target: str, trials: int, rounds: int = 1) -> list[dict]:
    """Compile with tuning through 1 and 2 servers, alternating, ``rounds`` times each; the
    median wall time per server count, its spread, and the ratio to one server."""
    case = get_case(model_name)
    model, example = case.build(), case.example_inputs()
    walls: dict[int, list[float]] = {1: [], 2: []}
    got: dict[int, Any] = {}
    for _ in range(rounds):
        for servers in (1, 2):
            wall, got[servers] = _tune_once(model, example, target, trials, servers)
            walls[servers].append(wall)
    base = statistics.median(walls[1])
    return [{
        "model": model_name, "servers": n, "trials": got[n],
        "compile s (median)": round(statistics.median(w), 1),
        "spread": f"{min(w):.1f}-{max(w):.1f}",
        "vs 1 server": f"{statistics.median(w) / base:.2f}x",
        "cores here": len(os.sched_getaffinity(0)),
    } for n, w in walls.items()]


def _tune_once(
    model: Any, example: Any, target: str, trials: int, servers: int
) -> tuple[float, Any]:
    """One compile with ``tune=trials`` through a fresh tracker and ``servers`` servers on
    loopback, with a fresh database: its wall time in seconds and the trials it ran."""
    from tvm import rpc

    port, key = _free_port(), "bench"
    procs = [_start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                     "--port-end", str(port + 1)])]
    for _ in range(servers):
        first = _free_port()
        procs.append(_start(["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key",
                             key, "--host", "127.0.0.1", "--port", str(first), "--port-end",
                             str(first + 50)]))
    try:
        for _ in range(120):
            try:
                if len(rpc.connect_tracker("127.0.0.1", port).summary()["server_info"]) >= servers:
                    break
            except Exception:
                pass
            time.sleep(0.5)
        t0 = time.perf_counter()
        art = api.compile(model, target, example_inputs=example, tune=trials,
                          cache_dir=tempfile.mkdtemp(prefix="tapeout-rpc-"),
                          tune_progress=False, rpc_tracker=f"127.0.0.1:{port}", rpc_key=key)
        return time.perf_counter() - t0, art.summary.get("tune_trials")
    finally:
        for p in procs:  # each server forks a listener: stop the whole group
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            p.wait(10)


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("pipeline", "rpc", "both"), default="both")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--target", default="x86-64-avx512")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--rpc-rounds", type=int, default=1,
                        help="tuning runs per server count, alternating 1 and 2 servers")
    args = parser.parse_args()
    # A bench stopped by `timeout` or Ctrl-C still stops its tracker and servers (``finally``).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.part in ("pipeline", "both"):
        print(format_table(bench_pipeline(args.model, args.target, args.batches, args.rounds)))
    if args.part in ("rpc", "both"):
        print(format_table(bench_rpc(args.model, args.target, args.trials, args.rpc_rounds)))


if __name__ == "__main__":
    main()
