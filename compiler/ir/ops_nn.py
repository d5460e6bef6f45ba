"""Op table, part 2: convolutions, dense/matmul, pooling, resize, attention, quantization.

Convolution and dense take a fused activation (``act`` with ``act_args``) and an optional
``residual`` operand added before the activation, so that fusion passes have a form to
produce: ``nn.conv2d(%x, %w, %b, %skip) {act="relu"}`` is ``relu(conv(x) + b + skip)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import (
    REQUIRED,
    broadcast_shapes,
    conv_out_dim,
    layout_aware,
    norm_axis,
    register_op,
    require_float,
)
from compiler.ir.types import Dim, TensorType, is_float, is_int


@dataclass(frozen=True)
class FusedActivation:
    """What a fused ``act`` of conv/dense means: the standalone ``op`` applied to the result,
    with the attributes ``fixed`` and ``act_args`` given in the order of ``args`` (attribute
    names of ``op``; a missing one takes the op's default). ``integer``: it is a clamp, with
    a meaning on integer codes too (an integer conv/dense may carry it; the quantizer puts
    relu on the accumulator and relu6/clip into the requantize's clip_min/clip_max); the
    others (gelu, silu, ...) have no integer form and run as their float op."""

    op: str | None  # None: "none", no activation
    args: tuple[str, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()
    integer: bool = False


#: Activations that conv/dense can carry fused (``act``), each as the op it stands for; the
#: one table that fusion passes, the quantizer, the interpreter and the backends read
#: (``compiler.ir.op_facts``: ``fused_activation``, ``standalone_activation``).
FUSED_ACTIVATIONS: dict[str, FusedActivation] = {
    "none": FusedActivation(None, integer=True),
    "relu": FusedActivation("nn.relu", integer=True),
    "relu6": FusedActivation("nn.relu6", integer=True),
    "clip": FusedActivation("nn.clip", ("min", "max"), integer=True),
    "leaky_relu": FusedActivation("nn.leaky_relu", ("alpha",)),
    "sigmoid": FusedActivation("nn.sigmoid"),
    "silu": FusedActivation("nn.silu"),
    "gelu": FusedActivation("nn.gelu", fixed=(("approximate", "none"),)),
    "gelu_tanh": FusedActivation("nn.gelu", fixed=(("approximate", "tanh"),)),
    "hardswish": FusedActivation("nn.hardswish"),
    "tanh": FusedActivation("math.tanh"),
}

#: The fused activations an *integer* conv/dense may carry: clamps of the accumulator codes
#: (the interpreter's ``nn.relu``/``relu6``/``clip`` on integers). Any other act on integers
#: has no meaning the backends share, so the verifier rejects it.
INTEGER_ACTIVATIONS = tuple(act for act, spec in FUSED_ACTIVATIONS.items() if spec.integer)

_CONV_ATTRS: dict[str, Any] = {
    "strides": None,
    "pads": None,
    "dilations": None,
    "groups": 1,
    "act": "none",
    "act_args": [],
    "acc": None,
}


def _check_act(attrs: dict[str, Any]) -> None:
    if attrs["act"] not in FUSED_ACTIVATIONS:
        raise ShapeError(
            f"unknown fused activation {attrs['act']!r}; expected one of "
            f"{sorted(FUSED_ACTIVATIONS)}"
        )
    args = attrs.get("act_args", [])
    if not isinstance(args, list | tuple) or not all(isinstance(a, int | float) for a in args):
        raise ShapeError(f"act_args {args!r} must be a list of numbers")


def _out_dtype(x: TensorType, w: TensorType, attrs: dict[str, Any]) -> str:
    """Float ops keep their dtype; integer ops produce their accumulator dtype."""
    if is_float(x.dtype):
        if x.dtype != w.dtype:
            raise ShapeError(f"input dtype {x.dtype} differs from weight dtype {w.dtype}")
        return x.dtype
    if not is_int(w.dtype):
        raise ShapeError(f"integer input {x.dtype} with non-integer weight {w.dtype}")
    return attrs["acc"] or "i32"


def spatial_params(attrs: dict[str, Any], n: int) -> tuple[list[int], list[int], list[int]]:
    """(strides, pads as [begin..., end...], dilations) with defaults filled in."""
    strides = list(attrs.get("strides") or [1] * n)
    pads = list(attrs.get("pads") or [0] * (2 * n))
    dilations = list(attrs.get("dilations") or [1] * n)
    if len(strides) != n or len(pads) != 2 * n or len(dilations) != n:
        raise ShapeError(
            f"strides/pads/dilations {strides}/{pads}/{dilations} do not fit {n} spatial dims"
        )
    if min(strides) < 1 or min(dilations) < 1 or min(pads, default=0) < 0:
        raise ShapeError(
            f"strides {strides} and dilations {dilations} must be >= 1, pads {pads} >= 0"
        )
    return strides, pads, dilations


def _conv(n: int):
    def infer(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        x, w = types[0], types[1]
        if x.rank != n + 2 or w.rank != n + 2:
            raise ShapeError(
                f"conv{n}d wants rank-{n + 2} input and weight, got {x.shape}, {w.shape}"
            )
        _check_act(attrs)
        groups = attrs["groups"]
        cin = x.shape[1]
        if isinstance(cin, int) and cin != w.shape[1] * groups:
            raise ShapeError(
                f"input has {cin} channels, weight expects {w.shape[1]} x {groups} groups"
            )
        if isinstance(w.shape[0], int) and w.shape[0] % groups:
            raise ShapeError(f"{w.shape[0]} output channels not divisible by {groups} groups")
        strides, pads, dil = spatial_params(attrs, n)
        spatial = [
            conv_out_dim(
                x.shape[2 + i], int(w.shape[2 + i]), strides[i], pads[i], pads[n + i], dil[i]
            )
            for i in range(n)
        ]
        out = TensorType(_out_dtype(x, w, attrs), (x.shape[0], w.shape[0], *spatial))
        if len(types) > 2 and tuple(types[2].shape) != (w.shape[0],):
            raise ShapeError(f"bias shape {types[2].shape} != ({w.shape[0]},)")
        if len(types) > 3:
            broadcast_shapes(out.shape, types[3].shape)
        return [out]

    return infer


register_op("nn.conv1d", "x w b? residual?", _CONV_ATTRS, tags="conv")(_conv(1))
register_op(
    "nn.conv2d",
    "x w b? residual?",
    {**_CONV_ATTRS, "layout": "NCHW"},
    tags="conv",
    doc='2-D convolution, NCHW input (NHWC input and residual with layout="NHWC"), OIHW '
    "weight, pads [top, left, bottom, right].",
)(layout_aware(_conv(2), moved=(0, 3)))


@register_op(
    "nn.conv_transpose2d",
    "x w b?",
    {"strides": None, "pads": None, "dilations": None, "output_padding": [0, 0], "groups": 1},
)
def _conv_transpose2d(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Transposed 2-D convolution; weight is [Cin, Cout/groups, KH, KW]."""
    x, w = types[0], types[1]
    require_float(x)
    strides, pads, dil = spatial_params(attrs, 2)
    op = attrs["output_padding"]
    spatial: list[Dim] = []
    for i in range(2):
        size = x.shape[2 + i]
        if isinstance(size, str):
            spatial.append(f"{size}'")
            continue
        spatial.append(
            (size - 1) * strides[i]
            - pads[i]
            - pads[2 + i]
            + dil[i] * (int(w.shape[2 + i]) - 1)
            + op[i]
            + 1
        )
    return [TensorType(x.dtype, (x.shape[0], w.shape[1] * attrs["groups"], *spatial))]


@register_op(
    "nn.dense", "x w b? residual?", {"act": "none", "act_args": [], "acc": None}, tags="dense"
)
def _dense(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``x @ w.T + b`` over the last axis of x; w is [out_features, in_features]."""
    x, w = types[0], types[1]
    _check_act(attrs)
    if w.rank != 2 or x.rank < 1:
        raise ShapeError(f"dense wants weight [N, K] and input [..., K], got {x.shape}, {w.shape}")
    if isinstance(x.shape[-1], int) and x.shape[-1] != w.shape[1]:
        raise ShapeError(f"input features {x.shape[-1]} != weight in_features {w.shape[1]}")
    out = TensorType(_out_dtype(x, w, attrs), (*x.shape[:-1], w.shape[0]))
    if len(types) > 2 and tuple(types[2].shape) != (w.shape[0],):
        raise ShapeError(f"bias shape {types[2].shape} != ({w.shape[0]},)")
    return [out]


@register_op("nn.matmul", "a b", {"acc": None})
def _matmul(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """NumPy ``matmul``: batched, with broadcast batch dimensions."""
    a, b = types
    if a.rank < 2 or b.rank < 2:
        raise ShapeError(f"matmul wants rank >= 2 operands, got {a.shape} and {b.shape}")
    k1, k2 = a.shape[-1], b.shape[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        raise ShapeError(f"matmul inner dimensions differ: {a.shape} @ {b.shape}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return [TensorType(_out_dtype(a, b, attrs), (*batch, a.shape[-2], b.shape[-1]))]


# The result type of a 2-D NCHW pool (``q.avg_pool`` reuses it). A comment, not a docstring:
# the pools' doc in the op table would become this text.
def pool_types(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.rank != 4:
        raise ShapeError(f"2-D pooling wants NCHW input, got {x.shape}")
    k = list(attrs["kernel"])
    if len(k) != 2 or min(k) < 1:
        raise ShapeError(f"pooling kernel {k} must be two sizes >= 1")
    strides, pads, dil = spatial_params({**attrs, "strides": attrs["strides"] or k}, 2)
    spatial = [
        conv_out_dim(
            x.shape[2 + i], k[i], strides[i], pads[i], pads[2 + i], dil[i], attrs["ceil_mode"]
        )
        for i in range(2)
    ]
    return [TensorType(x.dtype, (x.shape[0], x.shape[1], *spatial), x.quant)]


register_op(
    "nn.max_pool2d",
    "x",
    {
        "kernel": REQUIRED,
        "strides": None,
        "pads": None,
        "dilations": None,
        "ceil_mode": False,
        "layout": "NCHW",
    },
    tags="pool",
)(layout_aware(pool_types))
register_op(
    "nn.avg_pool2d",
    "x",
    {
        "kernel": REQUIRED,
        "strides": None,
        "pads": None,
        "ceil_mode": False,
        "count_include_pad": True,
        "layout": "NCHW",
    },
    tags="pool",
)(layout_aware(pool_types))


# The result type of a global pool over every spatial axis (``q.global_avg_pool`` reuses it).
def global_pool_types(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.rank < 3:
        raise ShapeError(f"global pooling wants [N, C, ...] input, got {x.shape}")
    if 0 in x.shape[2:]:
        raise ShapeError(f"global pooling over an empty window: {x.shape}")
    return [TensorType(x.dtype, (x.shape[0], x.shape[1]) + (1,) * (x.rank - 2), x.quant)]


for _name in ("avg", "max"):
    register_op(f"nn.global_{_name}_pool", "x", {"layout": "NCHW"}, tags="pool")(
        layout_aware(global_pool_types)
    )


@register_op("nn.adaptive_avg_pool2d", "x", {"output_size": REQUIRED}, tags="pool")
def _adaptive_avg_pool2d(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """PyTorch's adaptive average pooling to ``output_size`` [OH, OW]."""
    x = types[0]
    require_float(x)
    if x.rank != 4 or len(attrs["output_size"]) != 2 or min(attrs["output_size"]) < 1:
        raise ShapeError(f"adaptive pooling of {x} to {attrs['output_size']}: wants NCHW "
                         "input and two output sizes >= 1")
    oh, ow = attrs["output_size"]
    return [TensorType(x.dtype, (x.shape[0], x.shape[1], oh, ow))]


@register_op("nn.resize", "x", {"scales": REQUIRED, "mode": "nearest"})
def _resize(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Nearest resize, one scale per dimension: ``out[i] = in[floor(i / scale)]``."""
    x = types[0]
    if attrs["mode"] != "nearest":
        raise ShapeError(f"resize mode {attrs['mode']!r} is not supported (only nearest)")
    scales = attrs["scales"]
    if len(scales) != x.rank:
        raise ShapeError(f"{len(scales)} resize scales for rank {x.rank}")
    shape = tuple(
        d if s == 1 else (int(d * s) if isinstance(d, int) else f"{d}'")
        for d, s in zip(x.shape, scales, strict=True)
    )
    return [TensorType(x.dtype, shape, x.quant)]


@register_op("nn.attention", "q k v mask?", {"scale": None, "causal": False})
def _attention(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``softmax(q @ k^T * scale + mask) @ v``; scale defaults to 1/sqrt(head dim).

    q: [..., L, D], k: [..., S, D], v: [..., S, Dv]. A bool mask keeps positions where it is
    true; a float mask is added. ``causal`` masks positions j > i.
    """
    q, k, v = types[0], types[1], types[2]
    for t in (q, k, v):
        require_float(t)
    if q.rank < 2 or k.rank != q.rank or v.rank != q.rank:
        raise ShapeError(f"attention operands must share rank >= 2: {q.shape} {k.shape} {v.shape}")
    batch = broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return [TensorType(q.dtype, (*batch, q.shape[-2], v.shape[-1]))]


# ---- quantization ---------------------------------------------------------------------------
@register_op("q.quantize", "x", {"dtype": REQUIRED}, tags="quant")
def _quantize(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Float to integer with the output type's scale and zero point (compiler.numerics)."""
    require_float(types[0])
    if not is_int(attrs["dtype"]):
        raise ShapeError(f"quantize target dtype must be integer, got {attrs['dtype']}")
    return [TensorType(attrs["dtype"], types[0].shape)]


@register_op("q.dequantize", "x", {"dtype": "f32"}, tags="quant")
def _dequantize(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer to float: ``(q - zero_point) * scale`` with the input type's parameters."""
    if types[0].quant is None:
        raise ShapeError(f"dequantize input {types[0]} has no quantization parameters")
    return [TensorType(attrs["dtype"], types[0].shape)]


@register_op(
    "q.requantize",
    "x",
    {
        "dtype": REQUIRED,
        "multiplier": REQUIRED,
        "shift": REQUIRED,
        "axis": None,
        "clip_min": None,
        "clip_max": None,
    },
    tags="quant",
)
def _requantize(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer accumulators to ``dtype`` by fixed-point ``multiplier``/``shift`` lists (one
    entry, or one per channel along ``axis``); zero point from the output type. Optional
    integer ``clip_min``/``clip_max`` clamp the result (relu6/clip fused in the integer
    domain): ``out = clamp(requantize(acc), clip_min, clip_max)``."""
    if not is_int(types[0].dtype):
        raise ShapeError(f"requantize input must be integer, got {types[0].dtype}")
    if len(attrs["multiplier"]) != len(attrs["shift"]):
        raise ShapeError("requantize needs as many shifts as multipliers")
    if attrs["axis"] is not None:
        norm_axis(attrs["axis"], types[0].rank)
    return [TensorType(attrs["dtype"], types[0].shape)]
