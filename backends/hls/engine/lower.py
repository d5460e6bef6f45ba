"""Lowering a quantized graph to engine steps: the walk, the DDR arena and the edges.

Every integer tensor gets a place in the activation arena (``Tensor``: offset, NHWC geometry,
zero point). 4-D tensors ``[1, C, H, W]`` are stored NHWC; the others in the IR's row-major
order, read as ``H = 1, W = pixels, C = last dim``. A reshape only renames memory, so a
tensor's memory order can differ from the IR's row-major order of its shape: ``perm[m]`` is
the IR (row-major) index of the element at memory position ``m`` (None: the same order). A
dense layer absorbs any ``perm`` by permuting its weight columns; the host absorbs it at the
outputs; other ops need their operand in its natural order.

The rules themselves (op -> check, lower) are in ``backends.hls.engine.rules``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.c_names import Namer
from backends.hls.engine.schedule import ALIGN, Step
from backends.hls.islands import island_sources, island_table, tabulable
from backends.hls.plan import no_ctype, where
from compiler.errors import BackendError, Unsupported, UnsupportedOpsError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import zero_point
from compiler.ir.types import is_int
from compiler.rules import Rule, unsupported_nodes

if TYPE_CHECKING:
    from compiler.target import Target


@dataclass
class Tensor:
    """An int8 tensor in the activation arena."""

    value: Value
    offset: int
    h: int
    w: int
    c: int
    ps: int  # pixel stride: c, or more for a channel slice of a wider tensor
    zp: int
    perm: np.ndarray | None = None

    @property
    def pixels(self) -> int:
        return self.h * self.w

    @property
    def nbytes(self) -> int:
        return self.pixels * self.c


def geometry(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) the engine sees for a batch-1 tensor of IR ``shape``."""
    if len(shape) == 4:
        return shape[2], shape[3], shape[1]
    if len(shape) <= 1:
        return 1, 1, int(shape[0]) if shape else 1
    return 1, math.prod(shape[1:-1]), shape[-1]


def natural_perm(shape: tuple[int, ...]) -> np.ndarray | None:
    """The memory order of a freshly written tensor of ``shape`` (NHWC for 4-D)."""
    if len(shape) != 4:
        return None
    _, c, h, w = shape
    if c == 1 or h * w == 1:
        return None
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def same_perm(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def shape_of(value: Value) -> tuple[int, ...]:
    """The static shape of ``value``; the engine sizes every buffer at compile time, so a
    symbolic dimension is a BackendError naming the value."""
    if not is_static(value):
        raise BackendError(
            f"{value.name} has the symbolic shape {list(value.type.shape)}; "
            "the FPGA engine needs every dimension at compile time"
        )
    return tuple(int(d) for d in value.type.shape)


def is_static(value: Value) -> bool:
    return all(isinstance(d, int) for d in value.type.shape)


class EngineLowering:
    """State the rules share: the arena, the tensors, the steps."""

    def __init__(self, graph: Graph, target: Target | None) -> None:
        self.graph = graph
        self.target = target
        self.island = island_sources(graph)
        self.namer = Namer(set())
        self.tensors: dict[Value, Tensor] = {}
        self.steps: list[Step] = []
        self.covered: set[int] = set()
        self.arena = 0
        self.inputs: list[tuple[Value, Tensor]] = []  # graph input -> its arena tensor

    def const(self, value: Value) -> np.ndarray | None:
        return self.graph.const_value(value)

    def users(self, value: Value) -> list[Node]:
        return [n for n, _ in value.uses]

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self.graph.outputs)

    def name(self, node: Node) -> str:
        return self.namer.ident(node.loc or node.outputs[0].name, "layer", ())

    def alloc(self, value: Value, channels: int | None = None) -> Tensor:
        """A fresh arena region for ``value`` (``channels``: a wider pixel stride)."""
        shape = shape_of(value)
        h, w, c = geometry(shape)
        ps = channels or c
        t = Tensor(value, self.arena, h, w, c, ps, zero_point(value), natural_perm(shape))
        self.arena += (h * w * ps + ALIGN - 1) // ALIGN * ALIGN
        self.tensors[value] = t
        return t

    def tensor(self, value: Value) -> Tensor:
        t = self.tensors.get(value)
        if t is None:
            raise BackendError(f"%{value.name} is read before the engine computed it")
        return t

    def natural(self, value: Value, node: Node) -> Tensor:
        """``value``'s tensor, which ``node`` reads in its natural (NHWC) order."""
        t = self.tensor(value)
        if not same_perm(t.perm, natural_perm(shape_of(value))) or t.ps != t.c:
            raise UnsupportedOpsError(
                [
                    Unsupported(
                        node.op,
                        where(node),
                        f"%{value.name} is a reshaped view the "
                        "engine would have to copy to reorder (not implemented)",
                    )
                ],
                what="the engine schedule",
            )
        return t

    def alias(self, value: Value, source: Value) -> None:
        """``value`` is ``source``'s memory read with another shape (a reshape)."""
        src = self.tensor(source)
        h, w, c = geometry(shape_of(value))
        self.tensors[value] = Tensor(value, src.offset, h, w, c, c, src.zp, src.perm)

    def add(self, step: Step) -> None:
        self.steps.append(step)


def int8(value: Value) -> bool:
    return value.dtype == "i8"


def check_edges(graph: Graph, low: EngineLowering) -> list[Unsupported]:
    """Graph inputs and outputs the engine's host side cannot convert."""
    items = []
    for value in graph.inputs:
        shape = value.type.shape
        if not all(isinstance(d, int) for d in shape) or (len(shape) >= 2 and shape[0] != 1):
            items.append(Unsupported("input", f"%{value.name}", "needs a static batch-1 shape"))
        elif is_int(value.dtype) and not int8(value):
            why = f"{value.dtype} input: the engine reads i8 tensors (token ids need an embedding)"
            items.append(Unsupported("input", f"%{value.name}", why))
        elif not int8(value):
            users = low.users(value)
            ok = users and all(u.op == "q.quantize" and int8(u.outputs[0]) for u in users)
            if not ok or len({str(u.outputs[0].type) for u in users}) != 1:
                items.append(
                    Unsupported(
                        "input",
                        f"%{value.name}",
                        "a float input must feed only q.quantize to i8 (one set of parameters)",
                    )
                )
    for value in graph.outputs:
        if int8(value):
            continue
        src = low.island.get(value)
        if src is None or not tabulable(src) or not int8(src):
            items.append(
                Unsupported(
                    "output",
                    f"%{value.name}",
                    "outputs must be i8 tensors, their dequantize, or a float function of one",
                )
            )
    return items


def input_tensors(graph: Graph, low: EngineLowering) -> list[tuple[Value, Tensor]]:
    """Arena places of the graph inputs (after their q.quantize, which the host does)."""
    placed = []
    for value in graph.inputs:
        if int8(value):
            placed.append((value, low.alloc(value)))
            continue
        users = low.users(value)
        first = users[0].outputs[0]
        t = low.alloc(first)
        for user in users:
            low.covered.add(id(user))
            low.tensors[user.outputs[0]] = t
        placed.append((value, t))
    return placed


def output_table(
    graph: Graph, value: Value, low: EngineLowering
) -> tuple[Value, np.ndarray | None]:
    """The i8 value an output is read from, and the float table that maps it (None: int)."""
    if int8(value):
        return value, None
    src = low.island[value]
    return src, island_table(graph, value, src).astype(np.float32)


def rule_for(node: Node, low: EngineLowering) -> Rule[Any, Any] | None:
    """The rule of ``node``: float math inside an island is one 256-entry table."""
    from backends.hls.engine.rules import RULES, island_rule

    if node.outputs and node.outputs[0] in low.island:
        return island_rule
    return RULES.get(node.op)


def lower_graph(graph: Graph, target: Target | None) -> EngineLowering:
    """Steps for every node (``unsupported`` must have returned nothing)."""
    low = EngineLowering(graph, target)
    low.inputs = input_tensors(graph, low)
    for node in graph.nodes:
        if node.op == "const" or id(node) in low.covered:
            continue
        rule = rule_for(node, low)
        assert rule is not None, "unsupported() must have refused it"
        rule.lower(node, low)
    return low


def unsupported(graph: Graph, target: Target | None) -> list[Unsupported]:
    """Every node and edge the engine cannot take, each with the reason (the shared walker;
    a graph input's own ``q.quantize`` runs on the host)."""
    from backends.hls.engine.rules import REFUSED, RULES

    low = EngineLowering(graph, target)
    items = unsupported_nodes(
        graph,
        low,
        RULES,
        lambda node: REFUSED.get(node.op, "no engine unit for this op"),
        rule_for=rule_for,
        skip=lambda node: node.op == "q.quantize" and node.inputs[0] in graph.inputs,
        guard=lambda node, rule, ctx: no_ctype(node),
        where=where,
    )
    return items + check_edges(graph, low)
