"""The steps of ``quantize_graph``: canonicalize, calibrate, plan, rewrite, measure, report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compiler.context import Executor, interpreter_executor
from compiler.errors import CalibrationError, TapeoutError
from compiler.ir.graph import Graph
from compiler.ir.verifier import verify
from compiler.quant_report import QuantReport
from passes.calibrate import CALIBRATORS
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

ACTIVATION_DTYPES = ("i8", "u8", "i16")


@dataclass(frozen=True)
class Request:
    """Every option of ``quantize_graph`` (see there)."""

    precision: str = "int8"
    calibrator: str = "minmax"
    per_channel: bool = True
    power_of_two: bool | None = None
    symmetric: bool = True
    activation_dtype: str = "i8"
    exclude: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    bias_correction: bool = False
    percentile: float = 99.99
    group_size: int = 128
    budget: Any = None
    clip_threshold: float = 1e-3
    report_samples: int | None = None
    stats_engine: str = "auto"
    island_dtype: str | None = None  # None: the target's numerics.island_dtype


def options_for(request: Request, target: Target | None) -> QuantOptions:
    if request.calibrator not in CALIBRATORS:
        raise CalibrationError(
            f"unknown calibrator {request.calibrator!r}; expected one of {', '.join(CALIBRATORS)}"
        )
    if request.activation_dtype not in ACTIVATION_DTYPES:
        raise TapeoutError(
            f"activation_dtype {request.activation_dtype!r} is not one of {ACTIVATION_DTYPES}"
        )
    if not 0 < request.percentile <= 100:
        raise CalibrationError(f"percentile {request.percentile} is not in (0, 100]")
    island = request.island_dtype
    if island is None:
        island = target.numerics.island_dtype if target is not None else "f32"
    if island not in ("f32", "f64"):
        raise TapeoutError(f"island_dtype {island!r} is not 'f32' or 'f64'")
    dtype = "i16" if request.precision == "int16" else request.activation_dtype
    if not request.symmetric and dtype == "i8":
        dtype = "u8"  # asymmetric 8-bit activations are u8 with a zero point
    power_of_two = request.power_of_two
    if power_of_two is None:
        power_of_two = bool(target is not None and target.numerics.power_of_two_scales)
    return QuantOptions(
        activation_dtype=dtype,
        symmetric=request.symmetric and dtype != "u8",
        per_channel=request.per_channel,
        power_of_two=power_of_two,
        calibrator=request.calibrator,
        percentile=request.percentile,
        exclude=request.exclude,
        overrides=request.overrides,
        integer_outputs=power_of_two,
        island_dtype=island,
    )


def replace_contents(graph: Graph, new: Graph) -> None:
    """Make ``graph`` hold ``new``'s inputs, nodes, outputs and constants (in place)."""
    graph.inputs, graph.outputs, graph.nodes = new.inputs, new.outputs, new.nodes
    graph.constants, graph._names = new.constants, new._names


def run_request(
    graph: Graph,
    target: Target | None,
    data: Any,
    request: Request,
    executor: Executor = interpreter_executor,
) -> QuantReport:
    if request.precision == "fp32":
        return QuantReport("fp32", notes=["fp32: the graph is left float"])
    work = graph.copy()
    canonicalize(work)
    if request.precision in ("fp16", "int4w"):
        from passes.quant.weight_only import weight_only

        report = weight_only(work, graph, data, request)
        verify(work)
        replace_contents(graph, work)
        return report
    options = options_for(request, target)
    start = time.perf_counter()
    samples = normalize_samples(work, data)
    runner = BatchedRunner(work, samples)
    plan = build_plan(work, options)
    if not plan.layers:
        log.warning("quantize: graph @%s has no layer to quantize; left float", graph.name)
    stats = collect_stats_fast(runner, needs_scale(plan), request.stats_engine, executor)
    assign_scales(plan, stats)
    seconds = time.perf_counter() - start
    limit = report_limit(request.report_samples, work)
    cap = capture(runner, captured_names(plan), limit)
    sensitivity = layer_sqnr(plan, cap)
    qgraph = quantized_graph(work, plan)
    if request.bias_correction:
        from passes.quant.bias_correction import correct_biases

        correct_biases(qgraph, work, plan, runner, cap, limit)
    kept: dict[str, str] = {}
    budget_met = None
    if request.precision == "mixed":
        from passes.quant.mixed import choose_mixed

        qgraph, plan, kept, budget_met = choose_mixed(
            work, plan, stats, runner, cap, sensitivity, request, limit
        )
    evaluation = evaluate(runner, qgraph, cap, limit)
    verify(qgraph)
    report = QuantReport(
        request.precision,
        calibrator=request.calibrator,
        per_channel=request.per_channel,
        power_of_two=options.power_of_two,
        symmetric=options.symmetric,
        samples=len(samples),
        output_sqnr_db=evaluation.sqnr_db,
        output_cosine=evaluation.cosine,
        clip_threshold=request.clip_threshold,
        calibration_seconds=seconds,
        budget=None if request.budget is None else _budget_text(request.budget),
        budget_met=budget_met,
    )
    report.layers = layer_reports(work, plan, sensitivity, evaluation, kept, request)
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


def _budget_text(budget: Any) -> str:
    return f">= {budget} dB output SQNR" if isinstance(budget, int | float) else "callable"
