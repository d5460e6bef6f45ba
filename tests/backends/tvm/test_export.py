"""Exported artifacts: reload from disk, and foreign architectures (aarch64) built but not run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.errors import BackendError
from compiler.interpreter import interpret
from compiler.ir import Graph
from tests.backends.ir_text import graph_from_text

pytestmark = pytest.mark.tvm


def _graph() -> Graph:
    rng = np.random.default_rng(5)
    return graph_from_text(
        """
        graph @small(%x: f32[1,4,6,6]) -> (f32[1,8,1,1]) {
          %w: f32[8,4,3,3] = const @w
          %conv2d: f32[1,8,6,6] = nn.conv2d(%x, %w) {pads=[1, 1, 1, 1], act="relu"}
          %pool: f32[1,8,1,1] = nn.global_avg_pool(%conv2d)
          return %pool
        }
        """,
        {"w": rng.standard_normal((8, 4, 3, 3)).astype(np.float32)},
    )


def test_saved_artifact_reloads_and_runs(tmp_path: Path) -> None:
    art = api.compile(_graph(), "cpu", pipeline=[], output_dir=tmp_path / "art")
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    again = api.load(tmp_path / "art")
    assert (tmp_path / "art" / "model.so").is_file()
    np.testing.assert_allclose(again.run(x)[0], interpret(art.graph, x)[0], rtol=1e-5, atol=1e-6)


CROSS_CC = "aarch64-linux-gnu-gcc"


def _is_aarch64_library(path: Path) -> bool:
    header = path.read_bytes()[:20]
    # a 64-bit ELF whose e_machine is EM_AARCH64 (183)
    machine = int.from_bytes(header[18:20], "little")
    return header[:4] == b"\x7fELF" and header[4] == 2 and machine == 183


def _refuses_to_run(art: object) -> None:
    assert art.summary["runnable_here"] is False  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="aarch64"):
        art.run(np.zeros((1, 4, 6, 6), np.float32))  # type: ignore[attr-defined]


@pytest.mark.skipif(
    not shutil.which(CROSS_CC), reason=f"no {CROSS_CC} (Debian: gcc-aarch64-linux-gnu)"
)
def test_aarch64_is_cross_compiled_with_the_toolchain(tmp_path: Path) -> None:
    art = api.compile(_graph(), "aarch64", pipeline=[], output_dir=tmp_path / "arm")
    assert _is_aarch64_library(tmp_path / "arm" / "model.so")
    assert f"cross-compiled with {CROSS_CC}" in art.summary["note"]
    _refuses_to_run(art)


def test_aarch64_without_a_toolchain_leaves_objects_and_a_build_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.tvm import build

    monkeypatch.setitem(build.ARCHES, "aarch64", (("aarch64", "arm64"), "no-such-aarch64-gcc"))
    art = api.compile(_graph(), "aarch64", pipeline=[], output_dir=tmp_path / "arm")
    folder = tmp_path / "arm"
    assert not (folder / "model.so").exists()
    with tarfile.open(folder / "model.tar") as tar:
        assert any(m.name.endswith(".o") for m in tar.getmembers())
    assert "no no-such-aarch64-gcc on this machine" in art.summary["note"]
    _refuses_to_run(art)
    if shutil.which(CROSS_CC):  # the script links what it was given into an aarch64 library
        env = {**os.environ, "CC": CROSS_CC}
        subprocess.run(["sh", str(folder / "build.sh")], check=True, env=env, capture_output=True)
        assert _is_aarch64_library(folder / "model.so")


def test_a_failing_cross_link_falls_back_to_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.tvm import build

    fake = tmp_path / "bin" / "broken-aarch64-gcc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'ld: cannot find crti.o' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(build.ARCHES, "aarch64", (("aarch64", "arm64"), fake.name))
    art = api.compile(_graph(), "aarch64", pipeline=[], output_dir=tmp_path / "arm")
    assert not (tmp_path / "arm" / "model.so").exists()
    assert (tmp_path / "arm" / "model.tar").is_file()
    assert "broken-aarch64-gcc failed to link" in art.summary["note"]
    _refuses_to_run(art)
