"""What the pruning passes share: which nodes are weight layers, and the ``PruneReport``.

A *weight layer* is a conv / dense / matmul node whose weight (operand 1) is a constant. The
layer is named by its weight constant (``conv1.weight``), which the torch frontend names by the
parameter's fully qualified name, so torch-side scores (Taylor importance) and per-layer options
refer to layers the same way. ``matches(node, names)`` also accepts the node's source location
(``conv1``) or its output value name.

Every pruning pass measures the graph before and after and returns a ``PruneReport``: per layer
the weight shape, parameters, zero count (sparsity) and MACs, and the totals. *Effective* MACs
count only the multiplies by non-zero weights, which is what a backend that skips zeros (the HLS
backend: no DSP for a zero weight) pays. The pass classes cannot return a report (``run``
returns whether the graph changed), so they publish it into the run's context
(``ctx.prune_reports``, see ``compiler.context``), and log it at INFO level.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import node_macs
from compiler.ir.types import TensorType, is_float
from compiler.report import format_table

if TYPE_CHECKING:
    from compiler.context import PassContext

log = logging.getLogger(__name__)

#: Ops whose operand 1 is a weight that pruning may act on.
WEIGHT_OPS: frozenset[str] = frozenset(
    {"nn.conv1d", "nn.conv2d", "nn.conv_transpose2d", "nn.dense", "nn.matmul"}
)


def weight_layers(graph: Graph) -> list[Node]:
    """Compute nodes with a constant weight operand, in graph order."""
    return [
        node
        for node in graph.nodes
        if node.op in WEIGHT_OPS and len(node.inputs) > 1 and node.inputs[1].is_const
    ]


def layer_name(node: Node) -> str:
    """A weight layer's name: its weight constant's name (``fc1.weight``)."""
    return const_ref(node.inputs[1])


def const_ref(value: Value) -> str:
    """The constant-table key of a constant value."""
    if value.producer is None or value.producer.op != "const":
        return value.name
    return str(value.producer.attrs["ref"])


def matches(node: Node, names: Iterable[str]) -> bool:
    """True if any of ``names`` is this layer's weight name, source location or value name."""
    keys = {layer_name(node), node.outputs[0].name}
    if node.loc:
        keys.add(node.loc)
    return any(name.lstrip("%") in keys for name in names)


def set_const(graph: Graph, value: Value, data: np.ndarray) -> None:
    """Give constant ``value`` new data (a new array: constant arrays are shared by copies)."""
    graph.constants[const_ref(value)] = data
    value.type = TensorType(value.type.dtype, tuple(int(d) for d in data.shape), value.type.quant)


def real_weight(graph: Graph, value: Value) -> np.ndarray | None:
    """The real-valued weight (integer weights dequantized), or None if it has none.

    Integer weights are only taken with zero points of 0, where a stored 0 is a real 0.
    """
    data = graph.const_value(value)
    if data is None:
        return None
    if is_float(value.dtype):
        return np.asarray(data, dtype=np.float32)
    quant = value.type.quant
    if quant is None or any(quant.zero_point) or quant.group_size is not None:
        return None
    scale = quant.scale_array()
    if quant.axis is not None:
        shape = [1] * data.ndim
        shape[quant.axis] = -1
        scale = scale.reshape(shape)
    return data.astype(np.float32) * scale


# --- the report ------------------------------------------------------------------------------


@dataclass
class LayerPrune:
    """One weight layer before and after pruning."""

    name: str
    op: str
    shape_before: list[int]
    shape_after: list[int]
    params_before: int
    params_after: int
    zeros_after: int
    macs_before: int
    macs_after: int
    effective_macs_after: int

    @property
    def sparsity(self) -> float:
        """Fraction of the remaining weights that are zero."""
        return self.zeros_after / self.params_after if self.params_after else 0.0


@dataclass
class PruneReport:
    """Per-layer and total parameters, sparsity and MACs before and after a pruning pass."""

    pass_name: str
    layers: list[LayerPrune] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    nonzero_before: int = 0
    nonzero_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    effective_macs_before: int = 0
    effective_macs_after: int = 0
    notes: list[str] = field(default_factory=list)
    #: Structured pruning: the kept output channels of each source layer, by layer name.
    kept: dict[str, list[int]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return (self.params_before, self.nonzero_before) != (self.params_after, self.nonzero_after)

    @property
    def weight_sparsity(self) -> float:
        """Fraction of zero weights over all weight layers after pruning."""
        total = sum(r.params_after for r in self.layers)
        return sum(r.zeros_after for r in self.layers) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, layer in zip(data["layers"], self.layers, strict=True):
            row["sparsity"] = round(layer.sparsity, 4)
        data["weight_sparsity"] = round(self.weight_sparsity, 4)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        rows = [
            {
                "layer": r.name,
                "op": r.op,
                "shape": _shape_change(r.shape_before, r.shape_after),
                "params": f"{r.params_before} -> {r.params_after}",
                "sparsity": f"{100 * r.sparsity:.1f}%",
                "MACs": f"{r.macs_before} -> {r.macs_after}",
                "eff. MACs": r.effective_macs_after,
            }
            for r in self.layers
        ]
        total = (
            f"total: params {self.params_before:,} -> {self.params_after:,} "
            f"(non-zero {self.nonzero_before:,} -> {self.nonzero_after:,}, "
            f"{_ratio(self.nonzero_before, self.nonzero_after)}), "
            f"MACs {self.macs_before:,} -> {self.macs_after:,}, effective MACs "
            f"{self.effective_macs_before:,} -> {self.effective_macs_after:,} "
            f"({_ratio(self.effective_macs_before, self.effective_macs_after)})"
        )
        parts = [f"{self.pass_name}:", format_table(rows), total]
        parts += [f"note: {n}" for n in self.notes]
        return "\n".join(parts)


def _shape_change(before: list[int], after: list[int]) -> str:
    fmt = "x".join
    return fmt(map(str, before)) + ("" if before == after else " -> " + fmt(map(str, after)))


def _ratio(before: int, after: int) -> str:
    return f"{before / after:.2f}x smaller" if after else "all removed"


@dataclass
class _Snapshot:
    """A graph's weight layers and totals at one moment (arrays are not copied)."""

    layers: dict[str, tuple[str, list[int], int, int, int]]  # name -> op, shape, n, zeros, macs
    params: int
    nonzero: int
    macs: int
    effective_macs: int


def snapshot(graph: Graph) -> _Snapshot:
    """Measure ``graph``: parameters (constants used by compute nodes), zeros, MACs."""
    layers: dict[str, tuple[str, list[int], int, int, int]] = {}
    for node in weight_layers(graph):
        data = graph.const_value(node.inputs[1])
        assert data is not None
        layers[layer_name(node)] = (
            node.op,
            [int(d) for d in data.shape],
            int(data.size),
            int(data.size - np.count_nonzero(data)),
            node_macs(node),
        )
    seen: dict[int, np.ndarray] = {}
    for node in graph.compute_nodes():
        for value in node.inputs:
            data = graph.const_value(value)
            if data is not None and data.ndim > 0:
                seen[id(value)] = data
    params = sum(int(d.size) for d in seen.values())
    nonzero = sum(int(np.count_nonzero(d)) for d in seen.values())
    macs = sum(node_macs(n) for n in graph.compute_nodes())
    dense_macs = sum(v[4] for v in layers.values())
    eff = macs - dense_macs + sum(_effective(v[4], v[2], v[3]) for v in layers.values())
    return _Snapshot(layers, params, nonzero, macs, eff)


def _effective(macs: int, size: int, zeros: int) -> int:
    return int(math.floor(macs * (size - zeros) / size)) if size else 0


def compare(pass_name: str, before: _Snapshot, after: _Snapshot) -> PruneReport:
    """The report of a pass that turned graph state ``before`` into ``after``."""
    report = PruneReport(
        pass_name,
        params_before=before.params,
        params_after=after.params,
        nonzero_before=before.nonzero,
        nonzero_after=after.nonzero,
        macs_before=before.macs,
        macs_after=after.macs,
        effective_macs_before=before.effective_macs,
        effective_macs_after=after.effective_macs,
    )
    for name, (op, shape, size, _zeros, macs) in before.layers.items():
        op_after, shape_after, size_after, zeros_after, macs_after = after.layers.get(
            name, (op, [0] * len(shape), 0, 0, 0)
        )
        report.layers.append(
            LayerPrune(
                name,
                op,
                shape,
                shape_after,
                size,
                size_after,
                zeros_after,
                macs,
                macs_after,
                _effective(macs_after, size_after, zeros_after),
            )
        )
    return report


# --- publishing reports from passes ----------------------------------------------------------


def publish(ctx: PassContext, report: PruneReport) -> None:
    """Hand a pass's report to the run's ``ctx.prune_reports`` and log it."""
    log.info("%s", report.format())
    ctx.prune_reports.append(report)
