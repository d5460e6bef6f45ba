"""quantize-rewrite: replace the graph by its integer form (the second stage of ``quantize``).

From what ``calibrate`` left in the run's ``QuantState``: the integer graph
(``passes.quant.rewrite.quantized_graph``), or for fp16 / int4w the weight-only form
(``passes.quant.weight_only``). After fp32 (no state) the graph stays float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph
from compiler.ir.verifier import verify
from passes.quant.driver import carry_provenance, replace_contents
from passes.quant.rewrite import quantized_graph
from passes.quant.state import current

if TYPE_CHECKING:
    from compiler.context import PassContext


@dataclass(frozen=True)
class QuantizeRewrite:
    """The integer (or weight-only) graph from what ``calibrate`` found."""

    name: ClassVar[str] = "quantize-rewrite"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        st = current(ctx)
        if st is None:  # fp32 (calibrate left nothing): the graph stays float
            return False
        if st.plan is None:
            from passes.quant.weight_only import weight_only

            work = st.float_graph.copy()
            st.report = weight_only(work, st.float_graph, ctx.calibration_data, st.config)
            verify(work)
            replace_contents(graph, work)
            return True
        quantized = quantized_graph(st.float_graph, st.plan)
        carry_provenance(st.float_graph, quantized)
        replace_contents(graph, quantized)
        return True
