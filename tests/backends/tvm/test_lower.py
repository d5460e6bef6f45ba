"""The TVM lowering table: op coverage against the interpreter, and the error paths.

A handful of small graphs written as IR text (``graphs/*.ir``), each exercising many rules at
once (one TVM build per graph keeps this fast), compared with the interpreter: fp32 within
1e-5, integer results exactly.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.errors import ToolchainUnavailable
from compiler.interpreter import IMPLS, interpret
from compiler.ir import Graph
from compiler.ir.ops import OPS
from compiler.target import load_target
from tests.backends.ir_text import graph_from_text, load_graph
from tests.backends.tvm.helpers import mismatches, relative_errors

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(0)
GRAPHS = Path(__file__).parent / "graphs"


def _run(graph: Graph, *inputs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from backends.tvm import TvmBackend

    backend = TvmBackend()
    target = load_target("cpu")
    assert backend.unsupported(graph, target) == []
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    return art.run(*inputs), interpret(graph, *inputs)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _scalar(value: float) -> np.ndarray:
    return np.asarray(value, np.float32)


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
    g = load_graph(GRAPHS / "elementwise.ir", {"one": _scalar(1.0), "big": _scalar(100.0)})
    got, want = _run(g, _f32(2, 3, 4, 5), _f32(3, 1, 5))
    _check_float(got, want)


def test_integer_math_is_exact() -> None:
    g = graph_from_text(
        """
        graph @integers(%a: i32[4,8], %b: i32[4,8]) -> (i32[4,8], i32[4,8], i32[4,8]) {
          %div: i32[4,8] = math.div(%a, %b)
          %mod: i32[4,8] = math.mod(%a, %b)
          %add: i32[4,8] = math.add(%a, %b)
          return %div, %mod, %add
        }
        """
    )
    av = RNG.integers(-100, 100, (4, 8)).astype(np.int32)
    bv = RNG.integers(-9, 9, (4, 8)).astype(np.int32)
    got, want = _run(g, av, bv)
    assert mismatches(got, want) == [0, 0, 0]


def test_data_movement() -> None:
    g = load_graph(GRAPHS / "movement.ir")
    got, want = _run(g, _f32(2, 6, 4, 4), np.array([5, -1, 0], dtype=np.int64))
    _check_float(got, want)


def _nn_graph() -> tuple[Graph, list[np.ndarray]]:
    # a variance must be positive; the other weights are seeded normal data
    bn = {f"bn_{k}": np.abs(_f32(16)) + 0.5 for k in ("gamma", "beta", "mean", "var")}
    g = load_graph(GRAPHS / "nn.ir", {**bn, "mask": RNG.random((5, 5)) > 0.3})
    return g, [_f32(1, 8, 9, 9), _f32(1, 4, 12), _f32(2, 5, 8), _f32(2, 5, 20)]


def test_nn_ops() -> None:
    g, inputs = _nn_graph()
    got, want = _run(g, *inputs)
    _check_float(got, want)


def test_unsupported_lists_every_bad_node() -> None:
    from backends.tvm import TvmBackend

    g = graph_from_text(
        """
        graph @bad(%x: f32[batch,4]) -> (i4[batch,4]) {
          %relu: f32[batch,4] = nn.relu(%x)
          %narrow: i4[batch,4] = tensor.cast(%relu) {to="i4"}
          return %narrow
        }
        """
    )
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
    g = load_graph(
        GRAPHS / "double.ir", {"gamma": RNG.standard_normal(64), "beta": RNG.standard_normal(64)}
    )
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
    g = load_graph(GRAPHS / "rows.ir", {"three": _scalar(3.0)}, n=length)
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
