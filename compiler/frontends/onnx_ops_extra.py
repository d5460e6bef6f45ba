"""The ONNX converter table, part 5: the rest of the standard's tensor ops.

Each entry maps to ops of ``compiler.ir.ops_extra`` (or to constants, where the result
depends only on shapes known at import). Pooling forms the core converter declines
(dilated averages, Lp pooling, windows over three or more dimensions) go to ``nn.pool_nd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.frontends import onnx_ops_core, onnx_ops_nn  # noqa: F401  (first: entries are wrapped)
from compiler.frontends.onnx_importer import OnnxNode, Output, Reject, ir_dtype
from compiler.frontends.onnx_table import CONVERTERS, converts, explicit_pads, spatial_attrs
from compiler.ir import Value


def _as_i64(n: OnnxNode, index: int) -> Value:
    value = n.value(index)
    return value if value.dtype == "i64" else n.emit("tensor.cast", [value], {"to": "i64"},
                                                     hint=f"in{index}_i64")  # fmt: skip


@converts("Hardmax")
def _hardmax(n: OnnxNode) -> Sequence[Output]:
    """Opset 13 takes one axis; before, the input was flattened to 2-D at ``axis``."""
    x = n.value(0)
    if n.opset < 13:
        axis = int(n.attr("axis", 1)) % max(x.type.rank, 1)
        if axis != x.type.rank - 1:
            raise Reject(f"Hardmax before opset 13 with axis={axis} (not the last)")
        return [n.emit("math.hardmax", [x], {"axis": -1})]
    return [n.emit("math.hardmax", [x], {"axis": int(n.attr("axis", -1))})]


@converts("CumProd")
def _cumprod(n: OnnxNode) -> Sequence[Output]:
    attrs = {"exclusive": bool(n.attr("exclusive", 0)), "reverse": bool(n.attr("reverse", 0))}
    return [n.emit("math.cumprod", [n.value(0), _as_i64(n, 1)], attrs)]


@converts("LpNormalization")
def _lp_norm(n: OnnxNode) -> Sequence[Output]:
    p = int(n.attr("p", 2))
    if p not in (1, 2):
        raise Reject(f"LpNormalization with p={p} (1 or 2)")
    return [n.emit("nn.lp_norm", [n.value(0)], {"axis": int(n.attr("axis", -1)), "p": p})]


@converts("IsInf")
def _isinf(n: OnnxNode) -> Sequence[Output]:
    attrs = {"positive": bool(n.attr("detect_positive", 1)),
             "negative": bool(n.attr("detect_negative", 1))}  # fmt: skip
    return [n.emit("math.isinf", [n.value(0)], attrs)]


@converts("BitCast")
def _bitcast(n: OnnxNode) -> Sequence[Output]:
    x = n.value(0)
    to = ir_dtype(int(n.attr("to")), "BitCast's 'to'")
    return [x if to == x.dtype else n.emit("tensor.bitcast", [x], {"to": to})]


@converts("EyeLike")
def _eye_like(n: OnnxNode) -> Sequence[Output]:
    """Depends only on the input's shape, known at import: a constant."""
    shape = n.static_shape(0, "EyeLike")
    if len(shape) != 2:
        raise Reject(f"EyeLike of rank {len(shape)} (2 needed)")
    dtype = ir_dtype(int(n.attr("dtype")), "EyeLike's dtype") if n.attr("dtype") is not None \
        else n.type(0).dtype  # fmt: skip
    from compiler.ir import TensorType

    data = np.eye(shape[0], shape[1], int(n.attr("k", 0)))
    t = TensorType(dtype, shape)
    return [n.constant(data.astype(t.np_dtype), n.name_hint(), t)]


@converts("OneHot")
def _one_hot(n: OnnxNode) -> Sequence[Output]:
    depth = n.value(1)
    if depth.dtype != "i64":
        depth = n.emit("tensor.cast", [depth], {"to": "i64"}, hint="depth")
    indices = n.value(0)
    return [n.emit("tensor.one_hot", [indices, depth, n.value(2)],
                   {"axis": int(n.attr("axis", -1))})]  # fmt: skip


@converts("Unique")
def _unique(n: OnnxNode) -> Sequence[Output]:
    axis = n.attr("axis")
    attrs = {"axis": None if axis is None else int(axis), "sorted": bool(n.attr("sorted", 1))}
    names = [n.name_hint(index=i) if i < len(n.outputs) and n.outputs[i] else
             n.name_hint(f"out{i}") for i in range(4)]  # fmt: skip
    return n.emit_multi("tensor.unique", [n.value(0)], attrs, None, names)


@converts("NonZero")
def _nonzero(n: OnnxNode) -> Sequence[Output]:
    return [n.emit("tensor.nonzero", [n.value(0)])]


@converts("Compress")
def _compress(n: OnnxNode) -> Sequence[Output]:
    axis = n.attr("axis")
    cond = n.value(1, "bool")
    return [n.emit("tensor.compress", [n.value(0), cond],
                   {"axis": None if axis is None else int(axis)})]  # fmt: skip


_core_pool = CONVERTERS["MaxPool"]  # onnx_ops_nn's, for AveragePool too


@converts("MaxPool", "AveragePool", "LpPool")
def _pool(n: OnnxNode) -> Sequence[Output]:
    """The core converter first (its 2-D ops have kernels on every backend); the forms it
    declines (dilated averages, three or more window dimensions, Lp) as ``nn.pool_nd``."""
    if n.op_type != "LpPool":
        try:
            return _core_pool(n)
        except Reject:
            pass  # the N-D op below takes it
    x = n.value(0)
    kernel = [int(k) for k in n.attr("kernel_shape")]
    strides, dilations = spatial_attrs(n, len(kernel))
    pads = explicit_pads(n, x.shape[2:], kernel, strides, dilations)
    if n.used(1):  # MaxPool's Indices
        attrs_i = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations,
                   "ceil_mode": bool(n.attr("ceil_mode", 0)),
                   "storage_order": int(n.attr("storage_order", 0))}  # fmt: skip
        names = [n.name_hint(index=0), n.name_hint(index=1)]
        return n.emit_multi("nn.max_pool_argmax", [x], attrs_i, None, names)
    kind = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp"}[n.op_type]
    attrs = {
        "kind": kind, "kernel": kernel, "strides": strides, "pads": pads,
        "dilations": dilations, "ceil_mode": bool(n.attr("ceil_mode", 0)),
        "count_include_pad": bool(n.attr("count_include_pad", 0)), "p": int(n.attr("p", 2)),
    }  # fmt: skip
    return [n.emit("nn.pool_nd", [x], attrs)]


def _optional(n: OnnxNode, index: int, dtype: str) -> list[Value]:
    return [n.value(index)] if n.has(index) else [n.scalar(0, dtype)]


@converts("QLinearMatMul")
def _qlinear_matmul(n: OnnxNode) -> Sequence[Output]:
    a, b = n.value(0), n.value(3)
    inputs = [a, n.value(1), *_optional(n, 2, a.dtype), b, n.value(4),
              *_optional(n, 5, b.dtype), n.value(6), *_optional(n, 7, a.dtype)]  # fmt: skip
    return [n.emit("q.linear_matmul", inputs)]


@converts("MatMulInteger")
def _matmul_integer(n: OnnxNode) -> Sequence[Output]:
    a, b = n.value(0), n.value(1)
    inputs = [a, b, *_optional(n, 2, a.dtype), *_optional(n, 3, b.dtype)]
    return [n.emit("q.integer_matmul", inputs)]


@converts("TfIdfVectorizer")
def _tfidf(n: OnnxNode) -> Sequence[Output]:
    if n.attr("pool_strings"):
        raise Reject("TfIdfVectorizer over strings (the IR has no string dtype)")
    x = n.value(0)
    if x.dtype not in ("i32", "i64"):
        raise Reject(f"TfIdfVectorizer of {x.dtype} tokens")
    attrs = {
        "min_n": int(n.attr("min_gram_length")), "max_n": int(n.attr("max_gram_length")),
        "max_skip": int(n.attr("max_skip_count")), "mode": str(n.attr("mode")),
        "counts": [int(c) for c in n.attr("ngram_counts")],
        "indexes": [int(i) for i in n.attr("ngram_indexes")],
        "pool": [int(v) for v in n.attr("pool_int64s", [])],
        "weights": [float(w) for w in n.attr("weights", [])] or None,
    }  # fmt: skip
    return [n.emit("nn.tfidf", [x], attrs)]


@converts("InstanceNormalization")
def _instance_norm(n: OnnxNode) -> Sequence[Output]:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the spatial dimensions of each
    sample and channel."""
    x = n.value(0)
    rank = x.type.rank
    if rank < 3:
        raise Reject(f"InstanceNormalization of rank {rank} (3 or more needed)")
    axes = list(range(2, rank))
    mean = n.emit("math.reduce_mean", [x], {"axes": axes, "keepdims": True}, hint="mean")
    centered = n.emit("math.sub", [x, mean], hint="centered")
    square = n.emit("math.mul", [centered, centered], hint="square")
    var = n.emit("math.reduce_mean", [square], {"axes": axes, "keepdims": True}, hint="var")
    eps = n.scalar(float(n.attr("epsilon", 1e-5)), x.dtype)
    inv = n.emit("math.rsqrt", [n.emit("math.add", [var, eps], hint="var_eps")], hint="inv")
    y = n.emit("math.mul", [centered, inv], hint="normed")
    per_channel = [-1] + [1] * (rank - 2)
    scale = n.emit("tensor.reshape", [n.value(1, x.dtype)], {"shape": per_channel}, hint="scale")
    bias = n.emit("tensor.reshape", [n.value(2, x.dtype)], {"shape": per_channel}, hint="bias")
    return [n.emit("math.add", [n.emit("math.mul", [y, scale], hint="scaled"), bias])]


_core_dropout = CONVERTERS["Dropout"]


@converts("Dropout")
def _dropout(n: OnnxNode) -> Sequence[Output]:
    """Inference (or a ratio of 0 in training) keeps every element: the mask is all true.
    Real training-mode dropout draws random numbers and stays refused."""
    training = n.known(2) if n.has(2) else None
    ratio = n.known(1) if n.has(1) else None
    zero = ratio is not None and ratio.dtype != object and float(ratio.reshape(-1)[0]) == 0
    if n.has(2) and not (training is not None and (not bool(training) or zero)):
        return _core_dropout(n)
    if not n.used(1):
        return [n.value(0)]
    x = n.value(0)
    mask = np.ones(n.static_shape(0, "Dropout's mask"), bool)
    return [x, n.constant(mask, n.name_hint("mask", 1))]


@converts("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
          "Multinomial", "Bernoulli")  # fmt: skip
def _random(n: OnnxNode) -> Sequence[Output]:
    raise Reject("random numbers are nondeterministic: no backend result could be checked "
                 "against the reference")


@converts("TensorScatter")
def _tensor_scatter(n: OnnxNode) -> Sequence[Output]:
    cache = n.value(0)
    if n.has(2):
        idx = n.value(2, "i64")
    else:
        batch = n.static_shape(0, "TensorScatter without write indices")[0]
        idx = n.constant(np.zeros(batch, np.int64), n.name_hint("at"))
    attrs = {"mode": str(n.attr("mode", "linear")), "axis": int(n.attr("axis", -2))}
    return [n.emit("tensor.tensor_scatter", [cache, n.value(1, cache.dtype), idx], attrs)]


@converts("MaxUnpool")
def _max_unpool(n: OnnxNode) -> Sequence[Output]:
    if n.has(2):
        raise Reject("MaxUnpool with output_shape (the output size would be runtime data)")
    kernel = [int(k) for k in n.attr("kernel_shape")]
    attrs = {"kernel": kernel, "strides": [int(s) for s in n.attr("strides", [1] * len(kernel))],
             "pads": [int(p) for p in n.attr("pads", [0] * 2 * len(kernel))]}  # fmt: skip
    return [n.emit("nn.max_unpool", [n.value(0), n.value(1, "i64")], attrs)]
