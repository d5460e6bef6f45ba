"""The ONNX converter table, part 3: data movement, shapes, constants and control flow.

Shape values are data known at import (``Shape`` of any tensor gives ints, and names for
symbolic dims), so shape-consuming ops read their targets with ``OnnxNode.ints``; the NumPy
folders that compute shape arithmetic live in ``onnx_fold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import ShapeError
from compiler.frontends.onnx_importer import (
    OnnxNode,
    Output,
    Reject,
    ir_dtype,
    is_symbolic,
    normalize_known,
)
from compiler.frontends.onnx_table import converts
from compiler.ir.ops_tensor import resolve_reshape


def checked_axis(axis: int, rank: int) -> int:
    """``axis`` made non-negative; ShapeError if out of range for ``rank``."""
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def axes_operand(n: OnnxNode, since: int, index: int = 1) -> list[int] | None:
    """Axes given as an attribute before opset ``since`` and as input ``index`` from it."""
    if n.opset >= since:
        return n.ints(index, "the axes") if n.has(index) else None
    axes = n.attr("axes")
    return None if axes is None else [int(a) for a in axes]


# ---- shape and layout converters ------------------------------------------------------------
@converts("Reshape")
def _reshape(n: OnnxNode) -> Sequence[Output]:
    """A 0 in the target copies the input dimension (unless ``allowzero``); -1 is inferred."""
    x = n.value(0)
    target = n.ints(1, "the target shape", symbolic=True)
    if not n.attr("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    resolved = resolve_reshape(x.shape, target)
    shape = list(resolved) if all(isinstance(d, int) for d in resolved) else target
    return [n.emit("tensor.reshape", [x], {"shape": shape})]


@converts("Flatten")
def _flatten(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    axis = int(n.attr("axis", 1))
    return [n.emit("tensor.flatten", [x], {"axis": axis + x.type.rank if axis < 0 else axis})]


@converts("Transpose")
def _transpose(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    perm = [int(p) for p in n.attr("perm", reversed(range(x.type.rank)))]
    if perm == list(range(x.type.rank)):
        return [x]
    return [n.emit("tensor.transpose", [x], {"perm": perm})]


@converts("Concat")
def _concat(n: OnnxNode) -> Sequence[Output]:
    values = [n.value(i) for i in range(len(n.inputs)) if n.has(i)]
    axis = checked_axis(int(n.attr("axis")), values[0].type.rank)
    nonempty = [v for v in values if v.shape[axis] != 0] or values[:1]
    if len(nonempty) == 1:
        return nonempty
    return [n.emit("tensor.concat", nonempty, {"axis": axis})]


@converts("Split")
def _split(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    axis = checked_axis(int(n.attr("axis", 0)), x.type.rank)
    if n.opset >= 13 and n.has(1):
        sizes = n.ints(1, "the split sizes")
    elif n.opset < 13 and n.attr("split") is not None:
        sizes = [int(s) for s in n.attr("split")]
    else:
        size, count = x.shape[axis], int(n.attr("num_outputs", len(n.outputs)))
        if count != len(n.outputs) or count < 1:
            raise ShapeError(f"num_outputs is {count} but the node has {len(n.outputs)} outputs")
        if not isinstance(size, int):
            raise Reject(f"splitting the symbolic dimension {size!r} into equal parts")
        chunk = math.ceil(size / count)  # opset 18: the last part may be smaller
        sizes = [chunk] * (count - 1) + [size - chunk * (count - 1)]
    if len(sizes) == 1:
        return [x]
    names = [n.name_hint(None, i) for i in range(len(sizes))]
    return n.emit_multi("tensor.split", [x], {"axis": axis, "sizes": sizes}, None, names)


def slice_params(n: OnnxNode, rank: int) -> tuple[list[int], list[int], list[int], list[int]]:
    if n.opset < 10:
        starts, ends = [int(v) for v in n.attr("starts")], [int(v) for v in n.attr("ends")]
        axes = [int(v) for v in n.attr("axes", range(len(starts)))]
        return starts, ends, axes, [1] * len(starts)
    starts, ends = n.ints(1, "the slice starts"), n.ints(2, "the slice ends")
    axes = n.ints(3, "the slice axes") if n.has(3) else list(range(len(starts)))
    steps = n.ints(4, "the slice steps") if n.has(4) else [1] * len(starts)
    return starts, ends, axes, steps


@converts("Slice")
def _slice(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    starts, ends, axes, steps = slice_params(n, x.type.rank)
    axes = [checked_axis(a, x.type.rank) for a in axes]
    identity = True
    for i, (a, step) in enumerate(zip(axes, steps, strict=True)):
        size = x.shape[a]
        if isinstance(size, int):  # clamp INT64_MAX-style bounds so the IR text stays readable
            starts[i] = min(max(starts[i], -size - 1), size)
            ends[i] = min(max(ends[i], -size - 1), size)
            identity &= step == 1 and starts[i] in (0, -size - 1) and ends[i] == size
        else:
            identity = False
    if identity:
        return [x]
    attrs: dict[str, Any] = {"starts": starts, "ends": ends, "axes": axes}
    if any(s != 1 for s in steps):
        attrs["steps"] = steps
    return [n.emit("tensor.slice", [x], attrs)]


@converts("Squeeze")
def _squeeze(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    axes = axes_operand(n, 13)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    if not axes:
        return [x]
    return [n.emit("tensor.squeeze", [x], {"axes": [checked_axis(a, x.type.rank) for a in axes]})]


@converts("Unsqueeze")
def _unsqueeze(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    axes = axes_operand(n, 13) or []
    rank = x.type.rank + len(axes)
    return [n.emit("tensor.unsqueeze", [x], {"axes": sorted(checked_axis(a, rank) for a in axes)})]


@converts("Expand")
def _expand(n: OnnxNode) -> Sequence[Output]:
    """A symbolic target dim is fine where the input has that same dim (it broadcasts as 1)."""
    x = n.value(0)
    target = n.ints(1, "the expand shape", symbolic=True)
    rank = max(len(target), x.type.rank)
    padded_in = [1] * (rank - x.type.rank) + list(x.shape)
    offset = rank - len(target)
    for i, d in enumerate(target):
        if isinstance(d, str):
            if padded_in[offset + i] != d:
                raise Reject(f"expanding to the symbolic dimension {d!r}")
            target[i] = 1
    out = np.broadcast_shapes(tuple(d if isinstance(d, int) else 1 for d in padded_in), target)
    same = [o == 1 if isinstance(d, str) else o == d for o, d in zip(out, padded_in, strict=True)]
    if len(out) == x.type.rank and all(same):
        return [x]
    return [n.emit("tensor.expand", [x], {"shape": target})]


@converts("Tile")
def _tile(n: OnnxNode) -> Sequence[Output]:
    """``[d0, d1]`` tiled by ``[r0, r1]``: unsqueeze to ``[1, d0, 1, d1]``, expand to
    ``[r0, d0, r1, d1]``, reshape to ``[r0 * d0, r1 * d1]``."""
    x = n.value(0)
    repeats = n.ints(1, "the repeats")
    if all(r == 1 for r in repeats):
        return [x]
    shape = n.static_shape(0, "Tile")
    rank = len(shape)
    spread = n.emit("tensor.unsqueeze", [x], {"axes": list(range(0, 2 * rank, 2))}, hint="spread")
    pairs = [v for r, d in zip(repeats, shape, strict=True) for v in (r, d)]
    tiled = n.emit("tensor.expand", [spread], {"shape": pairs}, hint="tiled")
    final = [r * d for r, d in zip(repeats, shape, strict=True)]
    return [n.emit("tensor.reshape", [tiled], {"shape": final})]


@converts("GatherND")
def _gather_nd(n: OnnxNode) -> Sequence[Output]:
    """GatherND (batch_dims=0) as one gather: the first K data dims merged by a reshape,
    the index tuples turned into linear indices ``sum(wrap(idx) * strides)`` (torch's
    exporter emits it for ``mask[batch_idx, kv_idx]``)."""
    if n.attr("batch_dims", 0):
        raise Reject("GatherND with batch_dims > 0")
    x = n.value(0)
    idx = n.value(1, dtype="i64")
    depth = idx.type.shape[-1]
    if not isinstance(depth, int) or not all(isinstance(d, int) for d in x.type.shape):
        raise Reject("GatherND needs a static data shape and index depth")
    dims = np.asarray(x.type.shape[:depth], np.int64)
    strides = np.cumprod(np.concatenate([dims[1:], [1]])[::-1])[::-1].astype(np.int64)
    negative = n.emit("math.less", [idx, n.scalar(0, "i64")], hint="negative")
    wrapped = n.emit("math.add", [idx, n.constant(dims, n.name_hint("dims"))], hint="wrapped")
    idx = n.emit("tensor.where", [negative, wrapped, idx], hint="index")
    terms = n.emit("math.mul", [idx, n.constant(strides, n.name_hint("strides"))], hint="terms")
    linear = n.emit("math.reduce_sum", [terms], {"axes": [-1], "keepdims": False}, hint="linear")
    flat = n.emit("tensor.reshape", [x], {"shape": [-1, *x.type.shape[depth:]]}, hint="flat")
    return [n.emit("tensor.gather", [flat, linear], {"axis": 0})]


@converts("Gather")
def _gather(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    indices = n.value(1, dtype=None if n.type(1).dtype in ("i32", "i64") else "i64")
    axis = checked_axis(int(n.attr("axis", 0)), x.type.rank)
    return [n.emit("tensor.gather", [x, indices], {"axis": axis})]


@converts("Pad")
def _pad(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    rank = x.type.rank
    mode = n.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise Reject(f"mode={mode!r} (constant, reflect and edge are supported)")
    if n.opset < 11:
        pads = [int(p) for p in n.attr("pads", n.attr("paddings", []))]
        value = float(n.attr("value", 0.0))
    else:
        pads = n.ints(1, "the pads")
        fill = n.need_known(2, "the pad value") if n.has(2) else np.zeros(())
        value = float(np.asarray(fill).reshape(-1)[0]) if np.size(fill) else 0.0
        if n.has(3):
            axes = [checked_axis(a, rank) for a in n.ints(3, "the pad axes")]
            full = [0] * 2 * rank
            for i, a in enumerate(axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            pads = full
    if any(p < 0 for p in pads):
        raise Reject(f"negative pads {pads} (cropping)")
    if not any(pads):
        return [x]
    attrs: dict[str, Any] = {"pads": pads, "mode": mode}
    if mode == "constant" and value != 0.0:
        attrs["value"] = value
    return [n.emit("tensor.pad", [x], attrs)]


@converts("Where")
def _where(n: OnnxNode) -> Sequence[Output]:
    x = n.value(1)
    return [n.emit("tensor.where", [n.value(0, "bool"), x, n.value(2, x.dtype)])]


@converts("Cast", "CastLike")
def _cast(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    to = n.type(1).dtype if n.op_type == "CastLike" else ir_dtype(n.attr("to"), "Cast's 'to'")
    attrs: dict[str, Any] = {"to": to}
    if not n.attr("saturate", 1):  # only float8 targets read it
        attrs["saturate"] = False
    return [x if x.dtype == to else n.emit("tensor.cast", [x], attrs)]


@converts("Shape")
def _shape(n: OnnxNode) -> Sequence[Output]:
    """The shape of a tensor is known at import: ints, and names for symbolic dims."""
    shape = list(n.shape(0))
    start, end = int(n.attr("start", 0)), n.attr("end")
    dims = shape[start:] if end is None else shape[start : int(end)]
    return [normalize_known(np.array(dims, dtype=object).reshape(len(dims)))]


@converts("Size")
def _size(n: OnnxNode) -> Sequence[Output]:
    return [np.asarray(math.prod(n.static_shape(0, "Size")), dtype=np.int64)]


@converts("ConstantOfShape", "Range")
def _needs_known(n: OnnxNode) -> Sequence[Output]:
    inputs = [n.known(i) for i in range(len(n.inputs)) if n.has(i)]
    if any(x is not None and is_symbolic(x) for x in inputs):
        raise Reject(
            "its shape or bounds depend on symbolic dimensions; specialize them with "
            "import_onnx(input_shapes=...)"
        )
    raise Reject("its shape or bounds are computed at runtime (data-dependent shape)")


@converts("If")
def _if(n: OnnxNode) -> Sequence[Output]:
    """Control flow on a condition known at import (a legacy-exported shape check) is
    inlined: the taken branch's nodes are converted in place."""
    cond = n.known(0)
    if cond is None or is_symbolic(cond):
        raise Reject("If on a condition computed at runtime (data-dependent control flow)")
    branch = n.attr("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch")
    return n.importer.inline(branch, f"{n.loc}/")
