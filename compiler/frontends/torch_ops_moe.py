"""torch.export converters for mixture-of-experts routing (Mixtral through ``transformers``):
``topk`` of the router, ``histc`` counting tokens per expert, ``index_put`` inverting the
sort permutation, and transformers' ``grouped_mm_fallback`` (one matmul per expert over
its run of sorted tokens), and the floor division that maps a sorted slot back to its token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.frontends import torch_ops  # noqa: F401  (first: an entry is wrapped)
from compiler.frontends.torch_context import CONVERTERS, ImportContext, Reject, converts
from compiler.ir import Value
from compiler.ir.ops import norm_axis

if TYPE_CHECKING:
    from torch.fx import Node as FxNode


@converts("aten.topk.default")
def _topk(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    """k is a Python int: the types are given, so the selected axis keeps a static size."""
    x = ctx.value(ctx.args["self"])
    k = int(ctx.args["k"])
    axis = norm_axis(int(ctx.args.get("dim", -1)), x.type.rank)
    shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
    attrs = {"axis": axis, "largest": bool(ctx.args.get("largest", True)),
             "sorted": bool(ctx.args.get("sorted", True))}  # fmt: skip
    kv = ctx.const(np.asarray([k], np.int64), "topk_k")
    types = [x.type.with_quant(None).with_shape(shape), x.type.with_dtype("i64").with_shape(shape)]
    hint = ctx.node.name if ctx.node is not None else "topk"
    made = ctx.graph.add_node("math.topk", [x, kv], attrs, types, names=[hint, hint], loc=ctx.loc)
    ctx.created.extend(made.outputs)
    return [made.outputs[0], made.outputs[1]]


@converts("aten.histc.default")
def _histc(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    attrs = {"bins": int(ctx.args.get("bins", 100)), "min": float(ctx.args.get("min", 0)),
             "max": float(ctx.args.get("max", 0))}  # fmt: skip
    return ctx.emit("math.histc", [x], attrs)


@converts("aten.index_put.default")
def _index_put(ctx: ImportContext, node: FxNode) -> Value:
    """One index tensor into the leading dimension, values of the written rows' shape:
    ``tensor.scatter_nd`` (accumulate: summed)."""
    x = ctx.value(ctx.args["self"])
    indices = ctx.args["indices"]
    if len(indices) != 1 or indices[0] is None:
        raise Reject("index_put with several index tensors")
    idx = ctx.cast(ctx.value(indices[0]), "i64")
    values = ctx.cast(ctx.value(ctx.args["values"]), x.dtype)
    if tuple(values.shape) != (*idx.shape, *x.shape[1:]):
        raise Reject(f"index_put of values {list(values.shape)} at {list(idx.shape)}")
    where = ctx.emit("tensor.unsqueeze", [idx], {"axes": [idx.type.rank]})
    how = "add" if ctx.args.get("accumulate", False) else "none"
    return ctx.emit("tensor.scatter_nd", [x, where, values], {"reduction": how})


@converts("transformers.grouped_mm_fallback.default")
def _grouped_mm(ctx: ImportContext, node: FxNode) -> Any:
    x, w = ctx.value(ctx.args["input"]), ctx.value(ctx.args["weight"])
    return ctx.emit("nn.grouped_mm", [x, w, ctx.value(ctx.args["offs"])])


_plain_div = CONVERTERS["aten.div.Tensor_mode"]


@converts("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(ctx: ImportContext, node: FxNode) -> Value:
    """``rounding_mode='floor'``: integers as ``(x - floor_mod(x, y)) / y`` (exact), floats
    as ``floor(x / y)``; other modes as before."""
    if ctx.args.get("rounding_mode") != "floor":
        return _plain_div(ctx, node)
    dtype = ctx.out_dtype()
    x, y = ctx.operand(ctx.args["self"], dtype), ctx.operand(ctx.args["other"], dtype)
    if dtype in ("f32", "f16", "bf16", "f64"):
        return ctx.emit("math.floor", [ctx.emit("math.div", [x, y])])
    rest = ctx.emit("math.floor_mod", [x, y])
    return ctx.emit("math.div", [ctx.emit("math.sub", [x, rest]), y])
