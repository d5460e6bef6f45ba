"""ONNX converters, part 1: elementwise math, activations, normalization, conv and
dense/matmul. Data movement, shapes, constants and control flow are in ``onnx_ops_tensor``,
pooling, reductions and quantization in ``onnx_ops_nn``; the table they fill is
``onnx_table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import ShapeError
from compiler.frontends.onnx_importer import OnnxNode, Output, Reject
from compiler.frontends.onnx_table import converts, explicit_pads, nondefault, spatial_attrs
from compiler.ir import Value
from compiler.ir.types import Dim

# ---- elementwise ----------------------------------------------------------------------------
BINARY: dict[str, str] = {
    "Add": "math.add",
    "Sub": "math.sub",
    "Mul": "math.mul",
    "Div": "math.div",
    "Pow": "math.pow",
    "Equal": "math.equal",
    "Less": "math.less",
    "Greater": "math.greater",
    "LessOrEqual": "math.less_equal",
    "GreaterOrEqual": "math.greater_equal",
    "And": "math.and",
    "Or": "math.or",
    "Xor": "math.xor",
}
UNARY: dict[str, str] = {
    "Erf": "math.erf",
    "Tanh": "math.tanh",
    "Exp": "math.exp",
    "Log": "math.log",
    "Sqrt": "math.sqrt",
    "Reciprocal": "math.reciprocal",
    "Neg": "math.neg",
    "Abs": "math.abs",
    "Sin": "math.sin",
    "Cos": "math.cos",
    "Not": "math.not",
    "IsNaN": "math.isnan",
    "Relu": "nn.relu",
    "Sigmoid": "nn.sigmoid",
    "HardSwish": "nn.hardswish",
}
VARIADIC: dict[str, str] = {"Max": "math.maximum", "Min": "math.minimum", "Sum": "math.add"}


@converts(*BINARY)
def _binary(n: OnnxNode) -> Sequence[Output]:
    a = n.value(0)
    # Pow's exponent may have another dtype than its base; the IR wants one dtype.
    b = n.value(1, dtype=a.dtype if n.op_type == "Pow" else None)
    return [n.emit(BINARY[n.op_type], [a, b])]


@converts("Mod")
def _mod(n: OnnxNode) -> Sequence[Output]:
    if not n.attr("fmod", 0):
        raise Reject("Mod with fmod=0 (floor modulo) has no IR op; only fmod=1")
    return [n.emit("math.mod", [n.value(0), n.value(1)])]


@converts(*UNARY)
def _unary(n: OnnxNode) -> Sequence[Output]:
    return [n.emit(UNARY[n.op_type], [n.value(0)])]


@converts("Max", "Min", "Sum", "Mean")
def _variadic(n: OnnxNode) -> Sequence[Output]:
    values = [n.value(i) for i in range(len(n.inputs)) if n.has(i)]
    op = VARIADIC.get(n.op_type, "math.add")
    out = values[0]
    for i, v in enumerate(values[1:]):
        out = n.emit(op, [out, v], hint=None if i == len(values) - 2 else f"acc{i}")
    if n.op_type == "Mean" and len(values) > 1:
        out = n.emit("math.div", [out, n.scalar(len(values), out.dtype)], hint="mean")
    return [out]


@converts("Identity")
def _identity(n: OnnxNode) -> Sequence[Output]:
    return [n.value(0)]


@converts("Dropout")
def _dropout(n: OnnxNode) -> Sequence[Output]:
    training = n.known(2) if n.has(2) else None
    if (training is not None and bool(training)) or (n.has(2) and training is None):
        raise Reject("Dropout in training mode")
    if n.used(1):
        raise Reject("Dropout's mask output")
    return [n.value(0)]


@converts("LeakyRelu")
def _leaky_relu(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("nn.leaky_relu", [n.value(0)], {"alpha": float(n.attr("alpha", 0.01))})]


@converts("HardSigmoid")
def _hard_sigmoid(n: OnnxNode) -> Sequence[Output]:
    attrs = {"alpha": float(n.attr("alpha", 0.2)), "beta": float(n.attr("beta", 0.5))}
    return [n.emit("nn.hardsigmoid", [n.value(0)], attrs)]


@converts("Gelu")
def _gelu(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("nn.gelu", [n.value(0)], {"approximate": n.attr("approximate", "none")})]


@converts("PRelu")
def _prelu(n: OnnxNode) -> Sequence[Output]:
    """``max(x, 0) + slope * min(x, 0)``; the slope broadcasts (per channel as [C, 1, 1])."""
    x, slope = n.value(0), n.value(1)
    negative = n.emit("math.minimum", [x, n.scalar(0, x.dtype)], hint="neg")
    scaled = n.emit("math.mul", [slope, negative], hint="scaled")
    return [n.emit("math.add", [n.emit("nn.relu", [x], hint="pos"), scaled])]


@converts("Elu")
def _elu(n: OnnxNode) -> Sequence[Output]:
    """``x if x > 0 else alpha * (exp(x) - 1)``."""
    x = n.value(0)
    alpha = float(n.attr("alpha", 1.0))
    zero, one = n.scalar(0, x.dtype), n.scalar(1, x.dtype)
    em1 = n.emit("math.sub", [n.emit("math.exp", [x], hint="exp"), one], hint="expm1")
    neg = n.emit("math.mul", [em1, n.scalar(alpha, x.dtype)], hint="neg")
    positive = n.emit("math.greater", [x, zero], hint="pos")
    return [n.emit("tensor.where", [positive, x, neg])]


@converts("Clip")
def _clip(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    if n.opset < 11:
        bounds: list[Any] = [n.attr("min"), n.attr("max")]
    else:
        bounds = [n.known(i) if n.has(i) else None for i in (1, 2)]
        if any(n.has(i) and bounds[i - 1] is None for i in (1, 2)):  # runtime bounds
            out = x
            if n.has(1):
                out = n.emit("math.maximum", [out, n.value(1, x.dtype)], hint="lo")
            return [n.emit("math.minimum", [out, n.value(2, x.dtype)]) if n.has(2) else out]
    lo, hi = (None if b is None else float(np.asarray(b).reshape(())) for b in bounds)
    if (lo, hi) == (0.0, 6.0):
        return [n.emit("nn.relu6", [x])]
    if lo == 0.0 and hi is None:
        return [n.emit("nn.relu", [x])]
    return [n.emit("nn.clip", [x], {"min": lo, "max": hi})]


@converts("Softmax", "LogSoftmax")
def _softmax(n: OnnxNode) -> Sequence[Output]:
    """Opset 13+: along ``axis``. Before 13 the input is coerced to 2-D at ``axis`` (default
    1) and normalized over everything after it: a flatten, a softmax, a reshape back."""
    op = "nn.softmax" if n.op_type == "Softmax" else "nn.log_softmax"
    x = n.value(0)
    axis = int(n.attr("axis", -1 if n.opset >= 13 else 1))
    axis = axis + x.type.rank if axis < 0 else axis
    if n.opset >= 13 or axis == x.type.rank - 1:
        return [n.emit(op, [x], {"axis": axis - x.type.rank})]
    flat = n.emit("tensor.flatten", [x], {"axis": axis}, hint="2d")
    y = n.emit(op, [flat], {"axis": 1}, hint="2d_out")
    return [n.emit("tensor.reshape", [y], {"shape": list(x.shape)})]


# ---- normalization --------------------------------------------------------------------------
@converts("LayerNormalization")
def _layer_norm(n: OnnxNode) -> Sequence[Output]:
    if n.used(1) or n.used(2):
        raise Reject("LayerNormalization's Mean/InvStdDev outputs")
    x = n.value(0)
    axis = int(n.attr("axis", -1))
    axis = axis + x.type.rank if axis < 0 else axis
    norm_shape = x.shape[axis:]
    params = [_param(n, i, norm_shape, "layer norm scale/bias") for i in (1, 2) if n.has(i)]
    attrs = {"axis": axis - x.type.rank, "eps": float(n.attr("epsilon", 1e-5))}
    return [n.emit("nn.layer_norm", [x, *params], attrs)]


def _param(n: OnnxNode, index: int, shape: tuple[Dim, ...], what: str) -> Value:
    """Input ``index`` as a parameter of exactly ``shape`` (a known one is broadcast)."""
    if n.shape(index) == tuple(shape):
        return n.value(index)
    data = n.known(index)
    if data is None or not all(isinstance(d, int) for d in shape):
        raise Reject(f"{what} of shape {list(n.shape(index))} for normalized shape {list(shape)}")
    return n.constant(np.broadcast_to(data, tuple(int(d) for d in shape)).copy(), n.inputs[index])


@converts("BatchNormalization")
def _batch_norm(n: OnnxNode) -> Sequence[Output]:
    if n.attr("training_mode", 0) or any(n.used(i) for i in range(1, 5)):
        raise Reject("BatchNormalization in training mode")
    x = n.value(0)
    params = [n.value(i, x.dtype) for i in range(1, 5)]
    return [n.emit("nn.batch_norm", [x, *params], {"eps": float(n.attr("epsilon", 1e-5))})]


@converts("LRN")
def _lrn(n: OnnxNode) -> Sequence[Output]:
    attrs = {
        "size": int(n.attr("size")),
        "alpha": float(n.attr("alpha", 1e-4)),
        "beta": float(n.attr("beta", 0.75)),
        "bias": float(n.attr("bias", 1.0)),
    }
    return [n.emit("nn.lrn", [n.value(0)], attrs)]


# ---- convolution ----------------------------------------------------------------------------
@converts("Conv")
def _conv(n: OnnxNode) -> Sequence[Output]:
    x, w = n.value(0), n.value(1)
    nsp = w.type.rank - 2
    if nsp not in (1, 2):
        raise Reject(f"{nsp}-D convolution (the IR has 1-D and 2-D)")
    kernel = [int(k) for k in w.shape[2:]]
    declared = n.attr("kernel_shape")
    if declared is not None and [int(k) for k in declared] != kernel:
        raise ShapeError(f"kernel_shape {list(declared)} disagrees with the weight's {kernel}")
    strides, dilations = spatial_attrs(n, nsp)
    pads = explicit_pads(n, x.shape[2:], kernel, strides, dilations)
    group = int(n.attr("group", 1))
    inputs = [x, w] + ([n.value(2, x.dtype)] if n.has(2) else [])
    attrs = nondefault(strides=strides, pads=pads, dilations=dilations, groups=group)
    return [n.emit(f"nn.conv{nsp}d", inputs, attrs)]


@converts("ConvTranspose")
def _conv_transpose(n: OnnxNode) -> Sequence[Output]:
    x, w = n.value(0), n.value(1)
    if w.type.rank != 4:
        raise Reject(f"{w.type.rank - 2}-D transposed convolution (the IR has 2-D)")
    strides, dilations = spatial_attrs(n, 2)
    out_pad = [int(p) for p in n.attr("output_padding", [0, 0])]
    pads = [int(p) for p in n.attr("pads", [0] * 4)]
    auto, output_shape = n.attr("auto_pad", "NOTSET"), n.attr("output_shape")
    if auto in ("SAME_UPPER", "SAME_LOWER") or output_shape is not None:
        sizes = n.static_shape(0, "ConvTranspose with output_shape/auto_pad")[2:]
        want = (
            output_shape[-2:]
            if output_shape
            else [s * st for s, st in zip(sizes, strides, strict=True)]
        )
        totals = [
            st * (s - 1) + op + (int(k) - 1) * d + 1 - o
            for s, st, op, k, d, o in zip(
                sizes, strides, out_pad, w.shape[2:], dilations, want, strict=True
            )
        ]
        if min(totals) < 0:
            raise Reject(f"ConvTranspose output_shape {list(want)} needs negative padding")
        upper = auto == "SAME_UPPER"
        pads = [t // 2 if upper else t - t // 2 for t in totals]
        pads += [t - t // 2 if upper else t // 2 for t in totals]
    elif auto == "VALID":
        pads = [0] * 4
    attrs = {
        **nondefault(strides=strides, pads=pads, dilations=dilations),
        "output_padding": out_pad,
        "groups": int(n.attr("group", 1)),
    }
    inputs = [x, w] + ([n.value(2, x.dtype)] if n.has(2) else [])
    return [n.emit("nn.conv_transpose2d", inputs, attrs)]


# ---- dense and matmul -----------------------------------------------------------------------
@converts("Gemm")
def _gemm(n: OnnxNode) -> Sequence[Output]:
    """``alpha * A' @ B' + beta * C`` as ``nn.dense`` (weight [N, K]) when B is a constant
    (transposed and scaled at import) or already [N, K] (``transB``, e.g. a dequantized
    weight); a C that is a bias vector becomes dense's bias. Otherwise ``nn.matmul``."""
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    trans_b = bool(n.attr("transB", 0))
    a = n.value(0)
    if n.attr("transA", 0):
        a = n.emit("tensor.transpose", [a], {"perm": [1, 0]}, hint="aT")
    b = n.known(1)
    if b is not None and b.dtype != object and b.ndim == 2:
        if trans_b and alpha == 1.0:
            weight = n.value(1)
        else:
            key = f"gemm{trans_b}{alpha}"
            weight = n.derived(1, key, lambda w: _dense_weight(w, trans_b, alpha))
        alpha = 1.0
    elif trans_b:
        weight = n.value(1)
    else:
        weight = n.emit("tensor.transpose", [n.value(1)], {"perm": [1, 0]}, hint="bT")
    c = n.known(2) if n.has(2) and beta != 0.0 else None
    units = weight.shape[0]
    if alpha == 1.0 and c is not None and c.dtype != object and c.size in (1, units):
        if c.shape[:-1] in {(), (1,)}:
            bias = np.broadcast_to(c.reshape(-1) * np.asarray(beta, c.dtype), (units,)).copy()
            return [n.emit("nn.dense", [a, weight, n.constant(bias, n.inputs[2])])]
    if not n.has(2) or beta == 0.0:
        if alpha == 1.0:
            return [n.emit("nn.dense", [a, weight])]
        return [_scaled(n, n.emit("nn.dense", [a, weight], hint="dense"), alpha, "")]
    y = _scaled(n, n.emit("nn.dense", [a, weight], hint="dense"), alpha, "alpha")
    return [n.emit("math.add", [y, _scaled(n, n.value(2, y.dtype), beta, "beta")])]


def _dense_weight(w: np.ndarray, trans_b: bool, alpha: float) -> np.ndarray:
    weight = w if trans_b else w.T
    if alpha != 1.0:
        weight = weight * np.asarray(alpha, dtype=w.dtype)
    return np.ascontiguousarray(weight)


def _scaled(n: OnnxNode, v: Value, factor: float, hint: str) -> Value:
    return v if factor == 1.0 else n.emit("math.mul", [v, n.scalar(factor, v.dtype)], hint=hint)


@converts("MatMul")
def _matmul(n: OnnxNode) -> Sequence[Output]:
    """A constant 2-D right operand [K, N] makes ``nn.dense`` with the weight transposed to
    [N, K] at import; otherwise ``nn.matmul`` (1-D operands promoted as NumPy does)."""
    weight = n.known(1)
    if weight is not None and weight.dtype != object and weight.ndim == 2:
        w = n.derived(1, "T", lambda k_n: np.ascontiguousarray(k_n.T))
        return [n.emit("nn.dense", [n.value(0), w])]
    a, b = n.value(0), n.value(1)
    squeeze = []
    if a.type.rank == 1:
        a, squeeze = n.emit("tensor.unsqueeze", [a], {"axes": [0]}, hint="a2d"), [-2]
    if b.type.rank == 1:
        b, squeeze = n.emit("tensor.unsqueeze", [b], {"axes": [1]}, hint="b2d"), [*squeeze, -1]
    if not squeeze:
        return [n.emit("nn.matmul", [a, b])]
    y = n.emit("nn.matmul", [a, b], hint="mm")
    return [n.emit("tensor.squeeze", [y], {"axes": squeeze})]
