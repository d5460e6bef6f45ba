"""The interpreter's table: op name -> NumPy implementation, and what an implementation gets.

A leaf module: ``IMPLS``, the ``impl`` decorator that fills it, ``array_impl`` and the
``Context`` passed to every implementation. The ``interpreter_*`` modules register into it
and import nothing else of the interpreter; ``compiler.interpreter`` imports them all and
runs graphs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler import numerics
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import OPS

Impl = Callable[["Context", Node, list[np.ndarray]], list[np.ndarray]]
IMPLS: dict[str, Impl] = {}


class Context:
    """What an op implementation may need besides its operands: constants and counters."""

    def __init__(self, graph: Graph, count_saturation: bool = False):
        self.graph = graph
        #: Symbolic dim name -> its size in this run (bound from the graph inputs).
        self.symbols: dict[str, int] = {}
        self.saturation: dict[str, numerics.SaturationCounter] | None = (
            {} if count_saturation else None
        )

    def counter(self, node: Node) -> numerics.SaturationCounter | None:
        if self.saturation is None:
            return None
        return self.saturation.setdefault(node.outputs[0].name, numerics.SaturationCounter())


def impl(*ops: str) -> Callable[[Impl], Impl]:
    """Register the decorated function as the implementation of each op in ``ops``."""
    def register(fn: Impl) -> Impl:
        for op in ops:
            IMPLS[op] = fn
        return fn

    return register


def array_impl(fn: Callable[..., np.ndarray]) -> Impl:
    """Adapt ``fn(*arrays, **attrs) -> array`` to the implementation signature."""

    def run(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
        return [fn(*xs, **OPS[node.op].with_defaults(node.attrs))]

    return run
