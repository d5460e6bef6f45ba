"""The ONNX emission context: tensor names, initializers, and the IR value -> tensor map.

Rules (``backends.onnx.rules``) lower one IR node at a time through an ``Emitter``. Every IR
value maps to an ONNX tensor of the same name; helper tensors and helper nodes that a rule
adds get names with a ``/`` in them (``c1/relu``), which an IR name can never contain, so the
two never collide and the file opened in Netron reads like ``tapeout inspect``.

Integer accumulators (the i32 result of an integer conv/dense/matmul) are not exported as
integers: ONNX's integer convolutions (ConvInteger, MatMulInteger) are exactly what TensorRT
cannot take. A rule returns a ``Real`` for them instead: a float tensor holding the
accumulator's *real* value (``acc * scale``), computed by DequantizeLinear -> float Conv. The
requantize that follows becomes QuantizeLinear with the output scale: the QDQ form. Only when
something needs the integer itself is it materialized (Div, Round, Cast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import BackendError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import QuantParams, TensorType, is_float

if TYPE_CHECKING:
    import onnx

#: IR dtype -> ONNX TensorProto element type (the numbers are TensorProto.DataType values;
#: spelled out so this module imports without onnx).
ONNX_DTYPES: dict[str, int] = {
    "f32": 1,  # FLOAT
    "u8": 2,  # UINT8
    "i8": 3,  # INT8
    "i16": 5,  # INT16
    "i32": 6,  # INT32
    "i64": 7,  # INT64
    "bool": 9,  # BOOL
    "f16": 10,  # FLOAT16
    "f64": 11,  # DOUBLE
    "bf16": 16,  # BFLOAT16
    "u4": 21,  # UINT4
    "i4": 22,  # INT4
}

#: The opset from which each narrow integer type may be quantized to / dequantized from.
QDQ_MIN_OPSET: dict[str, int] = {"i8": 10, "u8": 10, "i16": 21, "u16": 21, "i4": 21, "u4": 21}


def tie_bits(multipliers: Sequence[int], shift: int) -> int | None:
    """Binary places of ``acc * multiplier / 2^shift`` when ties (``k + 1/2``) are likely.

    With ``multiplier = m * 2^z`` (m odd) the exact result is a multiple of ``2^-(shift-z)``:
    ties need ``shift - z`` low bits to line up, which is common for power-of-two rescales
    (``1 / 2^7``) and practically never for 31-bit multipliers. None when ties are rare (or
    the result is an integer).
    """
    zeros = min(((int(m) & -int(m)).bit_length() - 1) if int(m) else 64 for m in multipliers)
    bits = int(shift) - zeros
    return bits if 1 <= bits <= MAX_TIE_BITS else None


#: Beyond 12 binary places a tie is rarer than 1 in 4096 values, and float32 rounding of
#: codes up to 2^7 (about 2^-14) would come too close to the half-step bias.
MAX_TIE_BITS = 12


class ExportError(BackendError):
    """An IR node could not be written as ONNX (points at the node in the printed IR)."""


@dataclass
class Real:
    """A float tensor standing for an integer accumulator: ``int value ~= round(name / scale)``.

    ``scale`` is a scalar or one entry per channel along ``axis`` of the IR value.
    """

    name: str
    scale: np.ndarray
    axis: int | None = None


def broadcast_shape(values: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    """``values`` (scalar or per-channel) shaped to broadcast along ``axis`` of a rank-``rank``
    tensor, as float32."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 1 or axis is None:
        return arr.reshape(()) if arr.size == 1 else arr
    shape = [1] * rank
    shape[axis % rank] = arr.size
    return arr.reshape(shape)


class Emitter:
    """Collects ONNX nodes and initializers while the IR graph is walked in order."""

    def __init__(self, graph: Graph, opset: int):
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.types: dict[str, tuple[str, tuple]] = {}  # tensor -> (IR dtype, shape)
        self.names: dict[int, str] = {}  # id(Value) -> tensor holding the value exactly
        self.reals: dict[int, Real] = {}  # id(Value) -> float stand-in of an accumulator
        self.node: Node | None = None
        self.float_view = False  # the current rule sees quantized operands dequantized
        self.exact = True  # follow the integer rescales exactly (see ``quantize``)
        self._taken: set[str] = set()
        self._node_names: set[str] = set()
        self._cache: dict[Any, str] = {}
        self._first = 0  # index in ``nodes`` where the current IR node's emission starts
        self.symbols: dict[str, tuple[str, int]] = {}  # symbolic dim -> (input tensor, axis)

    # ---- names ---------------------------------------------------------------------------
    @property
    def base(self) -> str:
        """The name helper tensors and nodes of the current IR node start with."""
        if self.node is None or not self.node.outputs:
            return "graph"
        return self.node.outputs[0].name

    def fresh(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._taken:
            i += 1
            name = f"{hint}_{i}"
        self._taken.add(name)
        return name

    def claim(self, name: str) -> str:
        """Take an IR name for a tensor (IR names are unique, so this only guards bugs)."""
        if name in self._taken:
            raise ExportError(f"ONNX tensor name {name!r} is used twice")
        self._taken.add(name)
        return name

    def where(self) -> str:
        return self.node.where() if self.node is not None else f"graph @{self.graph.name}"

    def fail(self, message: str) -> ExportError:
        return ExportError(f"{self.where()}: {message}")

    # ---- emission ------------------------------------------------------------------------
    def emit(
        self,
        op_type: str,
        inputs: Sequence[str],
        n_out: int = 1,
        stem: str | None = None,
        **attrs: Any,
    ) -> list[str]:
        """Append one ONNX node; returns its output tensor names (fresh helper names,
        ``<stem>``, by default ``<current IR value>/<op type>``)."""
        from onnx import helper

        stem = stem or f"{self.base}/{op_type.lower()}"
        outputs = [self.fresh(stem if n_out == 1 else f"{stem}{i}") for i in range(n_out)]
        node = helper.make_node(
            op_type,
            list(inputs),
            outputs,
            name=self._node_name(stem),
            **{k: v for k, v in attrs.items() if v is not None},
        )
        self.nodes.append(node)
        return outputs

    def emit1(
        self, op_type: str, inputs: Sequence[str], stem: str | None = None, **attrs: Any
    ) -> str:
        return self.emit(op_type, inputs, 1, stem, **attrs)[0]

    def _node_name(self, stem: str) -> str:
        name, i = stem, 0
        while name in self._node_names:
            i += 1
            name = f"{stem}_{i}"
        self._node_names.add(name)
        return name

    def const(
        self, data: Any, hint: str = "const", dtype: Any = None, prefix: str | None = None
    ) -> str:
        """An initializer ``<prefix>/<hint>`` (prefix: the current IR value) holding ``data``;
        small constants are shared by value."""
        from onnx import numpy_helper

        arr = np.asarray(data, dtype=dtype)
        key = None
        if arr.size <= 64:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._cache:
                return self._cache[key]
        name = self.fresh(f"{prefix or self.base}/{hint}")
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._cache[key] = name
        return name

    def i64(self, values: Sequence[int] | int) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i64")

    def scalar(self, value: float, like: str = "f32") -> str:
        """A rank-0 constant with the dtype of IR dtype ``like``."""
        from compiler.ir.types import NUMPY_DTYPES

        return self.const(np.asarray(value, dtype=NUMPY_DTYPES[like]), "scalar")

    def begin(self, node: Node | None) -> None:
        """Start lowering ``node`` (None: the graph outputs)."""
        self.node = node
        self._first = len(self.nodes)
        self.float_view = False

    def rename(self, tensor: str, name: str) -> bool:
        """Give ``tensor``, made by the current IR node, the IR value name ``name``."""
        mine = self.nodes[self._first :]
        producer = next((n for n in mine if tensor in n.output), None)
        if producer is None or "/" not in tensor:
            return False
        self.claim(name)
        for n in mine:
            n.output[:] = [name if o == tensor else o for o in n.output]
            n.input[:] = [name if i == tensor else i for i in n.input]
        for key, cached in list(self._cache.items()):
            if cached == tensor:
                self._cache[key] = name
        self._node_names.discard(producer.name)
        if name not in self._node_names:
            producer.name = name
            self._node_names.add(name)
        return True

    def emitted(self) -> list[onnx.NodeProto]:
        """The ONNX nodes emitted for the current IR node so far."""
        return self.nodes[self._first :]

    # ---- operands ------------------------------------------------------------------------
    def arg(self, i: int) -> str:
        """Operand ``i`` of the current node: exact, or its real value in float view."""
        assert self.node is not None
        value = self.node.inputs[i]
        if self.float_view and value.type.quant is not None:
            return self.real(value)
        return self.name_of(value)

    def has_arg(self, i: int) -> bool:
        return self.node is not None and len(self.node.inputs) > i

    def name_of(self, value: Value) -> str:
        """The tensor holding ``value`` exactly (materializing an accumulator stand-in)."""
        name = self.names.get(id(value))
        if name is not None:
            return name
        real = self.reals.get(id(value))
        if real is None:
            raise self.fail(f"operand %{value.name} has not been exported")
        scale = self.const(broadcast_shape(real.scale, real.axis, value.type.rank), "acc_scale")
        rounded = self.emit1("Round", [self.emit1("Div", [real.name, scale])])
        name = self.emit1("Cast", [rounded], to=ONNX_DTYPES[value.dtype])
        self.names[id(value)] = name
        return name

    def real(self, value: Value, zero_point: bool = True) -> str:
        """A float32 tensor holding the real value of ``value``.

        Float values are themselves; quantized integers are dequantized (one
        DequantizeLinear per value, shared by every consumer, as TensorRT wants); accumulator
        stand-ins are their float tensor. ``zero_point=False`` dequantizes without the zero
        point (the interpreter's integer conv/dense ignore a weight's zero point).
        """
        if is_float(value.dtype):
            return self.name_of(value)
        if id(value) in self.reals:
            return self.reals[id(value)].name
        qp = value.type.quant
        if qp is None:
            raise self.fail(f"integer operand %{value.name} has no scale, so no real value")
        key = ("dq", id(value), zero_point)
        if key not in self._cache:
            self._cache[key] = self.dequantize(
                self.name_of(value), qp, value.type, zero_point, prefix=value.name
            )
        return self._cache[key]

    def real_with_scale(self, value: Value, scale: np.ndarray, axis: int | None) -> str:
        """The real value of integer ``value`` read in units of ``scale`` (no zero point)."""
        if id(value) in self.reals or value.type.quant is not None or is_float(value.dtype):
            return self.real(value)
        as_float = self.emit1("Cast", [self.name_of(value)], to=ONNX_DTYPES["f32"])
        factor = self.const(broadcast_shape(scale, axis, value.type.rank), "scale")
        return self.emit1("Mul", [as_float, factor])

    # ---- quantization --------------------------------------------------------------------
    def qparams(
        self, qp: QuantParams, t: TensorType, zero_point: bool = True, prefix: str | None = None
    ) -> list[str]:
        """[scale, zero_point] initializers for QuantizeLinear/DequantizeLinear."""
        from compiler.ir.types import NUMPY_DTYPES

        scale = qp.scale_array()
        zps = qp.zero_point_array()
        shape: tuple[int, ...] = ()
        if qp.group_size is not None:  # block-wise: scales shaped like the blocked tensor
            axis = int(qp.axis or 0) % t.rank
            blocked = list(t.shape)
            blocked[axis] = int(blocked[axis]) // qp.group_size
            shape = tuple(int(d) for d in blocked)
        elif qp.axis is not None:
            shape = (len(qp.scale),)
        zdtype = NUMPY_DTYPES[t.dtype]
        if not zero_point:
            zps = np.zeros_like(zps)
        scale_name = self.const(scale.reshape(shape), "scale", prefix=prefix)
        if t.dtype in ("i4", "u4"):
            return [scale_name]  # 4-bit zero points are 0 here
        return [
            scale_name,
            self.const(zps.astype(zdtype).reshape(shape), "zero_point", prefix=prefix),
        ]

    def _qdq_attrs(self, qp: QuantParams, t: TensorType) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if qp.axis is not None:
            attrs["axis"] = qp.axis % max(t.rank, 1)
        if qp.group_size is not None:
            attrs["block_size"] = qp.group_size
        return attrs

    def dequantize(
        self,
        tensor: str,
        qp: QuantParams,
        t: TensorType,
        zero_point: bool = True,
        prefix: str | None = None,
    ) -> str:
        inputs = [tensor, *self.qparams(qp, t, zero_point, prefix)]
        stem = f"{prefix}/dequantize" if prefix else None
        return self.emit1("DequantizeLinear", inputs, stem, **self._qdq_attrs(qp, t))

    def quantize(self, tensor: str, t: TensorType, tie_bits: int | None = None) -> str:
        """QuantizeLinear of float ``tensor`` to type ``t`` (scale 1 when it has no quant).

        QuantizeLinear rounds half to even, ``numerics.requantize`` half up. Where the exact
        result is a multiple of ``2^-tie_bits`` codes (power-of-two rescales: ties are
        common), a bias of half that step is added first, which turns every tie upward and
        moves no other value across a rounding boundary. ``tie_bits=None``: ties are
        improbable (31-bit multipliers) and the plain QDQ pattern is kept.
        """
        qp = t.quant or QuantParams.per_tensor(1.0, 0)
        if tie_bits is not None and self.exact and qp.axis is None:
            bias = qp.scale[0] * 2.0 ** -(tie_bits + 1)
            tensor = self.emit1("Add", [tensor, self.scalar(bias)])
        inputs = [tensor, *self.qparams(qp, t)]
        if t.dtype in ("i4", "u4"):  # the zero point's type names the output type
            inputs.append(self.int4_zero(t.dtype))
        return self.emit1("QuantizeLinear", inputs, **self._qdq_attrs(qp, t))

    def int4_zero(self, dtype: str) -> str:
        from onnx import helper

        name = self.fresh(f"{self.base}/zero_point")
        self.initializers.append(helper.make_tensor(name, ONNX_DTYPES[dtype], [], [0]))
        return name

    # ---- shapes --------------------------------------------------------------------------
    def shape_tensor(self, dims: Sequence[int | str]) -> str:
        """A 1-D int64 tensor with ``dims``; symbols come from the graph inputs' shapes.

        One unknown dimension becomes -1 (for Reshape only: callers say so by passing -1).
        """
        if all(isinstance(d, int) for d in dims):
            return self.i64([int(d) for d in dims])
        parts: list[str] = []
        for d in dims:
            if isinstance(d, int):
                parts.append(self.i64([d]))
                continue
            source = self.symbols.get(d)
            if source is None:
                raise self.fail(
                    f"dimension {d!r} is not a graph input's dimension; specialize the graph "
                    "(compiler.specialize) before exporting"
                )
            tensor, axis = source
            parts.append(self.emit1("Shape", [tensor], start=axis, end=axis + 1))
        return self.emit1("Concat", parts, axis=0)

    def reshape_target(self, dims: Sequence[int | str]) -> str:
        """Reshape's shape input: ints as they are, a single unknown as -1."""
        unknown = [d for d in dims if not isinstance(d, int) and d not in self.symbols]
        if len(unknown) == 1 and not any(isinstance(d, str) and d in self.symbols for d in dims):
            return self.i64([d if isinstance(d, int) else -1 for d in dims])
        if len(unknown) == 1:
            return self.shape_tensor([-1 if d in unknown else d for d in dims])
        return self.shape_tensor(dims)
