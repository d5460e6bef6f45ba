"""The one place the toolbox runs passes: with a target, calibration data and per-layer
quantization overrides. (How a pipeline receives its calibration data is the pass manager's
business; the tools go through here so that it is written once.)"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from compiler.ir.graph import Graph
from compiler.pass_manager import Pass, PassManager, PipelineResult
from compiler.target import Target


def run_passes(
    graph: Graph,
    passes: Sequence[Pass],
    target: Target,
    calibration_data: Any = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> PipelineResult:
    """Run ``passes`` on ``graph`` in place for ``target``."""
    from passes.quantize import calibration_context

    options = {"overrides": overrides} if overrides else {}
    needed = calibration_data is not None or options
    with calibration_context(calibration_data, **options) if needed else nullcontext():
        return PassManager(list(passes)).run(graph, target)


def compile_with(
    model: Any,
    target: Target,
    passes: Sequence[Pass],
    output_dir: str | Path,
    calibration_data: Any = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """``compiler.compile`` with per-layer quantization overrides (an Artifact)."""
    import compiler
    from passes.quantize import calibration_context

    with calibration_context(calibration_data, overrides=overrides or {}):
        pipeline: Any = list(passes)
        return compiler.compile(model, target, output_dir=output_dir, pipeline=pipeline)
