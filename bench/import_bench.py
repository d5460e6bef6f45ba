"""How long the ONNX frontend takes to import a model, against onnxruntime's session creation.

    python bench/import_bench.py                          # ResNet-50, two exports
    python bench/import_bench.py --models resnet50,resnet18,tiny_gpt --repeat 5

Each zoo model is built in code (``tests/cases.py``) and exported with torch's TorchScript
exporter at opset 17 (not timed), twice: as exported by default (torch folds BatchNorm into
the convolutions), and with ``do_constant_folding=False`` (BatchNorm nodes and the raw
Shape/Gather/Concat chains kept, all of which the frontend must fold). Then the median of
``--repeat`` runs of ``import_onnx(path)`` (load, check, shape inference on the skeleton,
conversion, ``remove_unused``, ``verify``) against the median of
``onnxruntime.InferenceSession(path)`` creation (load, graph optimization, kernel planning):
the peer a user would otherwise load the file with. ResNet-50 must import in under 3 s.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.frontends.onnx import import_onnx  # noqa: E402

BUDGET_S = 3.0  # ResNet-50 import on the 2-core CI machine


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def export(name: str, path: Path, fold: bool) -> Path:
    import torch

    from tests.cases import get_case

    case = get_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            case.build(), case.example_inputs(), str(path), opset_version=17, dynamo=False,
            do_constant_folding=fold,
        )  # fmt: skip
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50", help="comma-separated zoo cases")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime as ort

    def session(path: Path) -> object:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for fold in (True, False):
                label = f"{name} ({'default export' if fold else 'do_constant_folding=False'})"
                path = export(name, Path(tmp) / f"{name}_{fold}.onnx", fold)
                graph = import_onnx(path)
                ours = median_seconds(functools.partial(import_onnx, path), args.repeat)
                peer = median_seconds(functools.partial(session, path), args.repeat)
                size = path.stat().st_size / 2**20
                rows.append((label, size, len(graph.compute_nodes()), ours, peer))

    header = (
        f"{'model':36s} {'file MB':>8s} {'IR nodes':>9s} {'import_onnx s':>14s} "
        f"{'ORT session s':>14s} {'ratio':>6s}"
    )
    print(f"ONNX import, median of {args.repeat} (ratio = import_onnx / ORT session)")
    print(header)
    print("-" * len(header))
    failed = False
    for label, size, nodes, ours, peer in rows:
        print(f"{label:36s} {size:8.1f} {nodes:9d} {ours:14.3f} {peer:14.3f} {ours / peer:6.2f}")
        failed |= label.startswith("resnet50") and ours > BUDGET_S
    if failed:
        print(f"FAIL: ResNet-50 import over the {BUDGET_S:.0f} s budget")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
