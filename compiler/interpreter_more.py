"""Interpreter, part 5: NumPy implementations of the ops in ``compiler.ir.ops_more``.

Float results compute in the operand's dtype except where noted (RMS normalization and the
loss accumulate in float32 as ONNX's ``stash_type`` says); integer results are exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpreter_context import IMPLS, Context, array_impl, impl, scan_axis
from compiler.ir.graph import Node
from compiler.ir.ops import OPS


def _axes_of(x: np.ndarray, attrs: dict, runtime: np.ndarray | None) -> tuple[int, ...] | None:
    """The axes to reduce (None: all; (): none)."""
    axes = attrs["axes"] if runtime is None else [int(a) for a in runtime.reshape(-1)]
    if not axes:
        return () if attrs["noop_with_empty_axes"] else None
    return tuple(int(a) % max(x.ndim, 1) for a in axes)


def _extreme(x: np.ndarray, fn: Callable[..., np.ndarray], sign: int) -> Callable[..., np.ndarray]:
    """max/min with an identity, so that an empty reduction gives -inf/+inf (or the integer
    bound) as ONNX defines, instead of NumPy's error."""
    if x.dtype.kind == "f":
        start = -np.inf * sign
    elif x.dtype.kind == "b":
        start = sign < 0
    else:
        info = np.iinfo(x.dtype)
        start = info.min if sign > 0 else info.max
    return lambda v, axis, keepdims: fn(v, axis=axis, keepdims=keepdims, initial=start)


_KINDS: dict[str, Callable[[np.ndarray, tuple[int, ...] | None, bool], np.ndarray]] = {
    "sum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "mean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "max": lambda x, a, k: _extreme(x, np.max, 1)(x, a, k),
    "min": lambda x, a, k: _extreme(x, np.min, -1)(x, a, k),
    "prod": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "l1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "l2": lambda x, a, k: np.sqrt(np.sum(np.square(x), axis=a, keepdims=k)),
    "sum_square": lambda x, a, k: np.sum(np.square(x), axis=a, keepdims=k),
    "log_sum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "log_sum_exp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
}


@impl("math.reduce")
def _reduce(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = OPS[node.op].with_defaults(node.attrs)
    x = xs[0]
    axes = _axes_of(x, attrs, xs[1] if len(xs) > 1 else None)
    if axes == ():
        return [x.copy()]
    return [np.asarray(_KINDS[attrs["kind"]](x, axes, bool(attrs["keepdims"]))).astype(x.dtype)]


def _positive(indices: np.ndarray, size: int) -> np.ndarray:
    return np.where(indices < 0, indices + size, indices).astype(np.int64)


@impl("tensor.gather_elements")
def _gather_elements(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, idx = xs
    axis = int(node.attrs.get("axis", 0)) % x.ndim
    # torch.gather allows an index shorter than x on the other dims: take that corner of x.
    corner = tuple(slice(None) if k == axis else slice(0, d) for k, d in enumerate(idx.shape))
    return [np.take_along_axis(x[corner], _positive(idx, x.shape[axis]), axis=axis)]


_COMBINE: dict[str, np.ufunc] = {
    "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum,
}  # fmt: skip


def _scatter(out: np.ndarray, where: tuple[np.ndarray, ...], upd: np.ndarray, how: str) -> None:
    if how == "none":
        out[where] = upd
    else:
        _COMBINE[how].at(out, where, upd)


@impl("tensor.scatter_elements")
def _scatter_elements(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, idx, upd = xs
    attrs = OPS[node.op].with_defaults(node.attrs)
    axis = int(attrs["axis"]) % x.ndim
    grid: list[np.ndarray] = list(np.indices(idx.shape, sparse=False))
    grid[axis] = _positive(idx, x.shape[axis])
    out = x.copy()
    _scatter(out, tuple(grid), upd, attrs["reduction"])
    return [out]


@impl("tensor.scatter_nd")
def _scatter_nd(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, idx, upd = xs
    how = OPS[node.op].with_defaults(node.attrs)["reduction"]
    k = idx.shape[-1]
    flat_idx = idx.reshape(-1, k)
    flat_upd = upd.reshape(flat_idx.shape[0], *x.shape[k:])
    out = x.copy()
    for where, value in zip(flat_idx, flat_upd, strict=True):  # in order: later updates win
        at = tuple(int(i) for i in where)
        out[at] = value if how == "none" else _COMBINE[how](out[at], value)
    return [out]


@impl("math.cumsum")
def _cumsum(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, axis_arr = xs
    attrs = OPS[node.op].with_defaults(node.attrs)
    axis = scan_axis(node, x, axis_arr)
    y = np.flip(x, axis) if attrs["reverse"] else x
    total = np.cumsum(y, axis=axis, dtype=x.dtype)
    if attrs["exclusive"]:
        total = total - y  # the running sum before each element
    return [np.flip(total, axis) if attrs["reverse"] else total]


@impl("tensor.trilu")
def _trilu(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    k = int(xs[1].reshape(-1)[0]) if len(xs) > 1 else 0
    upper = OPS[node.op].with_defaults(node.attrs)["upper"]
    return [np.triu(x, k) if upper else np.tril(x, k)]


def _topk_key(x: np.ndarray, largest: bool) -> np.ndarray:
    """A key that sorts ascending in the order top-k wants."""
    if x.dtype.kind == "f":
        key = x.astype(np.float64)
        return -key if largest else key
    flip = np.uint64(1 << 63)
    ints = (x ^ flip).view(np.int64) if x.dtype == np.uint64 else x.astype(np.int64)
    return np.invert(ints) if largest else ints


@impl("math.topk")
def _topk(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, k_arr = xs
    attrs = OPS[node.op].with_defaults(node.attrs)
    axis = int(attrs["axis"]) % x.ndim
    k = int(k_arr.reshape(-1)[0])
    # A stable sort keeps equal values in index order; for the largest, sort a key in the
    # opposite order: the negation of floats (in float64), the bitwise not of integers
    # (never overflows, unlike -INT64_MIN) as int64, u64 with its top bit flipped.
    order = np.argsort(_topk_key(x, bool(attrs["largest"])), axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64)]


IMPLS["math.einsum"] = lambda ctx, node, xs: [
    np.asarray(np.einsum(node.attrs["equation"], *xs)).astype(xs[0].dtype)
]


@impl("nn.rms_norm")
def _rms_norm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, scale = xs
    attrs = OPS[node.op].with_defaults(node.attrs)
    axes = tuple(range(int(attrs["axis"]) % x.ndim, x.ndim))
    x32 = x.astype(np.float32)
    mean_square = np.mean(np.square(x32), axis=axes, keepdims=True)
    y = x32 / np.sqrt(mean_square + np.float32(attrs["eps"]))
    return [(y.astype(x.dtype) * scale).astype(x.dtype)]


@impl("math.bitshift")
def _bitshift(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a, b = xs
    shift = np.left_shift if node.attrs["direction"] == "left" else np.right_shift
    return [shift(a, b.astype(a.dtype)).astype(a.dtype)]


IMPLS["math.floor_mod"] = array_impl(lambda a, b: np.asarray(np.mod(a, b)).astype(a.dtype))


@impl("nn.nll_loss")
def _nll_loss(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, target = xs[0], xs[1].astype(np.int64)
    attrs = OPS[node.op].with_defaults(node.attrs)
    classes = x.shape[1]
    weight = xs[2] if len(xs) > 2 else np.ones(classes, x.dtype)
    ignored = (
        target == attrs["ignore_index"]
        if attrs["ignore_index"] is not None
        else np.zeros(target.shape, bool)
    )
    safe = np.where(ignored, 0, target)
    picked = np.take_along_axis(x, np.expand_dims(safe, 1), axis=1).squeeze(1)
    w = np.where(ignored, 0, weight[safe]).astype(np.float32)
    loss = -picked.astype(np.float32) * w
    if attrs["reduction"] == "none":
        return [loss.astype(x.dtype)]
    total = loss.sum()
    if attrs["reduction"] == "mean":
        total = total / w.sum()
    return [np.asarray(total).astype(x.dtype)]


_UNARY_MORE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "math.ceil": np.ceil, "math.floor": np.floor, "math.round": np.round,  # half to even
    "math.sign": np.sign, "math.tan": np.tan, "math.asin": np.arcsin, "math.acos": np.arccos,
    "math.atan": np.arctan, "math.sinh": np.sinh, "math.cosh": np.cosh,
    "math.asinh": np.arcsinh, "math.acosh": np.arccosh, "math.atanh": np.arctanh,
    "math.bitwise_not": np.invert,
}  # fmt: skip
for _name, _fn in _UNARY_MORE.items():
    IMPLS[_name] = array_impl(lambda x, _f=_fn: np.asarray(_f(x)).astype(x.dtype))
for _name, _fn2 in {"math.bitwise_and": np.bitwise_and, "math.bitwise_or": np.bitwise_or,
                    "math.bitwise_xor": np.bitwise_xor}.items():  # fmt: skip
    IMPLS[_name] = array_impl(lambda a, b, _f=_fn2: np.asarray(_f(a, b)).astype(a.dtype))


def resize_source(
    out_idx: np.ndarray, size_in: int, size_out: int, scale: float, mode: str
) -> np.ndarray:
    """ONNX Resize's coordinate transformation: output index -> input coordinate."""
    if mode == "align_corners":
        return out_idx * (size_in - 1) / (size_out - 1) if size_out > 1 else 0 * out_idx
    if mode == "asymmetric":
        return out_idx / scale
    if mode == "pytorch_half_pixel" and size_out <= 1:
        return 0 * out_idx
    return (out_idx + 0.5) / scale - 0.5


@impl("nn.resize_linear")
def _resize_linear(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    y = xs[0].astype(np.float64)
    attrs = OPS[node.op].with_defaults(node.attrs)
    for axis, (size_out, scale) in enumerate(zip(attrs["sizes"], attrs["scales"], strict=True)):
        size_in = y.shape[axis]
        if size_out == size_in and scale == 1:
            continue
        coord = resize_source(np.arange(size_out, dtype=np.float64), size_in, size_out, scale,
                        attrs["mode"])  # fmt: skip
        coord = np.clip(coord, 0, size_in - 1)
        low = np.floor(coord).astype(np.int64)
        high = np.minimum(low + 1, size_in - 1)
        shape = [1] * y.ndim
        shape[axis] = size_out
        w = (coord - low).reshape(shape)
        y = np.take(y, low, axis=axis) * (1 - w) + np.take(y, high, axis=axis) * w
    return [y.astype(xs[0].dtype)]
