"""mixed-precision: with ``precision="mixed"``, keep the most sensitive layers wider until
the budget is met (a stage of ``quantize``; ``passes.quant.mixed`` has the search)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph
from passes.quant.driver import carry_provenance, replace_contents
from passes.quant.state import current

if TYPE_CHECKING:
    from compiler.context import PassContext


@dataclass(frozen=True)
class MixedPrecision:
    """With ``precision="mixed"``: keep the most sensitive layers wider until the budget."""

    name: ClassVar[str] = "mixed-precision"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        st = current(ctx)
        if st is None or st.plan is None or st.config.precision != "mixed":
            return False
        from passes.quant.mixed import choose_mixed

        assert st.runner is not None and st.cap is not None
        qgraph, st.plan, st.kept, st.budget_met = choose_mixed(
            st.float_graph, st.plan, st.stats, st.runner, st.cap, st.sensitivity, st.config,
            st.limit,
        )  # fmt: skip
        carry_provenance(st.float_graph, qgraph)
        replace_contents(graph, qgraph)
        return bool(st.kept)
