"""Mixed precision: keep the most sensitive layers wider until a budget is met.

Sensitivity is each layer's SQNR when quantized alone (``analysis.layer_sqnr``). Starting from
all-int8, the layers are widened in order of sensitivity, most sensitive first: first to
int16 (16-bit activations in and out, 16-bit weights), then, if every layer at int16 still
misses the budget, to float. After each step the whole quantized graph is rebuilt and
checked: against the minimum output SQNR (dB, on the report samples) or cosine similarity
(``budget_metric``), or by calling the budget callable with the candidate graph. The first
candidate that meets it is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from passes.quant.analysis import Capture, evaluate
from passes.quant.batching import BatchedRunner
from passes.quant.plan import Plan, assign_scales, build_plan, needs_scale
from passes.quant.rewrite import quantized_graph
from passes.quant.stats import TensorStats, collect_stats

if TYPE_CHECKING:
    from compiler.quant_config import QuantConfig

log = logging.getLogger(__name__)

STAGES = ("int16", "float")


def choose_mixed(
    work: Graph,
    plan: Plan,
    stats: dict[str, TensorStats],
    runner: BatchedRunner,
    cap: Capture,
    sensitivity: dict[str, float],
    config: QuantConfig,
    limit: int,
) -> tuple[Graph, Plan, dict[str, str], bool]:
    """(quantized graph, its plan, layer key -> "int16"/"float" kept wider, budget met)."""
    budget = config.budget
    if budget is None:
        raise TapeoutError(
            "precision='mixed' needs a budget (--budget DB): a minimum output SQNR in dB, or a "
            "callable taking the quantized graph and returning True when it is good enough"
        )

    def meets(graph: Graph) -> bool:
        if callable(budget):
            return bool(budget(graph.copy()))
        evaluation = evaluate(runner, graph, cap, limit)
        measured = {"sqnr": evaluation.sqnr_db, "cosine": evaluation.cosine}
        return measured[config.budget_metric] >= float(budget)

    def attempt(choices: dict[str, str]) -> tuple[Plan, Graph]:
        overrides: dict[str, dict[str, Any]] = {k: {"precision": v} for k, v in choices.items()}
        overrides.update(plan.options.overrides)
        candidate = build_plan(work, dataclasses.replace(plan.options, overrides=overrides))
        missing = needs_scale(candidate) - set(stats)
        if missing:
            stats.update(collect_stats(runner, missing))
        assign_scales(candidate, stats)
        return candidate, quantized_graph(work, candidate)

    order = sorted(
        (k for k, layer in plan.layers.items() if layer.kind != "move"),
        key=lambda k: sensitivity.get(k, math.inf),
    )
    choices: dict[str, str] = {}
    best_plan, best = plan, quantized_graph(work, plan)
    if meets(best):
        return best, best_plan, {}, True
    for stage in STAGES:
        for key in order:
            choices[key] = stage
            best_plan, best = attempt(choices)
            if meets(best):
                log.info("mixed precision: kept %s wider", choices)
                return best, best_plan, dict(choices), True
    log.warning("mixed precision: the budget is not met even with every layer float")
    return best, best_plan, dict(choices), False
