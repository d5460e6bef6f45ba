"""The engine rows of ``bench/fpga_bench.py``: ResNet-50 on the weight-streaming engine vs the
Vitis AI DPU's published figures.

    python bench/fpga_bench.py --models none --engine-models resnet50      # engine rows only
    python bench/fpga_bench.py --models none --engine-models mobilenet_v2,encoder

MobileNet-v2 runs at 224x224; the encoder is the zoo's BERT-style one (2 layers, d=64,
4 heads, 16 tokens; embeddings looked up off-chip), its softmax, layer norm and attention
matmuls in integers (``integer_ops``).

Published reference (the peer a user would pick instead; measured by AMD/Xilinx, not here):
the Vitis AI 1.4 Model Zoo README (github.com/Xilinx/Vitis-AI, models/AI-Model-Zoo/README.md,
"Performance on ZCU104", measured with Vitis AI 1.3 and Vitis AI Library 1.3) lists
``cf_resnet50_imagenet_224_224_7.7G`` on a ZCU104 with a ``2 * B4096 @ 300MHz`` DPUCZDX8G
configuration at 13.29 ms end-to-end latency with one thread, 75.1 fps single-thread and
144.7 fps multi-thread (two DPU cores busy; end to end, so pre/post-processing on the Arm
cores is included). The DPU sizes themselves are from PG338 (DPUCZDX8G product guide).

tapeout's side is an estimate, not a measurement: the cost model of
``backends.hls.engine.cost`` (a roofline per layer) for one engine, with the assumptions it
prints: the engine's clock (the target file's HLS clock unless ``--engine-clock``), the
target file's DDR peak bandwidth at ``DDR_EFFICIENCY``, ``TILE_OVERHEAD`` and
``LAYER_OVERHEAD`` cycles, and no pre/post-processing. ResNet-50 here is the zoo's
torchvision-layout model (4.09 GMAC = 8.2 GOP per 224x224 image, vs 7.7 GOP for the Caffe
model in the DPU row); its weights are seeded, not trained: throughput does not depend on them.
The C-simulation speed is measured in this run (g++ -O3 -march=native, one thread).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Vitis AI 1.4 Model Zoo README, "Performance on ZCU104" (2 x B4096 @ 300 MHz).
DPU_ZCU104_RESNET50 = {
    "model": "cf_resnet50_imagenet_224_224_7.7G",
    "config": "2 x B4096 @ 300 MHz (DPUCZDX8G)",
    "latency_ms": 13.29,
    "fps_single_thread": 75.1,
    "fps_multi_thread": 144.7,
    "source": "Vitis AI 1.4 Model Zoo README, Performance on ZCU104",
}

#: The same README's later revision (measured with Vitis AI 1.4 and Vitis AI Library 1.4),
#: "Performance on ZCU104", 2 x B4096 @ 300 MHz. (Its ResNet-50 row there reads 12.89 ms,
#: 77.5 / 151.8 fps; the ResNet-50 figures above are the revision measured with 1.3.)
DPU_ZCU104_MOBILENET_V2 = {
    "model": "cf_mobilenetv2_imagenet_224_224_0.59G",
    "config": "2 x B4096 @ 300 MHz (DPUCZDX8G)",
    "latency_ms": 3.8,
    "fps_single_thread": 263.0,
    "fps_multi_thread": 610.6,
    "source": "Vitis AI Model Zoo README (Vitis AI 1.4 measurements), Performance on ZCU104",
}
#: Published DPU figures by zoo model name (models without one print none).
DPU_ZCU104 = {"resnet50": DPU_ZCU104_RESNET50, "mobilenet_v2": DPU_ZCU104_MOBILENET_V2}


def _quantized(name: str, target: str, work: Path) -> Any:
    """The zoo model compiled for the engine once (calibration on a few random images)."""
    import torch

    import compiler
    from tests.cases import get_case

    case = get_case(name)
    x0 = case.example_inputs()[0]
    calib = np.random.default_rng(0).normal(size=(2, *tuple(x0.shape)[1:])).astype(np.float32)
    start = time.perf_counter()
    with torch.no_grad():
        art = compiler.compile(
            case.build(),
            target=target,
            example_inputs=(x0,),
            calibration_data=calib,
            output_dir=work / f"{name}-{target}",
            fpga_arch="engine",
            tb_samples=0,
            # the encoder's softmax / layer norm / attention matmuls in integers (no effect
            # on the CNNs, which have none of them)
            quant={"integer_ops": True, "report_samples": 1},
        )
    art.timings["total_s"] = time.perf_counter() - start
    return art


def _variant(graph: Any, target: str, engine: str, work: Path, clock: float | None) -> Any:
    # one folder per model, size and board: report_csim runs every model's artifact later
    """The same quantized graph on another engine size or target: no passes run again."""
    import compiler

    options: dict[str, Any] = {"fpga_arch": "engine", "engine": engine, "tb_samples": 0}
    if clock:
        options["engine_clock_mhz"] = clock
    return compiler.compile(
        graph, target=target, pipeline=[], output_dir=work / f"v-{graph.name}-{target}-{engine}",
        **options,
    )


def report_csim(arts: list[tuple[str, Any]], check: bool, rounds: int = 5) -> None:
    """C-simulation speed of each model's engine, runs interleaved across the models (round
    r runs every model once) so that load on the machine hits them alike: median and spread
    (max - min) per input, after a warm-up run that builds each; and whether the result
    equals the interpreter."""
    from compiler.interpreter import interpret

    inputs = {}
    for name, art in arts:
        x = np.random.default_rng(1).normal(size=(1, *art.graph.inputs[0].type.shape[1:]))
        inputs[name] = x.astype(np.float32)
        art.run(inputs[name])  # build and warm up
    times: dict[str, list[float]] = {name: [] for name, _ in arts}
    results = {}
    for _ in range(rounds):
        for name, art in arts:
            start = time.perf_counter()
            results[name] = art.run(inputs[name])[0]
            times[name].append(time.perf_counter() - start)
    print(f"\nC simulation (g++ -O3 -march=native, one thread), {rounds} interleaved rounds:")
    print(f"    {'model':<14} {'median ms':>10} {'spread ms':>10}  against the interpreter")
    for name, art in arts:
        exact = "not checked"
        if check:
            want = interpret(art.graph, inputs[name])[0]
            exact = "bit-exact" if results[name].tobytes() == want.tobytes() else "MISMATCH"
        t = times[name]
        print(
            f"    {name:<14} {statistics.median(t) * 1e3:>10.1f} "
            f"{(max(t) - min(t)) * 1e3:>10.1f}  {exact}"
        )


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(f"{c!s:>{w}}" for c, w in zip(cells, widths, strict=True))


def report_engine(
    name: str,
    target: str,
    work: Path,
    sizes: list[str],
    targets: list[str],
    clock: float | None,
) -> Any:
    """Print the engine rows for ``name``: sizes on ``target``, then other targets; returns
    the B4096 (else first) artifact on ``target`` for ``report_csim``."""
    base = _quantized(name, target, work)
    s = base.summary
    print(
        f"\n{name} on the weight-streaming engine ({target}, {s['engine']}): "
        f"built in {base.timings['total_s']:.0f} s (import + passes + schedule)"
    )
    arts = [(target, size, _variant(base.graph, target, size, work, clock)) for size in sizes]
    arts += [(t, "B4096", _variant(base.graph, t, "B4096", work, clock)) for t in targets]
    widths = [8, 6, 6, 5, 5, 5, 7, 9, 7, 7, 6, 6, 10]
    print(
        _row(
            [
                "target",
                "engine",
                "MHz",
                "DSP",
                "BRAM",
                "URAM",
                "LUT",
                "lat. ms",
                "fps",
                "GOPS",
                "peak",
                "eff.",
                "mem-bound",
            ],
            widths,
        )
    )
    for tgt, size, art in arts:
        m = art.summary
        print(
            _row(
                [
                    tgt,
                    size,
                    m["clock_mhz"],
                    m["dsp"],
                    m["bram18k"],
                    m["uram"],
                    m["lut"],
                    m["latency_ms"],
                    m["fps"],
                    m["gops"],
                    m["peak_gops"],
                    f"{m['efficiency']:.2f}",
                    f"{m['memory_bound_layers']}/{m['layers']}",
                ],
                widths,
            )
        )
    main = next(a for t, z, a in arts if t == target and z == "B4096") if "B4096" in sizes else base
    m = main.summary
    if name in DPU_ZCU104:
        _versus_dpu(m, DPU_ZCU104[name])
    else:
        print("    (no published DPU figure is cited here for this model)")
    blocks = ", ".join(f"{k}: {v:,}" for k, v in m["cycles_per_block"].items())
    print(f"    cycles per block on {m['engine']}: {blocks}")
    if name != "resnet50":
        return main
    print(f"\n  per layer on {m['engine']} (achieved / peak MACs per cycle, which bound it hits):")
    for row in main.layers:
        print(
            f"    {row['name'][:34]:<34} {row['op']:>10} {row['bound']:>8} "
            f"{row['efficiency']:>6.3f}  {row['cycles']:>9,} cycles"
        )
    return main


def _versus_dpu(m: dict[str, Any], dpu: dict[str, Any]) -> None:
    print(f"\n  vs the published DPU ({dpu['config']}, {dpu['model']}; {dpu['source']}):")
    print(f"    {'':<40} {'tapeout':>10} {'DPU':>10} {'tapeout / DPU':>14}")
    rows = [
        ("latency ms (1 image, lower is better)", m["latency_ms"], dpu["latency_ms"]),
        ("fps, one image at a time", m["fps"], dpu["fps_single_thread"]),
        ("fps, whole device (DPU: 2 cores)", m["fps"], dpu["fps_multi_thread"]),
    ]
    for label, ours, theirs in rows:
        print(f"    {label:<40} {ours:>10} {theirs:>10} {ours / theirs:>13.2f}x")
    print(
        f"    assumptions: one {m['engine']} ({m['pp']}x{m['icp']}x{m['ocp']}) at "
        f"{m['clock_mhz']} MHz, DDR {m['ddr_gbps']} GB/s peak x 0.8 = "
        f"{m['ddr_bytes_per_cycle']} B/cycle, {m['ddr_mb_per_frame']} MB DDR traffic per "
        f"image; estimated by the cost model, no pre/post-processing"
    )
