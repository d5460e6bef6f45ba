"""Helpers the passes share: matching values and constants, and in-place graph surgery.

Not a pass (it is not in ``PASSES``). The surgery helpers keep use-lists right by going
through ``Graph.set_input`` / ``replace_all_uses`` / ``remove``; they rewrite nodes *in place*
where they can, so that a fused node keeps its output value and name and the printed IR after
a pass still reads like the IR before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import VerifyError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import infer_types
from compiler.ir.types import TensorType

#: Relative tolerance for matching the magic constants exporters write (0.7071, 0.044715, ...).
REL_TOL = 1e-4

# ---- matching -------------------------------------------------------------------------------


def const_data(graph: Graph, value: Value) -> np.ndarray | None:
    """The data of ``value`` if it is a constant, else None."""
    return graph.const_value(value)


def scalar(graph: Graph, value: Value) -> float | None:
    """The number held by a one-element constant (any rank), else None."""
    data = graph.const_value(value)
    if data is None or data.size != 1:
        return None
    return float(data.reshape(()))


def close(a: float | None, b: float, rel: float = REL_TOL) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=rel * 1e-3)


def is_output(graph: Graph, value: Value) -> bool:
    return any(o is value for o in graph.outputs)


def is_dead(graph: Graph, node: Node) -> bool:
    """True if no output of ``node`` is used: a leftover of an earlier rewrite in this sweep,
    which ``RewritePass`` removes at the end; patterns must not match it again."""
    return not any(v.uses or is_output(graph, v) for v in node.outputs)


def sole_user(graph: Graph, value: Value) -> Node | None:
    """The one node using ``value`` (possibly in several operands), if it is not an output."""
    users = value.users
    if len(users) != 1 or is_output(graph, value):
        return None
    return users[0]


def only_used_by(graph: Graph, value: Value, *nodes: Node) -> bool:
    """True if every use of ``value`` is by one of ``nodes`` and it is not a graph output."""
    allowed = {id(n) for n in nodes}
    return not is_output(graph, value) and all(id(n) in allowed for n, _ in value.uses)


def producer(value: Value, *ops: str) -> Node | None:
    """The node defining ``value`` if its op is one of ``ops``."""
    node = value.producer
    return node if node is not None and node.op in ops else None


def other_operand(node: Node, value: Value) -> Value:
    """For a binary node, the operand that is not ``value``."""
    a, b = node.inputs[0], node.inputs[1]
    return b if a is value else a


def split_const(graph: Graph, node: Node) -> tuple[Value, np.ndarray] | None:
    """For a binary node with exactly one constant operand: (the other operand, the data)."""
    a, b = node.inputs[0], node.inputs[1]
    da, db = graph.const_value(a), graph.const_value(b)
    if (da is None) == (db is None):
        return None
    return (b, da) if da is not None else (a, db)  # type: ignore[return-value]


def same_type(a: Value, b: Value) -> bool:
    return a.type == b.type


# ---- surgery --------------------------------------------------------------------------------


def set_operand(graph: Graph, node: Node, index: int, value: Value) -> None:
    """Set operand ``index`` of ``node``, appending it if ``index`` is one past the end."""
    if index == len(node.inputs):
        node.inputs.append(value)
        value.uses.append((node, index))
    elif index < len(node.inputs):
        graph.set_input(node, index, value)
    else:
        raise VerifyError(f"{node.where()}: cannot set operand {index} of {len(node.inputs)}")


def set_operands(graph: Graph, node: Node, values: Sequence[Value]) -> None:
    """Replace all operands of ``node`` by ``values`` (any count)."""
    for index, old in enumerate(node.inputs):
        old.uses.remove((node, index))
    node.inputs = list(values)
    for index, v in enumerate(node.inputs):
        v.uses.append((node, index))


def morph(
    graph: Graph, node: Node, op: str, inputs: Sequence[Value], attrs: dict[str, Any]
) -> None:
    """Turn ``node`` into ``op(inputs) {attrs}`` in place, keeping its output value and name.

    The new op must produce the type the old output had (checked, so a wrong rewrite fails
    here, naming the node, instead of later in the verifier).
    """
    inferred = infer_types(op, [v.type for v in inputs], attrs, node.where())
    if [t.shape for t in inferred] != [v.type.shape for v in node.outputs] or [
        t.dtype for t in inferred
    ] != [v.type.dtype for v in node.outputs]:
        raise VerifyError(
            f"{node.where()}: rewriting it as {op} would change its type "
            f"{[str(v.type) for v in node.outputs]} to {[str(t) for t in inferred]}"
        )
    set_operands(graph, node, inputs)
    node.op = op
    node.attrs = dict(attrs)


def bypass(graph: Graph, node: Node, value: Value) -> bool:
    """Make every use of ``node``'s output use ``value`` instead, and drop ``node``."""
    graph.replace_all_uses(node.output, value)
    graph.remove(node)
    return True


def absorb(graph: Graph, kept: Node, gone: Node) -> bool:
    """``gone`` (a consumer of ``kept``) is now computed by ``kept``: reroute and drop it.

    ``kept`` records where ``gone`` came from (``Node.fused``), so a debugger can compare the
    fused value with the imported value it stands for."""
    origin = (gone.loc,) if gone.loc else ()  # a node without a location has nothing to name
    kept.fused = tuple(dict.fromkeys((*kept.fused, *gone.fused, *origin)))
    graph.replace_all_uses(gone.output, kept.output)
    graph.remove(gone)
    return True


def move_before(graph: Graph, node: Node, anchor: Node) -> None:
    """Move ``node`` to just before ``anchor`` (the caller checks dependencies allow it)."""
    graph.nodes.remove(node)
    graph.insert_before(anchor, node)


def positions(graph: Graph) -> dict[int, int]:
    """Node id -> index in ``graph.nodes`` (topological order)."""
    return {id(n): i for i, n in enumerate(graph.nodes)}


def add_const_like(
    graph: Graph, hint: str, data: np.ndarray, like: TensorType | None = None
) -> Value:
    """Add a constant holding ``data`` cast to ``like``'s dtype (float32 by default)."""
    dtype = like.np_dtype if like is not None else np.dtype(np.float32)
    return graph.add_const(hint, np.ascontiguousarray(data, dtype=dtype))


def const_ref(value: Value) -> str:
    """The ``@ref`` of a constant value (its value name otherwise), for naming derived data."""
    node = value.producer
    if node is not None and node.op == "const":
        return str(node.attrs["ref"])
    return value.name


def evaluate(graph: Graph, node: Node, operands: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``node`` on ``operands`` with the interpreter's own implementation of its op."""
    from compiler.interpreter import IMPLS, Context, as_type

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        outs = IMPLS[node.op](Context(graph), node, list(operands))
    return [as_type(a, v.type) for a, v in zip(outs, node.outputs, strict=True)]
