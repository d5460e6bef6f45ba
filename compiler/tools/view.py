"""``tapeout view``: one self-contained HTML page drawing a lowered graph (no network).

Each node shows its op, output shape and bit widths, source location, what it stands for,
where it runs (the target's backend, or "host" for a node the backend leaves to the host) and
its estimated cost (MACs, plus the report's per-layer columns: DSP, latency, ...). Nodes are
coloured by precision or by cost (a toggle). The layout (rank = longest path from an input)
is computed here; the page's script draws it as SVG from the embedded JSON, and records in
``body[data-rendered]`` how many nodes it drew and in ``body[data-errors]`` any script error,
which the browser test reads.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compiler.ir.graph import Graph, Node
from compiler.ir.op_facts import node_macs

_PAGE = Path(__file__).with_name("view_page.html")


def _ranks(graph: Graph) -> dict[int, int]:
    rank: dict[int, int] = {}
    producer_rank = {id(v): 0 for v in graph.inputs}
    for node in graph.compute_nodes():
        r = 1 + max((producer_rank.get(id(v), 0) for v in node.inputs), default=0)
        rank[id(node)] = r
        producer_rank.update({id(v): r for v in node.outputs})
    return rank


def graph_data(
    graph: Graph,
    layers: list[dict[str, Any]] | None = None,
    placement: Callable[[Node], str] | None = None,
) -> dict[str, Any]:
    """Nodes (with positions) and edges of ``graph`` as JSON-ready data."""
    rows = {str(r.get("name")): r for r in layers or []}
    rows.update({str(r.get("loc")): r for r in layers or [] if r.get("loc")})
    rank = _ranks(graph)
    column: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    index: dict[int, int] = {}
    for node in graph.compute_nodes():
        r = rank[id(node)]
        c = column.get(r, 0)
        column[r] = c + 1
        out = node.outputs[0] if node.outputs else None
        row = rows.get(out.name if out else "", rows.get(node.loc or "", {}))
        cost = {k: v for k, v in row.items() if k not in ("name", "op", "loc", "shape")}
        index.update({id(v): len(nodes) for v in node.outputs})
        nodes.append({
            "id": len(nodes),
            "name": out.name if out else node.op,
            "op": node.op,
            "type": ", ".join(str(v.type) for v in node.outputs),
            "inputs": [str(v.type) for v in node.inputs if not v.is_const],
            "bits": out.dtype if out else "",
            "loc": node.loc or "",
            "placement": placement(node) if placement else "",
            "macs": node_macs(node),
            "cost": cost,
            "rank": r,
            "col": c,
        })  # fmt: skip
    edges = [
        [index[id(v)], i]
        for i, node in enumerate(graph.compute_nodes())
        for v in node.inputs
        if id(v) in index
    ]
    return {"graph": graph.name, "nodes": nodes, "edges": edges}


def _placer(graph: Graph, target: Any) -> Callable[[Node], str]:
    """Where each node runs: the NPU or its host core on an ASIC, else the target's backend."""
    if target.backend == "asic" and target.asic is not None:
        from backends.asic.partition import offload_reason

        asic = target.asic
        return lambda n: "host" if offload_reason(graph, n, asic) else "npu"
    return lambda n: f"{target.backend} ({target.name})"


def view(source: str | Path, output: str | Path) -> dict[str, Any]:
    """Write the HTML page for an artifact, a stage or a model to ``output``."""
    import compiler
    from compiler.tools.stage import is_saved_graph

    path = Path(str(source))
    placement = None
    if path.is_dir() and (path / "manifest.json").is_file():
        art = compiler.load(path)
        graph, layers = art.graph, art.layers
        placement = _placer(graph, art.target)
    elif is_saved_graph(source):
        from compiler.tools.stage import load_saved_graph

        graph, layers = load_saved_graph(source, weights_optional=True), []
    else:
        graph, layers = compiler.import_model(source), []
    data = graph_data(graph, layers, placement)
    page = (
        _PAGE.read_text()
        .replace("/*GRAPH_JSON*/null", json.dumps(data).replace("</", "<\\/"))
        .replace("<!--TITLE-->", html.escape(graph.name))
    )
    out = Path(output)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return {"output": str(out), "nodes": len(data["nodes"]), "edges": len(data["edges"])}
