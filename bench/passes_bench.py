"""How much the graph passes shrink the zoo models, how long they take, and how that compares
with onnxruntime's own graph optimizer on the same models.

    python bench/passes_bench.py                  # every zoo case (resnet50 included)
    python bench/passes_bench.py --models tiny_gpt,resnet18 --repeat 5

For each case: import through torch.export, run the default pipeline (the reference
target's cleanup passes plus the recognitions) and the fusion pipeline (the a100 target's
passes with the recognitions after its cleanup), best of ``--repeat`` runs each on a fresh
copy. ResNet-50 is also imported from ONNX, exported with its BatchNorm nodes kept so that
``fold-batchnorm`` has all of its 25M weights to rewrite. The peer: onnxruntime's session
creation with ``ORT_ENABLE_ALL`` and ``optimized_model_filepath`` set, on the same model
exported to ONNX; that time also includes ORT's kernel and memory planning, so the ratio
flatters ORT a little. The default pipeline on the ResNet-50 ONNX model must stay under 2 s.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.ir import Graph  # noqa: E402
from compiler.pass_manager import run_pipeline  # noqa: E402
from compiler.target import load_target  # noqa: E402

RECOGNITIONS = ["recognize-layernorm", "recognize-gelu", "recognize-attention"]


def recognizing(pipeline: tuple[str, ...]) -> list[str]:
    """``pipeline`` with the recognitions right after its cleanup passes, so that what they
    recognize (a GELU after a dense) can still fuse."""
    at = pipeline.index("remove-identity") + 1
    return [*pipeline[:at], *RECOGNITIONS, *pipeline[at:]]


PIPELINES = {
    "default": [*load_target("reference").pipeline, *RECOGNITIONS, "dce"],
    "fusion": recognizing(load_target("a100").pipeline),
}
BUDGET_S = 2.0  # the default pipeline on ResNet-50 (ONNX)


def best_pipeline(graph: Graph, spec: list[str], repeat: int) -> tuple[int, float]:
    """(nodes after, best seconds) over ``repeat`` runs on fresh copies of ``graph``."""
    best, nodes = float("inf"), 0
    for _ in range(repeat):
        work = graph.copy()
        result = run_pipeline(work, ",".join(spec))
        best = min(best, result.seconds)
        nodes = len(work.compute_nodes())
    return nodes, best


def ort_optimize_seconds(path: Path, repeat: int) -> float:
    """Best time to create an onnxruntime session with every graph optimization on."""
    import onnxruntime as ort

    best = float("inf")
    for i in range(repeat):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # not the warning about NCHWc-specific saved models
        options.optimized_model_filepath = str(path.with_suffix(f".ort{i}.onnx"))
        start = time.perf_counter()
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        best = min(best, time.perf_counter() - start)
    return best


def export_onnx(model: Any, inputs: tuple, path: Path, keep_batchnorm: bool = False) -> Path:
    import torch

    mode = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, inputs, str(path), opset_version=17, dynamo=False, training=mode,
            input_names=[f"x{i}" for i in range(len(inputs))],
        )  # fmt: skip
    return path


def bench_case(name: str, folder: Path, repeat: int, via_onnx: bool) -> dict[str, object]:
    from compiler.frontends.onnx import import_onnx
    from compiler.frontends.torch_export import import_torch
    from tests.cases import get_case

    case = get_case(name)
    model, inputs = case.build(), case.example_inputs()
    path = export_onnx(model, inputs, folder / f"{name}.onnx", keep_batchnorm=via_onnx)
    graph = import_onnx(path) if via_onnx else import_torch(model, inputs)
    row: dict[str, object] = {
        "model": name,
        "frontend": "onnx" if via_onnx else "torch.export",
        "nodes": len(graph.compute_nodes()),
    }
    for label, spec in PIPELINES.items():
        row[f"{label} nodes"], row[f"{label} s"] = best_pipeline(graph, spec, repeat)
    row["ort s"] = ort_optimize_seconds(path, repeat)
    return row


def format_table(rows: list[dict[str, object]]) -> str:
    head = (
        f"{'model':<16}{'frontend':<14}{'nodes':>7}{'default':>9}{'ms':>9}"
        f"{'fusion':>8}{'ms':>9}{'ORT ms':>9}{'ratio':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ours, ort = float(r["default s"]), float(r["ort s"])  # type: ignore[arg-type]
        lines.append(
            f"{r['model']:<16}{r['frontend']:<14}{r['nodes']:>7}{r['default nodes']:>9}"
            f"{ours * 1e3:>9.1f}{r['fusion nodes']:>8}{float(r['fusion s']) * 1e3:>9.1f}"  # type: ignore[arg-type]
            f"{ort * 1e3:>9.1f}{ours / ort:>7.3f}x"
        )
    lines.append(
        "nodes: compute nodes after import; default/fusion: after each pipeline; ms: best "
        "pipeline time; ORT ms: onnxruntime session creation (ORT_ENABLE_ALL) on the same "
        "model as ONNX; ratio: default pipeline / ORT."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tests.cases import CASES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated zoo cases (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = args.models.split(",") if args.models else list(CASES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                rows.append(bench_case(name, Path(tmp), args.repeat, via_onnx=False))
            except Exception as e:  # a case whose toolchain is missing (bert): say so, go on
                print(f"{name}: skipped ({type(e).__name__}: {str(e)[:120]})", file=sys.stderr)
        if not args.models or "resnet50" in names:
            rows.append(bench_case("resnet50", Path(tmp), args.repeat, via_onnx=True))
    print(format_table(rows))
    slow = [r for r in rows if r["model"] == "resnet50" and r["frontend"] == "onnx"]
    if slow and float(slow[0]["default s"]) > BUDGET_S:  # type: ignore[arg-type]
        print(f"FAIL: default pipeline on ResNet-50 (ONNX) over {BUDGET_S} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
