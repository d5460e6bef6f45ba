"""Per-layer precision: what TensorRT ran each IR node in, or would run it in.

Built engines: ``engine_layers`` reads the engine inspector's JSON (``layers.json``) and maps
each TensorRT layer back to IR nodes through the ONNX node names, which follow the IR
(``c1``, ``c1/relu``: the IR value name is the part before ``/``). Bundles (no engine):
``predicted_precision`` says what TensorRT will do with each node: in an int8 build the
float islands (softmax, layer_norm, gelu, attention, ...) run in fp16 (or fp32 without fp16),
and index arithmetic runs in int32/int64/bool. Layers that run in another precision than the
one asked are listed in the report.
"""

from __future__ import annotations

import re
from typing import Any

from backends.tensorrt.plan import BuildPlan, integer_compute
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float
from compiler.report import layer_rows

_TOKEN = re.compile(r"[A-Za-z0-9_.]+(?:/[A-Za-z0-9_.]+)*")
#: Substrings of TensorRT's "Format/Datatype" text -> precision, most specific first.
_DTYPES = (
    ("INT8", "int8"),
    ("FP8", "fp8"),
    ("BF16", "bf16"),
    ("FP16", "fp16"),
    ("HALF", "fp16"),
    ("FP32", "fp32"),
    ("FLOAT", "fp32"),
    ("INT64", "int64"),
    ("INT32", "int32"),
    ("BOOL", "bool"),
)


def predicted_precision(node: Node, plan: BuildPlan) -> tuple[str, str]:
    """(precision, why) TensorRT will most likely run ``node`` in, without building."""
    out = node.outputs[0].type
    if not is_float(out.dtype) and out.quant is None and not integer_compute(node):
        return {"bool": "bool", "i64": "int64"}.get(out.dtype, "int32"), "index arithmetic"
    if plan.precision == "int8":
        if integer_compute(node) or node.op == "q.quantize":
            return "int8", ""
        if node.op == "q.dequantize":
            return "int8", "dequantize fuses into its consumer"
        island = "fp16" if "fp16" in plan.precisions else "fp32"
        return island, "float island between dequantize and quantize"
    if plan.precision == "fp16":
        return "fp16", ""
    return ("tf32" if plan.tf32 and node.op in _MATH_HEAVY else "fp32"), ""


_MATH_HEAVY = {
    "nn.conv1d",
    "nn.conv2d",
    "nn.conv_transpose2d",
    "nn.dense",
    "nn.matmul",
    "nn.attention",
}


def _dtype_of(tensor: dict[str, Any]) -> str | None:
    text = " ".join(str(tensor.get(k, "")) for k in ("Format/Datatype", "DataType", "Format"))
    upper = text.upper()
    for needle, name in _DTYPES:
        if needle in upper:
            return name
    return None


def layer_precision(layer: dict[str, Any]) -> str:
    """The precision a TensorRT layer computes in: int8 if it reads int8, else its output."""
    ins = [d for d in (_dtype_of(t) for t in layer.get("Inputs", [])) if d]
    outs = [d for d in (_dtype_of(t) for t in layer.get("Outputs", [])) if d]
    if "int8" in ins:
        return "int8"
    return (outs or ins or ["?"])[0]


def engine_layers(info: dict[str, Any], graph: Graph) -> dict[str, tuple[str, str]]:
    """IR value name -> (precision, TensorRT layer name) from the inspector's JSON."""
    names = {v.name for v in graph.values()}
    found: dict[str, tuple[str, str]] = {}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):  # ProfilingVerbosity below DETAILED: names only
            continue
        text = f"{layer.get('Name', '')} {layer.get('Metadata', '')}"
        precision = layer_precision(layer)
        for token in _TOKEN.findall(text):
            ir = token.split("/")[0]
            if ir in names and ir not in found:
                found[ir] = (precision, str(layer.get("Name", "")))
    return found


def layer_report(
    graph: Graph, plan: BuildPlan, info: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(report rows, precision mismatches): rows carry ``asked``, ``trt`` and ``sparse``."""
    built = engine_layers(info, graph) if info is not None else None
    nodes = {n.outputs[0].name: n for n in graph.compute_nodes() if n.outputs}
    sparse = set(plan.sparse_layers)
    rows = layer_rows(graph)
    mismatches = []
    for row in rows:
        node = nodes[row["name"]]
        asked = plan.precision
        if built is not None:
            precision, where = built.get(row["name"], ("fused", ""))
            note = where
        else:
            precision, note = predicted_precision(node, plan)
        row["asked"] = asked
        row["trt"] = precision
        row["sparse"] = "2:4" if row["name"] in sparse and plan.sparse_weights else ""
        if note:
            row["note"] = note
        moves_data = row["op"].startswith("tensor.")  # runs in whatever its neighbours do
        if precision not in (asked, "fused") and not _is_index(precision) and not moves_data:
            mismatches.append(
                f"%{row['name']} ({row['op']}): {precision}, asked {asked}"
                + (f" ({note})" if note and built is None else "")
            )
    return rows, mismatches


def _is_index(precision: str) -> bool:
    return precision in ("int32", "int64", "bool")
