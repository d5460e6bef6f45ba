"""convert-layout: run convolutions and pools channels-last (NHWC), transposing only at the
edges of the graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import OPS, infer_types, norm_axis
from compiler.ir.types import TensorType
from passes._match import const_ref, is_output
from passes.simplify_shapes import compose_transposes

if TYPE_CHECKING:
    from compiler.context import PassContext

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]
#: NCHW axis -> where that axis is in NHWC (N stays, C goes last, H and W move up).
AXIS_IN_NHWC = [0, 3, 1, 2]

#: Ops with a ``layout`` attribute; which operands follow it (the conv residual does).
LAYOUT_OPS: dict[str, tuple[int, ...]] = {
    "nn.conv2d": (0, 3),
    "nn.max_pool2d": (0,),
    "nn.avg_pool2d": (0,),
    "nn.global_avg_pool": (0,),
    "nn.global_max_pool": (0,),
    "nn.batch_norm": (0,),
}

Attrs = dict[str, Any]


def _axis(a: int) -> int:
    return AXIS_IN_NHWC[norm_axis(a, 4)]


def _reduce_attrs(attrs: Attrs) -> Attrs | None:
    if not attrs.get("keepdims", False):
        return None  # dropping axes changes which axis is last: leave it NCHW
    axes = attrs.get("axes")
    return {**attrs, "axes": None if axes is None else [_axis(a) for a in axes]}


def _slice_attrs(attrs: Attrs) -> Attrs:
    axes = attrs.get("axes")
    axes = list(range(len(attrs["starts"]))) if axes is None else axes
    return {**attrs, "axes": [_axis(a) for a in axes]}


#: Ops that run on channels-last data once their axis attributes are renumbered.
AXIS_OPS: dict[str, Callable[[Attrs], Attrs | None]] = {
    "tensor.concat": lambda a: {**a, "axis": _axis(a["axis"])},
    "nn.softmax": lambda a: {**a, "axis": _axis(a.get("axis", -1))},
    "nn.log_softmax": lambda a: {**a, "axis": _axis(a.get("axis", -1))},
    "tensor.slice": _slice_attrs,
    "tensor.pad": lambda a: {
        **a,
        "pads": [a["pads"][p] for p in TO_NHWC] + [a["pads"][4 + p] for p in TO_NHWC],
    },
    "nn.resize": lambda a: {**a, "scales": [a["scales"][p] for p in TO_NHWC]},
    **{f"math.reduce_{r}": _reduce_attrs for r in ("mean", "sum", "max", "min", "prod")},
}


def _is_elementwise(op: str) -> bool:
    opdef = OPS.get(op)
    return opdef is not None and "elementwise" in opdef.tags


class _Relayout:
    """One run of the pass: which values are channels-last now, and the transposes made."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nhwc: set[int] = set()  # values now stored [N, H, W, C]
        self.cache: dict[tuple[int, str], Value] = {}
        self.changed = False

    # ---- conversions -----------------------------------------------------------------------
    def transpose(self, value: Value, perm: list[int], before: Node | None) -> Value:
        key = (id(value), str(perm))
        if key not in self.cache:
            suffix = "_nhwc" if perm == TO_NHWC else "_nchw"
            node = self.graph.add_node(
                "tensor.transpose",
                [value],
                {"perm": perm},
                names=[value.name + suffix],
                before=before,
            )
            self.cache[key] = node.output
        return self.cache[key]

    def as_nhwc(self, value: Value, before: Node) -> Value:
        if id(value) in self.nhwc:
            return value
        data = self.graph.const_value(value)
        if data is None:
            return self.transpose(value, TO_NHWC, before)
        key = (id(value), "const")
        if key not in self.cache:
            padded = data.reshape((1,) * (4 - data.ndim) + data.shape)
            self.cache[key] = self.graph.add_const(
                const_ref(value) + "_nhwc", np.ascontiguousarray(padded.transpose(TO_NHWC))
            )
        return self.cache[key]

    def as_nchw(self, value: Value, before: Node | None) -> Value:
        return self.transpose(value, TO_NCHW, before) if id(value) in self.nhwc else value

    def _retype(self, node: Node) -> None:
        inferred = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
        for out, t in zip(node.outputs, inferred, strict=True):
            out.type = TensorType(t.dtype, t.shape, out.type.quant)
            self.nhwc.add(id(out))
        self.changed = True

    def _relaid_operands(self, node: Node, moved: tuple[int, ...]) -> None:
        for i in moved:
            if i < len(node.inputs):
                self.graph.set_input(node, i, self.as_nhwc(node.inputs[i], node))

    # ---- per node --------------------------------------------------------------------------
    def visit(self, node: Node) -> None:
        for rule in (self._layout_op, self._elementwise, self._axis_op, self._flatten):
            if rule(node):
                return
        for i, value in enumerate(node.inputs):  # a consumer that needs NCHW
            self.graph.set_input(node, i, self.as_nchw(value, node))

    def _convertible(self, node: Node) -> bool:
        out = node.outputs[0].type
        return out.rank == 4 and (out.quant is None or out.quant.axis is None)

    def _layout_op(self, node: Node) -> bool:
        moved = LAYOUT_OPS.get(node.op)
        if moved is None or node.attrs.get("layout", "NCHW") != "NCHW":
            return False
        if node.inputs[0].type.rank != 4 or not self._convertible(node):
            return False
        self._relaid_operands(node, moved)
        node.attrs["layout"] = "NHWC"
        self._retype(node)
        return True

    def _operand_ok(self, value: Value) -> bool:
        if id(value) in self.nhwc or value.type.rank == 4:
            return True
        return value.is_const and value.type.rank <= 4

    def _elementwise(self, node: Node) -> bool:
        if not _is_elementwise(node.op) or len(node.outputs) != 1:
            return False
        if not any(id(v) in self.nhwc for v in node.inputs) or not self._convertible(node):
            return False
        if not all(self._operand_ok(v) for v in node.inputs):
            return False
        self._relaid_operands(node, tuple(range(len(node.inputs))))
        self._retype(node)
        return True

    def _axis_op(self, node: Node) -> bool:
        remap = AXIS_OPS.get(node.op)
        if remap is None or not any(id(v) in self.nhwc for v in node.inputs):
            return False
        attrs = remap(dict(node.attrs))
        if attrs is None or not self._convertible(node):
            return False
        if any(v.type.rank != 4 for v in node.inputs):
            return False
        self._relaid_operands(node, tuple(range(len(node.inputs))))
        node.attrs = attrs
        self._retype(node)
        return True

    def _flatten(self, node: Node) -> bool:
        """A reshape/flatten of channels-last data: fine as it is when the memory order is the
        same; to [N, C*H*W] feeding only dense layers, permute their weight columns instead."""
        x = node.inputs[0]
        if node.op not in ("tensor.flatten", "tensor.reshape") or id(x) not in self.nhwc:
            return False
        out = node.output
        if infer_types(node.op, [x.type], node.attrs)[0].shape != out.type.shape:
            return False  # e.g. flatten(axis=2): the NHWC operand would give another shape
        n, *hwc = x.type.shape
        if not all(isinstance(d, int) for d in hwc):
            return False
        h, w, c = (int(d) for d in hwc)
        if c == 1 or h * w == 1:  # NCHW and NHWC hold the elements in the same order
            return True
        users = out.users
        if (
            out.type.shape != (n, c * h * w)
            or is_output(self.graph, out)
            or not all(u.op == "nn.dense" and u.inputs[0] is out for u in users)
            or any(self.graph.const_value(u.inputs[1]) is None for u in users)
        ):
            return False
        for dense in users:
            weight = self.graph.const_value(dense.inputs[1])
            assert weight is not None  # checked above
            permuted = weight.reshape(weight.shape[0], c, h, w).transpose(0, 2, 3, 1)
            new = self.graph.add_const(
                const_ref(dense.inputs[1]) + "_nhwc",
                np.ascontiguousarray(permuted.reshape(weight.shape)),
            )
            self.graph.set_input(dense, 1, new)
        self.changed = True
        return True

    def finish(self) -> None:
        for i, value in enumerate(self.graph.outputs):
            if id(value) in self.nhwc:
                self.graph.outputs[i] = self.transpose(value, TO_NCHW, None)


@dataclass(frozen=True)
class ConvertLayout:
    """Convolutions, pools and batch norms run channels-last; data is transposed only where
    the graph meets the outside (its 4-D inputs and outputs) or an op that needs NCHW.

    Before::

        graph @g(%x: f32[1,3,8,8]) -> (f32[1,8,8,8]) {
          %c: f32[1,8,8,8] = nn.conv2d(%x, %w, %b) {act="relu", pads=[1,1,1,1]}
          %p: f32[1,8,8,8] = nn.max_pool2d(%c) {kernel=[3,3], pads=[1,1,1,1], strides=[1,1]}
          return %p
        }

    After (the IR ops take ``layout="NHWC"``: activations [N,H,W,C], weights still OIHW)::

        graph @g(%x: f32[1,3,8,8]) -> (f32[1,8,8,8]) {
          %x_nhwc: f32[1,8,8,3] = tensor.transpose(%x) {perm=[0,2,3,1]}
          %c: f32[1,8,8,8] = nn.conv2d(%x_nhwc, %w, %b) {act="relu", layout="NHWC", ...}
          %p: f32[1,8,8,8] = nn.max_pool2d(%c) {kernel=[3,3], layout="NHWC", ...}
          %p_nchw: f32[1,8,8,8] = tensor.transpose(%p) {perm=[0,3,1,2]}
          return %p_nchw
        }

    Between channels-last ops, elementwise ops (constant operands such as a [C,1,1] scale are
    permuted to [1,1,1,C]) and concat/softmax/slice/pad/resize/keepdims reductions (their axes
    renumbered) stay channels-last. A flatten/reshape of channels-last data needs no
    transpose when C or H*W is 1 (global pooling, then flatten), nor when its [N, C*H*W]
    result only feeds dense layers with constant weights (their columns are permuted to HWC
    order). Every other consumer gets an NCHW transpose; inserted transposes that meet
    another transpose compose away. Runs when ``layout`` (or, unset, the target's
    ``numerics.layout``) is "NHWC"; a node already NHWC is left alone. Does not convert a
    value with per-channel quantization (its axis would move): run it before quantization.
    """

    name: ClassVar[str] = "convert-layout"
    layout: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in (None, "NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, not {self.layout!r}")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        target = ctx.target
        layout = self.layout or (target.numerics.layout if target is not None else "NCHW")
        if layout != "NHWC":
            return False
        relayout = _Relayout(graph)
        for node in list(graph.nodes):
            if node.op != "const":
                relayout.visit(node)
        relayout.finish()
        if not relayout.changed:
            return False
        for node in list(graph.nodes):
            if not node.dead and node.op == "tensor.transpose":
                compose_transposes(graph, node)
        graph.remove_unused()
        ctx.stats.fire(self.name)
        return True
