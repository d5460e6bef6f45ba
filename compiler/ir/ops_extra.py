"""Op table, part 6: the rest of the ONNX standard's tensor ops (conformance coverage).

Selections (hardmax, one-hot, unique, nonzero, compress), running products, Lp norms and
N-D pooling with every ONNX window option (dilation, ceil mode, Lp), bit casts and inf
tests. Outputs whose size depends on runtime data (unique, nonzero, compress, one-hot of a
runtime depth) have symbolic dimensions (``name'``): the interpreter runs such a graph and a
backend that needs static shapes refuses it. No backend but the interpreter implements
these yet: ``EXTRA_OPS`` lists them so that the exporters can refuse them with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import (
    OPS,
    REQUIRED,
    broadcast_shapes,
    conv_out_dim,
    norm_axis,
    register_op,
    require_float,
)  # fmt: skip
from compiler.ir.types import BITS, DTYPES, Dim, TensorType, is_float


def _index(t: TensorType, what: str) -> None:
    if t.dtype not in ("i64", "i32"):
        raise ShapeError(f"{what} must be i32 or i64, got {t.dtype}")


def _unknown(dim: Dim) -> Dim:
    return f"{dim}'"


@register_op("math.hardmax", "x", {"axis": -1})
def _hardmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """1 at the first maximum along ``axis``, 0 elsewhere (ONNX Hardmax, opset 13)."""
    require_float(types[0])
    norm_axis(int(attrs["axis"]), types[0].rank)
    return [types[0].with_quant(None)]


@register_op("math.cumprod", "x axis", {"exclusive": False, "reverse": False})
def _cumprod(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Running product along the axis given by scalar operand ``axis`` (ONNX CumProd);
    ``exclusive`` starts from 1, ``reverse`` runs from the end."""
    _index(types[1], "cumprod axis")
    if types[0].rank == 0 or types[0].dtype == "bool":
        raise ShapeError(f"cumprod of {types[0]}")
    return [types[0].with_quant(None)]


@register_op("nn.lp_norm", "x", {"axis": -1, "p": 2})
def _lp_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``x / ||x||_p`` along ``axis``, p 1 or 2 (ONNX LpNormalization)."""
    require_float(types[0])
    norm_axis(int(attrs["axis"]), types[0].rank)
    if attrs["p"] not in (1, 2):
        raise ShapeError(f"lp_norm p must be 1 or 2, got {attrs['p']}")
    return [types[0].with_quant(None)]


@register_op("math.isinf", "x", {"positive": True, "negative": True})
def _isinf(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """True where the float input is +inf (``positive``) or -inf (``negative``)."""
    require_float(types[0])
    return [TensorType("bool", types[0].shape)]


def _storage_bits(dtype: str) -> int:
    return 8 if dtype == "bool" else BITS[dtype]  # a bool is stored as one byte


@register_op("tensor.bitcast", "x", {"to": REQUIRED}, tags="layout")
def _bitcast(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The same bits read as dtype ``to`` of the same width (ONNX BitCast, little endian)."""
    x, to = types[0], attrs["to"]
    if to not in DTYPES or _storage_bits(to) != _storage_bits(x.dtype) or BITS[to] == 4:
        raise ShapeError(f"bitcast of {x.dtype} to {to!r} (same width of 8+ bits needed)")
    return [TensorType(to, x.shape)]


@register_op("tensor.one_hot", "indices depth values", {"axis": -1})
def _one_hot(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``values[1]`` where the index (negative: from ``depth``) equals the position along a
    new ``axis`` of size ``depth`` (runtime: symbolic), ``values[0]`` elsewhere."""
    idx, depth, values = types
    if idx.dtype == "bool" or depth.dtype == "bool" or values.shape not in ((2,), ("2",)):
        raise ShapeError(f"one_hot of {idx}, depth {depth}, values {values}")
    if depth.rank > 1 or (depth.rank == 1 and depth.shape[0] != 1):
        raise ShapeError(f"one_hot depth must hold one value, got {depth}")
    axis = norm_axis(int(attrs["axis"]), idx.rank + 1)
    shape = list(idx.shape)
    shape.insert(axis, "depth'")
    return [TensorType(values.dtype, tuple(shape))]


@register_op("tensor.unique", "x", {"axis": None, "sorted": True}, outputs=4)
def _unique(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The distinct elements (or slices along ``axis``), sorted or in order of first
    occurrence, with the index of each one's first occurrence, each input's position in
    the result and the counts (ONNX Unique); the count of distinct ones is symbolic."""
    x, axis = types[0], attrs["axis"]
    if x.dtype == "bool" or x.rank == 0:
        raise ShapeError(f"unique of {x}")
    if axis is None:
        shape: tuple[Dim, ...] = ("unique'",)
        along: Dim = x.shape[0] if x.rank == 1 else "numel"
    else:
        a = norm_axis(int(axis), x.rank)
        shape = tuple("unique'" if i == a else d for i, d in enumerate(x.shape))
        along = x.shape[a]
    flat = TensorType("i64", ("unique'",))
    return [TensorType(x.dtype, shape), flat, TensorType("i64", (along,)), flat]


@register_op("tensor.nonzero", "x")
def _nonzero(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The indices of the nonzero elements, [rank, count] in row-major order (ONNX NonZero)."""
    return [TensorType("i64", (max(types[0].rank, 1), "nonzero'"))]


@register_op("tensor.compress", "x condition", {"axis": None})
def _compress(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The slices along ``axis`` (None: of the flattened input) where the 1-D boolean
    ``condition`` holds; a shorter condition leaves the rest out (ONNX Compress)."""
    x, cond = types
    if cond.dtype != "bool" or cond.rank != 1:
        raise ShapeError(f"compress condition must be 1-D bool, got {cond}")
    if attrs["axis"] is None:
        return [TensorType(x.dtype, ("kept'",))]
    a = norm_axis(int(attrs["axis"]), x.rank)
    return [TensorType(x.dtype, tuple("kept'" if i == a else d for i, d in enumerate(x.shape)))]


POOL_KINDS = ("max", "avg", "lp")


@register_op("nn.pool_nd", "x", {
    "kind": REQUIRED, "kernel": REQUIRED, "strides": None, "pads": None, "dilations": None,
    "ceil_mode": False, "count_include_pad": False, "p": 2,
})  # fmt: skip
def _pool_nd(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Pooling over every dimension after the first two, N-D, channels first: max, average
    (``count_include_pad``) or Lp (``(sum |x|^p)^(1/p)``), with strides, ONNX pads
    [begins..., ends...], dilations and ``ceil_mode`` (ONNX MaxPool/AveragePool/LpPool)."""
    x = types[0]
    kernel = [int(k) for k in attrs["kernel"]]
    n = len(kernel)
    strides = [int(s) for s in attrs["strides"] or [1] * n]
    pads = [int(p) for p in attrs["pads"] or [0] * (2 * n)]
    dils = [int(d) for d in attrs["dilations"] or [1] * n]
    if attrs["kind"] not in POOL_KINDS or x.rank != n + 2 or n == 0:
        raise ShapeError(f"{attrs['kind']!r} pooling of {x} with kernel {kernel}")
    if len(strides) != n or len(pads) != 2 * n or len(dils) != n:
        raise ShapeError(f"pooling strides/pads/dilations do not fit kernel {kernel}")
    if min(kernel + strides + dils) < 1 or min(pads) < 0 or x.dtype == "bool":
        raise ShapeError(f"pooling window {kernel}, strides {strides}, pads {pads}")
    if attrs["kind"] != "max":
        require_float(x)
    out = [
        conv_out_dim(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[n + i], dils[i],
                     bool(attrs["ceil_mode"]))  # fmt: skip
        for i in range(n)
    ]
    return [TensorType(x.dtype, (*x.shape[:2], *out))]


def _quant_operand(t: TensorType, what: str) -> None:
    if t.dtype not in ("i8", "u8"):
        raise ShapeError(f"{what} must be i8 or u8, got {t.dtype}")


@register_op("q.linear_matmul", "a a_scale a_zero b b_scale b_zero y_scale y_zero")
def _qlinear_matmul(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX QLinearMatMul: ``(a - a_zero) @ (b - b_zero)`` exactly in integers, rescaled by
    ``a_scale * b_scale / y_scale`` (in the scales' dtype, applied in float64), rounded
    half to even, plus ``y_zero``, saturated to y's dtype. Scales and zero points are
    scalars or per row (a) / column (b)."""
    a, b, yz = types[0], types[3], types[7]
    for t, what in ((a, "a"), (b, "b"), (yz, "y zero point")):
        _quant_operand(t, what)
    if not all(is_float(types[i].dtype) for i in (1, 4, 6)):
        raise ShapeError("qlinear_matmul scales must be float")
    if a.rank < 1 or b.rank < 2:
        raise ShapeError(f"qlinear_matmul of {a} and {b}")
    if a.shape[-1] != b.shape[-2] and not any(isinstance(d, str) for d in (a.shape[-1],
                                                                          b.shape[-2])):
        raise ShapeError(f"qlinear_matmul inner dims {a.shape[-1]} != {b.shape[-2]}")
    batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    rows: tuple[Dim, ...] = (a.shape[-2],) if a.rank >= 2 else ()
    return [TensorType(yz.dtype, (*batch, *rows, b.shape[-1]))]


@register_op("q.integer_matmul", "a b a_zero? b_zero?")
def _integer_matmul(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX MatMulInteger: ``(a - a_zero) @ (b - b_zero)`` in int32."""
    a, b = types[0], types[1]
    for t in types:
        _quant_operand(t, "matmul_integer operand")
    if a.rank < 1 or b.rank < 2 or (isinstance(a.shape[-1], int) and isinstance(
            b.shape[-2], int) and a.shape[-1] != b.shape[-2]):  # fmt: skip
        raise ShapeError(f"matmul_integer of {a} and {b}")
    batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    rows: tuple[Dim, ...] = (a.shape[-2],) if a.rank >= 2 else ()
    return [TensorType("i32", (*batch, *rows, b.shape[-1]))]


TFIDF_MODES = ("TF", "IDF", "TFIDF")


@register_op("nn.tfidf", "x", {
    "min_n": REQUIRED, "max_n": REQUIRED, "max_skip": REQUIRED, "mode": REQUIRED,
    "counts": REQUIRED, "indexes": REQUIRED, "pool": REQUIRED, "weights": None,
})  # fmt: skip
def _tfidf(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX TfIdfVectorizer on integer tokens ``x`` [C] or [B, C]: counts of the n-grams
    of ``pool`` (``counts[i]``: where its (i+1)-grams start), lengths ``min_n..max_n``,
    with up to ``max_skip`` tokens skipped between items, at output ``indexes``; ``mode``
    TF (counts), IDF (``weights`` where present) or TFIDF (counts times weights)."""
    x = types[0]
    if x.dtype not in ("i32", "i64") or x.rank not in (1, 2):
        raise ShapeError(f"tfidf of {x} (integer tokens [C] or [B, C])")
    indexes = [int(i) for i in attrs["indexes"]]
    if attrs["mode"] not in TFIDF_MODES or not indexes or min(indexes) < 0:
        raise ShapeError(f"tfidf mode {attrs['mode']!r}, indexes {indexes}")
    if not 1 <= int(attrs["min_n"]) <= int(attrs["max_n"]) or int(attrs["max_skip"]) < 0:
        raise ShapeError(f"tfidf n-gram lengths {attrs['min_n']}..{attrs['max_n']}")
    size = max(indexes) + 1
    return [TensorType("f32", (size,) if x.rank == 1 else (x.shape[0], size))]


@register_op("tensor.tensor_scatter", "cache update write_indices", {"mode": "linear", "axis": -2},
     tags="layout")  # fmt: skip
def _tensor_scatter(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """A copy of ``cache`` with ``update`` written along ``axis`` from position
    ``write_indices[b]`` of each batch entry ``b`` (``mode`` circular: wrapping around);
    ONNX TensorScatter, a KV-cache update."""
    cache, update, idx = types
    axis = norm_axis(int(attrs["axis"]), cache.rank)
    if attrs["mode"] not in ("linear", "circular") or axis == 0 or update.rank != cache.rank:
        raise ShapeError(f"tensor_scatter of {update} into {cache} along {axis}")
    if idx.dtype not in ("i32", "i64") or idx.shape != (cache.shape[0],):
        raise ShapeError(f"tensor_scatter write indices {idx} for {cache}")
    for i, (c, u) in enumerate(zip(cache.shape, update.shape, strict=True)):
        if (i != axis and c != u) or (i == axis and isinstance(c, int) and isinstance(u, int)
                                      and u > c):  # fmt: skip
            raise ShapeError(f"tensor_scatter update {update} does not fit {cache}")
    if update.dtype != cache.dtype:
        raise ShapeError(f"tensor_scatter of {update.dtype} into {cache.dtype}")
    return [cache]


@register_op("nn.max_pool_argmax", "x", {
    "kernel": REQUIRED, "strides": None, "pads": None, "dilations": None, "ceil_mode": False,
    "storage_order": 0,
}, outputs=2)  # fmt: skip
def _max_pool_argmax(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """N-D max pooling with the flat index of each maximum in the input (the first one
    on ties; ``storage_order`` 1: spatial dimensions column-major), ONNX MaxPool's
    Indices output."""
    (y,) = _pool_nd(types, {**attrs, "kind": "max", "count_include_pad": False, "p": 2})
    return [y, TensorType("i64", y.shape)]


@register_op("nn.max_unpool", "x indices", {"kernel": REQUIRED, "strides": None, "pads": None})
def _max_unpool(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Zeros with each value of ``x`` written at its flat ``indices`` (ONNX MaxUnpool, the
    inverse of max pooling's Indices; an index past the end wraps around, as gather's do):
    spatial size ``(in - 1) * stride - pads + kernel``."""
    x, idx = types
    kernel = [int(k) for k in attrs["kernel"]]
    n = len(kernel)
    strides = [int(v) for v in attrs["strides"] or [1] * n]
    pads = [int(v) for v in attrs["pads"] or [0] * (2 * n)]
    if x.rank != n + 2 or idx.shape != x.shape or idx.dtype != "i64" or len(strides) != n \
            or len(pads) != 2 * n or min(kernel + strides) < 1 or min(pads, default=0) < 0:
        raise ShapeError(f"max_unpool of {x} by {idx} with kernel {kernel}")  # fmt: skip
    if not all(isinstance(d, int) for d in x.shape):
        raise ShapeError(f"max_unpool needs a static shape, got {x}")
    out = [(int(x.shape[2 + i]) - 1) * strides[i] - pads[i] - pads[n + i] + kernel[i]
           for i in range(n)]  # fmt: skip
    if min(out) < 1:
        raise ShapeError(f"max_unpool output size {out}")
    return [TensorType(x.dtype, (*x.shape[:2], *out))]


@register_op("math.histc", "x", {"bins": REQUIRED, "min": 0.0, "max": 0.0})
def _histc(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Counts of ``x``'s elements in ``bins`` equal bins over [min, max] (the last bin
    includes max; elements outside are left out; min == max: the data's own range), as
    float (torch.histc; mixture-of-experts routing counts tokens per expert with it)."""
    require_float(types[0])
    if int(attrs["bins"]) < 1 or float(attrs["max"]) < float(attrs["min"]):
        raise ShapeError(f"histc of {attrs['bins']} bins over [{attrs['min']}, {attrs['max']}]")
    return [TensorType(types[0].dtype, (int(attrs["bins"]),))]


@register_op("nn.grouped_mm", "x w offsets")
def _grouped_mm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Rows ``offsets[g-1]:offsets[g]`` of ``x`` [S, K] times ``w[g]`` [G, K, N] (rows past
    the last offset give zeros): a mixture-of-experts layer over tokens sorted by expert."""
    x, w, offs = types
    require_float(x)
    if x.rank != 2 or w.rank != 3 or w.shape[1] != x.shape[1] or w.dtype != x.dtype:
        raise ShapeError(f"grouped_mm of {x} with {w}")
    if offs.rank != 1 or offs.shape[0] != w.shape[0] or offs.dtype not in ("i32", "i64"):
        raise ShapeError(f"grouped_mm offsets {offs} for {w}")
    return [TensorType(x.dtype, (x.shape[0], w.shape[2]))]


#: The op table files of the conformance work (no backend but the interpreter implements
#: their ops yet).
EXTRA_MODULES = ("compiler.ir.ops_extra", "compiler.ir.ops_signal", "compiler.ir.ops_vision")


def extra_ops() -> frozenset[str]:
    """The ops the ``EXTRA_MODULES`` define (the exporters refuse them with a reason)."""
    return frozenset(
        name for name, op in OPS.items()
        if op.infer is not None and op.infer.__module__ in EXTRA_MODULES
    )  # fmt: skip
