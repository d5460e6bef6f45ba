"""Float-to-float rewrites that give every op the quantizer handles one simple form.

Run on a copy of the float graph before calibration, so that every value the integer graph
needs a scale for exists (and is calibrated) in the float graph:

- a conv/dense with a residual operand (fuse-residual's form) is split into the conv, a
  ``math.add`` of the skip and the activation: in integers the skip must be rescaled to the
  accumulator's scale, which is a ``q.add`` of two requantized tensors (see passes.quantize);
- a conv/dense ``act`` other than relu/relu6/clip (gelu, silu, sigmoid, ...) is split off into
  its own float op: the integer accumulator can carry only clamps;
- a relu/relu6/clip that is the only user of a conv/dense is fused into its ``act`` (what
  fuse-bias-act does), so that the integer form clamps in the requantize.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from compiler.ir.graph import Graph, Node, Value

COMPUTE_OPS = ("nn.conv1d", "nn.conv2d", "nn.dense")
#: Activations an integer conv/dense keeps fused (relu on the accumulator, the rest as clamps).
INTEGER_ACTS = ("none", "relu", "relu6", "clip")

#: Fused ``act`` -> the standalone float op computing it, and its attributes.
_ACT_OPS: dict[str, Callable[[list[float]], tuple[str, dict[str, Any]]]] = {
    "sigmoid": lambda a: ("nn.sigmoid", {}),
    "silu": lambda a: ("nn.silu", {}),
    "gelu": lambda a: ("nn.gelu", {}),
    "gelu_tanh": lambda a: ("nn.gelu", {"approximate": "tanh"}),
    "hardswish": lambda a: ("nn.hardswish", {}),
    "tanh": lambda a: ("math.tanh", {}),
    "leaky_relu": lambda a: ("nn.leaky_relu", {"alpha": a[0] if a else 0.01}),
    "relu": lambda a: ("nn.relu", {}),
    "relu6": lambda a: ("nn.relu6", {}),
    "clip": lambda a: ("nn.clip", {"min": a[0], "max": a[1]}),
}


def clamp_of(node: Node) -> tuple[str, list[float]] | None:
    """The (act, act_args) of a relu/relu6/clip node, as conv/dense would carry it fused."""
    if node.op == "nn.relu":
        return "relu", []
    if node.op == "nn.relu6":
        return "relu6", []
    if node.op == "nn.clip":
        lo = -math.inf if node.attrs.get("min") is None else float(node.attrs["min"])
        hi = math.inf if node.attrs.get("max") is None else float(node.attrs["max"])
        return ("relu", []) if (lo, hi) == (0.0, math.inf) else ("clip", [lo, hi])
    return None


def canonicalize(graph: Graph) -> None:
    """Apply the rewrites of the module docstring to ``graph`` in place."""
    for node in list(graph.nodes):
        if node.op in COMPUTE_OPS and len(node.inputs) > 3:
            _split_residual(graph, node)
    for node in list(graph.nodes):
        if node.op in COMPUTE_OPS and node.attrs.get("act", "none") not in INTEGER_ACTS:
            _split_activation(graph, node)
    for node in list(graph.nodes):
        if node.op in COMPUTE_OPS and not node.dead:
            _fuse_clamp(graph, node)


def _is_output(graph: Graph, value: Value) -> bool:
    return any(o is value for o in graph.outputs)


def _compute_copy(graph: Graph, node: Node, inputs: list[Value]) -> Value:
    """``node`` without activation and residual, inserted before it."""
    attrs = {k: v for k, v in node.attrs.items() if k not in ("act", "act_args")}
    return graph.add_node(
        node.op, inputs, attrs, names=[node.output.name + "_pre"], loc=node.loc, before=node
    ).output


def _become(graph: Graph, node: Node, op: str, inputs: list[Value], attrs: dict[str, Any]) -> None:
    """Turn ``node`` into ``op(inputs)`` in place, keeping its output value and name."""
    for index, old in enumerate(node.inputs):
        old.uses.remove((node, index))
    node.op, node.attrs, node.inputs = op, dict(attrs), list(inputs)
    for index, v in enumerate(node.inputs):
        v.uses.append((node, index))


def _split_residual(graph: Graph, node: Node) -> None:
    pre = _compute_copy(graph, node, node.inputs[:3])
    act = node.attrs.get("act", "none")
    if act == "none":
        _become(graph, node, "math.add", [pre, node.inputs[3]], {})
        return
    summed = graph.add_node(
        "math.add",
        [pre, node.inputs[3]],
        names=[node.output.name + "_sum"],
        loc=node.loc,
        before=node,
    ).output
    op, attrs = _ACT_OPS[act](list(node.attrs.get("act_args", [])))
    _become(graph, node, op, [summed], attrs)


def _split_activation(graph: Graph, node: Node) -> None:
    pre = _compute_copy(graph, node, list(node.inputs))
    op, attrs = _ACT_OPS[node.attrs["act"]](list(node.attrs.get("act_args", [])))
    _become(graph, node, op, [pre], attrs)


def _fuse_clamp(graph: Graph, node: Node) -> None:
    out = node.output
    users = out.users
    if node.attrs.get("act", "none") != "none" or len(users) != 1 or _is_output(graph, out):
        return
    clamp = clamp_of(users[0])
    if clamp is None:
        return
    node.attrs["act"] = clamp[0]
    if clamp[1]:
        node.attrs["act_args"] = clamp[1]
    graph.replace_all_uses(users[0].output, out)
    graph.remove(users[0])
