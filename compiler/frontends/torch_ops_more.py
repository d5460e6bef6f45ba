"""Converter table, part 4: the ATen ops real architectures bring beyond the core set.

Bilinear upsampling (SegFormer, DeepLabv3, FCN heads), ``cumsum`` (RoBERTa/MPNet position
ids), instance norm (wav2vec2's feature encoder), ``gather`` and ``sort`` with computed
indices, ``linalg_vector_norm`` (ConvNeXt-V2's GRN, sentence-embedding heads). Each maps to
ops of ``compiler.ir.ops_more`` or to a composition of core ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.frontends import torch_ops_nn, torch_ops_shape  # noqa: F401  (first: entries are replaced)
from compiler.frontends.torch_context import CONVERTERS, ImportContext, Reject, converts, try_fold
from compiler.ir import Value
from compiler.ir.ops import norm_axis

if TYPE_CHECKING:
    from torch.fx import Node as FxNode


def _i64(ctx: ImportContext, values: list[int], hint: str) -> Value:
    return ctx.const(np.asarray(values, np.int64), hint)


@converts("aten.cumsum.default")
def _cumsum(ctx: ImportContext, node: FxNode) -> Value:
    """torch sums integers in int64 (and in ``dtype`` when given): cast first."""
    x = ctx.operand(ctx.args["self"], ctx.out_dtype())
    axis = norm_axis(int(ctx.args["dim"]), x.type.rank)
    return ctx.emit("math.cumsum", [x, _i64(ctx, [axis], "cumsum_axis")])


@converts("aten.upsample_bilinear2d.vec", "aten.upsample_bilinear2d.default")
def _upsample_bilinear(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["input"] if "input" in ctx.args else ctx.args["self"])
    if x.type.rank != 4 or not x.type.is_static:
        raise Reject(f"bilinear upsampling of {x.type} (static NCHW only)")
    n, c, h, w = (int(d) for d in x.shape)
    factors = ctx.args.get("scale_factors")
    if factors is None and "scales_h" in ctx.args and ctx.args.get("scales_h") is not None:
        factors = [ctx.args["scales_h"], ctx.args["scales_w"]]
    size = ctx.args.get("output_size")
    if size is not None:
        out_h, out_w = (int(s) for s in size)
    elif factors is None:
        raise Reject("bilinear upsampling with neither output_size nor scale factors")
    else:
        out_h, out_w = int(h * float(factors[0])), int(w * float(factors[1]))
    # torch maps output i to input (i + 0.5) / factor - 0.5 with the given factor (else the
    # size ratio), clamped at 0: ONNX half_pixel; align_corners maps the corners exactly.
    if factors is not None:
        ratios = [float(factors[0]), float(factors[1])]
    else:
        ratios = [out_h / h, out_w / w]
    mode = "align_corners" if ctx.args.get("align_corners") else "half_pixel"
    attrs = {"sizes": [n, c, out_h, out_w], "scales": [1.0, 1.0, *ratios], "mode": mode}
    return ctx.emit("nn.resize_linear", [x], attrs)


@converts("aten._native_batch_norm_legit.no_stats")
def _batch_norm_no_stats(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    """Batch statistics of the input itself (instance norm reshapes [N, C, ...] to
    [1, N*C, ...] and lands here): normalize over every axis but 1, then scale and shift."""
    x = ctx.value(ctx.args["input"])
    rank = x.type.rank
    axes = [a for a in range(rank) if a != 1]
    eps = float(ctx.args.get("eps", 1e-5))
    mean = ctx.emit("math.reduce_mean", [x], {"axes": axes, "keepdims": True})
    centered = ctx.emit("math.sub", [x, mean])
    var = ctx.emit("math.reduce_mean", [ctx.emit("math.mul", [centered, centered])],
                   {"axes": axes, "keepdims": True})  # fmt: skip
    inv = ctx.emit("math.rsqrt", [ctx.emit("math.add", [var, ctx.scalar(eps, x.dtype)])])
    y = ctx.emit("math.mul", [centered, inv])
    per_channel = [-1] + [1] * (rank - 2)
    for key, op in (("weight", "math.mul"), ("bias", "math.add")):
        if ctx.args.get(key) is not None:
            param = ctx.emit("tensor.reshape", [ctx.value(ctx.args[key])], {"shape": per_channel})
            y = ctx.emit(op, [y, param])
    return [y, None, None]


@converts("aten.gather.default")
def _gather(ctx: ImportContext, node: FxNode) -> Any:
    """Constant operands fold at import; computed indices (DeBERTa's relative positions)
    become ``tensor.gather_elements``."""
    if try_fold(ctx, node):
        return ctx.env[node]
    x = ctx.value(ctx.args["self"])
    index = ctx.value(ctx.args["index"])
    axis = norm_axis(int(ctx.args["dim"]), x.type.rank)
    return ctx.emit("tensor.gather_elements", [x, index], {"axis": axis})


@converts("aten.sort.default", "aten.sort.stable")
def _sort(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    """A full top-k: descending when asked, equal values in index order (stable)."""
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(int(ctx.args.get("dim", -1)), x.type.rank)
    size = x.shape[axis]
    if not isinstance(size, int):
        raise Reject("sort along a symbolic dimension")
    attrs = {"axis": axis, "largest": bool(ctx.args.get("descending", False)), "sorted": True}
    k = _i64(ctx, [size], "sort_k")
    # The types are given: with k known, the sorted axis keeps its static size.
    types = [x.type.with_quant(None), x.type.with_dtype("i64")]
    hint = ctx.node.name if ctx.node is not None else "sort"
    node_ = ctx.graph.add_node("math.topk", [x, k], attrs, types, names=[hint, hint], loc=ctx.loc)
    ctx.created.extend(node_.outputs)
    return [node_.outputs[0], node_.outputs[1]]


_NORM_KINDS: dict[float, str] = {2.0: "l2", 1.0: "l1"}  # 2 == 2.0 as a key


@converts("aten.linalg_vector_norm.default")
def _vector_norm(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    order = ctx.args.get("ord", 2)
    dims = ctx.args.get("dim")
    keep = bool(ctx.args.get("keepdim", False))
    axes = None if dims is None else [norm_axis(int(d), x.type.rank) for d in dims]
    if order in (float("inf"), float("-inf")):
        kind = "max" if order > 0 else "min"
        x = ctx.emit("math.abs", [x])
    elif order in _NORM_KINDS:
        kind = _NORM_KINDS[order]
    else:
        raise Reject(f"vector norm of order {order}")
    return ctx.emit("math.reduce", [x], {"kind": kind, "axes": axes, "keepdims": keep})


_window_pool = CONVERTERS["aten.avg_pool2d.default"]


@converts("aten.avg_pool2d.default")
def _avg_pool2d(ctx: ImportContext, node: FxNode) -> Value:
    """A window that covers the whole unpadded input gives one output (with ``ceil_mode``,
    or when it fits exactly) whose divisor torch clips to the input: a global mean (HF
    EfficientNet's pooler at small sizes). Other windows: the core converter."""
    x = ctx.value(ctx.args["self"])
    kernel = ctx.args["kernel_size"]
    kernel = list(kernel) * (2 // len(kernel)) if isinstance(kernel, list | tuple) else [kernel] * 2
    padding = ctx.args.get("padding") or [0, 0]
    if x.type.rank == 4 and x.type.is_static and not any(padding):
        h, w = (int(d) for d in x.shape[2:])
        covers = int(kernel[0]) >= h and int(kernel[1]) >= w
        one_output = bool(ctx.args.get("ceil_mode")) or (int(kernel[0]), int(kernel[1])) == (h, w)
        if covers and one_output and ctx.args.get("divisor_override") is None:
            return ctx.emit("nn.global_avg_pool", [x])
    return _window_pool(ctx, node)
