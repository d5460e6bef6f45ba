"""specialize-shapes: inputs that decide shapes become the example's constants, guarded.

Each graph is run through the interpreter before (the input a runtime operand) and after
(a constant, static shapes): the results must be equal on the example, and the artifact
must refuse another value of a specialized input with an ``InputError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import compiler
from compiler.context import PassContext
from compiler.errors import InputError, UnsupportedOpsError, UsageError
from compiler.interpreter import interpret
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.specialize import is_static
from passes.specialize_shapes import SpecializeShapes

REDUCE = """
graph @g(%x: f32[2,3,4], %axes: i64[1]) -> (f32[2',3',4']) {
  %y: f32[2',3',4'] = math.reduce(%x, %axes) {kind="sum"}
  return %y
}
"""


def _specialize(text: str, *inputs: np.ndarray, **consts: Any) -> tuple[Any, PassContext]:
    """The graph of ``text`` after the pass with ``inputs`` as the example, checked equal
    to the graph before on them."""
    before = parse(text, consts)
    graph = before.copy()
    ctx = PassContext(example_inputs=list(inputs))
    SpecializeShapes().run(graph, ctx)
    verify(graph)
    want = interpret(before, *inputs)
    got = interpret(graph, *inputs)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
        assert g.dtype == w.dtype
    return graph, ctx


def _ops(graph: Any) -> set[str]:
    return {n.op for n in graph.nodes if n.op != "const"}


def test_reduction_axes_input_becomes_the_attribute() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    graph, ctx = _specialize(REDUCE, x, np.array([1], np.int64))
    (node,) = [n for n in graph.nodes if n.op == "math.reduce"]
    assert node.attrs["axes"] == [1] and len(node.inputs) == 1
    assert graph.outputs[0].type.shape == (2, 1, 4)
    assert is_static(graph)
    assert [v.name for v in graph.inputs] == ["x", "axes"]  # the signature is kept
    assert ctx.specialized == {"axes": {"dtype": "i64", "shape": [1], "value": [1]}}


def test_data_inputs_are_never_specialized() -> None:
    """Integer indices that gather data and a float tensor reach no shape operand."""
    text = """
    graph @g(%x: f32[4,3], %idx: i64[2], %axes: i64[1]) -> (f32[2',3'], f32[4,3]) {
      %t: f32[2,3] = tensor.gather(%x, %idx) {axis=0}
      %y: f32[2',3'] = math.reduce(%t, %axes) {kind="max"}
      %z: f32[4,3] = math.add(%x, %x)
      return %y, %z
    }
    """
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    graph, ctx = _specialize(text, x, np.array([3, 1], np.int64), np.array([-1], np.int64))
    assert set(ctx.specialized) == {"axes"}
    assert any(n.op == "tensor.gather" and n.inputs[1].name == "idx" for n in graph.nodes)


def test_large_or_unused_inputs_are_not_specialized() -> None:
    graph = parse(REDUCE)
    ctx = PassContext(example_inputs=[np.zeros((2, 3, 4), np.float32), np.array([1])])
    assert not SpecializeShapes(max_elements=0).run(graph, ctx)
    assert not ctx.specialized and not is_static(graph)


def test_window_length_through_arithmetic() -> None:
    """A window's length is cast to float, divided and sized into a range (ONNX
    HannWindow's body): specialized, the graph is static and computes the same."""
    text = """
    graph @w(%n: i32[]) -> (f32[range0']) {
      %zero: f32[] = const @zero
      %one: f32[] = const @one
      %nf: f32[] = tensor.cast(%n) {to="f32"}
      %step: f32[] = math.div(%one, %nf)
      %r: f32[range0'] = tensor.range_dyn(%zero, %nf, %one)
      %y: f32[range0'] = math.mul(%r, %step)
      return %y
    }
    """
    consts = {"zero": np.float32(0), "one": np.float32(1)}
    graph, ctx = _specialize(text, np.array(5, np.int32), **consts)
    assert ctx.specialized["n"]["value"] == 5
    assert graph.outputs[0].type.shape == (5,) and "tensor.range_dyn" not in _ops(graph)


@pytest.mark.parametrize(
    ("op_line", "operands"),
    [
        ("%y: f32[a0',a1'] = tensor.reshape_dyn(%x, %s)", [np.array([4, -1])]),
        ("%y: f32[a0',a1',a2'] = tensor.unsqueeze_dyn(%x, %s)", [np.array([0])]),
        ("%y: f32[a0',a1',a2'] = tensor.expand_dyn(%x, %s)", [np.array([2, 1, 1])]),
        ("%y: f32[a0',a1'] = tensor.slice_dyn(%x, %s, %e)", [np.array([1, -2]), np.array([3, 3])]),
        ("%y: f32[a0',a1'] = tensor.tile_dyn(%x, %s)", [np.array([2, 3])]),
        ("%y: f32[a0',a1'] = tensor.pad_dyn(%x, %s) {mode=\"reflect\"}", [np.array([1, 2, 0, 1])]),
        (
            "%y: f32[a0',a1'] = tensor.pad_dyn(%x, %s, %v, %e)",
            [np.array([1, 2]), np.float32(-7.5), np.array([1])],
        ),
    ],
)
def test_dynamic_layout_ops_take_static_forms(op_line: str, operands: list[Any]) -> None:
    """Reshape/unsqueeze/expand become their static ops; slice, tile and pad a gather of
    the interpreter's own index map (and a where for the fill): equal on the example."""
    names = ["s", "e"] if "%v" not in op_line else ["s", "v", "e"]
    arrays = [np.asarray(a, np.float32 if n == "v" else np.int64)
              for n, a in zip(names, operands, strict=False)]  # fmt: skip
    types = {"s": "i64", "e": "i64", "v": "f32"}
    sig = ", ".join(f"%{n}: {types[n]}[{','.join(map(str, a.shape))}]"
                    for n, a in zip(names, arrays, strict=False))  # fmt: skip
    text = f"graph @g(%x: f32[4,3], {sig}) -> (f32[a0',a1']) {{\n  {op_line}\n  return %y\n}}"
    if "a2'" in op_line:
        text = text.replace("-> (f32[a0',a1'])", "-> (f32[a0',a1',a2'])")
    x = np.arange(12, dtype=np.float32).reshape(4, 3) - 5
    graph, ctx = _specialize(text, x, *arrays)
    assert is_static(graph)
    assert not any(op.endswith("_dyn") for op in _ops(graph)), graph
    assert "x" not in ctx.specialized and "v" not in ctx.specialized  # data, fill value


def test_dynamic_ops_with_constant_operands_need_no_example() -> None:
    text = """
    graph @g(%x: f32[2,3]) -> (f32[a',b']) {
      %p: i64[4] = const @p
      %y: f32[a',b'] = tensor.pad_dyn(%x, %p) {mode="edge"}
      return %y
    }
    """
    graph = parse(text, {"p": np.array([0, 1, 1, 0], np.int64)})
    assert SpecializeShapes().run(graph, PassContext())
    assert graph.outputs[0].type.shape == (3, 4) and is_static(graph)


# ---- the guard, through compile() and run() --------------------------------------------------
def test_artifact_refuses_another_value_of_a_specialized_input(tmp_path: Any) -> None:
    x = np.ones((2, 3, 4), np.float32)
    axes = np.array([2], np.int64)
    art = compiler.compile(parse(REDUCE), "reference", example_inputs=[x, axes],
                           pipeline=["specialize-shapes"], output_dir=tmp_path / "a")  # fmt: skip
    assert art.summary["specialized"]["axes"]["value"] == [2]
    np.testing.assert_array_equal(art.run(x, axes)[0], np.full((2, 3, 1), 4, np.float32))
    for artifact in (art, compiler.load(tmp_path / "a")):
        with pytest.raises(InputError, match=r"%axes was specialized to \[2\].*\[0\] was given"):
            artifact.run(x, np.array([0], np.int64))


@pytest.mark.tvm
def test_cpu_compiles_a_specialized_reduction_and_guards_it() -> None:
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    axes = np.array([-1], np.int64)
    art = compiler.compile(parse(REDUCE), "cpu", example_inputs=[x, axes])
    np.testing.assert_allclose(art.run(x, axes)[0], x.sum(axis=2, keepdims=True), rtol=1e-5)
    assert interpret(art.graph, x, axes)[0].shape == (2, 3, 1)
    with pytest.raises(InputError, match="axes"):
        art.run(x, np.array([1], np.int64))


@pytest.mark.tvm
def test_cpu_option_turns_specialization_off() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(UnsupportedOpsError, match="math.reduce"):
        compiler.compile(parse(REDUCE), "cpu", example_inputs=[x, np.array([1])],
                         specialize_shapes=False)  # fmt: skip


def test_option_is_declared_for_the_cpu_backend_only() -> None:
    with pytest.raises(UsageError, match="specialize_shapes"):
        compiler.compile(parse(REDUCE), "reference", specialize_shapes=False)


@pytest.mark.parametrize(
    "attrs",
    [
        'mode="nearest", nearest_mode="round_prefer_ceil", transform="asymmetric"',
        'mode="linear", transform="align_corners"',
        'mode="cubic", cubic_coeff_a=-0.5, exclude_outside=true',
    ],
)
def test_resize_with_runtime_scales_becomes_separable_static_ops(attrs: str) -> None:
    """Nearest: gathers of constant indices; linear/cubic: float64 matmuls along each axis
    with the interpreter's own weights, equal to it on the example (to f64 rounding)."""
    text = f"""
    graph @r(%x: f32[1,2,3,4], %scales: f32[4]) -> (f32[1,2,3',4']) {{
      %y: f32[1,2,3',4'] = nn.resize_dyn(%x, %scales) {{{attrs}}}
      return %y
    }}
    """
    x = np.random.default_rng(2).normal(size=(1, 2, 3, 4)).astype(np.float32)
    scales = np.array([1, 1, 2, 0.75], np.float32)
    before = parse(text)
    graph = before.copy()
    ctx = PassContext(example_inputs=[x, scales])
    assert SpecializeShapes().run(graph, ctx)
    verify(graph)
    assert "nn.resize_dyn" not in _ops(graph) and is_static(graph)
    assert graph.outputs[0].type.shape == (1, 2, 6, 3)
    want = interpret(before, x, scales)[0]
    np.testing.assert_allclose(interpret(graph, x, scales)[0], want, rtol=1e-6, atol=1e-6)
    assert ctx.specialized["scales"]["value"] == [1.0, 1.0, 2.0, 0.75]


def test_crop_and_resize_roi_is_specialized_and_outside_is_filled() -> None:
    text = """
    graph @r(%x: f32[1,1,4,4], %roi: f32[4], %scales: f32[2]) -> (f32[1,1,3',3']) {
      %y: f32[1,1,3',3'] = nn.resize_dyn(%x, %scales, %roi) {mode="linear", axes=[2, 3], transform="tf_crop_and_resize", extrapolation_value=9.0}
      return %y
    }
    """  # noqa: E501
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    roi = np.array([0.4, -0.2, 1.3, 0.8], np.float32)  # partly outside the input
    graph, ctx = _specialize(text, x, roi, np.array([0.75, 0.75], np.float32))
    assert set(ctx.specialized) == {"roi", "scales"} and is_static(graph)
    assert "tensor.where" in _ops(graph) and "nn.resize_dyn" not in _ops(graph)


@pytest.mark.tvm
def test_cpu_max_and_min_of_bool_over_specialized_axes() -> None:
    """ONNX ReduceMax/ReduceMin of bool (any/all): TVM has no bool max, the cpu rule
    reduces bytes; equal to the interpreter."""
    text = """
    graph @b(%x: bool[3,4], %axes: i64[1]) -> (bool[3',4'], bool[3',4']) {
      %hi: bool[3',4'] = math.reduce(%x, %axes) {kind="max"}
      %lo: bool[3',4'] = math.reduce(%x, %axes) {kind="min"}
      return %hi, %lo
    }
    """
    x = np.random.default_rng(3).random((3, 4)) > 0.5
    axes = np.array([1], np.int64)
    art = compiler.compile(parse(text), "cpu", example_inputs=[x, axes])
    for got, want in zip(art.run(x, axes), interpret(parse(text), x, axes), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_reduction_of_an_empty_set_is_its_identity_constant() -> None:
    """ONNX ReduceMax over an empty axis is -inf (ReduceProd 1): the operand holds no data,
    so the result is a constant (TVM cannot reduce an empty axis)."""
    text = """
    graph @e(%x: f32[2,0,3], %axes: i64[1]) -> (f32[2',0',3'], f32[2',0',3']) {
      %hi: f32[2',0',3'] = math.reduce(%x, %axes) {kind="max"}
      %p: f32[2',0',3'] = math.reduce(%x, %axes) {kind="prod"}
      return %hi, %p
    }
    """
    graph, _ = _specialize(text, np.zeros((2, 0, 3), np.float32), np.array([1], np.int64))
    assert not _ops(graph) and graph.outputs[0].type.shape == (2, 1, 3)
    np.testing.assert_array_equal(graph.const_value(graph.outputs[0]), np.full((2, 1, 3), -np.inf))


def test_one_hot_depth_given_as_a_float_input() -> None:
    text = """
    graph @h(%i: i64[3], %depth: f32[], %values: f32[2]) -> (f32[3,onehot0']) {
      %y: f32[3,onehot0'] = tensor.one_hot(%i, %depth, %values)
      return %y
    }
    """
    args = (np.array([0, 4, -1]), np.float32(5.0), np.array([0, 1], np.float32))
    graph, ctx = _specialize(text, *args)
    assert set(ctx.specialized) == {"depth"} and graph.outputs[0].type.shape == (3, 5)
