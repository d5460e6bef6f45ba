"""The op table: the registry every op module fills, and the helpers they share.

This is a leaf module: ``OPS``, the ``register_op`` decorator that fills it, ``get_op`` and
``infer_types``, and the shape and layout helpers the op modules (``ops_core``, ``ops_nn``,
``ops_tensor``, ...) use. Each op module imports only this one; ``compiler.ir`` (the
package's ``__init__``) imports every op module once, in a fixed order, so any import of
``compiler.ir.ops`` sees the whole table.

Adding an op means adding one ``register_op`` entry in an op module, one NumPy
implementation in the interpreter (``compiler.interpreter_context.impl``) and (where they
take it) one rule per frontend and backend; a test checks that every table knows every op it
claims.

Operand names ending in ``?`` are optional (trailing); a name ending in ``*`` is variadic.
Tags state what other layers may rely on: ``elementwise``, ``reduce``, ``quant``, ``layout``
(the op only moves elements: an integer tensor keeps its scale through it) and ``view`` (a
layout op keeping the row-major order: the same bytes, a new shape). The other facts about
ops (zero points, the integer output clamp, fused activations, MACs) are stated once in
``compiler.ir.op_facts``.
Attribute defaults of ``REQUIRED`` must be given. Floats ops take f32/f16/bf16; integer
(quantized) ops state their accumulator dtype in an ``acc`` attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.types import Dim, Shape, TensorType, is_float

REQUIRED: Any = object()

InferFn = Callable[[Sequence[TensorType], dict[str, Any]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """One op: operand names, attributes with defaults, and its type-inference function."""

    name: str
    operands: tuple[str, ...]
    attrs: dict[str, Any]
    infer: InferFn | None
    doc: str = ""
    outputs: int | str = 1  # an int, or the name of a list attribute whose length gives it
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def min_inputs(self) -> int:
        return sum(1 for o in self.operands if not o.endswith(("?", "*")))

    @property
    def max_inputs(self) -> float:
        if any(o.endswith("*") for o in self.operands):
            return math.inf
        return len(self.operands)

    def num_outputs(self, attrs: dict[str, Any]) -> int:
        if isinstance(self.outputs, int):
            return self.outputs
        given = attrs[self.outputs]  # a count, or a list with one entry per output
        return given if isinstance(given, int) else len(given)

    def with_defaults(self, attrs: dict[str, Any]) -> dict[str, Any]:
        full = {k: v for k, v in self.attrs.items() if v is not REQUIRED}
        full.update(attrs)
        return full


OPS: dict[str, OpDef] = {}


def register_op(
    name: str,
    operands: str,
    attrs: dict[str, Any] | None = None,
    outputs: int | str = 1,
    tags: str = "",
    doc: str = "",
) -> Callable[[InferFn], InferFn]:
    def register(fn: InferFn) -> InferFn:
        OPS[name] = OpDef(
            name,
            tuple(operands.split()) if operands else (),
            dict(attrs or {}),
            fn,
            doc or (fn.__doc__ or "").strip(),
            outputs,
            frozenset(tags.split()),
        )
        return fn

    return register


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise ShapeError(f"unknown op {name!r}") from None


def infer_types(
    op: str, types: Sequence[TensorType], attrs: dict[str, Any], where: str = ""
) -> list[TensorType]:
    """Output types of ``op`` on operand ``types``; ShapeError naming ``where`` if invalid."""
    opdef = get_op(op)
    if opdef.infer is None:
        raise ShapeError(f"{where or op}: the type of {op} cannot be inferred")
    try:
        return opdef.infer(types, opdef.with_defaults(attrs))
    except ShapeError as e:
        raise ShapeError(f"{where or op}: {e}") from None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ShapeError(
            f"{where or op}: invalid operands or attributes for {op}: {type(e).__name__}: {e}"
        ) from None


# ---- shape helpers --------------------------------------------------------------------------
def _fail(msg: str) -> ShapeError:
    return ShapeError(msg)


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting, with symbolic dimensions (a name broadcasts against 1 or itself)."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        result: Dim = 1
        for d in dims:
            if d == 1 or d == result:
                continue
            if result == 1:
                result = d
            elif isinstance(d, str) or isinstance(result, str):
                result = result if isinstance(result, str) else d
            else:
                raise _fail(f"shapes {' and '.join(map(str, shapes))} do not broadcast")
        out.append(result)
    return tuple(out)


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def same_dtype(types: Sequence[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise _fail(f"operands have different dtypes {sorted(dtypes)}")
    return dtypes.pop()


def require_float(t: TensorType, what: str = "operand") -> None:
    if not is_float(t.dtype):
        raise _fail(f"{what} must be float, got {t.dtype}")


def conv_out_dim(
    size: Dim, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int, ceil_mode: bool = False
) -> Dim:
    if isinstance(size, str):
        return size if (k, stride, pad_lo + pad_hi, dilation) == (1, 1, 0, 1) else f"{size}'"
    span = dilation * (k - 1) + 1
    num = size + pad_lo + pad_hi - span
    if num < 0:
        raise _fail(f"window {span} larger than padded input {size + pad_lo + pad_hi}")
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1  # the last window must start inside the input or left padding (PyTorch, ONNX)
    return out


def binary_types(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [TensorType(same_dtype(types), broadcast_shapes(types[0].shape, types[1].shape))]




#: Activation layouts of the ops with a ``layout`` attribute (conv2d, pools, batch_norm).
#: "NHWC" is channels-last: [N, H, W, C] activations (conv weights stay OIHW).
LAYOUTS = ("NCHW", "NHWC")


def channels_first(shape: Shape) -> Shape:
    """[N, *spatial, C] -> [N, C, *spatial]."""
    return (shape[0], shape[-1], *shape[1:-1])


def channels_last(shape: Shape) -> Shape:
    """[N, C, *spatial] -> [N, *spatial, C]."""
    return (shape[0], *shape[2:], shape[1])


def nchw_shape(shape: Shape, attrs: dict[str, Any]) -> Shape:
    """``shape`` of an operand or result of a node with ``attrs``, seen as NCHW."""
    return channels_first(shape) if attrs.get("layout", "NCHW") == "NHWC" else shape


def _relaid(t: TensorType, shape: Shape) -> TensorType:
    # Per-tensor quantization moves with the data; a per-channel axis would need renumbering.
    return TensorType(
        t.dtype, shape, t.quant if t.quant is not None and t.quant.axis is None else None
    )


def layout_aware(infer: InferFn, moved: tuple[int, ...] = (0,)) -> InferFn:
    """Extend an NCHW type inference to ``layout="NHWC"``: the operands at ``moved`` (of the
    same rank as operand 0) and every result are channels-last."""

    def run(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        layout = attrs.get("layout", "NCHW")
        if layout not in LAYOUTS:
            raise _fail(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
        if layout == "NCHW":
            return infer(types, attrs)
        rank = types[0].rank
        if rank < 3:
            raise _fail(f"layout NHWC wants [N, ..., C] operands, got {types[0].shape}")
        view = [
            _relaid(t, channels_first(t.shape)) if i in moved and t.rank == rank else t
            for i, t in enumerate(types)
        ]
        return [_relaid(t, channels_last(t.shape)) for t in infer(view, attrs)]

    run.__doc__ = infer.__doc__
    return run
