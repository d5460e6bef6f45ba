"""The HLS backend's rule table: IR op -> ``Rule`` (check, lower; ``compiler.rules``).

``check(node, low)`` returns why the node cannot be lowered (None if it can); it runs for
every node before anything is built, so ``unsupported()`` lists all problems at once.
``lower(node, low)`` appends kernel calls (``Layer``) to the design. Adding an op means adding
one entry here (and a kernel in include/tapeout/ if none fits); the test suite checks that
every op in the table is lowered by at least one test graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from backends.hls.design import Array, Buffer, Cost, Layer
from backends.hls.islands import island_table, tabulable
from backends.hls.plan import FLOAT_OPERAND, Lowering, ir_order
from backends.hls.rules_mac import check_conv2d, check_dense, lower_conv2d, lower_dense
from backends.hls.rules_pool import POOL_RULES
from compiler import numerics
from compiler.ir.graph import Node, Value
from compiler.ir.op_facts import clamps, output_clamp, view_ops
from compiler.ir.types import is_int
from compiler.rules import Rule as SharedRule

#: A dataflow rule (the shared contract of ``compiler.rules``): ``check(node, low)`` and
#: ``lower(node, low)``, both on the design's ``Lowering``.
Rule = SharedRule[Lowering, Lowering]


def int_only(node: Node, low: Lowering) -> str | None:
    """FLOAT_OPERAND unless every non-constant operand and result is an integer tensor."""
    values = [v for v in node.inputs if not v.is_const] + list(node.outputs)
    return None if all(is_int(v.dtype) for v in values) else FLOAT_OPERAND


def elementwise(
    low: Lowering,
    node: Node,
    kind: str,
    inputs: list[Buffer],
    out: Buffer,
    call: Callable[[Layer], str],
    arrays: list[Array] | None = None,
    dsp: bool = False,
    name: str | None = None,
) -> Layer:
    """A layer that streams ``out.size`` elements at II=1."""
    name = name or low.layer_name(node)
    cost = Cost(elements=out.size, lanes=1, requant_dsp=dsp)
    layer = Layer(name, kind, node.op, [node], inputs, out, call, None, arrays or [], cost)
    low.add(layer)
    return layer


def mem_axis(buf: Buffer, axis: int) -> tuple[tuple[int, ...], int]:
    """The buffer's dimensions in memory order and the position of IR axis ``axis``."""
    rank = len(buf.shape)
    axis %= rank
    if buf.nhwc:
        h, w, c = buf.hwc
        return (h, w, c), {1: 2, 2: 0, 3: 1}.get(axis, -1)
    return buf.shape, axis


# ---- q.requantize on a tensor ---------------------------------------------------------------
def check_requantize(node: Node, low: Lowering) -> str | None:
    reason = int_only(node, low)
    if reason:
        return reason
    a = low.attrs(node)
    shift = np.asarray(a["shift"], np.int64)
    if np.any(shift < 0) or np.any(shift > numerics.MAX_SHIFT):
        return "requantize shift out of range"
    qp = node.outputs[0].type.quant
    if qp is not None and len(set(qp.zero_point)) > 1:
        return "per-channel output zero points"
    if len(a["multiplier"]) > 1 and a["axis"] is None:
        return "per-channel requantize without an axis"
    if len(node.inputs[0].type.shape) == 4 and a["axis"] is not None and a["axis"] % 4 == 0:
        return "requantize along the batch axis"
    return None


def lower_requantize(node: Node, low: Lowering) -> None:
    a = low.attrs(node)
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    mult = np.asarray(a["multiplier"], np.int64)
    shift = np.asarray(a["shift"], np.int64)
    qp = node.outputs[0].type.quant
    zp = int(qp.zero_point[0]) if qp is not None else 0
    per_channel = mult.size > 1
    channels, inner = 1, 1
    if per_channel:
        dims, pos = mem_axis(x, int(a["axis"]))
        channels, inner = dims[pos], math.prod(dims[pos + 1 :])
    name = low.layer_name(node)
    clamped, (lo_v, hi_v) = clamps(a, zp), output_clamp(a, zp)

    def call(layer: Layer) -> str:
        head = (
            f"tapeout::requantize_tensor<{x.ctype}, {y.ctype}, {y.size}, {channels}, {inner}, "
            f"{'true' if per_channel else 'false'}>({x.name}, {y.name}, 0, {name}_m, {name}_s, "
            f"{zp});"
        )
        if not clamped:
            return head
        return (
            head + f"\ntapeout::clip_tensor<{y.ctype}, {y.size}>({y.name}, {y.name}, "
            f"{int(lo_v)}, {int(hi_v)});"
        )

    arrays = [Array(f"{name}_m", "int32_t", mult), Array(f"{name}_s", "int32_t", shift)]
    elementwise(low, node, "requantize", [x], y, call, arrays, bool(np.any(mult != 1)), name)


# ---- q.add ----------------------------------------------------------------------------------
def check_add(node: Node, low: Lowering) -> str | None:
    reason = int_only(node, low)
    if reason:
        return reason
    a, b = node.inputs
    if tuple(a.type.shape) != tuple(b.type.shape):
        return "q.add with broadcasting (operands must have the same shape)"
    for side in ("a_multiplier", "b_multiplier"):
        if abs(int(node.attrs[side])) >= 2**63:
            return f"{side} does not fit int64"
    return None


def lower_add(node: Node, low: Lowering) -> None:
    at = low.attrs(node)
    a, b = (low.buffer(v) for v in node.inputs)
    y = low.buffer(node.outputs[0])
    zo = low.zero_point(node.outputs[0])
    lo, hi = output_clamp(at, zo)
    za, zb = low.zero_point(node.inputs[0]), low.zero_point(node.inputs[1])
    am, bm, sh = int(at["a_multiplier"]), int(at["b_multiplier"]), int(at["shift"])
    params = f"tapeout::add_params{{{za}, 0, {am}LL, {zb}, 0, {bm}LL, 1, {sh}, {zo}, {lo}, {hi}}}"

    def call(layer: Layer) -> str:
        return (
            f"tapeout::add<{a.ctype}, {b.ctype}, {y.ctype}, int64_t, {y.size}>("
            f"{a.name}, {b.name}, {y.name}, {params});"
        )

    pow2 = all(m > 0 and m & (m - 1) == 0 for m in (am, bm))
    elementwise(low, node, "add", [a, b], y, call, dsp=not pow2)


# ---- layout: reshape, flatten, squeeze, ... -------------------------------------------------
def layout_layer(low: Lowering, src: Buffer, dst: Buffer, hint: str) -> Layer:
    """Copy ``src`` to ``dst`` converting between NHWC and the IR's order as needed."""
    if src.nhwc and not ir_order(src):
        h, w, c = src.hwc
        fn = f"tapeout::flatten_nchw<{src.ctype}, {h}, {w}, {c}>"
    elif dst.nhwc and not ir_order(dst):
        h, w, c = dst.hwc
        fn = f"tapeout::nchw_to_nhwc<{src.ctype}, {h}, {w}, {c}>"
    else:
        fn = f"tapeout::copy<{src.ctype}, {src.size}>"
    name = low.namer.ident(f"{dst.name}_{hint}", "layout")
    return Layer(
        name,
        "layout",
        "layout",
        [],
        [src],
        dst,
        lambda layer: f"{fn}({src.name}, {dst.name});",
        cost=Cost(elements=dst.size),
    )


def check_reshape(node: Node, low: Lowering) -> str | None:
    return int_only(node, low)


def lower_reshape(node: Node, low: Lowering) -> None:
    src = low.buffer(node.inputs[0])
    out = node.outputs[0]
    low.alias(out, src)
    if ir_order(src) and ir_order(low.buffers[out]):
        return  # same element order: no code, the result lives in the input's array
    if _only_dense_reads(out, low) and src.nhwc and src.perm is None:
        h, w, c = src.hwc  # memory (h, w, c) holds IR element (c, h, w): dense permutes weights
        low.alias(out, src, np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel())
        return
    del low.buffers[out]
    dst = low.buffer(out)
    if not ir_order(src) and not ir_order(dst):  # NHWC -> NHWC of another shape: via IR order
        flat = low.temp(out, f"{out.name}_ir", False, src.shape)
        low.add(layout_layer(low, src, flat, "flat"))
        src = flat
    layer = layout_layer(low, src, dst, "layout")
    layer.nodes, layer.op = [node], node.op
    low.add(layer)


def _only_dense_reads(value: Value, low: Lowering) -> bool:
    """Every reader of ``value`` is a dense layer taking it as its input (no graph output)."""
    users = low.users(value)
    return (
        bool(users)
        and not low.is_output(value)
        and all(
            u.op == "nn.dense" and u.inputs[0] is value and not check_dense(u, low) for u in users
        )
    )


# ---- concat ---------------------------------------------------------------------------------
def check_concat(node: Node, low: Lowering) -> str | None:
    reason = int_only(node, low)
    if reason:
        return reason
    if len(node.inputs) not in (2, 3):
        return f"concat of {len(node.inputs)} tensors (2 or 3 supported)"
    if len({v.dtype for v in node.inputs}) != 1:
        return "concat of different dtypes"
    if len(node.outputs[0].type.shape) == 4 and low.attrs(node)["axis"] % 4 == 0:
        return "concat along the batch axis"
    return None


def lower_concat(node: Node, low: Lowering) -> None:
    axis = int(low.attrs(node)["axis"])
    ins = [low.buffer(v) for v in node.inputs]
    y = low.buffer(node.outputs[0])
    dims, pos = mem_axis(y, axis)
    outer = math.prod(dims[:pos])
    inners = [math.prod(mem_axis(b, axis)[0][pos:]) for b in ins]
    fn = f"concat{len(ins)}<{y.ctype}, {outer}, {', '.join(map(str, inners))}>"
    args = ", ".join(b.name for b in ins)
    elementwise(low, node, "concat", ins, y, lambda layer: f"tapeout::{fn}({args}, {y.name});")


# ---- integer activations (what the interpreter does on integers: no zero point) -----------
_INT_CLIPS: dict[str, Callable[[dict], tuple[float | None, float | None]]] = {
    "nn.relu": lambda a: (0, None),
    "nn.relu6": lambda a: (0, 6),
    "nn.clip": lambda a: (a.get("min"), a.get("max")),
}


def check_int_act(node: Node, low: Lowering) -> str | None:
    reason = int_only(node, low)
    if reason:
        return reason
    lo, hi = _INT_CLIPS[node.op](low.attrs(node))
    if any(v is not None and not float(v).is_integer() for v in (lo, hi)):
        return "clip bounds on an integer tensor must be integers"
    return None


def lower_int_act(node: Node, low: Lowering) -> None:
    x, y = low.buffer(node.inputs[0]), low.buffer(node.outputs[0])
    lo, hi = _INT_CLIPS[node.op](low.attrs(node))
    tmin, tmax = numerics.INT_RANGES[y.dtype]
    lo_v = tmin if lo is None else max(int(lo), tmin)
    hi_v = tmax if hi is None else min(int(hi), tmax)
    call = f"tapeout::clip_tensor<{y.ctype}, {y.size}>({x.name}, {y.name}, {lo_v}, {hi_v});"
    elementwise(low, node, "clip", [x], y, lambda layer: call)


# ---- edges of float islands -----------------------------------------------------------------
def check_quantize(node: Node, low: Lowering) -> str | None:
    x = node.inputs[0]
    if any(x is v for v in low.graph.inputs):
        return None  # the host quantizes graph inputs (checked with the inputs)
    src = low.island.get(x)
    if src is None:
        return (
            "q.quantize of a float value that is not an elementwise function of one "
            "integer tensor (the float op before it has no integer form)"
        )
    if not tabulable(src):
        return f"float island on a {src.dtype} tensor: lookup tables need an 8-bit source"
    qp = node.outputs[0].type.quant
    if qp is None or qp.axis is not None:
        return "a float island must be quantized per tensor"
    return None


def lower_quantize(node: Node, low: Lowering) -> None:
    x = node.inputs[0]
    src = low.island[x]
    table = island_table(low.graph, node.outputs[0], src)
    a, y = low.buffer(src), low.buffer(node.outputs[0])
    name = low.layer_name(node)
    call = f"tapeout::lut<{a.ctype}, {y.ctype}, {y.size}>({a.name}, {y.name}, {name}_table);"
    layer = elementwise(
        low,
        node,
        "lut",
        [a],
        y,
        lambda layer: call,
        [Array(f"{name}_table", y.ctype, table)],
        name=name,
    )
    layer.op = "lut(" + "+".join(_island_ops(node, src)) + ")"


def _island_ops(node: Node, src: object) -> list[str]:
    ops, v = [], node.inputs[0]
    while v is not src and v.producer is not None:
        ops.append(v.producer.op)
        nxt = [i for i in v.producer.inputs if not i.is_const]
        if not nxt:
            break
        v = nxt[0]
    return list(reversed(ops)) + [node.op]


def check_island(node: Node, low: Lowering) -> str | None:
    """q.dequantize and float elementwise ops: fine inside an island (their users decide)."""
    if node.op == "q.dequantize" and not is_int(node.inputs[0].dtype):
        return "dequantize of a non-integer tensor"
    return None


def lower_nothing(node: Node, low: Lowering) -> None:
    """Island nodes become part of a lookup table (built at the island's exit)."""


island_rule = Rule(lower_nothing, check_island)

RULES: dict[str, Rule] = {
    "nn.dense": Rule(lower_dense, check_dense),
    "nn.conv2d": Rule(lower_conv2d, check_conv2d),
    "q.requantize": Rule(lower_requantize, check_requantize),
    "q.add": Rule(lower_add, check_add),
    "q.quantize": Rule(lower_quantize, check_quantize),
    "q.dequantize": island_rule,
    "tensor.concat": Rule(lower_concat, check_concat),
    **{
        op: Rule(lower_reshape, check_reshape)
        for op in view_ops()  # the same bytes under a new shape
    },
    **{op: Rule(lower_int_act, check_int_act) for op in _INT_CLIPS},
    **{op: Rule(lower, check) for op, (check, lower) in POOL_RULES.items()},
}
"""Every op the HLS backend lowers (float elementwise ops inside islands use island_rule)."""
