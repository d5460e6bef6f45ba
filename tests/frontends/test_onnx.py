"""The ONNX frontend against onnxruntime: zoo models (exported by torch at several opsets),
one-op models for every converter and opset difference, folding, symbolic dims, errors.

Every imported graph must verify, print and parse back, and compute what onnxruntime
computes (relative error <= 1e-4 of the output's magnitude; exact for integer outputs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import helper  # noqa: E402

from compiler.errors import (  # noqa: E402
    FrontendError,
    InputError,
    ShapeError,
    UnsupportedOpsError,
)
from compiler.frontends.onnx import import_onnx  # noqa: E402
from compiler.interpreter import interpret  # noqa: E402
from tests.cases import CASES, get_case  # noqa: E402
from tests.frontends.onnx_util import (  # noqa: E402
    ZooExports,
    assert_matches_onnxruntime,
    assert_round_trips,
    onnx_model,
    run_onnxruntime,
)

node = helper.make_node


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> ZooExports:
    return ZooExports(tmp_path_factory.mktemp("onnx_zoo"))


def zoo_feeds(name: str) -> dict[str, np.ndarray]:
    return {f"x{i}": t.numpy() for i, t in enumerate(get_case(name).example_inputs())}


# ---- the zoo --------------------------------------------------------------------------------
def _zoo_params() -> list[Any]:
    params = []
    for name, case in CASES.items():
        marks = []
        if case.slow:
            continue  # resnet50 is the import benchmark's model (bench/import_bench.py)
        if not case.available():
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(case.missing())}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_case_matches_onnxruntime(
    exports: ZooExports, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = exports.get(name, opset=17)
    with caplog.at_level(logging.WARNING, logger="compiler.frontends"):
        graph = import_onnx(path)
    assert not caplog.records, "ONNX shape inference and the IR disagree"
    assert graph.name == path.stem
    assert not graph.nodes_of("tensor.shape"), "static shape chains must fold at import"
    assert all(n.loc for n in graph.compute_nodes()), "every node carries its ONNX node name"
    assert_round_trips(graph)
    assert_matches_onnxruntime(graph, path, zoo_feeds(name))


@pytest.mark.parametrize(
    ("name", "opset"),
    [("ops_conv", 13), ("ops_conv", 11), ("ops_elementwise", 11), ("ops_shape", 11),
     ("digits_cnn", 9), ("ops_conv", 9)],
)  # fmt: skip
def test_older_opsets_match_onnxruntime(exports: ZooExports, name: str, opset: int) -> None:
    path = exports.get(name, opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset
    graph = import_onnx(path)
    assert_round_trips(graph)
    assert_matches_onnxruntime(graph, path, zoo_feeds(name))


@pytest.mark.parametrize("name", ["ops_shape"])
def test_dynamo_exporter_at_opset_18(exports: ZooExports, name: str) -> None:
    path = exports.get(name, opset=18, dynamo=True)
    graph = import_onnx(path)
    assert_round_trips(graph)
    assert_matches_onnxruntime(graph, path, zoo_feeds(name))


def test_dynamic_batch_stays_symbolic_and_runs_two_batch_sizes(exports: ZooExports) -> None:
    path = exports.get("digits_cnn", opset=13, dynamic_batch=True)
    graph = import_onnx(path)
    assert graph.inputs[0].shape == ("batch", 1, 8, 8)
    assert graph.outputs[0].shape == ("batch", 10)
    assert_round_trips(graph)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        feeds = {"x0": rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)}
        assert_matches_onnxruntime(graph, path, feeds)
    static = import_onnx(path, input_shapes={"x0": (2, 1, 8, 8)})
    assert static.outputs[0].shape == (2, 10)


# ---- hand-built models: folding, symbolic dims, quantization --------------------------------
RNG = np.random.default_rng(0)


def _f(*shape: int) -> np.ndarray:
    return np.asarray(RNG.standard_normal(shape), dtype=np.float32)


def _i(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def test_reshape_chain_folds_to_one_reshape() -> None:
    nodes = [
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "axes"], ["n1"]),
        node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"]),
    ]
    init = {"zero": _i(0).reshape(()), "axes": _i(0), "minus_one": _i(-1)}
    model = onnx_model(nodes, {"x": (np.float32, [2, 3, 4])}, ["y"], 13, init)
    graph = import_onnx(model)
    assert [n.op for n in graph.compute_nodes()] == ["tensor.reshape"]
    assert graph.compute_nodes()[0].attrs["shape"] == [2, 12]
    assert not graph.constants
    feeds = {"x": _f(2, 3, 4)}
    assert_matches_onnxruntime(graph, model, feeds)


def _symbolic_batch_model() -> Any:
    nodes = [
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "zero"], ["batch"], axis=0),
        node("Unsqueeze", ["batch", "axes"], ["b1"]),
        node("Concat", ["b1", "minus_one"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["flat"]),
        node("Relu", ["flat"], ["y"]),
    ]
    init = {"zero": _i(0).reshape(()), "axes": _i(0), "minus_one": _i(-1)}
    return onnx_model(nodes, {"x": (np.float32, ["batch", 3, 4])}, ["y"], 13, init)


def test_dim_param_stays_symbolic_through_a_reshape_chain() -> None:
    model = _symbolic_batch_model()
    graph = import_onnx(model)
    assert graph.inputs[0].shape == ("batch", 3, 4)
    reshape = graph.nodes_of("tensor.reshape")[0]
    assert reshape.attrs["shape"] == ["batch", -1]
    assert graph.outputs[0].shape == ("batch", 12)
    assert not graph.nodes_of("tensor.shape")
    assert_round_trips(graph)
    for batch in (2, 5):
        assert_matches_onnxruntime(graph, model, {"x": _f(batch, 3, 4)})
    static = import_onnx(model, input_shapes={"x": (4, 3, 4)})
    assert static.outputs[0].shape == (4, 12)


def test_symbolic_arithmetic_that_cannot_fold_names_the_fix() -> None:
    nodes = [
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "zero"], ["batch"]),
        node("Div", ["batch", "two"], ["half"]),
        node("Unsqueeze", ["half", "axes"], ["h1"]),
        node("Concat", ["h1", "minus_one"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"]),
    ]
    init = {"zero": _i(0).reshape(()), "two": _i(2).reshape(()), "axes": _i(0), "minus_one": _i(-1)}
    model = onnx_model(nodes, {"x": (np.float32, ["batch", 4])}, ["y"], 13, init)
    with pytest.raises(UnsupportedOpsError, match="input_shapes") as info:
        import_onnx(model)
    assert [item.op for item in info.value.items] == ["Div"]
    assert import_onnx(model, input_shapes={"x": (6, 4)}).outputs[0].shape == (3, 8)


def test_qdq_model_keeps_quantization_on_types() -> None:
    w = RNG.integers(-100, 100, (4, 2, 3, 3)).astype(np.int8)
    init: dict[str, np.ndarray] = {
        "w_q": w,
        "w_scale": np.asarray([0.01, 0.02, 0.015, 0.005], np.float32),
        "w_zp": np.zeros(4, np.int8),
        "x_scale": np.asarray(0.05, np.float32),
        "x_zp": np.asarray(10, np.uint8),
        "y_scale": np.asarray(0.1, np.float32),
        "y_zp": np.asarray(-3, np.int8),
    }
    nodes = [
        node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
        node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xf"]),
        node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wf"], axis=0),
        node("Conv", ["xf", "wf"], ["c"], pads=[1, 1, 1, 1]),
        node("QuantizeLinear", ["c", "y_scale", "y_zp"], ["yq"]),
        node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"]),
    ]
    model = onnx_model(nodes, {"x": (np.float32, [1, 2, 6, 6])}, ["y"], 13, init)
    graph = import_onnx(model)
    assert graph.op_counts() == {"q.quantize": 2, "q.dequantize": 3, "nn.conv2d": 1}
    weight = graph.find("w_q")
    assert weight.dtype == "i8" and weight.type.quant is not None
    assert weight.type.quant.axis == 0 and len(weight.type.quant.scale) == 4
    input_quant = graph.find("xq").type.quant
    assert input_quant is not None and input_quant.zero_point == (10,)
    assert_round_trips(graph)
    feeds = {"x": _f(1, 2, 6, 6)}
    got = interpret(graph, *feeds.values())[0]
    want = run_onnxruntime(model, feeds, optimize=False)[0]
    assert np.abs(got - want).max() <= 0.1 + 1e-6  # at most one output step (float sums differ)


# ---- errors ---------------------------------------------------------------------------------
def test_unsupported_ops_are_all_listed_with_counts() -> None:
    nodes = [
        node("ImageDecoder", ["boxes"], ["dec_a"], name="decode_first"),
        node("ImageDecoder", ["boxes"], ["dec_b"], name="decode_second"),
        node("Col2Im", ["scores", "k", "k"], ["image"], name="col2im"),
        node("Resize", ["scores", "", "s"], ["big"], mode="cubic", antialias=1,
             name="cubic_resize"),
    ]
    inputs = {"boxes": (np.float32, [1, 5, 4]), "scores": (np.float32, [1, 1, 5])}
    init = {"k": _i(2), "s": np.asarray([1, 1, 2], np.float32)}
    model = onnx_model(nodes, inputs, ["dec_a", "dec_b", "image", "big"], 20, init)
    with pytest.raises(UnsupportedOpsError) as info:
        import_onnx(model)
    error = info.value
    assert error.counts == {"ImageDecoder": 2, "Col2Im": 1, "Resize": 1}
    message = str(error)
    for name in ("decode_first", "decode_second", "col2im", "cubic_resize", "antialias=1"):
        assert name in message


def test_unsupported_ops_downstream_of_another_are_listed_too() -> None:
    # Each node reads the one before, so only the first has known input types; the others
    # still have no converter and must be listed with their locations, in one error.
    nodes = [
        node("Foo", ["x"], ["a"], domain="com.example", name="first_custom"),
        node("Bar", ["a"], ["b"], domain="com.example", name="second_custom"),
        node("Relu", ["b"], ["c"], name="relu_between"),
        node("Baz", ["c"], ["y"], domain="com.example", name="third_custom"),
    ]
    model = onnx_model(nodes, {"x": (np.float32, [2, 2])}, ["y"], 13)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpsError) as info:
        import_onnx(model)
    assert info.value.counts == {"com.example.Foo": 1, "com.example.Bar": 1, "com.example.Baz": 1}
    assert [item.location for item in info.value.items] == [
        "first_custom", "second_custom", "third_custom"
    ]


def test_other_domains_are_reported_unsupported() -> None:
    custom = node("FusedGemm", ["x"], ["y"], domain="com.microsoft", name="fused")
    model = onnx_model([custom], {"x": (np.float32, [2, 2])}, ["y"], 13)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpsError, match=r"com\.microsoft\.FusedGemm x1.*fused"):
        import_onnx(model)


def test_truncated_file_is_a_frontend_error_naming_it(exports: ZooExports, tmp_path: Path) -> None:
    data = exports.get("digits_cnn").read_bytes()
    broken = tmp_path / "half.onnx"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrontendError, match="half.onnx"):
        import_onnx(broken)


def test_a_file_that_is_not_onnx_is_a_frontend_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    with pytest.raises(FrontendError, match="notes.onnx"):
        import_onnx(text)
    with pytest.raises(FrontendError, match="no such ONNX file"):
        import_onnx(tmp_path / "missing.onnx")


def test_missing_initializer_names_node_and_tensor() -> None:
    nodes = [node("Conv", ["x", "conv1.weight"], ["y"], name="conv1")]
    model = onnx_model(nodes, {"x": (np.float32, [1, 1, 4, 4])}, ["y"], 13)
    with pytest.raises(FrontendError, match=r"'conv1' \(Conv\) reads 'conv1.weight'"):
        import_onnx(model)


def test_shape_mismatch_names_the_onnx_node() -> None:
    nodes = [node("Add", ["a", "b"], ["y"], name="bad_add")]
    inputs = {"a": (np.float32, [3, 4]), "b": (np.float32, [5])}
    with pytest.raises(ShapeError, match="bad_add"):
        import_onnx(onnx_model(nodes, inputs, ["y"], 13))


def test_nodes_out_of_order_are_sorted_and_cycles_rejected() -> None:
    nodes = [node("Relu", ["a"], ["y"]), node("Neg", ["x"], ["a"])]
    model = onnx_model(nodes, {"x": (np.float32, [2, 3])}, ["y"], 13)
    graph = import_onnx(model)
    assert [n.op for n in graph.compute_nodes()] == ["math.neg", "nn.relu"]
    cycle = [node("Relu", ["b"], ["a"], name="r"), node("Neg", ["a"], ["b"], name="n")]
    with pytest.raises(FrontendError, match="cycle"):
        import_onnx(
            onnx_model([*cycle, node("Abs", ["x"], ["y"])], {"x": (np.float32, [2])}, ["y"])
        )


def test_opset_and_input_shape_errors() -> None:
    model = onnx_model([node("Relu", ["x"], ["y"])], {"x": (np.float32, [2])}, ["y"], 8)
    with pytest.raises(FrontendError, match="opset 8 is older"):
        import_onnx(model)
    model = onnx_model([node("Relu", ["x"], ["y"])], {"x": (np.float32, [2])}, ["y"], 13)
    with pytest.raises(FrontendError, match="input_shapes names 'z'"):
        import_onnx(model, input_shapes={"z": (2,)})


def test_interpreter_rejects_wrong_number_of_inputs(exports: ZooExports) -> None:
    graph = import_onnx(exports.get("digits_cnn"))
    x = zoo_feeds("digits_cnn")["x0"]
    with pytest.raises(InputError, match="takes 1 input"):
        interpret(graph, x, x)
