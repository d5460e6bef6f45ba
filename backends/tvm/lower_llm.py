"""Lowering rules, part 4: block-quantized LLM weights (``q.block_dense``).

The weight, its scales and offsets are packed once at compile time
(``backends.tvm.kernels_blocks.pack``) and the node becomes one ``call_tir`` of a kernel
written for its shape, already scheduled (rows of 16 outputs in parallel, VNNI where the
target has it), so the default schedules leave it alone. Leading dimensions of the input
(batch, tokens) are flattened into the kernel's rows: a prefill runs every token through
each weight block while the block is in L1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels_blocks import LANES, block_dense_func, layout_for, pack
from backends.tvm.lower import LowerContext, Rule, static_shape
from compiler.ir.graph import Graph, Node

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


def _lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    x, qv = node.inputs[0], node.inputs[1]
    n, k = static_shape(qv)
    consts = [ctx.const(v) for v in node.inputs[1:]]
    q, d = consts[0], consts[1]
    m = consts[2] if len(consts) > 2 else None
    assert q is not None and d is not None
    scale = _SCALE_DTYPES[node.inputs[2].dtype]
    layout = layout_for(qv.dtype, n, k, int(node.attrs["group"]), m is not None, scale)
    packed = pack(layout, q, d, m)
    tiles = (layout.tiles, layout.blocks, LANES)
    mins = packed[2] if layout.has_min else np.zeros(tiles, packed[1].dtype)
    sums = packed[-1] if layout.signed8 else np.zeros(tiles, np.int32)
    shape = static_shape(x)
    rows = math.prod(shape[:-1])
    # One kernel per shape: the symbol names it, and identical kernels are added once.
    name = f"tapeout_block_dense_{layout.bits}b_{n}x{k}_g{layout.group}_r{rows}"
    name += ("_min" if layout.has_min else "") + ("_vnni" if ctx.params.vnni else "")
    func = block_dense_func(layout, rows, ctx.params.vnni).with_attr("global_symbol", name)
    gv = ctx.bb.add_func(func, name)
    ctx.kernels["block_dense"] = ctx.kernels.get("block_dense", 0) + 1
    x2 = ctx.emit(relax.op.reshape(ctx.arg(x), (rows, k)))
    args = [x2, relax.const(packed[0], "uint8"), relax.const(packed[1], scale)]
    args += [relax.const(mins, scale), relax.const(sums, "int32")]
    y = ctx.emit(
        relax.call_tir(gv, relax.Tuple(args), relax.TensorType((rows, n), "float32")),
        node.outputs[0].name,
    )
    return [ctx.emit(relax.op.reshape(y, static_shape(node.outputs[0])))]


LLM_RULES: dict[str, Rule] = {"q.block_dense": Rule(_lower, _check, packs_constants=True)}
