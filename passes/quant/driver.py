"""What the quantize stage passes share (``passes.calibrate``, ``passes.quantize_rewrite``,
...): the planner options a config and target give, how many samples the report takes,
replacing a graph's contents."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from compiler.errors import CalibrationError
from compiler.ir.graph import Graph
from compiler.quant_config import QuantConfig
from passes.quant.batching import macs_per_sample
from passes.quant.plan import QuantOptions

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)


def options_for(config: QuantConfig, target: Target | None) -> QuantOptions:
    if not 0 < config.percentile <= 100:
        raise CalibrationError(f"percentile {config.percentile} is not in (0, 100]")
    island = config.island_dtype
    if island is None:
        island = target.numerics.island_dtype if target is not None else "f32"
    dtype = "i16" if config.precision == "int16" else config.activation_dtype
    if not config.symmetric and dtype == "i8":
        dtype = "u8"  # asymmetric 8-bit activations are u8 with a zero point
    power_of_two = config.power_of_two
    if power_of_two is None:
        power_of_two = bool(target is not None and target.numerics.power_of_two_scales)
    return QuantOptions(
        activation_dtype=dtype,
        symmetric=config.symmetric and dtype != "u8",
        per_channel=config.per_channel,
        power_of_two=power_of_two,
        calibrator=config.calibrator,
        percentile=config.percentile,
        exclude=config.exclude,
        overrides={k: dict(v) for k, v in config.overrides.items()},
        integer_outputs=power_of_two,
        island_dtype=island,
        integer_ops=bool(
            config.integer_ops
            if config.integer_ops is not None
            else target is not None and target.numerics.integer_ops
        ),
    )


def replace_contents(graph: Graph, new: Graph) -> None:
    """Make ``graph`` hold ``new``'s inputs, nodes, outputs and constants (in place)."""
    graph.inputs, graph.outputs, graph.nodes = new.inputs, new.outputs, new.nodes
    graph.constants, graph._names = new.constants, new._names


#: The report runs the float graph once and the quantized graph about twice per sample (the
#: interpreter: slow on big models). With report_samples=None it takes up to 16 samples, fewer
#: when that would exceed this many multiply-accumulates (a ResNet-18 gets 3): a count of the
#: graph, not a timing, so the report and mixed precision's choices are reproducible.
REPORT_MACS = 6e9
MAX_REPORT_SAMPLES = 16


def report_limit(wanted: int | None, graph: Graph) -> int:
    if wanted is not None:
        return max(1, wanted)
    macs = macs_per_sample(graph)
    return int(min(MAX_REPORT_SAMPLES, max(2, REPORT_MACS // max(macs, 1))))


def carry_provenance(src: Graph, dst: Graph) -> None:
    """Give the quantized nodes the fusion provenance of the float nodes they replace (both
    share the source location)."""
    fused = {n.loc: n.fused for n in src.nodes if n.loc and n.fused}
    for node in dst.nodes:
        if node.loc in fused and node.op != "const":
            node.fused = fused[node.loc]
