"""Which FPGA architecture a model gets: the dataflow design or the engine, and why.

``fpga_arch="dataflow"`` or ``"engine"`` forces one; an ``engine=`` size asks for the engine.
Otherwise (``"auto"``) the dataflow design is chosen when it can hold the model on chip (it
is the lower-latency design: every layer has its own hardware), the engine when the dataflow
design has no kernel for an op or its weights alone exceed the part's BRAM and URAM; a
dataflow design that still does not fit after choosing reuse factors falls back to the
engine in ``HlsBackend.compile``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.hls.engine.config import onchip_bytes
from compiler.ir.graph import Graph

ARCHS = ("auto", "dataflow", "engine")
#: Options only the dataflow design reads: giving one asks for it.
DATAFLOW_OPTIONS = ("reuse_factor", "dsp_packing", "port_layout")


def weight_bytes(graph: Graph) -> int:
    """On-chip bytes the dataflow design needs for its constants (weights, biases)."""
    return sum(int(np.asarray(c).nbytes) for c in graph.constants.values())


def pick_arch(graph: Graph, target: Any, options: dict[str, Any]) -> tuple[str, str]:
    """(``"dataflow"`` or ``"engine"``, the reason in words)."""
    from backends.hls.plan import unsupported as dataflow_unsupported

    arch = options.get("fpga_arch") or "auto"
    if arch not in ARCHS:
        from compiler.errors import BackendError

        raise BackendError(f"fpga_arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if arch != "auto":
        return str(arch), f"fpga_arch={arch!r} was asked for"
    if options.get("engine") not in (None, False):
        return "engine", f"an engine size was asked for (engine={options['engine']!r})"
    given = [k for k in DATAFLOW_OPTIONS if k in options]
    if given:
        return "dataflow", f"{', '.join(given)} applies to the dataflow design"
    missing = dataflow_unsupported(graph, target)
    if missing:
        ops = sorted({m.op for m in missing})
        return "engine", f"the dataflow design has no kernel for {', '.join(ops)}"
    need, have = weight_bytes(graph), onchip_bytes(target.fpga)
    if need > have:
        return "engine", (
            f"the weights ({need / 2**20:.2f} MiB) exceed {target.fpga.part}'s BRAM+URAM "
            f"({have / 2**20:.2f} MiB), and the dataflow design keeps every weight on chip"
        )
    return "dataflow", (
        f"the weights ({need / 2**10:.1f} KiB) fit on chip: the dataflow design has the lowest "
        "latency"
    )
