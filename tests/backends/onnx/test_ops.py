"""Every IR op exports to ONNX, passes onnx.checker and matches the interpreter in onnxruntime.

One small graph per op (several for ops with modes); a test checks that the table below and
the exporter's rule table cover the whole op table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from backends.onnx import export_onnx, ort_session, run_onnx
from backends.onnx.rules import NOT_EXPORTED, RULES
from compiler.interpreter import interpret
from compiler.ir import OPS, Graph, QuantParams, TensorType, verify


def T(*shape: int | str, dtype: str = "f32", quant: QuantParams | None = None) -> TensorType:
    return TensorType(dtype, tuple(shape), quant)


def Q(scale: float, zp: int = 0) -> QuantParams:
    return QuantParams.per_tensor(scale, zp)


@dataclass
class OpCase:
    """``op`` applied to ``operands`` (TensorType: a graph input; ndarray: a constant)."""

    op: str
    operands: list[Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    out_types: list[TensorType] | None = None
    data: Callable[[TensorType, np.random.Generator], np.ndarray] | None = None
    shapes: dict[str, int] = field(default_factory=dict)  # values for symbolic dimensions
    id: str = ""

    def graph(self) -> Graph:
        g = Graph(self.op.replace(".", "_"))
        values = [
            g.add_input(f"in{i}", o) if isinstance(o, TensorType) else g.add_const(f"c{i}", o)
            for i, o in enumerate(self.operands)
        ]
        node = g.add_node(self.op, values, dict(self.attrs), out_types=self.out_types)
        g.outputs = list(node.outputs)
        verify(g)
        return g

    def inputs(self, g: Graph, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return tuple(self._sample(v.type, rng) for v in g.inputs)

    def _sample(self, t: TensorType, rng: np.random.Generator) -> np.ndarray:
        shape = tuple(self.shapes.get(d, 3) if isinstance(d, str) else int(d) for d in t.shape)
        t = TensorType(t.dtype, shape, t.quant)
        if self.data is not None:
            return self.data(t, rng)
        if t.dtype == "bool":
            return rng.random(shape) > 0.5
        if t.dtype.startswith(("i", "u")):
            lo, hi = {"i8": (-128, 128), "u8": (0, 256), "i32": (-3000, 3000)}.get(t.dtype, (0, 5))
            return rng.integers(lo, hi, shape).astype(t.np_dtype)
        return rng.standard_normal(shape).astype(t.np_dtype)


def _dims(t: TensorType) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def positive(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(_dims(t)) + 0.1).astype(t.np_dtype)


def nonzero(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal(_dims(t))
    return (np.sign(x) * (np.abs(x) + 0.5)).astype(t.np_dtype)


def wide(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(_dims(t)) * 1e9).astype(t.np_dtype)


def indices(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-6, 6, _dims(t)).astype(t.np_dtype)


def randn(*shape: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


def ints(values: list[Any], dtype: Any = np.int64) -> np.ndarray:
    return np.asarray(values, dtype=dtype)


X4 = T(2, 4, 6, 6)
ACC = T(1, 4, 3, 3, dtype="i32")
Q8 = T(1, 4, 6, 6, dtype="i8", quant=Q(0.05))
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
COMPARE = ["equal", "less", "greater", "less_equal", "greater_equal"]
UNARY = ["neg", "abs", "exp", "erf", "tanh", "sin", "cos"]

CASES: list[OpCase] = [
    *[OpCase(f"math.{op}", [T(2, 3, 4), T(3, 4)], data=nonzero) for op in BINARY],
    OpCase("math.div", [T(5, dtype="i32"), ints([3, -2, 7, -5, 4], np.int32)], id="int"),
    OpCase("math.pow", [T(3, 4), T(3, 4)], data=positive),
    OpCase("math.mod", [T(3, 4), T(3, 4)], data=nonzero),
    *[OpCase(f"math.{op}", [T(3, 4), T(3, 4)]) for op in COMPARE],
    *[
        OpCase(f"math.{op}", [T(3, 4, dtype="bool"), T(3, 4, dtype="bool")])
        for op in ("and", "or", "xor")
    ],
    OpCase("math.not", [T(3, 4, dtype="bool")]),
    *[OpCase(f"math.{op}", [T(3, 4)]) for op in UNARY],
    *[OpCase(f"math.{op}", [T(3, 4)], data=positive) for op in ("log", "sqrt", "rsqrt")],
    OpCase("math.reciprocal", [T(3, 4)], data=nonzero),
    *[
        OpCase(f"math.reduce_{op}", [T(2, 3, 4)], {"axes": [1], "keepdims": k}, id=str(k))
        for op in ("mean", "sum", "max", "min", "prod")
        for k in (False, True)
    ],
    OpCase("math.reduce_sum", [T(2, 3, 4)], id="all"),
    OpCase("math.argmax", [T(2, 3, 4)], {"axis": 1}),
    OpCase("math.isnan", [np.array([[0.0, np.nan, -np.inf], [np.nan, 1.0, np.inf]], np.float32)]),
    OpCase("math.cumsum", [T(2, 3, 4), ints(1)], {}),
    OpCase("math.cumsum", [ints([[1, 0, 1], [0, 1, 1]]), ints(-1)], {"reverse": True}, id="i64"),
    OpCase("math.cumsum", [T(5, 3), ints(0)], {"exclusive": True}, id="exclusive"),
    *[OpCase(f"nn.{op}", [X4]) for op in ("relu", "relu6", "sigmoid", "hardswish", "silu")],
    OpCase("nn.leaky_relu", [X4], {"alpha": 0.2}),
    OpCase("nn.hardsigmoid", [X4], {"alpha": 0.25, "beta": 0.4}),
    OpCase("nn.gelu", [X4]),
    OpCase("nn.gelu", [X4], {"approximate": "tanh"}, id="tanh"),
    OpCase("nn.clip", [X4], {"min": -0.5, "max": 0.7}),
    OpCase("nn.clip", [X4], {"max": 0.7}, id="max_only"),
    OpCase("nn.dropout", [X4], {"p": 0.5}),
    OpCase("tensor.identity", [X4]),
    OpCase("nn.softmax", [X4], {"axis": 1}),
    OpCase("nn.log_softmax", [X4], {"axis": -1}),
    OpCase("nn.layer_norm", [T(2, 5, 8), randn(8), randn(8)], {"eps": 1e-5}),
    OpCase("nn.layer_norm", [T(2, 5, 8)], {"axis": -2}, id="no_gamma"),
    OpCase("nn.batch_norm", [X4, randn(4), randn(4), randn(4), np.abs(randn(4)) + 0.5]),
    OpCase("nn.lrn", [X4], {"size": 3, "alpha": 0.01, "beta": 0.7, "bias": 1.5}),
    OpCase("nn.conv1d", [T(2, 4, 10), randn(6, 4, 3), randn(6)], {"pads": [1, 2]}),
    OpCase(
        "nn.conv2d",
        [X4, randn(6, 2, 3, 3)],
        {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "groups": 2},
    ),
    OpCase(
        "nn.conv2d",
        [X4, randn(4, 4, 3, 3), randn(4), T(2, 4, 6, 6)],
        {"pads": [1, 1, 1, 1], "act": "silu"},
        id="residual_silu",
    ),
    OpCase(
        "nn.conv2d",
        [T("n", 4, 6, 6), randn(4, 1, 3, 3), randn(4)],
        {"pads": [1, 1, 1, 1], "groups": 4, "act": "relu6"},
        shapes={"n": 3},
        id="dynamic",
    ),
    OpCase(
        "nn.conv_transpose2d",
        [X4, randn(4, 3, 3, 3), randn(3)],
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ),
    OpCase("nn.dense", [T(3, 8), randn(5, 8), randn(5)], {"act": "relu"}),
    OpCase(
        "nn.dense",
        [T("b", 4, 8), randn(5, 8), randn(5), T("b", 4, 5)],
        {"act": "clip", "act_args": [-0.5, 0.5]},
        shapes={"b": 2},
        id="rank3",
    ),
    OpCase("nn.dense", [T(8), randn(5, 8)], id="rank1"),
    OpCase(
        "q.block_dense",
        [
            T(2, 3, 64),
            np.arange(-64, 64, dtype=np.int8).reshape(2, 64),
            np.full((2, 2), 0.01, np.float16),
        ],
        {"group": 32},
    ),
    OpCase(
        "q.block_dense",
        [
            T(3, 32),
            np.arange(160, dtype=np.uint8).reshape(5, 32) % 16,
            randn(5, 1) ** 2,
            randn(5, 1),
        ],
        {"group": 32},
        id="with_min",
    ),
    OpCase("nn.matmul", [T(2, 3, 4), T(4, 5)]),
    OpCase("nn.matmul", [T(2, 1, 3, 4), T(3, 4, 5)], id="broadcast"),
    OpCase(
        "nn.max_pool2d",
        [T(1, 2, 7, 7)],
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True},
    ),
    OpCase("nn.max_pool2d", [X4], {"kernel": [2, 2], "dilations": [2, 2]}, id="dilated"),
    OpCase(
        "nn.avg_pool2d",
        [T(1, 2, 7, 7)],
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": False},
    ),
    OpCase("nn.avg_pool2d", [X4], {"kernel": [2, 2]}, id="plain"),
    OpCase("nn.global_avg_pool", [X4]),
    OpCase("nn.global_max_pool", [X4]),
    OpCase("nn.adaptive_avg_pool2d", [X4], {"output_size": [1, 1]}, id="global"),
    OpCase("nn.adaptive_avg_pool2d", [X4], {"output_size": [3, 2]}, id="even"),
    OpCase("nn.adaptive_avg_pool2d", [T(1, 2, 7, 5)], {"output_size": [3, 3]}, id="uneven"),
    OpCase("nn.resize", [X4], {"scales": [1, 1, 2, 2]}),
    OpCase("nn.resize", [T(1, 2, 4, 3)], {"scales": [1, 1, 1.5, 2]}, id="fractional"),
    OpCase("nn.attention", [T(2, 2, 5, 4), T(2, 2, 5, 4), T(2, 2, 5, 3)], {"causal": True}),
    OpCase(
        "nn.attention",
        [T(2, 5, 4), T(2, 7, 4), T(2, 7, 3), T(5, 7, dtype="bool")],
        {"scale": 0.3},
        data=None,
        id="bool_mask",
    ),
    OpCase("nn.attention", [T(2, 5, 4), T(2, 7, 4), T(2, 7, 3), T(5, 7)], id="float_mask"),
    OpCase(
        "nn.attention",
        [T(1, "s", 4), T(1, "s", 4), T(1, "s", 4)],
        {"causal": True},
        shapes={"s": 6},
        id="dynamic_causal",
    ),
    OpCase("tensor.where", [T(3, 4, dtype="bool"), T(3, 4), T(4)]),
    OpCase("tensor.cast", [T(3, 4)], {"to": "i32"}, data=wide, id="wide"),
    OpCase("tensor.cast", [T(3, 4)], {"to": "f16"}, id="f16"),
    OpCase("tensor.cast", [T(3, 4, dtype="i64")], {"to": "f32"}, id="int"),
    OpCase("tensor.reshape", [T(2, 3, 4)], {"shape": [4, -1]}),
    OpCase("tensor.reshape", [T("b", 3, 4)], {"shape": ["b", 12]}, shapes={"b": 2}, id="sym"),
    OpCase("tensor.flatten", [T(2, 3, 4)], {"axis": 2}),
    OpCase("tensor.transpose", [T(2, 3, 4)], {"perm": [2, 0, 1]}),
    OpCase("tensor.concat", [T(2, 3), T(2, 5), randn(2, 1)], {"axis": 1}),
    OpCase("tensor.split", [T(2, 7)], {"axis": 1, "sizes": [3, 4]}),
    OpCase(
        "tensor.slice",
        [T(4, 6)],
        {"starts": [1, -1], "ends": [2**63 - 1, -(2**63)], "axes": [0, 1], "steps": [2, -2]},
    ),
    OpCase("tensor.squeeze", [T(2, 1, 4)], {"axes": [1]}),
    OpCase("tensor.unsqueeze", [T(2, 4)], {"axes": [0, 3]}),
    OpCase("tensor.expand", [T(3, 1)], {"shape": [2, 3, 4]}),
    OpCase("tensor.gather", [randn(6, 4), ints([[0, -1], [5, 2]])], {"axis": 0}),
    OpCase("tensor.gather_elements", [randn(3, 5), ints([[0, 4], [2, 2]])], {"axis": 1}),
    OpCase("tensor.gather_elements", [randn(3, 4), ints([[2, 0, 1, 2]] * 3)], id="same"),
    OpCase("tensor.gather", [randn(3, 6), T(4, dtype="i32")], {"axis": 1}, data=indices, id="i32"),
    OpCase("tensor.pad", [T(2, 3)], {"pads": [1, 0, 0, 2], "value": 1.5}),
    OpCase(
        "tensor.pad", [T(1, 4, 5)], {"pads": [0, 1, 2, 0, 2, 1], "mode": "reflect"}, id="reflect"
    ),
    OpCase("tensor.pad", [T(1, 4, 5)], {"pads": [0, 1, 2, 0, 2, 1], "mode": "edge"}, id="edge"),
    OpCase("tensor.shape", [T("n", 3)], shapes={"n": 4}),
    OpCase("tensor.range", [], {"start": 2, "limit": 11, "delta": 3}),
    OpCase(
        "tensor.range", [], {"start": 0.5, "limit": 2.0, "delta": 0.5, "dtype": "f32"}, id="f32"
    ),
    # quantization
    OpCase(
        "q.quantize", [X4], {"dtype": "i8"}, out_types=[T(2, 4, 6, 6, dtype="i8", quant=Q(0.02))]
    ),
    OpCase(
        "q.quantize",
        [X4],
        {"dtype": "u8"},
        out_types=[T(2, 4, 6, 6, dtype="u8", quant=Q(0.01, 128))],
        id="u8_zp",
    ),
    OpCase(
        "q.quantize",
        [X4],
        {"dtype": "i8"},
        out_types=[
            T(2, 4, 6, 6, dtype="i8", quant=(QuantParams.per_channel([0.01, 0.02, 0.03, 0.04], 1)))
        ],
        id="per_channel",
    ),
    OpCase(
        "q.dequantize",
        [
            T(
                2,
                4,
                dtype="i8",
                quant=QuantParams.per_channel([0.1, 0.2, 0.3, 0.4], 1, [0, 1, -2, 3]),
            )
        ],
    ),
    OpCase(
        "q.requantize",
        [ACC],
        {"dtype": "i8", "multiplier": [1], "shift": [7], "clip_min": -3, "clip_max": 100},
        out_types=[T(1, 4, 3, 3, dtype="i8", quant=Q(0.1, 2))],
    ),
    OpCase(
        "q.requantize",
        [ACC],
        {
            "dtype": "i8",
            "multiplier": [1 << 30, 1273741824, 1 << 29, 1],
            "shift": [37, 38, 36, 4],
            "axis": 1,
        },
        out_types=[T(1, 4, 3, 3, dtype="i8", quant=Q(0.1))],
        id="per_channel",
    ),
    OpCase(
        "q.add",
        [Q8, T(1, 4, 6, 6, dtype="i8", quant=Q(0.03, -4))],
        {
            "dtype": "i8",
            "a_multiplier": 1 << 19,
            "b_multiplier": 322122547,
            "shift": 30,
            "act": "relu",
        },
        out_types=[T(1, 4, 6, 6, dtype="i8", quant=Q(0.1, 3))],
    ),
    OpCase(
        "q.add",
        [Q8, Q8],
        {"dtype": "i8", "a_multiplier": 1, "b_multiplier": 1, "shift": 1},
        out_types=[T(1, 4, 6, 6, dtype="i8", quant=Q(0.1))],
        id="tie",
    ),
    OpCase(
        "q.avg_pool2d",
        [Q8],
        {"kernel": [2, 2], "dtype": "i8", "multiplier": 1, "shift": 2},
        out_types=[T(1, 4, 3, 3, dtype="i8", quant=Q(0.05))],
    ),
    OpCase(
        "q.avg_pool2d",
        [Q8],
        {
            "kernel": [3, 3],
            "pads": [1, 1, 1, 1],
            "strides": [2, 2],
            "dtype": "i8",
            "multiplier": 1908874354,
            "shift": 34,
        },
        out_types=[T(1, 4, 3, 3, dtype="i8", quant=Q(0.05))],
        id="padded",
    ),
    OpCase(
        "q.global_avg_pool",
        [Q8],
        {"dtype": "i8", "multiplier": 1908874354, "shift": 36},
        out_types=[T(1, 4, 1, 1, dtype="i8", quant=Q(0.02))],
    ),
]

for _op, _attrs in (
    ("tensor.reshape", {"shape": [1, 4, 36]}),
    ("nn.max_pool2d", {"kernel": [2, 2]}),
    ("tensor.transpose", {"perm": [0, 2, 3, 1]}),
    ("tensor.pad", {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 5.0}),
):
    CASES.append(OpCase(_op, [Q8], _attrs, id="quantized"))


def _id(case: OpCase) -> str:
    return case.op + (f"-{case.id}" if case.id else "")


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_op_matches_interpreter(case: OpCase, opset: int, rng: np.random.Generator) -> None:
    g = case.graph()
    inputs = case.inputs(g, rng)
    model = export_onnx(g, opset=opset)
    want = interpret(g, *inputs)
    for optimize in (False, True):
        got = run_onnx(ort_session(model, optimize=optimize), g, inputs)
        for value, w, o in zip(g.outputs, want, got, strict=True):
            assert o.shape == w.shape and o.dtype == w.dtype, value.name
            if np.issubdtype(w.dtype, np.floating):
                np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6, err_msg=value.name)
            else:
                np.testing.assert_array_equal(o, w, err_msg=value.name)


def test_every_op_has_a_rule_and_a_case() -> None:
    assert set(RULES) == set(OPS)
    covered = {c.op for c in CASES} | {"const"}
    assert set(OPS) - covered == set(NOT_EXPORTED)  # those are refused, with a reason


def test_float_to_int_cast_saturates() -> None:
    """Out-of-range floats clamp to the integer range (ONNX Cast alone leaves it undefined)."""
    g = OpCase("tensor.cast", [T(4)], {"to": "i32"}).graph()
    x = np.asarray([1e12, -1e12, 3.7, -3.7], np.float32)
    (got,) = run_onnx(ort_session(export_onnx(g)), g, (x,))
    top = int(np.nextafter(np.float32(2**31), np.float32(0)))  # float32 just below 2^31
    np.testing.assert_array_equal(got, [top, -(2**31), 3, -3])


def test_ops_without_an_export_rule_are_refused_with_a_reason() -> None:
    from backends.onnx.rules import check_node
    from compiler.ir import Graph, TensorType

    g = Graph("ceil")
    x = g.add_input("x", TensorType("f32", (2,)))
    node = g.add_node("math.ceil", [x])
    g.outputs.append(node.outputs[0])
    assert check_node(node, 17) == "math.ceil has no ONNX export rule yet"
