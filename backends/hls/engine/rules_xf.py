"""The engine's transformer rules: activation matmul, q.softmax, q.layernorm, transpose.

These side units (``tapeout/engine_xf.h``) read and write row-major tensors: the IR's own
order, rows along the last axis. An operand stored in another order (a 4-D tensor a conv
wrote NHWC, a reshaped view) is first copied into row-major order by a gather step, whose
index table the compiler computes; ``tensor.transpose`` is such a gather too.
"""

from __future__ import annotations

import math

import numpy as np

from backends.hls.engine.lower import EngineLowering, Tensor, int8, is_static, shape_of
from backends.hls.engine.schedule import Step
from compiler.ir.graph import Node, Value

I8_MIN, I8_MAX = -128, 127


def _memory_positions(t: Tensor, size: int) -> np.ndarray:
    """pos[i]: where IR (row-major) element i of tensor ``t`` lies in memory."""
    if t.perm is None:
        return np.arange(size, dtype=np.int64)
    pos = np.empty(size, dtype=np.int64)
    pos[np.asarray(t.perm, dtype=np.int64)] = np.arange(size, dtype=np.int64)
    return pos


def _gather(low: EngineLowering, node: Node, out: Value, index: np.ndarray, src: Tensor) -> Tensor:
    """A step copying ``src`` memory positions ``index`` into a fresh row-major ``out``."""
    t = low.alloc(out)
    t.perm = None
    step = Step(low.name(node), "gather", [node], kind="gather")
    step.bias = index
    step.fields.update(IN=src.offset, OUT=t.offset, ROWS=1, ROW_LEN=int(index.size), RES=-1)
    step.fields.update(OUT_H=1, OUT_W=1, OUT_C=int(index.size))
    low.add(step)
    return t


def row_major(low: EngineLowering, value: Value, node: Node) -> Tensor:
    """``value``'s tensor in row-major order: itself, or a gathered copy (made once)."""
    t = low.tensor(value)
    if t.perm is None and t.ps == t.c:
        return t
    size = math.prod(shape_of(value))
    if t.ps != t.c:
        return _gather(low, node, value, _strided(t, size), t)
    copy = _gather(low, node, value, _memory_positions(t, size), t)
    low.tensors[value] = copy  # later readers take the row-major copy
    return copy


def _strided(t: Tensor, size: int) -> np.ndarray:
    """Memory positions of a channel slice (pixel stride ``ps`` > ``c``), natural order."""
    pix = np.arange(t.pixels, dtype=np.int64)[:, None] * t.ps + np.arange(t.c)[None, :]
    nat = pix.reshape(-1)
    return nat[_memory_positions(Tensor(t.value, 0, t.h, t.w, t.c, t.c, t.zp, t.perm), size)]


def _per_tensor_i8(values: list[Value]) -> str | None:
    for v in values:
        qp = v.type.quant
        if not int8(v) or (qp is not None and qp.zero_point_array().size != 1):
            return "the engine's transformer units take i8 tensors with per-tensor zero points"
    return None


# ---- matmul of two activations + its requantize -------------------------------------------
#: What a float transformer op on the engine needs.
INTEGER_OPS_HINT = "quantize with integer_ops (compile(..., quant={'integer_ops': True}))"


def check_matmul(node: Node, low: EngineLowering) -> str | None:
    a, b = node.inputs[0], node.inputs[1]
    if not int8(a) and a.dtype.startswith("f"):
        return f"a float matmul of two activations: {INTEGER_OPS_HINT}"
    if low.const(b) is not None or low.const(a) is not None:
        return "a matmul with a constant operand (the engine runs it as nn.dense)"
    if not (is_static(a) and is_static(b)):
        return "a matmul of symbolic shapes (the engine sizes its buffers at compile time)"
    if a.type.rank < 2 or b.type.rank != a.type.rank:
        return "matmul operands of different ranks (broadcast) have no engine unit"
    if shape_of(a)[:-2] != shape_of(b)[:-2] and math.prod(shape_of(b)[:-2]) != 1:
        return "matmul batch dimensions must match (or b's be 1)"
    if (node.attrs.get("acc") or "i32") != "i32":
        return f"accumulator {node.attrs.get('acc')}: the engine accumulates in i32"
    users = low.users(node.outputs[0])
    if len(users) != 1 or users[0].op != "q.requantize" or low.is_output(node.outputs[0]):
        return "the i32 result must feed exactly one q.requantize (the engine's epilogue)"
    rq = users[0]
    if np.asarray(rq.attrs["multiplier"]).size != 1:
        return "a per-channel requantize after an activation matmul"
    return _per_tensor_i8([a, b, rq.outputs[0]])


def lower_matmul(node: Node, low: EngineLowering) -> None:
    from backends.hls.engine.rules import requant_fields

    a = row_major(low, node.inputs[0], node)
    b = row_major(low, node.inputs[1], node)
    a_shape, b_shape = shape_of(node.inputs[0]), shape_of(node.inputs[1])
    m, k = a_shape[-2:]
    n = b_shape[-1]
    batch = math.prod(a_shape[:-2])
    rq = low.users(node.outputs[0])[0]
    low.covered.add(id(rq))
    out = low.alloc(rq.outputs[0])
    out.perm = None
    step = Step(low.name(node), "matmul", [node, rq], kind="matmul")
    requant_fields(step, rq)
    step.macs = batch * m * n * k
    step.fields.update(
        IN=a.offset, IN_ZP=a.zp, RES=b.offset, RES_ZP=b.zp, OUT=out.offset,
        ROWS=m, ROW_LEN=n, IN_C=k, BATCH=batch, A_BS=m * k,
        B_BS=0 if math.prod(b_shape[:-2]) == 1 else k * n,
        OUT_H=batch * m, OUT_W=1, OUT_C=n,
    )  # fmt: skip
    low.add(step)


# ---- softmax / layer norm ------------------------------------------------------------------
def check_rows(node: Node, low: EngineLowering) -> str | None:
    return _per_tensor_i8([node.inputs[0], node.outputs[0]])


def _row_step(node: Node, low: EngineLowering, op: str) -> Step:
    x = row_major(low, node.inputs[0], node)
    out = low.alloc(node.outputs[0])
    out.perm = None
    shape = shape_of(node.inputs[0])
    step = Step(low.name(node), op, [node], kind=op)
    step.fields.update(
        IN=x.offset, IN_ZP=x.zp, OUT=out.offset, OUT_ZP=out.zp,
        ROWS=math.prod(shape[:-1]), ROW_LEN=shape[-1], RES=-1,
        OUT_H=math.prod(shape[:-1]), OUT_W=1, OUT_C=shape[-1],
    )  # fmt: skip
    return step


def lower_softmax(node: Node, low: EngineLowering) -> None:
    from compiler.numerics import softmax_table

    step = _row_step(node, low, "softmax")
    qp = node.inputs[0].type.quant
    scale = float(qp.scale[0]) if qp is not None else 1.0
    step.bias = softmax_table(scale)
    step.mult = np.asarray([int(node.attrs["multiplier"])])
    step.shift = np.asarray([int(node.attrs["shift"])])
    low.add(step)


def lower_layernorm(node: Node, low: EngineLowering) -> None:
    step = _row_step(node, low, "layernorm")
    gamma, beta = (low.const(v) for v in node.inputs[1:3])
    assert gamma is not None and beta is not None
    step.bias, step.mult = np.asarray(gamma), np.asarray(beta)
    step.fields["EPS"] = int(node.attrs.get("eps_int", 0))
    low.add(step)


def check_layernorm(node: Node, low: EngineLowering) -> str | None:
    if any(low.const(v) is None for v in node.inputs[1:3]):
        return "q.layernorm gamma and beta must be constants"
    return check_rows(node, low)


# ---- transpose -------------------------------------------------------------------------------
def check_transpose(node: Node, low: EngineLowering) -> str | None:
    return _per_tensor_i8([node.inputs[0], node.outputs[0]])


def lower_transpose(node: Node, low: EngineLowering) -> None:
    src = low.tensor(node.inputs[0])
    shape = shape_of(node.inputs[0])
    size = math.prod(shape)
    perm = [int(p) % len(shape) for p in node.attrs["perm"]]
    source_ir = np.arange(size, dtype=np.int64).reshape(shape).transpose(perm).reshape(-1)
    index = _memory_positions(src, size)[source_ir]
    if src.ps != src.c:
        index = _strided(src, size)[source_ir]
    _gather(low, node, node.outputs[0], index, src)
