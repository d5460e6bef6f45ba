"""Converter table, part 1: elementwise math, activations, reductions, data movement.

Each converter reads the node's arguments by their ATen schema names from ``ctx.args`` and
returns the IR value (or list of values, for multi-output ops) it emitted. Binary ops cast
both operands to the dtype torch computes in, so the IR always sees equal dtypes; Python
scalars become rank-0 constants of that dtype.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from compiler.frontends.torch_context import ImportContext, Reject, converts
from compiler.ir import Value
from compiler.ir.ops import norm_axis

if TYPE_CHECKING:
    from torch.fx import Node as FxNode

_INT_MAX = 2**62  # ATen writes "to the end" as INT64_MAX; anything this big means the end


# ---- elementwise binary ---------------------------------------------------------------------
def _binary(ir_op: str, compare: bool = False, swap: bool = False):
    def convert(ctx: ImportContext, node: FxNode) -> Value:
        a, b = ctx.args["self"], ctx.args["other"]
        if swap:
            a, b = b, a
        dtype = ctx.result_dtype(a, b) if compare else ctx.out_dtype()
        x, y = ctx.operand(a, dtype), ctx.operand(b, dtype)
        alpha = ctx.args.get("alpha", 1)
        if alpha not in (1, None):  # self + alpha * other; rsub: other - alpha * self
            y = ctx.emit("math.mul", [y, ctx.scalar(ctx.scalar_of(alpha), dtype)])
        return ctx.emit(ir_op, [x, y])

    return convert


for _packet, _ir in (
    ("add", "math.add"),
    ("sub", "math.sub"),
    ("mul", "math.mul"),
    ("fmod", "math.mod"),
):
    converts(f"aten.{_packet}.Tensor", f"aten.{_packet}.Scalar")(_binary(_ir))
converts("aten.maximum.default")(_binary("math.maximum"))
converts("aten.minimum.default")(_binary("math.minimum"))
converts("aten.rsub.Scalar", "aten.rsub.Tensor")(_binary("math.sub", swap=True))
for _packet, _ir in (
    ("eq", "math.equal"),
    ("lt", "math.less"),
    ("gt", "math.greater"),
    ("le", "math.less_equal"),
    ("ge", "math.greater_equal"),
):
    converts(f"aten.{_packet}.Tensor", f"aten.{_packet}.Scalar")(_binary(_ir, compare=True))
_LOGICAL = {
    "aten.logical_and.default": "math.and",
    "aten.logical_or.default": "math.or",
    "aten.logical_xor.default": "math.xor",
}


@converts(*_LOGICAL)
def _logical(ctx: ImportContext, node: FxNode) -> Value:
    x, y = ctx.operand(ctx.args["self"], "bool"), ctx.operand(ctx.args["other"], "bool")
    return ctx.emit(_LOGICAL[str(node.target)], [x, y])


_BITWISE = {
    "aten.bitwise_and.Tensor": "math.and",
    "aten.bitwise_or.Tensor": "math.or",
    "aten.bitwise_xor.Tensor": "math.xor",
}


@converts(*_BITWISE)
def _bitwise(ctx: ImportContext, node: FxNode) -> Value:
    if ctx.out_dtype() != "bool":
        raise Reject("bitwise ops on integers (only on bool)")
    x, y = ctx.operand(ctx.args["self"], "bool"), ctx.operand(ctx.args["other"], "bool")
    return ctx.emit(_BITWISE[str(node.target)], [x, y])


@converts("aten.ne.Tensor", "aten.ne.Scalar")
def _ne(ctx: ImportContext, node: FxNode) -> Value:
    return ctx.emit("math.not", [_binary("math.equal", compare=True)(ctx, node)])


@converts("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(ctx: ImportContext, node: FxNode) -> Value:
    mode = ctx.args.get("rounding_mode")
    dtype = ctx.out_dtype()
    if mode is not None and not (mode == "trunc" and dtype not in ("f32", "f16", "bf16", "f64")):
        raise Reject(f"division with rounding_mode={mode!r}")
    x, y = ctx.operand(ctx.args["self"], dtype), ctx.operand(ctx.args["other"], dtype)
    return ctx.emit("math.div", [x, y])


@converts("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    return ctx.emit(
        "math.pow", [ctx.operand(ctx.args["self"], dtype), ctx.operand(ctx.args["exponent"], dtype)]
    )


# ---- elementwise unary and activations ------------------------------------------------------
def _unary(ir_op: str, **attrs: Any):
    def convert(ctx: ImportContext, node: FxNode) -> Value:
        return ctx.emit(ir_op, [ctx.operand(ctx.args["self"], ctx.out_dtype())], dict(attrs))

    return convert


for _packet, _ir in (
    ("neg", "math.neg"),
    ("abs", "math.abs"),
    ("exp", "math.exp"),
    ("log", "math.log"),
    ("sqrt", "math.sqrt"),
    ("rsqrt", "math.rsqrt"),
    ("reciprocal", "math.reciprocal"),
    ("erf", "math.erf"),
    ("tanh", "math.tanh"),
    ("sin", "math.sin"),
    ("cos", "math.cos"),
    ("relu", "nn.relu"),
    ("relu6", "nn.relu6"),
    ("sigmoid", "nn.sigmoid"),
    ("silu", "nn.silu"),
    ("hardswish", "nn.hardswish"),
    ("hardsigmoid", "nn.hardsigmoid"),
    ("logical_not", "math.not"),
    ("isnan", "math.isnan"),
):
    converts(f"aten.{_packet}.default")(_unary(_ir))
converts("aten.bitwise_not.default")(
    lambda ctx, node: (
        ctx.emit("math.not", [ctx.value(ctx.args["self"])])
        if ctx.out_dtype() == "bool"
        else _reject("bitwise_not on integers")
    )
)


def _reject(reason: str) -> Any:
    raise Reject(reason)


@converts("aten.log1p.default")
def _log1p(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.operand(ctx.args["self"], ctx.out_dtype())
    return ctx.emit("math.log", [ctx.emit("math.add", [x, ctx.scalar(1.0, x.dtype)])])


@converts("aten.elu.default")
def _elu(ctx: ImportContext, node: FxNode) -> Value:
    """``scale * (x > 0 ? x : alpha * (exp(input_scale * x) - 1))``."""
    x = ctx.operand(ctx.args["self"], ctx.out_dtype())
    alpha, scale, input_scale = (
        float(ctx.scalar_of(ctx.args[k])) for k in ("alpha", "scale", "input_scale")
    )
    inner = x if input_scale == 1 else ctx.emit("math.mul", [x, ctx.scalar(input_scale, x.dtype)])
    neg = ctx.emit("math.sub", [ctx.emit("math.exp", [inner]), ctx.scalar(1.0, x.dtype)])
    neg = ctx.emit("math.mul", [neg, ctx.scalar(alpha, x.dtype)])
    positive = ctx.emit("math.greater", [x, ctx.scalar(0.0, x.dtype)])
    y = ctx.emit("tensor.where", [positive, x, neg])
    return y if scale == 1 else ctx.emit("math.mul", [y, ctx.scalar(scale, x.dtype)])


@converts("aten.gelu.default")
def _gelu(ctx: ImportContext, node: FxNode) -> Value:
    return _unary("nn.gelu", approximate=ctx.args["approximate"])(ctx, node)


@converts("aten.leaky_relu.default")
def _leaky_relu(ctx: ImportContext, node: FxNode) -> Value:
    alpha = float(ctx.scalar_of(ctx.args["negative_slope"]))
    return _unary("nn.leaky_relu", alpha=alpha)(ctx, node)


@converts(
    "aten.hardtanh.default",
    "aten.clamp.default",
    "aten.clamp_min.default",
    "aten.clamp_max.default",
)
def _clip(ctx: ImportContext, node: FxNode) -> Value:
    a = ctx.args
    lo = _num(ctx.scalar_of(a.get("min_val", a.get("min"))))
    hi = _num(ctx.scalar_of(a.get("max_val", a.get("max"))))
    x = ctx.operand(a["self"], ctx.out_dtype())
    if x.dtype in ("f32", "f16", "bf16", "f64"):
        lo, hi = (None if v is None else float(v) for v in (lo, hi))
    if lo == 0 and hi == 6:
        return ctx.emit("nn.relu6", [x])
    if lo == 0 and hi is None:
        return ctx.emit("nn.relu", [x])
    return ctx.emit("nn.clip", [x], {"min": lo, "max": hi})


def _num(v: Any) -> float | int | None:
    if v is None or isinstance(v, int | float):
        return v
    raise Reject(f"clamp bound {v!r} is not a number known at export time")


@converts("aten.clamp.Tensor")
def _clamp_tensor(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    x = ctx.operand(ctx.args["self"], dtype)
    if ctx.args["min"] is not None:
        x = ctx.emit("math.maximum", [x, ctx.operand(ctx.args["min"], dtype)])
    if ctx.args["max"] is not None:
        x = ctx.emit("math.minimum", [x, ctx.operand(ctx.args["max"], dtype)])
    return x


@converts("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    cond = ctx.operand(ctx.args["condition"], "bool")
    return ctx.emit(
        "tensor.where",
        [cond, ctx.operand(ctx.args["self"], dtype), ctx.operand(ctx.args["other"], dtype)],
    )


@converts("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    mask = ctx.operand(ctx.args["mask"], "bool")
    fill = ctx.operand(ctx.args["value"], dtype)
    return ctx.emit("tensor.where", [mask, fill, ctx.operand(ctx.args["self"], dtype)])


@converts("aten._softmax.default", "aten.softmax.int")
def _softmax(ctx: ImportContext, node: FxNode) -> Value:
    return ctx.emit(
        "nn.softmax", [ctx.operand(ctx.args["self"], ctx.out_dtype())], {"axis": ctx.args["dim"]}
    )


@converts("aten._log_softmax.default", "aten.log_softmax.int")
def _log_softmax(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.operand(ctx.args["self"], ctx.out_dtype())
    return ctx.emit("nn.log_softmax", [x], {"axis": ctx.args["dim"]})


# ---- casts and no-ops -----------------------------------------------------------------------
@converts("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten.type_as.default")
def _to_copy(ctx: ImportContext, node: FxNode) -> Value:
    return ctx.cast(ctx.value(ctx.args["self"]), ctx.out_dtype())


@converts(
    "aten.clone.default",
    "aten.alias.default",
    "aten.detach.default",
    "aten.lift_fresh_copy.default",
    "aten.contiguous.default",
    "aten.dropout.default",
    "aten.feature_dropout.default",
)
def _identity(ctx: ImportContext, node: FxNode) -> Value:
    if ctx.args.get("train"):
        raise Reject("training-mode dropout")
    return ctx.value(ctx.args.get("self", ctx.args.get("input")))


@converts("aten.native_dropout.default")
def _native_dropout(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    if ctx.args.get("train"):
        raise Reject("training-mode dropout")
    return [ctx.value(ctx.args["input"]), None]


# ---- reductions -----------------------------------------------------------------------------
def _axes(ctx: ImportContext, dims: Any, rank: int) -> list[int] | None:
    if dims is None or (isinstance(dims, list | tuple) and not dims):
        return None
    return sorted(norm_axis(d, rank) for d in ctx.ints(dims, "reduction axis"))


def _reduce(ir_op: str, dims_arg: str = "dim"):
    def convert(ctx: ImportContext, node: FxNode) -> Value:
        x = ctx.operand(ctx.args["self"], ctx.out_dtype())
        axes = _axes(ctx, ctx.args.get(dims_arg), x.type.rank)
        keep = bool(ctx.args.get("keepdim", False))
        return ctx.emit(ir_op, [x], {"axes": axes, "keepdims": keep})

    return convert


converts("aten.mean.dim", "aten.mean.default")(_reduce("math.reduce_mean"))
converts("aten.sum.dim_IntList", "aten.sum.default")(_reduce("math.reduce_sum"))
converts("aten.amax.default")(_reduce("math.reduce_max"))
converts("aten.amin.default")(_reduce("math.reduce_min"))
converts("aten.prod.dim_int", "aten.prod.default")(_reduce("math.reduce_prod"))
converts("aten.max.default")(_reduce("math.reduce_max"))
converts("aten.min.default")(_reduce("math.reduce_min"))


@converts("aten.max.dim", "aten.min.dim")
def _max_dim(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    reduce = "math.reduce_max" if "max" in str(node.target) else "math.reduce_min"
    values = _reduce(reduce)(ctx, node)
    if reduce == "math.reduce_max" and any(u.args[1] == 1 for u in node.users):
        x = ctx.value(ctx.args["self"])
        keep = bool(ctx.args.get("keepdim", False))
        return [values, ctx.emit("math.argmax", [x], {"axis": ctx.args["dim"], "keepdims": keep})]
    return [values, None]


@converts("aten.argmax.default")
def _argmax(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    keep = bool(ctx.args.get("keepdim", False))
    if ctx.args["dim"] is None:  # over the flattened tensor
        flat = ctx.emit("tensor.reshape", [x], {"shape": [-1]})
        index = ctx.emit("math.argmax", [flat], {"axis": 0, "keepdims": False})
        return ctx.emit("tensor.reshape", [index], {"shape": [1] * x.type.rank}) if keep else index
    return ctx.emit("math.argmax", [x], {"axis": ctx.args["dim"], "keepdims": keep})


@converts("aten.var.correction", "aten.var.dim")
def _var(ctx: ImportContext, node: FxNode) -> Value:
    """``sum((x - mean)^2) / (n - correction)`` over the reduced axes."""
    x = ctx.value(ctx.args["self"])
    axes = _axes(ctx, ctx.args.get("dim"), x.type.rank) or list(range(x.type.rank))
    sizes = [x.shape[a] for a in axes]
    if not all(isinstance(s, int) for s in sizes):
        raise Reject("variance over symbolic dims")
    correction = ctx.args.get("correction")
    if correction is None:
        correction = 1 if ctx.args.get("unbiased", True) else 0
    n = math.prod(sizes) - correction
    mean = ctx.emit("math.reduce_mean", [x], {"axes": axes, "keepdims": True})
    diff = ctx.emit("math.sub", [x, mean])
    sq = ctx.emit("math.mul", [diff, diff])
    total = ctx.emit(
        "math.reduce_sum", [sq], {"axes": axes, "keepdims": bool(ctx.args.get("keepdim"))}
    )
    return ctx.emit("math.div", [total, ctx.scalar(float(max(n, 0)), x.dtype)])
