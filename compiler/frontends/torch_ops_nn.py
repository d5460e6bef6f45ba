"""Converter table, part 2: convolution, linear/matmul, pooling, normalization, attention, resize.

``linear``/``addmm``/``mm``/``matmul`` become ``nn.dense`` when the weight is a constant in
the linear layout ([N, K], or the ``permute(W, [1, 0])`` that core ATen writes for it), so
backends see a weight they can quantize and lay out; anything else is ``nn.matmul``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.frontends.torch_context import ImportContext, Reject, converts
from compiler.ir import Value

if TYPE_CHECKING:
    from torch.fx import Node as FxNode

log = logging.getLogger(__name__)


def _per_dim(ctx: ImportContext, arg: Any, n: int, what: str) -> list[int]:
    """A torch int-or-list parameter (``stride=2`` or ``[2, 2]``) as ``n`` ints."""
    values = ctx.ints(arg, what)
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise Reject(f"{what} {values} does not fit {n} spatial dims")
    return values


# ---- convolution ------------------------------------------------------------------------------
@converts("aten.convolution.default", "aten._convolution.default")
def _convolution(ctx: ImportContext, node: FxNode) -> Value:
    a = ctx.args
    x, w, b = ctx.value(a["input"]), ctx.value(a["weight"]), ctx.optional(a["bias"])
    n = x.type.rank - 2
    if n not in (1, 2):
        raise Reject(f"{n}-D convolution (only 1-D and 2-D)")
    strides = _per_dim(ctx, a["stride"], n, "stride")
    padding = _per_dim(ctx, a["padding"], n, "padding")
    dilations = _per_dim(ctx, a["dilation"], n, "dilation")
    groups = ctx.ints(a["groups"], "groups")[0]
    bias = [b] if b is not None else []
    attrs: dict[str, Any] = {"strides": strides, "pads": padding + padding, "groups": groups}
    if not a["transposed"]:
        return ctx.emit(f"nn.conv{n}d", [x, w, *bias], {**attrs, "dilations": dilations})
    output_padding = _per_dim(ctx, a["output_padding"], n, "output_padding")
    if n == 1:  # as 2-D with a height of 1
        x = ctx.emit("tensor.unsqueeze", [x], {"axes": [2]})
        w = ctx.emit("tensor.unsqueeze", [w], {"axes": [2]})
        strides, padding = [1, *strides], [0, *padding]
        dilations, output_padding = [1, *dilations], [0, *output_padding]
    attrs = {
        "strides": strides,
        "pads": padding + padding,
        "dilations": dilations,
        "output_padding": output_padding,
        "groups": groups,
    }
    y = ctx.emit("nn.conv_transpose2d", [x, w, *bias], attrs)
    return ctx.emit("tensor.squeeze", [y], {"axes": [2]}) if n == 1 else y


# ---- linear and matmul ---------------------------------------------------------------------
def _linear_weight(value: Value) -> Value | None:
    """The constant [N, K] weight W when ``value`` is ``transpose(W, [1, 0])``, else None."""
    producer = value.producer
    if producer is None or producer.op != "tensor.transpose" or producer.attrs["perm"] != [1, 0]:
        return None
    weight = producer.inputs[0]
    return weight if weight.is_const and weight.type.rank == 2 else None


def _matmul(ctx: ImportContext, x: Value, y: Value) -> Value:
    """``x @ y`` as nn.dense when y is a transposed constant weight, else nn.matmul."""
    weight = _linear_weight(y)
    if weight is not None and x.type.rank >= 1:
        return ctx.emit("nn.dense", [x, weight])
    squeeze = []
    if x.type.rank == 1:
        x, squeeze = ctx.emit("tensor.unsqueeze", [x], {"axes": [0]}), [-2]
    if y.type.rank == 1:
        y, squeeze = ctx.emit("tensor.unsqueeze", [y], {"axes": [1]}), [*squeeze, -1]
    out = ctx.emit("nn.matmul", [x, y])
    if squeeze:
        rank = out.type.rank
        out = ctx.emit("tensor.squeeze", [out], {"axes": [a % rank for a in squeeze]})
    return out


@converts("aten.linear.default")
def _linear(ctx: ImportContext, node: FxNode) -> Value:
    x, w, b = (
        ctx.value(ctx.args["input"]),
        ctx.value(ctx.args["weight"]),
        ctx.optional(ctx.args["bias"]),
    )
    if w.is_const and w.type.rank == 2 and x.type.rank >= 1:
        return ctx.emit("nn.dense", [x, w] + ([b] if b is not None else []))
    wt = ctx.emit("tensor.transpose", [w], {"perm": [1, 0]}) if w.type.rank == 2 else w
    y = _matmul(ctx, x, wt)
    return y if b is None else ctx.emit("math.add", [y, b])


@converts("aten.addmm.default")
def _addmm(ctx: ImportContext, node: FxNode) -> Value:
    """``beta * bias + alpha * (mat1 @ mat2)``; a linear layer when alpha = beta = 1."""
    a = ctx.args
    bias, x, y = ctx.value(a["self"]), ctx.value(a["mat1"]), ctx.value(a["mat2"])
    alpha, beta = ctx.scalar_of(a["alpha"]), ctx.scalar_of(a["beta"])
    weight = _linear_weight(y)
    if weight is not None and alpha == 1 and beta == 1 and bias.shape == (weight.shape[0],):
        return ctx.emit("nn.dense", [x, weight, bias])
    out = _matmul(ctx, x, y)
    if alpha != 1:
        out = ctx.emit("math.mul", [out, ctx.scalar(alpha, out.dtype)])
    if beta == 0:
        return out
    if beta != 1:
        bias = ctx.emit("math.mul", [bias, ctx.scalar(beta, bias.dtype)])
    return ctx.emit("math.add", [out, bias])


@converts("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _mm(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    x, y = (
        ctx.operand(ctx.args["self"], dtype),
        ctx.value(ctx.args.get("mat2", ctx.args.get("other"))),
    )
    return _matmul(ctx, x, ctx.cast(y, dtype))


# ---- pooling ----------------------------------------------------------------------------------
def _pool_attrs(ctx: ImportContext, n: int, dilation: bool) -> dict[str, Any]:
    a = ctx.args
    kernel = _per_dim(ctx, a["kernel_size"], n, "kernel_size")
    stride = _per_dim(ctx, a["stride"], n, "stride") if a["stride"] else kernel
    padding = _per_dim(ctx, a["padding"], n, "padding")
    attrs = {
        "kernel": kernel,
        "strides": stride,
        "pads": padding + padding,
        "ceil_mode": bool(a["ceil_mode"]),
    }
    if dilation:
        attrs["dilations"] = _per_dim(ctx, a["dilation"], n, "dilation")
    else:
        attrs["count_include_pad"] = bool(a["count_include_pad"])
        if a.get("divisor_override") is not None:
            raise Reject("avg_pool with divisor_override")
    return attrs


def _nchw(ctx: ImportContext, rank: int) -> Value:
    x = ctx.value(ctx.args["self"])
    if x.type.rank != rank:
        raise Reject(f"pooling of a rank-{x.type.rank} (unbatched?) input")
    return x


@converts("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def _max_pool2d(ctx: ImportContext, node: FxNode) -> Any:
    y = ctx.emit("nn.max_pool2d", [_nchw(ctx, 4)], _pool_attrs(ctx, 2, dilation=True))
    return [y, None] if "indices" in str(node.target) else y


@converts("aten.avg_pool2d.default")
def _avg_pool2d(ctx: ImportContext, node: FxNode) -> Value:
    return ctx.emit("nn.avg_pool2d", [_nchw(ctx, 4)], _pool_attrs(ctx, 2, dilation=False))


@converts("aten.avg_pool3d.default")
def _avg_pool3d(ctx: ImportContext, node: FxNode) -> Value:
    """Only a window along depth (what ``F.local_response_norm`` traces to): [N,C,D,H*W] 2-D."""
    x = _nchw(ctx, 5)
    attrs = _pool_attrs(ctx, 3, dilation=False)
    if (
        attrs["kernel"][1:] != [1, 1]
        or attrs["strides"][1:] != [1, 1]
        or attrs["pads"][1:3] + attrs["pads"][4:] != [0] * 4
    ):
        raise Reject("avg_pool3d with a window over height or width")
    n, c, d, h, w = x.shape
    if not all(isinstance(v, int) for v in (h, w)):
        raise Reject("avg_pool3d over symbolic height or width")
    flat = ctx.emit("tensor.reshape", [x], {"shape": [n, c, d, h * w]})
    kd, sd, pd = attrs["kernel"][0], attrs["strides"][0], attrs["pads"][0]
    pool = {"kernel": [kd, 1], "strides": [sd, 1], "pads": [pd, 0, pd, 0]}
    pool |= {"ceil_mode": attrs["ceil_mode"], "count_include_pad": attrs["count_include_pad"]}
    y = ctx.emit("nn.avg_pool2d", [flat], pool)
    return ctx.emit("tensor.reshape", [y], {"shape": [n, c, y.shape[2], h, w]})


@converts("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(ctx: ImportContext, node: FxNode) -> Value:
    x = _nchw(ctx, 4)
    size = _per_dim(ctx, ctx.args["output_size"], 2, "output_size")
    if size == [1, 1]:
        return ctx.emit("nn.global_avg_pool", [x])
    return ctx.emit("nn.adaptive_avg_pool2d", [x], {"output_size": size})


@converts("aten.adaptive_max_pool2d.default")
def _adaptive_max_pool2d(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    x = _nchw(ctx, 4)
    if _per_dim(ctx, ctx.args["output_size"], 2, "output_size") != [1, 1]:
        raise Reject("adaptive max pooling to a size other than 1x1")
    return [ctx.emit("nn.global_max_pool", [x]), None]


# ---- normalization ----------------------------------------------------------------------------
def _param_or(ctx: ImportContext, arg: Any, fill: float, n: Any, dtype: str, hint: str) -> Value:
    if arg is not None:
        return ctx.value(arg)
    if not isinstance(n, int):
        raise Reject(f"normalization without {hint} over a symbolic dim")
    return ctx.const(np.full((n,), fill), f"{ctx.node.name if ctx.node else hint}.{hint}", dtype)


@converts(
    "aten._native_batch_norm_legit_no_training.default",
    "aten._native_batch_norm_legit.default",
    "aten.native_batch_norm.default",
    "aten.batch_norm.default",
    "aten._native_batch_norm_legit_functional.default",
)
def _batch_norm(ctx: ImportContext, node: FxNode) -> Any:
    a = ctx.args
    if a.get("training") or a.get("running_mean") is None:
        raise Reject("training-mode batch norm (batch statistics)")
    x = ctx.value(a["input"])
    c = x.shape[1]
    scale = _param_or(ctx, a["weight"], 1.0, c, x.dtype, "weight")
    bias = _param_or(ctx, a["bias"], 0.0, c, x.dtype, "bias")
    mean, var = ctx.value(a["running_mean"]), ctx.value(a["running_var"])
    y = ctx.emit("nn.batch_norm", [x, scale, bias, mean, var], {"eps": float(a["eps"])})
    outputs = len(ctx.meta()) if isinstance(ctx.meta(), list | tuple) else 1
    return y if outputs == 1 else [y] + [None] * (outputs - 1)


def _layer_norm_value(
    ctx: ImportContext, x: Value, dims: int, weight: Any, bias: Any, eps: float
) -> Value:
    params = []
    if weight is not None or bias is not None:
        size = x.shape[-1] if dims == 1 else None
        params.append(_param_or(ctx, weight, 1.0, size, x.dtype, "weight"))
        if bias is not None:
            params.append(ctx.value(bias))
    return ctx.emit("nn.layer_norm", [x, *params], {"axis": -dims, "eps": float(eps)})


@converts("aten.layer_norm.default")
def _layer_norm(ctx: ImportContext, node: FxNode) -> Value:
    a = ctx.args
    dims = len(ctx.ints(a["normalized_shape"], "normalized_shape"))
    return _layer_norm_value(ctx, ctx.value(a["input"]), dims, a["weight"], a["bias"], a["eps"])


@converts("aten.native_layer_norm.default")
def _native_layer_norm(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    return [_layer_norm(ctx, node), None, None]


@converts("aten.native_group_norm.default")
def _group_norm(ctx: ImportContext, node: FxNode) -> list[Value | None]:
    """Layer norm over [N, G, C/G * spatial], then the per-channel affine."""
    a = ctx.args
    x = ctx.value(a["input"])
    groups = ctx.ints(a["group"], "groups")[0]
    c = x.shape[1]
    if not isinstance(c, int) or not all(isinstance(d, int) for d in x.shape[2:]):
        raise Reject("group norm over symbolic channel or spatial dims")
    grouped = ctx.emit("tensor.reshape", [x], {"shape": [x.shape[0], groups, -1]})
    normed = ctx.emit("nn.layer_norm", [grouped], {"axis": -1, "eps": float(a["eps"])})
    y = ctx.emit("tensor.reshape", [normed], {"shape": list(x.shape)})
    per_channel = [c] + [1] * (x.type.rank - 2)
    for arg, op in ((a["weight"], "math.mul"), (a["bias"], "math.add")):
        if arg is not None:
            param = ctx.emit("tensor.reshape", [ctx.value(arg)], {"shape": per_channel})
            y = ctx.emit(op, [y, param])
    return [y, None, None]


# ---- attention and resize ---------------------------------------------------------------------
@converts("aten.scaled_dot_product_attention.default")
def _sdpa(ctx: ImportContext, node: FxNode) -> Value:
    a = ctx.args
    q, k, v = ctx.value(a["query"]), ctx.value(a["key"]), ctx.value(a["value"])
    if a.get("enable_gqa") and q.shape[-3] != k.shape[-3]:
        raise Reject("grouped-query attention (enable_gqa)")
    if a.get("dropout_p"):
        log.warning("%s: ignoring attention dropout_p=%s (inference)", ctx.loc, a["dropout_p"])
    operands = [q, k, v]
    attrs: dict[str, Any] = {"scale": None if a["scale"] is None else float(a["scale"])}
    length, source = q.shape[-2], k.shape[-2]
    if a["is_causal"] and length == source:
        attrs["causal"] = True
    elif a["is_causal"]:
        if not (isinstance(length, int) and isinstance(source, int)):
            raise Reject("causal attention with different symbolic query and key lengths")
        # torch aligns the causal mask top-left (tril of ones[L, S]), the IR bottom-right.
        operands.append(ctx.const(np.tril(np.ones((length, source), dtype=bool)), "causal_mask"))
    if a["attn_mask"] is not None:
        mask = ctx.value(a["attn_mask"])
        operands.append(mask if mask.dtype == "bool" else ctx.cast(mask, q.dtype))
    return ctx.emit("nn.attention", operands, attrs)


@converts(
    "aten.upsample_nearest2d.vec",
    "aten.upsample_nearest2d.default",
    "aten._upsample_nearest_exact2d.vec",
)
def _upsample_nearest(ctx: ImportContext, node: FxNode) -> Value:
    a = ctx.args
    x = ctx.value(a.get("input", a.get("self")))
    out = ctx.out_shape()
    if not all(isinstance(d, int) for d in (*x.shape[2:], *out[2:])):
        raise Reject("upsampling of symbolic spatial dims")
    given = a.get("scale_factors") or [a.get("scales_h"), a.get("scales_w")]
    if a.get("output_size") is None and all(s is not None for s in given):
        scales = [float(s) for s in given]
    else:
        scales = [out[2 + i] / x.shape[2 + i] for i in range(2)]
    if "exact" in str(node.target) and any(s != int(s) for s in scales):
        raise Reject("nearest-exact upsampling by a non-integer factor")
    return ctx.emit("nn.resize", [x], {"scales": [1.0, 1.0, *scales], "mode": "nearest"})
