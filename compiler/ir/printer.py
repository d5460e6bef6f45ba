"""The IR as text: one node per line, bit widths on every type, weights by name and shape.

::

    graph @digits_cnn(%x: f32[1,1,8,8]) -> (f32[1,10]) {
      %w1: i8[16,1,3,3]{scale=2^-7} = const @conv1.weight
      %c1: i32[1,16,8,8] = nn.conv2d(%xq, %w1, %b1) {pads=[1,1,1,1], acc="i32"} loc("conv1")
      return %out
    }

``compiler.ir.parser.parse`` reads it back: ``parse(print_graph(g), g.constants) == g``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from compiler.ir.graph import Graph, Node


def format_attr(value: Any) -> str:
    """An attribute value as text; floats round-trip exactly."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} has no text form")


def format_node(node: Node) -> str:
    outs = ", ".join(f"%{v.name}: {v.type}" for v in node.outputs)
    if node.op == "const":
        body = f"const @{node.attrs['ref']}"
    else:
        args = ", ".join(f"%{v.name}" for v in node.inputs)
        body = f"{node.op}({args})"
        if node.attrs:
            body += (
                " {"
                + ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(node.attrs.items()))
                + "}"
            )
    if node.loc:
        body += f" loc({json.dumps(node.loc)})"
    if node.fused:
        body += f" fused({', '.join(json.dumps(loc) for loc in node.fused)})"
    return f"{outs} = {body}"


def print_graph(graph: Graph, show_consts: bool = True) -> str:
    """The whole graph as text (``show_consts=False`` hides the const lines)."""
    ins = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    outs = ", ".join(str(v.type) for v in graph.outputs)
    lines = [f"graph @{graph.name}({ins}) -> ({outs}) {{"]
    for node in graph.nodes:
        if show_consts or node.op != "const":
            lines.append("  " + format_node(node))
    lines.append(" ".join(["  return", *(f"%{v.name}," for v in graph.outputs)]).rstrip(","))
    lines.append("}")
    return "\n".join(lines) + "\n"
