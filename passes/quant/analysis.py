"""Measurements of a quantization: per-layer SQNR, saturation at run time, output fidelity.

- ``capture`` runs the float graph over the first samples and keeps the values asked for.
- ``layer_sqnr``: each integer layer quantized *alone*: a one-node graph with the layer's
  float inputs (captured from the float model) quantized at the planned scales, the layer in
  integers, its output requantized as planned, then dequantized and compared with the float
  layer's output. ``10 log10(sum(ref^2) / sum((ref - out)^2))`` in dB.
- ``evaluate`` runs the quantized graph with saturation counting and compares its outputs
  with the float outputs (SQNR and cosine similarity).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from compiler.interpreter import Context, interpret
from compiler.ir.graph import Graph, Node, Value
from compiler.numerics import SaturationCounter
from passes.quant.batching import BatchedRunner
from passes.quant.plan import Layer, Plan
from passes.quant.rewrite import quantized_graph


@dataclass
class Capture:
    """Float values of the first samples, batch by batch, with the graph variant that ran."""

    chunks: list[tuple[Graph, list[np.ndarray], dict[str, np.ndarray]]] = field(
        default_factory=list
    )

    def outputs(self) -> list[list[np.ndarray]]:
        return [[values[v.name] for v in g.outputs] for g, _, values in self.chunks]


def capture(runner: BatchedRunner, names: Iterable[str], limit: int) -> Capture:
    wanted = set(names)
    result = Capture()
    for graph, inputs in runner.chunks(limit):
        keep = {v.name: a for v, a in zip(graph.inputs, inputs, strict=True) if v.name in wanted}
        keep_out = wanted | {v.name for v in graph.outputs}

        def observe(
            node: Node, outs: list[np.ndarray], keep: dict = keep, keep_out: set = keep_out
        ) -> None:
            for v, a in zip(node.outputs, outs, strict=True):
                if v.name in keep_out:
                    keep[v.name] = a

        interpret(graph, *inputs, observe=observe)
        result.chunks.append((graph, inputs, keep))
    return result


def captured_names(plan: Plan) -> set[str]:
    names: set[str] = set()
    for layer in plan.layers.values():
        if layer.kind != "move":
            names.update(layer.inputs)
            names.add(layer.out)
    return names


# ---- per-layer SQNR -------------------------------------------------------------------------
def layer_graph(src: Graph, plan: Plan, layer: Layer) -> tuple[Graph, Plan]:
    """``layer`` alone, with float inputs and output, and the plan that quantizes just it."""
    node = src.find(layer.key).producer
    assert node is not None
    g = Graph(f"{src.name}_layer")
    env: dict[str, Value] = {}
    nodes = [node]
    if layer.absorbed:
        nodes.append(src.find(layer.out).producer)  # type: ignore[arg-type]
    produced = {v.name for v in node.outputs}
    for v in [v for n in nodes for v in n.inputs if v.name not in produced]:
        if v.name in env:
            continue
        if v.is_const:
            assert v.producer is not None
            data = src.const_value(v)
            assert data is not None
            env[v.name] = g.add_const(v.producer.attrs["ref"], data, v.type)
        else:
            env[v.name] = g.add_input(v.name, v.type, exact=True)
    for n in nodes:
        clone = g.create_node(
            n.op,
            [env[v.name] for v in n.inputs],
            n.attrs,
            [v.type for v in n.outputs],
            [v.name for v in n.outputs],
            n.loc,
            exact_names=True,
        )
        g.nodes.append(clone)
        env.update({v.name: v for v in clone.outputs})
    g.outputs = [env[layer.out]]
    int_values = set(layer.inputs) | ({layer.out} & plan.int_values)
    sub = Plan(plan.options, {layer.key: layer}, int_values, {}, plan.quant, plan.dtype)
    return g, sub


def sqnr_db(signal: float, noise: float) -> float:
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_sqnr(plan: Plan, cap: Capture) -> dict[str, float]:
    """SQNR (dB) of each non-data-movement layer quantized alone, keyed by layer key."""
    result: dict[str, float] = {}
    for layer in plan.layers.values():
        if layer.kind == "move":
            continue
        signal = noise = 0.0
        built: dict[int, Graph] = {}
        for graph, _, values in cap.chunks:
            if id(graph) not in built:
                mini, sub = layer_graph(graph, plan, layer)
                built[id(graph)] = quantized_graph(mini, sub)
            q = built[id(graph)]
            (out,) = interpret(q, *[values[v.name] for v in q.inputs])
            ref = values[layer.out].astype(np.float64)
            signal += float(np.sum(ref**2))
            noise += float(np.sum((ref - out.astype(np.float64)) ** 2))
        result[layer.key] = sqnr_db(signal, noise)
    return result


# ---- the whole quantized graph ---------------------------------------------------------------
@dataclass
class Evaluation:
    """Output fidelity of a quantized graph, and saturation counts by value name."""

    sqnr_db: float
    cosine: float
    saturation: dict[str, SaturationCounter]


def compare(
    reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]]
) -> tuple[float, float]:
    """(SQNR dB, cosine similarity) of all outputs of all batches, flattened together."""
    ref = np.concatenate([a.astype(np.float64).ravel() for batch in reference for a in batch])
    out = np.concatenate([a.astype(np.float64).ravel() for batch in outputs for a in batch])
    noise = float(np.sum((ref - out) ** 2))
    denom = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float(ref @ out) / denom if denom > 0 else (1.0 if noise == 0 else 0.0)
    return sqnr_db(float(np.sum(ref**2)), noise), cosine


def evaluate(runner: BatchedRunner, qgraph: Graph, cap: Capture, limit: int) -> Evaluation:
    """Run ``qgraph`` over the captured samples, counting saturation; compare outputs."""
    qrunner = BatchedRunner.like(runner, qgraph)
    saturation: dict[str, SaturationCounter] = {}
    outputs = []
    for graph, inputs in qrunner.chunks(limit):
        ctx = Context(graph, count_saturation=True)
        outputs.append(interpret(graph, *inputs, context=ctx))
        for name, counter in (ctx.saturation or {}).items():
            saturation.setdefault(name, SaturationCounter()).add(counter.clipped, counter.total)
    sqnr, cosine = compare(cap.outputs(), outputs)
    return Evaluation(sqnr, cosine, saturation)
