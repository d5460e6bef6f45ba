"""ONNX lowering rules, part 3: data movement (reshape, transpose, concat, slice, pad, ...).

On quantized tensors these ops are written as DequantizeLinear -> float op -> QuantizeLinear
with the same scale (the driver does it: ``Rule.quant_transparent``). That is exact for data
movement and max, and it is the form TensorRT takes: it has no plain int8 tensors, only
quantized ones between Q and DQ, and moves the Q/DQ through these ops itself.
"""

from __future__ import annotations

import numpy as np

from backends.onnx.emitter import Emitter
from compiler.ir.graph import Node
from compiler.ir.types import NUMPY_DTYPES

_INT64_MAX = 2**63 - 1


def lower_reshape(node: Node, em: Emitter) -> list:
    out = node.outputs[0].type
    target = list(out.shape) if out.is_static else list(node.attrs["shape"])
    return [em.emit1("Reshape", [em.arg(0), em.reshape_target(target)])]


def lower_flatten(node: Node, em: Emitter) -> list:
    return [em.emit1("Flatten", [em.arg(0)], axis=int(node.attrs.get("axis", 1)))]


def lower_transpose(node: Node, em: Emitter) -> list:
    return [em.emit1("Transpose", [em.arg(0)], perm=[int(p) for p in node.attrs["perm"]])]


def lower_concat(node: Node, em: Emitter) -> list:
    inputs = [em.arg(i) for i in range(len(node.inputs))]
    return [em.emit1("Concat", inputs, axis=int(node.attrs["axis"]))]


def lower_split(node: Node, em: Emitter) -> list:
    sizes = [int(s) for s in node.attrs["sizes"]]
    return em.emit(
        "Split", [em.arg(0), em.i64(sizes)], n_out=len(sizes), axis=int(node.attrs["axis"])
    )


def _clamp64(values: list) -> list[int]:
    return [max(-_INT64_MAX - 1, min(_INT64_MAX, int(v))) for v in values]


def lower_slice(node: Node, em: Emitter) -> list:
    a = node.attrs
    given = a.get("axes")
    axes: list[int] = list(given) if given is not None else list(range(len(a["starts"])))
    steps = a.get("steps") or [1] * len(axes)
    shape = node.inputs[0].type.shape
    starts = [_slice_bound(b, shape, ax, em) for b, ax in zip(a["starts"], axes, strict=True)]
    ends = [_slice_bound(b, shape, ax, em) for b, ax in zip(a["ends"], axes, strict=True)]
    inputs = [
        em.arg(0),
        em.i64(_clamp64(starts)),
        em.i64(_clamp64(ends)),
        em.i64([int(x) for x in axes]),
        em.i64([int(s) for s in steps]),
    ]
    return [em.emit1("Slice", inputs)]


def _slice_bound(bound: int | str, shape: tuple, axis: int, em: Emitter) -> int:
    """A slice bound; a symbolic one must be the whole symbolic dimension (``x[..., -8:]``
    of a ``past+8`` axis), written as "to the end"."""
    if isinstance(bound, int):
        return bound
    if shape[int(axis) % len(shape)] == bound:
        return _INT64_MAX
    raise em.fail(f"slice bound {bound!r} is symbolic: specialize the graph first")


def lower_squeeze(node: Node, em: Emitter) -> list:
    return [em.emit1("Squeeze", [em.arg(0), em.i64([int(a) for a in node.attrs["axes"]])])]


def lower_unsqueeze(node: Node, em: Emitter) -> list:
    return [em.emit1("Unsqueeze", [em.arg(0), em.i64([int(a) for a in node.attrs["axes"]])])]


def lower_expand(node: Node, em: Emitter) -> list:
    """Expand broadcasts both ways, so a dimension x already has may be given as 1."""
    x_shape = node.inputs[0].type.shape
    out = node.outputs[0].type.shape
    dims: list[int | str] = []
    for i, d in enumerate(out):
        j = i - (len(out) - len(x_shape))
        if isinstance(d, int) or d in em.symbols:
            dims.append(d)
        elif j >= 0 and x_shape[j] == d:
            dims.append(1)
        else:
            raise em.fail(f"cannot expand to dimension {d!r}: specialize the graph first")
    return [em.emit1("Expand", [em.arg(0), em.shape_tensor(dims)])]


def lower_gather(node: Node, em: Emitter) -> list:
    return [em.emit1("Gather", [em.arg(0), em.arg(1)], axis=int(node.attrs.get("axis", 0)))]


def lower_gather_elements(node: Node, em: Emitter) -> list:
    x, idx = node.inputs
    data = em.arg(0)
    if tuple(x.type.shape) != tuple(idx.type.shape):  # torch.gather reads a corner of x
        rank = x.type.rank
        ends = [int(d) for d in idx.type.shape]
        ends[int(node.attrs.get("axis", 0)) % rank] = int(
            x.type.shape[int(node.attrs.get("axis", 0)) % rank]
        )
        data = em.emit1(
            "Slice", [data, em.i64([0] * rank), em.i64(ends), em.i64(list(range(rank)))]
        )
    return [em.emit1("GatherElements", [data, em.arg(1)], axis=int(node.attrs.get("axis", 0)))]


def lower_pad(node: Node, em: Emitter) -> list:
    mode = node.attrs.get("mode", "constant")
    x = node.inputs[0]
    inputs = [em.arg(0), em.i64([int(p) for p in node.attrs["pads"]])]
    if mode == "constant":
        value = float(node.attrs.get("value", 0.0))
        dtype = x.dtype
        if em.float_view and x.type.quant is not None:  # the pad value is an integer code
            qp = x.type.quant
            value = (value - qp.zero_point[0]) * qp.scale[0]
            dtype = "f32"
        inputs.append(em.const(np.asarray(value).astype(NUMPY_DTYPES[dtype]), "pad_value"))
    return [em.emit1("Pad", inputs, mode=mode)]


def lower_shape(node: Node, em: Emitter) -> list:
    return [em.emit1("Shape", [em.name_of(node.inputs[0])])]


def lower_range(node: Node, em: Emitter) -> list:
    a = node.attrs
    dtype = NUMPY_DTYPES[a.get("dtype", "i64")]
    bounds = [
        em.const(np.asarray(a.get(k, d)).astype(dtype), k)
        for k, d in (("start", 0), ("limit", None), ("delta", 1))
    ]
    return [em.emit1("Range", bounds)]


def check_range(node: Node, opset: int) -> str | None:
    if node.attrs.get("dtype", "i64") not in ("i16", "i32", "i64", "f32", "f64"):
        return f"ONNX Range has no {node.attrs['dtype']} form"
    return None
