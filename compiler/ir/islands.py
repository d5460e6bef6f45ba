"""Float islands of a quantized graph: narrow float64 islands to float32.

``quantize{island_dtype=f64}`` runs the float ops between integer layers in float64 so that
a backend matches the interpreter bit for bit. Consumers without float64 kernels (ONNX's
QuantizeLinear and several onnxruntime kernels) take a float32 copy. This is an IR-level
transform (not a pass) because a backend calls it on the graph it is given, and backends do
not import passes.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph


def narrow_islands(graph: Graph) -> Graph:
    """A copy of quantized ``graph`` with its float64 islands in float32 (for consumers that
    have no float64 kernels, such as QuantizeLinear in an ONNX export); graph inputs keep
    their types, and casts between the two widths become float32 to float32."""
    g = graph.copy()
    inputs = {id(v) for v in g.inputs}
    for node in g.nodes:
        for v in node.outputs:
            if v.dtype == "f64" and id(v) not in inputs:
                v.type = v.type.with_dtype("f32", v.type.quant)
        if node.op == "const" and node.outputs[0].dtype == "f32":
            ref = node.attrs["ref"]
            if g.constants[ref].dtype == np.float64:
                g.constants[ref] = g.constants[ref].astype(np.float32)
        if node.attrs.get("dtype") == "f64" and node.op == "q.dequantize":
            node.attrs = {k: a for k, a in node.attrs.items() if k != "dtype"}
        if node.attrs.get("to") == "f64" and node.op == "tensor.cast":
            node.attrs = {**node.attrs, "to": "f32"}
    return g
