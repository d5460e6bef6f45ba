"""What the cpu fuzz run found in the TVM backend, fixed by class (issue 13).

Integer division never executes a native division by 0 or ``INT_MIN / -1`` (SIGFPE kills the
process on x86); every IR dtype either has a TVM type or is refused by the guard, graph inputs
and outputs included; negation of unsigned values wraps as NumPy's does; ops TVM cannot build
for an operand dtype are refused before the build. Small IR graphs, compared with the
interpreter bit for bit, written as IR text.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.ir.types import DTYPES, NUMPY_DTYPES
from compiler.target import load_target
from tests.backends.ir_text import graph_from_text, load_graph
from tests.backends.tvm.helpers import mismatches

pytestmark = pytest.mark.tvm

DIV_OPS = ("math.div", "math.mod", "math.floor_mod")
DIVISION_DTYPES = ("i64", "i32", "i8", "u8", "u16")
GRAPHS = Path(__file__).parent / "graphs"


def _build(graph: Graph) -> object:
    from backends.tvm import TvmBackend

    backend = TvmBackend()
    assert backend.unsupported(graph, load_target("cpu")) == []
    return backend.compile(graph, load_target("cpu"), Path(tempfile.mkdtemp()), {})


def _unsupported(graph: Graph) -> list[object]:
    from backends.tvm import TvmBackend

    return list(TvmBackend().unsupported(graph, load_target("cpu")))


def _division_graph(n: int) -> Graph:
    """``graphs/divisions.ir``: div, mod and floor_mod of each of DIVISION_DTYPES."""
    g = load_graph(GRAPHS / "divisions.ir", n=str(n))
    assert [v.dtype for v in g.inputs[::2]] == list(DIVISION_DTYPES)
    assert {n.op for n in g.nodes} == set(DIV_OPS)
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
    g = graph_from_text(
        """
        graph @divisions(%a: i32[3], %b: i32[3]) -> (i32[3], i32[3], i32[3]) {
          %div: i32[3] = math.div(%a, %b)
          %mod: i32[3] = math.mod(%a, %b)
          %floor_mod: i32[3] = math.floor_mod(%a, %b)
          return %div, %mod, %floor_mod
        }
        """
    )
    a, b = np.array([7, -7, 0], np.int32), np.zeros(3, np.int32)
    with np.errstate(all="ignore"):
        got = interpret(g, a, b)
    assert [x.tolist() for x in got] == [[0, 0, 0]] * 3


def test_integer_division_by_zero_and_minus_one_never_traps() -> None:
    n = 48
    g = _division_graph(n)
    inputs = [x for dt in DIVISION_DTYPES for x in _operands(dt, n)]
    got = _build(g).run(*inputs)  # type: ignore[attr-defined]
    with np.errstate(all="ignore"):
        want = interpret(g, *inputs)
    assert mismatches(got, want) == [0] * len(want)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_ir_dtype_has_a_tvm_type_or_is_refused(dtype: str) -> None:
    from backends.tvm.lower import TVM_DTYPES

    g = graph_from_text(
        """
        graph @passthrough(%x: $dtype[2]) -> ($dtype[2]) {
          return %x
        }
        """,
        dtype=dtype,
    )
    items = _unsupported(g)
    if dtype in TVM_DTYPES:
        assert items == []
    else:
        assert items and all(dtype in item.reason for item in items)  # type: ignore[attr-defined]


def test_negation_and_argmin_of_unsigned_values_wrap_as_numpy() -> None:
    g = graph_from_text(
        """
        graph @unsigned(%x: u8[6], %y: i8[6]) -> (u8[6], i8[6], i64[]) {
          %neg_x: u8[6] = math.neg(%x)
          %neg_y: i8[6] = math.neg(%y)
          %not_x: u8[6] = math.bitwise_not(%x)
          %argmax: i64[] = math.argmax(%not_x) {axis=0}
          return %neg_x, %neg_y, %argmax
        }
        """
    )
    xs = np.array([9, 0, 255, 1, 0, 128], np.uint8)
    ys = np.array([-128, 127, 0, -1, 1, 5], np.int8)
    got = _build(g).run(xs, ys)  # type: ignore[attr-defined]
    assert mismatches(got, interpret(g, xs, ys)) == [0, 0, 0]
    assert int(got[2]) == int(np.argmin(xs))


@pytest.mark.parametrize(
    ("op", "result", "attrs"),
    [
        ("math.reduce_max", "bool", "{axes=[1]}"),
        ("math.reduce_min", "bool", "{axes=[1]}"),
        ("math.argmax", "i64", "{axis=1}"),
    ],
)
def test_bool_extremes_are_refused(op: str, result: str, attrs: str) -> None:
    g = graph_from_text(
        """
        graph @bools(%x: bool[2,3]) -> (${result}[2]) {
          %y: ${result}[2] = $op(%x) $attrs
          return %y
        }
        """,
        op=op,
        result=result,
        attrs=attrs,
    )
    assert [item.op for item in _unsupported(g)] == [op]  # type: ignore[attr-defined]


def test_bool_comparisons_order_false_before_true() -> None:
    from backends.tvm.lower_tensor import COMPARISONS

    g = graph_from_text(
        """
        graph @compare(%a: bool[4], %b: bool[4]) -> (bool[4], bool[4], bool[4], bool[4], bool[4]) {
          %eq: bool[4] = math.equal(%a, %b)
          %gt: bool[4] = math.greater(%a, %b)
          %ge: bool[4] = math.greater_equal(%a, %b)
          %lt: bool[4] = math.less(%a, %b)
          %le: bool[4] = math.less_equal(%a, %b)
          return %eq, %gt, %ge, %lt, %le
        }
        """
    )
    assert {node.op for node in g.nodes} == set(COMPARISONS)  # every comparison the backend has
    av, bv = np.array([0, 1, 0, 1], bool), np.array([0, 0, 1, 1], bool)
    got = _build(g).run(av, bv)  # type: ignore[attr-defined]
    assert mismatches(got, interpret(g, av, bv)) == [0] * len(COMPARISONS)


def test_float16_ops_without_an_llvm_kernel_run_in_float32() -> None:
    """They were refused; now computed in float32 and rounded (backends.tvm.dtypes_narrow),
    equal to the interpreter's NumPy float16 within the conformance tolerance."""
    from compiler.conformance import compare

    g = graph_from_text(
        """
        graph @f16(%x: f16[4]) -> (f16[4], f16[4], f16[4]) {
          %a: f16[4] = math.acos(%x)
          %b: f16[4] = math.asinh(%x)
          %c: f16[4] = math.cosh(%x)
          return %a, %b, %c
        }
        """
    )
    xs = np.array([-0.9, -0.25, 0.5, 0.75], np.float16)
    got = _build(g).run(xs)  # type: ignore[attr-defined]
    for g_out, want in zip(got, interpret(g, xs), strict=True):
        assert g_out.dtype == np.float16 and compare(want, g_out, 1e-3, 1e-7) is None


def test_gather_from_an_empty_axis_is_a_shape_error() -> None:
    """Fuzz case 7482 (a weight of length 0 gathered by class ids): every index is out of
    range, and TVM's take would divide by the empty axis while building; refused at once."""
    from compiler.errors import ShapeError

    with pytest.raises(ShapeError, match="empty axis 0"):
        graph_from_text(
            """
            graph @g(%w: f32[0], %idx: i64[3,6]) -> (f32[3,6]) {
              %y: f32[3,6] = tensor.gather(%w, %idx) {axis=0}
              return %y
            }
            """
        )
