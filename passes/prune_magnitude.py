"""``prune-magnitude``: unstructured pruning, zeroing the smallest-magnitude weights.

The graph keeps its shapes; weights of conv / dense / matmul layers get zeros::

    %w1: f32[64,16] = const @fc1.weight          (1024 non-zero)
    %y = nn.dense(%x, %w1, %b1)
      ==> same IR text; @fc1.weight now holds 768 zeros (sparsity=0.75)

``scope="global"`` ranks every prunable weight of the graph together and zeroes the
``sparsity`` fraction with the smallest |w| (as ``torch.nn.utils.prune.global_unstructured``
with L1); ``scope="layer"`` prunes each layer to ``sparsity`` on its own. ``layers`` gives
per-layer targets (``"fc1.weight:0.5"`` or a dict), which always apply per layer; ``exclude``
names layers left dense. Biases, batch-norm and other parameters are never pruned.

Sparsity is carried by the zeros themselves, not by an attribute: a backend that can skip zero
multiplies (the HLS backend: no DSP and no cycle for a zero weight) counts zeros in the
constant weights, so its estimates follow the pruning; other backends simply run the zeros.
Integer weights are pruned by their real value (``q * scale``) when their zero point is 0.
Does not fire on layers whose weight is not a constant, or with ``sparsity=0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph, Node
from passes._prune import (
    PruneReport,
    compare,
    layer_name,
    matches,
    publish,
    real_weight,
    set_const,
    snapshot,
    weight_layers,
)

if TYPE_CHECKING:
    from compiler.context import PassContext

LayerTargets = Mapping[str, float] | Sequence[str]
SCOPES = ("global", "layer")


def parse_layer_targets(layers: LayerTargets) -> dict[str, float]:
    """``{"fc1.weight": 0.5}`` from a dict or from ``["fc1.weight:0.5", ...]`` (CLI form)."""
    items: dict[str, float] = {}
    if isinstance(layers, Mapping):
        items = {str(k): float(v) for k, v in layers.items()}
    else:
        for entry in layers:
            name, sep, text = str(entry).rpartition(":")
            if not sep:
                raise TapeoutError(f"per-layer sparsity {entry!r} must look like 'name:0.5'")
            items[name] = float(text)
    for name, fraction in items.items():
        _check_fraction(fraction, f"sparsity of layer {name}")
    return items


def _check_fraction(value: float, what: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise TapeoutError(f"{what} must be in [0, 1], got {value}")


def magnitude_mask(magnitude: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean keep-mask zeroing the ``round(sparsity * n)`` smallest entries (stable ties)."""
    flat = magnitude.reshape(-1)
    k = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:k]] = False
    return keep.reshape(magnitude.shape)


def _layer_target(node: Node, targets: dict[str, float]) -> float | None:
    for name, value in targets.items():
        if matches(node, [name]):
            return value
    return None


def prune_magnitude(
    graph: Graph,
    sparsity: float = 0.5,
    scope: str = "global",
    layers: LayerTargets = (),
    exclude: Sequence[str] = (),
) -> PruneReport:
    """Zero the smallest weights of ``graph`` in place; returns the per-layer report."""
    _check_fraction(sparsity, "sparsity")
    if scope not in SCOPES:
        raise TapeoutError(f"prune-magnitude scope must be one of {SCOPES}, got {scope!r}")
    targets = parse_layer_targets(layers)
    before = snapshot(graph)
    notes: list[str] = []
    pooled: list[tuple[Node, np.ndarray]] = []
    for node in weight_layers(graph):
        if exclude and matches(node, exclude):
            continue
        weight = real_weight(graph, node.inputs[1])
        if weight is None:
            notes.append(f"{layer_name(node)}: integer weight with a zero point, left dense")
            continue
        own = _layer_target(node, targets)
        if own is None and scope == "global":
            pooled.append((node, weight))
            continue
        _apply(graph, node, magnitude_mask(np.abs(weight), sparsity if own is None else own))
    if pooled:
        magnitudes = np.concatenate([np.abs(w).reshape(-1) for _, w in pooled])
        keep = magnitude_mask(magnitudes, sparsity)
        offset = 0
        for node, weight in pooled:
            _apply(graph, node, keep[offset : offset + weight.size].reshape(weight.shape))
            offset += weight.size
    report = compare("prune-magnitude", before, snapshot(graph))
    report.notes += notes
    return report


def _apply(graph: Graph, node: Node, keep: np.ndarray) -> None:
    data = graph.const_value(node.inputs[1])
    assert data is not None
    if keep.all():
        return
    set_const(graph, node.inputs[1], np.where(keep, data, np.zeros_like(data)))


@dataclass(frozen=True)
class PruneMagnitude:
    """Unstructured magnitude pruning of conv / dense / matmul weights (see the module doc).

    ``prune-magnitude{sparsity=0.75,scope=global,layers=[fc4.weight:0.5],exclude=[fc1]}``
    """

    name: ClassVar[str] = "prune-magnitude"
    sparsity: float = 0.5
    scope: str = "global"
    layers: tuple[str, ...] | list[str] | dict[str, float] = ()
    exclude: tuple[str, ...] | list[str] = ()

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        report = prune_magnitude(graph, self.sparsity, self.scope, self.layers, self.exclude)
        publish(ctx, report)
        return report.changed
