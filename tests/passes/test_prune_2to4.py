"""prune-2to4: the 2:4 pattern along the input dimension, ``is_2to4``, layers left dense."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.context import PassContext
from compiler.ir import verify
from compiler.pass_manager import run_pipeline
from passes.prune_2to4 import is_2to4, mask_2to4, prune_2to4
from tests.passes.ir_cases import graph_from

CNN = """
graph @cnn(%x: f32[1,3,6,6]) -> (f32[1,4]) {
  %w1: f32[8,3,3,3] = const @conv1.weight
  %w2: f32[8,8,3,3] = const @conv2.weight
  %w3: f32[4,8] = const @fc.weight
  %c1: f32[1,8,6,6] = nn.conv2d(%x, %w1) {pads=[1,1,1,1], act="relu"} loc("conv1")
  %c2: f32[1,8,6,6] = nn.conv2d(%c1, %w2) {pads=[1,1,1,1], act="relu"} loc("conv2")
  %p: f32[1,8,1,1] = nn.global_avg_pool(%c2)
  %f: f32[1,8] = tensor.reshape(%p) {shape=[1,8]}
  %y: f32[1,4] = nn.dense(%f, %w3) loc("fc")
  return %y
}
"""


def cnn():
    rng = np.random.default_rng(0)
    shapes = {"conv1.weight": (8, 3, 3, 3), "conv2.weight": (8, 8, 3, 3), "fc.weight": (4, 8)}
    return graph_from(CNN, {k: rng.standard_normal(s) for k, s in shapes.items()})


def test_is_2to4_checks_groups_along_the_input_axis() -> None:
    ok = np.array([[1.0, 0, 2, 0, 0, 0, 3, 4]])
    assert is_2to4(ok)
    assert not is_2to4(np.array([[1.0, 2, 3, 0]]))  # three non-zeros in a group
    assert not is_2to4(np.zeros((2, 6)))  # 6 is not a multiple of 4
    assert not is_2to4(np.zeros(8))  # a vector is no weight matrix
    conv = np.zeros((2, 8, 3, 3))
    conv[:, 0] = conv[:, 5] = 1.0
    assert is_2to4(conv)
    conv[:, 1] = 1.0  # input channels 0..3 now hold two non-zeros: still 2:4
    assert is_2to4(conv)
    conv[:, 2] = 1.0
    assert not is_2to4(conv)


def test_mask_keeps_the_two_largest_of_each_group() -> None:
    magnitude = np.array([[0.9, 0.1, 0.3, 0.05, 1, 2, 3, 4]])
    np.testing.assert_array_equal(
        mask_2to4(magnitude), [[True, False, True, False, False, False, True, True]]
    )


def test_pass_makes_every_eligible_weight_2to4_and_leaves_rgb_conv_dense() -> None:
    g = cnn()
    before = {k: v.copy() for k, v in g.constants.items()}
    ctx = PassContext()
    run_pipeline(g, "prune-2to4", ctx, verify_each=True)
    reports = ctx.prune_reports
    verify(g)
    assert is_2to4(g.constants["conv2.weight"]) and is_2to4(g.constants["fc.weight"])
    np.testing.assert_array_equal(g.constants["conv1.weight"], before["conv1.weight"])
    (report,) = reports
    assert any("conv1.weight left dense" in n and "multiple of 4" in n for n in report.notes)
    rows = {r.name: r for r in report.layers}
    assert rows["conv2.weight"].sparsity == 0.5 and rows["fc.weight"].sparsity == 0.5
    kept = g.constants["conv2.weight"] != 0
    np.testing.assert_array_equal(g.constants["conv2.weight"][kept], before["conv2.weight"][kept])


def test_pass_is_idempotent() -> None:
    g = cnn()
    prune_2to4(g)
    again = prune_2to4(g)
    assert not again.changed


@pytest.mark.parametrize("shape", [(4, 8), (16, 32, 3, 3), (8, 4, 1)])
def test_pruned_random_weights_pass_the_detector(shape: tuple[int, ...]) -> None:
    w = np.random.default_rng(1).standard_normal(shape)
    pruned = np.where(mask_2to4(np.abs(w)), w, 0)
    assert is_2to4(pruned) and not is_2to4(w)
    assert np.count_nonzero(pruned) == w.size // 2
