"""ONNX lowering rules, part 1: elementwise math, activations, reductions, normalizations.

Each ``lower_*`` function takes the emitter and the IR node and returns one ONNX tensor name
per IR output; ``backends.onnx.rules.RULES`` is the table that maps IR ops onto them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from backends.onnx.emitter import ONNX_DTYPES, Emitter
from compiler import numerics
from compiler.ir.graph import Node
from compiler.ir.types import NUMPY_DTYPES, is_float, is_int

Lower = Callable[[Node, Emitter], list]

#: IR elementwise op -> ONNX op with the same semantics on the same operands.
BINARY: dict[str, str] = {
    "math.add": "Add",
    "math.sub": "Sub",
    "math.mul": "Mul",
    "math.div": "Div",  # integer Div truncates toward zero in ONNX, as in the interpreter
    "math.pow": "Pow",
    "math.maximum": "Max",
    "math.minimum": "Min",
    "math.equal": "Equal",
    "math.less": "Less",
    "math.greater": "Greater",
    "math.less_equal": "LessOrEqual",
    "math.greater_equal": "GreaterOrEqual",
    "math.and": "And",
    "math.or": "Or",
    "math.xor": "Xor",
}
UNARY: dict[str, str] = {
    "math.not": "Not",
    "math.isnan": "IsNaN",
    "math.neg": "Neg",
    "math.abs": "Abs",
    "math.exp": "Exp",
    "math.log": "Log",
    "math.sqrt": "Sqrt",
    "math.reciprocal": "Reciprocal",
    "math.erf": "Erf",
    "math.tanh": "Tanh",
    "math.sin": "Sin",
    "math.cos": "Cos",
    "nn.relu": "Relu",
    "nn.sigmoid": "Sigmoid",
    "nn.hardswish": "HardSwish",
    "tensor.identity": "Identity",
    "nn.dropout": "Identity",  # inference: dropout is the identity
}
REDUCE: dict[str, str] = {
    "math.reduce_mean": "ReduceMean",
    "math.reduce_sum": "ReduceSum",
    "math.reduce_max": "ReduceMax",
    "math.reduce_min": "ReduceMin",
    "math.reduce_prod": "ReduceProd",
}


def binary(op_type: str) -> Lower:
    def lower(node: Node, em: Emitter) -> list:
        return [em.emit1(op_type, [em.arg(0), em.arg(1)])]

    return lower


def unary(op_type: str) -> Lower:
    def lower(node: Node, em: Emitter) -> list:
        return [em.emit1(op_type, [em.arg(0)])]

    return lower


def lower_mod(node: Node, em: Emitter) -> list:
    # np.fmod semantics (the sign follows the dividend) for floats and integers alike.
    return [em.emit1("Mod", [em.arg(0), em.arg(1)], fmod=1)]


def lower_rsqrt(node: Node, em: Emitter) -> list:
    return [em.emit1("Reciprocal", [em.emit1("Sqrt", [em.arg(0)])])]


def reduce(op_type: str) -> Lower:
    def lower(node: Node, em: Emitter) -> list:
        axes = node.attrs.get("axes")
        keepdims = int(bool(node.attrs.get("keepdims", False)))
        inputs = [em.arg(0)]
        attrs: dict = {"keepdims": keepdims}
        if axes is not None:
            # ReduceSum takes axes as an input since opset 13, the others since opset 18.
            if op_type == "ReduceSum" or em.opset >= 18:
                inputs.append(em.i64(list(axes)))
            else:
                attrs["axes"] = list(axes)
        return [em.emit1(op_type, inputs, **attrs)]

    return lower


def lower_cumsum(node: Node, em: Emitter) -> list:
    # The axis is an operand in the IR and in ONNX alike (a scalar, possibly runtime data).
    return [em.emit1("CumSum", [em.arg(0), em.arg(1)],
                     exclusive=int(bool(node.attrs.get("exclusive", False))),
                     reverse=int(bool(node.attrs.get("reverse", False))))]


def lower_argmax(node: Node, em: Emitter) -> list:
    keepdims = int(bool(node.attrs.get("keepdims", False)))
    return [em.emit1("ArgMax", [em.arg(0)], axis=node.attrs.get("axis", -1), keepdims=keepdims)]


# ---- activations ---------------------------------------------------------------------------
def clip(em: Emitter, x: str, lo: float | None, hi: float | None, dtype: str) -> str:
    bounds = ["" if v is None else em.scalar(v, dtype) for v in (lo, hi)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return em.emit1("Clip", [x, *bounds])


def gelu(em: Emitter, x: str, approximate: str, dtype: str) -> str:
    """GELU: the Gelu op from opset 20, else the Erf (or tanh) formula TensorRT recognizes."""
    if em.opset >= 20:
        return em.emit1("Gelu", [x], approximate=approximate)
    half = em.scalar(0.5, dtype)
    one = em.scalar(1.0, dtype)
    if approximate == "tanh":
        cube = em.emit1("Mul", [x, em.emit1("Mul", [x, x])])
        inner = em.emit1("Add", [x, em.emit1("Mul", [cube, em.scalar(0.044715, dtype)])])
        scaled = em.emit1("Mul", [inner, em.scalar(math.sqrt(2 / math.pi), dtype)])
        core = em.emit1("Tanh", [scaled])
    else:
        core = em.emit1("Erf", [em.emit1("Div", [x, em.scalar(math.sqrt(2), dtype)])])
    return em.emit1("Mul", [em.emit1("Mul", [x, half]), em.emit1("Add", [core, one])])


def activation(em: Emitter, x: str, act: str, args: list, dtype: str) -> str:
    """A fused activation (``FUSED_ACTIVATIONS``) as its own ONNX node(s)."""
    if act == "none":
        return x
    table: dict[str, Callable[[], str]] = {
        "relu": lambda: em.emit1("Relu", [x]),
        "relu6": lambda: clip(em, x, 0.0, 6.0, dtype),
        "clip": lambda: clip(em, x, *_bounds(args), dtype),
        "leaky_relu": lambda: em.emit1("LeakyRelu", [x], alpha=float(args[0]) if args else 0.01),
        "sigmoid": lambda: em.emit1("Sigmoid", [x]),
        "silu": lambda: em.emit1("Mul", [x, em.emit1("Sigmoid", [x])]),
        "gelu": lambda: gelu(em, x, "none", dtype),
        "gelu_tanh": lambda: gelu(em, x, "tanh", dtype),
        "hardswish": lambda: em.emit1("HardSwish", [x]),
        "tanh": lambda: em.emit1("Tanh", [x]),
    }
    if act not in table:
        raise em.fail(f"no ONNX form for fused activation {act!r}")
    return table[act]()


def _bounds(args: list) -> tuple[float | None, float | None]:
    lo, hi = (list(args) + [None, None])[:2]
    return lo, hi


def _dtype(node: Node) -> str:
    return node.inputs[0].dtype


def lower_relu6(node: Node, em: Emitter) -> list:
    return [clip(em, em.arg(0), 0.0, 6.0, _dtype(node))]


def lower_clip(node: Node, em: Emitter) -> list:
    return [clip(em, em.arg(0), node.attrs.get("min"), node.attrs.get("max"), _dtype(node))]


def lower_leaky_relu(node: Node, em: Emitter) -> list:
    return [em.emit1("LeakyRelu", [em.arg(0)], alpha=float(node.attrs.get("alpha", 0.01)))]


def lower_hardsigmoid(node: Node, em: Emitter) -> list:
    a = node.attrs
    return [
        em.emit1(
            "HardSigmoid",
            [em.arg(0)],
            alpha=float(a.get("alpha", 1 / 6)),
            beta=float(a.get("beta", 0.5)),
        )
    ]


def lower_silu(node: Node, em: Emitter) -> list:
    x = em.arg(0)
    return [em.emit1("Mul", [x, em.emit1("Sigmoid", [x])])]


def lower_gelu(node: Node, em: Emitter) -> list:
    return [gelu(em, em.arg(0), node.attrs.get("approximate", "none"), _dtype(node))]


def lower_where(node: Node, em: Emitter) -> list:
    return [em.emit1("Where", [em.arg(0), em.arg(1), em.arg(2)])]


def _cast_bound(bound: int, toward_zero: bool = True) -> np.float32:
    """The float32 nearest ``bound`` that does not exceed it in magnitude."""
    f = np.float32(bound)
    if abs(float(f)) > abs(bound):
        f = np.nextafter(f, np.float32(0))
    return f


def lower_cast(node: Node, em: Emitter) -> list:
    to = node.attrs["to"]
    x = em.arg(0)
    if is_int(to) and is_float(node.inputs[0].dtype):
        # The interpreter saturates float -> int (ONNX leaves out-of-range casts undefined).
        lo, hi = numerics.int_range(to)
        dt = NUMPY_DTYPES[node.inputs[0].dtype].type
        x = em.emit1(
            "Clip",
            [x, em.const(dt(_cast_bound(lo)), "lo"), em.const(dt(_cast_bound(hi)), "hi")],
        )
    return [em.emit1("Cast", [x], to=ONNX_DTYPES[to])]


# ---- softmax and normalizations ------------------------------------------------------------
def lower_softmax(node: Node, em: Emitter) -> list:
    op_type = "Softmax" if node.op == "nn.softmax" else "LogSoftmax"
    return [em.emit1(op_type, [em.arg(0)], axis=node.attrs.get("axis", -1))]


def lower_layer_norm(node: Node, em: Emitter) -> list:
    x = node.inputs[0]
    axis = node.attrs.get("axis", -1) % x.type.rank
    if em.has_arg(1):
        gamma = em.arg(1)
    else:  # ONNX's Scale input is required: ones
        norm_shape = [int(d) for d in x.type.shape[axis:]]
        gamma = em.const(np.ones(norm_shape, NUMPY_DTYPES[x.dtype]), "gamma")
    inputs = [em.arg(0), gamma] + ([em.arg(2)] if em.has_arg(2) else [])
    eps = float(node.attrs.get("eps", 1e-5))
    return [em.emit1("LayerNormalization", inputs, axis=axis, epsilon=eps)]


def check_layer_norm(node: Node, opset: int) -> str | None:
    x = node.inputs[0].type
    axis = node.attrs.get("axis", -1) % x.rank
    if len(node.inputs) < 2 and not all(isinstance(d, int) for d in x.shape[axis:]):
        return "layer_norm without gamma needs a static normalized shape"
    return None


def lower_batch_norm(node: Node, em: Emitter) -> list:
    inputs = [em.arg(i) for i in range(5)]
    eps = float(node.attrs.get("eps", 1e-5))
    return [em.emit1("BatchNormalization", inputs, epsilon=eps)]


def lower_lrn(node: Node, em: Emitter) -> list:
    a = node.attrs
    return [
        em.emit1(
            "LRN",
            [em.arg(0)],
            size=int(a["size"]),
            alpha=float(a.get("alpha", 1e-4)),
            beta=float(a.get("beta", 0.75)),
            bias=float(a.get("bias", 1.0)),
        )
    ]
