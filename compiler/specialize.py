"""Specialize symbolic dimensions to concrete sizes and re-infer every type.

Backends that need static shapes (HLS, TensorRT without profiles, TVM's static build) call
``specialize(graph, {"batch": 1})`` or ``specialize_from_inputs(graph, example_inputs)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compiler.errors import InputError
from compiler.ir.graph import Graph
from compiler.ir.ops import infer_types
from compiler.ir.types import TensorType


def bind_symbols(graph: Graph, inputs: Sequence[Any]) -> dict[str, int]:
    """Symbol -> size, read off example inputs (arrays or tensors with ``.shape``)."""
    if len(inputs) != len(graph.inputs):
        raise InputError(f"{len(inputs)} example input(s) for {len(graph.inputs)} graph input(s)")
    binding: dict[str, int] = {}
    for value, x in zip(graph.inputs, inputs, strict=True):
        shape = (
            tuple(int(d) for d in np.shape(x))
            if not hasattr(x, "shape")
            else tuple(int(d) for d in x.shape)
        )
        if len(shape) != value.type.rank:
            raise InputError(
                f"example input for %{value.name} has shape {list(shape)}, "
                f"graph expects {value.type}"
            )
        for want, got in zip(value.type.shape, shape, strict=True):
            if isinstance(want, str):
                if binding.setdefault(want, got) != got:
                    raise InputError(f"symbol {want} is {got} and {binding[want]} in the inputs")
            elif want != got:
                raise InputError(
                    f"example input for %{value.name} has shape {list(shape)}, "
                    f"graph expects {value.type}"
                )
    return binding


def _sub(dims: Sequence[Any], binding: Mapping[str, int]) -> tuple:
    return tuple(binding.get(d, d) if isinstance(d, str) else d for d in dims)


def specialize(graph: Graph, binding: Mapping[str, int]) -> bool:
    """Replace symbols by sizes in input types and attributes, then re-infer all types."""
    if not binding:
        return False
    for value in graph.inputs:
        value.type = TensorType(value.type.dtype, _sub(value.type.shape, binding), value.type.quant)
    for node in graph.nodes:
        for key in ("shape",):
            if isinstance(node.attrs.get(key), list):
                node.attrs[key] = list(_sub(node.attrs[key], binding))
        if node.op == "const":
            continue
        types = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
        for out, t in zip(node.outputs, types, strict=True):
            out.type = TensorType(t.dtype, t.shape, out.type.quant)
    return True


def specialize_from_inputs(graph: Graph, inputs: Sequence[Any]) -> bool:
    return specialize(graph, bind_symbols(graph, inputs))


def is_static(graph: Graph) -> bool:
    return all(v.type.is_static for v in graph.values())


def check_guards(
    graph: Graph, specialized: Mapping[str, Any] | None, arrays: Sequence[np.ndarray]
) -> None:
    """Raise ``InputError`` where an input that ``specialize-shapes`` fixed at compile time
    (``specialized``: input -> {"value": ...}) is given another value: the artifact was
    built for that value only, and would compute garbage for another."""
    if not specialized:
        return
    names = [v.name for v in graph.inputs]
    for name, record in specialized.items():
        if name not in names:
            continue
        given = np.asarray(arrays[names.index(name)])
        want = np.asarray(record["value"], dtype=given.dtype)
        if given.shape != want.shape or not np.array_equal(given, want):
            raise InputError(
                f"input %{name} was specialized to {want.tolist()} at compile time (it decides "
                f"a shape), but {given.tolist()} was given; compile with this value as the "
                "example input, or with specialize_shapes=False to keep it a runtime input"
            )
