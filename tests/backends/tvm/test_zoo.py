"""The CPU (TVM) zoo beyond conformance: float32 islands and the kernel report.

That every zoo model matches the interpreter on the same graph (fp32 within 1e-5, int8 bit
for bit with float64 islands) is the conformance test's (tests/backends/test_conformance.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.interpreter import interpret
from tests.backends.tvm.helpers import compiled, example_arrays

pytestmark = pytest.mark.tvm


def test_int8_float32_islands_trade_exactness_for_speed() -> None:
    """``island_dtype="f32"``: float32 islands, as fast as float; TVM's float kernels may
    round a value differently from NumPy's in the last bit and a quantize then rounds it the
    other way, so the model is held to a cosine bound instead of bit equality."""
    art = compiled("tiny_gpt_sdpa", "cpu", "int8", island_dtype="f32")
    assert not any(v.dtype == "f64" for v in art.graph.values())
    xs = example_arrays("tiny_gpt_sdpa")
    for got, want in zip(art.run(*xs), interpret(art.graph, *xs), strict=True):
        cosine = float(
            np.dot(got.ravel(), want.ravel()) / (np.linalg.norm(got) * np.linalg.norm(want))
        )
        assert cosine >= 0.999


def test_report_names_the_kernels() -> None:
    art = compiled("digits_cnn", "cpu")
    assert art.summary["library"] == "model.so"
    assert art.summary["runnable_here"] is True
    assert "conv2d x3" in art.summary["tapeout_kernels"]
    assert "dense x1" in art.summary["tapeout_kernels"]
