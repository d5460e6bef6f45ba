"""Lowering rules, part 3: the quantization ops, in integer arithmetic that matches
``compiler.numerics`` bit for bit.

* ``q.quantize``: ``saturate(rint(x / scale) + zp)``, the division in float32 and ``rint``
  half to even (``nearbyint``), as the interpreter and ONNX QuantizeLinear do.
* ``q.dequantize``: ``(q - zp) * scale`` in float32.
* ``q.requantize``: int64 product, ``+ 2^(shift-1)``, arithmetic ``>> shift``, ``+ zp``,
  saturate (``backends.tvm.te_ops.requantize``).

All three are elementwise, so they keep the NHWC layout of a conv output; a per-channel
parameter along axis 1 then indexes axis 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm import te_ops
from backends.tvm.lower import NCHW, NHWC, LowerContext, Rule, tvm_dtype
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import output_clamp, zero_point
from compiler.ir.types import QuantParams
from compiler.numerics import INT_RANGES


def _layout_axis(ctx: LowerContext, value: Value, axis: int | None) -> tuple[str, int | None]:
    layout = ctx.layout(value) if value.type.rank == 4 else NCHW
    if axis is None:
        return layout, None
    axis = axis % value.type.rank
    return layout, ((0, 3, 1, 2)[axis] if layout == NHWC else axis)


def _param(values: Sequence[float | int] | np.ndarray, dtype: str) -> Any:
    from tvm import relax

    return relax.const(np.asarray(values, dtype=dtype), dtype)


def quantize_te(x: Any, scale: Any, zp: Any, axis: int | None, dtype: str, ir_dtype: str) -> Any:
    from tvm import te, tirx

    lo, hi = INT_RANGES[ir_dtype]

    def at(p: Any, i: Sequence[Any], cast: str) -> Any:
        if isinstance(p, float | int):
            return tirx.const(p, cast)
        assert axis is not None
        return p[i[axis]]

    ftype = str(x.dtype)  # float32, or float64 when it comes from a float64 island

    def body(*i: Any) -> Any:
        z = at(zp, i, "int32")
        v = tirx.nearbyint(x(*i) / at(scale, i, "float32").astype(ftype))
        v = tirx.min(tirx.max(v, (lo - z).astype(ftype)), (hi - z).astype(ftype))
        return (v.astype("int32") + z).astype(dtype)

    return te.compute(x.shape, body, name="quantize")


def dequantize_te(
    q: Any, scale: Any, zp: Any, axis: int | None, ftype: str = "float32"
) -> Any:
    from tvm import te, tirx

    def at(p: Any, i: Sequence[Any], cast: str) -> Any:
        if isinstance(p, float | int):
            return tirx.const(p, cast)
        assert axis is not None
        return p[i[axis]]

    def body(*i: Any) -> Any:
        d = (q(*i).astype("int64") - at(zp, i, "int64")).astype(ftype)
        return d * at(scale, i, "float32").astype(ftype)

    return te.compute(q.shape, body, name="dequantize")


def _scalezero_point(ctx: LowerContext, qp: QuantParams) -> tuple[Any, Any]:
    if qp.axis is None:
        return float(np.float32(qp.scale[0])), int(qp.zero_point[0])
    return _param(qp.scale, "float32"), _param(qp.zero_point, "int32")


def _quantize(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, out = node.inputs[0], node.outputs[0]
    qp = out.type.quant
    assert qp is not None
    layout, axis = _layout_axis(ctx, x, qp.axis)
    scale, zp = _scalezero_point(ctx, qp)
    ctx.set_layout(out, layout)
    return [
        ctx.emit_te(quantize_te, ctx.arg(x, layout), scale, zp, axis, tvm_dtype(out), out.dtype)
    ]


def _dequantize(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, out = node.inputs[0], node.outputs[0]
    qp = x.type.quant
    assert qp is not None
    data = ctx.const(x)
    if data is not None:  # a quantized weight (int4 groups included): dequantize it now
        from tvm import relax

        from compiler.interpreter import IMPLS, Context

        folded = IMPLS[node.op](Context(ctx.graph), node, [data])[0]
        return [relax.const(np.asarray(folded, dtype=np.float32), "float32")]
    layout, axis = _layout_axis(ctx, x, qp.axis)
    scale, zp = _scalezero_point(ctx, qp)
    ctx.set_layout(out, layout)
    # Fused into a following float add, LLVM contracts the multiply into an FMA (one rounding
    # instead of two): in a float64 island the difference is far below what the island's
    # quantize or float32 output can see; float32 islands are not bit-exact anyway (they are
    # the fast mode, see passes/quant/rewrite.py).
    ftype = tvm_dtype(out)
    return [ctx.emit_te(dequantize_te, ctx.arg(x, layout), scale, zp, axis, ftype)]


def _requantize(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, out = node.inputs[0], node.outputs[0]
    a = ctx.attrs(node)
    mult, shift = [int(v) for v in a["multiplier"]], [int(v) for v in a["shift"]]
    qp = out.type.quant
    zps = [int(z) for z in qp.zero_point] if qp is not None else [0]
    per_channel = len(mult) > 1 or len(zps) > 1
    axis = a["axis"] if a["axis"] is not None else (qp.axis if qp is not None else None)
    layout, axis = _layout_axis(ctx, x, axis if per_channel else None)
    channels = int(x.type.shape[a["axis"] if a["axis"] is not None else 1]) if per_channel else 1

    def param(values: list[int]) -> Any:
        if not per_channel:
            return values[0]
        return _param(np.broadcast_to(np.asarray(values), (channels,)), "int64")

    ctx.set_layout(out, layout)
    clip = output_clamp(a, 0)  # the dtype range narrowed by clip_min/clip_max
    return [
        ctx.emit_te(
            te_ops.requantize,
            ctx.arg(x, layout),
            param(mult),
            param(shift),
            param(zps),
            axis,
            tvm_dtype(out),
            out.dtype,
            clip,
        )
    ]


def _qadd(node: Node, ctx: LowerContext) -> Sequence[Any]:
    a, b = node.inputs
    out = node.outputs[0]
    layout = ctx.common_layout(node)
    shape = tuple(int(d) for d in out.type.shape)
    if layout == NHWC:
        shape = (shape[0], shape[2], shape[3], shape[1])
    zo = zero_point(out)
    ctx.set_layout(out, layout)
    return [
        ctx.emit_te(
            te_ops.qadd,
            ctx.arg_in(a, layout),
            ctx.arg_in(b, layout),
            shape,
            (zero_point(a), zero_point(b), zo),
            (int(node.attrs["a_multiplier"]), int(node.attrs["b_multiplier"])),
            int(node.attrs["shift"]),
            output_clamp(node.attrs, zo),
            tvm_dtype(out),
        )
    ]


def _qpool(global_pool: bool) -> Any:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        from compiler.ir.ops_nn import spatial_params

        x, out = node.inputs[0], node.outputs[0]
        layout = ctx.layout(x) if x.type.rank == 4 else NCHW
        xs = tuple(int(d) for d in x.type.shape)
        shape = tuple(int(d) for d in out.type.shape)
        spatial = list(range(2, len(xs)))
        if global_pool:
            kernel, strides, pads = list(xs[2:]), [1] * len(spatial), [0] * len(spatial)
        else:
            a = ctx.attrs(node)
            kernel = [int(k) for k in a["kernel"]]
            strides, all_pads, _ = spatial_params({**a, "strides": a["strides"] or kernel}, 2)
            pads = all_pads[:2]
        if layout == NHWC:
            shape = (shape[0], shape[2], shape[3], shape[1])
            spatial = [1, 2]
        zx = zero_point(x)
        total = ctx.emit_te(
            te_ops.qpool_sum, ctx.arg(x, layout), spatial, kernel, strides, pads, shape, zx
        )
        zo = zero_point(out)
        ctx.set_layout(out, layout)
        return [
            ctx.emit_te(
                te_ops.requantize_scalar,
                total,
                int(node.attrs["multiplier"]),
                int(node.attrs["shift"]),
                zo,
                output_clamp(node.attrs, zo),
                tvm_dtype(out),
            )
        ]

    return lower


def _has_quant(index: int, where: str) -> Any:
    def check(node: Node, graph: Graph) -> str | None:
        values = node.inputs if where == "in" else node.outputs
        if values[index].type.quant is None:
            return f"the {where}put type has no scale"
        return None

    return check


QUANT_RULES: dict[str, Rule] = {
    "q.quantize": Rule(_quantize, _has_quant(0, "out"), layouts=True),
    "q.dequantize": Rule(_dequantize, _has_quant(0, "in"), layouts=True),
    "q.requantize": Rule(_requantize, layouts=True),
    "q.add": Rule(_qadd, layouts=True),
    "q.avg_pool2d": Rule(_qpool(False), layouts=True),
    "q.global_avg_pool": Rule(_qpool(True), layouts=True),
}
