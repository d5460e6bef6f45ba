"""fuse-residual: skip connections become the conv's residual operand, with the activation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections


def test_add_then_relu_moves_onto_the_conv(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,8,6,6]) -> (f32[1,8,6,6]) {
      %w: f32[8,8,3,3] = const @conv.weight
      %c: f32[1,8,6,6] = nn.conv2d(%x, %w) {pads=[1, 1, 1, 1]}
      %s: f32[1,8,6,6] = math.add(%x, %c)
      %y: f32[1,8,6,6] = nn.relu(%s)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[1,8,6,6]) -> (f32[1,8,6,6]) {
      %w: f32[8,8,3,3] = const @conv.weight
      %conv.bias: f32[8] = const @conv.bias
      %c: f32[1,8,6,6] = nn.conv2d(%x, %w, %conv.bias, %x) {act="relu", pads=[1, 1, 1, 1]}
      return %c
    }
    """
    consts = {"conv.weight": rng.standard_normal((8, 8, 3, 3))}
    check_rewrite("fuse-residual", before, after, consts, exact=False)


def test_two_convs_the_later_takes_the_earlier_as_residual(rng: np.random.Generator) -> None:
    # A ResNet downsampling block: body conv, then the projection conv of the skip.
    before = """
    graph @g(%x: f32[1,4,6,6]) -> (f32[1,8,6,6]) {
      %w1: f32[8,4,3,3] = const @body.weight
      %b1: f32[8] = const @body.bias
      %w2: f32[8,4,1,1] = const @down.weight
      %b2: f32[8] = const @down.bias
      %body: f32[1,8,6,6] = nn.conv2d(%x, %w1, %b1) {pads=[1, 1, 1, 1]}
      %down: f32[1,8,6,6] = nn.conv2d(%x, %w2, %b2)
      %s: f32[1,8,6,6] = math.add(%body, %down)
      %y: f32[1,8,6,6] = nn.relu(%s)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[1,4,6,6]) -> (f32[1,8,6,6]) {
      %w1: f32[8,4,3,3] = const @body.weight
      %b1: f32[8] = const @body.bias
      %w2: f32[8,4,1,1] = const @down.weight
      %b2: f32[8] = const @down.bias
      %body: f32[1,8,6,6] = nn.conv2d(%x, %w1, %b1) {pads=[1, 1, 1, 1]}
      %down: f32[1,8,6,6] = nn.conv2d(%x, %w2, %b2, %body) {act="relu"}
      return %down
    }
    """
    consts = {
        "body.weight": rng.standard_normal((8, 4, 3, 3)),
        "body.bias": rng.standard_normal(8),
        "down.weight": rng.standard_normal((8, 4, 1, 1)),
        "down.bias": rng.standard_normal(8),
    }
    check_rewrite("fuse-residual", before, after, consts, exact=False)


def test_conv_moves_below_a_skip_computed_after_it(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,8,4,4]) {
      %w: f32[8,8,1,1] = const @w
      %b: f32[8] = const @b
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b)
      %skip: f32[1,8,4,4] = nn.sigmoid(%x)
      %s: f32[1,8,4,4] = math.add(%c, %skip)
      return %s
    }
    """
    after = """
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,8,4,4]) {
      %w: f32[8,8,1,1] = const @w
      %b: f32[8] = const @b
      %skip: f32[1,8,4,4] = nn.sigmoid(%x)
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b, %skip)
      return %c
    }
    """
    consts = {"w": rng.standard_normal((8, 8, 1, 1)), "b": rng.standard_normal(8)}
    check_rewrite("fuse-residual", before, after, consts, exact=False)


REJECTED = {
    "conv output has other users": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b)
      %s: f32[1,8,4,4] = math.add(%c, %x)
      %y: f32[1,8,4,4] = math.mul(%s, %c)
      return %y
    """,
    "conv already has a fused activation": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b) {act="relu"}
      %s: f32[1,8,4,4] = math.add(%c, %x)
      return %s
    """,
    "conv already has a residual": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b, %x)
      %s: f32[1,8,4,4] = math.add(%c, %x)
      return %s
    """,
    "residual shape differs from the conv output (no broadcasting residuals)": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w, %b)
      %s: f32[1,8,4,4] = math.add(%c, %row)
      return %s
    """,
}


@pytest.mark.parametrize("reason", sorted(REJECTED))
def test_rejections(reason: str, rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,8,4,4], %row: f32[1,8,1,4]) -> (f32[1,8,4,4]) {{
      %w: f32[8,8,1,1] = const @w
      %b: f32[8] = const @b
      {REJECTED[reason]}
    }}
    """
    consts = {"w": rng.standard_normal((8, 8, 1, 1)), "b": rng.standard_normal(8)}
    stats = check_unchanged("fuse-residual", before, consts)
    assert rejections(stats, "fuse-residual") == {reason: 1}
