"""Resumable stages: IR text + weights as model input; --stop-after; inspect m.ir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.cli import main
from compiler.errors import FrontendError
from tests.tools.common import DIGITS_ONNX


def test_inspect_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", DIGITS_ONNX]) == 0
    text = capsys.readouterr().out
    (tmp_path / "m.ir").write_text(text)  # `tapeout inspect model.onnx > m.ir`
    assert main(["inspect", str(tmp_path / "m.ir")]) == 0
    assert capsys.readouterr().out == text
    with pytest.raises(FrontendError, match="no weights"):  # printable, not compilable
        compiler.import_model(tmp_path / "m.ir")


def test_ir_with_weights_compiles_like_onnx(tmp_path: Path) -> None:
    assert main(["inspect", DIGITS_ONNX, "-o", str(tmp_path / "m.ir"), "-q"]) == 0
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    from_ir = compiler.compile(str(tmp_path / "m.ir"), "reference").run(x)[0]
    from_onnx = compiler.compile(DIGITS_ONNX, "reference").run(x)[0]
    np.testing.assert_array_equal(from_ir, from_onnx)


def test_stop_after_quantize_then_resume(
    tmp_path: Path, digits_calib: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "calib.npz", **digits_calib)
    stage = tmp_path / "quantized"
    code = main(["compile", DIGITS_ONNX, "-t", "fpga", "--calib", str(tmp_path / "calib.npz"),
                 "--stop-after", "quantize", "-o", str(stage), "--json"])  # fmt: skip
    assert code == 0 and "quantize-rewrite" in json.loads(capsys.readouterr().out)["passes"]
    # Resuming runs no pass twice and needs no calibration data: the result is the graph
    # the one-go compile produces.
    resumed = compiler.compile(str(stage), "fpga", output_dir=tmp_path / "a", tb_samples=1)
    whole = compiler.compile(DIGITS_ONNX, "fpga", calibration_data=digits_calib,
                             output_dir=tmp_path / "b", tb_samples=1)  # fmt: skip
    assert resumed.graph == whole.graph
    # ... and it remembers the float model and every pass (debug and verify rely on both).
    assert resumed.summary["source_model"] == str(Path(DIGITS_ONNX).resolve())
    assert [p["name"] for p in resumed.passes] == [p["name"] for p in whole.passes]
    assert resumed.passes[-1]["options"] == whole.passes[-1]["options"]
    # The same stage serves another target (its own passes after quantize still run).
    onnx_art = compiler.compile(str(stage), "onnx", output_dir=tmp_path / "c")
    assert any(n.op == "q.requantize" for n in onnx_art.graph.nodes)


def test_stop_after_unknown_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compile", DIGITS_ONNX, "-t", "cpu", "--stop-after", "nope", "-o",
                 str(tmp_path / "s")])  # fmt: skip
    assert code == 1 and "no such pass" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
