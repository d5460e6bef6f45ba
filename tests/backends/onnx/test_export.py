"""ONNX export: structure (QDQ placement, names, metadata, dim_params), numerics, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from backends.onnx import ExportError, export_onnx, ort_session, run_onnx, unsupported_nodes
from compiler.errors import UnsupportedOpsError
from compiler.interpreter import interpret
from compiler.ir import Graph
from tests.backends.ir_text import graph_from_text
from tests.backends.onnx.graphs import (
    float_cnn,
    float_transformer,
    quantized_cnn,
    quantized_mlp,
    stepwise_lsb,
)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-12))


@pytest.mark.parametrize(
    "graph, inputs",
    [
        (float_cnn(), lambda r: (r.standard_normal((1, 3, 16, 16)).astype(np.float32),)),
        (float_cnn("batch"), lambda r: (r.standard_normal((3, 3, 16, 16)).astype(np.float32),)),
        (float_transformer(), lambda r: (r.integers(0, 32, (1, 8)),)),
        (float_transformer("b", 8), lambda r: (r.integers(0, 32, (2, 8)),)),
    ],
    ids=["cnn", "cnn-dynamic", "transformer", "transformer-dynamic"],
)
def test_float_graph_matches_interpreter(graph: Graph, inputs, rng: np.random.Generator) -> None:
    xs = inputs(rng)
    model = export_onnx(graph)
    (want,) = interpret(graph, *xs)
    (got,) = run_onnx(ort_session(model), graph, xs)
    assert _relative(want, got) < 1e-5


def test_names_docs_and_metadata_follow_the_ir() -> None:
    g = float_cnn()
    model = export_onnx(g)
    node_names = {n.name for n in model.graph.node}
    for node in g.compute_nodes():
        assert node.outputs[0].name in node_names  # the node computing %v is named v
    conv = _producer(model, "c2")
    assert conv.doc_string.startswith("tapeout: %c2: f32[1,8,8,8] = nn.conv2d(")
    assert "fused: bias+residual+relu" in conv.doc_string
    assert [n.op_type for n in model.graph.node if n.name.startswith("c2")] == [
        "Conv",
        "Add",
        "Relu",
    ]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["tapeout.graph"] == "float_cnn"
    assert props["tapeout.ir"] == str(g)
    layers = {e["name"]: e for e in json.loads(props["tapeout.layers"])}
    assert layers["c2"]["fused"] == ["bias", "residual", "relu"]
    assert layers["c2"]["precision"] == "f32 x f32 -> f32"
    assert layers["c2"]["onnx"] == ["Conv", "Add", "Relu"]
    assert layers["c2"]["loc"] == "block.conv"


def test_symbolic_dims_become_dim_params() -> None:
    model = export_onnx(float_cnn("batch"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 16, 16]
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch"


def test_quantized_cnn_is_qdq() -> None:
    """DQ(x), DQ(w per-channel axis 0) -> float Conv -> Relu -> Q: what TensorRT expects."""
    g, _ = quantized_cnn()
    model = export_onnx(g)
    ops = _ops(model)
    assert not {"ConvInteger", "MatMulInteger", "QLinearConv"} & set(ops)
    conv = _producer(model, "c1_acc/conv")
    assert conv.op_type == "Conv"
    x_dq, w_dq = (_producer(model, t) for t in conv.input[:2])
    assert (x_dq.name, w_dq.name) == ("xq/dequantize", "c1.weight/dequantize")
    assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
    assert {a.name: a.i for a in w_dq.attribute}["axis"] == 0
    inits = {t.name: t for t in model.graph.initializer}
    assert inits["c1.weight"].data_type == onnx.TensorProto.INT8  # the i8 weight itself
    assert inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT  # bias folded to float
    assert _producer(model, "c1_acc").op_type == "Relu"  # the fused relu: its own node
    assert _producer(model, "c1").op_type == "QuantizeLinear"  # requantize is the Q
    # q.add: DQ of both operands -> Add -> Relu -> Q
    add = _producer(model, "c2/add")
    assert _producer(model, add.input[0]).name == "c2_pre/dequantize"
    assert _producer(model, "c2").input[0] == "c2/relu"
    # data movement on int8: DQ -> op -> Q with the same scale
    pool = _producer(model, "p1/maxpool")
    assert pool.input == ["c1/dequantize"]
    assert _producer(model, "p1").input[1] == _producer(model, "c1").input[1]


@pytest.mark.parametrize("power_of_two", [False, True])
def test_quantized_cnn_is_bit_exact(power_of_two: bool) -> None:
    g, x = quantized_cnn(power_of_two=power_of_two)
    model = export_onnx(g)
    for optimize in (False, True):
        assert set(stepwise_lsb(g, model, (x,), optimize=optimize).values()) == {0}
        (want,) = interpret(g, x)
        (got,) = run_onnx(ort_session(model, optimize=optimize), g, (x,))
        np.testing.assert_array_equal(got, want)


def test_plain_qdq_for_tensorrt_is_within_one_lsb() -> None:
    """exact=False: no tie-breaking Add before Q; power-of-two ties cost at most 1 LSB."""
    g, x = quantized_cnn(power_of_two=True)
    model = export_onnx(g, exact=False)
    assert _producer(model, "gap").input[0] == "gap/globalaveragepool"
    assert "Mul" not in _ops(model)
    assert max(stepwise_lsb(g, model, (x,)).values()) <= 1
    exact = export_onnx(g)
    assert _producer(exact, "gap").input[0] == "gap/add"  # the tie-breaking half step


@pytest.mark.parametrize("zero_point", [0, 7])
def test_quantized_mlp_clip_and_zero_point(zero_point: int) -> None:
    g, x = quantized_mlp(zero_point=zero_point)
    model = export_onnx(g)
    assert set(stepwise_lsb(g, model, (x,)).values()) == {0}
    h_q = _producer(model, "h")
    # clip_min/max as float bounds (a Relu where the upper one is the dtype's own limit)
    assert _producer(model, h_q.input[0]).op_type in ("Clip", "Relu")
    for want, got in zip(interpret(g, x), run_onnx(ort_session(model), g, (x,)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_gelu_layer_norm_attention_forms() -> None:
    g = float_transformer()
    ops17 = _ops(export_onnx(g, opset=17))
    assert "Erf" in ops17 and "Gelu" not in ops17
    assert "LayerNormalization" in ops17 and "Softmax" in ops17 and "MatMul" in ops17
    ops20 = _ops(export_onnx(g, opset=20))
    assert "Gelu" in ops20 and "Erf" not in ops20


def test_unsupported_nodes_are_all_listed() -> None:
    g = graph_from_text(
        """
        graph @bad(%x: f32[2,4]) -> (bf16[2,4], bf16[2,4]) {
          %cast: bf16[2,4] = tensor.cast(%x) {to="bf16"} loc("cast0")
          %cast_1: bf16[2,4] = tensor.cast(%x) {to="bf16"} loc("cast1")
          return %cast, %cast_1
        }
        """
    )
    items = unsupported_nodes(g)
    assert [i.location for i in items] == ["cast0", "cast1"]
    with pytest.raises(UnsupportedOpsError, match="2 unsupported node"):
        export_onnx(g)


def test_int16_needs_opset_21() -> None:
    g = graph_from_text(
        """
        graph @q16(%x: f32[4]) -> (f32[4]) {
          %q: i16[4]{scale=0.001} = q.quantize(%x) {dtype="i16"}
          %real: f32[4] = q.dequantize(%q)
          return %real
        }
        """
    )
    assert "opset 21" in unsupported_nodes(g, 17)[0].reason
    xs = (np.asarray([0.5, -1.0, 3e-3, 40.0], np.float32),)
    got = run_onnx(ort_session(export_onnx(g, opset=21)), g, xs)
    np.testing.assert_array_equal(got[0], interpret(g, *xs)[0])


def test_bad_opset_is_an_error() -> None:
    with pytest.raises(ExportError, match="opset 16 is not supported"):
        export_onnx(float_cnn(), opset=16)


def test_saves_to_path(tmp_path: Path) -> None:
    export_onnx(float_cnn(), tmp_path / "m.onnx")
    onnx.checker.check_model(str(tmp_path / "m.onnx"))


def test_onnx_backend_compiles_runs_and_reloads(tmp_path: Path, rng: np.random.Generator) -> None:
    import compiler.api as api

    g = float_cnn("batch")
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    art = api.compile(g, target="onnx", output_dir=tmp_path / "a")
    assert (tmp_path / "a" / "model.onnx").is_file()
    (want,) = interpret(g, x)
    assert _relative(want, art.run(x)[0]) < 1e-5
    assert "onnx" in art.report() and art.summary["opset"] == 17
    again = api.load(tmp_path / "a")
    assert _relative(want, again.run(x)[0]) < 1e-5


def test_round_trip_through_the_onnx_frontend(rng: np.random.Generator) -> None:
    frontend = pytest.importorskip("compiler.frontends.onnx")
    g = float_transformer()
    back = frontend.import_onnx(export_onnx(g))
    ids = rng.integers(0, 32, (1, 8))
    np.testing.assert_allclose(interpret(back, ids)[0], interpret(g, ids)[0], rtol=1e-5, atol=1e-6)


def test_accumulator_as_output_is_materialized(rng: np.random.Generator) -> None:
    """An i32 accumulator that leaves the graph is rebuilt from its real value (Div, Round,
    Cast): exact while it fits float32's 24-bit mantissa."""
    # the accumulator's scales are the input's (0.05) times the weight's, channel by channel
    g = graph_from_text(
        """
        graph @acc_out(%x: f32[2,8]) -> (i32[2,4], f32[2,4]) {
          %w: i8[4,8]{scale=[0.01,0.02,0.03,0.04], axis=0} = const @w
          %xq: i8[2,8]{scale=0.05} = q.quantize(%x) {dtype="i8"}
          %acc: i32[2,4]{scale=$acc_scale, axis=1} = nn.dense(%xq, %w) {acc="i32"}
          %real: f32[2,4] = q.dequantize(%acc)
          return %acc, %real
        }
        """,
        {"w": rng.integers(-127, 128, (4, 8)).astype(np.int8)},
        acc_scale=[0.05 * s for s in (0.01, 0.02, 0.03, 0.04)],
    )
    xs = (rng.standard_normal((2, 8)).astype(np.float32),)
    model = export_onnx(g)
    assert [_producer(model, o.name).op_type for o in model.graph.output] == ["Cast", "Identity"]
    got = run_onnx(ort_session(model), g, xs)
    want = interpret(g, *xs)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
