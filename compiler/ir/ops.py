"""The op table: every op's name, operands, attributes and type inference, in one place.

Adding an op means adding one ``OpDef`` here, one NumPy implementation in
``compiler.interpreter`` and (where they take it) one rule per frontend and backend; a test
checks that every table knows every op it claims.

Operand names ending in ``?`` are optional (trailing); a name ending in ``*`` is variadic.
Tags state what other layers may rely on: ``elementwise``, ``reduce``, ``quant``, ``layout``
(the op only moves elements: an integer tensor keeps its scale through it) and ``view`` (a
layout op keeping the row-major order: the same bytes, a new shape). The other facts about
ops (zero points, the integer output clamp, fused activations, MACs) are stated once in
``compiler.ir.op_facts``.
Attribute defaults of ``REQUIRED`` must be given. Floats ops take f32/f16/bf16; integer
(quantized) ops state their accumulator dtype in an ``acc`` attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.types import Dim, Shape, TensorType, is_float

REQUIRED: Any = object()

InferFn = Callable[[Sequence[TensorType], dict[str, Any]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """One op: operand names, attributes with defaults, and its type-inference function."""

    name: str
    operands: tuple[str, ...]
    attrs: dict[str, Any]
    infer: InferFn | None
    doc: str = ""
    outputs: int | str = 1  # an int, or the name of a list attribute whose length gives it
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def min_inputs(self) -> int:
        return sum(1 for o in self.operands if not o.endswith(("?", "*")))

    @property
    def max_inputs(self) -> float:
        if any(o.endswith("*") for o in self.operands):
            return math.inf
        return len(self.operands)

    def num_outputs(self, attrs: dict[str, Any]) -> int:
        if isinstance(self.outputs, int):
            return self.outputs
        given = attrs[self.outputs]  # a count, or a list with one entry per output
        return given if isinstance(given, int) else len(given)

    def with_defaults(self, attrs: dict[str, Any]) -> dict[str, Any]:
        full = {k: v for k, v in self.attrs.items() if v is not REQUIRED}
        full.update(attrs)
        return full


OPS: dict[str, OpDef] = {}


def _op(
    name: str,
    operands: str,
    attrs: dict[str, Any] | None = None,
    outputs: int | str = 1,
    tags: str = "",
    doc: str = "",
) -> Callable[[InferFn], InferFn]:
    def register(fn: InferFn) -> InferFn:
        OPS[name] = OpDef(
            name,
            tuple(operands.split()) if operands else (),
            dict(attrs or {}),
            fn,
            doc or (fn.__doc__ or "").strip(),
            outputs,
            frozenset(tags.split()),
        )
        return fn

    return register


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise ShapeError(f"unknown op {name!r}") from None


def infer_types(
    op: str, types: Sequence[TensorType], attrs: dict[str, Any], where: str = ""
) -> list[TensorType]:
    """Output types of ``op`` on operand ``types``; ShapeError naming ``where`` if invalid."""
    opdef = get_op(op)
    if opdef.infer is None:
        raise ShapeError(f"{where or op}: the type of {op} cannot be inferred")
    try:
        return opdef.infer(types, opdef.with_defaults(attrs))
    except ShapeError as e:
        raise ShapeError(f"{where or op}: {e}") from None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ShapeError(
            f"{where or op}: invalid operands or attributes for {op}: {type(e).__name__}: {e}"
        ) from None


# ---- shape helpers --------------------------------------------------------------------------
def _fail(msg: str) -> ShapeError:
    return ShapeError(msg)


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting, with symbolic dimensions (a name broadcasts against 1 or itself)."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        result: Dim = 1
        for d in dims:
            if d == 1 or d == result:
                continue
            if result == 1:
                result = d
            elif isinstance(d, str) or isinstance(result, str):
                result = result if isinstance(result, str) else d
            else:
                raise _fail(f"shapes {' and '.join(map(str, shapes))} do not broadcast")
        out.append(result)
    return tuple(out)


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _same_dtype(types: Sequence[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise _fail(f"operands have different dtypes {sorted(dtypes)}")
    return dtypes.pop()


def _float(t: TensorType, what: str = "operand") -> None:
    if not is_float(t.dtype):
        raise _fail(f"{what} must be float, got {t.dtype}")


def _mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return f"{a}*{b}"


def conv_out_dim(
    size: Dim, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int, ceil_mode: bool = False
) -> Dim:
    if isinstance(size, str):
        return size if (k, stride, pad_lo + pad_hi, dilation) == (1, 1, 0, 1) else f"{size}'"
    span = dilation * (k - 1) + 1
    num = size + pad_lo + pad_hi - span
    if num < 0:
        raise _fail(f"window {span} larger than padded input {size + pad_lo + pad_hi}")
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1  # the last window must start inside the input or left padding (PyTorch, ONNX)
    return out


# ---- elementwise ----------------------------------------------------------------------------
def _binary(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [TensorType(_same_dtype(types), broadcast_shapes(types[0].shape, types[1].shape))]


def _arithmetic(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Numbers only: NumPy has no bool subtract/divide/power, and no backend does either."""
    if any(t.dtype == "bool" for t in types):
        raise _fail("arithmetic on bool operands; cast them to a number type first")
    return _binary(types, attrs)


def _logic(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if any(is_float(t.dtype) for t in types):
        raise _fail(f"logic on float operands ({', '.join(t.dtype for t in types)})")
    return _binary(types, attrs) if len(types) == 2 else [types[0].with_quant(None)]


def _unary_number(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if types[0].dtype == "bool":
        raise _fail("arithmetic on a bool operand; cast it to a number type first")
    return _unary(types, attrs)


def _compare(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _same_dtype(types)
    return [TensorType("bool", broadcast_shapes(types[0].shape, types[1].shape))]


def _unary(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [types[0].with_quant(None)]


def _unary_float(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _float(types[0])
    return [types[0]]


for _name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod"):
    _op(f"math.{_name}", "a b", tags="elementwise binary")(_arithmetic)
for _name in ("equal", "less", "greater", "less_equal", "greater_equal"):
    _op(f"math.{_name}", "a b", tags="elementwise compare")(_compare)
for _name in ("and", "or", "xor"):
    _op(f"math.{_name}", "a b", tags="elementwise logic")(_logic)
_op("math.not", "x", tags="elementwise")(_logic)


@_op("math.isnan", "x", tags="elementwise")
def _isnan(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """True where the float input is NaN (ONNX IsNaN: torch's exporter guards a masked
    softmax with it)."""
    _float(types[0])
    return [TensorType("bool", types[0].shape)]


for _name in ("neg", "abs"):
    _op(f"math.{_name}", "x", tags="elementwise unary")(_unary_number)
for _name in ("exp", "log", "sqrt", "rsqrt", "reciprocal", "erf", "tanh", "sin", "cos"):
    _op(f"math.{_name}", "x", tags="elementwise unary")(_unary_float)
for _name in ("relu", "sigmoid", "hardswish", "silu"):
    _op(f"nn.{_name}", "x", tags="elementwise unary activation")(_unary_number)
_op("nn.relu6", "x", tags="elementwise unary activation")(_unary_number)
_op("nn.leaky_relu", "x", {"alpha": 0.01}, tags="elementwise unary activation")(_unary_float)
_op("nn.hardsigmoid", "x", {"alpha": 1 / 6, "beta": 0.5}, tags="elementwise unary activation")(
    _unary_float
)
_op("nn.gelu", "x", {"approximate": "none"}, tags="elementwise unary activation")(_unary_float)
_op("nn.clip", "x", {"min": None, "max": None}, tags="elementwise unary activation")(_unary)
_op("nn.dropout", "x", {"p": 0.0}, tags="elementwise layout view")(_unary)
_op("tensor.identity", "x", tags="elementwise layout view")(lambda t, a: [t[0]])


@_op("tensor.where", "cond x y", tags="elementwise")
def _where(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``cond ? x : y`` with broadcasting; ``cond`` is bool."""
    if types[0].dtype != "bool":
        raise _fail(f"where condition must be bool, got {types[0].dtype}")
    dtype = _same_dtype(types[1:])
    return [TensorType(dtype, broadcast_shapes(*(t.shape for t in types)))]


@_op("tensor.cast", "x", {"to": REQUIRED, "saturate": True}, tags="elementwise")
def _cast(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Convert to dtype ``to`` (float to int truncates toward zero, as C and ONNX do;
    ``saturate``: to a float8 type, out-of-range values clamp to its largest finite value)."""
    return [TensorType(attrs["to"], types[0].shape)]


# ---- reductions and normalizations ----------------------------------------------------------
def _reduced_shape(shape: Shape, axes: Sequence[int] | None, keepdims: bool) -> Shape:
    rank = len(shape)
    axes_n = set(range(rank)) if axes is None else {norm_axis(a, rank) for a in axes}
    if axes is not None and len(axes_n) != len(axes):
        raise _fail(f"reduction axes {list(axes)} name an axis twice")
    return tuple(
        1 if i in axes_n else d for i, d in enumerate(shape) if keepdims or i not in axes_n
    )


def _nonempty_axes(t: TensorType, axes: Sequence[int] | None, what: str) -> None:
    """max/min/argmax have no identity: over an empty axis they have no value at all."""
    axes_n = range(t.rank) if axes is None else [norm_axis(a, t.rank) for a in axes]
    if any(t.shape[a] == 0 for a in axes_n):
        raise _fail(f"{what} over an empty axis of {t}")


def _reduce(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [
        TensorType(types[0].dtype, _reduced_shape(types[0].shape, attrs["axes"], attrs["keepdims"]))
    ]


def _reduce_extreme(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _nonempty_axes(types[0], attrs["axes"], "max/min")
    return _reduce(types, attrs)


for _name in ("mean", "sum", "prod"):
    _op(f"math.reduce_{_name}", "x", {"axes": None, "keepdims": False}, tags="reduce")(_reduce)
for _name in ("max", "min"):
    _op(f"math.reduce_{_name}", "x", {"axes": None, "keepdims": False}, tags="reduce")(
        _reduce_extreme
    )


@_op("math.argmax", "x", {"axis": -1, "keepdims": False}, tags="reduce")
def _argmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _nonempty_axes(types[0], [attrs["axis"]], "argmax")
    return [TensorType("i64", _reduced_shape(types[0].shape, [attrs["axis"]], attrs["keepdims"]))]


@_op("nn.softmax", "x", {"axis": -1})
def _softmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _float(types[0])
    norm_axis(attrs["axis"], types[0].rank)
    return [types[0]]


OPS["nn.log_softmax"] = OpDef("nn.log_softmax", ("x",), {"axis": -1}, _softmax)


@_op("nn.layer_norm", "x gamma? beta?", {"axis": -1, "eps": 1e-5})
def _layer_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Normalize over dimensions ``axis..rank-1``, then scale by gamma and shift by beta."""
    _float(types[0])
    if types[0].rank == 0:
        raise _fail("layer_norm of a scalar: there is no axis to normalize over")
    axis = norm_axis(attrs["axis"], types[0].rank)
    norm_shape = types[0].shape[axis:]
    for t in types[1:]:
        if tuple(t.shape) != tuple(norm_shape):
            raise _fail(f"layer_norm parameter shape {t.shape} != normalized shape {norm_shape}")
    return [types[0]]


#: Activation layouts of the ops with a ``layout`` attribute (conv2d, pools, batch_norm).
#: "NHWC" is channels-last: [N, H, W, C] activations (conv weights stay OIHW).
LAYOUTS = ("NCHW", "NHWC")


def channels_first(shape: Shape) -> Shape:
    """[N, *spatial, C] -> [N, C, *spatial]."""
    return (shape[0], shape[-1], *shape[1:-1])


def channels_last(shape: Shape) -> Shape:
    """[N, C, *spatial] -> [N, *spatial, C]."""
    return (shape[0], *shape[2:], shape[1])


def nchw_shape(shape: Shape, attrs: dict[str, Any]) -> Shape:
    """``shape`` of an operand or result of a node with ``attrs``, seen as NCHW."""
    return channels_first(shape) if attrs.get("layout", "NCHW") == "NHWC" else shape


def _relaid(t: TensorType, shape: Shape) -> TensorType:
    # Per-tensor quantization moves with the data; a per-channel axis would need renumbering.
    return TensorType(
        t.dtype, shape, t.quant if t.quant is not None and t.quant.axis is None else None
    )


def layout_aware(infer: InferFn, moved: tuple[int, ...] = (0,)) -> InferFn:
    """Extend an NCHW type inference to ``layout="NHWC"``: the operands at ``moved`` (of the
    same rank as operand 0) and every result are channels-last."""

    def run(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        layout = attrs.get("layout", "NCHW")
        if layout not in LAYOUTS:
            raise _fail(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
        if layout == "NCHW":
            return infer(types, attrs)
        rank = types[0].rank
        if rank < 3:
            raise _fail(f"layout NHWC wants [N, ..., C] operands, got {types[0].shape}")
        view = [
            _relaid(t, channels_first(t.shape)) if i in moved and t.rank == rank else t
            for i, t in enumerate(types)
        ]
        return [_relaid(t, channels_last(t.shape)) for t in infer(view, attrs)]

    run.__doc__ = infer.__doc__
    return run


@_op("nn.batch_norm", "x scale bias mean var", {"eps": 1e-5, "layout": "NCHW"})
@layout_aware
def _batch_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Inference batch norm over channel axis 1 (the last with ``layout="NHWC"``) with
    running statistics."""
    _float(types[0])
    c = types[0].shape[1]
    for t in types[1:]:
        if t.rank != 1 or (isinstance(c, int) and t.shape[0] != c):
            raise _fail(f"batch_norm parameter shape {t.shape} does not match {c} channels")
    return [types[0]]


@_op("nn.lrn", "x", {"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
def _lrn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Local response normalization across channels (ONNX LRN, PyTorch LocalResponseNorm)."""
    _float(types[0])
    if types[0].rank < 2 or int(attrs["size"]) < 1:
        raise _fail(f"LRN needs an input with channels (rank >= 2, got {types[0].rank}) and "
                    f"size >= 1 (got {attrs['size']})")
    return [types[0]]


from compiler.ir import (  # noqa: E402,F401  (register the rest of the table)
    ops_dynamic,
    ops_extra,
    ops_llm,
    ops_more,
    ops_nn,
    ops_quant,
    ops_signal,
    ops_tensor,
    ops_vision,
)
