"""Reports that read like a datasheet: units, the estimate disclaimer, a utilisation ceiling,
per-layer cost on CPU targets, per-layer SQNR in report.json; fusion provenance in the IR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import compiler
from compiler.errors import BackendError
from compiler.ir.parser import parse
from compiler.report import layer_rows
from compiler.target import load_target
from tests.tools.common import DIGITS_ONNX


@pytest.fixture(scope="module")
def fpga_stage(tmp_path_factory: pytest.TempPathFactory, digits_calib: dict) -> Path:
    """The digits CNN calibrated once for the FPGA (a stage every test here resumes)."""
    from compiler.tools.stage import compile_stage

    out = tmp_path_factory.mktemp("stage") / "quantized"
    compile_stage(DIGITS_ONNX, "fpga", out, "quantize", calibration_data=digits_calib)
    return out


def test_fpga_report_says_estimates_and_units(fpga_stage: Path, tmp_path: Path) -> None:
    art = compiler.compile(str(fpga_stage), "fpga", output_dir=tmp_path / "a", tb_samples=1)
    first, *_ = art.report().splitlines()
    assert first.startswith("ESTIMATES:") and "model" in first
    assert "DSP [slices]" in art.report() and "latency [cycles]" in art.report()


def test_max_utilization_is_a_ceiling(fpga_stage: Path, tmp_path: Path) -> None:
    full = compiler.compile(str(fpga_stage), "fpga", output_dir=tmp_path / "a", tb_samples=1)
    capped = compiler.compile(str(fpga_stage), "fpga", output_dir=tmp_path / "b", tb_samples=1,
                              max_utilization=0.5)  # fmt: skip
    assert capped.summary["dsp"] <= 0.5 * capped.summary["dsp_budget"]
    assert capped.summary["latency_cycles"] >= full.summary["latency_cycles"]
    # fewer parallel products need fewer pipeline registers
    assert 0 < capped.summary["ff"] <= full.summary["ff"] and "ff_used_pct" in full.summary
    with pytest.raises(BackendError, match="max_utilization"):
        compiler.compile(str(fpga_stage), "fpga", output_dir=tmp_path / "c", max_utilization=2)
    assert not (tmp_path / "c").exists()


def test_report_json_has_per_layer_sqnr(digits_int8: Path) -> None:
    data = json.loads((digits_int8 / "report.json").read_text())
    quantized = {layer["name"]: layer["sqnr_db"] for layer in data["quantization"][0]["layers"]}
    rows = [r for r in data["layers"] if "sqnr_db" in r]
    assert rows and all(r["loc"] in quantized for r in rows)
    assert all(r["sqnr_db"] == pytest.approx(quantized[r["loc"]], abs=0.01) for r in rows)


def test_cpu_rows_have_roofline_cost() -> None:
    graph = compiler.import_model(DIGITS_ONNX)
    peak = load_target("cpu").cpu.peak_gflops_fp32  # type: ignore[union-attr]
    rows = {r["loc"]: r for r in layer_rows(graph, peak)}
    conv2 = rows["/conv2/Conv"]
    macs = 8 * 8 * 32 * 16 * 9  # 8x8 outputs, 32 channels, 16x3x3 each
    assert conv2["macs"] == macs and conv2["weight_bytes"] == (32 * 16 * 9 + 32) * 4
    assert conv2["roofline_us"] == pytest.approx(2 * macs / (peak * 1e9) * 1e6, rel=1e-2)


def test_fused_provenance_prints_and_parses() -> None:
    graph = compiler.import_model(DIGITS_ONNX)
    from compiler.pass_manager import run_pipeline

    run_pipeline(graph, "fold-batchnorm,fuse-bias-act")
    conv1 = next(n for n in graph.nodes if n.loc == "/conv1/Conv")
    assert conv1.fused == ("/bn1/BatchNormalization", "/Relu")
    again = parse(str(graph), dict(graph.constants))
    assert again == graph and next(n for n in again.nodes if n.loc == "/conv1/Conv").fused
