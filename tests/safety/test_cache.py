"""The one cache root, corrupt entries moved aside and rebuilt, and the lock under contention."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from compiler import cache


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAPEOUT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_backend_uses_the_one_root(root: Path) -> None:
    from backends.hls.artifact import _cache_dir
    from backends.tvm.tune import cache_root

    assert cache.cache_root() == root
    assert _cache_dir() == root / "hls"
    assert cache_root({}) == root / "tvm"
    assert cache_root({"cache_dir": "/elsewhere"}) == Path("/elsewhere")


CORRUPT = {
    "garbage": b"\x89\xff\x00binary\xfe",
    "truncated": b'{"trials": 3, "sec',
    "wrong shape": b'["not", "a", "state"]',
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_state_file_is_moved_aside_and_rebuilt(
    root: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    from backends.tvm.tune import _state, check_tuning_folder

    folder = root / "tvm" / "abc"
    folder.mkdir(parents=True)
    (folder / "state.json").write_bytes(CORRUPT[kind])
    with caplog.at_level(logging.WARNING):
        check_tuning_folder(folder)
    assert "corrupt" in caplog.text
    assert not folder.exists()  # the whole workload folder went aside, records and all
    assert [p.name.split(".corrupt-")[0] for p in folder.parent.iterdir()] == ["abc"]
    assert _state(folder) == {"trials": 0, "seconds": 0.0}


@pytest.mark.parametrize("content", [b"\xff\xfe garbage\n", b'[0, [1, 2]]\n[0, [1, ', b"{}\n{x\n"])
def test_corrupt_tuning_database_is_moved_aside(root: Path, content: bytes) -> None:
    from backends.tvm.tune import check_tuning_folder

    folder = root / "tvm" / "w"
    folder.mkdir(parents=True)
    (folder / "database_workload.json").write_text('["a", "b"]\n')
    (folder / "database_tuning_record.json").write_bytes(content)
    check_tuning_folder(folder)
    assert not folder.exists() and len(list(folder.parent.iterdir())) == 1


def test_sound_folder_is_kept(root: Path) -> None:
    from backends.tvm.tune import check_tuning_folder

    folder = root / "tvm" / "ok"
    folder.mkdir(parents=True)
    (folder / "database_tuning_record.json").write_text('[0, {"a": 1}]\n')
    (folder / "state.json").write_text(json.dumps({"trials": 4, "seconds": 1.5}))
    check_tuning_folder(folder)
    assert (folder / "state.json").is_file()


def test_unwritable_cache_is_a_typed_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TAPEOUT_CACHE", str(tmp_path / "file"))
    with pytest.raises(cache.CacheError, match="TAPEOUT_CACHE"):
        cache.cache_dir("hls")


WORKER = """
import sys; sys.path.insert(0, {repo!r})
from pathlib import Path
from compiler import cache
import time
entry = Path({entry!r})
while not (entry.parent / "go").exists():  # start together, so the two really contend
    time.sleep(0.005)
for _ in range(200):
    with cache.locked(entry):  # read-modify-write, as a tuning run updates state.json
        state = cache.read_json(entry, {{"n": 0}})
        cache.write_json(entry, {{"n": state["n"] + 1}})
"""


def test_two_processes_sharing_a_cache_lose_no_update(root: Path) -> None:
    entry = cache.cache_dir("tvm") / "state.json"
    code = textwrap.dedent(WORKER.format(repo=str(Path(__file__).parents[2]), entry=str(entry)))
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    (entry.parent / "go").write_text("")
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert json.loads(entry.read_text()) == {"n": 400}
    assert sorted(p.name for p in entry.parent.iterdir()) == ["go", "state.json",
                                                              "state.json.lock"]


COMPILE = """
import sys; sys.path.insert(0, {repo!r})
import numpy as np
from compiler import api
from tests.safety.test_output_dir import mlp
rng = np.random.default_rng(0)
calib = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(8)]
art = api.compile(mlp(), "asic", precision="int8", calibration_data=calib)
np.save({out!r}, art.run(np.ones((2, 4), np.float32))[0])
"""


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                    reason="needs gcc and make")
def test_two_compiles_sharing_a_cache_at_once(root: Path, tmp_path: Path) -> None:
    """Two ASIC compiles of one model at once: both build into one cache entry and agree."""
    repo = str(Path(__file__).parents[2])
    outs = [tmp_path / f"y{i}.npy" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", COMPILE.format(repo=repo, out=str(o))],
                              stderr=subprocess.PIPE, text=True) for o in outs]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert np.array_equal(np.load(outs[0]), np.load(outs[1]))
    builds = [p for p in (root / "asic").iterdir() if p.is_dir()]
    assert len(builds) == 1 and (builds[0] / "libmodel.so").is_file()
