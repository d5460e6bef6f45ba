"""Interpreter table, part 3: the integer ops of quantized graphs (``compiler.ir.ops_quant``).

Everything here is exact integer arithmetic in int64, defined by ``compiler.numerics``; the
op table's module docstring gives the formulas.
"""

from __future__ import annotations

import numpy as np

from compiler import numerics
from compiler.interpreter_context import Context, impl
from compiler.interpreter_nn import pad_spatial, windows
from compiler.ir.graph import Node
from compiler.ir.op_facts import clamps, output_clamp, zero_point
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import QuantParams


def clamp_output(out: np.ndarray, node: Node, zo: int) -> np.ndarray:
    """``out`` clamped to the node's ``output_clamp`` (relu, clip_min/clip_max)."""
    if not clamps(node.attrs, zo):
        return out
    lo, hi = output_clamp(node.attrs, zo)
    return np.clip(out, lo, hi).astype(out.dtype)


@impl("q.add")
def _qadd(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = xs[0].astype(np.int64) - zero_point(node.inputs[0])
    b = xs[1].astype(np.int64) - zero_point(node.inputs[1])
    acc = a * np.int64(node.attrs["a_multiplier"]) + b * np.int64(node.attrs["b_multiplier"])
    zo = zero_point(node.outputs[0])
    out = numerics.requantize(
        acc, 1, int(node.attrs["shift"]), zo, node.attrs["dtype"], counter=ctx.counter(node)
    )
    return [clamp_output(out, node, zo)]


@impl("q.avg_pool2d")
def _qavg_pool2d(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    kernel = list(a["kernel"])
    strides, pads, dil = spatial_params({**a, "strides": a.get("strides") or kernel}, 2)
    x = xs[0].astype(np.int64) - zero_point(node.inputs[0])  # padding below is then real 0
    sums = windows(pad_spatial(x, pads, 0), kernel, strides, dil).sum(axis=(-2, -1))
    out_h, out_w = node.outputs[0].type.shape[2:]
    acc = sums[:, :, :out_h, :out_w]
    return [_requantize(ctx, node, acc)]


@impl("q.global_avg_pool")
def _qglobal_avg_pool(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0].astype(np.int64) - zero_point(node.inputs[0])
    acc = x.sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return [_requantize(ctx, node, acc)]


def _requantize(ctx: Context, node: Node, acc: np.ndarray) -> np.ndarray:
    a = node.attrs
    return numerics.requantize(
        acc,
        int(a["multiplier"]),
        int(a["shift"]),
        zero_point(node.outputs[0]),
        a["dtype"],
        counter=ctx.counter(node),
    )


def expand_groups(qp: QuantParams, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Block-wise scales and zero points repeated to one per element of a ``shape`` tensor."""
    assert qp.axis is not None and qp.group_size is not None
    axis = qp.axis % len(shape)
    blocked = list(shape)
    blocked[axis] = shape[axis] // qp.group_size
    scale = np.repeat(qp.scale_array().reshape(blocked), qp.group_size, axis=axis)
    zp = np.repeat(qp.zero_point_array().reshape(blocked), qp.group_size, axis=axis)
    return scale, zp


@impl("q.softmax")
def _qsoftmax(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = node.inputs[0]
    assert x.type.quant is not None
    p = numerics.int_softmax(xs[0], zero_point(x), float(x.type.quant.scale[0]))
    return [_requantize(ctx, node, p)]


@impl("q.layernorm")
def _qlayernorm(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    eps = int(node.attrs.get("eps_int", 0))
    z = numerics.int_layernorm_z(xs[0], zero_point(node.inputs[0]), eps)
    gamma, beta = (a.astype(np.int64) for a in xs[1:3])
    acc = z * gamma + np.left_shift(beta, 16)
    shift = 2 * numerics.LAYERNORM_BITS  # z is Q16, gamma Q16 of the output scale
    zo = zero_point(node.outputs[0])
    return [numerics.requantize(acc, 1, shift, zo, node.attrs["dtype"], counter=ctx.counter(node))]
