"""export (QDQ), verify, report, diff with gates, doctor, view (in a browser when there is one)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.cli import main
from compiler.interpreter import interpret
from compiler.tools.doctor import doctor
from compiler.tools.verify import verify
from tests.tools.common import DIGITS_ONNX, PIPELINE


def test_export_artifact_is_qdq_and_runs(
    digits_int8: Path, digits_calib: dict, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    assert main(["export", str(digits_int8), "-o", str(out), "-q"]) == 0
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = digits_calib["x"][:1]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want = interpret(compiler.load(digits_int8).graph, x)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_export_quantizing_target_needs_calibration(
    tmp_path: Path, digits_calib: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.onnx"
    assert main(["export", DIGITS_ONNX, "-t", "fpga", "-o", str(out)]) == 1
    assert "calib" in capsys.readouterr().err and not out.exists()  # no silent float file
    np.savez(tmp_path / "c.npz", **digits_calib)
    code = main(["export", DIGITS_ONNX, "-t", "fpga", "--calib", str(tmp_path / "c.npz"),
                 "-o", str(out), "--json"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["qdq"] is True


def test_verify_stores_figures_in_report(
    digits_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.datasets import digits_split

    _, _, x_test, y_test = digits_split()
    x, y = x_test[:32].astype(np.float32), y_test[:32]
    result = verify(digits_int8, {"x": x}, y)
    assert result["outputs"][0]["cosine"] > 0.99
    # top-1 computed here from the float model, independently of verify
    float_graph = compiler.import_model(DIGITS_ONNX)
    want = np.mean(np.array([interpret(float_graph, s[None])[0].argmax() for s in x]) == y)
    assert result["top1_float"] == pytest.approx(want)
    saved = json.loads((digits_int8 / "report.json").read_text())
    assert saved["summary"]["verify"]["samples"] == 32
    np.savez(tmp_path / "d.npz", x=x)
    np.save(tmp_path / "y.npy", y)
    code = main(["verify", str(digits_int8), "--data", str(tmp_path / "d.npz"), "--labels",
                 str(tmp_path / "y.npy"), "--min-top1", "1.01", "--json"])  # fmt: skip
    assert code == 6 and json.loads(capsys.readouterr().out)["failures"]


def test_report_and_diff_gate(
    digits_int8: Path, digits_calib: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(digits_int8)]) == 0
    assert "digits_cnn" in capsys.readouterr().out
    wide = tmp_path / "int16"
    compiler.compile(DIGITS_ONNX, "reference", precision="int16", pipeline=PIPELINE,
                     calibration_data=digits_calib, output_dir=wide)  # fmt: skip
    code = main(["diff", str(digits_int8), str(wide), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and any("i16" in row["change"] for row in data["layers"])
    code = main(["diff", str(digits_int8), str(wide), "--max-increase", "macs=0",
                 "--max-increase", "no_such_figure=5", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 6 and len(data["failures"]) == 1 and "no_such_figure" in data["failures"][0]


def test_doctor_agrees_with_imports(capsys: pytest.CaptureFixture[str]) -> None:
    rows = {r["name"]: r for r in doctor()}
    assert rows["onnx"]["present"] == (importlib.util.find_spec("onnx") is not None)
    assert rows["g++"]["present"] == ((shutil.which("g++") or shutil.which("c++")) is not None)
    assert all(r["install"] for r in rows.values())
    assert main(["doctor", "--json"]) == 0 and json.loads(capsys.readouterr().out)["tools"]


def test_view_page_is_self_contained(digits_int8: Path, tmp_path: Path) -> None:
    page = tmp_path / "graph.html"
    assert main(["view", str(digits_int8), "-o", str(page), "-q"]) == 0
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # no network
    data = json.loads(re.search(r"const DATA = (.*);\n", text).group(1))  # type: ignore[union-attr]
    assert len(data["nodes"]) == len(compiler.load(digits_int8).graph.compute_nodes())


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="needs headless chromium (apt-get install chromium; "
                    "scripts/setup_env.sh installs it where it can)")  # fmt: skip
def test_view_page_in_headless_chromium(digits_int8: Path, tmp_path: Path) -> None:
    page = tmp_path / "graph.html"
    compiler_nodes = len(compiler.load(digits_int8).graph.compute_nodes())
    assert main(["view", str(digits_int8), "-o", str(page), "-q"]) == 0
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body is not None, proc.stderr[-2000:]
    assert f'data-rendered="{compiler_nodes}"' in body.group(0)  # the script drew every node
    assert 'data-errors=""' in body.group(0)  # and raised nothing
