"""The ONNX converter table, part 4: indexing with data, scans, selection, einsum, RMS norm,
bit shifts, floor modulo, the losses, and reductions whose axes are runtime data.

Each entry maps to one op of ``compiler.ir.ops_more``. Where an operand is known at import
(reduction axes, top-k's k) the result keeps static shapes; where it is runtime data the
IR op takes it as an operand and the dimensions it decides are symbolic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.frontends import onnx_ops_core  # noqa: F401  (first: Mod is wrapped)
from compiler.frontends.onnx_importer import OnnxNode, Output, Reject
from compiler.frontends.onnx_ops_nn import REDUCE, order_reversed
from compiler.frontends.onnx_table import CONVERTERS, converts
from compiler.ir import TensorType, Value
from compiler.ir.ops import norm_axis

#: ONNX reductions -> ``math.reduce`` kind (for axes computed at runtime, and the two that
#: the core table has no decomposition for).
REDUCE_KINDS: dict[str, str] = {
    "ReduceSum": "sum",
    "ReduceMean": "mean",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL1": "l1",
    "ReduceL2": "l2",
    "ReduceSumSquare": "sum_square",
    "ReduceLogSum": "log_sum",
    "ReduceLogSumExp": "log_sum_exp",
}
_static_reduce = CONVERTERS["ReduceSum"]


def _runtime(n: OnnxNode, index: int) -> bool:
    """Whether input ``index`` is present and computed at runtime (not known at import)."""
    return n.has(index) and n.known(index) is None


def _as_i64(n: OnnxNode, index: int) -> Value:
    value = n.value(index)
    return value if value.dtype == "i64" else n.emit("tensor.cast", [value], {"to": "i64"},
                                                     hint=f"in{index}_i64")  # fmt: skip


@converts(*REDUCE_KINDS)
def _reduce(n: OnnxNode) -> Sequence[Output]:
    """Axes known at import: the core reductions (static shapes); axes computed at runtime,
    or ReduceLogSum/ReduceLogSumExp: ``math.reduce``."""
    axes_as_input = n.opset >= (13 if n.op_type == "ReduceSum" else 18)
    if n.op_type in REDUCE and not (axes_as_input and _runtime(n, 1)):
        return _static_reduce(n)
    x = n.value(0)
    attrs = {
        "kind": REDUCE_KINDS[n.op_type],
        "keepdims": bool(n.attr("keepdims", 1)),
        "noop_with_empty_axes": bool(n.attr("noop_with_empty_axes", 0)),
    }
    if axes_as_input and _runtime(n, 1):
        return [n.emit("math.reduce", [x, _as_i64(n, 1)], attrs)]
    axes = (n.ints(1, "the axes") if n.has(1) else []) if axes_as_input else n.attr("axes", [])
    return [n.emit("math.reduce", [x], {**attrs, "axes": [int(a) for a in axes] or None})]


@converts("GatherElements")
def _gather_elements(n: OnnxNode) -> Sequence[Output]:
    attrs = {"axis": int(n.attr("axis", 0))}
    return [n.emit("tensor.gather_elements", [n.value(0), n.value(1)], attrs)]


@converts("ScatterElements", "Scatter")
def _scatter_elements(n: OnnxNode) -> Sequence[Output]:
    attrs = {"axis": int(n.attr("axis", 0)), "reduction": n.attr("reduction", "none")}
    x = n.value(0)
    return [n.emit("tensor.scatter_elements", [x, n.value(1), n.value(2, x.dtype)], attrs)]


@converts("ScatterND")
def _scatter_nd(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    attrs = {"reduction": n.attr("reduction", "none")}
    return [n.emit("tensor.scatter_nd", [x, _as_i64(n, 1), n.value(2, x.dtype)], attrs)]


@converts("CumSum")
def _cumsum(n: OnnxNode) -> Sequence[Output]:
    attrs = {"exclusive": bool(n.attr("exclusive", 0)), "reverse": bool(n.attr("reverse", 0))}
    return [n.emit("math.cumsum", [n.value(0), _as_i64(n, 1)], attrs)]


@converts("Trilu")
def _trilu(n: OnnxNode) -> Sequence[Output]:
    k = [_as_i64(n, 1)] if n.has(1) else []
    return [n.emit("tensor.trilu", [n.value(0), *k], {"upper": bool(n.attr("upper", 1))})]


@converts("TopK")
def _topk(n: OnnxNode) -> Sequence[Output]:
    """k is an attribute before opset 10, then a one-element input; a known k keeps the
    shapes static."""
    x = n.value(0)
    if n.opset < 10:
        k_value: Value = n.constant(np.asarray([int(n.attr("k"))], np.int64), n.name_hint("k"))
        known: int | None = int(n.attr("k"))
    else:
        k_value = _as_i64(n, 1)
        data = n.known(1)
        known = (
            int(np.asarray(data).reshape(-1)[0])
            if data is not None and data.dtype != object
            else None
        )
    attrs = {
        "axis": int(n.attr("axis", -1)),
        "largest": bool(n.attr("largest", 1)),
        "sorted": bool(n.attr("sorted", 1)),
    }
    out_types = None
    if known is not None:
        axis = norm_axis(attrs["axis"], x.type.rank)
        shape = tuple(known if i == axis else d for i, d in enumerate(x.shape))
        out_types = [TensorType(x.dtype, shape), TensorType("i64", shape)]
    names = [
        n.name_hint(index=0),
        n.name_hint(index=1) if len(n.outputs) > 1 else n.name_hint("idx"),
    ]
    values, indices = n.emit_multi("math.topk", [x, k_value], attrs, out_types, names)
    return [values, indices]


@converts("Einsum")
def _einsum(n: OnnxNode) -> Sequence[Output]:
    operands = [n.value(i) for i in range(len(n.inputs)) if n.has(i)]
    return [n.emit("math.einsum", operands, {"equation": str(n.attr("equation"))})]


@converts("RMSNormalization")
def _rms_norm(n: OnnxNode) -> Sequence[Output]:
    if n.attr("stash_type", 1) != 1:
        raise Reject(f"stash_type={n.attr('stash_type')} (only float32 statistics)")
    x = n.value(0)
    attrs = {"axis": int(n.attr("axis", -1)), "eps": float(n.attr("epsilon", 1e-5))}
    return [n.emit("nn.rms_norm", [x, n.value(1, x.dtype)], attrs)]


@converts("BitShift")
def _bitshift(n: OnnxNode) -> Sequence[Output]:
    direction = str(n.attr("direction", "")).lower()
    a = n.value(0)
    return [n.emit("math.bitshift", [a, n.value(1, a.dtype)], {"direction": direction})]


_fmod = CONVERTERS["Mod"]


@converts("Mod")
def _mod(n: OnnxNode) -> Sequence[Output]:
    """fmod=1: C's fmod (``math.mod``); fmod=0: floor modulo, the sign of the divisor."""
    if n.attr("fmod", 0):
        return _fmod(n)
    a = n.value(0)
    return [n.emit("math.floor_mod", [a, n.value(1, a.dtype)])]


def _nll(n: OnnxNode, log_prob: Value) -> Value:
    target = _as_i64(n, 1)
    weight = [n.value(2, log_prob.dtype)] if n.has(2) else []
    ignore = n.attr("ignore_index")
    attrs = {
        "reduction": str(n.attr("reduction", "mean")),
        "ignore_index": None if ignore is None else int(ignore),
    }
    return n.emit("nn.nll_loss", [log_prob, target, *weight], attrs)


@converts("NegativeLogLikelihoodLoss")
def _nll_loss(n: OnnxNode) -> Sequence[Output]:
    return [_nll(n, n.value(0))]


@converts("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(n: OnnxNode) -> Sequence[Output]:
    """``nll_loss(log_softmax(scores, axis=1), labels)``; output 1 is the log-probabilities."""
    log_prob = n.emit("nn.log_softmax", [n.value(0)], {"axis": 1}, hint="log_prob")
    return [_nll(n, log_prob), log_prob]


UNARY_MORE: dict[str, str] = {
    "Ceil": "math.ceil", "Floor": "math.floor", "Round": "math.round", "Sign": "math.sign",
    "Tan": "math.tan", "Asin": "math.asin", "Acos": "math.acos", "Atan": "math.atan",
    "Sinh": "math.sinh", "Cosh": "math.cosh", "Asinh": "math.asinh", "Acosh": "math.acosh",
    "Atanh": "math.atanh", "BitwiseNot": "math.bitwise_not",
}  # fmt: skip
BINARY_MORE: dict[str, str] = {
    "BitwiseAnd": "math.bitwise_and", "BitwiseOr": "math.bitwise_or",
    "BitwiseXor": "math.bitwise_xor",
}  # fmt: skip


@converts(*UNARY_MORE)
def _unary_more(n: OnnxNode) -> Sequence[Output]:
    return [n.emit(UNARY_MORE[n.op_type], [n.value(0)])]


@converts(*BINARY_MORE)
def _binary_more(n: OnnxNode) -> Sequence[Output]:
    a = n.value(0)
    return [n.emit(BINARY_MORE[n.op_type], [a, n.value(1, a.dtype)])]


# ---- activations as compositions of core ops (so every backend that has those takes them) ----
def _c(n: OnnxNode, x: Value, number: float) -> Value:
    return n.scalar(number, x.dtype)


def _softplus(n: OnnxNode, x: Value, hint: str | None = None) -> Value:
    """``log(exp(x) + 1)``, as ONNX defines it (large x overflow to inf there too)."""
    e = n.emit("math.exp", [x], hint="exp" if hint else "sp_exp")
    return n.emit("math.log", [n.emit("math.add", [e, _c(n, x, 1.0)], hint="sp_1p")], hint=hint)


@converts("Softplus")
def _softplus_op(n: OnnxNode) -> Sequence[Output]:
    return [_softplus(n, n.value(0))]


@converts("Softsign")
def _softsign(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    den = n.emit("math.add", [n.emit("math.abs", [x], hint="abs"), _c(n, x, 1.0)], hint="den")
    return [n.emit("math.div", [x, den])]


@converts("Swish")
def _swish(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    alpha = float(n.attr("alpha", 1.0))
    scaled = x if alpha == 1.0 else n.emit("math.mul", [x, _c(n, x, alpha)], hint="ax")
    return [n.emit("math.mul", [x, n.emit("nn.sigmoid", [scaled], hint="sig")])]


@converts("Mish")
def _mish(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    return [n.emit("math.mul", [x, n.emit("math.tanh", [_softplus(n, x, "sp")], hint="tanh")])]


def _expm1_scaled(n: OnnxNode, x: Value, alpha: float, inner: float, hint: str) -> Value:
    """``alpha * (exp(x * inner) - 1)``."""
    xs = x if inner == 1.0 else n.emit("math.mul", [x, _c(n, x, inner)], hint=f"{hint}_in")
    em1 = n.emit("math.sub", [n.emit("math.exp", [xs], hint=f"{hint}_exp"), _c(n, x, 1.0)],
                 hint=f"{hint}_em1")  # fmt: skip
    return n.emit("math.mul", [em1, _c(n, x, alpha)], hint=hint)


@converts("Selu")
def _selu(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    alpha = float(n.attr("alpha", 1.67326319217681884765625))
    gamma = float(n.attr("gamma", 1.05070102214813232421875))
    neg = _expm1_scaled(n, x, alpha, 1.0, "neg")
    pos = n.emit("math.greater", [x, _c(n, x, 0.0)], hint="pos")
    y = n.emit("tensor.where", [pos, x, neg], hint="elu")
    return [n.emit("math.mul", [y, _c(n, x, gamma)])]


@converts("Celu")
def _celu(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    alpha = float(n.attr("alpha", 1.0))
    neg = _expm1_scaled(n, x, alpha, 1.0 / alpha, "neg")
    zero = _c(n, x, 0.0)
    low = n.emit("math.minimum", [neg, zero], hint="low")
    return [n.emit("math.add", [n.emit("math.maximum", [x, zero], hint="high"), low])]


@converts("ThresholdedRelu")
def _thresholded_relu(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    above = n.emit("math.greater", [x, _c(n, x, float(n.attr("alpha", 1.0)))], hint="above")
    return [n.emit("tensor.where", [above, x, _c(n, x, 0.0)])]


@converts("Shrink")
def _shrink(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    lambd, bias = float(n.attr("lambd", 0.5)), float(n.attr("bias", 0.0))
    low = n.emit("math.less", [x, _c(n, x, -lambd)], hint="low")
    high = n.emit("math.greater", [x, _c(n, x, lambd)], hint="high")
    plus = n.emit("math.add", [x, _c(n, x, bias)], hint="plus")
    minus = n.emit("math.sub", [x, _c(n, x, bias)], hint="minus")
    upper = n.emit("tensor.where", [high, minus, _c(n, x, 0.0)], hint="upper")
    return [n.emit("tensor.where", [low, plus, upper])]


_first_argmax = CONVERTERS["ArgMax"]


@converts("ArgMax", "ArgMin")
def _argmax(n: OnnxNode) -> Sequence[Output]:
    """``select_last_index``: the first extreme of the input reversed along the axis is the
    last one of the input, at ``size - 1 - index``."""
    if not n.attr("select_last_index", 0):
        return _first_argmax(n)
    x = n.value(0)
    axis = norm_axis(int(n.attr("axis", 0)), x.type.rank)
    size = x.shape[axis]
    if not isinstance(size, int):
        raise Reject("select_last_index along a symbolic dimension")
    slice_attrs = {"starts": [-1], "ends": [-(2**62)], "axes": [axis], "steps": [-1]}
    flipped = n.emit("tensor.slice", [x], slice_attrs, hint="rev")
    if n.op_type == "ArgMin":
        flipped = order_reversed(n, flipped)
    attrs = {"axis": axis, "keepdims": bool(n.attr("keepdims", 1))}
    index = n.emit("math.argmax", [flipped], attrs, hint="rev_idx")
    return [n.emit("math.sub", [n.scalar(size - 1, "i64"), index])]


_nearest_resize = CONVERTERS["Resize"]


@converts("Resize", "Upsample")
def _resize(n: OnnxNode) -> Sequence[Output]:
    """mode=linear: ``nn.resize_linear`` to the static output shape; other modes: the
    nearest-resize converter."""
    from compiler.frontends.onnx_ops_nn import resize_scales
    from compiler.ir.ops_more import RESIZE_COORDINATES

    if n.attr("mode", "nearest") != "linear":
        return _nearest_resize(n)
    if n.attr("antialias", 0):
        raise Reject("linear resize with antialias=1")
    x = n.value(0)
    shape = n.static_shape(0, "linear Resize")
    scales, sizes = resize_scales(n, x.type.rank)
    old = n.op_type == "Upsample" or n.opset < 11
    transform = "asymmetric" if old else n.attr("coordinate_transformation_mode", "half_pixel")
    if transform not in RESIZE_COORDINATES:
        raise Reject(f"linear resize with coordinate_transformation_mode={transform!r}")
    out = sizes or [int(np.floor(d * s)) for d, s in zip(shape, scales, strict=True)]
    attrs = {"sizes": out, "scales": scales, "mode": transform}
    return [n.emit("nn.resize_linear", [x], attrs)]
