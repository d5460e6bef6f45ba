"""Integer arithmetic of quantized tensors, defined once and bit-exact.

Every backend (HLS C++, TVM, ONNX QDQ export) is held to these definitions. NumPy only.

Conventions, written down because hardware must reproduce them exactly:

* ``quantize(x, scale, zp, dtype)`` = ``saturate(rint(x / scale) + zp)`` where ``x / scale`` is
  computed in float32 and ``rint`` rounds half to even, as ONNX ``QuantizeLinear`` does, so an
  exported QDQ graph quantizes identically.
* ``dequantize(q, scale, zp)`` = ``(q - zp) * scale`` in float32.
* ``requantize(acc, multiplier, shift, zp, dtype)``: the integer rescale that follows every
  integer conv / dense / add. With a 64-bit product ``p = acc * multiplier``::

      shift == 0:  r = p
      shift >  0:  r = (p + (1 << (shift - 1))) >> shift      (arithmetic shift)
      out = saturate(r + zp)

  i.e. round half *up* (towards +inf), the rounding a single adder before a shifter gives in
  hardware. A power-of-two real scale ``2^-k`` has ``multiplier = 1, shift = k``: no multiply,
  no DSP. Any other real scale has a 31-bit multiplier in ``[2^30, 2^31)``.
* Accumulators wrap modulo ``2^bits`` (two's complement). Summation modulo ``2^bits`` is
  associative, so wrapping once at the end equals wrapping after every addition, in any order.
* ``saturate`` clamps to the dtype's range; it reports how many elements it clamped, so that
  saturation is never silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Inclusive ranges of the integer dtypes, by IR dtype name.
INT_RANGES: dict[str, tuple[int, int]] = {
    "i4": (-8, 7),
    "u4": (0, 15),
    "i8": (-128, 127),
    "u8": (0, 255),
    "i16": (-32768, 32767),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
    # Unsigned types ONNX models carry (BitShift, bitwise ops, Mod on uint16..uint64).
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "i2": (-2, 1),
    "u2": (0, 3),
}

#: NumPy storage type for each integer dtype (i4/u4 are stored unpacked in int8/uint8).
INT_STORAGE: dict[str, type[np.integer]] = {
    "i4": np.int8,
    "u4": np.uint8,
    "i8": np.int8,
    "u8": np.uint8,
    "i16": np.int16,
    "i32": np.int32,
    "i64": np.int64,
    "u16": np.uint16,
    "u32": np.uint32,
    "u64": np.uint64,
    "i2": np.int8,
    "u2": np.uint8,
}

#: ml_dtypes' name of each IR dtype NumPy lacks (the arrays onnx.numpy_helper hands back);
#: the IR holds their values widened (``compiler.ir.types.NUMPY_DTYPES``).
ML_DTYPES: dict[str, str] = {
    "bf16": "bfloat16",
    "f8e4m3fn": "float8_e4m3fn",
    "f8e4m3fnuz": "float8_e4m3fnuz",
    "f8e5m2": "float8_e5m2",
    "f8e5m2fnuz": "float8_e5m2fnuz",
    "f4e2m1": "float4_e2m1fn",
    "i4": "int4",
    "u4": "uint4",
    "i2": "int2",
    "u2": "uint2",
}

MAX_SHIFT = 62


@dataclass
class SaturationCounter:
    """Counts elements clamped by ``saturate``; the interpreter keeps one per node."""

    clipped: int = 0
    total: int = 0

    def add(self, clipped: int, total: int) -> None:
        self.clipped += int(clipped)
        self.total += int(total)

    @property
    def fraction(self) -> float:
        return self.clipped / self.total if self.total else 0.0


def int_range(dtype: str) -> tuple[int, int]:
    """The inclusive (min, max) of integer dtype ``dtype``."""
    try:
        return INT_RANGES[dtype]
    except KeyError:
        raise ValueError(
            f"{dtype!r} is not an integer dtype; expected one of {sorted(INT_RANGES)}"
        ) from None


def saturate(x: np.ndarray, dtype: str, counter: SaturationCounter | None = None) -> np.ndarray:
    """Clamp integer array ``x`` to ``dtype``'s range and cast it to its storage type."""
    lo, hi = int_range(dtype)
    x = np.asarray(x)
    if counter is not None:
        counter.add(int(np.count_nonzero((x < lo) | (x > hi))), x.size)
    return np.clip(x, lo, hi).astype(INT_STORAGE[dtype])


def wrap(x: np.ndarray, dtype: str) -> np.ndarray:
    """Two's-complement wrap of integer array ``x`` to ``dtype`` (accumulator overflow)."""
    lo, hi = int_range(dtype)
    bits = int(round(math.log2(hi - lo + 1)))
    x64 = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x64
    mask = (1 << bits) - 1
    u = x64 & mask
    signed = lo < 0
    out = np.where(signed & (u > hi), u - (1 << bits), u) if signed else u
    return out.astype(INT_STORAGE[dtype])


def _broadcast_param(p: np.ndarray | float | int, ndim: int, axis: int | None) -> np.ndarray:
    """Shape a per-tensor or per-channel parameter to broadcast against an ``ndim`` tensor."""
    arr = np.asarray(p)
    if arr.ndim == 0 or axis is None:
        return arr.reshape(()) if arr.size == 1 else arr
    shape = [1] * ndim
    shape[axis % ndim] = arr.size
    return arr.reshape(shape)


def quantize(
    x: np.ndarray,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    dtype: str,
    axis: int | None = None,
    counter: SaturationCounter | None = None,
) -> np.ndarray:
    """``saturate(rint(x / scale) + zero_point)``, half to even; the division in float64 for
    a float64 ``x`` (the scale, a float32, widens exactly), else in float32."""
    ftype = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    x = np.asarray(x, dtype=ftype)
    s = _broadcast_param(np.asarray(scale, dtype=np.float32).astype(ftype), x.ndim, axis)
    zp = _broadcast_param(np.asarray(zero_point, dtype=np.int64), x.ndim, axis)
    q = np.rint(x / s).astype(np.int64) + zp
    return saturate(q, dtype, counter)


def dequantize(
    q: np.ndarray,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int,
    axis: int | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32, or in float64 with ``dtype=np.float64``."""
    q = np.asarray(q)
    ftype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    s = _broadcast_param(np.asarray(scale, dtype=np.float32).astype(ftype), q.ndim, axis)
    zp = _broadcast_param(np.asarray(zero_point, dtype=np.int64), q.ndim, axis)
    return ((q.astype(np.int64) - zp).astype(ftype) * s).astype(ftype)


def is_power_of_two(scale: float) -> bool:
    """True if ``scale`` is exactly ``2^k`` for an integer ``k``."""
    if not (scale > 0 and math.isfinite(scale)):
        return False
    mantissa, _ = math.frexp(scale)
    return mantissa == 0.5


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """Fixed-point ``(multiplier, shift)`` with ``multiplier / 2^shift ~= real_scale``.

    Powers of two are exact: ``2^-k -> (1, k)`` and ``2^k -> (2^k, 0)``. Other scales get a
    31-bit multiplier in ``[2^30, 2^31)``. Raises ValueError for a scale that is not positive
    and finite, or one too large to represent (``>= 2^31``).
    """
    if not (real_scale > 0 and math.isfinite(real_scale)):
        raise ValueError(f"requantize scale must be positive and finite, got {real_scale!r}")
    mantissa, exponent = math.frexp(
        real_scale
    )  # real = mantissa * 2^exponent, mantissa in [0.5, 1)
    if mantissa == 0.5:
        k = exponent - 1
        if k >= 0:
            if k > 30:
                raise ValueError(f"requantize scale {real_scale!r} is too large")
            return 1 << k, 0
        if -k > MAX_SHIFT:
            return 0, 0  # smaller than one LSB of any int32 product: everything rounds to 0
        return 1, -k
    multiplier = int(round(mantissa * (1 << 31)))
    if multiplier == 1 << 31:
        multiplier //= 2
        exponent += 1
    shift = 31 - exponent
    if shift < 0:
        raise ValueError(f"requantize scale {real_scale!r} is too large")
    while shift > MAX_SHIFT:
        multiplier = (multiplier + 1) >> 1
        shift -= 1
    return multiplier, shift


def requantize(
    acc: np.ndarray,
    multiplier: np.ndarray | int,
    shift: np.ndarray | int,
    zero_point: np.ndarray | int,
    dtype: str,
    axis: int | None = None,
    counter: SaturationCounter | None = None,
) -> np.ndarray:
    """Rescale integer accumulators to ``dtype``; see the module docstring for the formula."""
    acc64 = np.asarray(acc).astype(np.int64)
    m = _broadcast_param(np.asarray(multiplier, dtype=np.int64), acc64.ndim, axis)
    s = _broadcast_param(np.asarray(shift, dtype=np.int64), acc64.ndim, axis)
    zp = _broadcast_param(np.asarray(zero_point, dtype=np.int64), acc64.ndim, axis)
    if np.any(s < 0) or np.any(s > MAX_SHIFT):
        raise ValueError(f"requantize shift must be in [0, {MAX_SHIFT}]")
    product = acc64 * m
    rounding = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    r = np.right_shift(product + rounding, s)
    return saturate(r + zp, dtype, counter)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``round_half_up(x / 2^shift)`` on integers; a left shift when ``shift`` is negative."""
    x64 = np.asarray(x).astype(np.int64)
    if shift <= 0:
        return np.left_shift(x64, -shift)
    return np.right_shift(x64 + (1 << (shift - 1)), shift)


# ---- block-quantized LLM weights (Q4_0/Q4_1/Q8_0, tapeout's int4/int8 groups) ---------------
#
# A block-quantized dense weight is integers ``q[N, K]`` with one float scale ``d[N, B]`` and,
# for asymmetric formats, one float offset ``m[N, B]`` per block of ``g = K / B`` consecutive
# inputs: ``w[n, k] = d[n, b] * q[n, k] (+ m[n, b])`` with ``b = k // g``. GGUF's Q8_0 is
# i8 + d, Q4_0 is i4 + d (its stored nibbles minus 8), Q4_1 is u4 + d + m.
#
# ``q.block_dense`` multiplies by such a weight the way llama.cpp does, with the dot products
# in integers. The activations are quantized per row and per block of g (llama.cpp's Q8_0):
#
#     dx[b]  = float32(max|x[b*g:(b+1)*g]| / 127);   qx = saturate_i8(rint(x / dx))  (0 where dx=0)
#     isum[n, b] = sum_k q[n, k] * qx[k]                               (exact, |isum| < 2^21)
#     xsum[b]    = sum_k qx[k]
#     ds[n, b] = float32(d[n, b] * dx[b]);   c[b] = float32(dx[b] * float32(xsum[b]))
#     acc = 0.0 (f32);  for b in 0..B-1:
#         acc = fma(ds[n, b], float32(isum[n, b]), acc)
#         acc = fma(m[n, b], c[b], acc)                                    (with offsets)
#     y[n] = acc
#
# ``fma`` is float32's fused multiply-add (one rounding), what llama.cpp's kernels do per
# block and what a CPU's FMA instruction computes; the order of the additions is part of the
# definition: block by block, in order. A backend that keeps that order (vectors run across
# output rows) matches this definition bit for bit. (Until the block kernels' epilogue
# became their bottleneck, the sums were float64: exact products, twice the conversions.)
#
# ``act_bits=16`` quantizes the activations to ``ACT_LEVELS[16] = 127 * 256`` levels instead
# of 127 (``dx = max|x| / 32512``, ``|qx| <= 32512``); everything else is the same formula.
# ``|isum| < 128 * 255 * 32512 < 2^30`` stays exact in int32, and ``float32(isum)`` rounds
# to nearest (even). A kernel computes ``isum`` with int8 dot products by splitting each
# code into two int8 planes, ``qx = 256 * hi + lo`` with ``hi = (qx + 128) >> 8`` (in
# -127..127) and ``lo`` in -128..127 (``split_act_planes``): one weight load feeds two
# ``vpdpbusd``, so a memory-bound decode step costs about the same as with 8 bits, while the
# activation error drops 256-fold (SmolLM2's W8A8 KL: 0.0095 -> 0.0002).

#: Largest block (group) a block-quantized weight may use: keeps ``|isum| < 2^21`` with 8-bit
#: activations and ``< 2^30`` with 16-bit ones.
MAX_BLOCK = 128

#: Activation bits of ``q.block_dense`` -> the largest code ``max|x| / dx`` maps to.
ACT_LEVELS = {8: 127, 16: 127 * 256}


def quantize_act_blocks(x: np.ndarray, group: int, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-row, per-block symmetric activations of ``bits`` (8 or 16, see ``ACT_LEVELS``):
    ``(qx [..., K], dx f32 [..., B])``, ``qx`` int8 for 8 bits, int16 for 16."""
    levels = ACT_LEVELS[bits]
    x = np.asarray(x, dtype=np.float32)
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    dx = (np.abs(blocks).max(axis=-1) / np.float32(levels)).astype(np.float32)
    safe = np.where(dx > 0, dx, np.float32(1))[..., None]
    q = np.where(dx[..., None] > 0, np.rint(blocks / safe), 0)
    if bits == 8:
        return saturate(q.astype(np.int64), "i8").reshape(x.shape), dx
    return np.clip(q, -levels, levels).astype(np.int16).reshape(x.shape), dx


def split_act_planes(qx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16-bit activation codes as two int8 planes, ``qx = 256 * hi + lo`` (see above)."""
    wide = np.asarray(qx, np.int32)
    hi = (wide + 128) >> 8
    return hi.astype(np.int8), (wide - (hi << 8)).astype(np.int8)


def block_dense(
    x: np.ndarray,
    q: np.ndarray,
    d: np.ndarray,
    m: np.ndarray | None = None,
    act_bits: int = 8,
) -> np.ndarray:
    """``x @ w.T`` for block-quantized ``w`` (see above); ``x`` f32 [..., K] -> f32 [..., N]."""
    n, k = q.shape
    nblocks = np.asarray(d).shape[1]
    group = k // nblocks
    qx, dx = quantize_act_blocks(x, group, act_bits)
    lead = qx.shape[:-1]
    qx3 = qx.reshape(-1, nblocks, group).astype(np.int64)
    q3 = np.asarray(q).reshape(n, nblocks, group).astype(np.int64)
    isum = np.einsum("mbg,nbg->mnb", qx3, q3)
    dx2 = dx.reshape(-1, nblocks)
    ds = (np.asarray(d, np.float32)[None] * dx2[:, None, :]).astype(np.float32)
    isum32 = isum.astype(np.float32)
    mins = None if m is None else np.asarray(m, np.float32)
    c = (dx2 * qx3.sum(axis=-1).astype(np.float32)).astype(np.float32)
    acc = np.zeros(isum.shape[:2], dtype=np.float32)
    for b in range(nblocks):  # the order of the additions is part of the definition
        acc = fma32(ds[:, :, b], isum32[:, :, b], acc)
        if mins is not None:
            acc = fma32(mins[None, :, b], c[:, None, b], acc)
    return acc.reshape(*lead, n)


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (an FMA instruction), for float32 ``a``, ``b`` whose
    product is exact in float64 (at most 53 significant bits together, as in block_dense).

    The float64 sum is rounded to odd (an inexact sum moves to its neighbour with an odd last
    bit), so rounding it to float32 afterwards rounds the exact value once: 53 >= 24 + 2."""
    p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    c64 = np.broadcast_to(np.asarray(c, np.float64), p.shape)
    s = p + c64
    back = s - p
    err = (p - (s - back)) + (c64 - back)  # TwoSum: s + err is the exact sum
    even = (s.view(np.int64) & 1) == 0
    toward = np.nextafter(s, np.where(err > 0, np.inf, -np.inf))
    return np.where((err != 0) & even, toward, s).astype(np.float32)


def dequantize_blocks(q: np.ndarray, d: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    """The float32 weight ``d * q (+ m)`` of a block-quantized ``q`` [N, K]."""
    n, k = q.shape
    group = k // np.asarray(d).shape[1]
    scale = np.repeat(np.asarray(d, np.float32), group, axis=1)
    w = np.asarray(q).astype(np.float32) * scale
    if m is not None:
        w = w + np.repeat(np.asarray(m, np.float32), group, axis=1)
    return w.astype(np.float32)


# ---- narrow types (float8, float4, 2- and 4-bit integers) -------------------------------------
def ml_dtype(dtype: str) -> np.dtype:
    """The ml_dtypes NumPy type of an IR dtype in ``ML_DTYPES``."""
    import ml_dtypes  # a small NumPy extension; imported here so numerics stays NumPy-only

    return np.dtype(getattr(ml_dtypes, ML_DTYPES[dtype]))


def round_narrow(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float values rounded (to nearest even) to narrow float ``dtype``, held in float32."""
    return np.asarray(x, np.float32).astype(ml_dtype(dtype)).astype(np.float32)


def narrow_max(dtype: str) -> float:
    """The largest finite value of narrow float ``dtype`` (448 for E4M3FN)."""
    import ml_dtypes

    return float(ml_dtypes.finfo(ml_dtype(dtype)).max)


def cast_to_narrow_float(x: np.ndarray, dtype: str, saturate: bool) -> np.ndarray:
    """ONNX Cast to a float8/float4 type. ``saturate`` (the default): values beyond the
    largest finite value, infinities included, become +-that value; without it they become
    what the format has (inf for E5M2, NaN for the others), as ml_dtypes rounds them."""
    x = np.asarray(x, np.float32)
    if saturate:
        top = narrow_max(dtype)
        x = np.clip(x, -top, top)  # NaN stays NaN
    return round_narrow(x, dtype)


def cast_to_sub_byte_int(x: np.ndarray, dtype: str) -> np.ndarray:
    """ONNX Cast to a 2- or 4-bit integer type, held in 8 bits. From integers: the higher
    bits are discarded (two's complement wrap), as the spec says for every integer cast.
    From floats: truncation toward zero; out of range is undefined in the spec, and this
    gives what onnx.reference and the conformance data give there (ml_dtypes' conversion)."""
    storage = INT_STORAGE[dtype]
    if np.issubdtype(np.asarray(x).dtype, np.floating):
        return np.asarray(x, np.float32).astype(ml_dtype(dtype)).astype(storage)
    lo, hi = INT_RANGES[dtype]
    span = hi - lo + 1
    return ((np.asarray(x).astype(np.int64) - lo) % span + lo).astype(storage)


# ---- integer softmax and layer norm (q.softmax, q.layernorm; compiler.ir.ops_quant) --------
#
# Both run on 8-bit inputs with nothing but integer adds, multiplies, shifts, one integer
# square root and one reciprocal per row, the way an FPGA side unit computes them:
#
# q.softmax: d_i = max_j x_j - x_i (0..255), e_i = EXP_TABLE[d_i] with
#   EXP_TABLE[k] = round(2^15 * exp(-k * s_x)) (256 entries: one BRAM), S = sum_j e_j,
#   rcp = floor(2^46 / S), p_i = (e_i * rcp + 2^30) >> 31 (the probability in Q15), then
#   out = requantize(p_i, multiplier, shift, zo) with (multiplier, shift) of 2^-15 / s_o.
# q.layernorm: x_i = x - zx, c_i = n * x_i - sum_j x_j (= n * (x_i - mean), exact),
#   V = sum_i c_i^2, R = max(1, isqrt(V // n + eps_int)) (~ n * sqrt(var + eps) in levels of
#   x; eps_int = round(n^2 * eps / s_x^2)), inv = floor(2^32 / R),
#   z_i = (c_i * inv + 2^15) >> 16 (the normalized value in Q16), then
#   out = saturate(((z_i * G_j + B_j * 2^16 + 2^31) >> 32) + zo) with the constants
#   G_j = round(gamma_j / s_o * 2^16), B_j = round(beta_j / s_o * 2^16) (i32).

#: Fixed-point bits of the softmax's exponentials and probabilities.
SOFTMAX_BITS = 15
#: Fixed-point bits of the layer norm's normalized values and its gamma/beta constants.
LAYERNORM_BITS = 16


def softmax_table(scale: float, size: int = 256) -> np.ndarray:
    """``round(2^15 * exp(-k * scale))`` for k = 0 .. size-1 (int64): q.softmax's exp."""
    k = np.arange(size, dtype=np.float64)
    return np.rint(np.exp(-k * float(scale)) * 2.0**SOFTMAX_BITS).astype(np.int64)


def isqrt(v: np.ndarray) -> np.ndarray:
    """Floor of the square root of non-negative int64 ``v`` (exact, below 2^62)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)  # a float64 root may be one off either way
    r = np.where(r * r > v, r - 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def int_softmax(x: np.ndarray, zp: int, scale: float) -> np.ndarray:
    """Q15 probabilities of 8-bit ``x`` over its last axis (int64; zp cancels in max - x)."""
    del zp  # softmax is shift-invariant: the zero point cancels in max_j x_j - x_i
    x64 = np.asarray(x).astype(np.int64)
    d = np.clip(x64.max(axis=-1, keepdims=True) - x64, 0, 255)
    e = softmax_table(scale)[d]
    total = e.sum(axis=-1, keepdims=True)
    rcp = np.floor_divide(np.int64(1) << 46, total)
    return np.right_shift(e * rcp + (np.int64(1) << 30), 31)


def int_layernorm_z(x: np.ndarray, zp: int, eps_int: int) -> np.ndarray:
    """q.layernorm's normalized values in Q16 over the last axis (int64)."""
    xi = np.asarray(x).astype(np.int64) - zp
    n = xi.shape[-1]
    c = n * xi - xi.sum(axis=-1, keepdims=True)
    v = (c * c).sum(axis=-1, keepdims=True)
    r = np.maximum(isqrt(v // n + int(eps_int)), 1)
    inv = np.floor_divide(np.int64(1) << 32, r)
    return np.right_shift(c * inv + (np.int64(1) << 15), 16)
