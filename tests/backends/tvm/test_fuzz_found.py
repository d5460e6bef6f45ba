"""What the cpu fuzz run found in the TVM backend, fixed by class (issue 13).

Integer division never executes a native division by 0 or ``INT_MIN / -1`` (SIGFPE kills the
process on x86); every IR dtype either has a TVM type or is refused by the guard, graph inputs
and outputs included; negation of unsigned values wraps as NumPy's does; ops TVM cannot build
for an operand dtype are refused before the build. Small IR graphs, compared with the
interpreter bit for bit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.ir.types import DTYPES, NUMPY_DTYPES
from compiler.target import load_target
from tests.backends.tvm.helpers import mismatches

pytestmark = pytest.mark.tvm

DIV_OPS = ("math.div", "math.mod", "math.floor_mod")


def _build(graph: Graph) -> object:
    from backends.tvm import TvmBackend

    backend = TvmBackend()
    assert backend.unsupported(graph, load_target("cpu")) == []
    return backend.compile(graph, load_target("cpu"), Path(tempfile.mkdtemp()), {})


def _unsupported(graph: Graph) -> list[object]:
    from backends.tvm import TvmBackend

    return list(TvmBackend().unsupported(graph, load_target("cpu")))


def _division_graph(dtypes: tuple[str, ...], n: int) -> Graph:
    g = Graph("divisions")
    outputs = []
    for dt in dtypes:
        a = g.add_input(f"a_{dt}", TensorType(dt, (n,)))
        b = g.add_input(f"b_{dt}", TensorType(dt, (n,)))
        outputs += [g.add_node(op, [a, b]).output for op in DIV_OPS]
    g.outputs = outputs
    return g


def _operands(dt: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every dividend edge (min, max, 0, +-1) against every divisor edge (0, -1, 1, min)."""
    np_dt = NUMPY_DTYPES[dt]
    info = np.iinfo(np_dt)
    edges = sorted({int(info.min), int(info.max), 0, 1, 7, -7 if info.min < 0 else 3})
    negative = {-1, -3, int(info.min)} if info.min < 0 else set()
    divisors = sorted({0, 1, 3, int(info.max)} | negative)
    pairs = [(a, b) for a in edges for b in divisors][:n]
    pairs += [(0, 0)] * (n - len(pairs))
    return (np.array([p[0] for p in pairs], np_dt), np.array([p[1] for p in pairs], np_dt))


def test_interpreter_defines_integer_division_by_zero_as_zero() -> None:
    g = _division_graph(("i32",), 3)
    a, b = np.array([7, -7, 0], np.int32), np.zeros(3, np.int32)
    with np.errstate(all="ignore"):
        got = interpret(g, a, b)
    assert [x.tolist() for x in got] == [[0, 0, 0]] * 3


@pytest.mark.parametrize("dtypes", [("i64", "i32", "i8", "u8", "u16")])
def test_integer_division_by_zero_and_minus_one_never_traps(dtypes: tuple[str, ...]) -> None:
    n = 48
    g = _division_graph(dtypes, n)
    inputs = [x for dt in dtypes for x in _operands(dt, n)]
    got = _build(g).run(*inputs)  # type: ignore[attr-defined]
    with np.errstate(all="ignore"):
        want = interpret(g, *inputs)
    assert mismatches(got, want) == [0] * len(want)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_ir_dtype_has_a_tvm_type_or_is_refused(dtype: str) -> None:
    from backends.tvm.lower import TVM_DTYPES

    g = Graph("passthrough")
    x = g.add_input("x", TensorType(dtype, (2,)))
    g.outputs = [x]
    items = _unsupported(g)
    if dtype in TVM_DTYPES:
        assert items == []
    else:
        assert items and all(dtype in item.reason for item in items)  # type: ignore[attr-defined]


def test_negation_and_argmin_of_unsigned_values_wrap_as_numpy() -> None:
    g = Graph("unsigned")
    x = g.add_input("x", TensorType("u8", (6,)))
    y = g.add_input("y", TensorType("i8", (6,)))
    reversed_x = g.add_node("math.bitwise_not", [x]).output
    g.outputs = [
        g.add_node("math.neg", [x]).output,
        g.add_node("math.neg", [y]).output,
        g.add_node("math.argmax", [reversed_x], {"axis": 0}).output,
    ]
    xs = np.array([9, 0, 255, 1, 0, 128], np.uint8)
    ys = np.array([-128, 127, 0, -1, 1, 5], np.int8)
    got = _build(g).run(xs, ys)  # type: ignore[attr-defined]
    assert mismatches(got, interpret(g, xs, ys)) == [0, 0, 0]
    assert int(got[2]) == int(np.argmin(xs))


@pytest.mark.parametrize("op", ["math.reduce_max", "math.reduce_min", "math.argmax"])
def test_bool_extremes_are_refused(op: str) -> None:
    g = Graph("bools")
    x = g.add_input("x", TensorType("bool", (2, 3)))
    g.outputs = [g.add_node(op, [x], {"axis": 1} if op == "math.argmax" else {"axes": [1]}).output]
    assert [item.op for item in _unsupported(g)] == [op]  # type: ignore[attr-defined]


def test_bool_comparisons_order_false_before_true() -> None:
    from backends.tvm.lower_tensor import COMPARISONS

    g = Graph("bool_compare")
    a = g.add_input("a", TensorType("bool", (4,)))
    b = g.add_input("b", TensorType("bool", (4,)))
    g.outputs = [g.add_node(op, [a, b]).output for op in sorted(COMPARISONS)]
    av, bv = np.array([0, 1, 0, 1], bool), np.array([0, 0, 1, 1], bool)
    got = _build(g).run(av, bv)  # type: ignore[attr-defined]
    assert mismatches(got, interpret(g, av, bv)) == [0] * len(COMPARISONS)


def test_float16_ops_without_an_llvm_kernel_run_in_float32() -> None:
    """They were refused; now computed in float32 and rounded (backends.tvm.dtypes_narrow),
    equal to the interpreter's NumPy float16 within the conformance tolerance."""
    from compiler.conformance import compare

    ops = ["math.acos", "math.asinh", "math.cosh"]
    g = Graph("f16")
    x = g.add_input("x", TensorType("f16", (4,)))
    g.outputs = [g.add_node(op, [x]).output for op in ops]
    xs = np.array([-0.9, -0.25, 0.5, 0.75], np.float16)
    got = _build(g).run(xs)  # type: ignore[attr-defined]
    for g_out, want in zip(got, interpret(g, xs), strict=True):
        assert g_out.dtype == np.float16 and compare(want, g_out, 1e-3, 1e-7) is None


def test_gather_from_an_empty_axis_is_a_shape_error() -> None:
    """Fuzz case 7482 (a weight of length 0 gathered by class ids): every index is out of
    range, and TVM's take would divide by the empty axis while building; refused at once."""
    from compiler.errors import ShapeError

    g = Graph("g")
    w = g.add_input("w", TensorType("f32", (0,)))
    idx = g.add_input("idx", TensorType("i64", (3, 6)))
    with pytest.raises(ShapeError, match="empty axis 0"):
        g.add_node("tensor.gather", [w, idx], {"axis": 0})
