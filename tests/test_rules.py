"""The backend rule contract and its one walker (``compiler.rules``), and that every backend's
rule table is made of it."""

from __future__ import annotations

import importlib

import pytest

from compiler.errors import Unsupported
from compiler.ir.graph import Graph, Node
from compiler.ir.parser import parse
from compiler.rules import Rule, unsupported_nodes

TEXT = """graph @g(%x: f32[4]) -> (f32[4]) {
  %a: f32[4] = math.exp(%x) loc("/exp")
  %b: f32[4] = math.tanh(%a)
  %c: f32[4] = math.exp(%b) loc("/exp2")
  %d: f32[4] = math.abs(%c)
  return %d
}"""


def _lower(node: Node, ctx: object) -> None:
    raise AssertionError("not lowered in these tests")


def _no_second(node: Node, graph: Graph) -> str | None:
    return "the second exp" if node.loc == "/exp2" else None


def test_walker_lists_every_node_in_order_with_its_reason() -> None:
    g = parse(TEXT)
    rules = {"math.exp": Rule(_lower, _no_second), "math.abs": Rule(_lower)}
    items = unsupported_nodes(g, g, rules, "no rule")
    assert items == [Unsupported("math.tanh", "%b", "no rule"),
                     Unsupported("math.exp", "/exp2", "the second exp")]


def test_guard_runs_before_the_rule_and_skip_and_missing_callable() -> None:
    g = parse(TEXT)
    rules = {"math.exp": Rule(_lower, _no_second), "math.tanh": Rule(_lower)}
    items = unsupported_nodes(
        g, g, rules, lambda node: f"nothing for {node.op}",
        guard=lambda node, rule, ctx: "guarded" if node.op == "math.tanh" else None,
        skip=lambda node: node.loc == "/exp2",
    )
    assert items == [Unsupported("math.tanh", "%b", "guarded"),
                     Unsupported("math.abs", "%d", "nothing for math.abs")]


def test_rule_for_overrides_the_table() -> None:
    g = parse(TEXT)
    island = Rule(_lower, lambda node, ctx: f"island {ctx}")
    items = unsupported_nodes(g, "ctx", {}, "no rule",
                              rule_for=lambda node, ctx: island if node.op == "math.exp" else None)
    assert [i.reason for i in items] == ["island ctx", "no rule", "island ctx", "no rule"]


def _tables() -> dict[str, dict]:
    """Every backend's rule table, imported lazily (TVM's tables need no TVM to import)."""
    def get(module: str, name: str) -> dict:
        return getattr(importlib.import_module(module), name)

    return {
        "tvm": importlib.import_module("backends.tvm.lower").merged_rules(),
        "hls": get("backends.hls.rules", "RULES"),
        "hls engine": get("backends.hls.engine.rules", "RULES"),
        "asic host": get("backends.asic.codegen", "HOST_RULES"),
        "onnx": get("backends.onnx.rules", "RULES"),
    }


@pytest.mark.parametrize("backend", ["tvm", "hls", "hls engine", "asic host", "onnx"])
def test_every_backend_table_is_made_of_the_shared_rule(backend: str) -> None:
    table = _tables()[backend]
    assert table, backend
    bad = sorted(op for op, rule in table.items() if not isinstance(rule, Rule))
    assert not bad, f"{backend}: {bad} are not compiler.rules.Rule"
