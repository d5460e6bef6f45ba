"""Ops the CPU backend refused for some operand dtypes, written out in TE as NumPy (the
interpreter) defines them: floor modulo of floats.

``fmod`` alone gives the sign of the dividend; the kernel below follows NumPy's C code
(``npy_divmod``). ``dtype_rules(rules)`` returns the merged rule table with it.

Still refused (tried, not done): signed bit shifts (TVM's constant folder fails a check on
the unsigned shift counts) and integer powers (the square-and-multiply chain over the
exponent's bits crashed TVM's build).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from backends.tvm.kernels import expr_dtype
from backends.tvm.lower import LowerContext, Rule, static_shape
from backends.tvm.te_ops import bcast
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float


def float_floor_mod(a: Any, b: Any, shape: Sequence[int]) -> Any:
    """``np.mod`` of floats (NumPy's ``npy_divmod``): ``m = fmod(a, b)``; a divisor of 0
    gives that (NaN); a nonzero ``m`` whose sign differs from ``b``'s becomes ``m + b``;
    a zero ``m`` takes ``b``'s sign."""
    from tvm import te, tirx

    def body(*i: Any) -> Any:
        av, bv = bcast(a, i, shape), bcast(b, i, shape)
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


def _floor_mod_rule(rule: Rule) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if not is_float(node.inputs[0].dtype):
            return rule.lower(node, ctx)
        a, b = (ctx.arg(v) for v in node.inputs)
        return [ctx.emit_te(float_floor_mod, a, b, static_shape(node.outputs[0]))]

    def check(node: Node, graph: Graph) -> str | None:
        return None if is_float(node.inputs[0].dtype) else rule.reason(node, graph)

    return dataclasses.replace(rule, lower=lower, check=check)


def dtype_rules(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with the dtype-specific kernels above in place of refusals."""
    out = dict(rules)
    if "math.floor_mod" in out:
        out["math.floor_mod"] = _floor_mod_rule(out["math.floor_mod"])
    return out
