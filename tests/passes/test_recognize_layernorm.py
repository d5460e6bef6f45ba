"""recognize-layernorm: the spelled-out layer norm (ONNX before opset 17) -> nn.layer_norm."""

from __future__ import annotations

import numpy as np
import pytest

from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections

CONSTS = """
      %two: f32[] = const @two
      %eps: f32[] = const @eps
      %gamma: f32[8] = const @ln.weight
      %beta: f32[8] = const @ln.bias
"""

#: How exporters spell 1 / sqrt(var + eps) * d.
NORMALIZE = {
    "div-sqrt": """
      %s: f32[1,4,1] = math.sqrt(%e)
      %n: f32[1,4,8] = math.div(%d, %s)
    """,
    "mul-rsqrt": """
      %s: f32[1,4,1] = math.rsqrt(%e)
      %n: f32[1,4,8] = math.mul(%s, %d)
    """,
    "mul-reciprocal-sqrt": """
      %r: f32[1,4,1] = math.sqrt(%e)
      %s: f32[1,4,1] = math.reciprocal(%r)
      %n: f32[1,4,8] = math.mul(%d, %s)
    """,
}


def _consts(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "two": np.float32(2),
        "eps": np.float32(1e-5),
        "ln.weight": 0.5 + rng.random(8),
        "ln.bias": rng.standard_normal(8),
    }


@pytest.mark.parametrize("form", sorted(NORMALIZE))
@pytest.mark.parametrize("square", ["math.pow(%d, %two)", "math.mul(%d, %d)"])
def test_decomposed_layer_norm(form: str, square: str, rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,4,8]) -> (f32[1,4,8]) {{
      {CONSTS}
      %m: f32[1,4,1] = math.reduce_mean(%x) {{axes=[-1], keepdims=true}}
      %d: f32[1,4,8] = math.sub(%x, %m)
      %p: f32[1,4,8] = {square}
      %v: f32[1,4,1] = math.reduce_mean(%p) {{axes=[-1], keepdims=true}}
      %e: f32[1,4,1] = math.add(%v, %eps)
      {NORMALIZE[form]}
      %g: f32[1,4,8] = math.mul(%n, %gamma)
      %y: f32[1,4,8] = math.add(%beta, %g) loc("ln")
      return %y
    }}
    """
    after = """
    graph @g(%x: f32[1,4,8]) -> (f32[1,4,8]) {
      %gamma: f32[8] = const @ln.weight
      %beta: f32[8] = const @ln.bias
      %y: f32[1,4,8] = nn.layer_norm(%x, %gamma, %beta) {axis=2, eps=9.999999747378752e-06} \
loc("ln")
      return %y
    }
    """
    check_rewrite("recognize-layernorm", before, after, _consts(rng), exact=False)


def test_without_affine_and_over_two_axes(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[2,3,8]) -> (f32[2,3,8]) {{
      {CONSTS}
      %m: f32[2,1,1] = math.reduce_mean(%x) {{axes=[1, 2], keepdims=true}}
      %d: f32[2,3,8] = math.sub(%x, %m)
      %p: f32[2,3,8] = math.pow(%d, %two)
      %v: f32[2,1,1] = math.reduce_mean(%p) {{axes=[-2, -1], keepdims=true}}
      %e: f32[2,1,1] = math.add(%v, %eps)
      %s: f32[2,1,1] = math.sqrt(%e)
      %n: f32[2,3,8] = math.div(%d, %s)
      return %n
    }}
    """
    after = """
    graph @g(%x: f32[2,3,8]) -> (f32[2,3,8]) {
      %n: f32[2,3,8] = nn.layer_norm(%x) {axis=1, eps=9.999999747378752e-06}
      return %n
    }
    """
    check_rewrite("recognize-layernorm", before, after, _consts(rng), exact=False)


def test_beta_without_gamma_gets_ones_and_broadcast_shaped_params(
    rng: np.random.Generator,
) -> None:
    before = f"""
    graph @g(%x: f32[1,4,8]) -> (f32[1,4,8]) {{
      {CONSTS}
      %b3: f32[1,1,8] = const @b3
      %m: f32[1,4,1] = math.reduce_mean(%x) {{axes=[2], keepdims=true}}
      %d: f32[1,4,8] = math.sub(%x, %m)
      %p: f32[1,4,8] = math.mul(%d, %d)
      %v: f32[1,4,1] = math.reduce_mean(%p) {{axes=[2], keepdims=true}}
      %e: f32[1,4,1] = math.add(%eps, %v)
      %s: f32[1,4,1] = math.rsqrt(%e)
      %n: f32[1,4,8] = math.mul(%d, %s)
      %y: f32[1,4,8] = math.add(%n, %b3)
      return %y
    }}
    """
    after = """
    graph @g(%x: f32[1,4,8]) -> (f32[1,4,8]) {
      %b3_1: f32[8] = const @b3_1
      %b3_1_gamma: f32[8] = const @b3_1_gamma
      %y: f32[1,4,8] = nn.layer_norm(%x, %b3_1_gamma, %b3_1) {axis=2, eps=9.999999747378752e-06}
      return %y
    }
    """
    consts = {**_consts(rng), "b3": rng.standard_normal((1, 1, 8))}
    check_rewrite("recognize-layernorm", before, after, consts, exact=False)


def test_rejects_when_an_intermediate_is_used_elsewhere(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,4,8]) -> (f32[1,4,8], f32[1,4,1]) {{
      {CONSTS}
      %m: f32[1,4,1] = math.reduce_mean(%x) {{axes=[-1], keepdims=true}}
      %d: f32[1,4,8] = math.sub(%x, %m)
      %p: f32[1,4,8] = math.pow(%d, %two)
      %v: f32[1,4,1] = math.reduce_mean(%p) {{axes=[-1], keepdims=true}}
      %e: f32[1,4,1] = math.add(%v, %eps)
      %s: f32[1,4,1] = math.sqrt(%e)
      %n: f32[1,4,8] = math.div(%d, %s)
      return %n, %v
    }}
    """
    stats = check_unchanged("recognize-layernorm", before, _consts(rng))
    assert set(rejections(stats, "recognize-layernorm")) == {
        "an intermediate of the normalization has other users"
    }


def test_rejects_different_axes(rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[2,3,8]) -> (f32[2,3,8]) {{
      {CONSTS}
      %m: f32[2,3,1] = math.reduce_mean(%x) {{axes=[2], keepdims=true}}
      %d: f32[2,3,8] = math.sub(%x, %m)
      %p: f32[2,3,8] = math.pow(%d, %two)
      %v: f32[2,1,1] = math.reduce_mean(%p) {{axes=[1, 2], keepdims=true}}
      %e: f32[2,1,1] = math.add(%v, %eps)
      %s: f32[2,1,1] = math.sqrt(%e)
      %n: f32[2,3,8] = math.div(%d, %s)
      return %n
    }}
    """
    stats = check_unchanged("recognize-layernorm", before, _consts(rng))
    assert set(rejections(stats, "recognize-layernorm")) == {
        "mean and variance are not over the same trailing axes"
    }
