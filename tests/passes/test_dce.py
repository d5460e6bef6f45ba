"""dce: unused nodes and constants go; graph inputs stay."""

from __future__ import annotations

import numpy as np

from tests.passes.ir_cases import check_rewrite, check_unchanged


def test_removes_dead_nodes_and_their_constants() -> None:
    before = """
    graph @g(%x: f32[4], %unused: f32[4]) -> (f32[4]) {
      %w: f32[4] = const @w
      %a: f32[4] = nn.relu(%x)
      %b: f32[4] = math.mul(%x, %w)
      %c: f32[4] = math.exp(%b)
      return %a
    }
    """
    after = """
    graph @g(%x: f32[4], %unused: f32[4]) -> (f32[4]) {
      %a: f32[4] = nn.relu(%x)
      return %a
    }
    """
    graph, _ = check_rewrite("dce", before, after, {"w": np.ones(4)})
    assert graph.constants == {}


def test_live_graph_is_unchanged() -> None:
    check_unchanged(
        "dce",
        """
    graph @g(%x: f32[4]) -> (f32[4], f32[4]) {
      %a: f32[4] = nn.relu(%x)
      return %a, %x
    }
    """,
    )
