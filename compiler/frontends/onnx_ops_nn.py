"""The ONNX converter table, part 2: pooling, reductions, nearest resize and quantization."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.frontends.onnx_importer import (
    OnnxNode,
    Output,
    Reject,
    dtype_of_numpy_or_none,
    ir_dtype,
)
from compiler.frontends.onnx_table import converts, explicit_pads, nondefault, spatial_attrs
from compiler.ir import QuantParams, TensorType, Value
from compiler.ir.types import is_int

# ---- pooling --------------------------------------------------------------------------------
Window = tuple[int, int, int, int, int]  # kernel, stride, pad begin, pad end, dilation


@converts("MaxPool", "AveragePool")
def _pool(n: OnnxNode) -> Sequence[Output]:
    """2-D pooling maps directly; 1-D goes through an inserted unit dimension; 3-D and up
    works when the extra dimensions have trivial windows (size 1, stride 1, no padding),
    as in torch's LocalResponseNorm export (an AveragePool with kernel [size, 1, 1])."""
    if n.used(1):
        raise Reject("MaxPool's Indices output")
    x = n.value(0)
    kernel = [int(k) for k in n.attr("kernel_shape")]
    strides, dilations = spatial_attrs(n, len(kernel))
    if n.op_type == "AveragePool" and any(d != 1 for d in dilations):
        raise Reject("dilated average pooling")
    pads = explicit_pads(n, x.shape[2:], kernel, strides, dilations)
    windows = [
        (k, s, pads[i], pads[len(kernel) + i], d)
        for i, (k, s, d) in enumerate(zip(kernel, strides, dilations, strict=True))
    ]
    if len(windows) == 2:
        return [_pool2d(n, x, windows, None)]
    if len(windows) == 1:
        x4 = n.emit("tensor.unsqueeze", [x], {"axes": [2]}, hint="4d")
        y = _pool2d(n, x4, [(1, 1, 0, 0, 1), windows[0]], "pool")
        return [n.emit("tensor.squeeze", [y], {"axes": [2]})]
    return [_pool_nd(n, x, windows)]


def _pool2d(n: OnnxNode, x: Value, windows: Sequence[Window], hint: str | None) -> Value:
    kernel, strides, begins, ends, dilations = (list(v) for v in zip(*windows, strict=True))
    attrs: dict[str, Any] = {
        "kernel": kernel,
        "strides": strides,
        **nondefault(pads=begins + ends),
        "ceil_mode": bool(n.attr("ceil_mode", 0)),
    }
    if n.op_type == "MaxPool":
        attrs.update(nondefault(dilations=dilations))
        return n.emit("nn.max_pool2d", [x], attrs, hint=hint)
    attrs["count_include_pad"] = bool(n.attr("count_include_pad", 0))
    return n.emit("nn.avg_pool2d", [x], attrs, hint=hint)


def _pool_nd(n: OnnxNode, x: Value, windows: list[Window]) -> Value:
    """Fold trivial-window dimensions into the channels (leading) or into each other."""
    shape = list(n.static_shape(0, f"{len(windows)}-D pooling"))
    trivial = [w == (1, 1, 0, 0, 1) for w in windows]
    lead = 0
    while lead < len(windows) and trivial[lead]:
        lead += 1
    groups: list[list[int]] = []
    for i in range(lead, len(windows)):
        if groups and trivial[i] and all(trivial[j] for j in groups[-1]):
            groups[-1].append(i)
        else:
            groups.append([i])
    if len(groups) > 2 or not groups:
        raise Reject(f"{len(windows)}-D pooling with more than two non-trivial window dims")
    spatial = shape[2:]
    merged = [shape[0], shape[1] * math.prod(spatial[:lead])]
    merged += [math.prod(spatial[i] for i in g) for g in groups]
    group_windows = [windows[g[0]] if len(g) == 1 else (1, 1, 0, 0, 1) for g in groups]
    flat = n.emit("tensor.reshape", [x], {"shape": merged}, hint="merged")
    if len(groups) == 1:
        flat = n.emit("tensor.unsqueeze", [flat], {"axes": [2]}, hint="4d")
        group_windows = [(1, 1, 0, 0, 1), *group_windows]
    y = _pool2d(n, flat, group_windows, "pool")
    out_sizes = list(y.shape[2:])[-len(groups) :]
    final = list(shape[:2]) + spatial[:lead]
    for g, size in zip(groups, out_sizes, strict=True):
        final += [spatial[i] for i in g] if len(g) > 1 or trivial[g[0]] else [size]
    return n.emit("tensor.reshape", [y], {"shape": final})


@converts("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(n: OnnxNode) -> Sequence[Output]:
    op = "nn.global_avg_pool" if n.op_type == "GlobalAveragePool" else "nn.global_max_pool"
    return [n.emit(op, [n.value(0)])]


# ---- reductions -----------------------------------------------------------------------------
REDUCE: dict[str, str] = {
    "ReduceMean": "math.reduce_mean",
    "ReduceSum": "math.reduce_sum",
    "ReduceMax": "math.reduce_max",
    "ReduceMin": "math.reduce_min",
    "ReduceProd": "math.reduce_prod",
    "ReduceL1": "math.reduce_sum",
    "ReduceL2": "math.reduce_sum",
    "ReduceSumSquare": "math.reduce_sum",
}
#: What a reduction applies to x first (``math.abs``, a square) and to the result after.
_REDUCE_PRE: dict[str, str] = {"ReduceL1": "abs", "ReduceL2": "square", "ReduceSumSquare": "square"}


@converts(*REDUCE)
def _reduce(n: OnnxNode) -> Sequence[Output]:
    """Axes are an attribute before opset 13 (ReduceSum) or 18 (the others), then an input;
    no axes means all of them, unless ``noop_with_empty_axes``."""
    x = n.value(0)
    axes_as_input = n.opset >= (13 if n.op_type == "ReduceSum" else 18)
    if axes_as_input:
        axes = n.ints(1, "the axes") if n.has(1) else []
    else:
        axes = [int(a) for a in n.attr("axes", [])]
    if not axes and n.attr("noop_with_empty_axes", 0):
        return [x]
    pre = _REDUCE_PRE.get(n.op_type)
    if pre == "abs":
        x = n.emit("math.abs", [x], hint="abs")
    elif pre == "square":
        x = n.emit("math.mul", [x, x], hint="square")
    attrs = {"axes": axes or None, "keepdims": bool(n.attr("keepdims", 1))}
    if n.op_type == "ReduceL2":
        return [n.emit("math.sqrt", [n.emit(REDUCE[n.op_type], [x], attrs, hint="sum")])]
    return [n.emit(REDUCE[n.op_type], [x], attrs)]


def order_reversed(n: OnnxNode, x: Value) -> Value:
    """``x`` mapped by a strictly decreasing function, so that the first minimum of ``x`` is
    the first maximum of the result: ``~x`` (= -x - 1) for integers, signed or unsigned
    (``-x`` wraps for unsigned values and for the most negative one), ``-x`` for floats."""
    op = "math.bitwise_not" if is_int(x.dtype) else "math.neg"
    return n.emit(op, [x], hint="neg")


@converts("ArgMax", "ArgMin")
def _argmax(n: OnnxNode) -> Sequence[Output]:
    if n.attr("select_last_index", 0):
        raise Reject("select_last_index=1")
    x = n.value(0)
    if n.op_type == "ArgMin":
        x = order_reversed(n, x)
    attrs = {"axis": int(n.attr("axis", 0)), "keepdims": bool(n.attr("keepdims", 1))}
    return [n.emit("math.argmax", [x], attrs)]


# ---- nearest resize -------------------------------------------------------------------------
def _source_coordinate(out_idx: np.ndarray, size_in: int, size_out: int, scale: float,
                       mode: str) -> np.ndarray:  # fmt: skip
    """ONNX Resize's coordinate transformation: output index -> input coordinate."""
    if mode in ("half_pixel", "pytorch_half_pixel"):
        if mode == "pytorch_half_pixel" and size_out <= 1:
            return np.zeros_like(out_idx)
        return (out_idx + 0.5) / scale - 0.5
    if mode == "asymmetric":
        return out_idx / scale
    if mode == "align_corners":
        return out_idx * (size_in - 1) / (size_out - 1) if size_out > 1 else 0 * out_idx
    if mode == "half_pixel_symmetric":
        offset = size_in / 2 * (1 - size_out / (scale * size_in))
        return offset + (out_idx + 0.5) / scale - 0.5
    raise Reject(f"coordinate_transformation_mode={mode!r}")


_ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _same_as_ir(size_in: int, size_out: int, scale: float, mode: str, nearest: str) -> bool:
    """Whether ONNX nearest resize picks the pixels the IR's ``in[floor(i / scale)]`` does."""
    if nearest not in _ROUNDING:
        raise Reject(f"nearest_mode={nearest!r}")
    idx = np.arange(size_out, dtype=np.float64)
    onnx_src = _ROUNDING[nearest](_source_coordinate(idx, size_in, size_out, scale, mode))
    ir_src = np.floor(idx / scale)
    last = size_in - 1
    return bool(np.array_equal(np.clip(onnx_src, 0, last), np.minimum(ir_src, last)))


def resize_scales(n: OnnxNode, rank: int) -> tuple[list[float], list[int] | None]:
    """Per-dimension scales, and the requested sizes when given instead."""
    if n.op_type == "Upsample" and n.opset < 9:
        return [float(s) for s in n.attr("scales")], None
    scales_at = 1 if n.op_type == "Upsample" or n.opset < 11 else 2
    scales = n.known(scales_at) if n.has(scales_at) else None
    axes = [int(a) % rank for a in n.attr("axes", range(rank))]
    if scales is not None and scales.size:
        full = [1.0] * rank
        for a, s in zip(axes, scales.reshape(-1).tolist(), strict=True):
            full[a] = float(s)
        return full, None
    if n.has(scales_at) and scales is None:
        raise Reject("scales computed at runtime")
    if n.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Reject(f"keep_aspect_ratio_policy={n.attr('keep_aspect_ratio_policy')!r}")
    sizes = n.ints(3, "the output sizes")
    full_sizes = [int(d) for d in n.static_shape(0, "Resize to sizes")]
    for a, s in zip(axes, sizes, strict=True):
        full_sizes[a] = s
    return [o / i for o, i in zip(full_sizes, n.static_shape(0, ""), strict=True)], full_sizes


@converts("Resize", "Upsample")
def _resize(n: OnnxNode) -> Sequence[Output]:
    """Nearest resize where ONNX's coordinate mapping picks the same pixels as the IR's
    ``out[i] = in[floor(i / scale)]``: asymmetric/floor for any scale, the half-pixel
    modes for integer upscales (checked pixel by pixel on the actual sizes)."""
    mode = n.attr("mode", "nearest")
    if mode != "nearest":
        raise Reject(f"mode={mode!r} (only nearest)")
    x = n.value(0)
    scales, sizes = resize_scales(n, x.type.rank)
    old = n.op_type == "Upsample" or n.opset < 11
    transform = "asymmetric" if old else n.attr("coordinate_transformation_mode", "half_pixel")
    nearest = "floor" if old else n.attr("nearest_mode", "round_prefer_floor")
    for axis, (size, scale) in enumerate(zip(x.shape, scales, strict=True)):
        if scale == 1.0:
            continue
        if not isinstance(size, int):
            raise Reject(f"resizing the symbolic dimension {size!r}")
        size_out = sizes[axis] if sizes else math.floor(size * scale)
        if sizes and int(size * scale) != size_out:
            scale = scales[axis] = float(np.nextafter(scale, np.inf))
        if not _same_as_ir(size, size_out, scale, transform, nearest):
            raise Reject(
                f"coordinate_transformation_mode={transform!r} with nearest_mode={nearest!r} "
                f"and scale {scale:g} picks other pixels than out[i] = in[floor(i / scale)]"
            )
    return [n.emit("nn.resize", [x], {"scales": scales, "mode": "nearest"})]


# ---- quantization ---------------------------------------------------------------------------
def _quant_params(n: OnnxNode, rank: int) -> tuple[QuantParams, str]:
    """Scale (input 1) and zero point (input 2) as QuantParams, and the integer dtype."""
    if n.attr("block_size", 0):
        raise Reject("blocked quantization (block_size)")
    scale = n.need_known(1, "the scale").astype(np.float64)
    zp = n.known(2) if n.has(2) else None
    if n.has(2) and zp is None:
        raise Reject("the zero point (input 2) must be a constant")
    if n.attr("output_dtype", 0):
        dtype = ir_dtype(n.attr("output_dtype"), "the quantized type")
    else:
        dtype = "u8" if zp is None else dtype_of_numpy_or_none(zp) or "?"
    if not is_int(dtype):
        raise Reject(f"quantized type {dtype} (the IR quantizes to integer types)")
    zps = np.zeros(scale.shape, np.int64) if zp is None else zp.astype(np.int64)
    if scale.size == 1:
        return QuantParams.per_tensor(float(scale.reshape(())), int(zps.reshape(-1)[0])), dtype
    axis = int(n.attr("axis", 1))
    return QuantParams.per_channel(scale, axis + rank if axis < 0 else axis, zps), dtype


@converts("QuantizeLinear")
def _quantize(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    qp, dtype = _quant_params(n, x.type.rank)
    return [n.emit("q.quantize", [x], {"dtype": dtype}, [TensorType(dtype, x.shape, qp)])]


@converts("DequantizeLinear")
def _dequantize(n: OnnxNode) -> Sequence[Output]:
    """The input takes the scale on its type: a constant (weight) becomes an integer
    constant with QuantParams, a graph input gets them on its type."""
    t = n.type(0)
    qp, _ = _quant_params(n, t.rank)
    data = n.known(0)
    if data is not None:
        x = n.constant(data, n.inputs[0], TensorType(t.dtype, t.shape, qp))
    else:
        x = n.value(0)
        if x.type.quant is None and x.producer is None:
            x.type = x.type.with_quant(qp)
        elif x.type.quant != qp:
            raise Reject(f"input already quantized as {x.type.quant}, DequantizeLinear says {qp}")
    out_dtype = dtype_of_numpy_or_none(n.need_known(1, "the scale")) or "f32"
    return [n.emit("q.dequantize", [x], {"dtype": out_dtype} if out_dtype != "f32" else {})]
