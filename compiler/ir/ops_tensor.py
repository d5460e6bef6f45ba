"""Op table, part 3: data movement (reshape, transpose, concat, slice, gather, pad, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import OPS, REQUIRED, OpDef, norm_axis, register_op, same_dtype
from compiler.ir.types import Dim, Shape, TensorType


def _keep(types: Sequence[TensorType], shape: Shape) -> list[TensorType]:
    """Data movement keeps dtype and per-tensor quantization."""
    t = types[0]
    quant = t.quant if t.quant is not None and t.quant.axis is None else None
    return [TensorType(t.dtype, tuple(shape), quant)]


def resolve_reshape(in_shape: Shape, target: Sequence[Dim]) -> Shape:
    """Fill the single -1 in ``target`` from ``in_shape``; symbolic names cancel out."""
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"reshape target {list(target)} has more than one -1")
    known_in = [d for d in in_shape]
    known_out = [d for d in target if d != -1]
    for d in list(known_out):
        if isinstance(d, str) and d in known_in:
            known_in.remove(d)
            known_out.remove(d)
    sym_in = [d for d in known_in if isinstance(d, str)]
    sym_out = [d for d in known_out if isinstance(d, str)]
    n_in = math.prod(d for d in known_in if isinstance(d, int))
    n_out = math.prod(d for d in known_out if isinstance(d, int))
    if -1 not in target:
        if not sym_in and not sym_out and n_in != n_out:
            raise ShapeError(f"cannot reshape {list(in_shape)} ({n_in} elements) to {list(target)}")
        return tuple(target)
    if sym_out:
        raise ShapeError(f"reshape target {list(target)} has -1 and unknown symbols {sym_out}")
    if n_out == 0 or n_in % n_out:
        raise ShapeError(f"cannot reshape {list(in_shape)} to {list(target)}")
    fill: Dim = n_in // n_out
    if sym_in:
        fill = "*".join(sym_in) if fill == 1 else "*".join([*sym_in, str(fill)])
    return tuple(fill if d == -1 else d for d in target)


@register_op("tensor.reshape", "x", {"shape": REQUIRED}, tags="layout view")
def _reshape(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Reshape to ``shape`` (ints, one -1, or symbolic names); no zero-copy (ONNX 0) entries."""
    return _keep(types, resolve_reshape(types[0].shape, attrs["shape"]))


@register_op("tensor.flatten", "x", {"axis": 1}, tags="layout view")
def _flatten(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Collapse dimensions [0, axis) and [axis, rank) into two (ONNX Flatten)."""
    shape = types[0].shape
    axis = attrs["axis"] + len(shape) if attrs["axis"] < 0 else attrs["axis"]  # as ONNX, NumPy

    def prod(dims: Shape) -> Dim:
        ints = math.prod(d for d in dims if isinstance(d, int))
        syms = [d for d in dims if isinstance(d, str)]
        return ints if not syms else "*".join(syms + ([str(ints)] if ints != 1 else []))

    return _keep(types, (prod(shape[:axis]), prod(shape[axis:])))


@register_op("tensor.transpose", "x", {"perm": REQUIRED}, tags="layout")
def _transpose(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape, perm = types[0].shape, list(attrs["perm"])
    if sorted(perm) != list(range(len(shape))):
        raise ShapeError(f"perm {perm} is not a permutation of rank {len(shape)}")
    return _keep(types, tuple(shape[p] for p in perm))


@register_op("tensor.concat", "xs*", {"axis": REQUIRED}, tags="layout")
def _concat(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    dtype = same_dtype(types)
    rank = types[0].rank
    axis = norm_axis(attrs["axis"], rank)
    total: Dim = 0
    for t in types:
        if t.rank != rank:
            raise ShapeError(f"concat operands have different ranks: {[t.shape for t in types]}")
        for i, (a, b) in enumerate(zip(t.shape, types[0].shape, strict=True)):
            if i != axis and isinstance(a, int) and isinstance(b, int) and a != b:
                raise ShapeError(
                    f"concat operands differ off axis {axis}: {[t.shape for t in types]}"
                )
        d = t.shape[axis]
        total = total + d if isinstance(total, int) and isinstance(d, int) else f"{total}+{d}"
    shape = list(types[0].shape)
    shape[axis] = total
    return [TensorType(dtype, tuple(shape))]


@register_op(
    "tensor.split", "x", {"axis": REQUIRED, "sizes": REQUIRED}, outputs="sizes", tags="layout"
)
def _split(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape = types[0].shape
    axis = norm_axis(attrs["axis"], len(shape))
    if not attrs["sizes"] or min(attrs["sizes"]) < 0:
        raise ShapeError(f"split sizes {attrs['sizes']} must be one or more sizes >= 0")
    if isinstance(shape[axis], int) and sum(attrs["sizes"]) != shape[axis]:
        raise ShapeError(f"split sizes {attrs['sizes']} do not add up to {shape[axis]}")
    return [_keep(types, shape[:axis] + (s,) + shape[axis + 1 :])[0] for s in attrs["sizes"]]


def slice_dim(size: int, start: int, end: int, step: int) -> int:
    """Length of ``range(size)[start:end:step]`` with ONNX/NumPy clamping."""
    return len(range(*slice(start, end, step).indices(size)))


@register_op(
    "tensor.slice",
    "x",
    {"starts": REQUIRED, "ends": REQUIRED, "axes": None, "steps": None},
    tags="layout",
)
def _slice(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape = list(types[0].shape)
    axes = attrs["axes"] if attrs["axes"] is not None else list(range(len(attrs["starts"])))
    steps = attrs["steps"] or [1] * len(axes)
    for a, s, e, st in zip(axes, attrs["starts"], attrs["ends"], steps, strict=True):
        a = norm_axis(a, len(shape))
        if st == 0:
            raise ShapeError("slice step 0")
        d = shape[a]
        if isinstance(d, int) and isinstance(s, int) and isinstance(e, int):
            shape[a] = slice_dim(d, s, e, st)
        else:  # a bound may name a symbolic dim (``x[:seq]``); the interpreter binds it
            shape[a] = e if (s == 0 and st == 1 and isinstance(e, str)) else f"{d}'"
    return _keep(types, tuple(shape))


@register_op("tensor.squeeze", "x", {"axes": REQUIRED}, tags="layout view")
def _squeeze(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape = types[0].shape
    axes = {norm_axis(a, len(shape)) for a in attrs["axes"]}
    for a in axes:
        if shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of size {shape[a]}")
    return _keep(types, tuple(d for i, d in enumerate(shape) if i not in axes))


@register_op("tensor.unsqueeze", "x", {"axes": REQUIRED}, tags="layout view")
def _unsqueeze(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    shape = list(types[0].shape)
    rank = len(shape) + len(attrs["axes"])
    axes = sorted(norm_axis(a, rank) for a in attrs["axes"])
    if len(set(axes)) != len(axes):
        raise ShapeError(f"unsqueeze axes {list(attrs['axes'])} name an axis twice")
    for a in axes:
        shape.insert(a, 1)
    return _keep(types, tuple(shape))


@register_op("tensor.expand", "x", {"shape": REQUIRED}, tags="layout")
def _expand(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Broadcast to ``shape`` (NumPy rules; ONNX Expand)."""
    from compiler.ir.ops import broadcast_shapes

    return _keep(types, broadcast_shapes(types[0].shape, tuple(attrs["shape"])))


@register_op("tensor.gather", "x indices", {"axis": 0}, tags="layout")
def _gather(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``take(x, indices, axis)``: embedding lookup is gather on axis 0."""
    x, idx = types
    if idx.dtype not in ("i64", "i32"):
        raise ShapeError(f"gather indices must be i32 or i64, got {idx.dtype}")
    axis = norm_axis(attrs["axis"], x.rank)
    if x.shape[axis] == 0 and all(isinstance(d, int) and d > 0 for d in idx.shape):
        # every index would be out of range (a kernel would divide by the axis length)
        raise ShapeError(f"gather of {math.prod(idx.shape)} index(es) from the empty axis "
                         f"{axis} of {x}")
    return _keep(types, x.shape[:axis] + idx.shape + x.shape[axis + 1 :])


@register_op("tensor.pad", "x", {"pads": REQUIRED, "mode": "constant", "value": 0.0})
def _pad(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Pad with ``pads`` = [begin of each dim..., end of each dim...] (ONNX order)."""
    shape = types[0].shape
    pads = attrs["pads"]
    if len(pads) != 2 * len(shape):
        raise ShapeError(f"{len(pads)} pads for rank {len(shape)}")
    if attrs["mode"] not in ("constant", "reflect", "edge"):
        raise ShapeError(f"pad mode {attrs['mode']!r} is not supported")
    if min(pads, default=0) < 0:
        raise ShapeError(f"negative pads {list(pads)} (cropping) are not supported")
    n = len(shape)
    for i, d in enumerate(shape):
        grows = pads[i] or pads[n + i]
        if grows and isinstance(d, int) and attrs["mode"] != "constant" and (
            d == 0 or (attrs["mode"] == "reflect" and max(pads[i], pads[n + i]) >= d)
        ):
            raise ShapeError(f"{attrs['mode']} padding of {pads[i]}/{pads[n + i]} on a "
                             f"dimension of size {d}")
    out = tuple(
        d + pads[i] + pads[n + i] if isinstance(d, int) else f"{d}'" for i, d in enumerate(shape)
    )
    return _keep(types, out)


@register_op("tensor.shape", "x")
def _shape(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The shape of ``x`` as an i64 vector (left by frontends only for symbolic shapes)."""
    return [TensorType("i64", (types[0].rank,))]


@register_op(
    "tensor.range", "", {"start": 0, "limit": REQUIRED, "delta": 1, "dtype": "i64"}, outputs=1
)
def _range(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    n = max(0, math.ceil((attrs["limit"] - attrs["start"]) / attrs["delta"]))
    return [TensorType(attrs["dtype"], (n,))]


# ``const`` has no operands; its type comes from its data (the verifier checks it).
OPS["const"] = OpDef(
    "const", (), {"ref": REQUIRED}, None, "A constant tensor: the data is graph.constants[ref]."
)
