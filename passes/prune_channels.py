"""``prune-channels``: structured pruning that physically removes output channels.

The pass ranks the output channels (filters) of conv / dense layers, keeps the best
``1 - ratio`` of them and removes the rest everywhere they appear: the producer's weight rows
and bias, the batch norm after it, a depthwise conv in between, and the matching input columns
of every consumer (a conv's weight dim 1; through a flatten, a dense's block of ``H*W``
columns per channel)::

    %w1: f32[16,1,3,3] = const @conv1.weight
    %c1: f32[1,16,8,8] = nn.conv2d(%x, %w1, %b1)
    %c2: f32[1,32,8,8] = nn.conv2d(%c1, %w2, %b2)            (%w2: f32[32,16,3,3])
      ==> ratio=0.5
    %w1: f32[8,1,3,3] = const @conv1.weight
    %c1: f32[1,8,8,8] = nn.conv2d(%x, %w1, %b1)
    %c2: f32[1,16,8,8] = nn.conv2d(%c1, %w2, %b2)            (%w2: f32[16,8,3,3])

Channels joined by an elementwise op (ResNet shortcuts) form one group with one shared mask,
scored by the sum of the members' normalized scores (see ``passes._channel_groups``).

Criteria (``criterion``): ``l1`` / ``l2`` norm of each filter; ``bn_scale``, the |gamma| of
the batch norms on the channels (network slimming; groups without one fall back to l1); and
``taylor``, first-order Taylor importance |sum(gradient x weight)| accumulated over batches of
real data. Taylor needs torch and data, so it is computed outside the IR
(``compiler.torchside.prune.taylor_importance``) and handed in as ``scores`` (layer name ->
one score per output channel), or through the pipeline's context (``PassContext.importance``).

Must not fire on channels it cannot re-index everywhere: those reaching a graph output (the
classifier's logits), joined with a graph input, used by an op without a channel rule, or held
in already-quantized constants. Run it before ``fold-batchnorm`` for ``bn_scale``, and before
``quantize``. The report gives params and MACs before and after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from compiler.ir.ops import infer_types
from compiler.ir.types import TensorType
from passes._channel_groups import ChannelAnalysis, Group
from passes._prune import (
    PruneReport,
    compare,
    const_ref,
    layer_name,
    matches,
    publish,
    set_const,
    snapshot,
)
from passes.prune_magnitude import LayerTargets, parse_layer_targets

if TYPE_CHECKING:
    from compiler.context import PassContext


class ImportanceScores(dict[str, np.ndarray]):
    """Layer name -> one importance per output channel; prints short, as a pass option."""

    @classmethod
    def of(cls, scores: Mapping[str, Sequence[float] | np.ndarray]) -> ImportanceScores:
        return cls({name: np.asarray(values) for name, values in scores.items()})

    def __str__(self) -> str:
        return f"<importance of {len(self)} layers>"

    __repr__ = __str__


Scorer = Callable[[Graph, Group, Mapping[str, np.ndarray]], "list[np.ndarray]"]


def _filter_norm(order: int) -> Scorer:
    def score(graph: Graph, group: Group, _: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = []
        for node in group.sources:
            w = graph.const_value(node.inputs[1])
            assert w is not None
            out.append(np.linalg.norm(w.reshape(w.shape[0], -1), ord=order, axis=1))
        return out

    return score


def _bn_scale(graph: Graph, group: Group, scores: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    gammas = [graph.const_value(bn.inputs[1]) for bn in group.norms]
    found = [np.abs(g) for g in gammas if g is not None]
    return found or _filter_norm(1)(graph, group, scores)


def _external(graph: Graph, group: Group, scores: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    found = []
    for node in [*group.sources, *group.norms]:
        names = [layer_name(node) if node in group.sources else const_ref(node.inputs[1])]
        names += [node.loc] if node.loc else []
        for name in names:
            if name in scores:
                found.append(np.abs(np.asarray(scores[name], dtype=np.float64)).reshape(-1))
                break
    if not found:
        missing = ", ".join(layer_name(n) for n in group.sources)
        raise TapeoutError(f"prune-channels: no importance scores given for layer(s) {missing}")
    return found


SCORERS: dict[str, Scorer] = {
    "l1": _filter_norm(1),
    "l2": _filter_norm(2),
    "bn_scale": _bn_scale,
    "taylor": _external,
}


def group_scores(
    graph: Graph, group: Group, criterion: str, scores: Mapping[str, np.ndarray]
) -> np.ndarray:
    """One importance per channel of ``group``: the members' scores, each normalized to mean 1."""
    total = np.zeros(group.size)
    for vector in SCORERS[criterion](graph, group, scores):
        if vector.shape != (group.size,):
            raise TapeoutError(
                f"prune-channels: {vector.size} scores for a group of {group.size} channels"
            )
        mean = float(np.mean(vector))
        total += vector / mean if mean > 0 else vector
    return total


def keep_count(channels: int, ratio: float, round_to: int = 1, min_channels: int = 1) -> int:
    """How many of ``channels`` to keep when pruning ``ratio`` of them."""
    keep = max(int(min_channels), int(round(channels * (1.0 - ratio))), 1)
    if round_to > 1:
        keep = int(math.ceil(keep / round_to) * round_to)
    return min(keep, channels)


def prune_channels(
    graph: Graph,
    ratio: float = 0.5,
    criterion: str = "l1",
    scores: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    round_to: int = 1,
    min_channels: int = 1,
    layers: LayerTargets = (),
    exclude: Sequence[str] = (),
) -> PruneReport:
    """Remove the least important channels of every prunable group of ``graph``, in place."""
    if criterion not in SCORERS:
        raise TapeoutError(f"unknown criterion {criterion!r}; expected one of {sorted(SCORERS)}")
    if not 0.0 <= ratio < 1.0:
        raise TapeoutError(f"prune-channels ratio must be in [0, 1), got {ratio}")
    if criterion == "taylor" and scores is None:
        raise TapeoutError(
            "prune-channels{criterion=taylor} needs scores (PassContext.importance): "
            "see compiler.torchside.prune"
        )
    named = {k: np.asarray(v) for k, v in (scores or {}).items()}
    targets = parse_layer_targets(layers)
    before = snapshot(graph)
    notes, plans = [], []
    for group in ChannelAnalysis(graph).groups():
        names = ", ".join(layer_name(n) for n in group.sources)
        if exclude and any(matches(n, exclude) for n in group.sources):
            group.pinned.append("excluded")
        if group.pinned:
            notes.append(f"kept {names} whole: {group.pinned[0]}")
            continue
        keep = keep_count(group.size, _ratio_of(group, targets, ratio), round_to, min_channels)
        if keep == group.size:
            continue
        importance = group_scores(graph, group, criterion, named)
        plans.append((group, np.sort(np.argsort(-importance, kind="stable")[:keep])))
    for group, kept in plans:
        apply_group(graph, group, kept)
    reinfer(graph)
    report = compare("prune-channels", before, snapshot(graph))
    report.notes += notes
    for group, kept in plans:
        report.kept.update({layer_name(n): [int(i) for i in kept] for n in group.sources})
    return report


def _ratio_of(group: Group, targets: dict[str, float], default: float) -> float:
    for name, value in targets.items():
        if any(matches(node, [name]) for node in group.sources):
            return value
    return default


def apply_group(graph: Graph, group: Group, kept: np.ndarray) -> None:
    """Keep only channels ``kept`` in every constant and reshape that indexes ``group``."""
    seen: set[tuple[int, int]] = set()
    for s in group.slices:
        if (id(s.value), s.axis) in seen:
            continue
        seen.add((id(s.value), s.axis))
        index = (kept[:, None] * s.block + np.arange(s.block)[None, :]).reshape(-1)
        data = graph.const_value(s.value)
        assert data is not None
        set_const(graph, s.value, np.ascontiguousarray(np.take(data, index, axis=s.axis)))
    for node, position, block in group.reshapes:
        shape = list(node.attrs["shape"])
        if shape[position] != -1:
            shape[position] = len(kept) * block
        node.attrs["shape"] = shape
    for node in group.depthwise:
        node.attrs["groups"] = len(kept)


def reinfer(graph: Graph) -> None:
    """Re-infer every node's output types after constants changed shape."""
    for node in graph.compute_nodes():
        types = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
        for out, t in zip(node.outputs, types, strict=True):
            out.type = TensorType(t.dtype, t.shape, out.type.quant)


@dataclass(frozen=True)
class PruneChannels:
    """Structured channel pruning (see the module docstring).

    ``prune-channels{ratio=0.5,criterion=l1,round_to=4,exclude=[conv1]}``
    """

    name: ClassVar[str] = "prune-channels"
    ratio: float = 0.5
    criterion: str = "l1"
    round_to: int = 1
    min_channels: int = 1
    layers: tuple[str, ...] | list[str] | dict[str, float] = ()
    exclude: tuple[str, ...] | list[str] = ()
    scores: Mapping[str, Sequence[float] | np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.scores is not None and not isinstance(self.scores, ImportanceScores):
            object.__setattr__(self, "scores", ImportanceScores.of(self.scores))

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        report = prune_channels(
            graph,
            self.ratio,
            self.criterion,
            self.scores if self.scores is not None else ctx.importance,
            self.round_to,
            self.min_channels,
            self.layers,
            self.exclude,
        )
        publish(ctx, report)
        return report.changed
