"""The one place the toolbox runs passes: with a target, calibration data and quantization
settings, in a ``PassContext`` as ``compile()`` builds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compiler.ir.graph import Graph
from compiler.pass_manager import Pass, PassManager, PipelineResult
from compiler.target import Target

#: The stages ``quantize`` runs as passes of their own (``passes.quantize.Quantize.stages``):
#: a record of any of them means the graph went through ``quantize``.
QUANTIZE_STAGES = ("calibrate", "quantize-rewrite", "bias-correct", "mixed-precision",
                   "quant-report")  # fmt: skip


def run_passes(
    graph: Graph, passes: Sequence[Pass], target: Target, calibration_data: Any = None
) -> PipelineResult:
    """Run ``passes`` on ``graph`` in place for ``target``."""
    from compiler.api import pass_context

    return PassManager(list(passes)).run(graph, pass_context(target, calibration_data))


def collapse_stages(
    records: Sequence[Mapping[str, Any]], before_quantize: bool = False
) -> str | None:
    """A pipeline spec from pass records: a run of quantize stages becomes the one
    ``quantize{...}`` (with calibrate's options) that ran them; None for no records.
    ``before_quantize``: only the passes before it (the structural ones)."""
    spec = []
    for r in records:
        name, options = str(r["name"]), str(r.get("options", ""))
        if name in ("calibrate", "quantize") and before_quantize:
            break
        if name == "calibrate":
            spec.append("quantize" + _spellable(options))
        elif name not in QUANTIZE_STAGES:
            spec.append(name + options)
    return ",".join(spec) or None


def _spellable(options: str) -> str:
    """The options without those pipeline text cannot spell (a dict of ``overrides``)."""
    if not options:
        return ""
    items, depth, start = [], 0, 1
    for i, c in enumerate(options[1:-1], start=1):
        depth += (c in "{[") - (c in "}]")
        if c == "," and depth == 0:
            items.append(options[start:i])
            start = i + 1
    items.append(options[start:-1])
    kept = [item for item in items if item and not item.startswith("overrides=")]
    return "{" + ",".join(kept) + "}" if kept else ""


def compile_with(
    model: Any,
    target: Target,
    pipeline: str | None,
    output_dir: str | Path,
    calibration_data: Any = None,
    quant: Mapping[str, Any] | None = None,
) -> Any:
    """``compiler.compile`` with QuantConfig field changes (an Artifact)."""
    import compiler

    return compiler.compile(model, target, calibration_data=calibration_data,
                            output_dir=output_dir, pipeline=pipeline, quant=quant)  # fmt: skip
