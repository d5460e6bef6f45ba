"""Lowering rules, part 2: convolution, dense/matmul, pooling, normalization, attention.

Convolutions with constant weights and dense layers go to the packed kernels of
``backends.tvm.kernels`` (scheduled by ``backends.tvm.schedules.KernelRule``); the weights are
packed here in NumPy, once, at compile time. Integer (quantized) conv/dense/matmul use the
same kernels with an int32 accumulator and the input zero point subtracted, as the
interpreter does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm import kernels, kernels_vnni, te_ops
from backends.tvm.kernels_row import layer_norm_rows, row_lanes, softmax_rows
from backends.tvm.lower import NCHW, NHWC, LowerContext, Rule, static_shape, tvm_const, tvm_dtype
from backends.tvm.lower_gemv import lower_gemv
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import zero_point
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import is_int


def _R() -> Any:
    from tvm import relax

    return relax.op


def _const(data: np.ndarray, dtype: str) -> Any:
    return tvm_const(np.ascontiguousarray(data), dtype)


def acc_dtype(node: Node) -> str:
    """The accumulator: the op's ``acc`` for integer operands, else the float dtype."""
    if is_int(node.inputs[0].dtype):
        return {"i32": "int32", "i64": "int64", "i16": "int16"}[node.attrs.get("acc") or "i32"]
    return tvm_dtype(node.inputs[0])


def _epilogue(node: Node, channels: int) -> kernels.Epilogue:
    a = LowerContext.attrs(node)
    return kernels.Epilogue(a["act"], tuple(float(v) for v in a["act_args"]), channels)


def _lanes(ctx: LowerContext) -> int:
    return ctx.params.lanes(32)


# ---- convolution -----------------------------------------------------------------------------
def _conv_check(node: Node, graph: Graph) -> str | None:
    if graph.const_value(node.inputs[1]) is None and int(node.attrs.get("groups", 1)) != 1:
        return "grouped convolution with a non-constant weight"
    return None


def _use_vnni(node: Node, ctx: LowerContext) -> bool:
    """int8 x int8 -> int32 with constant weights on a VNNI CPU."""
    x, w = node.inputs[0], node.inputs[1]
    return (
        ctx.params.vnni
        and x.dtype in ("i8", "u8")
        and w.dtype == "i8"
        and ctx.const(w) is not None
        and acc_dtype(node) == "int32"
        and int(node.attrs.get("groups", 1)) == 1
        and (len(node.inputs) < 3 or ctx.const(node.inputs[2]) is not None)
    )


def _vnni_bias(ctx: LowerContext, node: Node, w: np.ndarray) -> Any:
    x = node.inputs[0]
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 else None
    folded = kernels_vnni.folded_bias(w, bias, zero_point(x), kernels_vnni.shift_of(x.dtype))
    return _const(folded, "int32")


def _conv2d_vnni(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, wv = node.inputs[0], node.inputs[1]
    w = ctx.const(wv)
    assert w is not None
    strides, pads, dil = spatial_params(node.attrs, 2)
    residual = ctx.arg(node.inputs[3], NHWC) if len(node.inputs) > 3 else None
    data, zx, shift = ctx.arg(x, NHWC), zero_point(x), kernels_vnni.shift_of(x.dtype)
    if int(x.type.shape[1]) % 4:  # e.g. an RGB image: widened to 4 channels, made unsigned
        data = ctx.emit_te(kernels_vnni.widen_channels, data, shift, name="vnni_channels")
        zx, shift = zx + shift, 0
    y = ctx.emit_te(
        kernels_vnni.conv2d,
        data,
        _const(kernels_vnni.pack_conv(w), "int8"),
        _vnni_bias(ctx, node, w),
        residual,
        strides,
        pads,
        dil,
        _epilogue(node, int(w.shape[0])),
        zx,
        shift,
        name="vconv2d",
    )
    ctx.set_layout(node.outputs[0], NHWC)
    return [y]


def _conv2d(node: Node, ctx: LowerContext) -> Sequence[Any]:
    if _use_vnni(node, ctx):
        return _conv2d_vnni(node, ctx)
    x, wv = node.inputs[0], node.inputs[1]
    w = ctx.const(wv)
    strides, pads, dil = spatial_params(node.attrs, 2)
    groups = int(node.attrs.get("groups", 1))
    out = node.outputs[0]
    oc = int(wv.type.shape[0])
    bias = ctx.arg(node.inputs[2]) if len(node.inputs) > 2 else None
    residual = ctx.arg(node.inputs[3], NHWC) if len(node.inputs) > 3 else None
    zp = zero_point(x)
    if w is None:  # a computed weight: transpose it to the packed layout in the graph
        w_expr = _packed_weight_expr(ctx, wv, oc)
        block = oc
    elif groups == 1:
        block = kernels.channel_block(oc, _lanes(ctx))
        w_expr = _const(kernels.pack_conv_weight(w, block), tvm_dtype(wv))
    else:
        w_expr = _const(w.transpose(2, 3, 1, 0), tvm_dtype(wv))  # [KH, KW, C/g, OC]
    xin = ctx.arg(x, NHWC)
    epi = _epilogue(node, oc)
    if groups == 1:
        y = ctx.emit_te(
            kernels.conv2d_nhwc,
            xin,
            w_expr,
            bias,
            residual,
            strides[:2],
            pads,
            dil,
            epi,
            acc_dtype(node),
            zp,
            name="conv2d",
        )
    else:
        y = ctx.emit_te(
            kernels.grouped_conv2d_nhwc,
            xin,
            w_expr,
            bias,
            residual,
            strides[:2],
            pads,
            dil,
            groups,
            epi,
            acc_dtype(node),
            zp,
            name="gconv2d",
        )
    ctx.set_layout(out, NHWC)
    return [y]


def _packed_weight_expr(ctx: LowerContext, wv: Value, oc: int) -> Any:
    """A computed OIHW weight as [1, KH, KW, I, O] (one block of all channels)."""
    w = ctx.arg(wv)
    o, i, kh, kw = static_shape(wv)
    return ctx.emit(_R().reshape(_R().permute_dims(w, [2, 3, 1, 0]), (1, kh, kw, i, o)))


def _conv1d(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """conv1d as conv2d over a height of one: [N, C, L] -> [N, 1, L, C] (NHWC)."""
    x, wv = node.inputs[0], node.inputs[1]
    strides, pads, dil = spatial_params(node.attrs, 1)
    n, c, length = static_shape(x)
    w = ctx.const(wv)
    oc = int(wv.type.shape[0])
    groups = int(node.attrs.get("groups", 1))
    xin = ctx.emit(_R().permute_dims(ctx.arg(x), [0, 2, 1]))
    xin = ctx.emit(_R().reshape(xin, (n, 1, length, c)))
    bias = ctx.arg(node.inputs[2]) if len(node.inputs) > 2 else None
    out_len = static_shape(node.outputs[0])[2]
    residual = None
    if len(node.inputs) > 3:
        r = ctx.emit(_R().permute_dims(ctx.arg(node.inputs[3]), [0, 2, 1]))
        residual = ctx.emit(_R().reshape(r, (n, 1, out_len, oc)))
    assert w is not None
    w4 = w[:, :, None, :]
    pads2 = [0, pads[0], 0, pads[1]]
    epi = _epilogue(node, oc)
    if groups == 1:
        block = kernels.channel_block(oc, _lanes(ctx))
        w_expr = _const(kernels.pack_conv_weight(w4, block), tvm_dtype(wv))
        y = ctx.emit_te(
            kernels.conv2d_nhwc,
            xin,
            w_expr,
            bias,
            residual,
            [1, strides[0]],
            pads2,
            [1, dil[0]],
            epi,
            acc_dtype(node),
            zero_point(x),
            name="conv2d",
        )
    else:
        w_expr = _const(w4.transpose(2, 3, 1, 0), tvm_dtype(wv))
        y = ctx.emit_te(
            kernels.grouped_conv2d_nhwc,
            xin,
            w_expr,
            bias,
            residual,
            [1, strides[0]],
            pads2,
            [1, dil[0]],
            groups,
            epi,
            acc_dtype(node),
            zero_point(x),
            name="gconv2d",
        )
    y = ctx.emit(_R().reshape(y, (n, out_len, oc)))
    return [ctx.emit(_R().permute_dims(y, [0, 2, 1]))]


def _conv_transpose2d(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a = ctx.attrs(node)
    strides, pads, dil = spatial_params(a, 2)
    y = _R().nn.conv2d_transpose(
        ctx.arg(node.inputs[0]),
        ctx.arg(node.inputs[1]),
        strides,
        pads,
        list(a.get("output_padding") or [0, 0]),
        dil,
        int(a["groups"]),
    )
    y = ctx.emit(y)
    if len(node.inputs) > 2:
        c = int(node.inputs[2].type.shape[0])
        y = ctx.emit(_R().add(y, _R().reshape(ctx.arg(node.inputs[2]), (1, c, 1, 1))))
    return [y]


# ---- dense and matmul ------------------------------------------------------------------------
def _dense(node: Node, ctx: LowerContext) -> Sequence[Any]:
    gemv = lower_gemv(node, ctx)  # float32, constant weight, few rows: an LLM's GEMVs
    if gemv is not None:
        return gemv
    x, wv = node.inputs[0], node.inputs[1]
    out = static_shape(node.outputs[0])
    n_out, k = static_shape(wv)
    m = int(np.prod(out[:-1], dtype=np.int64))
    w = ctx.const(wv)
    xin = ctx.emit(_R().reshape(ctx.arg(x), (m, k)))
    bias = ctx.arg(node.inputs[2]) if len(node.inputs) > 2 else None
    residual = None
    if len(node.inputs) > 3:
        residual = ctx.emit(_R().reshape(ctx.arg(node.inputs[3]), (m, n_out)))
    if w is not None and _use_vnni(node, ctx):
        y = ctx.emit_te(
            kernels_vnni.dense,
            xin,
            _const(kernels_vnni.pack_dense(w), "int8"),
            _vnni_bias(ctx, node, w),
            residual,
            _epilogue(node, n_out),
            zero_point(x),
            kernels_vnni.shift_of(x.dtype),
            name="vdense",
        )
        return [ctx.emit(_R().reshape(y, out))]
    if w is not None:
        block = kernels.channel_block(n_out, _lanes(ctx))
        w_expr = _const(kernels.pack_dense_weight(w, block), tvm_dtype(wv))
    else:
        wt = ctx.emit(_R().permute_dims(ctx.arg(wv), [1, 0]))
        w_expr = ctx.emit(_R().reshape(wt, (1, k, n_out)))
    y = ctx.emit_te(
        kernels.dense,
        xin,
        w_expr,
        bias,
        residual,
        _epilogue(node, n_out),
        acc_dtype(node),
        zero_point(x),
        name="dense",
    )
    return [ctx.emit(_R().reshape(y, out))]


def batch_matmul(
    ctx: LowerContext, a: Any, b: Any, sa: tuple, sb: tuple, acc: str, zps: tuple[int, int] = (0, 0)
) -> Any:
    """NumPy ``matmul`` of two expressions with static shapes ``sa``, ``sb`` (rank >= 2)."""
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    nb = int(np.prod(batch, dtype=np.int64))

    def as3(e: Any, shape: tuple) -> Any:
        own = int(np.prod(shape[:-2], dtype=np.int64))
        if own != nb and own != 1:
            e = ctx.emit(_R().broadcast_to(e, batch + tuple(shape[-2:])))
            own = nb
        return ctx.emit(_R().reshape(e, (own, *shape[-2:])))

    y = ctx.emit_te(kernels.bmm, as3(a, sa), as3(b, sb), acc, zps, name="bmm")
    return ctx.emit(_R().reshape(y, batch + (sa[-2], sb[-1])))


def _matmul(node: Node, ctx: LowerContext) -> Sequence[Any]:
    av, bv = node.inputs
    zps = (zero_point(av), zero_point(bv))
    return [
        batch_matmul(
            ctx, ctx.arg(av), ctx.arg(bv), static_shape(av), static_shape(bv), acc_dtype(node), zps
        )
    ]


# ---- pooling ---------------------------------------------------------------------------------
def _pool(kind: str) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        a = ctx.attrs(node)
        kernel = [int(k) for k in a["kernel"]]
        strides, pads, dil = spatial_params({**a, "strides": a["strides"] or kernel}, 2)
        layout = ctx.layout(node.inputs[0])
        x = ctx.arg(node.inputs[0], layout)
        if kind == "max":
            y = _R().nn.max_pool2d(
                x, kernel, strides, pads, dil, bool(a["ceil_mode"]), layout=layout
            )
        else:
            y = _R().nn.avg_pool2d(
                x,
                kernel,
                strides,
                pads,
                [1, 1],
                bool(a["ceil_mode"]),
                bool(a["count_include_pad"]),
                layout=layout,
            )
        ctx.set_layout(node.outputs[0], layout)
        return [ctx.emit(y)]

    return Rule(lower, layouts=True)


def _global_pool(name: str) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        x = node.inputs[0]
        layout = ctx.layout(x) if x.type.rank == 4 else NCHW
        axes = [1, 2] if layout == NHWC else list(range(2, x.type.rank))
        ctx.set_layout(node.outputs[0], layout)
        return [ctx.emit(getattr(_R(), name)(ctx.arg(x, layout), axes, True))]

    return Rule(lower, layouts=True)


def _adaptive_avg_pool2d(node: Node, ctx: LowerContext) -> Sequence[Any]:
    size = [int(v) for v in node.attrs["output_size"]]
    layout = ctx.layout(node.inputs[0])
    y = _R().nn.adaptive_avg_pool2d(ctx.arg(node.inputs[0], layout), size, layout=layout)
    ctx.set_layout(node.outputs[0], layout)
    return [ctx.emit(y)]


# ---- normalization ---------------------------------------------------------------------------
def _batch_norm(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x = node.inputs[0]
    layout = ctx.layout(x) if x.type.rank == 4 else NCHW
    c = int(x.type.shape[1])
    shape = (1, 1, 1, c) if layout == NHWC else (1, c) + (1,) * (x.type.rank - 2)
    R = _R()

    def param(v: Value) -> Any:
        return ctx.emit(R.reshape(ctx.arg(v), shape))

    scale, bias, mean, var = (param(v) for v in node.inputs[1:])
    eps = _R_const(ctx.attrs(node)["eps"], tvm_dtype(x))
    inv = R.divide(scale, R.sqrt(R.add(var, eps)))
    y = R.add(R.multiply(R.subtract(ctx.arg(x, layout), mean), inv), bias)
    ctx.set_layout(node.outputs[0], layout)
    return [ctx.emit(y)]


def _R_const(v: float, dtype: str) -> Any:
    from tvm import relax

    return relax.const(v, dtype)


def _layer_norm(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x = node.inputs[0]
    a = ctx.attrs(node)
    axis = int(a["axis"]) % x.type.rank
    norm_shape = static_shape(x)[axis:]
    dt = tvm_dtype(x)
    gamma = ctx.arg(node.inputs[1]) if len(node.inputs) > 1 else _const(np.ones(norm_shape), dt)
    beta = ctx.arg(node.inputs[2]) if len(node.inputs) > 2 else _const(np.zeros(norm_shape), dt)
    axes = list(range(axis, x.type.rank))
    lanes = row_lanes(norm_shape[-1], dt, ctx.params)
    if axis == x.type.rank - 1 and lanes:
        return [ctx.emit_te(layer_norm_rows, ctx.arg(x), gamma, beta, float(a["eps"]), lanes)]
    if dt != "float64":
        return [ctx.emit(_R().nn.layer_norm(ctx.arg(x), gamma, beta, axes, float(a["eps"])))]
    # TOPI's layer norm takes float32/16 only; float64 (an f64 island) is composed, in the
    # interpreter's order: mean, centred, mean of squares, divide by the root, scale, shift.
    R = _R()
    xv = ctx.arg(x)
    centred = R.subtract(xv, R.mean(xv, axes, keepdims=True))
    var = R.mean(R.multiply(centred, centred), axes, keepdims=True)
    y = R.divide(centred, R.sqrt(R.add(var, _R_const(float(a["eps"]), dt))))
    return [ctx.emit(R.add(R.multiply(y, gamma), beta))]


def _lrn(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Across channels: x / (bias + alpha / size * sum of squares in the window) ** beta."""
    a = ctx.attrs(node)
    size = int(a["size"])
    x = ctx.arg(node.inputs[0])
    shape = static_shape(node.inputs[0])
    rank = len(shape)
    dt = tvm_dtype(node.inputs[0])
    R = _R()
    pads = [0] * (2 * rank)
    pads[1], pads[rank + 1] = (size - 1) // 2, size // 2
    sq = ctx.emit_te(te_ops.pad_nd, ctx.emit(R.multiply(x, x)), pads, "constant", 0.0)
    window = None
    for i in range(size):
        part = ctx.emit_te(te_ops.slice_nd, sq, [0, i] + [0] * (rank - 2), [1] * rank, shape)
        window = part if window is None else ctx.emit(R.add(window, part))
    k = R.add(_R_const(a["bias"], dt), R.multiply(_R_const(a["alpha"] / size, dt), window))
    return [ctx.emit(R.divide(x, R.power(k, _R_const(a["beta"], dt))))]


def _resize(node: Node, ctx: LowerContext) -> Sequence[Any]:
    scales = [float(s) for s in node.attrs["scales"]]
    out = static_shape(node.outputs[0])
    return [ctx.emit_te(te_ops.resize_nearest, ctx.arg(node.inputs[0]), scales, out)]


# ---- attention -------------------------------------------------------------------------------
def _zero_dead_rows(ctx: LowerContext, node: Node, probs: Any, dt: str) -> Any:
    """A fully masked row (a left-padded query) gives 0, as the interpreter and torch do.

    The dead rows are found from the mask (a float mask masks with -inf), not from the
    scores: TVM's max reduction starts from the lowest finite value, so a row of -inf scores
    has a finite maximum."""
    R = _R()
    mask = node.inputs[3]
    keep = ctx.arg(mask)
    if mask.dtype != "bool":
        keep = ctx.emit(R.not_equal(keep, _R_const(float("-inf"), tvm_dtype(mask))))
    length, src = static_shape(node.inputs[0])[-2], static_shape(node.inputs[1])[-2]
    if node.attrs.get("causal"):
        causal = np.tril(np.ones((length, src), dtype=bool), k=src - length)
        keep = ctx.emit(R.logical_and(keep, _const(causal, "bool")))
    elif mask.type.rank < 2:  # a scalar or per-key mask: broadcast it to the rows first
        keep = ctx.emit(R.logical_and(keep, _const(np.ones((length, src), dtype=bool), "bool")))
    alive = ctx.emit(R.max(R.astype(keep, "int32"), axis=-1, keepdims=True))
    dead = ctx.emit(R.equal(alive, _R_const(0, "int32")))
    return ctx.emit(R.where(dead, _R_const(0.0, dt), probs))


def grouped_kv(node: Node) -> tuple[Value, Value, int] | None:
    """Grouped-query attention: the keys and values ``[B, n_kv, S, D]`` that the graph repeats
    to every query head (``reshape(expand(unsqueeze(x, 2)))``, how Hugging Face's
    ``repeat_kv`` exports), and the group size; None for other attention."""
    sources = []
    for value in node.inputs[1:3]:
        reshape = value.producer
        expand = reshape.inputs[0].producer if reshape and reshape.op == "tensor.reshape" else None
        unsq = expand.inputs[0].producer if expand and expand.op == "tensor.expand" else None
        if unsq is None or unsq.op != "tensor.unsqueeze" or list(unsq.attrs["axes"]) != [2]:
            return None
        x = unsq.inputs[0]
        sx, se = static_shape(x), static_shape(expand.outputs[0])  # type: ignore[union-attr]
        if len(sx) != 4 or se != (sx[0], sx[1], se[2], sx[2], sx[3]):
            return None
        if static_shape(value) != (sx[0], sx[1] * se[2], sx[2], sx[3]):
            return None
        sources.append((x, int(se[2])))
    (k, group), (v, group_v) = sources
    return (k, v, group) if group == group_v and group > 1 else None


def _attention(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Scores, mask, softmax, weighted values. Grouped-query attention reads the cache as it
    is: the query heads of one KV head become rows of one matrix (``[B, n_kv, g*C, D]``, a
    free reshape), so the keys and values are never copied ``g`` times per step."""
    from backends.tvm.lower_llm import cache_attention

    fused = cache_attention(node, ctx)
    if fused is not None:
        return fused
    q, k, v = node.inputs[:3]
    sq, sk, sv = static_shape(q), static_shape(k), static_shape(v)
    a = ctx.attrs(node)
    dt = tvm_dtype(q)
    R = _R()
    grouped = grouped_kv(node)
    qe, ke, ve, group = ctx.arg(q), ctx.arg(k), ctx.arg(v), 1
    if grouped is not None and len(sq) == 4:
        k, v, group = grouped
        sk, sv = static_shape(k), static_shape(v)
        sq = (sq[0], sq[1] // group, group * sq[2], sq[3])
        qe, ke, ve = ctx.emit(R.reshape(qe, sq)), ctx.arg(k), ctx.arg(v)
    scale = a["scale"] if a["scale"] is not None else 1 / np.sqrt(sq[-1])
    perm = list(range(len(sk) - 2)) + [len(sk) - 1, len(sk) - 2]
    kt = ctx.emit(R.permute_dims(ke, perm))
    skt = sk[:-2] + (sk[-1], sk[-2])
    scores = batch_matmul(ctx, qe, kt, sq, skt, dt)
    scale = float(np.float32(scale)) if dt == "float32" else float(scale)
    scores = ctx.emit(R.multiply(scores, _R_const(scale, dt)))
    length, src = sq[-2] // group, sk[-2]
    neg_inf = _R_const(float("-inf"), dt)
    if a["causal"]:
        keep = np.tile(np.tril(np.ones((length, src), dtype=bool), k=src - length), (group, 1))
        scores = ctx.emit(R.where(_const(keep, "bool"), scores, neg_inf))
    if len(node.inputs) > 3:
        mask = ctx.arg(node.inputs[3])
        if group > 1:  # per query head and row, then the heads of a group as rows
            heads = static_shape(node.inputs[0])
            mask = ctx.emit(R.broadcast_to(mask, heads[:-1] + (src,)))
            mask = ctx.emit(R.reshape(mask, sq[:-1] + (src,)))
        if node.inputs[3].dtype == "bool":
            scores = ctx.emit(R.where(mask, scores, neg_inf))
        else:
            scores = ctx.emit(R.add(scores, mask))
    lanes = row_lanes(src, dt, ctx.params)
    if lanes:
        probs = ctx.emit_te(softmax_rows, scores, lanes)
    else:
        probs = ctx.emit(R.nn.softmax(scores, -1))
    if len(node.inputs) > 3 and group == 1:
        probs = _zero_dead_rows(ctx, node, probs, dt)
    ss = tuple(np.broadcast_shapes(sq[:-2], sk[:-2])) + (sq[-2], src)
    out = batch_matmul(ctx, probs, ve, ss, sv, dt)
    if group > 1:
        out = ctx.emit(R.reshape(out, static_shape(node.outputs[0])))
        if len(node.inputs) > 3:  # zero rows of probabilities give zero rows out
            out = _zero_dead_rows(ctx, node, out, dt)
    return [out]


NN_RULES: dict[str, Rule] = {
    "nn.conv2d": Rule(_conv2d, _conv_check, layouts=True),
    "nn.conv1d": Rule(
        _conv1d,
        lambda n, g: (
            None if g.const_value(n.inputs[1]) is not None else "conv1d with a non-constant weight"
        ),
    ),
    "nn.conv_transpose2d": Rule(_conv_transpose2d),
    "nn.dense": Rule(_dense),
    "nn.matmul": Rule(_matmul),
    "nn.max_pool2d": _pool("max"),
    "nn.avg_pool2d": _pool("avg"),
    "nn.global_avg_pool": _global_pool("mean"),
    "nn.global_max_pool": _global_pool("max"),
    "nn.adaptive_avg_pool2d": Rule(_adaptive_avg_pool2d, layouts=True),
    "nn.batch_norm": Rule(_batch_norm, layouts=True),
    "nn.layer_norm": Rule(_layer_norm),
    "nn.lrn": Rule(_lrn),
    "nn.resize": Rule(_resize),
    "nn.attention": Rule(_attention),
}
