"""``integer_ops``: a transformer's softmax, layer norm, GELU and attention matmuls in integers.

Off by default (the CPU targets keep these float, in float64 islands; see passes.quantize);
on with ``QuantConfig(integer_ops=True)`` or a target whose ``numerics.integer_ops`` is set,
for hardware with no float unit at all (the FPGA engine). The plan then adds these kinds
(``passes.quant.plan``; ``passes.quant.rewrite_integer`` writes them):

- ``bmm``: ``nn.matmul`` of two activations (``q @ k^T``, ``attn @ v``), an anchor with two
  integer operands; a following multiply (or divide) by a positive scalar constant (the
  ``1/sqrt(d)`` of attention) is absorbed into its requantize multiplier;
- ``softmax``: ``nn.softmax`` over the last axis -> ``q.softmax``;
- ``layernorm``: ``nn.layer_norm`` over the last axis with constant gamma/beta ->
  ``q.layernorm``;
- ``table``: a float elementwise function of one activation (GELU, and anything with scalar
  constants only) between integer values stays a float node between ``q.dequantize`` and
  ``q.quantize``: with an 8-bit input it is exactly a 256-entry table, which is how an integer
  backend runs it (the interpreter evaluates the same float function, so both agree).

Before (float)::

    %s: f32[1,4,16,16] = nn.matmul(%q, %kt)
    %m: f32[1,4,16,16] = math.mul(%s, %scalar)          (scalar = 0.25)
    %p: f32[1,4,16,16] = nn.softmax(%m) {axis=-1}

After::

    %m_acc: i32[1,4,16,16]{scale=2^-12} = nn.matmul(%q_q, %kt_q) {acc="i32"}
    %m_q: i8[1,4,16,16]{scale=2^-3} = q.requantize(%m_acc) {multiplier=1, shift=11}
    %p_q: i8[1,4,16,16]{scale=2^-7} = q.softmax(%m_q) {multiplier=1, shift=8}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from compiler.ir.ops import OPS

if TYPE_CHECKING:
    from compiler.ir.graph import Graph, Node

#: Ops the ``integer_ops`` plan adds, by kind.
INTEGER_KINDS = ("bmm", "softmax", "layernorm", "table")
#: Positive scalar factors a bmm absorbs: op -> how the constant scales the product.
_GAINS = {"math.mul": lambda c: c, "math.div": lambda c: 1.0 / c}


def _last_axis(node: Node) -> bool:
    rank = node.inputs[0].type.rank
    return int(node.attrs.get("axis", -1)) in (-1, rank - 1)


def _scalar(graph: Graph, node: Node, index: int) -> float | None:
    data = graph.const_value(node.inputs[index])
    return float(np.asarray(data).reshape(-1)[0]) if data is not None and data.size == 1 else None


def integer_kind(graph: Graph, node: Node, activations: list[int]) -> str | None:
    """The integer kind of a float node under ``integer_ops`` (None: not one of these)."""
    if node.op == "nn.matmul":
        return "bmm" if len(activations) == 2 else None
    if node.op == "nn.softmax":
        return "softmax" if _last_axis(node) else None
    if node.op == "nn.layer_norm":
        consts = all(graph.const_value(v) is not None for v in node.inputs[1:])
        return "layernorm" if _last_axis(node) and consts and activations == [0] else None
    spec = OPS.get(node.op)
    if spec is None or "elementwise" not in spec.tags or len(activations) != 1:
        return None
    others = [i for i in range(len(node.inputs)) if i not in activations]
    return "table" if all(_scalar(graph, node, i) is not None for i in others) else None


def absorbed_gain(graph: Graph, node: Node) -> tuple[Node, float] | None:
    """The multiply by a positive scalar that alone consumes bmm ``node``, and its factor."""
    users = node.outputs[0].users
    if (
        len(users) != 1
        or users[0].op not in _GAINS
        or any(o is node.outputs[0] for o in graph.outputs)
    ):
        return None
    user = users[0]
    other = 1 if user.inputs[0] is node.outputs[0] else 0
    if user.op == "math.div" and other == 0:
        return None  # c / x is not a rescale
    c = _scalar(graph, user, other)
    if c is None or not c > 0:
        return None
    return user, float(_GAINS[user.op](c))
