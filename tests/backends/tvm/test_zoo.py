"""Every zoo model compiles for the CPU (TVM) and matches the interpreter on the same graph.

fp32: relative error <= 1e-5. int8: bit for bit where the model is integer from its input
quantize to its output dequantize; models with float islands are held to a cosine bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.interpreter import interpret
from tests.backends.tvm.helpers import compiled, example_arrays, mismatches, relative_errors
from tests.cases import CASES

pytestmark = pytest.mark.tvm

FP32_CASES = [n for n, c in CASES.items() if not c.slow]
#: Integer from the input quantize to the output dequantize: every output bit must match.
INT8_INTEGER = ["jet_mlp", "digits_cnn", "residual_block", "mobilenet_block", "resnet18"]
#: Float ops between integer layers (layer norm, softmax, GELU): TVM's float kernels may round
#: a value differently from NumPy in the last bit, a quantize can then round it the other way
#: and deeper layers amplify the flip, so these are held to a cosine bound. The integer
#: kernels themselves are exact: see test_quant.py.
INT8_ISLANDS = ["tiny_gpt", "tiny_gpt_sdpa", "ops_conv", "bert_encoder"]


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


@pytest.mark.parametrize("name", INT8_INTEGER)
def test_int8_bit_exact(name: str) -> None:
    _skip_missing(name)
    art = compiled(name, "cpu", "int8")
    assert any(n.op == "q.quantize" for n in art.graph.nodes)
    xs = example_arrays(name)
    assert mismatches(art.run(*xs), interpret(art.graph, *xs)) == [0] * len(art.graph.outputs)


@pytest.mark.parametrize("name", INT8_ISLANDS)
def test_int8_with_float_islands(name: str) -> None:
    _skip_missing(name)
    art = compiled(name, "cpu", "int8")
    xs = example_arrays(name)
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
