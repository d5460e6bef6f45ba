"""What one quantize stage hands the next within a pipeline run (a leaf module).

``calibrate`` leaves a ``QuantState`` in ``ctx.quant_state``; ``quantize-rewrite``,
``bias-correct``, ``mixed-precision`` and ``quant-report`` read it and add to it, and
``quant-report`` ends it. It lives in the run's ``PassContext``, never in module state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compiler.ir.graph import Graph
from compiler.quant_config import QuantConfig
from compiler.quant_report import QuantReport
from passes.quant.analysis import Capture
from passes.quant.batching import BatchedRunner
from passes.quant.plan import Plan, QuantOptions
from passes.quant.stats import TensorStats

if TYPE_CHECKING:
    from compiler.context import PassContext

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


def current(ctx: PassContext) -> QuantState | None:
    """The state ``calibrate`` left in ``ctx`` (None: fp32, or no calibrate ran)."""
    found: QuantState | None = ctx.quant_state.get(STATE_KEY)
    return found


def begin(ctx: PassContext, st: QuantState | None) -> None:
    """Start (``st``) or clear (None) the run's quantize state."""
    if st is None:
        ctx.quant_state.pop(STATE_KEY, None)
    else:
        ctx.quant_state[STATE_KEY] = st


def end(ctx: PassContext) -> QuantState | None:
    """The state, removed from ``ctx``: the run's quantize is over."""
    found: QuantState | None = ctx.quant_state.pop(STATE_KEY, None)
    return found
