"""Mutation fuzzing of the compiler: N bad models in, the count by outcome out.

    python scripts/fuzz.py 1000 --target reference      # or cpu, fpga
    python scripts/fuzz.py 200 --target fpga --no-run --seed 3 --jobs 2

Seeds are ONNX's backend node-test models and the light model zoo (``tests/fuzz/seeds.py``);
each case is one to three mutations (``tests/fuzz/mutate.py``), compiled and run in a worker
process, so a crash or a hang is counted and the next case goes on. Outcomes: ``ok``,
``typed`` (a tapeout error: what a bad model should give), ``too-big`` (its inputs are too
large to make), and the bugs: ``raw`` (any other exception), ``crash``, ``hang``. Each bug
kind is listed with a case to reproduce it (``--keep`` keeps the case folders).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.fuzz.runner import Case, Result, Runner, generate, summarize  # noqa: E402
from tests.fuzz.seeds import node_test_models, zoo_models  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, help="number of mutated models")
    parser.add_argument("--target", default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--no-run", action="store_true", help="compile only")
    parser.add_argument("--no-zoo", action="store_true", help="node-test models only")
    parser.add_argument("--keep", help="keep the case folders in this folder")
    args = parser.parse_args()

    started = time.perf_counter()
    seeds = node_test_models() + zoo_models(() if args.no_zoo else LIGHT)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tapeout-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"TAPEOUT_CACHE": str(work / "cache")}
    try:
        cases = generate(args.n, args.seed, seeds, work / "cases")
        results = run_all(cases, args, env)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.n} cases on target {args.target} from {len(seeds)} seed models, seed "
          f"{args.seed}, {time.perf_counter() - started:.0f} s")
    print(summarize(results))
    return 1 if any(r.outcome in ("raw", "crash", "hang") for r in results) else 0


LIGHT = ("jet_mlp", "residual_block", "ops_conv", "ops_elementwise", "ops_shape")


def run_all(cases: list[Case], args: argparse.Namespace, env: dict[str, str]) -> list[Result]:
    shards = [cases[i :: args.jobs] for i in range(args.jobs)]

    def shard(part: list[Case]) -> list[Result]:
        runner = Runner(args.target, args.timeout, not args.no_run, env)
        try:
            out = []
            for case in part:
                out.append(runner.run(case))
                if len(out) % 100 == 0:
                    print(f"  {len(out)}/{len(part)}", file=sys.stderr, flush=True)
            return out
        finally:
            runner.close()

    with ThreadPoolExecutor(args.jobs) as pool:
        return sorted((r for part in pool.map(shard, shards) for r in part),
                      key=lambda r: r.case.index)


if __name__ == "__main__":
    sys.exit(main())
