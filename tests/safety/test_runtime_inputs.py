"""Every artifact's ``run`` checks its inputs (one shared check in ``Artifact.run``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from compiler import api
from compiler.backend import Artifact
from compiler.errors import InputError
from compiler.ir import Graph, TensorType
from compiler.target import load_target


def two_inputs() -> Graph:
    g = Graph("two")
    x = g.add_input("x", TensorType("f32", (2, 3)))
    k = g.add_input("k", TensorType("i8", (3,)))
    g.outputs = [g.add_node("math.add", [x, g.add_node("tensor.cast", [k], {"to": "f32"})
                                          .output], {}).output]
    return g


def _artifacts() -> dict[str, Callable[[Graph], Artifact]]:
    from backends.asic import AsicArtifact
    from backends.hls.artifact import HlsArtifact
    from backends.onnx.backend import OnnxArtifact
    from backends.reference import ReferenceArtifact
    from backends.tensorrt.backend import TensorRTArtifact
    from backends.tvm import TvmArtifact

    return {
        "reference": lambda g: ReferenceArtifact(g, load_target("reference")),
        "onnx": lambda g: OnnxArtifact(g, load_target("onnx")),
        "cpu": lambda g: TvmArtifact(g, load_target("cpu"), None, [], {}, {"runnable": True}),
        "fpga": lambda g: HlsArtifact(g, load_target("fpga")),
        "asic": lambda g: AsicArtifact(g, load_target("asic"), None, [], {}),
        "gpu": lambda g: TensorRTArtifact(g, load_target("gpu")),
    }


BAD: dict[str, tuple[Any, ...]] = {
    "too few": (np.zeros((2, 3), np.float32),),
    "0-d": (np.float32(1.0), np.zeros(3, np.int8)),
    "rank": (np.zeros((2, 3, 1), np.float32), np.zeros(3, np.int8)),
    "shape": (np.zeros((2, 4), np.float32), np.zeros(3, np.int8)),
    "float for int": (np.zeros((2, 3), np.float32), np.zeros(3, np.float32)),
    "int for float": (np.zeros((2, 3), np.int32), np.zeros(3, np.int8)),
    "out of range": (np.zeros((2, 3), np.float32), np.full(3, 300, np.int32)),
    "strings": (np.array([["a"] * 3] * 2), np.zeros(3, np.int8)),
    "ragged": ([[1.0, 2.0], [3.0]], np.zeros(3, np.int8)),
}


@pytest.mark.parametrize("target", sorted(_artifacts()))
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_input_errors(target: str, case: str) -> None:
    art = _artifacts()[target](two_inputs())
    with pytest.raises(InputError, match="input"):
        art.run(*BAD[case])


def test_hls_takes_a_batch_axis_but_checks_the_rest() -> None:
    art = _artifacts()["fpga"](two_inputs())
    seen: list[list[np.ndarray]] = []
    art.execute = lambda arrays: seen.append(arrays) or []  # type: ignore[method-assign]
    art.run(np.zeros((5, 3), np.float64), np.zeros(3, np.int64))
    assert seen[0][0].shape == (5, 3) and seen[0][0].dtype == np.float32
    with pytest.raises(InputError):
        art.run(np.zeros((5, 4), np.float32), np.zeros(3, np.int8))


def scalar_and_empty() -> Graph:
    g = Graph("edge")
    s = g.add_input("s", TensorType("f32", ()))
    x = g.add_input("x", TensorType("f32", (1, 2, 16)))
    tail = g.add_node("tensor.slice", [x], {"axes": [2], "starts": [16], "ends": [32]}).output
    g.outputs = [g.add_node("math.exp", [tail], {}).output, g.add_node("math.exp", [s], {}).output]
    return g


@pytest.mark.tvm
def test_cpu_takes_0d_inputs_and_zero_size_tensors() -> None:
    art = api.compile(scalar_and_empty(), "cpu", pipeline=[])
    empty, scalar = art.run(np.float32(0.5), np.ones((1, 2, 16), np.float32))
    assert empty.shape == (1, 2, 0) and scalar.shape == ()
    np.testing.assert_allclose(scalar, np.exp(np.float32(0.5)), rtol=1e-6)


@pytest.mark.tvm
def test_cpu_splits_with_zero_size_parts() -> None:
    g = Graph("split0")
    x = g.add_input("x", TensorType("f32", (2, 5)))
    node = g.add_node("tensor.split", [x], {"axis": 1, "sizes": [2, 0, 3]})
    g.outputs = list(node.outputs)
    x_np = np.arange(10, dtype=np.float32).reshape(2, 5)
    got = api.compile(g, "cpu", pipeline=[]).run(x_np)
    want = np.split(x_np, [2, 2], axis=1)
    assert [a.shape for a in got] == [(2, 2), (2, 0), (2, 3)]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.tvm
@pytest.mark.parametrize(("op", "dtype", "attrs", "arity"), [
    # (f16/bf16 exp and softmax used to be here: the cpu target computes them in f32 now,
    # tests/backends/tvm/test_narrow_dtypes.py checks them against the interpreter; integer
    # pow is lowered too, checked by tests/backends/tvm/test_int_ops.py.)
    ("math.argmax", "bool", {"axis": 1}, 1),
])
def test_cpu_refuses_what_tvm_cannot_generate(op: str, dtype: str, attrs: dict[str, Any],
                                              arity: int) -> None:
    from compiler.errors import UnsupportedOpsError

    g = Graph("t")
    xs = [g.add_input(f"x{i}", TensorType(dtype, (2, 3))) for i in range(arity)]
    g.outputs = [g.add_node(op, xs, attrs).output]
    with pytest.raises(UnsupportedOpsError, match=op):
        api.compile(g, "cpu", pipeline=[])
