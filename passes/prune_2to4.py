"""``prune-2to4``: 2:4 semi-structured sparsity for sparse tensor cores (Ampere and later).

In every group of 4 consecutive weights along the input dimension (dense ``w[N, K]``: along K;
conv ``w[O, I, kh, kw]``: along I, for each output channel and kernel position, which is the
layout TensorRT's sparse kernels need), the 2 largest magnitudes are kept and the other 2 are
set to zero::

    %w: f32[64,32] = const @fc.weight      row [0.9, -0.1, 0.3, 0.05, ...]
      ==> same IR text; row [0.9, 0, 0.3, 0, ...]

No attribute marks the layer (the op table has none for it): the zeros are the mark. The
TensorRT backend calls ``is_2to4(weight)`` on each constant weight and, when every layer it
can accelerate passes, builds the engine with sparse weights enabled. A layer whose input
dimension is not a multiple of 4 (a first conv over RGB) is left dense, as TensorRT would
ignore it anyway; the report's notes name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

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

#: Ops that have 2:4 sparse kernels, with the weight axis the groups of 4 run along.
INPUT_AXIS: dict[str, int] = {"nn.dense": 1, "nn.conv1d": 1, "nn.conv2d": 1}

GROUP, KEEP = 4, 2


def _groups_last(weight: np.ndarray, axis: int) -> np.ndarray:
    """``weight`` with ``axis`` moved last and split into groups of 4: ``[..., K/4, 4]``."""
    moved = np.moveaxis(weight, axis, -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // GROUP, GROUP)


def is_2to4(weight: np.ndarray, axis: int = 1) -> bool:
    """True if every group of 4 consecutive entries along ``axis`` has at least 2 zeros.

    Defaults fit both a dense weight ``[N, K]`` and a conv weight ``[O, I, kh, kw]``.
    """
    weight = np.asarray(weight)
    if weight.ndim < 2 or weight.shape[axis] % GROUP or weight.size == 0:
        return False
    nonzero = np.count_nonzero(_groups_last(weight, axis), axis=-1)
    return bool(np.all(nonzero <= GROUP - KEEP))


def mask_2to4(magnitude: np.ndarray, axis: int = 1) -> np.ndarray:
    """Keep-mask with the ``KEEP`` largest magnitudes of each group of 4 along ``axis``."""
    grouped = _groups_last(magnitude, axis)
    order = np.argsort(-grouped, axis=-1, kind="stable")
    keep = np.zeros(grouped.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :KEEP], True, axis=-1)
    moved_shape = np.moveaxis(magnitude, axis, -1).shape
    return np.moveaxis(keep.reshape(moved_shape), -1, axis)


def prune_2to4(graph: Graph, exclude: Sequence[str] = ()) -> PruneReport:
    """Apply 2:4 sparsity to every dense / conv weight of ``graph`` that allows it."""
    before = snapshot(graph)
    notes = []
    for node in weight_layers(graph):
        reason = _declines(graph, node, exclude)
        if reason:
            notes.append(f"{layer_name(node)} left dense: {reason}")
            continue
        weight = real_weight(graph, node.inputs[1])
        data = graph.const_value(node.inputs[1])
        assert weight is not None and data is not None
        keep = mask_2to4(np.abs(weight), INPUT_AXIS[node.op])
        if not keep.all():
            set_const(graph, node.inputs[1], np.where(keep, data, np.zeros_like(data)))
    report = compare("prune-2to4", before, snapshot(graph))
    report.notes += notes
    return report


def _declines(graph: Graph, node: Node, exclude: Sequence[str]) -> str | None:
    if node.op not in INPUT_AXIS:
        return f"{node.op} has no 2:4 sparse kernel"
    if exclude and matches(node, exclude):
        return "excluded"
    shape = node.inputs[1].type.shape
    axis = INPUT_AXIS[node.op]
    if shape[axis] % GROUP:
        return f"input dimension {shape[axis]} is not a multiple of {GROUP}"
    if real_weight(graph, node.inputs[1]) is None:
        return "integer weight with a zero point"
    return None


@dataclass(frozen=True)
class Prune2to4:
    """2:4 semi-structured sparsity on dense / conv weights (see the module docstring).

    ``prune-2to4{exclude=[fc]}``
    """

    name: ClassVar[str] = "prune-2to4"
    exclude: tuple[str, ...] | list[str] = ()

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        report = prune_2to4(graph, self.exclude)
        publish(ctx, report)
        return report.changed
