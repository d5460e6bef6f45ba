"""The TensorRT backend up to the engine build, on the CPU: toolchain errors, the deployable
bundle (ONNX, build_config.json, build_engine.py, trtexec.sh), the build plan (precision
flags, 2:4 sparsity, dynamic shapes, DLA) and the per-layer precision report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler.api as api
from backends.tensorrt import TensorRTBackend, build_engine, make_plan
from backends.tensorrt.layers import engine_layers, layer_report
from backends.tensorrt.plan import is_2to4_sparse, sparse_layers
from backends.tensorrt.runtime import missing_toolchain
from compiler.errors import BackendError, ToolchainUnavailable, UnsupportedOpsError
from compiler.ir import Graph
from compiler.target import load_target
from tests.backends.ir_text import graph_from_text
from tests.backends.onnx.graphs import float_cnn, float_transformer, quantized_cnn, quantized_mlp

BUNDLE = {"model.onnx", "build_config.json", "build_engine.py", "trtexec.sh"}


def _bundle(graph: Graph, folder: Path, target: str = "gpu", **options) -> api.Artifact:
    return api.compile(graph, target=target, output_dir=folder, engine=False, **options)


@pytest.mark.skipif(missing_toolchain() is None, reason="TensorRT and a GPU are present here")
def test_compile_without_tensorrt_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolchainUnavailable, match="(?i)tensorrt") as info:
        api.compile(float_cnn(), target="gpu", output_dir=tmp_path / "a")
    assert "engine=False" in str(info.value) and "--no-engine" in str(info.value)
    assert not (tmp_path / "a").exists()  # nothing half-written


def test_bundle_only_writes_the_deployable_bundle(tmp_path: Path) -> None:
    art = _bundle(float_cnn(), tmp_path / "a")
    assert BUNDLE <= {p.name for p in (tmp_path / "a").iterdir()}
    assert not (tmp_path / "a" / "model.engine").exists()
    assert art.summary["engine_built"] is False
    assert "not_built" in art.summary and "build_engine.py" in art.report()
    config = json.loads((tmp_path / "a" / "build_config.json").read_text())
    assert config["onnx"] == "model.onnx" and config["precisions"] == ["fp16"]
    assert config["workspace_mb"] == load_target("gpu").gpu.workspace_mb  # type: ignore[union-attr]
    again = api.load(tmp_path / "a")
    with pytest.raises(BackendError, match="no model.engine"):
        again.run(np.zeros((1, 3, 16, 16), np.float32))


def test_bundled_script_is_the_backend_script(tmp_path: Path) -> None:
    _bundle(float_cnn(), tmp_path / "a")
    shipped = Path(build_engine.__file__).parent
    copied = (tmp_path / "a" / "build_engine.py").read_text()
    assert copied == (shipped / "build_engine.py").read_text()
    compile(copied, "build_engine.py", "exec")  # valid Python


def test_trtexec_fp16_and_dynamic_batch(tmp_path: Path) -> None:
    art = _bundle(float_cnn("batch"), tmp_path / "a", shape_ranges={"batch": (1, 8, 64)})
    line = art.summary["trtexec"]
    assert line.startswith("trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 ")
    assert "--int8" not in line and "--sparsity" not in line
    assert "--memPoolSize=workspace:4096M" in line and "--timingCacheFile=timing.cache" in line
    assert "--minShapes=x:1x3x16x16" in line and "--optShapes=x:8x3x16x16" in line
    assert "--maxShapes=x:64x3x16x16" in line
    script = (tmp_path / "a" / "trtexec.sh").read_text()
    assert script.startswith("#!/bin/sh") and line in script
    config = json.loads((tmp_path / "a" / "build_config.json").read_text())
    assert config["profiles"] == {
        "x": {"min": [1, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [64, 3, 16, 16]}
    }


def test_static_graph_has_no_profile(tmp_path: Path) -> None:
    line = _bundle(float_cnn(), tmp_path / "a").summary["trtexec"]
    assert "Shapes" not in line


def test_trtexec_int8_with_fp16_float_islands(tmp_path: Path) -> None:
    graph, _ = quantized_mlp()
    art = _bundle(graph, tmp_path / "a", target="h100")
    line = art.summary["trtexec"]
    assert "--int8" in line and "--fp16" in line
    assert art.summary["precision"] == "int8"
    # the softmax is a float island: named as running in fp16 in an int8 build
    rows = {r["name"]: r for r in art.layers}
    assert rows["probs"]["trt"] == "fp16" and rows["h_acc"]["trt"] == "int8"
    assert any(
        m.startswith("%probs (nn.softmax): fp16, asked int8")
        for m in art.summary["precision_mismatches"]
    )
    fp32 = _bundle(graph, tmp_path / "b", target="h100", float_precision="fp32")
    assert "--fp16" not in fp32.summary["trtexec"]
    assert {r["name"]: r for r in fp32.layers}["probs"]["trt"] == "fp32"


def _pruned_mlp() -> Graph:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    w.reshape(16, 8, 4)[:, :, :2] = 0.0  # two zeros in every group of four along K
    dense = rng.standard_normal((4, 16)).astype(np.float32)
    return graph_from_text(
        """
        graph @pruned(%x: f32[2,32]) -> (f32[2,4]) {
          %fc1.weight: f32[16,32] = const @fc1.weight
          %fc2.weight: f32[4,16] = const @fc2.weight
          %h: f32[2,16] = nn.dense(%x, %fc1.weight) {act="relu"}
          %y: f32[2,4] = nn.dense(%h, %fc2.weight)
          return %y
        }
        """,
        {"fc1.weight": w, "fc2.weight": dense},
    )


def test_2to4_detection() -> None:
    g = _pruned_mlp()
    assert sparse_layers(g) == ["h"]
    conv = np.zeros((8, 4, 3, 3), np.float32)
    conv[:, :2] = 1.0  # input channels 0, 1 nonzero: 2 zeros per group of 4
    assert is_2to4_sparse(conv, conv=True)
    conv[0, 2, 1, 1] = 1.0
    assert not is_2to4_sparse(conv, conv=True)
    assert not is_2to4_sparse(np.zeros((4, 3), np.float32), conv=False)  # K not a multiple of 4


def test_trtexec_sparsity(tmp_path: Path) -> None:
    art = _bundle(_pruned_mlp(), tmp_path / "a", target="a100")
    assert "--sparsity=enable" in art.summary["trtexec"]
    assert art.summary["sparse_layers"] == 1
    assert {r["name"]: r["sparse"] for r in art.layers} == {"h": "2:4", "y": ""}
    off = _bundle(_pruned_mlp(), tmp_path / "b", target="a100", sparsity=False)
    assert "--sparsity" not in off.summary["trtexec"]
    dense = _bundle(float_cnn(), tmp_path / "c", target="a100")
    assert "--sparsity" not in dense.summary["trtexec"]


def test_dla_core_on_jetson(tmp_path: Path) -> None:
    art = _bundle(float_cnn(), tmp_path / "a", target="jetson-orin", dla_core=1)
    assert "--useDLACore=1 --allowGPUFallback" in art.summary["trtexec"]
    with pytest.raises(BackendError, match="DLA"):
        make_plan(float_cnn(), load_target("h100"), {"dla_core": 0})


def test_precision_choices() -> None:
    h100 = load_target("h100")
    assert make_plan(float_cnn(), h100, {}).precisions == ("fp16",)
    assert make_plan(float_cnn(), h100, {"precision": "fp32"}).precisions == ()
    assert make_plan(quantized_cnn()[0], h100, {}).precisions == ("int8", "fp16")
    with pytest.raises(BackendError, match="quantized graph"):
        make_plan(float_cnn(), h100, {"precision": "int8"})


def test_tensorrt_refuses_asymmetric_quantization() -> None:
    graph, _ = quantized_mlp(zero_point=7)
    items = TensorRTBackend().unsupported(graph, load_target("h100"))
    assert items and all("zero point 0" in i.reason or "int8 only" in i.reason for i in items)
    with pytest.raises(UnsupportedOpsError, match="zero point 0"):
        api.compile(graph, target="h100", engine=False)


def test_report_from_engine_inspector_json() -> None:
    """TensorRT 10 (Format/Datatype) and 11 (DataType) inspector JSON, fused layer names."""
    graph, _ = quantized_mlp()
    plan = make_plan(graph, load_target("h100"), {})
    info = {
        "Layers": [
            {
                "Name": "h_acc/gemm + h_acc",
                "Inputs": [{"Format/Datatype": "Int8 NC/32HW32"}],
                "Outputs": [{"Format/Datatype": "Half"}],
            },
            {
                "Name": "o_acc",
                "Metadata": "[ONNX Layer: o_acc]",
                "Inputs": [{"DataType": "INT8"}],
                "Outputs": [{"DataType": "FP16"}],
            },
            {"Name": "probs", "Inputs": [{"DataType": "FP32"}], "Outputs": [{"DataType": "FP32"}]},
            "a layer name only (profiling verbosity below DETAILED)",
        ]
    }
    found = engine_layers(info, graph)
    assert found["h_acc"][0] == "int8" and found["o_acc"][0] == "int8"
    rows, mismatches = layer_report(graph, plan, info)
    assert {r["name"]: r["trt"] for r in rows}["probs"] == "fp32"
    assert mismatches == ["%probs (nn.softmax): fp32, asked int8"]


def test_transformer_bundle(tmp_path: Path) -> None:
    art = _bundle(float_transformer("batch", 8), tmp_path / "a", target="h100")
    assert "--minShapes=ids:1x8" in art.summary["trtexec"]
    assert art.summary["dynamic_inputs"] == ["ids"]
