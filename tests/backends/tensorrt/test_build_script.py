"""build_engine.py on the CPU: only documented TensorRT API names, and the builder calls it
makes for each plan, run against a recording stand-in of TensorRT (``fake_trt``)."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import backends.tensorrt.backend as trt_backend
import compiler.api as api
from backends.tensorrt import build_engine
from tests.backends.onnx.graphs import float_cnn, quantized_mlp
from tests.backends.tensorrt.fake_trt import DOCUMENTED, FakeTensorRT

HERE = Path(build_engine.__file__).parent
#: Variable names holding TensorRT objects in build_engine.py / runtime.py -> their class.
RECEIVERS = {
    "builder": "Builder",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "inspector": "IEngineInspector",
    "context": "IExecutionContext",
}


def _trt_names(path: Path) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """(``trt.X.Y`` chains, (class, member) used on TensorRT objects) in a source file."""
    chains: set[tuple[str, ...]] = set()
    members: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        parts: list[str] = [node.attr]
        base: ast.expr = node.value
        while isinstance(base, ast.Attribute):
            parts.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id == "trt":
            chains.add(tuple(parts))
        receiver = parts[-2] if len(parts) > 1 else (base.id if isinstance(base, ast.Name) else "")
        if receiver in RECEIVERS:
            members.add((RECEIVERS[receiver], parts[-1]))
    return chains, members


@pytest.mark.parametrize("source", ["build_engine.py", "runtime.py"])
def test_only_documented_tensorrt_names(source: str) -> None:
    chains, members = _trt_names(HERE / source)
    assert chains, "no TensorRT calls found: the scan is broken"
    for chain in chains:
        assert chain[0] in DOCUMENTED["tensorrt"], chain
        if len(chain) > 1 and chain[0] in DOCUMENTED:
            assert chain[1] in DOCUMENTED[chain[0]], chain
    for cls, member in members:
        assert member in DOCUMENTED[cls], f"{cls}.{member} is not in the documented API list"
    for flag in build_engine.PRECISION_FLAGS.values():  # used through getattr
        assert flag in DOCUMENTED["BuilderFlag"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTensorRT:
    trt = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def _bundle(tmp_path: Path, graph: Any = None, target: str = "h100", **options: Any) -> Path:
    folder = tmp_path / "bundle"
    api.compile(
        graph or float_cnn("batch"), target=target, output_dir=folder, engine=False, **options
    )
    return folder


def test_build_fp16_engine_with_profile_and_timing_cache(
    tmp_path: Path, fake: FakeTensorRT
) -> None:
    folder = _bundle(tmp_path)
    cfg = build_engine.load_config(folder / "build_config.json")
    result = build_engine.build(cfg)
    engine = folder / "model.engine"
    assert engine.is_file() and result["engine_bytes"] == engine.stat().st_size
    built = json.loads(engine.read_bytes())
    assert built["flags"] == ["BuilderFlag.FP16"]
    assert built["profiles"] == [{"x": [[1, 3, 16, 16], [1, 3, 16, 16], [32, 3, 16, 16]]}]
    assert ("set_memory_pool_limit", ("MemoryPoolType.WORKSPACE", 4096 << 20)) in fake.calls
    assert ("create_network", 0) in fake.calls  # TensorRT 10: explicit batch is implicit
    assert (folder / "timing.cache").read_bytes() == b"+timed"
    layers = json.loads((folder / "layers.json").read_text())["Layers"]
    assert {layer["Name"] for layer in layers} >= {"c1/conv", "c2/conv", "logits"}
    build_engine.build(cfg)  # the second build starts from the saved cache
    assert ("create_timing_cache", b"+timed") in fake.calls


def test_build_int8_sparse_dla(tmp_path: Path, fake: FakeTensorRT) -> None:
    graph, _ = quantized_mlp()
    folder = _bundle(tmp_path, graph, target="jetson-orin", dla_core=0)
    build_engine.build(build_engine.load_config(folder / "build_config.json"))
    flags = fake.flags_of(folder / "model.engine")
    assert flags == sorted(["BuilderFlag.INT8", "BuilderFlag.FP16", "BuilderFlag.GPU_FALLBACK"])


def test_tensorrt_11_has_no_precision_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt = FakeTensorRT(version="11.0.0", precision_flags=False)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    graph, _ = quantized_mlp()
    folder = _bundle(tmp_path, graph)
    result = build_engine.build(build_engine.load_config(folder / "build_config.json"))
    assert trt.flags_of(folder / "model.engine") == []
    assert len(result["notes"]) == 1 and "fp16" in result["notes"][0]  # int8 needs no flag


def test_tensorrt_8_sets_explicit_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = FakeTensorRT(version="8.6.1")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    folder = _bundle(tmp_path)
    build_engine.build(build_engine.load_config(folder / "build_config.json"))
    explicit = int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert ("create_network", 1 << explicit) in trt.calls


def _load_copied_script(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_build_engine", folder / "build_engine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_script_main(
    tmp_path: Path, fake: FakeTensorRT, capsys: pytest.CaptureFixture
) -> None:
    folder = _bundle(tmp_path)
    script = _load_copied_script(folder)
    assert script.main([str(folder / "build_config.json")]) == 0
    assert json.loads(capsys.readouterr().out)["tensorrt"] == "10.3.0"
    assert (folder / "model.engine").is_file()


def test_parse_errors_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(parse_errors=["node c1: bad"]))
    folder = _bundle(tmp_path)
    assert build_engine.main([str(folder / "build_config.json")]) == 1
    assert "node c1: bad" in capsys.readouterr().err


def test_backend_builds_through_the_script(
    tmp_path: Path, fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engine=True with TensorRT present: the engine, the inspector's layers, the report."""
    monkeypatch.setattr(trt_backend, "require_toolchain", lambda: None)
    monkeypatch.setenv("TAPEOUT_CACHE", str(tmp_path / "cache"))
    graph, _ = quantized_mlp()
    art = api.compile(graph, target="h100", output_dir=tmp_path / "a")
    assert (tmp_path / "a" / "model.engine").is_file() and (
        tmp_path / "a" / "layers.json"
    ).is_file()
    assert art.summary["engine_built"] is True and art.summary["tensorrt"] == "10.3.0"
    assert art.summary["precision_source"] == "engine inspector"
    rows = {r["name"]: r for r in art.layers}
    assert rows["h_acc"]["trt"] == "int8" and rows["probs"]["trt"] == "fp16"
    assert "%probs (nn.softmax): fp16, asked int8" in art.summary["precision_mismatches"]
    assert (tmp_path / "cache" / "tensorrt" / "h100-sm9.0.timing.cache").is_file()
