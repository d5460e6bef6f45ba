"""Lowering a quantized graph to a ``Design``: the walk over the graph and its shared state.

``unsupported(graph, target)`` asks every node's rule whether it can be lowered and lists all
that cannot, before anything is built. ``build_design`` walks the nodes in order and calls
each rule's ``lower``; rules create layers and the buffers their results live in through
the ``Lowering`` context. The rules themselves are in ``backends.hls.rules``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.c_emitter import CTYPES
from backends.c_names import Namer
from backends.hls.design import Buffer, Design, InputEdge, Layer, OutputEdge, Port
from backends.hls.islands import island_sources, island_table, tabulable
from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import zero_point
from compiler.ir.ops import OPS
from compiler.ir.types import is_float, is_int
from compiler.rules import Rule, unsupported_nodes
from compiler.specialize import is_static, specialize

#: Why a node with a float operand has no HLS kernel.
FLOAT_OPERAND = "float operand: run quantize first (the FPGA backend computes in integers)"

if TYPE_CHECKING:
    from compiler.target import Target

#: Names a layer ``name`` also defines (its constant arrays and config struct).
LAYER_SUFFIXES = ("_w", "_b", "_m", "_s", "_rm", "_table", "_config")
#: Widest AXI-Stream beat the generator packs a tensor into, in bits.
MAX_BEAT_BITS = 512


def where(node: Node) -> str:
    """How an Unsupported item names a node: its source location, else its result."""
    if node.loc:
        return node.loc
    return f"%{node.outputs[0].name}" if node.outputs else node.op


def is_nhwc(value: Value) -> bool:
    """4-D activations of batch 1 are stored NHWC."""
    shape = value.type.shape
    return len(shape) == 4 and shape[0] == 1


class Lowering:
    """The state rules share while lowering one graph."""

    def __init__(self, graph: Graph, target: Target | None, port_layout: str = "nhwc") -> None:
        self.graph = graph
        self.target = target
        self.namer = Namer({"x", "y"})
        self.island = island_sources(graph)
        self.buffers: dict[Value, Buffer] = {}
        self.declared: list[Buffer] = []
        self.layers: list[Layer] = []
        self.covered: set[int] = set()  # ids of nodes lowered as part of another node
        self.port_layout = port_layout  # 4-D ports: "nhwc" or "nchw" (see build_design)

    # ---- reading the graph ---------------------------------------------------------------
    def attrs(self, node: Node) -> dict[str, Any]:
        return OPS[node.op].with_defaults(node.attrs)

    def const(self, value: Value) -> np.ndarray | None:
        return self.graph.const_value(value)

    #: The one zero point an integer op reads (``compiler.ir.op_facts``).
    zero_point = staticmethod(zero_point)

    def users(self, value: Value) -> list[Node]:
        return [n for n, _ in value.uses]

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self.graph.outputs)

    # ---- building ------------------------------------------------------------------------
    def layer_name(self, node: Node) -> str:
        hint = node.loc or node.outputs[0].name
        return self.namer.ident(hint, "layer", LAYER_SUFFIXES)

    def buffer(self, value: Value) -> Buffer:
        """The C array holding ``value`` (declared on first use)."""
        if value not in self.buffers:
            shape = tuple(int(d) for d in value.type.shape)
            buf = Buffer(value, self.namer.ident(value.name), value.dtype, shape, is_nhwc(value))
            self.buffers[value] = buf
            self.declared.append(buf)
        return self.buffers[value]

    def temp(self, like: Value, hint: str, nhwc: bool, shape: tuple[int, ...]) -> Buffer:
        buf = Buffer(like, self.namer.ident(hint), like.dtype, shape, nhwc)
        self.declared.append(buf)
        return buf

    def alias(self, value: Value, buf: Buffer, perm: np.ndarray | None = None) -> None:
        """``value`` lives in ``buf``'s memory (same element order, or ``perm``: no copy)."""
        shape = tuple(int(d) for d in value.type.shape)
        self.buffers[value] = Buffer(value, buf.name, value.dtype, shape, is_nhwc(value), perm)

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)

    def cover(self, node: Node) -> None:
        self.covered.add(id(node))


def ir_order(buf: Buffer) -> bool:
    """The buffer's memory order equals the IR's row-major order."""
    if buf.perm is not None:
        return False
    if not buf.nhwc:
        return True
    h, w, c = buf.hwc
    return c == 1 or h * w == 1


def no_ctype(node: Node) -> str | None:
    """Why an integer operand or result of ``node`` has no C type in the kernels (u16..u64
    and the narrow types have none), or None; float operands have their own reason."""
    for value in [*node.inputs, *node.outputs]:
        if not is_float(value.dtype) and value.dtype not in CTYPES:
            return f"{value.dtype} tensors have no C type in the HLS kernels"
    return None


def rule_for(node: Node, low: Lowering) -> Rule[Any, Any] | None:
    """The rule of ``node``: float math inside an island is part of a lookup table."""
    from backends.hls.rules import RULES, island_rule

    if node.outputs and node.outputs[0] in low.island:
        return island_rule
    return RULES.get(node.op)


def _no_rule(node: Node) -> str:
    if any(is_float(v.dtype) for v in [*node.inputs, *node.outputs]):
        return FLOAT_OPERAND
    return "no HLS kernel for this op"


def batch_one(graph: Graph) -> Graph:
    """``graph`` with its symbolic batch dimensions set to 1 (a copy), or itself if static.

    An FPGA design computes one sample per call; symbols elsewhere stay symbolic (and are then
    reported as unsupported).
    """
    if is_static(graph):
        return graph
    binding = {
        v.type.shape[0]: 1
        for v in graph.inputs
        if v.type.rank >= 2 and isinstance(v.type.shape[0], str)
    }
    if not binding:
        return graph
    copy = graph.copy()
    specialize(copy, binding)
    return copy


def unsupported(graph: Graph, target: Target | None) -> list[Unsupported]:
    """Every node the HLS backend cannot take, each with the reason, and bad graph edges."""
    from backends.hls.rules import RULES

    graph = batch_one(graph)
    low = Lowering(graph, target)
    items = unsupported_nodes(graph, low, RULES, _no_rule, rule_for=rule_for,
                              guard=lambda node, rule, ctx: no_ctype(node), where=where)
    for value in graph.inputs:
        reason = _input_reason(value, low)
        if reason:
            items.append(Unsupported("input", f"%{value.name}", reason))
    for value in graph.outputs:
        reason = _output_reason(value, low)
        if reason:
            items.append(Unsupported("output", f"%{value.name}", reason))
    return items


def _static_batch1(value: Value) -> str | None:
    shape = value.type.shape
    if not all(isinstance(d, int) for d in shape):
        return f"symbolic shape {list(shape)}: compile with example inputs (static shapes)"
    if len(shape) >= 2 and shape[0] != 1:
        return f"batch {shape[0]}: the FPGA design runs one sample per call; use batch 1"
    return None


def _input_reason(value: Value, low: Lowering) -> str | None:
    bad = _static_batch1(value)
    if bad:
        return bad
    if is_int(value.dtype):
        return None
    users = low.users(value)
    if not users or any(u.op != "q.quantize" for u in users):
        return "float input must feed only q.quantize (run quantize first)"
    quants = {(u.outputs[0].dtype, u.outputs[0].type.quant) for u in users}
    if len(quants) > 1:
        return "float input is quantized twice with different parameters"
    qp = users[0].outputs[0].type.quant
    if qp is None or qp.axis is not None:
        return "input quantization must be per tensor"
    return None


def _output_reason(value: Value, low: Lowering) -> str | None:
    bad = _static_batch1(value)
    if bad:
        return bad
    if is_int(value.dtype):
        return None
    if _dequantized(value) is not None:
        return None
    src = low.island.get(value)
    if src is None:
        return "float output not computed from an integer tensor (run quantize first)"
    if not tabulable(src):
        return f"float function of a {src.dtype} tensor: tables need an 8-bit source"
    return None


def _dequantized(value: Value) -> Value | None:
    """The integer value ``value`` is ``q.dequantize`` of, if it is."""
    node = value.producer
    if node is not None and node.op == "q.dequantize" and is_int(node.inputs[0].dtype):
        return node.inputs[0]
    return None


def build_design(graph: Graph, target: Target, top: str, port_layout: str = "nhwc") -> Design:
    """Lower every node (``unsupported`` must have returned nothing).

    ``port_layout``: 4-D tensors cross the ports as NHWC (the kernels' order: no conversion
    in hardware; the host converts) or as ``nchw`` (the model's order: the top function
    converts, one element per cycle).
    """
    low = Lowering(graph, target, port_layout)
    top_name = low.namer.ident(top, "top", ("_h", "_cpp"))
    in_edges = [_input_edge(v, low) for v in graph.inputs]
    for node in graph.nodes:
        if node.op == "const" or id(node) in low.covered:
            continue
        rule = rule_for(node, low)
        assert rule is not None, "unsupported() must have refused it"
        rule.lower(node, low)
    out_edges = _output_edges(graph, low)
    in_ports = _unique_ports([e.port for e in in_edges])
    out_ports = _unique_ports([e.port for e in out_edges])
    edge_in, edge_out = _edge_layers(in_ports, out_ports, low)
    return Design(
        top=top_name,
        graph_name=graph.name,
        interface=target.fpga.interface if target.fpga else "axis",
        layers=low.layers,
        buffers=low.declared,
        inputs=in_edges,
        outputs=out_edges,
        in_ports=in_ports,
        out_ports=out_ports,
        edge_in=edge_in,
        edge_out=edge_out,
    )


def _packet(buf: Buffer) -> int:
    """Elements per AXI-Stream beat: the largest divisor of the size within MAX_BEAT_BITS."""
    limit = max(1, MAX_BEAT_BITS // buf.bits)
    return max(k for k in range(1, min(buf.size, limit) + 1) if buf.size % k == 0)


def _port(value: Value, buf: Buffer, low: Lowering, direction: str) -> Port:
    name = low.namer.ident(f"{value.name}_{direction}", "port", ("_t", "_size"))
    edge = buf
    if not ir_order(buf) and low.port_layout == "nchw":
        edge = low.temp(buf.value, f"{value.name}_{direction}_ir", False, buf.shape)
    return Port(name, buf, edge, _packet(buf))


def _input_edge(value: Value, low: Lowering) -> InputEdge:
    if is_int(value.dtype):
        return InputEdge(value, _port(value, low.buffer(value), low, "in"))
    users = low.users(value)
    if not users:
        raise BackendError(f"input %{value.name} is unused")
    q_out = users[0].outputs[0]
    buf = low.buffer(q_out)
    for user in users:  # every user is a q.quantize with the same parameters (checked)
        low.cover(user)
        if user.outputs[0] is not q_out:
            low.alias(user.outputs[0], buf)
    qp = q_out.type.quant
    assert qp is not None
    port = _port(value, buf, low, "in")
    return InputEdge(value, port, float(qp.scale[0]), int(qp.zero_point[0]))


def _output_edges(graph: Graph, low: Lowering) -> list[OutputEdge]:
    edges = []
    ports: dict[str, Port] = {}
    for value in graph.outputs:
        deq = _dequantized(value)
        src = value if is_int(value.dtype) else deq if deq is not None else low.island[value]
        buf = low.buffers[src] if src in low.buffers else low.buffer(src)
        port = ports.get(buf.name) or _port(src, buf, low, "out")
        ports[buf.name] = port
        if is_int(value.dtype):
            edges.append(OutputEdge(value, port, "int"))
        elif deq is not None:
            edges.append(_dequantize_edge(value, port, deq))
        else:
            table = island_table(graph, value, src).astype(np.float32)
            edges.append(OutputEdge(value, port, "table", table=table))
    return edges


def _dequantize_edge(value: Value, port: Port, src: Value) -> OutputEdge:
    qp = src.type.quant
    if qp is None:
        raise BackendError(f"%{src.name} is dequantized but has no quantization parameters")
    scales = qp.scale_array()
    zps = qp.zero_point_array()
    inner = 1
    if qp.axis is not None and scales.size > 1:
        shape = [int(d) for d in src.type.shape]
        inner = math.prod(shape[qp.axis % len(shape) + 1 :])
    return OutputEdge(value, port, "dequantize", scales, zps, inner)


def _unique_ports(ports: list[Port]) -> list[Port]:
    seen: dict[str, Port] = {}
    for p in ports:
        seen.setdefault(p.name, p)
    return list(seen.values())


def _edge_layers(
    ins: list[Port], outs: list[Port], low: Lowering
) -> tuple[list[Layer], list[Layer]]:
    """NCHW <-> NHWC conversions between the ports (IR order) and the layers' buffers."""
    from backends.hls.rules import layout_layer

    edge_in = [layout_layer(low, p.edge, p.buffer, "in") for p in ins if p.edge is not p.buffer]
    edge_out = [layout_layer(low, p.buffer, p.edge, "out") for p in outs if p.edge is not p.buffer]
    return edge_in, edge_out
