"""Row reductions over the last axis: layer norm and softmax, vectorized across the row.

TVM's own layer norm and softmax (and DLight's CPU reduction rule) sum a row one element
after another: a chain of dependent scalar adds, which made the tiny GPT's nine layer norms
cost as much as a dense layer. These computes split each row into ``lanes`` interleaved
partial sums (``x[j * lanes + l]`` summed over ``j`` for each ``l``: one vector accumulator)
and add the ``lanes`` partials at the end; ``backends.tvm.schedules.RowRule`` runs the rows
in parallel and vectorizes the partial sums. The summation order differs from NumPy's, which
is why quantized graphs compute such ops in float64 islands when they must match the
interpreter bit for bit.

Blocks: ``tapeout_rowpart_*`` (the vector partials), ``tapeout_rowtotal_*`` (their sum),
then the spatial output.
"""

from __future__ import annotations

from typing import Any

from backends.tvm.kernels import PREFIX

ROW_PART = PREFIX + "rowpart_"
ROW_TOTAL = PREFIX + "rowtotal_"


def row_lanes(n: int, dtype: str, params: Any) -> int:
    """The partial-sum count for a row of ``n`` elements of TVM ``dtype``: a vector's lanes
    when they divide ``n``; 0 (use TVM's kernels) otherwise or for a dtype other than
    float32/float64. ``params``: the target's ``CpuParams``."""
    if dtype not in ("float32", "float64"):
        return 0
    lanes = int(params.lanes(64 if dtype == "float64" else 32))
    return lanes if n >= lanes and n % lanes == 0 else 0


def _row_reduce(x_at: Any, rows: tuple, n: int, lanes: int, kind: str, name: str) -> Any:
    from tvm import te

    j = te.reduce_axis((0, n // lanes), "j")
    combine = te.max if kind == "max" else te.sum
    part = te.compute(
        (*rows, lanes),
        lambda *i: combine(x_at(*i[:-1], j * lanes + i[-1]), axis=j),
        name=ROW_PART + name,
    )
    l_ = te.reduce_axis((0, lanes), "l")
    return te.compute(rows, lambda *r: combine(part[(*r, l_)], axis=l_), name=ROW_TOTAL + name)


def layer_norm_rows(x: Any, gamma: Any, beta: Any, eps: float, lanes: int) -> Any:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis (the interpreter's
    formula: mean, then the mean of squared deviations)."""
    from tvm import te, tirx

    shape = tuple(x.shape)
    rows, n, dt = shape[:-1], int(shape[-1]), str(x.dtype)
    count = tirx.const(float(n), dt)
    total = _row_reduce(lambda *i: x(*i), rows, n, lanes, "sum", "sum")

    def centred(*i: Any) -> Any:
        return x(*i) - total(*i[:-1]) / count

    var_total = _row_reduce(lambda *i: centred(*i) * centred(*i), rows, n, lanes, "sum", "var")

    def out(*i: Any) -> Any:
        inv = tirx.sqrt(var_total(*i[:-1]) / count + tirx.const(eps, dt))
        return centred(*i) / inv * gamma[i[-1]] + beta[i[-1]]

    return te.compute(shape, out, name=PREFIX + "layer_norm")


def softmax_rows(x: Any, lanes: int) -> Any:
    """``exp(x - max) / sum(exp(x - max))`` over the last axis; a row that is all -inf
    subtracts 0 instead of -inf, as the interpreter does."""
    from tvm import te, tirx

    shape = tuple(x.shape)
    rows, n, dt = shape[:-1], int(shape[-1]), str(x.dtype)
    peak = _row_reduce(lambda *i: x(*i), rows, n, lanes, "max", "max")
    inf = tirx.const(float("inf"), dt)

    def shifted(*i: Any) -> Any:
        m = peak(*i[:-1])
        finite = tirx.all(m > -inf, m < inf)
        return tirx.exp(x(*i) - tirx.Select(finite, m, tirx.const(0.0, dt)))

    total = _row_reduce(shifted, rows, n, lanes, "sum", "expsum")
    return te.compute(shape, lambda *i: shifted(*i) / total(*i[:-1]), name=PREFIX + "softmax")
