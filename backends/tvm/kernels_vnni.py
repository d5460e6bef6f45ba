"""int8 conv2d / dense for CPUs with AVX-512 VNNI (``vpdpbusd``: u8 x s8 -> s32, exact).

``vpdpbusd`` multiplies unsigned by signed bytes, four products summed into each int32 lane,
without saturation, so the int32 result equals the interpreter's wrapped sum exactly. The
activations are made unsigned by adding 128 (``u = x + 128`` for i8; u8 stays as is), which
moves the zero point too::

    sum((x - zp) * w) = sum(u * w) - (128 + zp) * sum(w)     (i8;  u8: zp * sum(w))

The constant ``(128 + zp) * sum(w[oc])`` is folded into the bias at compile time. Padding
takes the shifted zero point ``zp + 128`` (so it contributes real zero), and the reduction
channels are padded to a multiple of 4 with zero weights.

Packed weights: conv ``[OC/16, KH, KW, C4/4, 16, 4]``, dense ``[N/16, K4/4, 16, 4]``: the
inner ``16 x 4`` bytes are one 512-bit operand of ``vpdpbusd``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels import PREFIX, Epilogue, apply_epilogue, ceil_div

VNNI_KINDS = ("vconv2d", "vdense")
LANES = 16


def shift_of(dtype: str) -> int:
    """What makes the activation unsigned: +128 for i8, 0 for u8."""
    return 128 if dtype == "i8" else 0


def pack_conv(w: np.ndarray) -> np.ndarray:
    """OIHW int8 -> [OC/16, KH, KW, C4/4, 16, 4] with zero padding."""
    o, c, kh, kw = w.shape
    op, cp = ceil_div(o, LANES) * LANES, ceil_div(c, 4) * 4
    padded = np.zeros((op, cp, kh, kw), dtype=np.int8)
    padded[:o, :c] = w
    blocked = padded.reshape(op // LANES, LANES, cp // 4, 4, kh, kw)
    return np.ascontiguousarray(blocked.transpose(0, 4, 5, 2, 1, 3))


def pack_dense(w: np.ndarray) -> np.ndarray:
    """[N, K] int8 -> [N/16, K4/4, 16, 4] with zero padding."""
    n, k = w.shape
    np_, kp = ceil_div(n, LANES) * LANES, ceil_div(k, 4) * 4
    padded = np.zeros((np_, kp), dtype=np.int8)
    padded[:n, :k] = w
    return np.ascontiguousarray(
        padded.reshape(np_ // LANES, LANES, kp // 4, 4).transpose(0, 2, 1, 3)
    )


def folded_bias(w: np.ndarray, bias: np.ndarray | None, zero_point: int, shift: int) -> np.ndarray:
    """bias - (shift + zp) * sum(w[oc]), wrapped to int32 as the accumulator wraps."""
    total = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    b = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    out = b - (shift + zero_point) * total
    return ((out + 2**31) % 2**32 - 2**31).astype(np.int32)


def widen_channels(x: Any, shift: int) -> Any:
    """NHWC int8/uint8 -> uint8 ``x + shift`` with the channels padded to a multiple of 4
    (the padded channels meet zero weights, so 0 will do). Done by an injective op of its
    own, it fuses with the quantize before it, and the conv's padded copy then moves whole
    4-byte pixels instead of picking bytes (an RGB image's 3 channels)."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)

    def body(i: Any, y: Any, z: Any, ch: Any) -> Any:
        v = x[i, y, z, tirx.min(ch, c - 1)].astype("int32") + shift
        return tirx.if_then_else(ch < c, v, 0).astype("uint8")

    return te.compute((n, h, w, ceil_div(c, 4) * 4), body, name="vnni_channels")


def conv2d(
    x: Any,
    w: Any,
    bias: Any,
    residual: Any | None,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    epi: Epilogue,
    zero_point: int,
    shift: int,
) -> Any:
    """NHWC int8/uint8 conv with VNNI-packed weights; ``bias`` is the folded bias."""
    from tvm import te, tirx

    n, h, wd, c = (int(d) for d in x.shape)
    ocb, kh, kw, c4, _, _ = (int(d) for d in w.shape)
    (sh, sw), (dh, dw) = strides, dilations
    pt, pl, pb, pr = pads[0], pads[1], pads[2], pads[3]
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    fill = tirx.const(zero_point + shift, "int32")

    def unsigned(i: Any, y: Any, z: Any, ch: Any) -> Any:
        inside = tirx.all(y >= pt, y < h + pt, z >= pl, z < wd + pl, ch < c)
        v = x[i, y - pt, z - pl, tirx.min(ch, c - 1)].astype("int32") + shift
        return tirx.if_then_else(inside, v, tirx.if_then_else(ch < c, fill, 0)).astype("uint8")

    xu = te.compute((n, h + pt + pb, wd + pl + pr, c4 * 4), unsigned, name=PREFIX + "pad")
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    rc = te.reduce_axis((0, c4), "rc")
    rk = te.reduce_axis((0, 4), "rk")
    acc = te.compute(
        (n, oh, ow, ocb * LANES),
        lambda i, y, z, o: te.sum(
            xu[i, y * sh + rh * dh, z * sw + rw * dw, rc * 4 + rk].astype("int32")
            * w[o // LANES, rh, rw, rc, o % LANES, rk].astype("int32"),
            axis=[rh, rw, rc, rk],
        ),
        name=PREFIX + "vconv2d",
    )
    return apply_epilogue(acc, (n, oh, ow, epi.out_channels), 3, bias, residual, epi)


def dense(
    x: Any, w: Any, bias: Any, residual: Any | None, epi: Epilogue, zero_point: int, shift: int
) -> Any:
    """[M, K] int8/uint8 x VNNI-packed [N/16, K4/4, 16, 4] -> [M, N] int32 (+ epilogue)."""
    from tvm import te, tirx

    m, k = (int(d) for d in x.shape)
    nb, k4, _, _ = (int(d) for d in w.shape)

    def unsigned(i: Any, j: Any) -> Any:
        v = x[i, tirx.min(j, k - 1)].astype("int32") + shift
        return tirx.if_then_else(j < k, v, 0).astype("uint8")

    xu = te.compute((m, k4 * 4), unsigned, name=PREFIX + "pad")
    rc = te.reduce_axis((0, k4), "rc")
    rk = te.reduce_axis((0, 4), "rk")
    acc = te.compute(
        (m, nb * LANES),
        lambda i, j: te.sum(
            xu[i, rc * 4 + rk].astype("int32") * w[j // LANES, rc, j % LANES, rk].astype("int32"),
            axis=[rc, rk],
        ),
        name=PREFIX + "vdense",
    )
    return apply_epilogue(acc, (m, epi.out_channels), 1, bias, residual, epi)
