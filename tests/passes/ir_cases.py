"""Helpers for the pass tests: Before/Expected graphs in IR text, and interpreter equality.

A test writes the graph before the pass as IR text (constants by name, data in a dict), the
graph it expects after the pass as IR text (constants need no data there), and checks:

- the printed graph after the pass equals the printed Expected graph (the printer is
  canonical, so this compares ops, attributes, operand order, names, types and locations);
- the interpreter computes the same outputs before and after on seeded random inputs
  (exactly for data movement and removal, with a tolerance where fusion reorders floats).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np

from compiler.context import PassContext, RewriteStats
from compiler.interpreter import interpret
from compiler.ir import Graph, parse, print_graph, verify
from compiler.pass_manager import PassManager, build_pipeline
from compiler.target import Target


def graph_from(text: str, constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Parse and verify a Before graph; ``constants`` maps ``@ref`` to data (float64 data is
    stored as float32, so tests can write ``np.ones(4)``)."""
    data = {
        k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float64 else np.asarray(v)
        for k, v in (constants or {}).items()
    }
    graph = parse(text, data)
    verify(graph)
    return graph


def expected(text: str) -> str:
    """The canonical print of an Expected graph (its constants need no data)."""
    return print_graph(parse(text, allow_missing_constants=True))


def random_inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs for every graph input: normal floats, small ints, random bools."""
    rng = np.random.default_rng(seed)
    arrays = []
    for value in graph.inputs:
        shape = tuple(d if isinstance(d, int) else 3 for d in value.type.shape)
        dtype = value.type.np_dtype
        if value.type.dtype == "bool":
            arrays.append(rng.random(shape) > 0.3)
        elif np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 8, shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def assert_same_outputs(
    before: Graph,
    after: Graph,
    exact: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seeds: tuple[int, ...] = (0, 1),
    inputs: list[np.ndarray] | None = None,
) -> None:
    """Interpreter outputs of ``before`` and ``after`` agree (bitwise when ``exact``)."""
    for seed in seeds if inputs is None else (0,):
        args = inputs if inputs is not None else random_inputs(before, seed)
        want, got = interpret(before, *args), interpret(after, *args)
        assert len(want) == len(got)
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            assert w.shape == g.shape and w.dtype == g.dtype, f"output {i}: {g.shape} {g.dtype}"
            if exact:
                np.testing.assert_array_equal(g, w, err_msg=f"output {i} (seed {seed})")
            else:
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")


def run_passes(graph: Graph, spec: str, target: Target | None = None) -> RewriteStats:
    """Run ``spec`` with verification after each pass; the stats are the context's sink
    (fires and rejections by reason)."""
    ctx = PassContext(target=target)
    return PassManager(build_pipeline(spec), verify_each=True).run(graph, ctx).stats


def rejections(stats: RewriteStats, pass_name: str) -> Counter[str]:
    return stats.rejected.get(pass_name, Counter())


def check_rewrite(
    spec: str,
    before: str,
    after: str,
    constants: Mapping[str, np.ndarray] | None = None,
    target: Target | None = None,
    exact: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Graph, RewriteStats]:
    """Before -> pass(es) -> Expected, printed-equal, and interpreter-equal."""
    graph = graph_from(before, constants)
    original = graph.copy()
    stats = run_passes(graph, spec, target)
    assert print_graph(graph) == expected(after), (
        f"after {spec}:\n{print_graph(graph)}\nexpected:\n{expected(after)}"
    )
    assert_same_outputs(original, graph, exact=exact, rtol=rtol, atol=atol)
    return graph, stats


def check_unchanged(
    spec: str,
    before: str,
    constants: Mapping[str, np.ndarray] | None = None,
    target: Target | None = None,
) -> RewriteStats:
    """The pass leaves the graph exactly as it was; returns its stats (for the reasons)."""
    graph = graph_from(before, constants)
    text = print_graph(graph)
    stats = run_passes(graph, spec, target)
    assert print_graph(graph) == text
    return stats
