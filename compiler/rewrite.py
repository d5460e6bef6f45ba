"""Local rewrites: a pass that visits nodes, fires or declines with a reason.

A ``RewritePass`` implements ``rewrite(graph, node, ctx)`` returning True when it changed
the graph, ``None`` when the node is simply not its pattern, or ``Reject("reason")`` when the
pattern matched but must not fire. Fires and rejections (by reason) go to ``ctx.stats``,
which ``--explain`` prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from compiler.context import PassContext, RewriteStats
from compiler.ir.graph import Graph, Node

log = logging.getLogger(__name__)

__all__ = ["Reject", "RewritePass", "RewriteStats"]


@dataclass(frozen=True)
class Reject:
    """A rewrite that matched but declined; ``reason`` is what ``--explain`` shows."""

    reason: str

    def __bool__(self) -> bool:
        return False


class RewritePass:
    """Base of node-local passes: apply ``rewrite`` to every node until nothing fires.

    Subclasses are frozen dataclasses with a ``name`` and a ``rewrite`` method.
    """

    name: ClassVar[str] = ""
    max_sweeps: ClassVar[int] = 50

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        raise NotImplementedError

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed_any = False
        stats = ctx.stats
        declined: list[str] = []
        for _ in range(self.max_sweeps):
            changed = False
            declined = []  # only the last sweep's: what still declines in the final graph
            for node in list(graph.nodes):
                if node.dead:  # removed by an earlier rewrite in this sweep
                    continue
                result = self.rewrite(graph, node, ctx)
                if isinstance(result, Reject):
                    declined.append(result.reason)
                elif result:
                    stats.fire(self.name)
                    changed = True
            changed_any |= changed
            if not changed:
                break
        for reason in declined:
            stats.reject(self.name, reason)
        if changed_any:
            graph.remove_unused()
        return changed_any
