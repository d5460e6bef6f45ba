"""Compiling a quantized graph for the weight-streaming engine.

``compile_engine`` checks the board first (its DDR must hold the model, the engine must fit
the part), lowers the graph to steps (``lower``/``rules``), tiles them for the buffers
(``tiling``), prices them (``cost``), packs the DDR images (``schedule``), computes golden
outputs with the reference interpreter for the testbench, and writes the project.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from backends.hls.engine.artifact import EngineArtifact, to_memory
from backends.hls.engine.config import (
    EngineConfig,
    engine_config,
    fit_problems,
    largest_fitting,
    resources,
)
from backends.hls.engine.cost import bytes_per_cycle, step_cost, summarize
from backends.hls.engine.lower import (
    EngineLowering,
    lower_graph,
    output_table,
    shape_of,
    unsupported,
)
from backends.hls.engine.project import write_golden, write_images, write_io, write_project
from backends.hls.engine.schedule import pack
from backends.hls.engine.tiling import tile_all
from compiler import numerics
from compiler.errors import BackendError, UnsupportedOpsError
from compiler.interpreter import interpret
from compiler.ir.graph import Graph


def model_bytes(graph: Graph) -> int:
    """Bytes the model needs in DDR: every constant and every computed tensor, 1 per i8."""
    consts = sum(int(np.asarray(c).nbytes) for c in graph.constants.values())
    acts = sum(
        math.prod(int(d) for d in v.type.shape) * max(1, v.type.np_dtype.itemsize)
        for node in graph.nodes
        for v in node.outputs
        if node.op != "const" and all(isinstance(d, int) for d in v.type.shape)
    )
    return consts + acts


def check_board(graph: Graph, target: Any) -> None:
    """Refuse up front what the board cannot hold or feed."""
    fpga = target.fpga
    if not fpga.ddr_mb or not fpga.ddr_gbps:
        raise BackendError(
            f"target {target.name} does not say its DDR (ddr_mb, ddr_gbps in [fpga]): the "
            "engine streams weights from DDR"
        )
    need = model_bytes(graph)
    have = int(fpga.ddr_mb) * 2**20
    if need > have:
        raise BackendError(
            f"graph @{graph.name} needs {need / 2**20:.1f} MiB of DDR (weights and activations) "
            f"but {target.name} has {fpga.ddr_mb} MiB"
        )


def _config(options: dict[str, Any], target: Any, pow2: bool) -> EngineConfig:
    """The engine asked for, or the largest standard size that fits the part."""
    if options.get("engine") in (None, False):
        best = largest_fitting(target.fpga, pow2)
        if best is not None:
            return best
    cfg = engine_config(options.get("engine"), target.fpga)
    problems = fit_problems(cfg, target.fpga, pow2)
    if problems:
        raise BackendError(
            f"engine {cfg.name} does not fit {target.name} ({target.fpga.part}): "
            f"{'; '.join(problems)}; choose a smaller one (engine='B1024', ...)"
        )
    return cfg


def _io(graph: Graph, low: EngineLowering) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    inputs = []
    for value, t in low.inputs:
        qp = t.value.type.quant if value is not t.value else None
        inputs.append(
            {
                "name": value.name,
                "offset": t.offset,
                "shape": list(shape_of(value)),
                "scale": None if qp is None else float(qp.scale[0]),
                "zero_point": 0 if qp is None else int(qp.zero_point[0]),
            }
        )
    outputs = []
    for i, value in enumerate(graph.outputs):
        src, table = output_table(graph, value, low)
        t = low.tensor(src)
        if t.perm is not None:
            arrays[f"perm_{i}"] = t.perm.astype(np.int64)
        if table is not None:
            arrays[f"table_{i}"] = table
        outputs.append(
            {
                "name": value.name,
                "source": src.name,
                "index": i,
                "offset": t.offset,
                "shape": list(shape_of(src)),
            }
        )
    io = {
        "arena": low.arena,
        "layers": len(low.steps),
        "inputs": inputs,
        "outputs": outputs,
        "layer_names": [s.name for s in low.steps],
    }
    return io, arrays


def _golden(
    graph: Graph, io: dict[str, Any], arrays: dict[str, np.ndarray], inputs: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Testbench data: inputs in the engine's memory order, the interpreter's i8 outputs in
    the engine's memory order (``perm``) too."""
    probe = graph.copy()
    by_name = {v.name: v for n in probe.nodes for v in n.outputs} | {
        v.name: v for v in probe.inputs
    }
    probe.outputs = [by_name[o["source"]] for o in io["outputs"]]
    tb_in: list[list[np.ndarray]] = [[np.zeros(0, np.int8)] for _ in io["inputs"]]
    tb_out: list[list[np.ndarray]] = [[np.zeros(0, np.int8)] for _ in io["outputs"]]
    for s in range(len(inputs[0])):
        sample = [x[s : s + 1] for x in inputs]
        for i, spec in enumerate(io["inputs"]):
            q = (
                sample[i]
                if spec["scale"] is None
                else numerics.quantize(sample[i], float(spec["scale"]), spec["zero_point"], "i8")
            )
            tb_in[i].append(to_memory(q, tuple(spec["shape"])))
        for i, y in enumerate(interpret(probe, *sample)):
            flat = np.asarray(y).reshape(-1)
            perm = arrays.get(f"perm_{i}")
            tb_out[i].append(flat if perm is None else flat[perm])
    return [np.concatenate(a) for a in tb_in], [np.concatenate(a) for a in tb_out]


def _tb_inputs(graph: Graph, options: dict[str, Any], io: dict[str, Any]) -> list[np.ndarray]:
    given = options.get("tb_inputs")
    if given is not None:
        arrays = [np.asarray(x) for x in (given if isinstance(given, list | tuple) else [given])]
        return [a.astype(v.type.np_dtype) for a, v in zip(arrays, graph.inputs, strict=True)]
    rng = np.random.default_rng(0)
    samples = int(options.get("tb_samples", 2))
    out = []
    for spec, value in zip(io["inputs"], graph.inputs, strict=True):
        shape = (samples, *spec["shape"][1:])
        scale = spec["scale"] or 1.0
        out.append((rng.normal(size=shape) * 48 * scale).astype(value.type.np_dtype))
    return out


def compile_engine(
    graph: Graph, target: Any, out: Path, options: dict[str, Any], reason: str
) -> EngineArtifact:
    """The engine artifact for ``graph`` in ``out`` (``reason``: why the engine was chosen)."""
    check_board(graph, target)
    pow2 = bool(target.numerics.power_of_two_scales)
    cfg = _config(options, target, pow2)
    missing = unsupported(graph, target)
    if missing:
        raise UnsupportedOpsError(
            missing, what=f"graph @{graph.name} on the engine for {target.name}"
        )
    low = lower_graph(graph, target)
    tile_all(low.steps, cfg)
    images = pack(low.steps)
    clock = float(options.get("engine_clock_mhz") or target.fpga.clock_mhz)
    costs = [step_cost(s, cfg, target.fpga.ddr_gbps, clock) for s in low.steps]
    io, arrays = _io(graph, low)
    summary = _summary(graph, target, cfg, costs, clock, reason, images, low)
    rows = [_row(s, c) for s, c in zip(low.steps, costs, strict=True)]
    write_images(out, low.steps, images)
    write_io(out, io, arrays)
    samples = _tb_inputs(graph, options, io)
    tb_in, tb_out = _golden(graph, io, arrays, samples)
    write_golden(out, tb_in, tb_out)
    write_project(out, cfg, target, io, len(samples[0]), summary)
    return EngineArtifact(graph, target, out, rows, summary)


def _row(step: Any, cost: Any) -> dict[str, Any]:
    tiles = f"{step.get('T_OH')}x{step.get('T_OC')}x{step.get('T_IC')}" if step.op == "conv" else ""
    return {
        "name": step.name,
        "op": step.kind,
        "loc": step.loc,
        "macs": step.macs,
        "tile": tiles,
        "compute_cycles": cost.compute_cycles,
        "memory_cycles": cost.memory_cycles,
        "cycles": cost.cycles,
        "bound": cost.bound,
        "efficiency": round(cost.efficiency, 3),
        "ddr_kb": round(cost.ddr_bytes / 1024, 1),
    }


def _summary(
    graph: Graph,
    target: Any,
    cfg: EngineConfig,
    costs: list,
    clock: float,
    reason: str,
    images: tuple[np.ndarray, ...],
    low: EngineLowering,
) -> dict[str, Any]:
    fpga = target.fpga
    used = resources(cfg, fpga, bool(target.numerics.power_of_two_scales))
    sched, wgt, par = images
    return {
        "top": "engine_top",
        "fpga_arch": "engine",
        "arch_reason": reason,
        "engine": cfg.name,
        "pp": cfg.pp,
        "icp": cfg.icp,
        "ocp": cfg.ocp,
        "clock_mhz": clock,
        "ddr_gbps": fpga.ddr_gbps,
        "ddr_bytes_per_cycle": round(bytes_per_cycle(fpga.ddr_gbps, clock), 2),
        **summarize(costs, cfg, clock),
        **{k: v for k, v in used.items()},
        **{f"{k}_budget": int(getattr(fpga, k)) for k in used},
        "buffers": {"in_buf": cfg.in_buf, "w_buf": cfg.w_buf, "acc_buf": cfg.acc_buf},
        "layers": len(low.steps),
        "weights_mb": round(wgt.nbytes / 2**20, 3),
        "params_kb": round(par.nbytes / 1024, 1),
        "arena_mb": round(low.arena / 2**20, 3),
        "schedule_bytes": int(sched.nbytes),
        "cycles_per_block": cycles_per_block(low.steps, costs),
    }


def cycles_per_block(steps: list, costs: list) -> dict[str, int]:
    """Cycles by the model's repeated block: each step's source location up to its first
    numeric part (an encoder layer ``0``, ``1``; ``features.3`` of a MobileNet; ``layer1.0``
    of a ResNet), else its first part; steps without a location under ``(graph)``."""
    blocks: dict[str, int] = {}
    for step, cost in zip(steps, costs, strict=True):
        parts = step.loc.split(".") if step.loc else ["(graph)"]
        cut = next((i for i, p in enumerate(parts) if p.isdigit()), 0)
        block = ".".join(parts[: cut + 1])
        blocks[block] = blocks.get(block, 0) + int(cost.cycles)
    return blocks
