"""``tapeout debug``: where a compiled model loses accuracy, and the fix, compared like with like.

The float reference is the float model after the *same structural passes* the artifact went
through (the target's pipeline before ``quantize``): a fused conv there computes conv + bias +
batch norm + activation, exactly what the quantized conv and its requantize stand for, so each
quantized value is compared with the float value it replaces (matched by source location, which
every pass keeps). Fusions record the provenance of what they absorb (``Node.fused``, printed
``fused("/bn1/BatchNormalization", "/Relu")``); the layer table names the imported value each
compared value stands for.

The stages are bisected on the outputs: imported -> fused (structural passes; float, should be
near exact), fused -> quantized (the artifact's graph in the reference interpreter), quantized
-> backend (the artifact itself; integer backends are bit-exact). The report names the first
stage whose output SQNR falls below the threshold, the first layer below it and the layer that
loses the most, and proposes a fix: that layer at 16 bits, or left float. ``fix=True``
recompiles with the fix (into a new folder beside the artifact) and reports the new figures.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.debug import DivergenceReport, find_divergence, sqnr_db
from compiler.errors import TapeoutError
from compiler.interpreter import interpret
from compiler.ir.graph import Graph
from compiler.report import format_table
from compiler.tools.passes_run import collapse_stages, compile_with, run_passes

log = logging.getLogger(__name__)

#: Summary figures shown before and after a fix, where the backend reports them.
FIGURES = ("dsp", "lut", "ff", "bram18k", "latency_cycles", "latency_ns", "macs", "params")


@dataclass
class DebugReport:
    """Stages, layers, the verdict and the proposed (or applied) fix."""

    stages: list[dict[str, Any]]
    layers: DivergenceReport
    threshold_db: float
    fix: dict[str, Any] | None = None
    fixed: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def first_stage(self) -> dict[str, Any] | None:
        return next((s for s in self.stages if s["sqnr_db"] < self.threshold_db), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold_db": self.threshold_db,
            "stages": self.stages,
            "first_stage_below": self.first_stage,
            "layers": self.layers.rows,
            "first_layer_below": self.layers.first_below,
            "worst_layer": self.layers.worst_loss,
            "fix": self.fix,
            "fixed": self.fixed,
            "notes": self.notes,
        }

    def format(self) -> str:
        def db(v: float) -> str:
            return f"{v:.1f} dB" if math.isfinite(v) else ("exact" if v > 0 else "-inf dB")

        stage_rows = [{**s, "sqnr_db": db(s["sqnr_db"])} for s in self.stages]
        lines = ["stages (output SQNR of each stage against the one before):"]
        lines += ["  " + ln for ln in format_table(stage_rows).splitlines()]
        first = self.first_stage
        lines.append(
            f"first stage below {self.threshold_db} dB: " + (first["stage"] if first else "none")
        )
        lines += ["", "layers (quantized against the fused float graph, like with like):"]
        lines += ["  " + ln for ln in self.layers.format().splitlines()]
        if self.fix:
            lines += ["", f"proposed fix: {self.fix['description']}"]
        if self.fixed:
            lines.append(
                f"applied: {self.fixed['applied']} -> {self.fixed['artifact']}: output SQNR "
                f"{db(self.fixed['output_sqnr_db'])} (was {db(self.fixed['before_sqnr_db'])})"
            )
            lines += [f"  {k}: {a} -> {b}" for k, (a, b) in self.fixed["figures"].items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _structural(art: Any) -> list[Any]:
    """The artifact's own passes before quantization (the fused float reference's)."""
    from compiler.api import plan_pipeline

    spec = collapse_stages(art.passes, before_quantize=True)
    if spec is None and art.passes:  # quantization came first: no structural pass
        return []
    passes = plan_pipeline(art.target, spec)
    names = [p.name for p in passes]
    return passes[: names.index("quantize")] if "quantize" in names else passes


def provenance(graph: Graph) -> dict[str, str]:
    """Location -> the imported location whose value the node there stands for: the last
    node a fusion folded into it (``Node.fused``), else itself."""
    return {n.loc: n.fused[-1] for n in graph.nodes if n.loc and n.fused}


def _is_quantized(graph: Graph) -> bool:
    return any(n.op.startswith("q.") for n in graph.nodes)


def _outputs_sqnr(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    return min(
        (
            sqnr_db(r, np.asarray(g, np.float64).reshape(np.shape(r)))
            for r, g in zip(ref, got, strict=True)
        ),
        default=math.inf,
    )


def debug(
    artifact: str | Path,
    model: Any,
    inputs: list[np.ndarray],
    threshold_db: float = 20.0,
    *,
    fix: bool = False,
    calibration_data: Any = None,
    fix_output: str | Path | None = None,
) -> DebugReport:
    """Bisect ``artifact`` against float ``model`` on ``inputs``; see the module docstring."""
    import compiler

    art = compiler.load(artifact)
    imported = compiler.import_model(model)
    fused = imported.copy()
    # The float form the quantizer itself read: the recorded passes before it ran in their
    # integer form (fuse-bias-act{integer=true}), which the records spell.
    run_passes(fused, _structural(art), art.target)
    stages, outs = _bisect(art, imported, fused, inputs)
    layers = find_divergence(fused, art.graph, inputs, threshold_db=threshold_db)
    stands_for = provenance(fused)
    for row in layers.rows:
        row["stands_for"] = stands_for.get(row["loc"], row["loc"])
    report = DebugReport(stages, layers, threshold_db)
    _propose(report)
    if fix and report.fix is not None:
        report.fixed = apply_fix(art, model, report.fix, inputs, calibration_data, fix_output)
        report.fixed["before_sqnr_db"] = _outputs_sqnr(outs["imported"], outs["quantized"])
    return report


def _bisect(
    art: Any, imported: Graph, fused: Graph, inputs: list[np.ndarray]
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Output SQNR of each stage against the one before, and each stage's outputs."""
    outs = {
        "imported": interpret(imported, *inputs),
        "fused": interpret(fused, *inputs),
        "quantized": interpret(art.graph, *inputs),
    }
    stages = [
        {"stage": "imported -> fused", "sqnr_db": _outputs_sqnr(outs["imported"], outs["fused"])},
        {"stage": "fused -> quantized", "sqnr_db": _outputs_sqnr(outs["fused"], outs["quantized"])},
    ]
    try:
        backend = art.run(*inputs)
    except TapeoutError as e:  # no toolchain here: the backend stage is left out, and said so
        log.warning("cannot run the artifact here: %s", e)
        return stages, outs
    stages.append({"stage": f"quantized -> backend ({art.backend})",
                   "sqnr_db": _outputs_sqnr(outs["quantized"], backend)})  # fmt: skip
    return stages, outs


def _propose(report: DebugReport) -> None:
    """The fix for the layer that loses the most, when some stage or layer is too low."""
    worst = report.layers.worst_loss
    if report.first_stage is None and report.layers.first_below is None:
        report.notes.append(
            f"every stage and layer is above {report.threshold_db} dB: no fix needed"
        )
    elif worst is not None and worst["loss_db"] > 0:
        loc = worst["loc"]
        report.fix = {
            "layer": loc,
            "override": {loc: {"precision": "int16"}},
            "description": f"{loc} at 16 bits (or left float: quantize{{exclude=[{loc}]}})",
        }


def _quant_config(spec: str | None, target: Any) -> Any:
    """The QuantConfig the pipeline's quantize pass runs with."""
    from compiler.api import plan_pipeline
    from compiler.quant_config import QuantConfig

    quantize = next((p for p in plan_pipeline(target, spec) if p.name == "quantize"), None)
    return getattr(quantize, "config", None) or QuantConfig()


def apply_fix(
    art: Any,
    model: Any,
    proposal: dict[str, Any],
    inputs: list[np.ndarray],
    calibration_data: Any,
    output: str | Path | None,
) -> dict[str, Any]:
    """Recompile ``model`` with the layer at 16 bits (left float where 16 bits fails)."""
    import compiler

    if calibration_data is None:
        log.warning("debug --fix: no --calib given; calibrating on the debug inputs")
        calibration_data = inputs
    dest = Path(output) if output else Path(str(art.path).rstrip("/") + "-fixed")
    layer = proposal["layer"]
    # The artifact's own pipeline, options included; the fix changes its QuantConfig.
    spec = collapse_stages(art.passes)
    config = _quant_config(spec, art.target)
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("16 bits", {"overrides": {**config.overrides, **proposal["override"]}}),
        ("left float", {"exclude": (*config.exclude, layer)}),
    ]
    error: Exception | None = None
    for how, changes in attempts:
        try:
            new = compile_with(model, art.target, spec, dest, calibration_data, changes)
        except TapeoutError as e:
            error = e
            log.warning("fix %s failed: %s", how, e)
            continue
        ref = interpret(compiler.import_model(model), *inputs)
        figures = {
            k: (art.summary[k], new.summary[k])
            for k in FIGURES
            if k in art.summary and k in new.summary
        }
        return {"artifact": str(dest), "applied": f"{layer} {how}", "figures": figures,
                "output_sqnr_db": _outputs_sqnr(ref, new.run(*inputs))}  # fmt: skip
    raise TapeoutError(f"no fix for {layer} compiled: {error}")
