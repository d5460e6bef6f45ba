"""fold-constants: constant subgraphs are evaluated with the interpreter's own kernels."""

from __future__ import annotations

import numpy as np

from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections


def test_folds_a_chain_of_constant_ops() -> None:
    before = """
    graph @g(%x: f32[2,4]) -> (f32[2,4]) {
      %s: f32[4] = const @s
      %t: f32[4] = math.sqrt(%s)
      %u: f32[1,4] = tensor.unsqueeze(%t) {axes=[0]}
      %y: f32[2,4] = math.mul(%x, %u)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,4]) -> (f32[2,4]) {
      %u_1: f32[1,4] = const @u
      %y: f32[2,4] = math.mul(%x, %u_1)
      return %y
    }
    """
    graph, _ = check_rewrite("fold-constants", before, after, {"s": np.arange(4.0)})
    want = np.sqrt(np.arange(4, dtype=np.float32))[None]
    np.testing.assert_array_equal(graph.constants["u"], want)


def test_folds_shape_of_a_static_tensor_and_range() -> None:
    before = """
    graph @g(%x: f32[2,3]) -> (i64[2], i64[5]) {
      %s: i64[2] = tensor.shape(%x)
      %r: i64[5] = tensor.range() {limit=5}
      return %s, %r
    }
    """
    after = """
    graph @g(%x: f32[2,3]) -> (i64[2], i64[5]) {
      %s_1: i64[2] = const @s
      %r_1: i64[5] = const @r
      return %s_1, %r_1
    }
    """
    graph, _ = check_rewrite("fold-constants", before, after)
    assert graph.constants["s"].tolist() == [2, 3]


def test_multi_output_split_folds() -> None:
    before = """
    graph @g(%x: f32[3]) -> (f32[3]) {
      %c: f32[6] = const @c
      %a: f32[3], %b: f32[3] = tensor.split(%c) {axis=0, sizes=[3, 3]}
      %y: f32[3] = math.add(%a, %x)
      %z: f32[3] = math.mul(%y, %b)
      return %z
    }
    """
    after = """
    graph @g(%x: f32[3]) -> (f32[3]) {
      %a_1: f32[3] = const @a
      %b_1: f32[3] = const @b
      %y: f32[3] = math.add(%a_1, %x)
      %z: f32[3] = math.mul(%y, %b_1)
      return %z
    }
    """
    check_rewrite("fold-constants", before, after, {"c": np.arange(6.0)})


def test_rejects_outputs_over_the_size_limit() -> None:
    before = """
    graph @g(%x: f32[64,64]) -> (f32[64,64]) {
      %c: f32[] = const @c
      %e: f32[64,64] = tensor.expand(%c) {shape=[64, 64]}
      %y: f32[64,64] = math.add(%x, %e)
      return %y
    }
    """
    stats = check_unchanged("fold-constants{max_elements=1000}", before, {"c": np.float32(2)})
    assert rejections(stats, "fold-constants") == {"output has 4096 >= max_elements elements": 1}


def test_symbolic_shape_does_not_fold() -> None:
    before = """
    graph @g(%x: f32[n,3]) -> (i64[2]) {
      %s: i64[2] = tensor.shape(%x)
      return %s
    }
    """
    check_unchanged("fold-constants", before)
