"""Facts about ops that every layer needs, each stated once, next to the op table.

The interpreter, the passes and every backend call these instead of restating them, and the
verifier rejects the graphs they leave undefined (``check_node``):

- ``zero_point(value)``: the one zero point an integer op subtracts from an operand (or adds
  to its result). Ops that read one per tensor are listed in ``SINGLE_ZERO_POINT``; a
  per-channel operand there must have zero points 0. conv/dense weights have zero point 0
  (``ZERO_WEIGHT_ZERO_POINT``: the interpreter and every kernel ignore it).
- ``output_clamp(attrs, zo)``: the integer output range of ``q.add`` / ``q.requantize``: the
  dtype's range, narrowed by a relu (to the output zero point) and ``clip_min``/``clip_max``.
- The fused activations (``act``): ``compiler.ir.ops_nn.FUSED_ACTIVATIONS`` maps each to the
  op it stands for; ``standalone_activation`` and ``fused_activation`` convert both ways;
  an integer conv/dense carries only the clamps ``INTEGER_ACTIVATIONS``.
- ``node_macs(node)``: multiply-accumulates, one formula per op in ``MACS``; conv and
  dense as the matrix product ``gemm_shape(node)`` (M, K, N) they are.
- Layout: ops tagged ``layout`` in the op table only move elements (reshape, transpose,
  slice, concat, gather, ...: an integer tensor keeps its scale through them); ``view`` ops
  keep the row-major order too (the same bytes under a new shape: a copy or an alias);
  ``reshape_ops()`` are the views that change the shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from compiler.ir.graph import Node, Value
from compiler.ir.ops import OPS
from compiler.ir.ops_nn import FUSED_ACTIVATIONS, INTEGER_ACTIVATIONS
from compiler.ir.types import Dim, is_int
from compiler.numerics import INT_RANGES

# ---- zero points ----------------------------------------------------------------------------
#: Integer ops that subtract (or add) ONE zero point per tensor: op -> (operand indices,
#: whether the result's zero point is read too). Quantized data movement (max pool, reshape,
#: concat, ...) keeps the codes and needs no zero point.
SINGLE_ZERO_POINT: dict[str, tuple[tuple[int, ...], bool]] = {
    "nn.conv1d": ((0,), False),
    "nn.conv2d": ((0,), False),
    "nn.dense": ((0,), False),
    "nn.matmul": ((0, 1), False),
    "q.add": ((0, 1), True),
    "q.avg_pool2d": ((0,), True),
    "q.global_avg_pool": ((0,), True),
    "q.layernorm": ((0,), True),
    "q.softmax": ((0,), True),
}

#: Integer conv/dense weights (operand 1) are symmetric: their zero point must be 0.
ZERO_WEIGHT_ZERO_POINT = ("nn.conv1d", "nn.conv2d", "nn.dense")


def zero_point(value: Value) -> int:
    """The zero point an integer op reads for ``value``: 0 when it is not quantized or
    quantized per channel (the verifier rejects non-zero per-channel zero points where an
    op reads one, see ``SINGLE_ZERO_POINT``), else its one zero point."""
    qp = value.type.quant
    if qp is None:
        return 0
    if qp.axis is not None:
        if any(qp.zero_point):
            raise ValueError(f"%{value.name} has per-channel zero points, not one")
        return 0
    return int(qp.zero_point[0])


def _single_zero_point_error(node: Node) -> str | None:
    operands, result = SINGLE_ZERO_POINT.get(node.op, ((), False))
    values = [node.inputs[i] for i in operands if i < len(node.inputs)]
    values += node.outputs if result else []
    for value in values:
        qp = value.type.quant
        if qp is not None and qp.axis is not None and any(qp.zero_point):
            return (
                f"%{value.name} has per-channel zero points {list(qp.zero_point)}; integer "
                f"{node.op} takes one zero point per tensor (0 where scales are per channel)"
            )
    if node.op in ZERO_WEIGHT_ZERO_POINT and len(node.inputs) > 1:
        w = node.inputs[1].type.quant
        if w is not None and is_int(node.inputs[1].dtype) and any(w.zero_point):
            return (
                f"weight %{node.inputs[1].name} has zero point(s) {sorted(set(w.zero_point))}; "
                f"an integer {node.op} weight is symmetric (zero point 0)"
            )
    return None


# ---- the integer output clamp ---------------------------------------------------------------
def output_clamp(attrs: dict[str, Any], zo: int) -> tuple[int, int]:
    """The inclusive integer range of a ``q.add`` / ``q.requantize`` result with ``attrs``
    and output zero point ``zo``: the dtype's range, narrowed by ``act="relu"`` (real 0 is
    the code ``zo``) and by ``clip_min``/``clip_max`` (relu6/clip fused in integers)."""
    lo, hi = INT_RANGES[attrs["dtype"]]
    if attrs.get("act", "none") == "relu":
        lo = max(lo, zo)
    if attrs.get("clip_min") is not None:
        lo = max(lo, int(attrs["clip_min"]))
    if attrs.get("clip_max") is not None:
        hi = min(hi, int(attrs["clip_max"]))
    return lo, hi


def clamps(attrs: dict[str, Any], zo: int) -> bool:
    """Whether ``output_clamp`` narrows the dtype's range (saturation alone does not)."""
    return output_clamp(attrs, zo) != INT_RANGES[attrs["dtype"]]


# ---- fused activations ----------------------------------------------------------------------
def standalone_activation(act: str, args: list[float]) -> tuple[str, dict[str, Any]] | None:
    """(op, attributes) that fused ``act`` with ``act_args`` stands for; None for "none"."""
    spec = FUSED_ACTIVATIONS[act]
    if spec.op is None:
        return None
    attrs = dict(spec.fixed)
    attrs.update({name: float(v) for name, v in zip(spec.args, args, strict=False)})
    for name in spec.args:
        if attrs.get(name) is not None and not math.isfinite(attrs[name]):
            attrs[name] = None  # an open clip bound
    defaults = OPS[spec.op].attrs
    return spec.op, {k: v for k, v in attrs.items() if k not in defaults or defaults[k] != v}


def fused_activation(op: str, attrs: dict[str, Any]) -> tuple[str, list[float]] | None:
    """(act, act_args) that standalone ``op`` with ``attrs`` becomes when fused into a
    conv/dense; None if it is no fusable activation. A clip of [0, 6] or [0, inf) is
    spelled relu6 / relu: the same function, under the name kernels know best."""
    full = OPS[op].with_defaults(attrs) if op in OPS else {}
    for act, spec in FUSED_ACTIVATIONS.items():
        if spec.op != op or any(full.get(k) != v for k, v in spec.fixed):
            continue
        args = [_bound(full.get(name), name) for name in spec.args]
        if act == "clip":
            return {(0.0, 6.0): ("relu6", []), (0.0, math.inf): ("relu", [])}.get(
                (args[0], args[1]), ("clip", args)
            )
        return act, args
    return None


def _bound(value: Any, name: str) -> float:
    if value is None:  # an open clip bound
        return -math.inf if name == "min" else math.inf
    return float(value)


def activation_ops() -> frozenset[str]:
    """The standalone ops that fuse into conv/dense as an ``act``."""
    return frozenset(s.op for s in FUSED_ACTIVATIONS.values() if s.op is not None)


def integer_keeps(act: str) -> bool:
    """Whether ``act`` is a clamp that an integer conv/dense keeps fused (relu on the
    accumulator, relu6/clip as requantize clamps); see ``FusedActivation.integer``."""
    return act in INTEGER_ACTIVATIONS


def _integer_act_error(node: Node) -> str | None:
    act = node.attrs.get("act", "none")
    if not node.outputs or not is_int(node.outputs[0].dtype) or act in INTEGER_ACTIVATIONS:
        return None
    if node.op not in ("nn.conv1d", "nn.conv2d", "nn.dense"):
        return None
    return (
        f"integer {node.op} with act={act!r}: an integer accumulator takes only the clamps "
        f"{list(INTEGER_ACTIVATIONS)}"
    )


# ---- multiply-accumulates -------------------------------------------------------------------
def _numel(shape: tuple[Dim, ...], symbolic: int) -> int:
    return math.prod(d if isinstance(d, int) else symbolic for d in shape)


def _dim(d: Dim, symbolic: int) -> int:
    return d if isinstance(d, int) else symbolic


#: Ops that are one matrix product each, read by ``gemm_shape``.
GEMM_OPS = ("nn.conv1d", "nn.conv2d", "nn.dense")


def gemm_shape(node: Node, symbolic: int = 1) -> tuple[int, int, int]:
    """(M, K, N) of the matrix product a conv or dense node is: N output channels (the
    weight's rows), K products per output element (one group's window: the weight's other
    dimensions), M output elements per channel (pixels, or rows). M·K·N is its MACs."""
    assert node.op in GEMM_OPS, node.op
    w = node.inputs[1].type.shape
    n = _dim(w[0], symbolic)
    m = _numel(node.outputs[0].type.shape, symbolic) // n if n else 0  # no output channels
    return m, _numel(w[1:], symbolic), n


def _gemm_macs(node: Node, s: int) -> int:
    return math.prod(gemm_shape(node, s))


def _conv_transpose_macs(node: Node, s: int) -> int:
    return _numel(node.inputs[0].type.shape, s) * _numel(node.inputs[1].type.shape[1:], s)


def _matmul_macs(node: Node, s: int) -> int:
    return _numel(node.outputs[0].type.shape, s) * _dim(node.inputs[0].type.shape[-1], s)


def _block_dense_macs(node: Node, s: int) -> int:
    return _numel(node.outputs[0].type.shape, s) * _dim(node.inputs[1].type.shape[1], s)


def _attention_macs(node: Node, s: int) -> int:
    q_shape, k_shape = node.inputs[0].type.shape, node.inputs[1].type.shape
    return _numel(q_shape, s) * _dim(k_shape[-2], s) * 2  # q @ k^T, then @ v


#: op -> its multiply-accumulates, given the node and the size assumed for symbolic dims.
MACS: dict[str, Callable[[Node, int], int]] = {
    "nn.conv1d": _gemm_macs,
    "nn.conv2d": _gemm_macs,
    "nn.dense": _gemm_macs,  # [..., N] outputs x K (the weight is [N, K])
    "nn.conv_transpose2d": _conv_transpose_macs,
    "nn.matmul": _matmul_macs,
    "nn.attention": _attention_macs,
    "q.block_dense": _block_dense_macs,  # [..., N] outputs x K (the weight is [N, K])
}


def node_macs(node: Node, symbolic: int = 1) -> int:
    """Multiply-accumulates of one node (0 for ops that do none); a symbolic dimension
    counts as ``symbolic``."""
    macs = MACS.get(node.op)
    return macs(node, symbolic) if macs is not None else 0


# ---- layout ---------------------------------------------------------------------------------
def is_layout(op: str) -> bool:
    """The op only moves elements (tag ``layout``): no arithmetic on the data."""
    spec = OPS.get(op)
    return spec is not None and "layout" in spec.tags


def is_view(op: str) -> bool:
    """The op keeps the bytes and their row-major order, only the shape changes (tag
    ``view``: reshape, flatten, squeeze, unsqueeze, identity, dropout at inference)."""
    spec = OPS.get(op)
    return spec is not None and "view" in spec.tags


def view_ops() -> tuple[str, ...]:
    """Every op tagged ``view``, sorted (for the rule tables that treat them as one)."""
    return tuple(sorted(name for name, spec in OPS.items() if "view" in spec.tags))


def reshape_ops() -> tuple[str, ...]:
    """The ``view`` ops that change the shape (reshape, flatten, squeeze, unsqueeze): the
    others are elementwise and keep it (identity, dropout)."""
    return tuple(op for op in view_ops() if "elementwise" not in OPS[op].tags)


# ---- the verifier's part --------------------------------------------------------------------
def check_node(node: Node) -> str | None:
    """Why ``node`` leaves one of these facts undefined (None if it does not)."""
    return _single_zero_point_error(node) or _integer_act_error(node)


# ---- shape operands -------------------------------------------------------------------------
#: Operands whose *values* (not only shapes) decide an op's output shape, or that a
#: static-shape backend must know as numbers (a reduction's or cumsum's axis, top-k's k):
#: op -> operand indices. The other operands are data. ``passes.specialize_shapes`` replaces
#: graph inputs that reach only these by the example's values (with a run-time guard).
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "tensor.reshape_dyn": (1,),
    "tensor.expand_dyn": (1,),
    "tensor.slice_dyn": (1, 2, 3, 4),
    "tensor.split_dyn": (1,),
    "tensor.squeeze_dyn": (1,),
    "tensor.unsqueeze_dyn": (1,),
    "tensor.tile_dyn": (1,),
    "tensor.pad_dyn": (1, 3),  # pads and axes; the fill value (2) is data
    "tensor.range_dyn": (0, 1, 2),
    "tensor.constant_of_shape": (0,),
    "tensor.one_hot": (1,),
    # scales (float) or sizes, and tf_crop_and_resize's roi: the sampling grid, which the
    # static form needs as numbers (it is a box of 2 numbers per axis, never tensor data)
    "nn.resize_dyn": (1, 2),
    "math.reduce": (1,),
    "math.cumsum": (1,),
    "math.topk": (1,),
}

#: The shape operands that may be floats: Resize's scales and roi, a float Range's bounds
#: and step (its length is ``ceil((limit - start) / delta)``), OneHot's depth (truncated).
FLOAT_SHAPE_OPERANDS: frozenset[tuple[str, int]] = frozenset(
    {("nn.resize_dyn", 1), ("nn.resize_dyn", 2), ("tensor.range_dyn", 0),
     ("tensor.range_dyn", 1), ("tensor.range_dyn", 2), ("tensor.one_hot", 1)}
)


def shape_operands(op: str) -> tuple[int, ...]:
    """The operand indices of ``op`` whose values decide its output shape (see above)."""
    return SHAPE_OPERANDS.get(op, ())
