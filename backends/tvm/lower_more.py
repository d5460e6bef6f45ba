"""Lowering rules, part 4: the ops of ``compiler.ir.ops_more`` (indexing with data, scans,
selection, einsum, RMS norm, floor modulo, the loss, generic reductions).

Each rule mirrors ``compiler.interpreter_more``. Operands that Relax wants as compile-time
numbers (cumsum's axis, top-k's k, reduction axes) must be constants; where one is runtime
data the rule's check refuses the node and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm import te_ops
from backends.tvm.lower import LowerContext, Rule, static_shape, tvm_const, tvm_dtype
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_float


def _R() -> Any:
    from tvm import relax

    return relax.op


def _known_operand(index: int, what: str) -> Any:
    """A check: operand ``index`` must be a constant (Relax takes it as a number)."""

    def check(node: Node, graph: Graph) -> str | None:
        if index < len(node.inputs) and graph.const_value(node.inputs[index]) is None:
            return f"{what} is computed at runtime; TVM needs it at compile time"
        return None

    return check


def _scalar(ctx: LowerContext, node: Node, index: int) -> int:
    data = ctx.const(node.inputs[index])
    assert data is not None  # the rule's check guarantees it
    return int(np.asarray(data).reshape(-1)[0])


def _positive(ctx: LowerContext, idx: Any, size: int, dtype: str) -> Any:
    """Indices with negative ones counted from the end (ONNX allows them, Relax does not)."""
    R = _R()
    zero, n = tvm_const(0, dtype), tvm_const(size, dtype)
    return ctx.emit(R.where(R.less(idx, zero), R.add(idx, n), idx))


# ---- reductions ------------------------------------------------------------------------------
def _reduce(node: Node, ctx: LowerContext) -> Sequence[Any]:
    R = _R()
    a = ctx.attrs(node)
    x = node.inputs[0]
    rank = x.type.rank
    if not a["axes"] and a["noop_with_empty_axes"]:
        return [ctx.arg(x)]
    axes = None if not a["axes"] else [int(v) % rank for v in a["axes"]]
    keep = bool(a["keepdims"])
    data = ctx.arg(x)
    if x.dtype == "bool" and a["kind"] in ("max", "min"):
        # TVM has no max/min of bool: any/all are the max/min of 0/1 bytes
        y = ctx.emit(getattr(R, a["kind"])(ctx.emit(R.astype(data, "int8")), axes, keep))
        return [ctx.emit(R.astype(y, "bool"))]
    pre = {"l1": R.abs, "l2": R.square, "sum_square": R.square, "log_sum_exp": R.exp}
    if a["kind"] in pre:
        data = ctx.emit(pre[a["kind"]](data))
    name = {"mean": "mean", "max": "max", "min": "min", "prod": "prod"}.get(a["kind"], "sum")
    if name in ("max", "min") and is_float(x.dtype):  # from -inf/+inf, as NumPy
        every = list(range(rank)) if axes is None else axes
        return [ctx.emit_te(te_ops.float_extreme, data, every, keep, name)]
    y = ctx.emit(getattr(R, name)(data, axes, keep))
    post = {"l2": R.sqrt, "log_sum": R.log, "log_sum_exp": R.log}
    return [ctx.emit(post[a["kind"]](y)) if a["kind"] in post else y]


def _reduce_check(node: Node, graph: Graph) -> str | None:
    if len(node.inputs) > 1:
        return "reduction axes computed at runtime (a data-dependent shape)"
    kind = node.attrs.get("kind")
    if node.inputs[0].dtype == "bool" and kind not in ("max", "min"):
        return f"a {kind} reduction of bool values (TVM's arithmetic has no bool kernels)"
    empty = any(d == 0 for d in node.inputs[0].type.shape)
    if empty and kind in ("max", "min", "prod"):
        return "a max/min/prod over an empty tensor"
    return None


# ---- indexing --------------------------------------------------------------------------------
def _gather_elements(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, idx = node.inputs
    axis = int(node.attrs.get("axis", 0)) % x.type.rank
    size = static_shape(x)[axis]
    indices = _positive(ctx, ctx.arg(idx), size, tvm_dtype(idx))
    return [ctx.emit(_R().gather_elements(ctx.arg(x), indices, axis))]


_REDUCTION = {"none": "update", "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _scatter_elements(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """As a scatter_nd: the index tuples are the positions of ``indices`` with the ``axis``
    component replaced by its value (Relax's scatter_elements fails to schedule here)."""
    R = _R()
    x, idx, upd = node.inputs
    a = ctx.attrs(node)
    rank = x.type.rank
    axis = int(a["axis"]) % rank
    shape = static_shape(idx)
    indices = ctx.emit(R.astype(ctx.arg(idx), "int64"))
    indices = _positive(ctx, indices, static_shape(x)[axis], "int64")
    parts = [
        R.expand_dims(indices, [rank]) if d == axis
        else tvm_const(np.indices(shape)[d][..., None].astype(np.int64), "int64")
        for d in range(rank)
    ]  # fmt: skip
    from tvm import relax

    tuples = ctx.emit(R.concat(relax.Tuple(parts), rank))
    how = _REDUCTION[a["reduction"]]
    return [ctx.emit(R.scatter_nd(ctx.arg(x), tuples, ctx.arg(upd), how))]


def _scatter_nd(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, idx, upd = node.inputs
    how = _REDUCTION[ctx.attrs(node)["reduction"]]
    return [ctx.emit(_R().scatter_nd(ctx.arg(x), ctx.arg(idx), ctx.arg(upd), how))]


# ---- scans, masks, selection -----------------------------------------------------------------
def _cumsum(node: Node, ctx: LowerContext) -> Sequence[Any]:
    R = _R()
    a = ctx.attrs(node)
    x = node.inputs[0]
    axis = _scalar(ctx, node, 1) % x.type.rank
    data = ctx.arg(x)
    if a["reverse"]:
        data = ctx.emit(R.flip(data, axis))
    y = ctx.emit(R.cumsum(data, axis, tvm_dtype(x), bool(a["exclusive"])))
    return [ctx.emit(R.flip(y, axis)) if a["reverse"] else y]


def _trilu(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """A mask from the constant diagonal offsets ``col - row`` compared with ``k``, so that a
    ``k`` computed at runtime works as well as a constant one."""
    R = _R()
    x = node.inputs[0]
    rows, cols = static_shape(x)[-2:]
    offset = np.arange(cols, dtype=np.int64)[None, :] - np.arange(rows, dtype=np.int64)[:, None]
    k = ctx.arg(node.inputs[1]) if len(node.inputs) > 1 else tvm_const(0, "int64")
    k = ctx.emit(R.reshape(k, [])) if len(node.inputs) > 1 else k
    diag = tvm_const(offset, "int64")
    keep = R.greater_equal(diag, k) if ctx.attrs(node)["upper"] else R.less_equal(diag, k)
    zero = tvm_const(0, tvm_dtype(x)) if x.dtype != "bool" else tvm_const(False, "bool")
    return [ctx.emit(R.where(ctx.emit(keep), ctx.arg(x), zero))]


def _topk(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    a = ctx.attrs(node)
    x = node.inputs[0]
    axis = int(a["axis"]) % x.type.rank
    k = _scalar(ctx, node, 1)
    both = ctx.emit(_R().topk(ctx.arg(x), k, axis, "both", bool(a["largest"]), "int64"))
    return [ctx.emit(relax.TupleGetItem(both, 0)), ctx.emit(relax.TupleGetItem(both, 1))]


def _topk_check(node: Node, graph: Graph) -> str | None:
    # Integer top-k is ``lower_int_ops`` (TVM's CPU top-k sorts int32/int64 keys stably).
    return _known_operand(1, "top-k's k")(node, graph)


def _einsum(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    operands = relax.Tuple([ctx.arg(v) for v in node.inputs])
    return [ctx.emit(_R().einsum(operands, str(node.attrs["equation"])))]


def _einsum_check(node: Node, graph: Graph) -> str | None:
    if "..." in str(node.attrs["equation"]):
        return "einsum with an ellipsis"
    if not is_float(node.inputs[0].dtype):
        return f"einsum on {node.inputs[0].dtype}"
    return None


def _rms_norm(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """``x * rsqrt(mean(x^2) + eps) * scale`` from plain ops (Relax's rms_norm fails to build
    when the normalized axes start before the last one)."""
    R = _R()
    a = ctx.attrs(node)
    x, scale = node.inputs
    rank = x.type.rank
    axes = list(range(int(a["axis"]) % rank, rank))
    data = ctx.arg(x)
    if x.dtype != "f32":  # statistics in float32, as the interpreter (ONNX's stash_type)
        data = ctx.emit(R.astype(data, "float32"))
    mean_square = ctx.emit(R.mean(R.square(data), axes, True))
    inv = ctx.emit(R.rsqrt(R.add(mean_square, tvm_const(float(a["eps"]), "float32"))))
    y = ctx.emit(R.multiply(data, inv))
    if x.dtype != "f32":
        y = ctx.emit(R.astype(y, tvm_dtype(x)))
    return [ctx.emit(R.multiply(y, ctx.arg(scale)))]


def _floor_mod(node: Node, ctx: LowerContext) -> Sequence[Any]:
    # Integers only (_float_floor_mod_check): a guarded kernel, never a native x % 0.
    a, b = (ctx.arg(v) for v in node.inputs)
    return [ctx.emit_te(te_ops.int_floor_mod, a, b, static_shape(node.outputs[0]))]


def _nll_loss(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Gather the target's log-probability, weight it (zero where ignored), reduce; the mean
    divides by the summed weights, as the interpreter does."""
    R = _R()
    a = ctx.attrs(node)
    x, target = node.inputs[0], node.inputs[1]
    dtype = tvm_dtype(x)
    t = ctx.arg(target)
    ignored = None
    if a["ignore_index"] is not None:
        ignored = ctx.emit(R.equal(t, tvm_const(int(a["ignore_index"]), tvm_dtype(target))))
        t = ctx.emit(R.where(ignored, tvm_const(0, tvm_dtype(target)), t))
    picked = ctx.emit(R.squeeze(R.gather_elements(ctx.arg(x), R.expand_dims(t, 1), 1), [1]))
    if len(node.inputs) > 2:
        w = ctx.emit(R.take(ctx.arg(node.inputs[2]), t, 0))
    else:
        w = ctx.emit(R.ones_like(picked))
    if ignored is not None:
        w = ctx.emit(R.where(ignored, tvm_const(0, dtype), w))
    loss = ctx.emit(R.negative(R.multiply(picked, w)))
    if a["reduction"] == "none":
        return [loss]
    total = ctx.emit(R.sum(loss))
    return [ctx.emit(R.divide(total, R.sum(w))) if a["reduction"] == "mean" else total]


def _float_floor_mod_check(node: Node, graph: Graph) -> str | None:
    if is_float(node.inputs[0].dtype):
        return "floor modulo of floats (its -0.0/inf edge cases differ from the interpreter)"
    return None


def _mod_check(node: Node, graph: Graph) -> str | None:
    if node.inputs[0].dtype == "f16":
        return "fmod of float16 (no TVM kernel)"
    return None


def _empty_check(node: Node, graph: Graph) -> str | None:
    if any(d == 0 for v in node.inputs for d in v.type.shape):
        return "an empty (zero-size) operand"
    return None


def _elementwise(name: str) -> Rule:
    """A Relax elementwise op of the same name on the operands as they are (NCHW)."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        return [ctx.emit(getattr(_R(), name)(*(ctx.arg(v) for v in node.inputs)))]

    return Rule(lower)


#: IR op -> Relax op, same meaning (math.round is left out: Relax rounds half away from zero,
#: ONNX and the interpreter half to even).
ELEMENTWISE_MORE: dict[str, str] = {
    f"math.{name}": name
    for name in ("ceil", "floor", "sign", "tan", "asin", "acos", "atan", "sinh", "cosh",
                 "asinh", "acosh", "atanh", "bitwise_not", "bitwise_and", "bitwise_or",
                 "bitwise_xor")
}  # fmt: skip


def _resize_linear(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """One axis at a time, as the interpreter: the two neighbours of each output position
    (constant indices) blended by constant weights."""
    from compiler.interpreter_more import resize_source

    R = _R()
    a = ctx.attrs(node)
    x = node.inputs[0]
    y = ctx.arg(x)
    shape = list(static_shape(x))
    dtype = tvm_dtype(x)
    for axis, (size_out, scale) in enumerate(zip(a["sizes"], a["scales"], strict=True)):
        size_in = shape[axis]
        if size_out == size_in and scale == 1:
            continue
        coord = resize_source(np.arange(size_out, dtype=np.float64), size_in, size_out, scale,
                              a["mode"])
        coord = np.clip(coord, 0, size_in - 1)
        low = np.floor(coord).astype(np.int64)
        high = np.minimum(low + 1, size_in - 1)
        bshape = [1] * len(shape)
        bshape[axis] = size_out
        w = (coord - low).reshape(bshape)
        lo = R.multiply(
            R.take(y, tvm_const(low, "int64"), axis),
            tvm_const((1 - w).astype(x.type.np_dtype), dtype),
        )
        hi = R.multiply(
            R.take(y, tvm_const(high, "int64"), axis), tvm_const(w.astype(x.type.np_dtype), dtype)
        )
        y = ctx.emit(R.add(lo, hi))
        shape[axis] = size_out
    return [y]


MORE_RULES: dict[str, Rule] = {
    "nn.resize_linear": Rule(_resize_linear),
    **{op: _elementwise(name) for op, name in ELEMENTWISE_MORE.items()},
    "math.reduce": Rule(_reduce, _reduce_check),
    "tensor.gather_elements": Rule(_gather_elements),
    "tensor.scatter_elements": Rule(_scatter_elements),
    "tensor.scatter_nd": Rule(_scatter_nd),
    "math.cumsum": Rule(_cumsum, _known_operand(1, "the cumsum axis")),
    "tensor.trilu": Rule(_trilu, _empty_check),
    "math.topk": Rule(_topk, _topk_check),
    "math.einsum": Rule(_einsum, _einsum_check),
    "nn.rms_norm": Rule(_rms_norm),
    "math.floor_mod": Rule(_floor_mod, _float_floor_mod_check),
    "nn.nll_loss": Rule(_nll_loss),
}


def _with_check(rule: Rule, check: Any) -> Rule:
    """``rule`` with ``check`` run before its own check."""
    own = rule.check
    return dataclasses.replace(rule, check=lambda n, g: check(n, g) or (own(n, g) if own else None))


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with these rules added, and checks added to core rules whose
    kernels miss a case (math.mod on float16)."""
    out = {**rules, **MORE_RULES}
    if "math.mod" in out:
        out["math.mod"] = _with_check(out["math.mod"], _mod_check)
    for op in NO_F16_KERNEL:
        if op in out:
            out[op] = _with_check(out[op], _f16_check)
    return out


#: Float ops whose float16 form LLVM has no x86 intrinsic for (the build fails on llvm.exp).
NO_F16_KERNEL = (
    "math.exp", "math.log", "math.erf", "math.pow", "math.tanh", "nn.sigmoid", "nn.silu",
    "nn.gelu", "nn.softmax", "nn.log_softmax",
    "math.asin", "math.acos", "math.atan", "math.sinh", "math.cosh", "math.asinh",
    "math.acosh", "math.atanh",
)  # fmt: skip


def _f16_check(node: Node, graph: Graph) -> str | None:
    if node.inputs[0].dtype == "f16":
        return f"{node.op} on float16 (LLVM has no x86 kernel for it)"
    return None
