"""How long ``tapeout check`` takes on ResNet-50 for every shipped target (goal: under 3 s).

    python bench/check_bench.py                      # ResNet-50, every non-alias target
    python bench/check_bench.py --models resnet50,resnet18 --repeat 5

Each zoo model is built in code (``tests/cases.py``) and exported to ONNX (not timed). Then,
``--repeat`` rounds, each timing one whole ``tapeout check MODEL --target T`` call per target
(import included: what a user waits for), the targets in a fresh random order every round so
that machine noise spreads over all of them. Printed per target: the median and the spread
(min-max) of the calls, and the share of it spent importing. The peer is the compile it
replaces: a check is the part of ``compile`` that says "this will not work" before
calibration; the table gives the ratio to onnxruntime's session creation on the same file for
scale. Exits 1 when a target's median is over the budget.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.report import format_table  # noqa: E402
from compiler.target import list_targets  # noqa: E402
from compiler.tools.check import check  # noqa: E402

BUDGET_S = 3.0


def export(name: str, folder: Path) -> Path:
    import torch

    from tests.cases import get_case

    case = get_case(name)
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(case.build(), case.example_inputs(), str(path), opset_version=17,
                          dynamo=False)  # fmt: skip
    return path


def ort_seconds(path: Path) -> float:
    import onnxruntime as ort

    start = time.perf_counter()
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return time.perf_counter() - start


def bench(path: Path, targets: list[str], repeat: int) -> list[dict[str, object]]:
    times: dict[str, list[float]] = {t: [] for t in targets}
    imports: dict[str, list[float]] = {t: [] for t in targets}
    ort: list[float] = []
    check(path, targets[:1])  # warm the imports (onnx, numpy kernels) once, untimed
    for _ in range(repeat):
        order = random.sample(targets, len(targets))
        for target in order:
            start = time.perf_counter()
            report = check(path, [target])
            times[target].append(time.perf_counter() - start)
            imports[target].append(report.import_seconds)
        ort.append(ort_seconds(path))
    peer = statistics.median(ort)
    rows = []
    for target in targets:
        median = statistics.median(times[target])
        rows.append({
            "target": target,
            "median s": round(median, 3),
            "spread s": f"{min(times[target]):.3f}-{max(times[target]):.3f}",
            "import share": f"{statistics.median(imports[target]) / median:.0%}",
            "x ort session": round(median / peer, 2),
            "ok": "yes" if median < BUDGET_S else "OVER",
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50", help="comma-separated zoo cases")
    parser.add_argument("--targets", help="comma-separated (default: every non-alias target)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    targets = (args.targets.split(",") if args.targets
               else [t.name for t in list_targets() if t.alias_of is None])  # fmt: skip
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = export(name, Path(tmp))
            rows = bench(path, targets, args.repeat)
            print(f"\n== tapeout check {name} ({args.repeat} rounds, budget {BUDGET_S} s)")
            print(format_table(rows))
            failed |= any(r["ok"] != "yes" for r in rows)
    if failed:
        print(f"FAIL: a target's check is over the {BUDGET_S} s budget")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
