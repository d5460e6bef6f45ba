"""The issue-19 goals: fit a model to an FPGA budget, and hardware-aware architecture search.

    python bench/search_bench.py                 # all three goals (about 15 min on 2 cores)
    python bench/search_bench.py --only jet      # or: digits, nas

- ``jet``: the jet MLP on pynq-z2 (220 DSP48E1, no DSP packing) with a latency goal the
  backend's automatic reuse fit alone misses (``--jet-latency-ns``, default 500), accuracy
  drop <= 1 point; ``compiler.search`` prunes and picks bit widths and reuse factors.
- ``digits``: the digits CNN on kv260 at the lowest latency found with drop <= 0.5 points.
- ``nas``: ``compiler.nas`` on the digits CNN for kv260: a subnet with half the estimated
  latency of the baseline at <= 0.5 points.

The peer in each row is today's compile: the dense int8 model with the backend's automatic
reuse fit (``tapeout compile --target T``), priced by the same estimate. Accuracy is top-1 on
the held-out split, run by the reference interpreter on the quantized graph (bit-exact with
the FPGA's C simulation), drop in points against the float model. The numbers are seeded;
wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import compiler  # noqa: E402
from compiler.report import format_table  # noqa: E402
from tests.cases import get_case  # noqa: E402
from tests.datasets import digits_split, jet_split  # noqa: E402


def _row(
    goal: str, target: str, base: Any, cost: Any, acc: float, drop: float, seconds: float, met: bool
) -> dict[str, Any]:
    return {
        "goal": goal,
        "target": target,
        "today_ns": f"{base.latency_ns:g}",
        "today_dsp": base.dsp,
        "found_ns": f"{cost.latency_ns:g}",
        "found_dsp": cost.dsp,
        "speedup": f"{base.latency_ns / cost.latency_ns:.2f}x",
        "accuracy": f"{100 * acc:.2f}",
        "drop": f"{drop:.2f}",
        "minutes": f"{seconds / 60:.1f}",
        "met": "yes" if met else "no",
    }


def run_search(
    goal: str, case: str, target: str, split: Any, budget: dict[str, Any], epochs: int, out: Path
) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = split()
    start = time.perf_counter()
    try:
        result = compiler.search(
            get_case(case).build(),
            target,
            budget,
            x_test,
            y_test,
            train=(x_train, y_train),
            epochs=epochs,
            output_dir=out,
            progress=lambda m: print("  " + m, file=sys.stderr),
        )
    except compiler.errors.BudgetError as e:
        print(f"{goal}: {e}")
        result = e.result
    seconds = time.perf_counter() - start
    print(result.table() + "\n")
    chosen = result.chosen or result.measured[-1]
    met = result.chosen is not None
    return _row(
        goal, target, result.baseline.cost, chosen.cost, chosen.accuracy, chosen.drop, seconds, met
    )


def run_nas() -> dict[str, Any]:
    x_train, y_train, x_test, y_test = digits_split()
    start = time.perf_counter()
    result = compiler.nas(
        get_case("digits_cnn").build(),
        "kv260",
        {"max_accuracy_drop": 0.5},
        x_test,
        y_test,
        train=(x_train, y_train),
        progress=lambda m: print("  " + m, file=sys.stderr),
    )
    seconds = time.perf_counter() - start
    print(result.table() + "\n")
    met = result.speedup >= 2.0 and result.drop <= 0.5
    return _row(
        "digits nas, half latency, drop<=0.5",
        "kv260",
        result.baseline_cost,
        result.cost,
        result.accuracy,
        result.drop,
        seconds,
        met,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["jet", "digits", "nas"], action="append")
    parser.add_argument("--jet-latency-ns", type=float, default=500.0)
    parser.add_argument("--out", default=None, help="keep the search folders here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only or ["jet", "digits", "nas"])
    out = Path(args.out or tempfile.mkdtemp(prefix="search-bench-"))
    rows = []
    if "jet" in only:
        budget = {"max_dsp": 220, "max_latency_ns": args.jet_latency_ns, "max_accuracy_drop": 1.0}
        goal = f"jet fits 220 DSP, <= {args.jet_latency_ns:g} ns, drop<=1"
        rows.append(run_search(goal, "jet_mlp", "pynq-z2", jet_split, budget, 6, out / "jet"))
    if "digits" in only:
        rows.append(
            run_search(
                "digits lowest latency, drop<=0.5",
                "digits_cnn",
                "kv260",
                digits_split,
                {"max_accuracy_drop": 0.5},
                15,
                out / "digits",
            )
        )
    if "nas" in only:
        rows.append(run_nas())
    print(format_table(rows))
    print(f"(today: dense int8 with the automatic reuse fit; search folders in {out})")


if __name__ == "__main__":
    main()
