"""fuse-bias-act: bias adds and activations fold into conv/dense; matmul by a weight -> dense."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.target import load_target
from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections


def test_conv_bias_then_relu(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,3,6,6]) -> (f32[1,8,6,6]) {
      %w: f32[8,3,3,3] = const @conv.weight
      %bias: f32[8,1,1] = const @conv.bias
      %c: f32[1,8,6,6] = nn.conv2d(%x, %w) {pads=[1, 1, 1, 1]}
      %a: f32[1,8,6,6] = math.add(%c, %bias)
      %y: f32[1,8,6,6] = nn.relu(%a)
      return %y
    }
    """
    after = """
    graph @g(%x: f32[1,3,6,6]) -> (f32[1,8,6,6]) {
      %w: f32[8,3,3,3] = const @conv.weight
      %conv.bias: f32[8] = const @conv.bias_1
      %c: f32[1,8,6,6] = nn.conv2d(%x, %w, %conv.bias) {act="relu", pads=[1, 1, 1, 1]}
      return %c
    }
    """
    consts = {"conv.weight": rng.standard_normal((8, 3, 3, 3)), "conv.bias": rng.random((8, 1, 1))}
    check_rewrite("fuse-bias-act", before, after, consts, exact=False)


def test_matmul_by_weight_becomes_dense_with_bias_and_gelu(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[1,4,16]) -> (f32[1,4,10]) {
      %w: f32[16,10] = const @fc.weight
      %b: f32[10] = const @fc.bias
      %m: f32[1,4,10] = nn.matmul(%x, %w)
      %a: f32[1,4,10] = math.add(%b, %m)
      %y: f32[1,4,10] = nn.gelu(%a) {approximate="tanh"}
      return %y
    }
    """
    after = """
    graph @g(%x: f32[1,4,16]) -> (f32[1,4,10]) {
      %b: f32[10] = const @fc.bias
      %fc.weight_t: f32[10,16] = const @fc.weight_t
      %m: f32[1,4,10] = nn.dense(%x, %fc.weight_t, %b) {act="gelu_tanh"}
      return %m
    }
    """
    consts = {"fc.weight": rng.standard_normal((16, 10)), "fc.bias": rng.standard_normal(10)}
    check_rewrite("fuse-bias-act", before, after, consts, exact=False)


def test_bias_adds_onto_existing_bias_and_sub_and_clip(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[2,5]) -> (f32[2,8]) {
      %w: f32[8,5] = const @fc.weight
      %b: f32[8] = const @fc.bias
      %s: f32[] = const @shift
      %d: f32[2,8] = nn.dense(%x, %w, %b)
      %a: f32[2,8] = math.sub(%d, %s)
      %y: f32[2,8] = nn.clip(%a) {max=1.5, min=-0.5}
      return %y
    }
    """
    after = """
    graph @g(%x: f32[2,5]) -> (f32[2,8]) {
      %w: f32[8,5] = const @fc.weight
      %fc.bias: f32[8] = const @fc.bias_1
      %d: f32[2,8] = nn.dense(%x, %w, %fc.bias) {act="clip", act_args=[-0.5, 1.5]}
      return %d
    }
    """
    consts = {
        "fc.weight": rng.standard_normal((8, 5)),
        "fc.bias": rng.standard_normal(8),
        "shift": np.float32(0.25),
    }
    check_rewrite("fuse-bias-act", before, after, consts, exact=False)


@pytest.mark.parametrize(
    ("op", "act"),
    [
        ("nn.relu6", 'act="relu6"'),
        ("nn.clip {max=6.0, min=0.0}", 'act="relu6"'),
        ("nn.leaky_relu {alpha=0.1}", 'act="leaky_relu", act_args=[0.1]'),
        ("nn.sigmoid", 'act="sigmoid"'),
        ("nn.silu", 'act="silu"'),
        ("nn.gelu", 'act="gelu"'),
        ("nn.hardswish", 'act="hardswish"'),
        ("math.tanh", 'act="tanh"'),
    ],
)
def test_every_activation_fuses(op: str, act: str, rng: np.random.Generator) -> None:
    name, _, attrs = op.partition(" ")
    before = f"""
    graph @g(%x: f32[2,5]) -> (f32[2,8]) {{
      %w: f32[8,5] = const @w
      %d: f32[2,8] = nn.dense(%x, %w)
      %y: f32[2,8] = {name}(%d) {attrs}
      return %y
    }}
    """
    after = f"""
    graph @g(%x: f32[2,5]) -> (f32[2,8]) {{
      %w: f32[8,5] = const @w
      %d: f32[2,8] = nn.dense(%x, %w) {{{act}}}
      return %d
    }}
    """
    check_rewrite("fuse-bias-act", before, after, {"w": rng.standard_normal((8, 5))}, exact=False)


REJECTED = {
    "conv output has other users": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w)
      %y: f32[1,8,4,4] = nn.relu(%c)
      %z: f32[1,8,4,4] = math.add(%y, %c)
      return %z
    """,
    "conv already has a fused activation": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w) {act="relu"}
      %y: f32[1,8,4,4] = math.add(%c, %bias)
      return %y
    """,
    "added constant is not a per-channel bias": """
      %c: f32[1,8,4,4] = nn.conv2d(%x, %w)
      %y: f32[1,8,4,4] = math.add(%c, %spatial)
      return %y
    """,
}


@pytest.mark.parametrize("reason", sorted(REJECTED))
def test_rejections(reason: str, rng: np.random.Generator) -> None:
    before = f"""
    graph @g(%x: f32[1,3,4,4]) -> (f32[1,8,4,4]) {{
      %w: f32[8,3,1,1] = const @w
      %bias: f32[8,1,1] = const @bias
      %spatial: f32[4,4] = const @spatial
      {REJECTED[reason]}
    }}
    """
    consts = {
        "w": rng.standard_normal((8, 3, 1, 1)),
        "bias": rng.standard_normal((8, 1, 1)),
        "spatial": rng.standard_normal((4, 4)),
    }
    stats = check_unchanged("fuse-bias-act", before, consts)
    assert reason in rejections(stats, "fuse-bias-act")


def test_hls_backend_fuses_only_relu_family(rng: np.random.Generator) -> None:
    before = """
    graph @g(%x: f32[2,5]) -> (f32[2,8], f32[2,8]) {
      %w: f32[8,5] = const @w
      %d: f32[2,8] = nn.dense(%x, %w)
      %y: f32[2,8] = nn.sigmoid(%d)
      %e: f32[2,8] = nn.dense(%x, %w)
      %z: f32[2,8] = nn.relu6(%e)
      return %y, %z
    }
    """
    after = """
    graph @g(%x: f32[2,5]) -> (f32[2,8], f32[2,8]) {
      %w: f32[8,5] = const @w
      %d: f32[2,8] = nn.dense(%x, %w)
      %y: f32[2,8] = nn.sigmoid(%d)
      %e: f32[2,8] = nn.dense(%x, %w) {act="relu6"}
      return %y, %e
    }
    """
    hls = load_target("zcu104")
    _, stats = check_rewrite(
        "fuse-bias-act", before, after, {"w": rng.standard_normal((8, 5))}, target=hls, exact=False
    )
    reasons = set(rejections(stats, "fuse-bias-act"))
    assert reasons == {"backend hls has no kernel with fused sigmoid"}


def test_matmul_by_a_transposed_constant_uses_it_as_the_dense_weight(
    rng: np.random.Generator,
) -> None:
    before = """
    graph @g(%x: f32[3,16]) -> (f32[3,10]) {
      %w: f32[10,16] = const @fc.weight
      %t: f32[16,10] = tensor.transpose(%w) {perm=[1, 0]}
      %m: f32[3,10] = nn.matmul(%x, %t)
      return %m
    }
    """
    after = """
    graph @g(%x: f32[3,16]) -> (f32[3,10]) {
      %w: f32[10,16] = const @fc.weight
      %m: f32[3,10] = nn.dense(%x, %w)
      return %m
    }
    """
    check_rewrite(
        "fuse-bias-act", before, after, {"fc.weight": rng.standard_normal((10, 16))}, exact=False
    )
