"""Tensor-expression computes of the heavy ops: conv2d (NHWC), dense and batched matmul.

Each compute is written for the schedule in ``backends.tvm.schedules`` and names its blocks so
that the schedule rule can find them after Relax has fused neighbours into the same PrimFunc:

* ``tapeout_pad``: the zero-padded input (materialized, so the inner loop has no bounds test);
* ``tapeout_<kind>``: the reduction (kind = conv2d, dense, bmm), the block the rule tiles;
* ``tapeout_epilogue``: bias, residual, fused activation, crop of the padded channel block and,
  for integer ops, nothing else (requantize is its own IR node).

Weights are packed by the lowering in NumPy (``pack_*``), so the inner loop reads ``block``
consecutive output channels with one vector load: conv weights ``[OC/b, KH, KW, C, b]``,
dense weights ``[N/b, K, b]`` (a float32 dense with a constant weight and few rows, an
LLM's projections, goes to the hand-scheduled ``backends.tvm.kernels_gemv`` instead).
Integer kernels subtract the input zero point before the multiply and accumulate in int32,
exactly as ``compiler.interpreter_nn`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PREFIX = "tapeout_"
KERNEL_KINDS = ("conv2d", "gconv2d", "dense", "bmm")


@dataclass(frozen=True)
class Epilogue:
    """What follows the reduction: activation name and arguments, accumulator dtype."""

    act: str = "none"
    act_args: tuple[float, ...] = ()
    out_channels: int = 0  # the real channel count; the packed block may be larger


def expr_dtype(expr: Any) -> str:
    """The dtype of a TIR expression (a tensor element read included) as a string."""
    if hasattr(expr, "asobject"):
        expr = expr.asobject()
    return str(expr.ty)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def channel_block(channels: int, lanes: int) -> int:
    """The output-channel block: two vectors where the layer is wide enough, else one."""
    return 2 * lanes if channels >= 2 * lanes else lanes


def pack_conv_weight(w: np.ndarray, block: int) -> np.ndarray:
    """OIHW -> [O/b, KH, KW, I, b], zero-padding O up to a multiple of the block."""
    o, i, kh, kw = w.shape
    op = ceil_div(o, block) * block
    padded = np.zeros((op, i, kh, kw), dtype=w.dtype)
    padded[:o] = w
    return np.ascontiguousarray(
        padded.reshape(op // block, block, i, kh, kw).transpose(0, 3, 4, 2, 1)
    )


def pack_dense_weight(w: np.ndarray, block: int) -> np.ndarray:
    """[N, K] -> [N/b, K, b], zero-padding N up to a multiple of the block."""
    n, k = w.shape
    np_ = ceil_div(n, block) * block
    padded = np.zeros((np_, k), dtype=w.dtype)
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(np_ // block, block, k).transpose(0, 2, 1))


def activation(tirx: Any, act: str, args: Sequence[float]) -> Callable[[Any], Any]:
    """The fused activation as a scalar TIR expression builder (float or integer)."""

    def const(v: float, like: Any) -> Any:
        return tirx.const(v, expr_dtype(like))

    def sigmoid(v: Any) -> Any:
        return tirx.sigmoid(v)

    def gelu(v: Any) -> Any:
        return v * const(0.5, v) * (const(1.0, v) + tirx.erf(v * const(1 / np.sqrt(2), v)))

    def gelu_tanh(v: Any) -> Any:
        inner = const(np.sqrt(2 / np.pi), v) * (v + const(0.044715, v) * v * v * v)
        return const(0.5, v) * v * (const(1.0, v) + tirx.tanh(inner))

    table: dict[str, Callable[[Any], Any]] = {
        "none": lambda v: v,
        "relu": lambda v: tirx.max(v, const(0, v)),
        "relu6": lambda v: tirx.min(tirx.max(v, const(0, v)), const(6, v)),
        "clip": lambda v: tirx.min(tirx.max(v, const(args[0], v)), const(args[1], v)),
        "leaky_relu": lambda v: tirx.Select(v >= const(0, v), v, v * const(args[0], v)),
        "sigmoid": sigmoid,
        "silu": lambda v: v * sigmoid(v),
        "gelu": gelu,
        "gelu_tanh": gelu_tanh,
        "hardswish": lambda v: (
            v * tirx.min(tirx.max(v + const(3, v), const(0, v)), const(6, v)) / const(6, v)
        ),
        "tanh": tirx.tanh,
    }
    return table[act]


def apply_epilogue(
    acc: Any,
    out_shape: Sequence[int],
    channel_axis: int,
    bias: Any | None,
    residual: Any | None,
    epi: Epilogue,
) -> Any:
    from tvm import te, tirx

    act = activation(tirx, epi.act, epi.act_args)

    def body(*idx: Any) -> Any:
        v = acc(*idx)
        if bias is not None:
            v = v + bias[idx[channel_axis]].astype(acc.dtype)
        if residual is not None:
            v = v + residual(*idx).astype(acc.dtype)
        return act(v)

    return te.compute(tuple(out_shape), body, name=PREFIX + "epilogue")


def conv2d_nhwc(
    x: Any,
    w: Any,
    bias: Any | None,
    residual: Any | None,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    epi: Epilogue,
    acc_dtype: str = "float32",
    input_zero_point: int = 0,
) -> Any:
    """NHWC conv with packed weights [OC/b, KH, KW, C, b]; returns [N, OH, OW, OC]."""
    from tvm import te, tirx

    n, h, wd, c = (int(d) for d in x.shape)
    ocb, kh, kw, _, block = (int(d) for d in w.shape)
    (sh, sw), (dh, dw) = strides, dilations
    pt, pl, pb, pr = pads[0], pads[1], pads[2], pads[3]
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    is_int = acc_dtype.startswith("int")
    fill = tirx.const(input_zero_point if is_int else 0, x.dtype)
    if any(pads):
        xp = te.compute(
            (n, h + pt + pb, wd + pl + pr, c),
            lambda i, y, z, ch: tirx.if_then_else(
                tirx.all(y >= pt, y < h + pt, z >= pl, z < wd + pl), x[i, y - pt, z - pl, ch], fill
            ),
            name=PREFIX + "pad",
        )
    else:
        xp = x
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    rc = te.reduce_axis((0, c), "rc")

    def operand(i: Any, y: Any, z: Any, o: Any) -> Any:
        a = xp[i, y * sh + rh * dh, z * sw + rw * dw, rc].astype(acc_dtype)
        if is_int and input_zero_point:
            a = a - tirx.const(input_zero_point, acc_dtype)
        return a * w[o // block, rh, rw, rc, o % block].astype(acc_dtype)

    acc = te.compute(
        (n, oh, ow, ocb * block),
        lambda i, y, z, o: te.sum(operand(i, y, z, o), axis=[rh, rw, rc]),
        name=PREFIX + "conv2d",
    )
    out_c = epi.out_channels or ocb * block
    return apply_epilogue(acc, (n, oh, ow, out_c), 3, bias, residual, epi)


def grouped_conv2d_nhwc(
    x: Any,
    w: Any,
    bias: Any | None,
    residual: Any | None,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    groups: int,
    epi: Epilogue,
    acc_dtype: str = "float32",
    input_zero_point: int = 0,
) -> Any:
    """Grouped / depthwise NHWC conv with weights [KH, KW, C/groups, OC]."""
    from tvm import te, tirx

    n, h, wd, c = (int(d) for d in x.shape)
    kh, kw, cg, oc = (int(d) for d in w.shape)
    ocg = oc // groups
    (sh, sw), (dh, dw) = strides, dilations
    pt, pl, pb, pr = pads[0], pads[1], pads[2], pads[3]
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    is_int = acc_dtype.startswith("int")
    fill = tirx.const(input_zero_point if is_int else 0, x.dtype)
    xp = te.compute(
        (n, h + pt + pb, wd + pl + pr, c),
        lambda i, y, z, ch: tirx.if_then_else(
            tirx.all(y >= pt, y < h + pt, z >= pl, z < wd + pl), x[i, y - pt, z - pl, ch], fill
        ),
        name=PREFIX + "pad",
    )
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    rc = te.reduce_axis((0, cg), "rc")

    def operand(i: Any, y: Any, z: Any, o: Any) -> Any:
        a = xp[i, y * sh + rh * dh, z * sw + rw * dw, (o // ocg) * cg + rc].astype(acc_dtype)
        if is_int and input_zero_point:
            a = a - tirx.const(input_zero_point, acc_dtype)
        return a * w[rh, rw, rc, o].astype(acc_dtype)

    acc = te.compute(
        (n, oh, ow, oc),
        lambda i, y, z, o: te.sum(operand(i, y, z, o), axis=[rh, rw, rc]),
        name=PREFIX + "gconv2d",
    )
    return apply_epilogue(acc, (n, oh, ow, oc), 3, bias, residual, epi)


def dense(
    x: Any,
    w: Any,
    bias: Any | None,
    residual: Any | None,
    epi: Epilogue,
    acc_dtype: str = "float32",
    input_zero_point: int = 0,
) -> Any:
    """[M, K] x packed [N/b, K, b] -> [M, N] (+ bias, residual, activation)."""
    from tvm import te, tirx

    m, k = (int(d) for d in x.shape)
    nb, _, block = (int(d) for d in w.shape)
    rk = te.reduce_axis((0, k), "rk")
    is_int = acc_dtype.startswith("int")

    def operand(i: Any, j: Any) -> Any:
        a = x[i, rk].astype(acc_dtype)
        if is_int and input_zero_point:
            a = a - tirx.const(input_zero_point, acc_dtype)
        return a * w[j // block, rk, j % block].astype(acc_dtype)

    acc = te.compute(
        (m, nb * block), lambda i, j: te.sum(operand(i, j), axis=rk), name=PREFIX + "dense"
    )
    out_n = epi.out_channels or nb * block
    return apply_epilogue(acc, (m, out_n), 1, bias, residual, epi)


def bmm(a: Any, b: Any, acc_dtype: str = "float32", zero_points: tuple[int, int] = (0, 0)) -> Any:
    """[B, M, K] x [B, K, N] -> [B, M, N]; a batch of 1 broadcasts."""
    from tvm import te, tirx

    ba, m, k = (int(d) for d in a.shape)
    bb, _, n = (int(d) for d in b.shape)
    rk = te.reduce_axis((0, k), "rk")
    za, zb = zero_points

    def operand(t: Any, batch: int, idx: tuple[Any, Any], zp: int, i: Any) -> Any:
        v = t[i if batch > 1 else 0, idx[0], idx[1]].astype(acc_dtype)
        return v - tirx.const(zp, acc_dtype) if zp else v

    return te.compute(
        (max(ba, bb), m, n),
        lambda i, r, c: te.sum(
            operand(a, ba, (r, rk), za, i) * operand(b, bb, (rk, c), zb, i), axis=rk
        ),
        name=PREFIX + "bmm",
    )
