"""The static form of ``nn.resize_dyn`` once its scales or sizes (and roi) are constants.

Resize is separable: the interpreter resizes one axis after the other
(``compiler.interpreter_dynamic.resize_steps`` gives each step's weights). Nearest picks
one input index per output index: a ``tensor.gather`` of constant indices (exact in any
dtype). Linear and cubic weigh taps: in float64, as the interpreter computes, each step is
a matmul with the constant [in, out] weights along that axis (moved last and back).
tf_crop_and_resize then fills the coordinates outside the input (``tensor.where``).
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import NUMPY_DTYPES, is_float

#: Dense weights per axis: a larger axis is left to the backend's rules (a matmul of that
#: size per step would cost more than the resize it stands for).
_MAX_AXIS = 4096


def resize_form(graph: Graph, node: Node) -> None:
    """Replace ``node`` (static types, constant operands) by its separable static ops."""
    from compiler.interpreter_dynamic import resize_steps

    x, out = node.inputs[0], node.outputs[0]
    params = graph.const_value(node.inputs[1])
    roi = graph.const_value(node.inputs[2]) if len(node.inputs) > 2 else None
    assert params is not None
    if len(node.inputs) > 2 and roi is None:
        return  # a runtime roi (tf_crop_and_resize): the weights are not known
    shape = [int(d) for d in x.type.shape]
    if max(shape, default=0) > _MAX_AXIS or not (is_float(x.dtype) or is_nearest(node)):
        return
    steps = resize_steps(node, shape, params, roi)
    y = x if is_nearest(node) else _emit(graph, node, "tensor.cast", [x], {"to": "f64"})
    fill = float(node.attrs.get("extrapolation_value", 0.0))
    for axis, weights, outside in steps:
        if is_nearest(node):
            index = graph.add_const(f"{out.name}_index{axis}", weights.argmax(axis=1))
            y = _emit(graph, node, "tensor.gather", [y, index], {"axis": axis})
        else:
            y = _matmul_along(graph, node, y, axis, weights)
        if outside is not None and outside.any():
            along = [1] * len(shape)
            along[axis] = outside.size
            mask = graph.add_const(f"{out.name}_outside{axis}", outside.reshape(along))
            value = graph.add_const(f"{out.name}_fill", np.asarray(fill, NUMPY_DTYPES[y.dtype]))
            y = _emit(graph, node, "tensor.where", [mask, value, y], {})
    if y.dtype != out.dtype:
        y = _emit(graph, node, "tensor.cast", [y], {"to": out.dtype})
    graph.replace_all_uses(out, y)
    graph.remove(node)


def is_nearest(node: Node) -> bool:
    return node.attrs.get("mode", "nearest") == "nearest"


def _emit(graph: Graph, node: Node, op: str, inputs: list[Value], attrs: dict) -> Value:
    made = graph.add_node(op, inputs, attrs, names=[f"{node.outputs[0].name}_{op.split('.')[-1]}"],
                          loc=node.loc, before=node)  # fmt: skip
    return made.outputs[0]


def _matmul_along(graph: Graph, node: Node, y: Value, axis: int, weights: np.ndarray) -> Value:
    """``y`` with ``axis`` (size n) replaced by ``weights @ y`` along it (size m)."""
    rank = y.type.rank
    last = axis == rank - 1
    perm = [d for d in range(rank) if d != axis] + [axis]
    moved = y if last else _emit(graph, node, "tensor.transpose", [y], {"perm": perm})
    w = graph.add_const(f"{node.outputs[0].name}_weights{axis}", np.ascontiguousarray(weights.T))
    z = _emit(graph, node, "nn.matmul", [moved, w], {})
    if last:
        return z
    back = [perm.index(d) for d in range(rank)]
    return _emit(graph, node, "tensor.transpose", [z], {"perm": back})
