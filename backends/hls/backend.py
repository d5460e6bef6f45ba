"""The FPGA backend: a quantized graph in, a Vitis HLS project folder out.

``unsupported`` lists every node the rule table cannot lower (``backends.hls.rules``);
``compile`` lowers the graph to a ``Design``, picks reuse factors
(``backends.hls.reuse``), prints the firmware, testbench, golden data, Tcl, Makefile and
README, and returns an ``HlsArtifact`` that runs the design in C simulation.

Options (``compile(..., reuse_factor=4)`` or ``tapeout compile --option reuse_factor=4``) are
declared once, in ``compiler.backend.BACKEND_OPTIONS["hls"]`` (the README's option table is
generated from it). ``reuse_factor`` names layers by layer name, source location or IR value
name; ``port_layout="nhwc"`` keeps the kernels' order at the ports (the host converts),
``"nchw"`` converts in the top function at one element per cycle; ``fpga_arch="auto"`` picks
the dataflow design when the model fits on chip, else the weight-streaming engine
(``backends.hls.engine.choice``; the summary's ``arch_reason`` says why);
``max_utilization`` defaults to 1.0 (the whole part), though no engineer ships a design at
99 %: routing and timing closure need headroom.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.hls.artifact import HlsArtifact
from backends.hls.codegen import firmware_files
from backends.hls.engine import compile_engine
from backends.hls.engine import unsupported as engine_unsupported
from backends.hls.engine.artifact import EngineArtifact
from backends.hls.engine.choice import DATAFLOW_OPTIONS, pick_arch
from backends.hls.host import host_header, host_source, testbench_source
from backends.hls.plan import batch_one, build_design, unsupported
from backends.hls.project import (
    copy_kernels,
    layer_rows,
    project_files,
    random_inputs,
    summary,
    write_golden,
)
from backends.hls.resources import Model
from backends.hls.reuse import budget_of, choose, resolve_option
from compiler.backend import check_options
from compiler.errors import BackendError, Unsupported, UnsupportedOpsError
from compiler.ir.graph import Graph
from compiler.specialize import is_static

if TYPE_CHECKING:
    from compiler.target import Target

class HlsBackend:
    """Vitis HLS C++ for an FPGA target (``targets/zcu104.toml`` and friends)."""

    name = "hls"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        """The dataflow design's list when the engine cannot take the graph either (the
        architecture is chosen in ``compile``, which checks the chosen one again), with the
        engine's word added where it says what would make it take a node (``integer_ops``)."""
        missing = unsupported(graph, target)
        if not missing:
            return []
        engine_missing = engine_unsupported(batch_one(graph), target)
        if not engine_missing:
            return []
        hints = {(m.op, m.location): m.reason for m in engine_missing if "integer_ops" in m.reason}
        return [
            replace(m, reason=f"{m.reason}; the engine: {hints[m.op, m.location]}")
            if (m.op, m.location) in hints
            else m
            for m in missing
        ]

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> HlsArtifact:
        check_options(self.name, options, BackendError, multi=False)  # compiler.backend's table
        if target.fpga is None:
            raise BackendError(f"target {target.name} has no [fpga] table")
        graph = batch_one(graph)  # one sample per call: a symbolic batch becomes 1
        if not is_static(graph):
            raise BackendError("the HLS backend needs static shapes: pass example inputs")
        arch, reason = pick_arch(graph, target, options)
        if arch == "engine":
            return compile_engine(graph, target, Path(out_dir), options, reason)
        try:
            art = self._dataflow(graph, target, Path(out_dir), options)
        except BackendError as err:
            if not _may_fall_back(options) or "does not fit" not in str(err):
                raise
            why = f"the dataflow design does not fit: {err}"
            return compile_engine(graph, target, Path(out_dir), options, why)
        art.summary.update(fpga_arch="dataflow", arch_reason=reason)
        return art

    def _dataflow(
        self, graph: Graph, target: Target, out: Path, options: dict[str, Any]
    ) -> HlsArtifact:
        fpga = target.fpga
        assert fpga is not None
        missing = unsupported(graph, target)
        if missing:
            raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for {target.name}")
        layout = str(options.get("port_layout", "nhwc"))
        if layout not in ("nhwc", "nchw"):
            raise BackendError(f"port_layout must be 'nhwc' or 'nchw', got {layout!r}")
        design = build_design(graph, target, str(options.get("top") or graph.name), layout)
        packing = options.get("dsp_packing")
        model = Model.for_target(
            fpga.products_per_dsp, fpga.clock_mhz, int(packing) if packing is not None else None
        )
        fixed = resolve_option(design, options.get("reuse_factor", "auto"))
        budget = _ceiling(budget_of(fpga), options.get("max_utilization", 1.0))
        ev = choose(design, model, budget, fixed, f"{target.name} ({fpga.part})")
        files = {
            **firmware_files(design, ev.partition),
            "tb/host.h": host_header(design),
            "tb/host.cpp": host_source(design),
            f"tb/tb_{design.top}.cpp": testbench_source(design),
        }
        inputs = _tb_inputs(options, design)
        samples = write_golden(out, graph, inputs)
        rows = layer_rows(design, ev)
        totals = summary(design, ev, model, target, samples)
        files.update(project_files(design, target, rows, totals))
        for rel, text in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        copy_kernels(out)
        return HlsArtifact(graph, target, out, rows, totals)

    def load(
        self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]
    ) -> HlsArtifact:
        report = manifest.get("report", {})
        summary = report.get("summary") or {}
        cls = EngineArtifact if summary.get("fpga_arch") == "engine" else HlsArtifact
        return cls(graph, target, path, report.get("layers"), summary)


def _may_fall_back(options: dict[str, Any]) -> bool:
    """A dataflow design that does not fit may become the engine: unless the user chose the
    architecture or set options only the dataflow design reads."""
    return options.get("fpga_arch", "auto") == "auto" and not any(
        k in options for k in DATAFLOW_OPTIONS
    )


def _ceiling(budget: dict[str, int], share: Any) -> dict[str, int]:
    """The part's resources scaled to the ``max_utilization`` share."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise BackendError(f"max_utilization must be a number in (0, 1], got {share!r}")
    return {k: int(v * share) for k, v in budget.items()}


def _tb_inputs(options: dict[str, Any], design: Any) -> list[np.ndarray]:
    given = options.get("tb_inputs")
    if given is not None:
        arrays = [np.asarray(x) for x in (given if isinstance(given, list | tuple) else [given])]
        if len(arrays) != len(design.inputs):
            raise BackendError(
                f"tb_inputs has {len(arrays)} arrays for {len(design.inputs)} graph inputs"
            )
        return [a.astype(e.value.type.np_dtype) for a, e in zip(arrays, design.inputs, strict=True)]
    samples = int(options.get("tb_samples", 32))
    return random_inputs(design, samples)
