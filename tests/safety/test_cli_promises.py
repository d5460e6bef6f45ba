"""The command line keeps its promises: one JSON object, exit codes, one-line interrupts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.cli import main

DIGITS = str(Path(compiler.__file__).parent / "data" / "digits_cnn.onnx")
REPO = str(Path(__file__).parents[2])


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args", [
    ["compile"],                                    # argparse: missing arguments
    ["compile", DIGITS, "-o", "x", "--precision", "int3"],  # argparse: bad choice
    ["frobnicate"],                                 # argparse: unknown command
])
def test_usage_errors_under_json_are_one_object(capsys: pytest.CaptureFixture[str],
                                                args: list[str]) -> None:
    code, out, _ = cli(capsys, *args, "--json")
    assert code == 2
    data = json.loads(out)  # exactly one JSON document on stdout
    assert data["ok"] is False and data["error"]["type"] == "UsageError"


def test_usage_error_without_json_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "compile")
    assert code == 2 and out == "" and "usage:" in err


def test_native_prints_do_not_reach_stdout_under_json() -> None:
    script = textwrap.dedent(f"""
        import os, sys; sys.path.insert(0, {REPO!r})
        from compiler import cli
        help_text, add, handler = cli.COMMANDS["targets"]
        def noisy(args):
            os.write(1, b"[INFO] Logging directory: /tmp/x\\n")  # as TVM's C++ logger does
            print("chatter")
            return handler(args)
        cli.COMMANDS["targets"] = (help_text, add, noisy)
        sys.exit(cli.main(["targets", "--json"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["ok"] is True
    assert "[INFO]" in proc.stderr and "chatter" in proc.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--target", "zcu105"], 2, "zcu104"),
    (["-p", "fold-batchnorn"], 2, "unknown pass"),
    (["--print-after", "fuse-bias-akt"], 2, "did you mean 'fuse-bias-act'"),
    (["--option", "tunee=8", "--target", "cpu"], 2, "did you mean 'tune'"),
    (["--option", "novalue"], 2, "KEY=VALUE"),
])
def test_typos_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                args: list[str], code: int, message: str) -> None:
    got, out, _ = cli(capsys, "compile", DIGITS, "-o", str(tmp_path / "o"), *args, "--json")
    assert got == code and message in json.loads(out)["error"]["message"]
    assert not (tmp_path / "o").exists()


def test_output_folder_refusals_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "compile", DIGITS, "-o", ".")
    assert code == 2 and "OutputError" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "compile", DIGITS, "-o", "keep.txt")
    assert code == 2 and (tmp_path / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _slash_named_model(path: Path) -> None:
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    node = helper.make_node("MatMul", ["gpu_0/data_0", "w"], ["out"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("gpu_0/data_0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_calibration_names_keep_the_model_spelling(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    _slash_named_model(model)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", **{"gpu_0/data_0": rng.random((16, 1, 4), np.float32)})
    code, out, err = cli(capsys, "compile", str(model), "--precision", "int8", "--calib",
                         str(tmp_path / "calib.npz"), "-o", str(tmp_path / "a"), "--json")
    assert code == 0, out + err
    np.savez(tmp_path / "typo.npz", **{"gpu_0/data_1": rng.random((16, 1, 4), np.float32)})
    code, out, _ = cli(capsys, "compile", str(model), "--precision", "int8", "--calib",
                       str(tmp_path / "typo.npz"), "-o", str(tmp_path / "b"), "--json")
    assert code != 0 and "no array for input" in json.loads(out)["error"]["message"]
    np.savez(tmp_path / "extra.npz", **{"gpu_0/data_0": rng.random((16, 1, 4), np.float32),
                                        "labels": np.zeros(16)})
    code, out, _ = cli(capsys, "compile", str(model), "--precision", "int8", "--calib",
                       str(tmp_path / "extra.npz"), "-o", str(tmp_path / "c"), "--json")
    assert code != 0 and "'labels'" in json.loads(out)["error"]["message"]


def test_calib_where_nothing_quantizes(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    _slash_named_model(model)
    np.savez(tmp_path / "calib.npz", x=np.zeros((4, 1, 4), np.float32))
    code, out, _ = cli(capsys, "compile", str(model), "--calib", str(tmp_path / "calib.npz"),
                       "-o", str(tmp_path / "a"), "--json")
    assert code == 2 and "nothing quantizes" in json.loads(out)["error"]["message"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_one_line(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    script = textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {REPO!r})
        from pathlib import Path
        from compiler import cli
        from compiler.outdir import staged_dir
        help_text, add, handler = cli.COMMANDS["targets"]
        def slow(args):
            with staged_dir(Path({str(tmp_path / "out")!r})) as tmp:
                (tmp / "half").write_text("x")
                print("ready", file=sys.stderr, flush=True)
                time.sleep(60)
        cli.COMMANDS["targets"] = (help_text, add, slow)
        sys.exit(cli.main(["targets"]))
    """)
    # A shell's background job starts with SIGINT ignored, and a child inherits that (then
    # Python installs no KeyboardInterrupt handler): start it as a terminal would.
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    assert proc.stderr is not None and proc.stderr.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(sig)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == code
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_run_inputs_by_model_spelling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    _slash_named_model(model)
    assert cli(capsys, "compile", str(model), "-o", str(tmp_path / "a"))[0] == 0
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.savez(tmp_path / "x.npz", **{"gpu_0/data_0": x})
    code, out, err = cli(capsys, "run", str(tmp_path / "a"), "-i", str(tmp_path / "x.npz"),
                         "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"][0]["values"] == x.reshape(-1).tolist()  # w is eye(4)
    np.savez(tmp_path / "typo.npz", **{"gpu_0/data_9": x})
    code, out, _ = cli(capsys, "run", str(tmp_path / "a"), "-i", str(tmp_path / "typo.npz"),
                       "--json")
    assert code == 1 and "did you mean" in json.loads(out)["error"]["message"]
