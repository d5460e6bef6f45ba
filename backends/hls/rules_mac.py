"""Rules for the multiply-accumulate layers: integer nn.dense and nn.conv2d.

An integer dense/conv produces the wrapped accumulator (``acc`` dtype) with its fused
activation applied to it; the ``q.requantize`` that normally follows is folded into the same
kernel call (``tapeout::dense`` / ``conv2d`` / ``depthwise_conv2d``, optionally ``_residual``).
The activation on the accumulator becomes clip bounds on the requantized output, exact
because requantize is monotone: ``requant(max(acc, 0)) == max(requant(acc), zp)``. Without a
following requantize the kernel writes the accumulator itself (multiplier 1, shift 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.c_emitter import ctype
from backends.hls.design import Array, Buffer, Cost, Layer
from backends.hls.plan import FLOAT_OPERAND, Lowering
from compiler import numerics
from compiler.ir.graph import Node, Value
from compiler.ir.op_facts import gemm_shape, output_clamp
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import is_int

_ACC_DTYPES = ("i16", "i32", "i64")
_INT32 = numerics.INT_RANGES["i32"]


@dataclass
class Requant:
    """The requantize a MAC layer ends with (fused, or the identity when there is none)."""

    out: Value
    node: Node | None
    dtype: str
    multiplier: np.ndarray
    shift: np.ndarray
    zero_point: int
    lo: int
    hi: int

    @property
    def per_channel(self) -> bool:
        return self.multiplier.size > 1

    @property
    def pow2(self) -> bool:
        return bool(np.all(self.multiplier == 1))


def _act_bounds(node: Node, low: Lowering) -> tuple[int | None, int | None] | str:
    a = low.attrs(node)
    act, args = a["act"], list(a.get("act_args") or [])
    table: dict[str, tuple[int | None, int | None]] = {
        "none": (None, None),
        "relu": (0, None),
        "relu6": (0, 6),
    }
    if act in table:
        return table[act]
    if act == "clip" and all(v is None or float(v).is_integer() for v in args[:2]):
        lo, hi = (args + [None, None])[:2]
        return (None if lo is None else int(lo), None if hi is None else int(hi))
    return f"activation {act!r} on an integer accumulator (only none, relu, relu6, clip)"


def _fusable_requant(node: Node, low: Lowering, channels: int, axis: int) -> Node | None:
    acc = node.outputs[0]
    users = low.users(acc)
    if len(users) != 1 or users[0].op != "q.requantize" or low.is_output(acc):
        return None
    rq = users[0]
    a = low.attrs(rq)
    n = len(a["multiplier"])
    out_qp = rq.outputs[0].type.quant
    if out_qp is not None and len(set(out_qp.zero_point)) > 1:
        return None
    if n == 1:
        return rq
    rank = len(acc.type.shape)
    if n == channels and a["axis"] is not None and a["axis"] % rank == axis:
        return rq
    return None


def requant_of(node: Node, low: Lowering, channels: int, axis: int) -> Requant | str:
    """The requantize ``node`` ends with, and its clip bounds; or why it cannot be lowered."""
    acc_dtype = low.attrs(node)["acc"] or "i32"
    if acc_dtype not in _ACC_DTYPES:
        return f"accumulator {acc_dtype} (only {', '.join(_ACC_DTYPES)})"
    bounds = _act_bounds(node, low)
    if isinstance(bounds, str):
        return bounds
    rq = _fusable_requant(node, low, channels, axis)
    if rq is None:
        if acc_dtype == "i64":
            return "an i64 accumulator must be requantized right away"
        one = np.ones(1, np.int64)
        req = Requant(node.outputs[0], None, acc_dtype, one, one * 0, 0, *_INT32)
    else:
        a = low.attrs(rq)
        mult = np.asarray(a["multiplier"], np.int64)
        shift = np.asarray(a["shift"], np.int64)
        if np.any(shift < 0) or np.any(shift > numerics.MAX_SHIFT) or np.any(mult < 0):
            return f"requantize shift outside [0, {numerics.MAX_SHIFT}] or negative multiplier"
        qp = rq.outputs[0].type.quant
        zp = int(qp.zero_point[0]) if qp is not None else 0  # one zero point (checked)
        lo, hi = output_clamp(a, zp)  # the requantize's own clamp
        req = Requant(rq.outputs[0], rq, a["dtype"], mult, shift, zp, lo, hi)
        act = _requantize_bounds(bounds, req, channels)
        if isinstance(act, str):
            return act
        bounds = act
    req.lo, req.hi = (_clamp(req.lo, bounds), _clamp(req.hi, bounds))
    return req


def _requantize_bounds(
    bounds: tuple[int | None, int | None], req: Requant, channels: int
) -> tuple[int | None, int | None] | str:
    """Accumulator bounds mapped through the (per-channel) requantize: one value each."""
    out: list[int | None] = []
    for b in bounds:
        if b is None:
            out.append(None)
            continue
        acc = np.full(channels if req.per_channel else 1, b, np.int64)
        vals = numerics.requantize(
            acc, req.multiplier, req.shift, req.zero_point, req.dtype, axis=0
        )
        if len(set(vals.tolist())) != 1:
            return "activation bound requantizes to different values per channel"
        out.append(int(vals[0]))
    return out[0], out[1]


def _clamp(v: int, bounds: tuple[int | None, int | None]) -> int:
    """np.clip semantics: min(max(v, lo), hi)."""
    lo, hi = bounds
    if lo is not None:
        v = max(v, int(lo))
    if hi is not None:
        v = min(v, int(hi))
    return v


def _weights_reason(node: Node, low: Lowering) -> str | None:
    x, w = node.inputs[0], node.inputs[1]
    if not is_int(x.dtype):
        return FLOAT_OPERAND
    data = low.const(w)
    if data is None or not is_int(w.dtype):
        return "weights must be integer constants"
    if w.type.quant is not None and any(z != 0 for z in w.type.quant.zero_point):
        return "asymmetric weights (zero point != 0)"
    if len(node.inputs) > 2:
        bias = low.const(node.inputs[2])
        if bias is None or not is_int(node.inputs[2].dtype):
            return "bias must be an integer constant"
        lo, hi = _INT32
        if bias.size and (int(bias.min()) < lo or int(bias.max()) > hi):
            return "bias does not fit int32"
    if len(node.inputs) > 3:
        r = node.inputs[3]
        if not is_int(r.dtype) or tuple(r.type.shape) != tuple(node.outputs[0].type.shape):
            return "residual must be an integer tensor of the output's shape"
    return None


def check_dense(node: Node, low: Lowering) -> str | None:
    reason = _weights_reason(node, low)
    if reason:
        return reason
    x, w = node.inputs[0], node.inputs[1]
    shape = x.type.shape
    if not x.type.is_static or x.type.numel != w.type.shape[1]:
        return f"dense input {list(shape)}: one sample of {w.type.shape[1]} features expected"
    rank = len(node.outputs[0].type.shape)
    req = requant_of(node, low, int(w.type.shape[0]), rank - 1)
    return req if isinstance(req, str) else None


def check_conv2d(node: Node, low: Lowering) -> str | None:
    reason = _weights_reason(node, low)
    if reason:
        return reason
    shape = node.inputs[0].type.shape
    if len(shape) != 4 or shape[0] != 1:
        return f"conv2d input {list(shape)}: batch-1 NCHW expected"
    req = requant_of(node, low, int(node.inputs[1].type.shape[0]), 1)
    return req if isinstance(req, str) else None


def _arrays(name: str, node: Node, low: Lowering, w: np.ndarray, req: Requant) -> list[Array]:
    n_out = w.shape[0]
    bias = (
        low.const(node.inputs[2]).astype(np.int64)  # type: ignore[union-attr]
        if len(node.inputs) > 2
        else np.zeros(n_out, np.int64)
    )
    return [
        Array(f"{name}_w", ctype(node.inputs[1].dtype), w),
        Array(f"{name}_b", "int32_t", bias.reshape(-1)),
        Array(f"{name}_m", "int32_t", req.multiplier),
        Array(f"{name}_s", "int32_t", req.shift),
    ]


def _types(node: Node, req: Requant) -> dict[str, object]:
    return {
        "in_t": ctype(node.inputs[0].dtype),
        "weight_t": ctype(node.inputs[1].dtype),
        "out_t": ctype(req.dtype),
        "acc_t": ctype(str(node.attrs.get("acc") or "i32")),
    }


def _kernel_inputs(kernel: str, node: Node, low: Lowering) -> tuple[str, list[Buffer]]:
    """Kernel name (``_residual`` with a residual operand) and the buffers it reads."""
    x = low.buffer(node.inputs[0])
    if len(node.inputs) > 3:
        return f"{kernel}_residual", [x, low.buffer(node.inputs[3])]
    return kernel, [x]


def _mac_layer(
    node: Node,
    low: Lowering,
    kernel: str,
    w: np.ndarray,
    channels: int,
    axis: int,
    config: dict[str, object],
    cost: Cost,
) -> None:
    req = requant_of(node, low, channels, axis)
    assert not isinstance(req, str), req
    name = low.layer_name(node)
    fn, inputs = _kernel_inputs(kernel, node, low)
    out = low.buffer(req.out)
    in_zp = low.zero_point(node.inputs[0])
    tail = f"{in_zp}, {req.zero_point}, {req.lo}, {req.hi}"

    def call(layer: Layer) -> str:
        ins = ", ".join(b.name for b in inputs)
        args = f"{ins}, {out.name}, {name}_w, {name}_b, {name}_m, {name}_s, {tail}"
        if len(inputs) > 1:
            res_t = inputs[1].ctype
            return (
                f"tapeout::{fn}<{layer.cfg}, {res_t}>({args}, "
                f"tapeout::residual_params{{0, 1, 0, 0}}, {name}_rm);"
            )
        return f"tapeout::{fn}<{layer.cfg}>({args});"

    arrays = _arrays(name, node, low, w, req)
    if len(inputs) > 1:  # the interpreter adds the raw residual to the accumulator
        arrays.append(Array(f"{name}_rm", "int32_t", np.ones(req.multiplier.size, np.int64)))
    nodes = [node] + ([req.node] if req.node is not None else [])
    for extra in nodes[1:]:
        low.cover(extra)
    cost.requant_dsp = not req.pow2
    op = "+".join(n.op for n in nodes)
    config = {
        **_types(node, req),
        **config,
        "per_channel": req.per_channel,
        "requant_pow2": req.pow2,
    }
    low.add(
        Layer(
            name,
            kernel,
            op,
            nodes,
            inputs,
            out,
            call,
            config,
            arrays,
            cost,
            tunable=True,
            max_rf=max(1, cost.macs),
        )
    )


def _bits(dtype: str) -> int:
    return 8 * np.dtype(ctype(dtype).replace("_t", "")).itemsize


def lower_dense(node: Node, low: Lowering) -> None:
    w = np.asarray(low.const(node.inputs[1]))
    perm = low.buffer(node.inputs[0]).perm
    if perm is not None:  # the input is an NHWC array read as flat: permute the weights
        w = np.ascontiguousarray(w[:, perm])
    _, n_in, n_out = gemm_shape(node)
    cost = Cost(
        macs=n_in * n_out,
        nonzero=int(np.count_nonzero(w)),
        fan_in=n_in,
        lanes=n_out,
        weight_count=w.size,
        weight_bits=_bits(node.inputs[1].dtype),
        operand_bits=max(_bits(node.inputs[0].dtype), _bits(node.inputs[1].dtype)),
        reads=n_in,
    )
    rank = len(node.outputs[0].type.shape)
    _mac_layer(node, low, "dense", w, n_out, rank - 1, {"n_in": n_in, "n_out": n_out}, cost)


def lower_conv2d(node: Node, low: Lowering) -> None:
    a = low.attrs(node)
    w_oihw = np.asarray(low.const(node.inputs[1]))
    strides, pads, dil = spatial_params(a, 2)
    groups = int(a["groups"])
    _, in_c, in_h, in_w = (int(d) for d in node.inputs[0].type.shape)
    _, out_c, out_h, out_w = (int(d) for d in node.outputs[0].type.shape)
    k_h, k_w = int(w_oihw.shape[2]), int(w_oihw.shape[3])
    config: dict[str, object] = {
        "in_h": in_h,
        "in_w": in_w,
        "in_c": in_c,
        "out_h": out_h,
        "out_w": out_w,
        "out_c": out_c,
        "k_h": k_h,
        "k_w": k_w,
        "stride_h": strides[0],
        "stride_w": strides[1],
        "pad_top": pads[0],
        "pad_left": pads[1],
        "pad_bottom": pads[2],
        "pad_right": pads[3],
        "dil_h": dil[0],
        "dil_w": dil[1],
        "groups": groups,
    }
    _, window, _ = gemm_shape(node)  # window: k_h * k_w * in_c / groups
    cost = Cost(
        macs=window * out_c,  # per output pixel
        nonzero=int(np.count_nonzero(w_oihw)),
        blocks=out_h * out_w,
        fan_in=window,
        lanes=out_c,
        weight_count=w_oihw.size,
        weight_bits=_bits(node.inputs[1].dtype),
        operand_bits=max(_bits(node.inputs[0].dtype), _bits(node.inputs[1].dtype)),
        reads=k_h * k_w * in_c,
    )
    kernel = "depthwise_conv2d" if groups == in_c and groups > 1 else "conv2d"
    w = np.ascontiguousarray(np.transpose(w_oihw, (0, 2, 3, 1)))  # OIHW -> OHWI
    _mac_layer(node, low, kernel, w, out_c, 1, config, cost)
