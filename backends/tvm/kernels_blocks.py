# mypy: disable-error-code="valid-type,name-defined"
"""``q.block_dense`` on the CPU: packed 4/8-bit weights, int8 dot products, order kept.

The weights stay packed in memory (two 4-bit weights per byte) and are unpacked in
registers. For each tile of 16 output rows (tiles run in parallel), block by block:

* 4-bit weights are the unsigned operand of the dot product (``u = q + 8`` for i4, whose
  ``8 * sum(qx)`` is subtracted again; u4 as is), the int8 activations the signed one;
* 8-bit signed weights are the signed operand and the activations are made unsigned
  (``qx + 128``; ``128 * sum(q)`` per block, precomputed, is subtracted);
* ``isum`` (16 rows, int32) is converted and added into float64 accumulators in the order
  ``compiler.numerics.block_dense`` fixes (block by block; vectors run across rows), so the
  result equals the interpreter's bit for bit.

With AVX-512 VNNI four byte products per lane are one ``vpdpbusd``; without it the same
loop is written with scalar products that LLVM vectorizes (``pmaddubsw``-free: exact).

Packed weight: ``[N/16, B, C, 64]`` bytes: chunk ``c`` of block ``b`` holds 16 rows x 4
bytes; for 4-bit weights byte ``[r, j]`` is ``u[r, 8c + j] | u[r, 8c + 4 + j] << 4`` (C = g/8),
for 8-bit ones it is ``q[r, 4c + j]`` (C = g/4).

Named subexpressions in the kernel are ``T.meta_var`` (inlined when the script is parsed):
as TIR ``let`` bindings inside the vectorized loops they gave wrong results in TVM 0.27.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LANES = 16


@dataclass(frozen=True)
class BlockLayout:
    """How one weight is packed: its shape, block size and the kernel variant it needs."""

    n: int
    k: int
    group: int
    bits: int  # 4 or 8
    offset: int  # subtracted per activation sum: 8 for i4 stored as u4, else 0
    signed8: bool  # i8 weights: the activations are the unsigned operand
    has_min: bool
    scale_dtype: str  # "float16" or "float32"

    @property
    def tiles(self) -> int:
        return -(-self.n // LANES)

    @property
    def blocks(self) -> int:
        return self.k // self.group

    @property
    def chunks(self) -> int:
        return self.group // (8 if self.bits == 4 else 4)


def layout_for(dtype: str, n: int, k: int, group: int, has_min: bool, scale: str) -> BlockLayout:
    bits = 4 if dtype in ("i4", "u4") else 8
    return BlockLayout(n, k, group, bits, 8 if dtype == "i4" else 0, dtype == "i8", has_min, scale)


def _tiles(a: np.ndarray, layout: BlockLayout) -> np.ndarray:
    """[N, B] -> [N/16, B, 16] with rows past N zero."""
    out = np.zeros((layout.tiles * LANES, a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return np.ascontiguousarray(out.reshape(layout.tiles, LANES, -1).transpose(0, 2, 1))


def pack(layout: BlockLayout, q: np.ndarray, d: np.ndarray, m: np.ndarray | None) -> list:
    """The kernel's constant operands: packed weight, scales (, offsets) (, 128 * sums)."""
    rows = layout.tiles * LANES
    full = np.zeros((rows, layout.k), np.int16)
    full[: layout.n] = q.astype(np.int16) + layout.offset
    blocked = full.reshape(layout.tiles, LANES, layout.blocks, layout.chunks, -1)
    if layout.bits == 4:  # [..., 8] -> low nibbles the first 4, high nibbles the next 4
        u = blocked.astype(np.uint8)
        byte = u[..., :4] | (u[..., 4:] << 4)
    else:
        byte = blocked.astype(np.int8).view(np.uint8)
    packed = np.ascontiguousarray(byte.transpose(0, 2, 3, 1, 4)).reshape(
        layout.tiles, layout.blocks, layout.chunks, 4 * LANES
    )
    scale_np = np.float16 if layout.scale_dtype == "float16" else np.float32
    out = [packed, _tiles(np.asarray(d).astype(scale_np), layout)]
    if layout.has_min:
        assert m is not None
        out.append(_tiles(np.asarray(m).astype(scale_np), layout))
    if layout.signed8:
        sums = q.astype(np.int64).reshape(layout.n, layout.blocks, -1).sum(axis=2) * 128
        out.append(_tiles(sums.astype(np.int32), layout))
    return out


def block_dense_func(layout: BlockLayout, rows: int, vnni: bool) -> Any:
    """The PrimFunc ``(X f32[rows, K], packed..., Y f32[rows, N])`` (already scheduled)."""
    from tvm.script import tirx as T

    M, K, N, G = rows, layout.k, layout.n, layout.group
    NT, B, C = layout.tiles, layout.blocks, layout.chunks
    four, signed8, has_min = layout.bits == 4, layout.signed8, layout.has_min
    off, sdt = layout.offset, layout.scale_dtype
    qdt = "uint8" if signed8 else "int8"
    vdpb = T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512") if vnni else 0

    @T.prim_func(s_tir=True)
    def func(
        X: T.Buffer((M, K), "float32"),
        W: T.Buffer((NT, B, C, 64), "uint8"),
        D: T.Buffer((NT, B, 16), sdt),
        MN: T.Buffer((NT, B, 16), sdt),
        WS: T.Buffer((NT, B, 16), "int32"),
        Y: T.Buffer((M, N), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        QX = T.alloc_buffer((M, K), qdt)
        DX = T.alloc_buffer((M, B), "float32")
        XS = T.alloc_buffer((M, B), "int32")
        for m, b in T.grid(M, B):
            with T.sblock("quantize"):
                T.reads(X[m, b * G : b * G + G])
                T.writes(QX[m, b * G : b * G + G], DX[m, b], XS[m, b])
                amax = T.alloc_buffer((1,), "float32", scope="local")
                tot = T.alloc_buffer((1,), "int32", scope="local")
                amax[0] = T.float32(0)
                for j in range(G):
                    amax[0] = T.max(amax[0], T.fabs(X[m, b * G + j]))
                dx = amax[0] / T.float32(127)
                DX[m, b] = dx
                tot[0] = 0
                for j in range(G):
                    v = T.if_then_else(
                        dx > T.float32(0),
                        T.Cast(
                            "int32",
                            T.max(
                                T.min(T.nearbyint(X[m, b * G + j] / dx), T.float32(127)),
                                T.float32(-128),
                            ),
                        ),
                        0,
                    )
                    tot[0] = tot[0] + v
                    QX[m, b * G + j] = T.Cast(qdt, v + 128 if signed8 else v)
                XS[m, b] = tot[0]
        for nt in T.parallel(NT):
            with T.sblock("tile"):
                T.reads(
                    W[nt, 0:B, 0:C, 0:64],
                    D[nt, 0:B, 0:16],
                    MN[nt, 0:B, 0:16],
                    WS[nt, 0:B, 0:16],
                    QX[0:M, 0:K],
                    DX[0:M, 0:B],
                    XS[0:M, 0:B],
                )
                T.writes(Y[0:M, 0:N])
                acc = T.alloc_buffer((M, 16), "float64", scope="local")
                isum = T.alloc_buffer((16,), "int32", scope="local")
                for m in range(M):
                    for i in T.vectorized(16):
                        acc[m, i] = T.float64(0)
                for b in range(B):
                    for m in range(M):
                        for i in T.vectorized(16):
                            isum[i] = 0
                        for c in range(C):
                            if four:
                                if vnni:
                                    wv = T.meta_var(W.vload([nt, b, c, 0], "uint8x64"))
                                    lo = T.meta_var(
                                        T.reinterpret(
                                            wv & T.broadcast(T.uint8(15), 64), dtype="int8x64"
                                        )
                                    )
                                    hi = T.meta_var(
                                        T.reinterpret(
                                            wv >> T.broadcast(T.uint8(4), 64), dtype="int8x64"
                                        )
                                    )
                                    xa4 = T.meta_var(QX.vload([m, b * G + c * 8], "int8x4"))
                                    xb4 = T.meta_var(QX.vload([m, b * G + c * 8 + 4], "int8x4"))
                                    xa = T.meta_var(
                                        T.reinterpret(
                                            T.broadcast(T.reinterpret(xa4, dtype="int32"), 16),
                                            dtype="int8x64",
                                        )
                                    )
                                    xb = T.meta_var(
                                        T.reinterpret(
                                            T.broadcast(T.reinterpret(xb4, dtype="int32"), 16),
                                            dtype="int8x64",
                                        )
                                    )
                                    isum[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                                        vdpb,
                                        isum.vload([0], "int32x16"),
                                        lo,
                                        xa,
                                        dtype="int32x16",
                                    )
                                    isum[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                                        vdpb,
                                        isum.vload([0], "int32x16"),
                                        hi,
                                        xb,
                                        dtype="int32x16",
                                    )
                                else:
                                    for i in T.vectorized(16):
                                        for j in T.unroll(4):
                                            wb = T.meta_var(W[nt, b, c, i * 4 + j])
                                            isum[i] = (
                                                isum[i]
                                                + T.Cast("int32", wb & T.uint8(15))
                                                * T.Cast("int32", QX[m, b * G + c * 8 + j])
                                                + T.Cast("int32", wb >> T.uint8(4))
                                                * T.Cast("int32", QX[m, b * G + c * 8 + 4 + j])
                                            )
                            else:
                                if vnni:
                                    wv = T.meta_var(
                                        T.reinterpret(
                                            W.vload([nt, b, c, 0], "uint8x64"), dtype="int8x64"
                                        )
                                    )
                                    x4 = T.meta_var(QX.vload([m, b * G + c * 4], qdt + "x4"))
                                    xa = T.meta_var(
                                        T.reinterpret(
                                            T.broadcast(T.reinterpret(x4, dtype="int32"), 16),
                                            dtype="int8x64",
                                        )
                                    )
                                    # vpdpbusd: the first byte operand is the unsigned one.
                                    if signed8:
                                        isum[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                                            vdpb,
                                            isum.vload([0], "int32x16"),
                                            xa,
                                            wv,
                                            dtype="int32x16",
                                        )
                                    else:
                                        isum[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                                            vdpb,
                                            isum.vload([0], "int32x16"),
                                            wv,
                                            xa,
                                            dtype="int32x16",
                                        )
                                else:
                                    for i in T.vectorized(16):
                                        for j in T.unroll(4):
                                            wb = T.meta_var(W[nt, b, c, i * 4 + j])
                                            wq = T.meta_var(
                                                T.reinterpret(wb, dtype="int8") if signed8 else wb
                                            )
                                            isum[i] = isum[i] + T.Cast("int32", wq) * T.Cast(
                                                "int32", QX[m, b * G + c * 4 + j]
                                            )
                        for i in T.vectorized(16):
                            ds = T.meta_var(T.Cast("float32", D[nt, b, i]) * DX[m, b])
                            fix = T.meta_var(WS[nt, b, i] if signed8 else off * XS[m, b])
                            acc[m, i] = acc[m, i] + T.Cast("float64", ds) * T.Cast(
                                "float64", isum[i] - fix
                            )
                        if has_min:
                            for i in T.vectorized(16):
                                mn = T.meta_var(T.Cast("float32", MN[nt, b, i]))
                                cx = T.meta_var(DX[m, b] * T.Cast("float32", XS[m, b]))
                                acc[m, i] = acc[m, i] + T.Cast("float64", mn) * T.Cast(
                                    "float64", cx
                                )
                for m in range(M):
                    for i in range(16):
                        if nt * 16 + i < N:
                            Y[m, nt * 16 + i] = T.Cast("float32", acc[m, i])

    return func
