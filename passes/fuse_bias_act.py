"""fuse-bias-act: fold a constant bias add and a following activation into conv/dense."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import activation_ops, fused_activation, integer_keeps
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import absorb, add_const_like, const_ref, morph, producer, set_operand, sole_user

if TYPE_CHECKING:
    from compiler.context import PassContext
    from compiler.target import Target

FUSES_INTO = ("nn.conv1d", "nn.conv2d", "nn.dense")
ACTIVATION_OPS = activation_ops()

Act = tuple[str, list[float]]

def fusable_activation(node: Node, target: Target | None) -> Act | Reject | None:
    """The (act, act_args) ``node`` fuses as, a Reject if the backend lacks it, else None
    (``compiler.ir.op_facts.fused_activation``: the one act <-> op table)."""
    fused = fused_activation(node.op, node.attrs)
    if fused is None:
        return None
    act, args = fused
    # An FPGA's kernels apply only some activations (the target file's fused_activations).
    fpga = target.fpga if target is not None else None
    supported = fpga.fused_activations if fpga is not None else None
    if supported is not None and act not in supported:
        return Reject(f"backend {target.backend} has no kernel with fused {act}")  # type: ignore[union-attr]
    return act, args


def set_activation(node: Node, act: Act) -> None:
    node.attrs["act"] = act[0]
    if act[1]:
        node.attrs["act_args"] = list(act[1])
    else:
        node.attrs.pop("act_args", None)


def channel_axis(node: Node) -> int:
    return node.output.type.rank - 1 if node.op == "nn.dense" else 1


def per_channel(data: np.ndarray, out: Value, axis: int) -> np.ndarray | None:
    """``data`` as one value per channel, if adding it to ``out`` is a per-channel bias."""
    rank = out.type.rank
    if data.ndim > rank:
        return None
    shape = (1,) * (rank - data.ndim) + data.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    channels = out.type.shape[axis]
    if not isinstance(channels, int) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(data.reshape(-1), (channels,))


def _target_conv(graph: Graph, node: Node, value: Value) -> Node | Reject | None:
    conv = producer(value, *FUSES_INTO)
    if conv is None or not is_float(conv.output.dtype):
        return None
    if sole_user(graph, conv.output) is not node:
        return Reject("conv output has other users")
    if conv.attrs.get("act", "none") != "none":
        return Reject("conv already has a fused activation")
    return conv


def _fuse_bias(graph: Graph, node: Node) -> bool | Reject | None:
    a, b = node.inputs
    add = node.op == "math.add"
    sides = [(a, b, 1.0 if add else -1.0)] + ([(b, a, 1.0)] if add else [])
    for value, other, sign in sides:
        data = graph.const_value(other)
        if data is None or producer(value, *FUSES_INTO) is None:
            continue
        conv = _target_conv(graph, node, value)
        if not isinstance(conv, Node):
            return conv
        bias = per_channel(data, conv.output, channel_axis(conv))
        if bias is None or node.output.type != conv.output.type:
            return Reject("added constant is not a per-channel bias")
        old = graph.const_value(conv.inputs[2]) if len(conv.inputs) > 2 else None
        if len(conv.inputs) > 2 and old is None:
            return Reject("conv bias is not constant")
        if old is None and sign > 0 and data.shape == bias.shape:
            new = other  # already a bias vector: use it as it is
        else:
            total = (0 if old is None else old.astype(np.float64)) + sign * bias.astype(np.float64)
            hint = const_ref(conv.inputs[2] if old is not None else other)
            new = add_const_like(graph, hint, total, conv.output.type)
        set_operand(graph, conv, 2, new)
        return absorb(graph, conv, node)
    return None


def _fuse_act(
    graph: Graph, node: Node, target: Target | None, integer: bool
) -> bool | Reject | None:
    if producer(node.inputs[0], *FUSES_INTO) is None:
        return None
    act = fusable_activation(node, target)
    if not isinstance(act, tuple):
        return act
    if integer and not integer_keeps(act[0]):
        return Reject(f"an integer quantize follows: {act[0]} has no integer form")
    conv = _target_conv(graph, node, node.inputs[0])
    if not isinstance(conv, Node):
        return conv
    set_activation(conv, act)
    return absorb(graph, conv, node)


def _matmul_to_dense(graph: Graph, node: Node) -> bool | None:
    a, w = node.inputs
    if not is_float(a.dtype) or w.type.rank != 2:
        return None
    flip = producer(w, "tensor.transpose")
    if flip is not None and flip.inputs[0].is_const:  # x @ W.T (too big to fold): W is it
        morph(graph, node, "nn.dense", [a, flip.inputs[0]], {})
        return True
    data = graph.const_value(w)
    if data is None:
        return None
    weight = add_const_like(graph, const_ref(w) + "_t", data.T, w.type)
    morph(graph, node, "nn.dense", [a, weight], {})
    return True


@dataclass(frozen=True)
class FuseBiasAct(RewritePass):
    """Give conv/dense their bias and activation operands instead of separate nodes.

    Before::

        %c: f32[1,8,6,6] = nn.conv2d(%x, %w) {pads=[1,1,1,1]}
        %a: f32[1,8,6,6] = math.add(%c, %bias)         // %bias: f32[8,1,1] constant
        %y: f32[1,8,6,6] = nn.relu(%a)
        %m: f32[1,4,10] = nn.matmul(%h, %wm)           // %wm: f32[16,10] constant

    After::

        %c: f32[1,8,6,6] = nn.conv2d(%x, %w, %b8) {act="relu", pads=[1,1,1,1]}  // %b8: [8]
        %m: f32[1,4,10] = nn.dense(%h, %wm_t)           // %wm_t: [10,16], %wm transposed

    A constant added to (or subtracted from) a float conv/dense output is a bias when it
    varies only along the channel axis (1 for conv, the last for dense): [C], [C,1,1],
    [1,C,1,1], or one value for all. The activations of ``FUSED_ACTIVATIONS`` (relu, relu6,
    clip, leaky_relu, sigmoid, silu, gelu, hardswish, tanh) become ``act``/``act_args``. A matmul by
    a constant 2-D weight becomes a dense (whose bias then fuses the same way).
    Must not fire when the conv output has other users, when an activation is already fused
    (a bias cannot go after it; a second activation is not expressible), when the constant is
    not per-channel, or when the target's kernels lack the activation (an FPGA's
    ``[fpga] fused_activations``: relu, relu6 and clip). With ``integer`` (set by the
    pipeline when an integer quantize follows, ``before_integer_quantize``) only the
    activations an integer layer keeps fuse (relu, relu6, clip); gelu, silu, ... stay the
    separate float ops quantize leaves float.
    """

    name: ClassVar[str] = "fuse-bias-act"
    integer: bool = False

    def before_integer_quantize(self) -> FuseBiasAct:
        """This pass in a pipeline whose integer quantize comes later."""
        return dataclasses.replace(self, integer=True)

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op in ("math.add", "math.sub"):
            return _fuse_bias(graph, node)
        if node.op in ACTIVATION_OPS:
            return _fuse_act(graph, node, ctx.target, self.integer)
        if node.op == "nn.matmul":
            return _matmul_to_dense(graph, node)
        return None
