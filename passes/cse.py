"""cse: common-subexpression elimination."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph, Node
from compiler.ir.printer import format_attr

if TYPE_CHECKING:
    from compiler.context import PassContext

Key = tuple[object, ...]


def _const_key(graph: Graph, node: Node, max_elements: int) -> Key:
    """Constants are equal when they name the same data, or (small ones) hold equal data."""
    ref = node.attrs["ref"]
    data = graph.constants.get(ref)
    if data is None or data.size > max_elements:
        return ("const-ref", ref, str(node.output.type))
    digest = hashlib.sha1(data.tobytes()).hexdigest()
    return ("const-data", digest, str(node.output.type), data.dtype.str)


def _node_key(node: Node) -> Key:
    attrs = ",".join(f"{k}={format_attr(v)}" for k, v in sorted(node.attrs.items()))
    return (
        node.op,
        tuple(id(v) for v in node.inputs),
        attrs,
        tuple(str(v.type) for v in node.outputs),
    )


@dataclass(frozen=True)
class CommonSubexpressions:
    """Merge nodes that compute the same thing: same op, attributes, operands and types.

    Before::

        %a: f32[1,8] = nn.relu(%x)
        %b: f32[1,8] = nn.relu(%x)
        %y: f32[1,8] = math.add(%a, %b)

    After::

        %a: f32[1,8] = nn.relu(%x)
        %y: f32[1,8] = math.add(%a, %a)

    Constants merge when they refer to the same data (``@ref``) or, for constants of at most
    ``max_const_elements`` elements (scalars, shape vectors), when their bytes, dtype and type
    are equal (compared by a content hash, then element by element). Larger constants with
    equal bytes under different names stay apart: those are parameters (freshly initialized
    biases are all zeros, layer-norm weights all ones), and a layer reading another layer's
    weight by name would mislead whoever reads the IR and any pass that rewrites weights per
    layer. The first node in topological order survives, with its name and location.
    """

    name: ClassVar[str] = "cse"
    max_const_elements: int = 16

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        seen: dict[Key, Node] = {}
        duplicates: list[tuple[Node, Node]] = []
        for node in graph.nodes:
            if node.op == "const":
                key = _const_key(graph, node, self.max_const_elements)
            else:
                key = _node_key(node)
            first = seen.get(key)
            if first is not None and self._same(graph, first, node):
                for old, new in zip(node.outputs, first.outputs, strict=True):
                    graph.replace_all_uses(old, new)
                duplicates.append((node, first))
            else:
                seen.setdefault(key, node)
        for node, _ in duplicates:
            graph.remove(node)
            ctx.stats.fire(self.name)
        return bool(duplicates)

    @staticmethod
    def _same(graph: Graph, a: Node, b: Node) -> bool:
        """Guard against hash collisions: constant data compares element by element."""
        if a.op != "const":
            return True
        da, db = graph.constants[a.attrs["ref"]], graph.constants[b.attrs["ref"]]
        return da is db or (
            da.shape == db.shape and da.dtype == db.dtype and da.tobytes() == db.tobytes()
        )
