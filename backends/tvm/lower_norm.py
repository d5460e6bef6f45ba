"""RMS norm written as plain ops (Hugging Face's Llama, Qwen, Phi-3) as one row kernel.

A decoder imported through torch.export holds its RMS norms as the ops of the Python code::

    %p = math.pow(%x, 2.0)
    %m = math.reduce_mean(%p) {axes=[-1], keepdims=true}
    %e = math.add(%m, %eps)           # a scalar constant
    %r = math.rsqrt(%e)
    %n = math.mul(%x, %r)
    %y = math.mul(%w, %n)             # or mul(%n, %w); %w a constant [d]

Lowered op by op, Relax's FuseOps (TVM 0.27) fuses the mean with everything after it but
leaves ``power`` a kernel of its own (a SmolLM2 decode step profiles 61 ``power`` calls and
61 ``fused_mean_add_sqrt_divide_multiply``): 2 kernel calls per norm. The ``math.pow`` rule
here recognises the chain (every intermediate with that one use) and emits
``rms_norm_rows`` for ``%y`` ahead (``LowerContext.ahead``): the sum of squares as vector
partial sums, then ``w * (x * (1 / sqrt(mean + eps)))`` per element, one kernel. The
intermediate nodes still lower, unused, and Relax drops them. The summation order differs
from NumPy's (float32 rounding only, as the layer norm rows of ``backends.tvm.kernels_row``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from backends.tvm.kernels import PREFIX
from backends.tvm.kernels_row import ROW_PART, ROW_TOTAL, row_lanes
from backends.tvm.lower import LowerContext, Rule
from compiler.ir.graph import Graph, Node, Value


def _only_user(value: Value, op: str) -> Node | None:
    if len(value.uses) != 1 or value.uses[0][0].op != op:
        return None
    return value.uses[0][0]


def _scalar(graph: Graph, value: Value) -> float | None:
    data = graph.const_value(value)
    return float(data.reshape(-1)[0]) if data is not None and data.size == 1 else None


def _other(node: Node, value: Value) -> Value:
    a, b = node.inputs
    return b if a is value else a


def rms_chain(pow_node: Node, graph: Graph) -> tuple[Node, float, Value] | None:
    """``(the final mul, eps, the weight)`` when ``pow_node`` starts the chain above."""
    x = pow_node.inputs[0]
    if x.dtype != "f32" or x.type.rank < 1 or _scalar(graph, pow_node.inputs[1]) != 2.0:
        return None
    mean = _only_user(pow_node.outputs[0], "math.reduce_mean")
    if mean is None or not mean.attrs.get("keepdims"):
        return None
    if [int(a) % x.type.rank for a in mean.attrs.get("axes") or []] != [x.type.rank - 1]:
        return None
    add = _only_user(mean.outputs[0], "math.add")
    eps = None if add is None else _scalar(graph, _other(add, mean.outputs[0]))
    rsqrt = None if add is None else _only_user(add.outputs[0], "math.rsqrt")
    scale = None if rsqrt is None else _only_user(rsqrt.outputs[0], "math.mul")
    if eps is None or rsqrt is None or scale is None or _other(scale, rsqrt.outputs[0]) is not x:
        return None
    final = _only_user(scale.outputs[0], "math.mul")
    if final is None:
        return None
    weight = _other(final, scale.outputs[0])
    d = int(x.type.shape[-1])
    if graph.const_value(weight) is None or tuple(weight.type.shape) != (d,):
        return None
    if weight.dtype != "f32" or tuple(final.outputs[0].type.shape) != tuple(x.type.shape):
        return None
    return final, eps, weight


def rms_norm_rows(x: Any, weight: Any, eps: float, lanes: int) -> Any:
    """``w * (x * (1 / sqrt(mean(x^2) + eps)))`` over the last axis, the sum of squares as
    ``lanes`` partial sums."""
    from tvm import te, tirx

    shape = tuple(x.shape)
    rows, n = shape[:-1], int(shape[-1])
    j = te.reduce_axis((0, n // lanes), "j")
    part = te.compute(
        (*rows, lanes),
        lambda *i: te.sum(x(*i[:-1], j * lanes + i[-1]) * x(*i[:-1], j * lanes + i[-1]), axis=j),
        name=ROW_PART + "sumsq",
    )
    lane = te.reduce_axis((0, lanes), "l")
    total = te.compute(rows, lambda *r: te.sum(part[(*r, lane)], axis=lane), name=ROW_TOTAL + "sq")
    count, e = tirx.const(float(n), "float32"), tirx.const(eps, "float32")

    def out(*i: Any) -> Any:
        # The graph's order of operations (x * (1 / sqrt(mean + eps)), then the weight): a
        # quantized decoder quantizes this result, so a last-bit difference can flip a code.
        inv = tirx.const(1.0, "float32") / tirx.sqrt(total(*i[:-1]) / count + e)
        return weight[i[-1]] * (x(*i) * inv)

    return te.compute(shape, out, name=PREFIX + "rms_norm")


def _with_chain(rule: Rule) -> Rule:
    """``math.pow``'s rule, emitting the whole RMS norm ahead where the chain is there."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        found = rms_chain(node, ctx.graph)
        lanes = 0 if found is None else row_lanes(int(node.inputs[0].type.shape[-1]),
                                                  "float32", ctx.params)  # fmt: skip
        if found is not None and lanes:
            final, eps, weight = found
            y = ctx.emit_te(rms_norm_rows, ctx.arg(node.inputs[0]), ctx.arg(weight), eps, lanes)
            ctx.ahead[id(final)] = [y]
        return rule.lower(node, ctx)

    return dataclasses.replace(rule, lower=lower)


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The table with ``math.pow`` recognising RMS norms."""
    out = dict(rules)
    if "math.pow" in out:
        out["math.pow"] = _with_chain(out["math.pow"])
    return out
