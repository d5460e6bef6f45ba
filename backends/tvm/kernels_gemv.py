# mypy: disable-error-code="valid-type,name-defined"
"""float32 ``dense`` with a constant weight and few rows: matrix-vector products at memory
bandwidth (an LLM's decode step), and the register-blocked GEMM of its prefill.

A decode step multiplies one activation row by every weight of the model once: the time is
the time to stream the weights from memory, and the kernel must not stand in the stream's
way. The weight is packed once at compile time as ``[N/T, K, T]`` (``T = TILE`` output
columns, two AVX-512 vectors; rows past ``N`` are zero): tile ``t`` is one contiguous run of
``K * T`` floats, and the tiles run in parallel in contiguous ranges, so each thread reads
one long contiguous half of the weight (and the SmolLM2 shapes have an even number of
tiles: both threads read the same number of bytes).

Per tile, for each block of ``MB`` rows (``MB`` divides the rows, at most ``ROW_BLOCK``), the
``MB x T`` accumulators stay in registers over the whole reduction; one row alone has only
two vector accumulators, which a four-cycle FMA latency would throttle, so the reduction is
split over ``SPLIT`` interleaved partial sums (even and odd ``k``) added at the end. Rows
beyond one reuse each weight vector ``MB`` times from registers and the tile from L1/L2, so a
prefill's 32 rows read the weight from memory once.

The sibling projections of one input (an attention layer's q/k/v, an MLP's gate and up)
can be one kernel: their weights are concatenated into one packed matrix and each column
gets its own node's bias and activation (``segments``), so the step pays one thread barrier
for them and each output keeps the value its own kernel would give.

The float sums run in a different order than the interpreter's (float32 rounding only, as
every float kernel of this backend).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.tvm.kernels import activation, pack_dense_weight

LANES = 16  # float32 lanes of an AVX-512 vector
TILE = 2 * LANES  # output columns per tile
ROW_BLOCK = 8  # rows per register block: 8 x 2 vectors = 16 of 32 registers
#: Rows above which the TE dense kernel (``backends.tvm.kernels.dense``) takes over: a large
#: GEMM wants cache tiling over rows too, which this kernel does not do.
MAX_ROWS = 64
#: Weights below this many elements (64 K = 256 KB) keep the TE kernel, which Relax can fuse
#: with its neighbours: they are not bound by memory bandwidth.
MIN_WEIGHTS = 1 << 16
#: Outputs above this many columns keep the TE kernel: on SmolLM2's tied LM head (576 ->
#: 49152, one row) the TE kernel measured 3.7 ms against this kernel's 4.7 ms on a quiet
#: machine (``python bench/gemv_bench.py --shapes lm_head``, 2 threads); the layer shapes
#: (<= 3072 columns) measured within 10% of it either way.
MAX_COLUMNS = 8192


@dataclass(frozen=True)
class Segment:
    """The columns ``[start, start + size)`` of the packed weight that one node computes,
    and the activation its output gets."""

    start: int
    size: int
    act: str = "none"
    act_args: tuple[float, ...] = ()


@dataclass(frozen=True)
class GemvLayout:
    """One kernel's shape: ``rows x k`` input, ``n`` output columns."""

    rows: int
    k: int
    n: int

    @property
    def tiles(self) -> int:
        return -(-self.n // TILE)

    @property
    def row_block(self) -> int:
        for d in range(min(self.rows, ROW_BLOCK), 0, -1):
            if self.rows % d == 0:
                return d
        return 1

    @property
    def split(self) -> int:
        """Partial sums per accumulator: enough independent FMA chains (at least four)."""
        chains = self.row_block * TILE // LANES
        return 2 if chains < 4 and self.k % 2 == 0 else 1


def applies(rows: int, k: int, n: int) -> bool:
    """Whether a float32 dense of this shape goes to this kernel."""
    return rows <= MAX_ROWS and k * n >= MIN_WEIGHTS and n <= MAX_COLUMNS


def pack(w: np.ndarray) -> np.ndarray:
    """[N, K] -> [N/T, K, T] float32, zero-padding N up to a multiple of ``TILE``."""
    return pack_dense_weight(np.asarray(w, dtype=np.float32), TILE)


def _epilogue(segments: Sequence[Segment]) -> Callable[[Any, Any], Any]:
    """``(value, column) -> output``: each segment's activation on its own columns."""
    from tvm import tirx

    acts = [activation(tirx, s.act, s.act_args) for s in segments]
    if all(s.act == "none" for s in segments):
        return lambda v, j: v

    def apply(v: Any, j: Any) -> Any:
        out = acts[-1](v)
        for seg, act in zip(reversed(segments[:-1]), reversed(acts[:-1]), strict=True):
            out = tirx.Select(j < seg.start + seg.size, act(v), out)
        return out

    return apply


def gemv_func(layout: GemvLayout, segments: Sequence[Segment], parallel: bool) -> Any:
    """The PrimFunc ``(X f32[M, K], W f32[N/T, K, T], B f32[N], Y f32[M, N])`` (already
    scheduled): ``Y = act(X W^T + B)``, each segment's activation on its columns."""
    from tvm.script import tirx as T

    M, K, N = layout.rows, layout.k, layout.n
    NT, MB, U = layout.tiles, layout.row_block, layout.split
    MO, KO = M // MB, K // U
    ragged = N % TILE != 0
    epi = _epilogue(segments)
    tiles = T.parallel if parallel else T.serial

    @T.prim_func(s_tir=True)
    def func(
        X: T.Buffer((M, K), "float32"),
        W: T.Buffer((NT, K, TILE), "float32"),
        B: T.Buffer((N,), "float32"),
        Y: T.Buffer((M, N), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for t in tiles(NT):
            with T.sblock("tile"):
                T.reads(X[0:M, 0:K], W[t, 0:K, 0:TILE], B[0:N])
                T.writes(Y[0:M, 0:N])
                acc = T.alloc_buffer((U, MB, TILE), "float32", scope="local")
                for mo in range(MO):
                    for u in T.unroll(U):
                        for mi in T.unroll(MB):
                            for i in T.vectorized(TILE):
                                acc[u, mi, i] = T.float32(0)
                    for ko in range(KO):
                        for u in T.unroll(U):
                            for mi in T.unroll(MB):
                                for i in T.vectorized(TILE):
                                    acc[u, mi, i] = (
                                        acc[u, mi, i]
                                        + X[mo * MB + mi, ko * U + u] * W[t, ko * U + u, i]
                                    )
                    if U == 2:
                        for mi in T.unroll(MB):
                            for i in T.vectorized(TILE):
                                acc[0, mi, i] = acc[0, mi, i] + acc[1, mi, i]
                    for mi in T.unroll(MB):
                        if ragged:
                            for i in range(TILE):
                                if t * TILE + i < N:
                                    Y[mo * MB + mi, t * TILE + i] = epi(
                                        acc[0, mi, i] + B[t * TILE + i], t * TILE + i
                                    )
                        else:
                            for i in T.vectorized(TILE):
                                Y[mo * MB + mi, t * TILE + i] = epi(
                                    acc[0, mi, i] + B[t * TILE + i], t * TILE + i
                                )

    return func
