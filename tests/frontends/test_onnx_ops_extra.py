"""The conformance-coverage ops against onnxruntime, in the forms the ONNX node tests leave
out: recurrent cells with per-sequence lengths, clip and other activations, cubic resize
with constant scales, pooling with dilation and ceil mode, reversed scans, grid sampling
with reflection, TF-IDF weights. (The node tests themselves run in tests/conformance.)"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from compiler.frontends.onnx import import_onnx  # noqa: E402
from tests.frontends.onnx_util import assert_matches_onnxruntime, assert_round_trips  # noqa: E402
from tests.frontends.test_onnx_ops import OpCase, f32, i64  # noqa: E402

RNG = np.random.default_rng(1)
LENS = {"lens": np.asarray([4, 1, 3], np.int32)}


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


RECURRENT = [
    OpCase("rnn_bidirectional_lens_activations_clip",
           'y, yh = RNN <hidden_size=3, direction="bidirectional", activations=["Relu", '
           '"Tanh"], clip=1.5> (x, w, r, b, lens, h0)',
           {"x": f32(4, 3, 2), **LENS},
           {"w": _w(2, 3, 2), "r": _w(2, 3, 3), "b": _w(2, 6), "h0": _w(2, 3, 3)}),
    OpCase("gru_reverse_lens_linear_before_reset",
           'y, yh = GRU <hidden_size=3, direction="reverse", linear_before_reset=1> '
           "(x, w, r, b, lens)",
           {"x": f32(4, 3, 2), **LENS}, {"w": _w(1, 9, 2), "r": _w(1, 9, 3), "b": _w(1, 18)}),
    OpCase("lstm_bidirectional_lens_peepholes_states",
           'y, yh, yc = LSTM <hidden_size=3, direction="bidirectional"> '
           "(x, w, r, b, lens, h0, c0, p)",
           {"x": f32(4, 3, 2), **LENS},
           {"w": _w(2, 12, 2), "r": _w(2, 12, 3), "b": _w(2, 24), "h0": _w(2, 3, 3),
            "c0": _w(2, 3, 3), "p": _w(2, 9)}),
    OpCase("lstm_hardsigmoid_softsign",
           'y, yh = LSTM <hidden_size=2, activations=["HardSigmoid", "Tanh", '
           '"Softsign"], activation_alpha=[0.3], activation_beta=[0.4]> (x, w, r)',
           {"x": f32(5, 2, 3)}, {"w": _w(1, 8, 3), "r": _w(1, 8, 2)}),
]  # fmt: skip
X44 = {"x": f32(1, 2, 5, 6)}
RESIZE_POOL = [
    OpCase("resize_cubic_scales", 'y = Resize <mode="cubic"> (x, "", s)', X44,
           {"s": np.asarray([1, 1, 2.0, 1.5], np.float32)}, opset=19),
    OpCase("resize_cubic_sizes_exclude_outside",
           'y = Resize <mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1> (x, "", "", s)',
           X44, {"s": i64(1, 2, 3, 4)}, opset=19),
    OpCase("resize_cubic_align_corners",
           'y = Resize <mode="cubic", coordinate_transformation_mode="align_corners"> '
           '(x, "", s)', X44, {"s": np.asarray([1, 1, 1.6, 0.5], np.float32)}, opset=19),
    OpCase("avgpool_dilated_ceil_count_pad",
           "y = AveragePool <kernel_shape=[3,2], dilations=[2,2], strides=[2,3], "
           "pads=[1,0,1,1], ceil_mode=1, count_include_pad=1> (x)", {"x": f32(1, 2, 9, 8)},
           opset=19),
    OpCase("lppool_3d_p3", "y = LpPool <kernel_shape=[2,2,2], p=3, strides=[1,2,1]> (x)",
           {"x": f32(1, 2, 3, 4, 3)}, opset=18),
    OpCase("maxpool_indices_column_major",
           "y, i = MaxPool <kernel_shape=[2,3], strides=[1,2], pads=[1,0,0,1], "
           "storage_order=1> (x)", {"x": f32(2, 2, 4, 5)}),
    OpCase("maxpool_3d_dilated_ceil",
           "y = MaxPool <kernel_shape=[2,2,2], dilations=[1,2,1], strides=[2,2,2], "
           "ceil_mode=1> (x)", {"x": f32(1, 1, 5, 6, 5)}),
]  # fmt: skip
SCAN_BODY = onnx.parser.parse_graph(
    "body (float[2] s_in, float[2] t_in, float[2] x_in) => (float[2] s_out, float[2] t_out, "
    "float[2] y_out) { s_out = Add(s_in, x_in)\n t_out = Mul(t_in, x_in)\n "
    "y_out = Sub(s_out, t_out) }"
)


def _scan_case() -> tuple[object, dict[str, np.ndarray]]:
    from onnx import helper

    node = helper.make_node(
        "Scan", ["s", "t", "x"], ["s_end", "t_end", "ys"], num_scan_inputs=1,
        body=SCAN_BODY, scan_input_axes=[1], scan_input_directions=[1],
        scan_output_axes=[1], scan_output_directions=[1],
    )  # fmt: skip
    f = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "scan",
        [helper.make_tensor_value_info(n, f, s) for n, s in
         (("s", [2]), ("t", [2]), ("x", [2, 5]))],
        [helper.make_tensor_value_info(n, f, s) for n, s in
         (("s_end", [2]), ("t_end", [2]), ("ys", [2, 5]))],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, {"s": f32(2), "t": f32(2), "x": f32(2, 5)}


SAMPLING = [
    OpCase("gridsample_cubic_reflection_align",
           'y = GridSample <mode="cubic", padding_mode="reflection", align_corners=1> (x, g)',
           {"x": f32(1, 2, 4, 5), "g": (RNG.random((1, 3, 6, 2)) * 3 - 1.5).astype(np.float32)},
           opset=20),
    OpCase("gridsample_linear_border",
           'y = GridSample <padding_mode="border"> (x, g)',
           {"x": f32(2, 1, 3, 3), "g": (RNG.random((2, 2, 4, 2)) * 3 - 1.5).astype(np.float32)},
           opset=20),
    OpCase("tfidf_tfidf_weights",
           'y = TfIdfVectorizer <mode="TFIDF", min_gram_length=1, max_gram_length=2, '
           "max_skip_count=1, ngram_counts=[0,3], ngram_indexes=[0,1,2,3,4], "
           "pool_int64s=[2,3,5,2,3,5,4], weights=[0.5,1,2,3,4]> (x)",
           {"x": np.asarray([[2, 3, 5, 4, 2, 5], [5, 4, 2, 3, 5, 5]], np.int32)}, opset=17),
]  # fmt: skip


@pytest.mark.parametrize("case", RECURRENT + RESIZE_POOL + SAMPLING, ids=lambda c: c.id)
def test_matches_onnxruntime(case: OpCase) -> None:
    model = case.model()
    graph = import_onnx(model)
    assert_round_trips(graph)
    assert_matches_onnxruntime(graph, model, dict(case.inputs))


def test_reversed_scan_unrolls_to_plain_ops() -> None:
    model, feeds = _scan_case()
    graph = import_onnx(model)
    assert not any("scan" in node.op for node in graph.nodes)
    assert_matches_onnxruntime(graph, model, feeds)
