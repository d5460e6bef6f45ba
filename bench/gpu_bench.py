"""tapeout's TensorRT engines against torch eager (fp32 and fp16) on the GPU, in one run.

    python bench/gpu_bench.py                            # resnet18 and tiny_gpt, target gpu
    python bench/gpu_bench.py --models resnet18 --batch 64 --target h100

For each zoo model (tests/cases.py: the ResNet-18-sized CNN at 224x224 and the tiny GPT),
on the same inputs and the same GPU:

* torch eager fp32 (``model.cuda()``) and fp16 (``model.half()``): the baseline a user has;
* tapeout fp16: ``compiler.compile(model, target)`` -> TensorRT engine with the fp16 flag;
* tapeout int8: ``compiler.compile(..., precision="int8", calibration_data=...)`` -> the
  quantized graph as QDQ ONNX -> TensorRT engine (int8, fp16 float islands).

Each is timed with CUDA events over ``--iters`` runs after ``--warmup`` runs; the table gives
milliseconds per batch, the speedup over torch fp32 eager, and the int8 engine's error
against torch fp32. The goal: the int8 engine at least 4x faster than torch fp32 eager.

Without TensorRT or a CUDA GPU this prints what is missing and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SPEEDUP = 4.0  # int8 engine vs torch fp32 eager


def cuda_ms(fn: Callable[[], Any], iters: int, warmup: int) -> float:
    """Mean milliseconds of ``fn`` (which enqueues GPU work) measured with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return float(start.elapsed_time(end)) / iters


def batched(inputs: tuple[Any, ...], batch: int) -> tuple[Any, ...]:
    """The example inputs repeated to ``batch`` along dimension 0."""
    return tuple(x.repeat(batch, *([1] * (x.dim() - 1))) for x in inputs)


def torch_eager(
    model: Any, inputs: tuple[Any, ...], half: bool, iters: int, warmup: int
) -> tuple[float, Any]:
    import torch

    model = model.cuda().eval()
    feeds = [x.cuda() for x in inputs]
    if half:
        model = model.half()
        feeds = [x.half() if x.is_floating_point() else x for x in feeds]
    with torch.inference_mode():
        out = model(*feeds)
        ms = cuda_ms(lambda: model(*feeds), iters, warmup)
    return ms, out.float().cpu()


def tapeout_engine(
    model: Any,
    inputs: tuple[Any, ...],
    target: str,
    work: Path,
    iters: int,
    warmup: int,
    **options: Any,
) -> tuple[float, Any, Any]:
    import compiler
    from backends.tensorrt.runtime import EngineRunner

    art = compiler.compile(model, target=target, example_inputs=inputs, output_dir=work, **options)
    runner = EngineRunner(work / "model.engine")
    outs = runner.bind(dict(zip(runner.inputs, inputs, strict=True)))
    ms = cuda_ms(runner.execute, iters, warmup)
    out = next(iter(outs.values())).float().cpu()
    return ms, out, art


def bench_model(name: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import torch

    from tests.cases import get_case

    case = get_case(name)
    inputs = batched(case.example_inputs(), args.batch)
    rows = []
    fp32_ms, reference = torch_eager(case.build(), inputs, False, args.iters, args.warmup)
    rows.append({"engine": "torch eager fp32", "ms": fp32_ms, "out": reference})
    fp16_ms, out = torch_eager(case.build(), inputs, True, args.iters, args.warmup)
    rows.append({"engine": "torch eager fp16", "ms": fp16_ms, "out": out})
    ms, out, _ = tapeout_engine(
        case.build(), inputs, args.target, work / f"{name}_fp16", args.iters, args.warmup
    )
    rows.append({"engine": "tapeout TensorRT fp16", "ms": ms, "out": out})
    # Calibration batches have the engine's batch size (the graph is specialized to it).
    calibration = [inputs] + [
        tuple(x + 0.05 * torch.randn_like(x) if x.is_floating_point() else x for x in inputs)
        for _ in range(args.calibration - 1)
    ]
    ms, out, art = tapeout_engine(
        case.build(),
        inputs,
        args.target,
        work / f"{name}_int8",
        args.iters,
        args.warmup,
        precision="int8",
        calibration_data=calibration,
    )
    rows.append(
        {
            "engine": "tapeout TensorRT int8",
            "ms": ms,
            "out": out,
            "mismatches": len(art.summary.get("precision_mismatches", [])),
        }
    )
    for row in rows:
        row["speedup"] = fp32_ms / row["ms"]
        row["max_err"] = float((row.pop("out") - reference).abs().max() / reference.abs().max())
    return rows


def print_table(name: str, batch: int, rows: list[dict[str, Any]]) -> None:
    print(f"\n{name} (batch {batch})")
    print(f"{'engine':<24}{'ms/batch':>10}{'vs torch fp32':>15}{'rel. error':>12}")
    for r in rows:
        print(f"{r['engine']:<24}{r['ms']:>10.3f}{r['speedup']:>14.2f}x{r['max_err']:>12.2e}")
    int8 = rows[-1]
    verdict = "met" if int8["speedup"] >= GOAL_SPEEDUP else "NOT met"
    print(
        f"goal int8 >= {GOAL_SPEEDUP:.0f}x torch fp32 eager: {verdict} "
        f"({int8['speedup']:.2f}x; {int8.get('mismatches', 0)} layer(s) not in int8)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,tiny_gpt")
    parser.add_argument("--target", default="gpu", help="a TensorRT target: gpu, h100, a100")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=2, help="calibration batches")
    args = parser.parse_args(argv)
    from backends.tensorrt.runtime import missing_toolchain

    missing = missing_toolchain()
    if missing is not None:
        what, why = missing
        print(
            f"gpu_bench: cannot run here: {what} is missing ({why}). This benchmark needs "
            "TensorRT 10 (pip install 'tapeout[tensorrt]') and an NVIDIA GPU; nothing was "
            "measured."
        )
        return 0
    import torch

    print(
        f"gpu_bench on {torch.cuda.get_device_name()} (target {args.target}), "
        f"{args.iters} iterations after {args.warmup} warm-up, CUDA events"
    )
    with tempfile.TemporaryDirectory(prefix="gpu_bench-") as tmp:
        for name in args.models.split(","):
            print_table(name, args.batch, bench_model(name, args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
