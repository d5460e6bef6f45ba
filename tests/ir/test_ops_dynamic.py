"""Runtime shape operands (``compiler.ir.ops_dynamic``) and the narrow dtypes (float8,
float4, int2): types, text round trip, the interpreter against NumPy, the ONNX importer
keeping graph inputs as inputs, and backends refusing what they cannot take."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.errors import InputError
from compiler.ir import Graph, TensorType, parse, print_graph, verify


def _graph(op: str, inputs: list[TensorType], attrs: dict | None = None) -> Graph:
    g = Graph(op.replace(".", "_"))
    values = [g.add_input(f"in{i}", t) for i, t in enumerate(inputs)]
    node = g.add_node(op, values, attrs or {})
    g.outputs = list(node.outputs)
    verify(g)
    return g


def test_reshape_dyn_has_symbolic_dims_and_round_trips() -> None:
    g = _graph("tensor.reshape_dyn", [TensorType("f32", (2, 6)), TensorType("i64", (3,))])
    out = g.outputs[0].type
    assert out.rank == 3 and not out.is_static  # the runtime values decide every dim
    text = print_graph(g)
    assert "tensor.reshape_dyn" in text and parse(text, g.constants) == g
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    (y,) = compiler.interpret(g, x, np.array([0, 3, -1], np.int64))
    np.testing.assert_array_equal(y, x.reshape(2, 3, 2))  # 0 copies dim 0 of the input
    (y,) = compiler.interpret(g, x, np.array([1, 12, 1], np.int64))
    assert y.shape == (1, 12, 1)
    with pytest.raises(InputError, match="cannot reshape"):
        compiler.interpret(g, x, np.array([5, -1, 1], np.int64))


@pytest.mark.parametrize(
    ("start", "end", "step"), [(1, 3, 1), (3, -10, -1), (-100, 100, 2), (4, 1, -2), (2, 2, 1)]
)
def test_slice_dyn_clamps_as_python_slicing(start: int, end: int, step: int) -> None:
    i64 = TensorType("i64", (1,))
    g = _graph("tensor.slice_dyn", [TensorType("f32", (4, 5)), i64, i64, i64, i64])
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    args = [np.array([v], np.int64) for v in (start, end, 1, step)]
    (y,) = compiler.interpret(g, x, *args)
    np.testing.assert_array_equal(y, x[:, start:end:step])


def test_pad_dyn_crops_negative_pads_then_pads() -> None:
    g = _graph("tensor.pad_dyn", [TensorType("f32", (3, 4)), TensorType("i64", (4,))],
               {"mode": "reflect"})  # fmt: skip
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    (y,) = compiler.interpret(g, x, np.array([1, -1, 0, 2], np.int64))
    np.testing.assert_array_equal(y, np.pad(x[:, 1:], [(1, 0), (0, 2)], mode="reflect"))


def test_range_split_and_constant_of_shape() -> None:
    scalar = TensorType("i32", ())
    g = _graph("tensor.range_dyn", [scalar, scalar, scalar])
    (y,) = compiler.interpret(g, np.int32(10), np.int32(-3), np.int32(-4))
    np.testing.assert_array_equal(y, np.arange(10, -3, -4, dtype=np.int32))
    g = _graph("tensor.split_dyn", [TensorType("f32", (6,)), TensorType("i64", (2,))],
               {"count": 2})  # fmt: skip
    x = np.arange(6, dtype=np.float32)
    a, b = compiler.interpret(g, x, np.array([4, 2], np.int64))
    np.testing.assert_array_equal(b, x[4:])
    with pytest.raises(InputError, match="do not add up"):
        compiler.interpret(g, x, np.array([4, 1], np.int64))
    g = _graph("tensor.constant_of_shape", [TensorType("i64", (2,))], {"value": 7, "dtype": "i32"})
    (y,) = compiler.interpret(g, np.array([2, 3], np.int64))
    assert y.dtype == np.int32 and y.shape == (2, 3) and (y == 7).all()


def test_resize_dyn_nearest_and_linear() -> None:
    attrs = {"transform": "asymmetric", "nearest_mode": "floor"}
    g = _graph("nn.resize_dyn", [TensorType("f32", (1, 1, 2, 3)), TensorType("f32", (4,))],
               attrs)  # fmt: skip
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    (y,) = compiler.interpret(g, x, np.array([1, 1, 2, 2], np.float32))
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    attrs = {"given": "sizes", "mode": "linear", "transform": "align_corners", "axes": [3]}
    g = _graph("nn.resize_dyn", [TensorType("f32", (1, 1, 2, 3)), TensorType("i64", (1,))],
               attrs)  # fmt: skip
    (y,) = compiler.interpret(g, x, np.array([5], np.int64))
    np.testing.assert_allclose(y[0, 0, 0], [0, 0.5, 1, 1.5, 2])  # corners kept, halves between


def test_resize_dyn_cubic_reproduces_a_ramp_inside() -> None:
    """Keys' cubic kernel with a = -0.5 reproduces linear functions where all four taps
    are inside (ONNX's default -0.75 does not)."""
    g = _graph("nn.resize_dyn", [TensorType("f32", (8,)), TensorType("f32", (1,))],
               {"mode": "cubic", "cubic_coeff_a": -0.5})  # fmt: skip
    (y,) = compiler.interpret(g, np.arange(8, dtype=np.float32), np.array([2], np.float32))
    coord = (np.arange(16) + 0.5) / 2 - 0.5  # half_pixel
    np.testing.assert_allclose(y[4:12], coord[4:12], rtol=1e-6)


def test_one_hot_wraps_negative_indices() -> None:
    g = _graph("tensor.one_hot", [TensorType("i64", (3,)), TensorType("i64", ()),
                                  TensorType("f32", (2,))])  # fmt: skip
    args = np.array([0, -1, 5], np.int64), np.int64(3), np.array([-1, 4], np.float32)
    (y,) = compiler.interpret(g, *args)
    np.testing.assert_array_equal(y, [[4, -1, -1], [-1, -1, 4], [-1, -1, -1]])


def test_onnx_runtime_operand_stays_a_graph_input() -> None:
    from onnx import TensorProto, helper

    from compiler.frontends.onnx import import_onnx

    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    model = helper.make_model(
        helper.make_graph(
            [node], "reshape",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
             helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    g = import_onnx(model)
    assert [v.name for v in g.inputs] == ["x", "shape"]
    assert [n.op for n in g.nodes if n.op != "const"] == ["tensor.reshape_dyn"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = compiler.interpret(g, x, np.array([3, 2], np.int64))
    np.testing.assert_array_equal(y, x.reshape(3, 2))


def test_cpu_backend_refuses_runtime_shapes_and_takes_narrow_dtypes() -> None:
    from backends.tvm.lower import check_graph  # the rule-table walk; TVM is not imported

    g = _graph("tensor.reshape_dyn", [TensorType("f32", (2, 6)), TensorType("i64", (2,))])
    assert [(u.op, u.reason) for u in check_graph(g)] == [("tensor.reshape_dyn",
                                                           "no TVM lowering")]  # fmt: skip
    # Narrow floats travel in f32 carriers now (backends/tvm/dtypes_narrow.py).
    g = _graph("tensor.cast", [TensorType("f32", (2,))], {"to": "f8e5m2"})
    assert check_graph(g) == []


def test_onnx_export_refuses_types_it_cannot_declare() -> None:
    from backends.onnx.export import unsupported_nodes

    g = _graph("tensor.cast", [TensorType("i2", (2,))], {"to": "f32"})
    assert [u.reason for u in unsupported_nodes(g)] == ["dtype i2 has no ONNX export type"]


# ---- narrow dtypes ------------------------------------------------------------------------
def _cast(x: np.ndarray, source: str, to: str, saturate: bool = True) -> np.ndarray:
    g = _graph("tensor.cast", [TensorType(source, x.shape)], {"to": to, "saturate": saturate})
    text = print_graph(g)
    assert f"{to}[" in text and parse(text, g.constants) == g
    return compiler.interpret(g, x)[0]


def test_float8_cast_saturates_as_onnx_says() -> None:
    x = np.array([1000.0, -np.inf, 0.3, np.nan], np.float32)
    # E4M3FN's largest finite value is 448, E5M2's 57344 (ONNX Cast's tables).
    y = _cast(x, "f32", "f8e4m3fn")
    np.testing.assert_array_equal(y[:2], [448.0, -448.0])
    assert y[2] == np.float32(0.3125) and np.isnan(y[3])  # 0.3 rounds to 5 * 2^-4
    y = _cast(x, "f32", "f8e5m2", saturate=False)
    assert y[0] == 1024.0 and y[1] == -np.inf  # 1000 rounds to 2^10; inf stays inf
    assert np.isnan(_cast(x, "f32", "f8e4m3fn", saturate=False)[0])  # no inf in E4M3FN


def test_float8_inputs_are_rounded_to_their_type() -> None:
    g = _graph("tensor.cast", [TensorType("f8e4m3fn", (2,))], {"to": "f32"})
    (y,) = compiler.interpret(g, np.array([0.3, -448.0], np.float32))
    np.testing.assert_array_equal(y, [0.3125, -448.0])
    with pytest.raises(InputError, match="largest finite value 448"):
        compiler.interpret(g, np.array([0.3, 1000.0], np.float32))


def test_sub_byte_integer_casts() -> None:
    ints = np.array([9, -9, 7, -8, 2], np.int32)
    np.testing.assert_array_equal(_cast(ints, "i32", "i4"), [-7, 7, 7, -8, 2])  # wraps
    np.testing.assert_array_equal(_cast(ints, "i32", "u2"), [1, 3, 3, 0, 2])
    floats = np.array([1.7, -1.7, 0.2], np.float32)
    np.testing.assert_array_equal(_cast(floats, "f32", "i2"), [1, -1, 0])  # toward zero
