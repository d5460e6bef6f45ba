"""Building and running real TensorRT engines (marked ``gpu``: skipped without TensorRT and a
CUDA GPU, with the reason). Engines are compared with the interpreter on the same graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler.api as api
from backends.tensorrt import TensorRTBackend
from compiler.interpreter import interpret
from compiler.target import load_target
from tests.backends.onnx.graphs import float_cnn, float_transformer, quantized_cnn
from tests.cases import CASES

pytestmark = pytest.mark.gpu


def _relative(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(want - got).max() / max(float(np.abs(want).max()), 1e-12))


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_float_engine_matches_interpreter(
    tmp_path: Path, rng: np.random.Generator, precision: str, tolerance: float
) -> None:
    graph = float_cnn()
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    options = {"precision": precision, "tf32": False}  # backend options
    art = TensorRTBackend().compile(graph, load_target("h100"), tmp_path, options)
    assert art.summary["engine_built"] is True and (tmp_path / "model.engine").is_file()
    (want,) = interpret(graph, x)
    assert _relative(want, art.run(x)[0]) < tolerance


def test_compile_and_load(tmp_path: Path, rng: np.random.Generator) -> None:
    graph = float_cnn()
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    art = api.compile(graph, target="gpu", output_dir=tmp_path / "a")
    (want,) = interpret(graph, x)
    assert _relative(want, art.run(x)[0]) < 2e-2
    assert _relative(want, api.load(tmp_path / "a").run(x)[0]) < 2e-2


def test_int8_engine_runs_int8_layers(tmp_path: Path) -> None:
    graph, x = quantized_cnn()
    art = api.compile(graph, target="h100", output_dir=tmp_path / "a")
    (want,) = interpret(graph, x)
    (got,) = art.run(x)
    scale = graph.outputs[0].producer.inputs[0].type.quant.scale[0]  # type: ignore[union-attr]
    assert np.abs(want - got).max() <= 4 * scale  # a few LSB: TensorRT rounds its own way
    rows = {r["name"]: r for r in art.layers}
    assert rows["c1_acc"]["trt"] == "int8", art.report()
    assert art.summary["precision_source"] == "engine inspector"
    assert json.loads((tmp_path / "a" / "layers.json").read_text())["Layers"]


def test_dynamic_batch_engine(tmp_path: Path, rng: np.random.Generator) -> None:
    graph = float_transformer("batch", 8)
    options = {"shape_ranges": {"batch": (1, 2, 8)}, "precision": "fp32", "tf32": False}
    art = TensorRTBackend().compile(graph, load_target("h100"), tmp_path, options)
    for batch in (1, 5):
        ids = rng.integers(0, 32, (batch, 8))
        (want,) = interpret(graph, ids)
        assert _relative(want, art.run(ids)[0]) < 1e-4


@pytest.mark.parametrize("name", ["resnet18", "tiny_gpt"])
def test_zoo_model_on_gpu(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    inputs = case.example_inputs()
    art = api.compile(case.build(), target="gpu", example_inputs=inputs, output_dir=tmp_path / name)
    want = case.build()(*inputs).detach().numpy()
    (got,) = art.run(*[x.numpy() for x in inputs])
    assert _relative(want, got) < 5e-2  # fp16
