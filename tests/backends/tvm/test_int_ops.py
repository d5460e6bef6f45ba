"""The TVM rules of ``backends.tvm.lower_int_ops`` against the interpreter, bit for bit.

One IR graph, one TVM build: left and right shifts of signed and unsigned types with counts
0, 1, width - 1, width, beyond it and negative, on negative and extreme values; integer powers
with negative bases, exponent 0, negative exponents and products that wrap.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.target import load_target

pytestmark = pytest.mark.tvm

INT_OPS = """
graph @int_ops(%a8: i8[4,16], %c8: i8[16], %a16: i16[4,16], %c16: i16[4,16], %a32: i32[4,16], %c32: i32[4,16], %a64: i64[4,16], %c64: i64[4,16], %u8: u8[4,16], %v8: u8[4,16], %u64: u64[4,16], %v64: u64[4,16], %p32: i32[64], %e32: i32[64], %p64: i64[64], %e64: i64[64], %p8: i8[64], %e8: i8[64]) -> (i8[4,16], i8[4,16], i16[4,16], i16[4,16], i32[4,16], i32[4,16], i64[4,16], i64[4,16], u8[4,16], u8[4,16], u64[4,16], u64[4,16], i32[64], i64[64], i8[64]) {
  %l8: i8[4,16] = math.bitshift(%a8, %c8) {direction="left"}
  %r8: i8[4,16] = math.bitshift(%a8, %c8) {direction="right"}
  %l16: i16[4,16] = math.bitshift(%a16, %c16) {direction="left"}
  %r16: i16[4,16] = math.bitshift(%a16, %c16) {direction="right"}
  %l32: i32[4,16] = math.bitshift(%a32, %c32) {direction="left"}
  %r32: i32[4,16] = math.bitshift(%a32, %c32) {direction="right"}
  %l64: i64[4,16] = math.bitshift(%a64, %c64) {direction="left"}
  %r64: i64[4,16] = math.bitshift(%a64, %c64) {direction="right"}
  %lu8: u8[4,16] = math.bitshift(%u8, %v8) {direction="left"}
  %ru8: u8[4,16] = math.bitshift(%u8, %v8) {direction="right"}
  %lu64: u64[4,16] = math.bitshift(%u64, %v64) {direction="left"}
  %ru64: u64[4,16] = math.bitshift(%u64, %v64) {direction="right"}
  %w32: i32[64] = math.pow(%p32, %e32)
  %w64: i64[64] = math.pow(%p64, %e64)
  %w8: i8[64] = math.pow(%p8, %e8)
  return %l8, %r8, %l16, %r16, %l32, %r32, %l64, %r64, %lu8, %ru8, %lu64, %ru64, %w32, %w64, %w8
}
"""  # noqa: E501


def _values(dtype: type, rows: int = 4) -> np.ndarray:
    info = np.iinfo(dtype)
    edge = [0, 1, -1, 5, -5, info.min, info.max, info.min + 1, info.max - 1, 3, -3, 100, -100,
            info.max // 3, info.min // 3, 77]  # fmt: skip
    return np.array([edge] * rows).astype(dtype)


def _counts(dtype: type, rows: int = 4) -> np.ndarray:
    """Per row: 0..width+1 and beyond, and negative counts where the type has them."""
    width = np.iinfo(dtype).bits
    base = [0, 1, 2, width - 1, width, width + 1, 2 * width, 7, 3, width // 2, 63, 64, 65,
            127, width - 2, 1]  # fmt: skip
    counts = np.array([base] * rows, dtype=np.int64)
    if np.iinfo(dtype).min < 0:
        counts[1, ::3] = -counts[1, ::3] - 1
    return np.roll(counts, 5, axis=1)[:rows].astype(dtype)


def _power_operands(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    bases = np.array([2, -2, 3, -3, 0, 1, -1, 7, -7, 10, 5, -1, 1, 0, 2, 3] * 4, dtype=np.int64)
    exps = np.array([0, 1, 2, 3, 5, -1, -1, -2, -3, 0, 31, 63, 64, 0, 62, 40,
                     100, 7, 8, 33, -5, -4, 2, 30, 31, 32, 63, 64, 9, 1, 20, 15] * 2)  # fmt: skip
    info = np.iinfo(dtype)
    return bases.astype(dtype), np.clip(exps, info.min, info.max).astype(dtype)


def test_shifts_and_powers_match_the_interpreter_bit_for_bit() -> None:
    from backends.tvm import TvmBackend

    graph = parse(INT_OPS)
    verify(graph)
    backend = TvmBackend()
    target = load_target("cpu")
    assert backend.unsupported(graph, target) == []
    rng = np.random.default_rng(3)
    inputs = [_values(np.int8), _counts(np.int8)[2]]
    for dtype in (np.int16, np.int32, np.int64):
        inputs += [_values(dtype), _counts(dtype)]
    inputs += [_values(np.int8).view(np.uint8), _counts(np.uint8)]
    inputs += [_values(np.int64).view(np.uint64), _counts(np.uint64)]
    for dtype in (np.int32, np.int64, np.int8):
        base, exp = _power_operands(dtype)
        base[-8:] = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, 8, dtype=dtype)
        inputs += [base, exp]
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    got, want = art.run(*inputs), interpret(graph, *inputs)
    for value, g, w in zip(graph.outputs, got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, value.name
        bad = np.flatnonzero(g != w)
        assert bad.size == 0, (value.name, bad[:5], g.reshape(-1)[bad[:5]], w.reshape(-1)[bad[:5]])


TOPK = """
graph @topk(%a: i64[6,40], %b: u64[6,40], %c: i8[40,6]) -> (i64[6,9], i64[6,9], i64[6,9], i64[6,9], u64[6,9], i64[6,9], u64[6,9], i64[6,9], i8[9,6], i64[9,6]) {
  %k: i64[1] = const @k
  %av: i64[6,9], %ai: i64[6,9] = math.topk(%a, %k) {axis=1, largest=true}
  %sv: i64[6,9], %si: i64[6,9] = math.topk(%a, %k) {axis=-1, largest=false}
  %bv: u64[6,9], %bi: i64[6,9] = math.topk(%b, %k) {axis=1, largest=true}
  %tv: u64[6,9], %ti: i64[6,9] = math.topk(%b, %k) {axis=1, largest=false}
  %cv: i8[9,6], %ci: i64[9,6] = math.topk(%c, %k) {axis=0, largest=true}
  return %av, %ai, %sv, %si, %bv, %bi, %tv, %ti, %cv, %ci
}
"""  # noqa: E501


def test_integer_topk_keeps_ties_in_index_order() -> None:
    """Many ties and the extremes of each type (INT64_MIN, u64 values >= 2^63)."""
    from backends.tvm import TvmBackend

    graph = parse(TOPK, {"k": np.array([9], np.int64)})
    verify(graph)
    backend = TvmBackend()
    target = load_target("cpu")
    assert backend.unsupported(graph, target) == []
    rng = np.random.default_rng(5)
    inputs = []
    for dtype, shape in ((np.int64, (6, 40)), (np.uint64, (6, 40)), (np.int8, (40, 6))):
        info = np.iinfo(dtype)
        x = rng.integers(0, 3, shape).astype(dtype).reshape(-1)
        x[::7], x[3::11], x[5::13] = info.max, info.min, info.max // 2 + 1
        inputs.append(x.reshape(shape))
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    got, want = art.run(*inputs), interpret(graph, *inputs)
    for value, g, w in zip(graph.outputs, got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, value.name
        assert np.array_equal(g, w), value.name
