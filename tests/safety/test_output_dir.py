"""Output folders: only a previous artifact is replaced; refusals come before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.errors import IntegrityError, OutputError
from compiler.ir import Graph, TensorType
from compiler.outdir import check_output_dir


def mlp() -> Graph:
    g = Graph("mlp")
    rng = np.random.default_rng(0)
    x = g.add_input("x", TensorType("f32", (2, 4)))
    w = g.add_const("fc.weight", rng.standard_normal((3, 4)).astype(np.float32))
    b = g.add_const("fc.bias", rng.standard_normal(3).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w, b], {"act": "relu"}, loc="fc").output]
    return g


def test_user_folder_is_never_replaced(tmp_path: Path) -> None:
    user = tmp_path / "project"
    (user / "src").mkdir(parents=True)
    (user / "src" / "main.c").write_text("int main() {}")
    with pytest.raises(OutputError, match="not a tapeout artifact"):
        compiler.compile(mlp(), "reference", output_dir=user, pipeline=[])
    assert (user / "src" / "main.c").read_text() == "int main() {}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no staging left


def test_previous_artifact_and_empty_folder_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    compiler.compile(mlp(), "reference", output_dir=tmp_path / "empty", pipeline=[])
    compiler.compile(mlp(), "reference", output_dir=tmp_path / "empty", pipeline=[])
    assert (tmp_path / "empty" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_file_cwd_and_model_folder_are_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    some_file = tmp_path / "notes.txt"
    some_file.write_text("keep me")
    with pytest.raises(OutputError, match="is a file"):
        compiler.compile(mlp(), "reference", output_dir=some_file, pipeline=[])
    assert some_file.read_text() == "keep me"
    monkeypatch.chdir(tmp_path)
    for bad in (".", "..", str(tmp_path)):
        with pytest.raises(OutputError):
            check_output_dir(bad)
    model = tmp_path / "models" / "m.ir"
    model.parent.mkdir()
    model.write_text(str(mlp()))
    with pytest.raises(OutputError, match="holds the input model"):
        compiler.compile(str(model), "reference", output_dir=model.parent, pipeline=[])
    assert model.is_file()


def test_unwritable_parent_is_found_before_the_passes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from compiler.pass_manager import PassManager

    def no_passes(*args: object) -> None:
        raise AssertionError("the passes ran before the output folder was checked")

    monkeypatch.setattr(PassManager, "run", no_passes)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="is a file"):
        compiler.compile(mlp(), "reference", output_dir=blocker / "out", pipeline=[])
    if os.geteuid() != 0:  # root may write anywhere: the mode bits cannot refuse it
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="cannot write"):
            compiler.compile(mlp(), "reference", output_dir=ro / "out", pipeline=[])


def test_temporary_artifact_is_removed_at_exit_unless_saved(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        import compiler
        from tests.safety.test_output_dir import mlp
        a = compiler.compile(mlp(), "reference", pipeline=[])
        b = compiler.compile(mlp(), "reference", pipeline=[])
        b.save({str(tmp_path / "kept")!r})
        print(a.path.parent); print(b.path)
    """)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert not Path(out[0]).exists()
    assert Path(out[1]) == (tmp_path / "kept").resolve()
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert compiler.load(tmp_path / "kept").run(np.ones((2, 4), np.float32))


def test_sigterm_leaves_no_staging_folder(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from compiler.outdir import staged_dir, terminate_on_sigterm
        terminate_on_sigterm()
        with staged_dir(__import__("pathlib").Path({str(tmp_path / "out")!r})) as tmp:
            (tmp / "half.txt").write_text("x")
            print("staged", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


def test_manifest_hashes_and_tamper_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes((Path(compiler.__file__).parent / "data" / "digits_cnn.onnx").read_bytes())
    compiler.compile(str(model), "reference", output_dir=tmp_path / "a", pipeline=[])
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    import hashlib

    assert manifest["input_model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert set(manifest["files"]) >= {"graph.ir", "constants.npz", "report.json"}
    assert manifest["versions"]["onnx"] and manifest["target_sha256"]
    with np.load(tmp_path / "a" / "constants.npz") as npz:
        consts = {k: npz[k] * 2 for k in npz.files}
    np.savez(tmp_path / "a" / "constants.npz", **consts)
    with pytest.raises(IntegrityError, match="constants.npz"):
        compiler.load(tmp_path / "a")
    assert compiler.load(tmp_path / "a", verify=False).graph.constants
