"""Weight and bias quantization: symmetric per channel or per tensor, powers of two, int4 groups.

- Weights: ``w_q = saturate(rint(w / s_w))`` with ``s_w[c] = max|w[c]| / qmax`` (qmax 127 for
  i8, 32767 for i16; zero point 0); a power-of-two scale is the smallest ``2^k`` with
  ``max|w[c]| <= qmax * 2^k``. A channel (or a whole layer) of zeros gets scale 1, which
  represents it exactly; a whole zero layer is logged as a warning (it is probably a bug).
  NaN/Inf weights are a ``CalibrationError``.
- Bias: i32 at the accumulator's scale ``s_in * s_w[c]``, so it adds straight into the
  accumulator; a bias too large for i32 saturates, with a warning.
- int4 groups: ``group_size`` consecutive weights along the input axis share a scale chosen
  by a small search minimizing the squared error (clipping the largest weight a little often
  lowers the error of the other 127), values in [-8, 7].
"""

from __future__ import annotations

import logging
import math

import numpy as np

from compiler.errors import CalibrationError
from compiler.ir.types import QuantParams
from compiler.numerics import int_range, quantize, saturate

log = logging.getLogger(__name__)

#: int4 group search: candidate scales ``alpha * max|w| / 7`` for these alphas.
_INT4_ALPHAS = np.linspace(0.6, 1.0, 17)


def check_finite(name: str, data: np.ndarray) -> None:
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise CalibrationError(f"constant @{name} holds NaN or Inf: it cannot be quantized")


def weight_scales(
    w: np.ndarray, axis: int | None, dtype: str, power_of_two: bool, name: str
) -> np.ndarray:
    """Symmetric scales of ``w``: one per slice along ``axis``, or one (``axis=None``)."""
    check_finite(name, w)
    qmax = int_range(dtype)[1]
    w64 = np.abs(np.asarray(w, dtype=np.float64))
    if axis is None:
        peak = np.array([w64.max(initial=0.0)])
    else:
        peak = np.moveaxis(w64, axis, 0).reshape(w64.shape[axis], -1).max(axis=1, initial=0.0)
    if not np.any(peak > 0):
        log.warning("weights @%s are all zero; quantizing them with scale 1", name)
    scale = np.where(peak > 0, peak / qmax, 1.0)
    if power_of_two:
        scale = np.exp2(np.ceil(np.log2(scale)))
    # float32 scales (what the IR stores), never 0: a tiny nonzero peak keeps a tiny scale.
    scale = scale.astype(np.float32)
    return np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)


def quantize_weight(
    w: np.ndarray,
    axis: int | None,
    dtype: str,
    power_of_two: bool,
    name: str,
) -> tuple[np.ndarray, QuantParams]:
    """(integer weights, their QuantParams) for float weights ``w``."""
    scales = weight_scales(w, axis, dtype, power_of_two, name)
    q = quantize(w, scales, 0, dtype, axis)
    if axis is None:
        return q, QuantParams.per_tensor(float(scales[0]))
    return q, QuantParams.per_channel(scales, axis % w.ndim)


def quantize_bias(
    b: np.ndarray, acc_scales: np.ndarray, name: str
) -> tuple[np.ndarray, QuantParams]:
    """i32 bias at the accumulator scales (one, or one per channel along axis 0)."""
    check_finite(name, b)
    scales = np.asarray(acc_scales, dtype=np.float64).reshape(-1)
    exact = np.rint(np.asarray(b, dtype=np.float64) / scales)
    lo, hi = int_range("i32")
    clipped = int(np.count_nonzero((exact < lo) | (exact > hi)))
    if clipped:
        log.warning("bias @%s: %d value(s) saturate i32 at scale s_in*s_w", name, clipped)
    q = saturate(exact.astype(np.int64), "i32")
    if scales.size == 1:
        return q, QuantParams.per_tensor(float(scales[0]))
    return q, QuantParams.per_channel(scales, 0)


def quantize_groups(
    w: np.ndarray, group_size: int, name: str, dtype: str = "i4"
) -> tuple[np.ndarray, QuantParams]:
    """Group-wise symmetric quantization of a 2-D ``w`` along its last axis (ONNX blocked)."""
    check_finite(name, w)
    rows, cols = w.shape
    lo, hi = int_range(dtype)
    groups = np.asarray(w, dtype=np.float64).reshape(rows, cols // group_size, group_size)
    peak = np.abs(groups).max(axis=2)
    base = np.where(peak > 0, peak / hi, 1.0)
    best = np.full(peak.shape, np.inf)
    best_scale = base.copy()
    for alpha in _INT4_ALPHAS:
        s = (base * alpha).astype(np.float32).astype(np.float64)
        q = np.clip(np.rint(groups / s[..., None]), lo, hi)
        err = ((q * s[..., None] - groups) ** 2).sum(axis=2)
        better = err < best
        best, best_scale = np.where(better, err, best), np.where(better, s, best_scale)
    scales = best_scale.astype(np.float32)
    q = np.clip(np.rint(groups / scales[..., None].astype(np.float64)), lo, hi)
    qp = QuantParams(
        tuple(float(s) for s in scales.reshape(-1)),
        (0,) * scales.size,
        axis=1,
        group_size=group_size,
    )
    return q.reshape(rows, cols).astype(np.int8), qp


def group_size_for(cols: int, wanted: int) -> int:
    """``wanted`` if it divides ``cols``, else the largest divisor of ``cols`` below it."""
    for g in range(min(wanted, cols), 0, -1):
        if cols % g == 0:
            return g
    return cols


def storage_bytes(dtype: str, numel: int, n_scales: int = 0) -> int:
    """Bytes of a tensor stored packed (i4 two per byte) plus f32 scales."""
    bits = {"i4": 4, "u4": 4, "i8": 8, "u8": 8, "i16": 16, "i32": 32, "f16": 16}.get(dtype, 32)
    return math.ceil(numel * bits / 8) + 4 * n_scales
