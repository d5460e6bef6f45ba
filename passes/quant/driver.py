"""The steps of ``quantize_graph``: canonicalize, calibrate, plan, rewrite, measure, report."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from compiler.context import Executor, interpreter_executor
from compiler.errors import CalibrationError
from compiler.ir.graph import Graph
from compiler.ir.verifier import verify
from compiler.quant_config import QuantConfig
from compiler.quant_report import QuantReport
from passes.quant.analysis import capture, captured_names, evaluate, layer_sqnr
from passes.quant.batching import BatchedRunner, macs_per_sample, normalize_samples
from passes.quant.canonical import canonicalize
from passes.quant.fast_stats import collect_stats_fast
from passes.quant.plan import QuantOptions, assign_scales, build_plan, needs_scale
from passes.quant.reporting import layer_reports, weight_bytes
from passes.quant.rewrite import quantized_graph

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)


def options_for(config: QuantConfig, target: Target | None) -> QuantOptions:
    if not 0 < config.percentile <= 100:
        raise CalibrationError(f"percentile {config.percentile} is not in (0, 100]")
    island = config.island_dtype
    if island is None:
        island = target.numerics.island_dtype if target is not None else "f32"
    dtype = "i16" if config.precision == "int16" else config.activation_dtype
    if not config.symmetric and dtype == "i8":
        dtype = "u8"  # asymmetric 8-bit activations are u8 with a zero point
    power_of_two = config.power_of_two
    if power_of_two is None:
        power_of_two = bool(target is not None and target.numerics.power_of_two_scales)
    return QuantOptions(
        activation_dtype=dtype,
        symmetric=config.symmetric and dtype != "u8",
        per_channel=config.per_channel,
        power_of_two=power_of_two,
        calibrator=config.calibrator,
        percentile=config.percentile,
        exclude=config.exclude,
        overrides={k: dict(v) for k, v in config.overrides.items()},
        integer_outputs=power_of_two,
        island_dtype=island,
    )


def replace_contents(graph: Graph, new: Graph) -> None:
    """Make ``graph`` hold ``new``'s inputs, nodes, outputs and constants (in place)."""
    graph.inputs, graph.outputs, graph.nodes = new.inputs, new.outputs, new.nodes
    graph.constants, graph._names = new.constants, new._names


def run_config(
    graph: Graph,
    target: Target | None,
    data: Any,
    config: QuantConfig,
    executor: Executor = interpreter_executor,
) -> QuantReport:
    if config.precision == "fp32":
        return QuantReport("fp32", notes=["fp32: the graph is left float"])
    work = graph.copy()
    canonicalize(work)
    if config.precision in ("fp16", "int4w"):
        from passes.quant.weight_only import weight_only

        report = weight_only(work, graph, data, config)
        verify(work)
        replace_contents(graph, work)
        return report
    options = options_for(config, target)
    start = time.perf_counter()
    samples = normalize_samples(work, data)
    runner = BatchedRunner(work, samples)
    plan = build_plan(work, options)
    if not plan.layers:
        log.warning("quantize: graph @%s has no layer to quantize; left float", graph.name)
    stats = collect_stats_fast(runner, needs_scale(plan), config.stats_engine, executor)
    assign_scales(plan, stats)
    seconds = time.perf_counter() - start
    limit = report_limit(config.report_samples, work)
    cap = capture(runner, captured_names(plan), limit)
    sensitivity = layer_sqnr(plan, cap)
    qgraph = quantized_graph(work, plan)
    if config.bias_correction:
        from passes.quant.bias_correction import correct_biases

        correct_biases(qgraph, work, plan, runner, cap, limit)
    kept: dict[str, str] = {}
    budget_met = None
    if config.precision == "mixed":
        from passes.quant.mixed import choose_mixed

        qgraph, plan, kept, budget_met = choose_mixed(
            work, plan, stats, runner, cap, sensitivity, config, limit
        )
    evaluation = evaluate(runner, qgraph, cap, limit)
    verify(qgraph)
    report = QuantReport(
        config.precision,
        calibrator=config.calibrator,
        per_channel=config.per_channel,
        power_of_two=options.power_of_two,
        symmetric=options.symmetric,
        samples=len(samples),
        output_sqnr_db=evaluation.sqnr_db,
        output_cosine=evaluation.cosine,
        clip_threshold=config.clip_threshold,
        calibration_seconds=seconds,
        budget=config.budget_text(),
        budget_met=budget_met,
    )
    report.layers = layer_reports(work, plan, sensitivity, evaluation, kept, config)
    report.weight_bytes_float, report.weight_bytes_quantized = (
        weight_bytes(graph),
        weight_bytes(qgraph),
    )
    replace_contents(graph, qgraph)
    return report


#: The report runs the float graph once and the quantized graph about twice per sample (the
#: interpreter: slow on big models). With report_samples=None it takes up to 16 samples, fewer
#: when that would exceed this many multiply-accumulates (a ResNet-18 gets 3): a count of the
#: graph, not a timing, so the report and mixed precision's choices are reproducible.
REPORT_MACS = 6e9
MAX_REPORT_SAMPLES = 16


def report_limit(wanted: int | None, graph: Graph) -> int:
    if wanted is not None:
        return max(1, wanted)
    macs = macs_per_sample(graph)
    return int(min(MAX_REPORT_SAMPLES, max(2, REPORT_MACS // max(macs, 1))))
