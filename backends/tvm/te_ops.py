"""Small tensor-expression computes whose meaning must match the interpreter exactly.

Relax's own ops differ from ``compiler.interpreter`` at the edges (negative slice steps,
float-to-int casts out of range, integer division by zero, the rounding of requantize), so
these few are written out here, each next to the NumPy expression it mirrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.tvm.kernels import expr_dtype
from compiler.numerics import INT_RANGES


def slice_nd(x: Any, starts: Sequence[int], steps: Sequence[int], shape: Sequence[int]) -> Any:
    """``x[start_0::step_0, ...]`` with normalized (non-negative) starts, any steps."""
    from tvm import te

    return te.compute(
        tuple(shape),
        lambda *i: x(*(s + st * v for s, st, v in zip(starts, steps, i, strict=True))),
        name="slice",
    )


def pad_nd(x: Any, pads: Sequence[int], mode: str, value: float) -> Any:
    """``np.pad`` with ONNX-ordered ``pads`` and mode constant, edge or reflect."""
    from tvm import te, tirx

    rank = len(x.shape)
    sizes = [int(d) for d in x.shape]
    before, after = pads[:rank], pads[rank:]
    shape = tuple(sizes[d] + before[d] + after[d] for d in range(rank))

    def source(d: int, i: Any) -> Any:
        j = i - before[d]
        if mode == "edge":
            return tirx.max(tirx.min(j, sizes[d] - 1), 0)
        if mode == "reflect":
            j = tirx.Select(j < 0, -j, j)
            return tirx.Select(j >= sizes[d], 2 * (sizes[d] - 1) - j, j)
        return tirx.max(tirx.min(j, sizes[d] - 1), 0)

    def body(*i: Any) -> Any:
        v = x(*(source(d, i[d]) for d in range(rank)))
        if mode != "constant":
            return v
        inside = tirx.all(
            *(tirx.all(i[d] >= before[d], i[d] < before[d] + sizes[d]) for d in range(rank))
        )
        return tirx.if_then_else(inside, v, tirx.const(value, x.dtype))

    return te.compute(shape, body, name="pad")


def resize_nearest(x: Any, scales: Sequence[float], shape: Sequence[int]) -> Any:
    """``out[i] = in[min(floor(i / scale), size - 1)]`` per dimension (float64 division)."""
    from tvm import te, tirx

    sizes = [int(d) for d in x.shape]

    def source(d: int, i: Any) -> Any:
        if scales[d] == 1:
            return i
        if float(scales[d]).is_integer():
            return tirx.min(tirx.floordiv(i, int(scales[d])), sizes[d] - 1)
        idx = tirx.floor(i.astype("float64") / tirx.const(scales[d], "float64")).astype("int64")
        return tirx.min(idx, sizes[d] - 1).astype(expr_dtype(i))

    return te.compute(
        tuple(shape), lambda *i: x(*(source(d, v) for d, v in enumerate(i))), name="resize"
    )


def float_to_int(x: Any, dtype: str, ir_dtype: str) -> Any:
    """Truncate toward zero and saturate; NaN becomes 0 (``np.trunc(np.nan_to_num(x))``)."""
    from tvm import te, tirx

    lo, hi = INT_RANGES[ir_dtype]

    def body(*i: Any) -> Any:
        v = x(*i).astype("float64")
        v = tirx.Select(tirx.isnan(v), tirx.const(0, "float64"), v)
        v = tirx.min(tirx.max(tirx.trunc(v), tirx.const(lo, "float64")), tirx.const(hi, "float64"))
        return v.astype(dtype)

    return te.compute(x.shape, body, name="cast")


def _safe_int(op: str, av: Any, bv: Any) -> Any:
    """``op`` (a ``tirx`` integer division or modulo) that never runs a trapping native
    division: x86's ``idiv`` kills the process (SIGFPE) on a zero divisor and on
    ``INT_MIN / -1``. Where the divisor is 0 or -1 it is replaced by 1 and the dividend by
    the result wanted (0 for ``x / 0`` and ``x % 0``, the wrapped ``-x`` for ``x / -1``,
    and ``-x % 1 = 0`` for ``x % -1``), as the interpreter defines them.

    No ``Select`` wraps the division itself: TVM's simplifier would drop the divisor's guard
    inside the branch that "cannot" see a bad divisor, and the vectorized code evaluates both
    branches of a select."""
    from tvm import tirx

    dtype = expr_dtype(av)
    zero, one = tirx.const(0, dtype), tirx.const(1, dtype)
    if dtype.startswith("uint"):
        bad = bv == zero
        dividend = tirx.Select(bad, zero, av)
    else:
        minus_one = bv == tirx.const(-1, dtype)
        bad = (bv == zero) | minus_one
        dividend = tirx.Select(bv == zero, zero, tirx.Select(minus_one, zero - av, av))
    return getattr(tirx, op)(dividend, tirx.Select(bad, one, bv))


def int_div(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """Integer division truncating toward zero (C, ONNX), as ``_int_div`` in the
    interpreter does; no lane divides natively by 0 or -1 (see ``_safe_int``)."""
    from tvm import te

    def body(*i: Any) -> Any:
        return _safe_int("truncdiv", bcast(a, i, shape), bcast(b, i, shape))

    return te.compute(tuple(shape), body, name="int_div")


def int_floor_mod(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """Integer ``np.mod`` (the sign of the divisor), without a trapping division."""
    from tvm import te

    def body(*i: Any) -> Any:
        return _safe_int("floormod", bcast(a, i, shape), bcast(b, i, shape))

    return te.compute(tuple(shape), body, name="floor_mod")


def fmod(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """``np.fmod``: the remainder has the sign of the dividend."""
    from tvm import te, tirx

    def body(*i: Any) -> Any:
        av, bv = bcast(a, i, shape), bcast(b, i, shape)
        if "int" in expr_dtype(av):
            return _safe_int("truncmod", av, bv)
        # libm's fmod is exact, as NumPy's (LLVM has no fmod intrinsic for TVM to use).
        dtype = expr_dtype(av)
        name = {"float32": "fmodf", "float64": "fmod"}[dtype]
        return tirx.call_pure_extern(dtype, name, av, bv)

    return te.compute(tuple(shape), body, name="fmod")


def bcast(t: Any, idx: Sequence[Any], shape: Sequence[int]) -> Any:
    """``t`` read at output index ``idx`` under NumPy broadcasting."""
    rank = len(t.shape)
    off = len(shape) - rank
    return t(
        *(
            0 if int(t.shape[d]) == 1 and int(shape[off + d]) != 1 else idx[off + d]
            for d in range(rank)
        )
    )


def requantize(
    acc: Any,
    multiplier: Any,
    shift: Any,
    zero_point: Any,
    axis: int | None,
    dtype: str,
    ir_dtype: str,
    clip: tuple[int | None, int | None] = (None, None),
) -> Any:
    """``compiler.numerics.requantize``: int64 product, + 2^(shift-1), arithmetic >> shift,
    + zero point, saturate. Each parameter is an int (per tensor) or an int64 tensor [C]
    indexed along ``axis`` (per channel)."""
    from tvm import te, tirx

    lo, hi = INT_RANGES[ir_dtype]

    def pick(param: Any, i: Sequence[Any]) -> Any:
        if isinstance(param, int):
            return tirx.const(param, "int64")
        assert axis is not None
        return param[i[axis]].astype("int64")

    def body(*i: Any) -> Any:
        p = acc(*i).astype("int64") * pick(multiplier, i)
        s = pick(shift, i)
        one = tirx.const(1, "int64")
        if isinstance(shift, int):
            rounding = tirx.const((1 << (shift - 1)) if shift > 0 else 0, "int64")
        else:
            rounding = tirx.Select(
                s > 0, tirx.shift_left(one, tirx.max(s - one, 0)), tirx.const(0, "int64")
            )
        r = tirx.shift_right(p + rounding, s) + pick(zero_point, i)
        return tirx.min(tirx.max(r, low), high).astype(dtype)

    low = lo if clip[0] is None else max(lo, int(clip[0]))
    high = hi if clip[1] is None else min(hi, int(clip[1]))
    return te.compute(acc.shape, body, name="requantize")


def rounding_shift(acc: Any, shift: int, zo: int, lo: int, hi: int, dtype: str) -> Any:
    """``saturate(((acc + 2^(shift-1)) >> shift) + zo)`` clamped to [lo, hi], acc int64."""
    from tvm import tirx

    rounding = tirx.const((1 << (shift - 1)) if shift > 0 else 0, "int64")
    r = tirx.shift_right(acc + rounding, tirx.const(shift, "int64")) + tirx.const(zo, "int64")
    return tirx.min(tirx.max(r, tirx.const(lo, "int64")), tirx.const(hi, "int64")).astype(dtype)


def qadd(
    a: Any,
    b: Any,
    shape: Sequence[int],
    zps: tuple[int, int, int],
    multipliers: tuple[int, int],
    shift: int,
    bounds: tuple[int, int],
    dtype: str,
) -> Any:
    """``q.add``: ``(a - za)*ma + (b - zb)*mb`` in int64, rounding shift, + zo, clamp."""
    from tvm import te, tirx

    za, zb, zo = zps

    def body(*i: Any) -> Any:
        av = bcast(a, i, shape).astype("int64") - tirx.const(za, "int64")
        bv = bcast(b, i, shape).astype("int64") - tirx.const(zb, "int64")
        acc = av * tirx.const(multipliers[0], "int64") + bv * tirx.const(multipliers[1], "int64")
        return rounding_shift(acc, shift, zo, bounds[0], bounds[1], dtype)

    return te.compute(tuple(shape), body, name="qadd")


def qpool_sum(
    x: Any,
    axes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    shape: Sequence[int],
    zx: int,
) -> Any:
    """Window sums of ``x - zx`` in int64 over spatial ``axes`` (padding adds real 0)."""
    from tvm import te, tirx

    red = [te.reduce_axis((0, k), f"r{d}") for d, k in enumerate(kernel)]
    sizes = [int(x.shape[a]) for a in axes]

    def body(*i: Any) -> Any:
        idx = list(i)
        inside = []
        for d, a in enumerate(axes):
            pos = i[a] * strides[d] + red[d] - pads[d]
            idx[a] = pos
            inside += [pos >= 0, pos < sizes[d]]
        v = x(*idx).astype("int64") - tirx.const(zx, "int64")
        return te.sum(tirx.if_then_else(tirx.all(*inside), v, tirx.const(0, "int64")), axis=red)

    return te.compute(tuple(shape), body, name="qpool_sum")


def requantize_scalar(
    acc: Any, multiplier: int, shift: int, zo: int, bounds: tuple[int, int], dtype: str
) -> Any:
    """``numerics.requantize`` with one multiplier and shift, on an int64 tensor."""
    from tvm import te, tirx

    def body(*i: Any) -> Any:
        p = acc(*i) * tirx.const(multiplier, "int64")
        return rounding_shift(p, shift, zo, bounds[0], bounds[1], dtype)

    return te.compute(acc.shape, body, name="requantize")


def float_extreme(x: Any, axes: Sequence[int], keepdims: bool, kind: str) -> Any:
    """``np.max``/``np.min`` over ``axes`` of a float tensor, starting from -inf/+inf.

    TVM's own max reduction starts from the lowest finite value, so a row of -inf (a fully
    masked attention row) has the finite maximum -3.4e38 and ``max == -inf`` tests fail."""
    from tvm import te, tirx

    shape = [int(d) for d in x.shape]
    red = {a: te.reduce_axis((0, shape[a]), f"k{a}") for a in sorted(set(axes))}
    fn = tirx.max if kind == "max" else tirx.min
    init = float("-inf") if kind == "max" else float("inf")
    reducer = te.comm_reducer(
        lambda a, b: fn(a, b), lambda t: tirx.const(init, t), name=f"{kind}_from_inf"
    )
    out = [1 if d in red else n for d, n in enumerate(shape) if keepdims or d not in red]

    def body(*i: Any) -> Any:
        it = iter(i)
        idx = []
        for d in range(len(shape)):
            if d in red:
                if keepdims:
                    next(it)
                idx.append(red[d])
            else:
                idx.append(next(it))
        return reducer(x(*idx), axis=list(red.values()))

    return te.compute(tuple(out), body, name=f"reduce_{kind}")
