"""The TensorRT backend (``target="gpu"``, ``h100``, ``a100``, ``jetson-orin``).

``compile`` exports the graph to ONNX (QDQ for quantized graphs, as TensorRT's explicit
quantization wants), plans the build (``backends.tensorrt.plan``) and writes the deployable
bundle: ``model.onnx``, ``build_config.json``, ``build_engine.py`` (a real script, copied as
is) and ``trtexec.sh`` (the equivalent trtexec command line). With TensorRT and a GPU here
it then builds ``model.engine`` through ``build_engine.py`` and reads the engine inspector's
per-layer report (``layers.json``); without them it raises ``ToolchainUnavailable`` unless
the caller asked for the bundle only (``engine=False``, CLI ``--no-engine``).

Options: ``engine`` (default True), ``precision`` (fp32/fp16/int8; default from the graph
and target), ``float_precision`` (fp16/fp32: float islands of an int8 build), ``sparsity``
("auto"/True/False), ``workspace_mb``, ``shape_ranges`` ({symbol: (min, opt, max)}),
``dla_core``, ``timing_cache`` (path; default under ``$TAPEOUT_CACHE`` or
``~/.cache/tapeout``), ``opset`` (17..20), ``tf32``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.onnx.export import export_onnx, unsupported_nodes
from backends.tensorrt import build_engine
from backends.tensorrt.layers import layer_report
from backends.tensorrt.plan import (
    CACHE_FILE,
    CONFIG_FILE,
    ENGINE_FILE,
    LAYERS_FILE,
    ONNX_FILE,
    BuildPlan,
    make_plan,
)
from backends.tensorrt.runtime import EngineRunner, require_toolchain
from compiler.backend import Artifact
from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph, Node, Value

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SCRIPT_FILE = "build_engine.py"
TRTEXEC_FILE = "trtexec.sh"
OPSET = 17  # TensorRT 10.0 reads opsets 9..20
NOT_BUILT = (
    "engine=False: deployable bundle only; on the deployment machine run "
    "`python3 build_engine.py` (or `sh trtexec.sh`) in the artifact folder"
)


def trt_reasons(value: Value) -> list[str]:
    """Why TensorRT cannot take quantized tensor ``value`` (empty if it can)."""
    qp = value.type.quant
    if qp is None:
        return []
    reasons = []
    if value.dtype not in ("i8", "i32", "i64"):
        reasons.append(f"TensorRT quantizes to int8 only ({value.dtype} here)")
    if any(qp.zero_point):
        reasons.append("TensorRT takes symmetric quantization only (zero point 0)")
    if qp.group_size is not None:
        reasons.append("block-wise (int4w) weights are not supported by this backend")
    return reasons


def _node_reason(node: Node) -> str | None:
    """Why TensorRT cannot take a node the ONNX exporter writes: its quantized tensors."""
    reasons = {r for v in (*node.inputs, *node.outputs) for r in trt_reasons(v)}
    return "; ".join(sorted(reasons)) or None


class TensorRTArtifact(Artifact):
    """The bundle, and the engine where one was built; ``run`` executes the engine."""

    _runner: EngineRunner | None = None
    # build_engine.py writes these later, on the machine with the GPU.
    unverified_files = (ENGINE_FILE, LAYERS_FILE, CACHE_FILE)

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        folder = self.path
        if folder is None or not (folder / ENGINE_FILE).is_file():
            raise BackendError(
                f"artifact {folder} has no {ENGINE_FILE}: {NOT_BUILT}; then compiler.load it"
            )
        if self._runner is None:
            self._runner = EngineRunner(folder / ENGINE_FILE)
        config = json.loads((folder / CONFIG_FILE).read_text())
        feeds = {name: a for name, a in zip(config["inputs"], arrays, strict=True)}
        outs = self._runner.run(feeds)
        return [outs[name] for name in config["outputs"]]


class TensorRTBackend:
    name = "tensorrt"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        items = [
            Unsupported("input", value.name, "TensorRT inputs are not int8")
            for value in graph.inputs
            if value.type.quant is not None
        ]
        return unsupported_nodes(graph, OPSET, also=_node_reason) + items

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> Artifact:
        build = bool(options.get("engine", True))
        if build:
            require_toolchain()  # before any work: say what is missing
        plan = make_plan(graph, target, options)
        opset = int(options.get("opset", OPSET))
        model = export_onnx(
            graph,
            out_dir / ONNX_FILE,
            opset=opset,
            metadata={"tapeout.target": target.name, "tapeout.tensorrt": plan.config()},
            exact=False,
        )
        plan = dataclasses.replace(plan, outputs=tuple(o.name for o in model.graph.output))
        write_bundle(plan, out_dir)
        info = None
        summary: dict[str, Any] = {"engine_built": False, "not_built": NOT_BUILT}
        if build:
            result = self._build(plan, out_dir, options)
            layers = out_dir / LAYERS_FILE
            info = json.loads(layers.read_text()) if layers.is_file() else None
            summary = {"engine_built": True, "engine": ENGINE_FILE, **result}
        rows, mismatches = layer_report(graph, plan, info)
        summary.update(plan_summary(plan, opset))
        summary["precision_source"] = "engine inspector" if info is not None else "predicted"
        summary["precision_mismatches"] = mismatches
        return TensorRTArtifact(graph, target, out_dir, rows, summary)

    def _build(self, plan: BuildPlan, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        cache = Path(options.get("timing_cache") or default_timing_cache(plan))
        config = build_engine.load_config(out_dir / CONFIG_FILE)
        config["timing_cache"] = str(cache)
        try:
            result = build_engine.build(config)
        except RuntimeError as e:
            raise BackendError(f"TensorRT build failed: {e}") from e
        if cache.is_file():
            shutil.copyfile(cache, out_dir / CACHE_FILE)
        return {
            "tensorrt": result["tensorrt"],
            "engine_bytes": result["engine_bytes"],
            "build_s": result["build_s"],
            "timing_cache": str(cache),
            "build_notes": result["notes"],
        }

    def load(self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]) -> Artifact:
        report = manifest.get("report", {})
        return TensorRTArtifact(graph, target, path, report.get("layers"), report.get("summary"))


def default_timing_cache(plan: BuildPlan) -> Path:
    """A timing cache kept across compiles: per target, under the user's cache folder."""
    from compiler.cache import cache_root

    return cache_root() / "tensorrt" / f"{plan.target}-sm{plan.compute_capability}.timing.cache"


def write_bundle(plan: BuildPlan, folder: Path) -> None:
    """build_config.json, build_engine.py and trtexec.sh next to model.onnx."""
    (folder / CONFIG_FILE).write_text(json.dumps(plan.config(), indent=2) + "\n")
    shutil.copyfile(HERE / SCRIPT_FILE, folder / SCRIPT_FILE)
    (folder / TRTEXEC_FILE).write_text(trtexec_script(plan))
    (folder / TRTEXEC_FILE).chmod(0o755)


def trtexec_script(plan: BuildPlan) -> str:
    template = Template((HERE / "trtexec.sh.tmpl").read_text())
    return template.substitute(
        target=plan.target,
        compute_capability=plan.compute_capability,
        precision=plan.precision,
        flags=", ".join(plan.precisions) or "none",
        workspace_mb=plan.workspace_mb,
        sparse="yes" if plan.sparse_weights else "no",
        dynamic=", ".join(plan.profiles) or "none",
        command=plan.trtexec_command(),
    )


def plan_summary(plan: BuildPlan, opset: int) -> dict[str, Any]:
    return {
        "onnx": ONNX_FILE,
        "opset": opset,
        "precision": plan.precision,
        "builder_flags": list(plan.precisions),
        "sparse_weights": plan.sparse_weights,
        "sparse_layers": len(plan.sparse_layers),
        "workspace_mb": plan.workspace_mb,
        "dynamic_inputs": list(plan.profiles),
        "dla_core": plan.dla_core,
        "trtexec": plan.trtexec_command(),
    }
