"""Per-layer report rows (op, shapes, precision, MACs, params) and their text table.

Backends extend each row with their own columns (reuse factor, DSP, latency, ...); the text
table shows every column any row has, in first-seen order.
"""

from __future__ import annotations

import math
from typing import Any

from compiler.ir.graph import Graph, Node

#: Pure data movement: reported only when a backend gives them a cost.
_LAYOUT_OPS = {
    "tensor.reshape",
    "tensor.flatten",
    "tensor.identity",
    "tensor.squeeze",
    "tensor.unsqueeze",
    "nn.dropout",
}


def _numel(shape: tuple) -> int:
    return math.prod(d if isinstance(d, int) else 1 for d in shape)


def node_macs(node: Node) -> int:
    """Multiply-accumulates of one node (0 for ops that do no MACs)."""
    out: tuple = node.outputs[0].type.shape if node.outputs else ()
    if node.op in ("nn.conv1d", "nn.conv2d"):
        w = node.inputs[1].type.shape
        return _numel(out) * _numel(w[1:])
    if node.op == "nn.conv_transpose2d":
        w = node.inputs[1].type.shape
        return _numel(node.inputs[0].type.shape) * _numel(w[1:])
    if node.op == "nn.dense":
        return _numel(out) * _numel(node.inputs[1].type.shape[1:])
    if node.op == "nn.matmul":
        k = node.inputs[0].type.shape[-1]
        return _numel(out) * (k if isinstance(k, int) else 1)
    if node.op == "nn.attention":
        q_shape, k_shape = node.inputs[0].type.shape, node.inputs[1].type.shape
        src = k_shape[-2]
        return _numel(q_shape) * (src if isinstance(src, int) else 1) * 2
    return 0


def precision_of(node: Node) -> str:
    """``i8 x i8 -> i32`` style: operand dtypes (data, weight) and output dtype."""
    ins = [v.dtype for v in node.inputs[:2]]
    return " x ".join(ins) + " -> " + ",".join(v.dtype for v in node.outputs)


def layer_rows(graph: Graph) -> list[dict[str, Any]]:
    rows = []
    for node in graph.compute_nodes():
        if node.op in _LAYOUT_OPS:
            continue
        params = sum(_numel(v.type.shape) for v in node.inputs if v.is_const)
        rows.append(
            {
                "name": node.outputs[0].name,
                "op": node.op,
                "loc": node.loc or "",
                "shape": "x".join(str(d) for d in node.outputs[0].type.shape),
                "precision": precision_of(node),
                "macs": node_macs(node),
                "params": params,
            }
        )
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no layers)"
    if columns is None:
        columns = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def format_report(data: dict[str, Any]) -> str:
    head = (
        f"tapeout report: graph @{data['graph']} for target {data['target']} "
        f"(backend {data['backend']})"
    )
    parts = [head, "=" * len(head)]
    if data.get("artifact"):
        parts.append(f"artifact: {data['artifact']}")
    if data.get("passes"):
        parts.append("passes: " + ", ".join(p["name"] for p in data["passes"]))
    parts += ["", format_table(data.get("layers") or [])]
    timings = data.get("timings") or {}
    if timings:
        parts += ["", "time: " + ", ".join(f"{k.removesuffix('_s')} {v:.3f} s"
                                          for k, v in timings.items())]
    summary = data.get("summary") or {}
    if summary:
        parts += ["", "summary:"]
        parts += [f"  {k}: {_fmt(v)}" for k, v in summary.items()]
    return "\n".join(parts) + "\n"
