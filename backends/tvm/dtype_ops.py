"""Ops the CPU backend refused for some operand dtypes, written out in TE as NumPy (the
interpreter) defines them: bit shifts of signed integers, integer powers, floor modulo of
floats.

LLVM leaves a shift by a negative or over-wide count undefined (poison), TVM's power takes
floats only, and ``fmod`` alone gives the sign of the dividend; each kernel below follows
NumPy's C loop (``npy_lshift``/``npy_rshift``, the integer ``power`` loop, ``npy_divmod``)
next to which it is written. ``dtype_rules(rules)`` returns the merged rule table with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from backends.tvm.kernels import expr_dtype
from backends.tvm.lower import LowerContext, Rule, static_shape
from backends.tvm.te_ops import _bcast
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float, is_int


def _width(dtype: str) -> int:
    """The bit width of a TVM integer dtype (``int8`` -> 8)."""
    return int(dtype.removeprefix("u").removeprefix("int"))


def bitshift(a: Any, b: Any, shape: Sequence[int], left: bool) -> Any:
    """``np.left_shift``/``np.right_shift`` of integers: a count that is negative or not
    below the width (read as unsigned, as NumPy's ``(size_t)b``) gives 0, or -1 for a right
    shift of a negative value; the shift itself only ever sees an in-range count."""
    from tvm import te, tirx

    dtype = str(a.dtype)
    bits = _width(dtype)

    def body(*i: Any) -> Any:
        av, bv = _bcast(a, i, shape), _bcast(b, i, shape).astype(dtype)
        unsigned = dtype.replace("u", "").replace("int", "uint")
        inside = bv.astype(unsigned) < tirx.const(bits, unsigned)
        safe = tirx.Select(inside, bv, tirx.const(0, dtype))
        zero = tirx.const(0, dtype)
        if left:
            return tirx.Select(inside, av << safe, zero)
        outside = zero
        if not dtype.startswith("u"):
            outside = tirx.Select(av < zero, tirx.const(-1, dtype), zero)
        return tirx.Select(inside, av >> safe, outside)

    return te.compute(tuple(shape), body, name="bitshift")


def int_power(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """Integer ``a ** b`` as the interpreter's ``_pow``: square and multiply over every bit
    of the exponent in the operand type (wrapping, as NumPy's loop); a negative exponent
    gives ``1 / a ** k`` truncated: 0, or +-1 for ``a == +-1``."""
    from tvm import te, tirx

    dtype = str(a.dtype)
    width = _width(dtype)

    def body(*i: Any) -> Any:
        av, bv = _bcast(a, i, shape), _bcast(b, i, shape).astype(dtype)
        one, zero = tirx.const(1, dtype), tirx.const(0, dtype)
        # Every partial result and power is bound once (nested Lets): written inline, each
        # step would use the previous twice and the expression would double per bit.
        bindings: list[tuple[Any, Any]] = []
        result, base = one, av
        for k in range(width):
            bit = ((bv >> tirx.const(k, dtype)) & one) == one
            bindings.append((tirx.Var(f"r{k}", dtype), tirx.Select(bit, result * base, result)))
            result = bindings[-1][0]
            bindings.append((tirx.Var(f"p{k}", dtype), base * base))
            base = bindings[-1][0]
        if not dtype.startswith("u"):
            minus_one = tirx.Select((bv & one) == zero, one, av)  # (-1) ** -k
            negative = tirx.Select(
                av == one, one, tirx.Select(av == tirx.const(-1, dtype), minus_one, zero)
            )
            result = tirx.Select(bv >= zero, result, negative)
        for var, value in reversed(bindings):
            result = tirx.Let(var, value, result)
        return result

    return te.compute(tuple(shape), body, name="int_power")


def float_floor_mod(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """``np.mod`` of floats (NumPy's ``npy_divmod``): ``m = fmod(a, b)``; a divisor of 0
    gives that (NaN); a nonzero ``m`` whose sign differs from ``b``'s becomes ``m + b``;
    a zero ``m`` takes ``b``'s sign."""
    from tvm import te, tirx

    def body(*i: Any) -> Any:
        av, bv = _bcast(a, i, shape), _bcast(b, i, shape)
        dtype = expr_dtype(av)
        name = {"float32": "fmodf", "float64": "fmod"}[dtype]
        m = tirx.call_pure_extern(dtype, name, av, bv)
        zero = tirx.const(0.0, dtype)
        # A NaN remainder is kept as it is (the outer Select); signs differ: m + b.
        differ = ((bv < zero) & (m > zero)) | ((bv > zero) & (m < zero))
        moved = tirx.Select(differ, m + bv, m)
        signed_zero = tirx.call_pure_extern(dtype, name.replace("fmod", "copysign"), zero, bv)
        nonzero = tirx.Select(m != zero, moved, signed_zero)
        return tirx.Select(bv == zero, m, tirx.Select(tirx.isnan(m), m, nonzero))

    return te.compute(tuple(shape), body, name="floor_mod")


def _shift(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a, b = (ctx.arg(v) for v in node.inputs)
    left = node.attrs["direction"] == "left"
    return [ctx.emit_te(bitshift, a, b, static_shape(node.outputs[0]), left)]


def _floor_mod_rule(rule: Rule) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if not is_float(node.inputs[0].dtype):
            return rule.lower(node, ctx)
        a, b = (ctx.arg(v) for v in node.inputs)
        return [ctx.emit_te(float_floor_mod, a, b, static_shape(node.outputs[0]))]

    def check(node: Node, graph: Graph) -> str | None:
        return None if is_float(node.inputs[0].dtype) else rule.reason(node, graph)

    return dataclasses.replace(rule, lower=lower, check=check)


def _pow_rule(rule: Rule) -> Rule:
    """Integer bases: ``int_power`` (an integer exponent) or a float64 power truncated to
    the base's type (a float exponent: NumPy promotes to float64, the result is cast)."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        from tvm import relax

        base, exponent = node.inputs
        if not is_int(base.dtype):
            return rule.lower(node, ctx)
        a, b = ctx.arg(base), ctx.arg(exponent)
        shape = static_shape(node.outputs[0])
        if is_int(exponent.dtype):
            return [ctx.emit_te(int_power, a, b, shape)]
        from backends.tvm import te_ops

        R = relax.op
        wide = ctx.emit(R.power(R.astype(a, "float64"), R.astype(b, "float64")))
        return [ctx.emit_te(te_ops.float_to_int, wide, expr_dtype_of(a), base.dtype)]

    def check(node: Node, graph: Graph) -> str | None:
        return None if is_int(node.inputs[0].dtype) else rule.reason(node, graph)

    return dataclasses.replace(rule, lower=lower, check=check)


def expr_dtype_of(expr: Any) -> str:
    """The dtype of a Relax tensor expression."""
    return str(expr.struct_info.dtype)


def dtype_rules(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with the dtype-specific kernels above in place of refusals."""
    out = dict(rules)
    if "math.floor_mod" in out:
        out["math.floor_mod"] = _floor_mod_rule(out["math.floor_mod"])
    if "math.pow" in out:
        out["math.pow"] = _pow_rule(out["math.pow"])
    return out
