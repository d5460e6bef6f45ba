"""Pipeline parsing, PassError context, print-after, explain counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from compiler.context import PassContext
from compiler.errors import PassError, TapeoutError
from compiler.ir import Graph, f32
from compiler.ir.graph import Node
from compiler.pass_manager import PassManager, pass_options, split_pipeline
from compiler.rewrite import Reject, RewritePass


def graph() -> Graph:
    g = Graph("pm")
    x = g.add_input("x", f32(2, 3))
    a = g.add_node("nn.relu", [x]).output
    b = g.add_node("nn.dropout", [a]).output
    g.outputs = [g.add_node("nn.relu", [b]).output]
    return g


@dataclass(frozen=True)
class DropDropout(RewritePass):
    name: ClassVar[str] = "drop-dropout"
    only_first: bool = False

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op == "nn.relu":
            return Reject("relu is not dropout")
        if node.op != "nn.dropout":
            return None
        return graph.replace_all_uses(node.output, node.inputs[0])


@dataclass(frozen=True)
class Broken:
    name: ClassVar[str] = "broken"
    factor: int = 2

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        raise ZeroDivisionError("boom")


def test_split_pipeline_options() -> None:
    assert split_pipeline("a, b{x=1,flag=true,name=abc,xs=[1;2]},c") == [
        ("a", {}), ("b", {"x": 1, "flag": True, "name": "abc", "xs": [1, 2]}), ("c", {})]
    with pytest.raises(TapeoutError, match="cannot parse"):
        split_pipeline("a{x=1")
    with pytest.raises(TapeoutError, match="key=value"):
        split_pipeline("a{x}")


def test_rewrite_pass_counts_fires_and_rejections() -> None:
    g = graph()
    ctx = PassContext()
    result = PassManager([DropDropout()], verify_each=True).run(g, ctx)
    assert g.op_counts() == {"nn.relu": 2}
    assert result.stats is ctx.stats  # the context is the one sink, read after the run
    assert result.stats.fired["drop-dropout"] == 1
    assert result.stats.rejected["drop-dropout"]["relu is not dropout"] >= 2
    assert "declined" in result.stats.format()
    assert PassManager([DropDropout()]).run(graph()).stats is not ctx.stats  # nothing shared


def test_pass_error_names_pass_options_and_history() -> None:
    with pytest.raises(PassError) as info:
        PassManager([DropDropout(), Broken(factor=3)]).run(graph())
    msg = str(info.value)
    assert "broken{factor=3}" in msg and "drop-dropout" in msg and "boom" in msg
    assert pass_options(Broken()) == ""


def test_print_after() -> None:
    printed: list[str] = []
    PassManager([DropDropout()], print_after="all", printer=printed.append).run(graph())
    assert len(printed) == 1 and "IR after drop-dropout" in printed[0]
    assert "nn.dropout" not in printed[0]


def test_unknown_pass_and_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import passes
    from compiler.pass_manager import build_pipeline

    monkeypatch.setitem(passes.PASSES, "drop-dropout", DropDropout)
    assert [p.name for p in build_pipeline("drop-dropout{only_first=true}")] == ["drop-dropout"]
    with pytest.raises(TapeoutError, match="unknown pass"):
        build_pipeline("no-such-pass")
    with pytest.raises(TapeoutError, match="no option"):
        build_pipeline("drop-dropout{speed=3}")


def test_verify_each_catches_a_broken_graph() -> None:
    @dataclass(frozen=True)
    class Corrupt:
        name: ClassVar[str] = "corrupt"

        def run(self, graph: Graph, ctx: PassContext) -> bool:
            graph.nodes[0].attrs["bogus"] = 1
            return True

    with pytest.raises(PassError, match="unknown attribute"):
        PassManager([Corrupt()], verify_each=True).run(graph())


def test_each_pass_is_one_module_named_after_it() -> None:
    """One pass per file: the registry names each pass's own module (``fuse-bias-act`` in
    ``passes/fuse_bias_act.py``), which imports no private name from another module."""
    import ast
    import inspect
    from pathlib import Path

    from passes import PASSES

    modules = {name: inspect.getmodule(cls) for name, cls in PASSES.items()}
    for name, module in modules.items():
        assert module is not None and module.__name__ == "passes." + name.replace("-", "_")
    for path in Path(inspect.getfile(PASSES["dce"])).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("passes", "compiler", "backends")
            ):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path}:{node.lineno} imports {private}"
