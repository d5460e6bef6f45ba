"""The TVM lowering table: op coverage against the interpreter, and the error paths.

A handful of small graphs, each exercising many rules at once (one TVM build per graph keeps
this fast), compared with the interpreter: fp32 within 1e-5, integer results exactly.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.errors import ToolchainUnavailable
from compiler.interpreter import IMPLS, interpret
from compiler.ir import Graph, TensorType
from compiler.ir.ops import OPS
from compiler.target import load_target
from tests.backends.tvm.helpers import mismatches, relative_errors

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(0)


def _run(graph: Graph, *inputs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from backends.tvm import TvmBackend

    backend = TvmBackend()
    target = load_target("cpu")
    assert backend.unsupported(graph, target) == []
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    return art.run(*inputs), interpret(graph, *inputs)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _check_float(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, i
        if a.dtype.kind == "f":
            assert relative_errors([a], [b])[0] <= 1e-5, i
        else:
            assert mismatches([a], [b]) == [0], i


def test_every_rule_names_a_known_op() -> None:
    from backends.tvm.lower import merged_rules

    rules = merged_rules()
    assert set(rules) <= set(OPS)
    assert set(rules) <= set(IMPLS)


def test_elementwise_and_reductions() -> None:
    g = Graph("elementwise")
    x = g.add_input("x", TensorType("f32", (2, 3, 4, 5)))
    y = g.add_input("y", TensorType("f32", (3, 1, 5)))
    pos = g.add_node(
        "math.add",
        [g.add_node("math.abs", [x]).output, g.add_const("one", np.asarray(1.0, np.float32))],
    ).output
    outs = []
    unary = [
        "math.neg",
        "math.exp",
        "math.tanh",
        "math.sin",
        "math.cos",
        "math.erf",
        "nn.relu",
        "nn.relu6",
        "nn.sigmoid",
        "nn.silu",
        "nn.hardswish",
    ]
    outs += [g.add_node(op, [x]).output for op in unary]
    outs += [
        g.add_node(op, [pos]).output
        for op in ("math.log", "math.sqrt", "math.rsqrt", "math.reciprocal")
    ]
    outs.append(g.add_node("nn.gelu", [x], {"approximate": "tanh"}).output)
    outs.append(g.add_node("nn.gelu", [x]).output)
    outs.append(g.add_node("nn.leaky_relu", [x], {"alpha": 0.2}).output)
    outs.append(g.add_node("nn.hardsigmoid", [x], {"alpha": 0.2, "beta": 0.5}).output)
    outs.append(g.add_node("nn.clip", [x], {"min": -0.5, "max": 0.25}).output)
    for op in (
        "math.add",
        "math.sub",
        "math.mul",
        "math.div",
        "math.maximum",
        "math.minimum",
        "math.mod",
    ):
        outs.append(g.add_node(op, [x, y]).output)
    outs.append(g.add_node("math.pow", [pos, y]).output)
    cond = g.add_node("math.greater", [x, y]).output
    outs.append(g.add_node("tensor.where", [cond, x, y]).output)
    outs.append(g.add_node("tensor.cast", [cond], {"to": "f32"}).output)
    outs.append(
        g.add_node(
            "tensor.cast",
            [g.add_node("math.mul", [x, g.add_const("big", np.asarray(100.0, np.float32))]).output],
            {"to": "i8"},
        ).output
    )
    for op in ("math.reduce_mean", "math.reduce_sum", "math.reduce_max", "math.reduce_min"):
        outs.append(g.add_node(op, [x], {"axes": [1, 3], "keepdims": op.endswith("max")}).output)
    outs.append(g.add_node("math.reduce_prod", [pos], {"axes": [2]}).output)
    outs.append(g.add_node("math.argmax", [x], {"axis": 2}).output)
    outs.append(g.add_node("nn.softmax", [x], {"axis": 1}).output)
    outs.append(g.add_node("nn.log_softmax", [x], {"axis": -1}).output)
    g.outputs = outs
    got, want = _run(g, _f32(2, 3, 4, 5), _f32(3, 1, 5))
    _check_float(got, want)


def test_integer_math_is_exact() -> None:
    g = Graph("integers")
    a = g.add_input("a", TensorType("i32", (4, 8)))
    b = g.add_input("b", TensorType("i32", (4, 8)))
    g.outputs = [g.add_node(op, [a, b]).output for op in ("math.div", "math.mod", "math.add")]
    av = RNG.integers(-100, 100, (4, 8)).astype(np.int32)
    bv = RNG.integers(-9, 9, (4, 8)).astype(np.int32)
    got, want = _run(g, av, bv)
    assert mismatches(got, want) == [0, 0, 0]


def test_data_movement() -> None:
    g = Graph("movement")
    x = g.add_input("x", TensorType("f32", (2, 6, 4, 4)))
    idx = g.add_input("idx", TensorType("i64", (3,)))
    outs = [
        g.add_node(
            "tensor.slice",
            [x],
            {"starts": [-1, 5], "ends": [-9, 0], "axes": [2, 1], "steps": [-2, -2]},
        ).output,
        g.add_node("tensor.pad", [x], {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "reflect"}).output,
        g.add_node("tensor.pad", [x], {"pads": [0, 1, 0, 1, 0, 0, 1, 0], "mode": "edge"}).output,
        g.add_node("tensor.pad", [x], {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 0.5}).output,
        g.add_node("tensor.gather", [x, idx], {"axis": 1}).output,
        g.add_node("tensor.transpose", [x], {"perm": [3, 1, 0, 2]}).output,
        g.add_node(
            "tensor.expand",
            [g.add_node("math.reduce_sum", [x], {"axes": [0], "keepdims": True}).output],
            {"shape": [3, 6, 4, 4]},
        ).output,
        g.add_node("nn.resize", [x], {"scales": [1, 1, 2, 1.5]}).output,
        g.add_node(
            "tensor.unsqueeze",
            [g.add_node("tensor.flatten", [x], {"axis": 2}).output],
            {"axes": [0]},
        ).output,
    ]
    parts = g.add_node("tensor.split", [x], {"axis": 1, "sizes": [1, 2, 3]}).outputs
    outs.append(g.add_node("tensor.concat", [parts[2], parts[0]], {"axis": 1}).output)
    g.outputs = outs
    got, want = _run(g, _f32(2, 6, 4, 4), np.array([5, -1, 0], dtype=np.int64))
    _check_float(got, want)


def _nn_graph() -> tuple[Graph, list[np.ndarray]]:
    g = Graph("nn")
    x = g.add_input("x", TensorType("f32", (1, 8, 9, 9)))
    s = g.add_input("s", TensorType("f32", (1, 4, 12)))
    q = g.add_input("q", TensorType("f32", (2, 5, 8)))
    c = g.add_node(
        "nn.conv2d",
        [x, g.add_const("w1", _f32(16, 8, 3, 3)), g.add_const("b1", _f32(16))],
        {"pads": [1, 0, 2, 1], "strides": [2, 1], "act": "gelu"},
    ).output
    gc = g.add_node(
        "nn.conv2d",
        [x, g.add_const("wg", _f32(8, 2, 3, 3))],
        {
            "pads": [2, 2, 2, 2],
            "dilations": [2, 2],
            "groups": 4,
            "act": "leaky_relu",
            "act_args": [0.1],
        },
    ).output
    outs = [c, gc]
    outs.append(
        g.add_node(
            "nn.conv2d",
            [gc, g.add_const("w3", _f32(8, 8, 1, 1)), g.add_const("b3", _f32(8)), gc],
            {"act": "relu"},
        ).output
    )
    outs.append(
        g.add_node("nn.conv1d", [s, g.add_const("w4", _f32(6, 4, 3))], {"pads": [1, 1]}).output
    )
    outs.append(
        g.add_node(
            "nn.conv_transpose2d",
            [x, g.add_const("wt", _f32(8, 3, 2, 2)), g.add_const("bt", _f32(3))],
            {"strides": [2, 2], "output_padding": [1, 0]},
        ).output
    )
    outs.append(
        g.add_node(
            "nn.max_pool2d",
            [c],
            {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True},
        ).output
    )
    outs.append(
        g.add_node(
            "nn.avg_pool2d",
            [x],
            {"kernel": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": False},
        ).output
    )
    outs.append(g.add_node("nn.global_avg_pool", [c]).output)
    outs.append(g.add_node("nn.global_max_pool", [c]).output)
    outs.append(g.add_node("nn.adaptive_avg_pool2d", [x], {"output_size": [4, 3]}).output)
    outs.append(
        g.add_node(
            "nn.batch_norm", [c, *(g.add_const(f"bn{i}", np.abs(_f32(16)) + 0.5) for i in range(4))]
        ).output
    )
    outs.append(g.add_node("nn.lrn", [x], {"size": 3}).output)
    outs.append(
        g.add_node(
            "nn.layer_norm", [q, g.add_const("gm", _f32(8)), g.add_const("bt2", _f32(8))]
        ).output
    )
    outs.append(
        g.add_node(
            "nn.dense",
            [
                q,
                g.add_const("wd", _f32(20, 8)),
                g.add_const("bd", _f32(20)),
                g.add_node("math.abs", [g.add_input("r", TensorType("f32", (2, 5, 20)))]).output,
            ],
            {"act": "silu"},
        ).output
    )
    outs.append(
        g.add_node(
            "nn.matmul", [q, g.add_node("tensor.transpose", [q], {"perm": [0, 2, 1]}).output]
        ).output
    )
    outs.append(g.add_node("nn.attention", [q, q, q], {"causal": True}).output)
    mask = g.add_const("mask", RNG.random((5, 5)) > 0.3)
    outs.append(g.add_node("nn.attention", [q, q, q, mask], {"scale": 0.5}).output)
    g.outputs = outs
    return g, [_f32(1, 8, 9, 9), _f32(1, 4, 12), _f32(2, 5, 8), _f32(2, 5, 20)]


def test_nn_ops() -> None:
    g, inputs = _nn_graph()
    got, want = _run(g, *inputs)
    _check_float(got, want)


def test_unsupported_lists_every_bad_node() -> None:
    from backends.tvm import TvmBackend

    g = Graph("bad")
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    y = g.add_node("nn.relu", [x]).output
    g.outputs = [g.add_node("tensor.cast", [y], {"to": "i4"}).output]
    items = TvmBackend().unsupported(g, load_target("cpu"))
    ops = sorted(item.op for item in items)
    assert "input" in ops and "tensor.cast" in ops
    assert all(item.reason for item in items)


def test_missing_tvm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.tvm import require_tvm

    monkeypatch.setitem(sys.modules, "tvm", None)
    with pytest.raises(ToolchainUnavailable, match=r'pip install "tapeout\[tvm\]"'):
        require_tvm()


def test_float64_islands_compute_to_double_precision() -> None:
    """The float64 kernels of quantized graphs' islands (vectorized exp and erf of
    backends.tvm.fastmath, layer norm composed from Relax ops, softmax, GELU) agree with
    NumPy/SciPy in float64 to a few ulp, far below float32 resolution."""
    g = Graph("double")
    x = g.add_input("x", TensorType("f64", (4, 3, 64)))
    scores = g.add_input("scores", TensorType("f64", (4, 3, 64)))
    gamma = g.add_const("gamma", RNG.standard_normal(64))
    beta = g.add_const("beta", RNG.standard_normal(64))
    g.outputs = [
        g.add_node("math.exp", [x]).output,
        g.add_node("math.erf", [x]).output,
        g.add_node("nn.gelu", [x]).output,
        g.add_node("nn.softmax", [scores], {"axis": -1}).output,
        g.add_node("nn.layer_norm", [x, gamma, beta], {"axis": -1, "eps": 1e-5}).output,
    ]
    value = RNG.standard_normal((4, 3, 64)) * 4
    value[0, 0, :3] = [-800.0, 0.0, 20.0]  # exp underflows to 0
    masked = value.copy()
    masked[0, 0, 5:9] = -np.inf  # a causal mask's fill
    got, want = _run(g, value, masked)
    assert got[0][0, 0, 0] == 0.0 and got[3][0, 0, 5] == 0.0
    for a, b in zip(got, want, strict=True):
        assert a.dtype == np.float64
        assert relative_errors([a], [b])[0] <= 1e-14


@pytest.mark.parametrize("length", [64, 20])  # vectorized row kernels; TVM's own for 20
def test_row_reductions_over_the_last_axis(length: int) -> None:
    g = Graph("rows")
    x = g.add_input("x", TensorType("f32", (2, 5, length)))
    gamma = g.add_const("gamma", _f32(length))
    beta = g.add_const("beta", _f32(length))
    scaled = g.add_node("math.mul", [x, g.add_const("s", np.asarray(3.0, np.float32))]).output
    ln = g.add_node("nn.layer_norm", [x, gamma, beta], {"axis": -1, "eps": 1e-5}).output
    g.outputs = [
        g.add_node("nn.softmax", [scaled], {"axis": -1}).output,  # a scale fused before
        ln,
        g.add_node("math.add", [ln, x]).output,  # and an add after
    ]
    value = _f32(2, 5, length)
    value[1, 2, 3:7] = -np.inf  # masked scores: exp gives 0
    value[1, 3, :] = 1e6  # a row where the shift by its max matters
    got, want = _run(g, value)
    assert np.all(got[0][1, 2, 3:7] == 0)
    np.testing.assert_allclose(got[0].sum(axis=-1), 1.0, rtol=1e-5)
    _check_float([got[0]], [want[0]])
    finite = np.isfinite(value).all(axis=-1)
    for a, b in zip(got[1:], want[1:], strict=True):
        _check_float([a[finite]], [b[finite]])
