"""Op table, part 5: the ops the ONNX standard and real models add beyond the core set.

Indexing with data (gather/scatter along an axis or by index tuples), scans (cumsum), masks
(trilu), selection (topk), einsum, RMS normalization, integer bit shifts, floor modulo, the
negative log-likelihood loss, and the generic reduction whose axes may be computed at
runtime. Where an operand that decides the output shape is runtime data (reduction axes,
top-k's k), the affected dimensions are symbolic (``name'``): the interpreter runs such a
graph, and a backend that needs static shapes refuses it by its rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import (
    REQUIRED,
    binary_types,
    norm_axis,
    register_op,
    require_float,
    same_dtype,
)
from compiler.ir.types import Dim, TensorType, is_float, is_int

#: Reductions of ``math.reduce`` (kind -> what the interpreter computes over the axes).
REDUCE_KINDS = (
    "sum", "mean", "max", "min", "prod", "l1", "l2", "sum_square", "log_sum", "log_sum_exp",
)  # fmt: skip


def _index_dtype(t: TensorType, what: str) -> None:
    if t.dtype not in ("i64", "i32"):
        raise ShapeError(f"{what} must be i32 or i64, got {t.dtype}")


def _unknown(dim: Dim) -> Dim:
    """A dimension that runtime data decides: a symbol derived from the one it replaces."""
    return f"{dim}'"


@register_op(
    "math.reduce", "x axes?",
    {"kind": REQUIRED, "axes": None, "keepdims": True, "noop_with_empty_axes": False},
    tags="reduce",
)  # fmt: skip
def _reduce(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Reduce ``x`` by ``kind`` over ``axes`` (an attribute, or operand 1 computed at runtime:
    then every dimension it may reduce is symbolic); no axes means all of them unless
    ``noop_with_empty_axes``. l1/l2/sum_square/log_sum/log_sum_exp are ONNX's ReduceL1 etc."""
    x = types[0]
    if attrs["kind"] not in REDUCE_KINDS:
        raise ShapeError(f"unknown reduction {attrs['kind']!r}; expected one of {REDUCE_KINDS}")
    rank, keep = x.rank, attrs["keepdims"]
    if len(types) == 1:
        axes = attrs["axes"]
        if not axes and attrs["noop_with_empty_axes"]:
            return [x.with_quant(None)]
        reduced = set(range(rank)) if not axes else {norm_axis(a, rank) for a in axes}
        shape = tuple(
            1 if i in reduced else d for i, d in enumerate(x.shape) if keep or i not in reduced
        )
        return [TensorType(x.dtype, shape)]
    axes_t = types[1]
    _index_dtype(axes_t, "reduce axes")
    count = axes_t.shape[0] if axes_t.rank == 1 else None
    if keep:
        return [TensorType(x.dtype, tuple(_unknown(d) for d in x.shape))]
    if not isinstance(count, int):
        raise ShapeError("runtime reduce axes of unknown length without keepdims")
    if count == 0:
        out_rank = rank if attrs["noop_with_empty_axes"] else 0
    else:
        out_rank = rank - count
    return [TensorType(x.dtype, tuple(f"r{i}'" for i in range(out_rank)))]


@register_op("tensor.gather_elements", "x indices", {"axis": 0}, tags="layout")
def _gather_elements(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``out[i][j][k] = x[index[i][j][k]][j][k]`` along ``axis`` (ONNX GatherElements,
    torch.gather); negative indices count from the end."""
    x, idx = types
    _index_dtype(idx, "gather_elements indices")
    if idx.rank != x.rank:
        raise ShapeError(f"indices rank {idx.rank} != data rank {x.rank}")
    norm_axis(attrs["axis"], x.rank)
    return [TensorType(x.dtype, idx.shape, x.quant)]


_REDUCTIONS = ("none", "add", "mul", "max", "min")


@register_op(
    "tensor.scatter_elements", "x indices updates", {"axis": 0, "reduction": "none"}
)
def _scatter_elements(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """A copy of ``x`` with ``updates`` written (or combined by ``reduction``) at ``indices``
    along ``axis`` (ONNX ScatterElements, torch.scatter)."""
    x, idx, upd = types
    _index_dtype(idx, "scatter indices")
    if attrs["reduction"] not in _REDUCTIONS:
        raise ShapeError(f"unknown scatter reduction {attrs['reduction']!r}")
    if tuple(idx.shape) != tuple(upd.shape) or idx.rank != x.rank:
        raise ShapeError(f"indices {list(idx.shape)} and updates {list(upd.shape)} do not fit")
    norm_axis(attrs["axis"], x.rank)
    same_dtype([x, upd])
    return [x]


@register_op("tensor.scatter_nd", "x indices updates", {"reduction": "none"})
def _scatter_nd(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """A copy of ``x`` with slices ``updates`` written at index tuples ``indices`` (ONNX
    ScatterND: indices [..., k] address the first k dimensions)."""
    x, idx, upd = types
    _index_dtype(idx, "scatter_nd indices")
    if attrs["reduction"] not in _REDUCTIONS:
        raise ShapeError(f"unknown scatter reduction {attrs['reduction']!r}")
    k = idx.shape[-1]
    if isinstance(k, int) and upd.rank != idx.rank - 1 + x.rank - k:
        raise ShapeError(f"updates rank {upd.rank} does not fit indices {list(idx.shape)}")
    same_dtype([x, upd])
    return [x]


@register_op("math.cumsum", "x axis", {"exclusive": False, "reverse": False})
def _cumsum(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Running sum along the axis given by scalar operand ``axis`` (possibly runtime data);
    ``exclusive`` leaves out the element itself, ``reverse`` runs from the end."""
    _index_dtype(types[1], "cumsum axis")
    return [types[0].with_quant(None)]


@register_op("tensor.trilu", "x k?", {"upper": True})
def _trilu(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Keep the upper (or lower) triangle of the last two dimensions from diagonal ``k``
    (operand, default 0); zero the rest."""
    if types[0].rank < 2:
        raise ShapeError(f"trilu needs rank >= 2, got {types[0].rank}")
    if len(types) > 1:
        k = types[1]
        if k.dtype not in ("i32", "i64") or any(isinstance(d, int) and d != 1 for d in k.shape):
            raise ShapeError(f"trilu k must be one i32/i64 value, got {k}")
    return [types[0]]


@register_op("math.topk", "x k", {"axis": -1, "largest": True, "sorted": True}, outputs=2)
def _topk(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The ``k`` largest (or smallest) values along ``axis`` and their i64 indices; ties go to
    the lower index. ``k`` is a one-element operand, so that dimension is symbolic."""
    x = types[0]
    _index_dtype(types[1], "topk k")
    axis = norm_axis(attrs["axis"], x.rank)
    shape = tuple(_unknown(d) if i == axis else d for i, d in enumerate(x.shape))
    return [TensorType(x.dtype, shape), TensorType("i64", shape)]


_EINSUM = re.compile(r"^([a-zA-Z.,]*)(->([a-zA-Z.]*))?$")


def einsum_terms(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """The input terms and the output term of ``equation`` with ``...`` replaced by upper-case
    letters unused elsewhere (one per broadcast dimension); the implicit output is the
    letters used once, sorted, after the broadcast ones (NumPy's rule)."""
    match = _EINSUM.match(equation.replace(" ", ""))
    if not match:
        raise ShapeError(f"einsum equation {equation!r} is not understood")
    terms = match.group(1).split(",")
    if len(terms) != len(ranks):
        raise ShapeError(f"einsum {equation!r} has {len(terms)} terms for {len(ranks)} operands")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation]
    width = max(
        (r - len(t.replace("...", "")) for t, r in zip(terms, ranks, strict=True)), default=0
    )
    fill = "".join(spare[:width])
    expanded = []
    for term, rank in zip(terms, ranks, strict=True):
        n = rank - len(term.replace("...", ""))
        expanded.append(term.replace("...", fill[len(fill) - n :] if n else ""))
        if len(expanded[-1]) != rank:
            raise ShapeError(f"einsum term {term!r} does not fit an operand of rank {rank}")
    if match.group(2) is not None:
        out = (match.group(3) or "").replace("...", fill)
    else:
        letters = "".join(expanded)
        out = fill + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1 and c not in fill)
        )
    return expanded, out


@register_op("math.einsum", "xs*", {"equation": REQUIRED})
def _einsum(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Einstein summation (NumPy's ``einsum``) over operands of one dtype."""
    dtype = same_dtype(types)
    terms, out = einsum_terms(attrs["equation"], [t.rank for t in types])
    sizes: dict[str, Dim] = {}
    for term, t in zip(terms, types, strict=True):
        for letter, d in zip(term, t.shape, strict=True):
            if sizes.get(letter, 1) == 1 or d != 1:
                sizes[letter] = d
    return [TensorType(dtype, tuple(sizes[c] for c in out))]


@register_op("nn.rms_norm", "x scale", {"axis": -1, "eps": 1e-5})
def _rms_norm(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``x / sqrt(mean(x^2 over axis..rank-1) + eps) * scale`` (ONNX RMSNormalization, the
    Llama RMSNorm); ``scale`` broadcasts against the normalized dimensions."""
    require_float(types[0])
    norm_axis(attrs["axis"], types[0].rank)
    return [types[0]]


@register_op("math.bitshift", "a b", {"direction": REQUIRED}, tags="elementwise binary")
def _bitshift(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``a << b`` or ``a >> b`` (``direction`` "left"/"right") on unsigned integers."""
    if not is_int(types[0].dtype) or attrs["direction"] not in ("left", "right"):
        raise ShapeError(f"bitshift of {types[0].dtype} to the {attrs['direction']!r}")
    return binary_types(types, attrs)


register_op("math.floor_mod", "a b", tags="elementwise binary",
    doc="Floor modulo: the result has the sign of the divisor (Python's %, ONNX Mod fmod=0).",
    )(binary_types)  # fmt: skip


@register_op("nn.nll_loss", "x target weight?", {"reduction": "mean", "ignore_index": None})
def _nll_loss(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Negative log-likelihood of log-probabilities ``x`` [N, C, d...] at class indices
    ``target`` [N, d...], weighted per class; ``reduction`` none/sum/mean (mean divides by
    the summed weights); targets equal to ``ignore_index`` count zero."""
    x, target = types[0], types[1]
    if not is_float(x.dtype):
        raise ShapeError(f"nll_loss input must be float, got {x.dtype}")
    _index_dtype(target, "nll_loss target")
    if target.rank != x.rank - 1:
        raise ShapeError(f"target rank {target.rank} for input rank {x.rank}")
    if attrs["reduction"] not in ("none", "sum", "mean"):
        raise ShapeError(f"unknown reduction {attrs['reduction']!r}")
    shape = tuple(target.shape) if attrs["reduction"] == "none" else ()
    return [TensorType(x.dtype, shape)]


#: Elementwise unary ops beyond the core set: IR name -> whether it takes floats only.
UNARY_MORE: dict[str, bool] = {
    "ceil": True, "floor": True, "round": True, "sign": False, "tan": True, "asin": True,
    "acos": True, "atan": True, "sinh": True, "cosh": True, "asinh": True, "acosh": True,
    "atanh": True, "bitwise_not": False,
}  # fmt: skip


def _unary_more_float(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    require_float(types[0])
    return [types[0]]


def _integers(types: Sequence[TensorType]) -> None:
    for t in types:
        if is_float(t.dtype):
            raise ShapeError(f"bitwise ops take integers or bool, got {t.dtype}")


def _bitwise_not(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _integers(types)
    return [types[0]]


def _bitwise(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    _integers(types)
    return binary_types(types, attrs)


def _sign(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if types[0].dtype == "bool":  # ONNX Sign takes numbers only (NumPy has no bool sign)
        raise ShapeError("sign of bool")
    return [types[0]]


for _name, _float_only in UNARY_MORE.items():
    register_op(f"math.{_name}", "x", tags="elementwise unary")(
        _unary_more_float if _float_only
        else _bitwise_not if _name == "bitwise_not" else _sign
    )
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    register_op(f"math.{_name}", "a b", tags="elementwise binary")(_bitwise)


#: Coordinate transformations of ``nn.resize_linear`` (ONNX Resize's names).
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


@register_op("nn.resize_linear", "x", {"sizes": REQUIRED, "scales": REQUIRED, "mode": "half_pixel"})
def _resize_linear(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """(Multi)linear resize to the output shape ``sizes``: each output index maps to an
    input coordinate by ``mode`` with ``scales`` (output/input per dimension), clamped into
    the input, and blends its two neighbours (bilinear over two dimensions: torch's
    ``upsample_bilinear2d``, ONNX Resize mode=linear)."""
    x = types[0]
    require_float(x)
    if attrs["mode"] not in RESIZE_COORDINATES:
        raise ShapeError(f"unknown resize coordinate mode {attrs['mode']!r}")
    if len(attrs["sizes"]) != x.rank or len(attrs["scales"]) != x.rank:
        raise ShapeError(f"resize sizes/scales {attrs['sizes']} for rank {x.rank}")
    return [TensorType(x.dtype, tuple(attrs["sizes"]))]
