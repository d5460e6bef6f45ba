"""fuse-residual: a skip connection added to a conv output becomes the conv's residual operand."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import (
    absorb,
    add_const_like,
    move_before,
    positions,
    producer,
    set_operand,
    sole_user,
)
from passes.fold_batchnorm import bias_name
from passes.fuse_bias_act import fusable_activation, set_activation

if TYPE_CHECKING:
    from compiler.context import PassContext
    from compiler.target import Target

CONVS = ("nn.conv1d", "nn.conv2d")


def _check(graph: Graph, add: Node, conv: Node, skip: Value) -> Reject | None:
    if not is_float(conv.output.dtype):
        return Reject("conv is already quantized")
    if sole_user(graph, conv.output) is not add:
        return Reject("conv output has other users")
    if len(conv.inputs) > 3:
        return Reject("conv already has a residual")
    if conv.attrs.get("act", "none") != "none":
        return Reject("conv already has a fused activation")
    if skip.type != conv.output.type:
        return Reject("residual shape differs from the conv output (no broadcasting residuals)")
    return None


def _candidates(graph: Graph, add: Node, ops: tuple[str, ...]) -> list[tuple[Node, Value]]:
    """(conv, skip) pairs, the later conv in topological order first."""
    a, b = add.inputs
    pairs = [(p, other) for value, other in ((a, b), (b, a)) if (p := producer(value, *ops))]
    if len(pairs) == 2 and pairs[0][0] is pairs[1][0]:
        return []  # conv(x) + conv(x): the skip is the conv itself
    order = positions(graph)
    return sorted(pairs, key=lambda pair: -order[id(pair[0])])


def _fuse(graph: Graph, add: Node, conv: Node, skip: Value, target: Target | None) -> bool:
    if len(conv.inputs) == 2:  # the residual is operand 3: give the conv a zero bias first
        zeros = np.zeros(int(conv.inputs[1].type.shape[0]))
        set_operand(
            graph,
            conv,
            2,
            add_const_like(graph, bias_name(conv.inputs[1]), zeros, conv.output.type),
        )
    order = positions(graph)
    skip_at = order.get(id(skip.producer), -1) if skip.producer is not None else -1
    if skip_at > order[id(conv)]:
        move_before(graph, conv, add)  # the skip must be computed before the conv uses it
    set_operand(graph, conv, 3, skip)
    absorb(graph, conv, add)
    user = sole_user(graph, conv.output)
    if user is not None:
        act = fusable_activation(user, target)
        if isinstance(act, tuple):
            set_activation(conv, act)
            absorb(graph, conv, user)
    return True


@dataclass(frozen=True)
class FuseResidual(RewritePass):
    """``add(conv(x), skip)`` (then an activation) becomes ``conv(x, w, b, skip) {act}``.

    Before::

        %c: f32[1,8,6,6] = nn.conv2d(%h, %w, %b) {pads=[1,1,1,1]}
        %s: f32[1,8,6,6] = math.add(%c, %x)
        %y: f32[1,8,6,6] = nn.relu(%s)

    After::

        %c: f32[1,8,6,6] = nn.conv2d(%h, %w, %b, %x) {act="relu", pads=[1,1,1,1]}

    The conv gets a zero bias if it had none (the residual is operand 4), and moves down to
    the add when the skip is computed after it. When both operands are convs, the later one
    in topological order takes the other as its residual (so the skip dominates it); if that
    one cannot take it, the earlier one is tried. The activation after the add moves onto
    the conv when the add's result feeds only it and the backend has the kernel (see
    ``fuse-bias-act``). Must not fire when the conv output has other users, when the conv
    already has a residual or an activation (the add must come before it), or when the skip's
    type differs from the conv output's (no broadcasting residuals). With ``dense`` set, a
    ``nn.dense`` output takes its skip connection the same way (transformer residuals).
    With ``integer`` (set by the pipeline when an integer quantize follows) it declines
    every add: an integer skip connection is quantize's ``q.add``, and quantize takes the
    graph as this pass leaves it.
    """

    name: ClassVar[str] = "fuse-residual"
    dense: bool = False
    integer: bool = False

    def before_integer_quantize(self) -> FuseResidual:
        """This pass in a pipeline whose integer quantize comes later."""
        return dataclasses.replace(self, integer=True)

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op != "math.add":
            return None
        if self.integer:
            return Reject("an integer quantize follows: the skip connection becomes its q.add")
        ops = CONVS + ("nn.dense",) if self.dense else CONVS
        first: Reject | None = None
        for conv, skip in _candidates(graph, node, ops):
            reason = _check(graph, node, conv, skip)
            if reason is None:
                return _fuse(graph, node, conv, skip, ctx.target)
            first = first or reason
        return first
