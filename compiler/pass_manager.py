"""Run a pipeline of passes: verify after each, print after any, explain what fired.

A pipeline is text: ``"fold-batchnorm,fuse-bias-act,quantize{bits=8,per_channel=true}"``.
Each entry names a pass in ``passes.PASSES``; the braces set its dataclass fields. A pass is
``run(graph, ctx) -> bool``; ``ctx`` is the ``compiler.context.PassContext`` of the run (the
target, calibration data and executor, importance scores, and the sinks for rewrite stats and
reports), built by the caller and read back afterwards.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from compiler.context import PassContext, RewriteStats
from compiler.errors import PassError, UsageError
from compiler.ir.graph import Graph
from compiler.ir.verifier import verify

log = logging.getLogger(__name__)


class Pass(Protocol):
    name: str

    def run(self, graph: Graph, ctx: PassContext) -> bool: ...


_ENTRY = re.compile(r"\s*([a-z0-9][a-z0-9-]*)\s*(\{[^{}]*\})?\s*(?:,|$)")


def _parse_option(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.startswith("[") and text.endswith("]"):
        return [_parse_option(t) for t in text[1:-1].split(";") if t.strip()]
    return text.strip().strip('"')


def split_pipeline(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``"a,b{x=1,y=true}"`` -> ``[("a", {}), ("b", {"x": 1, "y": True})]``."""
    entries: list[tuple[str, dict[str, Any]]] = []
    pos = 0
    spec = spec.strip()
    while pos < len(spec):
        m = _ENTRY.match(spec, pos)
        if not m or m.end() == pos:
            raise UsageError(
                f"cannot parse pipeline {spec!r} at position {pos}: "
                "expected name or name{key=value,...}"
            )
        options: dict[str, Any] = {}
        if m.group(2):
            for item in filter(None, (s.strip() for s in m.group(2)[1:-1].split(","))):
                key, eq, value = item.partition("=")
                if not eq:
                    raise UsageError(f"pipeline option {item!r} of {m.group(1)} needs key=value")
                options[key.strip().replace("-", "_")] = _parse_option(value.strip())
        entries.append((m.group(1), options))
        pos = m.end()
    return entries


def build_pass(name: str, options: dict[str, Any] | None = None) -> Pass:
    """Instantiate pass ``name`` from ``passes.PASSES`` with its options: its dataclass
    fields, or whatever its ``from_options`` classmethod takes (``quantize``: the
    ``QuantConfig`` fields)."""
    from passes import PASSES

    cls = PASSES.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, sorted(PASSES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown pass {name!r}; {hint}available: {', '.join(sorted(PASSES))}")
    options = options or {}
    factory = getattr(cls, "from_options", None)
    if factory is None:
        fields = (
            {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        )
        unknown = set(options) - fields
        if unknown:
            raise UsageError(
                f"pass {name} has no option(s) {sorted(unknown)}; "
                f"it takes {sorted(fields) or 'none'}"
            )
        factory = cls
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"bad options for pass {name}: {e}") from None


def build_pipeline(spec: str | Sequence[str | Pass]) -> list[Pass]:
    if isinstance(spec, str):
        return [build_pass(n, o) for n, o in split_pipeline(spec)]
    out: list[Pass] = []
    for item in spec:
        out.extend(build_pipeline(item) if isinstance(item, str) else [item])
    return out


def fit_to_quantize(passes: Sequence[Pass], quant: Any = None) -> list[Pass]:
    """``passes`` with each pass that comes before an integer quantize replaced by its
    ``before_integer_quantize()`` form: fusions make only what an integer layer takes
    (fuse-bias-act keeps gelu apart, fuse-residual declines), so quantize reads the graph
    as they leave it and un-fuses nothing. ``quant``: the run's ``QuantConfig``, for a
    quantize pass without options of its own."""
    out = list(passes)
    integer_later = False
    for i in range(len(out) - 1, -1, -1):
        p = out[i]
        fit = getattr(p, "before_integer_quantize", None)
        if integer_later and fit is not None:
            out[i] = fit()
        makes_integers = getattr(p, "makes_integers", None)
        if makes_integers is not None and makes_integers(quant):
            integer_later = True
    return out


def _changed_fields(obj: Any) -> list[str]:
    """``key=value`` for each non-default field; a field holding a dataclass (the quantize
    pass's ``QuantConfig``) is spelled by its own fields, as the pipeline text sets them."""
    items = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            items.extend(_changed_fields(value))
            continue
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        items.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
    return items


def pass_options(p: Pass) -> str:
    """``{bits=8,per_channel=true}`` for a pass instance (only non-default fields)."""
    if not dataclasses.is_dataclass(p):
        return ""
    items = _changed_fields(p)
    return "{" + ",".join(items) + "}" if items else ""


@dataclass
class PassRecord:
    name: str
    options: str
    changed: bool
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PipelineResult:
    records: list[PassRecord] = field(default_factory=list)
    stats: RewriteStats = field(default_factory=RewriteStats)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def format(self) -> str:
        rows = [f"{'pass':<34}{'changed':>8}{'nodes':>14}{'ms':>9}"]
        for r in self.records:
            rows.append(
                f"{r.name + r.options:<34}{'yes' if r.changed else 'no':>8}"
                f"{f'{r.nodes_before}->{r.nodes_after}':>14}{r.seconds * 1e3:>9.1f}"
            )
        return "\n".join(rows)


@dataclass
class PassManager:
    """Runs passes in order; see the module docstring."""

    passes: list[Pass]
    verify_each: bool = False
    print_after: set[str] | str | None = None  # pass names, or "all"
    printer: Callable[[str], None] = print

    def _wants_print(self, name: str) -> bool:
        if self.print_after == "all":
            return True
        return bool(self.print_after) and name in self.print_after  # type: ignore[operator]

    def run(self, graph: Graph, ctx: PassContext | None = None) -> PipelineResult:
        """Run every pass on ``graph`` in place; the result's stats are ``ctx.stats``."""
        ctx = PassContext() if ctx is None else ctx
        result = PipelineResult(stats=ctx.stats)
        for p in fit_to_quantize(self.passes, ctx.quant):
            # A pass made of stages (quantize) runs them as passes of their own, so that
            # each is recorded, verified and printable; ``--print-after quantize`` prints
            # after its last stage.
            stages = p.stages() if hasattr(p, "stages") else [p]
            for i, stage in enumerate(stages):
                last = i == len(stages) - 1
                self._run_one(stage, graph, ctx, result, also=p.name if last else None)
        return result

    def _run_one(
        self,
        p: Pass,
        graph: Graph,
        ctx: PassContext,
        result: PipelineResult,
        also: str | None = None,
    ) -> None:
        before = len(graph.compute_nodes())
        start = time.perf_counter()
        try:
            changed = bool(p.run(graph, ctx))
            if self.verify_each:
                verify(graph)
        except Exception as e:
            raise PassError(p.name, pass_options(p), [r.name for r in result.records], e) from e
        seconds = time.perf_counter() - start
        result.records.append(
            PassRecord(
                p.name, pass_options(p), changed, seconds, before, len(graph.compute_nodes())
            )
        )
        log.debug("pass %s: changed=%s in %.1f ms", p.name, changed, seconds * 1e3)
        if self._wants_print(p.name) or (also is not None and self._wants_print(also)):
            self.printer(f"// ----- IR after {p.name}{pass_options(p)} -----\n{graph}")


def run_pipeline(
    graph: Graph, spec: str | Sequence[str | Pass], ctx: PassContext | None = None, **kwargs: Any
) -> PipelineResult:
    """Build ``spec`` and run it on ``graph`` with ``ctx`` (a fresh context if None);
    ``kwargs`` go to ``PassManager``."""
    return PassManager(build_pipeline(spec), **kwargs).run(graph, ctx)
