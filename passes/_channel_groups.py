"""Channel dependency analysis for structured pruning: which channels must go together.

Every conv / dense node starts a *channel group*: its output channels (weight dim 0). The
analysis follows each group through the graph in topological order and records every constant
that is indexed by those channels (``Slice``: the producer's weight rows and bias, batch-norm
parameters, a depthwise conv's filters, the consumer's weight columns) and every reshape whose
target shape mentions them. Through a flatten ``[N,C,H,W] -> [N,C*H*W]`` a channel becomes a
*block* of ``H*W`` consecutive features, so the consumer dense loses whole blocks of columns.

Values joined elementwise (a residual ``add``, or a conv's fused ``residual`` operand) must keep
the same channels: their groups are merged (union-find), so a ResNet stage, whose blocks are all
tied together by identity shortcuts, becomes one group pruned with one shared mask.

A group is *pinned* (left alone, with the reason) when its channels reach something the pass
cannot re-index: a graph output, a graph input joined elementwise, an op without a rule here
(concat, transpose, attention, layer norm over the channels, ...), a constant shared by several
users, or an already-quantized constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import OPS
from compiler.ir.types import Shape, is_float


@dataclass(frozen=True)
class Space:
    """Where a value's channels of group ``gid`` live: ``axis``, ``block`` entries per channel."""

    gid: int
    axis: int
    block: int = 1


@dataclass
class Slice:
    """A constant indexed by the group's channels along ``axis`` (``block`` entries each)."""

    value: Value
    axis: int
    block: int = 1


@dataclass
class Group:
    """Channels that must be pruned together, and everything that indexes them."""

    size: int
    sources: list[Node] = field(default_factory=list)  # conv/dense whose outputs these are
    norms: list[Node] = field(default_factory=list)  # batch norms applied to them
    slices: list[Slice] = field(default_factory=list)
    reshapes: list[tuple[Node, int, int]] = field(default_factory=list)  # node, position, block
    depthwise: list[Node] = field(default_factory=list)  # convs whose ``groups`` is the count
    pinned: list[str] = field(default_factory=list)


Handler = Callable[["ChannelAnalysis", Node], None]
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return register


class ChannelAnalysis:
    """Run the analysis over ``graph``; ``groups()`` returns the merged groups."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._groups: list[Group] = []
        self._parent: list[int] = []
        self._spaces: dict[int, Space] = {}
        for node in graph.compute_nodes():
            HANDLERS.get(node.op, _opaque)(self, node)
        for value in graph.outputs:
            self.pin_value(value, f"reaches graph output %{value.name}")

    # ---- union-find -------------------------------------------------------------------------
    def new_group(self, size: int) -> int:
        self._groups.append(Group(size))
        self._parent.append(len(self._parent))
        return len(self._parent) - 1

    def find(self, gid: int) -> int:
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def group(self, gid: int) -> Group:
        return self._groups[self.find(gid)]

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ga, gb = self._groups[ra], self._groups[rb]
        if ga.size != gb.size:
            ga.pinned.append(f"joined with a group of {gb.size} channels, not {ga.size}")
        for name in ("sources", "norms", "slices", "reshapes", "depthwise", "pinned"):
            getattr(ga, name).extend(getattr(gb, name))
        self._parent[rb] = ra
        return ra

    def groups(self) -> list[Group]:
        return [g for i, g in enumerate(self._groups) if self._parent[i] == i]

    # ---- spaces -----------------------------------------------------------------------------
    def space(self, value: Value) -> Space | None:
        s = self._spaces.get(id(value))
        return None if s is None else Space(self.find(s.gid), s.axis, s.block)

    def set_space(self, value: Value, space: Space | None) -> None:
        if space is not None:
            self._spaces[id(value)] = space

    def pin(self, gid: int, reason: str) -> None:
        self.group(gid).pinned.append(reason)

    def pin_value(self, value: Value, reason: str) -> None:
        s = self.space(value)
        if s is not None:
            self.pin(s.gid, reason)

    def slice_const(self, gid: int, value: Value, axis: int, block: int = 1) -> None:
        """Record that constant ``value`` is indexed by group ``gid`` along ``axis``."""
        if not value.is_const:
            self.pin(gid, f"%{value.name} is indexed by the channels but is not a constant")
        elif len(value.uses) > 1:
            self.pin(gid, f"constant %{value.name} is shared by {len(value.uses)} uses")
        elif not is_float(value.dtype):
            self.pin(gid, f"constant %{value.name} is {value.dtype}: prune before quantizing")
        else:
            self.group(gid).slices.append(Slice(value, axis, block))

    def join(self, space: Space, value: Value, out_rank: int, where: str) -> None:
        """``value`` meets channels ``space`` of a rank-``out_rank`` value elementwise."""
        s = self.space(value)
        offset = out_rank - value.type.rank
        if s is not None:
            if (s.axis + offset, s.block) != (space.axis, space.block):
                self.pin(space.gid, f"{where}: operands carry channels on different axes")
                self.pin(s.gid, f"{where}: operands carry channels on different axes")
            else:
                self.union(space.gid, s.gid)
            return
        axis = space.axis - offset
        if axis < 0 or value.type.shape[axis] == 1:
            return  # broadcast along the channels: nothing to re-index
        if value.is_const:
            self.slice_const(space.gid, value, axis, space.block)
        else:
            self.pin(space.gid, f"{where}: joined with %{value.name}, whose channels are fixed")


def _where(node: Node) -> str:
    return f"{node.op} {node.name}"


def channel_axis(node: Node) -> int:
    """The activation channel axis of a conv / pool / batch norm: 1, or last for NHWC."""
    rank = node.inputs[0].type.rank
    return rank - 1 if node.attrs.get("layout", "NCHW") == "NHWC" else 1


def _opaque(an: ChannelAnalysis, node: Node) -> None:
    for value in node.inputs:
        an.pin_value(value, f"used by {_where(node)}, which has no channel rule")


@handles("nn.conv1d", "nn.conv2d")
def _conv(an: ChannelAnalysis, node: Node) -> None:
    x, w = node.inputs[0], node.inputs[1]
    sx = an.space(x)
    if not w.is_const or not is_float(w.dtype):
        return _opaque(an, node)
    groups = int(node.attrs.get("groups") or 1)
    cin, cout = w.type.shape[1] * groups, int(w.type.shape[0])
    axis = channel_axis(node)
    if groups == 1:
        if sx is not None and (sx.axis, sx.block) == (axis, 1):
            an.slice_const(sx.gid, w, 1)
        elif sx is not None:
            an.pin(sx.gid, f"{_where(node)} takes the channels on another axis")
        gid = an.new_group(cout)
        an.group(gid).sources.append(node)
        an.slice_const(gid, w, 0)
        out = Space(gid, axis)
    elif groups == cin == cout:  # depthwise: channel c in, channel c out
        if sx is None:
            return
        if (sx.axis, sx.block) != (axis, 1):
            return _opaque(an, node)
        out = sx
        an.slice_const(out.gid, w, 0)
        an.group(out.gid).depthwise.append(node)
    else:
        return _opaque(an, node)
    if len(node.inputs) > 2:
        an.slice_const(out.gid, node.inputs[2], 0)
    if len(node.inputs) > 3:
        an.join(out, node.inputs[3], node.output.type.rank, _where(node))
    an.set_space(node.output, out)


@handles("nn.dense")
def _dense(an: ChannelAnalysis, node: Node) -> None:
    x, w = node.inputs[0], node.inputs[1]
    if not w.is_const or not is_float(w.dtype):
        return _opaque(an, node)
    sx = an.space(x)
    if sx is not None:
        if sx.axis != x.type.rank - 1:
            an.pin(sx.gid, f"{_where(node)} contracts another axis than the channels")
        else:
            an.slice_const(sx.gid, w, 1, sx.block)
    gid = an.new_group(int(w.type.shape[0]))
    an.group(gid).sources.append(node)
    an.slice_const(gid, w, 0)
    out = Space(gid, node.output.type.rank - 1)
    if len(node.inputs) > 2:
        an.slice_const(gid, node.inputs[2], 0)
    if len(node.inputs) > 3:
        an.join(out, node.inputs[3], node.output.type.rank, _where(node))
    an.set_space(node.output, out)


@handles("nn.batch_norm")
def _batch_norm(an: ChannelAnalysis, node: Node) -> None:
    s = an.space(node.inputs[0])
    if s is None:
        return
    if (s.axis, s.block) != (channel_axis(node), 1):
        return _opaque(an, node)
    for param in node.inputs[1:]:
        an.slice_const(s.gid, param, 0)
    an.group(s.gid).norms.append(node)
    an.set_space(node.output, s)


@handles(
    "nn.relu", "nn.relu6", "nn.leaky_relu", "nn.sigmoid", "nn.hardswish", "nn.hardsigmoid",
    "nn.gelu", "nn.silu", "nn.clip", "nn.dropout", "tensor.identity", "tensor.cast",
    "math.neg", "math.abs", "math.exp", "math.log", "math.sqrt", "math.rsqrt", "math.erf",
    "math.tanh", "math.reciprocal", "math.sin", "math.cos", "math.not",
)  # fmt: skip
def _elementwise(an: ChannelAnalysis, node: Node) -> None:
    an.set_space(node.output, an.space(node.inputs[0]))


@handles(
    "nn.max_pool2d", "nn.avg_pool2d", "nn.global_avg_pool", "nn.global_max_pool",
    "nn.adaptive_avg_pool2d", "nn.resize",
)  # fmt: skip
def _spatial(an: ChannelAnalysis, node: Node) -> None:
    s = an.space(node.inputs[0])
    if s is not None and (s.axis, s.block) != (channel_axis(node), 1):
        return _opaque(an, node)
    an.set_space(node.output, s)


@handles("nn.softmax", "nn.log_softmax")
def _softmax(an: ChannelAnalysis, node: Node) -> None:
    s = an.space(node.inputs[0])
    axis = int(OPS[node.op].with_defaults(node.attrs).get("axis", -1)) % node.output.type.rank
    if s is not None and s.axis == axis:
        return _opaque(an, node)
    an.set_space(node.output, s)


@handles(
    "math.add", "math.sub", "math.mul", "math.div", "math.maximum", "math.minimum",
    "math.pow", "tensor.where",
)  # fmt: skip
def _binary(an: ChannelAnalysis, node: Node) -> None:
    rank = node.output.type.rank
    spaced = [(v, s) for v in node.inputs if (s := an.space(v)) is not None]
    if not spaced:
        return
    value, s = spaced[0]
    base = Space(s.gid, s.axis + rank - value.type.rank, s.block)
    for other in node.inputs:
        if other is not value:
            an.join(base, other, rank, _where(node))
    an.set_space(node.output, base)


@handles("tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze")
def _reshape(an: ChannelAnalysis, node: Node) -> None:
    s = an.space(node.inputs[0])
    if s is None:
        return
    mapped = map_axis(node.inputs[0].type.shape, node.output.type.shape, s.axis, s.block)
    if mapped is None:
        return _opaque(an, node)
    axis, block = mapped
    if node.op == "tensor.reshape":
        an.group(s.gid).reshapes.append((node, axis, block))
    an.set_space(node.output, Space(s.gid, axis, block))


def map_axis(src: Shape, dst: Shape, axis: int, block: int) -> tuple[int, int] | None:
    """Where the channel axis of a ``src``-shaped tensor lands in its ``dst``-shaped reshape.

    Channel ``c`` of ``src`` is a contiguous run of ``block * prod(src[axis+1:])`` elements
    below the outer dims ``src[:axis]``; it stays a whole run in ``dst`` if some axis ``j`` has
    the same outer dims above it and splits that run into ``C`` equal blocks. Returns ``(j,
    block')`` or None when the channels get mixed or split.
    """
    tail = src[axis + 1 :]
    if not all(isinstance(d, int) for d in (src[axis], *tail)):
        return None
    channels = int(src[axis]) // block
    run = block * math.prod(int(d) for d in tail)
    exact = [j for j in range(len(dst)) if tuple(dst[:j]) == tuple(src[:axis])]
    for j in exact + [j for j in range(len(dst)) if j not in exact]:
        if not _same_outer(src[:axis], dst[:j]):
            continue
        inner = dst[j + 1 :]
        if not all(isinstance(d, int) for d in (dst[j], *inner)):
            return None
        inner_size = math.prod(int(d) for d in inner)
        if run % inner_size or dst[j] != channels * (run // inner_size):
            continue
        return j, run // inner_size
    return None


def _same_outer(a: Shape, b: Shape) -> bool:
    if tuple(a) == tuple(b):
        return True
    if all(isinstance(d, int) for d in (*a, *b)):
        return math.prod(int(d) for d in a) == math.prod(int(d) for d in b)
    return False
