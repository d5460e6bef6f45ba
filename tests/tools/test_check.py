"""tapeout check: every unsupported node per target, costs, no calibration needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiler.cli import main
from compiler.ir.parser import parse
from compiler.tools.check import check, graph_cost
from compiler.tools.stage import write_graph
from tests.tools.common import DIGITS_ONNX

# conv1 16x(1x3x3) on 8x8, conv2 32x(16x3x3) on 8x8, pool to 4x4, conv3 32x(32x3x3) on 4x4,
# fc 10x(32*4*4): the digits CNN's layers as tests/cases.py builds them.
DIGITS_MACS = 64 * 16 * 9 + 64 * 32 * 16 * 9 + 16 * 32 * 32 * 9 + 10 * 512


def test_check_digits_for_fpga_cpu_onnx() -> None:
    report = check(DIGITS_ONNX, ["fpga", "cpu", "onnx"])
    assert report.ok, report.format()
    by_target = {t.target: t for t in report.targets}
    for t in by_target.values():
        assert t.cost["macs"] == DIGITS_MACS
    fpga = by_target["fpga"]
    assert fpga.cost["weight_bytes"] < by_target["cpu"].cost["weight_bytes"]  # int8 vs f32
    assert {"dsp", "bram18k", "lut", "latency_us"} <= set(fpga.estimate)
    assert by_target["cpu"].estimate["compute_bound_latency_us"] > 0


def test_check_lists_every_unsupported_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two softmaxes and a layer norm: the FPGA backend takes none of them, the CPU all.
    text = """graph @g(%x: f32[1,16]) -> (f32[1,16]) {
  %w: f32[16,16] = const @w
  %d: f32[1,16] = nn.dense(%x, %w) loc("fc")
  %s: f32[1,16] = nn.softmax(%d) {axis=-1} loc("sm1")
  %t: f32[1,16] = nn.softmax(%s) {axis=-1} loc("sm2")
  return %t
}"""
    graph = parse(text, {"w": np.eye(16, dtype=np.float32)})
    model = write_graph(graph, tmp_path / "g.ir")
    report = check(model, ["fpga", "cpu"])
    fpga, cpu = report.targets
    assert cpu.ok
    found = {(u.op, u.location) for u in fpga.unsupported}
    assert {("nn.softmax", "sm1"), ("nn.softmax", "sm2")} <= found
    assert all(u.reason for u in fpga.unsupported)
    assert fpga.partition["nodes_elsewhere"] == 2
    # The CLI exits 4 (unsupported ops) and still prints the whole report as JSON.
    assert main(["check", str(model), "-t", "fpga", "--json"]) == 4
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and len(data["targets"][0]["unsupported"]) == len(fpga.unsupported)


def test_check_cli_exit_code_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", DIGITS_ONNX, "-t", "onnx", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] and data["targets"][0]["cost"]["macs"] == DIGITS_MACS


def test_peak_activation_memory() -> None:
    # x (64 B) -> a (64 B) -> b (64 B): at most two live at once, plus the input while a is
    # computed: x + a = 128 B, then a + b = 128 B (x is dead after a).
    text = """graph @g(%x: f32[16]) -> (f32[16]) {
  %a: f32[16] = nn.relu(%x)
  %b: f32[16] = nn.relu(%a)
  return %b
}"""
    assert graph_cost(parse(text))["peak_activation_bytes"] == 128
