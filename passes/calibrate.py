"""calibrate: plan the integer layers, collect statistics, pick every scale (the first stage
of ``quantize``).

It reads the float graph as the passes before it left it (in a pipeline ending in an integer
quantize they made only forms an integer layer takes: ``fit_to_quantize``) and does not
change it: ``--print-after calibrate`` shows what ``quantize-rewrite`` reads. It plans which
values run in integers (``passes.quant.plan``), collects statistics with the context's
executor (``passes.quant.fast_stats``), picks the scales and measures each layer's
sensitivity; all of it goes into the run's ``QuantState`` (``passes.quant.state``). fp32
ends any quantize state; fp16 and int4w need no statistics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from compiler.ir.graph import Graph
from compiler.quant_config import QuantConfig
from passes.quant.analysis import capture, captured_names, layer_sqnr
from passes.quant.batching import BatchedRunner, normalize_samples
from passes.quant.driver import options_for, report_limit
from passes.quant.fast_stats import collect_stats_fast
from passes.quant.plan import assign_scales, build_plan, needs_scale
from passes.quant.reporting import weight_bytes
from passes.quant.state import QuantState, begin

if TYPE_CHECKING:
    from compiler.context import PassContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibrate:
    """Plan, collect statistics, pick scales (the graph stays as it is; see the module
    docstring). ``calibrate{...}`` takes the quantize options (``QuantConfig`` fields)."""

    name: ClassVar[str] = "calibrate"
    config: QuantConfig | None = None

    @classmethod
    def from_options(cls, **options: Any) -> Calibrate:
        return cls(QuantConfig.from_options(**options) if options else None)

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        config = self.config or ctx.quant or QuantConfig()
        if config.precision == "fp32":
            begin(ctx, None)
            return False
        st = QuantState(config, graph.copy(), weight_bytes(graph))
        begin(ctx, st)
        if config.integer:
            _calibrate_integer(graph, ctx, st)
        return False


def _calibrate_integer(graph: Graph, ctx: PassContext, st: QuantState) -> None:
    st.options = options_for(st.config, ctx.target)
    start = time.perf_counter()
    st.samples = normalize_samples(st.float_graph, ctx.calibration_data)
    st.runner = BatchedRunner(st.float_graph, st.samples)
    st.plan = build_plan(st.float_graph, st.options)
    if not st.plan.layers:
        log.warning("quantize: graph @%s has no layer to quantize; left float", graph.name)
    st.stats = collect_stats_fast(
        st.runner, needs_scale(st.plan), st.config.stats_engine, ctx.executor
    )
    assign_scales(st.plan, st.stats)
    st.seconds = time.perf_counter() - start
    st.limit = report_limit(st.config.report_samples, st.float_graph)
    st.cap = capture(st.runner, captured_names(st.plan), st.limit)
    st.sensitivity = layer_sqnr(st.plan, st.cap)
