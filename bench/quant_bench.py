"""tapeout's post-training quantization against onnxruntime's, on the same data, in one run.

    python bench/quant_bench.py                      # digits_cnn, jet_mlp and tiny_gpt
    python bench/quant_bench.py --models jet_mlp --calibration 512

Classifiers (digits_cnn, jet_mlp): every method calibrates on the same first ``--calibration``
training samples and is scored on the whole held-out split. Rows:

- ``tapeout <calibrator>``: ``quantize_graph`` int8, per-channel weights, symmetric
  activations, after fold-batchnorm and fuse-bias-act; accuracy from the reference interpreter
  running the integer IR;
- ``tapeout pow2 <calibrator>``: the same with power-of-two scales (the FPGA form);
- ``ort <method>``: ``onnxruntime.quantization.quantize_static`` on the model exported by
  ``torch.onnx.export``: QDQ format, per-channel int8 weights, int8 activations (its default,
  asymmetric), MinMax or Entropy calibration; accuracy from onnxruntime running it.

Columns: test accuracy, its drop against float in points, and calibration time (tapeout: the
calibration step, plus in parentheses the whole call with its sensitivity report; ort: the
``quantize_static`` call). The last line compares the best of each, as a ratio.

Calibration time: resnet18 (random weights, 224x224) on ``--speed-samples`` samples, tapeout
with onnxruntime statistics (the default when it can run the graph; the interpreter on 16
samples for scale) against ``quantize_static``.

tiny_gpt (random weights, 4 layers, 128 tokens): cosine similarity of the logits against
float on held-out token sequences, for tapeout int8 (static: linear layers' inputs and
weights) and int4w (group 128), and onnxruntime static (QDQ, per-channel; default asymmetric
and symmetric activations) and dynamic.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.onnx.executor import OrtExecutor  # noqa: E402
from compiler.interpreter import interpret  # noqa: E402
from compiler.ir import Graph  # noqa: E402
from compiler.pass_manager import run_pipeline  # noqa: E402
from compiler.report import format_table  # noqa: E402
from passes.quant.batching import BatchedRunner, normalize_samples  # noqa: E402
from passes.quantize import quantize_graph  # noqa: E402
from tests.cases import get_case  # noqa: E402

TAPEOUT_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("tapeout minmax", {"calibrator": "minmax"}),
    ("tapeout percentile", {"calibrator": "percentile"}),
    ("tapeout entropy", {"calibrator": "entropy"}),
    ("tapeout mse", {"calibrator": "mse"}),
    ("tapeout pow2 minmax", {"calibrator": "minmax", "power_of_two": True}),
    ("tapeout pow2 mse", {"calibrator": "mse", "power_of_two": True}),
]


def imported(name: str) -> tuple[Any, Graph]:
    """(torch model, its IR after fold-batchnorm and fuse-bias-act)."""
    from compiler.frontends.torch_export import import_torch

    case = get_case(name)
    module = case.build()
    graph = import_torch(module, case.example_inputs())
    run_pipeline(graph, "fold-batchnorm,fuse-bias-act")
    return module, graph


def ir_outputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    runner = BatchedRunner(graph, normalize_samples(graph, x))
    return np.concatenate([out[0] for out in runner.run()])


def export_onnx(module: Any, example: tuple, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return path


def ort_outputs(path: Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(None, {"x": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )


def ort_static(
    src: Path, dst: Path, samples: list[np.ndarray], method: str, symmetric: bool = False
) -> float:
    """Quantize ``src`` with onnxruntime's quantize_static; returns the seconds it took."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": s} for s in samples])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its entropy calibrator prints progress
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options={"ActivationSymmetric": symmetric},
        )
    return time.perf_counter() - start


def classifier(name: str, calibration: int, work: Path) -> tuple[str, float, float]:
    module, graph = imported(name)
    x_train, _, x_test, y_test = get_case(name).dataset()  # type: ignore[misc]
    calib = x_train[:calibration]

    def score(logits: np.ndarray) -> float:
        return float(np.mean(logits.argmax(axis=-1) == y_test))

    reference = score(ir_outputs(graph, x_test))
    rows: list[dict[str, Any]] = [{"method": "float", "accuracy": reference, "drop": 0.0}]
    for label, options in TAPEOUT_VARIANTS:
        q = graph.copy()
        start = time.perf_counter()
        report = quantize_graph(q, None, calib, executor=OrtExecutor(), **options)
        total = time.perf_counter() - start
        acc = score(ir_outputs(q, x_test))
        rows.append(
            {
                "method": label,
                "accuracy": acc,
                "drop": 100 * (reference - acc),
                "calib s": f"{report.calibration_seconds:.2f} ({total:.2f})",
            }
        )
    example = tuple(get_case(name).example_inputs())
    src = export_onnx(module, example, work / f"{name}.onnx")
    ort_reference = score(ort_outputs(src, x_test))
    for method in ("MinMax", "Entropy"):
        dst = work / f"{name}_{method}.onnx"
        seconds = ort_static(src, dst, [s[None] for s in calib], method)
        acc = score(ort_outputs(dst, x_test))
        rows.append(
            {
                "method": f"ort {method}",
                "accuracy": acc,
                "drop": 100 * (ort_reference - acc),
                "calib s": f"{seconds:.2f}",
            }
        )
    best_ours = max(r["accuracy"] for r in rows if r["method"].startswith("tapeout"))
    best_ort = max(r["accuracy"] for r in rows if r["method"].startswith("ort"))
    table = format_table(
        [
            {**r, "accuracy": f"{100 * r['accuracy']:.2f}%", "drop": f"{r['drop']:+.2f}"}
            for r in rows
        ],
        ["method", "accuracy", "drop", "calib s"],
    )
    verdict = (
        f"best tapeout {100 * best_ours:.2f}% vs best ort {100 * best_ort:.2f}%: "
        f"ratio {best_ours / best_ort:.4f} ({'>=' if best_ours >= best_ort else '<'})"
    )
    return (
        f"== {name}: {calibration} calibration samples, {len(x_test)} test samples\n"
        + table
        + "\n"
        + verdict,
        best_ours,
        best_ort,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def gpt(work: Path, calibration: int = 16, test: int = 8) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    module, graph = imported("tiny_gpt")
    calib = np.random.default_rng(0).integers(0, 512, (calibration, 1, 128))
    tokens = np.random.default_rng(1).integers(0, 512, (test, 128))
    reference = np.concatenate([interpret(graph, t[None])[0] for t in tokens])
    rows = []

    def ours(label: str, **options: Any) -> None:
        q = graph.copy()
        quantize_graph(q, None, list(calib), report_samples=2, executor=OrtExecutor(), **options)
        out = np.concatenate([interpret(q, t[None])[0] for t in tokens])
        rows.append({"method": label, "cosine": f"{_cosine(reference, out):.5f}"})

    ours("tapeout int8 static")
    ours("tapeout int4w g128", precision="int4w")
    src = export_onnx(module, tuple(get_case("tiny_gpt").example_inputs()), work / "gpt.onnx")
    pre = work / "gpt_pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    float_ort = ort_outputs(src, tokens, batch=8)
    samples = [c for c in calib]
    variants: list[tuple[str, Callable[[Path], object]]] = [
        ("ort static MinMax", lambda p: ort_static(pre, p, samples, "MinMax")),
        ("ort static MinMax symmetric", lambda p: ort_static(pre, p, samples, "MinMax", True)),
        (
            "ort dynamic",
            lambda p: quantize_dynamic(
                str(pre), str(p), per_channel=True, weight_type=QuantType.QInt8
            ),
        ),
    ]
    for label, make in variants:
        path = work / (label.replace(" ", "_") + ".onnx")
        make(path)
        rows.append(
            {"method": label, "cosine": f"{_cosine(float_ort, ort_outputs(path, tokens, 8)):.5f}"}
        )
    return (
        f"== tiny_gpt: logits cosine vs float, {calibration} calibration and {test} test "
        "sequences of 128 tokens\n" + format_table(rows, ["method", "cosine"])
    )


def calibration_speed(work: Path, samples: int) -> str:
    """Calibration time on resnet18 (224x224): tapeout (both engines) vs onnxruntime."""
    module, graph = imported("resnet18")
    x = np.random.default_rng(0).standard_normal((samples, 1, 3, 224, 224)).astype(np.float32)
    rows = []
    for engine in ("onnxruntime", "interpreter"):
        n = samples if engine == "onnxruntime" else min(samples, 16)
        q = graph.copy()
        start = time.perf_counter()
        report = quantize_graph(
            q,
            None,
            x[:n],
            report_samples=4,
            stats_engine="executor" if engine == "onnxruntime" else engine,
            executor=OrtExecutor(),
        )
        rows.append(
            {
                "method": f"tapeout ({engine} statistics)",
                "samples": n,
                "calib s": f"{report.calibration_seconds:.1f}",
                "s/sample": f"{report.calibration_seconds / n:.3f}",
                "whole call s": f"{time.perf_counter() - start:.1f}",
            }
        )
    src = export_onnx(module, tuple(get_case("resnet18").example_inputs()), work / "r18.onnx")
    for method in ("MinMax", "Entropy"):
        seconds = ort_static(src, work / f"r18_{method}.onnx", list(x), method)
        rows.append(
            {
                "method": f"ort {method}",
                "samples": samples,
                "calib s": f"{seconds:.1f}",
                "s/sample": f"{seconds / samples:.3f}",
            }
        )
    return "== resnet18 calibration time\n" + format_table(
        rows, ["method", "samples", "calib s", "s/sample", "whole call s"]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["digits_cnn", "jet_mlp", "tiny_gpt"])
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument(
        "--speed-samples", type=int, default=256, help="resnet18 calibration-time samples (0: skip)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("passes").setLevel(logging.ERROR)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "tiny_gpt":
                print(gpt(Path(tmp)), flush=True)
                continue
            text, best_ours, best_ort = classifier(name, args.calibration, Path(tmp))
            ok &= best_ours >= best_ort
            print(text + "\n", flush=True)
        if args.speed_samples:
            print("\n" + calibration_speed(Path(tmp), args.speed_samples), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
