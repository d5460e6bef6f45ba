"""Integer kernels of the TVM backend, bit for bit with the interpreter.

Hand-built quantized graphs with nonzero zero points (which the symmetric int8 zoo never
produces): u8 and i8 activations, per-channel requantize with non-power-of-two multipliers
and integer clamps, q.add, integer pooling, dense, batched matmul and depthwise convolution.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph, QuantParams, TensorType
from compiler.ir.graph import Value
from compiler.numerics import quantize_multiplier
from compiler.target import load_target
from tests.backends.tvm.helpers import mismatches

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(7)


def _q(dtype: str, shape: tuple[int, ...], scale: float, zp: int) -> TensorType:
    return TensorType(dtype, shape, QuantParams.per_tensor(scale, zp))


def _weights(g: Graph, name: str, shape: tuple[int, ...]) -> Value:
    data = RNG.integers(-127, 128, shape).astype(np.int8)
    scales = RNG.uniform(0.001, 0.01, shape[0])
    return g.add_const(name, data, TensorType("i8", shape, QuantParams.per_channel(scales, 0)))


def _requant(g: Graph, acc: Value, out: TensorType, channels: int, axis: int, **clip: int) -> Value:
    pairs = [quantize_multiplier(float(s)) for s in RNG.uniform(1e-4, 3e-3, channels)]
    attrs = {
        "dtype": out.dtype,
        "multiplier": [m for m, _ in pairs],
        "shift": [s for _, s in pairs],
        "axis": axis,
        **clip,
    }
    return g.add_node("q.requantize", [acc], attrs, out_types=[out]).output


def _graph() -> Graph:
    g = Graph("quant")
    x = g.add_input("x", TensorType("f32", (1, 3, 9, 9)))
    xq = g.add_node(
        "q.quantize", [x], {"dtype": "u8"}, out_types=[_q("u8", (1, 3, 9, 9), 0.05, 100)]
    ).output
    w1 = _weights(g, "w1", (16, 3, 3, 3))
    b1 = g.add_const("b1", RNG.integers(-2000, 2000, 16).astype(np.int32))
    acc = g.add_node(
        "nn.conv2d",
        [xq, w1, b1],
        {"pads": [1, 1, 1, 1], "strides": [2, 2], "act": "relu", "acc": "i32"},
    ).output
    y = _requant(g, acc, _q("i8", (1, 16, 5, 5), 0.04, -5), 16, 1, clip_min=-3, clip_max=100)
    dw = _weights(g, "dw", (16, 1, 3, 3))
    dacc = g.add_node(
        "nn.conv2d", [y, dw], {"pads": [1, 1, 1, 1], "groups": 16, "acc": "i32"}
    ).output
    d = _requant(g, dacc, _q("i8", (1, 16, 5, 5), 0.03, 7), 16, 1)
    s = g.add_node(
        "q.add",
        [y, d],
        {"dtype": "i8", "a_multiplier": 21845, "b_multiplier": 43690, "shift": 16, "act": "relu"},
        out_types=[_q("i8", (1, 16, 5, 5), 0.05, -2)],
    ).output
    mp = g.add_node("nn.max_pool2d", [s], {"kernel": [2, 2], "strides": [1, 1]}).output
    ap = g.add_node(
        "q.avg_pool2d",
        [s],
        {
            "kernel": [3, 3],
            "strides": [2, 2],
            "pads": [1, 1, 1, 1],
            "dtype": "i8",
            "multiplier": 1908874354,
            "shift": 34,
        },
        out_types=[_q("i8", (1, 16, 3, 3), 0.05, 1)],
    ).output
    gp = g.add_node(
        "q.global_avg_pool",
        [mp],
        {"dtype": "i8", "multiplier": 1, "shift": 4},
        out_types=[_q("i8", (1, 16, 1, 1), 0.05, 3)],
    ).output
    flat = g.add_node("tensor.flatten", [gp]).output
    wd = _weights(g, "wd", (10, 16))
    acc_type = TensorType("i32", (1, 10), QuantParams.per_channel(RNG.uniform(1e-4, 1e-3, 10), 1))
    dense = g.add_node("nn.dense", [flat, wd], {"acc": "i32"}, out_types=[acc_type]).output
    a = g.add_node("tensor.reshape", [ap], {"shape": [1, 16, 9]}).output
    mm = g.add_node(
        "nn.matmul",
        [a, g.add_node("tensor.transpose", [a], {"perm": [0, 2, 1]}).output],
        {"acc": "i32"},
    ).output
    g.outputs = [
        acc,
        y,
        d,
        s,
        mp,
        ap,
        gp,
        dense,
        mm,
        g.add_node("q.dequantize", [dense]).output,
        g.add_node("q.dequantize", [s]).output,
    ]
    return g


def _targets() -> list[Any]:
    """The default CPU, and the AVX-512 VNNI kernels where this machine can run them."""
    from backends.tvm.build import host_can_run

    vnni = load_target("x86-64-avx512")
    runs = host_can_run(vnni)[0]
    return [
        "cpu",
        pytest.param(
            "x86-64-avx512",
            marks=pytest.mark.skipif(not runs, reason="this CPU cannot run AVX-512 VNNI code"),
        ),
    ]


@pytest.mark.parametrize("target_name", _targets())
def test_integer_kernels_bit_exact(target_name: str) -> None:
    from backends.tvm import TvmBackend

    g = _graph()
    target = load_target(target_name)
    backend = TvmBackend()
    assert backend.unsupported(g, target) == []
    art = backend.compile(g, target, Path(tempfile.mkdtemp()), {})
    if target.cpu is not None and target.cpu.has_vnni:
        assert "vconv2d x1" in art.summary["tapeout_kernels"]
        assert "vdense x1" in art.summary["tapeout_kernels"]
    x = (RNG.standard_normal((1, 3, 9, 9)) * 3).astype(np.float32)
    got, want = art.run(x), interpret(g, x)
    assert mismatches(got, want) == [0] * len(want)
