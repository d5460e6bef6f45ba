"""Weight-only modes: ``int4w`` (group-wise int4 weights) and ``fp16``; activations stay float.

int4w, before and after::

    %y: f32[1,128,1024] = nn.dense(%x, %w, %b)

    %w_i4: i4[1024,256]{scale=[...], axis=1, group=128} = const @mlp.0.weight_i4
    %w_dq: f32[1024,256] = q.dequantize(%w_i4)
    %y: f32[1,128,1024] = nn.dense(%x, %w_dq, %b)

Dense and matmul weights and embedding tables (``tensor.gather`` of a constant) are quantized;
groups run along the input (reduction) axis, ``group_size`` wide (or the largest divisor of
that axis below it). fp16 casts the inputs of conv/dense/matmul to f16, computes in f16 with
f16 weights and casts the result back to f32.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import QuantParams, TensorType
from compiler.quant_report import LayerReport, QuantReport
from passes.quant.analysis import compare
from passes.quant.batching import BatchedRunner, normalize_samples
from passes.quant.plan import matches
from passes.quant.reporting import weight_bytes
from passes.quant.weights import check_finite, group_size_for, quantize_groups

if TYPE_CHECKING:
    from compiler.quant_config import QuantConfig

log = logging.getLogger(__name__)

FP16_OPS = ("nn.conv1d", "nn.conv2d", "nn.dense", "nn.matmul")


def weight_only(work: Graph, original: Graph, data: Any, config: QuantConfig) -> QuantReport:
    """Rewrite ``work`` in place; compare with ``original`` when data is given."""
    report = QuantReport(config.precision, calibrator="-", per_channel=False)
    report.weight_bytes_float = weight_bytes(work)
    convert = _to_int4 if config.precision == "int4w" else _to_fp16
    cache: dict[str, Value] = {}
    for node in list(work.nodes):
        if node.op == "const" or matches(node, config.exclude):
            continue
        row = convert(work, node, config.group_size, cache)
        if row is not None:
            report.layers.append(row)
    work.remove_unused()
    report.weight_bytes_quantized = weight_bytes(work)
    if data is not None:
        samples = normalize_samples(original, data)[: config.report_samples or 16]
        report.samples = len(samples)
        runner = BatchedRunner(original, samples)
        ref = runner.run()
        out = runner.run(work)
        report.output_sqnr_db, report.output_cosine = compare(ref, out)
    return report


def _weight_operand(graph: Graph, node: Node) -> int | None:
    """Index of the constant 2-D weight operand int4w quantizes, if the node has one."""
    if node.op in ("nn.dense", "nn.matmul"):
        index = 1
    elif node.op == "tensor.gather" and node.attrs.get("axis", 0) == 0:
        index = 0
    else:
        return None
    w = node.inputs[index]
    if graph.const_value(w) is None or w.type.rank != 2 or w.dtype != "f32":
        return None
    return index


def _to_int4(
    graph: Graph, node: Node, group_size: int, cache: dict[str, Value]
) -> LayerReport | None:
    index = _weight_operand(graph, node)
    if index is None:
        return None
    w = node.inputs[index]
    assert w.producer is not None
    ref = w.producer.attrs["ref"]
    # Groups run along the reduction axis: K of dense [N, K] and of matmul [K, N], D of a table.
    transposed = node.op == "nn.matmul"
    data = graph.const_value(w)
    assert data is not None
    rows = data.T if transposed else data
    group = group_size_for(rows.shape[1], group_size)
    if w.name not in cache:
        q, qp = quantize_groups(rows, group, ref)
        if transposed:
            q = np.ascontiguousarray(q.T)
            blocks = np.asarray(qp.scale).reshape(rows.shape[0], -1).T
            qp = QuantParams(tuple(blocks.reshape(-1)), qp.zero_point, axis=0, group_size=group)
        const = graph.add_const(ref + "_i4", q, TensorType("i4", w.type.shape, qp), w.producer.loc)
        cache[w.name] = graph.add_node(
            "q.dequantize", [const], {}, names=[w.name + "_dq"], loc=node.loc, before=node
        ).output
    else:
        _move_before(graph, cache[w.name], node)
    graph.set_input(node, index, cache[w.name])
    return LayerReport(node.loc or node.outputs[0].name, node.op, "int4w", f"i4 group{group}")


def _move_before(graph: Graph, value: Value, node: Node) -> None:
    """Make sure the (shared) dequantize of ``value`` comes before ``node``."""
    dq = value.producer
    assert dq is not None
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    if order[id(dq)] > order[id(node)]:
        graph.nodes.remove(dq)
        graph.insert_before(node, dq)


def _to_fp16(
    graph: Graph, node: Node, group_size: int, cache: dict[str, Value]
) -> LayerReport | None:
    if node.op not in FP16_OPS or len(node.inputs) < 2 or node.inputs[0].dtype != "f32":
        return None
    if graph.const_value(node.inputs[1]) is None:
        return None
    inputs = [_half(graph, v, node, cache) for v in node.inputs]
    attrs = dict(node.attrs)
    half = graph.add_node(
        node.op, inputs, attrs, names=[node.outputs[0].name + "_f16"], loc=node.loc, before=node
    )
    back = graph.add_node(
        "tensor.cast",
        [half.output],
        {"to": "f32"},
        names=[node.outputs[0].name + "_f32"],
        loc=node.loc,
        before=node,
    )
    graph.replace_all_uses(node.outputs[0], back.output)
    graph.remove(node)
    return LayerReport(node.loc or node.outputs[0].name, node.op, "fp16", "f16")


def _half(graph: Graph, value: Value, node: Node, cache: dict[str, Value]) -> Value:
    if value.name in cache:
        return cache[value.name]
    data = graph.const_value(value)
    if data is not None and value.producer is not None:
        check_finite(value.producer.attrs["ref"], data)
        half = data.astype(np.float16)
        new = graph.add_const(
            value.producer.attrs["ref"] + "_f16",
            half,
            TensorType("f16", value.type.shape),
            value.producer.loc,
        )
    else:
        new = graph.add_node(
            "tensor.cast",
            [value],
            {"to": "f16"},
            names=[value.name + "_f16"],
            loc=node.loc,
            before=node,
        ).output
    cache[value.name] = new
    return new
