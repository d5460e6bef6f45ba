"""recognize-attention: ``softmax(q @ k^T * scale + mask) @ v`` becomes ``nn.attention``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from compiler.errors import ShapeError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import broadcast_shapes, norm_axis
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import const_ref, is_dead, morph, other_operand, producer, scalar, sole_user

if TYPE_CHECKING:
    from compiler.context import PassContext

#: A fill at or below this is "masked out": exp() of it underflows to 0 in float32, so
#: softmax gives what a -inf fill gives (HF models fill with finfo.min, older ones with -1e9).
MASKED = -1e9
_MAX_MASKS = 2  # a constant causal mask and one data-dependent mask


@dataclass
class _Core:
    """What the matcher found, walking up from the final matmul."""

    v: Value
    scale: float = 1.0
    causal: bool = False
    mask: Value | np.ndarray | None = None  # a keep-mask (bool) or additive (float) mask
    negate_mask: bool = False  # the mask is "True = masked out" (masked_fill form)
    mask_name: str = "attention_mask"  # for a mask computed here from a constant
    chain: list[Node] = field(default_factory=list)  # intermediates that must be single-use


def _is_causal(keep: np.ndarray, scores: Value) -> bool:
    """``keep`` (True = attend) is the lower triangle the interpreter's ``causal`` uses."""
    shape = scores.type.shape
    if keep.ndim < 2 or any(d != 1 for d in keep.shape[:-2]) or keep.shape[-2:] != shape[-2:]:
        return False
    length, source = keep.shape[-2:]
    want = np.tril(np.ones((length, source), dtype=bool), k=source - length)
    return bool(np.array_equal(keep.reshape(length, source), want))


def _as_keep(data: np.ndarray, masked_out: bool) -> np.ndarray | None:
    """True where a constant mask lets attention through (None if it is not a mask)."""
    if data.dtype == np.bool_:
        return ~data if masked_out else data
    if np.all((data == 0) | (data <= MASKED)):
        return data == 0  # an additive 0 / -inf mask: where it is 0, attend
    return None


def _sliced_triangle(graph: Graph, value: Value, masked_out: bool) -> bool:
    """``buffer[:n, :n]`` (one or two slices) of a constant causal buffer: a leading square
    block of a lower triangle is a lower triangle, whatever ``n`` is (symbolic included)."""
    ends: dict[int, object] = {}
    while (node := producer(value, "tensor.slice")) is not None:
        rank = node.inputs[0].type.rank
        a = node.attrs
        axes = a["axes"] if a.get("axes") is not None else range(len(a["starts"]))
        for axis, start, end, step in zip(
            axes, a["starts"], a["ends"], a.get("steps") or [1] * len(a["starts"]), strict=True
        ):
            if start != 0 or step != 1 or norm_axis(axis, rank) < rank - 2:
                return False
            ends.setdefault(norm_axis(axis, rank) - rank, end)
        value = node.inputs[0]
    data = graph.const_value(value)
    if data is None or data.ndim < 2 or set(ends) != {-2, -1} or ends[-2] != ends[-1]:
        return False
    keep = _as_keep(data, masked_out)
    size = data.shape[-1]
    if keep is None or data.shape[-2] != size or any(d != 1 for d in data.shape[:-2]):
        return False
    return bool(np.array_equal(keep.reshape(size, size), np.tril(np.ones((size, size), bool))))


def _add_mask(
    core: _Core, mask: Value | np.ndarray, keep: np.ndarray | None, causal: bool, scores: Value
) -> Reject | None:
    """Record one mask: nothing if it keeps everything, ``causal`` if it is the triangle."""
    if keep is not None and bool(keep.all()):
        return None  # attends everywhere (BERT's mask of an unpadded batch): no mask at all
    causal = causal or (keep is not None and _is_causal(keep, scores))
    if causal and not core.causal:
        core.causal = True
        return None
    if core.mask is not None:
        return Reject("more than one non-causal mask")
    shape = mask.shape if isinstance(mask, np.ndarray) else mask.type.shape
    try:
        fits = broadcast_shapes(tuple(shape), scores.type.shape) == scores.type.shape
    except ShapeError:
        fits = False
    if not fits:
        return Reject("mask shape is not broadcastable to the scores")
    core.mask = mask
    return None


def _peel_mask(graph: Graph, core: _Core, scores: Value) -> Value | Reject:
    """Walk up through ``where(keep, s, -inf)``, ``where(masked, -inf, s)`` and ``s + mask``."""
    for _ in range(_MAX_MASKS):
        node = scores.producer
        if node is None:
            return scores
        masked_out = False
        if node.op == "tensor.where":
            mask_value, a, b = node.inputs
            fill_a, fill_b = scalar(graph, a), scalar(graph, b)
            if fill_b is not None and fill_b <= MASKED:
                inner = a
            elif fill_a is not None and fill_a <= MASKED:
                inner, masked_out = b, True
            else:
                return scores
        elif node.op == "math.add" and (found := _scores_operand(graph, node)) is not None:
            inner, mask_value = found, other_operand(node, found)
        else:
            return scores
        data = graph.const_value(mask_value)
        keep = None if data is None else _as_keep(data, masked_out)
        causal = keep is None and _sliced_triangle(graph, mask_value, masked_out)
        # A masked_fill condition (True = masked out) is negated into a keep-mask.
        mask = keep if keep is not None and masked_out else mask_value
        if (reason := _add_mask(core, mask, keep, causal, inner)) is not None:
            return reason
        if core.mask is mask:
            core.negate_mask = masked_out and keep is None
            core.mask_name = const_ref(mask_value) + "_keep"
        core.chain.append(node)
        scores = inner
    return scores


def _scores_operand(graph: Graph, add: Node) -> Value | None:
    """Which operand of ``scores + mask`` is the scores: the one a matmul computes."""
    for value in add.inputs:
        scaled = _peel_scale(graph, _Core(value), value)
        if not isinstance(scaled, Reject) and producer(scaled, "nn.matmul") is not None:
            return value
    return None


def _peel_scale(graph: Graph, core: _Core, scores: Value) -> Value | Reject:
    """``qk * c``, ``c * qk`` or ``qk / c`` with ``qk`` a matmul: fold c into ``core.scale``."""
    node = producer(scores, "math.mul", "math.div")
    if node is None:
        return scores
    a, b = node.inputs
    sides = [(a, b)] if node.op == "math.div" else [(a, b), (b, a)]
    for inner, other in sides:
        if producer(inner, "nn.matmul") is None:
            continue
        c = scalar(graph, other)
        if c is None or c == 0 or node.output.type != inner.type:
            return Reject("scale is not a scalar constant")
        core.scale = core.scale / c if node.op == "math.div" else core.scale * c
        core.chain.append(node)
        return inner
    return scores


def _unscale(graph: Graph, core: _Core, value: Value) -> Value:
    """An operand multiplied by a scalar constant only for this product: fold the scalar."""
    node = producer(value, "math.mul")
    if node is None or sole_user(graph, value) is None:
        return value
    for inner, c in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        factor = scalar(graph, c)
        if factor is not None and inner.type == value.type:
            core.scale *= factor
            return inner
    return value


def _untranspose(graph: Graph, kt: Value, anchor: Node) -> Value:
    """k from k^T: undo the swap of the last two axes (reusing a transpose that made k^T)."""
    source, perm = kt, list(range(kt.type.rank))
    node = producer(kt, "tensor.transpose")
    if node is not None:
        source, perm = node.inputs[0], list(node.attrs["perm"])
    perm[-2], perm[-1] = perm[-1], perm[-2]
    if perm == sorted(perm):
        return source
    return graph.add_node(
        "tensor.transpose",
        [source],
        {"perm": perm},
        names=[kt.name + "_k"],
        loc=anchor.loc,
        before=anchor,
    ).output


def _match(graph: Graph, node: Node) -> tuple[_Core, Node] | Reject | None:
    probs, v = node.inputs
    softmax = producer(probs, "nn.softmax")
    if softmax is None or not is_float(v.dtype):
        return None
    rank = probs.type.rank
    if norm_axis(softmax.attrs.get("axis", -1), rank) != rank - 1:
        return Reject("softmax is not over the last axis")
    core = _Core(v, chain=[softmax])
    scores = _peel_mask(graph, core, softmax.inputs[0])
    if isinstance(scores, Reject):
        return scores
    qk = _peel_scale(graph, core, scores)
    if isinstance(qk, Reject):
        return qk
    first = producer(qk, "nn.matmul")
    if first is None:
        return None
    core.chain.append(first)
    if any(sole_user(graph, n.output) is None for n in core.chain):
        return Reject("an intermediate of the attention has other users")
    return core, first


@dataclass(frozen=True)
class RecognizeAttention(RewritePass):
    """``softmax(q @ k^T * scale + mask) @ v`` -> ``nn.attention(q, k, v[, mask])``.

    Before (the multi-head split: reshape and transposes of a projection)::

        %kt: f32[1,4,16,32] = tensor.transpose(%kh) {perm=[0,1,3,2]}
        %s: f32[1,4,32,32] = nn.matmul(%q, %kt)
        %ss: f32[1,4,32,32] = math.mul(%s, %scale)          // or div by sqrt(d)
        %m: f32[1,4,32,32] = tensor.where(%future, %ninf, %ss)  // masked_fill, %future const
        %p: f32[1,4,32,32] = nn.softmax(%m) {axis=-1}
        %y: f32[1,4,32,16] = nn.matmul(%p, %v)

    After::

        %y: f32[1,4,32,16] = nn.attention(%q, %kh, %v) {causal=true, scale=0.25}

    Masks: ``where(keep, s, fill)``, ``where(masked, fill, s)`` (fill -inf or <= -1e9) and
    ``s + mask``. A constant mask equal to the lower triangle (after slicing a registered
    buffer and constant folding) becomes ``causal=true``; any other mask is the fourth
    operand (a ``math.not`` is inserted for a masked_fill-style condition). The scale may sit
    on the scores or on q / k^T; none means ``scale=1``. k^T may be any transpose: k is its
    operand with the last two axes swapped back (the reshapes/transposes of the head split
    stay as they are). Must not fire when the softmax is not over the last axis, the scale is
    not a constant, the mask does not broadcast to the scores, or an intermediate (scores,
    weights) has another user.
    """

    name: ClassVar[str] = "recognize-attention"

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op != "nn.matmul" or is_dead(graph, node):
            return None
        found = _match(graph, node)
        if not isinstance(found, tuple):
            return found
        core, first = found
        q = _unscale(graph, core, first.inputs[0])
        kt = _unscale(graph, core, first.inputs[1])
        if not q.type.rank == kt.type.rank == core.v.type.rank:
            return Reject("q, k and v have different ranks")
        operands = [q, _untranspose(graph, kt, node), core.v]
        if isinstance(core.mask, np.ndarray):
            operands.append(graph.add_const(core.mask_name, core.mask))
        elif core.mask is not None:
            mask = core.mask
            if core.negate_mask:
                mask = graph.add_node(
                    "math.not", [mask], names=[mask.name + "_keep"], loc=node.loc, before=node
                ).output
            operands.append(mask)
        morph(
            graph,
            node,
            "nn.attention",
            operands,
            {"scale": float(np.float32(core.scale)), "causal": core.causal},
        )
        return True
