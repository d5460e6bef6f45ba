"""ONNX rule for ``q.block_dense`` (block-quantized LLM weights), in standard float ops.

The activations are quantized per row and per block as ``compiler.numerics.block_dense``
does (``Round`` is half to even, like ``rint``); the integer dot products run as a float
``MatMul``, exact (|sums| < 2^21 < 2^24; with 16-bit codes the sums round to float32).
The block terms are then scaled and summed in
float32 in whatever order onnxruntime picks, so the result matches the interpreter closely,
not bit for bit (the interpreter adds exact float64 products in block order).
"""

from __future__ import annotations

import numpy as np

from backends.onnx.emitter import Emitter
from compiler.ir.graph import Node
from compiler.numerics import ACT_LEVELS


def lower_block_dense(node: Node, em: Emitter) -> list:
    x, qv = node.inputs[0], node.inputs[1]
    q = em.graph.const_value(qv)
    d = em.graph.const_value(node.inputs[2])
    assert q is not None and d is not None
    n, k = q.shape
    blocks = d.shape[1]
    group = k // blocks
    lead = [int(s) for s in x.type.shape[:-1]]
    rows = int(np.prod(lead)) if lead else 1
    # [R, B, g] activations; per-block scale dx = max|x| / 127 (zero blocks stay zero).
    xb = em.emit1("Reshape", [em.arg(0), em.i64([rows, blocks, group])])
    absx = em.emit1("Abs", [xb])
    if em.opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        amax = em.emit1("ReduceMax", [absx, em.i64([-1])], keepdims=1)
    else:
        amax = em.emit1("ReduceMax", [absx], keepdims=1, axes=[-1])
    levels = float(ACT_LEVELS[int(node.attrs.get("act_bits", 8))])
    dx = em.emit1("Div", [amax, em.scalar(levels)])
    safe = em.emit1("Where", [em.emit1("Greater", [dx, em.scalar(0.0)]), dx, em.scalar(1.0)])
    qx = em.emit1("Clip", [em.emit1("Round", [em.emit1("Div", [xb, safe])]),
                           em.scalar(-128.0 if levels == 127 else -levels),
                           em.scalar(levels)])  # fmt: skip
    # isum[B, R, N] = qx[B, R, g] @ q[B, g, N]
    qt = np.ascontiguousarray(q.astype(np.float32).reshape(n, blocks, group).transpose(1, 2, 0))
    isum = em.emit1("MatMul", [em.emit1("Transpose", [qx], perm=[1, 0, 2]), em.const(qt, "q")])
    dxt = em.emit1("Transpose", [dx], perm=[1, 0, 2])  # [B, R, 1]
    dt = em.const(d.astype(np.float32).T.reshape(blocks, 1, n), "d")
    terms = em.emit1("Mul", [em.emit1("Mul", [dt, dxt]), isum])
    if len(node.inputs) > 3:
        m = em.graph.const_value(node.inputs[3])
        assert m is not None
        xsum = em.emit1("ReduceSum", [qx, em.i64([-1])], keepdims=1)  # [R, B, 1]
        c = em.emit1("Transpose", [em.emit1("Mul", [dx, xsum])], perm=[1, 0, 2])
        mt = em.const(m.astype(np.float32).T.reshape(blocks, 1, n), "m")
        terms = em.emit1("Add", [terms, em.emit1("Mul", [mt, c])])
    total = em.emit1("ReduceSum", [terms, em.i64([0])], keepdims=0)  # [R, N]
    return [em.emit1("Reshape", [total, em.i64([*lead, n])])]
