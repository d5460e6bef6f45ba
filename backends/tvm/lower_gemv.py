"""Lowering of float32 ``nn.dense`` with a constant weight and few rows to
``backends.tvm.kernels_gemv`` (an LLM's decode GEMVs and prefill GEMMs).

Called first by the ``nn.dense`` rule (``backends.tvm.lower_nn``); it declines (None) a node
that is not such a dense, which then goes to the TE kernel. Nodes that read the same input
with the same rows and reduction length and have no residual operand (a layer's q/k/v
projections, its gate and up projections) become one kernel over their columns together,
sliced after; each column keeps its own node's bias and activation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm import kernels_gemv
from backends.tvm.lower import LowerContext, split_siblings, static_shape
from backends.tvm.schedules import SERIAL_WORK
from compiler.ir.graph import Node

#: (rows, reduction length, has a residual operand)
Key = tuple[int, int, bool]


def gemv_key(node: Node, ctx: LowerContext) -> Key | None:
    """What must agree for dense nodes to share one kernel; None when ``node`` does not go
    to ``kernels_gemv`` (not float32, a weight or bias that is not constant, too many rows or
    too small a weight)."""
    x, w = node.inputs[0], node.inputs[1]
    if x.dtype != "f32" or w.dtype != "f32" or node.outputs[0].dtype != "f32":
        return None
    if ctx.const(w) is None or w.type.rank != 2:
        return None
    if len(node.inputs) > 2 and ctx.const(node.inputs[2]) is None:
        return None
    n, k = static_shape(w)
    rows = math.prod(static_shape(node.outputs[0])[:-1])
    if not kernels_gemv.applies(rows, k, n):
        return None
    return rows, k, len(node.inputs) > 3


def _siblings(node: Node, ctx: LowerContext, key: Key) -> list[Node]:
    """The dense nodes that read ``node``'s input with the same key, in graph order
    (``node`` included); only ``node`` when it has a residual operand."""
    if key[2]:
        return [node]
    found = {
        id(user): user
        for user, index in node.inputs[0].uses
        if user.op == "nn.dense" and index == 0 and gemv_key(user, ctx) == key
    }
    if len(found) < 2:
        return [node]
    order = {id(n): i for i, n in enumerate(ctx.graph.nodes)}
    return sorted(found.values(), key=lambda n: order[id(n)])


def lower_gemv(node: Node, ctx: LowerContext) -> Sequence[Any] | None:
    """``node`` (and its siblings, whose results wait in ``ctx.ahead``) as one kernel call,
    or None when ``node`` is not for this kernel."""
    if id(node) in ctx.ahead:
        return ctx.ahead.pop(id(node))
    key = gemv_key(node, ctx)
    if key is None:
        return None
    from tvm import relax

    nodes = _siblings(node, ctx, key)

    def residual(n: Node, part: Any, columns: int) -> Any:
        if len(n.inputs) <= 3:
            return part
        r = ctx.emit(relax.op.reshape(ctx.arg(n.inputs[3]), (key[0], columns)))
        return ctx.emit(relax.op.add(part, r))

    return split_siblings(_call(node, nodes, ctx, key), nodes, ctx, residual if key[2] else None)


def _call(node: Node, nodes: list[Node], ctx: LowerContext, key: Key) -> Any:
    """One kernel call ``[rows, N]`` over the weights of ``nodes`` concatenated."""
    from tvm import relax

    rows, k, _ = key
    weights = [np.asarray(ctx.const(n.inputs[1]), np.float32) for n in nodes]
    biases = [
        np.asarray(ctx.const(n.inputs[2]), np.float32).reshape(-1)
        if len(n.inputs) > 2
        else np.zeros(w.shape[0], np.float32)
        for n, w in zip(nodes, weights, strict=True)
    ]
    segments, start = [], 0
    for n, w in zip(nodes, weights, strict=True):
        attrs = ctx.attrs(n)
        act_args = tuple(float(v) for v in attrs["act_args"])
        segments.append(kernels_gemv.Segment(start, w.shape[0], attrs["act"], act_args))
        start += w.shape[0]
    layout = kernels_gemv.GemvLayout(rows, k, start)
    parallel = rows * k * start >= SERIAL_WORK
    name = f"tapeout_gemv_r{rows}_k{k}_n{start}"
    if any(s.act != "none" for s in segments):  # one symbol per epilogue too
        name += "_" + hashlib.sha1(repr(segments).encode()).hexdigest()[:8]
    func = kernels_gemv.gemv_func(layout, segments, parallel).with_attrs(
        {"global_symbol": name, "op_pattern": 8}  # opaque: Relax fuses nothing into it
    )
    gv = ctx.bb.add_func(func, name)
    ctx.kernels["gemv"] = ctx.kernels.get("gemv", 0) + 1
    x2 = ctx.emit(relax.op.reshape(ctx.arg(node.inputs[0]), (rows, k)))
    packed = kernels_gemv.pack(np.concatenate(weights))
    args = [x2, relax.const(packed, "float32"), relax.const(np.concatenate(biases), "float32")]
    return ctx.emit(
        relax.call_tir(gv, relax.Tuple(args), relax.TensorType((rows, start), "float32")),
        node.outputs[0].name,
    )
