"""Float islands: elementwise float math on one 8-bit tensor becomes a lookup table.

A quantized graph may keep a few float ops between a ``q.dequantize`` and a ``q.quantize``
(hardswish, sigmoid, GELU, a final activation before the dequantized output). When every op
on the way is elementwise and reads only that one dequantized 8-bit tensor (and scalar
constants), the whole island is a function of one 8-bit integer: 256 possible inputs. The
backend evaluates the island *with the reference interpreter* on all 256 values and emits the
table (``tapeout::lut`` for an island that ends in ``q.quantize``; a float table in the host
code for one that ends at a graph output), so the result equals the interpreter's by
construction, whatever the float function is.
"""

from __future__ import annotations

import numpy as np

from compiler.interpreter import IMPLS, interpret
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import OPS
from compiler.ir.types import TensorType, is_float, is_int

#: Integer dtypes an island may start from (one byte of storage: a 256-entry table).
TABLE_DTYPES = ("i8", "u8", "i4", "u4")


def _is_scalar_const(graph: Graph, value: Value) -> bool:
    data = graph.const_value(value)
    return data is not None and data.size == 1


def _elementwise_float(node: Node) -> bool:
    spec = OPS.get(node.op)
    return (
        spec is not None
        and "elementwise" in spec.tags
        and node.op in IMPLS
        and len(node.outputs) == 1
        and is_float(node.outputs[0].dtype)
    )


def island_sources(graph: Graph) -> dict[Value, Value]:
    """Float value -> the one integer value it is an elementwise function of."""
    source: dict[Value, Value] = {}
    for node in graph.nodes:
        if node.op == "q.dequantize":
            x = node.inputs[0]
            if is_int(x.dtype) and x.type.quant is not None and x.type.quant.axis is None:
                source[node.outputs[0]] = x
        elif _elementwise_float(node):
            found = {source.get(v) for v in node.inputs if not _is_scalar_const(graph, v)}
            if len(found) == 1 and None not in found:
                (src,) = found
                assert src is not None
                source[node.outputs[0]] = src
    return source


def tabulable(source: Value) -> bool:
    """A 256-entry table covers every value of ``source``."""
    return source.dtype in TABLE_DTYPES


def _ancestors(exit_value: Value, source: Value) -> list[Node]:
    """The island's nodes between ``source`` and ``exit_value``, in graph order later."""
    seen: dict[int, Node] = {}
    stack = [exit_value]
    while stack:
        v = stack.pop()
        if v is source or v.producer is None or v.producer.op == "const":
            continue
        if id(v.producer) not in seen:
            seen[id(v.producer)] = v.producer
            stack.extend(v.producer.inputs)
    return list(seen.values())


def island_table(graph: Graph, exit_value: Value, source: Value) -> np.ndarray:
    """``exit_value`` for every possible value of 8-bit ``source``, by the interpreter.

    The result has 256 entries indexed by ``q - min(storage type)`` (the ``tapeout::lut``
    convention), in the exit's dtype.
    """
    storage = np.dtype(np.int8 if source.dtype.startswith("i") else np.uint8)
    info = np.iinfo(storage)
    domain = np.arange(int(info.min), int(info.max) + 1, dtype=np.int64).astype(storage)
    n = domain.size
    mini = Graph("island")
    mapped: dict[Value, Value] = {source: mini.add_input("q", _resized(source.type, n))}
    order = {id(node): i for i, node in enumerate(graph.nodes)}
    nodes = sorted(_ancestors(exit_value, source), key=lambda nd: order[id(nd)])
    for node in nodes:
        inputs = []
        for v in node.inputs:
            if v not in mapped:
                data = graph.const_value(v)
                assert data is not None, f"island input %{v.name} is neither mapped nor const"
                mapped[v] = mini.add_const(v.name, np.asarray(data).reshape(()))
            inputs.append(mapped[v])
        out_types = [_resized(t.type, n) for t in node.outputs]
        new = mini.add_node(node.op, inputs, dict(node.attrs), out_types=out_types)
        for old, fresh in zip(node.outputs, new.outputs, strict=True):
            mapped[old] = fresh
    mini.outputs = [mapped[exit_value]]
    (table,) = interpret(mini, domain)
    return np.asarray(table)


def _resized(t: TensorType, n: int) -> TensorType:
    quant = t.quant if t.quant is None or t.quant.axis is None else None
    return TensorType(t.dtype, (n,), quant)
