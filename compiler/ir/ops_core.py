"""Op table, part 1: elementwise math and activations, reductions and normalizations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import (
    OPS,
    REQUIRED,
    OpDef,
    binary_types,
    broadcast_shapes,
    layout_aware,
    norm_axis,
    register_op,
    require_float,
    same_dtype,
)
from compiler.ir.types import Shape, TensorType, is_float

# ---- elementwise ----------------------------------------------------------------------------

def _arithmetic(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Numbers only: NumPy has no bool subtract/divide/power, and no backend does either."""
    if any(t.dtype == "bool" for t in types):
        raise ShapeError("arithmetic on bool operands; cast them to a number type first")
    return binary_types(types, attrs)


def _logic(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if any(is_float(t.dtype) for t in types):
        raise ShapeError(f"logic on float operands ({', '.join(t.dtype for t in types)})")
    return binary_types(types, attrs) if len(types) == 2 else [types[0].with_quant(None)]


def _unary_number(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if types[0].dtype == "bool":
        raise ShapeError("arithmetic on a bool operand; cast it to a number type first")
    return _unary(types, attrs)


def _compare(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    same_dtype(types)
    return [TensorType("bool", broadcast_shapes(types[0].shape, types[1].shape))]


def _unary(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [types[0].with_quant(None)]


def _unary_float(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    require_float(types[0])
    return [types[0]]


for _name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod"):
    register_op(f"math.{_name}", "a b", tags="elementwise binary")(_arithmetic)
for _name in ("equal", "less", "greater", "less_equal", "greater_equal"):
    register_op(f"math.{_name}", "a b", tags="elementwise compare")(_compare)
for _name in ("and", "or", "xor"):
    register_op(f"math.{_name}", "a b", tags="elementwise logic")(_logic)
register_op("math.not", "x", tags="elementwise")(_logic)


@register_op("math.isnan", "x", tags="elementwise")
def _isnan(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """True where the float input is NaN (ONNX IsNaN: torch's exporter guards a masked
    softmax with it)."""
    require_float(types[0])
    return [TensorType("bool", types[0].shape)]


for _name in ("neg", "abs"):
    register_op(f"math.{_name}", "x", tags="elementwise unary")(_unary_number)
for _name in ("exp", "log", "sqrt", "rsqrt", "reciprocal", "erf", "tanh", "sin", "cos"):
    register_op(f"math.{_name}", "x", tags="elementwise unary")(_unary_float)
for _name in ("relu", "sigmoid", "hardswish", "silu"):
    register_op(f"nn.{_name}", "x", tags="elementwise unary activation")(_unary_number)
_ACTIVATION = "elementwise unary activation"
register_op("nn.relu6", "x", tags=_ACTIVATION)(_unary_number)
register_op("nn.leaky_relu", "x", {"alpha": 0.01}, tags=_ACTIVATION)(_unary_float)
register_op("nn.hardsigmoid", "x", {"alpha": 1 / 6, "beta": 0.5}, tags=_ACTIVATION)(_unary_float)
register_op("nn.gelu", "x", {"approximate": "none"}, tags=_ACTIVATION)(_unary_float)
register_op("nn.clip", "x", {"min": None, "max": None}, tags=_ACTIVATION)(_unary)
register_op("nn.dropout", "x", {"p": 0.0}, tags="elementwise layout view")(_unary)
register_op("tensor.identity", "x", tags="elementwise layout view")(lambda t, a: [t[0]])


@register_op("tensor.where", "cond x y", tags="elementwise")
def _where(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``cond ? x : y`` with broadcasting; ``cond`` is bool."""
    if types[0].dtype != "bool":
        raise ShapeError(f"where condition must be bool, got {types[0].dtype}")
    dtype = same_dtype(types[1:])
    return [TensorType(dtype, broadcast_shapes(*(t.shape for t in types)))]


@register_op("tensor.cast", "x", {"to": REQUIRED, "saturate": True}, tags="elementwise")
def _cast(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Convert to dtype ``to`` (float to int truncates toward zero, as C and ONNX do;
    ``saturate``: to a float8 type, out-of-range values clamp to its largest finite value)."""
    return [TensorType(attrs["to"], types[0].shape)]


# ---- reductions and normalizations ----------------------------------------------------------
def _reduced_shape(shape: Shape, axes: Sequence[int] | None, keepdims: bool) -> Shape:
    rank = len(shape)
    axes_n = set(range(rank)) if axes is None else {norm_axis(a, rank) for a in axes}
    if axes is not None and len(axes_n) != len(axes):
        raise ShapeError(f"reduction axes {list(axes)} name an axis twice")
    return tuple(
        1 if i in axes_n else d for i, d in enumerate(shape) if keepdims or i not in axes_n
    )


def _nonempty_axes(t: TensorType, axes: Sequence[int] | None, what: str) -> None:
    """max/min/argmax have no identity: over an empty axis they have no value at all."""
    axes_n = range(t.rank) if axes is None else [norm_axis(a, t.rank) for a in axes]
    if any(t.shape[a] == 0 for a in axes_n):
        raise ShapeError(f"{what} over an empty axis of {t}")


def _reduce(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [
        TensorType(types[0].dtype, _reduced_shape(types[0].shape, attrs["axes"], attrs["keepdims"]))
    ]


def _reduce_extreme(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _nonempty_axes(types[0], attrs["axes"], "max/min")
    return _reduce(types, attrs)


_REDUCE_ATTRS: dict[str, Any] = {"axes": None, "keepdims": False}
for _name in ("mean", "sum", "prod"):
    register_op(f"math.reduce_{_name}", "x", _REDUCE_ATTRS, tags="reduce")(_reduce)
for _name in ("max", "min"):
    register_op(f"math.reduce_{_name}", "x", _REDUCE_ATTRS, tags="reduce")(_reduce_extreme)


@register_op("math.argmax", "x", {"axis": -1, "keepdims": False}, tags="reduce")
def _argmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _nonempty_axes(types[0], [attrs["axis"]], "argmax")
    return [TensorType("i64", _reduced_shape(types[0].shape, [attrs["axis"]], attrs["keepdims"]))]


@register_op("nn.softmax", "x", {"axis": -1})
def _softmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    require_float(types[0])
    norm_axis(attrs["axis"], types[0].rank)
    return [types[0]]


OPS["nn.log_softmax"] = OpDef("nn.log_softmax", ("x",), {"axis": -1}, _softmax)


@register_op("nn.layer_norm", "x gamma? beta?", {"axis": -1, "eps": 1e-5})
def _layer_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Normalize over dimensions ``axis..rank-1``, then scale by gamma and shift by beta."""
    require_float(types[0])
    if types[0].rank == 0:
        raise ShapeError("layer_norm of a scalar: there is no axis to normalize over")
    axis = norm_axis(attrs["axis"], types[0].rank)
    norm_shape = types[0].shape[axis:]
    for t in types[1:]:
        if tuple(t.shape) != tuple(norm_shape):
            raise ShapeError(
                f"layer_norm parameter shape {t.shape} != normalized shape {norm_shape}"
            )
    return [types[0]]


@register_op("nn.batch_norm", "x scale bias mean var", {"eps": 1e-5, "layout": "NCHW"})
@layout_aware
def _batch_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Inference batch norm over channel axis 1 (the last with ``layout="NHWC"``) with
    running statistics."""
    require_float(types[0])
    c = types[0].shape[1]
    for t in types[1:]:
        if t.rank != 1 or (isinstance(c, int) and t.shape[0] != c):
            raise ShapeError(f"batch_norm parameter shape {t.shape} does not match {c} channels")
    return [types[0]]


@register_op("nn.lrn", "x", {"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
def _lrn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Local response normalization across channels (ONNX LRN, PyTorch LocalResponseNorm)."""
    require_float(types[0])
    if types[0].rank < 2 or int(attrs["size"]) < 1:
        raise ShapeError(f"LRN needs an input with channels (rank >= 2, got {types[0].rank}) and "
                    f"size >= 1 (got {attrs['size']})")
    return [types[0]]
