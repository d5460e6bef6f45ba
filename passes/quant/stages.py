"""The stages of quantization, each a pipeline pass that ``--print-after`` can show.

``quantize{...}`` runs them in order (the pass manager records and prints each one):

- ``calibrate``: plan which values run in integers (on the graph as the passes before it
  left it: they made only forms an integer layer takes, ``fit_to_quantize``), collect
  statistics with the context's executor, pick every scale. The graph is unchanged.
- ``quantize-rewrite``: replace the graph by its integer form (``quantized_graph``), or the
  weight-only form (fp16, int4w: no calibration data needed).
- ``bias-correct``: with ``bias_correction``, remove each layer's mean output error.
- ``mixed-precision``: with ``precision="mixed"``, widen the most sensitive layers until
  the budget is met.
- ``quant-report``: measure the quantized graph against float and publish the
  ``QuantReport`` into ``ctx.quant_reports``.

What one stage hands the next (the float graph, the samples, the plan, the statistics)
lives in ``ctx.quant_state`` for the run, never in module state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from compiler.ir.verifier import verify
from compiler.quant_config import QuantConfig
from compiler.quant_report import QuantReport
from passes.calibrate import TensorStats
from passes.quant.analysis import Capture, capture, captured_names, evaluate, layer_sqnr
from passes.quant.batching import BatchedRunner, normalize_samples
from passes.quant.driver import carry_provenance, options_for, replace_contents, report_limit
from passes.quant.fast_stats import collect_stats_fast
from passes.quant.plan import Plan, QuantOptions, assign_scales, build_plan, needs_scale
from passes.quant.reporting import layer_reports, weight_bytes
from passes.quant.rewrite import quantized_graph

if TYPE_CHECKING:
    from compiler.context import PassContext

log = logging.getLogger(__name__)

STATE_KEY = "quantize"


@dataclass
class QuantState:
    """What ``calibrate`` found and the later stages use and add to."""

    config: QuantConfig
    float_graph: Graph  # the float graph, the reference of every measurement
    weight_bytes_float: int
    options: QuantOptions | None = None  # None: fp16 / int4w (weight-only, no plan)
    samples: list[Any] = field(default_factory=list)
    runner: BatchedRunner | None = None
    plan: Plan | None = None
    stats: dict[str, TensorStats] = field(default_factory=dict)
    seconds: float = 0.0
    limit: int = 0
    cap: Capture | None = None
    sensitivity: dict[str, float] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    budget_met: bool | None = None
    report: QuantReport | None = None  # weight-only: built by the rewrite


def state(ctx: PassContext, stage: str) -> QuantState:
    """The state ``calibrate`` left in ``ctx``; a typed error when it did not run."""
    found = ctx.quant_state.get(STATE_KEY)
    if found is None:
        raise TapeoutError(f"pass {stage} needs the calibrate pass before it in the pipeline")
    return found


def calibrate(graph: Graph, ctx: PassContext, config: QuantConfig) -> bool:
    if config.precision == "fp32":
        ctx.quant_state.pop(STATE_KEY, None)
        return False
    st = QuantState(config, graph.copy(), weight_bytes(graph))
    ctx.quant_state[STATE_KEY] = st
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


def rewrite(graph: Graph, ctx: PassContext) -> bool:
    st = ctx.quant_state.get(STATE_KEY)
    if st is None:  # fp32 (calibrate left nothing): the graph stays float
        return False
    if st.plan is None:
        from passes.quant.weight_only import weight_only

        work = st.float_graph.copy()
        st.report = weight_only(work, st.float_graph, ctx.calibration_data, st.config)
        verify(work)
        replace_contents(graph, work)
        return True
    quantized = quantized_graph(st.float_graph, st.plan)
    carry_provenance(st.float_graph, quantized)
    replace_contents(graph, quantized)
    return True


def correct_bias(graph: Graph, ctx: PassContext) -> bool:
    st = ctx.quant_state.get(STATE_KEY)
    if st is None or st.plan is None or not st.config.bias_correction:
        return False
    from passes.quant.bias_correction import correct_biases

    assert st.runner is not None and st.cap is not None
    correct_biases(graph, st.float_graph, st.plan, st.runner, st.cap, st.limit)
    return True


def choose_precisions(graph: Graph, ctx: PassContext) -> bool:
    st = ctx.quant_state.get(STATE_KEY)
    if st is None or st.plan is None or st.config.precision != "mixed":
        return False
    from passes.quant.mixed import choose_mixed

    assert st.runner is not None and st.cap is not None
    qgraph, st.plan, st.kept, st.budget_met = choose_mixed(
        st.float_graph, st.plan, st.stats, st.runner, st.cap, st.sensitivity, st.config, st.limit
    )
    carry_provenance(st.float_graph, qgraph)
    replace_contents(graph, qgraph)
    return bool(st.kept)


def report(graph: Graph, ctx: PassContext) -> QuantReport:
    """The report of the quantized ``graph`` (and the end of the run's quantize state)."""
    st = ctx.quant_state.pop(STATE_KEY, None)
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
