"""The work behind one search: quantize, price, prune, fine-tune and measure a point.

``Evaluator`` holds the float graph (after the target's pipeline up to ``quantize``: batch
norms folded, activations fused), the calibration, fine-tuning and evaluation data, and the
budget. ``estimate(point)`` prices a point without training (the quantized graph is pruned
directly: the design's cost depends only on which weights are zero and the bit widths);
``measure(point)`` prunes the float graph, fine-tunes it by distillation from the float model
(weights fake-quantized as the quantize pass will, masks keeping the pruned zeros), quantizes
it and measures its accuracy with the reference interpreter, which is bit-exact with the
FPGA's C simulation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.hwsearch.cost import Cost, fpga_cost, resource_limits
from compiler.hwsearch.space import Budget, Point
from compiler.ir.graph import Graph

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning of a pruned point (``compiler.distill``'s arguments)."""

    epochs: int = 4
    lr: float = 1e-3
    batch_size: int = 128
    temperature: float = 4.0
    alpha: float = 0.5
    max_samples: int | None = None  # at most this many training samples per epoch
    seed: int = 0


def split_pipeline(
    target: Target, changes: dict[str, Any] | None = None
) -> tuple[list[Any], list[Any]]:
    """The target's passes before ``quantize`` and from it on (its config ``changes``d)."""
    from compiler.api import plan_pipeline

    passes = plan_pipeline(target, None, None, changes)
    first = next((i for i, p in enumerate(passes) if p.name == "quantize"), len(passes))
    return passes[:first], passes[first:]


def layer_names(graph: Graph) -> list[str]:
    """Each weight layer's name: its source location, else its weight constant's name."""
    from passes._prune import layer_name, weight_layers

    return [node.loc or layer_name(node) for node in weight_layers(graph)]


class Evaluator:
    """Prices and measures points for one model, target and budget (see the module doc)."""

    def __init__(
        self,
        graph: Graph,
        target: Target,
        budget: Budget,
        calibration: np.ndarray,
        evaluation: tuple[np.ndarray, np.ndarray],
        train: tuple[np.ndarray, np.ndarray],
        settings: TrainSettings,
    ) -> None:
        from compiler.context import PassContext
        from compiler.pass_manager import PassManager

        self.target, self.budget, self.settings = target, budget, settings
        self.calibration, self.evaluation, self.train = calibration, evaluation, train
        self.limits = resource_limits(target, budget.limits())
        self.graph = graph.copy()
        PassManager(split_pipeline(target)[0]).run(self.graph, PassContext(target=target))
        self.layers = layer_names(self.graph)
        self.float_accuracy = self.accuracy(self.graph)
        self._quantized: dict[tuple[Any, ...], Graph] = {}
        self._costs: dict[tuple[Any, ...], Cost] = {}
        self._mass = self._weight_mass()
        self._teacher: Any = None
        self.measured: list[Point] = []

    # ---- quantizing and pricing ------------------------------------------------------------
    def overrides(self, bits: dict[str, int]) -> dict[str, dict[str, Any]]:
        """Quantize-pass overrides for the layers kept at 16 bits."""
        return {name: {"precision": "int16"} for name, b in bits.items() if b == 16}

    def quantize(self, graph: Graph, bits: dict[str, int]) -> Graph:
        """A quantized copy of float ``graph`` with the layers' bit widths."""
        from compiler.api import pass_context
        from compiler.pass_manager import PassManager

        work = graph.copy()
        passes = split_pipeline(self.target, {"overrides": self.overrides(bits)})[1]
        PassManager(passes).run(work, pass_context(self.target, self.calibration))
        return work

    def cost(self, quantized: Graph) -> Cost:
        return fpga_cost(quantized, self.target, self.limits, self.budget.max_latency_ns)

    def estimate(self, point: Point) -> Cost:
        """The point's cost without training: its quantized graph pruned by magnitude."""
        from passes.prune_magnitude import prune_magnitude

        if point.key() in self._costs:
            return self._costs[point.key()]
        bits_key = tuple(sorted(point.bits.items()))
        if bits_key not in self._quantized:
            self._quantized[bits_key] = self.quantize(self.graph, point.bits)
        work = self._quantized[bits_key].copy()
        ratios = {k: v for k, v in point.prune.items() if v > 0}
        if ratios:
            prune_magnitude(work, sparsity=0.0, scope="layer", layers=ratios)
        cost = self._costs[point.key()] = self.cost(work)
        return cost

    # ---- the accuracy proxy the greedy steps use -------------------------------------------
    def _weight_mass(self) -> dict[str, np.ndarray]:
        """Per layer, the cumulative share of squared weight mass, smallest weights first."""
        from passes._prune import weight_layers

        mass = {}
        for name, node in zip(self.layers, weight_layers(self.graph), strict=True):
            w = np.sort(np.square(np.asarray(self.graph.const_value(node.inputs[1]))).ravel())
            mass[name] = np.cumsum(w) / max(float(w.sum()), 1e-30)
        return mass

    def damage(self, point: Point) -> float:
        """Share of each layer's squared weight mass that the pruning removes, summed."""
        total = 0.0
        for name, ratio in point.prune.items():
            share = self._mass[name]
            k = int(round(ratio * share.size))
            total += float(share[k - 1]) if k > 0 else 0.0
        return total

    # ---- measuring -------------------------------------------------------------------------
    def accuracy(self, graph: Graph) -> float:
        from compiler.torchside.prune import graph_accuracy

        return graph_accuracy(graph, *self.evaluation)

    def measure(self, point: Point) -> Point:
        """Prune, fine-tune, quantize; fill in the point's graph, accuracy, drop and cost."""
        parent = self.parent(point)
        graph = (parent.graph if parent is not None and parent.graph else self.graph).copy()
        if point.pruned:
            from passes.prune_magnitude import prune_magnitude

            prune_magnitude(graph, sparsity=0.0, scope="layer", layers=dict(point.prune))
            graph = self.fine_tune(graph, point.bits)
        quantized = self.quantize(graph, point.bits)
        point.graph = graph
        point.accuracy = self.accuracy(quantized)
        point.drop = 100.0 * (self.float_accuracy - point.accuracy)
        point.cost = self.cost(quantized)
        log.info("measured %s: accuracy %.4f, %s", point.label(), point.accuracy, point.cost)
        self.measured.append(point)
        return point

    def parent(self, point: Point) -> Point | None:
        """The most pruned measured point this one only prunes further (same bit widths):
        pruning its fine-tuned weights further recovers better than starting over (gradual
        pruning); its zeros are its smallest weights, so they stay pruned."""
        below = [
            p
            for p in self.measured
            if p.bits == point.bits
            and p.pruned
            and all(p.prune[k] <= point.prune[k] for k in point.prune)
        ]
        return max(below, key=self.damage, default=None)

    def fine_tune(self, graph: Graph, bits: dict[str, int]) -> Graph:
        """Distil the float model into pruned ``graph`` (zeros kept by masks)."""
        from compiler.torchside.distill import distill
        from compiler.torchside.fake_quant import FakeQuant
        from compiler.torchside.module import to_torch

        s = self.settings
        if self._teacher is None:
            self._teacher = to_torch(self.graph, keep_zeros=False)
        pow2 = bool(self.target.numerics.power_of_two_scales)
        # Train with the int8 weight grid the quantize pass will use; a 16-bit layer's grid is
        # fine enough that plain float training matches it.
        fake = FakeQuant("i8", pow2) if all(b == 8 for b in bits.values()) else None
        student = to_torch(graph, keep_zeros=True, fake_quant=fake)
        x, y = self.train
        if s.max_samples is not None and len(x) > s.max_samples:
            pick = np.random.default_rng(s.seed).permutation(len(x))[: s.max_samples]
            x, y = x[pick], y[pick]
        distill(
            self._teacher,
            student,
            (x, y),
            epochs=s.epochs,
            temperature=s.temperature,
            alpha=s.alpha,
            lr=s.lr,
            batch_size=s.batch_size,
            progress=False,
            seed=s.seed,
        )
        return student.to_graph()
