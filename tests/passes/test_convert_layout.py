"""convert-layout: channels-last convs and pools, transposes only at the graph's 4-D edges."""

from __future__ import annotations

import numpy as np

from compiler.interpreter import interpret
from compiler.target import load_target
from tests.passes.ir_cases import assert_same_outputs, check_rewrite, graph_from, run_passes


def _four_d_edges(graph) -> int:  # type: ignore[no-untyped-def]
    return sum(v.type.rank == 4 for v in [*graph.inputs, *graph.outputs])


def test_before_after_conv_and_pool(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,3,8,8]) -> (f32[1,8,4,4]) {
      %w: f32[8,3,3,3] = const @w
      %b: f32[8] = const @b
      %c: f32[1,8,8,8] = nn.conv2d(%x, %w, %b) {act="relu", pads=[1, 1, 1, 1]}
      %p: f32[1,8,4,4] = nn.max_pool2d(%c) {kernel=[2, 2]}
      return %p
    }
    """
    after = """
    graph @g(%x: f32[1,3,8,8]) -> (f32[1,8,4,4]) {
      %w: f32[8,3,3,3] = const @w
      %b: f32[8] = const @b
      %x_nhwc: f32[1,8,8,3] = tensor.transpose(%x) {perm=[0, 2, 3, 1]}
      %c: f32[1,8,8,8] = nn.conv2d(%x_nhwc, %w, %b) {act="relu", layout="NHWC", pads=[1, 1, 1, 1]}
      %p: f32[1,4,4,8] = nn.max_pool2d(%c) {kernel=[2, 2], layout="NHWC"}
      %p_nchw: f32[1,8,4,4] = tensor.transpose(%p) {perm=[0, 3, 1, 2]}
      return %p_nchw
    }
    """
    consts = {"w": rng.standard_normal((8, 3, 3, 3)), "b": rng.standard_normal(8)}
    check_rewrite("convert-layout{layout=NHWC}", before, after, consts)


DIGITS = """
graph @digits(%x: f32[1,1,8,8]) -> (f32[1,10]) {
  %w1: f32[16,1,3,3] = const @conv1.weight
  %s1: f32[16] = const @bn1.weight
  %h1: f32[16] = const @bn1.bias
  %m1: f32[16] = const @bn1.mean
  %v1: f32[16] = const @bn1.var
  %w2: f32[16,16,3,3] = const @conv2.weight
  %b2: f32[16] = const @conv2.bias
  %w3: f32[8,16,3,3] = const @conv3.weight
  %scale: f32[8,1,1] = const @scale
  %wf: f32[10,128] = const @fc.weight
  %bf: f32[10] = const @fc.bias
  %c1: f32[1,16,8,8] = nn.conv2d(%x, %w1) {pads=[1, 1, 1, 1]}
  %n1: f32[1,16,8,8] = nn.batch_norm(%c1, %s1, %h1, %m1, %v1)
  %r1: f32[1,16,8,8] = nn.relu(%n1)
  %c2: f32[1,16,8,8] = nn.conv2d(%r1, %w2, %b2) {act="relu", pads=[1, 1, 1, 1]}
  %p: f32[1,16,4,4] = nn.avg_pool2d(%c2) {kernel=[2, 2]}
  %c3: f32[1,8,4,4] = nn.conv2d(%p, %w3) {act="relu", pads=[1, 1, 1, 1]}
  %sc: f32[1,8,4,4] = math.mul(%c3, %scale)
  %f: f32[1,128] = tensor.flatten(%sc) {axis=1}
  %y: f32[1,10] = nn.dense(%f, %wf, %bf)
  return %y
}
"""


def _digits_consts(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "conv1.weight": rng.standard_normal((16, 1, 3, 3)),
        "bn1.weight": 0.5 + rng.random(16),
        "bn1.bias": rng.standard_normal(16),
        "bn1.mean": rng.standard_normal(16) * 0.1,
        "bn1.var": 0.5 + rng.random(16),
        "conv2.weight": rng.standard_normal((16, 16, 3, 3)) * 0.2,
        "conv2.bias": rng.standard_normal(16),
        "conv3.weight": rng.standard_normal((8, 16, 3, 3)) * 0.2,
        "scale": rng.random((8, 1, 1)),
        "fc.weight": rng.standard_normal((10, 128)),
        "fc.bias": rng.standard_normal(10),
    }


def test_digits_cnn_like_graph_has_one_transpose(rng: np.random.Generator) -> None:
    graph = graph_from(DIGITS, _digits_consts(rng))
    original = graph.copy()
    run_passes(graph, "convert-layout", load_target("zcu104"))  # numerics.layout = NHWC
    assert graph.op_counts()["tensor.transpose"] == _four_d_edges(graph) == 1
    assert all(n.attrs.get("layout") == "NHWC" for n in graph.nodes_of("nn.conv2d"))
    # The flatten feeds the dense directly: its weight columns were permuted to HWC order.
    assert graph.find("f").producer.inputs[0] is graph.find("sc")  # type: ignore[union-attr]
    assert_same_outputs(original, graph, exact=False)


RESIDUAL = """
graph @block(%x: f32[1,8,6,6], %y: f32[1,8,6,6]) -> (f32[1,8,6,6], f32[1,16,3,3], f32[1,8]) {
  %w1: f32[8,8,3,3] = const @w1
  %w2: f32[8,8,3,3] = const @w2
  %b: f32[8] = const @b
  %c1: f32[1,8,6,6] = nn.conv2d(%x, %w1, %b) {act="relu", pads=[1, 1, 1, 1]}
  %c2: f32[1,8,6,6] = nn.conv2d(%c1, %w2, %b, %x) {act="relu", pads=[1, 1, 1, 1]}
  %a: f32[1,8,6,6] = math.add(%c2, %y)
  %cat: f32[1,16,6,6] = tensor.concat(%a, %c1) {axis=1}
  %sm: f32[1,16,6,6] = nn.softmax(%cat) {axis=1}
  %pool: f32[1,16,3,3] = nn.max_pool2d(%sm) {kernel=[2, 2]}
  %g: f32[1,8,1,1] = nn.global_avg_pool(%a)
  %flat: f32[1,8] = tensor.flatten(%g) {axis=1}
  return %a, %pool, %flat
}
"""


def test_residual_graph_transposes_only_its_4d_edges(rng: np.random.Generator) -> None:
    consts = {
        "w1": rng.standard_normal((8, 8, 3, 3)) * 0.3,
        "w2": rng.standard_normal((8, 8, 3, 3)) * 0.3,
        "b": rng.standard_normal(8),
    }
    graph = graph_from(RESIDUAL, consts)
    original = graph.copy()
    run_passes(graph, "convert-layout{layout=NHWC}")
    # Two 4-D inputs and two 4-D outputs; the softmax over C became a softmax over axis 3.
    assert graph.op_counts()["tensor.transpose"] == _four_d_edges(graph) == 4
    assert graph.find("sm").producer.attrs["axis"] == 3  # type: ignore[union-attr]
    # Convs, pools and elementwise ops run on the same numbers: bit-identical. The softmax
    # now sums along another memory axis, which may round differently in the last place.
    assert_same_outputs(original, graph, exact=False, rtol=1e-6, atol=1e-7)
    inputs = [rng.standard_normal((1, 8, 6, 6)).astype(np.float32) for _ in range(2)]
    want, got = interpret(original, *inputs), interpret(graph, *inputs)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[2], want[2])


def test_ops_that_need_nchw_get_a_transpose_and_pairs_cancel(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,4,5,5]) -> (f32[1,4,5,5], f32[1,4,25]) {
      %w: f32[4,4,1,1] = const @w
      %t: f32[1,4,5,5] = tensor.transpose(%x) {perm=[0, 1, 3, 2]}
      %c: f32[1,4,5,5] = nn.conv2d(%t, %w)
      %n: f32[1,4,5,5] = nn.lrn(%c) {size=3}
      %r: f32[1,4,25] = tensor.reshape(%c) {shape=[1, 4, 25]}
      return %n, %r
    }
    """
    after = """
    graph @g(%x: f32[1,4,5,5]) -> (f32[1,4,5,5], f32[1,4,25]) {
      %w: f32[4,4,1,1] = const @w
      %t_nhwc: f32[1,5,5,4] = tensor.transpose(%x) {perm=[0, 3, 2, 1]}
      %c: f32[1,5,5,4] = nn.conv2d(%t_nhwc, %w) {layout="NHWC"}
      %c_nchw: f32[1,4,5,5] = tensor.transpose(%c) {perm=[0, 3, 1, 2]}
      %n: f32[1,4,5,5] = nn.lrn(%c_nchw) {size=3}
      %r: f32[1,4,25] = tensor.reshape(%c_nchw) {shape=[1, 4, 25]}
      return %n, %r
    }
    """
    check_rewrite("convert-layout{layout=NHWC}", before, after, {"w": rng.random((4, 4, 1, 1))})


def test_nchw_target_does_nothing(rng: np.random.Generator) -> None:
    graph = graph_from(
        RESIDUAL, {"w1": np.ones((8, 8, 3, 3)), "w2": np.ones((8, 8, 3, 3)), "b": np.ones(8)}
    )
    text = str(graph)
    run_passes(graph, "convert-layout", load_target("reference"))
    run_passes(graph, "convert-layout")
    assert str(graph) == text


def test_unknown_layout_option_is_an_error() -> None:
    import pytest

    from compiler.errors import TapeoutError
    from compiler.pass_manager import build_pipeline

    with pytest.raises(TapeoutError, match="layout must be NCHW or NHWC"):
        build_pipeline("convert-layout{layout=NCWH}")
