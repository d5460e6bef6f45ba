"""CPU latency: tapeout (TVM) against onnxruntime and torch eager, in one run.

    python bench/cpu_bench.py                              # all three models, ~8 minutes
    python bench/cpu_bench.py --models digits_cnn --tune-scale 0.2

Models: the ResNet-18-sized CNN (batch 1, 224x224), the tiny GPT (4 layers, 128 tokens) and
the digits CNN (batch 256). Rows per model, each with its median latency, its ratio to
onnxruntime fp32 (all graph optimizations on) and to torch eager, and its agreement with the
float model (cosine similarity and max relative error of the outputs against torch fp32):

- ``torch eager fp32`` and ``ort fp32``: the peers;
- ``ort int8``: onnxruntime's own quantization of the exported model: static QDQ with u8
  activations and s8 per-channel weights (MinMax calibration) for the CNNs, dynamic (s8
  weights, activations quantized per call) for the GPT;
- ``tapeout fp32 untuned``: our schedule rules only;
- ``tapeout fp32 tuned``: plus MetaSchedule for ``--tune-minutes`` (per model) with a fresh
  database (``--cache`` reuses one), the trials it ran and the time it took in the label;
- ``tapeout int8``: ``passes.quantize`` static int8 (per-channel weights, symmetric int8
  activations; linear layers only in the GPT), run by the same backend (AVX-512 VNNI kernels
  on a VNNI target). Where float ops remain between integer layers (the GPT's layer norm,
  attention and GELU), the CPU targets run them in float64 so the output matches the
  interpreter bit for bit ("f64 islands, bit-exact"); a second row gives the faster float32
  islands (``quantize{island_dtype=f32}``), which match only to a cosine bound.

The target defaults to ``x86-64-avx512`` (the dev/CI machine's Zen 5 runs AVX-512 + VNNI).
After each model, the kernels where tapeout spends its time are listed (``--profile 0``
turns that off). Threads: every engine uses all cores this process may run on. Timing: once
everything is built, all runs of a model are timed in interleaved rounds (a shared machine's
slow spells then hit every engine alike).
"""

from __future__ import annotations

import argparse
import io
import os
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

from compiler import api  # noqa: E402
from compiler.report import format_table  # noqa: E402
from tests.cases import get_case  # noqa: E402

#: model -> (batch, MetaSchedule minutes at --tune-scale 1, timed repetitions)
MODELS: dict[str, tuple[int, float, int]] = {
    "resnet18": (1, 3.0, 30),
    "tiny_gpt": (1, 2.5, 40),
    "digits_cnn": (256, 1.5, 50),
}


def cores() -> int:
    return len(os.sched_getaffinity(0))


def interleaved_ms(fns: dict[str, Callable[[], Any]], repeat: int, rounds: int = 5) -> dict:
    """Median milliseconds per call of each function, timed in ``rounds`` interleaved rounds
    (``repeat`` calls each in all), so that a slow spell of a shared machine falls on every
    engine alike instead of on whichever happened to run then. Each turn starts with a pause
    (thread pools that spin after their last task would otherwise steal the next engine's
    cores) and three untimed calls."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {label: [] for label in fns}
    per_round = max(1, repeat // rounds)
    for _ in range(rounds):
        for label, fn in fns.items():
            # let the previous engine's worker threads stop spinning (OpenMP pools spin up to
            # 200 ms after a parallel region), then warm this one's
            time.sleep(0.3)
            for _ in range(3):
                fn()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
    return {label: 1e3 * float(np.median(t)) for label, t in times.items()}


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def agreement(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(cosine similarity, max |got - ref| / max |ref|)."""
    a, b = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return cosine, float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def inputs_for(name: str, batch: int) -> tuple[Any, list[np.ndarray], Any]:
    """(example torch inputs, the benchmark inputs as arrays, calibration data)."""
    import torch

    case = get_case(name)
    if case.dataset is not None:
        _, _, x_test, _ = case.dataset()
        x_train = case.dataset()[0]
        xs = [np.ascontiguousarray(x_test[:batch])]
        return (torch.from_numpy(xs[0]),), xs, x_train[:256]
    example = case.example_inputs()
    g = torch.Generator().manual_seed(1)
    if example[0].dtype == torch.int64:
        calib = [(torch.randint(0, 512, example[0].shape, generator=g),) for _ in range(16)]
    else:
        calib = [(torch.randn(example[0].shape, generator=g),) for _ in range(8)]
    return example, [x.numpy() for x in example], calib


def onnx_model(module: Any, example: tuple[Any, ...]) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            buf,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=17,
            input_names=[f"in{i}" for i in range(len(example))],
        )
    return buf.getvalue()


def ort_session(model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cores()
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def ort_int8(model: bytes, calib: Any, dynamic: bool, workdir: Path, batch: int) -> bytes:
    from onnxruntime import quantization as q

    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    src.write_bytes(model)
    if dynamic:
        q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8)
        return dst.read_bytes()
    if isinstance(calib, list):
        batches = [tuple(np.asarray(t) for t in c) for c in calib]
    else:  # one array of samples, cut into batches of the exported (static) batch size
        batches = [
            (np.ascontiguousarray(calib[i : i + batch]),)
            for i in range(0, len(calib) - batch + 1, batch)
        ]

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{f"in{i}": np.asarray(t) for i, t in enumerate(b)} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    q.quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        per_channel=True,
    )
    return dst.read_bytes()


def bench_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from tests.backends.tvm.helpers import int8_pipeline

    batch, minutes, repeat = MODELS[name]
    repeat = max(5, int(repeat * args.repeat_scale))
    case = get_case(name)
    module = case.build()
    example, xs, calib = inputs_for(name, batch)
    with torch.inference_mode():
        reference = module(*example).numpy()
    rows: list[dict[str, Any]] = []
    runners: dict[str, Callable[[], Any]] = {}

    def add(label: str, fn: Callable[[], Any], output: np.ndarray) -> None:
        cosine, rel = agreement(output, reference)
        rows.append(
            {
                "model": name,
                "run": label,
                "cosine": round(cosine, 5),
                "max_rel_err": float(f"{rel:.2g}"),
            }
        )
        runners[label] = fn
        print(f"  built {label}", flush=True)

    torch.set_num_threads(cores())
    with torch.inference_mode():
        add("torch eager fp32", lambda: module(*example), reference)
    model = onnx_model(module, example)
    feed = {f"in{i}": x for i, x in enumerate(xs)}
    session = ort_session(model)
    add("ort fp32", lambda: session.run(None, feed), session.run(None, feed)[0])
    with tempfile.TemporaryDirectory() as tmp:
        dynamic = name == "tiny_gpt"
        quantized = ort_session(ort_int8(model, calib, dynamic, Path(tmp), batch))
        add(
            f"ort int8 ({'dynamic' if dynamic else 'static QDQ u8/s8'})",
            lambda: quantized.run(None, feed),
            quantized.run(None, feed)[0],
        )

    cache = args.cache or tempfile.mkdtemp(prefix="tapeout-bench-")
    builds = {
        "tapeout fp32 untuned": {},
        "tapeout fp32 tuned": {
            "tune_minutes": minutes * args.tune_scale,
            "cache_dir": cache,
            "tune_progress": False,
        },
    }
    arts = {}
    for label, options in builds.items():
        t0 = time.perf_counter()
        art = api.compile(module, args.target, example_inputs=example, **options)
        if options:
            trials = art.summary.get("tune_trials", 0)
            label += f" ({trials} trials, {time.perf_counter() - t0:.0f} s)"
        add(label, _runner(art, xs), art.run(*xs)[0])
        arts[label] = art
    art = api.compile(
        module,
        args.target,
        example_inputs=example,
        pipeline=int8_pipeline(args.target),
        calibration_data=calib,
    )
    label = "tapeout int8 (static)"
    if any(v.dtype == "f64" for v in art.graph.values()):
        label += " f64 islands, bit-exact"
    add(label, lambda: art.run(*xs), art.run(*xs)[0])
    arts[label] = art
    if label.endswith("bit-exact"):  # the faster, not bit-exact, float32 islands
        fast = api.compile(
            module,
            args.target,
            example_inputs=example,
            pipeline=int8_pipeline(args.target, island_dtype="f32"),
            calibration_data=calib,
        )
        add("tapeout int8 (static) f32 islands", _runner(fast, xs), fast.run(*xs)[0])
        arts["tapeout int8 (static) f32 islands"] = fast
    medians = interleaved_ms(runners, repeat)
    for row in rows:
        row["ms"] = round(medians[row["run"]], 3)
        print(f"  {row['run']}: {row['ms']:.3f} ms", flush=True)
    _ratios(rows)
    if args.profile:
        for label, a in arts.items():
            top = a.profile(*xs, repeat=5)[: args.profile]  # type: ignore[attr-defined]
            total = sum(r["ms"] for r in a.profile(*xs, repeat=2))  # type: ignore[attr-defined]
            print(f"  profile of {label} (kernel total {total:.2f} ms):")
            for r in top:
                print(f"    {r['ms']:8.3f} ms  x{r['calls']:<3d} {r['kernel']}")
    return rows


def _runner(art: Any, xs: list[np.ndarray]) -> Callable[[], Any]:
    return lambda: art.run(*xs)


def _ratios(rows: list[dict[str, Any]]) -> None:
    ort_ms = next(r["ms"] for r in rows if r["run"] == "ort fp32")
    torch_ms = next(r["ms"] for r in rows if r["run"] == "torch eager fp32")
    for r in rows:
        r["x_ort_fp32"] = round(r["ms"] / ort_ms, 2)
        r["x_torch"] = round(r["ms"] / torch_ms, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--target", default="x86-64-avx512")
    parser.add_argument(
        "--tune-scale",
        type=float,
        default=1.0,
        help="multiply every model's MetaSchedule minutes by this",
    )
    parser.add_argument("--repeat-scale", type=float, default=1.0)
    parser.add_argument("--cache", default=None, help="reuse this tuning cache folder")
    parser.add_argument("--profile", type=int, default=6, help="kernels to list per run")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("passes").setLevel(logging.ERROR)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    print(f"{cores()} cores, target {args.target}", flush=True)
    for name in args.models:
        print(f"{name}:", flush=True)
        rows += bench_model(name, args)
    print()
    print(
        format_table(rows, ["model", "run", "ms", "x_ort_fp32", "x_torch", "cosine", "max_rel_err"])
    )
    print(f"\nbench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
