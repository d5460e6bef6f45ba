"""Models across several devices, or in pipeline stages: the ``multi`` backend.

``compile(model, target=["zcu104", "cpu"])`` (or ``"zcu104+cpu"``, or a target file with
``backend = "multi"`` and ``devices = [...]``): the model goes through the first device's
pipeline, then every node goes to the first device whose backend takes it
(``compiler.partition.place``, by the backends' own pre-flight rules), connected runs become
parts, each part is compiled by its device's backend into ``partN/`` (a complete artifact of
its own), and one ``MultiArtifact`` runs them in order. The boundaries are values of the IR:
a quantized graph keeps its ``q.quantize``/``q.dequantize`` nodes where the passes put them,
so the glue between parts moves tensors by name and is exact (bit for bit where integer).

``compile(model, target="cpu", pipeline_stages=N)``: the graph is cut into N stages of
balanced estimated cost (``compiler.partition.cut_stages``), each compiled for the target;
``MultiArtifact.run_pipelined`` streams micro-batches through one worker process per stage
with bounded queues, each worker pinned to its cores when ``stage_cores`` is given.

The report shows the device of every node, the bytes crossing every boundary, and (after
``run_pipelined``) the throughput and per-stage time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.backend import MULTI_OPTIONS, Artifact, get_backend, write_manifest
from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph
from compiler.partition import Part, cut_stages, group_by_device, lift, place, value_bytes
from compiler.report import layer_rows

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)

META_FILE = "multi.json"

#: Backend options this backend takes itself; every other option goes to the parts' backends.
OWN_OPTIONS = MULTI_OPTIONS


class MultiArtifact(Artifact):
    """Parts run in order; values pass between them by name."""

    def __init__(
        self,
        graph: Graph,
        target: Target,
        path: Path | None,
        layers: list[dict[str, Any]],
        summary: dict[str, Any],
        parts: list[dict[str, Any]],
        artifacts: list[Artifact],
    ):
        self.parts = parts  # {"dir", "target", "inputs", "outputs"} per part
        self.artifacts = artifacts
        super().__init__(graph, target, path, layers, summary)

    @property
    def backend(self) -> str:
        return "multi"

    @property
    def path(self) -> Path | None:
        return self._path

    @path.setter
    def path(self, value: Path | None) -> None:
        # The compile folder is renamed into place (and save() copies it): the parts live in
        # subfolders of it and must follow.
        self._path = None if value is None else Path(value)
        for part, art in zip(self.parts, self.artifacts, strict=True):
            art.path = None if value is None else Path(value) / part["dir"]

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        env = dict(zip((v.name for v in self.graph.inputs), arrays, strict=True))
        for part, art in zip(self.parts, self.artifacts, strict=True):
            outs = art.run(*(env[name] for name in part["inputs"]))
            env.update(zip(part["outputs"], outs, strict=True))
        return [env[v.name] for v in self.graph.outputs]

    def run_pipelined(self, batches: list[tuple[np.ndarray, ...]], **kwargs: Any) -> list[list]:
        """Stream ``batches`` (one tuple of inputs each) through one worker process per part;
        outputs in order. See ``compiler.pipeline_run.run_pipelined`` for the options."""
        from compiler.pipeline_run import run_pipelined

        if self.path is None:
            raise BackendError("save the artifact first: pipeline workers load it from disk")
        outputs, stats = run_pipelined(self, batches, **kwargs)
        self.summary["pipeline"] = stats
        return outputs


class MultiBackend:
    """Partitions across ``target.devices``, or cuts ``pipeline_stages`` stages."""

    name = "multi"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        if not target.devices:
            return []  # pipeline stages: the stage target's backend checks at compile
        refused = _refusals(graph, target)
        common = set.intersection(*(set(r) for r in refused.values()))
        first = next(iter(refused.values()))
        return [first[name] for name in sorted(common)]

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> MultiArtifact:
        from compiler.target import load_target

        stages = options.get("pipeline_stages")
        if target.devices:
            devices = [load_target(d) for d in target.devices]
            refused = _refusals(graph, target)
            parts = group_by_device(graph, place(graph, [set(r) for r in refused.values()]))
        elif stages:
            devices = [target]
            parts = cut_stages(graph, int(stages))
        else:
            raise BackendError(f"target {target.name} names no devices and no pipeline_stages")
        backend_options = {k: v for k, v in options.items() if k not in OWN_OPTIONS}
        records, artifacts = [], []
        for part in parts:
            art, record = _compile_part(graph, part, devices[part.device], out_dir, backend_options)
            records.append(record)
            artifacts.append(art)
        layers, summary = _report(graph, parts, [devices[p.device].name for p in parts])
        if options.get("stage_cores"):
            summary["stage_cores"] = options["stage_cores"]
        (Path(out_dir) / META_FILE).write_text(json.dumps({"parts": records}, indent=2))
        return MultiArtifact(graph, target, Path(out_dir), layers, summary, records, artifacts)

    def load(
        self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]
    ) -> MultiArtifact:
        from compiler.api import load

        meta_file = Path(path) / META_FILE
        if not meta_file.is_file():
            raise BackendError(f"{path} has no {META_FILE}: not a multi-device artifact")
        records = json.loads(meta_file.read_text())["parts"]
        artifacts = [load(Path(path) / r["dir"]) for r in records]
        report = manifest.get("report", {})
        return MultiArtifact(
            graph,
            target,
            Path(path),
            report.get("layers") or [],
            report.get("summary") or {},
            records,
            artifacts,
        )


def _refusals(graph: Graph, target: Target) -> dict[str, dict[str, Unsupported]]:
    """Per device name: the IR names of the nodes its backend refuses, with the reason."""
    from compiler.target import load_target

    refused: dict[str, dict[str, Unsupported]] = {}
    for name in target.devices:
        device = load_target(name)
        by_node: dict[str, Unsupported] = {}
        for item in get_backend(device.backend).unsupported(graph, device):
            for node in _nodes_at(graph, item):
                by_node[node] = item
        refused[name] = by_node
    return refused


def _nodes_at(graph: Graph, item: Unsupported) -> list[str]:
    """The IR names (``%x``) of the nodes an ``Unsupported`` entry points at. Backends give a
    source location or an IR name; where several nodes of that op share the location, all are
    taken as refused (the safe side: they go to a later device)."""
    return [
        node.name
        for node in graph.compute_nodes()
        if item.op == node.op and item.location in (node.name, node.loc, node.name.lstrip("%"))
    ]


def _compile_part(
    graph: Graph, part: Part, device: Target, out_dir: Path, options: dict[str, Any]
) -> tuple[Artifact, dict[str, Any]]:
    sub = lift(graph, part)
    backend = get_backend(device.backend)
    missing = backend.unsupported(sub, device)
    if missing:  # placement said it takes them; a backend that disagrees on a subgraph
        raise BackendError(
            f"part {part.index} for {device.name} has nodes its backend refuses: "
            + "; ".join(f"{m.op} at {m.location}: {m.reason}" for m in missing)
        )
    folder = Path(out_dir) / f"part{part.index}"
    folder.mkdir(parents=True, exist_ok=True)
    art = backend.compile(sub, device, folder, dict(options))
    art.path = folder
    write_manifest(folder, art)
    record = {
        "dir": folder.name,
        "target": device.name,
        "inputs": [v.name for v in part.inputs],
        "outputs": [v.name for v in part.outputs],
        "nodes": len(part.nodes),
        "cost_macs": int(part.cost),
    }
    return art, record


def _report(
    graph: Graph, parts: list[Part], names: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer rows with the part and device; boundaries with the bytes that cross them."""
    where = {n.outputs[0].name: (p.index, names[i]) for i, p in enumerate(parts) for n in p.nodes}
    rows = layer_rows(graph)
    for row in rows:
        part, device = where.get(str(row.get("name")), (None, None))
        row["part"], row["device"] = part, device
    produced_in = {v.name: p.index for p in parts for v in p.outputs}
    boundaries = [
        {
            "from": produced_in.get(v.name, "input"),
            "to": p.index,
            "value": v.name,
            "bytes": value_bytes(v),
        }
        for p in parts
        for v in p.inputs
    ]
    summary = {
        "parts": [
            f"part{p.index}: {names[i]}, {len(p.nodes)} nodes, {int(p.cost)} MACs"
            for i, p in enumerate(parts)
        ],
        "boundaries": boundaries,
        "transfer_bytes": sum(int(b["bytes"]) for b in boundaries if b["from"] != "input"),
        "macs": sum(int(r.get("macs") or 0) for r in rows),
    }
    return rows, summary
