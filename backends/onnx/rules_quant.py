"""ONNX lowering rules, part 4: constants and the quantization ops, in QDQ form.

The formulas these follow are in ``compiler.numerics`` and ``compiler.ir.ops_quant``. ONNX
QuantizeLinear rounds half to even where ``numerics.requantize`` rounds half up, and the
float Conv sums in a different order than the exact integer accumulator; both differ from the
interpreter by at most one LSB, and only on ties.

``q.requantize`` trusts its output type's scale when the accumulator arrives as a ``Real``
whose scale agrees with the fixed-point multipliers (the plain QDQ form); otherwise it
rescales by the multipliers themselves, which define the op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.onnx.emitter import QDQ_MIN_OPSET, Emitter, tie_bits
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import output_clamp
from compiler.ir.types import QuantParams, TensorType
from compiler.numerics import INT_RANGES

#: Relative disagreement between a scale ratio and the fixed-point multiplier beyond which the
#: multiplier is applied explicitly: float32 resolution when exporting exactly (16-bit q.add
#: multipliers differ by ~1e-5, 31-bit requantize multipliers by ~1e-9), else only real
#: disagreements (a multiplier that is not the ratio of the scales at all).
_TOLERANCE = {True: 1e-7, False: 1e-3}


def lower_const(node: Node, em: Emitter) -> list:
    from onnx import helper, numpy_helper

    value = node.outputs[0]
    data = em.graph.constants[node.attrs["ref"]]
    name = em.claim(value.name)
    if value.dtype in ("i4", "u4") and em.opset >= 21:
        kind = 22 if value.dtype == "i4" else 21
        tensor = helper.make_tensor(name, kind, list(data.shape), data.reshape(-1).tolist())
    else:
        tensor = numpy_helper.from_array(np.ascontiguousarray(data), name)
    em.initializers.append(tensor)
    return [name]


#: Ops whose result is written by QuantizeLinear (so its dtype must be one Q can produce).
_QUANTIZING = {"q.quantize", "q.requantize", "q.add", "q.avg_pool2d", "q.global_avg_pool"}


def check_types(node: Node, opset: int) -> str | None:
    """Dtypes ONNX (at this opset) cannot hold or quantize to."""
    for v in (*node.inputs, *node.outputs):
        if v.dtype == "bf16":
            return "bf16 tensors: cast to f32 or f16 before exporting"
        qp = v.type.quant
        if qp is None:
            continue
        if qp.group_size is not None and opset < 21:
            return f"block-wise quantization needs opset 21 (exporting opset {opset})"
        need = QDQ_MIN_OPSET.get(v.dtype)
        quantized_here = any(v is o for o in node.outputs) and (
            node.op in _QUANTIZING or _moves_quantized(node)
        )
        if need is None and quantized_here:
            return f"QuantizeLinear has no {v.dtype} output"
        if need is not None and opset < need:
            return f"{v.dtype} quantization needs opset {need} (exporting opset {opset})"
    return None


def _moves_quantized(node: Node) -> bool:
    from backends.onnx.rules import RULES

    rule = RULES.get(node.op)
    return rule is not None and rule.quant_transparent


def required_opset(graph: Graph) -> int:
    """The lowest opset that can hold every quantized type of ``graph`` (17 or 21)."""
    for value in graph.values():
        qp = value.type.quant
        if qp is not None and (qp.group_size is not None or value.dtype in ("i16", "i4", "u4")):
            return 21
    return 17


def lower_quantize(node: Node, em: Emitter) -> list:
    x = em.arg(0)
    if node.inputs[0].dtype == "f16" and em.opset < 19:  # f16 scales arrive in opset 19
        x = em.emit1("Cast", [x], to=1)
    if node.inputs[0].dtype == "f64":  # QuantizeLinear takes no double (an f64 island)
        x = em.emit1("Cast", [x], to=1)
    return [em.quantize(x, node.outputs[0].type)]


def lower_dequantize(node: Node, em: Emitter) -> list:
    y = em.real(node.inputs[0])
    dtype = node.attrs.get("dtype", "f32")
    if dtype != "f32":
        from backends.onnx.emitter import ONNX_DTYPES

        y = em.emit1("Cast", [y], to=ONNX_DTYPES[dtype])
    return [y]


def _real_clip(em: Emitter, y: str, node: Node, out: TensorType, relu: bool = False) -> str:
    """``clip_min``/``clip_max`` (and q.add's relu), integer codes, as float bounds."""
    qp = out.quant or QuantParams.per_tensor(1.0, 0)
    zp, scale = qp.zero_point[0], qp.scale[0]
    attrs = {**node.attrs, "dtype": out.dtype, "act": "relu" if relu else "none"}
    # The integer clamp (compiler.ir.op_facts), as real bounds; the dtype's own range is the
    # QuantizeLinear after it, no Clip.
    limits = INT_RANGES[out.dtype]
    bounds = [
        None if v == limit else (v - zp) * scale
        for v, limit in zip(output_clamp(attrs, zp), limits, strict=True)
    ]
    if bounds == [0.0, None]:
        return em.emit1("Relu", [y])
    if bounds == [None, None]:
        return y
    if qp.axis is not None:
        raise em.fail("clip bounds with per-channel output scales have no float form")
    inputs = [y] + ["" if b is None else em.scalar(b) for b in bounds]
    while inputs[-1] == "":
        inputs.pop()
    return em.emit1("Clip", inputs)


def _full(values: Any, axis: int | None, rank: int) -> np.ndarray:
    """Scalar or per-channel ``values`` shaped to broadcast along ``axis`` (float64)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 1 or axis is None:
        return arr.reshape(()) if arr.size == 1 else arr
    shape = [1] * rank
    shape[axis % rank] = arr.size
    return arr.reshape(shape)


def _scale_of(value: Value, rank: int) -> np.ndarray:
    qp = value.type.quant
    return np.ones(()) if qp is None else _full(qp.scale, qp.axis, rank)


def _rescale(em: Emitter, x: str, factor: np.ndarray) -> str:
    """``x * factor``, left out when the factor is 1 (the plain QDQ form)."""
    if np.allclose(factor, 1.0, rtol=_TOLERANCE[em.exact], atol=0.0):
        return x
    return em.emit1("Mul", [x, em.const(np.asarray(factor, np.float32), "rescale")])


def _source(em: Emitter, value: Value, rank: int) -> tuple[str, np.ndarray]:
    """(float tensor, its scale): the real value of an integer operand, in any form."""
    real = em.reals.get(id(value))
    if real is not None:
        return real.name, _full(real.scale, real.axis, rank)
    if value.type.quant is not None:
        return em.real(value), _scale_of(value, rank)
    return em.emit1("Cast", [em.name_of(value)], to=1), np.ones(())


def lower_requantize(node: Node, em: Emitter) -> list:
    """QuantizeLinear(real accumulator, output scale): the Q of the QDQ pattern."""
    x, out = node.inputs[0], node.outputs[0]
    a = node.attrs
    rank = out.type.rank
    effective = np.asarray(a["multiplier"], np.float64) / np.exp2(np.asarray(a["shift"]))
    axis = a.get("axis") if effective.size > 1 else None
    src, src_scale = _source(em, x, rank)
    # src / src_scale = the accumulator; times effective = output codes; times s_out = real.
    factor = _full(effective, axis, rank) * _scale_of(out, rank) / src_scale
    y = _real_clip(em, _rescale(em, src, factor), node, out.type)
    ties = max((tie_bits([m], s) or 0 for m, s in zip(a["multiplier"], a["shift"], strict=True)))
    return [em.quantize(y, out.type, ties or None)]


def lower_qadd(node: Node, em: Emitter) -> list:
    """DQ(a) + DQ(b) -> activation -> Q(out), as TensorRT fuses residual adds."""
    a = node.attrs
    out = node.outputs[0]
    rank = out.type.rank
    out_codes = np.exp2(-float(a["shift"])) * _scale_of(out, rank)
    terms = []
    for i, key in ((0, "a_multiplier"), (1, "b_multiplier")):
        src, src_scale = _source(em, node.inputs[i], rank)
        terms.append(_rescale(em, src, float(a[key]) * out_codes / src_scale))
    y = em.emit1("Add", terms)
    y = _real_clip(em, y, node, out.type, relu=a.get("act", "none") == "relu")
    ties = tie_bits([a["a_multiplier"], a["b_multiplier"]], a["shift"])
    return [em.quantize(y, out.type, ties)]


def _pool_rescale(em: Emitter, node: Node, y: str, window: int) -> str:
    """Honour the pool's multiplier: ``out = sum * multiplier / 2^shift`` in output codes."""
    a = node.attrs
    x, out = node.inputs[0], node.outputs[0]
    rank = out.type.rank
    effective = float(a["multiplier"]) / 2.0 ** int(a["shift"])
    # y is the mean of real values = sum * s_x / window; wanted: sum * effective * s_out.
    factor = effective * window * _scale_of(out, rank) / _scale_of(x, rank)
    return _rescale(em, y, factor)


def lower_qavg_pool(node: Node, em: Emitter) -> list:
    from backends.onnx.rules_nn import pool_attrs

    attrs = pool_attrs(node)
    attrs.pop("ceil_mode", None)
    y = em.emit1("AveragePool", [em.real(node.inputs[0])], count_include_pad=1, **attrs)
    window = int(np.prod(attrs["kernel_shape"]))
    return [_pool_quantize(em, node, _pool_rescale(em, node, y, window))]


def lower_qglobal_avg_pool(node: Node, em: Emitter) -> list:
    y = em.emit1("GlobalAveragePool", [em.real(node.inputs[0])])
    window = int(np.prod([int(d) for d in node.inputs[0].type.shape[2:]]))
    return [_pool_quantize(em, node, _pool_rescale(em, node, y, window))]


def _pool_quantize(em: Emitter, node: Node, y: str) -> str:
    ties = tie_bits([node.attrs["multiplier"]], node.attrs["shift"])
    return em.quantize(y, node.outputs[0].type, ties)


def check_qglobal_avg_pool(node: Node, opset: int) -> str | None:
    if not all(isinstance(d, int) for d in node.inputs[0].type.shape[2:]):
        return "integer global pooling needs static spatial dimensions"
    return check_types(node, opset)
