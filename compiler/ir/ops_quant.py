"""Op table, part 4: integer compute ops that only exist in quantized graphs.

The exact arithmetic (``compiler.interpreter_quant`` implements it, every backend obeys it),
with ``za``, ``zb``, ``zx`` the input zero points and ``zo`` the output zero point, all read
from the operand and result types:

``q.add(%a, %b) {dtype, a_multiplier, b_multiplier, shift, act, clip_min, clip_max}``::

    acc = (a - za) * a_multiplier + (b - zb) * b_multiplier          (int64, broadcasting)
    out = saturate_dtype(((acc + 2^(shift-1)) >> shift) + zo)        (= numerics.requantize)
    out = max(out, zo) if act == "relu";  out = clamp(out, clip_min, clip_max)

``a_multiplier = round(s_a / s_o * 2^shift)`` (likewise for b).

``q.avg_pool2d(%x) {kernel, strides, pads, dtype, multiplier, shift}`` and
``q.global_avg_pool(%x) {dtype, multiplier, shift}``::

    acc = sum over the window of (x - zx)      (padding contributes real 0; int64)
    out = numerics.requantize(acc, multiplier, shift, zo, dtype)

with ``(multiplier, shift) = quantize_multiplier(s_x / (N * s_o))`` for a window of N
elements (``count_include_pad`` semantics: N is the full kernel size everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import REQUIRED, broadcast_shapes, register_op
from compiler.ir.ops_nn import global_pool_types, pool_types
from compiler.ir.types import TensorType, is_int

#: The activations q.add may apply after rescaling (relu: ``max(out, zo)``; relu6/clip are
#: its clip_min/clip_max, see ``compiler.ir.op_facts.output_clamp``).
QADD_ACTIVATIONS = ("none", "relu")


def _int_operands(types: Sequence[TensorType], op: str) -> None:
    for t in types:
        if not is_int(t.dtype):
            raise ShapeError(f"{op} takes integer (quantized) operands, got {t.dtype}")


def _int_dtype(attrs: dict[str, Any]) -> str:
    if not is_int(attrs["dtype"]):
        raise ShapeError(f"result dtype must be integer, got {attrs['dtype']}")
    return str(attrs["dtype"])


def _shift(attrs: dict[str, Any]) -> None:
    if not 0 <= int(attrs["shift"]) <= 62:
        raise ShapeError(f"shift {attrs['shift']} out of range [0, 62]")


@register_op(
    "q.add",
    "a b",
    {
        "dtype": REQUIRED,
        "a_multiplier": REQUIRED,
        "b_multiplier": REQUIRED,
        "shift": REQUIRED,
        "act": "none",
        "clip_min": None,
        "clip_max": None,
    },
    tags="quant elementwise",
)
def _qadd(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Add two quantized tensors with different scales, rescaled to the result's scale."""
    _int_operands(types, "q.add")
    _shift(attrs)
    if attrs["act"] not in QADD_ACTIVATIONS:
        raise ShapeError(f"q.add act must be one of {QADD_ACTIVATIONS}, got {attrs['act']!r}")
    return [TensorType(_int_dtype(attrs), broadcast_shapes(types[0].shape, types[1].shape))]


_POOL_ATTRS = {
    "kernel": REQUIRED,
    "strides": None,
    "pads": None,
    "dtype": REQUIRED,
    "multiplier": REQUIRED,
    "shift": REQUIRED,
}


@register_op("q.avg_pool2d", "x", _POOL_ATTRS, tags="quant pool")
def _qavg_pool2d(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer average pooling: window sum of ``x - zx``, then one requantize."""
    _int_operands(types, "q.avg_pool2d")
    _shift(attrs)
    (out,) = pool_types(types, {**attrs, "ceil_mode": False, "dilations": None})
    return [TensorType(_int_dtype(attrs), out.shape)]


@register_op(
    "q.global_avg_pool",
    "x",
    {"dtype": REQUIRED, "multiplier": REQUIRED, "shift": REQUIRED},
    tags="quant pool",
)
def _qglobal_avg_pool(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer global average pooling over all spatial dimensions (keeps them as 1)."""
    _int_operands(types, "q.global_avg_pool")
    _shift(attrs)
    (out,) = global_pool_types(types, attrs)
    return [TensorType(_int_dtype(attrs), out.shape)]


# ---- integer transformer ops (the formulas: compiler.numerics, "integer softmax") ----------
def _last_axis(types: Sequence[TensorType], attrs: dict[str, Any], op: str) -> None:
    x = types[0]
    if x.rank < 1 or int(attrs["axis"]) not in (-1, x.rank - 1):
        raise ShapeError(f"{op} normalizes over the last axis only, got axis {attrs['axis']}")
    if x.dtype not in ("i8", "u8"):
        raise ShapeError(f"{op} takes an 8-bit input (its tables have 256 entries), got {x.dtype}")


@register_op(
    "q.softmax",
    "x",
    {"axis": -1, "dtype": REQUIRED, "multiplier": REQUIRED, "shift": REQUIRED},
    tags="quant",
)
def _qsoftmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer softmax: a 256-entry exp table, one reciprocal per row, a requantize of the
    Q15 probabilities by ``(multiplier, shift)`` (``numerics.int_softmax``)."""
    _last_axis(types, attrs, "q.softmax")
    _shift(attrs)
    return [TensorType(_int_dtype(attrs), types[0].shape)]


@register_op(
    "q.layernorm", "x gamma beta", {"axis": -1, "dtype": REQUIRED, "eps_int": 0}, tags="quant"
)
def _qlayernorm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer layer norm: centred sums, an integer square root, one reciprocal per row,
    then ``gamma``/``beta`` as i32 constants in Q16 of the output scale
    (``numerics.int_layernorm_z``)."""
    _last_axis(types, attrs, "q.layernorm")
    n = types[0].shape[-1]
    for t, name in ((types[1], "gamma"), (types[2], "beta")):
        if t.dtype != "i32" or tuple(t.shape) != (n,):
            raise ShapeError(f"q.layernorm {name} must be i32[{n}], got {t}")
    if int(attrs["eps_int"]) < 0:
        raise ShapeError(f"q.layernorm eps_int must be >= 0, got {attrs['eps_int']}")
    return [TensorType(_int_dtype(attrs), types[0].shape)]
