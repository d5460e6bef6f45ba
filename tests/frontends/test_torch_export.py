"""The torch.export frontend against torch eager: every zoo case, dynamic shapes, op coverage.

Each imported graph must verify, print and parse back, carry source locations, and compute
what torch computes (relative error <= 1e-4 of the output's magnitude) on the example inputs
and on a fresh random input of the same shape.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from compiler.errors import FrontendError, UnsupportedOpsError  # noqa: E402
from compiler.frontends import load_model  # noqa: E402
from compiler.frontends.torch_context import CONVERTERS  # noqa: E402
from compiler.frontends.torch_export import KEEP_UNDECOMPOSED, import_torch  # noqa: E402
from compiler.interpreter import interpret  # noqa: E402
from compiler.ir import Graph, parse, print_graph, verify  # noqa: E402
from tests.cases import CASES, export_case, get_case  # noqa: E402

TOLERANCE = 1e-4
BIG_INPUT = 50_000  # elements; bigger models are compared on their example input only


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference relative to the reference's magnitude."""
    if want.dtype == np.bool_ or np.issubdtype(want.dtype, np.integer):
        return 0.0 if np.array_equal(got, want) else 1.0
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)) if want.size else 0.0


def torch_outputs(model: nn.Module, inputs: tuple[Any, ...]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*inputs)
    return [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]


def assert_matches_torch(graph: Graph, model: nn.Module, inputs: tuple[Any, ...]) -> None:
    got = interpret(graph, *[t.numpy() for t in inputs])
    want = torch_outputs(model, inputs)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"output {i}: shape {g.shape} != torch {w.shape}"
        err = relative_error(g, w)
        assert err <= TOLERANCE, f"output {i}: relative error {err:.2e}"


def random_like(t: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A fresh input of ``t``'s shape and dtype (token ids stay inside the example's range)."""
    gen = torch.Generator().manual_seed(seed)
    if t.dtype.is_floating_point:
        return torch.randn(t.shape, generator=gen, dtype=t.dtype)
    return torch.randint(0, int(t.max()) + 1, t.shape, generator=gen, dtype=t.dtype)


# ---- the zoo ----------------------------------------------------------------------------------
def _zoo_params() -> list[Any]:
    params = []
    for name, case in CASES.items():
        marks = [pytest.mark.slow] if case.slow else []
        if not case.available():
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(case.missing())}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@functools.cache
def imported(name: str) -> tuple[Graph, nn.Module, tuple[Any, ...]]:
    """Each zoo case built and imported once per session."""
    case = get_case(name)
    model, inputs = case.build(), case.example_inputs()
    return import_torch(model, inputs), model, inputs


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_case_matches_torch(name: str) -> None:
    graph, model, inputs = imported(name)
    verify(graph)
    assert_matches_torch(graph, model, inputs)
    if sum(t.numel() for t in inputs) <= BIG_INPUT:  # the ResNets at 224x224: compare once
        assert_matches_torch(graph, model, tuple(random_like(t) for t in inputs))


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_case_round_trips_and_has_locations(name: str) -> None:
    graph, _, _ = imported(name)
    assert parse(print_graph(graph), graph.constants) == graph
    missing = [n.where() for n in graph.compute_nodes() if not n.loc]
    assert not missing, f"nodes without a location: {missing[:5]}"


def test_names_come_from_the_module() -> None:
    graph, _, _ = imported("resnet18")
    assert {"stem.0.0.weight", "stages.0.0.body.0.1.running_var", "fc.weight"} <= set(
        graph.constants
    )
    assert [v.name for v in graph.inputs] == ["x"]
    locs = {n.loc for n in graph.nodes_of("nn.conv2d")}
    assert "stages.1.0.downsample.0" in locs
    ops_conv, _, _ = imported("ops_conv")
    assert [v.name for v in ops_conv.inputs] == ["x", "s"]


def test_linear_layers_become_dense_and_dead_nodes_are_gone() -> None:
    graph, _, _ = imported("tiny_gpt")
    counts = graph.op_counts()
    assert counts["nn.dense"] == 17  # 4 per block and the head
    assert all(n.inputs[1].is_const for n in graph.nodes_of("nn.dense"))
    used = {id(v) for n in graph.nodes for v in n.inputs} | {id(v) for v in graph.outputs}
    assert all(any(id(o) in used for o in n.outputs) for n in graph.nodes)


# ---- dynamic shapes -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["jet_mlp", "digits_cnn"])
def test_dynamic_batch(name: str) -> None:
    case = get_case(name)
    model, (example,) = case.build(), case.example_inputs()
    graph = import_torch(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert graph.inputs[0].shape[0] == "batch"
    assert graph.outputs[0].shape[0] == "batch"
    assert parse(print_graph(graph), graph.constants) == graph
    for batch in (3, 7):
        x = torch.randn(batch, *example.shape[1:], generator=torch.Generator().manual_seed(batch))
        assert_matches_torch(graph, model, (x,))


def test_dynamic_batch_and_sequence() -> None:
    case = get_case("tiny_gpt_sdpa")
    model, (ids,) = case.build(), case.example_inputs()
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=128)}
    graph = import_torch(model, (ids,), dynamic_shapes=(dims,))
    assert graph.inputs[0].shape == ("batch", "seq")
    assert graph.outputs[0].shape == ("batch", "seq", 512)
    ids = torch.randint(0, 512, (3, 9), generator=torch.Generator().manual_seed(0))
    assert_matches_torch(graph, model, (ids,))


def test_dynamic_sequence_length_slices_buffers_symbolically() -> None:
    case = get_case("tiny_gpt")
    graph = load_model(export_case(case, dynamic=True))
    assert graph.inputs[0].shape == (1, "seq")
    assert any("seq" in n.attrs.get("ends", []) for n in graph.nodes_of("tensor.slice"))
    model = case.build()
    for length in (5, 77):
        ids = torch.randint(0, 512, (1, length), generator=torch.Generator().manual_seed(length))
        assert_matches_torch(graph, model, (ids,))


# ---- errors -------------------------------------------------------------------------------------
class _TwoUnsupported(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.cumprod(x, 1) + torch.cumprod(x * 2, 0)
        b = torch.linalg.det(x) + torch.linalg.det(x + 1)
        return a + b[:, None, None]


def test_every_unsupported_op_is_listed() -> None:
    with pytest.raises(UnsupportedOpsError) as info:
        import_torch(_TwoUnsupported(), (torch.randn(2, 3, 3),))
    assert info.value.counts == {"aten.cumprod.default": 2, "aten._linalg_det.default": 2}
    message = str(info.value)
    assert "aten.cumprod.default x2" in message and "aten._linalg_det.default x2" in message


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_export_failure_is_a_frontend_error() -> None:
    with pytest.raises(FrontendError, match="torch.export failed for _DataDependent"):
        import_torch(_DataDependent(), (torch.randn(3),))


def test_graph_module_is_re_exported() -> None:
    case = get_case("digits_cnn")
    model, inputs = case.build(), case.example_inputs()
    traced = torch.fx.symbolic_trace(model)
    graph = load_model(traced, inputs)
    assert graph.op_counts()["nn.conv2d"] == 3
    assert_matches_torch(graph, model, inputs)
    with pytest.raises(FrontendError, match="example_inputs"):
        load_model(traced)


def test_load_model_dispatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls: list[Any] = []
    fake = types.ModuleType("compiler.frontends.onnx")
    fake.import_onnx = lambda model, *args, **kwargs: calls.append(model) or Graph("onnx")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compiler.frontends.onnx", fake)
    assert load_model("model.onnx").name == "onnx" and calls == ["model.onnx"]
    case = get_case("jet_mlp")
    exported = torch.export.export(case.build(), case.example_inputs())
    assert load_model(exported).op_counts()["nn.dense"] == 4
    torch.export.save(exported, tmp_path / "jet.pt2")
    assert load_model(tmp_path / "jet.pt2") == load_model(exported)
    for bad in (42, "model.h5", torch.randn(2)):
        with pytest.raises(FrontendError):
            load_model(bad)


def test_converter_table_names_real_aten_ops() -> None:
    def resolves(key: str) -> bool:
        namespace, packet, *overload = key.split(".")
        try:
            op = getattr(getattr(torch.ops, namespace), packet)
            return not overload or hasattr(op, overload[0])
        except AttributeError:
            return False

    assert [key for key in CONVERTERS if not resolves(key)] == []
    assert [op for op in KEEP_UNDECOMPOSED if op not in CONVERTERS] == []


# ---- op coverage beyond the zoo -----------------------------------------------------------
def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Fn(nn.Module):
    """A module around a function, with parameters or submodules (so weights are constants)."""

    def __init__(self, fn: Callable[..., Any], **parts: torch.Tensor | nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for key, value in parts.items():
            if isinstance(value, nn.Module):
                self.add_module(key, value)
            else:
                self.register_parameter(key, nn.Parameter(value))

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(self, *xs)


def _matmuls(m: Fn, x: torch.Tensor) -> Any:
    return x @ m.w.t() + x @ m.v, torch.addmm(m.b, x[0], m.v, beta=0.5, alpha=2.0)


def _matmul_shapes(m: Fn, x: torch.Tensor, v: torch.Tensor) -> Any:
    return x @ v, torch.bmm(x, x.transpose(1, 2)), v @ x[0].t()


def _indexing(m: Fn, x: torch.Tensor) -> Any:
    picked = x.index_select(2, torch.tensor([0, 3, 3]))
    return x[:, 2] + x[..., -1, :], sum(torch.unbind(x, 1)), picked, x[:, :, torch.tensor([1, 0])]


def _norms(m: Fn, x: torch.Tensor) -> Any:
    return m.gn(x), m.ln(x), m.bn(x), x.var(dim=1, keepdim=True), x.std(dim=(2, 3))


def _activations(m: Fn, x: torch.Tensor) -> Any:
    bounded = F.hardsigmoid(x), F.relu6(x), F.hardtanh(x, -2.0, 2.0), x.clamp(min=0)
    smooth = F.softplus(x), F.mish(x), F.silu(x), F.gelu(x, approximate="tanh"), F.elu(x)
    return *bounded, torch.clamp(x, x * 0.5, x * 0 + 1), *smooth


def _promotion(m: Fn, x: torch.Tensor, i: torch.Tensor) -> Any:
    masks = (x > 0) & (x < 1) | ~(x != 0.5), x.masked_fill(x < -0.5, 3.0)
    ints = torch.div(i, 3, rounding_mode="trunc"), i / 4, i + 1.5, i * x, x.int()
    picks = x.argmax(-1), x.argmax(keepdim=True), x.max(dim=1).values, x.max(dim=1).indices
    alphas = torch.add(x, i, alpha=2), torch.sub(i, x, alpha=0.5), torch.rsub(x, 2.0, alpha=3)
    return *masks, *ints, *picks, *alphas, (x > 0).float() * x, torch.where(x > 0, x, 0.0)


def _shapes(m: Fn, x: torch.Tensor) -> Any:
    pads = F.pad(x, (1, 2), mode="reflect"), F.pad(x, (2, 1), mode="replicate"), F.pad(x, (1, 1))
    parts = torch.chunk(x, 3, dim=2)[2], torch.split(x, 3, dim=2)[1]
    moved = x.repeat(1, 2, 1), x.unsqueeze(-1).expand(-1, -1, -1, 3), x.transpose(0, 2)
    return *pads, *parts, *moved, x.flatten(1), torch.arange(8) * x, x.new_zeros(2, 3) + 1


def _pools(m: Fn, x: torch.Tensor) -> Any:
    return (
        F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True),
        F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        F.adaptive_avg_pool2d(x, (2, 3)),
        F.adaptive_max_pool2d(x, 1),
        F.interpolate(x, size=(12, 9)),
        F.interpolate(x, scale_factor=2, mode="nearest-exact"),
    )


def _attention(m: Fn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
    # Every query row keeps at least one key: torch returns 0 for a fully masked row, the IR NaN.
    keep = (k[..., :1].transpose(-1, -2) > 0) | torch.eye(4, 6, dtype=torch.bool)
    additive = q[..., :1] @ k[..., :1].transpose(-1, -2)
    return (
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
        F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
        F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),  # top-left causal
    )


X3, X4 = (_randn(2, 5, 8),), (_randn(2, 8, 6, 6),)
TRANSPOSED = {
    "t2": nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
    "t1": nn.ConvTranspose1d(5, 3, 3, stride=2, padding=1),
}
NORMS = {
    "gn": nn.GroupNorm(2, 8),
    "ln": nn.LayerNorm([6, 6], elementwise_affine=False),
    "bn": nn.BatchNorm2d(8, affine=False),
}
#: name -> (module builder, inputs, IR ops the graph must contain)
OP_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[Any, ...], set[str]]] = {
    "matmul_dense_addmm": (
        lambda: Fn(_matmuls, w=_randn(6, 8), v=_randn(8, 6, seed=1), b=_randn(6, seed=2)),
        X3,
        {"nn.dense", "nn.matmul", "math.mul"},
    ),
    "matmul_vector_bmm": (lambda: Fn(_matmul_shapes), (*X3, _randn(8, seed=1)), {"nn.matmul"}),
    "indexing": (lambda: Fn(_indexing), X3, {"tensor.slice", "tensor.squeeze", "tensor.gather"}),
    "norms": (lambda: Fn(_norms, **NORMS), X4, {"nn.layer_norm", "nn.batch_norm"}),
    "activations": (
        lambda: Fn(_activations),
        X3,
        {"nn.hardsigmoid", "nn.relu6", "nn.clip", "nn.relu", "math.maximum", "nn.silu"},
    ),
    "promotion_logic": (
        lambda: Fn(_promotion),
        (*X3, torch.arange(-20, 20).reshape(5, 8)),
        {"tensor.cast", "tensor.where", "math.argmax", "math.not", "math.or"},
    ),
    "shapes": (
        lambda: Fn(_shapes),
        X3,
        {"tensor.expand", "tensor.pad", "tensor.split", "tensor.reshape", "tensor.transpose"},
    ),
    "pools_resize": (
        lambda: Fn(_pools),
        X4,
        {"nn.max_pool2d", "nn.avg_pool2d", "nn.adaptive_avg_pool2d", "nn.global_max_pool"},
    ),
    "transposed_convs": (
        lambda: Fn(lambda m, x, s: (m.t2(x), m.t1(s)), **TRANSPOSED),
        (*X4, _randn(2, 5, 8, seed=2)),
        {"nn.conv_transpose2d"},
    ),
    "attention_masks": (
        lambda: Fn(_attention),
        (_randn(1, 2, 4, 8), _randn(1, 2, 6, 8, seed=1), _randn(1, 2, 6, 8, seed=2)),
        {"nn.attention"},
    ),
}


@pytest.mark.parametrize("name", list(OP_CASES))
def test_op_coverage(name: str) -> None:
    build, inputs, expected_ops = OP_CASES[name]
    model = build().eval()
    graph = import_torch(model, inputs)
    verify(graph)
    assert expected_ops <= set(graph.op_counts()), graph.op_counts()
    assert parse(print_graph(graph), graph.constants) == graph
    assert_matches_torch(graph, model, inputs)
