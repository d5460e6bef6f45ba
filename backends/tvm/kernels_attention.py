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
   step's kernel (``decode_attention_func``) does it once per row itself.

Then per (batch row, query row) and KV head, for the ``G`` query heads that share it:

2. scores ``q . k * scale``: one key row loaded once for all ``G`` heads, ``LANES`` partial
   sums per head, summed as a tree (log2 LANES vector adds, not a serial chain); the row
   maximum on the way;
3. ``exp(score - max)`` over the compacted scores, ``LANES`` at a time (``fastmath``'s
   vector exp), summed;
4. weighted value rows accumulated for all ``G`` heads, divided by the sum at the end.

A query that sees no slot gives 0, as the interpreter does. A decode step (``C = 1``) runs
on the calling thread below ``DECODE_SPLIT_FROM`` kept slots (its few thousand multiply-adds
per head cost less than a fork and join of the threads); from there each KV head's slots
split into parts over the threads, merged after (flash-decoding). A prefill chunk runs its
(batch, query row) pairs in parallel, as 16 tasks of strided rows (the local buffers come
from TVM's workspace pool, a call to take and one to give back each: once per task, not per
row). The summation order differs from the interpreter's (float32 rounding only), as TVM's
own attention kernels do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Partial sums per dot product: one AVX-512 vector of float32.
LANES = 16
#: A decode step's task count is a multiple of this (see ``decode_parts``).
DECODE_SPLIT = 2
#: Kept slots (all rows together) from which a decode step's attention runs in parallel: below,
#: a fork and join of the threads costs more than the split saves.
DECODE_SPLIT_FROM = 128


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


def _exp_sums() -> Any:
    """The TVMScript macro ``exp_sums(score, peak, sums, g, n)`` of both kernels: query head
    ``g``'s first ``n`` scores replaced by ``exp(score - peak[g])``, a vector at a time (the
    padding lanes give 0), and summed into the ``LANES`` partial sums ``sums[g, :]``."""
    from tvm.script import tirx as T

    @T.macro
    def exp_sums(score: Any, peak: Any, sums: Any, g: Any, n: Any) -> None:
        for lane in T.vectorized(LANES):
            sums[g, lane] = T.float32(0)
        for i0 in range((n + LANES - 1) // LANES):
            for lane in T.vectorized(LANES):
                i = T.meta_var(i0 * LANES + lane)
                e = T.meta_var(T.Select(i < n, T.exp(score[g, i] - peak[g]), T.float32(0)))
                score[g, i] = e
                sums[g, lane] = sums[g, lane] + score[g, i]

    return exp_sums


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
    exp_sums = _exp_sums()

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
            exp_sums(score, peak, sums, g, count[1])
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


def decode_parts(shape: AttentionShape) -> int:
    """How many parts a decode step splits each (query row, KV head)'s kept slots into: the
    fewest that make the task count a multiple of ``DECODE_SPLIT``, so that the tasks divide
    evenly over 1 or 2 threads whatever the head count (3 KV heads: 2 parts, 6 tasks)."""
    tasks = shape.batch * shape.chunk * shape.heads
    return DECODE_SPLIT // math.gcd(tasks, DECODE_SPLIT)


def decode_attention_func(shape: AttentionShape) -> Any:
    """The PrimFunc ``(Q [B,H,G,C,D], PK [B,H,S,D], NK [B,H,C,D], PV, NV, M bool[MB,1,MR,S+C],
    Y [B,H,G,C,D])``, already scheduled, for a decode step (flash-decoding):

    1. each (batch row, query row)'s mask row is compacted into its list of kept slots, once
       for all KV heads, before any thread starts (a walk of ``S + C`` flags);
    2. with at least ``DECODE_SPLIT_FROM`` kept slots in all, in parallel: each task takes
       one (row, KV head) and one of ``decode_parts`` equal shares of its kept slots (fewer,
       on the calling thread: one task per (row, KV head), as a fork and join of the threads
       would cost more than it saves): scores, their maximum, ``exp(score - max)`` and its
       sum, the weighted value rows, all for the ``G`` query heads that share the KV head;
    3. then the parts of each (row, KV head) are merged: each part's sum and values scaled by
       ``exp(its max - the max)``, divided by the total. A part with no slot weighs 0 (its
       max is -inf), and a row that sees no slot at all gives 0.
    """
    from tvm.script import tirx as T

    B, H, G, S, C, D = shape.batch, shape.heads, shape.group, shape.slots, shape.chunk, shape.dim
    MB, MR, N = shape.mask_batch, shape.mask_rows, shape.slots + shape.chunk
    L = _lanes(D)
    J = D // L
    P = decode_parts(shape)
    ROWS = B * C
    TASKS = ROWS * H * P
    PART = (N + P - 1) // P  # the most kept slots one part gets
    PP = (PART + LANES - 1) // LANES * LANES  # scores padded to whole vectors
    NP = (N + LANES - 1) // LANES * LANES
    scale, causal = shape.scale, shape.causal

    # Macros are expanded where they are called: one body for the cache's rows and the chunk's.
    exp_sums = _exp_sums()

    @T.macro
    def scores(
        Q: Any, K: Any, b: Any, h: Any, c: Any, lo: Any, hi: Any,
        mine: Any, score: Any, peak: Any,
    ) -> None:  # fmt: skip
        for i in range(lo, hi):
            for g in T.unroll(G):
                dot = T.meta_var(_dot(Q, (b, h, g, c), K, (b, h, mine[i]), L, J))
                score[g, i] = _hsum(dot, L) * T.float32(scale)
                peak[g] = T.max(peak[g], score[g, i])

    @T.macro
    def weigh(V: Any, b: Any, h: Any, lo: Any, hi: Any, mine: Any, score: Any, acc: Any) -> None:
        for i in range(lo, hi):
            for g in T.unroll(G):
                for d in T.vectorized(D):
                    acc[g, d] = acc[g, d] + score[g, i] * V[b, h, mine[i], d]

    @T.macro
    def part(
        Q: Any, PK: Any, NK: Any, PV: Any, NV: Any, keep: Any, count: Any, bc: Any, h: Any,
        first: Any, size: Any, task: Any, part_max: Any, part_sum: Any, part_acc: Any,
        mine: Any, span: Any, score: Any, sums: Any, peak: Any, acc: Any,
    ) -> None:  # fmt: skip
        # The kept slots [first, first + size) of row bc, copied next to the scores (reading
        # the shared list in the loops measured twice as slow), and where the cache's slots
        # end and the chunk's begin; the results go to part ``task``.
        b = T.meta_var(bc // C)
        c = T.meta_var(bc % C)
        span[0] = first
        span[1] = size
        span[2] = T.min(T.max(count[bc, 0] - span[0], 0), span[1])
        for i in range(span[1]):
            mine[i] = keep[bc, span[0] + i]
        # Scores and their maximum.
        for g in range(G):
            peak[g] = T.float32(float("-inf"))
        scores(Q, PK, b, h, c, 0, span[2], mine, score, peak)
        scores(Q, NK, b, h, c, span[2], span[1], mine, score, peak)
        # exp(score - max), a vector at a time; the padding lanes give 0.
        for g in range(G):
            exp_sums(score, peak, sums, g, span[1])
            part_sum[task, g] = _hsum(sums.vload([g, 0], f"float32x{LANES}"), LANES)
            part_max[task, g] = peak[g]
        # Weighted values, not yet divided by the sum.
        for g in range(G):
            for d in T.vectorized(D):
                acc[g, d] = T.float32(0)
        weigh(PV, b, h, 0, span[2], mine, score, acc)
        weigh(NV, b, h, span[2], span[1], mine, score, acc)
        for g in range(G):
            for d in T.vectorized(D):
                part_acc[task, g, d] = acc[g, d]

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
        keep = T.alloc_buffer((ROWS, N), "int32")
        count = T.alloc_buffer((ROWS, 2), "int32")
        total = T.alloc_buffer((1,), "int32")
        part_max = T.alloc_buffer((TASKS, G), "float32")
        part_sum = T.alloc_buffer((TASKS, G), "float32")
        part_acc = T.alloc_buffer((TASKS, G, D), "float32")
        # 1. The kept slots of each row: cache slots, then the chunk's (count 0, count 1).
        total[0] = 0
        for bc in range(ROWS):
            with T.sblock("slots"):
                T.reads(M[0:MB, 0, 0:MR, 0:N])
                T.writes(keep[bc, 0:N], count[bc, 0:2], total[0])
                n = T.alloc_buffer((1,), "int32", scope="local")
                mb = T.meta_var(0 if MB == 1 else bc // C)
                mr = T.meta_var(0 if MR == 1 else bc % C)
                # Branch-free: each slot is written at the current count, which grows by the
                # mask bit (a kept slot stays, a dropped one is overwritten).
                n[0] = 0
                for s in range(S):
                    keep[bc, n[0]] = s
                    n[0] = n[0] + T.Cast("int32", M[mb, 0, mr, s])
                count[bc, 0] = n[0]
                for j in range(C):
                    keep[bc, n[0]] = j
                    seen = T.meta_var(
                        T.Cast("int32", M[mb, 0, mr, S + j])
                        * (T.Cast("int32", j <= bc % C) if causal else 1)
                    )
                    n[0] = n[0] + seen
                count[bc, 1] = n[0]
                total[0] = total[0] + n[0]
        # 2. Few slots: one task per (row, KV head) on this thread, the other parts empty.
        if total[0] < DECODE_SPLIT_FROM:
            with T.sblock("serial"):
                T.reads(
                    Q[0:B, 0:H, 0:G, 0:C, 0:D], PK[0:B, 0:H, 0:S, 0:D], NK[0:B, 0:H, 0:C, 0:D],
                    PV[0:B, 0:H, 0:S, 0:D], NV[0:B, 0:H, 0:C, 0:D], keep[0:ROWS, 0:N],
                    count[0:ROWS, 0:2],
                )  # fmt: skip
                T.writes(
                    part_max[0:TASKS, 0:G], part_sum[0:TASKS, 0:G], part_acc[0:TASKS, 0:G, 0:D]
                )
                mine = T.alloc_buffer((NP,), "int32", scope="local")
                span = T.alloc_buffer((3,), "int32", scope="local")
                score = T.alloc_buffer((G, NP), "float32", scope="local")
                sums = T.alloc_buffer((G, LANES), "float32", scope="local")
                peak = T.alloc_buffer((G,), "float32", scope="local")
                acc = T.alloc_buffer((G, D), "float32", scope="local")
                for pair in range(ROWS * H):
                    bc = T.meta_var(pair // H)
                    part(Q, PK, NK, PV, NV, keep, count, bc, pair % H, 0, count[bc, 1],
                         pair * P, part_max, part_sum, part_acc, mine, span, score, sums, peak,
                         acc)  # fmt: skip
                    for p in range(1, P):
                        for g in range(G):
                            part_sum[pair * P + p, g] = T.float32(0)
                            part_max[pair * P + p, g] = T.float32(float("-inf"))
        # Many: each task one share of one (row, KV head)'s slots, in parallel.
        else:
            for task in T.parallel(TASKS):
                with T.sblock("parts"):
                    T.reads(
                        Q[0:B, 0:H, 0:G, 0:C, 0:D], PK[0:B, 0:H, 0:S, 0:D],
                        NK[0:B, 0:H, 0:C, 0:D], PV[0:B, 0:H, 0:S, 0:D], NV[0:B, 0:H, 0:C, 0:D],
                        keep[0:ROWS, 0:N], count[0:ROWS, 0:2],
                    )  # fmt: skip
                    T.writes(part_max[task, 0:G], part_sum[task, 0:G], part_acc[task, 0:G, 0:D])
                    mine = T.alloc_buffer((PP,), "int32", scope="local")
                    span = T.alloc_buffer((3,), "int32", scope="local")
                    score = T.alloc_buffer((G, PP), "float32", scope="local")
                    sums = T.alloc_buffer((G, LANES), "float32", scope="local")
                    peak = T.alloc_buffer((G,), "float32", scope="local")
                    acc = T.alloc_buffer((G, D), "float32", scope="local")
                    bc = T.meta_var(task // (H * P))
                    p = T.meta_var(task % P)
                    lo = T.meta_var(count[bc, 1] * p // P)
                    part(Q, PK, NK, PV, NV, keep, count, bc, task // P % H, lo,
                         count[bc, 1] * (p + 1) // P - lo, task, part_max, part_sum, part_acc,
                         mine, span, score, sums, peak, acc)  # fmt: skip
        # 3. Merge the parts of each (row, KV head, query head).
        for bc, h, g in T.grid(ROWS, H, G):
            with T.sblock("merge"):
                T.reads(part_max[0:TASKS, 0:G], part_sum[0:TASKS, 0:G], part_acc[0:TASKS, 0:G, 0:D])
                T.writes(Y[bc // C, h, g, bc % C, 0:D])
                top = T.alloc_buffer((2,), "float32", scope="local")
                out = T.alloc_buffer((D,), "float32", scope="local")
                first = T.meta_var((bc * H + h) * P)
                # The maximum over the parts that kept a slot (an empty part's max is never
                # written on the calling thread's path).
                top[0] = T.float32(float("-inf"))
                for p in range(P):
                    top[0] = T.Select(
                        part_sum[first + p, g] > T.float32(0),
                        T.max(top[0], part_max[first + p, g]),
                        top[0],
                    )
                top[1] = T.float32(0)
                for d in T.vectorized(D):
                    out[d] = T.float32(0)
                for p in range(P):
                    # An empty part weighs 0, not exp(-inf + inf) = NaN; its values (never
                    # written on the calling thread's path) are not read.
                    kept = T.meta_var(part_sum[first + p, g] > T.float32(0))
                    w = T.meta_var(
                        T.Select(kept, T.exp(part_max[first + p, g] - top[0]), T.float32(0))
                    )
                    top[1] = top[1] + w * part_sum[first + p, g]
                    for d in T.vectorized(D):
                        weighed = T.meta_var(w * part_acc[first + p, g, d])
                        out[d] = out[d] + T.Select(kept, weighed, T.float32(0))
                for d in T.vectorized(D):
                    Y[bc // C, h, g, bc % C, d] = T.Select(
                        top[1] > T.float32(0), out[d] / top[1], T.float32(0)
                    )

    return func
