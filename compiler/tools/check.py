"""``tapeout check``: a pre-flight report per target, in seconds, before any calibration.

For each target the model goes through the target's structural passes (everything before
``quantize``); a quantizing pipeline then gets a *dry* quantization: the same plan and the
same integer rewrite as the real pass, with a placeholder range of [-1, 1] for every
activation instead of calibrated ones, so the backend sees the integer graph it will get,
while nothing runs the model. The backend then lists every node it cannot take, with the
reason and location, and the report adds estimated costs: MACs, parameters, weight bytes, peak
activation memory, and the target's own figures (FPGA DSP/BRAM18K/LUT/FF and latency at the
default reuse factor; a CPU's compute-bound latency from its peak GFLOP/s; an NPU's from its
array size and clock). Every figure is an estimate from a model, not a measurement.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.errors import TapeoutError, Unsupported
from compiler.ir.graph import Graph
from compiler.ir.op_facts import node_macs
from compiler.pass_manager import Pass
from compiler.report import format_table
from compiler.target import Target, load_target
from compiler.tools.passes_run import run_passes

log = logging.getLogger(__name__)

#: Passes that need calibration data or run the model: replaced by a dry run, or skipped.
DATA_PASSES = ("quantize",)


@dataclass
class TargetCheck:
    """What one target would make of the model."""

    target: str
    backend: str
    unsupported: list[Unsupported] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    partition: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "backend": self.backend,
            "ok": self.ok,
            "unsupported": [
                {"op": u.op, "location": u.location, "reason": u.reason} for u in self.unsupported
            ],
            "partition": self.partition,
            "cost": self.cost,
            "estimate": self.estimate,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class CheckReport:
    """``check``'s result: one ``TargetCheck`` per target, and the import time."""

    model: str
    targets: list[TargetCheck]
    import_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "all_supported": self.ok,
            "import_seconds": round(self.import_seconds, 3),
            "targets": [t.to_json() for t in self.targets],
        }

    def format(self) -> str:
        lines = [f"tapeout check: {self.model} (imported in {self.import_seconds:.2f} s)"]
        lines.append("costs and latencies are estimates from models, not measurements")
        for t in self.targets:
            verdict = "ok" if t.ok else f"{len(t.unsupported)} unsupported node(s)"
            lines += ["", f"== {t.target} (backend {t.backend}): {verdict} [{t.seconds:.2f} s]"]
            for u in t.unsupported:
                lines.append(f"  {u.op} at {u.location}: {u.reason}")
            if t.partition:
                lines.append("  partition: " + _pairs(t.partition))
            lines.append("  cost: " + _pairs(t.cost))
            if t.estimate:
                lines.append("  estimate: " + _pairs(t.estimate))
            lines += [f"  note: {n}" for n in t.notes]
        return "\n".join(lines)


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in d.items())


def check(
    model: Any, targets: Sequence[str], example_inputs: Sequence[Any] | None = None
) -> CheckReport:
    """The pre-flight report of ``model`` for each of ``targets`` (see the module docstring)."""
    from compiler.api import import_model, to_numpy
    from compiler.specialize import is_static, specialize_from_inputs

    start = time.perf_counter()
    graph = import_model(model, example_inputs)
    if example_inputs is not None and not is_static(graph):
        specialize_from_inputs(graph, [to_numpy(x) for x in example_inputs])
    report = CheckReport(str(getattr(model, "name", model)), [], time.perf_counter() - start)
    for name in targets:
        report.targets.append(check_target(graph, load_target(name)))
    return report


def check_target(imported: Graph, target: Target) -> TargetCheck:
    """One target's pre-flight check on a copy of the imported graph."""
    from compiler.api import plan_pipeline
    from compiler.backend import get_backend

    start = time.perf_counter()
    result = TargetCheck(target.name, target.backend)
    graph = imported.copy()
    passes = plan_pipeline(target, None)
    structural = [p for p in passes if p.name not in DATA_PASSES]
    run_passes(graph, structural, target)
    quantize = next((p for p in passes if p.name == "quantize"), None)
    if quantize is not None:
        result.notes.append(dry_quantize(graph, target, quantize))
    result.unsupported = get_backend(target.backend).unsupported(graph, target)
    result.cost = graph_cost(graph)
    result.partition = _partition(graph, result.unsupported)
    estimator = ESTIMATORS.get(target.backend)
    if estimator is not None:
        try:
            result.estimate = estimator(graph, target, result)
        except TapeoutError as e:
            result.notes.append(f"no estimate: {e}")
    result.seconds = time.perf_counter() - start
    return result


def dry_quantize(graph: Graph, target: Target, quantize: Pass) -> str:
    """Rewrite ``graph`` into its integer form with placeholder ranges (no calibration)."""
    from compiler.quant_config import QuantConfig
    from passes.quant.driver import options_for, replace_contents
    from passes.quant.plan import assign_scales, build_plan, needs_scale
    from passes.quant.rewrite import quantized_graph
    from passes.quant.stats import TensorStats

    config = getattr(quantize, "config", None) or QuantConfig()
    if not config.integer:
        return f"{config.precision}: checked as float (weight-only or float precision)"
    if config.precision == "mixed":  # which layers widen needs the data: check at int8
        config = dataclasses.replace(config, precision="int8")
    work = graph.copy()
    plan = build_plan(work, options_for(config, target))
    stats: dict[str, TensorStats] = {}
    for name in needs_scale(plan):
        stats[name] = TensorStats(name)
        stats[name].add(np.array([-1.0, 1.0], np.float32))
    assign_scales(plan, stats)
    replace_contents(graph, quantized_graph(work, plan))
    return f"{config.precision}: checked on a dry quantization ({len(plan.layers)} integer layers)"


def _value_bytes(value: Any) -> int:
    t = value.type
    bits = 4 if t.dtype in ("i4", "u4") else 8 * np.dtype(t.np_dtype).itemsize
    return (_count(t.shape) * bits + 7) // 8


def _count(shape: tuple[Any, ...]) -> int:
    return math.prod(d if isinstance(d, int) else 1 for d in shape)


def graph_cost(graph: Graph) -> dict[str, Any]:
    """MACs, parameters, weight bytes and peak live activation bytes (topological order)."""
    nodes = graph.compute_nodes()
    consts = [n.outputs[0] for n in graph.nodes if n.op == "const"]
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for v in node.inputs:
            last_use[v.name] = i
    live = {v.name: _value_bytes(v) for v in graph.inputs}
    peak = sum(live.values())
    outputs = {v.name for v in graph.outputs}
    for i, node in enumerate(nodes):
        live.update({v.name: _value_bytes(v) for v in node.outputs})
        peak = max(peak, sum(live.values()))
        for v in node.inputs:
            if last_use.get(v.name) == i and v.name not in outputs:
                live.pop(v.name, None)
    return {
        "macs": sum(node_macs(n) for n in nodes),
        "params": sum(_count(v.type.shape) for v in consts),
        "weight_bytes": sum(_value_bytes(v) for v in consts),
        "peak_activation_bytes": peak,
        "nodes": len(nodes),
    }


def _partition(graph: Graph, unsupported: list[Unsupported]) -> dict[str, Any]:
    """How much of the model would have to run elsewhere (on a host) for this target."""
    if not unsupported:
        return {}
    where = {u.location for u in unsupported}
    nodes = graph.compute_nodes()
    off = [n for n in nodes if (n.loc or n.name) in where or n.name in where]
    total = sum(node_macs(n) for n in nodes) or 1
    return {
        "nodes_elsewhere": len(off),
        "nodes_on_target": len(nodes) - len(off),
        "macs_elsewhere_pct": round(100.0 * sum(node_macs(n) for n in off) / total, 1),
    }


def _fpga_estimate(graph: Graph, target: Target, result: TargetCheck) -> dict[str, Any]:
    from backends.hls.plan import batch_one, build_design
    from backends.hls.resources import Model
    from backends.hls.reuse import budget_of, candidates, evaluate

    fpga = target.fpga
    if fpga is None or result.unsupported:
        return {}
    design = build_design(batch_one(graph), target, graph.name)
    for layer in design.layers:
        if layer.tunable:
            layer.rf = max(c for c in candidates(layer) if c <= max(1, fpga.default_reuse_factor))
    ev = evaluate(design, Model.for_target(fpga.products_per_dsp, fpga.clock_mhz, None))
    budget = budget_of(fpga)
    out: dict[str, Any] = {"reuse_factor": fpga.default_reuse_factor}
    budget["ff"] = int(fpga.ff)
    for key in ("dsp", "bram18k", "lut", "ff"):
        used = int(getattr(ev.total, key))
        out[key] = used
        out[f"{key}_pct"] = f"{100.0 * used / max(budget[key], 1):.1f}%"
    out["latency_us"] = float(f"{ev.latency / fpga.clock_mhz:.3g}")
    over = [k.upper() for k in ("dsp", "bram18k", "lut") if getattr(ev.total, k) > budget[k]]
    if over:
        result.notes.append(
            f"at reuse factor {fpga.default_reuse_factor} the dataflow design exceeds the part's "
            f"{', '.join(over)}; compile raises the reuse factors to fit, or fails naming the "
            "shortfall"
        )
    return out


def _cpu_estimate(graph: Graph, target: Target, result: TargetCheck) -> dict[str, Any]:
    cpu = target.cpu
    if cpu is None or not cpu.peak_gflops_fp32:
        return {}
    flops = 2.0 * result.cost["macs"]
    return {
        "peak_gflops_fp32": cpu.peak_gflops_fp32,
        "compute_bound_latency_us": float(f"{flops / (cpu.peak_gflops_fp32 * 1e9) * 1e6:.3g}"),
    }


def _asic_estimate(graph: Graph, target: Target, result: TargetCheck) -> dict[str, Any]:
    asic = target.asic
    if asic is None:
        return {}
    per_cycle = asic.array_rows * asic.array_cols
    cycles = result.cost["macs"] / per_cycle
    return {
        "macs_per_cycle": per_cycle,
        "compute_bound_latency_us": float(f"{cycles / asic.clock_mhz:.3g}"),
    }


#: backend -> the target-specific estimate it gets.
ESTIMATORS: dict[str, Callable[[Graph, Target, TargetCheck], dict[str, Any]]] = {
    "hls": _fpga_estimate,
    "tvm": _cpu_estimate,
    "asic": _asic_estimate,
}


def format_rows(report: CheckReport) -> str:
    """A one-line-per-target summary table."""
    rows = [
        {
            "target": t.target,
            "backend": t.backend,
            "unsupported": len(t.unsupported),
            "macs": t.cost.get("macs", 0),
            "weight_bytes": t.cost.get("weight_bytes", 0),
            "seconds": round(t.seconds, 2),
        }
        for t in report.targets
    ]
    return format_table(rows)
