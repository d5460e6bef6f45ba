"""quantize options and modes: exclude, overrides, int16, fp16, int4w, bias correction,
pipelines and statistics engines (on the small graphs of test_quantize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.context import PassContext
from compiler.errors import PassError, TapeoutError
from compiler.interpreter import interpret
from compiler.ir import print_graph, verify
from compiler.pass_manager import run_pipeline
from passes.quantize import quantize_graph
from tests.passes.test_quantize import (
    close_to_float,
    cnn,
    data,
    nodes,
    ops,
    quantized,
    transformer,
)


# ---- options --------------------------------------------------------------------------------
def test_exclude_by_name_and_op() -> None:
    _, q, report = quantized(exclude=("conv2", "nn.dense"))
    convs = nodes(q, "nn.conv2d")
    assert [c.inputs[0].dtype for c in convs] == ["i8", "f32"]
    assert nodes(q, "nn.dense")[0].inputs[0].dtype == "f32"
    assert report.layer("fc").precision == "float"  # type: ignore[attr-defined]


def test_overrides_per_layer() -> None:
    _, q, report = quantized(overrides={"conv1": {"per_channel": False, "precision": "int16"}})
    conv1 = nodes(q, "nn.conv2d")[0]
    assert conv1.inputs[0].dtype == "i16" and conv1.inputs[1].dtype == "i16"
    assert conv1.inputs[1].type.quant.axis is None
    assert report.layer("conv1").weight_scheme == "i16 per-tensor"  # type: ignore[attr-defined]
    with pytest.raises(TapeoutError, match="unknown key"):
        quantized(overrides={"conv1": {"bits": 3}})


def test_int16_precision_uses_16_bit_activations() -> None:
    _, q16, report16 = quantized(precision="int16")
    _, _, report8 = quantized()
    assert nodes(q16, "q.quantize")[0].outputs[0].dtype == "i16"
    assert {n.inputs[1].dtype for n in nodes(q16, "nn.conv2d")} == {"i8"}  # 16x8
    for op in ("math.add", "nn.avg_pool2d"):  # no weights: all the gain shows
        sqnr16 = next(x.sqnr_db for x in report16.layers if x.op == op)  # type: ignore[attr-defined]
        sqnr8 = next(x.sqnr_db for x in report8.layers if x.op == op)  # type: ignore[attr-defined]
        assert sqnr16 > sqnr8 + 30


def test_fp32_is_a_no_op_and_fp16_casts_around_compute() -> None:
    graph = cnn()
    before = print_graph(graph)
    report = quantize_graph(graph, None, None, precision="fp32")
    assert print_graph(graph) == before and report.precision == "fp32"
    q = cnn()
    quantize_graph(q, None, data(4), precision="fp16")
    verify(q)
    assert {n.inputs[1].dtype for n in nodes(q, "nn.conv2d")} == {"f16"}
    close_to_float(cnn(), q, 50.0)


def test_int4_weight_only_groups_dense_weights() -> None:
    graph = transformer()
    q = graph.copy()
    report = quantize_graph(q, None, data(4, (6, 16)), precision="int4w", group_size=8)
    (w4,) = [v for v in q.values() if v.dtype == "i4" and v.shape == (32, 16)]
    assert w4.type.quant.group_size == 8 and len(w4.type.quant.scale) == 32 * 2
    assert np.abs(q.const_value(w4)).max() <= 8
    assert report.output_cosine > 0.99 and report.compression > 3  # type: ignore[operator]


def test_bias_correction_removes_the_mean_error() -> None:
    graph = cnn()
    plain, corrected = graph.copy(), graph.copy()
    quantize_graph(plain, None, data(), per_channel=False, power_of_two=True)
    quantize_graph(
        corrected, None, data(), per_channel=False, power_of_two=True, bias_correction=True
    )
    x = data(16, seed=5)
    ref = np.concatenate([interpret(graph, s)[0] for s in x])
    errors = [
        np.abs(np.mean(np.concatenate([interpret(g, s)[0] for s in x]) - ref, axis=0))
        for g in (plain, corrected)
    ]
    assert errors[1].mean() < errors[0].mean()


# ---- pipelines ------------------------------------------------------------------------------
def test_pipeline_quantize_takes_data_from_the_context() -> None:
    graph = cnn()
    with pytest.raises(PassError, match="PassContext"):
        run_pipeline(graph, "quantize{bits=8}")
    ctx = PassContext(calibration_data=data())
    run_pipeline(graph, "quantize{bits=8,per_channel=false,exclude=[fc]}", ctx, verify_each=True)
    assert ctx.quant_reports[0].layer("fc").precision == "float"
    assert "q.requantize" in ops(graph)


def test_statistics_engines_give_the_same_graph() -> None:
    pytest.importorskip("onnxruntime")
    from backends.onnx.executor import OrtExecutor

    graphs = []
    for engine in ("interpreter", "executor"):
        q = cnn()
        quantize_graph(q, None, data(), stats_engine=engine, executor=OrtExecutor())
        graphs.append(q)
    assert graphs[0] == graphs[1]


# ---- float islands in float64 ---------------------------------------------------------------
def test_float64_islands_widen_between_dequantize_and_quantize() -> None:
    graph = transformer()
    wide, narrow = graph.copy(), graph.copy()
    quantize_graph(wide, None, data(16, (6, 16)), island_dtype="f64")
    quantize_graph(narrow, None, data(16, (6, 16)))
    verify(wide)
    text = print_graph(wide)
    # the residual stream and layer norm read the f32 input through one cast; the dense
    # accumulators dequantize straight to f64; the output is cast back to f32 under its name
    assert '%x_f64: f64[1,6,16] = tensor.cast(%x) {to="f64"}' in text
    assert 'q.dequantize(%h_pre_acc) {dtype="f64"}' in text
    assert "%h_f64: f64[1,6,32] = nn.gelu(" in text
    assert "%h_q: i8[1,6,32]" in text and "q.quantize(%h_f64)" in text
    assert '%y: f32[1,6,16] = tensor.cast(%y_f64) {to="f32"}' in text
    assert wide.outputs[0].dtype == "f32" and wide.outputs[0].name == "y"
    # same integer layers and scales; the float64 result is within float32 noise of the f32 one
    assert [n.op for n in nodes(wide, "nn.dense")] == [n.op for n in nodes(narrow, "nn.dense")]
    x = data(4, (6, 16), seed=5)
    for sample in x:
        a, b = interpret(wide, sample)[0], interpret(narrow, sample)[0]
        assert np.max(np.abs(a - b)) <= 0.05 * np.max(np.abs(b))


def test_island_dtype_follows_the_target_and_is_checked() -> None:
    from compiler.target import load_target

    assert load_target("cpu").numerics.island_dtype == "f64"
    assert load_target("fpga").numerics.island_dtype == "f32"
    graph = transformer()
    quantize_graph(graph, load_target("cpu"), data(16, (6, 16)))
    assert any(v.dtype == "f64" for v in graph.values())
    with pytest.raises(TapeoutError, match="island_dtype 'f16'"):
        quantize_graph(transformer(), None, data(16, (6, 16)), island_dtype="f16")


def test_narrow_islands_gives_back_a_float32_graph() -> None:
    from compiler.ir.islands import narrow_islands

    graph = transformer()
    quantize_graph(graph, None, data(16, (6, 16)), island_dtype="f64")
    narrowed = narrow_islands(graph)
    verify(narrowed)
    assert not any(v.dtype == "f64" for v in narrowed.values())
    assert any(v.dtype == "f64" for v in graph.values())  # the original is untouched
    sample = data(1, (6, 16), seed=3)[0]
    a, b = interpret(graph, sample)[0], interpret(narrowed, sample)[0]
    assert np.max(np.abs(a - b)) <= 1e-3 * np.max(np.abs(a))
