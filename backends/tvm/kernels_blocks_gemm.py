# mypy: disable-error-code="valid-type,name-defined"
"""``q.block_dense`` over many activation rows (a prefill chunk) with AVX-512 VNNI.

The same packed operands and the same numbers as ``backends.tvm.kernels_blocks`` (whose
docstring defines the layout and the order of the float32 additions), scheduled for a
GEMM instead of a GEMV:

* the activations are quantized once per row and block (vector maxima and sums, a tree of
  halves at the end), the rows in parallel: a chunk's 32 x K values took one thread
  ~15 us (K = 576) to ~40 us (K = 1536) per call while the others waited;
* per tile of 16 output rows, ``GEMM_ROWS`` activation rows at a time run over *all*
  blocks: their float32 accumulators stay in registers for the whole reduction (the decode
  kernel walks the blocks outermost and keeps every row's accumulator in memory), and the
  tile's packed weights (a few KB) are re-read from L1 for each group of rows;
* each row's block sum is one chain of ``vpdpbusd`` started at ``-offset * sum(qx)``:
  ``GEMM_ROWS`` independent chains already cover the instruction's latency, so the decode
  kernel's second accumulator, the add that joins the two and the subtraction go.

On one thread the tile loop measured no faster than the decode kernel's 4-row blocking:
both are bound by the vector pipes, and per block and row the numerics need 4 float
operations (convert, ``d * dx``, two FMAs with a minimum) next to the 8 ``vpdpbusd`` of a
32-block (about 60% of the pipes' issue slots do integer products).

With 16-bit activation codes each row has two chains, one per int8 plane (the hi plane's
from 0, the lo plane's from ``-offset * sum(qx)``), joined as ``(hi << 8) + lo``: twice the
``vpdpbusd`` of 8-bit codes, so a prefill pays for the precision.

The integer block sums are exact whatever their order, and every float32 operation
(``f32(d) * dx``, the FMA into the accumulator, the minimum's FMA) happens in the order
``compiler.numerics.block_dense`` fixes, so the result is bit for bit the interpreter's.
"""

from __future__ import annotations

import operator
from typing import Any

from backends.tvm.kernels_blocks import CHUNKS, LANES, BlockLayout, write_codes

#: Activation rows per register block: 8 int32 sums and 8 float32 accumulators of 16 lanes,
#: 16 of the 32 AVX-512 registers, and 8 independent ``vpdpbusd`` chains.
GEMM_ROWS = 8

#: Quantize the rows in parallel (a second fork and join of the thread pool per call).
PARALLEL_QUANTIZE = True


def _lanes(group: int) -> int:
    """The widest power of two up to ``LANES`` that divides the block size."""
    lanes = LANES
    while group % lanes:
        lanes //= 2
    return lanes


def _fold(op: Any, parts: list, lanes: int) -> Any:
    """``op`` over every lane of ``parts`` (vectors of ``lanes``): the vectors elementwise,
    then a tree of halves in registers."""
    from tvm import tirx

    vector = parts[0]
    for part in parts[1:]:
        vector = op(vector, part)
    while lanes > 1:
        half = lanes // 2
        low = tirx.Shuffle([vector], list(range(half)))
        high = tirx.Shuffle([vector], list(range(half, lanes)))
        vector, lanes = op(low, high), half
    return vector


def block_gemm_func(layout: BlockLayout, rows: int) -> Any:
    """The PrimFunc ``(X f32[rows, K], W, D, MN, Y f32[rows, N])`` (already scheduled), for
    targets with AVX-512 VNNI; same operands as ``kernels_blocks.block_dense_func``."""
    from tvm.script import tirx as T

    M, K, N, G = rows, layout.k, layout.n, layout.group
    NT, B, C = layout.tiles, layout.blocks, layout.chunks
    four, has_min, off, sdt = layout.bits == 4, layout.has_min, layout.offset, layout.scale_dtype
    P, LEV = layout.planes, layout.levels  # int8 planes of the codes; the largest code
    R = min(M, GEMM_ROWS)
    MP = -(-M // R) * R  # rows padded to whole register blocks (zero activations)
    MT, MB = (NT, B) if has_min else (1, 1)
    TP = -(-NT // CHUNKS)
    NP = -(-NT // TP)
    whole = N % LANES == 0  # every tile full: vector stores
    vdpb = T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512")
    QL = _lanes(G)
    quant_rows = T.parallel if PARALLEL_QUANTIZE else T.serial

    def bcast(x4: Any) -> Any:
        """Four activation bytes repeated over the 16 lanes: the signed operand."""
        return T.reinterpret(T.broadcast(T.reinterpret(x4, dtype="int32"), 16), dtype="int8x64")

    def amax_parts(X: Any, m: Any, b: Any) -> list:
        """|x| of the block's floats as int32 vectors of ``QL`` lanes (the sign bit cleared)."""
        mask = T.broadcast(T.int32(0x7FFFFFFF), QL)
        return [
            T.reinterpret(X.vload([m, b * G + j * QL], f"float32x{QL}"), dtype=f"int32x{QL}") & mask
            for j in range(G // QL)
        ]

    def sum_parts(QX: Any, m: Any, b: Any) -> list:
        """The block's codes (``256 * hi + lo`` of two planes) as int32 vectors of ``QL``."""

        def plane(p: int, j: int) -> Any:
            return T.Cast(f"int32x{QL}", QX.vload([p, m, b * G + j * QL], f"int8x{QL}"))

        if P == 1:
            return [plane(0, j) for j in range(G // QL)]
        return [(plane(0, j) << 8) + plane(1, j) for j in range(G // QL)]

    def dot(acc: Any, w: Any, x4: Any) -> Any:
        return T.call_llvm_pure_intrin(vdpb, acc, w, bcast(x4), dtype="int32x16")

    codes = write_codes(G, LEV, P)

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
        XF = T.alloc_buffer((MP, B), "int32")  # -offset * sum(qx): where a block sum starts
        CX = T.alloc_buffer((MP, B), "float32")  # f32(dx * f32(sum(qx))): the min term
        for m in quant_rows(M):
            for b in range(B):
                with T.sblock("quantize"):
                    T.reads(X[m, b * G : b * G + G])
                    T.writes(QX[0:P, m, b * G : b * G + G], DX[m, b], XF[m, b], CX[m, b])
                    # max |x| on the float bits (non-negative floats order as integers), as
                    # vectors and a tree: exact in any order.
                    DX[m, b] = T.reinterpret(_fold(T.max, amax_parts(X, m, b), QL), dtype="float32")
                    DX[m, b] = DX[m, b] / T.float32(LEV)
                    codes(X, DX, QX, m, b)
                    tot = T.meta_var(_fold(operator.add, sum_parts(QX, m, b), QL))
                    XF[m, b] = -off * tot
                    CX[m, b] = DX[m, b] * T.Cast("float32", tot)
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
                    W[0:NT, 0:B, 0:C, 0:64], D[0:NT, 0:B, 0:16], MN[0:MT, 0:MB, 0:16],
                    QX[0:P, 0:MP, 0:K], DX[0:MP, 0:B], XF[0:MP, 0:B], CX[0:MP, 0:B],
                )  # fmt: skip
                T.writes(Y[0:M, 0:N])
                # R x 16 lanes each: small enough to live on the stack, so in registers.
                acc = T.alloc_buffer((R, 16), "float32", scope="local")
                # per row and plane: the hi plane's chain starts at 0, the last one's at XF
                isum = T.alloc_buffer((R * P, 16), "int32", scope="local")
                for t in range(TP):
                    nt = T.meta_var(p * TP + t)
                    if nt < NT:
                        for mb in range(MP // R):
                            for r in T.unroll(R):
                                for i in T.vectorized(16):
                                    acc[r, i] = T.float32(0)
                            for b in range(B):
                                for r in T.unroll(R):
                                    for i in T.vectorized(16):
                                        isum[r * P + P - 1, i] = XF[mb * R + r, b]
                                    if P == 2:
                                        for i in T.vectorized(16):
                                            isum[r * P, i] = 0
                                for c in T.unroll(C):
                                    wv = T.meta_var(W.vload([nt, b, c, 0], "uint8x64"))
                                    if four:
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
                                        for r in T.unroll(R):
                                            for pl in T.unroll(P):
                                                row = T.meta_var(mb * R + r)
                                                at = T.meta_var(b * G + c * 8)
                                                xa = T.meta_var(QX.vload([pl, row, at], "int8x4"))
                                                xb = T.meta_var(
                                                    QX.vload([pl, row, at + 4], "int8x4")
                                                )
                                                sl = T.meta_var(r * P + pl)
                                                isum[sl, T.ramp(0, 1, 16)] = dot(
                                                    dot(isum.vload([sl, 0], "int32x16"), lo, xa),
                                                    hi,
                                                    xb,
                                                )
                                    else:
                                        w8 = T.meta_var(T.reinterpret(wv, dtype="int8x64"))
                                        for r in T.unroll(R):
                                            for pl in T.unroll(P):
                                                row = T.meta_var(mb * R + r)
                                                x4 = T.meta_var(
                                                    QX.vload([pl, row, b * G + c * 4], "int8x4")
                                                )
                                                sl = T.meta_var(r * P + pl)
                                                isum[sl, T.ramp(0, 1, 16)] = dot(
                                                    isum.vload([sl, 0], "int32x16"), w8, x4
                                                )
                                for r in T.unroll(R):
                                    row = T.meta_var(mb * R + r)
                                    for i in T.vectorized(16):
                                        ds = T.meta_var(T.Cast("float32", D[nt, b, i]) * DX[row, b])
                                        total = T.meta_var(
                                            isum[r, i]
                                            if P == 1
                                            else (isum[r * P, i] << 8) + isum[r * P + 1, i]
                                        )
                                        acc[r, i] = T.fma(ds, T.Cast("float32", total), acc[r, i])
                                    if has_min:
                                        for i in T.vectorized(16):
                                            mn = T.meta_var(T.Cast("float32", MN[nt, b, i]))
                                            acc[r, i] = T.fma(mn, CX[row, b], acc[r, i])
                            for r in T.unroll(R):
                                row = T.meta_var(mb * R + r)
                                if row < M:
                                    if whole:
                                        for i in T.vectorized(16):
                                            Y[row, nt * 16 + i] = acc[r, i]
                                    else:
                                        for i in range(16):
                                            if nt * 16 + i < N:
                                                Y[row, nt * 16 + i] = acc[r, i]

    return func


def block_kernel_func(layout: BlockLayout, rows: int, vnni: bool) -> Any:
    """The kernel for ``rows`` activation rows: this GEMM for a chunk of rows with VNNI, the
    GEMV kernel of ``kernels_blocks`` for a decode step (or without VNNI)."""
    from backends.tvm.kernels_blocks import block_dense_func

    if vnni and rows > 1:
        return block_gemm_func(layout, rows)
    return block_dense_func(layout, rows, vnni)
