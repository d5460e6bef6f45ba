"""Every zoo model compiles for the CPU (TVM) and matches the interpreter on the same graph.

fp32: relative error <= 1e-5. int8: bit for bit, every output element, including the models
with float ops between their integer layers (layer norm, softmax, GELU, ...): the CPU
targets run those islands in float64 (``numerics.island_dtype``), where TVM's and NumPy's
last-bit differences stay far below what a quantize or a float32 output resolves.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.interpreter import interpret
from tests.backends.tvm.helpers import compiled, example_arrays, mismatches, relative_errors
from tests.cases import CASES

pytestmark = pytest.mark.tvm

FP32_CASES = [n for n, c in CASES.items() if not c.slow]
#: Integer from the input quantize to the output dequantize.
INT8_INTEGER = ["jet_mlp", "digits_cnn", "resnet18"]
#: Float ops between or after integer layers (layer norm, softmax, GELU, a residual add of
#: the float input, hardswish, pow, conv_transpose2d, ...).
INT8_ISLANDS = [
    "residual_block",
    "mobilenet_block",
    "tiny_gpt",
    "tiny_gpt_sdpa",
    "ops_conv",
    "bert_encoder",
]


def _skip_missing(name: str) -> None:
    if not CASES[name].available():
        pytest.skip(f"needs {', '.join(CASES[name].missing())}")


@pytest.mark.parametrize("name", FP32_CASES)
def test_fp32_matches_interpreter(name: str) -> None:
    _skip_missing(name)
    art = compiled(name, "cpu")
    xs = example_arrays(name)
    errors = relative_errors(art.run(*xs), interpret(art.graph, *xs))
    assert max(errors) <= 1e-5, errors


@pytest.mark.parametrize("name", INT8_INTEGER + INT8_ISLANDS)
def test_int8_bit_exact(name: str) -> None:
    _skip_missing(name)
    art = compiled(name, "cpu", "int8")
    assert any(n.op == "q.quantize" for n in art.graph.nodes)
    widened = [n for n in art.graph.nodes if n.attrs.get("dtype") == "f64"]
    if name in INT8_ISLANDS:  # the float ops between integer layers run in float64
        assert any(n.op == "q.dequantize" for n in widened)
    else:  # nothing float between the input quantize and the output dequantize
        assert not any(v.dtype == "f64" for v in art.graph.values())
    xs = example_arrays(name)
    assert mismatches(art.run(*xs), interpret(art.graph, *xs)) == [0] * len(art.graph.outputs)


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
