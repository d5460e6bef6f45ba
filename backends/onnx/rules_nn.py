"""ONNX lowering rules, part 2: convolution, dense/matmul, pooling, resize, attention.

Integer conv/dense/matmul (quantized graphs) are written in the QDQ form TensorRT expects:
``DequantizeLinear(x)`` and ``DequantizeLinear(w, per-channel axis 0)`` feed a *float*
Conv/Gemm/MatMul whose result is the accumulator's real value (``acc * s_x * s_w``); the
rule returns it as a ``Real`` and the ``q.requantize`` after it becomes QuantizeLinear. The
int32 bias becomes a float bias (``b * s_x * s_w``); a fused activation becomes its own node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.onnx.emitter import Emitter, Real, broadcast_shape
from backends.onnx.rules_math import activation
from compiler.ir.graph import Node, Value
from compiler.ir.ops_nn import spatial_params
from compiler.ir.types import is_int

#: Fused activations of an integer conv/dense with a float form: relu commutes with the
#: positive scale of the accumulator; relu6/clip clamp the integer codes (the interpreter's
#: meaning), which no float Clip of the real value reproduces.
INT_ACTIVATIONS = ("none", "relu")


# ---- integer accumulators -------------------------------------------------------------------
def _scale(value: Value) -> np.ndarray:
    qp = value.type.quant
    return np.ones(1) if qp is None else np.asarray(qp.scale, dtype=np.float64)


def acc_scale(node: Node) -> tuple[np.ndarray, int]:
    """(scale, axis) of an integer conv/dense/matmul accumulator: ``s_x * s_w``."""
    x, w = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    axis = 1 if node.op in ("nn.conv1d", "nn.conv2d") else out.type.rank - 1
    return _scale(x) * _scale(w), axis


def check_integer(node: Node, opset: int) -> str | None:
    """Why an integer conv/dense/matmul has no QDQ form, or None."""
    if not is_int(node.inputs[0].dtype):
        return None
    x, w = node.inputs[0].type, node.inputs[1].type
    if x.quant is not None and x.quant.axis is not None:
        return "integer input with per-channel scales has no single accumulator scale"
    if w.quant is not None and w.quant.group_size is not None:
        return "block-wise weights need a float dense (dequantize the weight first)"
    if w.quant is not None and w.quant.axis is not None:
        want = 0 if node.op != "nn.matmul" else w.rank - 1
        if w.quant.axis % w.rank != want:
            return f"per-channel weight scales must run along axis {want}"
    if node.attrs.get("act", "none") not in INT_ACTIVATIONS:
        return f"fused {node.attrs['act']} on an integer accumulator has no float form"
    return None


def _operands(node: Node, em: Emitter) -> tuple[str, str]:
    """(x, w) as float tensors: the real values for integer ops, else as they are."""
    x, w = node.inputs[0], node.inputs[1]
    if not is_int(x.dtype):
        return em.arg(0), em.arg(1)
    # The interpreter subtracts the input's zero point but never a weight's (weights are
    # symmetric); a per-channel zero point of a matmul's right operand is ignored likewise.
    w_zp = node.op == "nn.matmul" and (w.type.quant is None or w.type.quant.axis is None)
    return em.real(x), em.real(w, zero_point=w_zp)


def _bias(em: Emitter, node: Node, scale: np.ndarray) -> list[str]:
    if not em.has_arg(2):
        return []
    b = node.inputs[2]
    if not is_int(b.dtype):
        return [em.arg(2)]
    data = em.graph.const_value(b)
    if data is not None:  # TensorRT takes a float bias; fold the scale in now
        return [em.const((data.astype(np.float64) * scale).astype(np.float32), "bias")]
    return [em.real_with_scale(b, scale, 0)]


def _finish(em: Emitter, node: Node, y: str, scale: np.ndarray, axis: int) -> list:
    """Residual, activation, and the accumulator stand-in for integer nodes."""
    integer = is_int(node.inputs[0].dtype)
    rank = node.outputs[0].type.rank
    if em.has_arg(3):
        residual = em.real_with_scale(node.inputs[3], scale, axis) if integer else em.arg(3)
        y = em.emit1("Add", [y, residual])
    act = node.attrs.get("act", "none")
    args = list(node.attrs.get("act_args") or [])
    if integer and act in ("relu6", "clip"):
        # Bounds in accumulator units: per channel in real units.
        lo, hi = (0.0, 6.0) if act == "relu6" else ((args + [None, None])[:2])
        for op_type, bound in (("Max", lo), ("Min", hi)):
            if bound is not None:
                limit = broadcast_shape(np.asarray(bound) * scale, axis, rank)
                y = em.emit1(op_type, [y, em.const(limit, "bound")])
    else:
        y = activation(em, y, act, args, "f32" if integer else node.outputs[0].dtype)
    return [Real(y, scale, axis)] if integer else [y]


# ---- convolution ---------------------------------------------------------------------------
def _conv_attrs(node: Node, n: int) -> dict:
    strides, pads, dilations = spatial_params(node.attrs, n)
    w = node.inputs[1].type
    return {
        "kernel_shape": [int(d) for d in w.shape[2:]],
        "strides": strides,
        "pads": pads,
        "dilations": dilations,
        "group": int(node.attrs.get("groups", 1)),
    }


def lower_conv(node: Node, em: Emitter) -> list:
    n = node.inputs[1].type.rank - 2
    scale, axis = acc_scale(node)
    x, w = _operands(node, em)
    y = em.emit1("Conv", [x, w, *_bias(em, node, scale)], **_conv_attrs(node, n))
    return _finish(em, node, y, scale, axis)


def lower_conv_transpose(node: Node, em: Emitter) -> list:
    attrs = _conv_attrs(node, 2)
    attrs["output_padding"] = list(node.attrs.get("output_padding") or [0, 0])
    inputs = [em.arg(0), em.arg(1)] + ([em.arg(2)] if em.has_arg(2) else [])
    return [em.emit1("ConvTranspose", inputs, **attrs)]


# ---- dense and matmul ----------------------------------------------------------------------
def lower_dense(node: Node, em: Emitter) -> list:
    """Gemm(x, w, b, transB=1); inputs of rank other than 2 are reshaped to 2-D and back."""
    x_type, out_type = node.inputs[0].type, node.outputs[0].type
    scale, axis = acc_scale(node)
    x, w = _operands(node, em)
    k = node.inputs[1].type.shape[1]
    if x_type.rank != 2:
        x = em.emit1("Reshape", [x, em.i64([-1, int(k)])])
    y = em.emit1("Gemm", [x, w, *_bias(em, node, scale)], transB=1)
    if x_type.rank != 2:
        y = em.emit1("Reshape", [y, em.reshape_target(out_type.shape)])
    return _finish(em, node, y, scale, axis)


def lower_matmul(node: Node, em: Emitter) -> list:
    x, w = _operands(node, em)
    y = em.emit1("MatMul", [x, w])
    if not is_int(node.inputs[0].dtype):
        return [y]
    scale, axis = acc_scale(node)
    return [Real(y, scale, axis)]


# ---- pooling -------------------------------------------------------------------------------
def pool_attrs(node: Node) -> dict:
    kernel = [int(k) for k in node.attrs["kernel"]]
    strides, pads, _ = spatial_params(
        {**node.attrs, "strides": node.attrs.get("strides") or kernel}, 2
    )
    attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if node.attrs.get("ceil_mode"):
        attrs["ceil_mode"] = 1
    return attrs


def lower_max_pool(node: Node, em: Emitter) -> list:
    attrs = pool_attrs(node)
    _, _, dilations = spatial_params(node.attrs, 2)
    return [em.emit1("MaxPool", [em.arg(0)], dilations=dilations, **attrs)]


def lower_avg_pool(node: Node, em: Emitter) -> list:
    include = int(bool(node.attrs.get("count_include_pad", True)))
    return [em.emit1("AveragePool", [em.arg(0)], count_include_pad=include, **pool_attrs(node))]


def lower_global_pool(node: Node, em: Emitter) -> list:
    op_type = "GlobalAveragePool" if node.op == "nn.global_avg_pool" else "GlobalMaxPool"
    return [em.emit1(op_type, [em.arg(0)])]


def _averaging_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i averages PyTorch's adaptive window i."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def lower_adaptive_avg_pool(node: Node, em: Emitter) -> list:
    """Global pooling, an even AveragePool, or (uneven windows) two averaging MatMuls."""
    oh, ow = (int(v) for v in node.attrs["output_size"])
    x = em.arg(0)
    if (oh, ow) == (1, 1):
        return [em.emit1("GlobalAveragePool", [x])]
    h, w = (int(d) for d in node.inputs[0].type.shape[2:])
    if h % oh == 0 and w % ow == 0:
        kernel = [h // oh, w // ow]
        return [em.emit1("AveragePool", [x], kernel_shape=kernel, strides=kernel)]
    rows = em.const(_averaging_matrix(h, oh), "rows")
    cols = em.const(_averaging_matrix(w, ow).T.copy(), "cols")
    return [em.emit1("MatMul", [em.emit1("MatMul", [rows, x]), cols])]


def check_adaptive_avg_pool(node: Node, opset: int) -> str | None:
    shape = node.inputs[0].type.shape
    if list(node.attrs["output_size"]) != [1, 1] and not all(isinstance(d, int) for d in shape[2:]):
        return "adaptive pooling to a size other than 1x1 needs static spatial dimensions"
    return None


def lower_resize(node: Node, em: Emitter) -> list:
    """Nearest resize ``out[i] = in[floor(i / scale)]``: asymmetric coordinates, floor."""
    scales = em.const(np.asarray(node.attrs["scales"], np.float32), "scales")
    return [
        em.emit1(
            "Resize",
            [em.arg(0), "", scales],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    ]


# ---- attention -----------------------------------------------------------------------------
def _causal_keep(em: Emitter, scores: str, length: int | str, source: int | str) -> str:
    """A bool [L, S] mask keeping j <= i + (S - L), as the interpreter's causal mask."""
    if isinstance(length, int) and isinstance(source, int):
        keep = np.tril(np.ones((length, source), dtype=bool), k=source - length)
        return em.const(keep, "causal")
    dims = em.emit1("Shape", [scores], start=-2)
    ones = em.emit1("ConstantOfShape", [dims])  # float 0s; +1 below
    ones = em.emit1("Add", [ones, em.scalar(1.0)])
    rows = em.emit1("Shape", [scores], start=-2, end=-1)
    cols = em.emit1("Shape", [scores], start=-1)
    k = em.emit1("Squeeze", [em.emit1("Sub", [cols, rows]), em.i64([0])])
    lower = em.emit1("Trilu", [ones, k], upper=0)
    return em.emit1("Cast", [lower], to=9)  # BOOL


def _zero_dead_rows(em: Emitter, node: Node, probs: str, causal: str | None) -> str:
    """A fully masked row (a left-padded query) gives 0, as the interpreter and torch do;
    dead rows are found from the mask (a float mask masks with -inf)."""
    mask = node.inputs[3]
    keep = em.arg(3)
    if mask.dtype != "bool":
        keep = em.emit1("Not", [em.emit1("Equal", [keep, em.scalar(-np.inf, mask.dtype)])])
    if causal is not None:
        keep = em.emit1("And", [keep, causal])
    keep = em.emit1("Cast", [keep], to=6)  # INT32
    if em.opset >= 18:
        alive = em.emit1("ReduceMax", [keep, em.i64([-1])], keepdims=1)
    else:
        alive = em.emit1("ReduceMax", [keep], axes=[-1], keepdims=1)
    dead = em.emit1("Equal", [alive, em.const(np.asarray(0, np.int32), "zero")])
    return em.emit1("Where", [dead, em.scalar(0.0, node.outputs[0].dtype), probs])


def lower_attention(node: Node, em: Emitter) -> list:
    """``softmax(q @ k^T * scale + mask) @ v`` as MatMul/Mul/Where/Softmax/MatMul."""
    q_type, k_type = node.inputs[0].type, node.inputs[1].type
    dtype = node.outputs[0].dtype
    rank = q_type.rank
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    kt = em.emit1("Transpose", [em.arg(1)], perm=perm)
    scores = em.emit1("MatMul", [em.arg(0), kt])
    scale = node.attrs.get("scale")
    if scale is None:
        scale = 1.0 / np.sqrt(float(q_type.shape[-1]))
    scores = em.emit1("Mul", [scores, em.scalar(float(np.float32(scale)), dtype)])
    minus_inf = em.scalar(-np.inf, dtype)
    keep = None
    if node.attrs.get("causal"):
        keep = _causal_keep(em, scores, q_type.shape[-2], k_type.shape[-2])
        scores = em.emit1("Where", [keep, scores, minus_inf])
    if em.has_arg(3):
        mask = node.inputs[3]
        if mask.dtype == "bool":
            scores = em.emit1("Where", [em.arg(3), scores, minus_inf])
        else:
            scores = em.emit1("Add", [scores, em.arg(3)])
    probs = em.emit1("Softmax", [scores], axis=-1)
    if em.has_arg(3):
        probs = _zero_dead_rows(em, node, probs, keep)
    return [em.emit1("MatMul", [probs, em.arg(2)])]


def check_attention(node: Node, opset: int) -> str | None:
    if not isinstance(node.inputs[0].type.shape[-1], int) and node.attrs.get("scale") is None:
        return "attention with a symbolic head size needs an explicit scale"
    return None
