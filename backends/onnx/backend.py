"""The ONNX backend: writes ``model.onnx`` and runs it with onnxruntime (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.onnx.export import export_onnx, unsupported_nodes
from backends.onnx.rules_quant import required_opset
from compiler.backend import Artifact
from compiler.errors import BackendError, ToolchainUnavailable, Unsupported
from compiler.interpreter import check_inputs
from compiler.ir.graph import Graph
from compiler.report import layer_rows

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from compiler.target import Target

MODEL_FILE = "model.onnx"


def ort_session(
    model: onnx.ModelProto | str | Path, optimize: bool = True
) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session; ``optimize=False`` runs the graph exactly as written
    (no QDQ fusion into integer kernels), which is how tests pin down the file's meaning."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ToolchainUnavailable("onnxruntime", "pip install onnxruntime", str(e)) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(
    session: onnxruntime.InferenceSession, graph: Graph, inputs: tuple[Any, ...]
) -> list[np.ndarray]:
    """Run ``session`` on ``inputs`` checked and converted against ``graph``'s input types."""
    arrays = check_inputs(graph, inputs)
    feeds = {value.name: arr for value, arr in zip(graph.inputs, arrays, strict=True)}
    return [np.asarray(out) for out in session.run(None, feeds)]


class OnnxArtifact(Artifact):
    """``model.onnx`` in the artifact folder, run by onnxruntime on the CPU."""

    _session: Any = None

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.path is None or not (self.path / MODEL_FILE).is_file():
            raise BackendError(f"artifact {self.path} has no {MODEL_FILE}")
        if self._session is None:
            self._session = ort_session(self.path / MODEL_FILE)
        return run_onnx(self._session, self.graph, tuple(arrays))


class OnnxBackend:
    """Target ``onnx``: float graphs as plain ONNX, quantized graphs as QDQ ONNX.

    Options: ``opset`` (default: 17, or 21 where int16/int4 quantization needs it).
    """

    name = "onnx"

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        return unsupported_nodes(graph, required_opset(graph))

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> Artifact:
        opset = int(options.get("opset", required_opset(graph)))
        model = export_onnx(
            graph, out_dir / MODEL_FILE, opset=opset, metadata={"tapeout.target": target.name}
        )
        rows = onnx_layer_rows(graph, model)
        summary = {
            "onnx": MODEL_FILE,
            "opset": opset,
            "onnx_nodes": len(model.graph.node),
            "macs": sum(r["macs"] for r in rows),
            "params": sum(r["params"] for r in rows),
        }
        return OnnxArtifact(graph, target, out_dir, rows, summary)

    def load(self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]) -> Artifact:
        report = manifest.get("report", {})
        return OnnxArtifact(graph, target, path, report.get("layers"), report.get("summary"))


def onnx_layer_rows(graph: Graph, model: onnx.ModelProto) -> list[dict[str, Any]]:
    """The report rows, each with the ONNX ops its IR node became (``onnx`` column)."""
    import json

    props = {p.key: p.value for p in model.metadata_props}
    ops = {e["name"]: "+".join(e["onnx"]) for e in json.loads(props.get("tapeout.layers", "[]"))}
    rows = layer_rows(graph)
    for row in rows:
        row["onnx"] = ops.get(row["name"], "")
    return rows
