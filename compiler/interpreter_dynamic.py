"""Interpreter, part 6: the ops whose shape-deciding operands are runtime data
(``compiler.ir.ops_dynamic``). Each reads those operands' values, checks them as ONNX
does (a bad value is an ``InputError`` naming the node), and computes the result: this is
where the symbolic dimensions of their types get their sizes.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.errors import InputError
from compiler.interpreter import Context, impl
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
    x, sizes = xs[0], _ints(node, xs[1], "the split sizes")
    axis = node.attrs["axis"] % max(x.ndim, 1)
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
