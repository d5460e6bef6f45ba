"""Converter table, part 3: data movement (reshape, transpose, split, slice, pad, gather)
and constants (factories, and ops on constant operands, folded with torch).

Shapes come from torch's own output shapes where they are needed (``view``, ``expand``), so
``-1`` entries and symbolic sizes arrive resolved, with their ``Dim`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.frontends.torch_context import ImportContext, Reject, converts, fold
from compiler.ir import Value
from compiler.ir.ops import norm_axis

if TYPE_CHECKING:
    from torch.fx import Node as FxNode

_INT_MAX = 2**62  # ATen writes "to the end" as INT64_MAX; anything this big means the end


# ---- data movement --------------------------------------------------------------------------
@converts(
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.view_copy.default",
)
def _reshape(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    shape = list(ctx.out_shape())
    if tuple(shape) == x.shape:
        return x
    return ctx.emit("tensor.reshape", [x], {"shape": shape})


@converts("aten.permute.default")
def _permute(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    perm = [norm_axis(d, x.type.rank) for d in ctx.ints(ctx.args["dims"], "permutation")]
    return x if perm == sorted(perm) else ctx.emit("tensor.transpose", [x], {"perm": perm})


@converts("aten.transpose.int", "aten.t.default", "aten.numpy_T.default")
def _transpose(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    rank = x.type.rank
    if rank < 2:
        return x
    d0, d1 = (ctx.args["dim0"], ctx.args["dim1"]) if "dim0" in ctx.args else (0, 1)
    perm = list(range(rank))
    if "numpy_T" in str(node.target):
        perm.reverse()
    else:
        a, b = norm_axis(d0, rank), norm_axis(d1, rank)
        perm[a], perm[b] = perm[b], perm[a]
    return x if perm == sorted(perm) else ctx.emit("tensor.transpose", [x], {"perm": perm})


@converts("aten.cat.default", "aten.concat.default")
def _cat(ctx: ImportContext, node: FxNode) -> Value:
    dtype = ctx.out_dtype()
    values = [ctx.cast(ctx.value(t), dtype) for t in ctx.args["tensors"]]
    # Legacy cat skips 1-D empty tensors; they carry no data anywhere.
    values = [v for v in values if not (v.type.rank == 1 and v.shape[0] == 0)] or values
    axis = norm_axis(ctx.args["dim"], values[0].type.rank)
    return values[0] if len(values) == 1 else ctx.emit("tensor.concat", values, {"axis": axis})


def _split(ctx: ImportContext, x: Value, sizes: list[int], axis: int) -> list[Value]:
    if len(sizes) == 1:
        return [x]
    return ctx.emit_multi("tensor.split", [x], {"axis": axis, "sizes": sizes})


@converts("aten.split_with_sizes.default", "aten.split.Tensor", "aten.split.sizes")
def _split_op(ctx: ImportContext, node: FxNode) -> list[Value]:
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(ctx.args["dim"], x.type.rank)
    size = x.shape[axis]
    arg = ctx.args.get("split_sizes", ctx.args.get("split_size"))
    if isinstance(arg, list | tuple):
        sizes = ctx.ints(arg, "split size")
    else:
        step = ctx.ints(arg, "split size")[0]
        if not isinstance(size, int):
            raise Reject("even split of a symbolic dim")
        sizes = [min(step, size - i) for i in range(0, size, step)]
    return _split(ctx, x, sizes, axis)


@converts("aten.unbind.int")
def _unbind(ctx: ImportContext, node: FxNode) -> list[Value]:
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(ctx.args["dim"], x.type.rank)
    parts = _split(ctx, x, [1] * _static_dim(x, axis, "unbind"), axis)
    return [ctx.emit("tensor.squeeze", [p], {"axes": [axis]}) for p in parts]


@converts("aten.chunk.default")
def _chunk(ctx: ImportContext, node: FxNode) -> list[Value]:
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(ctx.args["dim"], x.type.rank)
    sizes = [ctx.ints(v.shape[axis], "chunk size")[0] for v in ctx.meta()]
    return _split(ctx, x, sizes, axis)


def _static_dim(value: Value, axis: int, what: str) -> int:
    d = value.shape[axis]
    if not isinstance(d, int):
        raise Reject(f"{what} on symbolic dim {d}")
    return d


@converts("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(ctx.args["dim"], x.type.rank)
    start = ctx.scalar_of(ctx.args["start"]) or 0
    end = ctx.scalar_of(ctx.args["end"])
    step = ctx.scalar_of(ctx.args["step"]) or 1
    size = x.shape[axis]
    if end is None or (isinstance(end, int) and end >= _INT_MAX) or end == size:
        end = size
    if start == 0 and end == size and step == 1:
        return x
    if not all(isinstance(v, int) for v in (start, end, step, size)):
        # The interpreter binds bounds that name a graph input's dim (``position_ids[:seq]``).
        input_dims = {d for v in ctx.graph.inputs for d in v.shape if isinstance(d, str)}
        if not isinstance(step, int) or any(
            isinstance(v, str) and v not in input_dims for v in (start, end)
        ):
            raise Reject(f"slice [{start}:{end}:{step}] of a dim of size {size} is not static")
    else:
        start, end, _ = slice(start, end, step).indices(size)
    return ctx.emit(
        "tensor.slice", [x], {"starts": [start], "ends": [end], "axes": [axis], "steps": [step]}
    )


@converts("aten.select.int", "aten.select_copy.int")
def _select(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    axis = norm_axis(ctx.args["dim"], x.type.rank)
    size = _static_dim(x, axis, "select")
    index = ctx.ints(ctx.args["index"], "select index")[0] % size
    part = ctx.emit("tensor.slice", [x], {"starts": [index], "ends": [index + 1], "axes": [axis]})
    return ctx.emit("tensor.squeeze", [part], {"axes": [axis]})


@converts("aten.squeeze.dims", "aten.squeeze.dim", "aten.squeeze.default")
def _squeeze(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    dims = ctx.args.get("dim")
    rank = x.type.rank
    wanted = range(rank) if dims is None else [norm_axis(d, rank) for d in ctx.ints(dims, "axis")]
    axes = sorted({a for a in wanted if x.shape[a] == 1})  # torch ignores non-1 dims
    return ctx.emit("tensor.squeeze", [x], {"axes": axes}) if axes else x


@converts("aten.unsqueeze.default")
def _unsqueeze(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    return ctx.emit(
        "tensor.unsqueeze", [x], {"axes": [norm_axis(ctx.args["dim"], x.type.rank + 1)]}
    )


@converts("aten.expand.default", "aten.expand_copy.default", "aten.broadcast_to.default")
def _expand(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    shape = ctx.out_shape()
    return x if shape == x.shape else ctx.emit("tensor.expand", [x], {"shape": list(shape)})


@converts("aten.repeat.default")
def _repeat(ctx: ImportContext, node: FxNode) -> Value:
    """``repeat`` is tile: [d0, d1] -> [1, d0, 1, d1], expand to [r0, d0, r1, d1], merge."""
    x = ctx.value(ctx.args["self"])
    repeats = ctx.ints(ctx.args["repeats"], "repeat count")
    dims = [1] * (len(repeats) - x.type.rank) + list(x.shape)
    if not all(isinstance(d, int) for d in dims):
        raise Reject("repeat of a symbolic dim")
    interleaved = [v for d in dims for v in (1, d)]
    y = ctx.emit("tensor.reshape", [x], {"shape": interleaved})
    y = ctx.emit(
        "tensor.expand",
        [y],
        {"shape": [v for r, d in zip(repeats, dims, strict=True) for v in (r, d)]},
    )
    return ctx.emit(
        "tensor.reshape", [y], {"shape": [r * d for r, d in zip(repeats, dims, strict=True)]}
    )


def _torch_pads(ctx: ImportContext, pad: Any, rank: int) -> list[int]:
    """torch's (last_lo, last_hi, prev_lo, prev_hi, ...) as IR [begins..., ends...]."""
    pad = ctx.ints(pad, "pad")
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    if min(pad, default=0) < 0:
        raise Reject("negative padding (cropping)")
    return begins + ends


@converts("aten.constant_pad_nd.default", "aten.pad.default")
def _pad(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    mode = ctx.args.get("mode", "constant")
    value = ctx.scalar_of(ctx.args.get("value")) or 0.0
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}
    if mode not in modes:
        raise Reject(f"pad mode {mode!r}")
    pads = _torch_pads(ctx, ctx.args["pad"], x.type.rank)
    return ctx.emit("tensor.pad", [x], {"pads": pads, "mode": modes[mode], "value": float(value)})


@converts("aten.reflection_pad1d.default", "aten.reflection_pad2d.default",
          "aten.replication_pad1d.default", "aten.replication_pad2d.default")  # fmt: skip
def _mode_pad(ctx: ImportContext, node: FxNode) -> Value:
    x = ctx.value(ctx.args["self"])
    mode = "reflect" if "reflection" in str(node.target) else "edge"
    return ctx.emit(
        "tensor.pad",
        [x],
        {"pads": _torch_pads(ctx, ctx.args["padding"], x.type.rank), "mode": mode},
    )


@converts("aten.embedding.default")
def _embedding(ctx: ImportContext, node: FxNode) -> Value:
    weight, indices = ctx.value(ctx.args["weight"]), ctx.value(ctx.args["indices"])
    return ctx.emit("tensor.gather", [weight, _index(ctx, indices)], {"axis": 0})


def _index(ctx: ImportContext, indices: Value) -> Value:
    return indices if indices.dtype in ("i64", "i32") else ctx.cast(indices, "i64")


@converts("aten.index_select.default")
def _index_select(ctx: ImportContext, node: FxNode) -> Value:
    x, index = ctx.value(ctx.args["self"]), ctx.value(ctx.args["index"])
    return ctx.emit(
        "tensor.gather", [x, _index(ctx, index)], {"axis": norm_axis(ctx.args["dim"], x.type.rank)}
    )


@converts("aten.index.Tensor")
def _index_tensor(ctx: ImportContext, node: FxNode) -> Value:
    """``x[:, :, idx]`` with a single index tensor is a gather along that axis.

    Several index tensors on adjacent axes (transformers builds its attention masks as
    ``mask[batch_idx, kv_idx]``) are one gather too: those axes are merged by a reshape and the
    index tensors combined into one linear index ``sum(idx_i * stride_i)``, broadcast as torch
    broadcasts them. Negative indices are not wrapped there (the masks index with aranges).
    """
    x = ctx.value(ctx.args["self"])
    given = [(i, t) for i, t in enumerate(ctx.args["indices"]) if t is not None]
    if not given:
        raise Reject("indexing with no index tensor")
    values = [ctx.value(t) for _, t in given]
    if any(v.dtype == "bool" for v in values):
        raise Reject("boolean-mask indexing (data-dependent shape)")
    axes = [axis for axis, _ in given]
    if len(given) == 1:
        return ctx.emit("tensor.gather", [x, _index(ctx, values[0])], {"axis": axes[0]})
    if axes != list(range(axes[0], axes[0] + len(axes))):
        raise Reject("advanced indexing with index tensors on non-adjacent axes")
    dims = [d for d in x.type.shape[axes[0] : axes[-1] + 1] if isinstance(d, int)]
    if len(dims) != len(axes):
        raise Reject("advanced indexing over symbolic dims")
    merged = [*x.type.shape[: axes[0]], -1, *x.type.shape[axes[-1] + 1 :]]
    if not all(isinstance(d, int) for d in merged):
        raise Reject("advanced indexing of a tensor with symbolic dims")
    flat = ctx.emit("tensor.reshape", [x], {"shape": merged})
    linear: Value | None = None
    for position, value in enumerate(values):
        stride = int(np.prod(dims[position + 1 :], dtype=np.int64))
        term = ctx.cast(value, "i64")
        if stride != 1:
            term = ctx.emit("math.mul", [term, ctx.scalar(stride, term.dtype)])
        linear = term if linear is None else ctx.emit("math.add", [linear, term])
    assert linear is not None
    return ctx.emit("tensor.gather", [flat, linear], {"axis": axes[0]})


# ---- constants --------------------------------------------------------------------------------
converts(
    "aten.arange.default",
    "aten.arange.start",
    "aten.arange.start_step",
    "aten.full.default",
    "aten.zeros.default",
    "aten.ones.default",
    "aten.empty.memory_format",
    "aten.scalar_tensor.default",
    "aten.triu.default",
    "aten.tril.default",
)(fold)


@converts("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default",
          "aten.empty_like.default", "aten.new_zeros.default", "aten.new_ones.default",
          "aten.new_full.default", "aten.new_empty.default")  # fmt: skip
def _like(ctx: ImportContext, node: FxNode) -> Value:
    """A constant of the output's (static) shape: only the operand's shape matters."""
    from compiler.ir.types import NUMPY_DTYPES

    name = str(node.target)
    fill = 1 if "ones" in name else ctx.scalar_of(ctx.args.get("fill_value", 0))
    shape = ctx.out_shape()
    if not all(isinstance(d, int) for d in shape):
        raise Reject(f"constant of symbolic shape {list(shape)}")
    dtype = ctx.out_dtype()
    return ctx.const(np.full(shape, fill, dtype=NUMPY_DTYPES[dtype]), node.name)
