"""Interpreter, part 6: NumPy implementations of the ops in ``compiler.ir.ops_extra``.

Float results compute in the operand's dtype unless noted; integer results are exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from compiler.errors import InputError
from compiler.interpreter_context import Context, impl
from compiler.ir.graph import Node
from compiler.ir.ops import OPS, conv_out_dim
from compiler.ir.types import NUMPY_DTYPES


def _attrs(node: Node) -> dict:
    return OPS[node.op].with_defaults(node.attrs)


@impl("math.hardmax")
def _hardmax(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axis = int(_attrs(node)["axis"]) % x.ndim
    y = np.zeros_like(x)
    if x.size:
        first = np.expand_dims(np.argmax(x, axis=axis), axis)  # ties: the first maximum
        np.put_along_axis(y, first, 1, axis=axis)
    return [y]


@impl("math.cumprod")
def _cumprod(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, axis_arr = xs
    attrs = _attrs(node)
    axis = int(axis_arr.reshape(-1)[0]) % x.ndim
    y = np.flip(x, axis) if attrs["reverse"] else x
    if attrs["exclusive"]:  # shift by one, starting from the product's identity
        ones = np.ones_like(np.take(y, [0], axis=axis))
        y = np.concatenate([ones, np.delete(y, -1, axis=axis)], axis=axis)
    total = np.cumprod(y, axis=axis, dtype=x.dtype)
    return [np.flip(total, axis) if attrs["reverse"] else total]


@impl("nn.lp_norm")
def _lp_norm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    attrs = _attrs(node)
    axis = int(attrs["axis"]) % x.ndim
    if attrs["p"] == 1:
        norm = np.sum(np.abs(x), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    # A zero vector stays zero (0/0 would be NaN), as onnx's reference defines it.
    return [np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)).astype(x.dtype)]


@impl("math.isinf")
def _isinf(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, attrs = xs[0], _attrs(node)
    pos = np.isposinf(x) if attrs["positive"] else np.zeros(x.shape, bool)
    neg = np.isneginf(x) if attrs["negative"] else np.zeros(x.shape, bool)
    return [pos | neg]


def _bits_of(x: np.ndarray, dtype: str) -> np.ndarray:
    """The raw little-endian bits of ``x`` (bf16 is held in float32: its top half)."""
    if dtype == "bf16":
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return x.astype(x.dtype.newbyteorder("<"))


@impl("tensor.bitcast")
def _bitcast(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, to = xs[0], node.attrs["to"]
    bits = np.require(_bits_of(x, node.inputs[0].dtype), requirements="C")
    if to == "bf16":
        return [(bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)]
    out = bits.view(NUMPY_DTYPES[to].newbyteorder("<")).astype(NUMPY_DTYPES[to])
    return [out != 0 if to == "bool" else out]


@impl("tensor.one_hot")
def _one_hot(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    indices, depth_arr, values = xs
    depth = int(depth_arr.reshape(-1)[0])
    axis = int(_attrs(node)["axis"]) % (indices.ndim + 1)
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # out of range after this: all "off"
    shape = [1] * (indices.ndim + 1)
    shape[axis] = depth
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape(shape)
    return [np.where(hot, values[1], values[0]).astype(values.dtype)]


@impl("tensor.unique")
def _unique(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, attrs = xs[0], _attrs(node)
    axis = None if attrs["axis"] is None else int(attrs["axis"]) % x.ndim
    y, first, inverse, counts = np.unique(
        x, return_index=True, return_inverse=True, return_counts=True, axis=axis
    )
    inverse = inverse.reshape(-1)
    if not attrs["sorted"]:  # in order of first occurrence instead
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    return [y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]


@impl("tensor.nonzero")
def _nonzero(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [np.asarray(np.nonzero(x.reshape(1) if x.ndim == 0 else x), np.int64)]


@impl("tensor.compress")
def _compress(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, cond = xs
    axis = _attrs(node)["axis"]
    if axis is None:
        return [np.compress(cond, x.reshape(-1))]
    return [np.compress(cond, x, axis=int(axis) % x.ndim)]


def window_index(size: int, out: int, k: int, s: int, lo: int, hi: int, d: int) -> tuple:
    """Per output position and kernel tap: the input index, whether it is inside the input,
    and whether it is inside input-or-padding (a ceil-mode window may reach past both)."""
    idx = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d
    inside = (idx >= 0) & (idx < size)
    padded = (idx >= -lo) & (idx < size + hi)
    return np.clip(idx, 0, max(size - 1, 0)), inside, padded


def _pool_taps(node: Node, x: np.ndarray, attrs: dict[str, Any]) -> tuple[list[int], Iterator]:
    """The output's spatial sizes, and for each kernel tap of an N-D pool (nn.pool_nd,
    nn.max_pool_argmax): the input index along each spatial axis, and the masks (of the
    output's spatial shape) of where the tap falls inside the input and inside
    input-or-padding. Sizes come from the result type, or from the input where it is
    symbolic."""
    kernel = [int(k) for k in attrs["kernel"]]
    n = len(kernel)
    strides = attrs["strides"] or [1] * n
    pads = attrs["pads"] or [0] * (2 * n)
    dils = attrs["dilations"] or [1] * n
    out = [int(d) for d in node.outputs[0].type.shape[2:]] if all(
        isinstance(d, int) for d in node.outputs[0].type.shape[2:]) else None  # fmt: skip
    if out is None:
        out = [int(conv_out_dim(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[n + i],
                                dils[i], bool(attrs["ceil_mode"]))) for i in range(n)]
    wins = [window_index(x.shape[2 + i], out[i], kernel[i], strides[i], pads[i], pads[n + i],
                          dils[i]) for i in range(n)]  # fmt: skip
    return out, _taps(wins, out)


def _taps(wins: list[tuple], out: list[int]) -> Iterator:
    for taps in itertools.product(*(range(w[0].shape[1]) for w in wins)):
        inside = np.ones(out, bool)
        padded = np.ones(out, bool)
        for axis, (w, t) in enumerate(zip(wins, taps, strict=True)):
            shape = [1] * len(out)
            shape[axis] = out[axis]
            inside = inside & w[1][:, t].reshape(shape)
            padded = padded & w[2][:, t].reshape(shape)
        yield [w[0][:, t] for w, t in zip(wins, taps, strict=True)], inside, padded


@impl("nn.pool_nd")
def _pool_nd(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, attrs = xs[0], _attrs(node)
    out, taps = _pool_taps(node, x, attrs)
    kind, p = attrs["kind"], float(attrs["p"])
    acc = np.full((*x.shape[:2], *out), -np.inf if kind == "max" else 0.0, np.float64)
    count = np.zeros(out, np.float64)
    for pos, inside, padded in taps:
        v = x[(slice(None), slice(None), *np.ix_(*pos))].astype(np.float64)
        if kind == "max":
            acc = np.where(inside, np.maximum(acc, v), acc)
        elif kind == "avg":
            acc += np.where(inside, v, 0.0)
            count += padded if attrs["count_include_pad"] else inside
        else:
            acc += np.where(inside, np.abs(v) ** p, 0.0)
    if kind == "avg":
        acc = acc / np.maximum(count, 1)
    elif kind == "lp":
        acc = acc ** (1.0 / p)
    return [acc.astype(x.dtype)]


def _centered(x: np.ndarray, zero: np.ndarray | None, row_axis: int) -> np.ndarray:
    """``x - zero`` in int32; a 1-D zero point is per row (a) or per column (b)."""
    x32 = x.astype(np.int32)
    if zero is None or zero.size == 0:
        return x32
    z = zero.astype(np.int32)
    if z.ndim == 1 and z.size > 1:
        shape = [1] * x.ndim
        shape[row_axis] = z.size
        z = z.reshape(shape)
    return x32 - z


def _scale_vector(s: np.ndarray, row_axis: int, ndim: int) -> np.ndarray:
    if s.ndim == 1 and s.size > 1:
        shape = [1] * ndim
        shape[row_axis] = s.size
        return s.reshape(shape)
    return s


@impl("q.linear_matmul")
def _qlinear_matmul(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a, sa, za, b, sb, zb, sy, zy = xs
    acc = np.matmul(_centered(a, za, -2 if a.ndim > 1 else -1), _centered(b, zb, -1))
    sa = _scale_vector(sa, -2, acc.ndim)
    sb = _scale_vector(sb, -1, acc.ndim)
    # The combined scale is computed in the scales' own dtype (as onnx's reference does),
    # then the exact int32 products are scaled in float64.
    scale = (sa * sb / sy).astype(np.float64)
    y = np.rint(acc.astype(np.float64) * scale + zy.astype(np.float64))
    info = np.iinfo(zy.dtype)
    return [np.clip(y, info.min, info.max).astype(zy.dtype)]


@impl("q.integer_matmul")
def _integer_matmul(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a, b = xs[0], xs[1]
    za = xs[2] if len(xs) > 2 else None
    zb = xs[3] if len(xs) > 3 else None
    acc = np.matmul(_centered(a, za, -2 if a.ndim > 1 else -1), _centered(b, zb, -1))
    return [acc.astype(np.int32)]



def ngram_ids(attrs: dict) -> dict[tuple[int, ...], int]:
    """Pool n-gram -> output index, for the lengths counted (ids run over every length)."""
    pool, counts = [int(v) for v in attrs["pool"]], [int(c) for c in attrs["counts"]]
    grams: dict[tuple[int, ...], int] = {}
    gram_id = 0
    for i, start in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        n = i + 1
        for at in range(start, end - n + 1, n):
            if attrs["min_n"] <= n <= attrs["max_n"] and gram_id < len(attrs["indexes"]):
                grams.setdefault(tuple(pool[at : at + n]), int(attrs["indexes"][gram_id]))
            gram_id += 1
    return grams


@impl("nn.tfidf")
def _tfidf(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = _attrs(node)
    grams = ngram_ids(attrs)
    rows = xs[0].reshape(1, -1) if xs[0].ndim == 1 else xs[0]
    size = max(int(i) for i in attrs["indexes"]) + 1
    counts: np.ndarray = np.zeros((rows.shape[0], size), np.float64)
    min_n, max_n = int(attrs["min_n"]), int(attrs["max_n"])
    for r, row in enumerate(rows.tolist()):
        first = min_n
        for skip in range(1, int(attrs["max_skip"]) + 2):
            for start in range(len(row)):
                if start + skip * (first - 1) >= len(row):
                    break
                for n in range(first, max_n + 1):
                    items = row[start : start + skip * (n - 1) + 1 : skip]
                    if len(items) < n:
                        break
                    if (at := grams.get(tuple(items))) is not None:
                        counts[r, at] += 1
            if first == 1:  # single tokens are counted once, not once per skip distance
                first = 2
                if first > max_n:
                    break
    weights = np.asarray(attrs["weights"] or [], np.float64)
    if attrs["mode"] == "IDF":
        counts = (counts > 0) * (weights if weights.size else 1.0)
    elif attrs["mode"] == "TFIDF" and weights.size:
        counts = counts * weights
    return [counts.reshape(-1) if xs[0].ndim == 1 else counts]


@impl("tensor.tensor_scatter")
def _tensor_scatter(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    cache, update, idx = xs
    attrs = _attrs(node)
    axis = int(attrs["axis"]) % cache.ndim
    out = np.moveaxis(cache.copy(), axis, 1)
    upd = np.moveaxis(update, axis, 1)
    size, steps = out.shape[1], upd.shape[1]
    for b in range(out.shape[0]):
        at = int(idx[b]) + np.arange(steps)
        if attrs["mode"] == "circular":
            at = at % size
        elif steps and (at[0] < 0 or at[-1] >= size):
            raise InputError(f"{node.where()}: write index {int(idx[b])} + {steps} steps "
                             f"outside a cache of {size}")
        out[b, at] = upd[b]
    return [np.moveaxis(out, 1, axis)]


@impl("nn.max_pool_argmax")
def _max_pool_argmax(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, attrs = xs[0], _attrs(node)
    out, taps = _pool_taps(node, x, attrs)
    n = len(out)
    best = np.full((*x.shape[:2], *out), -np.inf)
    where = np.zeros(best.shape, np.int64)
    spatial = x.shape[2:]
    # Flat index of [b, c, *pos]: row-major, or column-major over the spatial dimensions.
    order = spatial[::-1] if attrs["storage_order"] else spatial
    lead = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * n) * int(
        np.prod(spatial))  # fmt: skip
    for pos, inside, _ in taps:
        grids = np.ix_(*pos)
        v = x[(slice(None), slice(None), *grids)].astype(np.float64)
        coords = grids[::-1] if attrs["storage_order"] else grids
        flat = np.ravel_multi_index(tuple(np.broadcast_arrays(*coords)), order)
        better = inside & (v > best)  # strictly greater: the first maximum wins ties
        best = np.where(better, v, best)
        where = np.where(better, lead + flat, where)
    return [best.astype(x.dtype), where]


@impl("nn.max_unpool")
def _max_unpool(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, idx = xs
    shape = tuple(int(d) for d in node.outputs[0].type.shape)
    out = np.zeros(int(np.prod(shape)), x.dtype)
    out[idx.reshape(-1) % max(out.size, 1)] = x.reshape(-1)
    return [out.reshape(shape)]


@impl("math.histc")
def _histc(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, attrs = xs[0].astype(np.float64).reshape(-1), _attrs(node)
    bins, low, high = int(attrs["bins"]), float(attrs["min"]), float(attrs["max"])
    if low == high and x.size:
        low, high = float(x.min()), float(x.max())
    if low == high:  # torch widens an empty range by one on each side
        low, high = low - 1, high + 1
    inside = x[(x >= low) & (x <= high)]
    at = np.minimum(((inside - low) * bins / (high - low)).astype(np.int64), bins - 1)
    return [np.bincount(at, minlength=bins).astype(xs[0].dtype)]


@impl("nn.grouped_mm")
def _grouped_mm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w, offs = xs
    out = np.zeros((x.shape[0], w.shape[2]), x.dtype)
    start = 0
    for g, end in enumerate(np.clip(offs.astype(np.int64), 0, x.shape[0])):
        if end > start:
            out[start:end] = x[start:end] @ w[g]
        start = max(start, int(end))
    return [out]
