"""Lowering rules, part 4: block-quantized LLM weights (``q.block_dense``).

The weight, its scales and offsets are packed once at compile time
(``backends.tvm.kernels_blocks.pack``) and the node becomes one ``call_tir`` of a kernel
written for its shape, already scheduled (rows of 16 outputs in parallel, VNNI where the
target has it), so the default schedules leave it alone. Leading dimensions of the input
(batch, tokens) are flattened into the kernel's rows: a prefill runs every token through
each weight block while the block is in L1. Nodes that read the same input with the same
kernel variant (a layer's q/k/v projections, its gate and up projections) become one kernel
over their rows together, sliced after.

A decode step's or a prefill chunk's attention over ``concat(past_cache, new)`` is one
kernel too (``cache_attention``, ``backends.tvm.kernels_attention``), called from the
``nn.attention`` rule; for a prefill chunk the slots each query keeps are listed once per
step, from the mask every layer shares. A chunk of rows (a prefill) runs
``backends.tvm.kernels_blocks_gemm``'s GEMM, a decode step ``backends.tvm.kernels_blocks``'
GEMV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels_attention import (
    AttentionShape,
    attention_func,
    decode_attention_func,
    slots_func,
)
from backends.tvm.kernels_blocks import layout_for, min_operand, pack
from backends.tvm.kernels_blocks_gemm import block_kernel_func
from backends.tvm.lower import LowerContext, Rule, split_siblings, static_shape
from backends.tvm.lower_nn import grouped_kv
from compiler.ir.graph import Graph, Node, Value

_SCALE_DTYPES = {"f16": "float16", "f32": "float32"}


def _check(node: Node, graph: Graph) -> str | None:
    if any(graph.const_value(v) is None for v in node.inputs[1:]):
        return "block-quantized weight, scales and offsets must be constants"
    group = int(node.attrs["group"])
    step = 8 if node.inputs[1].dtype in ("i4", "u4") else 4
    if group % step:
        return f"block size {group} is not a multiple of {step}"
    if len({v.dtype for v in node.inputs[2:]}) != 1:
        return "scales and offsets must have the same dtype"
    return None


def _variant(node: Node) -> tuple:
    """What must agree for two ``q.block_dense`` nodes to share one kernel: operand dtypes,
    the reduction length, the block size, offsets or not, the activation bits."""
    return (
        tuple(v.dtype for v in node.inputs),
        static_shape(node.inputs[1])[1],
        int(node.attrs["group"]),
        _act_bits(node),
    )


def _act_bits(node: Node) -> int:
    return int(node.attrs.get("act_bits", 8))


def _siblings(node: Node, ctx: LowerContext) -> list[Node]:
    """The ``q.block_dense`` nodes that read ``node``'s input with the same kernel variant,
    in graph order (``node`` included): the q/k/v projections of a layer, its gate and up
    projections. One kernel computes their rows together, so a decode step pays one thread
    barrier and one activation quantization for each group instead of one per weight (the
    rows are computed independently, so every result keeps its bits)."""
    key = _variant(node)
    found = {
        id(user): user
        for user, index in node.inputs[0].uses
        if user.op == "q.block_dense" and index == 0 and _check(user, ctx.graph) is None
        and _variant(user) == key
    }  # fmt: skip
    if len(found) < 2:
        return [node]
    order = {id(n): i for i, n in enumerate(ctx.graph.nodes)}
    return sorted(found.values(), key=lambda n: order[id(n)])


def _lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
    if id(node) in ctx.ahead:
        return ctx.ahead.pop(id(node))

    nodes = _siblings(node, ctx)
    parts = [[ctx.const(v) for v in n.inputs[1:]] for n in nodes]
    consts = [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
    return split_siblings(_block_dense_call(node, ctx, consts), nodes, ctx)


def _block_dense_call(node: Node, ctx: LowerContext, consts: list[Any]) -> Any:
    """One kernel call ``[rows, N]`` for ``node``'s input and the weight rows ``consts``
    (quantized weight, scales, offsets if any)."""
    from tvm import relax

    x, qv = node.inputs[0], node.inputs[1]
    q, d = consts[0], consts[1]
    m = consts[2] if len(consts) > 2 else None
    n, k = q.shape
    scale = _SCALE_DTYPES[node.inputs[2].dtype]
    group = int(node.attrs["group"])
    layout = layout_for(qv.dtype, n, k, group, m is not None, scale, _act_bits(node))
    packed = pack(layout, q, d, m)
    mins = min_operand(layout, packed)
    shape = static_shape(x)
    rows = math.prod(shape[:-1])
    # One kernel per shape: the symbol names it, and identical kernels are added once.
    name = f"tapeout_block_dense_{layout.bits}b_{n}x{k}_g{layout.group}_r{rows}"
    name += ("_min" if layout.has_min else "") + ("_a16" if layout.act_bits == 16 else "")
    name += "_vnni" if ctx.params.vnni else ""
    func = block_kernel_func(layout, rows, ctx.params.vnni).with_attr("global_symbol", name)
    gv = ctx.bb.add_func(func, name)
    ctx.kernels["block_dense"] = ctx.kernels.get("block_dense", 0) + 1
    x2 = ctx.emit(relax.op.reshape(ctx.arg(x), (rows, k)))
    args = [x2, relax.const(packed[0], "uint8"), relax.const(packed[1], scale)]
    args += [relax.const(mins, scale)]
    return ctx.emit(
        relax.call_tir(gv, relax.Tuple(args), relax.TensorType((rows, n), "float32")),
        node.outputs[0].name,
    )


def _cache_concat(value: Value, chunk: int) -> tuple[Value, Value] | None:
    """``(past, new)`` when ``value`` is ``concat(past, new)`` along the slots (axis 2 of
    ``[B, heads, slots, D]``) with ``chunk`` new slots: a step's keys or values."""
    node = value.producer
    if node is None or node.op != "tensor.concat" or len(node.inputs) != 2:
        return None
    if int(node.attrs["axis"]) % 4 != 2 or value.type.rank != 4:
        return None
    past, new = node.inputs
    if static_shape(new)[2] != chunk or past.dtype != "f32" or new.dtype != "f32":
        return None
    return past, new


def _cache_shape(node: Node, ctx: LowerContext) -> tuple[AttentionShape, list[Value]] | None:
    """The kernel's shape and operands ``(q, past k, new k, past v, new v, mask)`` when
    ``node`` attends over ``concat(past, new)`` with a boolean mask; None otherwise."""
    q = node.inputs[0]
    if len(node.inputs) != 4 or q.dtype != "f32" or q.type.rank != 4:
        return None
    grouped = grouped_kv(node)
    k, v, group = grouped if grouped is not None else (node.inputs[1], node.inputs[2], 1)
    b, hq, c, d = static_shape(q)
    kc, vc, mask = _cache_concat(k, c), _cache_concat(v, c), node.inputs[3]
    if kc is None or vc is None or mask.dtype != "bool" or mask.type.rank != 4:
        return None
    slots, heads = static_shape(kc[0])[2], hq // group
    mb, _, mr, _ = static_shape(mask)
    if static_shape(mask) != (mb, 1, mr, slots + c) or mb not in (1, b) or mr not in (1, c):
        return None
    cache, new = (b, heads, slots, d), (b, heads, c, d)
    if [static_shape(x) for x in (*kc, *vc)] != [cache, new, cache, new]:
        return None
    attrs = ctx.attrs(node)
    scale = float(np.float32(1 / np.sqrt(d) if attrs["scale"] is None else attrs["scale"]))
    # A decode step is serial (its work costs less than a thread barrier); a chunk is not.
    shape = AttentionShape(
        b, heads, group, slots, c, d, mb, mr, scale, bool(attrs["causal"]), c > 1
    )
    return shape, [q, kc[0], kc[1], vc[0], vc[1], mask]


def _kept_slots(shape: AttentionShape, mask: Value, ctx: LowerContext) -> tuple[Any, Any]:
    """The slot lists and counts of ``mask`` (``kernels_attention.slots_func``): emitted at the
    first layer that attends with this mask and shape, reused by the others (every layer of
    a step reads the same mask; walking its slots per layer cost more than the attention of
    a short prompt). Cached in ``ctx.converted``: another form of the same value."""
    from tvm import relax

    key = (id(mask), shape.slots_name)
    if key not in ctx.converted:
        func = slots_func(shape).with_attr("global_symbol", shape.slots_name)
        gv = ctx.bb.add_func(func, shape.slots_name)
        n = shape.slots + shape.chunk
        out = [
            relax.TensorType((shape.batch, shape.chunk, n), "int32"),
            relax.TensorType((shape.batch, shape.chunk, 2), "int32"),
        ]
        ctx.converted[key] = ctx.emit(relax.call_tir(gv, relax.Tuple([ctx.arg(mask)]), out))
        ctx.kernels["attention_slots"] = ctx.kernels.get("attention_slots", 0) + 1
    slots = ctx.converted[key]
    return ctx.emit(relax.TupleGetItem(slots, 0)), ctx.emit(relax.TupleGetItem(slots, 1))


def cache_attention(node: Node, ctx: LowerContext) -> list[Any] | None:
    """A decode step's or a prefill chunk's attention over ``concat(past, new)`` (repeated
    per query head by ``repeat_kv`` or not) with a boolean mask ``[1 or B, 1, 1 or C,
    slots]``, float32, as one kernel that reads the cache in place and skips the masked
    slots (``backends.tvm.kernels_attention``); None when ``node`` is not one."""
    from tvm import relax

    found = _cache_shape(node, ctx)
    if found is None:
        return None
    shape, (q, pk, nk, pv, nv, mask) = found
    # A chunk reads the slot lists made once per step; a decode step compacts its mask row
    # in the kernel (measured as fast or faster for one query row).
    make = attention_func if shape.parallel else decode_attention_func
    func = make(shape).with_attr("global_symbol", shape.name)
    gv = ctx.bb.add_func(func, shape.name)
    kind = "decode_attention" if shape.chunk == 1 else "prefill_attention"
    ctx.kernels[kind] = ctx.kernels.get(kind, 0) + 1
    rows = (shape.batch, shape.heads, shape.group, shape.chunk, shape.dim)
    qe = ctx.emit(relax.op.reshape(ctx.arg(q), rows))
    slots = list(_kept_slots(shape, mask, ctx)) if shape.parallel else [ctx.arg(mask)]
    args = [qe, *(ctx.arg(x) for x in (pk, nk, pv, nv)), *slots]
    out = ctx.emit(
        relax.call_tir(gv, relax.Tuple(args), relax.TensorType(rows, "float32")),
        node.outputs[0].name,
    )
    return [ctx.emit(relax.op.reshape(out, static_shape(node.outputs[0])))]


LLM_RULES: dict[str, Rule] = {"q.block_dense": Rule(_lower, _check, packs_constants=True)}
