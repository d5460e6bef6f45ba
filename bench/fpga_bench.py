"""tapeout's FPGA backend against hls4ml (dataflow) and the Vitis AI DPU (engine), in one run.

    python bench/fpga_bench.py                          # both models, target fpga (zcu104)
    python bench/fpga_bench.py --models jet_mlp --target kv260
    python bench/fpga_bench.py --models none            # only the engine rows (ResNet-50)

The engine rows (``bench/fpga_engine.py``, after the dataflow tables) compile ResNet-50 for the
weight-streaming engine and set its estimated latency, fps and resources next to the Vitis AI
DPU's published ZCU104 figures, stating every assumption; ``--engine-models none`` skips them.

For each model, both tools compile the same trained torch module and C-simulate the same test
set (tests/datasets.py; the jet data are synthetic, so hls4ml's published 0.9245 does not
apply here: only this run's numbers compare):

* tapeout: ``compiler.compile(model, target, calibration_data=train[:400])`` (int8,
  power-of-two scales, reuse factors chosen to fit the part), then ``art.run`` (the generated
  C++ built with g++ -O2, called through ctypes);
* hls4ml (a bench-only extra: ``pip install hls4ml``; never a tapeout dependency):
  ``ap_fixed<16,6>``, io_parallel, Vitis backend, the *same* reuse factor per layer as tapeout
  chose, ``hls_model.compile()`` then ``predict``.

Printed side by side: C-sim accuracy against float, C-sim microseconds per sample, build
seconds (tapeout: import + passes + code generation + g++; hls4ml: conversion + its g++;
both after torch is warmed up),
lines of generated code (top function and layer configs; weights separately), and tapeout's
estimated DSPs and latency next to what hls4ml's configuration implies at the same reuse
factors (its multiplier limit ``ceil(n_in*n_out/rf) - n_zeros/rf`` per layer, one DSP per
16-bit product; latency from tapeout's model applied to hls4ml's layers, plus one cycle per
separate activation layer). If hls4ml cannot be installed or run here, the table says so and shows
tapeout's side alone.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_NS = 100.0  # the jet MLP's latency goal at 200 MHz


def _lines(paths: list[Path]) -> int:
    return sum(sum(1 for line in p.read_text().splitlines() if line.strip()) for p in paths)


def _per_sample_us(fn: Any, x: np.ndarray, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(x) * 1e6


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).reshape(len(y), -1).argmax(1) == y).mean())


def run_tapeout(name: str, target: str, work: Path, calibrator: str) -> dict[str, Any]:
    import torch

    import compiler
    from tests.cases import get_case

    case = get_case(name)
    assert case.dataset is not None
    x_train, _, x_test, y_test = case.dataset()
    model = case.build()
    with torch.no_grad():
        float_acc = _accuracy(model(torch.from_numpy(x_test)).numpy(), y_test)
    start = time.perf_counter()
    art = compiler.compile(
        model,
        target=target,
        example_inputs=case.example_inputs(),
        calibration_data=x_train[:400],
        calibrator=calibrator,
        output_dir=work / name,
    )
    art.build()  # type: ignore[attr-defined]
    build_s = time.perf_counter() - start
    top = art.summary["top"]
    fw = art.path / "firmware"  # type: ignore[operator]
    code = [fw / f"{top}.cpp", fw / f"{top}.h", fw / "parameters.h"]
    return {
        "float_acc": float_acc,
        "acc": _accuracy(art.run(x_test)[0], y_test),
        "us": _per_sample_us(lambda x: art.run(x), x_test),
        "build_s": build_s,
        "code_lines": _lines(code),
        "weight_lines": _lines(sorted((fw / "weights").glob("*.h"))),
        "dsp": art.summary["dsp"],
        "dsp_budget": art.summary["dsp_budget"],
        "latency_ns": art.summary["latency_ns"],
        "latency_cycles": art.summary["latency_cycles"],
        "clock_mhz": art.summary["clock_mhz"],
        "reuse": {row["loc"]: row["rf"] for row in art.layers if row.get("macs")},
        "x_test": x_test,
        "y_test": y_test,
        "model": model,
        "input_shape": tuple(case.example_inputs()[0].shape[1:]),
    }


def _hls4ml_layer_rf(reuse: dict[str, int], layer_name: str) -> int | None:
    """tapeout's rf for an hls4ml layer (names match torch module paths or ONNX-ish locs)."""
    for loc, rf in reuse.items():
        if loc and (loc == layer_name or loc.strip("/").split("/")[0] == layer_name):
            return rf
    return None


def run_hls4ml(name: str, ours: dict[str, Any], work: Path) -> dict[str, Any]:
    import hls4ml  # noqa: F401  (a bench-only extra)

    model = ours["model"]
    cfg = hls4ml.utils.config_from_pytorch_model(
        model,
        input_shape=ours["input_shape"],
        granularity="name",
        default_precision="ap_fixed<16,6>",
        default_reuse_factor=1,
        backend="Vitis",
    )
    for layer, layer_cfg in cfg["LayerName"].items():
        rf = _hls4ml_layer_rf(ours["reuse"], layer)
        if rf is not None:
            layer_cfg["ReuseFactor"] = rf
    start = time.perf_counter()
    hm = hls4ml.converters.convert_from_pytorch_model(
        model,
        hls_config=cfg,
        output_dir=str(work / f"hls4ml_{name}"),
        backend="Vitis",
        io_type="io_parallel",
    )
    hm.compile()
    build_s = time.perf_counter() - start
    x = np.ascontiguousarray(ours["x_test"].reshape(len(ours["x_test"]), -1))
    fw = work / f"hls4ml_{name}" / "firmware"
    code = [fw / "myproject.cpp", fw / "myproject.h", fw / "parameters.h", fw / "defines.h"]
    return {
        "acc": _accuracy(hm.predict(x), ours["y_test"]),
        "us": _per_sample_us(hm.predict, x),
        "build_s": build_s,
        "code_lines": _lines([p for p in code if p.exists()]),
        "weight_lines": _lines(sorted((fw / "weights").glob("*.h"))),
        "dsp": _hls4ml_multipliers(hm),
        "latency_cycles": _hls4ml_latency(hm, ours["clock_mhz"]),
        "reuse": {
            layer.name: layer.get_attr("reuse_factor")
            for layer in hm.get_layers()
            if layer.class_name in ("Dense", "Conv2D", "Conv2DBatchnorm")
        },
    }


def _hls4ml_latency(hm: Any, clock_mhz: float) -> int:
    """tapeout's latency model applied to hls4ml's layers at their reuse factors."""
    from backends.hls.resources import Model

    model = Model.for_target(1, clock_mhz)  # hls4ml packs no products
    cycles = 0
    for layer in hm.get_layers():
        rf = int(layer.get_attr("reuse_factor") or 1)
        if layer.class_name == "Dense":
            cycles += rf + 1 + model.tree(int(layer.get_attr("n_in"))) + 1 - 1
        elif layer.class_name in ("Conv2D", "Conv2DBatchnorm"):
            pixels = int(layer.get_attr("out_height")) * int(layer.get_attr("out_width"))
            fan_in = (
                int(layer.get_attr("n_chan"))
                * int(layer.get_attr("filt_height"))
                * int(layer.get_attr("filt_width"))
            )
            cycles += pixels * rf + 1 + model.tree(fan_in)
        elif layer.class_name in ("Pooling2D",):
            cycles += int(layer.get_attr("out_height")) * int(layer.get_attr("out_width")) + 1
        elif layer.class_name != "Input":
            cycles += 1  # activations, casts: one registered stage
    return cycles


def _hls4ml_multipliers(hm: Any) -> int:
    """The multipliers hls4ml's config asks for: its multiplier_limit, one DSP per product."""
    total = 0
    for layer in hm.get_layers():
        weight = getattr(layer, "weights", {}).get("weight")
        if layer.class_name not in ("Dense", "Conv2D", "Conv2DBatchnorm") or weight is None:
            continue
        data = np.asarray(weight.data)
        per_block = data.size  # dense: n_in*n_out; conv (io_parallel): one output pixel
        rf = int(layer.get_attr("reuse_factor") or 1)
        zeros = int(np.count_nonzero(data == 0))
        total += math.ceil(per_block / rf) - zeros // rf
    return total


def _row(label: str, ours: Any, theirs: Any, ratio: str = "") -> str:
    return f"  {label:<34} {ours!s:>14} {theirs!s:>14}   {ratio}"


def report(name: str, ours: dict[str, Any], theirs: dict[str, Any] | None, why: str) -> None:
    print(
        f"\n{name} (tapeout int8 at {ours['clock_mhz']:g} MHz; hls4ml ap_fixed<16,6>, "
        "io_parallel, same reuse factors)"
    )
    print(_row("", "tapeout", "hls4ml", "hls4ml / tapeout"))
    t = theirs or {}

    def both(key: str, fmt: str = "{}") -> tuple[str, str, str]:
        a, b = ours.get(key), t.get(key)
        ratio = f"{b / a:.1f}x" if isinstance(a, int | float) and b and a else ""
        return fmt.format(a), fmt.format(b) if b is not None else "-", ratio

    print(_row("float accuracy", f"{ours['float_acc']:.4f}", f"{ours['float_acc']:.4f}"))
    print(_row("C-sim accuracy", *both("acc", "{:.4f}")[:2]))
    print(_row("C-sim us/sample (lower is better)", *both("us", "{:.1f}")))
    print(_row("build s (lower is better)", *both("build_s", "{:.1f}")))
    print(_row("generated code lines", *both("code_lines")[:2]))
    print(_row("generated weight lines", *both("weight_lines")[:2]))
    print(_row("DSP (tapeout est. / hls4ml mults)", *both("dsp")))
    print(_row("est. latency (cycles)", *both("latency_cycles")[:2]))
    cycles = t.get("latency_cycles")
    ns = round(cycles * 1000.0 / ours["clock_mhz"], 1) if cycles else "-"
    print(_row("est. latency (ns)", ours["latency_ns"], ns))
    reuse = ",".join(map(str, t["reuse"].values())) if t else "-"
    print(_row("reuse factors", ",".join(map(str, ours["reuse"].values())), reuse))
    if theirs is None:
        print(f"  hls4ml: not run ({why})")
    if name == "jet_mlp":
        ok = ours["latency_ns"] <= GOAL_NS and (not t or ours["dsp"] < t["dsp"])
        print(
            f"  goal (<= {GOAL_NS:g} ns with fewer DSPs than hls4ml): {'met' if ok else 'MISSED'}"
        )


def _warm_up() -> None:
    """Load torch.export's machinery once, so neither tool's build time pays for it."""
    import torch

    from compiler.frontends import load_model

    load_model(torch.nn.Linear(2, 2).eval(), example_inputs=(torch.zeros(1, 2),))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="jet_mlp,digits_cnn")
    parser.add_argument("--target", default="fpga")
    parser.add_argument(
        "--calibrator",
        default="minmax",
        choices=["minmax", "percentile", "entropy", "mse"],
        help="tapeout's activation calibrator (the quantize pass's default is minmax)",
    )
    parser.add_argument(
        "--engine-models", default="resnet50,mobilenet_v2,encoder", help="zoo models, engine"
    )
    parser.add_argument("--engine-sizes", default="B1024,B2304,B4096")
    parser.add_argument("--engine-targets", default="kv260,u250", help="other boards, B4096")
    parser.add_argument("--engine-clock", type=float, default=None, help="MHz (default: target)")
    parser.add_argument("--no-check", action="store_true", help="skip the interpreter check")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="fpga-bench-") as tmp:
        work = Path(tmp)
        os.environ["TAPEOUT_CACHE"] = str(work / "cache")  # time a cold g++ build
        _warm_up()
        for name in _names(args.models):
            ours = run_tapeout(name, args.target, work, args.calibrator)
            theirs, why = None, ""
            try:
                theirs = run_hls4ml(name, ours, work)
            except ImportError as err:
                why = f"hls4ml is not installed ({err}); pip install hls4ml to compare"
            except Exception as err:  # a peer failing must not hide tapeout's numbers
                why = f"hls4ml failed: {type(err).__name__}: {str(err)[:300]}"
            report(name, ours, theirs, why)
        from bench.fpga_engine import report_csim, report_engine

        target = "zcu104" if args.target == "fpga" else args.target
        mains = [
            (name, report_engine(name, target, work, _names(args.engine_sizes),
                                 _names(args.engine_targets), args.engine_clock))
            for name in _names(args.engine_models)
        ]  # fmt: skip
        if mains:
            report_csim(mains, not args.no_check)
    return 0


def _names(text: str) -> list[str]:
    return [n for n in text.split(",") if n and n != "none"]


if __name__ == "__main__":
    sys.exit(main())
