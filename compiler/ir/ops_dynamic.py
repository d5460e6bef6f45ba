"""Op table, part 6: ops whose shape-deciding operands are runtime data.

ONNX passes a reshape's target shape, a slice's bounds, a pad's widths, a range's bounds
and so on as *inputs*; when such an input is a graph input (or computed from one) its value
is not known until the graph runs. These ops take it as an operand. The output's rank is
static (it follows from the operand's static length), but every dimension the runtime
values decide is a fresh symbol ending in ``'`` (``x'`` for a dimension derived from ``x``,
``reshape0'`` for a new one). The interpreter computes the real sizes when it runs; a
backend that needs static shapes refuses these ops, with a reason, by its rule table.

    %y: f32[reshape0',reshape1'] = tensor.reshape_dyn(%x, %shape)
    %r: i32[range0'] = tensor.range_dyn(%start, %limit, %delta)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import norm_axis, register_op
from compiler.ir.types import Dim, TensorType, is_int

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def fresh(prefix: str, count: int) -> tuple[str, ...]:
    """``count`` new symbolic dimensions named after ``prefix`` (``prefix0'`` ...)."""
    return tuple(f"{prefix}{i}'" for i in range(count))


def derived(dim: Dim) -> str:
    """The symbol for a dimension that runtime data changes (``8`` -> ``8'``, ``n`` -> ``n'``)."""
    return f"{dim}'" if not str(dim).endswith("'") else str(dim)


def vector_length(t: TensorType, what: str, integer: bool = True) -> int:
    """The static length of a 1-D operand (how many dims or axes it gives); shapes, axes,
    pads and the like must be integers (``integer=False``: resize scales may be float)."""
    if t.dtype == "bool" or (integer and not is_int(t.dtype)):
        kind = "an integer" if integer else "a number"
        raise ShapeError(f"{what} must be {kind} tensor, got {t.dtype}")
    if t.rank == 0:
        return 1
    if t.rank != 1 or not isinstance(t.shape[0], int):
        raise ShapeError(f"{what} must be a 1-D tensor of static length, got {t}")
    return t.shape[0]


def _all_derived(x: TensorType) -> TensorType:
    return TensorType(x.dtype, tuple(derived(d) for d in x.shape))


@register_op("tensor.reshape_dyn", "x shape", {"allowzero": False}, tags="layout")
def _reshape_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Reshape to the shape held by runtime operand ``shape`` (ONNX Reshape: 0 copies the
    input dimension unless ``allowzero``, one -1 is inferred)."""
    rank = vector_length(types[1], "reshape shape")
    return [TensorType(types[0].dtype, fresh("reshape", rank))]


@register_op("tensor.expand_dyn", "x shape", tags="layout")
def _expand_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Broadcast ``x`` against the runtime shape ``shape`` (ONNX Expand)."""
    x = types[0]
    rank = max(vector_length(types[1], "expand shape"), x.rank)
    return [TensorType(x.dtype, fresh("expand", rank))]


@register_op("tensor.slice_dyn", "x starts ends axes? steps?", tags="layout")
def _slice_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX Slice with runtime ``starts``/``ends`` (and optional ``axes``/``steps``): every
    dimension may change, so all are symbolic."""
    count = vector_length(types[1], "slice starts")
    for t, what in zip(types[2:], ("slice ends", "slice axes", "slice steps"), strict=False):
        if vector_length(t, what) != count:
            raise ShapeError(f"{what} has another length than the starts ({count})")
    return [_all_derived(types[0])]


@register_op(
    "tensor.split_dyn", "x sizes?", {"axis": 0, "count": 1}, outputs="count", tags="layout"
)
def _split_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Split ``x`` along ``axis`` into ``count`` parts of the runtime ``sizes``; without
    them into equal parts of a dimension known only at run time (the last part smaller
    where it does not divide, as ONNX Split-18 has it)."""
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    if len(types) > 1 and vector_length(types[1], "split sizes") != attrs["count"]:
        raise ShapeError(f"{attrs['count']} outputs but {types[1]} split sizes")
    return [
        TensorType(x.dtype, tuple(f"split{k}'" if i == axis else d for i, d in enumerate(x.shape)))
        for k in range(attrs["count"])
    ]


@register_op("tensor.squeeze_dyn", "x axes", tags="layout")
def _squeeze_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Drop the size-1 dimensions named by runtime ``axes``."""
    x = types[0]
    count = vector_length(types[1], "squeeze axes")
    if count > x.rank:
        raise ShapeError(f"squeezing {count} axes of a rank-{x.rank} tensor")
    return [TensorType(x.dtype, fresh("squeeze", x.rank - count))]


@register_op("tensor.unsqueeze_dyn", "x axes", tags="layout")
def _unsqueeze_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Insert size-1 dimensions at the positions named by runtime ``axes``."""
    x = types[0]
    return [TensorType(x.dtype, fresh("unsqueeze", x.rank + vector_length(types[1], "axes")))]


@register_op("tensor.tile_dyn", "x repeats", tags="layout")
def _tile_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Repeat ``x`` along each dimension by the runtime ``repeats`` (ONNX Tile)."""
    x = types[0]
    if vector_length(types[1], "tile repeats") != x.rank:
        raise ShapeError(f"tile repeats {types[1]} do not match rank {x.rank}")
    return [_all_derived(x)]


@register_op("tensor.pad_dyn", "x pads value? axes?", {"mode": "constant"}, tags="layout")
def _pad_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX Pad with runtime ``pads`` (begins then ends; negative crops), fill ``value`` and
    ``axes``; ``mode`` is constant, reflect, edge or wrap."""
    x = types[0]
    if attrs["mode"] not in PAD_MODES:
        raise ShapeError(f"unknown pad mode {attrs['mode']!r}; expected one of {PAD_MODES}")
    pads = vector_length(types[1], "pads")
    axes = vector_length(types[3], "pad axes") if len(types) > 3 else x.rank
    if pads != 2 * axes:
        raise ShapeError(f"{pads} pads for {axes} axes (a begin and an end for each)")
    if len(types) > 2 and types[2].dtype != x.dtype:
        raise ShapeError(f"pad value {types[2]} is not of the input's dtype {x.dtype}")
    return [_all_derived(x)]


@register_op("tensor.range_dyn", "start limit delta")
def _range(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``start, start + delta, ...`` up to (not including) ``limit``: scalars of one dtype,
    whose values decide the length (ONNX Range)."""
    single = all(t.rank == 0 or t.shape == (1,) for t in types)  # models pass [n] for n too
    if not single or len({t.dtype for t in types}) != 1:
        raise ShapeError(f"range takes three scalars of one dtype, got {[str(t) for t in types]}")
    return [TensorType(types[0].dtype, fresh("range", 1))]


@register_op("tensor.constant_of_shape", "shape", {"value": 0.0, "dtype": "f32"})
def _constant_of_shape(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """A tensor of the runtime ``shape`` filled with ``value`` (ONNX ConstantOfShape)."""
    return [TensorType(attrs["dtype"], fresh("shape", vector_length(types[0], "shape")))]


#: ONNX Resize's coordinate transformations and nearest roundings that ``nn.resize_dyn`` has.
RESIZE_TRANSFORMS = (
    "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric",
    "tf_half_pixel_for_nn", "tf_crop_and_resize",
)  # fmt: skip
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


@register_op(
    "nn.resize_dyn", "x params roi?",
    {"given": "scales", "mode": "nearest", "transform": "half_pixel",
     "nearest_mode": "round_prefer_floor", "axes": None, "extrapolation_value": 0.0,
     "policy": "stretch", "cubic_coeff_a": -0.75, "exclude_outside": False},
)  # fmt: skip
def _resize_dyn(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX Resize (nearest, linear or cubic) whose ``params`` (the ``given`` scales or
    sizes, one per dimension in ``axes``) may be runtime data; ``roi`` for
    tf_crop_and_resize; ``exclude_outside`` renormalizes the taps inside the input."""
    x = types[0]
    checks = (("mode", ("nearest", "linear", "cubic")), ("transform", RESIZE_TRANSFORMS),
              ("nearest_mode", NEAREST_MODES), ("policy", ASPECT_POLICIES),
              ("given", ("scales", "sizes")))  # fmt: skip
    for key, allowed in checks:
        if attrs[key] not in allowed:
            raise ShapeError(f"resize {key}={attrs[key]!r}; expected one of {allowed}")
    axes = attrs["axes"]
    changed = set(range(x.rank)) if axes is None else {norm_axis(a, x.rank) for a in axes}
    if vector_length(types[1], "resize scales or sizes", integer=False) != len(changed):
        raise ShapeError(f"resize {attrs['given']} {types[1]} for {len(changed)} axes")
    shape = tuple(derived(d) if i in changed else d for i, d in enumerate(x.shape))
    return [TensorType(x.dtype, shape)]


@register_op("tensor.one_hot", "indices depth values", {"axis": -1})
def _one_hot(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``values[1]`` where an index (wrapped once if negative) equals the position along the
    new dimension ``axis`` of runtime size ``depth``, else ``values[0]`` (ONNX OneHot)."""
    indices, values = types[0], types[2]
    axis = norm_axis(attrs["axis"], indices.rank + 1)
    if values.rank != 1 or values.shape[0] not in (2, "2"):
        raise ShapeError(f"one_hot values must be [off, on], got {values}")
    shape = list(indices.shape)
    shape.insert(axis, fresh("onehot", 1)[0])
    return [TensorType(values.dtype, tuple(shape))]
