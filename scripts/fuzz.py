"""Mutation fuzzing of the compiler: N bad models in, the count by outcome out.

    python scripts/fuzz.py 1000 --target reference      # or cpu, fpga
    python scripts/fuzz.py 200 --target fpga --no-run --seed 3 --jobs 2
    python scripts/fuzz.py 1000 --start 4000 --target cpu --log cpu.jsonl   # cases 4000..4999
    python scripts/fuzz.py --summarize cpu-*.jsonl                          # one table from logs

Case ``i`` depends only on ``--seed`` and ``i``, so ``--start`` splits a long run into pieces
that can run at different times or on several machines; ``--log`` appends one JSON line per
finished case (a stopped run keeps what it did), and ``--summarize`` counts the logs together.

Seeds are ONNX's backend node-test models and the light model zoo (``tests/fuzz/seeds.py``);
each case is one to three mutations (``tests/fuzz/mutate.py``), compiled and run in a worker
process, so a crash or a hang is counted and the next case goes on. Outcomes: ``ok``,
``typed`` (a tapeout error: what a bad model should give), ``too-big`` (its inputs are too
large to make), and the bugs: ``raw`` (any other exception), ``crash``, ``hang``. Each bug
kind is listed with a case to reproduce it (``--keep`` keeps the case folders).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.fuzz.runner import Case, Result, Runner, generate, summarize  # noqa: E402
from tests.fuzz.seeds import node_test_models, zoo_models  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=0, help="number of mutated models")
    parser.add_argument("--start", type=int, default=0, help="index of the first case")
    parser.add_argument("--log", help="append one JSON line per finished case to this file")
    parser.add_argument("--summarize", nargs="+", metavar="LOG",
                        help="print the table of these --log files and exit")
    parser.add_argument("--target", default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--no-run", action="store_true", help="compile only")
    parser.add_argument("--no-zoo", action="store_true", help="node-test models only")
    parser.add_argument("--keep", help="keep the case folders in this folder")
    args = parser.parse_args()
    if args.summarize:
        return _summarize_logs(args.summarize)
    if args.n <= 0:
        parser.error("give the number of cases (or --summarize LOG...)")

    started = time.perf_counter()
    seeds = node_test_models() + zoo_models(() if args.no_zoo else LIGHT)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tapeout-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"TAPEOUT_CACHE": str(work / "cache")}
    try:
        cases = generate(args.n, args.seed, seeds, work / "cases", start=args.start)
        results = run_all(cases, args, env)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.n} cases (from {args.start}) on target {args.target} from {len(seeds)} seed "
          f"models, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    print(summarize(results))
    return 1 if any(r.outcome in ("raw", "crash", "hang") for r in results) else 0


LIGHT = ("jet_mlp", "residual_block", "ops_conv", "ops_elementwise", "ops_shape")


def run_all(cases: list[Case], args: argparse.Namespace, env: dict[str, str]) -> list[Result]:
    shards = [cases[i :: args.jobs] for i in range(args.jobs)]
    lock = threading.Lock()

    def shard(part: list[Case]) -> list[Result]:
        runner = Runner(args.target, args.timeout, not args.no_run, env)
        try:
            out = []
            for case in part:
                out.append(runner.run(case))
                if args.log:
                    with lock, open(args.log, "a") as log:
                        log.write(json.dumps(_record(out[-1], args)) + "\n")
                if len(out) % 100 == 0:
                    print(f"  {len(out)}/{len(part)}", file=sys.stderr, flush=True)
            return out
        finally:
            runner.close()

    with ThreadPoolExecutor(args.jobs) as pool:
        return sorted((r for part in pool.map(shard, shards) for r in part),
                      key=lambda r: r.case.index)


def _record(r: Result, args: argparse.Namespace) -> dict[str, object]:
    return {"index": r.case.index, "seed": args.seed, "target": args.target,
            "seed_model": r.case.seed_model, "mutations": r.case.mutations,
            "outcome": r.outcome, "type": r.type, "message": r.message, "where": r.where}


def _summarize_logs(paths: list[str]) -> int:
    """One table over ``--log`` files; a case logged twice (a piece run again) counts once."""
    rows: dict[tuple[object, object, object], dict[str, Any]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                rows[(rec["target"], rec["seed"], rec["index"])] = rec
    results = [Result(Case(rec["index"], rec["seed_model"], rec["mutations"], Path()),
                      rec["outcome"], rec["type"], rec["message"], rec["where"])
               for rec in rows.values()]
    targets = sorted({str(k[0]) for k in rows})
    indices = sorted(int(str(k[2])) for k in rows)
    span = f"cases {indices[0]}..{indices[-1]}" if indices else "no cases"
    print(f"{len(results)} cases on target {', '.join(targets)} ({span}) from {len(paths)} log(s)")
    print(summarize(results))
    return 1 if any(r.outcome in ("raw", "crash", "hang") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
