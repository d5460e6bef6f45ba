"""Rules for pooling: integer max pooling, q.avg_pool2d, and the global pools (pool.h).

Max pooling keeps its input's type, scale and zero point (the interpreter pools the raw
integers; padding never wins). ``q.avg_pool2d`` and ``q.global_avg_pool`` sum ``x - zx`` in
int64 and requantize once with the node's (multiplier, shift), exactly as
``compiler.interpreter_quant`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.hls.design import Cost, Layer
from backends.hls.plan import FLOAT_OPERAND, Lowering
from compiler.ir.graph import Node
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import is_int


def _check_pool(node: Node, low: Lowering) -> str | None:
    x = node.inputs[0]
    if not (is_int(x.dtype) and is_int(node.outputs[0].dtype)):
        return FLOAT_OPERAND
    shape = x.type.shape
    if len(shape) != 4 or shape[0] != 1:
        return f"pooling input {list(shape)}: batch-1 NCHW expected"
    return None


def _window(node: Node, low: Lowering) -> dict[str, object]:
    """The window fields of a pool config; ceil_mode's overhang goes into the end padding."""
    a = low.attrs(node)
    kernel = [int(k) for k in a["kernel"]]
    strides, pads, dil = spatial_params(
        {**a, "strides": a.get("strides") or kernel, "dilations": a.get("dilations")}, 2
    )
    _, c, in_h, in_w = (int(d) for d in node.inputs[0].type.shape)
    out_h, out_w = (int(d) for d in node.outputs[0].type.shape[2:])
    extra = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - (n + p0 + p1))
        for o, s, d, k, n, p0, p1 in zip(
            (out_h, out_w), strides, dil, kernel, (in_h, in_w), pads[:2], pads[2:], strict=True
        )
    ]
    return {
        "in_h": in_h,
        "in_w": in_w,
        "c": c,
        "out_h": out_h,
        "out_w": out_w,
        "k_h": kernel[0],
        "k_w": kernel[1],
        "stride_h": strides[0],
        "stride_w": strides[1],
        "pad_top": pads[0],
        "pad_left": pads[1],
        "pad_bottom": pads[2] + extra[0],
        "pad_right": pads[3] + extra[1],
        "dil_h": dil[0],
        "dil_w": dil[1],
    }


def _pool_cost(cfg: dict[str, object], dsp: bool) -> Cost:
    c, kh, kw = int(cfg["c"]), int(cfg["k_h"]), int(cfg["k_w"])  # type: ignore[call-overload]
    pixels = int(cfg["out_h"]) * int(cfg["out_w"])  # type: ignore[call-overload]
    return Cost(blocks=pixels, lanes=c, fan_in=kh * kw, reads=kh * kw * c, requant_dsp=dsp)


def _pow2(multiplier: int) -> bool:
    return multiplier > 0 and multiplier & (multiplier - 1) == 0


def _pool_layer(
    node: Node,
    low: Lowering,
    kind: str,
    config: dict[str, object] | None,
    call: Callable[[Layer], str],
    cost: Cost,
) -> None:
    name = low.layer_name(node)
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    low.add(Layer(name, kind, node.op, [node], [x], y, call, config, [], cost))


def lower_max_pool(node: Node, low: Lowering) -> None:
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    cfg = {"in_t": x.ctype, **_window(node, low)}
    call = f"({x.name}, {y.name});"
    _pool_layer(
        node,
        low,
        "max_pool2d",
        cfg,
        lambda layer: f"tapeout::max_pool2d<{layer.cfg}>{call}",
        _pool_cost(cfg, False),
    )


def lower_avg_pool(node: Node, low: Lowering) -> None:
    a = low.attrs(node)
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    cfg = {"in_t": x.ctype, "out_t": y.ctype, "acc_t": "int64_t", **_window(node, low)}
    zx, zo = low.zero_point(node.inputs[0]), low.zero_point(node.outputs[0])
    m, s = int(a["multiplier"]), int(a["shift"])
    args = f"({x.name}, {y.name}, {zx}, {m}, {s}, {zo});"
    _pool_layer(
        node,
        low,
        "avg_pool2d",
        cfg,
        lambda layer: f"tapeout::avg_pool2d<{layer.cfg}>{args}",
        _pool_cost(cfg, not _pow2(m)),
    )


def _global_cost(node: Node, dsp: bool) -> Cost:
    _, c, h, w = (int(d) for d in node.inputs[0].type.shape)
    return Cost(blocks=h * w, lanes=c, fan_in=h * w, reads=c, elements=c, requant_dsp=dsp)


def lower_global_avg(node: Node, low: Lowering) -> None:
    a = low.attrs(node)
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    _, c, h, w = (int(d) for d in node.inputs[0].type.shape)
    zx, zo = low.zero_point(node.inputs[0]), low.zero_point(node.outputs[0])
    m, s = int(a["multiplier"]), int(a["shift"])
    fn = f"tapeout::global_avg_pool<{x.ctype}, {y.ctype}, int64_t, {h}, {w}, {c}>"
    call = f"{fn}({x.name}, {y.name}, {zx}, {m}, {s}, {zo});"
    _pool_layer(
        node, low, "global_avg_pool", None, lambda layer: call, _global_cost(node, not _pow2(m))
    )


def lower_global_max(node: Node, low: Lowering) -> None:
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    _, c, h, w = (int(d) for d in node.inputs[0].type.shape)
    call = f"tapeout::global_max_pool<{x.ctype}, {h}, {w}, {c}>({x.name}, {y.name});"
    _pool_layer(node, low, "global_max_pool", None, lambda layer: call, _global_cost(node, False))


def _check_avg(node: Node, low: Lowering) -> str | None:
    reason = _check_pool(node, low)
    if reason:
        return reason
    if not 0 <= int(low.attrs(node)["shift"]) <= 62:
        return "shift out of range"
    return None


POOL_RULES: dict[
    str, tuple[Callable[[Node, Lowering], str | None], Callable[[Node, Lowering], None]]
] = {
    "nn.max_pool2d": (_check_pool, lower_max_pool),
    "q.avg_pool2d": (_check_avg, lower_avg_pool),
    "q.global_avg_pool": (_check_avg, lower_global_avg),
    "nn.global_max_pool": (_check_pool, lower_global_max),
}
"""Pooling rules, merged into backends.hls.rules.RULES."""
