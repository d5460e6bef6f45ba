"""remove-identity: dropout, identity, same-type casts and no-op expands disappear."""

from __future__ import annotations

from tests.passes.ir_cases import check_rewrite, check_unchanged


def test_removes_every_kind_of_identity() -> None:
    before = """
    graph @g(%x: f32[2,4]) -> (f32[2,4]) {
      %d: f32[2,4] = nn.dropout(%x) {p=0.1}
      %i: f32[2,4] = tensor.identity(%d)
      %c: f32[2,4] = tensor.cast(%i) {to="f32"}
      %e: f32[2,4] = tensor.expand(%c) {shape=[2, 4]}
      %y: f32[2,4] = nn.relu(%e)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,4]) -> (f32[2,4]) {
      %y: f32[2,4] = nn.relu(%x)
      return %y
    }
    """
    check_rewrite("remove-identity", before, after)


def test_bypassed_output_becomes_the_operand() -> None:
    before = """
    graph @g(%x: f32[4]) -> (f32[4]) {
      %d: f32[4] = nn.dropout(%x)
      return %d
    }
    """
    after = """
    graph @g(%x: f32[4]) -> (f32[4]) {
      return %x
    }
    """
    check_rewrite("remove-identity", before, after)


def test_keeps_real_casts_and_expands() -> None:
    check_unchanged(
        "remove-identity",
        """
    graph @g(%x: f32[1,4], %s: f32[n,4]) -> (f16[1,4], f32[3,4], f32[n,4]) {
      %c: f16[1,4] = tensor.cast(%x) {to="f16"}
      %e: f32[3,4] = tensor.expand(%x) {shape=[3, 4]}
      %r: f32[n,4] = nn.relu(%s)
      return %c, %e, %r
    }
    """,
    )
