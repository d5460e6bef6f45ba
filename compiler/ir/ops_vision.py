"""Op table, part 8: vision ops of the ONNX standard (conformance coverage).

Sampling at computed coordinates (grid sample), cubic resizing, non-maximum suppression
(its count of kept boxes is runtime data: a symbolic dimension), determinants and
sequence reversal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import REQUIRED, conv_out_dim, norm_axis, register_op, require_float
from compiler.ir.types import TensorType

GRID_MODES = ("linear", "nearest", "cubic")
GRID_PADDINGS = ("zeros", "border", "reflection")


@register_op("nn.grid_sample", "x grid", {"mode": "linear", "padding": "zeros",
                                  "align_corners": False})  # fmt: skip
def _grid_sample(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Sample ``x`` [N, C, D1..Dn] at the normalized coordinates ``grid`` [N, H1..Hm, n]
    (in [-1, 1], the last entry indexing the last dimension) by ``mode``, with
    ``padding`` outside the input: [N, C, H1..Hm] (ONNX GridSample)."""
    x, grid = types
    require_float(x)
    require_float(grid, "grid")
    n = x.rank - 2
    if n < 1 or grid.rank != x.rank or grid.shape[-1] != n or grid.shape[0] != x.shape[0]:
        raise ShapeError(f"grid_sample of {x} at {grid}")
    if attrs["mode"] not in GRID_MODES or attrs["padding"] not in GRID_PADDINGS:
        raise ShapeError(f"grid_sample mode {attrs['mode']!r}, padding {attrs['padding']!r}")
    return [TensorType(x.dtype, (*x.shape[:2], *grid.shape[1:-1]))]


#: ONNX Resize coordinate transformations that ``nn.resize_cubic`` takes.
CUBIC_COORDINATES = (
    "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric",
)  # fmt: skip


@register_op("nn.resize_cubic", "x", {"sizes": REQUIRED, "scales": REQUIRED, "mode": "half_pixel",
                              "a": -0.75, "exclude_outside": False})  # fmt: skip
def _resize_cubic(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Bicubic (Keys, coefficient ``a``) resize of every dimension to ``sizes`` with the
    ``scales`` of ONNX Resize; taps outside the input repeat the edge, or with
    ``exclude_outside`` drop out and the rest are renormalized."""
    x = types[0]
    require_float(x)
    sizes, scales = list(attrs["sizes"]), [float(s) for s in attrs["scales"]]
    if len(sizes) != x.rank or len(scales) != x.rank or attrs["mode"] not in CUBIC_COORDINATES:
        raise ShapeError(f"resize_cubic of {x} to {sizes} ({attrs['mode']!r})")
    if any(int(s) < 1 for s in sizes) or any(not s > 0 for s in scales):
        raise ShapeError(f"resize_cubic sizes {sizes}, scales {scales}")
    if any(not isinstance(d, int) for d in x.shape):
        raise ShapeError(f"resize_cubic needs a static input shape, got {x}")
    return [TensorType(x.dtype, tuple(int(s) for s in sizes))]


@register_op("nn.nms", "boxes scores max_per_class iou_threshold score_threshold",
     {"center_box": False, "use_score_threshold": True})  # fmt: skip
def _nms(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Greedy non-maximum suppression per batch and class (ONNX NonMaxSuppression):
    ``boxes`` [B, N, 4] (corners, or centre and size with ``center_box``), ``scores``
    [B, C, N]; at most ``max_per_class`` boxes each, scoring above ``score_threshold`` and
    overlapping a kept box by IoU at most ``iou_threshold``. Result: [kept, 3] rows of
    (batch, class, box)."""
    boxes, scores = types[0], types[1]
    require_float(boxes, "boxes")
    require_float(scores, "scores")
    if boxes.rank != 3 or boxes.shape[2] != 4 or scores.rank != 3:
        raise ShapeError(f"nms boxes {boxes} and scores {scores}")
    if scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ShapeError(f"nms boxes {boxes} do not fit scores {scores}")
    if types[2].dtype not in ("i32", "i64") or any(t.rank > 1 for t in types[2:]):
        raise ShapeError("nms limits must be scalars (max_per_class an integer)")
    require_float(types[3], "iou_threshold")
    require_float(types[4], "score_threshold")
    return [TensorType("i64", ("kept'", 3))]


@register_op("math.det", "x")
def _det(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The determinant of each square matrix in the last two dimensions (ONNX Det)."""
    x = types[0]
    require_float(x)
    if x.rank < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"det needs square matrices, got {x}")
    return [TensorType(x.dtype, tuple(x.shape[:-2]))]


@register_op("tensor.reverse_sequence", "x lens", {"batch_axis": 1, "time_axis": 0}, tags="layout")
def _reverse_sequence(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Reverse the first ``lens[b]`` entries along ``time_axis`` of each batch entry ``b``
    along ``batch_axis`` (ONNX ReverseSequence)."""
    x, lens = types
    if x.rank < 2 or lens.rank != 1 or lens.dtype not in ("i32", "i64"):
        raise ShapeError(f"reverse_sequence of {x} by {lens}")
    b = norm_axis(int(attrs["batch_axis"]), x.rank)
    t = norm_axis(int(attrs["time_axis"]), x.rank)
    if b == t or lens.shape[0] != x.shape[b]:
        raise ShapeError(f"reverse_sequence axes {b}, {t} of {x} by {lens}")
    return [x]


@register_op("nn.deform_conv", "x w offset b mask", {"strides": None, "pads": None,
                                             "dilations": None, "group": 1,
                                             "offset_group": 1})  # fmt: skip
def _deform_conv(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """2-D deformable convolution (ONNX DeformConv): each kernel tap samples ``x``
    bilinearly (zeros outside) at its position plus ``offset`` [N, offset_group*kh*kw*2,
    oh, ow] (dy, dx per tap), scaled by ``mask`` [N, offset_group*kh*kw, oh, ow]; then
    weights ``w`` [oc, ic/group, kh, kw] and bias ``b`` [oc] as a grouped conv."""
    x, w, off, b, mask = types
    require_float(x)
    if x.rank != 4 or w.rank != 4 or any(not isinstance(d, int) for d in (*x.shape, *w.shape)):
        raise ShapeError(f"deform_conv (2-D, static shapes) of {x} with {w}")
    strides = [int(v) for v in attrs["strides"] or [1, 1]]
    pads = [int(v) for v in attrs["pads"] or [0, 0, 0, 0]]
    dils = [int(v) for v in attrs["dilations"] or [1, 1]]
    group, og = int(attrs["group"]), int(attrs["offset_group"])
    kh, kw = int(w.shape[2]), int(w.shape[3])
    if len(strides) != 2 or len(pads) != 4 or len(dils) != 2 or min(strides + dils) < 1:
        raise ShapeError(f"deform_conv strides {strides}, pads {pads}, dilations {dils}")
    if group < 1 or og < 1 or x.shape[1] != w.shape[1] * group or int(w.shape[0]) % group \
            or int(x.shape[1]) % og:  # fmt: skip
        raise ShapeError(f"deform_conv groups {group}/{og} of {x} with {w}")
    out = [conv_out_dim(x.shape[2 + i], (kh, kw)[i], strides[i], pads[i], pads[2 + i],
                        dils[i]) for i in range(2)]  # fmt: skip
    want = {2: (x.shape[0], og * kh * kw * 2, *out), 3: (w.shape[0],),
            4: (x.shape[0], og * kh * kw, *out)}  # fmt: skip
    for i, shape in want.items():
        if tuple(types[i].shape) != shape or types[i].dtype != x.dtype:
            raise ShapeError(f"deform_conv operand {i} is {types[i]}, expected {shape}")
    return [TensorType(x.dtype, (x.shape[0], w.shape[0], *out))]


@register_op("nn.roi_align", "x rois batch_indices", {
    "mode": "avg", "out_h": 1, "out_w": 1, "sampling_ratio": 0, "spatial_scale": 1.0,
    "half_pixel": True,
})  # fmt: skip
def _roi_align(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX RoiAlign: each region ``rois[r]`` (x1, y1, x2, y2, times ``spatial_scale``;
    shifted by half a pixel with ``half_pixel``) of image ``batch_indices[r]`` of ``x``
    [N, C, H, W] pooled to [out_h, out_w] bins by the average (or max) of bilinear samples
    on a ``sampling_ratio`` grid per bin (0: adaptive): [R, C, out_h, out_w]."""
    x, rois, idx = types
    require_float(x)
    if x.rank != 4 or rois.rank != 2 or rois.shape[1] != 4 or idx.shape != (rois.shape[0],):
        raise ShapeError(f"roi_align of {x} at {rois} of images {idx}")
    if idx.dtype not in ("i32", "i64") or rois.dtype != x.dtype:
        raise ShapeError(f"roi_align rois {rois} / batch indices {idx}")
    if attrs["mode"] not in ("avg", "max") or min(int(attrs["out_h"]), int(attrs["out_w"])) < 1 \
            or int(attrs["sampling_ratio"]) < 0:  # fmt: skip
        raise ShapeError(f"roi_align mode {attrs['mode']!r}, output {attrs['out_h']}x"
                         f"{attrs['out_w']}")  # fmt: skip
    return [TensorType(x.dtype, (rois.shape[0], x.shape[1], int(attrs["out_h"]),
                                 int(attrs["out_w"])))]  # fmt: skip
