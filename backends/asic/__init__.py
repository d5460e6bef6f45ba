"""The ASIC flow: an int8 NPU (systolic array) driven by a host CPU, bring-your-own-codegen
style.

``AsicBackend.compile`` partitions the quantized graph (``backends.asic.partition``): int8
conv2d/dense layers the accelerator supports become calls into the accelerator runtime API
(``runtime/npu_runtime.h``; ``runtime/npu_runtime.c`` is its reference implementation and the
functional simulator), with power-of-two requantization folded into the NPU's output stage;
every other node becomes host C (``backends.asic.codegen``: generated calls into the
hand-written kernels of ``runtime/host_ops.c``, which follow the reference interpreter). The
artifact is a folder of C sources, headers and a Makefile; ``AsicArtifact.run`` builds it
with gcc and runs it through ctypes, bit-exact with the interpreter.

The report marks each layer ``npu`` or ``host``, gives the NPU's estimated cycles per layer
(weight-stationary array, see ``partition``) and the share of MACs offloaded.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.backend import Artifact
from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph
from compiler.ir.types import NUMPY_DTYPES
from compiler.report import layer_rows
from compiler.specialize import is_static

if TYPE_CHECKING:
    from compiler.target import Target

META_FILE = "asic.json"


class AsicArtifact(Artifact):
    """The generated C program, built and run on this machine (NPU simulated)."""

    def __init__(
        self, graph: Graph, target: Target, path: Path | None, layers: list, summary: dict[str, Any]
    ):
        super().__init__(graph, target, path, layers, summary)
        self._lib: tuple[Path, Any] | None = None
        self.last_stats: dict[str, int] = {}

    def _library(self) -> Any:
        from backends.asic.build import load_library

        if self.path is None:
            raise BackendError("the artifact has no folder with C sources")
        if self._lib is None or self._lib[0] != self.path:
            lib = load_library(self.path)
            if lib.tapeout_init() != 0:
                raise BackendError("tapeout_init failed: the NPU configuration was refused")
            self._lib = (self.path, lib)
        return self._lib[1]

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        lib = self._library()
        outs = [
            np.empty(tuple(int(d) for d in v.type.shape), NUMPY_DTYPES[v.dtype])
            for v in self.graph.outputs
        ]
        ins_p = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        outs_p = (ctypes.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        lib.npu_reset_stats()
        rc = lib.tapeout_run(ins_p, outs_p)
        if rc != 0:
            raise BackendError(f"tapeout_run failed with NPU error {rc}")
        stats = lib.npu_get_stats()
        self.last_stats = {k: int(getattr(stats, k)) for k in ("calls", "macs", "tiles", "cycles")}
        return outs


class AsicBackend:
    """Targets with an ``[asic]`` table (``target = "asic"``, npu-int8)."""

    name = "asic"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        from backends.asic.codegen import HOST_RULES
        from backends.asic.partition import offload_reason
        from compiler.rules import unsupported_nodes

        if target.asic is None:
            return [Unsupported("target", target.name, "no [asic] table")]
        items = [
            Unsupported("input", v.name, f"dtype {v.dtype}: inputs must be f32 or i8")
            for v in graph.inputs
            if v.dtype not in ("f32", "i8")
        ]
        if not is_static(graph):
            items.append(Unsupported("graph", graph.name, "symbolic shapes; give example inputs"))
        asic = target.asic
        return items + unsupported_nodes(
            graph,
            graph,
            HOST_RULES,
            "neither the NPU nor the host C kernels implement it",
            skip=lambda node: offload_reason(graph, node, asic) is None,
        )

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> Artifact:
        from backends.asic.build import generate, write_artifact
        from backends.asic.partition import partition

        if target.asic is None:
            raise BackendError(f"target {target.name} has no [asic] table")
        layers = partition(graph, target.asic)
        write_artifact(Path(out_dir), generate(graph, target, layers))
        rows, summary = report(graph, target, layers)
        (Path(out_dir) / META_FILE).write_text(json.dumps({"npu_layers": summary["npu_layers"]}))
        return AsicArtifact(graph, target, Path(out_dir), rows, summary)

    def load(self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]) -> Artifact:
        if not (Path(path) / "model.c").exists():
            raise BackendError(f"{path} has no model.c: not an ASIC artifact")
        rep = manifest.get("report", {})
        return AsicArtifact(
            graph, target, Path(path), rep.get("layers") or [], rep.get("summary") or {}
        )


def report(graph: Graph, target: Target, layers: dict[int, Any]) -> tuple[list, dict]:
    """Per-layer rows (unit, NPU tiles and cycles) and the totals."""
    asic = target.asic
    assert asic is not None
    by_name = {n.outputs[0].name: n for n in graph.nodes if n.outputs}
    rows = layer_rows(graph)
    total_macs = sum(r["macs"] for r in rows)
    npu_macs = npu_cycles = 0
    for row in rows:
        layer = layers.get(id(by_name[row["name"]]))
        row["unit"] = "npu" if layer is not None else "host"
        if layer is not None and layer.node is by_name[row["name"]]:
            row["npu_tiles"], row["npu_cycles"] = layer.tiles, layer.cycles
            npu_macs += layer.macs
            npu_cycles += layer.cycles
    names = sorted({layer.node.outputs[0].name for layer in layers.values()})
    summary = {
        "macs": total_macs,
        "params": sum(r["params"] for r in rows),
        "npu_layers": names,
        "npu_macs": npu_macs,
        "npu_mac_share": round(npu_macs / total_macs, 4) if total_macs else 0.0,
        "npu_cycles_est": npu_cycles,
        "npu_time_us_est": round(npu_cycles / asic.clock_mhz, 2),
        "array": f"{asic.array_rows}x{asic.array_cols} int8, {asic.sram_kib} KiB SRAM, "
        f"{asic.clock_mhz:g} MHz",
        "host_code": "generated C calling runtime/host_ops.c (not TVM: Relax has no C AOT "
        "executor in TVM 0.27)",
    }
    return rows, summary
