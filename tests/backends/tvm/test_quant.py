"""Integer kernels of the TVM backend, bit for bit with the interpreter.

A quantized graph written as IR text (``graphs/quant.ir``) with nonzero zero points (which
the symmetric int8 zoo never produces): u8 and i8 activations, per-channel requantize with
non-power-of-two multipliers and integer clamps, q.add, integer pooling, dense, batched matmul
and depthwise convolution.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.numerics import quantize_multiplier
from compiler.target import load_target
from tests.backends.ir_text import load_graph
from tests.backends.tvm.helpers import mismatches

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(7)


GRAPH = Path(__file__).parent / "graphs" / "quant.ir"


def _weights(values: dict[str, Any], data: dict[str, np.ndarray], name: str, shape: tuple) -> None:
    data[name] = RNG.integers(-127, 128, shape).astype(np.int8)
    values[f"{name}_scale"] = [float(s) for s in RNG.uniform(0.001, 0.01, shape[0])]


def _requant(values: dict[str, Any], name: str, channels: int) -> None:
    pairs = [quantize_multiplier(float(s)) for s in RNG.uniform(1e-4, 3e-3, channels)]
    values[f"{name}_multiplier"] = [m for m, _ in pairs]
    values[f"{name}_shift"] = [s for _, s in pairs]


def _graph() -> Graph:
    """``graphs/quant.ir`` with random weights, weight scales and requantize multipliers."""
    values: dict[str, Any] = {}
    data: dict[str, np.ndarray] = {}
    _weights(values, data, "w1", (16, 3, 3, 3))
    data["b1"] = RNG.integers(-2000, 2000, 16).astype(np.int32)
    _requant(values, "y", 16)
    _weights(values, data, "dw", (16, 1, 3, 3))
    _requant(values, "d", 16)
    _weights(values, data, "wd", (10, 16))
    values["dense_scale"] = [float(s) for s in RNG.uniform(1e-4, 1e-3, 10)]
    return load_graph(GRAPH, data, **values)


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
