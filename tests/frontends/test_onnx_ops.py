"""One small model per converter and per opset difference, against onnxruntime.

Nodes are written in ONNX's text syntax (``onnx.parser``); runtime inputs carry example data,
initializers are constants. ``test_every_converter_is_exercised`` keeps the table honest:
every op type the frontend claims appears in some case here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from compiler.frontends.onnx import import_onnx  # noqa: E402
from compiler.frontends.onnx_ops import CONVERTERS  # noqa: E402
from tests.frontends.onnx_util import (  # noqa: E402
    assert_matches_onnxruntime,
    assert_round_trips,
    onnx_model,
)

RNG = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return np.asarray(RNG.standard_normal(shape), dtype=np.float32)


def i64(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def scalar(value: float | int, dtype: Any = np.int64) -> np.ndarray:
    return np.asarray(value, dtype=dtype)


@dataclass
class OpCase:
    """Nodes (one per line, ONNX text syntax), runtime inputs with data, initializers."""

    id: str
    text: str
    inputs: dict[str, np.ndarray]
    init: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17

    def nodes(self) -> list[Any]:
        return [onnx.parser.parse_node(line) for line in self.text.strip().splitlines()]

    def model(self) -> Any:
        outputs = [o for n in self.nodes() for o in n.output]
        used = {i for n in self.nodes() for i in n.input}
        types = {k: (v.dtype, list(v.shape)) for k, v in self.inputs.items()}
        final = [o for o in outputs if o not in used]
        return onnx_model(self.nodes(), types, final, self.opset, self.init)


X4 = {"x": f32(1, 2, 7, 7)}
X3 = {"x": f32(2, 3, 4)}
POSITIVE = {"x": np.abs(f32(2, 3, 4)) + 0.1}
CONV = [
    OpCase("conv_same_upper", 'y = Conv <strides=[2,2], auto_pad="SAME_UPPER"> (x, w)', X4,
           {"w": f32(3, 2, 3, 3)}),
    OpCase("conv_same_lower_even_kernel", 'y = Conv <auto_pad="SAME_LOWER"> (x, w, b)', X4,
           {"w": f32(3, 2, 4, 4), "b": f32(3)}),
    OpCase("conv_valid_dilated_grouped",
           'y = Conv <group=2, dilations=[2,2], auto_pad="VALID"> (x, w)',
           {"x": f32(1, 4, 9, 9)}, {"w": f32(4, 2, 3, 3)}),
    OpCase("conv1d_depthwise", "y = Conv <group=3, pads=[1,1]> (x, w)", {"x": f32(1, 3, 10)},
           {"w": f32(3, 1, 3)}),
    OpCase("conv_transpose_output_shape",
           "y = ConvTranspose <strides=[2,2], output_shape=[8,8]> (x, w)",
           {"x": f32(1, 2, 4, 4)}, {"w": f32(2, 3, 3, 3)}),
    OpCase("conv_transpose_same_upper_bias",
           'y = ConvTranspose <strides=[2,2], auto_pad="SAME_UPPER"> (x, w, b)',
           {"x": f32(1, 2, 4, 4)}, {"w": f32(2, 3, 3, 3), "b": f32(3)}),
    OpCase("maxpool_ceil_dilated",
           "y = MaxPool <kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1], ceil_mode=1, "
           "dilations=[1,2]> (x)", X4),
    OpCase("maxpool_1d_same",
           'y = MaxPool <kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER"> (x)',
           {"x": f32(1, 2, 9)}),
    OpCase("avgpool_include_pad",
           "y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1], count_include_pad=1> (x)", X4),
    OpCase("avgpool_exclude_pad_ceil",
           "y = AveragePool <kernel_shape=[2,2], strides=[2,2], pads=[1,0,0,1], ceil_mode=1> (x)",
           X4),
    OpCase("avgpool_3d_trivial_dims",
           "y = AveragePool <kernel_shape=[3,1,1], pads=[1,0,0,1,0,0], count_include_pad=1> (x)",
           {"x": f32(1, 1, 4, 5, 6)}),
    OpCase("global_pools", "y = GlobalMaxPool (x)\nz = GlobalAveragePool (x)", X4),
    OpCase("lrn", "y = LRN <size=3, alpha=0.001, beta=0.5, bias=2.0> (x)", {"x": f32(1, 5, 4, 4)}),
]  # fmt: skip
DENSE = [
    OpCase("gemm_transposes_alpha_beta",
           "y = Gemm <transA=1, transB=1, alpha=0.5, beta=2.0> (a, b, c)", {"a": f32(3, 5)},
           {"b": f32(4, 3), "c": f32(4)}),
    OpCase("gemm_weight_kn_matrix_bias", "y = Gemm (a, b, c)", {"a": f32(2, 3)},
           {"b": f32(3, 4), "c": f32(2, 4)}),
    OpCase("gemm_runtime_operands", "y = Gemm <alpha=2.0, beta=0.5, transB=1> (a, b, c)",
           {"a": f32(2, 3), "b": f32(4, 3), "c": f32(2, 4)}),
    OpCase("gemm_runtime_kn_scaled", "y = Gemm <alpha=3.0> (a, b)",
           {"a": f32(2, 3), "b": f32(3, 4)}),
    OpCase("matmul_const_weight", "y = MatMul (x, w)", X3, {"w": f32(4, 5)}),
    OpCase("matmul_batched_runtime", "y = MatMul (a, b)", {"a": f32(2, 3, 4), "b": f32(2, 4, 5)}),
    OpCase("matmul_vector", "y = MatMul (a, b)", {"a": f32(2, 3, 4), "b": f32(4)}),
]  # fmt: skip
ELEMENTWISE = [
    OpCase("softmax_opset11_coerces_to_2d", "y = Softmax <axis=1> (x)\nz = LogSoftmax (x)", X3,
           opset=11),
    OpCase("softmax_opset13_one_axis", "y = Softmax <axis=1> (x)", X3, opset=13),
    OpCase("layer_norm_broadcast_scale",
           "y = LayerNormalization <axis=-2, epsilon=0.001> (x, s, b)", X3,
           {"s": f32(1, 4), "b": f32(3, 4)}),
    OpCase("batch_norm", "y = BatchNormalization <epsilon=0.001> (x, s, b, m, v)", X4,
           {"s": f32(2), "b": f32(2), "m": f32(2), "v": np.abs(f32(2)) + 0.5}),
    OpCase("activations", """
        p = PRelu (x, slope)
        e = Elu <alpha=0.7> (p)
        l = LeakyRelu <alpha=0.2> (e)
        h = HardSigmoid <alpha=0.3> (l)
        s = HardSwish (h)
        y = Gelu <approximate="tanh"> (s)
        z = Gelu (x)""", X4, {"slope": f32(2, 1, 1)}, opset=20),
    OpCase("clip_opset9_attrs", "y = Clip <min=-0.5, max=0.5> (x)\nz = Clip <min=0.0, max=6.0> (x)",
           X4, opset=9),
    OpCase("clip_runtime_bounds", "y = Clip (x, lo, )\nz = Clip (x, , hi)",
           {"x": f32(2, 3), "lo": f32(), "hi": f32()}),
    OpCase("unary_math", """
        a = Abs (x)
        b = Sqrt (a)
        c = Log (b)
        d = Exp (c)
        e = Reciprocal (d)
        f = Neg (e)
        g = Sin (f)
        h = Cos (g)
        i = Tanh (h)
        j = Erf (i)
        k = Sigmoid (j)
        y = Relu (k)""", POSITIVE),
    OpCase("binary_math", """
        a = Add (x, c)
        b = Sub (a, x)
        d = Mul (b, x)
        e = Div (d, c)
        f = Pow (e, two)
        y = Mod <fmod=1> (f, c)""", POSITIVE, {"c": np.full(4, 0.7, np.float32), "two": i64(2)}),
    OpCase("variadic", """
        m = Max (x, a, b)
        n = Min (x, a)
        s = Sum (m, n, b)
        y = Mean (s, x, a)""", {"x": f32(2, 3), "a": f32(3), "b": f32(2, 1)}),
    OpCase("logic_where_cast", """
        g = Greater (x, a)
        l = Less (x, a)
        le = LessOrEqual (x, a)
        ge = GreaterOrEqual (x, a)
        eq = Equal (g, l)
        o = Or (eq, le)
        an = And (o, ge)
        xo = Xor (an, g)
        n = Not (xo)
        w = Where (n, x, a)
        y = Cast <to=6> (w)
        z = CastLike (y, x)""", {"x": f32(2, 3), "a": f32(2, 3)}),
    OpCase("argmax_argmin", "y = ArgMax <axis=1, keepdims=0> (x)\nz = ArgMin <axis=-1> (x)", X3),
    OpCase("identity_dropout", "a = Identity (x)\ny = Dropout (a)", X3),
]  # fmt: skip
REDUCE = [  # axes: an attribute before opset 13 (ReduceSum) / 18 (the others), then an input
    OpCase("reduce_opset13", """
        y = ReduceMean <axes=[1], keepdims=0> (x)
        z = ReduceSum (x, ax)
        w = ReduceMax (x)""", X3, {"ax": i64(-1)}, opset=13),
    OpCase("reduce_opset11_attrs", """
        y = ReduceSum <axes=[0, 2]> (x)
        z = ReduceMin <axes=[1], keepdims=0> (x)""", X3, opset=11),
    OpCase("reduce_opset18_inputs", """
        y = ReduceMean (x, ax)
        z = ReduceProd <keepdims=0> (x, ax)
        a = ReduceL2 (x, ax)
        b = ReduceL1 (x)
        c = ReduceSumSquare (x, ax)
        d = ReduceMax <noop_with_empty_axes=1> (x, none)""", X3, {"ax": i64(1), "none": i64()},
           opset=18),
]  # fmt: skip
LAYOUT = [
    OpCase("squeeze_unsqueeze_opset11", """
        u = Unsqueeze <axes=[0, -1]> (x)
        y = Squeeze <axes=[0]> (u)
        z = Squeeze (u)""", X3, opset=11),
    OpCase("squeeze_unsqueeze_opset13", "u = Unsqueeze (x, ax)\ny = Squeeze (u, ax)", X3,
           {"ax": i64(1, 4)}, opset=13),
    OpCase("split_opset11_attr", "y, z = Split <axis=2, split=[1, 3]> (x)", X3, opset=11),
    OpCase("split_opset13_input", "y, z = Split <axis=1> (x, s)", X3, {"s": i64(2, 1)}, opset=13),
    OpCase("split_opset18_uneven", "y, z = Split <axis=1, num_outputs=2> (x)", X3, opset=18),
    OpCase("slice_opset9_attrs", "y = Slice <starts=[1, -3], ends=[1000, -1], axes=[0, 2]> (x)",
           X3, opset=9),
    OpCase("slice_negative_steps", "y = Slice (x, s, e, a, st)", X3,
           {"s": i64(-1, 3), "e": i64(-(2**63), 0), "a": i64(2, 1), "st": i64(-1, -2)}),
    OpCase("pad_opset9_reflect", 'y = Pad <pads=[0,0,1,2,0,0,2,1], mode="reflect"> (x)', X4,
           opset=9),
    OpCase("pad_opset11_constant_edge", 'y = Pad (x, p, v)\nz = Pad <mode="edge"> (x, p)', X4,
           {"p": i64(0, 1, 1, 0, 0, 0, 2, 1), "v": scalar(1.5, np.float32)}, opset=11),
    OpCase("pad_opset18_axes", "y = Pad (x, p, , a)", X4, {"p": i64(1, 2, 3, 0), "a": i64(-1, 1)},
           opset=18),
    OpCase("reshape_flatten_transpose", """
        r = Reshape (x, s)
        t = Transpose (r)
        y = Flatten <axis=-1> (t)""", X3, {"s": i64(0, -1, 2)}),
    OpCase("concat_expand_tile_gather", """
        e = Expand (a, s)
        c = Concat <axis=1> (x, e)
        t = Tile (c, r)
        y = Gather <axis=1> (t, i)""", {"x": f32(2, 3, 4), "a": f32(1, 1, 4)},
           {"s": i64(2, 2, 1), "r": i64(1, 2, 1), "i": i64(-1, 0, 3)}),
    OpCase("gather_runtime_indices", "y = Gather (w, i)",
           {"i": np.asarray([[0, 2], [1, 1]], np.int64)}, {"w": f32(3, 4)}),
    # What torch's exporter emits for transformers' masks: mask[batch_idx, kv_idx], a running
    # position count, and the NaN guard after a masked softmax.
    OpCase("gather_nd_negative_indices", "y = GatherND (x, i)",
           {"x": f32(2, 3, 4), "i": np.asarray([[[0, -1], [1, 2]], [[-2, 0], [1, 1]]], np.int64)}),
    OpCase("gather_elements", "y = GatherElements <axis=1> (x, i)",
           {"x": f32(3, 4), "i": np.asarray([[0, 3], [2, 2], [1, 0]], np.int64)}),
    OpCase("cumsum_isnan", """
        c = CumSum (x, a)
        n = IsNaN (c)
        y = Where (n, x, c)""", X3, {"a": np.asarray(1, np.int64)}),
]  # fmt: skip
RESIZE = [  # nearest, in the coordinate modes equivalent to the IR's out[i] = in[floor(i/scale)]
    OpCase("upsample_opset9", "y = Upsample (x, s)", X4,
           {"s": np.asarray([1, 1, 2, 3], np.float32)}, opset=9),
    OpCase("resize_opset10", "y = Resize (x, s)", X4,
           {"s": np.asarray([1, 1, 2, 0.5], np.float32)}, opset=10),
    OpCase("resize_half_pixel_x3", "y = Resize (x, , s)", X4,
           {"s": np.asarray([1, 1, 3, 3], np.float32)}, opset=13),
    OpCase("resize_asymmetric_sizes",
           'y = Resize <coordinate_transformation_mode="asymmetric", nearest_mode="floor"> '
           "(x, , , z)", X4, {"z": i64(1, 2, 16, 10)}, opset=13),
]  # fmt: skip
FOLDED = [  # computed at import: shape arithmetic, Range, ConstantOfShape, Size, If on a constant
    OpCase("folded_shape_ops", """
        sh = Shape (x)
        ones = ConstantOfShape <value = float[1] {1.5}> (sh)
        a = Add (x, ones)
        n = Gather (sh, one)
        r = Range (zero, n, one)
        rf = Cast <to=1> (r)
        sz = Size (x)
        szf = Cast <to=1> (sz)
        m = Mul (rf, szf)
        mu = Unsqueeze (m, ax)
        y = Add (a, mu)""", X3, {"zero": scalar(0), "one": scalar(1), "ax": i64(1)}),
    OpCase("if_on_constant", """
        c = Equal (one, one)
        y = If (c) <then_branch = g1 () => (float t) { t = Neg (x) }, \
                    else_branch = g2 () => (float e) { e = Abs (x) }>""",
           X3, {"one": i64(1)}),
]  # fmt: skip
OP_CASES = CONV + DENSE + ELEMENTWISE + REDUCE + LAYOUT + RESIZE + FOLDED


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.id)
def test_op_case_matches_onnxruntime(case: OpCase) -> None:
    model = case.model()
    graph = import_onnx(model)
    assert_round_trips(graph)
    assert_matches_onnxruntime(graph, model, dict(case.inputs))


def test_every_converter_is_exercised() -> None:
    covered = {n.op_type for case in OP_CASES for n in case.nodes()}
    covered |= {"QuantizeLinear", "DequantizeLinear"}  # test_onnx.py: the QDQ model
    # The converters of onnx_ops_more, onnx_ops_extra, ... and onnx_ops_dynamic came with the
    # conformance suite, whose ONNX node-test cases exercise each of them
    # (tests/conformance/expected_*.json).
    conformance = ("_more", "_extra", "_signal", "_vision", "_scan", "_dynamic")
    covered |= {k for k, fn in CONVERTERS.items() if fn.__module__.endswith(conformance)}
    assert set(CONVERTERS) - covered == set()
