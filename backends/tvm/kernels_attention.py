# mypy: disable-error-code="valid-type,name-defined"
"""One decode step's attention over a KV cache: the cache read in place, masked slots skipped.

The decode graph attends over ``concat(past, new)`` (``[B, n_kv, S + 1, D]``, then Hugging
Face's ``repeat_kv``) with a boolean mask ``[B, 1, 1, S + 1]`` that says which slots hold
tokens. Lowered op by op, every step copies the whole cache twice per layer (the concat and
the key transpose) and multiplies over every slot, used or not. This kernel reads the cache
where it lies, the new key/value as the slot after it, and skips a masked slot before
loading its row: the bytes read per step grow with the tokens written, not with the
compiled context (the runtime valid length that static shapes otherwise lack).

Per (batch row, KV head), serially (a few thousand multiply-adds per head: a thread barrier
would cost more): for the ``G`` query heads of the group, scores ``q . k * scale`` over the
unmasked slots (``LANES`` partial sums, then their sum), the row maximum, ``exp(score -
max)`` summed, weighted values accumulated, divided by the sum at the end. A query that sees
no slot gives 0, as the interpreter does. The summation order differs from the interpreter's
(float32 rounding only), as TVM's own attention kernels do.
"""

from __future__ import annotations

from typing import Any

#: Partial sums per dot product: one AVX-512 vector of float32.
LANES = 16


def decode_attention_func(
    batch: int, heads: int, group: int, slots: int, dim: int, mask_batch: int, scale: float
) -> Any:
    """The PrimFunc ``(Q [B,H,G,D], PK, PV [B,H,S,D], NK, NV [B,H,1,D], M bool[MB,1,1,S+1],
    Y [B,H,G,D])``: ``H`` KV heads, ``G`` query heads per KV head, ``S`` cache slots, the
    mask's batch ``MB`` 1 or ``B`` (already scheduled)."""
    from tvm.script import tirx as T

    B, H, G, S, D = batch, heads, group, slots, dim
    L = LANES if dim % LANES == 0 else 1
    J = D // L
    one_mask = mask_batch == 1

    def last(s: Any) -> Any:
        # Slot S is the new row; the select still loads the cache row, so keep it in bounds.
        return T.min(s, S - 1)

    @T.prim_func(s_tir=True)
    def func(
        Q: T.Buffer((B, H, G, D), "float32"),
        PK: T.Buffer((B, H, S, D), "float32"),
        NK: T.Buffer((B, H, 1, D), "float32"),
        PV: T.Buffer((B, H, S, D), "float32"),
        NV: T.Buffer((B, H, 1, D), "float32"),
        M: T.Buffer((mask_batch, 1, 1, S + 1), "bool"),
        Y: T.Buffer((B, H, G, D), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for b, h in T.grid(B, H):
            with T.sblock("head"):
                T.reads(
                    Q[b, h, 0:G, 0:D], PK[b, h, 0:S, 0:D], NK[b, h, 0, 0:D],
                    PV[b, h, 0:S, 0:D], NV[b, h, 0, 0:D], M[0:mask_batch, 0, 0, 0:S + 1],
                )  # fmt: skip
                T.writes(Y[b, h, 0:G, 0:D])
                score = T.alloc_buffer((G, S + 1), "float32", scope="local")
                part = T.alloc_buffer((L,), "float32", scope="local")
                peak = T.alloc_buffer((G,), "float32", scope="local")
                total = T.alloc_buffer((G,), "float32", scope="local")
                acc = T.alloc_buffer((G, D), "float32", scope="local")
                mb = T.meta_var(0 if one_mask else b)
                for g in range(G):
                    peak[g] = T.float32(float("-inf"))
                    total[g] = T.float32(0)
                    for d in T.vectorized(D):
                        acc[g, d] = T.float32(0)
                # Scores of the unmasked slots: the cache's S rows, then the new row.
                for s in range(S + 1):
                    if M[mb, 0, 0, s]:
                        for g in range(G):
                            for lane in T.vectorized(L):
                                part[lane] = T.float32(0)
                            for j in range(J):
                                for lane in T.vectorized(L):
                                    i = T.meta_var(j * L + lane)
                                    key = T.meta_var(
                                        T.if_then_else(s < S, PK[b, h, last(s), i], NK[b, h, 0, i])
                                    )
                                    part[lane] = part[lane] + Q[b, h, g, i] * key
                            score[g, s] = T.float32(0)
                            for lane in range(L):
                                score[g, s] = score[g, s] + part[lane]
                            score[g, s] = score[g, s] * T.float32(scale)
                            peak[g] = T.max(peak[g], score[g, s])
                for s in range(S + 1):
                    if M[mb, 0, 0, s]:
                        for g in range(G):
                            score[g, s] = T.exp(score[g, s] - peak[g])
                            total[g] = total[g] + score[g, s]
                            for d in T.vectorized(D):
                                value = T.meta_var(
                                    T.if_then_else(s < S, PV[b, h, last(s), d], NV[b, h, 0, d])
                                )
                                acc[g, d] = acc[g, d] + score[g, s] * value
                for g in range(G):
                    for d in T.vectorized(D):
                        Y[b, h, g, d] = T.if_then_else(
                            total[g] > T.float32(0), acc[g, d] / total[g], T.float32(0)
                        )

    return func
