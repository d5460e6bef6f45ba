"""compiler.numerics and the integer ops of quantized graphs, bit for bit.

Each integer op is checked against an independent computation in Python integers (or exact
rationals), so a change to the interpreter's arithmetic cannot pass by agreeing with itself.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler import numerics
from compiler.interpreter import Context, interpret
from compiler.interpreter_quant import expand_groups
from compiler.ir import Graph, QuantParams, TensorType, parse, print_graph, verify
from compiler.ir.types import f32


def _round_half_up(x: Fraction) -> int:
    return int((x + Fraction(1, 2)).__floor__())


# ---- numerics -------------------------------------------------------------------------------
def test_quantize_rounds_half_to_even_and_saturates() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0], dtype=np.float32)
    counter = numerics.SaturationCounter()
    q = numerics.quantize(x, 1.0, 0, "i8", counter=counter)
    assert q.tolist() == [0, 2, 2, 0, -2, 127, -128]
    assert (counter.clipped, counter.total) == (2, 7)


def test_quantize_with_zero_point_is_affine() -> None:
    x = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    q = numerics.quantize(x, 0.5, 10, "u8")
    assert q.tolist() == [8, 10, 12]
    np.testing.assert_array_equal(numerics.dequantize(q, 0.5, 10), x)


@pytest.mark.parametrize("k", [0, 1, 7, 20, 40])
def test_power_of_two_scales_have_multiplier_one(k: int) -> None:
    assert numerics.quantize_multiplier(2.0**-k) == ((1, k) if k else (1, 0))


@given(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_is_accurate(real: float) -> None:
    mult, shift = numerics.quantize_multiplier(real)
    assert mult < 2**31
    assert abs(mult / 2**shift - real) <= real * 2**-30


@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
    st.floats(min_value=1e-6, max_value=0.999, allow_nan=False),
)
def test_requantize_is_round_half_up_of_the_exact_rational(acc: list[int], real: float) -> None:
    mult, shift = numerics.quantize_multiplier(real)
    got = numerics.requantize(np.array(acc, dtype=np.int64), mult, shift, 3, "i16")
    for a, g in zip(acc, got.tolist(), strict=True):
        exact = _round_half_up(Fraction(a * mult, 2**shift)) + 3
        assert g == min(max(exact, -32768), 32767)


def test_requantize_ties_round_up() -> None:
    acc = np.array([1, 3, -1, -3, 5], dtype=np.int64)  # x / 2: 0.5, 1.5, -0.5, -1.5, 2.5
    assert numerics.requantize(acc, 1, 1, 0, "i8").tolist() == [1, 2, 0, -1, 3]


def test_wrap_is_twos_complement() -> None:
    x = np.array([2**31, -(2**31) - 1, 5], dtype=np.int64)
    assert numerics.wrap(x, "i32").tolist() == [-(2**31), 2**31 - 1, 5]


def test_group_scales_expand_row_major_along_axis() -> None:
    qp = QuantParams((1.0, 2.0, 3.0, 4.0), (0, 0, 0, 0), axis=1, group_size=2)
    scale, zp = expand_groups(qp, (2, 4))
    np.testing.assert_array_equal(scale, [[1, 1, 2, 2], [3, 3, 4, 4]])
    assert not zp.any()


# ---- IR ops ---------------------------------------------------------------------------------
def _graph(text: str, constants: dict[str, np.ndarray] | None = None) -> Graph:
    graph = parse(text, constants or {})
    verify(graph)
    assert parse(print_graph(graph), graph.constants) == graph  # the form round-trips
    return graph


def test_requantize_clip_attributes_clamp_after_rounding() -> None:
    graph = _graph(
        """graph @g(%a: i32[6]{scale=0.5}) -> (i8[6]) {
          %y: i8[6]{scale=1.0, zp=2} = q.requantize(%a) {dtype="i8", multiplier=[1], """
        """shift=[1], clip_min=2, clip_max=8}
          return %y
        }"""
    )
    acc = np.array([-10, 0, 3, 9, 13, 100], dtype=np.int32)
    (y,) = interpret(graph, acc)
    expected = [min(max(_round_half_up(Fraction(int(a), 2)) + 2, 2), 8) for a in acc]
    assert y.tolist() == expected


def test_qadd_formula_is_exact() -> None:
    graph = _graph(
        """graph @g(%a: i8[5]{scale=0.1, zp=3}, %b: i8[5]{scale=0.25}) -> (i8[5]) {
          %y: i8[5]{scale=0.2, zp=-1} = q.add(%a, %b) {dtype="i8", a_multiplier=32768, """
        """b_multiplier=81920, shift=16, act="relu"}
          return %y
        }"""
    )
    a = np.array([3, 100, -128, 127, 10], dtype=np.int8)
    b = np.array([0, -50, -128, 127, 7], dtype=np.int8)
    ctx = Context(graph, count_saturation=True)
    (y,) = interpret(graph, a, b, context=ctx)
    for ai, bi, yi in zip(a.tolist(), b.tolist(), y.tolist(), strict=True):
        acc = (ai - 3) * 32768 + bi * 81920
        exact = min(max(_round_half_up(Fraction(acc, 2**16)) - 1, -128), 127)
        assert yi == max(exact, -1)
    assert ctx.saturation is not None and ctx.saturation["y"].total == 5


def test_qavg_pool_sums_minus_zero_point_then_requantizes() -> None:
    graph = _graph(
        """graph @g(%x: u8[1,1,4,4]{scale=0.1, zp=10}) -> (u8[1,1,2,2]) {
          %y: u8[1,1,2,2]{scale=0.1, zp=10} = q.avg_pool2d(%x) {kernel=[2, 2], """
        """strides=[2, 2], pads=[0, 0, 0, 0], dtype="u8", multiplier=1, shift=2}
          return %y
        }"""
    )
    x = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4) * 7
    (y,) = interpret(graph, x)
    windows = x.astype(np.int64).reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(2, 2, 4)
    expected = [
        [_round_half_up(Fraction(int(w.sum() - 40), 4)) + 10 for w in row] for row in windows
    ]
    assert y[0, 0].tolist() == expected


def test_qglobal_avg_pool_matches_float_mean() -> None:
    graph = _graph(
        """graph @g(%x: i8[1,3,2,2]{scale=0.5}) -> (i8[1,3,1,1]) {
          %y: i8[1,3,1,1]{scale=0.5} = q.global_avg_pool(%x) {dtype="i8", multiplier=1, shift=2}
          return %y
        }"""
    )
    x = np.arange(-6, 6, dtype=np.int8).reshape(1, 3, 2, 2)
    (y,) = interpret(graph, x)
    sums = x.astype(np.int64).sum(axis=(2, 3)).ravel()
    assert y.ravel().tolist() == [_round_half_up(Fraction(int(s), 4)) for s in sums]


def test_integer_conv_pads_with_the_zero_point() -> None:
    w = np.ones((1, 1, 3, 3), dtype=np.int8)
    graph = _graph(
        """graph @g(%x: u8[1,1,3,3]{scale=1.0, zp=5}) -> (i32[1,1,3,3]) {
          %w: i8[1,1,3,3]{scale=1.0} = const @w
          %y: i32[1,1,3,3] = nn.conv2d(%x, %w) {pads=[1, 1, 1, 1], acc="i32"}
          return %y
        }""",
        {"w": w},
    )
    x = np.full((1, 1, 3, 3), 5, dtype=np.uint8)  # real 0 everywhere
    (y,) = interpret(graph, x)
    assert not y.any()


def test_integer_matmul_subtracts_zero_points() -> None:
    graph = _graph(
        """graph @g(%a: u8[2,3]{scale=1.0, zp=4}, %b: i8[3,2]{scale=1.0}) -> (i32[2,2]) {
          %y: i32[2,2] = nn.matmul(%a, %b) {acc="i32"}
          return %y
        }"""
    )
    a = np.array([[4, 5, 6], [0, 255, 4]], dtype=np.uint8)
    b = np.array([[1, 2], [3, -4], [5, 6]], dtype=np.int8)
    (y,) = interpret(graph, a, b)
    np.testing.assert_array_equal(y, (a.astype(np.int64) - 4) @ b.astype(np.int64))


def test_group_dequantize_round_trips_through_text() -> None:
    qp = QuantParams((0.5, 0.25), (0, 0), axis=1, group_size=2)
    graph = Graph("g")
    w = graph.add_const("w", np.array([[1, -2, 3, 7]], dtype=np.int8), TensorType("i4", (1, 4), qp))
    x = graph.add_input("x", f32(2, 4))
    dq = graph.add_node("q.dequantize", [w]).output
    graph.outputs = [graph.add_node("nn.dense", [x, dq]).output]
    verify(graph)
    text = print_graph(graph)
    assert "group=2" in text
    assert parse(text, graph.constants) == graph
    (out,) = interpret(graph, np.ones((2, 4), dtype=np.float32))
    np.testing.assert_allclose(out, [[0.5 - 1.0 + 0.75 + 1.75]] * 2)


def test_group_size_must_divide_the_axis() -> None:
    qp = QuantParams((1.0,), (0,), axis=1, group_size=3)
    with pytest.raises(ValueError, match="does not divide"):
        TensorType("i4", (1, 4), qp)
