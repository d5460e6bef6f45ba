"""Interpreter table, part 2: convolution, dense/matmul, pooling, normalization, attention.

Integer conv/dense/matmul are exact: products are summed in float64 (BLAS) when the bound
``K * max|a| * max|b|`` keeps every partial sum below 2^53, otherwise in int64, and then wrap
to the accumulator dtype (``acc``) as ``compiler.numerics.wrap`` defines.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from compiler import numerics
from compiler.interpreter_context import IMPLS, Context, Impl, impl
from compiler.interpreter_ops import softmax
from compiler.ir.graph import Node
from compiler.ir.op_facts import standalone_activation, zero_point
from compiler.ir.ops import nchw_shape
from compiler.ir.ops_nn import spatial_params

_EXACT_F64 = 2.0**52
_EXACT_F32 = 2.0**24


def exact_matmul(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``a @ b`` exactly for integer operands (int64 result).

    Every partial sum is an integer bounded by ``k * max|a| * max|b|``: below 2^24 float32
    BLAS is exact (int8 layers with K up to ~1000), below 2^53 float64 BLAS is.
    """
    bound = float(k) * float(np.max(np.abs(a), initial=0)) * float(np.max(np.abs(b), initial=0))
    if bound < _EXACT_F32:
        return np.rint(np.matmul(a.astype(np.float32), b.astype(np.float32))).astype(np.int64)
    if bound < _EXACT_F64:
        return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return exact_matmul(a, b, a.shape[-1])
    return np.matmul(a, b)


def apply_activation(ctx: Context, y: np.ndarray, act: str, args: list[float]) -> np.ndarray:
    """The fused activation of conv/dense: the implementation of the standalone op it
    stands for (``compiler.ir.op_facts.standalone_activation``), so the two cannot differ."""
    standalone = standalone_activation(act, args)
    if standalone is None:
        return y
    op, attrs = standalone
    return IMPLS[op](ctx, Node(op, [], attrs, []), [y])[0]


def _finish(
    ctx: Context, node: Node, y: np.ndarray, xs: list[np.ndarray], bias_axis: int
) -> np.ndarray:
    """Add bias and residual, apply the fused activation, wrap integer accumulators."""
    is_int = np.issubdtype(y.dtype, np.integer)
    if len(xs) > 2:
        shape = [1] * y.ndim
        shape[bias_axis] = -1
        y = y + xs[2].astype(y.dtype).reshape(shape)
    if len(xs) > 3:
        y = y + xs[3].astype(y.dtype)
    if is_int:
        y = numerics.wrap(y, node.attrs.get("acc") or "i32").astype(np.int64)
    act, args = node.attrs.get("act", "none"), list(node.attrs.get("act_args", []))
    y = apply_activation(ctx, y, act, args)
    return y


def pad_spatial(x: np.ndarray, pads: list[int], value: float | int = 0) -> np.ndarray:
    n = x.ndim - 2
    width = [(0, 0), (0, 0)] + [(pads[i], pads[n + i]) for i in range(n)]
    return np.pad(x, width, mode="constant", constant_values=value)


def windows(
    x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int]
) -> np.ndarray:
    """[N, C, *out, *kernel] views of the (already padded) input."""
    n = len(kernel)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
    win = sliding_window_view(x, span, axis=tuple(range(2, 2 + n)))
    index = (
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in strides)
        + tuple(slice(None, None, d) for d in dilations)
    )
    return win[index]


def conv_nd(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w = xs[0], xs[1]
    n = w.ndim - 2
    strides, pads, dil = spatial_params(node.attrs, n)
    groups = node.attrs.get("groups", 1)
    is_int = np.issubdtype(x.dtype, np.integer)
    # Integer inputs are padded with their zero point, so padding means real 0.
    xp = pad_spatial(
        x.astype(np.int64) if is_int else x, pads, zero_point(node.inputs[0]) if is_int else 0
    )
    if is_int:
        xp = xp - zero_point(node.inputs[0])
    win = windows(xp, list(w.shape[2:]), strides, dil)  # N, C, *out, *k
    batch, out_sp = win.shape[0], win.shape[2 : 2 + n]
    cin_g, cout_g = w.shape[1], w.shape[0] // groups
    outs = []
    for g in range(groups):
        wg = w[g * cout_g : (g + 1) * cout_g].reshape(cout_g, -1)
        patch = win[:, g * cin_g : (g + 1) * cin_g]
        # -> N, *out, Cin_g, *k flattened against weight's (Cin_g, *k)
        patch = np.moveaxis(patch, 1, 1 + n).reshape(batch, *out_sp, -1)
        k = patch.shape[-1]
        y = exact_matmul(patch, wg.T, k) if is_int else patch @ wg.T
        outs.append(np.moveaxis(y, -1, 1))
    y = np.concatenate(outs, axis=1) if groups > 1 else outs[0]
    if not is_int:
        y = y.astype(x.dtype)
    return [_finish(ctx, node, y, xs, bias_axis=1)]


def layout_aware(fn: Impl, moved: tuple[int, ...] = (0,)) -> Impl:
    """Run an NCHW implementation on a ``layout="NHWC"`` node: operands at ``moved`` go
    channels-first, the results back to channels-last. Transposes only move data, so the
    results are bit-identical to the NCHW graph's (a backend implements NHWC natively)."""

    def run(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        if node.attrs.get("layout", "NCHW") != "NHWC":
            return fn(ctx, node, xs)
        rank = xs[0].ndim
        xs = [
            np.moveaxis(x, -1, 1) if i in moved and x.ndim == rank else x for i, x in enumerate(xs)
        ]
        return [np.ascontiguousarray(np.moveaxis(y, 1, -1)) for y in fn(ctx, node, xs)]

    return run


IMPLS["nn.conv1d"] = conv_nd
IMPLS["nn.conv2d"] = layout_aware(conv_nd, moved=(0, 3))


@impl("nn.conv_transpose2d")
def _conv_transpose2d(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w = xs[0], xs[1]
    strides, pads, dil = spatial_params(node.attrs, 2)
    groups = node.attrs.get("groups", 1)
    out_t = node.outputs[0].type
    n, cin, h, wd = x.shape
    cin_g, cout_g = cin // groups, w.shape[1]
    kh, kw = w.shape[2], w.shape[3]
    out_pad = node.attrs.get("output_padding") or [0, 0]
    full_h = (h - 1) * strides[0] + dil[0] * (kh - 1) + 1 + out_pad[0]
    full_w = (wd - 1) * strides[1] + dil[1] * (kw - 1) + 1 + out_pad[1]
    full = np.zeros((n, cout_g * groups, full_h, full_w), dtype=np.result_type(x.dtype, w.dtype))
    for g in range(groups):
        xg = x[:, g * cin_g : (g + 1) * cin_g]
        wg = w[g * cin_g : (g + 1) * cin_g]  # Cin_g, Cout_g, kh, kw
        contrib = np.einsum("nchw,cokl->nohwkl", xg, wg, optimize=True)
        for i in range(kh):
            for j in range(kw):
                full[
                    :,
                    g * cout_g : (g + 1) * cout_g,
                    i * dil[0] : i * dil[0] + (h - 1) * strides[0] + 1 : strides[0],
                    j * dil[1] : j * dil[1] + (wd - 1) * strides[1] + 1 : strides[1],
                ] += contrib[..., i, j]
    oh, ow = int(out_t.shape[2]), int(out_t.shape[3])
    y = full[:, :, pads[0] : pads[0] + oh, pads[1] : pads[1] + ow]
    if len(xs) > 2:
        y = y + xs[2].reshape(1, -1, 1, 1)
    return [y.astype(x.dtype)]


@impl("nn.dense")
def _dense(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w = xs[0], xs[1]
    if np.issubdtype(x.dtype, np.integer):
        zp = zero_point(node.inputs[0])
        y = exact_matmul(x.astype(np.int64) - zp if zp else x, w.T, w.shape[1])
    else:
        y = (x @ w.T).astype(x.dtype)
    return [_finish(ctx, node, y, xs, bias_axis=-1)]


@impl("nn.matmul")
def _matmul_impl(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    if np.issubdtype(xs[0].dtype, np.integer):  # subtract per-tensor zero points (real 0)
        xs = [x.astype(np.int64) - zero_point(v) for x, v in zip(xs, node.inputs, strict=True)]
    y = _matmul(xs[0], xs[1])
    if np.issubdtype(y.dtype, np.integer):
        y = numerics.wrap(y, node.attrs.get("acc") or "i32")
    return [y]


def _pool(ctx: Context, node: Node, xs: list[np.ndarray], reduce: str) -> np.ndarray:
    x = xs[0]
    a = node.attrs
    kernel = list(a["kernel"])
    strides, pads, dil = spatial_params({**a, "strides": a.get("strides") or kernel}, 2)
    out_h, out_w = (int(d) for d in nchw_shape(node.outputs[0].type.shape, a)[2:])
    # ceil_mode may need extra padding at the end so the last window exists.
    extra_h = max(
        0,
        (out_h - 1) * strides[0] + dil[0] * (kernel[0] - 1) + 1 - (x.shape[2] + pads[0] + pads[2]),
    )
    extra_w = max(
        0,
        (out_w - 1) * strides[1] + dil[1] * (kernel[1] - 1) + 1 - (x.shape[3] + pads[1] + pads[3]),
    )
    full_pads = [pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w]
    if reduce == "max":
        fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
        win = windows(pad_spatial(x, full_pads, fill), kernel, strides, dil)
        return win.max(axis=(-2, -1))[:, :, :out_h, :out_w]
    xf = x.astype(np.float64)
    win = windows(pad_spatial(xf, full_pads, 0), kernel, strides, dil)
    sums = win.sum(axis=(-2, -1))[:, :, :out_h, :out_w]
    if a.get("count_include_pad", True):
        ones = np.pad(
            np.ones(x.shape[2:]), [(pads[0], pads[2]), (pads[1], pads[3])], constant_values=1
        )
        ones = np.pad(ones, [(0, extra_h), (0, extra_w)])
    else:
        ones = np.pad(
            np.ones(x.shape[2:]), [(pads[0], pads[2] + extra_h), (pads[1], pads[3] + extra_w)]
        )
    counts = windows(ones[None, None], kernel, strides, dil).sum(axis=(-2, -1))[
        :, :, :out_h, :out_w
    ]
    return (sums / counts).astype(x.dtype)


IMPLS["nn.max_pool2d"] = layout_aware(lambda ctx, node, xs: [_pool(ctx, node, xs, "max")])
IMPLS["nn.avg_pool2d"] = layout_aware(lambda ctx, node, xs: [_pool(ctx, node, xs, "avg")])


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


IMPLS["nn.global_avg_pool"] = layout_aware(
    lambda ctx, node, xs: [
        xs[0].mean(axis=_spatial_axes(xs[0]), keepdims=True, dtype=np.float64).astype(xs[0].dtype)
    ]
)
IMPLS["nn.global_max_pool"] = layout_aware(
    lambda ctx, node, xs: [xs[0].max(axis=_spatial_axes(xs[0]), keepdims=True)]
)


@impl("nn.adaptive_avg_pool2d")
def _adaptive_avg_pool2d(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    oh, ow = node.attrs["output_size"]
    h, w = x.shape[2:]
    out = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return [out]


@impl("nn.batch_norm")
def _batch_norm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, scale, bias, mean, var = xs
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + np.asarray(node.attrs.get("eps", 1e-5), var.dtype))
    return [((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)]


IMPLS["nn.batch_norm"] = layout_aware(_batch_norm)


@impl("nn.layer_norm")
def _layer_norm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axis = node.attrs.get("axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.asarray(node.attrs.get("eps", 1e-5), x.dtype))
    if len(xs) > 1:
        y = y * xs[1]
    if len(xs) > 2:
        y = y + xs[2]
    return [y.astype(x.dtype)]


@impl("nn.lrn")
def _lrn(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    a = node.attrs
    size = a["size"]
    sq = np.pad(x * x, [(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    window = sum(sq[:, i : i + c] for i in range(size))
    denom = (
        np.asarray(a.get("bias", 1.0), x.dtype)
        + np.asarray(a.get("alpha", 1e-4), x.dtype) / size * window
    ) ** np.asarray(a.get("beta", 0.75), x.dtype)
    return [(x / denom).astype(x.dtype)]


@impl("nn.resize")
def _resize(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    out_shape = node.outputs[0].type.shape
    index = []
    for d, (size_in, size_out) in enumerate(zip(x.shape, [int(s) for s in out_shape], strict=True)):
        scale = node.attrs["scales"][d]
        src = np.minimum(np.floor(np.arange(size_out) / scale).astype(np.int64), size_in - 1)
        shape = [1] * x.ndim
        shape[d] = size_out
        index.append(src.reshape(shape))
    return [x[tuple(index)]]


@impl("nn.attention")
def _attention(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    q, k, v = xs[0], xs[1], xs[2]
    scale = node.attrs.get("scale")
    scale = np.asarray(1 / math.sqrt(q.shape[-1]) if scale is None else scale, q.dtype)
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    length, src = scores.shape[-2], scores.shape[-1]
    if node.attrs.get("causal"):
        keep = np.tril(np.ones((length, src), dtype=bool), k=src - length)
        scores = np.where(keep, scores, np.float32(-np.inf))
    if len(xs) > 3:
        mask = xs[3]
        scores = (
            np.where(mask, scores, np.float32(-np.inf)) if mask.dtype == np.bool_ else scores + mask
        )
    probs = softmax(scores.astype(q.dtype), axis=-1)
    if len(xs) > 3:
        # A row with every key masked (a left-padded position) attends to nothing: 0, as
        # torch's SDPA gives, not the NaN of softmax over -inf (it would reach every row
        # through the padding's keys and values in the next layer).
        dead = np.all(scores == -np.inf, axis=-1, keepdims=True)
        probs = np.where(dead, np.zeros((), probs.dtype), probs)
    return [(probs @ v).astype(q.dtype)]
