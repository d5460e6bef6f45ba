"""``compiler.search``: fit a model to an FPGA budget by pruning, bit widths and reuse factors.

The strategy, in two phases so that the expensive part (fine-tuning and measuring accuracy)
runs a handful of times:

1. **A path through the cost space** (no training; each point priced by the HLS backend's
   estimate with its best reuse factors). From dense int8, repeatedly take the single step
   (one layer to its next pruning ratio, ``space.PRUNE_STEPS``) that buys the most latency
   (or, while over a resource limit, the most over-budget resource) per unit of weight mass it
   removes (the accuracy proxy: the share of the layer's squared weights zeroed). The path
   ends when no step helps. Along it latency falls and the damage grows.
2. **Accuracy along the path**: the accuracy drop grows along the path, so a bisection finds
   the most aggressive point whose measured drop (after fine-tuning by distillation,
   quantized, run by the reference interpreter) is within the limit; each measured point
   joins the Pareto front. The first point past that boundary is retried with its most
   damaged layer at 16 bits (wider weights recover accuracy, at one DSP per product instead
   of two).

The chosen point is the measured one that fits every limit with the lowest latency (then the
fewest DSPs). When none fits, ``BudgetError`` says which limit is short and by how much at the
best point (the one that comes closest among those within the accuracy limit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from compiler.hwsearch.cost import Cost
from compiler.hwsearch.engine import Evaluator
from compiler.hwsearch.space import BITS, Point, next_step

log = logging.getLogger(__name__)

Say = Callable[[str], None]
#: Weight of being over a resource limit against latency in ns (fit first, then speed).
OVERUSE_NS = 1e9
#: A DSP freed counts as this many ns: a step that frees DSPs without lowering the latency
#: yet is progress (the next step can spend them on a lower reuse factor).
DSP_NS = 1e-3


@dataclass
class SearchResult:
    """What a search found: every measured point, the path it priced, and its choice."""

    target: str
    float_accuracy: float
    max_drop: float
    baseline: Point  # dense int8 with the backend's automatic reuse factors
    chosen: Point | None
    measured: list[Point] = field(default_factory=list)
    path: list[Point] = field(default_factory=list)
    seconds: float = 0.0
    config_path: str | None = None
    plot_path: str | None = None
    compiled: dict[str, float] = field(default_factory=dict)

    def front(self) -> list[Point]:
        """The measured points no other beats on accuracy, DSP and latency at once."""
        from compiler.hwsearch.pareto import pareto_front

        return pareto_front(self.measured)

    def table(self) -> str:
        from compiler.hwsearch.pareto import front_table

        return front_table(self)


def objective(cost: Cost) -> float:
    """Latency in ns, plus a large penalty per unit of relative overuse of any limit."""
    over = sum(need / max(have, 1e-9) - 1.0 for need, have in cost.short.values())
    return cost.latency_ns + DSP_NS * cost.dsp + OVERUSE_NS * over


def cost_path(ev: Evaluator, start: Point, say: Say) -> list[Point]:
    """Phase 1: the greedy path of pruning steps (see the module doc)."""
    point, path = start, [start]
    start.cost = ev.estimate(start)
    while True:
        best: tuple[float, Point] | None = None
        assert point.cost is not None
        here, damage = objective(point.cost), ev.damage(point)
        for layer in ev.layers:
            ratio = next_step(point.prune[layer])
            if ratio is None:
                continue
            trial = point.with_layer(layer, prune=ratio)
            trial.cost = ev.estimate(trial)
            gain = here - objective(trial.cost)
            score = gain / (ev.damage(trial) - damage + 1e-6)
            if gain > 1e-9 and (best is None or score > best[0]):
                best = (score, trial)
        if best is None:
            break
        point = best[1]
        path.append(point)
        assert point.cost is not None
        say(
            f"path step {len(path) - 1}: {point.label()}: {point.cost.latency_ns:g} ns, "
            f"{point.cost.dsp} DSP"
        )
    return useful(path)


def useful(path: list[Point]) -> list[Point]:
    """The path's points that fit sooner or run faster than every point before them (the
    others only freed DSPs for a later step: more pruning for no gain on their own)."""
    kept: list[Point] = []
    for point in path:
        assert point.cost is not None
        if not kept:
            kept.append(point)
            continue
        fastest = min(p.cost.latency_ns for p in kept if p.cost)
        fits_first = point.cost.fits and not any(p.cost and p.cost.fits for p in kept)
        if point.cost.latency_ns < fastest or fits_first:
            kept.append(point)
    return kept


def measure_path(ev: Evaluator, path: list[Point], max_drop: float, say: Say) -> list[Point]:
    """Phase 2: bisect the path for the last point within the accuracy limit."""
    measured: list[Point] = []

    def run(i: int) -> bool:
        point = _run(ev, path[i], say)
        measured.append(point)
        return point.drop is not None and point.drop <= max_drop

    lo, hi = 0, len(path) - 1
    if not run(lo):
        return measured + _widened(ev, path[lo], lambda p: _run(ev, p, say))
    if hi > lo and run(hi):
        return measured
    while hi - lo > 1:  # invariant: path[lo] within the limit, path[hi] not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if run(mid) else (lo, mid)
    if hi != lo:
        measured += _widened(ev, path[hi], lambda p: _run(ev, p, say))
    return measured


def _run(ev: Evaluator, point: Point, say: Say) -> Point:
    ev.measure(point)
    assert point.drop is not None and point.cost is not None
    say(
        f"measured {point.label()}: drop {point.drop:.2f} points, "
        f"{point.cost.latency_ns:g} ns, {point.cost.dsp} DSP"
    )
    return point


def _widened(ev: Evaluator, failed: Point, run_point: Callable[[Point], Point]) -> list[Point]:
    """``failed`` with its most damaged 8-bit layer at 16 bits, measured if it still fits."""
    if max(BITS) == 8:
        return []
    eight = [name for name in ev.layers if failed.bits[name] == 8]
    if not eight:
        return []
    worst = max(eight, key=lambda n: (ev.damage(Point({n: failed.prune[n]}, {})), n))
    trial = failed.with_layer(worst, bits=16)
    trial.cost = ev.estimate(trial)
    if not trial.cost.fits:
        log.info("16-bit %s does not fit: %s", worst, trial.cost.shortfall())
        return []
    return [run_point(trial)]


def choose(measured: list[Point], max_drop: float) -> Point | None:
    """The fitting point within the accuracy limit with the lowest latency, then DSPs."""
    ok = [p for p in measured if p.ok(max_drop)]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.cost.latency_ns, p.cost.dsp) if p.cost else (0.0, 0))


def closest(measured: list[Point], max_drop: float) -> Point:
    """The point to explain a failure with: within the accuracy limit and closest to fitting
    (else the most accurate one)."""
    accurate = [p for p in measured if p.drop is not None and p.drop <= max_drop]
    if accurate:
        return min(accurate, key=lambda p: objective(p.cost) if p.cost else 0.0)
    return min(measured, key=lambda p: p.drop if p.drop is not None else 1e9)


def run_search(ev: Evaluator, say: Say) -> SearchResult:
    """Both phases on ``ev``; the result (``chosen`` None when nothing fits)."""
    start_time = time.perf_counter()
    start = Point({n: 0.0 for n in ev.layers}, {n: 8 for n in ev.layers})
    path = cost_path(ev, start, say)
    measured = measure_path(ev, path, ev.budget.max_accuracy_drop, say)
    chosen = choose(measured, ev.budget.max_accuracy_drop)
    return SearchResult(
        target=ev.target.name,
        float_accuracy=ev.float_accuracy,
        max_drop=ev.budget.max_accuracy_drop,
        baseline=measured[0],
        chosen=chosen,
        measured=measured,
        path=path,
        seconds=time.perf_counter() - start_time,
    )
