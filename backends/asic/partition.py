"""Partition a quantized graph between the NPU and the host CPU, and estimate NPU cycles.

Bring-your-own-codegen style: every node that the accelerator can run (an int8 conv2d or
dense with constant int8 weights and int32 bias, ReLU or no activation, one group, an op
named in the target's ``supported_ops``) becomes a call into ``npu_runtime.h``; a
``q.requantize`` with power-of-two scales (multiplier 1: a rounding shift) that is the only
user of such a node runs in the NPU's output stage. Everything else runs on the host.

Cycle model of the weight-stationary ``rows x cols`` array, for a layer that is the matrix
product ``[M x K] x [K x N]`` (M output pixels or rows, K the reduction, N output channels)::

    tiles  = ceil(K / rows) * ceil(N / cols)
    cycles = tiles * (M + rows + cols)          (M rows stream through; fill and drain)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from compiler.ir.graph import Graph, Node
from compiler.ir.op_facts import gemm_shape
from compiler.ir.ops_nn import spatial_params


@dataclass
class NpuLayer:
    """One accelerator call: the node, the requantize fused into it, and its cost."""

    node: Node
    kind: str  # "conv2d" or "dense"
    requantize: Node | None
    m: int
    k: int
    n: int
    tiles: int
    cycles: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n


def offload_reason(graph: Graph, node: Node, asic: Any) -> str | None:
    """None when the NPU (a target's ``AsicLimits``) can run ``node``, else why not."""
    if node.op not in asic.supported_ops or node.op not in ("nn.conv2d", "nn.dense"):
        return f"{node.op} is not an NPU op"
    x, w = node.inputs[0], node.inputs[1]
    if x.dtype != "i8" or w.dtype != "i8" or graph.const_value(w) is None:
        return "the NPU takes int8 activations and constant int8 weights"
    if len(node.inputs) > 2 and (
        node.inputs[2].dtype != "i32" or graph.const_value(node.inputs[2]) is None
    ):
        return "the bias must be a constant int32"
    if len(node.inputs) > 3:
        return "a residual operand is added on the host"
    acc = asic.accumulator_dtype
    if (node.attrs.get("acc") or "i32") != acc or node.outputs[0].dtype != acc:
        return f"the NPU accumulates in {acc}"
    if node.attrs.get("act", "none") not in asic.fused_activations:
        return f"activation {node.attrs.get('act')} is not in the NPU's output stage"
    if int(node.attrs.get("groups", 1)) != 1:
        return "grouped convolution"
    return None


def fusable_requantize(graph: Graph, node: Node) -> Node | None:
    """The power-of-two requantize that may run in the NPU's output stage, if any."""
    out = node.outputs[0]
    if any(v is out for v in graph.outputs) or len(out.uses) != 1:
        return None
    user = out.uses[0][0]
    if user.op != "q.requantize" or user.attrs.get("dtype") != "i8":
        return None
    if any(int(m) != 1 for m in user.attrs["multiplier"]):
        return None
    qp = user.outputs[0].type.quant
    if qp is not None and (qp.axis is not None or len(qp.zero_point) != 1):
        return None
    return user


def estimate(m: int, k: int, n: int, rows: int, cols: int) -> tuple[int, int]:
    tiles = math.ceil(k / rows) * math.ceil(n / cols)
    return tiles, tiles * (m + rows + cols)


def partition(graph: Graph, asic: Any) -> dict[int, NpuLayer]:
    """NPU layers by ``id(node)``; requantize nodes fused into them are keyed by their own
    id too, pointing at the same layer."""
    layers: dict[int, NpuLayer] = {}
    for node in graph.nodes:
        if offload_reason(graph, node, asic) is not None:
            continue
        m, k, n = gemm_shape(node)
        tiles, cycles = estimate(m, k, n, asic.array_rows, asic.array_cols)
        layer = NpuLayer(
            node, node.op.split(".")[1], fusable_requantize(graph, node), m, k, n, tiles, cycles
        )
        layers[id(node)] = layer
        if layer.requantize is not None:
            layers[id(layer.requantize)] = layer
    return layers


def conv_geometry(node: Node) -> dict[str, int]:
    """The fields of ``npu_conv_params`` / ``host_conv2d_i8`` for a conv2d node."""
    strides, pads, dil = spatial_params(node.attrs, 2)
    w = [int(d) for d in node.inputs[1].type.shape]
    return {
        "kernel_h": w[2],
        "kernel_w": w[3],
        "stride_h": strides[0],
        "stride_w": strides[1],
        "pad_top": pads[0],
        "pad_left": pads[1],
        "pad_bottom": pads[2],
        "pad_right": pads[3],
        "dilation_h": dil[0],
        "dilation_w": dil[1],
    }
