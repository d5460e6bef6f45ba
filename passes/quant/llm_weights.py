"""Block quantization of LLM weights: tapeout's own int8/int4 groups in GGML's block shape.

Every format gives ``BlockWeight(q, d, m)`` with ``w ~= d * q (+ m)`` per group of ``group``
inputs, scales stored as float16 (as GGUF does: half the bytes of float32 scales, and ``q``
is computed with the rounded scale, so the float16 rounding costs no accuracy):

========  =====  ==========================================================================
format    q      scale choice
========  =====  ==========================================================================
int8      i8     ``d = max|w| / 127``                                    (GGML Q8_0)
int8a     u8     ``d = (max - min) / 255``, ``m = min``
int4      i4     ``d`` searched among ``alpha * max|w| / 7`` for the least squared error
int4a     u4     ``d = (max - min) / 15``, ``m = min``                   (GGML Q4_1)
========  =====  ==========================================================================
"""

from __future__ import annotations

import numpy as np

from compiler.errors import TapeoutError
from compiler.frontends.gguf_blocks import BlockWeight
from compiler.numerics import MAX_BLOCK, int_range
from passes.quant.weights import check_finite, quantize_groups

#: (bits, symmetric) -> format name.
FORMATS: dict[tuple[int, bool], str] = {
    (8, True): "int8",
    (8, False): "int8a",
    (4, True): "int4",
    (4, False): "int4a",
}
_DTYPES = {"int8": "i8", "int8a": "u8", "int4": "i4", "int4a": "u4"}


def _half(x: np.ndarray) -> np.ndarray:
    """float16 scales, never 0 or inf (a zero block gets scale 1: it represents 0 exactly)."""
    h = np.asarray(x, np.float64).astype(np.float16)
    return np.where((h > 0) & np.isfinite(h), h, np.float16(1)).astype(np.float16)


def quantize_blocks(w: np.ndarray, fmt: str, group: int, name: str = "weight") -> BlockWeight:
    """Quantize float ``w`` [N, K] to ``fmt`` in blocks of ``group`` along K."""
    if fmt not in _DTYPES:
        raise TapeoutError(f"unknown LLM weight format {fmt!r}; expected {sorted(_DTYPES)}")
    n, k = w.shape
    if not 1 <= group <= MAX_BLOCK or k % group:
        raise TapeoutError(
            f"@{name}: group {group} must divide in_features {k} and be at most {MAX_BLOCK}"
        )
    check_finite(name, w)
    dtype = _DTYPES[fmt]
    lo, hi = int_range(dtype)
    blocks = np.asarray(w, np.float64).reshape(n, k // group, group)
    m16 = None
    if fmt == "int4":
        _, qp = quantize_groups(np.asarray(w, np.float32), group, name, "i4")
        d16 = _half(np.asarray(qp.scale).reshape(n, k // group))
        offset = np.zeros_like(blocks[..., 0])
    elif fmt == "int8":
        d16 = _half(np.abs(blocks).max(axis=2) / hi)
        offset = np.zeros_like(blocks[..., 0])
    else:
        low, high = blocks.min(axis=2), blocks.max(axis=2)
        d16 = _half((high - low) / hi)
        m16 = low.astype(np.float16)
        offset = m16.astype(np.float64)
    d = d16.astype(np.float64)[..., None]
    q = np.clip(np.rint((blocks - offset[..., None]) / d), lo, hi)
    storage = np.uint8 if dtype.startswith("u") else np.int8
    return BlockWeight(q.reshape(n, k).astype(storage), d16, m16, group, dtype)
