"""The ONNX converter table, part 7: vision ops (GridSample, cubic Resize,
NonMaxSuppression, Det, ReverseSequence), each to one op of ``compiler.ir.ops_vision``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.frontends import onnx_ops_more  # noqa: F401  (first: Resize is wrapped)
from compiler.frontends.onnx_importer import OnnxNode, Output, Reject
from compiler.frontends.onnx_ops_nn import resize_scales
from compiler.frontends.onnx_table import CONVERTERS, converts
from compiler.ir import TensorType, Value
from compiler.ir.ops_vision import CUBIC_COORDINATES, GRID_MODES

#: GridSample's mode names before opset 20.
_GRID_MODE_ALIASES = {"bilinear": "linear", "bicubic": "cubic"}


@converts("GridSample")
def _grid_sample(n: OnnxNode) -> Sequence[Output]:
    mode = str(n.attr("mode", "linear" if n.opset >= 20 else "bilinear"))
    mode = _GRID_MODE_ALIASES.get(mode, mode)
    if mode not in GRID_MODES:
        raise Reject(f"GridSample mode={mode!r}")
    x = n.value(0)
    attrs = {"mode": mode, "padding": str(n.attr("padding_mode", "zeros")),
             "align_corners": bool(n.attr("align_corners", 0))}  # fmt: skip
    return [n.emit("nn.grid_sample", [x, n.value(1, x.dtype)], attrs)]


_resize_before = CONVERTERS["Resize"]  # onnx_ops_more's


@converts("Resize", "Upsample")
def _resize(n: OnnxNode) -> Sequence[Output]:
    """mode=cubic: ``nn.resize_cubic`` to the static output shape; other modes as before."""
    if n.attr("mode", "nearest") != "cubic":
        return _resize_before(n)
    if n.attr("antialias", 0):
        raise Reject("cubic resize with antialias=1")
    x = n.value(0)
    shape = n.static_shape(0, "cubic Resize")
    scales, sizes = resize_scales(n, x.type.rank)
    transform = n.attr("coordinate_transformation_mode", "half_pixel")
    if transform not in CUBIC_COORDINATES:
        raise Reject(f"cubic resize with coordinate_transformation_mode={transform!r}")
    out = sizes or [int(np.floor(d * s)) for d, s in zip(shape, scales, strict=True)]
    attrs = {"sizes": out, "scales": scales, "mode": transform,
             "a": float(n.attr("cubic_coeff_a", -0.75)),
             "exclude_outside": bool(n.attr("exclude_outside", 0))}  # fmt: skip
    return [n.emit("nn.resize_cubic", [x], attrs)]


def _limit(n: OnnxNode, index: int, dtype: str, default: float | None) -> Value:
    """An optional NMS operand; an absent one is an empty tensor (the op's default)."""
    if n.has(index):
        return n.value(index, dtype)
    shape = (0,) if default is None else (1,)
    t = TensorType(dtype, shape)
    data = np.zeros(shape, t.np_dtype) if default is None else np.full(shape, default)
    return n.constant(data.astype(t.np_dtype), n.name_hint(f"in{index}"), t)


@converts("NonMaxSuppression")
def _nms(n: OnnxNode) -> Sequence[Output]:
    boxes = n.value(0)
    inputs = [boxes, n.value(1, boxes.dtype), _limit(n, 2, "i64", 0),
              _limit(n, 3, "f32", 0.0), _limit(n, 4, "f32", None)]  # fmt: skip
    return [n.emit("nn.nms", inputs, {"center_box": bool(n.attr("center_point_box", 0))})]


@converts("Det")
def _det(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("math.det", [n.value(0)])]


@converts("ReverseSequence")
def _reverse_sequence(n: OnnxNode) -> Sequence[Output]:
    attrs = {"batch_axis": int(n.attr("batch_axis", 1)), "time_axis": int(n.attr("time_axis", 0))}
    return [n.emit("tensor.reverse_sequence", [n.value(0), n.value(1, "i64")], attrs)]


@converts("DeformConv")
def _deform_conv(n: OnnxNode) -> Sequence[Output]:
    x, w = n.value(0), n.value(1)
    offset = n.value(2, x.dtype)
    wshape = n.static_shape(1, "DeformConv's weight")
    if len(wshape) != 4:
        raise Reject(f"{len(wshape) - 2}-D DeformConv (only 2-D)")
    oshape = n.static_shape(2, "DeformConv's offset")
    dtype = x.type.np_dtype
    bias = n.value(3, x.dtype) if n.has(3) else n.constant(np.zeros(wshape[0], dtype),
                                                           n.name_hint("b"))  # fmt: skip
    mask_shape = (oshape[0], oshape[1] // 2, *oshape[2:])
    mask = n.value(4, x.dtype) if n.has(4) else n.constant(np.ones(mask_shape, dtype),
                                                           n.name_hint("mask"))  # fmt: skip
    strides, dilations = [int(s) for s in n.attr("strides", [1, 1])], [
        int(d) for d in n.attr("dilations", [1, 1])]  # fmt: skip
    attrs = {"strides": strides, "pads": [int(p) for p in n.attr("pads", [0, 0, 0, 0])],
             "dilations": dilations, "group": int(n.attr("group", 1)),
             "offset_group": int(n.attr("offset_group", 1))}  # fmt: skip
    return [n.emit("nn.deform_conv", [x, w, offset, bias, mask], attrs)]


@converts("RoiAlign")
def _roi_align(n: OnnxNode) -> Sequence[Output]:
    """``coordinate_transformation_mode`` from opset 16 (default half_pixel); before, the
    legacy output_half_pixel."""
    x = n.value(0)
    transform = n.attr("coordinate_transformation_mode",
                       "half_pixel" if n.opset >= 16 else "output_half_pixel")  # fmt: skip
    if transform not in ("half_pixel", "output_half_pixel"):
        raise Reject(f"RoiAlign coordinate_transformation_mode={transform!r}")
    attrs = {"mode": str(n.attr("mode", "avg")), "out_h": int(n.attr("output_height", 1)),
             "out_w": int(n.attr("output_width", 1)),
             "sampling_ratio": int(n.attr("sampling_ratio", 0)),
             "spatial_scale": float(n.attr("spatial_scale", 1.0)),
             "half_pixel": transform == "half_pixel"}  # fmt: skip
    return [n.emit("nn.roi_align", [x, n.value(1, x.dtype), n.value(2, "i64")], attrs)]
