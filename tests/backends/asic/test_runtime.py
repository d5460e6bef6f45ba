"""The NPU runtime's reference implementation (the functional simulator), tested alone."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compiler import numerics

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


class Stage(ctypes.Structure):
    _fields_ = [
        ("shift", ctypes.POINTER(ctypes.c_int32)),
        ("out_zero_point", ctypes.c_int32),
        ("clip_min", ctypes.c_int32),
        ("clip_max", ctypes.c_int32),
    ]


class Config(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_int32), ("cols", ctypes.c_int32), ("sram_kib", ctypes.c_int32)]


@pytest.fixture(scope="module")
def npu(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    from backends.asic.build import NpuStats, runtime_dir

    out = Path(tmp_path_factory.mktemp("npu")) / "libnpu.so"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-std=c11",
            "-shared",
            "-fPIC",
            "-o",
            str(out),
            str(runtime_dir() / "npu_runtime.c"),
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(out))
    lib.npu_get_stats.restype = NpuStats
    return lib


def _ptr(a: np.ndarray, ctype: type) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctype))


@pytest.mark.parametrize("rows,cols", [(16, 16), (4, 8), (3, 5)])
def test_dense_with_output_stage_matches_numerics(npu: ctypes.CDLL, rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * cols)
    m, k, n = 7, 37, 21  # not multiples of any tile: partial tiles on both edges
    x = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    shift = rng.integers(0, 12, n).astype(np.int32)
    assert npu.npu_init(ctypes.byref(Config(rows, cols, 512))) == 0
    out = np.empty((m, n), np.int8)
    stage = Stage(_ptr(shift, ctypes.c_int32), 3, -100, 90)
    rc = npu.npu_dense(
        _ptr(x, ctypes.c_int8),
        m,
        k,
        5,
        _ptr(w, ctypes.c_int8),
        n,
        _ptr(bias, ctypes.c_int32),
        1,
        ctypes.byref(stage),
        out.ctypes.data_as(ctypes.c_void_p),
    )
    assert rc == 0
    acc = np.maximum((x.astype(np.int64) - 5) @ w.T.astype(np.int64) + bias, 0)
    want = numerics.requantize(acc, np.ones(n, np.int64), shift.astype(np.int64), 3, "i8", axis=1)
    assert np.array_equal(out, np.clip(want, -100, 90))
    stats = npu.npu_get_stats()
    tiles = -(-k // rows) * -(-n // cols)
    assert (stats.tiles, stats.cycles, stats.macs) == (tiles, tiles * (m + rows + cols), m * k * n)


def test_accumulator_wraps_like_int32(npu: ctypes.CDLL) -> None:
    k = 140000  # 140000 * 127 * 127 > 2^31: the int32 sum wraps
    x = np.full((1, k), 127, np.int8)
    w = np.full((1, k), 127, np.int8)
    out = np.empty((1, 1), np.int32)
    assert npu.npu_init(ctypes.byref(Config(16, 16, 512))) == 0
    rc = npu.npu_dense(
        _ptr(x, ctypes.c_int8),
        1,
        k,
        0,
        _ptr(w, ctypes.c_int8),
        1,
        None,
        0,
        None,
        out.ctypes.data_as(ctypes.c_void_p),
    )
    assert rc == 0
    assert out[0, 0] == numerics.wrap(np.array(k * 127 * 127), "i32")
