"""compile() / load() / Artifact on the reference target, and atomic artifact folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.errors import BackendError, TapeoutError, UnsupportedOpsError
from compiler.ir import Graph, TensorType, f32

DIGITS_ONNX = Path(compiler.__file__).parent / "data" / "digits_cnn.onnx"


def mlp() -> Graph:
    g = Graph("mlp")
    rng = np.random.default_rng(0)
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    w = g.add_const("fc.weight", rng.standard_normal((3, 4)).astype(np.float32))
    b = g.add_const("fc.bias", rng.standard_normal(3).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w, b], {"act": "relu"}, loc="fc").output]
    return g


def test_compile_run_save_load(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    art = compiler.compile(mlp(), "reference", output_dir=tmp_path / "art", pipeline=[])
    out = art.run(x)[0]
    np.testing.assert_array_equal(out, compiler.interpret(mlp(), x)[0])
    assert "nn.dense" in str(art.graph)
    report = art.report_json()
    assert report["layers"][0]["macs"] == 12 and report["target"] == "reference"
    assert "fc" in art.report()
    for name in ("manifest.json", "graph.ir", "constants.npz", "report.txt", "report.json"):
        assert (tmp_path / "art" / name).is_file()
    again = compiler.load(tmp_path / "art")
    np.testing.assert_array_equal(again.run(x)[0], out)
    saved = art.save(tmp_path / "copy")
    np.testing.assert_array_equal(compiler.load(saved).run(x)[0], out)


def test_example_inputs_specialize_symbolic_dims() -> None:
    art = compiler.compile(mlp(), "reference", example_inputs=(np.zeros((5, 4), np.float32),),
                           pipeline=[])
    assert art.graph.inputs[0].type.shape == (5, 4)


def test_load_rejects_non_artifacts(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not a tapeout artifact"):
        compiler.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"backend": "reference",
                                                        "target": "reference"}))
    with pytest.raises(BackendError, match="damaged"):
        compiler.load(tmp_path)


def test_unsupported_ops_are_all_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.reference import ReferenceBackend
    from compiler.errors import Unsupported

    def refuse(self: object, graph: Graph, target: object) -> list[Unsupported]:
        return [Unsupported(n.op, n.loc or n.name, "test refuses it") for n in graph.nodes
                if n.op != "const"]

    monkeypatch.setattr(ReferenceBackend, "unsupported", refuse)
    with pytest.raises(UnsupportedOpsError, match="nn.dense x1 \\(test refuses it\\): at fc"):
        compiler.compile(mlp(), "reference", pipeline=[])


def test_failed_compile_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.reference import ReferenceBackend

    def explode(*args: object, **kwargs: object) -> None:
        (args[3] / "half-written.txt").write_text("partial")  # type: ignore[operator]
        raise BackendError("disk full")

    monkeypatch.setattr(ReferenceBackend, "compile", explode)
    with pytest.raises(BackendError, match="disk full"):
        compiler.compile(mlp(), "reference", output_dir=tmp_path / "out", pipeline=[])
    assert list(tmp_path.iterdir()) == []


def test_bad_precision_and_target() -> None:
    with pytest.raises(TapeoutError, match="unknown precision"):
        compiler.compile(mlp(), "reference", precision="int3")
    with pytest.raises(TapeoutError, match="zcu105"):
        compiler.compile(mlp(), "zcu105")


def test_list_targets() -> None:
    names = compiler.list_targets()
    assert {"reference", "fpga", "zcu104", "cpu", "gpu", "asic"} <= set(names)


def test_onnx_model_through_reference() -> None:
    import onnxruntime as ort

    x = np.random.default_rng(2).random((1, 1, 8, 8)).astype(np.float32)
    art = compiler.compile(str(DIGITS_ONNX), "reference",
                           pipeline="fold-batchnorm,fuse-bias-act,dce", verify_each=True)
    want = ort.InferenceSession(str(DIGITS_ONNX), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(art.run(x)[0], want, rtol=1e-4, atol=1e-5)
    assert not art.graph.nodes_of("nn.batch_norm")
    assert all(n.attrs.get("act") == "relu" for n in art.graph.nodes_of("nn.conv2d"))


def test_graph_input_is_not_mutated() -> None:
    g = mlp()
    before = str(g)
    compiler.compile(g, "reference", example_inputs=(np.zeros((3, 4), np.float32),))
    assert str(g) == before
    assert f32(1).shape == (1,)


def test_island_dtype_reaches_the_quantize_pass(tmp_path: Path) -> None:
    from tests.passes.test_quantize import data, transformer

    calib = [(x,) for x in data(8, (6, 16))]
    model = transformer()
    wide = compiler.compile(model, "reference", calibration_data=calib, precision="int8",
                            island_dtype="f64")
    narrow = compiler.compile(model, "reference", calibration_data=calib, precision="int8")
    assert any(v.dtype == "f64" for v in wide.graph.values())
    assert not any(v.dtype == "f64" for v in narrow.graph.values())
    x = data(1, (6, 16), seed=9)[0]
    np.testing.assert_allclose(wide.run(x)[0], narrow.run(x)[0], rtol=0, atol=0.05)
    with pytest.raises(TapeoutError, match="island_dtype"):
        compiler.compile(transformer(), "reference", calibration_data=calib, precision="int8",
                    island_dtype="f16")


def test_cli_takes_island_dtype(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compiler.cli import main

    calib = str(Path(compiler.__file__).parent / "data" / "digits_calib.npz")
    onnx_path = str(Path(compiler.__file__).parent / "data" / "digits_cnn.onnx")
    code = main(["compile", onnx_path, "--target", "reference", "--precision", "int8",
                 "--calib", calib, "--island-dtype", "f32", "-o", str(tmp_path / "b"), "--json"])
    assert code == 0, capsys.readouterr().err
