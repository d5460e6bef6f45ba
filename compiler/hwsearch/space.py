"""The search space: per-layer pruning ratio and bit width, the budget, and one point in it.

A ``Point`` fixes, for every weight layer (conv / dense, named by its source location), the
fraction of its weights pruned by magnitude and its bit width (8 or 16: the widths the
quantizer and the HLS kernels build end to end; 16-bit products take one DSP each, 8-bit ones
pack two per DSP48E2). Reuse factors are not a coordinate: for a given point the backend's
``reuse.choose`` picks the lowest-latency ones that fit, so each point is priced at its best.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import InputError
from compiler.hwsearch.cost import Cost
from compiler.ir.graph import Graph

#: Pruning ratios a layer steps through (each step removes about half of what is left).
PRUNE_STEPS = (0.0, 0.25, 0.5, 0.625, 0.75, 0.8125, 0.875, 0.9375)
BITS = (8, 16)


@dataclass(frozen=True)
class Budget:
    """What must hold: resources (at most the part's), latency, and the accuracy drop in
    percentage points of top-1 accuracy against the float model."""

    max_dsp: int | None = None
    max_bram18k: int | None = None
    max_lut: int | None = None
    max_latency_ns: float | None = None
    max_accuracy_drop: float = 0.5

    @staticmethod
    def of(budget: Budget | dict[str, Any] | None) -> Budget:
        if budget is None:
            return Budget()
        if isinstance(budget, Budget):
            return budget
        known = {f.name for f in dataclasses.fields(Budget)}
        unknown = sorted(set(budget) - known)
        if unknown:
            raise InputError(
                f"unknown budget key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = {k: v for k, v in budget.items() if v is not None}
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InputError(f"budget {key} must be a number >= 0, got {value!r}")
        return Budget(**values)

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class Point:
    """One configuration, its estimated cost and (once measured) its accuracy."""

    prune: dict[str, float]
    bits: dict[str, int]
    cost: Cost | None = None
    accuracy: float | None = None
    drop: float | None = None  # percentage points below the float model
    graph: Graph | None = field(default=None, repr=False)  # the fine-tuned float graph

    def key(self) -> tuple[Any, ...]:
        return (tuple(sorted(self.prune.items())), tuple(sorted(self.bits.items())))

    def with_layer(self, layer: str, prune: float | None = None, bits: int | None = None) -> Point:
        p, b = dict(self.prune), dict(self.bits)
        if prune is not None:
            p[layer] = prune
        if bits is not None:
            b[layer] = bits
        return Point(p, b)

    @property
    def pruned(self) -> bool:
        return any(r > 0 for r in self.prune.values())

    def label(self) -> str:
        """``fc1 .5, fc2 .75 16b``: the layers that differ from dense 8-bit."""
        parts = [
            f"{name} {self.prune[name]:g}".replace("0.", ".")
            + (f" {self.bits[name]}b" if self.bits[name] != 8 else "")
            for name in self.prune
            if self.prune[name] > 0 or self.bits[name] != 8
        ]
        return ", ".join(parts) or "dense int8"

    def ok(self, max_drop: float) -> bool:
        """Measured, within the accuracy limit and fitting every resource and latency limit."""
        return (
            self.drop is not None
            and self.drop <= max_drop
            and self.cost is not None
            and self.cost.fits
        )


def next_step(ratio: float, steps: tuple[float, ...] = PRUNE_STEPS) -> float | None:
    higher = [s for s in steps if s > ratio + 1e-9]
    return higher[0] if higher else None
