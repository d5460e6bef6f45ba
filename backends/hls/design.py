"""What the HLS backend builds from a graph, before any text is written.

A ``Design`` is the top function's ports, the C arrays that hold activations (``Buffer``),
and the layers (``Layer``): one kernel call each, with its config struct, its constant
arrays and the numbers the resource model needs (``Cost``). The rule table
(``backends.hls.rules``) makes layers from IR nodes; ``backends.hls.resources`` prices them;
``backends.hls.codegen`` prints them.

Layouts: a 4-D activation ``[1, C, H, W]`` lives in C as NHWC (``[H][W][C]``, channels
innermost), what the conv/pool kernels read; every other tensor keeps the IR's row-major
order. Ports always carry the IR's order; the top converts at the edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backends.c_emitter import ctype
from compiler.ir.graph import Node, Value


@dataclass
class Buffer:
    """A C array holding one integer IR value for one sample.

    ``perm``: memory position ``i`` holds element ``perm[i]`` of the value in the IR's
    row-major order (a flatten of an NHWC array that only dense layers read: they permute
    their weights instead of the activations being copied).
    """

    value: Value
    name: str
    dtype: str
    shape: tuple[int, ...]
    nhwc: bool
    perm: np.ndarray | None = None

    @property
    def ctype(self) -> str:
        return ctype(self.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def bits(self) -> int:
        return 8 * int(np.dtype(self.ctype.replace("_t", "")).itemsize)

    @property
    def hwc(self) -> tuple[int, int, int]:
        """(H, W, C) of a 4-D buffer."""
        _, c, h, w = self.shape
        return h, w, c


@dataclass
class Array:
    """A constant array of a layer (weights, biases, requantize parameters, a lookup table)."""

    name: str
    ctype: str
    data: np.ndarray
    fmt: str = "int"  # "int" or "float"


@dataclass
class Cost:
    """What the resource and latency model needs to know about one layer.

    ``macs``: products per block (the work one II window covers: a whole dense layer, or one
    output pixel of a conv); ``nonzero``: those whose weight is not zero; ``blocks``: how many
    blocks the layer runs (output pixels; 1 for dense); ``elements``: elementwise layers
    stream this many elements at II=1; ``fan_in``: products summed per output (adder-tree
    depth); ``lanes``: outputs requantized per block; ``requant_dsp``: the requantize needs a
    multiplier (scale not a power of two); ``reads``: input elements read per block.
    """

    macs: int = 0
    nonzero: int = 0
    blocks: int = 1
    elements: int = 0
    fan_in: int = 1
    lanes: int = 1
    requant_dsp: bool = False
    weight_count: int = 0
    weight_bits: int = 8
    operand_bits: int = 8
    reads: int = 1


@dataclass
class Layer:
    """One kernel call in the top function.

    ``call(layer)`` returns the C++ statement (it reads ``layer.cfg`` for the config struct's
    name); ``config`` holds the struct's fields (``rf`` is added from ``layer.rf`` when
    printed). ``op`` names what the report shows (``nn.conv2d+q.requantize``).
    """

    name: str
    kind: str
    op: str
    nodes: list[Node]
    inputs: list[Buffer]
    output: Buffer
    call: Callable[[Layer], str]
    config: dict[str, object] | None = None
    arrays: list[Array] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    rf: int = 1
    tunable: bool = False  # the reuse factor trades multipliers for cycles
    max_rf: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> str:
        return f"{self.name}_config"

    @property
    def loc(self) -> str:
        return (self.nodes[0].loc or "") if self.nodes else ""


@dataclass
class Port:
    """One argument of the top function: an integer tensor.

    ``buffer`` is the array the layers read or write; ``edge`` is the array that crosses the
    port (the same one unless a layout conversion sits between them: ports in NCHW order).
    ``packet``: elements per AXI-Stream beat.
    """

    name: str
    buffer: Buffer
    edge: Buffer
    packet: int

    @property
    def nhwc(self) -> bool:
        """The port carries a 4-D tensor in NHWC order (the host converts from/to NCHW)."""
        from backends.hls.plan import ir_order

        return not ir_order(self.edge)


@dataclass
class InputEdge:
    """How the host turns graph input ``value`` into port ``port`` (quantize or pass ints)."""

    value: Value
    port: Port
    scale: float | None = None  # None: the input is already integer
    zero_point: int = 0


@dataclass
class OutputEdge:
    """How the host turns port ``port`` into graph output ``value``.

    ``kind``: ``int`` (the port's integers as they are), ``dequantize`` (``(q - zp) * scale``,
    per tensor or per channel: ``scales``/``zero_points`` have ``channels`` entries, element
    ``i`` of the IR-order tensor uses entry ``(i / inner) % channels``), or ``table`` (a float
    lookup table indexed by the 8-bit port value: a float island).
    """

    value: Value
    port: Port
    kind: str
    scales: np.ndarray | None = None
    zero_points: np.ndarray | None = None
    inner: int = 1
    table: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return 1 if self.scales is None else int(self.scales.size)


@dataclass
class Design:
    """Everything the code generator prints."""

    top: str
    graph_name: str
    interface: str
    layers: list[Layer]
    buffers: list[Buffer]
    inputs: list[InputEdge]
    outputs: list[OutputEdge]
    in_ports: list[Port]
    out_ports: list[Port]
    edge_in: list[Layer] = field(default_factory=list)  # layout conversions after inputs
    edge_out: list[Layer] = field(default_factory=list)  # ... and before outputs

    def all_layers(self) -> list[Layer]:
        """Every kernel call of the top function, in order."""
        return [*self.edge_in, *self.layers, *self.edge_out]
