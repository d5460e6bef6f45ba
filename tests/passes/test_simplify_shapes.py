"""simplify-shapes: shape arithmetic folds; redundant reshapes and transposes disappear."""

from __future__ import annotations

import numpy as np

from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections


def test_shape_chain_becomes_constants() -> None:
    before = """
    graph @g(%x: f32[2,3,4]) -> (f32[2,12]) {
      %idx: i64[] = const @idx
      %s: i64[3] = tensor.shape(%x)
      %b: i64[] = tensor.gather(%s, %idx) {axis=0}
      %y: f32[2,12] = tensor.reshape(%x) {shape=[2, 12]}
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,3,4]) -> (f32[2,12]) {
      %y: f32[2,12] = tensor.reshape(%x) {shape=[2, 12]}
      return %y
    }
    """
    graph, _ = check_rewrite("simplify-shapes", before, after, {"idx": np.int64(0)})


def test_reshape_chains_and_no_op_reshapes() -> None:
    before = """
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,128], f32[1,8,4,4], f32[1,8,4,4], f32[8,16]) {
      %a: f32[1,8,16] = tensor.reshape(%x) {shape=[1, 8, 16]}
      %b: f32[1,128] = tensor.reshape(%a) {shape=[1, -1]}
      %same: f32[1,8,4,4] = tensor.reshape(%x) {shape=[1, 8, 4, 4]}
      %sq: f32[8,4,4] = tensor.squeeze(%x) {axes=[0]}
      %back: f32[1,8,4,4] = tensor.unsqueeze(%sq) {axes=[0]}
      %f: f32[8,16] = tensor.flatten(%sq) {axis=1}
      return %b, %same, %back, %f
    }
    """
    after = """
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,128], f32[1,8,4,4], f32[1,8,4,4], f32[8,16]) {
      %b: f32[1,128] = tensor.reshape(%x) {shape=[1, -1]}
      %f: f32[8,16] = tensor.reshape(%x) {shape=[8, 16]}
      return %b, %x, %x, %f
    }
    """
    check_rewrite("simplify-shapes", before, after)


def test_transposes_compose_and_identity_disappears() -> None:
    before = """
    graph @g(%x: f32[1,2,3,4]) -> (f32[1,2,3,4], f32[1,3,4,2], f32[1,2,3,4]) {
      %t: f32[1,3,4,2] = tensor.transpose(%x) {perm=[0, 2, 3, 1]}
      %u: f32[1,2,3,4] = tensor.transpose(%t) {perm=[0, 3, 1, 2]}
      %v: f32[1,4,3,2] = tensor.transpose(%t) {perm=[0, 2, 1, 3]}
      %w: f32[1,3,4,2] = tensor.transpose(%v) {perm=[0, 2, 1, 3]}
      %id: f32[1,2,3,4] = tensor.transpose(%x) {perm=[0, 1, 2, 3]}
      return %u, %w, %id
    }
    """
    after = """
    graph @g(%x: f32[1,2,3,4]) -> (f32[1,2,3,4], f32[1,3,4,2], f32[1,2,3,4]) {
      %w: f32[1,3,4,2] = tensor.transpose(%x) {perm=[0, 2, 3, 1]}
      return %x, %w, %x
    }
    """
    check_rewrite("simplify-shapes", before, after)


def test_composed_transpose_keeps_the_later_node() -> None:
    before = """
    graph @g(%x: f32[1,2,3,4]) -> (f32[1,4,2,3]) {
      %t: f32[1,3,4,2] = tensor.transpose(%x) {perm=[0, 2, 3, 1]}
      %u: f32[1,4,2,3] = tensor.transpose(%t) {perm=[0, 2, 3, 1]}
      return %u
    }
    """
    after = """
    graph @g(%x: f32[1,2,3,4]) -> (f32[1,4,2,3]) {
      %u: f32[1,4,2,3] = tensor.transpose(%x) {perm=[0, 3, 1, 2]}
      return %u
    }
    """
    check_rewrite("simplify-shapes", before, after)


def test_full_slice_and_single_concat() -> None:
    before = """
    graph @g(%x: f32[2,4]) -> (f32[2,4], f32[2,2]) {
      %s: f32[2,4] = tensor.slice(%x) {starts=[0], ends=[9223372036854775807], axes=[1]}
      %c: f32[2,4] = tensor.concat(%s) {axis=0}
      %h: f32[2,2] = tensor.slice(%c) {starts=[0], ends=[2], axes=[1]}
      return %c, %h
    }
    """
    after = """
    graph @g(%x: f32[2,4]) -> (f32[2,4], f32[2,2]) {
      %h: f32[2,2] = tensor.slice(%x) {axes=[1], ends=[2], starts=[0]}
      return %x, %h
    }
    """
    check_rewrite("simplify-shapes", before, after)


def test_symbolic_reshape_chain_that_cannot_merge_is_rejected() -> None:
    before = """
    graph @g(%x: f32[n,8]) -> (f32[n*2*2,2]) {
      %a: f32[n*2,4] = tensor.reshape(%x) {shape=[-1, 4]}
      %y: f32[n*2*2,2] = tensor.reshape(%a) {shape=[-1, 2]}
      return %y
    }
    """
    stats = check_unchanged("simplify-shapes", before)
    assert rejections(stats, "simplify-shapes")


def test_symbolic_reshape_chain_merges_when_the_symbols_carry_over() -> None:
    before = """
    graph @g(%x: f32[b,8]) -> (f32[b,2,2,2]) {
      %a: f32[b,4,2] = tensor.reshape(%x) {shape=["b", 4, 2]}
      %y: f32[b,2,2,2] = tensor.reshape(%a) {shape=["b", 2, 2, -1]}
      return %y
    }
    """
    after = """
    graph @g(%x: f32[b,8]) -> (f32[b,2,2,2]) {
      %y: f32[b,2,2,2] = tensor.reshape(%x) {shape=["b", 2, 2, -1]}
      return %y
    }
    """
    check_rewrite("simplify-shapes", before, after)
