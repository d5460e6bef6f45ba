"""Local rewrites: a pass that visits nodes, fires or declines with a reason.

A ``RewritePass`` implements ``rewrite(graph, node, target)`` returning True when it changed
the graph, ``None`` when the node is simply not its pattern, or ``Reject("reason")`` when the
pattern matched but must not fire (``--explain`` counts these by reason).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph, Node

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    """A rewrite that matched but declined; ``reason`` is what ``--explain`` shows."""

    reason: str

    def __bool__(self) -> bool:
        return False


@dataclass
class RewriteStats:
    """How often each pass fired, and why it declined."""

    fired: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, Counter[str]] = field(default_factory=dict)

    def fire(self, pass_name: str) -> None:
        self.fired[pass_name] += 1

    def reject(self, pass_name: str, reason: str) -> None:
        self.rejected.setdefault(pass_name, Counter())[reason] += 1

    def merge(self, other: RewriteStats) -> None:
        self.fired.update(other.fired)
        for name, reasons in other.rejected.items():
            self.rejected.setdefault(name, Counter()).update(reasons)

    def format(self) -> str:
        lines = []
        for name in sorted(set(self.fired) | set(self.rejected)):
            lines.append(f"{name}: fired {self.fired.get(name, 0)}x")
            for reason, count in sorted(
                self.rejected.get(name, Counter()).items(), key=lambda kv: -kv[1]
            ):
                lines.append(f"  declined {count}x: {reason}")
        return "\n".join(lines) if lines else "no rewrites were attempted"


#: Stats of the pass currently running; the pass manager installs a fresh one per run.
_current = RewriteStats()


def current_stats() -> RewriteStats:
    return _current


def set_stats(stats: RewriteStats) -> RewriteStats:
    global _current
    previous, _current = _current, stats
    return previous


class RewritePass:
    """Base of node-local passes: apply ``rewrite`` to every node until nothing fires.

    Subclasses are frozen dataclasses with a ``name`` and a ``rewrite`` method.
    """

    name: ClassVar[str] = ""
    max_sweeps: ClassVar[int] = 50

    def rewrite(self, graph: Graph, node: Node, target: Target | None) -> bool | Reject | None:
        raise NotImplementedError

    def run(self, graph: Graph, target: Target | None) -> bool:
        changed_any = False
        stats = current_stats()
        declined: list[str] = []
        for _ in range(self.max_sweeps):
            changed = False
            declined = []  # only the last sweep's: what still declines in the final graph
            for node in list(graph.nodes):
                if node.dead:  # removed by an earlier rewrite in this sweep
                    continue
                result = self.rewrite(graph, node, target)
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
