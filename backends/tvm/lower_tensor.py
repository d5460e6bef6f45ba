"""Lowering rules, part 1: elementwise math, reductions and data movement.

Each entry of ``TENSOR_RULES`` mirrors the interpreter's NumPy implementation of the op
(``compiler.interpreter_ops``); where Relax's op means something slightly different at the
edges, the rule uses a compute from ``backends.tvm.te_ops`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.tvm import te_ops
from backends.tvm.lower import (
    NCHW,
    NHWC,
    LowerContext,
    Rule,
    static_shape,
    tvm_const,
    tvm_dtype,
)
from compiler.ir.graph import Graph, Node
from compiler.ir.ops_tensor import slice_dim
from compiler.ir.types import is_float, is_int


def _R() -> Any:
    from tvm import relax

    return relax.op


# ---- elementwise -----------------------------------------------------------------------------
def unary(make: Callable[[Any, Node], Any]) -> Rule:
    """A one-operand elementwise op: keeps the operand's layout."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        x = node.inputs[0]
        ctx.set_layout(node.outputs[0], ctx.layout(x) if x.type.rank == 4 else NCHW)
        return [ctx.emit(make(ctx.arg_any(x), node))]

    return Rule(lower, layouts=True)


def _float_const(node: Node, v: float) -> Any:
    return tvm_const(v, tvm_dtype(node.inputs[0]))


def _clip(x: Any, lo: float | None, hi: float | None, node: Node) -> Any:
    R = _R()
    if lo is not None:
        x = R.maximum(x, _float_const(node, lo))
    if hi is not None:
        x = R.minimum(x, _float_const(node, hi))
    return x


def _hardswish(x: Any, node: Node) -> Any:
    R = _R()
    three, six = _float_const(node, 3.0), _float_const(node, 6.0)
    return R.divide(R.multiply(x, _clip(R.add(x, three), 0.0, 6.0, node)), six)


def _hardsigmoid(x: Any, node: Node) -> Any:
    a = LowerContext.attrs(node)
    R = _R()
    y = R.add(R.multiply(x, _float_const(node, a["alpha"])), _float_const(node, a["beta"]))
    return _clip(y, 0.0, 1.0, node)


def _gelu(x: Any, node: Node) -> Any:
    R = _R()
    return R.nn.gelu_tanh(x) if node.attrs.get("approximate") == "tanh" else R.nn.gelu(x)


UNARY: dict[str, Callable[[Any, Node], Any]] = {
    # TVM's negative multiplies by a -1 it cannot make for unsigned types: 0 - x wraps alike.
    "math.neg": lambda x, n: _R().subtract(tvm_const(0, tvm_dtype(n.inputs[0])), x),
    "math.abs": lambda x, n: _R().abs(x),
    "math.exp": lambda x, n: _R().exp(x),
    "math.log": lambda x, n: _R().log(x),
    "math.sqrt": lambda x, n: _R().sqrt(x),
    "math.rsqrt": lambda x, n: _R().divide(_float_const(n, 1.0), _R().sqrt(x)),
    "math.reciprocal": lambda x, n: _R().divide(_float_const(n, 1.0), x),
    "math.erf": lambda x, n: _R().erf(x),
    "math.tanh": lambda x, n: _R().tanh(x),
    "math.sin": lambda x, n: _R().sin(x),
    "math.cos": lambda x, n: _R().cos(x),
    "math.not": lambda x, n: _R().logical_not(x),
    "math.isnan": lambda x, n: _R().isnan(x),
    "nn.relu": lambda x, n: _R().nn.relu(x),
    "nn.relu6": lambda x, n: _clip(x, 0.0, 6.0, n),
    "nn.sigmoid": lambda x, n: _R().sigmoid(x),
    "nn.silu": lambda x, n: _R().multiply(x, _R().sigmoid(x)),
    "nn.hardswish": _hardswish,
    "nn.hardsigmoid": _hardsigmoid,
    "nn.gelu": _gelu,
    "nn.leaky_relu": lambda x, n: _R().nn.leakyrelu(x, LowerContext.attrs(n)["alpha"]),
    "nn.clip": lambda x, n: _clip(x, n.attrs.get("min"), n.attrs.get("max"), n),
}


def _identity(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x = node.inputs[0]
    ctx.set_layout(node.outputs[0], ctx.layout(x))
    return [ctx.arg_any(x)]


def binary(make: Callable[[Any, Any], Any]) -> Rule:
    """Two-operand elementwise op with NumPy broadcasting, in the operands' common layout."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        layout = ctx.common_layout(node)
        a, b = (ctx.arg_in(v, layout) for v in node.inputs)
        if node.op in COMPARISONS and node.inputs[0].dtype == "bool":
            # LLVM code generation fails on comparisons of i1 (a float compare is emitted):
            # compare as u8, which orders False < True as NumPy does.
            a, b = (_R().astype(v, "uint8") for v in (a, b))
        ctx.set_layout(node.outputs[0], layout)
        return [ctx.emit(make(a, b))]

    return Rule(lower, layouts=True)


def _div(node: Node, ctx: LowerContext) -> Sequence[Any]:
    if is_float(node.inputs[0].dtype):
        return [ctx.emit(_R().divide(ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])))]
    shape = static_shape(node.outputs[0])
    return [ctx.emit_te(te_ops.int_div, ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1]), shape)]


def _mod(node: Node, ctx: LowerContext) -> Sequence[Any]:
    shape = static_shape(node.outputs[0])
    return [ctx.emit_te(te_ops.fmod, ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1]), shape)]


COMPARISONS = frozenset(
    {"math.equal", "math.less", "math.greater", "math.less_equal", "math.greater_equal"}
)

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "math.add": lambda a, b: _R().add(a, b),
    "math.sub": lambda a, b: _R().subtract(a, b),
    "math.mul": lambda a, b: _R().multiply(a, b),
    "math.pow": lambda a, b: _R().power(a, b),
    "math.maximum": lambda a, b: _R().maximum(a, b),
    "math.minimum": lambda a, b: _R().minimum(a, b),
    "math.equal": lambda a, b: _R().equal(a, b),
    "math.less": lambda a, b: _R().less(a, b),
    "math.greater": lambda a, b: _R().greater(a, b),
    "math.less_equal": lambda a, b: _R().less_equal(a, b),
    "math.greater_equal": lambda a, b: _R().greater_equal(a, b),
    "math.and": lambda a, b: _R().logical_and(a, b),
    "math.or": lambda a, b: _R().logical_or(a, b),
    "math.xor": lambda a, b: _R().logical_xor(a, b),
}


def _where(node: Node, ctx: LowerContext) -> Sequence[Any]:
    layout = ctx.common_layout(node)
    c, x, y = (ctx.arg_in(v, layout) for v in node.inputs)
    ctx.set_layout(node.outputs[0], layout)
    return [ctx.emit(_R().where(c, x, y))]


def _cast(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, out = node.inputs[0], node.outputs[0]
    ctx.set_layout(out, ctx.layout(x) if x.type.rank == 4 else NCHW)
    if is_float(x.dtype) and is_int(out.dtype):
        return [ctx.emit_te(te_ops.float_to_int, ctx.arg_any(x), tvm_dtype(out), out.dtype)]
    return [ctx.emit(_R().astype(ctx.arg_any(x), tvm_dtype(out)))]


# ---- reductions ------------------------------------------------------------------------------
def reduce(name: str, check: Callable[[Node, Graph], str | None] | None = None) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        a = ctx.attrs(node)
        x = ctx.arg(node.inputs[0])
        rank = node.inputs[0].type.rank
        axes = None if a["axes"] is None else [int(v) % rank for v in a["axes"]]
        if name in ("max", "min") and is_float(node.inputs[0].dtype):  # from -inf/+inf
            every = list(range(rank)) if axes is None else axes
            return [ctx.emit_te(te_ops.float_extreme, x, every, bool(a["keepdims"]), name)]
        return [ctx.emit(getattr(_R(), name)(x, axes, bool(a["keepdims"])))]

    return Rule(lower, check)


def _no_bool(why: str) -> Callable[[Node, Graph], str | None]:
    """Refuse a bool operand: TVM's max/min/argmax start from the dtype's extreme value, and
    its code generation has none for bool (a raw TVM error the fuzzer found)."""

    def check(node: Node, graph: Graph) -> str | None:
        return why if node.inputs[0].dtype == "bool" else None

    return check


def _argmax(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a = ctx.attrs(node)
    axis = int(a["axis"]) % node.inputs[0].type.rank
    return [ctx.emit(_R().argmax(ctx.arg(node.inputs[0]), axis, bool(a["keepdims"])))]


def _softmax(name: str) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        x = node.inputs[0]
        axis = int(ctx.attrs(node)["axis"]) % x.type.rank
        if name == "softmax" and axis == x.type.rank - 1:
            from backends.tvm.kernels_row import row_lanes, softmax_rows

            lanes = row_lanes(int(x.type.shape[-1]), tvm_dtype(x), ctx.params)
            if lanes:
                return [ctx.emit_te(softmax_rows, ctx.arg(x), lanes)]
        return [ctx.emit(getattr(_R().nn, name)(ctx.arg(x), axis))]

    return Rule(lower)


# ---- data movement ---------------------------------------------------------------------------
def _reshape(node: Node, ctx: LowerContext) -> Sequence[Any]:
    return [ctx.emit(_R().reshape(ctx.arg(node.inputs[0]), static_shape(node.outputs[0])))]


def _transpose(node: Node, ctx: LowerContext) -> Sequence[Any]:
    perm = [int(p) for p in node.attrs["perm"]]
    return [ctx.emit(_R().permute_dims(ctx.arg(node.inputs[0]), perm))]


def _concat(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    layout = ctx.common_layout(node)
    rank = node.outputs[0].type.rank
    axis = int(node.attrs["axis"]) % rank
    if layout == NHWC:
        axis = (0, 3, 1, 2)[axis]
    xs = [ctx.arg_in(v, layout) for v in node.inputs]
    ctx.set_layout(node.outputs[0], layout)
    return [ctx.emit(_R().concat(relax.Tuple(xs), axis))]


def _split(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    a = ctx.attrs(node)
    axis = int(a["axis"]) % node.inputs[0].type.rank
    bounds = [int(v) for v in np.cumsum(a["sizes"])[:-1]]
    if 0 in a["sizes"]:  # TVM's split wants strictly increasing bounds: slice each part
        x = ctx.arg(node.inputs[0])
        return [ctx.emit(_R().strided_slice(x, [axis], [start], [start + int(size)]))
                for start, size in zip([0, *bounds], a["sizes"], strict=True)]
    parts = ctx.emit(_R().split(ctx.arg(node.inputs[0]), bounds, axis))
    return [ctx.emit(relax.TupleGetItem(parts, i)) for i in range(len(node.outputs))]


def _slice(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a = ctx.attrs(node)
    shape_in = static_shape(node.inputs[0])
    rank = len(shape_in)
    starts, steps = [0] * rank, [1] * rank
    axes = a["axes"] if a["axes"] is not None else list(range(len(a["starts"])))
    step_list = a["steps"] or [1] * len(axes)
    for ax, s, e, st in zip(axes, a["starts"], a["ends"], step_list, strict=True):
        ax = int(ax) % rank
        start, _, step = slice(int(s), int(e), int(st)).indices(shape_in[ax])
        if slice_dim(shape_in[ax], int(s), int(e), int(st)) == 0:
            start = 0
        starts[ax], steps[ax] = start, step
    out = static_shape(node.outputs[0])
    return [ctx.emit_te(te_ops.slice_nd, ctx.arg(node.inputs[0]), starts, steps, out)]


def _expand(node: Node, ctx: LowerContext) -> Sequence[Any]:
    return [ctx.emit(_R().broadcast_to(ctx.arg(node.inputs[0]), static_shape(node.outputs[0])))]


def _gather(node: Node, ctx: LowerContext) -> Sequence[Any]:
    axis = int(ctx.attrs(node)["axis"]) % node.inputs[0].type.rank
    x, idx = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    return [ctx.emit(_R().take(x, idx, axis, mode="wrap"))]


def _pad(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a = ctx.attrs(node)
    pads = [int(p) for p in a["pads"]]
    return [ctx.emit_te(te_ops.pad_nd, ctx.arg(node.inputs[0]), pads, a["mode"], a["value"])]


def _shape(node: Node, ctx: LowerContext) -> Sequence[Any]:
    return [tvm_const(np.asarray(static_shape(node.inputs[0]), dtype=np.int64), "int64")]


def _range(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a = ctx.attrs(node)
    out = node.outputs[0]
    data = np.arange(a["start"], a["limit"], a["delta"]).astype(np.dtype(tvm_dtype(out)))
    return [tvm_const(data, tvm_dtype(out))]


def _no_negative_pads(node: Node, graph: Graph) -> str | None:
    if any(int(p) < 0 for p in node.attrs.get("pads", [])):
        return "negative pads (cropping) are not supported"
    if node.attrs.get("mode", "constant") == "reflect":
        sizes = node.inputs[0].type.shape
        rank = len(sizes)
        pads = node.attrs["pads"]
        if any(max(pads[d], pads[rank + d]) >= int(sizes[d]) for d in range(rank)):
            return "reflect padding wider than the dimension"
    return None


TENSOR_RULES: dict[str, Rule] = {
    **{op: unary(fn) for op, fn in UNARY.items()},
    **{op: binary(fn) for op, fn in BINARY.items()},
    "math.div": Rule(_div),
    "math.mod": Rule(_mod),
    "tensor.where": Rule(_where, layouts=True),
    "tensor.cast": Rule(_cast, layouts=True),
    "tensor.identity": Rule(_identity, layouts=True),
    "nn.dropout": Rule(_identity, layouts=True),
    "math.reduce_mean": reduce("mean"),
    "math.reduce_sum": reduce("sum"),
    "math.reduce_max": reduce("max", _no_bool("max of bool (TVM has no minimum of bool)")),
    "math.reduce_min": reduce("min", _no_bool("min of bool (TVM has no maximum of bool)")),
    "math.reduce_prod": reduce("prod"),
    "math.argmax": Rule(_argmax, _no_bool("argmax of bool (TVM has no minimum of bool)")),
    "nn.softmax": _softmax("softmax"),
    "nn.log_softmax": _softmax("log_softmax"),
    "tensor.reshape": Rule(_reshape),
    "tensor.flatten": Rule(_reshape),
    "tensor.squeeze": Rule(_reshape),
    "tensor.unsqueeze": Rule(_reshape),
    "tensor.transpose": Rule(_transpose),
    "tensor.concat": Rule(_concat, layouts=True),
    "tensor.split": Rule(_split),
    "tensor.slice": Rule(_slice),
    "tensor.expand": Rule(_expand),
    "tensor.gather": Rule(_gather),
    "tensor.pad": Rule(_pad, check=_no_negative_pads),
    "tensor.shape": Rule(_shape),
    "tensor.range": Rule(_range),
}
