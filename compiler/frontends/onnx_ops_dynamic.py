"""The ONNX converter table, part 5: shape-deciding operands that are runtime data.

Reshape's shape, Slice's bounds, Pad's widths, Range's bounds ... are inputs in ONNX. When
they are known at import the static converters (``onnx_ops_tensor``) take them as attributes;
when they are graph inputs, or computed from graph inputs, the converters here pass them to
the ops of ``compiler.ir.ops_dynamic`` as operands, whose output dimensions are symbolic
and sized by the interpreter at run time. An input stays an input: nothing is folded.

Each entry wraps the static converter of its op and chooses per node. QuantizeLinear and
DequantizeLinear with a runtime scale or zero point, or a float8/float4 quantized type,
become the float arithmetic ONNX defines them by (no new op).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.frontends import onnx_ops_more, onnx_ops_nn, onnx_ops_tensor  # noqa: F401
from compiler.frontends.onnx_importer import (
    OnnxNode,
    Output,
    Reject,
    dtype_of_numpy_or_none,
    ir_dtype,
)
from compiler.frontends.onnx_table import CONVERTERS, Converter, converts
from compiler.ir import Value
from compiler.ir.ops import norm_axis
from compiler.ir.types import NARROW_FLOAT_DTYPES, is_float, is_int
from compiler.numerics import INT_RANGES


def _runtime(n: OnnxNode, *indices: int) -> bool:
    """Whether any of inputs ``indices`` is present and computed at runtime."""
    return any(n.has(i) and n.known(i) is None for i in indices)


def _i64(n: OnnxNode, index: int) -> Value:
    """Input ``index`` as an i64 value (a known input becomes a constant)."""
    return n.value(index, "i64")


def _dynamic(op_type: str, since: int, *indices: int) -> Callable[[Converter], Converter]:
    """Register ``fn`` for ``op_type`` where one of ``indices`` is runtime data (from opset
    ``since``, where they are inputs); the op's static converter does the rest."""
    static = CONVERTERS[op_type]

    def register(fn: Converter) -> Converter:
        def choose(n: OnnxNode) -> Sequence[Output]:
            if n.opset >= since and _runtime(n, *indices):
                return fn(n)
            return static(n)

        choose.__doc__ = fn.__doc__
        CONVERTERS[op_type] = choose
        return fn

    return register


@_dynamic("Reshape", 5, 1)
def _reshape(n: OnnxNode) -> Sequence[Output]:
    attrs = {"allowzero": bool(n.attr("allowzero", 0))}
    return [n.emit("tensor.reshape_dyn", [n.value(0), _i64(n, 1)], attrs)]


@_dynamic("Expand", 8, 1)
def _expand(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("tensor.expand_dyn", [n.value(0), _i64(n, 1)])]


@_dynamic("Slice", 10, 1, 2, 3, 4)
def _slice(n: OnnxNode) -> Sequence[Output]:
    """Missing axes are 0..k-1 (an i64 constant where steps follow)."""
    operands = [n.value(0), _i64(n, 1), _i64(n, 2)]
    if n.has(3):
        operands.append(_i64(n, 3))
    elif n.has(4):
        count = operands[1].shape[0] if operands[1].type.rank == 1 else 1
        operands.append(n.constant(np.arange(count, dtype=np.int64), n.name_hint("axes")))
    if n.has(4):
        operands.append(_i64(n, 4))
    return [n.emit("tensor.slice_dyn", operands)]


_static_split = CONVERTERS["Split"]


@converts("Split")
def _split(n: OnnxNode) -> Sequence[Output]:
    """Runtime sizes, or equal parts of a dimension runtime data decides: ``split_dyn``."""
    x = n.value(0)
    axis = norm_axis(int(n.attr("axis", 0)), x.type.rank)
    sized = n.opset >= 13 and n.has(1)
    if sized and not _runtime(n, 1) or not sized and isinstance(x.shape[axis], int):
        return _static_split(n)
    if not sized and (n.opset < 13 and n.attr("split") is not None):
        return _static_split(n)
    attrs = {"axis": axis, "count": len(n.outputs)}
    names = [n.name_hint(None, i) for i in range(len(n.outputs))]
    sizes = [_i64(n, 1)] if sized else []
    return n.emit_multi("tensor.split_dyn", [x, *sizes], attrs, None, names)


@_dynamic("Squeeze", 13, 1)
def _squeeze(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("tensor.squeeze_dyn", [n.value(0), _i64(n, 1)])]


@_dynamic("Unsqueeze", 13, 1)
def _unsqueeze(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("tensor.unsqueeze_dyn", [n.value(0), _i64(n, 1)])]


@_dynamic("Tile", 6, 1)
def _tile(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("tensor.tile_dyn", [n.value(0), _i64(n, 1)])]


@_dynamic("Pad", 11, 1, 2, 3)
def _pad(n: OnnxNode) -> Sequence[Output]:
    """The fill value defaults to 0 (a scalar constant where axes follow)."""
    x = n.value(0)
    mode = n.attr("mode", "constant")
    operands = [x, _i64(n, 1)]
    if n.has(2) or n.has(3):
        operands.append(n.value(2, x.dtype) if n.has(2) else n.scalar(0, x.dtype))
    if n.has(3):
        operands.append(_i64(n, 3))
    return [n.emit("tensor.pad_dyn", operands, {"mode": mode})]


@_dynamic("Range", 11, 0, 1, 2)
def _range(n: OnnxNode) -> Sequence[Output]:
    dtype = n.type(0).dtype
    return [n.emit("tensor.range_dyn", [n.value(i, dtype) for i in range(3)])]


@_dynamic("ConstantOfShape", 9, 0)
def _constant_of_shape(n: OnnxNode) -> Sequence[Output]:
    fill = n.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill)
    dtype = dtype_of_numpy_or_none(fill)
    if dtype is None:
        raise Reject(f"ConstantOfShape value of type {fill.dtype}")
    value = fill.reshape(-1)[0].item() if fill.size else 0
    attrs: dict[str, Any] = {"value": value, "dtype": dtype}
    return [n.emit("tensor.constant_of_shape", [_i64(n, 0)], attrs)]


def _runtime_shape(n: OnnxNode) -> bool:
    """Whether input 0's shape has dimensions that runtime data decides (``x'``)."""
    return any(isinstance(d, str) and d.endswith("'") for d in n.shape(0))


_static_shape = CONVERTERS["Shape"]


@converts("Shape")
def _shape(n: OnnxNode) -> Sequence[Output]:
    """Of a tensor whose shape runtime data decides: ``tensor.shape`` at run time (sliced
    by ``start``/``end``); of any other tensor: known at import (ints and names)."""
    if not _runtime_shape(n):
        return _static_shape(n)
    x = n.value(0)
    shape = n.emit("tensor.shape", [x], hint="all" if n.attr("start") or n.attr("end") else None)
    start, end = int(n.attr("start", 0)), n.attr("end")
    if not start and end is None:
        return [shape]
    stop = x.type.rank if end is None else int(end)
    attrs = {"starts": [start], "ends": [stop], "axes": [0]}
    return [n.emit("tensor.slice", [shape], attrs)]


_static_resize = CONVERTERS["Resize"]


@converts("Resize", "Upsample")
def _resize(n: OnnxNode) -> Sequence[Output]:
    """What the static converters take (constant scales or sizes and the coordinate modes
    the IR's resize ops have) stays static; any other nearest, linear or cubic resize
    (runtime scales or sizes included; not antialiased) becomes ``nn.resize_dyn``."""
    try:
        return _static_resize(n)
    except Reject as why:
        mode = n.attr("mode", "nearest")
        if mode not in ("nearest", "linear", "cubic") or n.op_type == "Upsample" and n.opset < 9:
            raise
        if n.attr("antialias", 0):
            raise Reject(f"{mode} resize with antialias=1") from why
    return [_resize_dyn(n, mode)]


def _resize_dyn(n: OnnxNode, mode: str) -> Value:
    old = n.op_type == "Upsample" or n.opset < 11
    scales_at = 1 if old else 2
    given = "scales" if n.has(scales_at) and not (
        (data := n.known(scales_at)) is not None and data.size == 0) else "sizes"  # fmt: skip
    x = n.value(0)
    params = n.value(scales_at, "f32") if given == "scales" else _i64(n, 3)
    attrs: dict[str, Any] = {
        "given": given,
        "mode": mode,
        "transform": "asymmetric" if old else n.attr("coordinate_transformation_mode",
                                                      "half_pixel"),
        "nearest_mode": "floor" if old else n.attr("nearest_mode", "round_prefer_floor"),
        "policy": n.attr("keep_aspect_ratio_policy", "stretch"),
        "extrapolation_value": float(n.attr("extrapolation_value", 0.0)),
        "cubic_coeff_a": float(n.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(n.attr("exclude_outside", 0)),
    }
    if n.attr("axes") is not None:
        attrs["axes"] = [int(a) for a in n.attr("axes")]
    roi = [n.value(1, "f32")] if attrs["transform"] == "tf_crop_and_resize" else []
    return n.emit("nn.resize_dyn", [x, params, *roi], attrs)


# ---- quantization with runtime parameters, or to float8 ------------------------------------
def _q_dtype(n: OnnxNode) -> str:
    """The quantized type: ``output_dtype``, else the zero point's type, else uint8."""
    if n.attr("output_dtype", 0):
        return ir_dtype(n.attr("output_dtype"), "the quantized type")
    return n.type(2).dtype if n.has(2) else "u8"


def _blocked(n: OnnxNode, param: Value, axis: int, size: Any) -> Value:
    """Blocked scales (``block_size`` elements along ``axis`` share one): each repeated
    ``block_size`` times along ``axis`` (unsqueeze, expand, reshape), cut to ``size``."""
    block, shape = int(n.attr("block_size")), list(param.shape)
    if not isinstance(size, int) or not all(isinstance(d, int) for d in shape):
        raise Reject("blocked quantization of symbolic dimensions")
    spread = n.emit("tensor.unsqueeze", [param], {"axes": [axis + 1]}, hint="blocks")
    wide = [*shape[: axis + 1], block, *shape[axis + 1 :]]
    spread = n.emit("tensor.expand", [spread], {"shape": wide}, hint="blocks_wide")
    full = [*shape[:axis], shape[axis] * block, *shape[axis + 1 :]]
    spread = n.emit("tensor.reshape", [spread], {"shape": full}, hint="blocks_flat")
    if full[axis] == size:
        return spread
    attrs = {"starts": [0], "ends": [size], "axes": [axis]}
    return n.emit("tensor.slice", [spread], attrs, hint="blocks_cut")


def _per_axis(n: OnnxNode, param: Value, dims: Sequence[Any], dtype: str) -> Value:
    """A scale or zero point, shaped to broadcast against a tensor of shape ``dims``: 1-D
    ones along ``axis``, blocked ones repeated, in ``dtype``."""
    rank = len(dims)
    if param.dtype != dtype:
        param = n.emit("tensor.cast", [param], {"to": dtype}, hint="param")
    if n.attr("block_size", 0):
        axis = norm_axis(int(n.attr("axis", 1)), rank)
        return _blocked(n, param, axis, dims[axis])
    if param.type.rank != 1 or rank <= 1:
        return param
    axis = norm_axis(int(n.attr("axis", 1)), rank)
    shape = [param.shape[0]] + [1] * (rank - axis - 1)
    return n.emit("tensor.reshape", [param], {"shape": shape}, hint="per_axis")


def _needs_float_lowering(n: OnnxNode, quantized: str) -> bool:
    """Runtime parameters, float8 types and blocked scales: the float arithmetic."""
    blocked = bool(n.attr("block_size", 0))
    return _runtime(n, 1, 2) or quantized in NARROW_FLOAT_DTYPES or blocked


def _wrap_quantize(static: Converter) -> Converter:
    def convert(n: OnnxNode) -> Sequence[Output]:
        """``y = saturate(round(x / scale) + zero_point)``; to a float8 type, the division
        is cast with saturation (ONNX QuantizeLinear)."""
        dtype = _q_dtype(n)
        if not _needs_float_lowering(n, dtype):
            return static(n)
        x = n.value(0)
        if not is_float(x.dtype):
            raise Reject(f"QuantizeLinear of {x.dtype} input")
        compute = "f32"
        x = x if x.dtype == compute else n.emit("tensor.cast", [x], {"to": compute}, hint="x")
        scale = _per_axis(n, n.value(1), x.shape, compute)
        y = n.emit("math.div", [x, scale], hint="scaled")
        if dtype in NARROW_FLOAT_DTYPES:
            saturate = bool(n.attr("saturate", 1))
            return [n.emit("tensor.cast", [y], {"to": dtype, "saturate": saturate})]
        if not is_int(dtype):
            raise Reject(f"quantized type {dtype}")
        y = n.emit("math.round", [y], hint="rounded")
        if n.has(2):
            y = n.emit("math.add", [y, _per_axis(n, n.value(2), x.shape, compute)], hint="zp")
        lo, hi = INT_RANGES[dtype]
        y = n.emit("nn.clip", [y], {"min": float(lo), "max": float(hi)}, hint="clipped")
        return [n.emit("tensor.cast", [y], {"to": dtype})]

    return convert


def _wrap_dequantize(static: Converter) -> Converter:
    def convert(n: OnnxNode) -> Sequence[Output]:
        """``y = (x - zero_point) * scale`` in the scale's float type (ONNX
        DequantizeLinear)."""
        if not _needs_float_lowering(n, n.type(0).dtype):
            return static(n)
        out = n.type(1).dtype
        out = out if out in ("f32", "f16", "bf16") else "f32"
        x = n.emit("tensor.cast", [n.value(0)], {"to": "f32"}, hint="x")
        if n.has(2):
            zp = _per_axis(n, n.value(2), x.shape, "f32")
            x = n.emit("math.sub", [x, zp], hint="centered")
        y = n.emit("math.mul", [x, _per_axis(n, n.value(1), x.shape, "f32")], hint="y")
        return [y if out == "f32" else n.emit("tensor.cast", [y], {"to": out})]

    return convert


converts("QuantizeLinear")(_wrap_quantize(CONVERTERS["QuantizeLinear"]))
converts("DequantizeLinear")(_wrap_dequantize(CONVERTERS["DequantizeLinear"]))



@converts("OneHot")
def _one_hot(n: OnnxNode) -> Sequence[Output]:
    """The depth is an operand even when known (the new dimension is then still symbolic)."""
    depth = n.value(1)
    attrs = {"axis": int(n.attr("axis", -1))}
    return [n.emit("tensor.one_hot", [n.value(0), depth, n.value(2)], attrs)]
