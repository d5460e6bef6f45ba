"""Turn a plan and its measurements into the rows of a ``QuantReport``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float, is_int
from compiler.quant_report import LayerReport
from passes.quant.analysis import Evaluation
from passes.quant.plan import ANCHOR_OPS, Layer, Plan
from passes.quant.weights import storage_bytes

if TYPE_CHECKING:
    from compiler.quant_config import QuantConfig

log = logging.getLogger(__name__)


def weight_scheme(plan: Plan, layer: Layer) -> str:
    if layer.kind != "anchor":
        return "-"
    dtype = "i16" if layer.precision == "int16" else plan.options.weight_dtype
    scheme = f"{dtype} {'per-channel' if layer.per_channel else 'per-tensor'}"
    return scheme + (" pow2" if plan.options.power_of_two else "")


def _runtime_clip(evaluation: Evaluation, names: list[str]) -> float | None:
    shares = [
        evaluation.saturation[n + "_q"].fraction for n in names if n + "_q" in evaluation.saturation
    ]
    return max(shares) if shares else None


def layer_reports(
    graph: Graph,
    plan: Plan,
    sensitivity: dict[str, float],
    evaluation: Evaluation,
    kept: dict[str, str],
    config: QuantConfig,
) -> list[LayerReport]:
    """One row per integer layer (not data movement), and per anchor op left float."""
    rows = []
    for node in graph.nodes:
        layer = plan.layer_of_node(node)
        key = node.outputs[0].name if node.outputs else ""
        if layer is None:
            if key in kept or (node.op in ANCHOR_OPS and _float_anchor(graph, node)):
                rows.append(
                    LayerReport(node.loc or key, node.op, "float", kept_wider=kept.get(key))
                )
            continue
        if layer.kind == "move":
            continue
        rows.append(_layer_row(plan, layer, sensitivity, evaluation, kept, config))
    return rows


def _float_anchor(graph: Graph, node: Node) -> bool:
    return (
        bool(node.inputs)
        and is_float(node.inputs[0].dtype)
        and len(node.inputs) > 1
        and (graph.const_value(node.inputs[1]) is not None)
    )


def _layer_row(
    plan: Plan,
    layer: Layer,
    sensitivity: dict[str, float],
    evaluation: Evaluation,
    kept: dict[str, str],
    config: QuantConfig,
) -> LayerReport:
    names = [*layer.inputs, layer.out]
    in_q = plan.quant.get(layer.inputs[0]) if layer.inputs else None
    out_q = plan.quant.get(layer.out)
    clip_cal = max((plan.calib_clip.get(n, 0.0) for n in names), default=0.0)
    clip_run = _runtime_clip(evaluation, names)
    flagged = max(clip_cal, clip_run or 0.0) > config.clip_threshold
    if flagged:
        log.warning(
            "quantize: layer %s (%s) clips %.2g%% of values at calibration, %s at run time "
            "(threshold %.2g%%): consider another calibrator, an override or excluding it",
            layer.name,
            layer.op,
            100 * clip_cal,
            "-" if clip_run is None else f"{100 * clip_run:.2g}%",
            100 * config.clip_threshold,
        )
    return LayerReport(
        name=layer.name,
        op=layer.op,
        precision=layer.precision,
        weight_scheme=weight_scheme(plan, layer),
        input_scale=in_q.scale[0] if in_q is not None else None,
        output_scale=out_q.scale[0] if out_q is not None else None,
        activation_dtype=plan.dtype.get(layer.inputs[0]) if layer.inputs else None,
        sqnr_db=sensitivity.get(layer.key),
        clip_calibration=clip_cal,
        clip_runtime=clip_run,
        flagged=flagged,
        kept_wider=kept.get(layer.key),
    )


def weight_bytes(graph: Graph) -> int:
    """Bytes of the float and integer constants (weights), integers packed, plus scales."""
    total = 0
    for node in graph.nodes:
        if node.op != "const":
            continue
        t = node.outputs[0].type
        if not (is_float(t.dtype) or is_int(t.dtype)) or t.dtype == "i64":
            continue  # index buffers and masks are not weights
        numel = data.size if (data := graph.const_value(node.outputs[0])) is not None else 0
        scales = len(t.quant.scale) if t.quant is not None else 0
        total += storage_bytes(t.dtype, numel, scales)
    return total
