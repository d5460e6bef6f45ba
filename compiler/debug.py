"""Find the layer where a compiled (fused, quantized) graph diverges from the float model.

Both graphs are run through the reference interpreter on the same inputs. Layers are
matched by source location (the torch module path or ONNX node name every pass keeps on the
nodes it creates); integer tensors are dequantized with their type's scale and zero point.
For each matched layer the report gives the SQNR against float and how much SQNR the layer
itself lost (its SQNR minus the worst SQNR of the layers feeding it), so the layer that
*makes* the model diverge stands out, not every layer after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler import numerics
from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import is_int
from compiler.report import format_table


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when equal)."""
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(approx, dtype=np.float64)
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref * ref))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10 * math.log10(signal / noise)


def ideal_sqnr_db(node: Node) -> float:
    """6.02 b + 1.76 dB: the SQNR of a full-scale sine through a perfect b-bit quantizer (inf
    for a float output)."""
    dtype = node.outputs[0].dtype
    if not is_int(dtype):
        return math.inf
    return 6.02 * int("".join(c for c in dtype if c.isdigit())) + 1.76


def as_real(value: Value, data: np.ndarray) -> np.ndarray:
    qp = value.type.quant
    if is_int(value.dtype) and qp is not None:
        return numerics.dequantize(data, qp.scale_array(), qp.zero_point_array(), qp.axis)
    return np.asarray(data, dtype=np.float32)


def _last_by_loc(
    graph: Graph, inputs: list[np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, Node], float]:
    """Per source location the last value computed there (as real numbers), its node, and
    the SQNR of the quantized graph inputs (the noise every first layer starts from)."""
    seen: dict[str, np.ndarray] = {}
    nodes: dict[str, Node] = {}
    given = {id(v): np.asarray(x) for v, x in zip(graph.inputs, inputs, strict=False)}
    input_sqnr = [math.inf]

    def observe(node: Node, outs: list[np.ndarray]) -> None:
        if node.op == "q.quantize" and id(node.inputs[0]) in given:
            real = as_real(node.outputs[0], outs[0])
            input_sqnr.append(sqnr_db(given[id(node.inputs[0])], real))
        if node.loc and node.op != "const" and len(outs) == 1:
            seen[node.loc] = as_real(node.outputs[0], outs[0])
            nodes[node.loc] = node

    interpret(graph, *inputs, observe=observe)
    return seen, nodes, min(input_sqnr)


@dataclass
class DivergenceReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    threshold_db: float = 20.0

    @property
    def first_below(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["sqnr_db"] < self.threshold_db), None)

    @property
    def worst_loss(self) -> dict[str, Any] | None:
        finite = [r for r in self.rows if math.isfinite(r["loss_db"])]
        return max(finite, key=lambda r: r["loss_db"], default=None)

    def format(self) -> str:
        lines = [
            format_table(
                [
                    {**r, "sqnr_db": f"{r['sqnr_db']:.1f}", "loss_db": f"{r['loss_db']:.1f}"}
                    for r in self.rows
                ]
            )
        ]
        first, worst = self.first_below, self.worst_loss
        lines.append("")
        lines.append(
            f"first layer below {self.threshold_db} dB: "
            + (f"{first['loc']} ({first['sqnr_db']:.1f} dB)" if first else "none")
        )
        if worst:
            lines.append(
                f"layer that loses the most: {worst['loc']} ({worst['loss_db']:.1f} dB lost there)"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold_db": self.threshold_db,
            "layers": self.rows,
            "first_below": self.first_below,
            "worst_loss": self.worst_loss,
        }


def find_divergence(
    reference: Graph, compiled: Graph, inputs: list[np.ndarray], threshold_db: float = 20.0
) -> DivergenceReport:
    """Per-layer SQNR of ``compiled`` against ``reference`` on ``inputs``."""
    ref_vals, _, _ = _last_by_loc(reference, inputs)
    got_vals, got_nodes, input_sqnr = _last_by_loc(compiled, inputs)
    report = DivergenceReport(threshold_db=threshold_db)
    sqnr_of: dict[str, float] = {}
    for loc, node in got_nodes.items():
        if loc not in ref_vals or ref_vals[loc].shape != got_vals[loc].shape:
            continue
        s = sqnr_db(ref_vals[loc], got_vals[loc])
        sqnr_of[loc] = s
        feeding = [
            sqnr_of[p.producer.loc]
            for p in _feeding_values(node, loc)
            if p.producer is not None and p.producer.loc in sqnr_of and p.producer.loc != loc
        ]
        # A first layer starts from the quantized inputs' noise (inf for float inputs). No
        # layer can beat the ideal SQNR of its own bit width, so an exact upstream counts as
        # that: the loss is then what the layer lost against a perfect b-bit quantizer.
        upstream = min(min(feeding) if feeding else input_sqnr, ideal_sqnr_db(node))
        loss = (upstream - s) if math.isfinite(upstream) else (0.0 if math.isinf(s) else -s)
        report.rows.append(
            {
                "loc": loc,
                "op": node.op,
                "dtype": node.outputs[0].dtype,
                "sqnr_db": s,
                "loss_db": loss,
            }
        )
    return report


def _feeding_values(node: Node, loc: str | None = None) -> list[Value]:
    """Operands of the node, looking through quantize/dequantize/requantize glue and through
    the other nodes of the same layer (a conv and its requantize share a location)."""
    out: list[Value] = []
    stack = list(node.inputs)
    while stack:
        v = stack.pop()
        p = v.producer
        if p is None or p.op == "const":
            continue
        if (p.op.startswith("q.") and p.loc is None) or (loc is not None and p.loc == loc):
            stack.extend(p.inputs)
        else:
            out.append(v)
    return out
