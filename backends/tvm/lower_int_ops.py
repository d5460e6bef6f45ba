"""Lowering rules for the integer ops whose C meaning is undefined at the edges: bit shifts
of any integer type (negative and over-wide counts) and integer powers (wrapping products);
and top-k of every integer type (ties in index order).

Each kernel mirrors ``compiler.interpreter_more._bitshift`` / ``interpreter_ops._pow``,
which follow NumPy:

- ``a << b``: ``b`` is read as unsigned (a negative count is huge); a count >= the width
  gives 0, else the bits shifted in the unsigned type of the same width (wrapping).
- ``a >> b``: arithmetic for signed types; a count out of range gives 0, or -1 for a
  negative signed ``a`` (the sign fills every bit).
- ``a ** b``: wrapping square-and-multiply for ``b >= 0``; for ``b < 0``, ``1 / a ** -b``
  truncated toward zero: ``(+-1) ** b`` for ``|a| == 1``, else 0.

LLVM makes a shift by >= the width poison, and TVM emits ``mul nsw``/``nuw`` for 32- and
64-bit integers, so an overflowing product is poison too: no lane here ever shifts by an
out-of-range count, and products are formed where they cannot overflow (in 64 bits for
narrower types, from 32-bit halves for 64-bit ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels import expr_dtype
from backends.tvm.lower import LowerContext, Rule, static_shape
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float


def _bits(dtype: str) -> int:
    return int(dtype.removeprefix("u").removeprefix("int"))


def _bcast(t: Any, idx: Sequence[Any], shape: Sequence[int]) -> Any:
    """``t`` read at output index ``idx`` under NumPy broadcasting."""
    off = len(shape) - len(t.shape)
    return t(
        *(
            0 if int(t.shape[d]) == 1 and int(shape[off + d]) != 1 else idx[off + d]
            for d in range(len(t.shape))
        )
    )


# ---- bit shifts ------------------------------------------------------------------------------
def bitshift(a: Any, b: Any, left: bool, shape: Sequence[int]) -> Any:
    """``np.left_shift`` / ``np.right_shift`` of same-typed integers (see the module doc)."""
    from tvm import te, tirx

    dtype = str(a.dtype)
    width = _bits(dtype)
    unsigned = "u" + dtype.removeprefix("u") if not dtype.startswith("u") else dtype

    def body(*i: Any) -> Any:
        av, bv = _bcast(a, i, shape), _bcast(b, i, shape)
        # The count as unsigned: a negative one is out of range, as in NumPy.
        count = bv.astype(unsigned)
        over = count >= tirx.const(width, unsigned)
        if left:
            safe = tirx.Select(over, tirx.const(0, unsigned), count)
            shifted = tirx.shift_left(av.astype(unsigned), safe).astype(dtype)
            return tirx.Select(over, tirx.const(0, dtype), shifted)
        # By width - 1 the arithmetic shift already gives 0 or -1 (the sign), as NumPy's
        # out-of-range right shift; an unsigned a >> (width - 1) is its top bit, so zero it.
        safe = tirx.Select(over, tirx.const(width - 1, unsigned), count).astype(dtype)
        shifted = tirx.shift_right(av, safe)
        if dtype.startswith("u"):
            return tirx.Select(over, tirx.const(0, dtype), shifted)
        return shifted

    return te.compute(tuple(shape), body, name="bitshift")


def _bitshift(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a, b = (ctx.arg(v) for v in node.inputs)
    left = node.attrs["direction"] == "left"
    return [ctx.emit_te(bitshift, a, b, left, static_shape(node.outputs[0]))]


# ---- integer power ---------------------------------------------------------------------------
def _mul_wrap(x: Any, y: Any) -> Any:
    """``x * y`` wrapped to their type, never an overflowing (poison) LLVM multiply."""
    from tvm import tirx

    dtype = expr_dtype(x)
    if _bits(dtype) <= 32:  # the exact product fits 64 bits; truncating wraps it
        wide = "uint64" if dtype.startswith("u") else "int64"
        return (x.astype(wide) * y.astype(wide)).astype(dtype)
    # 64 bits: (xh*2^32 + xl)(yh*2^32 + yl) mod 2^64 from 32-bit halves, every partial
    # product and sum below 2^64 (unsigned), the halves joined with a bitwise or.
    u = "uint64"
    mask, s32 = tirx.const(0xFFFFFFFF, u), tirx.const(32, u)
    xu, yu = x.astype(u), y.astype(u)
    xl, xh = xu & mask, tirx.shift_right(xu, s32)
    yl, yh = yu & mask, tirx.shift_right(yu, s32)
    low = xl * yl
    high = (tirx.shift_right(low, s32) + ((xh * yl) & mask) + ((xl * yh) & mask)) & mask
    return (tirx.shift_left(high, s32) | (low & mask)).astype(dtype)


def _times_if_bit(result: Any, square: Any, exp: Any, k: int) -> Any:
    """One step: ``result * (square if bit k of exp else 1)``, as a product reduction over
    the two factors, so that each operand is read once and the block is never inlined."""
    from tvm import te, tirx

    edtype, dtype = str(exp.dtype), str(result.dtype)
    j = te.reduce_axis((0, 2), name="j")

    def body(*i: Any) -> Any:
        bit = tirx.shift_right(exp(*i), tirx.const(k, edtype)) & tirx.const(1, edtype)
        factor = tirx.Select(bit != 0, square(*i), tirx.const(1, dtype))
        return _product()(tirx.Select(j == 0, result(*i), factor), axis=j)

    return body


def _squared(square: Any) -> Any:
    from tvm import te

    j = te.reduce_axis((0, 2), name="j")
    return lambda *i: _product()(square(*i), axis=j)


def _product() -> Any:
    """A wrapping product reducer (its blocks are reductions, which the CPU schedule never
    inlines: inlined, the squares of the unrolled exponent would double at every bit)."""
    from tvm import te, tirx

    return te.comm_reducer(_mul_wrap, lambda t: tirx.const(1, t), name="wrapping_product")


def int_power(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """Integer ``a ** b`` as ``interpreter_ops._pow``: the exponent's bits unrolled, one
    stage per square and per partial product, so that no expression repeats another (the
    squares written inline, or bound by ``Let`` that TVM inlines, double with every bit)."""
    from tvm import te, tirx

    dtype, edtype = str(a.dtype), str(b.dtype)
    steps = _bits(edtype) - (0 if edtype.startswith("u") else 1)  # b >= 0 where used
    shape = tuple(shape)
    zero, one = tirx.const(0, dtype), tirx.const(1, edtype)
    exp = te.compute(shape, lambda *i: tirx.max(_bcast(b, i, shape), tirx.const(0, edtype)))
    square = te.compute(shape, lambda *i: _bcast(a, i, shape), name="pow_sq")
    result = te.compute(shape, lambda *i: tirx.const(1, dtype), name="pow_r")
    for k in range(steps):
        result = te.compute(shape, _times_if_bit(result, square, exp, k), name="pow_r")
        if k + 1 < steps:
            square = te.compute(shape, _squared(square), name="pow_sq")
    if edtype.startswith("u"):
        return result

    def body(*i: Any) -> Any:
        # b < 0: 1 / a ** -b truncated: 0 unless |a| == 1, then (-1) ** b for a == -1.
        av, bv = _bcast(a, i, shape), _bcast(b, i, shape)
        odd = (bv & one) != 0
        minus_one = av == tirx.const(-1, dtype)
        negative = tirx.Select(
            av == tirx.const(1, dtype), av, tirx.Select(minus_one, tirx.Select(odd, av, -av), zero)
        )
        return tirx.Select(bv >= tirx.const(0, edtype), result(*i), negative)

    return te.compute(shape, body, name="int_power")


def _pow_rule(rule: Rule) -> Rule:
    """``math.pow``: integers here, everything else through ``rule``."""
    import dataclasses

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if is_float(node.inputs[0].dtype):
            return rule.lower(node, ctx)
        a, b = (ctx.arg(v) for v in node.inputs)
        return [ctx.emit_te(int_power, a, b, static_shape(node.outputs[0]))]

    return dataclasses.replace(rule, lower=lower)


def _int_check(node: Node, graph: Graph) -> str | None:
    if is_float(node.inputs[0].dtype):  # the op's type inference forbids it; be explicit
        return f"bit shift of {node.inputs[0].dtype}"
    return None


# ---- top-k of integers -----------------------------------------------------------------------
#: The key dtypes TVM's CPU top-k (``tvm.contrib.sort.topk``, a stable sort: equal values
#: keep index order, as ONNX wants) takes; other integers are sorted by an int64 key.
TOPK_KEYS = ("i32", "i64")
_SIGN_BIT = -(2**63)


def _topk_rule(rule: Rule) -> Rule:
    """``math.topk`` of an integer type the runtime sort lacks: the indices of the top-k of
    an int64 key that orders as the values do (a plain widening, or for u64 its bits with
    the top one flipped), and the values gathered at them."""
    import dataclasses

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        x = node.inputs[0]
        if is_float(x.dtype) or x.dtype in TOPK_KEYS:
            return rule.lower(node, ctx)
        from tvm import relax

        R = relax.op
        a = ctx.attrs(node)
        axis = int(a["axis"]) % x.type.rank
        k = int(np.asarray(ctx.const(node.inputs[1])).reshape(-1)[0])
        data = ctx.arg(x)
        key = ctx.emit(R.astype(data, "int64"))
        if x.dtype == "u64":
            key = ctx.emit(R.bitwise_xor(key, relax.const(_SIGN_BIT, "int64")))
        idx = ctx.emit(R.topk(key, k, axis, "indices", bool(a["largest"]), "int64"))
        return [ctx.emit(R.gather_elements(data, idx, axis)), idx]

    return dataclasses.replace(rule, lower=lower)


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with exact bit shifts of every integer type, integer powers and
    top-k of every integer type."""
    out = {**rules, "math.bitshift": Rule(_bitshift, _int_check)}
    if "math.pow" in out:
        out["math.pow"] = _pow_rule(out["math.pow"])
    if "math.topk" in out:
        out["math.topk"] = _topk_rule(out["math.topk"])
    return out
