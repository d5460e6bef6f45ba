"""quantize: the integer IR form, exactness, schemes, options, reports and bad input.

Models here are small IR graphs written by hand; the zoo models (accuracy, transformers) are
in test_quantize_models.py.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from compiler import numerics
from compiler.errors import CalibrationError, TapeoutError
from compiler.interpreter import interpret
from compiler.ir import Graph, parse, print_graph, verify
from passes.quantize import quantize_graph

RNG = np.random.default_rng(0)


def _w(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


CNN = """graph @cnn(%x: f32[1,3,8,8]) -> (f32[1,5]) {
  %w1: f32[8,3,3,3] = const @conv1.weight
  %b1: f32[8] = const @conv1.bias
  %w2: f32[8,8,3,3] = const @conv2.weight
  %b2: f32[8] = const @conv2.bias
  %wf: f32[5,8] = const @fc.weight
  %bf: f32[5] = const @fc.bias
  %c1: f32[1,8,8,8] = nn.conv2d(%x, %w1, %b1) {pads=[1, 1, 1, 1], act="relu6"} loc("conv1")
  %c2_pre: f32[1,8,8,8] = nn.conv2d(%c1, %w2, %b2) {pads=[1, 1, 1, 1]} loc("conv2")
  %c2_sum: f32[1,8,8,8] = math.add(%c2_pre, %c1) loc("conv2")
  %c2: f32[1,8,8,8] = nn.relu(%c2_sum) loc("conv2")
  %p: f32[1,8,4,4] = nn.avg_pool2d(%c2) {kernel=[2, 2]} loc("pool")
  %g: f32[1,8,1,1] = nn.global_avg_pool(%p) loc("gap")
  %f: f32[1,8] = tensor.flatten(%g) loc("flatten")
  %y: f32[1,5] = nn.dense(%f, %wf, %bf) loc("fc")
  return %y
}"""
CNN_CONSTS = {
    "conv1.weight": _w(8, 3, 3, 3),
    "conv1.bias": _w(8, scale=0.1),
    "conv2.weight": _w(8, 8, 3, 3, scale=0.2),
    "conv2.bias": _w(8, scale=0.1),
    "fc.weight": _w(5, 8),
    "fc.bias": _w(5, scale=0.1),
}


def cnn() -> Graph:
    graph = parse(CNN, dict(CNN_CONSTS))
    verify(graph)
    return graph


def data(n: int = 24, shape: tuple[int, ...] = (3, 8, 8), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, *shape)).astype(np.float32)


def quantized(graph: Graph | None = None, **options: object) -> tuple[Graph, Graph, object]:
    """(float graph, quantized graph, report), checking verify and the text round trip."""
    float_graph = graph or cnn()
    q = float_graph.copy()
    report = quantize_graph(q, None, data(), **options)  # type: ignore[arg-type]
    verify(q)
    assert parse(print_graph(q), q.constants) == q
    return float_graph, q, report


def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.compute_nodes()]


def nodes(graph: Graph, op: str) -> list:
    return [n for n in graph.nodes if n.op == op]


def output_sqnr(float_graph: Graph, q: Graph) -> float:
    x = data(8, seed=7)
    ref = np.concatenate([interpret(float_graph, s)[0] for s in x])
    out = np.concatenate([interpret(q, s)[0] for s in x])
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2)))


def close_to_float(float_graph: Graph, q: Graph, min_sqnr: float = 25.0) -> None:
    sqnr = output_sqnr(float_graph, q)
    assert sqnr > min_sqnr, sqnr


# ---- the integer form -----------------------------------------------------------------------
def test_cnn_becomes_integer_end_to_end() -> None:
    float_graph, q, report = quantized()
    assert ops(q) == [
        "q.quantize",
        "nn.conv2d",
        "q.requantize",  # conv1 + relu6 as clamps
        "nn.conv2d",
        "q.requantize",
        "q.add",  # the residual add, with the relu after it
        "q.avg_pool2d",
        "q.global_avg_pool",
        "tensor.flatten",
        "nn.dense",
        "q.dequantize",  # no integer user: the accumulator is dequantized
    ]
    conv1, conv2 = nodes(q, "nn.conv2d")
    assert conv1.attrs["acc"] == "i32" and conv1.attrs.get("act", "none") == "none"
    rq1 = nodes(q, "q.requantize")[0]
    s1 = rq1.outputs[0].type.quant.scale[0]
    assert rq1.attrs["clip_min"] == 0 and rq1.attrs["clip_max"] == min(round(6 / s1), 127)
    assert conv1.inputs[1].dtype == "i8" and conv1.inputs[1].type.quant.axis == 0
    assert conv1.inputs[2].dtype == "i32"
    acc_scales = np.asarray(conv1.outputs[0].type.quant.scale)
    s_in = conv1.inputs[0].type.quant.scale[0]
    np.testing.assert_allclose(acc_scales, s_in * np.asarray(conv1.inputs[1].type.quant.scale))
    add = nodes(q, "q.add")[0]
    assert add.attrs["act"] == "relu" and add.inputs[1] is rq1.outputs[0]
    close_to_float(float_graph, q)
    assert [layer.op for layer in report.layers] == [  # type: ignore[attr-defined]
        "nn.conv2d",
        "nn.conv2d",
        "math.add",
        "nn.avg_pool2d",
        "nn.global_avg_pool",
        "nn.dense",
    ]


def test_integer_conv_and_requantize_are_bit_exact() -> None:
    _, q, _ = quantized()
    x = data(1, seed=3)[0]
    seen: dict[str, np.ndarray] = {}
    interpret(q, x, observe=lambda n, outs: seen.update({n.outputs[0].name: outs[0]}))
    conv = nodes(q, "nn.conv2d")[0]
    xq = seen[conv.inputs[0].name].astype(np.int64)
    w = q.const_value(conv.inputs[1]).astype(np.int64)
    b = q.const_value(conv.inputs[2]).astype(np.int64)
    padded = np.pad(xq[0], ((0, 0), (1, 1), (1, 1)))
    acc = np.zeros((8, 8, 8), dtype=np.int64)
    for i in range(8):
        for j in range(8):
            acc[:, i, j] = np.tensordot(w, padded[:, i : i + 3, j : j + 3], axes=3) + b
    np.testing.assert_array_equal(seen[conv.outputs[0].name][0], acc)
    rq = conv.outputs[0].uses[0][0]
    m = np.asarray(rq.attrs["multiplier"])[:, None, None]
    s = np.asarray(rq.attrs["shift"])[:, None, None]
    expected = np.clip((acc * m + (1 << (s - 1))) >> s, rq.attrs["clip_min"], rq.attrs["clip_max"])
    np.testing.assert_array_equal(seen[rq.outputs[0].name][0], expected)


def test_power_of_two_mode_needs_no_multipliers() -> None:
    float_graph, q, report = quantized(power_of_two=True)
    for value in q.values():
        if value.type.quant is not None:
            assert value.type.quant.power_of_two, value
    for rq in nodes(q, "q.requantize"):
        assert set(rq.attrs["multiplier"]) == {1}
    for add in nodes(q, "q.add"):
        for key in ("a_multiplier", "b_multiplier"):
            assert add.attrs[key] & (add.attrs[key] - 1) == 0  # a power of two: a shift
    assert ops(q)[-2:] == ["nn.dense", "q.requantize"] or "q.dequantize" in ops(q)
    close_to_float(float_graph, q, 20.0)


def test_asymmetric_u8_pads_with_the_zero_point() -> None:
    text = """graph @padded(%x: f32[1,3,8,8]) -> (f32[1,8,10,10]) {
      %w1: f32[8,3,3,3] = const @conv1.weight
      %w2: f32[8,8,1,1] = const @conv2.weight
      %c1: f32[1,8,8,8] = nn.conv2d(%x, %w1) {pads=[1, 1, 1, 1]} loc("conv1")
      %p: f32[1,8,10,10] = tensor.pad(%c1) {pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0} loc("pad")
      %y: f32[1,8,10,10] = nn.conv2d(%p, %w2) loc("conv2")
      return %y
    }"""
    graph = parse(text, {"conv1.weight": _w(8, 3, 3, 3), "conv2.weight": _w(8, 8, 1, 1)})
    float_graph, q, _ = quantized(graph, symmetric=False)
    (pad,) = nodes(q, "tensor.pad")
    qp = pad.inputs[0].type.quant
    assert pad.inputs[0].dtype == "u8" and qp.zero_point[0] != 0
    assert pad.attrs["value"] == qp.zero_point[0]
    close_to_float(float_graph, q)


def test_concat_operands_share_one_scale() -> None:
    text = """graph @cat(%x: f32[1,3,8,8]) -> (f32[1,4,8,8]) {
      %wa: f32[4,3,1,1] = const @a.weight
      %wb: f32[4,3,1,1] = const @b.weight
      %wc: f32[4,8,1,1] = const @c.weight
      %a: f32[1,4,8,8] = nn.conv2d(%x, %wa) loc("a")
      %b: f32[1,4,8,8] = nn.conv2d(%x, %wb) loc("b")
      %cat: f32[1,8,8,8] = tensor.concat(%a, %b) {axis=1} loc("cat")
      %y: f32[1,4,8,8] = nn.conv2d(%cat, %wc) loc("c")
      return %y
    }"""
    consts = {
        "a.weight": _w(4, 3, 1, 1),
        "b.weight": _w(4, 3, 1, 1, scale=3.0),
        "c.weight": _w(4, 8, 1, 1),
    }
    float_graph, q, _ = quantized(parse(text, consts))
    (cat,) = nodes(q, "tensor.concat")
    scales = {v.type.quant.scale for v in (*cat.inputs, cat.outputs[0])}
    assert len(scales) == 1
    close_to_float(float_graph, q)


TRANSFORMER = """graph @mlp_block(%x: f32[1,6,16]) -> (f32[1,6,16]) {
  %g: f32[16] = const @ln.weight
  %w1: f32[32,16] = const @fc1.weight
  %w2: f32[16,32] = const @fc2.weight
  %n: f32[1,6,16] = nn.layer_norm(%x, %g) loc("ln")
  %h_pre: f32[1,6,32] = nn.dense(%n, %w1) loc("fc1")
  %h: f32[1,6,32] = nn.gelu(%h_pre) loc("fc1")
  %o: f32[1,6,16] = nn.dense(%h, %w2) loc("fc2")
  %y: f32[1,6,16] = math.add(%x, %o) loc("residual")
  return %y
}"""


def transformer() -> Graph:
    return parse(
        TRANSFORMER,
        {"ln.weight": np.ones(16, np.float32), "fc1.weight": _w(32, 16), "fc2.weight": _w(16, 32)},
    )


def test_float_regions_stay_float_between_dequantize_and_quantize() -> None:
    graph = transformer()
    q = graph.copy()
    quantize_graph(q, None, data(16, (6, 16)))
    assert ops(q) == [
        "nn.layer_norm",
        "q.quantize",
        "nn.dense",
        "q.dequantize",
        "nn.gelu",  # no integer form: float
        "q.quantize",
        "nn.dense",
        "q.dequantize",
        "math.add",  # residual stream stays float
    ]
    assert q.outputs[0].dtype == "f32"


# ---- reports, saturation and bad input ------------------------------------------------------
def test_report_flags_clipping_layers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _, q, report = quantized(calibrator="percentile", percentile=90.0)
    flagged = report.flagged  # type: ignore[attr-defined]
    assert flagged and all(layer.clip_calibration > 1e-3 for layer in flagged)
    assert any(layer.clip_runtime for layer in flagged)
    assert "clips" in caplog.text
    text = report.format()  # type: ignore[attr-defined]
    assert "conv1" in text and "SQNR" in text and "!" in text
    json.dumps(report.to_json())  # type: ignore[attr-defined]


def test_runtime_saturation_is_counted_by_the_interpreter() -> None:
    from compiler.interpreter import Context

    _, q, _ = quantized()
    x = data(1, seed=9)[0] * 50  # far outside the calibrated range
    ctx = Context(q, count_saturation=True)
    interpret(q, x, context=ctx)
    assert ctx.saturation is not None and ctx.saturation["x_q"].clipped > 0


def test_nan_weights_are_an_error() -> None:
    consts = dict(CNN_CONSTS)
    consts["conv2.weight"] = consts["conv2.weight"].copy()
    consts["conv2.weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError):
        quantize_graph(parse(CNN, consts), None, data())


def test_all_zero_weights_fall_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    consts = dict(CNN_CONSTS, **{"fc.weight": np.zeros((5, 8), np.float32)})
    graph = parse(CNN, consts)
    with caplog.at_level(logging.WARNING):
        quantize_graph(graph, None, data())
    assert "all zero" in caplog.text
    (out,) = interpret(graph, data(1)[0])
    np.testing.assert_allclose(out, interpret(parse(CNN, consts), data(1)[0])[0], atol=1e-2)


def test_overflowing_activations_are_an_error() -> None:
    text = """graph @boom(%x: f32[1,4]) -> (f32[1,2]) {
      %w: f32[2,4] = const @fc.weight
      %e: f32[1,4] = math.exp(%x)
      %y: f32[1,2] = nn.dense(%e, %w) loc("fc")
      return %y
    }"""
    graph = parse(text, {"fc.weight": _w(2, 4)})
    with pytest.raises(CalibrationError, match="NaN or Inf"):
        quantize_graph(graph, None, np.full((4, 4), 200.0, np.float32))


def test_unknown_options_are_errors() -> None:
    with pytest.raises(TapeoutError, match="precision"):
        quantize_graph(cnn(), None, data(), precision="int3")
    with pytest.raises(CalibrationError, match="calibrator"):
        quantize_graph(cnn(), None, data(), calibrator="magic")


def test_requantize_multipliers_come_from_quantize_multiplier() -> None:
    _, q, _ = quantized()
    rq = nodes(q, "q.requantize")[0]
    acc_scales = rq.inputs[0].type.quant.scale
    s_out = rq.outputs[0].type.quant.scale[0]
    pairs = [numerics.quantize_multiplier(s / s_out) for s in acc_scales]
    assert rq.attrs["multiplier"] == [m for m, _ in pairs]
    assert rq.attrs["shift"] == [s for _, s in pairs]


def test_matmul_weights_and_adaptive_pool_are_integer() -> None:
    text = """graph @head(%x: f32[1,3,8,8]) -> (f32[1,5]) {
      %w: f32[8,3,3,3] = const @conv.weight
      %m: f32[8,5] = const @head.weight
      %c: f32[1,8,8,8] = nn.conv2d(%x, %w) {pads=[1, 1, 1, 1], act="relu"} loc("conv")
      %p: f32[1,8,1,1] = nn.adaptive_avg_pool2d(%c) {output_size=[1, 1]} loc("pool")
      %f: f32[1,8] = tensor.flatten(%p) loc("flatten")
      %y: f32[1,5] = nn.matmul(%f, %m) loc("head")
      return %y
    }"""
    graph = parse(text, {"conv.weight": _w(8, 3, 3, 3), "head.weight": _w(8, 5)})
    float_graph, q, _ = quantized(graph)
    assert ops(q) == [
        "q.quantize",
        "nn.conv2d",
        "q.requantize",
        "q.global_avg_pool",
        "tensor.flatten",
        "nn.matmul",
        "q.dequantize",
    ]
    (mm,) = nodes(q, "nn.matmul")
    assert mm.inputs[1].type.quant.axis == 1 and mm.outputs[0].type.quant.axis == 1
    close_to_float(float_graph, q)
