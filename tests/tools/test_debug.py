"""tapeout debug: like-with-like layer figures, stage bisection, naming a broken layer, --fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.cli import main
from compiler.target import load_target
from compiler.tools.debug import debug
from compiler.tools.passes_run import compile_with
from tests.tools.common import DIGITS_ONNX, PIPELINE

BROKEN = "/conv2/Conv"


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, digits_calib: dict) -> Path:
    """The digits CNN at int8 with one layer's precision broken on purpose: its output range
    calibrated to the 90th percentile, so a tenth of its values saturate."""
    out = tmp_path_factory.mktemp("broken") / "digits-broken"
    override = {BROKEN: {"calibrator": "percentile", "percentile": 90.0}}
    quant = {"precision": "int8", "overrides": override}
    compile_with(DIGITS_ONNX, load_target("reference"), PIPELINE, out, digits_calib, quant)
    return out


def test_healthy_model_like_with_like(digits_int8: Path, digits_calib: dict) -> None:
    report = debug(digits_int8, DIGITS_ONNX, [digits_calib["x"][:1]])
    rows = {r["loc"]: r for r in report.layers.rows}
    # conv1 (fused with its ReLU) against the fused float conv1: the issue saw -5.6 dB when
    # it was compared with the pre-ReLU float tensor.
    assert rows["/conv1/Conv"]["sqnr_db"] > 30
    assert rows["/conv1/Conv"]["stands_for"] != "/conv1/Conv"  # the ReLU it absorbed
    stages = {s["stage"]: s["sqnr_db"] for s in report.stages}
    assert math.isinf(stages["imported -> fused"]) or stages["imported -> fused"] > 80
    assert report.first_stage is None and report.fix is None


def test_debug_names_the_broken_layer(broken: Path, digits_calib: dict) -> None:
    report = debug(broken, DIGITS_ONNX, [digits_calib["x"][:1]])
    assert report.first_stage is not None and report.first_stage["stage"] == "fused -> quantized"
    assert report.layers.worst_loss is not None and report.layers.worst_loss["loc"] == BROKEN
    assert report.layers.first_below is not None and report.layers.first_below["loc"] == BROKEN
    assert report.fix is not None and report.fix["layer"] == BROKEN


def test_debug_fix_cli(
    broken: Path, digits_calib: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", digits_calib["x"][:1])
    np.savez(tmp_path / "calib.npz", **digits_calib)
    fixed = tmp_path / "fixed"
    code = main(["debug", str(broken), DIGITS_ONNX, "--input", str(tmp_path / "x.npy"),
                 "--fix", "--calib", str(tmp_path / "calib.npz"), "--fix-output", str(fixed),
                 "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["worst_layer"]["loc"] == BROKEN
    assert data["fixed"]["output_sqnr_db"] > data["fixed"]["before_sqnr_db"] + 10
    # The user's artifact is left as it was; the fix is a new one.
    assert compiler.load(broken).graph != compiler.load(fixed).graph
