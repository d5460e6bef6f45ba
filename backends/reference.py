"""The reference backend: the NumPy interpreter, packaged as an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.backend import Artifact
from compiler.errors import Unsupported
from compiler.interpreter import IMPLS, interpret
from compiler.ir.graph import Graph, Node
from compiler.report import layer_rows
from compiler.rules import Rule, unsupported_nodes

if TYPE_CHECKING:
    from compiler.target import Target


class ReferenceArtifact(Artifact):
    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return interpret(self.graph, *arrays)


def _whole_graph(node: Node, graph: Graph) -> None:
    raise AssertionError("the interpreter runs the whole graph (compiler.interpreter)")


#: The reference backend's rule: every op with an interpreter implementation (``IMPLS``, the
#: interpreter's own table) is taken as it is; nothing is lowered node by node.
_INTERPRETED: Rule[Graph, Graph] = Rule(_whole_graph)


class ReferenceBackend:
    name = "reference"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        rules = {op: _INTERPRETED for op in IMPLS}
        return unsupported_nodes(graph, graph, rules, "no interpreter implementation")

    def compile(self, graph: Graph, target: Target, out_dir: Path,
                options: dict[str, Any]) -> Artifact:
        rows = layer_rows(graph)
        summary = {"macs": sum(r["macs"] for r in rows), "params": sum(r["params"] for r in rows)}
        return ReferenceArtifact(graph, target, out_dir, rows, summary)

    def load(self, path: Path, graph: Graph, target: Target,
             manifest: dict[str, Any]) -> Artifact:
        report = manifest.get("report", {})
        return ReferenceArtifact(graph, target, path, report.get("layers"), report.get("summary"))
