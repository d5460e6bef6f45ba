"""Tensor expressions of the group A lowerings (``backends.tvm.lower_ops_a``) that no
Relax/TOPI op has: each mirrors the interpreter's NumPy code, in float64 as it computes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The largest matrix whose determinant is expanded term by term (n! products).
DET_MAX = 4


def pool_window(x: Any, kind: str, kernel: Sequence[int], strides: Sequence[int],
             pads: Sequence[int], dils: Sequence[int], shape: Sequence[int], p: float,
             ) -> Any:  # fmt: skip
    """``nn.pool_nd`` before the average's division: the window max, sum or sum of
    ``|x|^p`` in float64 over the taps inside the input (padding takes no part)."""
    from tvm import te, tirx

    n = len(kernel)
    sizes = [int(d) for d in x.shape[2:]]
    red = [te.reduce_axis((0, k), f"k{d}") for d, k in enumerate(kernel)]

    def body(*i: Any) -> Any:
        pos = [i[2 + d] * strides[d] - pads[d] + red[d] * dils[d] for d in range(n)]
        inside = tirx.all(*(tirx.all(q >= 0, q < s) for q, s in zip(pos, sizes, strict=True)))
        safe = [tirx.max(tirx.min(q, s - 1), 0) for q, s in zip(pos, sizes, strict=True)]
        v = x(i[0], i[1], *safe).astype("float64")
        if kind == "max":
            return te.max(tirx.Select(inside, v, tirx.const(-np.inf, "float64")), axis=red)
        if kind == "lp":
            v = power(tirx.abs(v), p)
        return te.sum(tirx.Select(inside, v, tirx.const(0.0, "float64")), axis=red)

    return te.compute(tuple(shape), body, name=f"{kind}_pool_nd")


def power(v: Any, p: float) -> Any:
    """``v ** p`` for ``v >= 0``: repeated products for a small whole ``p`` (exact where
    the interpreter's is), LLVM's pow otherwise."""
    from tvm import tirx

    if float(p).is_integer() and 1 <= p <= 8:
        out = v
        for _ in range(int(p) - 1):
            out = out * v
        return out
    return tirx.power(v, tirx.const(p, "float64"))


def deform_columns(x: Any, off: Any, mask: Any, kernel: Sequence[int], strides: Sequence[int],
                 pads: Sequence[int], dils: Sequence[int], og: int, out: Sequence[int],
                 ) -> Any:  # fmt: skip
    """[N, C, KH, KW, OH, OW]: each input channel bilinearly sampled (zeros outside) at
    its tap's offset position, times the tap's mask, in float64 (the interpreter's cols)."""
    from tvm import te, tirx

    n, c, height, width = (int(d) for d in x.shape)
    kh, kw = kernel
    per_group = c // og
    f64 = "float64"

    def body(b: Any, ch: Any, i: Any, j: Any, oy: Any, ox: Any) -> Any:
        g = tirx.floordiv(ch, per_group)
        tap = (g * kh + i) * kw + j
        h = (oy * strides[0] - pads[0] + i * dils[0]).astype(f64) + off[b, tap * 2, oy, ox
                                                                        ].astype(f64)
        w = (ox * strides[1] - pads[1] + j * dils[1]).astype(f64) + off[b, tap * 2 + 1, oy, ox
                                                                        ].astype(f64)
        h0, w0 = tirx.floor(h), tirx.floor(w)
        total = tirx.const(0.0, f64)
        for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
            hi, wi = h0 + float(dh), w0 + float(dw)
            weight = (1.0 - tirx.abs(h - hi)) * (1.0 - tirx.abs(w - wi))
            inside = tirx.all(hi >= 0.0, hi < float(height), wi >= 0.0, wi < float(width))
            hc = tirx.max(tirx.min(hi, float(height - 1)), 0.0).astype("int64")
            wc = tirx.max(tirx.min(wi, float(width - 1)), 0.0).astype("int64")
            value = x[b, ch, hc, wc].astype(f64) * weight
            total = total + tirx.Select(inside, value, tirx.const(0.0, f64))
        return total * mask[b, tap, oy, ox].astype(f64)

    return te.compute((n, c, kh, kw, *out), body, name="deform_cols")


def deform_product(cols: Any, weight: Any, shape: Sequence[int], per_group: int) -> Any:
    """The grouped product of ``deform_columns`` with the weight [OC, C/group, KH, KW]:
    output channel ``o`` reads the input channels of its group (``per_group`` outputs
    each), as the interpreter's einsum per group."""
    from tvm import te

    _, icg, kh, kw = (int(d) for d in weight.shape)
    rc, ri, rj = (te.reduce_axis((0, e), name) for e, name in ((icg, "rc"), (kh, "ri"),
                                                                (kw, "rj")))  # fmt: skip
    return te.compute(tuple(shape), lambda n, o, y, z: te.sum(
        cols[n, (o // per_group) * icg + rc, ri, rj, y, z]
        * weight[o, rc, ri, rj].astype("float64"), axis=[rc, ri, rj]), name="deform_conv")


def det_leibniz(x: Any, n: int) -> Any:
    """Leibniz's sum over permutations in float64, for each matrix of the batch."""
    from tvm import te, tirx

    batch = tuple(x.shape[:-2])

    def body(*i: Any) -> Any:
        total = tirx.const(0.0, "float64")
        for perm in itertools.permutations(range(n)):
            term = tirx.const(float(parity(perm)), "float64")
            for r, c in enumerate(perm):
                term = term * x(*i, r, c).astype("float64")
            total = total + term
        return total

    return te.compute(batch, body, name="det")


def parity(perm: Sequence[int]) -> int:
    inversions = sum(1 for i, j in itertools.combinations(range(len(perm)), 2)
                     if perm[i] > perm[j])  # fmt: skip
    return -1 if inversions % 2 else 1


def _roi_axis(start: Any, size: Any, bin_index: Any, bins: int, grid: Any, sample: Any,
              limit: int) -> tuple[Any, Any, Any, Any, Any]:  # fmt: skip
    """One axis of a RoiAlign sample: low and high taps, their weights, and whether the
    sample lies within a pixel of the map (``_roi_axis`` in the interpreter)."""
    from tvm import tirx

    f64 = "float64"
    step = size / float(bins)
    pos = start + bin_index.astype(f64) * step + (sample.astype(f64) + 0.5) * (
        step / grid.astype(f64))  # fmt: skip
    valid = tirx.all(pos >= -1.0, pos <= float(limit))
    pos = tirx.max(pos, 0.0)
    low = tirx.floor(pos).astype("int64")
    edge = low >= limit - 1
    low = tirx.Select(edge, tirx.const(limit - 1, "int64"), low)
    high = tirx.Select(edge, low, low + 1)
    pos = tirx.Select(edge, low.astype(f64), pos)
    frac = pos - low.astype(f64)
    return low, high, 1.0 - frac, frac, valid


def roi_align_max(x: Any, rois: Any, index: Any, out_h: int, out_w: int, ratio: int,
                  scale: float, half_pixel: bool) -> Any:  # fmt: skip
    """ONNX RoiAlign's max mode, as the interpreter: per bin, the largest of the four
    weighted taps of every sample (not of the interpolated samples, as TOPI's)."""
    from tvm import te, tirx

    f64 = "float64"
    height, width = int(x.shape[2]), int(x.shape[3])
    shift = 0.5 if half_pixel else 0.0

    def body(r: Any, c: Any, ph: Any, pw: Any) -> Any:
        x1, y1, x2, y2 = (rois[r, k].astype(f64) * scale - shift for k in range(4))
        rw, rh = x2 - x1, y2 - y1
        if not half_pixel:  # the legacy mode forces regions of at least one pixel
            rw, rh = tirx.max(rw, 1.0), tirx.max(rh, 1.0)
        grid_h = tirx.const(ratio, "int32") if ratio else tirx.ceil(rh / float(out_h)).astype(
            "int32")  # fmt: skip
        grid_w = tirx.const(ratio, "int32") if ratio else tirx.ceil(rw / float(out_w)).astype(
            "int32")  # fmt: skip
        iy, ix = te.reduce_axis((0, grid_h), "iy"), te.reduce_axis((0, grid_w), "ix")
        yl, yh, wyl, wyh, vy = _roi_axis(y1, rh, ph, out_h, grid_h, iy, height)
        xl, xh, wxl, wxh, vx = _roi_axis(x1, rw, pw, out_w, grid_w, ix, width)
        b = index[r].astype("int64")
        valid = tirx.all(vy, vx)
        taps = [
            x[b, c, ya, xa].astype(f64)
            * tirx.Select(valid, wy * wx, tirx.const(0.0, f64))
            for ya, wy in ((yl, wyl), (yh, wyh)) for xa, wx in ((xl, wxl), (xh, wxh))
        ]  # fmt: skip
        best = tirx.max(tirx.max(taps[0], taps[1]), tirx.max(taps[2], taps[3]))
        return te.max(best, axis=[iy, ix])

    shape = (int(rois.shape[0]), int(x.shape[1]), out_h, out_w)
    return te.compute(shape, body, name="roi_align_max")
