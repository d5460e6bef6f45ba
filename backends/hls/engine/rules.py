"""The engine's rule table: IR op -> (check, lower) into ``Step`` descriptors.

conv/dense run on the MAC array with the q.requantize that follows them (and a q.add right
after it, when its other operand is already computed) fused into the epilogue; pooling, q.add,
concat and float islands (a 256-entry table) run on the side units; reshapes only rename
memory. ``check`` returns why a node cannot run on the engine, or None.
"""

from __future__ import annotations

import numpy as np

from backends.hls.engine import rules_xf
from backends.hls.engine.lower import (
    EngineLowering,
    Tensor,
    int8,
    natural_perm,
    same_perm,
    shape_of,
)
from backends.hls.engine.schedule import Step, split64
from backends.hls.islands import island_table, tabulable
from compiler.ir.graph import Node, Value
from compiler.ir.op_facts import node_macs, output_clamp, view_ops, zero_point
from compiler.ir.ops import OPS
from compiler.ir.ops_nn import spatial_params
from compiler.rules import Rule as SharedRule

I8_MIN, I8_MAX = -128, 127


#: An engine rule (the shared contract of ``compiler.rules``): ``check(node, low)`` and
#: ``lower(node, low)`` on the schedule's ``EngineLowering``.
Rule = SharedRule[EngineLowering, EngineLowering]


def _attrs(node: Node) -> dict:
    return OPS[node.op].with_defaults(node.attrs)


def _per_tensor(value: Value) -> bool:
    qp = value.type.quant
    return qp is None or qp.axis is None or qp.zero_point_array().size == 1


# ---- conv / dense + requantize (+ add) ------------------------------------------------------
def check_mac(node: Node, low: EngineLowering) -> str | None:
    x, w = node.inputs[0], node.inputs[1]
    a = _attrs(node)
    if not int8(x) or not _per_tensor(x):
        return "the engine's MAC array reads i8 activations with a per-tensor zero point"
    if w.dtype != "i8" or low.const(w) is None:
        return "weights must be constant i8"
    if len(node.inputs) > 3:
        return (
            "a residual operand on the accumulator (the engine adds residuals after the requantize)"
        )
    if len(node.inputs) == 3 and (
        node.inputs[2].dtype != "i32" or low.const(node.inputs[2]) is None
    ):
        return "bias must be a constant i32"
    if (a.get("acc") or "i32") != "i32":
        return f"accumulator {a.get('acc')}: the engine accumulates in i32"
    if a.get("act", "none") not in ("none", "relu"):
        return f"fused activation {a['act']!r} on the accumulator (the engine has relu)"
    if a.get("layout", "NCHW") != "NCHW":
        return "layout NHWC in the IR (the engine lays out tensors itself: no convert-layout)"
    if node.op == "nn.conv2d" and x.type.rank != 4:
        return "conv2d on a tensor that is not 4-D"
    out = node.outputs[0]
    users = low.users(out)
    if len(users) != 1 or users[0].op != "q.requantize" or low.is_output(out):
        return "the i32 result must feed exactly one q.requantize (the engine's epilogue)"
    rq = users[0].outputs[0]
    if not int8(rq) or not _per_tensor(rq):
        return "the requantize must produce i8 with a per-tensor zero point"
    return None


def requant_fields(step: Step, rq: Node) -> None:
    a = rq.attrs
    mult = np.asarray(a["multiplier"], dtype=np.int64).reshape(-1)
    shift = np.asarray(a["shift"], dtype=np.int64).reshape(-1)
    step.mult, step.shift = mult, shift
    step.fields["PER_CHANNEL"] = int(mult.size > 1)
    step.fields["OUT_ZP"] = zero_point(rq.outputs[0])
    lo, hi = output_clamp(a, step.fields["OUT_ZP"])
    step.fields["LO"], step.fields["HI"] = max(I8_MIN, lo), min(I8_MAX, hi)


def _add_fields(step: Step, add: Node, a_value: Value, b_tensor: Tensor) -> None:
    """The residual unit's fields for q.add ``add`` with ``a_value`` as its a operand."""
    attrs = _attrs(add)
    first = add.inputs[0] is a_value
    a_mult = attrs["a_multiplier"] if first else attrs["b_multiplier"]
    b_mult = attrs["b_multiplier"] if first else attrs["a_multiplier"]
    zo = zero_point(add.outputs[0])
    lo, hi = output_clamp(attrs, zo)
    t = b_tensor
    step.fields.update(
        RES=t.offset,
        RES_PS=t.ps,
        RES_ZP=t.zp,
        RES_SHIFT=int(attrs["shift"]),
        RES_OUT_ZP=zo,
        RES_LO=max(I8_MIN, lo),
        RES_HI=min(I8_MAX, hi),
    )
    step.fields["RES_AMUL_LO"], step.fields["RES_AMUL_HI"] = split64(int(a_mult))
    step.fields["RES_BMUL_LO"], step.fields["RES_BMUL_HI"] = split64(int(b_mult))


def _fusable_add(value: Value, low: EngineLowering) -> tuple[Node, Value] | None:
    """The q.add that ``value`` alone feeds, and its other operand, if it can be fused."""
    users = low.users(value)
    if len(users) != 1 or low.is_output(value) or users[0].op != "q.add":
        return None
    add = users[0]
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    if other is value or other not in low.tensors or check_add(add, low) is not None:
        return None
    t = low.tensors[other]
    if not same_perm(t.perm, natural_perm(shape_of(other))) or t.ps != t.c:
        return None
    return add, other


def _mac_step(node: Node, low: EngineLowering) -> tuple[Step, Node, Value]:
    """The step of a conv/dense with its requantize and maybe its add; the final value."""
    rq = low.users(node.outputs[0])[0]
    low.covered.add(id(rq))
    step = Step(low.name(node), "conv", [node, rq])
    requant_fields(step, rq)
    final = rq.outputs[0]
    fused = _fusable_add(final, low)
    if fused is not None:
        add, other = fused
        low.covered.add(id(add))
        step.nodes.append(add)
        _add_fields(step, add, final, low.tensors[other])
        final = add.outputs[0]
    else:
        step.fields["RES"] = -1
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    step.bias = None if bias is None else np.asarray(low.const(bias), dtype=np.int64).reshape(-1)
    return step, rq, final


def lower_conv(node: Node, low: EngineLowering) -> None:
    a = _attrs(node)
    x, w = node.inputs[0], node.inputs[1]
    t_in = low.natural(x, node)
    weights = np.asarray(low.const(w), dtype=np.int8)
    oc, cin_g, kh, kw = weights.shape
    groups = int(a.get("groups", 1))
    strides, pads, dil = spatial_params(a, 2)
    step, _, final = _mac_step(node, low)
    out = low.alloc(final)
    step.weights = weights.transpose(0, 2, 3, 1)
    step.kind = (
        "depthwise"
        if groups > 1 and groups == oc and cin_g == 1
        else ("conv" if groups == 1 else "grouped")
    )
    step.macs = node_macs(node)
    step.fields.update(
        IN=t_in.offset,
        IN_H=t_in.h,
        IN_W=t_in.w,
        IN_C=t_in.c,
        IN_PS=t_in.ps,
        IN_ZP=t_in.zp,
        OUT=out.offset,
        OUT_H=out.h,
        OUT_W=out.w,
        OUT_C=out.c,
        OUT_PS=out.ps,
        KH=kh,
        KW=kw,
        SH=strides[0],
        SW=strides[1],
        PT=pads[0],
        PL=pads[1],
        DH=dil[0],
        DW=dil[1],
        GROUPS=groups,
        RELU=int(a.get("act") == "relu"),
    )
    low.add(step)


def lower_dense(node: Node, low: EngineLowering) -> None:
    x, w = node.inputs[0], node.inputs[1]
    t_in = low.tensor(x) if x.type.rank == 2 else low.natural(x, node)
    weights = np.asarray(low.const(w), dtype=np.int8)  # [N, K]
    if t_in.perm is not None:  # memory position m holds IR element perm[m]
        weights = weights[:, t_in.perm]
    step, _, final = _mac_step(node, low)
    out = low.alloc(final)
    n, k = weights.shape
    step.weights = weights.reshape(n, 1, 1, k)
    step.kind = "dense"
    step.macs = node_macs(node)
    step.fields.update(
        IN=t_in.offset,
        IN_H=t_in.h,
        IN_W=t_in.w,
        IN_C=k,
        IN_PS=t_in.ps,
        IN_ZP=t_in.zp,
        OUT=out.offset,
        OUT_H=out.h,
        OUT_W=out.w,
        OUT_C=n,
        OUT_PS=out.ps,
        KH=1,
        KW=1,
        SH=1,
        SW=1,
        DH=1,
        DW=1,
        GROUPS=1,
        RELU=int(_attrs(node).get("act") == "relu"),
    )
    low.add(step)


# ---- side units ------------------------------------------------------------------------------
def _int8_io(node: Node, low: EngineLowering) -> str | None:
    values = [v for v in node.inputs if low.const(v) is None] + list(node.outputs)
    if not all(int8(v) and _per_tensor(v) for v in values):
        return "the engine's side units take i8 tensors with per-tensor zero points"
    return None


def check_pool(node: Node, low: EngineLowering) -> str | None:
    if node.inputs[0].type.rank != 4:
        return "pooling on a tensor that is not 4-D"
    return _int8_io(node, low)


def _window_step(node: Node, low: EngineLowering, op: str) -> tuple[Step, Tensor]:
    t_in = low.natural(node.inputs[0], node)
    out = low.alloc(node.outputs[0])
    step = Step(low.name(node), op, [node], kind=node.op.split(".")[-1])
    step.fields.update(
        IN=t_in.offset,
        IN_H=t_in.h,
        IN_W=t_in.w,
        IN_C=t_in.c,
        IN_PS=t_in.ps,
        IN_ZP=t_in.zp,
        OUT=out.offset,
        OUT_H=out.h,
        OUT_W=out.w,
        OUT_C=out.c,
        OUT_PS=out.ps,
        OUT_ZP=out.zp,
        DH=1,
        DW=1,
        SH=1,
        SW=1,
        RES=-1,
    )
    return step, t_in


def lower_pool(node: Node, low: EngineLowering) -> None:
    a = _attrs(node)
    op = "maxpool" if node.op == "nn.max_pool2d" else "avgpool"
    step, t_in = _window_step(node, low, op)
    if node.op == "q.global_avg_pool":
        kernel, strides, pads, dil = [t_in.h, t_in.w], [1, 1], [0, 0, 0, 0], [1, 1]
    else:
        kernel = list(a["kernel"])
        strides, pads, dil = spatial_params({**a, "strides": a.get("strides") or kernel}, 2)
    step.fields.update(
        KH=kernel[0],
        KW=kernel[1],
        SH=strides[0],
        SW=strides[1],
        PT=pads[0],
        PL=pads[1],
        DH=dil[0],
        DW=dil[1],
    )
    if op == "avgpool":
        step.fields["POOL_MULT"] = int(np.asarray(a["multiplier"]).reshape(-1)[0])
        step.fields["POOL_SHIFT"] = int(np.asarray(a["shift"]).reshape(-1)[0])
    low.add(step)


def check_add(node: Node, low: EngineLowering) -> str | None:
    if shape_of(node.inputs[0]) != shape_of(node.inputs[1]):
        return "q.add of different shapes (broadcast) has no engine unit"
    return _int8_io(node, low)


def lower_add(node: Node, low: EngineLowering) -> None:
    step, _ = _window_step(node, low, "add")
    _add_fields(step, node, node.inputs[0], low.natural(node.inputs[1], node))
    step.kind = "add"
    low.add(step)


def check_concat(node: Node, low: EngineLowering) -> str | None:
    rank = node.outputs[0].type.rank
    axis = int(node.attrs.get("axis", 0)) % rank
    if axis != (1 if rank == 4 else rank - 1):
        return "concat on an axis other than channels"
    return _int8_io(node, low)


def lower_concat(node: Node, low: EngineLowering) -> None:
    out = low.alloc(node.outputs[0])
    offset = 0
    for value in node.inputs:
        t = low.natural(value, node)
        step = Step(low.name(node), "copy", [node], kind="concat")
        step.fields.update(
            IN=t.offset,
            IN_H=t.h,
            IN_W=t.w,
            IN_C=t.c,
            IN_PS=t.ps,
            IN_ZP=t.zp,
            OUT=out.offset + offset,
            OUT_H=out.h,
            OUT_W=out.w,
            OUT_C=t.c,
            OUT_PS=out.ps,
            RES=-1,
        )
        offset += t.c
        low.add(step)


def check_reshape(node: Node, low: EngineLowering) -> str | None:
    return _int8_io(node, low)


def lower_reshape(node: Node, low: EngineLowering) -> None:
    low.alias(node.outputs[0], node.inputs[0])


def check_resize(node: Node, low: EngineLowering) -> str | None:
    scales = list(node.attrs["scales"])
    if node.inputs[0].type.rank != 4 or scales[0] != 1 or scales[1] != 1:
        return "resize of anything but the spatial dims of a 4-D tensor"
    return _int8_io(node, low)


def lower_resize(node: Node, low: EngineLowering) -> None:
    step, t_in = _window_step(node, low, "resize")
    scales = node.attrs["scales"]
    out_shape = shape_of(node.outputs[0])
    tables = []
    for axis, size_in in ((2, t_in.h), (3, t_in.w)):  # the interpreter's index formula
        src = np.floor(np.arange(out_shape[axis]) / scales[axis]).astype(np.int64)
        tables.append(np.minimum(src, size_in - 1))
    step.bias, step.mult = tables
    step.kind = "resize"
    low.add(step)


# ---- float islands -----------------------------------------------------------------------------
def check_island_exit(node: Node, low: EngineLowering) -> str | None:
    src = low.island.get(node.inputs[0])
    if src is None:
        return "q.quantize of a float value that is not an elementwise function of one i8 tensor"
    if not tabulable(src) or not int8(src) or not int8(node.outputs[0]):
        return "a float island must go from an i8 tensor to an i8 tensor (a 256-entry table)"
    return None if _per_tensor(node.outputs[0]) else "a float island must be quantized per tensor"


def lower_island_exit(node: Node, low: EngineLowering) -> None:
    src = low.island[node.inputs[0]]
    t_in = low.tensor(src)
    out = low.alloc(node.outputs[0])
    out.perm = t_in.perm  # elementwise: the same memory order
    step = Step(low.name(node), "lut", [node], kind="table")
    step.weights = np.asarray(island_table(low.graph, node.outputs[0], src), dtype=np.int8)
    step.fields.update(
        IN=t_in.offset,
        IN_H=1,
        IN_W=t_in.pixels,
        IN_C=t_in.c,
        IN_PS=t_in.ps,
        OUT=out.offset,
        OUT_H=1,
        OUT_W=t_in.pixels,
        OUT_PS=t_in.c,
        OUT_C=t_in.c,
        RES=-1,
    )
    low.add(step)


def check_island(node: Node, low: EngineLowering) -> str | None:
    if node.op == "q.dequantize" and not int8(node.inputs[0]):
        return "dequantize of a tensor that is not i8"
    return None


def lower_nothing(node: Node, low: EngineLowering) -> None:
    """Island nodes become a table (at a q.quantize) or the host's output table."""


def check_requantize(node: Node, low: EngineLowering) -> str | None:
    src = node.inputs[0].producer
    if src is None or src.op not in ("nn.conv2d", "nn.dense", "nn.matmul"):
        return "a q.requantize not after a conv/dense (the engine requantizes in its epilogue)"
    return None


island_rule = Rule(lower_nothing, check_island)

RULES: dict[str, Rule] = {
    "nn.conv2d": Rule(lower_conv, check_mac),
    "nn.dense": Rule(lower_dense, check_mac),
    "q.requantize": Rule(lower_nothing, check_requantize),  # lowered with its conv/dense
    "nn.max_pool2d": Rule(lower_pool, check_pool),
    "q.avg_pool2d": Rule(lower_pool, check_pool),
    "q.global_avg_pool": Rule(lower_pool, check_pool),
    "q.add": Rule(lower_add, check_add),
    "q.quantize": Rule(lower_island_exit, check_island_exit),
    "q.dequantize": island_rule,
    "tensor.concat": Rule(lower_concat, check_concat),
    "nn.resize": Rule(lower_resize, check_resize),
    "nn.matmul": Rule(rules_xf.lower_matmul, rules_xf.check_matmul),
    "q.softmax": Rule(rules_xf.lower_softmax, rules_xf.check_rows),
    "q.layernorm": Rule(rules_xf.lower_layernorm, rules_xf.check_layernorm),
    "tensor.transpose": Rule(rules_xf.lower_transpose, rules_xf.check_transpose),
    **{
        op: Rule(lower_reshape, check_reshape)
        for op in view_ops()  # the same bytes under a new shape
    },
}
"""Every op the engine runs (float elementwise ops inside islands use island_rule)."""

#: Why ops with no engine unit are refused, where there is more to say than that.
REFUSED: dict[str, str] = {
    op: f"float {op.split('.')[-1]} has no engine unit: {rules_xf.INTEGER_OPS_HINT}"
    for op in ("nn.softmax", "nn.layer_norm")
}
