# mypy: disable-error-code="valid-type,name-defined"
"""``q.block_dense`` on the CPU: packed 4/8-bit weights, int8 dot products, order kept.

The weights stay packed in memory (two 4-bit weights per byte) and are unpacked in
registers. Every weight is stored unsigned, ``u = q + offset`` (8 for i4, 128 for i8, 0 for
u4/u8), and is the unsigned operand of the dot product; the int8 activations are the signed
one. ``offset * sum(qx)`` of each activation block is subtracted again, so no per-weight
correction array is read (an i8 weight used to need ``128 * sum(q)`` per block: 12% more
bytes for the LM head).

First the activations are quantized per row and block (``compiler.numerics.
quantize_act_blocks``), with ``offset * sum(qx)`` and ``f64(f32(dx * f32(sum(qx))))`` per
block computed once. Then, for each tile of 16 output rows (tiles run in parallel), block by
block, for ``R`` activation rows at a time (register blocking: each unpacked weight vector
feeds ``R`` rows' dot products; each row's block sum is split over two accumulators, so a
decode step's dot products do not form one serial chain):

* ``isum`` (16 output rows, int32) is converted to float32 and added into float32
  accumulators with one FMA per term (``T.fma``: fused whatever LLVM's contraction setting)
  in the order ``compiler.numerics.block_dense`` fixes (block by block; vectors run across
  output rows), so the result equals the interpreter's bit for bit.

With AVX-512 VNNI four byte products per lane are one ``vpdpbusd``; without it the same
loop is written with scalar products that LLVM vectorizes (``pmaddubsw``-free: exact).

16-bit activation codes (``layout.act_bits == 16``) are stored as two int8 planes,
``qx = 256 * hi + lo`` (``compiler.numerics.split_act_planes``); every unpacked weight vector
feeds one ``vpdpbusd`` per plane, each plane with its own pair of accumulators, and the block
sum is ``256 * (hi sums) + (lo sums)`` in int32 (exact: below 2^30), so a decode step still
loads each weight byte once.

Packed weight: ``[N/16, B, C, 64]`` bytes: chunk ``c`` of block ``b`` holds 16 rows x 4
bytes; for 4-bit weights byte ``[r, j]`` is ``u[r, 8c + j] | u[r, 8c + 4 + j] << 4`` (C = g/8),
for 8-bit ones it is ``u[r, 4c + j]`` (C = g/4).

Named subexpressions in the kernel are ``T.meta_var`` (inlined when the script is parsed):
as TIR ``let`` bindings inside the vectorized loops they gave wrong results in TVM 0.27.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LANES = 16

#: Activation rows that share one unpacked weight vector (a prefill's register blocking):
#: ``ROW_BLOCK`` int32 accumulators of 16 lanes stay in registers next to the weights.
ROW_BLOCK = 4

#: Parallel chunks of row tiles: divisible by 1, 2, 3, 4, 6, 8 and 12 threads.
CHUNKS = 24

#: What makes each weight dtype unsigned for ``vpdpbusd``.
OFFSETS = {"i4": 8, "i8": 128, "u4": 0, "u8": 0}


@dataclass(frozen=True)
class BlockLayout:
    """How one weight is packed: its shape, block size and the kernel variant it needs."""

    n: int
    k: int
    group: int
    bits: int  # 4 or 8
    offset: int  # stored u = q + offset; offset * sum(qx) is subtracted per block
    has_min: bool
    scale_dtype: str  # "float16" or "float32"
    act_bits: int = 8  # 16: codes split into two int8 planes (compiler.numerics.ACT_LEVELS)

    @property
    def planes(self) -> int:
        """int8 activation planes per dot product: 1, or 2 for 16-bit codes."""
        return 2 if self.act_bits == 16 else 1

    @property
    def levels(self) -> int:
        """The largest activation code (``compiler.numerics.ACT_LEVELS``)."""
        return 127 if self.act_bits == 8 else 127 * 256

    @property
    def tiles(self) -> int:
        return -(-self.n // LANES)

    @property
    def blocks(self) -> int:
        return self.k // self.group

    @property
    def chunks(self) -> int:
        return self.group // (8 if self.bits == 4 else 4)

    def weight_bytes(self) -> int:
        """Bytes one call reads of the packed weight, scales and offsets."""
        scale = 2 if self.scale_dtype == "float16" else 4
        per_block = self.chunks * 4 * LANES + scale * LANES * (2 if self.has_min else 1)
        return self.tiles * self.blocks * per_block


def layout_for(
    dtype: str, n: int, k: int, group: int, has_min: bool, scale: str, act_bits: int = 8
) -> BlockLayout:
    bits = 4 if dtype in ("i4", "u4") else 8
    return BlockLayout(n, k, group, bits, OFFSETS[dtype], has_min, scale, act_bits)


def _tiles(a: np.ndarray, layout: BlockLayout) -> np.ndarray:
    """[N, B] -> [N/16, B, 16] with rows past N zero."""
    out = np.zeros((layout.tiles * LANES, a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return np.ascontiguousarray(out.reshape(layout.tiles, LANES, -1).transpose(0, 2, 1))


def pack(layout: BlockLayout, q: np.ndarray, d: np.ndarray, m: np.ndarray | None) -> list:
    """The kernel's constant operands: packed weight, scales (, offsets)."""
    rows = layout.tiles * LANES
    full = np.zeros((rows, layout.k), np.int16)
    full[: layout.n] = q.astype(np.int16) + layout.offset
    blocked = full.reshape(layout.tiles, LANES, layout.blocks, layout.chunks, -1).astype(np.uint8)
    if layout.bits == 4:  # [..., 8] -> low nibbles the first 4, high nibbles the next 4
        blocked = (blocked[..., :4] | (blocked[..., 4:] << 4)).astype(np.uint8)
    packed = np.ascontiguousarray(blocked.transpose(0, 2, 3, 1, 4)).reshape(
        layout.tiles, layout.blocks, layout.chunks, 4 * LANES
    )
    scale_np = np.float16 if layout.scale_dtype == "float16" else np.float32
    out = [packed, _tiles(np.asarray(d).astype(scale_np), layout)]
    if layout.has_min:
        assert m is not None
        out.append(_tiles(np.asarray(m).astype(scale_np), layout))
    return out


def min_operand(layout: BlockLayout, packed: list) -> np.ndarray:
    """The kernel's ``MN`` operand: the offsets, or one vector of zeros that is never read."""
    if layout.has_min:
        return packed[2]
    return np.zeros((1, 1, LANES), packed[1].dtype)


def row_block(rows: int) -> int:
    """Activation rows per register block: all of them up to ``ROW_BLOCK``."""
    return min(rows, ROW_BLOCK)


def write_codes(G: int, LEV: int, P: int) -> Any:
    """The TVMScript macro ``codes(X, DX, QX, m, b)`` of the GEMV and GEMM kernels: block
    ``b`` of row ``m`` of ``X`` as codes ``round(x / dx)`` clamped to ``[-128, LEV]`` (one
    plane) or ``[-LEV, LEV]`` (``P = 2``), written to ``QX``: the codes themselves, or their
    planes ``hi = (code + 128) >> 8`` and ``lo = code - 256 * hi``
    (``compiler.numerics.split_act_planes``). ``dx == 0`` only when every ``|x| / LEV`` is
    below float32's range: ``x / 1`` rounds to 0 there, as the definition's "0 where
    dx = 0" says."""
    from tvm.script import tirx as T

    @T.macro
    def codes(X: Any, DX: Any, QX: Any, m: Any, b: Any) -> None:
        for j in T.vectorized(G):
            code = T.meta_var(
                T.max(
                    T.min(
                        T.nearbyint(
                            X[m, b * G + j] / T.Select(DX[m, b] > 0, DX[m, b], T.float32(1))
                        ),
                        T.float32(LEV),
                    ),
                    T.float32(-128 if P == 1 else -LEV),
                )
            )
            if P == 1:
                QX[0, m, b * G + j] = T.Cast("int8", code)
            else:
                QX[0, m, b * G + j] = T.Cast("int8", (T.Cast("int32", code) + 128) >> 8)
                QX[1, m, b * G + j] = T.Cast(
                    "int8", T.Cast("int32", code) - (T.Cast("int32", QX[0, m, b * G + j]) << 8)
                )

    return codes


def block_dense_func(layout: BlockLayout, rows: int, vnni: bool) -> Any:
    """The PrimFunc ``(X f32[rows, K], W, D, MN, Y f32[rows, N])`` (already scheduled)."""
    from tvm.script import tirx as T

    M, K, N, G = rows, layout.k, layout.n, layout.group
    NT, B, C = layout.tiles, layout.blocks, layout.chunks
    four, has_min, off, sdt = layout.bits == 4, layout.has_min, layout.offset, layout.scale_dtype
    R = row_block(M)
    MP = -(-M // R) * R  # rows padded to whole register blocks (zero activations)
    P, LEV = layout.planes, layout.levels  # int8 planes of the codes; the largest code
    # Accumulators per row and plane: two break the serial chain of a decode step's products.
    S = 2 * P
    # Without offsets ``MN`` is a placeholder of one vector, never read.
    MT, MB = (NT, B) if has_min else (1, 1)
    # Tiles run in CHUNKS parallel chunks of TP: the kernel's local buffers are allocated
    # once per chunk (TVM allocates them from its workspace pool, a call each, per iteration).
    TP = -(-NT // CHUNKS)
    NP = -(-NT // TP)
    vdpb = T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512") if vnni else 0

    codes = write_codes(G, LEV, P)

    def bcast(x4: Any) -> Any:
        """Four activation bytes repeated over the 16 lanes: the signed operand."""
        return T.reinterpret(T.broadcast(T.reinterpret(x4, dtype="int32"), 16), dtype="int8x64")

    @T.prim_func(s_tir=True)
    def func(
        X: T.Buffer((M, K), "float32"),
        W: T.Buffer((NT, B, C, 64), "uint8"),
        D: T.Buffer((NT, B, 16), sdt),
        MN: T.Buffer((MT, MB, 16), sdt),
        Y: T.Buffer((M, N), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        QX = T.alloc_buffer((P, MP, K), "int8")  # the codes, or their hi and lo planes
        DX = T.alloc_buffer((MP, B), "float32")
        XF = T.alloc_buffer((MP, B), "int32")  # offset * sum(qx)
        CX = T.alloc_buffer((MP, B), "float32")  # f32(dx * f32(sum(qx))): the min term
        for m, b in T.grid(M, B):
            with T.sblock("quantize"):
                T.reads(X[m, b * G : b * G + G])
                T.writes(QX[0:P, m, b * G : b * G + G], DX[m, b], XF[m, b], CX[m, b])
                amax = T.alloc_buffer((1,), "int32", scope="local")
                tot = T.alloc_buffer((1,), "int32", scope="local")
                # max |x| on the float bits (non-negative floats order as integers): an
                # integer max reduction, which LLVM vectorizes.
                amax[0] = 0
                for j in range(G):
                    amax[0] = T.max(
                        amax[0], T.reinterpret(X[m, b * G + j], dtype="int32") & 0x7FFFFFFF
                    )
                dx = T.meta_var(T.reinterpret(amax[0], dtype="float32") / T.float32(LEV))
                DX[m, b] = dx
                codes(X, DX, QX, m, b)
                tot[0] = 0
                for j in range(G):
                    if P == 1:
                        tot[0] = tot[0] + T.Cast("int32", QX[0, m, b * G + j])
                    else:
                        tot[0] = (
                            tot[0]
                            + (T.Cast("int32", QX[0, m, b * G + j]) << 8)
                            + T.Cast("int32", QX[1, m, b * G + j])
                        )
                XF[m, b] = off * tot[0]
                CX[m, b] = DX[m, b] * T.Cast("float32", tot[0])
        if MP > M:
            for m, b in T.grid(MP - M, B):
                with T.sblock("pad"):
                    T.reads()
                    T.writes(
                        QX[0:P, M + m, b * G : b * G + G], DX[M + m, b], XF[M + m, b], CX[M + m, b]
                    )
                    for pl, j in T.grid(P, G):
                        QX[pl, M + m, b * G + j] = T.int8(0)
                    DX[M + m, b] = T.float32(0)
                    XF[M + m, b] = 0
                    CX[M + m, b] = T.float32(0)
        for p in T.parallel(NP):
            with T.sblock("tiles"):
                T.reads(
                    W[0:NT, 0:B, 0:C, 0:64],
                    D[0:NT, 0:B, 0:16],
                    MN[0:MT, 0:MB, 0:16],
                    QX[0:P, 0:MP, 0:K],
                    DX[0:MP, 0:B],
                    XF[0:MP, 0:B],
                    CX[0:MP, 0:B],
                )
                T.writes(Y[0:M, 0:N])
                acc = T.alloc_buffer((MP, 16), "float32", scope="local")
                isum = T.alloc_buffer((R * S, 16), "int32", scope="local")
                for t in range(TP):
                    nt = T.meta_var(p * TP + t)
                    if nt < NT:
                        for m in range(MP):
                            for i in T.vectorized(16):
                                acc[m, i] = T.float32(0)
                        for b in range(B):
                            for mb in range(MP // R):
                                for a in T.unroll(R * S):
                                    for i in T.vectorized(16):
                                        isum[a, i] = 0
                                for c in T.unroll(C):
                                    if vnni:
                                        wv = T.meta_var(W.vload([nt, b, c, 0], "uint8x64"))
                                        if four:
                                            lo = T.meta_var(
                                                T.reinterpret(
                                                    wv & T.broadcast(T.uint8(15), 64),
                                                    dtype="int8x64",
                                                )
                                            )
                                            hi = T.meta_var(
                                                T.reinterpret(
                                                    wv >> T.broadcast(T.uint8(4), 64),
                                                    dtype="int8x64",
                                                )
                                            )
                                            for r in T.unroll(R):
                                                for pl in T.unroll(P):
                                                    row = T.meta_var(mb * R + r)
                                                    xa = T.meta_var(
                                                        bcast(
                                                            QX.vload(
                                                                [pl, row, b * G + c * 8], "int8x4"
                                                            )
                                                        )
                                                    )
                                                    xb = T.meta_var(
                                                        bcast(
                                                            QX.vload(
                                                                [pl, row, b * G + c * 8 + 4],
                                                                "int8x4",
                                                            )
                                                        )
                                                    )
                                                    sa = T.meta_var(r * S + 2 * pl)
                                                    isum[sa, T.ramp(0, 1, 16)] = (
                                                        T.call_llvm_pure_intrin(
                                                            vdpb,
                                                            isum.vload([sa, 0], "int32x16"),
                                                            lo,
                                                            xa,
                                                            dtype="int32x16",
                                                        )
                                                    )
                                                    isum[sa + 1, T.ramp(0, 1, 16)] = (
                                                        T.call_llvm_pure_intrin(
                                                            vdpb,
                                                            isum.vload([sa + 1, 0], "int32x16"),
                                                            hi,
                                                            xb,
                                                            dtype="int32x16",
                                                        )
                                                    )
                                        else:
                                            w8 = T.meta_var(T.reinterpret(wv, dtype="int8x64"))
                                            for r in T.unroll(R):
                                                for pl in T.unroll(P):
                                                    row = T.meta_var(mb * R + r)
                                                    x4 = T.meta_var(
                                                        bcast(
                                                            QX.vload(
                                                                [pl, row, b * G + c * 4], "int8x4"
                                                            )
                                                        )
                                                    )
                                                    slot = T.meta_var(r * S + 2 * pl + c % 2)
                                                    isum[slot, T.ramp(0, 1, 16)] = (
                                                        T.call_llvm_pure_intrin(
                                                            vdpb,
                                                            isum.vload([slot, 0], "int32x16"),
                                                            w8,
                                                            x4,
                                                            dtype="int32x16",
                                                        )
                                                    )
                                    else:
                                        for r, pl in T.grid(R, P):
                                            row = T.meta_var(mb * R + r)
                                            sa = T.meta_var(r * S + 2 * pl)
                                            for i in T.vectorized(16):
                                                for j in T.unroll(4):
                                                    wb = T.meta_var(W[nt, b, c, i * 4 + j])
                                                    if four:
                                                        isum[sa, i] = (
                                                            isum[sa, i]
                                                            + T.Cast("int32", wb & T.uint8(15))
                                                            * T.Cast(
                                                                "int32",
                                                                QX[pl, row, b * G + c * 8 + j],
                                                            )
                                                            + T.Cast("int32", wb >> T.uint8(4))
                                                            * T.Cast(
                                                                "int32",
                                                                QX[pl, row, b * G + c * 8 + 4 + j],
                                                            )
                                                        )
                                                    else:
                                                        isum[sa, i] = isum[sa, i] + T.Cast(
                                                            "int32", wb
                                                        ) * T.Cast(
                                                            "int32", QX[pl, row, b * G + c * 4 + j]
                                                        )
                                for r in T.unroll(R):
                                    row = T.meta_var(mb * R + r)
                                    for i in T.vectorized(16):
                                        pair = T.meta_var(isum[r * S, i] + isum[r * S + 1, i])
                                        total = T.meta_var(
                                            pair
                                            if P == 1
                                            else (pair << 8)
                                            + isum[r * S + 2, i]
                                            + isum[r * S + 3, i]
                                        )
                                        ds = T.meta_var(T.Cast("float32", D[nt, b, i]) * DX[row, b])
                                        acc[row, i] = T.fma(
                                            ds, T.Cast("float32", total - XF[row, b]), acc[row, i]
                                        )
                                    if has_min:
                                        for i in T.vectorized(16):
                                            mn = T.meta_var(T.Cast("float32", MN[nt, b, i]))
                                            acc[row, i] = T.fma(mn, CX[row, b], acc[row, i])
                        for m in range(M):
                            for i in range(16):
                                if nt * 16 + i < N:
                                    Y[m, nt * 16 + i] = acc[m, i]

    return func
