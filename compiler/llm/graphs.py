"""The prefill and decode graphs of one decoder, and the one weight dict they share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import VerifyError
from compiler.ir import Graph
from compiler.llm.spec import LLMSpec

log = logging.getLogger(__name__)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


def share_constants(graphs: list[Graph]) -> dict[str, np.ndarray]:
    """One dict of constants for ``graphs``: a name that holds equal data in every graph is
    stored once (every graph then points at the same array); a name whose data differs
    (a lifted constant of the export, never a parameter) is renamed in the later graph."""
    weights: dict[str, np.ndarray] = {}
    for graph in graphs:
        renamed: dict[str, str] = {}
        for name, data in list(graph.constants.items()):
            if name in weights and not _same(weights[name], data):
                new, i = f"{graph.name}.{name}", 0
                while new in weights or new in graph.constants:
                    i += 1
                    new = f"{graph.name}.{name}_{i}"
                renamed[name] = new
                weights[new] = data
            else:
                weights.setdefault(name, data)
        for node in graph.nodes:
            if node.op == "const" and node.attrs["ref"] in renamed:
                node.attrs["ref"] = renamed[node.attrs["ref"]]
        graph.constants = {renamed.get(n, n): weights[renamed.get(n, n)] for n in graph.constants}
        if renamed:
            log.debug("@%s: renamed constants %s", graph.name, renamed)
    return weights


@dataclass
class LLMGraphs:
    """``prefill`` (chunk = spec.prefill_len) and ``decode`` (chunk = 1) over ``weights``.

    A weight-rewriting pass edits both graphs and ``weights`` together, keeping constant
    names shared; :meth:`check` says whether they still agree.
    """

    spec: LLMSpec
    prefill: Graph
    decode: Graph
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = share_constants([self.prefill, self.decode])

    @property
    def graphs(self) -> list[Graph]:
        return [self.prefill, self.decode]

    @property
    def batch(self) -> int:
        """The static batch of both graphs (the first dim of ``input_ids``)."""
        return int(self.decode.inputs[0].type.shape[0])

    def check(self) -> None:
        """Every constant of either graph is in ``weights`` with the same array."""
        for graph in self.graphs:
            for name, data in graph.constants.items():
                if name not in self.weights or not _same(self.weights[name], data):
                    raise VerifyError(
                        f"@{graph.name}: constant @{name} is not the shared weight of that name"
                    )
