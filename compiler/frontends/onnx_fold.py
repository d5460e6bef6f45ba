"""NumPy folders: ONNX nodes whose inputs are all known are computed at import.

These cover the shape arithmetic exporters emit (``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``, ``Range``, ``ConstantOfShape``, ``Where`` on shapes). They also accept *symbolic*
data (object arrays holding dimension names such as ``batch``), so a reshape target
``[batch, -1]`` still folds; arithmetic on names stays exact where it can (``batch * 1``,
``batch + 0``) and is rejected with a hint to specialize the dimension otherwise. Ops without
a folder here are evaluated by ``onnx.reference`` (``onnx_importer``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.frontends.onnx_importer import Known, OnnxNode, Reject, is_symbolic, normalize_known
from compiler.frontends.onnx_ops_tensor import axes_operand, checked_axis, slice_params
from compiler.frontends.onnx_table import folds


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):  # truncation toward zero, as ONNX and C
        q = np.abs(a) // np.where(b == 0, 1, np.abs(b))
        return np.where((a < 0) ^ (b < 0), -q, q).astype(a.dtype)
    return (a / b).astype(a.dtype)


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _int_div,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
}


def _symbolic(op: str, a: Any, b: Any) -> Any:
    """One element of arithmetic where a dimension may be a name."""
    if not isinstance(a, str) and not isinstance(b, str):
        py = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul}
        if op in py:
            return py[op](int(a), int(b))
        if op == "Div":
            return int(_int_div(np.asarray(a, np.int64), np.asarray(b, np.int64)))
        return bool(_COMPARE[op](a, b))
    if op in _COMPARE and any(not isinstance(v, str) and v < 0 for v in (a, b)):
        # A dimension is never negative, so any size compares with a negative number alike.
        return bool(_COMPARE[op](*(0 if isinstance(v, str) else v for v in (a, b))))
    identities = {("Add", 0), ("Sub", 0), ("Mul", 1), ("Div", 1)}
    if (op, b) in identities:
        return a
    if op in ("Add", "Mul") and (op, a) in identities:
        return b
    if op in ("Add", "Mul"):
        return f"{a}{'+' if op == 'Add' else '*'}{b}"
    if op == "Equal" and isinstance(a, str) and isinstance(b, str) and a == b:
        return True
    raise Reject(
        f"{op} of {a!r} and {b!r}: arithmetic on a symbolic dimension; specialize it with "
        "import_onnx(input_shapes=...)"
    )


@folds(*_ARITH, *_COMPARE)
def _fold_binary(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    a, b = xs[0], xs[1]
    assert a is not None and b is not None
    if is_symbolic(a) or is_symbolic(b):
        out = np.asarray(np.frompyfunc(lambda p, q: _symbolic(n.op_type, p, q), 2, 1)(a, b))
        return [out.astype(bool) if n.op_type in _COMPARE else normalize_known(out)]
    if n.op_type in _COMPARE:
        return [np.asarray(_COMPARE[n.op_type](a, b))]
    return [np.asarray(_ARITH[n.op_type](a, b)).astype(a.dtype)]


@folds("Constant")
def _fold_constant(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    table: dict[str, Any] = {"value": None, "value_float": np.float32, "value_floats": np.float32}
    table.update({"value_int": np.int64, "value_ints": np.int64})
    for key, dtype in table.items():
        if (v := n.attr(key)) is not None:
            return [np.asarray(v, dtype=dtype)]
    raise Reject("a Constant that is not a dense numeric tensor (sparse or string)")


@folds("Identity")
def _fold_identity(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    assert xs[0] is not None
    return [xs[0]]


@folds("Shape")
def _fold_shape(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    assert xs[0] is not None
    start, end = int(n.attr("start", 0)), n.attr("end")
    shape = np.asarray(xs[0].shape, dtype=np.int64)
    return [shape[start:] if end is None else shape[start : int(end)]]


@folds("Cast")
def _fold_cast(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    import onnx

    x = xs[0]
    assert x is not None
    if is_symbolic(x):
        return [x] if n.attr("to") in (6, 7) else None  # shape values stay shape values
    return [x.astype(onnx.helper.tensor_dtype_to_np_dtype(n.attr("to")))]


@folds("Gather")
def _fold_gather(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    data, indices = xs[0], xs[1]
    assert data is not None and indices is not None
    axis = checked_axis(int(n.attr("axis", 0)), data.ndim)
    return [np.take(data, indices.astype(np.int64), axis=axis)]


@folds("Concat")
def _fold_concat(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    arrays = [x for x in xs if x is not None]
    return [np.concatenate(arrays, axis=checked_axis(int(n.attr("axis")), arrays[0].ndim))]


@folds("Unsqueeze")
def _fold_unsqueeze(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    axes = axes_operand(n, 13) or []
    rank = x.ndim + len(axes)
    for a in sorted(checked_axis(a, rank) for a in axes):
        x = np.expand_dims(x, a)
    return [x]


@folds("Squeeze")
def _fold_squeeze(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    axes = axes_operand(n, 13)
    return [np.squeeze(x, axis=None if axes is None else tuple(axes))]


@folds("Slice")
def _fold_slice(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    starts, ends, axes, steps = slice_params(n, x.ndim)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[checked_axis(a, x.ndim)] = slice(s, e, st)
    return [x[tuple(index)]]


@folds("Reshape")
def _fold_reshape(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    x, target = xs[0], xs[1]
    assert x is not None and target is not None
    if is_symbolic(target):
        return None
    dims = [int(d) for d in target.reshape(-1)]
    if not n.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [x.reshape(dims)]


@folds("Where")
def _fold_where(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    cond, a, b = xs
    assert cond is not None and a is not None and b is not None
    return None if is_symbolic(cond) else [np.where(cond.astype(bool), a, b)]


@folds("Range")
def _fold_range(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    if any(x is None or is_symbolic(x) for x in xs):
        return None
    start, limit, delta = (np.asarray(x).reshape(()) for x in xs if x is not None)
    return [np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)]


@folds("ConstantOfShape")
def _fold_constant_of_shape(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    shape = xs[0]
    assert shape is not None
    if is_symbolic(shape):
        return None
    fill = n.attr("value")
    fill = np.zeros((), np.float32) if fill is None else np.asarray(fill).reshape(())
    return [np.full([int(d) for d in shape.reshape(-1)], fill, dtype=fill.dtype)]


@folds("Expand")
def _fold_expand(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray] | None:
    x, shape = xs
    assert x is not None and shape is not None
    if is_symbolic(shape):
        return None
    out = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape.reshape(-1)))
    return [np.broadcast_to(x, out).copy()]


@folds("Transpose")
def _fold_transpose(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    x = xs[0]
    assert x is not None
    return [np.transpose(x, n.attr("perm"))]


@folds("GatherElements")
def _fold_gather_elements(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    data, indices = xs[0], xs[1]
    assert data is not None and indices is not None
    axis = checked_axis(int(n.attr("axis", 0)), data.ndim)
    indices = np.where(indices < 0, indices + data.shape[axis], indices).astype(np.int64)
    return [np.take_along_axis(data, indices, axis=axis)]


@folds("Tile")
def _fold_tile(n: OnnxNode, xs: list[Known | None]) -> list[np.ndarray]:
    data, repeats = xs[0], xs[1]
    assert data is not None and repeats is not None
    return [np.tile(data, [int(r) for r in repeats.reshape(-1)])]
