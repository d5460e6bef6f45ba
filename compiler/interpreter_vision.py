"""Interpreter, part 8: NumPy implementations of the ops in ``compiler.ir.ops_vision``.

Interpolation computes in float64 and rounds once to the input's dtype.
"""

from __future__ import annotations

import itertools

import numpy as np

from compiler.interpreter_context import Context, impl
from compiler.ir.graph import Node
from compiler.ir.ops import OPS


def _keys(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 from
    ``floor(x)``, for the fractional parts ``t``: [..., 4]."""
    d = np.stack([t + 1, t, 1 - t, 2 - t], axis=-1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mirror coordinates into [lo, hi] by the nearer border, repeatedly."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below, above = lo - x, x - hi
    out = x.copy()
    for dist, start, other, mask in ((below, lo, hi, x < lo), (above, hi, lo, x > hi)):
        n = np.floor(dist / span)
        r = dist - n * span
        sign = 1 if start == lo else -1
        even = start + sign * r
        odd = other - sign * r
        out = np.where(mask, np.where(n % 2 == 0, even, odd), out)
    return out


def _taps(coord: np.ndarray, size: int, mode: str, padding: str, align: bool,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per sample point: tap indices, weights and in-range mask along one dimension."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    x = (coord + 1) / 2 * (size - 1) if align else ((coord + 1) * size - 1) / 2
    if mode == "nearest":
        x = np.rint(x)  # half to even, as onnx's reference rounds
    outside = (x < lo) | (x > hi)
    if padding == "border":
        x = np.where(outside, np.clip(x, 0, size - 1), x)
    elif padding == "reflection":
        x = np.where(outside, _reflect(x, lo, hi), x)
    if mode == "nearest":
        idx, w = x.astype(np.int64)[..., None], np.ones((*x.shape, 1))
    else:
        base = np.floor(x)
        t = x - base
        if mode == "linear":
            idx, w = base[..., None] + np.arange(2), np.stack([1 - t, t], axis=-1)
        else:
            idx, w = base[..., None] + np.arange(-1, 3), _keys(t, -0.75)
        idx = idx.astype(np.int64)
    if padding == "border":
        idx = np.clip(idx, 0, size - 1)
    elif padding == "reflection":
        idx = np.trunc(_reflect(idx.astype(np.float64), lo, hi)).astype(np.int64)
    inside = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, size - 1), w, inside


@impl("nn.grid_sample")
def _grid_sample(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, grid = xs[0], xs[1].astype(np.float64)
    attrs = OPS[node.op].with_defaults(node.attrs)
    n = x.ndim - 2
    # grid[..., 0] indexes the last (width) dimension: dimension i takes entry n-1-i.
    dims = [_taps(grid[..., n - 1 - i], x.shape[2 + i], attrs["mode"], attrs["padding"],
                  bool(attrs["align_corners"])) for i in range(n)]  # fmt: skip
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    out = np.zeros((*grid.shape[:-1], x.shape[1]))
    channels_last = x.transpose(0, *range(2, x.ndim), 1)  # gathers give [N, H.., C]
    for taps in itertools.product(*(range(d[0].shape[-1]) for d in dims)):
        weight = np.ones(grid.shape[:-1])
        index = []
        for (idx, w, inside), t in zip(dims, taps, strict=True):
            weight = weight * w[..., t] * inside[..., t]
            index.append(idx[..., t])
        out += weight[..., None] * channels_last[(batch, *index)]
    return [np.moveaxis(out, -1, 1).astype(x.dtype)]


def _cubic_axis(y: np.ndarray, axis: int, size_out: int, scale: float, attrs: dict,
                ) -> np.ndarray:  # fmt: skip
    size_in = y.shape[axis]
    out = np.arange(size_out, dtype=np.float64)
    mode = attrs["mode"]
    if mode == "align_corners":
        src = out * (size_in - 1) / (size_out - 1) if size_out > 1 else 0 * out
    elif mode == "asymmetric":
        src = out / scale
    elif mode == "pytorch_half_pixel" and size_out <= 1:
        src = 0 * out - 0.5
    elif mode == "half_pixel_symmetric":
        adjust = size_out / (scale * size_in)
        src = size_in / 2 * (1 - adjust) + (out + 0.5) / scale - 0.5
    else:
        src = (out + 0.5) / scale - 0.5
    base = np.floor(src)
    idx = base[:, None].astype(np.int64) + np.arange(-1, 3)
    w = _keys(src - base, float(attrs["a"]))
    if attrs["exclude_outside"]:
        w = np.where((idx >= 0) & (idx < size_in), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 0, size_in - 1)  # the edge repeats (onnx pads in 'edge' mode)
    taken = np.take(y, idx, axis=axis)  # the tap dimension lands after ``axis``
    shape = [1] * taken.ndim
    shape[axis], shape[axis + 1] = size_out, 4
    return np.sum(taken * w.reshape(shape), axis=axis + 1)


@impl("nn.resize_cubic")
def _resize_cubic(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = OPS[node.op].with_defaults(node.attrs)
    y = xs[0].astype(np.float64)
    for axis, (size, scale) in enumerate(zip(attrs["sizes"], attrs["scales"], strict=True)):
        if int(size) != y.shape[axis] or float(scale) != 1.0:
            y = _cubic_axis(y, axis, int(size), float(scale), attrs)
    return [y.astype(xs[0].dtype)]


def _corners(b: np.ndarray, center: bool) -> np.ndarray:
    """Boxes as (y_min, x_min, y_max, x_max) with min <= max."""
    if center:
        xc, yc, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    return np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ih = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iw = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1), 0.0)


@impl("nn.nms")
def _nms(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    boxes, scores = xs[0].astype(np.float64), xs[1].astype(np.float64)
    attrs = OPS[node.op].with_defaults(node.attrs)
    limit = max(int(xs[2].reshape(-1)[0]), 0) if xs[2].size else 0
    iou_max = float(xs[3].reshape(-1)[0]) if xs[3].size else 0.0
    floor = float(xs[4].reshape(-1)[0]) if xs[4].size else -np.inf
    rows = []
    for b in range(boxes.shape[0]):
        corners = _corners(boxes[b], bool(attrs["center_box"]))
        for c in range(scores.shape[1]):
            s = scores[b, c]
            # Highest score first; equal scores in index order.
            order = [i for i in np.argsort(-s, kind="stable") if s[i] > floor]
            kept: list[int] = []
            for i in order:
                if len(kept) >= limit:
                    break
                if not kept or not np.any(_iou(corners[i], corners[kept]) > iou_max):
                    kept.append(int(i))
            rows += [(b, c, i) for i in kept]
    return [np.asarray(rows, np.int64).reshape(-1, 3)]


@impl("math.det")
def _det(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(np.linalg.det(xs[0].astype(np.float64))).astype(xs[0].dtype)]


@impl("tensor.reverse_sequence")
def _reverse_sequence(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, lens = xs
    attrs = OPS[node.op].with_defaults(node.attrs)
    b_axis, t_axis = int(attrs["batch_axis"]) % x.ndim, int(attrs["time_axis"]) % x.ndim
    moved = np.moveaxis(x, (b_axis, t_axis), (0, 1)).copy()
    for b, n in enumerate(np.clip(lens.astype(np.int64), 0, moved.shape[1])):
        moved[b, :n] = moved[b, :n][::-1]
    return [np.moveaxis(moved, (0, 1), (b_axis, t_axis))]


def _bilinear(img: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``img`` [C, H, W] sampled at (h, w) (any equal shapes), zeros outside: [C, *h.shape]."""
    height, width = img.shape[1:]
    h0, w0 = np.floor(h), np.floor(w)
    out = np.zeros((img.shape[0], *h.shape))
    for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
        hi, wi = h0 + dh, w0 + dw
        weight = (1 - np.abs(h - hi)) * (1 - np.abs(w - wi))
        inside = (hi >= 0) & (hi < height) & (wi >= 0) & (wi < width)
        hc = np.clip(hi, 0, height - 1).astype(np.int64)
        wc = np.clip(wi, 0, width - 1).astype(np.int64)
        out += img[:, hc, wc] * (weight * inside)
    return out


@impl("nn.deform_conv")
def _deform_conv(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, w, off, b, mask = (a.astype(np.float64) for a in xs)
    attrs = OPS[node.op].with_defaults(node.attrs)
    sh, sw = attrs["strides"] or [1, 1]
    ph, pw = (attrs["pads"] or [0, 0, 0, 0])[:2]
    dh, dw = attrs["dilations"] or [1, 1]
    group, og = int(attrs["group"]), int(attrs["offset_group"])
    n, c = x.shape[:2]
    oc, icg, kh, kw = w.shape
    oh, ow = off.shape[2:]
    off = off.reshape(n, og, kh, kw, 2, oh, ow)
    mask = mask.reshape(n, og, kh, kw, oh, ow)
    base_h = (np.arange(oh) * sh - ph)[:, None]
    base_w = (np.arange(ow) * sw - pw)[None, :]
    cols = np.zeros((n, c, kh, kw, oh, ow))
    per_group = c // og
    for b_i, g, i, j in itertools.product(range(n), range(og), range(kh), range(kw)):
        h = base_h + i * dh + off[b_i, g, i, j, 0]
        ww = base_w + j * dw + off[b_i, g, i, j, 1]
        chans = slice(g * per_group, (g + 1) * per_group)
        cols[b_i, chans, i, j] = _bilinear(x[b_i, chans], h, ww) * mask[b_i, g, i, j]
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // group
    for g in range(group):
        part = cols[:, g * icg : (g + 1) * icg]
        out[:, g * ocg : (g + 1) * ocg] = np.einsum("nckluv,ockl->nouv", part,
                                                     w[g * ocg : (g + 1) * ocg])  # fmt: skip
    return [(out + b.reshape(1, -1, 1, 1)).astype(xs[0].dtype)]


def _roi_axis(start: float, size: float, bins: int, grid: int, limit: int) -> tuple:
    """Sample coordinates of one axis [bins, grid]: low/high taps, their weights and
    whether the sample lies within a pixel of the map (onnx's RoiAlign rules)."""
    pos = start + np.arange(bins)[:, None] * (size / bins) + (np.arange(grid) + 0.5) * (
        size / bins / grid)  # fmt: skip
    valid = (pos >= -1.0) & (pos <= limit)
    pos = np.maximum(pos, 0)
    low = np.floor(pos).astype(np.int64)
    edge = low >= limit - 1
    low = np.where(edge, limit - 1, low)
    high = np.where(edge, limit - 1, low + 1)
    pos = np.where(edge, low, pos)
    frac = pos - low
    return low, high, 1 - frac, frac, valid


@impl("nn.roi_align")
def _roi_align(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, rois, idx = xs[0].astype(np.float64), xs[1].astype(np.float64), xs[2]
    attrs = OPS[node.op].with_defaults(node.attrs)
    out_h, out_w, ratio = int(attrs["out_h"]), int(attrs["out_w"]), int(attrs["sampling_ratio"])
    height, width = x.shape[2:]
    shift = 0.5 if attrs["half_pixel"] else 0.0
    out = np.zeros((rois.shape[0], x.shape[1], out_h, out_w))
    for r, (roi, b) in enumerate(zip(rois, idx, strict=True)):
        x1, y1, x2, y2 = roi * float(attrs["spatial_scale"]) - shift
        rw, rh = x2 - x1, y2 - y1
        if not attrs["half_pixel"]:  # the legacy mode forces regions of at least 1 pixel
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = ratio if ratio > 0 else int(np.ceil(rh / out_h))
        gw = ratio if ratio > 0 else int(np.ceil(rw / out_w))
        yl, yh, wyl, wyh, vy = _roi_axis(y1, rh, out_h, gh, height)
        xl, xh, wxl, wxh, vx = _roi_axis(x1, rw, out_w, gw, width)
        img = x[int(b)]
        valid = vy[:, :, None, None] & vx[None, None, :, :]
        terms = [
            img[:, ya[:, :, None, None], xa[None, None, :, :]]
            * (wy[:, :, None, None] * wx[None, None, :, :] * valid)
            for ya, wy in ((yl, wyl), (yh, wyh)) for xa, wx in ((xl, wxl), (xh, wxh))
        ]  # [C, out_h, gh, out_w, gw] each
        if attrs["mode"] == "avg":
            out[r] = sum(terms).sum(axis=(2, 4)) / max(gh * gw, 1)
        else:  # onnx's max mode: the largest weighted tap of any sample
            out[r] = np.max(np.maximum.reduce(terms), axis=(2, 4))
    return [out.astype(xs[0].dtype)]
