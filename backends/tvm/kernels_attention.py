# mypy: disable-error-code="valid-type,name-defined"
"""Attention over a KV cache, decode step or prefill chunk: the cache read in place.

The step graphs attend over ``concat(past, new)`` (``[B, n_kv, S + C, D]``, then Hugging
Face's ``repeat_kv``) with a boolean mask ``[B, 1, C, S + C]`` that says which slots each
query row sees (cache validity, then causal and padding within the chunk). Lowered op by op,
every step copies the whole cache per layer (the concat, the repeat, the key transpose) and
multiplies over every slot, used or not. This kernel reads the cache where it lies and the
chunk's own keys/values as the slots after it, and loads only the rows of unmasked slots:
the bytes read per step grow with the tokens written, not with the compiled context (the
runtime valid length that static shapes otherwise lack).

1. each (batch row, query row)'s mask row is compacted into a list of the slots it keeps
   (branch-free: each slot is written at the current count, and the count grows by the
   mask bit), cache slots first, then the chunk's. It walks every cache slot, used or not:
   for a prefill chunk ``slots_func`` does it once per step for all layers and KV heads
   (done per layer and head it cost more than the attention of a short prompt); a decode
   step's kernel (``decode_attention_func``) does it per KV head itself.

Then per (batch row, query row) and KV head, for the ``G`` query heads that share it:

2. scores ``q . k * scale``: one key row loaded once for all ``G`` heads, ``LANES`` partial
   sums per head, summed as a tree (log2 LANES vector adds, not a serial chain); the row
   maximum on the way;
3. ``exp(score - max)`` over the compacted scores, ``LANES`` at a time (``fastmath``'s
   vector exp), summed;
4. weighted value rows accumulated for all ``G`` heads, divided by the sum at the end.

A query that sees no slot gives 0, as the interpreter does. A decode step (``C = 1``) runs
serially: its few thousand multiply-adds per head cost less than a thread barrier. A prefill
chunk runs its (batch, query row) pairs in parallel, as 16 tasks of strided rows
(the local buffers come from TVM's workspace pool, a call to take and one to give back each:
once per task, not per row). The summation order differs from the interpreter's (float32
rounding only), as TVM's own attention kernels do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Partial sums per dot product: one AVX-512 vector of float32.
LANES = 16


@dataclass(frozen=True)
class AttentionShape:
    """What one kernel is built for: ``batch`` rows, ``heads`` KV heads of ``group`` query
    heads each, ``slots`` cache slots, a ``chunk`` of new tokens (1: a decode step), head
    size ``dim``; the mask's batch and row counts (1 or ``batch`` / ``chunk``: broadcast)."""

    batch: int
    heads: int
    group: int
    slots: int
    chunk: int
    dim: int
    mask_batch: int
    mask_rows: int
    scale: float
    causal: bool = False
    parallel: bool = False

    @property
    def name(self) -> str:
        """The kernel's symbol: one kernel per shape, identical kernels added once."""
        kind = "decode" if self.chunk == 1 else "prefill"
        return (
            f"tapeout_{kind}_attention_b{self.batch}_h{self.heads}_g{self.group}"
            f"_s{self.slots}_c{self.chunk}_d{self.dim}_m{self.mask_batch}x{self.mask_rows}"
            + ("_causal" if self.causal else "")
            + ("_par" if self.parallel else "")
        )

    @property
    def slots_name(self) -> str:
        """The symbol of ``slots_func`` for this shape (shared by every layer of a step)."""
        return (
            f"tapeout_attention_slots_b{self.batch}_s{self.slots}_c{self.chunk}"
            f"_m{self.mask_batch}x{self.mask_rows}"
            + ("_causal" if self.causal else "")
            + ("_par" if self.parallel else "")
        )


def _lanes(dim: int) -> int:
    """The widest power of two up to ``LANES`` that divides the head size."""
    lanes = LANES
    while dim % lanes:
        lanes //= 2
    return lanes


def _dot(Q: Any, qi: tuple, K: Any, ki: tuple, lanes: int, parts: int) -> Any:
    """``lanes`` partial sums of ``Q[qi] . K[ki]`` over ``lanes * parts`` elements, one
    vector expression (LLVM fuses the multiply-adds)."""
    vec = f"float32x{lanes}" if lanes > 1 else "float32"
    terms = [Q.vload([*qi, j * lanes], vec) * K.vload([*ki, j * lanes], vec) for j in range(parts)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _hsum(vector: Any, lanes: int) -> Any:
    """The sum of a vector's lanes as a tree of halves: log2(lanes) shuffles and adds in
    registers (a loop over the lanes would be a serial chain of scalar adds)."""
    from tvm import tirx

    while lanes > 1:
        half = lanes // 2
        low = tirx.Shuffle([vector], list(range(half)))
        high = tirx.Shuffle([vector], list(range(half, lanes)))
        vector, lanes = low + high, half
    return vector


def attention_func(shape: AttentionShape) -> Any:
    """The PrimFunc ``(Q [B,H,G,C,D], PK [B,H,S,D], NK [B,H,C,D], PV, NV, KEEP int32[B,C,S+C],
    COUNT int32[B,C,2], Y [B,H,G,C,D])``, already scheduled; ``KEEP``/``COUNT`` come from
    ``slots_func``."""
    from tvm.script import tirx as T

    B, H, G, S, C, D = shape.batch, shape.heads, shape.group, shape.slots, shape.chunk, shape.dim
    N = shape.slots + shape.chunk
    L = _lanes(D)
    J = D // L
    NP = (N + LANES - 1) // LANES * LANES  # scores padded to whole vectors
    scale = shape.scale
    rows = T.parallel if shape.parallel else T.serial
    ROWS = B * C
    # Local buffers come from TVM's workspace pool (a call each to take and give back): once
    # per task, not per row. 16 tasks split evenly over 1, 2, 4, 8 or 16 threads.
    TASKS = min(ROWS, 16) if shape.parallel else 1

    # Macros are expanded where they are called: one body for the cache's rows and the chunk's.
    @T.macro
    def scores(
        Q: Any, K: Any, b: Any, h: Any, c: Any, lo: Any, hi: Any,
        keep: Any, kb: Any, kc: Any, score: Any, peak: Any,
    ) -> None:  # fmt: skip
        for i in range(lo, hi):
            for g in T.unroll(G):
                dot = T.meta_var(_dot(Q, (b, h, g, c), K, (b, h, keep[kb, kc, i]), L, J))
                score[g, i] = _hsum(dot, L) * T.float32(scale)
                peak[g] = T.max(peak[g], score[g, i])

    @T.macro
    def weigh(
        V: Any, b: Any, h: Any, lo: Any, hi: Any, keep: Any, kb: Any, kc: Any, score: Any,
        acc: Any,
    ) -> None:
        for i in range(lo, hi):
            for g in T.unroll(G):
                for d in T.vectorized(D):
                    acc[g, d] = acc[g, d] + score[g, i] * V[b, h, keep[kb, kc, i], d]

    @T.macro
    def head(
        Q: Any, PK: Any, NK: Any, PV: Any, NV: Any, Y: Any, b: Any, h: Any, c: Any, keep: Any,
        kb: Any, kc: Any, count: Any, score: Any, sums: Any, peak: Any, total: Any, acc: Any,
    ) -> None:  # fmt: skip
        # 2. Scores and their maximum.
        for g in range(G):
            peak[g] = T.float32(float("-inf"))
        scores(Q, PK, b, h, c, 0, count[0], keep, kb, kc, score, peak)
        scores(Q, NK, b, h, c, count[0], count[1], keep, kb, kc, score, peak)
        # 3. exp(score - max), a vector at a time; the padding lanes give 0.
        for g in range(G):
            for lane in T.vectorized(LANES):
                sums[g, lane] = T.float32(0)
            for i0 in range((count[1] + LANES - 1) // LANES):
                for lane in T.vectorized(LANES):
                    i = T.meta_var(i0 * LANES + lane)
                    e = T.meta_var(
                        T.Select(i < count[1], T.exp(score[g, i] - peak[g]), T.float32(0))
                    )
                    score[g, i] = e
                    sums[g, lane] = sums[g, lane] + score[g, i]
            total[g] = _hsum(sums.vload([g, 0], f"float32x{LANES}"), LANES)
        # 4. Weighted values, divided by the sum (0 for a row that sees nothing).
        for g in range(G):
            for d in T.vectorized(D):
                acc[g, d] = T.float32(0)
        weigh(PV, b, h, 0, count[0], keep, kb, kc, score, acc)
        weigh(NV, b, h, count[0], count[1], keep, kb, kc, score, acc)
        for g in range(G):
            for d in T.vectorized(D):
                Y[b, h, g, c, d] = T.Select(
                    total[g] > T.float32(0), acc[g, d] / total[g], T.float32(0)
                )

    @T.prim_func(s_tir=True)
    def func(
        Q: T.Buffer((B, H, G, C, D), "float32"),
        PK: T.Buffer((B, H, S, D), "float32"),
        NK: T.Buffer((B, H, C, D), "float32"),
        PV: T.Buffer((B, H, S, D), "float32"),
        NV: T.Buffer((B, H, C, D), "float32"),
        KEEP: T.Buffer((B, C, N), "int32"),
        COUNT: T.Buffer((B, C, 2), "int32"),
        Y: T.Buffer((B, H, G, C, D), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for task in rows(TASKS):
            with T.sblock("rows"):
                T.reads(
                    Q[0:B, 0:H, 0:G, 0:C, 0:D], PK[0:B, 0:H, 0:S, 0:D], NK[0:B, 0:H, 0:C, 0:D],
                    PV[0:B, 0:H, 0:S, 0:D], NV[0:B, 0:H, 0:C, 0:D], KEEP[0:B, 0:C, 0:N],
                    COUNT[0:B, 0:C, 0:2],
                )  # fmt: skip
                T.writes(Y[0:B, 0:H, 0:G, 0:C, 0:D])
                count = T.alloc_buffer((2,), "int32", scope="local")
                score = T.alloc_buffer((G, NP), "float32", scope="local")
                sums = T.alloc_buffer((G, LANES), "float32", scope="local")
                peak = T.alloc_buffer((G,), "float32", scope="local")
                total = T.alloc_buffer((G,), "float32", scope="local")
                acc = T.alloc_buffer((G, D), "float32", scope="local")

                # Rows task, task + TASKS, ...: a causal chunk's short and long rows alternate.
                for r in range((ROWS + TASKS - 1) // TASKS):
                    if r * TASKS + task < ROWS:
                        bc = T.meta_var(r * TASKS + task)
                        b = T.meta_var(bc // C)
                        c = T.meta_var(bc % C)
                        count[0] = COUNT[b, c, 0]
                        count[1] = COUNT[b, c, 1]
                        for h in range(H):
                            head(Q, PK, NK, PV, NV, Y, b, h, c, KEEP, b, c, count, score, sums,
                                 peak, total, acc)  # fmt: skip

    return func


def slots_func(shape: AttentionShape) -> Any:
    """The PrimFunc ``(M bool[MB,1,MR,S+C], KEEP int32[B,C,S+C], COUNT int32[B,C,2])``,
    already scheduled: per (batch row, query row) the slots its mask keeps (cache slots, then
    the chunk's with the causal rule) and how many (cache, all). Every layer of a step reads
    the same mask: this runs once per step and each layer's ``attention_func`` reads it."""
    from tvm.script import tirx as T

    B, S, C, N = shape.batch, shape.slots, shape.chunk, shape.slots + shape.chunk
    MB, MR, causal = shape.mask_batch, shape.mask_rows, shape.causal
    rows = T.parallel if shape.parallel else T.serial

    @T.prim_func(s_tir=True)
    def func(
        M: T.Buffer((MB, 1, MR, N), "bool"),
        KEEP: T.Buffer((B, C, N), "int32"),
        COUNT: T.Buffer((B, C, 2), "int32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for bc in rows(B * C):
            with T.sblock("slots"):
                T.reads(M[0:MB, 0, 0:MR, 0:N])
                T.writes(KEEP[bc // C, bc % C, 0:N], COUNT[bc // C, bc % C, 0:2])
                n = T.alloc_buffer((1,), "int32", scope="local")
                b = T.meta_var(bc // C)
                c = T.meta_var(bc % C)
                mb = T.meta_var(0 if MB == 1 else b)
                mr = T.meta_var(0 if MR == 1 else c)
                # Branch-free: each slot is written at the current count, which grows by the
                # mask bit (a kept slot stays, a dropped one is overwritten).
                n[0] = 0
                for s in range(S):
                    KEEP[b, c, n[0]] = s
                    n[0] = n[0] + T.Cast("int32", M[mb, 0, mr, s])
                COUNT[b, c, 0] = n[0]
                for j in range(C):
                    KEEP[b, c, n[0]] = j
                    seen = T.meta_var(
                        T.Cast("int32", M[mb, 0, mr, S + j])
                        * (T.Cast("int32", j <= c) if causal else 1)
                    )
                    n[0] = n[0] + seen
                COUNT[b, c, 1] = n[0]

    return func


def decode_attention_func(shape: AttentionShape) -> Any:
    """The PrimFunc ``(Q [B,H,G,C,D], PK [B,H,S,D], NK [B,H,C,D], PV, NV, M bool[MB,1,MR,S+C],
    Y [B,H,G,C,D])``, already scheduled, for a decode step: each (batch row, KV head, query
    row) compacts its mask row itself. Reading ``slots_func``'s list instead measured up to
    15% slower at 160 valid slots (one query row: the walk is short next to its loads)."""
    from tvm.script import tirx as T

    B, H, G, S, C, D = shape.batch, shape.heads, shape.group, shape.slots, shape.chunk, shape.dim
    MB, MR, N = shape.mask_batch, shape.mask_rows, shape.slots + shape.chunk
    L = _lanes(D)
    J = D // L
    NP = (N + LANES - 1) // LANES * LANES  # scores padded to whole vectors
    scale, causal = shape.scale, shape.causal
    rows = T.parallel if shape.parallel else T.serial
    ROWS = B * H * C
    # Local buffers come from TVM's workspace pool (a call each to take and give back): once
    # per task, not per row. 16 tasks split evenly over 1, 2, 4, 8 or 16 threads.
    TASKS = min(ROWS, 16) if shape.parallel else 1

    # Macros are expanded where they are called: one body for the cache's rows and the chunk's.
    @T.macro
    def scores(
        Q: Any, K: Any, b: Any, h: Any, c: Any, lo: Any, hi: Any,
        keep: Any, score: Any, peak: Any,
    ) -> None:  # fmt: skip
        for i in range(lo, hi):
            for g in T.unroll(G):
                dot = T.meta_var(_dot(Q, (b, h, g, c), K, (b, h, keep[i]), L, J))
                score[g, i] = _hsum(dot, L) * T.float32(scale)
                peak[g] = T.max(peak[g], score[g, i])

    @T.macro
    def weigh(V: Any, b: Any, h: Any, lo: Any, hi: Any, keep: Any, score: Any, acc: Any) -> None:
        for i in range(lo, hi):
            for g in T.unroll(G):
                for d in T.vectorized(D):
                    acc[g, d] = acc[g, d] + score[g, i] * V[b, h, keep[i], d]

    @T.prim_func(s_tir=True)
    def func(
        Q: T.Buffer((B, H, G, C, D), "float32"),
        PK: T.Buffer((B, H, S, D), "float32"),
        NK: T.Buffer((B, H, C, D), "float32"),
        PV: T.Buffer((B, H, S, D), "float32"),
        NV: T.Buffer((B, H, C, D), "float32"),
        M: T.Buffer((MB, 1, MR, N), "bool"),
        Y: T.Buffer((B, H, G, C, D), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for task in rows(TASKS):
            with T.sblock("rows"):
                T.reads(
                    Q[0:B, 0:H, 0:G, 0:C, 0:D], PK[0:B, 0:H, 0:S, 0:D], NK[0:B, 0:H, 0:C, 0:D],
                    PV[0:B, 0:H, 0:S, 0:D], NV[0:B, 0:H, 0:C, 0:D], M[0:MB, 0, 0:MR, 0:N],
                )  # fmt: skip
                T.writes(Y[0:B, 0:H, 0:G, 0:C, 0:D])
                keep = T.alloc_buffer((N,), "int32", scope="local")
                count = T.alloc_buffer((2,), "int32", scope="local")
                score = T.alloc_buffer((G, NP), "float32", scope="local")
                sums = T.alloc_buffer((G, LANES), "float32", scope="local")
                peak = T.alloc_buffer((G,), "float32", scope="local")
                total = T.alloc_buffer((G,), "float32", scope="local")
                acc = T.alloc_buffer((G, D), "float32", scope="local")

                # Rows task, task + TASKS, ...: a causal chunk's short and long rows alternate.
                for r in range((ROWS + TASKS - 1) // TASKS):
                    if r * TASKS + task < ROWS:
                        bhc = T.meta_var(r * TASKS + task)
                        b = T.meta_var(bhc // (H * C))
                        h = T.meta_var(bhc // C % H)
                        c = T.meta_var(bhc % C)
                        mb = T.meta_var(0 if MB == 1 else b)
                        mr = T.meta_var(0 if MR == 1 else c)
                        # 1. The kept slots: cache slots, then the chunk's (count[0], count[1]).
                        count[0] = 0
                        for s in range(S):
                            keep[count[0]] = s
                            count[0] = count[0] + T.Cast("int32", M[mb, 0, mr, s])
                        count[1] = count[0]
                        for j in range(C):
                            keep[count[1]] = j
                            seen = T.meta_var(
                                T.Cast("int32", M[mb, 0, mr, S + j])
                                * (T.Cast("int32", j <= c) if causal else 1)
                            )
                            count[1] = count[1] + seen
                        # 2. Scores and their maximum.
                        for g in range(G):
                            peak[g] = T.float32(float("-inf"))
                        scores(Q, PK, b, h, c, 0, count[0], keep, score, peak)
                        scores(Q, NK, b, h, c, count[0], count[1], keep, score, peak)
                        # 3. exp(score - max), a vector at a time; the padding lanes give 0.
                        for g in range(G):
                            for lane in T.vectorized(LANES):
                                sums[g, lane] = T.float32(0)
                            for i0 in range((count[1] + LANES - 1) // LANES):
                                for lane in T.vectorized(LANES):
                                    i = T.meta_var(i0 * LANES + lane)
                                    e = T.meta_var(
                                        T.Select(
                                            i < count[1], T.exp(score[g, i] - peak[g]), T.float32(0)
                                        )
                                    )
                                    score[g, i] = e
                                    sums[g, lane] = sums[g, lane] + score[g, i]
                            total[g] = _hsum(sums.vload([g, 0], f"float32x{LANES}"), LANES)
                        # 4. Weighted values, divided by the sum (0 for a row that sees nothing).
                        for g in range(G):
                            for d in T.vectorized(D):
                                acc[g, d] = T.float32(0)
                        weigh(PV, b, h, 0, count[0], keep, score, acc)
                        weigh(NV, b, h, count[0], count[1], keep, score, acc)
                        for g in range(G):
                            for d in T.vectorized(D):
                                Y[b, h, g, c, d] = T.Select(
                                    total[g] > T.float32(0), acc[g, d] / total[g], T.float32(0)
                                )

    return func
