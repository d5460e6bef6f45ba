"""GGML's block formats: unpack Q4_0 / Q4_1 / Q8_0 / F16 / F32 rows, exactly, NumPy only.

A quantized GGUF tensor is rows of blocks of 32 weights (ggml-common.h):

==========  =====  ===============================================  =======================
format      bytes  layout                                           weight
==========  =====  ===============================================  =======================
Q4_0        18     f16 d, 16 bytes: q[j] low nibble, q[j+16] high   d * (q - 8)
Q4_1        20     f16 d, f16 m, 16 bytes as Q4_0                   d * q + m
Q8_0        34     f16 d, 32 x int8                                 d * q
==========  =====  ===============================================  =======================

``unpack`` returns the integers and scales as they are (``BlockWeight``: Q4_0 as i4, its
nibbles minus 8, so that ``w = d * q`` for every symmetric format), so that nothing is lost on
the way into the IR; ``pack`` is its inverse (tests and exporters write GGUF blocks with it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32


@dataclass(frozen=True)
class BlockFormat:
    """One GGML block format: bytes per block, IR dtype of its integers, has an offset."""

    name: str
    block_bytes: int
    dtype: str  # i4 / u4 / i8
    has_min: bool


#: GGML type name -> its block format (the quantized types tapeout keeps as blocks).
BLOCK_FORMATS: dict[str, BlockFormat] = {
    "Q4_0": BlockFormat("Q4_0", 18, "i4", False),
    "Q4_1": BlockFormat("Q4_1", 20, "u4", True),
    "Q8_0": BlockFormat("Q8_0", 34, "i8", False),
}
#: GGML float types, read as float32.
FLOAT_FORMATS: dict[str, np.dtype] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


@dataclass(frozen=True)
class BlockWeight:
    """A block-quantized [N, K] weight: ``w = d * q (+ m)`` per block of ``group`` along K."""

    q: np.ndarray  # int8 (i4 / i8) or uint8 (u4), [N, K]
    d: np.ndarray  # float16 or float32, [N, K / group]
    m: np.ndarray | None
    group: int
    dtype: str  # the IR dtype of q

    def dequantize(self) -> np.ndarray:
        from compiler.numerics import dequantize_blocks

        m = None if self.m is None else self.m.astype(np.float32)
        return dequantize_blocks(self.q, self.d.astype(np.float32), m)

    def take_rows(self, order: np.ndarray) -> BlockWeight:
        """The same weight with its rows reordered (losslessly)."""
        m = None if self.m is None else self.m[order]
        return BlockWeight(self.q[order], self.d[order], m, self.group, self.dtype)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[..., 16] bytes -> [..., 32] nibbles: low nibbles are q[0:16], high ones q[16:32]."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def unpack(fmt: str, raw: np.ndarray, rows: int, cols: int) -> BlockWeight:
    """Rows of GGML blocks (``raw``: uint8, ``rows * cols / 32`` blocks) -> ``BlockWeight``."""
    spec = BLOCK_FORMATS[fmt]
    nblocks = cols // BLOCK
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(rows, nblocks, spec.block_bytes)
    d = blocks[..., 0:2].copy().view("<f2").reshape(rows, nblocks)
    m = None
    if fmt == "Q8_0":
        q = blocks[..., 2:].copy().view(np.int8)
    elif fmt == "Q4_0":
        q = (_nibbles(blocks[..., 2:]).astype(np.int16) - 8).astype(np.int8)
    else:
        m = blocks[..., 2:4].copy().view("<f2").reshape(rows, nblocks)
        q = _nibbles(blocks[..., 4:])
    return BlockWeight(q.reshape(rows, cols), d, m, BLOCK, spec.dtype)


def pack(fmt: str, weight: BlockWeight) -> np.ndarray:
    """The inverse of ``unpack``: uint8 [N, K / 32 * block_bytes]."""
    spec = BLOCK_FORMATS[fmt]
    rows, cols = weight.q.shape
    nblocks = cols // BLOCK
    q = weight.q.reshape(rows, nblocks, BLOCK)
    parts: list[np.ndarray] = [weight.d.astype("<f2").reshape(rows, nblocks, 1).view(np.uint8)]
    if fmt == "Q8_0":
        parts.append(q.astype(np.int8).view(np.uint8))
    else:
        u = (q.astype(np.int16) + (8 if fmt == "Q4_0" else 0)).astype(np.uint8)
        if spec.has_min:
            assert weight.m is not None
            parts.append(weight.m.astype("<f2").reshape(rows, nblocks, 1).view(np.uint8))
        parts.append(u[..., :16] | (u[..., 16:] << 4))
    return np.concatenate(parts, axis=-1).reshape(rows, nblocks * spec.block_bytes)


def dequantize_raw(fmt: str, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Any supported GGML tensor (``shape`` in NumPy order, last axis contiguous) -> f32."""
    if fmt in FLOAT_FORMATS:
        flat = np.ascontiguousarray(raw).view(np.uint8).view(FLOAT_FORMATS[fmt])
        return flat.astype(np.float32).reshape(shape)
    cols = shape[-1]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return unpack(fmt, raw, rows, cols).dequantize().reshape(shape)
