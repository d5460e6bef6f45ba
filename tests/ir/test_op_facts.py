"""compiler.ir.op_facts: each op fact stated once, what the verifier rejects, and the
integer pipelines that no longer fuse and then un-fuse."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from compiler.errors import TapeoutError, VerifyError
from compiler.interpreter import interpret
from compiler.ir import OPS, Graph, f32, parse, print_graph, verify
from compiler.ir.op_facts import (
    fused_activation,
    gemm_shape,
    is_layout,
    node_macs,
    output_clamp,
    reshape_ops,
    standalone_activation,
    view_ops,
    zero_point,
)
from compiler.ir.ops_nn import FUSED_ACTIVATIONS, INTEGER_ACTIVATIONS
from compiler.pass_manager import PassManager, build_pipeline
from passes.quantize import quantize_graph

RNG = np.random.default_rng(5)

#: act -> act_args used to exercise it (the ones with arguments).
ARGS = {"clip": [-0.5, 0.75], "leaky_relu": [0.2]}


def _fused_and_apart(act: str) -> tuple[Graph, Graph]:
    """A dense carrying ``act``, and the same dense followed by the op it stands for."""
    args = ARGS.get(act, [])
    fused_attrs = f'{{act="{act}", act_args={args}}}' if args else f'{{act="{act}"}}'
    head = 'graph @g(%x: f32[3,5]) -> (f32[3,4]) {\n  %w: f32[4,5] = const @w\n'
    fused = parse(head + f"  %y: f32[3,4] = nn.dense(%x, %w) {fused_attrs}\n  return %y\n}}",
                  {"w": RNG.standard_normal((4, 5)).astype(np.float32)})  # fmt: skip
    apart = Graph("g")
    x = apart.add_input("x", fused.inputs[0].type)
    w = apart.add_const("w", fused.constants["w"], fused.find("w").type)
    y = apart.add_node("nn.dense", [x, w]).output
    standalone = standalone_activation(act, args)
    if standalone is not None:
        y = apart.add_node(standalone[0], [y], standalone[1]).output
    apart.outputs = [y]
    verify(apart)
    return fused, apart


@pytest.mark.parametrize("act", sorted(FUSED_ACTIVATIONS))
def test_a_fused_activation_means_its_standalone_op(act: str) -> None:
    fused, apart = _fused_and_apart(act)
    x = (RNG.standard_normal((3, 5)) * 3).astype(np.float32)
    np.testing.assert_array_equal(interpret(fused, x)[0], interpret(apart, x)[0])
    # and the table reads both ways: the standalone op fuses back as the same act
    standalone = standalone_activation(act, ARGS.get(act, []))
    if standalone is not None:
        assert fused_activation(*standalone) == (act, [float(a) for a in ARGS.get(act, [])])


def test_clip_fuses_under_the_name_kernels_know() -> None:
    assert fused_activation("nn.clip", {"min": 0.0, "max": 6.0}) == ("relu6", [])
    assert fused_activation("nn.clip", {"min": 0.0}) == ("relu", [])
    assert fused_activation("nn.clip", {"max": 2.0}) == ("clip", [-math.inf, 2.0])
    assert fused_activation("nn.softmax", {}) is None
    assert standalone_activation("clip", [-math.inf, 2.0]) == ("nn.clip", {"max": 2.0})


def test_every_fused_activation_names_a_known_op() -> None:
    for act, spec in FUSED_ACTIVATIONS.items():
        assert spec.op is None or spec.op in OPS, act
        assert all(name in OPS[spec.op].attrs for name in spec.args) if spec.op else True
    assert set(INTEGER_ACTIVATIONS) == {"none", "relu", "relu6", "clip"}


def test_output_clamp_narrows_the_dtype_range() -> None:
    assert output_clamp({"dtype": "i8"}, 5) == (-128, 127)
    assert output_clamp({"dtype": "i8", "act": "relu"}, 5) == (5, 127)
    assert output_clamp({"dtype": "i8", "act": "relu", "clip_min": 2, "clip_max": 90}, 5) == (
        5,
        90,
    )
    assert output_clamp({"dtype": "u8", "clip_min": 7, "clip_max": 300}, 0) == (7, 255)


QADD = """graph @qa(%a: i8[1,8]{scale=0.1, zp=ZA}, %b: i8[1,8]{scale=0.2}) -> (i8[1,8]) {
  %y: i8[1,8]{scale=0.15, zp=3} = q.add(%a, %b) {dtype="i8", a_multiplier=43691,
      b_multiplier=87381, shift=16, act="relu", clip_max=40}
  return %y
}"""


def test_the_interpreter_clamps_q_add_to_output_clamp() -> None:
    g = parse(QADD.replace("ZA", "-4").replace("\n      ", " "))
    a = RNG.integers(-128, 128, (1, 8)).astype(np.int8)
    b = RNG.integers(-128, 128, (1, 8)).astype(np.int8)
    got = interpret(g, a, b)[0].astype(np.int64)
    acc = (a.astype(np.int64) + 4) * 43691 + b.astype(np.int64) * 87381  # za = -4, zb = 0
    expected = np.clip(((acc + 2**15) >> 16) + 3, 3, 40)  # relu: >= zo = 3; clip_max 40
    np.testing.assert_array_equal(got, expected)
    assert zero_point(g.inputs[0]) == -4 and zero_point(g.inputs[1]) == 0


def test_the_verifier_rejects_what_the_facts_leave_undefined() -> None:
    per_channel = QADD.replace("%a: i8[1,8]{scale=0.1, zp=ZA}", "%a: i8[1,8]{scale=[" +
                               ",".join(["0.1"] * 8) + "], zp=[" + ",".join(["2"] * 8) +
                               "], axis=1}").replace("\n      ", " ")  # fmt: skip
    with pytest.raises(VerifyError, match="per-channel zero points"):
        verify(parse(per_channel))
    conv = """graph @c(%x: i8[1,2,4,4]{scale=0.1}) -> (i32[1,2,4,4]) {
  %w: i8[2,2,1,1]{scale=0.5, zp=WZ} = const @w
  %y: i32[1,2,4,4]{scale=0.05} = nn.conv2d(%x, %w) {acc="i32", act="ACT"}
  return %y
}"""
    consts = {"w": np.ones((2, 2, 1, 1), np.int8)}
    verify(parse(conv.replace("WZ", "0").replace("ACT", "relu6"), consts))
    with pytest.raises(VerifyError, match="symmetric"):
        verify(parse(conv.replace("WZ", "3").replace("ACT", "relu"), consts))
    with pytest.raises(VerifyError, match="act='gelu'"):
        verify(parse(conv.replace("WZ", "0").replace("ACT", "gelu"), consts))


def test_macs_per_op() -> None:
    g = parse("""graph @m(%x: f32[2,3,8,8], %q: f32[1,4,6,16], %k: f32[1,4,10,16],
  %v: f32[1,4,10,16], %t: f32[seq,5]) -> (f32[2,4,6,6], f32[1,4,6,16], f32[seq,7]) {
  %w: f32[4,3,3,3] = const @w
  %wd: f32[7,5] = const @wd
  %c: f32[2,4,6,6] = nn.conv2d(%x, %w)
  %a: f32[1,4,6,16] = nn.attention(%q, %k, %v)
  %d: f32[seq,7] = nn.dense(%t, %wd)
  return %c, %a, %d
}""".replace("\n  %v", " %v"), {"w": np.zeros((4, 3, 3, 3), np.float32),
                                "wd": np.zeros((7, 5), np.float32)})  # fmt: skip
    conv, att, dense = (n for n in g.nodes if n.op != "const")
    assert node_macs(conv) == (2 * 4 * 6 * 6) * (3 * 3 * 3)
    assert node_macs(att) == 2 * (4 * 6 * 16) * 10  # q @ k^T and the weights @ v
    assert node_macs(dense) == 7 * 5 and node_macs(dense, symbolic=128) == 128 * 7 * 5


def test_gemm_shape_of_conv_and_dense() -> None:
    """(M, K, N): output pixels (or rows) x one group's window x output channels, in the
    NHWC layout and with groups too; the MACs are their product."""
    g = parse("""graph @m(%x: f32[2,8,8,6], %t: f32[seq,5]) -> (f32[2,6,6,4], f32[seq,7]) {
  %w: f32[4,3,3,3] = const @w
  %wd: f32[7,5] = const @wd
  %c: f32[2,6,6,4] = nn.conv2d(%x, %w) {groups=2, layout="NHWC"}
  %d: f32[seq,7] = nn.dense(%t, %wd)
  return %c, %d
}""", {"w": np.zeros((4, 3, 3, 3), np.float32), "wd": np.zeros((7, 5), np.float32)})
    conv, dense = (n for n in g.nodes if n.op != "const")
    assert gemm_shape(conv) == (2 * 6 * 6, 3 * 3 * 3, 4)
    assert gemm_shape(dense, symbolic=10) == (10, 5, 7)
    assert node_macs(conv) == math.prod(gemm_shape(conv))


def test_reshape_ops_are_the_views_that_change_the_shape() -> None:
    assert set(reshape_ops()) == {
        "tensor.reshape", "tensor.flatten", "tensor.squeeze", "tensor.unsqueeze"
    }
    assert set(reshape_ops()) < set(view_ops())


@pytest.mark.parametrize("op", view_ops())
def test_view_ops_keep_the_row_major_bytes(op: str) -> None:
    attrs = {"tensor.reshape": {"shape": [6, 4]}, "tensor.flatten": {"axis": 2},
             "tensor.squeeze": {"axes": [0]}, "tensor.unsqueeze": {"axes": [1]}}.get(op, {})
    g = Graph("v")
    x = g.add_input("x", f32(1, 2, 3, 4))
    g.outputs = [g.add_node(op, [x], attrs).output]
    data = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    out = interpret(g, data)[0]
    assert is_layout(op)
    np.testing.assert_array_equal(np.ravel(out), np.ravel(data))


def _unfused_block() -> Graph:
    rng = np.random.default_rng(11)
    g = parse("""graph @blk(%x: f32[1,4,6,6]) -> (f32[1,4,6,6]) {
  %w1: f32[4,4,3,3] = const @w1
  %b1: f32[4,1,1] = const @b1
  %w2: f32[4,4,3,3] = const @w2
  %c1: f32[1,4,6,6] = nn.conv2d(%x, %w1) {pads=[1, 1, 1, 1]} loc("conv1")
  %a1: f32[1,4,6,6] = math.add(%c1, %b1) loc("conv1.bias")
  %g1: f32[1,4,6,6] = nn.gelu(%a1) loc("act1")
  %c2: f32[1,4,6,6] = nn.conv2d(%g1, %w2) {pads=[1, 1, 1, 1]} loc("conv2")
  %s: f32[1,4,6,6] = math.add(%c2, %x) loc("skip")
  %y: f32[1,4,6,6] = nn.relu(%s) loc("relu")
  return %y
}""", {"w1": (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32),
       "b1": (rng.standard_normal((4, 1, 1)) * 0.1).astype(np.float32),
       "w2": (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)})  # fmt: skip
    verify(g)
    return g


def test_integer_pipelines_fuse_only_what_quantize_reads() -> None:
    from compiler.context import PassContext

    data = RNG.standard_normal((6, 1, 4, 6, 6)).astype(np.float32)
    graph = _unfused_block()
    printed: list[str] = []
    manager = PassManager(build_pipeline("fuse-bias-act,fuse-residual,quantize"),
                          print_after="all", printer=printed.append)  # fmt: skip
    ctx = PassContext(calibration_data=data)
    result = manager.run(graph, ctx)
    names = [r.name + r.options for r in result.records]
    assert names[:3] == ["fuse-bias-act{integer=true}", "fuse-residual{integer=true}", "calibrate"]
    after = {t.split()[4].split("{")[0]: t.split("\n", 1)[1] for t in printed}
    assert after["fuse-residual"] == after["calibrate"]  # calibrate reads what it shows
    shown = re.findall(r"= ([a-z_]+\.[a-z_0-9]+)\(", after["calibrate"])
    assert shown == ["nn.conv2d", "nn.gelu", "nn.conv2d", "math.add", "nn.relu"]
    assert ctx.stats.rejected["fuse-bias-act"]  # gelu stayed apart, with a reason
    assert "nn.gelu" in [n.op for n in graph.compute_nodes()]  # no integer form: float
    # the same result as quantizing the bias-fused graph directly (fuse-residual: no effect)
    direct = _unfused_block()
    PassManager(build_pipeline("fuse-bias-act{integer=true}")).run(direct)
    quantize_graph(direct, None, data)
    assert print_graph(direct) == print_graph(graph)


def test_quantize_refuses_forms_it_would_have_to_unfuse() -> None:
    data = RNG.standard_normal((4, 1, 4, 6, 6)).astype(np.float32)
    residual = _unfused_block()
    PassManager(build_pipeline("fuse-residual")).run(residual)  # float pipeline: it fuses
    assert any(len(n.inputs) > 3 for n in residual.nodes if n.op == "nn.conv2d")
    with pytest.raises(TapeoutError, match="residual operand"):
        quantize_graph(residual, None, data)
    gelu = _unfused_block()
    PassManager(build_pipeline("fuse-bias-act{integer=false}")).run(gelu)
    with pytest.raises(TapeoutError, match="act='gelu'"):
        quantize_graph(gelu, None, data)
    # excluded, the layer stays float and may keep its activation
    quantize_graph(gelu, None, data, exclude=("conv1",))


def test_fp16_pipelines_keep_fusing_everything() -> None:
    from compiler.context import PassContext
    from compiler.quant_config import QuantConfig

    graph = _unfused_block()
    result = PassManager(build_pipeline("fuse-bias-act,quantize")).run(
        graph, PassContext(quant=QuantConfig(precision="fp16"))
    )
    assert result.records[0].options == ""  # not fitted: weight-only keeps float layers
    assert "nn.gelu" not in [n.op for n in graph.nodes]  # fused into conv1


@pytest.mark.parametrize("act", sorted(FUSED_ACTIVATIONS))
def test_backend_activation_tables_cover_every_fused_activation(act: str) -> None:
    """The backends implement each act in their own medium (ONNX nodes, TIR); each must
    compute the op the table says (ONNX, run by onnxruntime) or at least know it (TVM)."""
    pytest.importorskip("onnxruntime")
    from backends.onnx import export_onnx, ort_session, run_onnx

    fused, _ = _fused_and_apart(act)
    x = (RNG.standard_normal((3, 5)) * 3).astype(np.float32)
    got = run_onnx(ort_session(export_onnx(fused)), fused, (x,))[0]
    np.testing.assert_allclose(got, interpret(fused, x)[0], rtol=1e-5, atol=1e-6)
    tvm = pytest.importorskip("tvm")
    from backends.tvm import kernels

    assert callable(kernels.activation(tvm.tirx, act, ARGS.get(act, [])))
