"""Hypothesis-generated IR graphs: building, verifying and interpreting one gives a result or
a typed error, never a raw exception (the interpreter trips on nothing type inference let by).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.errors import InputError, TapeoutError
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.ir.ops import OPS
from compiler.ir.verifier import verify

#: Ops whose attributes this generator can make up (quantized ops need consistent
#: multipliers; const/range/shape have no tensor operand to pick).
FUZZED_OPS = sorted(
    op for op in OPS if op.split(".")[0] in ("math", "nn", "tensor")
    and op not in ("tensor.range", "tensor.shape", "nn.resize", "nn.attention")
)
INTS = st.integers(-3, 5)
INT_LISTS = st.lists(INTS, max_size=5)
ATTR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "axis": INTS, "axes": st.one_of(st.none(), INT_LISTS), "perm": INT_LISTS,
    "shape": INT_LISTS, "pads": INT_LISTS, "starts": INT_LISTS, "ends": INT_LISTS,
    "steps": st.one_of(st.none(), INT_LISTS), "sizes": INT_LISTS, "kernel": INT_LISTS,
    "strides": st.one_of(st.none(), INT_LISTS), "dilations": st.one_of(st.none(), INT_LISTS),
    "output_size": INT_LISTS, "output_padding": INT_LISTS, "groups": INTS, "size": INTS,
    "keepdims": st.booleans(), "ceil_mode": st.booleans(), "count_include_pad": st.booleans(),
    "to": st.sampled_from(["f32", "i8", "i32", "bool", "f16", "i64", "x"]),
    "dtype": st.sampled_from(["f32", "i8", "i64"]),
    "act": st.sampled_from(["none", "relu", "gelu", "nope"]),
    "mode": st.sampled_from(["constant", "reflect", "edge", "wrap", "nearest"]),
}
FLOATS = st.one_of(st.floats(-2, 2), st.just(float("nan")))


def _attrs(draw: Any, op: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name in OPS[op].attrs:
        if draw(st.booleans()) or name in ("perm", "shape", "pads", "starts", "ends", "sizes",
                                            "kernel", "axis", "to", "output_size", "size"):
            attrs[name] = draw(ATTR_VALUES.get(name, FLOATS))
    return attrs


@st.composite
def graphs(draw: Any) -> Graph:
    g = Graph("fuzz")
    values = []
    for i in range(draw(st.integers(1, 2))):
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
        dtype = draw(st.sampled_from(["f32", "f32", "i32", "bool"]))
        values.append(g.add_input(f"x{i}", TensorType(dtype, shape)))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(FUZZED_OPS))
        inputs = [draw(st.sampled_from(values)) for _ in range(draw(st.integers(1, 3)))]
        try:
            node = g.add_node(op, inputs, _attrs(draw, op))
        except TapeoutError:
            continue  # refused with a typed error: what bad attributes must give
        values.extend(node.outputs)
    g.outputs = [values[-1]]
    return g


def _inputs(g: Graph) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for v in g.inputs:
        shape = tuple(int(d) for d in v.type.shape)
        out.append(rng.standard_normal(shape).astype(v.type.np_dtype) if v.dtype != "bool"
                   else rng.random(shape) < 0.5)
    return out


@settings(max_examples=300, suppress_health_check=list(HealthCheck))
@given(graphs())
def test_generated_graphs_run_or_give_typed_errors(g: Graph) -> None:
    try:
        verify(g)
    except TapeoutError:
        return
    # A graph that verifies must run: an op failing inside the interpreter (its NumPy raised,
    # reported as "interpreter failed") means type inference let a bad node through. Ops whose
    # result shape depends on operand values (its dims are derived symbols, ``x'``) check
    # those values when they run: an InputError there is the typed error a bad value gets.
    try:
        interpret(g, *_inputs(g))
    except InputError:
        if not any(isinstance(d, str) and d.endswith("'")
                   for node in g.nodes for v in node.outputs for d in v.type.shape):
            raise
