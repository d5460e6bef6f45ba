"""quantize on the zoo: accuracy of the trained models, transformer fidelity, mixed precision.

The trained models are calibrated on training samples and scored on the held-out split; the
float pipeline (fold-batchnorm, fuse-bias-act) runs first, as on an FPGA target: in the
form a pipeline ending in an integer quantize runs it (gelu and the like stay apart).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from compiler.context import PassContext
from compiler.interpreter import interpret
from compiler.ir import Graph, verify
from compiler.pass_manager import run_pipeline
from compiler.target import load_target
from passes.quant.batching import BatchedRunner, normalize_samples
from passes.quantize import quantize_graph
from tests.cases import get_case

FLOAT_PIPELINE = "fold-batchnorm,fuse-bias-act{integer=true}"


@functools.cache
def _imported(name: str) -> Graph:
    from compiler.frontends.torch_export import import_torch

    case = get_case(name)
    graph = import_torch(case.build(), case.example_inputs())
    run_pipeline(graph, FLOAT_PIPELINE)
    return graph


def model(name: str) -> Graph:
    """A fresh copy of the imported, BN-folded zoo model."""
    return _imported(name).copy()


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray) -> float:
    runner = BatchedRunner(graph, normalize_samples(graph, x))
    logits = np.concatenate([out[0] for out in runner.run()])
    return float(np.mean(logits.argmax(axis=-1) == y))


@pytest.mark.parametrize(
    ("name", "options", "max_drop"),
    [
        ("digits_cnn", {}, 0.005),
        ("digits_cnn", {"power_of_two": True}, 0.01),
        ("jet_mlp", {}, 0.01),
    ],
)
def test_trained_models_keep_their_accuracy(name: str, options: dict, max_drop: float) -> None:
    x_train, _, x_test, y_test = get_case(name).dataset()  # type: ignore[misc]
    graph = model(name)
    reference = accuracy(graph, x_test, y_test)
    report = quantize_graph(graph, None, x_train[:256], **options)
    verify(graph)
    assert not any(n.op == "nn.conv2d" and n.inputs[0].dtype == "f32" for n in graph.nodes)
    assert reference - accuracy(graph, x_test, y_test) <= max_drop, report.format()


def test_fpga_target_pipeline_is_integer_with_shifts_only() -> None:
    from compiler.frontends.torch_export import import_torch

    case = get_case("residual_block")
    graph = import_torch(case.build(), case.example_inputs())
    target = load_target("zcu104")
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8, 8)).astype(np.float32)
    reference = interpret(graph, x[0])[0]
    ctx = PassContext(target=target, calibration_data=x)
    run_pipeline(graph, list(target.pipeline), ctx, verify_each=True)
    float_ops = {n.op for n in graph.compute_nodes() if n.op not in ("q.quantize", "q.dequantize")}
    assert float_ops == {"nn.conv2d", "q.requantize", "q.add"}
    assert all(set(n.attrs["multiplier"]) == {1} for n in graph.nodes if n.op == "q.requantize")
    assert ctx.quant_reports[0].power_of_two
    np.testing.assert_allclose(interpret(graph, x[0])[0], reference, atol=0.1)


def test_mixed_precision_meets_a_budget_int8_misses() -> None:
    x_train, _, _, _ = get_case("digits_cnn").dataset()  # type: ignore[misc]
    plain = quantize_graph(model("digits_cnn"), None, x_train[:128])
    assert plain.output_sqnr_db is not None
    budget = plain.output_sqnr_db + 4.0
    graph = model("digits_cnn")
    report = quantize_graph(
        graph, None, x_train[:128], precision="mixed", budget=budget
    )
    assert report.budget_met and report.output_sqnr_db >= budget  # type: ignore[operator]
    kept = report.kept_wider
    assert kept and all(layer.kept_wider in ("int16", "float") for layer in kept)
    assert "kept wider" in report.format()
    assert len(kept) < len([x for x in report.layers if x.op in ("nn.conv2d", "nn.dense")])


def test_mixed_precision_takes_a_callable_budget() -> None:
    x_train, _, x_test, y_test = get_case("digits_cnn").dataset()  # type: ignore[misc]
    calls: list[float] = []

    def good_enough(candidate: Graph) -> bool:
        calls.append(accuracy(candidate, x_test[:100], y_test[:100]))
        return calls[-1] >= 0.97

    report = quantize_graph(
        model("digits_cnn"), None, x_train[:64], precision="mixed", budget=good_enough
    )
    assert calls and report.budget_met and report.budget == "callable"


# ---- tiny GPT -------------------------------------------------------------------------------
def _tokens(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 512, size=(count, 1, 128))


def _cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([v.ravel() for v in a]).astype(np.float64)
    y = np.concatenate([v.ravel() for v in b]).astype(np.float64)
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_tiny_gpt_static_int8_keeps_the_logits() -> None:
    graph = model("tiny_gpt")
    test = _tokens(4, seed=1)
    reference = [interpret(graph, t)[0] for t in test]
    report = quantize_graph(graph, None, list(_tokens(8, seed=0)), report_samples=2)
    dense = [n for n in graph.nodes if n.op == "nn.dense"]
    assert len(dense) == 17 and all(n.inputs[0].dtype == "i8" for n in dense)
    assert all(n.inputs[1].dtype == "i8" for n in dense)
    assert not any(n.op == "q.add" for n in graph.nodes)  # the residual stream stays float
    assert _cosine(reference, [interpret(graph, t)[0] for t in test]) >= 0.999, report.format()


def test_tiny_gpt_int4_weights_compress_7x() -> None:
    graph = model("tiny_gpt")
    test = _tokens(4, seed=1)
    reference = [interpret(graph, t)[0] for t in test]
    report = quantize_graph(graph, None, None, precision="int4w", group_size=128)
    assert report.compression >= 7.0, report.format()
    assert _cosine(reference, [interpret(graph, t)[0] for t in test]) >= 0.99
