"""fold-constants: compute nodes whose operands are all constants at compile time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node
from compiler.rewrite import Reject, RewritePass
from passes._match import evaluate

if TYPE_CHECKING:
    from compiler.context import PassContext


def fold_node(graph: Graph, node: Node, max_elements: int) -> bool | Reject | None:
    """Replace ``node`` by constants if its operands are constants (``tensor.shape``: if its
    operand's shape is static). None if it is not foldable, Reject if it should not be."""
    if node.op == "const":
        return None
    if node.op == "tensor.shape":
        if not node.inputs[0].type.is_static:
            return None
        shape = [int(d) for d in node.inputs[0].type.shape]
        operands = [np.empty(shape, dtype=np.bool_)]  # only its shape is read
    else:
        datas = [graph.const_value(v) for v in node.inputs]
        if any(d is None for d in datas):
            return None
        operands = datas  # type: ignore[assignment]
    for out in node.outputs:
        if not out.type.is_static:
            return Reject("output shape is symbolic")
        if out.type.numel >= max_elements:
            return Reject(f"output has {out.type.numel} >= max_elements elements")
    try:
        results = evaluate(graph, node, operands)
    except Exception as e:  # the interpreter would fail on it too: leave it for it to report
        return Reject(f"cannot evaluate {node.op}: {type(e).__name__}")
    for out, data in zip(node.outputs, results, strict=True):
        const = graph.add_const(out.name, data, type=out.type, loc=node.loc)
        graph.replace_all_uses(out, const)
    graph.remove(node)
    return True


@dataclass(frozen=True)
class FoldConstants(RewritePass):
    """Evaluate every node whose operands are all constants and store the result.

    Before::

        %s: f32[4] = const @s
        %t: f32[4] = math.sqrt(%s)
        %y: f32[1,4] = math.mul(%x, %t)

    After::

        %t_1: f32[4] = const @t
        %y: f32[1,4] = math.mul(%x, %t_1)

    The value comes from the interpreter's implementation of the op, so the folded constant
    is bit-identical to what the graph computed. ``tensor.shape`` of a statically shaped tensor
    folds too (its operand need not be constant). Does not fire when an output would have
    ``max_elements`` elements or more (a broadcast of a scalar would blow up the weights) or
    has a symbolic shape.
    """

    name: ClassVar[str] = "fold-constants"
    max_elements: int = 1_000_000

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        return fold_node(graph, node, self.max_elements)
