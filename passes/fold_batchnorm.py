"""fold-batchnorm: fold inference batch norm into the preceding conv or dense weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import (
    absorb,
    add_const_like,
    const_ref,
    morph,
    producer,
    set_operand,
    sole_user,
)

if TYPE_CHECKING:
    from compiler.context import PassContext

FOLDS_INTO = ("nn.conv1d", "nn.conv2d", "nn.dense")


def bias_name(weight: Value) -> str:
    """``layer1.conv.weight`` -> ``layer1.conv.bias``: how a derived bias is named."""
    ref = const_ref(weight)
    return ref[: -len("weight")] + "bias" if ref.endswith("weight") else ref + ".bias"


def _bn_affine(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | Reject:
    """(multiplier, shift) per channel, in float64: ``bn(x) = x * multiplier + shift``."""
    params = [graph.const_value(v) for v in bn.inputs[1:]]
    if any(p is None for p in params):
        return Reject("batch_norm parameters are not constant")
    scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
    # The interpreter adds eps in float32 before the square root; so do we.
    eps = np.float32(bn.attrs.get("eps", 1e-5))
    inv = scale / np.sqrt((var.astype(np.float32) + eps).astype(np.float64))
    return inv, bias - mean * inv


def _foldable(graph: Graph, bn: Node) -> Node | Reject | None:
    conv = producer(bn.inputs[0], *FOLDS_INTO)
    if conv is None:
        return None
    if not is_float(conv.output.dtype):
        return Reject("conv is already quantized")
    if sole_user(graph, conv.output) is not bn:
        return Reject("conv output has other users")
    if conv.attrs.get("act", "none") != "none":
        return Reject("conv already has a fused activation")
    if len(conv.inputs) > 3:
        return Reject("conv already has a residual operand")
    if graph.const_value(conv.inputs[1]) is None:
        return Reject("conv weight is not constant")
    if len(conv.inputs) > 2 and graph.const_value(conv.inputs[2]) is None:
        return Reject("conv bias is not constant")
    if conv.op == "nn.dense" and conv.output.type.rank != 2:
        return Reject("batch_norm channel axis 1 is not the dense feature axis")
    return conv


def _fold(graph: Graph, conv: Node, bn: Node, mul: np.ndarray, shift: np.ndarray) -> bool:
    w_value = conv.inputs[1]
    w = graph.const_value(w_value)
    assert w is not None  # checked by _foldable
    # One rounding per weight (as PyTorch's fuse_conv_bn_eval): float32 product of float32
    # weight and float64-computed multiplier; float64 here would cost 4x on big models.
    folded_w = w * mul.astype(w.dtype).reshape((-1,) + (1,) * (w.ndim - 1))
    old_b = graph.const_value(conv.inputs[2]) if len(conv.inputs) > 2 else None
    b = np.zeros(w.shape[0]) if old_b is None else old_b.astype(np.float64)
    new_w = add_const_like(graph, const_ref(w_value) + "_bn", folded_w, w_value.type)
    new_b = add_const_like(graph, bias_name(w_value) + "_bn", b * mul + shift, w_value.type)
    graph.set_input(conv, 1, new_w)
    set_operand(graph, conv, 2, new_b)
    return absorb(graph, conv, bn)


def _decompose(graph: Graph, bn: Node, mul: np.ndarray, shift: np.ndarray) -> bool:
    """A batch norm with nothing to fold into: ``x * multiplier + shift`` per channel."""
    x = bn.inputs[0]
    shape = (-1,) + (1,) * (x.type.rank - 2)
    m = add_const_like(graph, bn.output.name + ".scale", mul.reshape(shape), x.type)
    s = add_const_like(graph, bn.output.name + ".shift", shift.reshape(shape), x.type)
    scaled = graph.add_node(
        "math.mul", [x, m], names=[bn.output.name + "_scaled"], loc=bn.loc, before=bn
    )
    morph(graph, bn, "math.add", [scaled.output, s], {})
    return True


@dataclass(frozen=True)
class FoldBatchNorm(RewritePass):
    """Fold ``nn.batch_norm`` after ``nn.conv1d``/``nn.conv2d``/``nn.dense`` into its weights.

    Before::

        %c: f32[1,8,6,6] = nn.conv2d(%x, %w) {pads=[1,1,1,1]}
        %y: f32[1,8,6,6] = nn.batch_norm(%c, %g, %b, %m, %v) {eps=1e-05}

    After (``w' = w * g / sqrt(v + eps)`` per output channel, ``b' = (b - m) * g /
    sqrt(v + eps) + beta``; a bias operand is added if the conv had none)::

        %c: f32[1,8,6,6] = nn.conv2d(%x, %w_bn, %bias_bn) {pads=[1,1,1,1]}

    Must not fire (and says why) when the batch-norm parameters, the weight or the bias are
    not constants, when the conv output has other users (they want the un-normalized value),
    when the conv already carries an activation or a residual (the batch norm applies after
    them), on a quantized conv, or on a dense whose output is not [N, C]. A batch norm with
    no conv/dense before it stays as it is, unless ``decompose_standalone`` is set: then it
    becomes ``math.mul`` and ``math.add`` by per-channel constants of shape [C, 1, ...]
    (elementwise ops every backend has).
    """

    name: ClassVar[str] = "fold-batchnorm"
    decompose_standalone: bool = False

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op != "nn.batch_norm":
            return None
        conv = _foldable(graph, node)
        if isinstance(conv, Reject):
            return conv
        affine = _bn_affine(graph, node)
        if isinstance(affine, Reject):
            return affine
        if conv is not None:
            return _fold(graph, conv, node, *affine)
        if self.decompose_standalone:
            return _decompose(graph, node, *affine)
        return Reject("no conv or dense before batch_norm (set decompose_standalone)")
