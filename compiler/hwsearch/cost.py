"""The FPGA cost of a quantized graph under a budget: the HLS backend's own estimate.

The numbers are the ones ``tapeout compile --target <fpga>`` reports (``backends.hls``:
``resources`` prices a layer, ``reuse.choose`` picks the reuse factors that fit with the
lowest latency), computed without writing a project, so a search can price hundreds of
candidates. Where even the largest reuse factors do not fit, the cost is that of the largest
ones, with ``short`` naming each resource over budget and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compiler.errors import BackendError, TargetError, UnsupportedOpsError
from compiler.ir.graph import Graph

if TYPE_CHECKING:
    from compiler.target import Target

RESOURCES = ("dsp", "bram18k", "lut")
#: How a shortfall names each limit.
LIMIT_NAMES = {"dsp": "DSP", "bram18k": "BRAM18K", "lut": "LUT", "latency_ns": "latency (ns)"}


@dataclass(frozen=True)
class Cost:
    """Estimated resources and latency of one design, and what is over its limits."""

    dsp: int
    bram18k: int
    lut: int
    latency_cycles: int
    latency_ns: float
    interval_cycles: int
    reuse: dict[str, int] = field(default_factory=dict)
    #: limit name -> (needed, allowed) for every limit exceeded; empty when it fits.
    short: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return not self.short

    def shortfall(self) -> str:
        """``DSP short by 40 (needs 260, the budget is 220); ...`` or ``fits``."""
        if not self.short:
            return "fits"
        return "; ".join(
            f"{LIMIT_NAMES[k]} short by {_num(need - have)} (needs {_num(need)}, "
            f"the budget is {_num(have)})"
            for k, (need, have) in self.short.items()
        )


def _num(x: float) -> str:
    return f"{x:g}" if float(x) != int(x) else str(int(x))


def resource_limits(target: Target, budget: dict[str, float]) -> dict[str, int]:
    """The part's DSP/BRAM18K/LUT, lowered where the budget asks for less."""
    fpga = target.fpga
    if fpga is None:
        raise TargetError(
            f"target {target.name} has no [fpga] table: search prices designs with the FPGA "
            "cost model (use an hls target such as pynq-z2, kv260, zcu104)"
        )
    part = {"dsp": int(fpga.dsp), "bram18k": int(fpga.bram18k), "lut": int(fpga.lut)}
    for key in RESOURCES:
        given = budget.get(f"max_{key}")
        if given is not None:
            part[key] = min(part[key], int(given))
    return part


def fpga_cost(
    graph: Graph, target: Target, limits: dict[str, int], max_latency_ns: float | None = None
) -> Cost:
    """Price quantized ``graph`` on ``target`` with reuse factors chosen to fit ``limits``."""
    from backends.hls.plan import batch_one, build_design, unsupported
    from backends.hls.resources import Model
    from backends.hls.reuse import candidates, choose, evaluate

    fpga = target.fpga
    assert fpga is not None  # resource_limits checked it
    graph = batch_one(graph)
    missing = unsupported(graph, target)
    if missing:
        raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for {target.name}")
    design = build_design(graph, target, graph.name)
    model = Model.for_target(fpga.products_per_dsp, fpga.clock_mhz)
    try:
        ev = choose(design, model, limits, {}, target.name)
    except BackendError:  # nothing fits: price the smallest design, to say what is short
        for layer in design.layers:
            if layer.tunable:
                layer.rf = candidates(layer)[-1]
        ev = evaluate(design, model)
    used = {"dsp": ev.total.dsp, "bram18k": ev.total.bram18k, "lut": ev.total.lut}
    short: dict[str, tuple[float, float]] = {
        k: (float(used[k]), float(limits[k])) for k in RESOURCES if used[k] > limits[k]
    }
    latency_ns = ev.latency * 1000.0 / fpga.clock_mhz
    if max_latency_ns is not None and latency_ns > max_latency_ns:
        short["latency_ns"] = (latency_ns, float(max_latency_ns))
    return Cost(
        dsp=int(used["dsp"]),
        bram18k=int(used["bram18k"]),
        lut=int(used["lut"]),
        latency_cycles=int(ev.latency),
        latency_ns=latency_ns,
        interval_cycles=int(ev.interval),
        reuse={x.name: x.rf for x in design.layers if x.tunable},
        short=short,
    )
