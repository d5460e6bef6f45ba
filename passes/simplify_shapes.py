"""simplify-shapes: constant shape arithmetic, and no-op or chained data movement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.errors import ShapeError
from compiler.ir.graph import Graph, Node
from compiler.ir.op_facts import reshape_ops
from compiler.ir.ops import infer_types
from compiler.ir.types import is_int
from compiler.rewrite import Reject, RewritePass
from passes._match import bypass, morph, producer
from passes.fold_constants import fold_node

if TYPE_CHECKING:
    from compiler.context import PassContext

Result = bool | Reject | None

#: Ops that only reinterpret the shape: the elements keep their row-major order.
RESHAPES = reshape_ops()
#: Shape arithmetic is small: fold it whatever the ``fold-constants`` limit says.
_SHAPE_FOLD_LIMIT = 1 << 16


def _fold_shape_math(graph: Graph, node: Node) -> Result:
    """``tensor.shape`` of a static tensor, and integer ops on constants, become constants."""
    if node.op != "tensor.shape" and not all(is_int(v.dtype) for v in node.outputs):
        return None
    return fold_node(graph, node, _SHAPE_FOLD_LIMIT)


def _reshape(graph: Graph, node: Node) -> Result:
    x = node.inputs[0]
    if x.type.shape == node.output.type.shape:
        return bypass(graph, node, x)
    inner = producer(x, *RESHAPES)
    if inner is None:
        return None
    source = inner.inputs[0]
    if source.type.shape == node.output.type.shape:  # e.g. squeeze then unsqueeze back
        return bypass(graph, node, source)
    if node.op == "tensor.reshape":
        try:
            shape = infer_types(node.op, [source.type], node.attrs)[0].shape
        except ShapeError:
            shape = None
        if shape != node.output.type.shape:
            return Reject("reshape of a reshape with symbolic dimensions that do not carry over")
        graph.set_input(node, 0, source)
        return True
    if not node.output.type.is_static:
        return Reject("reshape chain with a symbolic result shape")
    morph(graph, node, "tensor.reshape", [source], {"shape": list(node.output.type.shape)})
    return True


def compose_transposes(graph: Graph, node: Node) -> Result:
    """A transpose of a transpose reads the first one's operand; the identity disappears."""
    perm = list(node.attrs["perm"])
    inner = producer(node.inputs[0], "tensor.transpose")
    if inner is not None:
        perm = [inner.attrs["perm"][p] for p in perm]
    if perm == sorted(perm):
        return bypass(graph, node, (inner or node).inputs[0])
    if inner is None:
        return None
    graph.set_input(node, 0, inner.inputs[0])
    node.attrs["perm"] = perm
    return True


def _slice(graph: Graph, node: Node) -> Result:
    steps = node.attrs.get("steps") or [1]
    x = node.inputs[0]
    if all(s == 1 for s in steps) and x.type.is_static and x.type == node.output.type:
        return bypass(graph, node, x)
    return None


def _concat(graph: Graph, node: Node) -> Result:
    return bypass(graph, node, node.inputs[0]) if len(node.inputs) == 1 else None


RULES: dict[str, Callable[[Graph, Node], Result]] = {
    **{op: _reshape for op in RESHAPES},
    "tensor.transpose": compose_transposes,
    "tensor.slice": _slice,
    "tensor.concat": _concat,
}


@dataclass(frozen=True)
class SimplifyShapes(RewritePass):
    """Fold shape arithmetic; remove or merge data movement that the shapes make redundant.

    Before::

        %s: i64[4] = tensor.shape(%x)                         // %x: f32[1,8,4,4]
        %a: f32[1,8,16] = tensor.reshape(%x) {shape=[1,8,16]}
        %b: f32[1,128] = tensor.reshape(%a) {shape=[1,128]}
        %t: f32[1,4,4,8] = tensor.transpose(%x) {perm=[0,2,3,1]}
        %u: f32[1,8,4,4] = tensor.transpose(%t) {perm=[0,3,1,2]}
        %q: f32[1,8,4,4] = tensor.unsqueeze(%sq) {axes=[0]}  // %sq = squeeze(%x) {axes=[0]}

    After::

        %s_1: i64[4] = const @s
        %b: f32[1,128] = tensor.reshape(%x) {shape=[1,128]}
        (%u and %q are %x)

    Rules: ``tensor.shape`` of a static tensor and integer ops on constants fold (whatever
    ``fold-constants``' size limit); a reshape, flatten, squeeze or unsqueeze whose result has
    its operand's shape disappears, and one applied to the result of another reads the first
    one's operand (a reshape keeps its target; others become a reshape to their static
    result; a chain back to the original shape disappears); transposes compose and the
    identity permutation disappears; a slice with unit steps that keeps the whole static shape
    and a one-operand concat disappear. Does not merge a reshape chain whose symbolic
    dimensions would not carry over to the earlier operand.
    """

    name: ClassVar[str] = "simplify-shapes"

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> Result:
        if node.op == "const":
            return None
        if node.inputs and all(v.is_const for v in node.inputs) or node.op == "tensor.shape":
            folded = _fold_shape_math(graph, node)
            if folded is not None:
                return folded
        rule = RULES.get(node.op)
        return rule(graph, node) if rule is not None else None
