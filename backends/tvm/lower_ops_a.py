"""Lowering rules, part 6 (operator coverage, group A): N-D pooling, grid sampling, rounding,
convolutions whose weight is computed, QLinearMatMul, hardmax, Lp norms, one-hot, running
products, IsInf, Det, and Trilu of an empty tensor.

Each rule mirrors the interpreter (``compiler.interpreter_extra``, ``interpreter_vision``);
Relax/TOPI ops are used where one has the same meaning, and a tensor expression is written
out where none does (``nn.pool_nd``'s windows in float64, ``math.det``). Where a sub-case
cannot match the interpreter, the rule's check refuses it and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm import te_ops_a
from backends.tvm.lower import LowerContext, Rule, static_shape, tvm_const, tvm_dtype
from compiler.ir.graph import Graph, Node
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import is_float


def _R() -> Any:
    from tvm import relax

    return relax.op


def _axis(node: Node, rank: int, key: str = "axis") -> int:
    return int(LowerContext.attrs(node)[key]) % rank


def _along(axis: int, rank: int, size: int) -> list[int]:
    """The shape that lays a vector of ``size`` along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis] = size
    return shape


# ---- N-D pooling -----------------------------------------------------------------------------
def _pool_count(node: Node) -> np.ndarray:
    """How many taps each average window divides by: those inside the input, or inside
    input-or-padding with ``count_include_pad`` (a ceil-mode window may pass both)."""
    from compiler.interpreter_extra import window_index

    a = LowerContext.attrs(node)
    kernel = [int(k) for k in a["kernel"]]
    n = len(kernel)
    strides, pads, dils = (a["strides"] or [1] * n, a["pads"] or [0] * (2 * n),
                           a["dilations"] or [1] * n)  # fmt: skip
    sizes, out = static_shape(node.inputs[0])[2:], static_shape(node.outputs[0])[2:]
    count = np.ones(out, np.float64)
    for d in range(n):
        _, inside, padded = window_index(sizes[d], out[d], kernel[d], int(strides[d]),
                                          int(pads[d]), int(pads[n + d]), int(dils[d]))
        taps = (padded if a["count_include_pad"] else inside).sum(axis=1)
        count = count * np.asarray(taps, np.float64).reshape(_along(d, n, out[d]))
    return np.maximum(count, 1)


def _pool_nd(node: Node, ctx: LowerContext) -> Sequence[Any]:
    R = _R()
    a = ctx.attrs(node)
    x, out = node.inputs[0], node.outputs[0]
    kernel = [int(k) for k in a["kernel"]]
    n = len(kernel)
    strides = [int(s) for s in a["strides"] or [1] * n]
    pads = [int(v) for v in a["pads"] or [0] * (2 * n)]
    dils = [int(d) for d in a["dilations"] or [1] * n]
    acc = ctx.emit_te(te_ops_a.pool_window, ctx.arg(x), a["kind"], kernel, strides, pads, dils,
                      static_shape(out), float(a["p"]), name="pool_nd")  # fmt: skip
    if a["kind"] == "avg":
        acc = ctx.emit(R.divide(acc, tvm_const(_pool_count(node), "float64")))
    elif a["kind"] == "lp":
        acc = ctx.emit(R.power(acc, tvm_const(1.0 / float(a["p"]), "float64")))
    return [ctx.emit(R.astype(acc, tvm_dtype(out)))]


# ---- sampling and regions ---------------------------------------------------------------------
_GRID_METHODS = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}


def _grid_sample(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import topi

    a = ctx.attrs(node)
    x, grid = node.inputs
    rank = x.type.rank
    # TOPI reads a channels-first grid: [N, n, *out] instead of ONNX's [N, *out, n].
    moved = ctx.emit(_R().permute_dims(ctx.arg(grid), [0, rank - 1, *range(1, rank - 1)]))
    layout = "NCHW" if rank == 4 else "NCDHW"
    return [ctx.emit_te(topi.image.grid_sample, ctx.arg(x), moved, _GRID_METHODS[a["mode"]],
                        layout, a["padding"], bool(a["align_corners"]),
                        name="grid_sample")]  # fmt: skip


def _grid_sample_check(node: Node, graph: Graph) -> str | None:
    rank = node.inputs[0].type.rank
    if rank not in (4, 5):
        return f"grid_sample of rank {rank} (TOPI samples 2-D and 3-D images)"
    if rank == 5 and node.attrs.get("mode") == "cubic":
        return "cubic grid_sample of a volume (TOPI has it for 2-D images only)"
    return None


def _roi_align(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """The average: TOPI's RoiAlign on regions given as (batch index, x1, y1, x2, y2),
    scaled and shifted here (TOPI's ``aligned`` drops the minimum size of one pixel but not
    the half-pixel shift that ONNX's ``half_pixel`` also means). The max: ``te_ops_a``'s,
    as TOPI's takes the largest interpolated sample, ONNX the largest weighted tap."""
    from tvm import relax, topi

    R = _R()
    a = ctx.attrs(node)
    x, rois, idx = node.inputs
    dtype = tvm_dtype(x)
    if a["mode"] == "max":
        y = ctx.emit_te(te_ops_a.roi_align_max, ctx.arg(x), ctx.arg(rois), ctx.arg(idx),
                        int(a["out_h"]), int(a["out_w"]), int(a["sampling_ratio"]),
                        float(a["spatial_scale"]), bool(a["half_pixel"]), name="roi_align")
        return [ctx.emit(R.astype(y, dtype))]
    shift = 0.5 if a["half_pixel"] else 0.0
    boxes = R.subtract(R.multiply(ctx.arg(rois), tvm_const(float(a["spatial_scale"]), dtype)),
                       tvm_const(shift, dtype))  # fmt: skip
    index = ctx.emit(R.expand_dims(R.astype(ctx.arg(idx), dtype), [1]))
    boxes = ctx.emit(R.concat(relax.Tuple([index, ctx.emit(boxes)]), 1))
    return [ctx.emit_te(
        topi.vision.roi_align, ctx.arg(x), boxes, [int(a["out_h"]), int(a["out_w"])],
        1.0, a["mode"], int(a["sampling_ratio"]) or -1, bool(a["half_pixel"]),
        name="roi_align",
    )]  # fmt: skip


def _deform_conv(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """The sampled columns (``_deform_cols``), then a grouped product with the weight in
    float64 as the interpreter's einsum, plus the bias."""
    R = _R()
    a = ctx.attrs(node)
    x, w, off, b, mask = node.inputs
    oc, _, kh, kw = static_shape(w)
    out = static_shape(node.outputs[0])
    strides = [int(v) for v in a["strides"] or [1, 1]]
    pads = [int(v) for v in a["pads"] or [0, 0, 0, 0]]
    dils = [int(v) for v in a["dilations"] or [1, 1]]
    cols = ctx.emit_te(te_ops_a.deform_columns, ctx.arg(x), ctx.arg(off), ctx.arg(mask), (kh, kw),
                       strides, pads, dils, int(a["offset_group"]), out[2:], name="deform_cols")
    y = ctx.emit_te(te_ops_a.deform_product, cols, ctx.arg(w), out, oc // int(a["group"]),
                    name="deform_conv")
    bias = R.astype(R.reshape(ctx.arg(b), [1, oc, 1, 1]), "float64")
    return [ctx.emit(R.astype(R.add(y, bias), tvm_dtype(node.outputs[0])))]


# ---- convolution with a computed weight ------------------------------------------------------
_CONV = {1: ("conv1d", "NCW", "OIW"), 2: ("conv2d", "NCHW", "OIHW"), 3: ("conv3d", "NCDHW",
                                                                        "OIDHW")}  # fmt: skip


def _conv_dynamic(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Relax's convolution on the weight as computed, accumulated in float32 for float16
    (as NumPy's half-precision dot does), then bias and a fused ReLU."""
    R = _R()
    x, w = node.inputs[0], node.inputs[1]
    n = w.type.rank - 2
    strides, pads, dils = spatial_params(node.attrs, n)
    name, data_layout, kernel_layout = _CONV[n]
    dtype = tvm_dtype(x)
    acc = "float32" if dtype == "float16" else dtype
    if _single_tap(node):  # each output is one product: an elementwise multiply
        y = ctx.emit(R.multiply(R.astype(ctx.arg(x), acc),
                                R.astype(R.reshape(ctx.arg(w), [1, -1] + [1] * n), acc)))
    else:
        y = ctx.emit(getattr(R.nn, name)(
            ctx.arg(x), ctx.arg(w), strides, pads, dils, int(node.attrs.get("groups", 1)),
            data_layout, kernel_layout, out_dtype=acc,
        ))  # fmt: skip
    if acc != dtype:
        y = ctx.emit(R.astype(y, dtype))
    if len(node.inputs) > 2:
        bias = ctx.emit(R.reshape(ctx.arg(node.inputs[2]), [-1] + [1] * n))
        y = ctx.emit(R.add(y, bias))
    if node.attrs.get("act", "none") == "relu":
        y = ctx.emit(R.nn.relu(y))
    return [y]


def _taps(node: Node) -> int:
    """How many products each output sums: input channels per group times kernel taps."""
    return int(np.prod(static_shape(node.inputs[1])[1:]))


def _single_tap(node: Node) -> bool:
    """A depthwise 1-tap convolution with unit strides and no padding (a per-channel
    scale): DLight's schedules assume a reduction loop, which TVM drops at extent 1."""
    strides, pads, _ = spatial_params(node.attrs, node.inputs[1].type.rank - 2)
    channels = static_shape(node.inputs[0])[1]
    return (_taps(node) == 1 and max(strides) == 1 and max(pads, default=0) == 0
            and static_shape(node.inputs[1])[0] == channels)  # fmt: skip


def _conv_dynamic_check(node: Node, graph: Graph) -> str | None:
    if _taps(node) == 1 and not _single_tap(node):
        return f"{node.op} of one tap per output with strides, padding or a channel multiplier"
    if not is_float(node.inputs[0].dtype):
        return f"{node.op} of {node.inputs[0].dtype} with a non-constant weight"
    if len(node.inputs) > 3:
        return f"{node.op} with a residual and a non-constant weight"
    if node.attrs.get("act", "none") not in ("none", "relu"):
        return f"{node.op} with a fused {node.attrs['act']} and a non-constant weight"
    if node.attrs.get("layout", "NCHW") != "NCHW":
        return f"{node.op} in {node.attrs['layout']} with a non-constant weight"
    return None


def _weight_switch(core: Rule | None) -> Rule:
    """``core`` where it takes the node (a constant weight: its packed kernels), else
    ``_conv_dynamic`` for a computed weight."""

    def core_reason(node: Node, graph: Graph) -> str | None:
        if core is None:
            return "no TVM lowering"
        return core.check(node, graph) if core.check else None

    def dynamic(node: Node, graph: Graph) -> bool:
        computed = graph.const_value(node.inputs[1]) is None
        return computed and core_reason(node, graph) is not None

    def check(node: Node, graph: Graph) -> str | None:
        if dynamic(node, graph):
            return _conv_dynamic_check(node, graph)
        return core_reason(node, graph)

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if dynamic(node, ctx.graph) or core is None:
            return _conv_dynamic(node, ctx)
        return core.lower(node, ctx)

    return Rule(lower, check, layouts=core is not None and core.layouts)


# ---- quantized matmul --------------------------------------------------------------------------
def _per_axis(ctx: LowerContext, node: Node, index: int, axis: int, rank: int) -> Any:
    """A scale or zero point: a scalar, or a vector laid along ``axis`` (rows of a,
    columns of b) of the rank-``rank`` product."""
    value = node.inputs[index]
    expr = ctx.arg(value)
    if value.type.rank == 1 and static_shape(value)[0] > 1:
        return ctx.emit(_R().reshape(expr, _along(axis % rank, rank, static_shape(value)[0])))
    return expr


def _qlinear_matmul(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """The exact int32 product of the centred operands, scaled in float64 by the scale
    computed in the scales' own dtype, rounded half to even, saturated."""
    R = _R()
    a, b, yz = node.inputs[0], node.inputs[3], node.inputs[7]
    rank = node.outputs[0].type.rank
    ca = R.subtract(R.astype(ctx.arg(a), "int32"),
                    R.astype(_per_axis(ctx, node, 2, -2 if a.type.rank > 1 else -1, a.type.rank),
                             "int32"))  # fmt: skip
    cb = R.subtract(R.astype(ctx.arg(b), "int32"),
                    R.astype(_per_axis(ctx, node, 5, -1, b.type.rank), "int32"))
    acc = ctx.emit(R.matmul(ctx.emit(ca), ctx.emit(cb), out_dtype="int32"))
    scale = R.divide(R.multiply(_per_axis(ctx, node, 1, -2, rank),
                                _per_axis(ctx, node, 4, -1, rank)), ctx.arg(node.inputs[6]))
    scaled = R.multiply(R.astype(acc, "float64"), R.astype(ctx.emit(scale), "float64"))
    y = ctx.emit(R.add(R.round(scaled), R.astype(ctx.arg(yz), "float64")))
    info = np.iinfo(yz.type.np_dtype)
    return [ctx.emit(R.astype(R.clip(y, int(info.min), int(info.max)), tvm_dtype(yz)))]


# ---- selections, scans, elementwise ------------------------------------------------------------
def _hardmax(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """1 at the first maximum along ``axis`` (TVM's argmax keeps the first of ties)."""
    R = _R()
    x = node.inputs[0]
    shape = static_shape(x)
    axis = _axis(node, len(shape))
    first = ctx.emit(R.argmax(ctx.arg(x), axis, True))
    positions = np.arange(shape[axis], dtype=np.int64).reshape(_along(axis, len(shape),
                                                                      shape[axis]))  # fmt: skip
    hot = R.equal(first, tvm_const(positions, "int64"))
    dtype = tvm_dtype(x)
    return [ctx.emit(R.where(hot, tvm_const(1, dtype), tvm_const(0, dtype)))]


def _cumprod_along(ctx: LowerContext, node: Node, axis: int) -> Any:
    R = _R()
    a = ctx.attrs(node)
    x = node.inputs[0]
    y = ctx.arg(x)
    if a["reverse"]:
        y = ctx.emit(R.flip(y, axis))
    y = ctx.emit(R.cumprod(y, axis, tvm_dtype(x), bool(a["exclusive"])))
    return ctx.emit(R.flip(y, axis)) if a["reverse"] else y


def _cumprod(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Along a constant axis; an axis given at runtime (ONNX CumProd's is an input) picks
    one of the products along every axis, as TVM takes the axis only at compile time."""
    R = _R()
    x, axis_value = node.inputs
    rank = x.type.rank
    data = ctx.const(axis_value)
    if data is not None or rank == 1:
        axis = int(np.asarray(data).reshape(-1)[0]) % rank if data is not None else 0
        return [_cumprod_along(ctx, node, axis)]
    axis_dtype = tvm_dtype(axis_value)
    axis_expr = ctx.emit(R.floor_mod(R.reshape(ctx.arg(axis_value), []),
                                     tvm_const(rank, axis_dtype)))  # fmt: skip
    y = _cumprod_along(ctx, node, 0)
    for d in range(1, rank):
        chosen = R.equal(axis_expr, tvm_const(d, axis_dtype))
        y = ctx.emit(R.where(chosen, _cumprod_along(ctx, node, d), y))
    return [y]


def _lp_norm(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """``x / norm`` along ``axis``; a zero vector stays zero, as the interpreter has it."""
    R = _R()
    x = node.inputs[0]
    axis = _axis(node, x.type.rank)
    data = ctx.arg(x)
    if int(ctx.attrs(node)["p"]) == 1:
        norm = ctx.emit(R.sum(R.abs(data), [axis], True))
    else:
        norm = ctx.emit(R.sqrt(R.sum(R.square(data), [axis], True)))
    dtype = tvm_dtype(x)
    zero = ctx.emit(R.equal(norm, tvm_const(0, dtype)))
    safe = R.where(zero, tvm_const(1, dtype), norm)
    return [ctx.emit(R.where(zero, tvm_const(0, dtype), R.divide(data, safe)))]


def _isinf(node: Node, ctx: LowerContext) -> Sequence[Any]:
    R = _R()
    a = ctx.attrs(node)
    x = node.inputs[0]
    data = ctx.arg(x)
    inf = R.isinf(data)
    zero = tvm_const(0, tvm_dtype(x))
    if a["positive"] and a["negative"]:
        return [ctx.emit(inf)]
    if not a["positive"] and not a["negative"]:
        return [ctx.emit(R.zeros(static_shape(x), "bool"))]
    side = R.greater(data, zero) if a["positive"] else R.less(data, zero)
    return [ctx.emit(R.logical_and(inf, side))]


def _one_hot(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """``values[1]`` where the index (negative ones counted from ``depth``) equals the
    position along ``axis``, else ``values[0]``; out-of-range indices are all "off"."""
    R = _R()
    indices, _, values = node.inputs
    out = static_shape(node.outputs[0])
    axis = _axis(node, len(out))
    depth = out[axis]
    idx = ctx.emit(R.astype(ctx.arg(indices), "int64"))
    idx = ctx.emit(R.where(R.less(idx, tvm_const(0, "int64")),
                           R.add(idx, tvm_const(depth, "int64")), idx))  # fmt: skip
    positions = np.arange(depth, dtype=np.int64).reshape(_along(axis, len(out), depth))
    hot = R.equal(R.expand_dims(idx, [axis]), tvm_const(positions, "int64"))
    vals = ctx.arg(values)
    on = R.take(vals, tvm_const(1, "int64"), 0)
    off = R.take(vals, tvm_const(0, "int64"), 0)
    return [ctx.emit(R.where(hot, on, off))]


def _round(node: Node, ctx: LowerContext) -> Sequence[Any]:
    # Relax's round lowers to LLVM's nearbyint: half to even, as np.round (tested).
    return [ctx.emit(_R().round(ctx.arg(node.inputs[0])))]


# ---- determinant -------------------------------------------------------------------------------
def _det(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x = node.inputs[0]
    n = static_shape(x)[-1]
    y = ctx.emit_te(te_ops_a.det_leibniz, ctx.arg(x), n, name="det")
    return [ctx.emit(_R().astype(y, tvm_dtype(x)))]


def _det_check(node: Node, graph: Graph) -> str | None:
    n = static_shape(node.inputs[0])[-1]
    if n > te_ops_a.DET_MAX:
        top = te_ops_a.DET_MAX
        return f"det of {n}x{n} matrices (expanded only up to {top}x{top})"
    return None


def _trilu_any(core: Rule | None) -> Rule:
    """Trilu of an empty tensor is that tensor (nothing to mask); any other goes to ``core``.
    (A constant of zeros in its place would be an empty parameter, which TVM saves in a form
    it cannot load back.)"""

    def empty(node: Node) -> bool:
        return any(d == 0 for d in static_shape(node.inputs[0]))

    def check(node: Node, graph: Graph) -> str | None:
        if empty(node):
            return None
        if core is None:
            return "no TVM lowering"
        return core.check(node, graph) if core.check else None

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if empty(node):
            return [ctx.arg(node.inputs[0])]
        assert core is not None  # the check refused the node otherwise
        return core.lower(node, ctx)

    return Rule(lower, check)


OPS_A_RULES: dict[str, Rule] = {
    "nn.pool_nd": Rule(_pool_nd),
    "nn.grid_sample": Rule(_grid_sample, _grid_sample_check),
    "nn.roi_align": Rule(_roi_align),
    "nn.deform_conv": Rule(_deform_conv),
    "q.linear_matmul": Rule(_qlinear_matmul),
    "math.hardmax": Rule(_hardmax),
    "math.cumprod": Rule(_cumprod),
    "nn.lp_norm": Rule(_lp_norm),
    "math.isinf": Rule(_isinf),
    "tensor.one_hot": Rule(_one_hot),
    "math.round": Rule(_round),
    "math.det": Rule(_det, _det_check),
}

#: Core ops whose rules get a wrapper here: op -> wrapper(core rule or None).
WRAPPED = {
    "nn.conv1d": _weight_switch,
    "nn.conv2d": _weight_switch,
    "tensor.trilu": _trilu_any,
}


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with group A's rules added and the wrapped core rules."""
    out = {**rules, **OPS_A_RULES}
    for op, wrap in WRAPPED.items():
        out[op] = wrap(out.get(op))
    return out
