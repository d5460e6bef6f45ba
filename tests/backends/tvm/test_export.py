"""Exported artifacts: reload from disk, and foreign architectures (aarch64) built but not run."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.errors import BackendError
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType

pytestmark = pytest.mark.tvm


def _graph() -> Graph:
    rng = np.random.default_rng(5)
    g = Graph("small")
    x = g.add_input("x", TensorType("f32", (1, 4, 6, 6)))
    w = g.add_const("w", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    c = g.add_node("nn.conv2d", [x, w], {"pads": [1, 1, 1, 1], "act": "relu"}).output
    g.outputs = [g.add_node("nn.global_avg_pool", [c]).output]
    return g


def test_saved_artifact_reloads_and_runs(tmp_path: Path) -> None:
    art = api.compile(_graph(), "cpu", pipeline=[], output_dir=tmp_path / "art")
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    again = api.load(tmp_path / "art")
    assert (tmp_path / "art" / "model.so").is_file()
    np.testing.assert_allclose(again.run(x)[0], interpret(art.graph, x)[0], rtol=1e-5, atol=1e-6)


def test_aarch64_is_cross_built_or_left_as_objects(tmp_path: Path) -> None:
    art = api.compile(_graph(), "aarch64", pipeline=[], output_dir=tmp_path / "arm")
    folder = tmp_path / "arm"
    if shutil.which("aarch64-linux-gnu-gcc"):
        assert (folder / "model.so").is_file()
    else:
        assert (folder / "build.sh").is_file()
        with tarfile.open(folder / "model.tar") as tar:
            assert any(m.name.endswith(".o") for m in tar.getmembers())
        assert "aarch64-linux-gnu-gcc" in art.summary["note"]
    assert art.summary["runnable_here"] is False
    with pytest.raises(BackendError, match="aarch64"):
        art.run(np.zeros((1, 4, 6, 6), np.float32))
