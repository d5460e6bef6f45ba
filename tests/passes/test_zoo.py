"""The passes on zoo models through both frontends: what must be recognized and fused, and
that the interpreter computes the same outputs before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.target import load_target
from tests.passes.ir_cases import run_passes

pytest.importorskip("torch")

#: The reference target's cleanup pipeline followed by the recognitions.
RECOGNIZE = ",".join(
    [*load_target("reference").pipeline, "recognize-layernorm", "recognize-gelu",
     "recognize-attention", "dce"]
)  # fmt: skip
FUSE = (
    "fold-constants,simplify-shapes,remove-identity,fold-batchnorm,fuse-bias-act,fuse-residual,dce"
)
LAYERS = 4


def _torch_graph(name: str, inputs: tuple | None = None) -> tuple[Graph, list[np.ndarray]]:
    from compiler.frontends.torch_export import import_torch
    from tests.cases import get_case

    case = get_case(name)
    inputs = inputs or case.example_inputs()
    return import_torch(case.build(), inputs), [t.numpy() for t in inputs]


def _onnx_graph(name: str, folder: Path, opset: int) -> tuple[Graph, list[np.ndarray]]:
    from compiler.frontends.onnx import import_onnx
    from tests.cases import get_case
    from tests.frontends.onnx_util import export_torch

    case = get_case(name)
    inputs = case.example_inputs()
    path = export_torch(case.build(), inputs, folder / f"{name}_op{opset}.onnx", opset=opset)
    return import_onnx(path), [t.numpy() for t in inputs]


def _same_outputs(before: Graph, after: Graph, inputs: list[np.ndarray]) -> None:
    for want, got in zip(interpret(before, *inputs), interpret(after, *inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def gpt_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Graph, list]]:
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "torch.export": _torch_graph("tiny_gpt"),
        "onnx opset 14": _onnx_graph("tiny_gpt", folder, opset=14),  # LayerNorm spelled out
    }


@pytest.mark.slow
@pytest.mark.parametrize("frontend", ["torch.export", "onnx opset 14"])
def test_tiny_gpt_attention_gelu_and_layer_norms(
    frontend: str, gpt_graphs: dict[str, tuple[Graph, list]]
) -> None:
    original, inputs = gpt_graphs[frontend]
    graph = original.copy()
    run_passes(graph, RECOGNIZE)
    counts = graph.op_counts()
    # Exactly one attention and one GELU per layer; two layer norms per layer + the final one.
    assert counts.get("nn.attention") == LAYERS, counts
    assert counts.get("nn.gelu") == LAYERS, counts
    assert counts.get("nn.layer_norm") == 2 * LAYERS + 1, counts
    for leftover in ("nn.softmax", "math.erf", "math.reduce_mean", "math.sqrt", "tensor.where"):
        assert leftover not in counts, counts
    # Each layer's own: the attention of layer i sits between its two layer norms.
    order = [n.op for n in graph.nodes if n.op in ("nn.attention", "nn.gelu", "nn.layer_norm")]
    expected = ["nn.layer_norm", "nn.attention", "nn.layer_norm", "nn.gelu"] * LAYERS
    assert order == [*expected, "nn.layer_norm"]
    assert all(n.attrs["causal"] for n in graph.nodes_of("nn.attention"))
    _same_outputs(original, graph, inputs)


def _assert_convs_fused(graph: Graph) -> None:
    """No batch norm, activation or add is left outside a conv: every conv carries an
    activation, or (act "none") its only use is as the residual operand of a conv that
    carries one (the body branch of a projection block, taken by the downsample conv)."""
    counts = graph.op_counts()
    assert not {"nn.batch_norm", "nn.relu", "nn.relu6", "nn.hardswish", "math.add"} & set(counts)
    for conv in graph.nodes_of("nn.conv2d"):
        if conv.attrs.get("act", "none") != "none":
            continue
        (user, index), *rest = conv.output.uses
        assert not rest and index == 3, f"{conv.where()} has no activation and is no residual"
        assert user.op == "nn.conv2d" and user.attrs["act"] != "none"


@pytest.mark.parametrize("name", ["residual_block", "mobilenet_block"])
def test_conv_blocks_fuse(name: str) -> None:
    original, inputs = _torch_graph(name)
    graph = original.copy()
    run_passes(graph, FUSE)
    _assert_convs_fused(graph)
    assert len([c for c in graph.nodes_of("nn.conv2d") if len(c.inputs) == 4]) == 1
    _same_outputs(original, graph, inputs)


@pytest.mark.slow
def test_resnet18_fuses_completely() -> None:
    import torch

    # A 64x64 image keeps the interpreter quick; the graph's structure is the 224x224 one.
    original, inputs = _torch_graph("resnet18", (torch.randn(1, 3, 64, 64),))
    graph = original.copy()
    run_passes(graph, FUSE)
    _assert_convs_fused(graph)
    convs = graph.nodes_of("nn.conv2d")
    assert len(convs) == 20  # stem + 8 blocks x 2 + 3 downsample projections
    assert sum(len(c.inputs) == 4 for c in convs) == 8  # one residual per block
    assert sum(c.attrs.get("act", "none") == "none" for c in convs) == 3  # projected bodies
    _same_outputs(original, graph, inputs)


@pytest.mark.slow
def test_tiny_gpt_with_a_symbolic_sequence_is_causal() -> None:
    """A dynamic ``seq``: the mask is ``future[:seq, :seq]``, sliced at run time."""
    from compiler.frontends.torch_export import import_torch
    from tests.cases import export_case, get_case

    original = import_torch(export_case(get_case("tiny_gpt"), dynamic=True))
    graph = original.copy()
    run_passes(graph, RECOGNIZE)
    attention = graph.nodes_of("nn.attention")
    assert len(attention) == LAYERS and all(n.attrs["causal"] for n in attention)
    assert all(len(n.inputs) == 3 for n in attention)  # no mask operand left
    for length in (5, 77):
        ids = np.random.default_rng(length).integers(0, 512, (1, length))
        _same_outputs(original, graph, [ids])


@pytest.mark.parametrize("name", ["digits_cnn", "residual_block", "mobilenet_block"])
def test_convert_layout_transposes_only_at_4d_edges(name: str) -> None:
    original, inputs = _torch_graph(name)
    graph = original.copy()
    run_passes(graph, FUSE + ",convert-layout", load_target("zcu104"))  # an NHWC target
    edges = sum(v.type.rank == 4 for v in [*graph.inputs, *graph.outputs])
    assert graph.op_counts()["tensor.transpose"] == edges
    assert all(c.attrs["layout"] == "NHWC" for c in graph.nodes_of("nn.conv2d"))
    _same_outputs(original, graph, inputs)
