"""Bias correction: remove the mean output error each quantized layer adds.

For each integer conv/dense/matmul with a bias, in graph order: the mean over the report
samples (per output channel) of its dequantized pre-activation accumulator in the quantized
graph, minus the mean of the float layer's pre-activation output, is subtracted from the i32
bias (``b_q -= round(error / s_acc)``). Layers are corrected one after another, each measured
with all earlier corrections in place, so the corrections do not double count.
"""

from __future__ import annotations

import numpy as np

from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Node, Value
from passes.quant.analysis import Capture
from passes.quant.batching import BatchedRunner
from passes.quant.plan import Plan


def _pre_activation(src: Graph, node: Node, dequantize: bool) -> Graph:
    """``node`` alone without its activation (and dequantized if it is integer)."""
    g = Graph(src.name + "_bc")
    env: dict[str, Value] = {}
    for v in node.inputs:
        data = src.const_value(v)
        if data is not None and v.producer is not None:
            env[v.name] = g.add_const(v.producer.attrs["ref"], data, v.type)
        else:
            env[v.name] = g.add_input(v.name, v.type, exact=True)
    attrs = {k: a for k, a in node.attrs.items() if k not in ("act", "act_args")}
    out = g.add_node(
        node.op, [env[v.name] for v in node.inputs], attrs, [node.outputs[0].type]
    ).output
    g.outputs = [g.add_node("q.dequantize", [out]).output if dequantize else out]
    return g


def _channel_mean(values: list[np.ndarray], axis: int) -> np.ndarray:
    total, count = 0.0, 0
    for y in values:
        y = np.moveaxis(y.astype(np.float64), axis, 0).reshape(y.shape[axis], -1)
        total = total + y.sum(axis=1)
        count += y.shape[1]
    return np.asarray(total) / max(count, 1)


def _run_layer(graph: Graph, node_name: str, chunks: list, dequantize: bool) -> list[np.ndarray]:
    """Outputs of the node defining ``node_name`` alone, on captured inputs per chunk."""
    results = []
    built: dict[int, Graph] = {}
    for variant, _, values in chunks:
        if id(variant) not in built:
            producer = variant.find(node_name).producer
            assert producer is not None
            built[id(variant)] = _pre_activation(variant, producer, dequantize)
        mini = built[id(variant)]
        results.append(interpret(mini, *[values[v.name] for v in mini.inputs])[0])
    return results


def _capture(runner: BatchedRunner, name: str, limit: int) -> list:
    """(graph variant, inputs, {name: array}) per batch of the first ``limit`` samples."""
    chunks = []
    for variant, inputs in runner.chunks(limit):
        kept: dict[str, np.ndarray] = {}

        def observe(node: Node, outs: list[np.ndarray], kept: dict = kept) -> None:
            for value, array in zip(node.outputs, outs, strict=True):
                if value.name == name:
                    kept[name] = array

        interpret(variant, *inputs, observe=observe)
        chunks.append((variant, inputs, kept))
    return chunks


def correct_biases(
    qgraph: Graph, work: Graph, plan: Plan, runner: BatchedRunner, cap: Capture, limit: int
) -> None:
    """Adjust the i32 biases of ``qgraph`` in place (see the module docstring)."""
    for layer in plan.layers.values():
        if layer.kind != "anchor":
            continue
        # A fresh runner each time: batch variants copied earlier hold the old biases.
        qrunner = BatchedRunner.like(runner, qgraph)
        acc = qgraph.find(layer.out + "_acc")
        node = acc.producer
        qp = acc.type.quant
        if node is None or qp is None or len(node.inputs) < 3:
            continue
        bias = node.inputs[2]
        assert bias.producer is not None
        qchunks = _capture(qrunner, node.inputs[0].name, limit)
        axis = 1 if node.op in ("nn.conv1d", "nn.conv2d") else acc.type.rank - 1
        quantized = _channel_mean(_run_layer(qgraph, acc.name, qchunks, True), axis)
        reference = _channel_mean(_run_layer(work, layer.key, cap.chunks, False), axis)
        error = quantized - reference
        ref = bias.producer.attrs["ref"]
        scales = np.asarray(qp.scale, dtype=np.float64)
        corrected = qgraph.constants[ref].astype(np.int64) - np.rint(error / scales).astype(
            np.int64
        )
        qgraph.constants[ref] = np.clip(corrected, -(2**31), 2**31 - 1).astype(np.int32)
