"""Interpreter table, part 1: elementwise, reductions, data movement and quantization ops."""

from __future__ import annotations

import math

import numpy as np

from compiler import numerics
from compiler.interpreter_context import IMPLS, Context, array_impl, impl
from compiler.ir.graph import Node
from compiler.ir.op_facts import clamps, output_clamp
from compiler.ir.ops import OPS
from compiler.ir.types import FLOAT_DTYPES, NARROW_FLOAT_DTYPES, NUMPY_DTYPES, SUB_BYTE_INTS, is_int


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float32 (SciPy's, evaluated in float64 for accuracy)."""
    from scipy.special import erf as _erf

    return _erf(np.asarray(x, dtype=np.float64)).astype(np.asarray(x).dtype)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncates toward zero, as in C and ONNX (not NumPy's floor division).
    ``x / 0`` is 0, as NumPy's integer division and modulo (``x % 0``) give; the backends
    must produce the same without a native division by zero (it is SIGFPE on x86)."""
    # Floor division plus one where the remainder is nonzero and the signs differ: exact for
    # every value (|INT_MIN| does not exist); INT_MIN / -1 wraps to INT_MIN, as in C on x86.
    safe = np.where(b == 0, 1, b).astype(a.dtype)
    with np.errstate(over="ignore"):
        q = np.floor_divide(a, safe)
    rem = np.mod(a, safe)
    q = q + ((rem != 0) & ((a < 0) ^ (safe < 0))).astype(a.dtype)
    return np.where(b == 0, 0, q).astype(a.dtype)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _int_div(a, b) if np.issubdtype(a.dtype, np.integer) else a / b


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(np.asarray(b).dtype, np.integer):
        # Integer a ** -k is 1 / a ** k truncated toward zero (C, ONNX): 0 unless |a| == 1.
        a, b = np.broadcast_arrays(a, b)
        positive = np.power(a, np.maximum(b, 0))
        one = np.where(b % 2 == 0, 1, a).astype(a.dtype)  # (+-1) ** -k
        return np.where(b >= 0, positive, np.where(np.abs(a) == 1, one, 0)).astype(a.dtype)
    return np.power(a, b).astype(a.dtype)


_BINARY = {
    "math.add": np.add,
    "math.sub": np.subtract,
    "math.mul": np.multiply,
    "math.div": _div,
    "math.pow": _pow,
    "math.maximum": np.maximum,
    "math.minimum": np.minimum,
    "math.mod": np.fmod,
    "math.equal": np.equal,
    "math.less": np.less,
    "math.greater": np.greater,
    "math.less_equal": np.less_equal,
    "math.greater_equal": np.greater_equal,
    "math.and": np.logical_and,
    "math.or": np.logical_or,
    "math.xor": np.logical_xor,
}
for _name, _fn in _BINARY.items():
    IMPLS[_name] = array_impl(lambda a, b, _f=_fn: _f(a, b))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        c = np.asarray(math.sqrt(2 / math.pi), x.dtype)
        cubic = np.asarray(0.044715, x.dtype)
        return (0.5 * x * (1 + np.tanh(c * (x + cubic * x**3)))).astype(x.dtype)
    return (0.5 * x * (1 + erf(x / np.asarray(math.sqrt(2), x.dtype)))).astype(x.dtype)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6).astype(x.dtype)


def hardswish(x: np.ndarray) -> np.ndarray:
    return (x * np.clip(x + 3, 0, 6) / 6).astype(x.dtype)


def clip(x: np.ndarray, min: float | None = None, max: float | None = None) -> np.ndarray:
    lo = -np.inf if min is None else min
    hi = np.inf if max is None else max
    return np.clip(x, lo, hi).astype(x.dtype)


def leaky_relu(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return np.where(x >= 0, x, x * np.asarray(alpha, x.dtype)).astype(x.dtype)


_UNARY = {
    "math.neg": np.negative,
    "math.abs": np.abs,
    "math.exp": np.exp,
    "math.log": np.log,
    "math.sqrt": np.sqrt,
    "math.rsqrt": lambda x: 1 / np.sqrt(x),
    "math.reciprocal": lambda x: 1 / x,
    "math.erf": erf,
    "math.tanh": np.tanh,
    "math.sin": np.sin,
    "math.cos": np.cos,
    "math.not": np.logical_not,
    "math.isnan": np.isnan,
    "nn.relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "nn.relu6": relu6,
    "nn.sigmoid": _sigmoid,
    "nn.hardswish": hardswish,
    "nn.silu": lambda x: x * _sigmoid(x),
    "tensor.identity": lambda x: x,
}
for _name, _fn in _UNARY.items():
    IMPLS[_name] = array_impl(lambda x, _f=_fn: _f(x))

IMPLS["nn.leaky_relu"] = array_impl(leaky_relu)
IMPLS["nn.hardsigmoid"] = array_impl(
    lambda x, alpha, beta: np.clip(
        x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype), 0, 1
    ).astype(x.dtype)
)
IMPLS["nn.gelu"] = array_impl(gelu)
IMPLS["nn.clip"] = array_impl(clip)
IMPLS["nn.dropout"] = array_impl(lambda x, p=0.0: x)  # inference: dropout is the identity
IMPLS["tensor.where"] = array_impl(lambda c, x, y: np.asarray(np.where(c, x, y)))


@impl("tensor.cast")
def _cast(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    to = node.attrs["to"]
    x = xs[0]
    if to in NARROW_FLOAT_DTYPES:
        return [numerics.cast_to_narrow_float(x, to, bool(node.attrs.get("saturate", True)))]
    if to in SUB_BYTE_INTS:
        return [numerics.cast_to_sub_byte_int(x, to)]
    if is_int(to) and np.issubdtype(x.dtype, np.floating):
        # float -> int truncates toward zero (C, ONNX); clip in float64, where the i32 bounds
        # are exact (in float32, 2^31 - 1 rounds up to 2^31 and the cast would wrap).
        x = np.trunc(np.nan_to_num(x.astype(np.float64)))
        lo, hi = numerics.int_range(to)
        return [np.clip(x, lo, hi).astype(NUMPY_DTYPES[to])]
    return [x.astype(NUMPY_DTYPES[to])]


def _axes(axes: list[int] | None) -> tuple[int, ...] | None:
    return None if axes is None else tuple(axes)


_REDUCE = {
    "math.reduce_mean": np.mean,
    "math.reduce_sum": np.sum,
    "math.reduce_max": np.max,
    "math.reduce_min": np.min,
    "math.reduce_prod": np.prod,
}
for _name, _fn in _REDUCE.items():
    IMPLS[_name] = array_impl(
        lambda x, axes=None, keepdims=False, _f=_fn: np.asarray(
            _f(x, axis=_axes(axes), keepdims=keepdims)
        ).astype(x.dtype)
    )
IMPLS["math.argmax"] = array_impl(
    lambda x, axis=-1, keepdims=False: np.asarray(
        np.argmax(x, axis=axis, keepdims=keepdims), np.int64
    )
)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    if x.size == 0:  # nothing to normalize (and max has no identity)
        return x.copy()
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    m = np.max(x, axis=axis, keepdims=True)
    s = x - m
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


@impl("nn.softmax")
def _softmax(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    """In bf16 and the narrow floats every step (subtract, exp, sum, divide) rounds to the
    type, as NumPy computes on ml_dtypes arrays (ONNX's reference): rounding only the
    result differs from it by a step of 2^-8 on some probabilities."""
    axis = OPS[node.op].with_defaults(node.attrs)["axis"]
    dtype = node.outputs[0].dtype
    if dtype in numerics.ML_DTYPES and dtype in FLOAT_DTYPES:
        narrow = xs[0].astype(numerics.ml_dtype(dtype))
        return [softmax(narrow, axis).astype(np.float32)]
    return [softmax(xs[0], axis)]



IMPLS["nn.log_softmax"] = array_impl(log_softmax)


# ---- data movement --------------------------------------------------------------------------
@impl("tensor.reshape")
def _reshape(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    out_shape = node.outputs[0].type.shape
    # Symbolic dims bound from the graph inputs (``batch``) are known; others become -1.
    target = [d if isinstance(d, int) else ctx.symbols.get(d, -1) for d in out_shape]
    if sum(1 for d in target if d == -1) > 1:  # several symbolic dims: use the attribute
        target = [d if isinstance(d, int) else -1 for d in node.attrs["shape"]]
    return [xs[0].reshape(target)]


# Both sizes explicit: a -1 is ambiguous when the tensor has no elements.
IMPLS["tensor.flatten"] = array_impl(
    lambda x, axis=1: x.reshape((int(np.prod(x.shape[:axis], dtype=np.int64)),
                                 int(np.prod(x.shape[axis:], dtype=np.int64))))
)
IMPLS["tensor.transpose"] = array_impl(lambda x, perm: np.transpose(x, perm))
IMPLS["tensor.squeeze"] = array_impl(lambda x, axes: np.asarray(np.squeeze(x, axis=tuple(axes))))


@impl("tensor.expand")
def _expand(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    # A symbolic target dim is its bound size, or 1 (keep the operand's own size) if unbound.
    shape = tuple(d if isinstance(d, int) else ctx.symbols.get(d, 1) for d in node.attrs["shape"])
    return [np.broadcast_to(xs[0], np.broadcast_shapes(xs[0].shape, shape)).copy()]


# Indices wrap around (negative ones as in torch/ONNX; out-of-range ones as TVM's take with
# mode="wrap", which the cpu backend uses) rather than failing on data.
IMPLS["tensor.gather"] = array_impl(lambda x, i, axis=0: np.take(x, i, axis=axis, mode="wrap"))


@impl("tensor.unsqueeze")
def _unsqueeze(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    rank = x.ndim + len(node.attrs["axes"])
    for a in sorted(a % rank for a in node.attrs["axes"]):
        x = np.expand_dims(x, a)
    return [x]


@impl("tensor.concat")
def _concat(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(xs, axis=node.attrs["axis"])]


@impl("tensor.split")
def _split(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    bounds = np.cumsum(node.attrs["sizes"])[:-1]
    return list(np.split(xs[0], bounds, axis=node.attrs["axis"]))


@impl("tensor.slice")
def _slice(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    axes: list[int] = a["axes"] if a.get("axes") is not None else list(range(len(a["starts"])))
    steps: list[int] = a.get("steps") or [1] * len(axes)
    index = [slice(None)] * xs[0].ndim
    for ax, s, e, st in zip(axes, a["starts"], a["ends"], steps, strict=True):
        # A bound may name a symbolic dim of the graph inputs (``x[:seq]``).
        s, e = (ctx.symbols[v] if isinstance(v, str) else v for v in (s, e))
        index[ax] = slice(s, e, st)
    return [xs[0][tuple(index)]]


@impl("tensor.pad")
def _pad(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x, pads, mode = xs[0], node.attrs["pads"], node.attrs.get("mode", "constant")
    n = x.ndim
    width = [(pads[i], pads[n + i]) for i in range(n)]
    if n == 0:
        return [x]
    if mode == "constant":
        return [
            np.pad(
                x,
                width,
                mode="constant",
                constant_values=np.asarray(node.attrs.get("value", 0.0)).astype(x.dtype),
            )
        ]
    return [np.pad(x, width, mode="reflect" if mode == "reflect" else "edge")]


IMPLS["tensor.shape"] = array_impl(lambda x: np.asarray(x.shape, dtype=np.int64))


@impl("tensor.range")
def _range(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [
        np.arange(a.get("start", 0), a["limit"], a.get("delta", 1)).astype(
            NUMPY_DTYPES[a.get("dtype", "i64")]
        )
    ]


@impl("const")
def _const(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    from compiler.errors import VerifyError

    data = ctx.graph.constants.get(node.attrs["ref"])
    if data is None:
        raise VerifyError(f"{node.where()}: constant @{node.attrs['ref']} has no data")
    return [data]


# ---- quantization ---------------------------------------------------------------------------
@impl("q.quantize")
def _quantize(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    qp = node.outputs[0].type.quant
    if qp is None:
        from compiler.errors import VerifyError

        raise VerifyError(f"{node.where()}: quantize output has no scale")
    return [
        numerics.quantize(
            xs[0],
            qp.scale_array(),
            qp.zero_point_array(),
            node.attrs["dtype"],
            qp.axis,
            ctx.counter(node),
        )
    ]


@impl("q.dequantize")
def _dequantize(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    qp = node.inputs[0].type.quant
    assert qp is not None  # the verifier guarantees it
    if qp.group_size is not None:  # block-wise: expand the scales to one per element
        from compiler.interpreter_quant import expand_groups

        scale, zp = expand_groups(qp, xs[0].shape)
        return [numerics.dequantize(xs[0], scale, zp)]
    wide = np.float64 if node.outputs[0].dtype == "f64" else np.float32
    return [numerics.dequantize(xs[0], qp.scale_array(), qp.zero_point_array(), qp.axis, wide)]


@impl("q.requantize")
def _requantize(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    qp = node.outputs[0].type.quant
    zp = qp.zero_point_array() if qp is not None else 0
    mult = np.asarray(a["multiplier"], dtype=np.int64)
    shift = np.asarray(a["shift"], dtype=np.int64)
    axis = a.get("axis")
    if mult.size == 1:
        mult, shift, axis = mult.reshape(()), shift.reshape(()), axis if np.size(zp) > 1 else None
    out = numerics.requantize(xs[0], mult, shift, zp, a["dtype"], axis, ctx.counter(node))
    if clamps(a, 0):  # no relu here: the zero point does not enter the clamp
        lo, hi = output_clamp(a, 0)
        out = np.clip(out, lo, hi).astype(out.dtype)
    return [out]
