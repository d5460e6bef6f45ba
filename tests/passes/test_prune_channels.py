"""prune-channels: removing dead channels changes nothing, groups share masks, what is pinned."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.context import PassContext
from compiler.errors import TapeoutError
from compiler.interpreter import interpret
from compiler.ir import Graph, verify
from compiler.pass_manager import run_pipeline
from passes._channel_groups import map_axis
from passes.prune_channels import keep_count, prune_channels
from tests.passes.ir_cases import assert_same_outputs, graph_from

CHAIN = """
graph @chain(%x: f32[1,2,6,6]) -> (f32[1,3]) {
  %w1: f32[8,2,3,3] = const @conv1.weight
  %b1: f32[8] = const @conv1.bias
  %g1: f32[8] = const @bn1.weight
  %s1: f32[8] = const @bn1.bias
  %m1: f32[8] = const @bn1.running_mean
  %v1: f32[8] = const @bn1.running_var
  %wd: f32[8,1,3,3] = const @dw.weight
  %w3: f32[6,8,1,1] = const @conv3.weight
  %b3: f32[6] = const @conv3.bias
  %w4: f32[3,54] = const @fc.weight
  %c1: f32[1,8,6,6] = nn.conv2d(%x, %w1, %b1) {pads=[1,1,1,1]} loc("conv1")
  %n1: f32[1,8,6,6] = nn.batch_norm(%c1, %g1, %s1, %m1, %v1) loc("bn1")
  %r1: f32[1,8,6,6] = nn.relu(%n1)
  %d: f32[1,8,6,6] = nn.conv2d(%r1, %wd) {pads=[1,1,1,1], groups=8, act="relu6"} loc("dw")
  %c3: f32[1,6,3,3] = nn.conv2d(%d, %w3, %b3) {strides=[2,2], act="relu"} loc("conv3")
  %f: f32[1,54] = tensor.reshape(%c3) {shape=[1,54]} loc("flatten")
  %y: f32[1,3] = nn.dense(%f, %w4) loc("fc")
  return %y
}
"""

DEAD_CONV1, DEAD_CONV3 = [1, 3, 4, 6], [0, 2, 5]


def chain() -> Graph:
    """CHAIN with channels DEAD_CONV1 / DEAD_CONV3 that always output exactly zero."""
    rng = np.random.default_rng(0)
    shapes = {
        "conv1.weight": (8, 2, 3, 3), "conv1.bias": (8,), "bn1.weight": (8,), "bn1.bias": (8,),
        "bn1.running_mean": (8,), "dw.weight": (8, 1, 3, 3), "conv3.weight": (6, 8, 1, 1),
        "conv3.bias": (6,), "fc.weight": (3, 54),
    }  # fmt: skip
    data = {k: rng.standard_normal(s) for k, s in shapes.items()}
    data["bn1.running_var"] = rng.uniform(0.5, 1.5, 8)
    for key in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"):
        data[key][DEAD_CONV1] = 0
    for key in ("conv3.weight", "conv3.bias"):
        data[key][DEAD_CONV3] = 0
    return graph_from(CHAIN, data)


def test_removing_dead_channels_keeps_outputs_through_bn_depthwise_and_flatten() -> None:
    g = chain()
    before = g.copy()
    report = prune_channels(g, ratio=0.5)
    verify(g)
    shapes = {k: v.shape for k, v in g.constants.items()}
    assert shapes["conv1.weight"] == (4, 2, 3, 3) and shapes["bn1.running_var"] == (4,)
    assert shapes["dw.weight"] == (4, 1, 3, 3) and shapes["conv3.weight"] == (3, 4, 1, 1)
    assert shapes["fc.weight"] == (3, 27)  # 3 of 6 channels, each a block of 3x3 columns
    assert g.find("f").type.shape == (1, 27)
    assert report.kept["conv1.weight"] == [0, 2, 5, 7]
    assert report.kept["conv3.weight"] == [1, 3, 4]
    assert_same_outputs(before, g, exact=False, rtol=1e-5, atol=1e-6)
    assert report.params_after < report.params_before
    assert report.macs_after < report.macs_before
    assert "fc.weight whole: reaches graph output" in report.format()


RESIDUAL = """
graph @res(%x: f32[1,4,5,5]) -> (f32[1,2]) {
  %wa: f32[8,4,3,3] = const @a.weight
  %wb: f32[8,4,1,1] = const @b.weight
  %bb: f32[8] = const @b.bias
  %wc: f32[8,8,3,3] = const @c.weight
  %bc: f32[8] = const @c.bias
  %scale: f32[8,1,1] = const @scale
  %wf: f32[2,8] = const @fc.weight
  %a: f32[1,8,5,5] = nn.conv2d(%x, %wa) {pads=[1,1,1,1]} loc("a")
  %b: f32[1,8,5,5] = nn.conv2d(%x, %wb, %bb) loc("b")
  %s: f32[1,8,5,5] = math.add(%a, %b)
  %r: f32[1,8,5,5] = nn.relu(%s)
  %c: f32[1,8,5,5] = nn.conv2d(%r, %wc, %bc, %r) {pads=[1,1,1,1], act="relu"} loc("c")
  %m: f32[1,8,5,5] = math.mul(%c, %scale)
  %p: f32[1,8,1,1] = nn.global_avg_pool(%m)
  %q: f32[1,8] = tensor.squeeze(%p) {axes=[2,3]}
  %y: f32[1,2] = nn.dense(%q, %wf) loc("fc")
  return %y
}
"""


def residual() -> Graph:
    rng = np.random.default_rng(1)
    shapes = {
        "a.weight": (8, 4, 3, 3), "b.weight": (8, 4, 1, 1), "b.bias": (8,),
        "c.weight": (8, 8, 3, 3), "c.bias": (8,), "scale": (8, 1, 1), "fc.weight": (2, 8),
    }  # fmt: skip
    return graph_from(RESIDUAL, {k: rng.standard_normal(s) for k, s in shapes.items()})


def test_channels_joined_by_add_and_fused_residual_share_one_mask() -> None:
    g = residual()
    report = prune_channels(g, ratio=0.5)
    verify(g)
    assert report.kept["a.weight"] == report.kept["b.weight"] == report.kept["c.weight"]
    assert len(report.kept["a.weight"]) == 4
    assert g.constants["c.weight"].shape == (4, 4, 3, 3)
    assert g.constants["scale"].shape == (4, 1, 1) and g.constants["fc.weight"].shape == (2, 4)
    assert interpret(g, np.ones((1, 4, 5, 5), np.float32))[0].shape == (1, 2)


def test_group_mask_follows_the_summed_scores() -> None:
    g = residual()
    scores = {"a.weight": np.arange(8.0), "b.weight": np.arange(8.0)[::-1] * 0.1,
              "c.weight": np.array([0, 0, 0, 0, 0, 0, 9, 9.0])}  # fmt: skip
    # Normalized to mean 1 each: a favours high indices, b low ones, c only 6 and 7.
    report = prune_channels(g, ratio=0.75, criterion="taylor", scores=scores)
    assert report.kept["a.weight"] == [6, 7]


def test_taylor_scores_through_the_pipeline_context_or_error() -> None:
    g = residual()
    with pytest.raises(TapeoutError, match="needs scores"):
        prune_channels(g.copy(), criterion="taylor")
    with pytest.raises(TapeoutError, match="no importance scores given"):
        prune_channels(g.copy(), criterion="taylor", scores={"fc.weight": [1, 2]})
    scores = {"a.weight": np.arange(8.0)}
    ctx = PassContext(importance=scores)
    run_pipeline(g, "prune-channels{criterion=taylor,ratio=0.5}", ctx, verify_each=True)
    assert ctx.prune_reports[0].kept["a.weight"] == [4, 5, 6, 7]


def test_bn_scale_ranks_by_gamma() -> None:
    g = chain()
    gamma = np.array([5, 0, 4, 0, 0, 3, 0, 0.5], dtype=np.float32)
    g.constants["bn1.weight"] = gamma
    report = prune_channels(g, ratio=0.5, criterion="bn_scale")
    assert report.kept["conv1.weight"] == [0, 2, 5, 7]


def test_channels_tied_to_graph_inputs_or_unknown_ops_are_pinned() -> None:
    text = """
    graph @pin(%x: f32[1,4,4,4]) -> (f32[1,8,4,4]) {
      %w1: f32[4,4,1,1] = const @c1.weight
      %w2: f32[4,4,1,1] = const @c2.weight
      %a: f32[1,4,4,4] = nn.conv2d(%x, %w1) loc("c1")
      %s: f32[1,4,4,4] = math.add(%a, %x)
      %b: f32[1,4,4,4] = nn.conv2d(%s, %w2) loc("c2")
      %y: f32[1,8,4,4] = tensor.concat(%s, %b) {axis=1}
      return %y
    }
    """
    rng = np.random.default_rng(0)
    g = graph_from(text, {k: rng.standard_normal((4, 4, 1, 1)) for k in ("c1.weight", "c2.weight")})
    report = prune_channels(g, ratio=0.5)
    assert not report.changed
    notes = "\n".join(report.notes)
    assert "c1.weight whole: " in notes and "fixed" in notes
    assert "c2.weight whole: used by tensor.concat" in notes


def test_options_round_to_min_channels_and_exclude() -> None:
    assert keep_count(10, 0.5) == 5 and keep_count(10, 0.5, round_to=4) == 8
    assert keep_count(4, 0.9) == 1 and keep_count(16, 0.9, min_channels=4) == 4
    g = chain()
    report = prune_channels(g, ratio=0.5, exclude=["conv3"])
    assert "conv3.weight" not in report.kept and len(report.kept["conv1.weight"]) == 4
    g = chain()
    report = prune_channels(g, ratio=0.5, layers={"conv1": 0.25})
    assert len(report.kept["conv1.weight"]) == 6 and len(report.kept["conv3.weight"]) == 3


@pytest.mark.parametrize(
    ("src", "dst", "axis", "block", "want"),
    [
        ((1, 8, 3, 3), (1, 72), 1, 1, (1, 9)),  # flatten: each channel a block of 9
        ((1, 8, 1, 1), (1, 8), 1, 1, (1, 1)),  # squeeze after a global pool
        ((1, 72), (1, 8, 3, 3), 1, 9, (1, 1)),  # and back
        (("n", 8, 3, 3), ("n", 72), 1, 1, (1, 9)),  # symbolic batch
        ((1, 8, 3, 3), (1, 8, 9), 1, 1, (1, 1)),
        ((1, 8, 3, 3), (1, 24, 3), 1, 1, (1, 3)),  # 8 channels of 3 rows each
        ((1, 8, 3, 3), (1, 4, 18), 1, 1, None),  # two channels per row: mixed
        ((1, 8, 3, 3), (8, 9), 1, 1, (0, 1)),
    ],
)
def test_map_axis(src: tuple, dst: tuple, axis: int, block: int, want: tuple | None) -> None:
    assert map_axis(src, dst, axis, block) == want


# --- zoo models through the torch frontend ---------------------------------------------------


def imported(name: str, *inputs: object) -> Graph:
    import torch

    from compiler.frontends.torch_export import import_torch
    from tests.cases import get_case

    case = get_case(name)
    example = tuple(inputs) or case.example_inputs()
    with torch.no_grad():
        return import_torch(case.build(), example)


def test_digits_cnn_half_the_channels() -> None:
    g = imported("digits_cnn")
    report = prune_channels(g, ratio=0.5, criterion="bn_scale")
    verify(g)
    assert [n.inputs[1].type.shape[0] for n in g.nodes_of("nn.conv2d")] == [8, 16, 16]
    assert g.constants["fc.weight"].shape == (10, 256)
    assert interpret(g, np.zeros((1, 1, 8, 8), np.float32))[0].shape == (1, 10)
    assert report.params_after < report.params_before / 3
    assert report.macs_after < report.macs_before / 3


def test_resnet18_residual_groups_stay_valid_and_consistent() -> None:
    import torch

    g = imported("resnet18", torch.randn(1, 3, 64, 64))
    report = prune_channels(g, ratio=0.5)
    verify(g)
    out = interpret(g, np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32))
    assert out[0].shape == (1, 1000)
    stage0 = ["stem.0.0.weight", "stages.0.0.body.2.0.weight", "stages.0.1.body.2.0.weight"]
    stage1 = [
        "stages.1.0.body.2.0.weight",
        "stages.1.0.downsample.0.weight",
        "stages.1.1.body.2.0.weight",
    ]
    for group in (stage0, stage1):
        kept = [report.kept[name] for name in group]
        assert all(k == kept[0] for k in kept) and len(kept[0]) == len(set(kept[0]))
    assert len(report.kept["stem.0.0.weight"]) == 32
    assert g.constants["fc.weight"].shape == (1000, 256)


def test_mobilenet_block_prunes_through_the_depthwise_conv_only() -> None:
    g = imported("mobilenet_block")
    report = prune_channels(g, ratio=0.5)
    verify(g)
    assert g.constants["depthwise.0.0.weight"].shape == (32, 1, 3, 3)
    assert g.constants["project.0.weight"].shape == (16, 32, 1, 1)  # joined with the input
    assert "project.0.weight whole" in "\n".join(report.notes)
    assert interpret(g, np.zeros((1, 16, 16, 16), np.float32))[0].shape == (1, 16, 16, 16)


@pytest.mark.parametrize(
    "name",
    ["jet_mlp", "residual_block", "mobilenet_block", "tiny_gpt_sdpa", "ops_conv", "ops_shape"],
)
def test_every_pruning_pass_keeps_zoo_graphs_valid(name: str) -> None:
    """Whatever a model holds, pruning leaves a valid graph with the same output shapes."""
    from passes.prune_2to4 import prune_2to4
    from passes.prune_magnitude import prune_magnitude
    from tests.cases import get_case

    graph = imported(name)
    inputs = [x.numpy() for x in get_case(name).example_inputs()]
    shapes = [o.shape for o in interpret(graph, *inputs)]
    for prune in (prune_channels, prune_magnitude, prune_2to4):
        pruned = graph.copy()
        prune(pruned)
        verify(pruned)
        assert [o.shape for o in interpret(pruned, *inputs)] == shapes, prune.__name__
