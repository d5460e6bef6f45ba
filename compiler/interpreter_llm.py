"""Interpreter table, part 4: block-quantized LLM weights (``compiler.ir.ops_llm``)."""

from __future__ import annotations

import numpy as np

from compiler import numerics
from compiler.interpreter_context import Context, impl
from compiler.ir.graph import Node


@impl("q.block_dense")
def _block_dense(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    m = xs[3] if len(xs) > 3 else None
    return [numerics.block_dense(xs[0], xs[1], xs[2], m, int(node.attrs.get("act_bits", 8)))]
