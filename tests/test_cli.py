"""The tapeout CLI: exit codes, --json, compile/inspect/run/targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.cli import main

DIGITS_ONNX = str(Path(compiler.__file__).parent / "data" / "digits_cnn.onnx")


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_targets_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("targets", "--json", capsys=capsys)
    data = json.loads(out)
    assert code == 0 and data["ok"] and any(t["name"] == "zcu104" for t in data["targets"])


def test_compile_run_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "build"
    code, out, err = run_cli("compile", DIGITS_ONNX, "--target", "reference", "-o", str(out_dir),
                             "--json", capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["layers"]
    x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli("run", str(out_dir), "--input", str(tmp_path / "x.npy"), "--json",
                             "-o", str(tmp_path / "y.npz"), capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["outputs"][0]["shape"] == [1, 10]
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["arr_0"], compiler.load(out_dir).run(x)[0])
    code, out, _ = run_cli("inspect", DIGITS_ONNX, capsys=capsys)
    assert code == 0 and out.startswith("graph @") and "nn.conv2d" in out


def test_print_after_all_shows_each_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("inspect", DIGITS_ONNX, "-p", "fold-batchnorm,fuse-bias-act",
                           "--print-after-all", capsys=capsys)
    assert code == 0
    assert "IR after fold-batchnorm" in out and "IR after fuse-bias-act" in out


def test_errors_have_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(Path(DIGITS_ONNX).read_bytes()[:100])
    code, _, err = run_cli("compile", str(bad), "-o", str(tmp_path / "o"), capsys=capsys)
    assert code == 3 and "FrontendError" in err
    assert not (tmp_path / "o").exists()
    code, out, _ = run_cli("compile", DIGITS_ONNX, "--target", "nope", "-o", str(tmp_path / "o"),
                           "--json", capsys=capsys)
    assert code == 2 and json.loads(out)["error"]["type"] == "TargetError"  # bad usage
    code, _, err = run_cli("run", str(tmp_path), "--input", str(tmp_path / "x.npy"),
                           capsys=capsys)
    assert code == 5 and "not a tapeout artifact" in err


def test_console_script_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "compiler.cli", "compile"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_python_m_runs_every_command(tmp_path: Path) -> None:
    # ``python -m compiler.cli export`` used to say "invalid choice": export/debug were
    # registered on the imported module, not on the one running as __main__.
    out = tmp_path / "digits.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "compiler.cli", "export", DIGITS_ONNX, "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    onnx = pytest.importorskip("onnx")
    assert any(n.op_type == "Conv" for n in onnx.load(out).graph.node)
    proc = subprocess.run(
        [sys.executable, "-m", "compiler", "targets", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert any(t["name"] == "zcu104" for t in json.loads(proc.stdout)["targets"])
