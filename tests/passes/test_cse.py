"""cse: identical computations merge; constants merge by name or, when small, by content."""

from __future__ import annotations

import numpy as np

from tests.passes.ir_cases import check_rewrite, check_unchanged


def test_merges_identical_nodes_and_equal_small_constants() -> None:
    before = """
    graph @g(%x: f32[1,4]) -> (f32[1,4]) {
      %c1: f32[4] = const @c1
      %c2: f32[4] = const @c2
      %a: f32[1,4] = math.mul(%x, %c1)
      %b: f32[1,4] = math.mul(%x, %c2)
      %ra: f32[1,4] = nn.relu(%a)
      %rb: f32[1,4] = nn.relu(%b)
      %y: f32[1,4] = math.add(%ra, %rb)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[1,4]) -> (f32[1,4]) {
      %c1: f32[4] = const @c1
      %a: f32[1,4] = math.mul(%x, %c1)
      %ra: f32[1,4] = nn.relu(%a)
      %y: f32[1,4] = math.add(%ra, %ra)
      return %y
    }
    """
    check_rewrite("cse", before, after, {"c1": np.arange(4.0), "c2": np.arange(4.0)})


def test_keeps_constants_with_different_data_and_different_attributes() -> None:
    before = """
    graph @g(%x: f32[1,4]) -> (f32[1,4], f32[1,4], f32[1,4]) {
      %c1: f32[4] = const @c1
      %c2: f32[4] = const @c2
      %a: f32[1,4] = math.mul(%x, %c1)
      %b: f32[1,4] = math.mul(%x, %c2)
      %l1: f32[1,4] = nn.leaky_relu(%x) {alpha=0.1}
      %l2: f32[1,4] = nn.leaky_relu(%x) {alpha=0.2}
      %y: f32[1,4] = math.add(%l1, %l2)
      return %a, %b, %y
    }
    """
    check_unchanged("cse", before, {"c1": np.arange(4.0), "c2": np.arange(1.0, 5.0)})


def test_large_constants_merge_only_by_name() -> None:
    before = """
    graph @g(%x: f32[1,8]) -> (f32[1,8], f32[1,8]) {
      %c1: f32[8] = const @c1
      %c2: f32[8] = const @c2
      %a: f32[1,8] = math.mul(%x, %c1)
      %b: f32[1,8] = math.mul(%x, %c2)
      return %a, %b
    }
    """
    check_unchanged("cse{max_const_elements=4}", before, {"c1": np.ones(8), "c2": np.ones(8)})
    shared = """
    graph @g(%x: f32[1,8]) -> (f32[1,8], f32[1,8]) {
      %c1: f32[8] = const @c
      %c2: f32[8] = const @c
      %a: f32[1,8] = math.mul(%x, %c1)
      %b: f32[1,8] = math.mul(%x, %c2)
      return %a, %b
    }
    """
    merged = """
    graph @g(%x: f32[1,8]) -> (f32[1,8], f32[1,8]) {
      %c1: f32[8] = const @c
      %a: f32[1,8] = math.mul(%x, %c1)
      return %a, %a
    }
    """
    check_rewrite("cse{max_const_elements=4}", shared, merged, {"c": np.ones(8)})
