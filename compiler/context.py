"""``PassContext``: everything a pass may need besides the graph, passed explicitly.

A pass is ``run(graph, ctx) -> bool``; a local rewrite is ``rewrite(graph, node, ctx)``.
Nothing reaches a pass through module-level state: the pass manager, ``compile()``, the CLI
and tests build one context per pipeline run and read the sinks afterwards.

This is a leaf module (it imports only the IR and the interpreter), so the pass manager,
the rewrite base, every pass and the API can import it without cycles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.ir.graph import Graph, Node

if TYPE_CHECKING:
    from compiler.quant_config import QuantConfig
    from compiler.quant_report import QuantReport
    from compiler.target import Target

#: Runs ``graph`` on one batch of ``inputs`` and returns the values named in ``wanted``
#: (graph inputs or node outputs) as arrays. Calibration collects its statistics with it.
Executor = Callable[[Graph, Sequence[np.ndarray], Sequence[str]], dict[str, np.ndarray]]


def interpreter_executor(
    graph: Graph, inputs: Sequence[np.ndarray], wanted: Sequence[str]
) -> dict[str, np.ndarray]:
    """The reference interpreter as an ``Executor`` (the default: slow, but the oracle)."""
    from compiler.interpreter import interpret

    names = set(wanted)
    values = {v.name: a for v, a in zip(graph.inputs, inputs, strict=True) if v.name in names}

    def observe(node: Node, outs: list[np.ndarray]) -> None:
        for value, array in zip(node.outputs, outs, strict=True):
            if value.name in names:
                values[value.name] = array

    interpret(graph, *inputs, observe=observe)
    return values


@dataclass
class RewriteStats:
    """How often each pass fired, and why it declined (what ``--explain`` prints)."""

    fired: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, Counter[str]] = field(default_factory=dict)

    def fire(self, pass_name: str) -> None:
        self.fired[pass_name] += 1

    def reject(self, pass_name: str, reason: str) -> None:
        self.rejected.setdefault(pass_name, Counter())[reason] += 1

    def merge(self, other: RewriteStats) -> None:
        self.fired.update(other.fired)
        for name, reasons in other.rejected.items():
            self.rejected.setdefault(name, Counter()).update(reasons)

    def format(self) -> str:
        lines = []
        for name in sorted(set(self.fired) | set(self.rejected)):
            lines.append(f"{name}: fired {self.fired.get(name, 0)}x")
            for reason, count in sorted(
                self.rejected.get(name, Counter()).items(), key=lambda kv: -kv[1]
            ):
                lines.append(f"  declined {count}x: {reason}")
        return "\n".join(lines) if lines else "no rewrites were attempted"


@dataclass(frozen=True)
class PassContext:
    """What a pipeline run carries besides the graph (frozen: the sinks are the only
    mutable parts, and passes only append to them).

    - ``target``: the hardware description the passes are aware of (bit widths, which
      fusions a backend has kernels for); None for target-independent runs.
    - ``quant``: the ``QuantConfig`` of the run, used by a ``quantize`` pass that has no
      options of its own (``compile(quant=...)`` also writes it into the pass, so that
      ``--print-after`` shows it).
    - ``calibration_data``: samples for ``quantize`` (see ``passes.quant.batching``).
    - ``executor``: runs a float graph for calibration statistics. The interpreter by
      default; ``compile()`` injects onnxruntime (``backends.onnx.executor``), ~50x faster,
      so that passes never import a backend.
    - ``importance``: layer name -> per-channel importance for
      ``prune-channels{criterion=taylor}`` (from ``compiler.torchside.prune``).
    - ``example_inputs``: one array per graph input, the values ``specialize-shapes`` fixes
      the shape-deciding inputs to (None: it does nothing; ``compile()`` gives them unless
      the backend option ``specialize_shapes=False``).
    - sinks, read after the run: ``stats`` (rewrites fired/declined by reason),
      ``prune_reports`` and ``quant_reports`` (one per pruning / quantize pass run),
      ``specialized`` (graph input -> the value it was specialized to: the run-time guard).
    - ``quant_state``: what one quantize stage hands the next within the run (``calibrate``
      -> ``quantize-rewrite`` -> ... -> ``quant-report``: the float graph, plan, statistics;
      ``passes.quant.state``).
    """

    target: Target | None = None
    quant: QuantConfig | None = None
    calibration_data: Any = None
    executor: Executor = interpreter_executor
    importance: Mapping[str, Sequence[float] | np.ndarray] | None = None
    stats: RewriteStats = field(default_factory=RewriteStats)
    prune_reports: list[Any] = field(default_factory=list)  # passes._prune.PruneReport
    quant_reports: list[QuantReport] = field(default_factory=list)
    quant_state: dict[str, Any] = field(default_factory=dict)
    example_inputs: Sequence[np.ndarray] | None = None
    specialized: dict[str, Any] = field(default_factory=dict)
