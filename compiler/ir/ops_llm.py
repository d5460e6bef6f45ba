"""Op table, part 5: block-quantized LLM weights.

``q.block_dense(%x, %q, %d, %m?) {group, act_bits=8}``: ``x @ w.T`` with ``w[n, k] =
d[n, k // group] * q[n, k] (+ m[n, k // group])``, the activations quantized to int8 (or, with
``act_bits=16``, to 16-bit codes that a kernel splits into two int8 planes) per row and per
block of ``group`` and the dot products done in integers (llama.cpp's Q8_0 x
Q4_0/Q4_1/Q8_0). The exact
arithmetic, including the order of the float additions, is ``compiler.numerics.block_dense``.

``q`` is an integer constant ``[N, K]`` (i4, u4, i8 or u8; GGUF's Q4_0 is i4, Q4_1 u4, Q8_0
i8), ``d`` and ``m`` are f16 or f32 constants ``[N, K / group]``; the result is f32.
Scales are operands, not type parameters, so the printed IR names them instead of listing a
million numbers::

    %y: f32[1,32,576] = q.block_dense(%x, %w.q, %w.d, %w.m) {group=32}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import REQUIRED, register_op
from compiler.ir.types import TensorType
from compiler.numerics import ACT_LEVELS, MAX_BLOCK

#: Integer dtypes a block-quantized weight may have.
BLOCK_WEIGHT_DTYPES = ("i4", "u4", "i8", "u8")
#: Float dtypes of its scales and offsets.
BLOCK_SCALE_DTYPES = ("f16", "f32")


@register_op("q.block_dense", "x q d m?", {"group": REQUIRED, "act_bits": 8}, tags="quant dense")
def _block_dense(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``x @ (d * q + m).T`` with int8 per-block activations (compiler.numerics.block_dense)."""
    x, q = types[0], types[1]
    group = int(attrs["group"])
    if x.dtype != "f32" or x.rank < 1:
        raise ShapeError(f"block_dense input must be f32 [..., K], got {x}")
    if q.dtype not in BLOCK_WEIGHT_DTYPES or q.rank != 2:
        raise ShapeError(f"block_dense weight must be {'/'.join(BLOCK_WEIGHT_DTYPES)} [N, K]: {q}")
    n, k = q.shape
    if not 1 <= group <= MAX_BLOCK or (isinstance(k, int) and k % group):
        raise ShapeError(f"block size {group} must divide K={k} and be at most {MAX_BLOCK}")
    if attrs["act_bits"] not in ACT_LEVELS:
        raise ShapeError(f"block_dense act_bits={attrs['act_bits']!r}: one of {sorted(ACT_LEVELS)}")
    if isinstance(x.shape[-1], int) and x.shape[-1] != k:
        raise ShapeError(f"input features {x.shape[-1]} != weight in_features {k}")
    blocks = (n, k // group if isinstance(k, int) else k)
    for t in types[2:]:
        if t.dtype not in BLOCK_SCALE_DTYPES or tuple(t.shape) != blocks:
            raise ShapeError(f"block scales must be f16/f32 {list(blocks)}, got {t}")
    return [TensorType("f32", (*x.shape[:-1], n))]
