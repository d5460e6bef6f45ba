"""Per-layer report rows (op, shapes, precision, MACs, params) and their text table.

Backends extend each row with their own columns (reuse factor, DSP, latency, ...); the text
table shows every column any row has, in first-seen order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from compiler.ir.graph import Graph, Node
from compiler.ir.op_facts import is_view, node_macs


def _numel(shape: tuple) -> int:
    return math.prod(d if isinstance(d, int) else 1 for d in shape)


def precision_of(node: Node) -> str:
    """``i8 x i8 -> i32`` style: operand dtypes (data, weight) and output dtype. A
    block-quantized dense shows what its dot products multiply: ``a8/32 x u4/32 -> f32`` is
    int8 activation codes per block of 32 times 4-bit weights in blocks of 32."""
    ins = [v.dtype for v in node.inputs[:2]]
    if node.op == "q.block_dense":
        group = node.attrs["group"]
        ins = [f"a{node.attrs.get('act_bits', 8)}/{group}", f"{ins[1]}/{group}"]
    return " x ".join(ins) + " -> " + ",".join(v.dtype for v in node.outputs)


def _bytes(value: Any) -> int:
    bits = 4 if value.dtype in ("i4", "u4") else 8 * value.type.np_dtype.itemsize
    return (_numel(value.type.shape) * bits + 7) // 8


def layer_rows(graph: Graph, peak_gflops: float | None = None) -> list[dict[str, Any]]:
    """One row per compute node: op, shapes, precision and its cost (MACs, parameters, weight
    and output bytes; with ``peak_gflops``, the compute-bound time at that peak in us)."""
    rows = []
    for node in graph.compute_nodes():
        if is_view(node.op):  # pure data movement: reported only when a backend costs it
            continue
        params = sum(_numel(v.type.shape) for v in node.inputs if v.is_const)
        macs = node_macs(node)
        row: dict[str, Any] = {
            "name": node.outputs[0].name,
            "op": node.op,
            "loc": node.loc or "",
            "shape": "x".join(str(d) for d in node.outputs[0].type.shape),
            "precision": precision_of(node),
            "macs": macs,
            "params": params,
            "weight_bytes": sum(_bytes(v) for v in node.inputs if v.is_const),
            "out_bytes": sum(_bytes(v) for v in node.outputs),
        }
        if peak_gflops:
            row["roofline_us"] = float(f"{2 * macs / (peak_gflops * 1e3):.3g}")
        rows.append(row)
    return rows


#: Column -> header with its unit, for the text report (the JSON keeps the plain keys).
HEADERS: dict[str, str] = {
    "shape": "shape [elements]",
    "macs": "MACs",
    "params": "params [count]",
    "weight_bytes": "weights [B]",
    "out_bytes": "output [B]",
    "roofline_us": "roofline [us]",
    "zero_weights": "zero weights [count]",
    "rf": "reuse [x]",
    "dsp": "DSP [slices]",
    "bram18k": "BRAM18K [blocks]",
    "lut": "LUT [count]",
    "ff": "FF [count]",
    "ii": "II [cycles]",
    "latency": "latency [cycles]",
    "sqnr_db": "SQNR [dB]",
}

#: Backend -> what its figures are, said on the report's first line.
ESTIMATE_NOTES: dict[str, str] = {
    "hls": "ESTIMATES: resources and latency below come from tapeout's analytical model "
    "(backends/hls/resources.py), not from Vitis HLS synthesis (run `make csynth` in the "
    "artifact for those)",
    "tvm": "ESTIMATES: roofline [us] is a compute-bound lower bound from the target's peak "
    "GFLOP/s, not a measurement",
    "asic": "ESTIMATES: cycle counts come from the systolic-array model, not from silicon",
}


def attach_sqnr(rows: list[dict[str, Any]], quant_reports: Sequence[Any]) -> None:
    """Put each quantized layer's SQNR (its output against float with only that layer
    quantized) on the first report row of that layer (matched by source location or name)."""
    sqnr = {
        layer.name: layer.sqnr_db
        for report in quant_reports
        for layer in report.layers
        if layer.sqnr_db is not None
    }
    done: set[str] = set()
    for row in rows:
        key = next((k for k in (row.get("loc"), row.get("name")) if k in sqnr), None)
        if key is not None and key not in done:
            row["sqnr_db"] = round(float(sqnr[key]), 2)
            done.add(key)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def format_table(
    rows: list[dict[str, Any]],
    columns: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    if not rows:
        return "(no layers)"
    if columns is None:
        columns = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    titles = [(headers or {}).get(c, c) for c in columns]
    widths = [max(len(t), *(len(row[i]) for row in cells)) for i, t in enumerate(titles)]
    line = "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def format_report(data: dict[str, Any]) -> str:
    head = (
        f"tapeout report: graph @{data['graph']} for target {data['target']} "
        f"(backend {data['backend']})"
    )
    note = ESTIMATE_NOTES.get(str(data.get("backend")))
    parts = ([note] if note else []) + [head, "=" * len(head)]
    if data.get("artifact"):
        parts.append(f"artifact: {data['artifact']}")
    if data.get("passes"):
        parts.append("passes: " + ", ".join(p["name"] for p in data["passes"]))
    parts += ["", format_table(data.get("layers") or [], headers=HEADERS)]
    timings = data.get("timings") or {}
    if timings:
        parts += ["", "time: " + ", ".join(f"{k.removesuffix('_s')} {v:.3f} s"
                                          for k, v in timings.items())]
    summary = data.get("summary") or {}
    if summary:
        parts += ["", "summary:"]
        parts += [f"  {k}: {_fmt(v)}" for k, v in summary.items() if not isinstance(v, dict)]
        parts += [f"  {k}: {json.dumps(v, default=str)}" for k, v in summary.items()
                  if isinstance(v, dict)]  # fmt: skip
    return "\n".join(parts) + "\n"
