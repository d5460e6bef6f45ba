"""recognize-layernorm: the spelled-out layer normalization becomes ``nn.layer_norm``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import norm_axis
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import (
    add_const_like,
    const_ref,
    is_dead,
    is_output,
    morph,
    producer,
    scalar,
    sole_user,
    split_const,
)

if TYPE_CHECKING:
    from compiler.context import PassContext


@dataclass
class _Match:
    x: Value
    axis: int
    eps: float
    body: list[Node]  # every node of the pattern but the last


def _inverse_std(graph: Graph, node: Node) -> tuple[Value, Value, list[Node]] | None:
    """``d / sqrt(v)``, ``d * rsqrt(v)``, ``d * reciprocal(sqrt(v))``, ``d * (1 / sqrt(v))``
    -> (d, v, the nodes between d and v)."""
    if node.op == "math.div":
        root = producer(node.inputs[1], "math.sqrt")
        return (node.inputs[0], root.inputs[0], [root]) if root else None
    if node.op != "math.mul":
        return None
    for d, r in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        if (rsqrt := producer(r, "math.rsqrt")) is not None:
            return d, rsqrt.inputs[0], [rsqrt]
        inv = producer(r, "math.reciprocal", "math.div")
        if inv is None or (inv.op == "math.div" and scalar(graph, inv.inputs[0]) != 1.0):
            continue
        root = producer(inv.inputs[-1], "math.sqrt")
        if root is not None:
            return d, root.inputs[0], [inv, root]
    return None


def _mean_axis(graph: Graph, node: Node | None, rank: int) -> int | None:
    """The first normalized axis of a keepdims mean over trailing axes."""
    if node is None or not node.attrs.get("keepdims") or node.attrs.get("axes") is None:
        return None
    axes = sorted(norm_axis(a, rank) for a in node.attrs["axes"])
    return axes[0] if axes == list(range(axes[0], rank)) else None


def _match(graph: Graph, node: Node) -> _Match | Reject | None:
    found = _inverse_std(graph, node)
    if found is None:
        return None
    d, var_eps, std_nodes = found
    add_eps = producer(var_eps, "math.add")
    sub = producer(d, "math.sub")
    if add_eps is None or sub is None:
        return None
    split = split_const(graph, add_eps)
    if split is None:
        return Reject("epsilon is not a constant")
    var_value, eps_data = split
    var = producer(var_value, "math.reduce_mean")
    square = producer(var.inputs[0], "math.pow", "math.mul") if var else None
    if var is None or square is None:
        return None
    if square.op == "math.pow":
        if square.inputs[0] is not d or scalar(graph, square.inputs[1]) != 2.0:
            return None
    elif square.inputs[0] is not d or square.inputs[1] is not d:
        return None
    x, mean_value = sub.inputs
    mean = producer(mean_value, "math.reduce_mean")
    if mean is None or mean.inputs[0] is not x or not is_float(x.dtype):
        return None
    axis = _mean_axis(graph, mean, x.type.rank)
    if axis is None or axis != _mean_axis(graph, var, x.type.rank):
        return Reject("mean and variance are not over the same trailing axes")
    if eps_data.size != 1:
        return Reject("epsilon is not a scalar")
    body = [mean, sub, square, var, add_eps, *std_nodes]
    inner = {id(n) for n in body} | {id(node)}
    for n in body:
        if is_output(graph, n.output) or any(id(u) not in inner for u in n.output.users):
            return Reject("an intermediate of the normalization has other users")
    if node.output.type != x.type:
        return Reject("normalized result changes the input's shape")
    return _Match(x, axis, float(eps_data.reshape(())), body)


def _affine(graph: Graph, value: Value, op: str, norm_shape: tuple) -> tuple[Node, Value] | None:
    """A following ``mul``/``add`` by a constant of the normalized shape: (node, operand)."""
    user = sole_user(graph, value)
    if user is None or user.op != op:
        return None
    split = split_const(graph, user)
    if split is None or split[0] is not value or user.output.type != value.type:
        return None
    data = split[1]
    if data.size != int(np.prod(norm_shape)) or data.shape[-len(norm_shape) :] != norm_shape:
        return None
    other = user.inputs[1] if user.inputs[0] is value else user.inputs[0]
    if data.shape != norm_shape:
        other = add_const_like(graph, const_ref(other), data.reshape(norm_shape), value.type)
    return user, other


@dataclass(frozen=True)
class RecognizeLayerNorm(RewritePass):
    """The decomposed layer norm (ONNX before opset 17, hand-written models) -> ``nn.layer_norm``.

    Before::

        %m: f32[1,4,8] = math.reduce_mean(%x) {axes=[-1], keepdims=true}
        %d: f32[1,4,8] = math.sub(%x, %m)
        %p: f32[1,4,8] = math.pow(%d, %two)           // or math.mul(%d, %d)
        %v: f32[1,4,1] = math.reduce_mean(%p) {axes=[-1], keepdims=true}
        %e: f32[1,4,1] = math.add(%v, %eps)
        %s: f32[1,4,1] = math.sqrt(%e)                 // or rsqrt / reciprocal then mul
        %n: f32[1,4,8] = math.div(%d, %s)
        %g: f32[1,4,8] = math.mul(%n, %gamma)          // optional, %gamma: f32[8]
        %y: f32[1,4,8] = math.add(%g, %beta)           // optional, %beta: f32[8]

    After::

        %y: f32[1,4,8] = nn.layer_norm(%x, %gamma, %beta) {axis=2, eps=1e-05}

    The means may be over several trailing axes (``axis`` is the first). A gamma or beta of
    shape [1,1,8] is reshaped to the normalized shape; a beta with no gamma gets a gamma of
    ones. Torch's ``native_layer_norm`` already arrives as ``nn.layer_norm``. Must not fire
    when an intermediate (the mean, the centered value, the variance...) has another user,
    when epsilon is not a scalar constant, or when the two means are over different axes.
    """

    name: ClassVar[str] = "recognize-layernorm"

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if is_dead(graph, node):
            return None
        match = _match(graph, node)
        if not isinstance(match, _Match):
            return match
        norm_shape = tuple(match.x.type.shape[match.axis :])
        last, operands = node, [match.x]
        scale = _affine(graph, last.output, "math.mul", norm_shape)
        if scale is not None:
            last, operands = scale[0], [match.x, scale[1]]
        shift = _affine(graph, last.output, "math.add", norm_shape)
        if shift is not None:
            if len(operands) == 1:
                ones = np.ones([int(d) for d in norm_shape])
                operands.append(
                    add_const_like(graph, const_ref(shift[1]) + "_gamma", ones, match.x.type)
                )
            last, operands = shift[0], [*operands, shift[1]]
        attrs = {"axis": match.axis, "eps": match.eps}
        morph(graph, last, "nn.layer_norm", operands, attrs)
        return True
