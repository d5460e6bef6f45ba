"""``tapeout export``: the lowered graph for a target as ONNX, QDQ where it is quantized.

The source is an artifact (its graph is exported as compiled: same scales, same integer
layers), a stage, or a model, which then goes through the target's pipeline; a pipeline that
quantizes needs calibration data (``--calib``) and fails without it rather than writing float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler.errors import CalibrationError


def export(
    source: Any,
    output: str | Path,
    target: str = "onnx",
    *,
    pipeline: str | None = None,
    calibration_data: Any = None,
    fmt: str = "onnx",
) -> dict[str, Any]:
    """Write ``source`` lowered for ``target`` to ``output``; returns what was written."""
    from backends.onnx import export_onnx
    from compiler.api import import_model, plan_pipeline, remaining_passes
    from compiler.errors import TapeoutError
    from compiler.target import load_target
    from compiler.tools.passes_run import run_passes

    if fmt != "onnx":
        raise TapeoutError(f"unknown export format {fmt!r}; known: onnx")
    path = Path(str(source))
    if path.is_dir() and (path / "manifest.json").is_file():
        import compiler

        art = compiler.load(path)
        graph, tgt = art.graph, art.target
    else:
        tgt = load_target(target)
        graph = import_model(source)
        passes = remaining_passes(plan_pipeline(tgt, pipeline), source)
        if calibration_data is None and any(p.name == "quantize" for p in passes):
            raise CalibrationError(
                f"the pipeline for target {tgt.name} quantizes: pass calibration data "
                "(--calib calib.npz), or export a compiled artifact or a quantized stage"
            )
        run_passes(graph, passes, tgt, calibration_data)
    quantized = any(n.op.startswith("q.") for n in graph.nodes)
    # onnxruntime-exact tie breaking is for checking against the interpreter; TensorRT gets
    # the plain Q/DQ form it expects.
    export_onnx(graph, output, exact=tgt.backend != "tensorrt")
    return {"output": str(output), "target": tgt.name, "quantized": quantized, "qdq": quantized}
