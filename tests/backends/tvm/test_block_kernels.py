"""The ``q.block_dense`` kernels alone (``backends/tvm/kernels_blocks.py``, the GEMV, and
``backends/tvm/kernels_blocks_gemm.py``, a prefill chunk's GEMM) against
``compiler.numerics.block_dense``, bit for bit, on the shapes their blocking must handle:
rows that are not a multiple of the register block (padded rows), a partial tile of output
rows, weights at both ends of their range (the stored ``q + offset`` reaches 0 and 255),
blocks of 64 with float32 scales, a zero activation block and a tiny one whose scale
underflows. Each kernel also runs with 16-bit activation codes (``act_bits=16``: two int8
planes per dot product), with blocks of 128 at the int32 sums' largest range."""

from __future__ import annotations

import numpy as np
import pytest

from backends.tvm.kernels_blocks import ROW_BLOCK, block_dense_func, layout_for, min_operand, pack
from backends.tvm.kernels_blocks_gemm import GEMM_ROWS, block_gemm_func
from compiler.numerics import block_dense
from compiler.target import load_target

pytestmark = pytest.mark.tvm

RANGES = {"i4": (-8, 7), "u4": (0, 15), "i8": (-128, 127), "u8": (0, 255)}


def _case(dtype: str, n: int, k: int, group: int, rows: int, has_min: bool) -> tuple:
    rng = np.random.default_rng(n * rows + k)
    lo, hi = RANGES[dtype]
    q = rng.integers(lo, hi + 1, size=(n, k))
    q[0, :4], q[-1, -4:] = lo, hi  # the extremes of the stored byte
    q = q.astype(np.uint8 if dtype.startswith("u") else np.int8)
    d = (rng.random((n, k // group)) * 0.05 + 0.001).astype(np.float32)
    m = (rng.standard_normal((n, k // group)) * 0.1).astype(np.float32) if has_min else None
    x = (rng.standard_normal((rows, k)) * 3).astype(np.float32)
    x[0, :group] = 0  # a zero block: dx = 0
    x[-1, k - group :] *= np.float32(1e-44)  # subnormal block: max|x| / 127 underflows
    return x, q, d, m


def _run(target_name: str, dtype: str, n: int, k: int, group: int, rows: int, has_min: bool,
         scale: str, gemm: bool = False, act_bits: int = 8) -> None:  # fmt: skip
    import tvm

    from backends.tvm.build import host_can_run, tvm_target

    target = load_target(target_name)
    ok, why = host_can_run(target)
    if not ok:
        pytest.skip(f"{target_name} code cannot run here: {why}")
    x, q, d, m = _case(dtype, n, k, group, rows, has_min)
    sdt = np.float16 if scale == "float16" else np.float32
    d, m = d.astype(sdt), None if m is None else m.astype(sdt)
    layout = layout_for(dtype, n, k, group, has_min, scale, act_bits)
    packed = pack(layout, q, d, m)
    vnni = "+avx512vnni" in target.cpu.mattr
    func = block_gemm_func(layout, rows) if gemm else block_dense_func(layout, rows, vnni)
    lib = tvm.compile(func, tvm_target(target))
    y = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
    args = [x, packed[0], packed[1], min_operand(layout, packed)]
    lib.mod["main"](*(tvm.runtime.tensor(a) for a in args), y)
    want = block_dense(x, q, d, m, act_bits)
    np.testing.assert_array_equal(y.numpy(), want)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "rows", "has_min", "scale"),
    [
        ("u4", 40, 96, 32, ROW_BLOCK + 2, True, "float16"),  # Q4_1, a prefill, padded rows
        ("i8", 24, 64, 32, 1, False, "float16"),  # Q8_0, a decode step
        ("i4", 40, 128, 64, 2 * ROW_BLOCK + 1, False, "float32"),
        ("u8", 16, 64, 16, 3, True, "float32"),
    ],
)
def test_vnni_kernel_matches_numerics(
    dtype: str, n: int, k: int, group: int, rows: int, has_min: bool, scale: str
) -> None:
    _run("x86-64-avx512", dtype, n, k, group, rows, has_min, scale)


@pytest.mark.parametrize(
    ("dtype", "rows", "has_min"), [("u4", ROW_BLOCK + 1, True), ("i8", 1, False)]
)
def test_portable_kernel_matches_numerics(dtype: str, rows: int, has_min: bool) -> None:
    _run("cpu", dtype, 40, 64, 32, rows, has_min, "float16")


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "rows", "has_min", "scale"),
    [
        ("u4", 40, 96, 32, 2 * GEMM_ROWS + 3, True, "float16"),  # Q4_1, padded rows/tile
        ("i8", 32, 64, 32, GEMM_ROWS, False, "float16"),  # Q8_0, whole tiles: vector stores
        ("i4", 16, 128, 64, 3, False, "float32"),  # fewer rows than a register block
        ("u8", 24, 64, 16, GEMM_ROWS + 1, True, "float32"),
    ],
)
def test_gemm_kernel_matches_numerics(
    dtype: str, n: int, k: int, group: int, rows: int, has_min: bool, scale: str
) -> None:
    _run("x86-64-avx512", dtype, n, k, group, rows, has_min, scale, gemm=True)


@pytest.mark.parametrize(
    ("dtype", "n", "k", "group", "rows", "has_min", "scale", "gemm"),
    [
        ("u4", 40, 96, 32, 1, True, "float16", False),  # Q4_1 decode step
        ("u8", 24, 64, 32, 1, True, "float16", False),  # int8a decode step
        ("i8", 40, 256, 128, ROW_BLOCK + 2, False, "float32", False),  # largest sums
        ("i4", 16, 64, 32, 3, False, "float16", False),
        ("u4", 40, 96, 32, 2 * GEMM_ROWS + 3, True, "float16", True),  # a prefill chunk
        ("u8", 32, 256, 128, GEMM_ROWS, True, "float32", True),
        ("i8", 24, 64, 32, 3, False, "float16", True),
    ],
)
def test_act16_kernels_match_numerics(
    dtype: str, n: int, k: int, group: int, rows: int, has_min: bool, scale: str, gemm: bool
) -> None:
    _run("x86-64-avx512", dtype, n, k, group, rows, has_min, scale, gemm, act_bits=16)


@pytest.mark.parametrize(("dtype", "rows", "has_min"), [("u4", 2, True), ("i8", 1, False)])
def test_act16_portable_kernel_matches_numerics(dtype: str, rows: int, has_min: bool) -> None:
    _run("cpu", dtype, 40, 64, 32, rows, has_min, "float16", act_bits=16)
