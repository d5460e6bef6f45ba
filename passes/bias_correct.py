"""bias-correct: with ``bias_correction``, remove each integer layer's mean output error
(a stage of ``quantize``; ``passes.quant.bias_correction`` has the method)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph
from passes.quant.state import current

if TYPE_CHECKING:
    from compiler.context import PassContext


@dataclass(frozen=True)
class BiasCorrect:
    """With ``bias_correction``: remove each integer layer's mean output error."""

    name: ClassVar[str] = "bias-correct"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        st = current(ctx)
        if st is None or st.plan is None or not st.config.bias_correction:
            return False
        from passes.quant.bias_correction import correct_biases

        assert st.runner is not None and st.cap is not None
        correct_biases(graph, st.float_graph, st.plan, st.runner, st.cap, st.limit)
        return True
