"""Bad model files are typed errors naming what and where (classes the fuzzer found)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.errors import FrontendError, ShapeError, TapeoutError

DIGITS = Path(compiler.__file__).parent / "data" / "digits_cnn.onnx"


def _external(tmp_path: Path, location: str, offset: int = 0) -> Path:
    model = onnx.load(DIGITS)
    init = model.graph.initializer[0]
    data = numpy_helper.to_array(init).tobytes()
    init.ClearField("raw_data"), init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(data)
    (tmp_path / "outside.bin").write_bytes(data)
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize(("location", "offset", "message"), [
    ("w.bin", 0, None),
    ("../outside.bin", 0, "not inside the model's folder"),
    ("/etc/hostname", 0, "not inside the model's folder"),
    ("sub/../../outside.bin", 0, "not inside the model's folder"),
    ("missing.bin", 0, "is missing"),
    ("w.bin", 1 << 40, "lies outside"),
])
def test_external_data_stays_in_the_model_folder(tmp_path: Path, location: str, offset: int,
                                                 message: str | None) -> None:
    path = _external(tmp_path, location, offset)
    if message is None:
        assert compiler.import_model(str(path)).constants
    else:
        with pytest.raises(FrontendError, match=message):
            compiler.import_model(str(path))


def _one_node(node: onnx.NodeProto, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto], inits: list[TensorProto] | None = None,
              ) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", inputs, outputs, inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _vi(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.mark.parametrize("dim", [-7, 1 << 40, 1 << 62])
def test_declared_dims_out_of_range(dim: int) -> None:
    model = _one_node(helper.make_node("Relu", ["x"], ["y"]), [_vi("x", [1, dim])],
                      [_vi("y", [1, 4])])
    with pytest.raises(FrontendError, match="dimension 1"):
        compiler.import_model(model)


@pytest.mark.parametrize("attrs", [{"strides": [0, 1]}, {"kernel_shape": [3] * 8},
                                   {"pads": [1, 1]}, {"dilations": [-1, 1]}])
def test_conv_attributes_out_of_range(attrs: dict[str, list[int]]) -> None:
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    model = _one_node(node, [_vi("x", [1, 1, 8, 8])], [_vi("y", [1, 2, 6, 6])], [w])
    with pytest.raises(TapeoutError, match="Conv"):
        compiler.import_model(model)


def test_split_with_wrong_num_outputs_does_not_abort(tmp_path: Path) -> None:
    """onnx's C++ shape inference aborts on this model; the import must not reach it."""
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=3)
    model = _one_node(node, [_vi("x", [6])], [_vi("a", [3]), _vi("b", [3])])
    onnx.save(model, tmp_path / "split.onnx")
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        import compiler
        from compiler.errors import TapeoutError
        try:
            compiler.import_model({str(tmp_path / "split.onnx")!r})
        except TapeoutError as e:
            print("typed", type(e).__name__, e)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("typed ShapeError") and "num_outputs is 3" in proc.stdout


def test_missing_optional_input_and_attribute() -> None:
    node = helper.make_node("Clip", ["x", "", "hi"], ["y"])
    hi = numpy_helper.from_array(np.array(1.0, np.float32), "hi")
    model = _one_node(node, [_vi("x", [4])], [_vi("y", [4])], [hi])
    art = compiler.compile(model, "reference", pipeline=[])
    np.testing.assert_array_equal(art.run(np.array([-2, 0, 0.5, 3], np.float32))[0],
                                  [-2, 0, 0.5, 1])
    gather = helper.make_node("Gather", ["x", "i"], ["y"], axis=5)
    idx = numpy_helper.from_array(np.array([0], np.int64), "i")
    with pytest.raises((FrontendError, ShapeError), match="Gather"):
        compiler.import_model(_one_node(gather, [_vi("x", [4])], [_vi("y", [1])], [idx]))
