"""Interpreter, part 6: the ops whose shape-deciding operands are runtime data
(``compiler.ir.ops_dynamic``). Each reads those operands' values, checks them as ONNX
does (a bad value is an ``InputError`` naming the node), and computes the result: this is
where the symbolic dimensions of their types get their sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from compiler.errors import InputError
from compiler.interpreter_context import Context, impl
from compiler.ir.graph import Node


def _ints(node: Node, array: np.ndarray, what: str) -> list[int]:
    values = np.asarray(array).reshape(-1)
    if values.dtype.kind not in "iu":
        raise InputError(f"{node.where()}: {what} must be integers, got {values.dtype}")
    return [int(v) for v in values]


def _axes(node: Node, array: np.ndarray, rank: int, what: str = "axes") -> list[int]:
    axes = _ints(node, array, what)
    if any(not -rank <= a < max(rank, 1) for a in axes) or len(set(a % max(rank, 1)
                                                                   for a in axes)) != len(axes):
        raise InputError(f"{node.where()}: {what} {axes} out of range or repeated for rank {rank}")
    return [a % max(rank, 1) for a in axes]


@impl("tensor.reshape_dyn")
def _reshape(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, target = xs[0], _ints(node, xs[1], "the reshape shape")
    if not node.attrs.get("allowzero", False):
        target = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(target)]
    if sum(d == -1 for d in target) > 1 or any(d < -1 for d in target):
        raise InputError(f"{node.where()}: invalid reshape target {target}")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or x.size % known:
            raise InputError(f"{node.where()}: cannot reshape {list(x.shape)} to {target}")
        target = [x.size // known if d == -1 else d for d in target]
    if math.prod(target) != x.size:
        raise InputError(f"{node.where()}: cannot reshape {list(x.shape)} to {target}")
    return [x.reshape(target)]


@impl("tensor.expand_dyn")
def _expand(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, shape = xs[0], _ints(node, xs[1], "the expand shape")
    try:
        out = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        raise InputError(f"{node.where()}: {list(x.shape)} does not expand to {shape}") from None
    return [np.broadcast_to(x, out).copy()]


def _slice_bounds(start: int, end: int, step: int, size: int) -> range:
    """ONNX Slice's clamping of one axis' bounds, as the indices it selects."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
    else:
        start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    return range(start, end, step)


@impl("tensor.slice_dyn")
def _slice(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    starts, ends = _ints(node, xs[1], "starts"), _ints(node, xs[2], "ends")
    axes = _axes(node, xs[3], x.ndim) if len(xs) > 3 else list(range(len(starts)))
    steps = _ints(node, xs[4], "steps") if len(xs) > 4 else [1] * len(starts)
    if 0 in steps:
        raise InputError(f"{node.where()}: slice step 0")
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        picked = np.asarray(_slice_bounds(start, end, step, x.shape[axis]), dtype=np.int64)
        x = np.take(x, picked, axis=axis)
    return [x]


@impl("tensor.split_dyn")
def _split(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, count = xs[0], node.attrs.get("count", 1)
    axis = node.attrs.get("axis", 0) % max(x.ndim, 1)
    if len(xs) > 1:
        sizes = _ints(node, xs[1], "the split sizes")
    else:
        chunk = -(-x.shape[axis] // count)
        sizes = [min(chunk, max(x.shape[axis] - chunk * k, 0)) for k in range(count)]
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        raise InputError(f"{node.where()}: split sizes {sizes} do not add up to "
                         f"dimension {axis} ({x.shape[axis]})")
    return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@impl("tensor.squeeze_dyn")
def _squeeze(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    axes = _axes(node, xs[1], x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise InputError(f"{node.where()}: cannot squeeze axes {axes} of {list(x.shape)}")
    return [np.squeeze(x, axis=tuple(axes))]


@impl("tensor.unsqueeze_dyn")
def _unsqueeze(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    rank = x.ndim + np.asarray(xs[1]).size
    return [np.expand_dims(x, tuple(_axes(node, xs[1], rank)))]


@impl("tensor.tile_dyn")
def _tile(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    repeats = _ints(node, xs[1], "the repeats")
    if any(r < 0 for r in repeats):
        raise InputError(f"{node.where()}: negative repeats {repeats}")
    return [np.tile(xs[0], repeats)]


@impl("tensor.pad_dyn")
def _pad(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Negative pads crop first; then the positive ones pad by ``mode``."""
    x, mode = xs[0], node.attrs.get("mode", "constant")
    pads = _ints(node, xs[1], "the pads")
    rank = x.ndim
    axes = _axes(node, xs[3], rank) if len(xs) > 3 else list(range(rank))
    if len(pads) != 2 * len(axes):
        raise InputError(f"{node.where()}: {len(pads)} pads for {len(axes)} axes")
    width = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        width[axis] = (pads[i], pads[len(axes) + i])
    crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(width))
    x = x[crop]
    grow = [(max(b, 0), max(e, 0)) for b, e in width]
    if rank == 0 or not any(b or e for b, e in grow):
        return [x]
    if mode == "constant":
        fill = np.asarray(xs[2]).reshape(-1)[0] if len(xs) > 2 and np.size(xs[2]) else 0
        return [np.pad(x, grow, mode="constant", constant_values=np.asarray(fill, x.dtype))]
    if 0 in x.shape and any(b or e for b, e in grow):
        raise InputError(f"{node.where()}: {mode} padding of an empty tensor")
    return [np.pad(x, grow, mode=mode)]


@impl("tensor.range_dyn")
def _range(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    """ONNX's ``max(ceil((limit - start) / delta), 0)`` values from ``start`` by ``delta``,
    computed as NumPy's arange in the operands' dtype (as onnx.reference does)."""
    start, limit, delta = (np.asarray(v).reshape(()).item() for v in xs)
    if delta == 0:
        raise InputError(f"{node.where()}: range delta is 0")
    return [np.arange(start, limit, delta).astype(xs[0].dtype)]


@impl("tensor.constant_of_shape")
def _constant_of_shape(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    shape = _ints(node, xs[0], "the shape")
    if any(d < 0 for d in shape):
        raise InputError(f"{node.where()}: negative dimension in shape {shape}")
    return [np.full(shape, node.attrs.get("value", 0.0))]


# ---- resize with runtime scales or sizes ------------------------------------------------------
#: ONNX Resize's coordinate transformations: (output index, in size, out size, scale) ->
#: input coordinate. The out size is ``scale * in`` unrounded, as ONNX's reference has it
#: (tf_crop_and_resize is ``_crop_coordinates``: it needs the roi).
_TRANSFORMS: dict[str, Callable[[np.ndarray, int, float, float], np.ndarray]] = {
    "half_pixel": lambda i, n, m, s: (i + 0.5) / s - 0.5,
    "pytorch_half_pixel": lambda i, n, m, s: (i + 0.5) / s - 0.5 if m != 1 else 0 * i - 0.5,
    "asymmetric": lambda i, n, m, s: i / s,
    "tf_half_pixel_for_nn": lambda i, n, m, s: (i + 0.5) / s,
    "align_corners": lambda i, n, m, s: i * (n - 1) / (m - 1) if m != 1 else 0 * i,
    "half_pixel_symmetric": lambda i, n, m, s: (
        n / 2 * (1 - i.size / m) + (i + 0.5) / s - 0.5
    ),
}

#: Nearest mode -> how a coordinate rounds to an input index.
_NEAREST: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _crop_coordinates(i: np.ndarray, n: int, m: float, start: float, end: float) -> np.ndarray:
    if m != 1:
        return start * (n - 1) + i * (end - start) * (n - 1) / (m - 1)
    return 0.5 * (start + end) * (n - 1) + 0 * i


def _resize_plan(node: Node, x: np.ndarray, params: np.ndarray) -> tuple[list[int], list[float]]:
    """Output sizes and per-dimension scales from the runtime scales or sizes."""
    attrs = node.attrs
    axes = list(range(x.ndim)) if attrs.get("axes") is None else [
        a % x.ndim for a in attrs["axes"]]  # fmt: skip
    values = np.asarray(params, np.float64).reshape(-1)
    sizes, scales = list(x.shape), [1.0] * x.ndim
    if values.size != len(axes):
        raise InputError(f"{node.where()}: {values.size} resize parameters for {len(axes)} axes")
    if attrs.get("given", "scales") == "scales":
        for a, s in zip(axes, values, strict=True):
            if not s > 0:
                raise InputError(f"{node.where()}: resize scale {s} is not positive")
            scales[a], sizes[a] = float(s), int(math.floor(x.shape[a] * s))
        return sizes, scales
    policy = attrs.get("policy", "stretch")
    ratios = [v / x.shape[a] for a, v in zip(axes, values, strict=True)]
    if policy != "stretch":  # one scale for every axis, the smaller or the larger
        common = min(ratios) if policy == "not_larger" else max(ratios)
        ratios = [common] * len(axes)
    for a, v, r in zip(axes, values, ratios, strict=True):
        scales[a] = r
        sizes[a] = int(v) if policy == "stretch" else int(math.floor(x.shape[a] * r + 0.5))
    return sizes, scales


@impl("nn.resize_dyn")
def _resize(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Separable: each dimension resized in turn (nearest: pick; linear: two taps whose
    indices clamp to the edge), in float64; tf_crop_and_resize fills coordinates outside
    the input with ``extrapolation_value``."""
    x = xs[0]
    attrs = node.attrs
    mode = attrs.get("mode", "nearest")
    y = x.astype(np.float64)
    roi = xs[2] if len(xs) > 2 else None
    for axis, n, coord, outside in _resize_axes(node, x.shape, xs[1], roi):
        y = _resample(y, axis, coord, n, mode, attrs)
        if outside is not None:
            fill = outside.reshape(_along(axis, y.ndim, coord.size))
            y = np.where(fill, float(attrs.get("extrapolation_value", 0.0)), y)
    return [y.astype(x.dtype)]


def _resize_axes(
    node: Node, shape: Sequence[int], params: np.ndarray, roi: np.ndarray | None
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """Per resized axis in order: (axis, input length, the float64 input coordinate of each
    output position, the mask of coordinates outside the input that tf_crop_and_resize fills
    or None). The one place both ``_resize`` and ``resize_steps`` take them from."""
    x = np.empty(tuple(shape), np.float64)
    sizes, scales = _resize_plan(node, x, params)
    box = None if roi is None else np.asarray(roi, np.float64).reshape(-1)
    transform = node.attrs.get("transform", "half_pixel")
    crop = transform == "tf_crop_and_resize"
    for axis, (n, m, s) in enumerate(zip(x.shape, sizes, scales, strict=True)):
        if n == m and s == 1.0 and not crop:
            continue
        i = np.arange(m, dtype=np.float64)
        if crop:
            coord = _crop_coordinates(i, n, s * n, *_roi(node, box, axis, x.ndim))
        else:
            coord = _TRANSFORMS[transform](i, n, s * n, s)
        yield axis, n, coord, ((coord < 0) | (coord > n - 1)) if crop else None


def _roi(node: Node, roi: np.ndarray | None, axis: int, rank: int) -> tuple[float, float]:
    """The crop box [start, end] of ``axis`` (normalized): roi holds the starts, then the
    ends, of the resized axes (every axis unless ``axes`` names some)."""
    axes = node.attrs.get("axes")
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if roi is None or roi.size != 2 * len(axes):
        raise InputError(f"{node.where()}: tf_crop_and_resize needs a roi of {2 * len(axes)}")
    if axis not in axes:
        return 0.0, 1.0
    k = axes.index(axis)
    return float(roi[k]), float(roi[len(axes) + k])


def _along(axis: int, rank: int, size: int) -> list[int]:
    shape = [1] * rank
    shape[axis] = size
    return shape


def _cubic_weights(ratio: np.ndarray, a: float) -> list[np.ndarray]:
    """Keys' cubic convolution weights of the taps at ``base - 1 .. base + 2`` for a point
    ``ratio`` (in (0, 1]) past ``base`` (ONNX's coefficients, ``a`` = cubic_coeff_a)."""
    near = [ratio, 1 - ratio]  # distances to base and base + 1
    far = [ratio + 1, 2 - ratio]  # to base - 1 and base + 2
    inner = [((a + 2) * d - (a + 3)) * d * d + 1 for d in near]
    outer = [((a * d - 5 * a) * d + 8 * a) * d - 4 * a for d in far]
    return [outer[0], inner[0], inner[1], outer[1]]


def _resample(y: np.ndarray, axis: int, coord: np.ndarray, n: int, mode: str,
              attrs: dict) -> np.ndarray:  # fmt: skip
    if mode == "nearest":
        rounding = _NEAREST[attrs.get("nearest_mode", "round_prefer_floor")]
        index = np.clip(rounding(coord), 0, n - 1).astype(np.int64)
        return np.take(y, index, axis=axis)
    if mode == "cubic":
        base = np.ceil(coord) - 1  # the tap left of the point, even at an integer point
        taps = [base + k for k in (-1, 0, 1, 2)]
        weights = _cubic_weights(coord - base, float(attrs.get("cubic_coeff_a", -0.75)))
        if attrs.get("exclude_outside", False):
            weights = [np.where((t < 0) | (t > n - 1), 0.0, w) for t, w in zip(taps, weights,
                                                                             strict=True)]
            total = sum(weights)
            weights = [w / total for w in weights]
        shape = _along(axis, y.ndim, coord.size)
        return sum(
            w.reshape(shape) * np.take(y, np.clip(t, 0, n - 1).astype(np.int64), axis=axis)
            for t, w in zip(taps, weights, strict=True)
        )
    low = np.floor(coord)
    weight = (coord - low).reshape(_along(axis, y.ndim, coord.size))
    low_i = np.clip(low, 0, n - 1).astype(np.int64)
    high_i = np.clip(low + 1, 0, n - 1).astype(np.int64)
    return np.take(y, low_i, axis=axis) * (1 - weight) + np.take(y, high_i, axis=axis) * weight


@impl("tensor.one_hot")
def _one_hot(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    indices, values = xs[0], xs[2]
    depth = int(np.asarray(xs[1]).reshape(-1)[0])  # float depths truncate, as ONNX's do
    if depth < 1:
        raise InputError(f"{node.where()}: one_hot depth {depth} is not positive")
    index = np.asarray(indices).astype(np.int64)
    index = np.where(index < 0, index + depth, index)
    axis = node.attrs.get("axis", -1) % (index.ndim + 1)
    positions = np.arange(depth).reshape(_along(axis, index.ndim + 1, depth))
    hot = np.expand_dims(index, axis) == positions
    return [np.where(hot, values[1], values[0]).astype(values.dtype)]


def resize_steps(
    node: Node, shape: Sequence[int], params: np.ndarray, roi: np.ndarray | None
) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """``nn.resize_dyn`` as the separable steps ``_resize`` takes, for known operands: per
    resized axis in order, (axis, the [out, in] float64 weights of ``_resample``, the
    [out] mask of coordinates outside the input that tf_crop_and_resize fills, or None).
    ``passes.specialize_shapes`` builds static ops from them: the same numbers as here."""
    mode = node.attrs.get("mode", "nearest")
    steps: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    for axis, n, coord, outside in _resize_axes(node, shape, params, roi):
        weights = _resample(np.eye(n), 0, coord, n, mode, node.attrs)
        steps.append((axis, np.asarray(weights, np.float64), outside))
    return steps
