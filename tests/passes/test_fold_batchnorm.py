"""fold-batchnorm: batch norm folds into conv/dense weights, and says why when it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from tests.passes.ir_cases import check_rewrite, check_unchanged, graph_from, rejections


def _bn(rng: np.random.Generator, c: int, prefix: str = "bn") -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": 0.5 + rng.random(c),
        f"{prefix}.bias": rng.standard_normal(c),
        f"{prefix}.mean": 0.1 * rng.standard_normal(c),
        f"{prefix}.var": 0.5 + rng.random(c),
    }


BN_CONSTS = """
      %g: f32[8] = const @bn.weight
      %beta: f32[8] = const @bn.bias
      %m: f32[8] = const @bn.mean
      %v: f32[8] = const @bn.var
"""


def test_folds_into_conv_without_bias(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,3,6,6]) -> (f32[1,8,6,6]) {{
      %w: f32[8,3,3,3] = const @conv.weight
      {BN_CONSTS}
      %c: f32[1,8,6,6] = nn.conv2d(%x, %w) {{pads=[1, 1, 1, 1]}}
      %y: f32[1,8,6,6] = nn.batch_norm(%c, %g, %beta, %m, %v) {{eps=0.001}} loc("bn")
      return %y
    }}
    """
    after = """
    graph @g(%x: f32[1,3,6,6]) -> (f32[1,8,6,6]) {
      %conv.weight_bn: f32[8,3,3,3] = const @conv.weight_bn
      %conv.bias_bn: f32[8] = const @conv.bias_bn
      %c: f32[1,8,6,6] = nn.conv2d(%x, %conv.weight_bn, %conv.bias_bn) {pads=[1,1,1,1]} fused("bn")
      return %c
    }
    """
    consts = {"conv.weight": rng.standard_normal((8, 3, 3, 3)), **_bn(rng, 8)}
    check_rewrite("fold-batchnorm", before, after, consts, exact=False)


def test_folds_into_conv1d_with_bias_and_dense(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[2,3,10], %h: f32[2,5]) -> (f32[2,8,10], f32[2,8]) {{
      %w: f32[8,3,3] = const @c1.weight
      %b: f32[8] = const @c1.bias
      %wd: f32[8,5] = const @fc.weight
      {BN_CONSTS}
      %c: f32[2,8,10] = nn.conv1d(%x, %w, %b) {{pads=[1, 1]}}
      %y: f32[2,8,10] = nn.batch_norm(%c, %g, %beta, %m, %v)
      %d: f32[2,8] = nn.dense(%h, %wd)
      %z: f32[2,8] = nn.batch_norm(%d, %g, %beta, %m, %v)
      return %y, %z
    }}
    """
    after = """
    graph @g(%x: f32[2,3,10], %h: f32[2,5]) -> (f32[2,8,10], f32[2,8]) {
      %c1.weight_bn: f32[8,3,3] = const @c1.weight_bn
      %c1.bias_bn: f32[8] = const @c1.bias_bn
      %fc.weight_bn: f32[8,5] = const @fc.weight_bn
      %fc.bias_bn: f32[8] = const @fc.bias_bn
      %c: f32[2,8,10] = nn.conv1d(%x, %c1.weight_bn, %c1.bias_bn) {pads=[1, 1]}
      %d: f32[2,8] = nn.dense(%h, %fc.weight_bn, %fc.bias_bn)
      return %c, %d
    }
    """
    consts = {
        "c1.weight": rng.standard_normal((8, 3, 3)),
        "c1.bias": rng.standard_normal(8),
        "fc.weight": rng.standard_normal((8, 5)),
        **_bn(rng, 8),
    }
    check_rewrite("fold-batchnorm", before, after, consts, exact=False)


REJECTED = {
    "batch_norm parameters are not constant": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w)
      %y: f32[1,8,4,4] = nn.batch_norm(%c, %scale, %beta, %m, %v)
      return %y
    """,
    "conv output has other users": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w)
      %y: f32[1,8,4,4] = nn.batch_norm(%c, %g, %beta, %m, %v)
      return %y, %c
    """,
    "conv already has a fused activation": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w) {act="relu"}
      %y: f32[1,8,4,4] = nn.batch_norm(%c, %g, %beta, %m, %v)
      return %y
    """,
    "conv weight is not constant": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %wx)
      %y: f32[1,8,4,4] = nn.batch_norm(%c, %g, %beta, %m, %v)
      return %y
    """,
    "no conv or dense before batch_norm (set decompose_standalone)": """
      %r: f32[1,8,4,4] = nn.relu(%x8)
      %y: f32[1,8,4,4] = nn.batch_norm(%r, %g, %beta, %m, %v)
      return %y
    """,
}


@pytest.mark.parametrize("reason", sorted(REJECTED))
def test_rejections(reason: str, rng: np.random.Generator) -> None:
    body = REJECTED[reason]
    outputs = "f32[1,8,4,4], f32[1,8,4,4]" if "%y, %c" in body else "f32[1,8,4,4]"
    inputs = "%x: f32[1,3,4,4], %scale: f32[8], %wx: f32[8,3,1,1], %x8: f32[1,8,4,4]"
    before = f"""
    graph @g({inputs}) -> ({outputs}) {{
      %w: f32[8,3,1,1] = const @conv.weight
      {BN_CONSTS}
      {body}
    }}
    """
    consts = {"conv.weight": rng.standard_normal((8, 3, 1, 1)), **_bn(rng, 8)}
    stats = check_unchanged("fold-batchnorm", before, consts)
    assert rejections(stats, "fold-batchnorm") == {reason: 1}


def test_standalone_batch_norm_decomposes_on_request(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,8,4,4]) {{
      {BN_CONSTS}
      %y: f32[1,8,4,4] = nn.batch_norm(%x, %g, %beta, %m, %v)
      return %y
    }}
    """
    after = """
    graph @g(%x: f32[1,8,4,4]) -> (f32[1,8,4,4]) {
      %y.scale: f32[8,1,1] = const @y.scale
      %y.shift: f32[8,1,1] = const @y.shift
      %y_scaled: f32[1,8,4,4] = math.mul(%x, %y.scale)
      %y: f32[1,8,4,4] = math.add(%y_scaled, %y.shift)
      return %y
    }
    """
    check_rewrite(
        "fold-batchnorm{decompose_standalone=true}", before, after, _bn(rng, 8), exact=False
    )
    graph = graph_from(before, _bn(rng, 8))
    assert graph.op_counts() == {"nn.batch_norm": 1}
