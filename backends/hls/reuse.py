"""Reuse factors: from the user's options, or chosen to fit the part with the lowest latency.

``evaluate`` prices a design with the current reuse factors (``backends.hls.resources``).
``choose`` starts every free MAC layer at rf = 1 (fastest) and, while the design is over the
part's DSP, BRAM18K or LUT budget, raises the reuse factor of the layer whose next step buys
the most over-budget resource per cycle of added latency; then it walks back any step that is
no longer needed. When even that cannot fit, ``BackendError`` names each short resource and by
how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from backends.hls.design import Design, Layer
from backends.hls.resources import (
    Estimate,
    Model,
    buffer_cost,
    estimate_layer,
    partition,
    port_estimate,
)
from compiler.errors import BackendError

RESOURCES = ("dsp", "bram18k", "lut")


@dataclass
class Evaluation:
    """Per-layer estimates (activation arrays charged to the layer that writes them)."""

    layers: dict[str, Estimate]
    ports: dict[str, Estimate]
    total: Estimate = field(default_factory=Estimate)
    latency: int = 0
    interval: int = 0
    partition: dict[str, int] = field(default_factory=dict)


def evaluate(design: Design, model: Model) -> Evaluation:
    layers = design.all_layers()
    factors = partition(design, layers)
    ev = Evaluation({}, {}, partition=factors)
    writer = {layer.output.name: layer.name for layer in layers}
    for layer in layers:
        ev.layers[layer.name] = estimate_layer(layer, model)
    for port in design.in_ports + design.out_ports:
        ev.ports[port.name] = port_estimate(port, design.interface)
    for buf in design.buffers:
        owner = writer.get(buf.name)
        target = ev.layers[owner] if owner else _port_of(ev, design, buf.name)
        target.add(buffer_cost(buf, factors[buf.name]))
    for est in [*ev.layers.values(), *ev.ports.values()]:
        ev.total.add(est)
        ev.latency += est.latency
        ev.interval = max(ev.interval, est.latency)
    return ev


def _port_of(ev: Evaluation, design: Design, name: str) -> Estimate:
    for port in design.in_ports:
        if name in (port.edge.name, port.buffer.name):
            return ev.ports[port.name]
    return next(iter(ev.ports.values()))


def budget_of(fpga: Any) -> dict[str, int]:
    return {"dsp": int(fpga.dsp), "bram18k": int(fpga.bram18k), "lut": int(fpga.lut)}


def _used(ev: Evaluation) -> dict[str, int]:
    return {r: int(getattr(ev.total, r)) for r in RESOURCES}


def _overuse(ev: Evaluation, budget: dict[str, int]) -> float:
    used = _used(ev)
    return sum(max(0, used[r] - budget[r]) / max(budget[r], 1) for r in RESOURCES)


def shortfall(ev: Evaluation, budget: dict[str, int]) -> list[str]:
    used = _used(ev)
    names = {"dsp": "DSP", "bram18k": "BRAM18K", "lut": "LUT"}
    return [
        f"{names[r]} short by {used[r] - budget[r]} (needs {used[r]}, the part has {budget[r]})"
        for r in RESOURCES
        if used[r] > budget[r]
    ]


def candidates(layer: Layer) -> list[int]:
    """Reuse factors worth trying: divisors of the block's products and powers of two."""
    n = max(1, layer.max_rf)
    divs = {d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)}
    pows = {1 << k for k in range(n.bit_length()) if 1 << k <= n}
    return sorted(divs | pows)


def resolve_option(design: Design, option: Any) -> dict[str, int]:
    """The reuse_factor option as layer name -> rf for the layers it fixes."""
    tunable = [x for x in design.layers if x.tunable]
    if option is None or option == "auto":
        return {}
    if isinstance(option, int) and not isinstance(option, bool) and option >= 1:
        return {x.name: option for x in tunable}
    if isinstance(option, dict):
        fixed = {}
        for key, rf in option.items():
            matches = [x for x in tunable if key in _layer_keys(x)]
            if not matches:
                known = ", ".join(x.name for x in tunable)
                raise BackendError(f"reuse_factor names unknown layer {key!r}; layers: {known}")
            if not isinstance(rf, int) or isinstance(rf, bool) or rf < 1:
                raise BackendError(f"reuse_factor for {key!r} must be an integer >= 1, got {rf!r}")
            fixed.update({x.name: rf for x in matches})
        return fixed
    raise BackendError(
        f"reuse_factor must be 'auto', an integer >= 1 or a dict layer -> integer, got {option!r}"
    )


def _layer_keys(layer: Layer) -> set[str]:
    keys = {layer.name, layer.loc}
    for node in layer.nodes:
        keys.update(v.name for v in node.outputs)
    return keys


def choose(
    design: Design, model: Model, budget: dict[str, int], fixed: dict[str, int], part: str
) -> Evaluation:
    """Set every layer's rf: ``fixed`` ones as given, the others to fit ``budget``.

    1. every free layer at rf = 1 (the fastest design); 2. while over budget, the single step
    (a layer to its next candidate rf) that removes the most over-budget resource per cycle
    added; 3. if that gets stuck (weights moving from LUTs to BRAM can make every single step
    look worse), every free layer at its largest rf; 4. from a design that fits, lower each
    layer's rf as far as the budget allows (a binary search per layer, slowest layers first).
    """
    free = [x for x in design.layers if x.tunable and x.name not in fixed]
    for layer in design.layers:
        layer.rf = fixed.get(layer.name, 1)
    steps = {x.name: candidates(x) for x in free}
    ev = _climb(design, model, budget, free, steps)
    if _overuse(ev, budget) > 0 and free:
        for layer in free:
            layer.rf = steps[layer.name][-1]
        ev = evaluate(design, model)
    short = shortfall(ev, budget)
    if short:
        how = "with the given reuse factors" if not free else "even at the largest reuse factors"
        raise BackendError(
            f"design @{design.graph_name} does not fit {part} {how}: " + "; ".join(short)
        )
    return _walk_back(design, model, budget, free, steps, ev)


def _climb(
    design: Design,
    model: Model,
    budget: dict[str, int],
    free: list[Layer],
    steps: dict[str, list[int]],
) -> Evaluation:
    """Raise reuse factors one step at a time while that reduces the over-budget amount."""
    ev = evaluate(design, model)
    while _overuse(ev, budget) > 0:
        best: tuple[float, Layer, int] | None = None
        for layer in free:
            nxt = [rf for rf in steps[layer.name] if rf > layer.rf]
            if not nxt:
                continue
            old = layer.rf
            layer.rf = nxt[0]
            trial = evaluate(design, model)
            layer.rf = old
            gain = _overuse(ev, budget) - _overuse(trial, budget)
            score = gain / max(1, trial.latency - ev.latency)
            if gain > 0 and (best is None or score > best[0]):
                best = (score, layer, nxt[0])
        if best is None:
            break
        best[1].rf = best[2]
        ev = evaluate(design, model)
    return ev


def _walk_back(
    design: Design,
    model: Model,
    budget: dict[str, int],
    free: list[Layer],
    steps: dict[str, list[int]],
    ev: Evaluation,
) -> Evaluation:
    """Lower reuse factors that are not needed to fit: per layer, the smallest candidate that
    still fits (binary search over its candidates), slowest layers first, until nothing
    improves."""
    improved = True
    while improved:
        improved = False
        for layer in sorted(free, key=lambda x: -ev.layers[x.name].latency):
            options = [rf for rf in steps[layer.name] if rf < layer.rf]
            best, lo, hi = layer.rf, 0, len(options) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                layer.rf = options[mid]
                trial = evaluate(design, model)
                if _overuse(trial, budget) == 0 and trial.latency < ev.latency:
                    best, ev, improved, hi = options[mid], trial, True, mid - 1
                else:
                    lo = mid + 1
            layer.rf = best
    return evaluate(design, model)
