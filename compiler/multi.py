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
from compiler.partition import (
    Part,
    check_fits,
    cut_stages,
    group_by_device,
    lift,
    place,
    stage_bytes,
    value_bytes,
)
from compiler.report import layer_rows

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)

META_FILE = "multi.json"
#: The stage device that means "in this process (or its pipeline worker), on this machine".
LOCAL = "local"

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
        self._remote: dict[tuple[int, str], Any] = {}  # open RPC stages, by part and address
        super().__init__(graph, target, path, layers, summary)

    @property
    def stage_devices(self) -> list[str]:
        """Where each part runs: ``"local"`` or an RPC address (``backends.tvm.remote``);
        set from the ``stage_devices`` option, and may be changed before a run."""
        return list(self.summary.get("stage_devices") or ["local"] * len(self.parts))

    @stage_devices.setter
    def stage_devices(self, devices: list[str]) -> None:
        self.summary["stage_devices"] = check_stage_devices(devices, len(self.parts))

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
        for i, (part, device) in enumerate(zip(self.parts, self.stage_devices, strict=True)):
            stage = self.artifacts[i] if device == LOCAL else self._remote_stage(i, device)
            outs = stage.run(*(env[name] for name in part["inputs"]))
            env.update(zip(part["outputs"], outs, strict=True))
        return [env[v.name] for v in self.graph.outputs]

    def _remote_stage(self, index: int, device: str) -> Any:
        if (index, device) not in self._remote:
            self._remote[(index, device)] = open_stage(self.artifacts[index], index, device)
        return self._remote[(index, device)]

    def run_pipelined(self, batches: list[tuple[np.ndarray, ...]], **kwargs: Any) -> list[list]:
        """Stream ``batches`` (one tuple of inputs each) through one worker process per part;
        outputs in order. See ``compiler.pipeline_run.run_pipelined`` for the options."""
        from compiler.pipeline_run import run_pipelined

        if self.path is None:
            raise BackendError("save the artifact first: pipeline workers load it from disk")
        outputs, stats = run_pipelined(self, batches, **kwargs)
        self.summary["pipeline"] = stats
        self.summary["pipeline_stages"] = [
            f"stage {i} ({part['target']}, {device}): {ms} ms/batch, {rate} batches/s"
            for i, (part, device, ms, rate) in enumerate(
                zip(
                    self.parts,
                    stats["stage_devices"],
                    stats["stage_ms_per_batch"],
                    stats["stage_batches_per_s"],
                    strict=True,
                )
            )
        ]
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
        devices, parts = _cut(graph, target, options.get("pipeline_stages"))
        # Before any part is compiled: a malformed address, or a remote stage no RPC server
        # can load, should not cost the compile.
        placed = check_stage_devices(
            options.get("stage_devices") or [LOCAL] * len(parts), len(parts)
        )
        for part, where in zip(parts, placed, strict=True):
            if where != LOCAL and devices[part.device].backend != "tvm":
                raise BackendError(
                    f"stage {part.index} is for {devices[part.device].name}; "
                    f"only TVM stages run on an RPC server ({where})"
                )
        backend_options = {k: v for k, v in options.items() if k not in OWN_OPTIONS}
        records, artifacts = [], []
        for part in parts:
            art, record = _compile_part(graph, part, devices[part.device], out_dir, backend_options)
            records.append(record)
            artifacts.append(art)
        layers, summary = _report(graph, parts, [devices[p.device].name for p in parts])
        if options.get("stage_cores"):
            summary["stage_cores"] = options["stage_cores"]
        if options.get("stage_devices"):
            summary["stage_devices"] = placed
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


def _cut(graph: Graph, target: Target, stages: Any) -> tuple[list[Target], list[Part]]:
    """The devices and the parts: placed across ``target.devices``, or ``stages`` stages of
    ``target``; either way each part must fit its device's memory (checked here, before any
    part is compiled)."""
    from compiler.target import load_target

    if target.devices:
        devices = [load_target(d) for d in target.devices]
        refused = _refusals(graph, target)
        parts = group_by_device(graph, place(graph, [set(r) for r in refused.values()]))
        check_fits(graph, parts, devices)
        return devices, parts
    if not stages:
        raise BackendError(f"target {target.name} names no devices and no pipeline_stages")
    count = int(stages)
    # Every stage runs on its own device of this target (its own process, core set or
    # server), so each must fit the memory the target file states.
    parts = cut_stages(
        graph,
        count,
        memory=[target.memory_bytes()] * count,
        devices=[f"{target.name} #{k}" for k in range(count)],
    )
    return [target], parts


def check_stage_devices(devices: Any, stages: int) -> list[str]:
    """One ``"local"`` or RPC address per stage; a wrong count or a malformed address is a
    typed error before any stage runs."""
    from backends.tvm.remote import parse_address

    if isinstance(devices, str):
        devices = devices.split(",")
    devices = [str(d).strip() for d in devices]
    if len(devices) != stages:
        raise BackendError(f"stage_devices lists {len(devices)} devices for {stages} stages")
    for device in devices:
        if device != LOCAL:
            parse_address(device)
    return devices


def open_stage(art: Artifact, index: int, device: str) -> Any:
    """Part ``index`` loaded where ``device`` says: the artifact itself, or on an RPC server
    (only artifacts with ``remote``, the TVM ones, can move)."""
    if device == LOCAL:
        return art
    remote = getattr(art, "remote", None)
    if remote is None:
        raise BackendError(
            f"stage {index} is a {art.backend} artifact for {art.target.name}; only TVM "
            f"stages run on an RPC server ({device})"
        )
    return remote(device)


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
        "memory_bytes": stage_bytes(graph, part.nodes),
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
            f"part{p.index}: {names[i]}, {len(p.nodes)} nodes, {int(p.cost)} MACs, "
            f"{stage_bytes(graph, p.nodes) / 2**20:.2f} MiB"
            for i, p in enumerate(parts)
        ],
        "boundaries": boundaries,
        "transfer_bytes": sum(int(b["bytes"]) for b in boundaries if b["from"] != "input"),
        "macs": sum(int(r.get("macs") or 0) for r in rows),
    }
    return rows, summary
