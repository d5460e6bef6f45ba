"""quant-report: measure the quantized graph against float and publish the ``QuantReport``
into ``ctx.quant_reports`` (the last stage of ``quantize``; it ends the run's quantize
state)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph
from compiler.ir.verifier import verify
from compiler.quant_report import QuantReport
from passes.quant.analysis import evaluate
from passes.quant.reporting import layer_reports, weight_bytes
from passes.quant.state import end

if TYPE_CHECKING:
    from compiler.context import PassContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantReportPass:
    """Measure the quantized graph against float; the report goes to ``ctx.quant_reports``."""

    name: ClassVar[str] = "quant-report"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        report = quant_report(graph, ctx)
        ctx.quant_reports.append(report)
        log.info("%s", report.format())
        return False


def quant_report(graph: Graph, ctx: PassContext) -> QuantReport:
    """The report of the quantized ``graph`` (and the end of the run's quantize state)."""
    st = end(ctx)
    if st is None:
        return QuantReport("fp32", notes=["fp32: the graph is left float"])
    if st.report is not None:
        return st.report
    assert st.plan is not None and st.options is not None and st.runner is not None
    assert st.cap is not None
    evaluation = evaluate(st.runner, graph, st.cap, st.limit)
    verify(graph)
    result = QuantReport(
        st.config.precision,
        calibrator=st.config.calibrator,
        per_channel=st.config.per_channel,
        power_of_two=st.options.power_of_two,
        symmetric=st.options.symmetric,
        samples=len(st.samples),
        output_sqnr_db=evaluation.sqnr_db,
        output_cosine=evaluation.cosine,
        clip_threshold=st.config.clip_threshold,
        calibration_seconds=st.seconds,
        budget=st.config.budget_text(),
        budget_met=st.budget_met,
    )
    result.layers = layer_reports(
        st.float_graph, st.plan, st.sensitivity, evaluation, st.kept, st.config
    )
    result.weight_bytes_float = st.weight_bytes_float
    result.weight_bytes_quantized = weight_bytes(graph)
    return result
