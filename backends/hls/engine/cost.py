"""The engine's cost model: a roofline per layer.

For every step, compute cycles (how the array's PP x ICP x OCP lanes cover the layer's
loops, tile by tile) and memory cycles (its DDR bytes, ``tiling.traffic``, at the board's
bandwidth); with double buffering the two overlap, so a layer takes the larger plus a fixed
per-layer overhead, and ``bound`` says which one it was. The formulas, for a tile of ``noh``
rows x ``noc`` output channels x ``nic`` input channels:

    conv (groups == 1)   ceil(noc / OCP) * ceil(nic / ICP) * KH * KW * noh * ceil(OW / PP)
    grouped              per group in the tile: ceil(cout_g / OCP) * ceil(cin_g / ICP) * ...
    depthwise            ceil(noc / ICP) * KH * KW * noh * ceil(OW / PP)   (channels on ICP)
    dense                a conv with OH = 1, OW = the pixels (tokens), KH = KW = 1

each tile also pays ``TILE_OVERHEAD`` cycles (filling the MAC pipeline). Side units (pooling,
add, copy, table) process PP pixels x ICP channels per cycle, each window tap in turn.

Assumptions (stated in every report): the engine runs at the target's clock; DDR delivers
``DDR_EFFICIENCY`` of its peak on the engine's long bursts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from backends.hls.engine.config import EngineConfig
from backends.hls.engine.schedule import Step
from backends.hls.engine.tiling import Tiling, traffic

#: Fraction of the DDR's peak bandwidth sustained on long sequential bursts (an assumption).
DDR_EFFICIENCY = 0.8
#: Cycles to fill and drain the MAC pipeline per tile (an assumption of the model).
TILE_OVERHEAD = 16
#: Cycles per layer: fetching its descriptor, draining the last tile's writes.
LAYER_OVERHEAD = 256


@dataclass
class LayerCost:
    name: str
    kind: str
    macs: int
    compute_cycles: int
    ddr_bytes: int
    memory_cycles: int
    cycles: int
    bound: str
    efficiency: float  # achieved MACs per cycle / the array's MACs

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _splits(total: int, size: int) -> list[tuple[int, int]]:
    """(tile size, how many tiles) covering ``total`` in tiles of ``size``."""
    full, rest = divmod(total, size)
    return [(size, full)] + ([(rest, 1)] if rest else [])


def _tile_cycles(step: Step, cfg: EngineConfig, noc: int, nic: int, noh: int) -> int:
    taps = step.get("KH") * step.get("KW")
    pixels = noh * math.ceil(step.get("OUT_W") / cfg.pp)
    groups = step.get("GROUPS")
    if groups == 1:
        return math.ceil(noc / cfg.ocp) * math.ceil(nic / cfg.icp) * taps * pixels
    cin_g, cout_g = step.get("IN_C") // groups, step.get("OUT_C") // groups
    if cin_g == 1 and cout_g == 1:
        return math.ceil(noc / cfg.icp) * taps * pixels
    per_group = math.ceil(cout_g / cfg.ocp) * math.ceil(cin_g / cfg.icp) * taps * pixels
    return math.ceil(noc / cout_g) * per_group


def mac_cycles(step: Step, cfg: EngineConfig) -> int:
    """Compute cycles of a conv/dense step with its chosen tiles (T_OH, T_OC, T_IC)."""
    t = Tiling(step.get("T_OH"), step.get("T_OC"), step.get("T_IC"))
    ic_splits = _splits(step.get("IN_C"), t.ic) if step.get("GROUPS") == 1 else [(0, 1)]
    total = 0
    for noc, n_oc in _splits(step.get("OUT_C"), t.oc):
        for noh, n_oh in _splits(step.get("OUT_H"), t.oh):
            for nic, n_ic in ic_splits:
                cycles = _tile_cycles(step, cfg, noc, nic, noh) + TILE_OVERHEAD
                total += cycles * n_oc * n_oh * n_ic
    return total


def side_cycles(step: Step, cfg: EngineConfig) -> int:
    """Cycles of a side-unit step: PP pixels x ICP channels per cycle, per window tap."""
    taps = max(1, step.get("KH") * step.get("KW"))
    pixels = step.get("OUT_H") * step.get("OUT_W")
    channels = step.get("OUT_C") if step.op != "copy" else step.get("IN_C")
    return math.ceil(pixels / cfg.pp) * math.ceil(channels / cfg.icp) * taps


def xf_cycles(step: Step, cfg: EngineConfig) -> int:
    """Transformer units: an activation matmul on the array (PP rows x OCP columns x ICP of
    K per cycle), softmax and layer norm in three passes over each row at ICP elements per
    cycle (max/sum, then normalize; statistics, then scale), a gather one element a cycle."""
    rows, length = step.get("ROWS"), step.get("ROW_LEN")
    if step.op == "matmul":
        per = math.ceil(rows / cfg.pp) * math.ceil(length / cfg.ocp)
        return step.get("BATCH") * (per * math.ceil(step.get("IN_C") / cfg.icp) + TILE_OVERHEAD)
    if step.op == "gather":
        return length
    return rows * 3 * math.ceil(length / cfg.icp)


def xf_bytes(step: Step) -> int:
    """DDR bytes of a transformer unit: its operands, its result, its tables."""
    rows, length = step.get("ROWS"), step.get("ROW_LEN")
    if step.op == "matmul":
        k = step.get("IN_C")
        return step.get("BATCH") * (rows * k + k * length + rows * length)
    tables = {"softmax": 4 * 256 + 8, "layernorm": 8 * length, "gather": 4 * length}
    return 2 * rows * length + tables[step.op]


XF_OPS = ("matmul", "softmax", "layernorm", "gather")


def side_bytes(step: Step) -> int:
    reads = {"add": 2, "copy": 1, "lut": 1}.get(step.op)
    out = step.get("OUT_H") * step.get("OUT_W") * step.get("OUT_C" if step.op != "copy" else "IN_C")
    if reads is not None:
        return out * (reads + 1) + (256 if step.op == "lut" else 0)
    return step.get("IN_H") * step.get("IN_W") * step.get("IN_C") + out


def bytes_per_cycle(ddr_gbps: float, clock_mhz: float) -> float:
    """Sustained DDR bytes per engine clock."""
    return ddr_gbps * 1e9 * DDR_EFFICIENCY / (clock_mhz * 1e6)


def step_cost(step: Step, cfg: EngineConfig, ddr_gbps: float, clock_mhz: float) -> LayerCost:
    if step.op == "conv":
        compute = mac_cycles(step, cfg)
        tiling = Tiling(step.get("T_OH"), step.get("T_OC"), step.get("T_IC"))
        ddr = traffic(step, tiling)
    elif step.op in XF_OPS:
        compute, ddr = xf_cycles(step, cfg), xf_bytes(step)
    else:
        compute, ddr = side_cycles(step, cfg), side_bytes(step)
    memory = math.ceil(ddr / bytes_per_cycle(ddr_gbps, clock_mhz))
    cycles = max(compute, memory) + LAYER_OVERHEAD
    eff = step.macs / (cycles * cfg.macs) if step.macs else 0.0
    bound = "compute" if compute >= memory else "memory"
    return LayerCost(step.name, step.kind, step.macs, compute, ddr, memory, cycles, bound, eff)


def summarize(costs: list[LayerCost], cfg: EngineConfig, clock_mhz: float) -> dict[str, Any]:
    """Totals: latency, fps, achieved vs peak operations, how many layers each bound holds."""
    cycles = sum(c.cycles for c in costs)
    macs = sum(c.macs for c in costs)
    seconds = cycles / (clock_mhz * 1e6)
    peak_gops = cfg.peak_ops * clock_mhz / 1e3
    return {
        "cycles": cycles,
        "latency_ms": round(seconds * 1e3, 4),
        "fps": round(1.0 / seconds, 2) if seconds else 0.0,
        "gops": round(2 * macs / seconds / 1e9, 2) if seconds else 0.0,
        "peak_gops": round(peak_gops, 1),
        "efficiency": round(macs / (cycles * cfg.macs), 4) if cycles else 0.0,
        "compute_bound_layers": sum(1 for c in costs if c.bound == "compute"),
        "memory_bound_layers": sum(1 for c in costs if c.bound == "memory"),
        "ddr_mb_per_frame": round(sum(c.ddr_bytes for c in costs) / 2**20, 3),
    }
