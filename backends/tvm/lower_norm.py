# mypy: disable-error-code="valid-type,name-defined"
"""RMS norm written as plain ops (Hugging Face's Llama, Qwen, Phi-3) as one row kernel.

A decoder imported through torch.export holds its RMS norms as the ops of the Python code::

    %p = math.pow(%x, 2.0)
    %m = math.reduce_mean(%p) {axes=[-1], keepdims=true}
    %e = math.add(%m, %eps)           # a scalar constant
    %r = math.rsqrt(%e)
    %n = math.mul(%x, %r)
    %y = math.mul(%w, %n)             # or mul(%n, %w); %w a constant [d]

Lowered op by op, Relax's FuseOps (TVM 0.27) fuses the mean with everything after it but
leaves ``power`` a kernel of its own (a SmolLM2 decode step profiles 61 ``power`` calls and
61 ``fused_mean_add_sqrt_divide_multiply``): 2 kernel calls per norm. The ``math.pow`` rule
here recognises the chain (every intermediate with that one use) and emits
``rms_norm_rows`` for ``%y`` ahead (``LowerContext.ahead``): the sum of squares as vector
partial sums, then ``w * (x * (1 / sqrt(mean + eps)))`` per element, one kernel. The
intermediate nodes still lower, unused, and Relax drops them. The summation order differs
from NumPy's (float32 rounding only, as the layer norm rows of ``backends.tvm.kernels_row``).

A residual add whose sum is normed so (every decoder layer: ``h = h + attn``, then the MLP's
norm of ``h``; ``h = h + mlp``, then the next layer's norm) is one kernel with two outputs,
``add_rms_norm_func``: the sum (the residual stream goes on) and the normed row, from the
same float operations in the same order as the two kernels it replaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels import PREFIX
from backends.tvm.kernels_row import ROW_PART, ROW_TOTAL, row_lanes
from backends.tvm.lower import LowerContext, Rule
from compiler.ir.graph import Graph, Node, Value


def _only_user(value: Value, op: str) -> Node | None:
    if len(value.uses) != 1 or value.uses[0][0].op != op:
        return None
    return value.uses[0][0]


def _scalar(graph: Graph, value: Value) -> float | None:
    data = graph.const_value(value)
    return float(data.reshape(-1)[0]) if data is not None and data.size == 1 else None


def _other(node: Node, value: Value) -> Value:
    a, b = node.inputs
    return b if a is value else a


def rms_chain(pow_node: Node, graph: Graph) -> tuple[Node, float, Value] | None:
    """``(the final mul, eps, the weight)`` when ``pow_node`` starts the chain above."""
    x = pow_node.inputs[0]
    if x.dtype != "f32" or x.type.rank < 1 or _scalar(graph, pow_node.inputs[1]) != 2.0:
        return None
    mean = _only_user(pow_node.outputs[0], "math.reduce_mean")
    if mean is None or not mean.attrs.get("keepdims"):
        return None
    if [int(a) % x.type.rank for a in mean.attrs.get("axes") or []] != [x.type.rank - 1]:
        return None
    add = _only_user(mean.outputs[0], "math.add")
    eps = None if add is None else _scalar(graph, _other(add, mean.outputs[0]))
    rsqrt = None if add is None else _only_user(add.outputs[0], "math.rsqrt")
    scale = None if rsqrt is None else _only_user(rsqrt.outputs[0], "math.mul")
    if eps is None or rsqrt is None or scale is None or _other(scale, rsqrt.outputs[0]) is not x:
        return None
    final = _only_user(scale.outputs[0], "math.mul")
    if final is None:
        return None
    weight = _other(final, scale.outputs[0])
    d = int(x.type.shape[-1])
    if graph.const_value(weight) is None or tuple(weight.type.shape) != (d,):
        return None
    if weight.dtype != "f32" or tuple(final.outputs[0].type.shape) != tuple(x.type.shape):
        return None
    return final, eps, weight


def rms_norm_rows(x: Any, weight: Any, eps: float, lanes: int) -> Any:
    """``w * (x * (1 / sqrt(mean(x^2) + eps)))`` over the last axis, the sum of squares as
    ``lanes`` partial sums."""
    from tvm import te, tirx

    shape = tuple(x.shape)
    rows, n = shape[:-1], int(shape[-1])
    j = te.reduce_axis((0, n // lanes), "j")
    part = te.compute(
        (*rows, lanes),
        lambda *i: te.sum(x(*i[:-1], j * lanes + i[-1]) * x(*i[:-1], j * lanes + i[-1]), axis=j),
        name=ROW_PART + "sumsq",
    )
    lane = te.reduce_axis((0, lanes), "l")
    total = te.compute(rows, lambda *r: te.sum(part[(*r, lane)], axis=lane), name=ROW_TOTAL + "sq")
    count, e = tirx.const(float(n), "float32"), tirx.const(eps, "float32")

    def out(*i: Any) -> Any:
        # The graph's order of operations (x * (1 / sqrt(mean + eps)), then the weight): a
        # quantized decoder quantizes this result, so a last-bit difference can flip a code.
        inv = tirx.const(1.0, "float32") / tirx.sqrt(total(*i[:-1]) / count + e)
        return weight[i[-1]] * (x(*i) * inv)

    return te.compute(shape, out, name=PREFIX + "rms_norm")


#: Rows (tokens) up to which an add and the RMS norm of its sum are one kernel: a decode
#: step's. A SmolLM2 prefill chunk of 32 tokens fused the same way measured 10 MB more peak
#: memory in ``tapeout generate`` (228.6 against 218.5 MB; the growth is in the first
#: prefill, its cause in TVM's planned memory not found) for 0.13 ms less in a 12 ms chunk.
FUSED_MAX_ROWS = 8


def add_rms_norm_func(rows: int, n: int, lanes: int, eps: float) -> Any:
    """The PrimFunc ``(A, B [rows, n], W [n], S, Y [rows, n])``, already scheduled:
    ``S = A + B`` and ``Y = rms_norm_rows(S, W)``, each row's sum of squares as ``lanes``
    vector partial sums added in the order ``rms_norm_rows`` adds them (its bits)."""
    from tvm.script import tirx as T

    from backends.tvm.schedules import SERIAL_WORK

    J = n // lanes
    loop = T.parallel if rows > 1 and rows * n >= SERIAL_WORK else T.serial

    @T.prim_func(s_tir=True)
    def func(
        A: T.Buffer((rows, n), "float32"),
        B: T.Buffer((rows, n), "float32"),
        W: T.Buffer((n,), "float32"),
        S: T.Buffer((rows, n), "float32"),
        Y: T.Buffer((rows, n), "float32"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for r in loop(rows):
            with T.sblock("row"):
                T.reads(A[r, 0:n], B[r, 0:n], W[0:n])
                T.writes(S[r, 0:n], Y[r, 0:n])
                part = T.alloc_buffer((lanes,), "float32", scope="local")
                acc = T.alloc_buffer((2,), "float32", scope="local")
                for k in T.vectorized(lanes):
                    part[k] = T.float32(0)
                for j in range(J):
                    for k in T.vectorized(lanes):
                        S[r, j * lanes + k] = A[r, j * lanes + k] + B[r, j * lanes + k]
                        part[k] = part[k] + S[r, j * lanes + k] * S[r, j * lanes + k]
                acc[0] = T.float32(0)
                for k in range(lanes):
                    acc[0] = acc[0] + part[k]
                acc[1] = T.float32(1) / T.sqrt(acc[0] / T.float32(n) + T.float32(eps))
                for j in range(J):
                    for k in T.vectorized(lanes):
                        Y[r, j * lanes + k] = W[j * lanes + k] * (S[r, j * lanes + k] * acc[1])

    return func


def _normed_sum(add: Node, graph: Graph) -> tuple[Node, Node, float, Value] | None:
    """``(pow node, final mul, eps, weight)`` when ``add``'s sum (no broadcast, float32) is
    RMS-normed by a chain of its users."""
    out = add.outputs[0]
    if out.dtype != "f32" or any(tuple(v.type.shape) != tuple(out.type.shape) or v.dtype != "f32"
                                 or v.is_const for v in add.inputs):  # fmt: skip
        return None
    for user, index in out.uses:
        if user.op == "math.pow" and index == 0:
            found = rms_chain(user, graph)
            if found is not None:
                return (user, *found)
    return None


def _with_add(rule: Rule) -> Rule:
    """``math.add``'s rule, emitting the add and the RMS norm of its sum as one kernel where
    the sum is normed (``add_rms_norm_func``)."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        found = _normed_sum(node, ctx.graph)
        shape = tuple(int(d) for d in node.outputs[0].type.shape)
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        lanes = 0 if found is None else row_lanes(shape[-1], "float32", ctx.params)
        if found is None or not lanes or rows > FUSED_MAX_ROWS:
            return rule.lower(node, ctx)
        from tvm import relax

        _, final, eps, weight = found
        name = f"{PREFIX}add_rms_norm_r{rows}_n{shape[-1]}_{np.float32(eps).view(np.uint32):08x}"
        func = add_rms_norm_func(rows, shape[-1], lanes, eps).with_attrs(
            {"global_symbol": name, "op_pattern": 8}  # opaque: nothing fused into it
        )
        gv = ctx.bb.add_func(func, name)
        ctx.kernels["add_rms_norm"] = ctx.kernels.get("add_rms_norm", 0) + 1
        a, b = (ctx.emit(relax.op.reshape(ctx.arg(v), (rows, shape[-1]))) for v in node.inputs)
        flat = relax.TensorType((rows, shape[-1]), "float32")
        both = ctx.emit(relax.call_tir(gv, relax.Tuple([a, b, ctx.arg(weight)]), [flat, flat]))
        total, normed = (ctx.emit(relax.op.reshape(ctx.emit(relax.TupleGetItem(both, i)), shape))
                         for i in (0, 1))  # fmt: skip
        ctx.ahead[id(final)] = [normed]
        return [total]

    return dataclasses.replace(rule, lower=lower)


def _with_chain(rule: Rule) -> Rule:
    """``math.pow``'s rule, emitting the whole RMS norm ahead where the chain is there (and
    an add before it has not already)."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        found = rms_chain(node, ctx.graph)
        lanes = 0 if found is None else row_lanes(int(node.inputs[0].type.shape[-1]),
                                                  "float32", ctx.params)  # fmt: skip
        if found is not None and lanes and id(found[0]) not in ctx.ahead:
            final, eps, weight = found
            y = ctx.emit_te(rms_norm_rows, ctx.arg(node.inputs[0]), ctx.arg(weight), eps, lanes)
            ctx.ahead[id(final)] = [y]
        return rule.lower(node, ctx)

    return dataclasses.replace(rule, lower=lower)


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The table with ``math.pow`` recognising RMS norms and ``math.add`` the sums they
    norm."""
    out = dict(rules)
    if "math.pow" in out:
        out["math.pow"] = _with_chain(out["math.pow"])
    if "math.add" in out:
        out["math.add"] = _with_add(out["math.add"])
    return out
