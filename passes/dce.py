"""dce: dead-code elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph

if TYPE_CHECKING:
    from compiler.context import PassContext


@dataclass(frozen=True)
class DeadCodeElimination:
    """Remove every node none of whose outputs reaches a graph output (constants included).

    Before::

        %a: f32[4] = nn.relu(%x)
        %b: f32[4] = math.exp(%x)
        return %a

    After::

        %a: f32[4] = nn.relu(%x)
        return %a

    Graph inputs are never removed, even when unused: they are the graph's calling convention.
    """

    name: ClassVar[str] = "dce"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        return graph.remove_unused() > 0
