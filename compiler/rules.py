"""The one backend rule contract and the one walker that lists what a backend cannot take.

Every backend keeps one table IR op -> ``Rule``. A rule has two functions with the same shape
in every backend::

    check(node, ctx) -> str | None     # why this node cannot be lowered (None: it can)
    lower(node, ctx)                   # emit it (Relax bindings, HLS layers, C, ONNX nodes)

``ctx`` is the backend's own state: for checking, whatever the rule needs to judge a node
before any work (the graph for TVM and the ASIC host, the ONNX opset, the HLS ``Lowering``);
for lowering, the state being built (TVM's ``LowerContext``, the HLS ``Lowering``, the ASIC
``Program``, the ONNX ``Emitter``). A backend that needs more per-rule facts subclasses
``Rule`` (TVM's ``layouts``, ONNX's ``quant_transparent``).

``unsupported_nodes`` is the walker every backend's ``unsupported(graph, target)`` runs (and
through it ``tapeout check`` and the partitioner): it visits every node, never stopping at
the first, and returns one ``Unsupported`` per node that cannot be taken, with the reason.
What differs between backends is data given to it: how a node finds its rule (an island of
float math inside an integer FPGA design uses one table rule for every op), what to say when
no rule exists, nodes another unit takes (the NPU's offloaded layers), and checks every
rule shares (TVM's dtype table, ONNX's quantized-type check).

This is a leaf module: it imports only the IR and the error types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from compiler.errors import Unsupported
from compiler.ir.graph import Graph, Node

__all__ = ["Rule", "node_where", "unsupported_nodes"]

#: The context a rule's ``check`` reads, and the one its ``lower`` writes into.
CheckCtx = TypeVar("CheckCtx")
LowerCtx = TypeVar("LowerCtx")


@dataclass(frozen=True)
class Rule(Generic[CheckCtx, LowerCtx]):
    """How one op is taken by one backend: ``check`` says why a node cannot, ``lower`` emits it.

    ``check`` is optional: a rule without one takes every node of its op that reached it
    (the walker's ``guard`` has already refused what no rule of the backend can take).
    """

    lower: Callable[[Node, LowerCtx], Any]
    check: Callable[[Node, CheckCtx], str | None] | None = None

    def reason(self, node: Node, ctx: CheckCtx) -> str | None:
        """Why ``node`` cannot be lowered by this rule, or None."""
        return self.check(node, ctx) if self.check is not None else None


def node_where(node: Node) -> str:
    """How an ``Unsupported`` item names a node: its source location, else its name."""
    return node.loc or node.name


def unsupported_nodes(
    graph: Graph,
    ctx: Any,
    rules: Mapping[str, Rule[Any, Any]],
    missing: str | Callable[[Node], str],
    *,
    rule_for: Callable[[Node, Any], Rule[Any, Any] | None] | None = None,
    skip: Callable[[Node], bool] | None = None,
    guard: Callable[[Node, Rule[Any, Any], Any], str | None] | None = None,
    where: Callable[[Node], str] = node_where,
) -> list[Unsupported]:
    """Every node of ``graph`` the backend cannot take, each with its reason, in graph order.

    For each node not ``skip``ped: its rule is ``rule_for(node, ctx)`` (default
    ``rules.get(node.op)``); without one, the item says ``missing`` (a string, or a function
    of the node). Otherwise the first reason of ``guard(node, rule, ctx)`` (checks every rule
    of the backend shares) and the rule's own ``check(node, ctx)`` is the item's reason.
    Constants are skipped unless the table has a rule for ``const`` (ONNX writes them).
    """
    items: list[Unsupported] = []
    for node in graph.nodes:
        if (node.op == "const" and "const" not in rules) or (skip is not None and skip(node)):
            continue
        rule = rule_for(node, ctx) if rule_for is not None else rules.get(node.op)
        if rule is None:
            reason: str | None = missing(node) if callable(missing) else missing
        else:
            reason = (guard(node, rule, ctx) if guard is not None else None) or rule.reason(
                node, ctx
            )
        if reason:
            items.append(Unsupported(node.op, where(node), reason))
    return items
