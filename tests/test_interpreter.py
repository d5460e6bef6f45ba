"""The reference interpreter against torch, op by op, and its input checking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compiler.errors import InputError
from compiler.interpreter import IMPLS, interpret
from compiler.ir import OPS, Graph, TensorType, verify

rng = np.random.default_rng(0)


def run_op(
    op: str, arrays: list[np.ndarray], attrs: dict[str, Any], consts: int = 0
) -> list[np.ndarray]:
    """Build a one-node graph: the first ``len - consts`` arrays are inputs, the rest consts."""
    g = Graph("one")
    n_in = len(arrays) - consts
    values = [
        g.add_input(f"x{i}", TensorType(_dt(a), a.shape)) for i, a in enumerate(arrays[:n_in])
    ]
    values += [g.add_const(f"c{i}", a) for i, a in enumerate(arrays[n_in:])]
    node = g.add_node(op, values, attrs)
    g.outputs = list(node.outputs)
    verify(g)
    return interpret(g, *arrays[:n_in])


def _dt(a: np.ndarray) -> str:
    return {np.float32: "f32", np.int64: "i64", np.bool_: "bool", np.int8: "i8"}[a.dtype.type]


def r(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


T = torch.tensor
CASES: list[tuple[str, list[np.ndarray], dict[str, Any], Callable[..., Any], int]] = [
    ("math.add", [r(2, 3), r(3)], {}, torch.add, 0),
    ("math.div", [r(2, 3), r(2, 3) + 4], {}, torch.div, 0),
    ("math.pow", [np.abs(r(4)), np.full((), 3.0, np.float32)], {}, torch.pow, 0),
    ("math.erf", [r(5)], {}, torch.erf, 0),
    ("math.rsqrt", [np.abs(r(5)) + 0.1], {}, torch.rsqrt, 0),
    ("nn.gelu", [r(7)], {}, F.gelu, 0),
    ("nn.gelu", [r(7)], {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh"), 0),
    ("nn.silu", [r(7)], {}, F.silu, 0),
    ("nn.hardswish", [r(7) * 4], {}, F.hardswish, 0),
    ("nn.hardsigmoid", [r(7) * 4], {}, F.hardsigmoid, 0),
    ("nn.leaky_relu", [r(7)], {"alpha": 0.2}, lambda x: F.leaky_relu(x, 0.2), 0),
    ("nn.sigmoid", [r(7) * 50], {}, torch.sigmoid, 0),
    ("nn.relu6", [r(7) * 8], {}, F.relu6, 0),
    ("nn.softmax", [r(2, 5)], {"axis": 0}, lambda x: F.softmax(x, 0), 0),
    ("nn.log_softmax", [r(2, 5)], {"axis": -1}, lambda x: F.log_softmax(x, -1), 0),
    (
        "nn.layer_norm",
        [r(2, 3, 8), r(8), r(8)],
        {"eps": 1e-5},
        lambda x, g, b: F.layer_norm(x, (8,), g, b),
        2,
    ),
    (
        "nn.batch_norm",
        [r(2, 3, 4, 4), r(3), r(3), r(3), np.abs(r(3)) + 0.5],
        {},
        lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False),
        4,
    ),
    (
        "nn.lrn",
        [r(1, 6, 4, 4)],
        {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 2.0},
        lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 2.0),
        0,
    ),
    (
        "nn.conv1d",
        [r(2, 4, 10), r(6, 2, 3), r(6)],
        {"groups": 2, "pads": [1, 2], "dilations": [2]},
        lambda x, w, b: F.conv1d(F.pad(x, (1, 2)), w, b, groups=2, dilation=2),
        2,
    ),
    (
        "nn.conv2d",
        [r(1, 4, 7, 7), r(4, 1, 3, 3)],
        {"groups": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]},
        lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=4),
        1,
    ),
    (
        "nn.conv_transpose2d",
        [r(1, 4, 5, 5), r(4, 3, 3, 3), r(3)],
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        2,
    ),
    (
        "nn.dense",
        [r(2, 3, 8), r(5, 8), r(5)],
        {"act": "gelu"},
        lambda x, w, b: F.gelu(F.linear(x, w, b)),
        2,
    ),
    ("nn.matmul", [r(2, 1, 3, 4), r(5, 4, 6)], {}, torch.matmul, 0),
    (
        "nn.max_pool2d",
        [r(1, 2, 7, 7)],
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True},
        lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
        0,
    ),
    (
        "nn.avg_pool2d",
        [r(1, 2, 7, 7)],
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": True},
        lambda x: F.avg_pool2d(x, 3, 2, 1),
        0,
    ),
    (
        "nn.adaptive_avg_pool2d",
        [r(1, 2, 7, 5)],
        {"output_size": [3, 2]},
        lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
        0,
    ),
    ("nn.global_avg_pool", [r(1, 3, 4, 5)], {}, lambda x: x.mean((2, 3), keepdim=True), 0),
    (
        "nn.resize",
        [r(1, 2, 3, 3)],
        {"scales": [1, 1, 2, 2]},
        lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
        0,
    ),
    (
        "nn.attention",
        [r(1, 2, 5, 4), r(1, 2, 5, 4), r(1, 2, 5, 4)],
        {"causal": True},
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        0,
    ),
    (
        "tensor.gather",
        [r(10, 4), np.array([[1, 9], [0, 0]], np.int64)],
        {"axis": 0},
        lambda x, i: F.embedding(i, x),
        0,
    ),
    (
        "tensor.pad",
        [r(1, 2, 3)],
        {"pads": [0, 0, 1, 0, 0, 2], "mode": "reflect"},
        lambda x: F.pad(x, (1, 2), mode="reflect"),
        0,
    ),
    (
        "tensor.slice",
        [r(4, 9)],
        {"starts": [1, -8], "ends": [100, 7], "axes": [0, 1], "steps": [1, 3]},
        lambda x: x[1:, -8:7:3],
        0,
    ),
    (
        "math.reduce_mean",
        [r(2, 3, 4)],
        {"axes": [1, 2], "keepdims": True},
        lambda x: x.mean((1, 2), keepdim=True),
        0,
    ),
    ("math.argmax", [r(3, 7)], {"axis": 1}, lambda x: x.argmax(1), 0),
    ("tensor.cast", [r(6) * 10], {"to": "i64"}, lambda x: x.to(torch.int64), 0),
    (
        "math.div",
        [np.array([7, -7, 7, -7], np.int64), np.array([2, 2, -2, -2], np.int64)],
        {},
        lambda a, b: torch.div(a, b, rounding_mode="trunc"),
        0,
    ),
]


@pytest.mark.parametrize(
    "op, arrays, attrs, ref, consts", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_op_matches_torch(
    op: str, arrays: list[np.ndarray], attrs: dict[str, Any], ref: Callable[..., Any], consts: int
) -> None:
    got = run_op(op, arrays, attrs, consts)[0]
    want = ref(*(T(a) for a in arrays)).numpy()
    assert got.shape == want.shape
    if np.issubdtype(want.dtype, np.integer):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_every_op_has_an_implementation_and_a_doc_or_family() -> None:
    assert set(OPS) == set(IMPLS), set(OPS) ^ set(IMPLS)


def test_integer_conv_is_exact_and_wraps() -> None:
    x = rng.integers(-128, 128, (1, 3, 6, 6)).astype(np.int8)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    got = run_op("nn.conv2d", [x, w], {"pads": [1, 1, 1, 1], "acc": "i32"}, 1)[0]
    want = F.conv2d(T(x.astype(np.int64)).double(), T(w.astype(np.int64)).double(), padding=1)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want.numpy().astype(np.int64))
    wrapped = run_op("nn.conv2d", [x, w], {"pads": [1, 1, 1, 1], "acc": "i16"}, 1)[0]
    np.testing.assert_array_equal(wrapped, want.numpy().astype(np.int64).astype(np.int16))


def test_split_has_several_outputs() -> None:
    a, b = run_op("tensor.split", [r(2, 7)], {"axis": 1, "sizes": [3, 4]})
    assert a.shape == (2, 3) and b.shape == (2, 4)


def test_input_checking() -> None:
    g = Graph("in")
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    y = g.add_input("y", TensorType("f32", ("batch", 4)))
    g.outputs = [g.add_node("math.add", [x, y]).output]
    assert interpret(g, r(3, 4), r(3, 4))[0].shape == (3, 4)
    with pytest.raises(InputError, match="takes 2 input"):
        interpret(g, r(3, 4))
    with pytest.raises(InputError, match="batch is 5"):
        interpret(g, r(3, 4), r(5, 4))
    with pytest.raises(InputError, match="expects f32\\[batch,4\\]"):
        interpret(g, r(3, 5), r(3, 5))
    with pytest.raises(InputError, match="dtype"):
        interpret(g, np.ones((3, 4), bool), r(3, 4))


def test_cast_saturates_large_floats() -> None:
    x = np.array([3e9, -3e9, 2.9, -2.9, np.nan], np.float32)
    got = run_op("tensor.cast", [x], {"to": "i32"})[0]
    np.testing.assert_array_equal(got, [2**31 - 1, -(2**31), 2, -2, 0])
