"""The one rule table of the ONNX exporter: IR op -> ``Rule`` (``compiler.rules``).

``check(node, opset)`` says why a node cannot be exported (or None); ``lower(node, emitter)``
emits its ONNX nodes. ``quant_transparent`` ops move or select values without computing new
ones: on quantized tensors they are written DequantizeLinear -> op -> QuantizeLinear.
Adding an op means adding one entry here; a test checks the table against the op table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backends.onnx import rules_llm as llm
from backends.onnx import rules_math as m
from backends.onnx import rules_nn as nn
from backends.onnx import rules_quant as q
from backends.onnx import rules_tensor as t
from backends.onnx.emitter import ONNX_DTYPES, Emitter
from compiler.errors import Unsupported
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import OPS
from compiler.ir.ops_extra import extra_ops
from compiler.rules import Rule as SharedRule
from compiler.rules import unsupported_nodes as walk


@dataclass(frozen=True)
class Rule(SharedRule[int, Emitter]):
    """An export rule: ``check(node, opset)``, ``lower(node, emitter) -> results``."""

    quant_transparent: bool = False


_RULES: dict[str, Rule] = {
    **{op: Rule(m.binary(onnx_op)) for op, onnx_op in m.BINARY.items()},
    **{op: Rule(m.unary(onnx_op)) for op, onnx_op in m.UNARY.items()},
    **{op: Rule(m.reduce(onnx_op)) for op, onnx_op in m.REDUCE.items()},
    "math.mod": Rule(m.lower_mod),
    "math.rsqrt": Rule(m.lower_rsqrt),
    "math.argmax": Rule(m.lower_argmax),
    "math.cumsum": Rule(m.lower_cumsum),
    "nn.relu6": Rule(m.lower_relu6),
    "nn.clip": Rule(m.lower_clip),
    "nn.leaky_relu": Rule(m.lower_leaky_relu),
    "nn.hardsigmoid": Rule(m.lower_hardsigmoid),
    "nn.silu": Rule(m.lower_silu),
    "nn.gelu": Rule(m.lower_gelu),
    "nn.softmax": Rule(m.lower_softmax),
    "nn.log_softmax": Rule(m.lower_softmax),
    "nn.layer_norm": Rule(m.lower_layer_norm, m.check_layer_norm),
    "nn.batch_norm": Rule(m.lower_batch_norm),
    "nn.lrn": Rule(m.lower_lrn),
    "tensor.where": Rule(m.lower_where),
    "tensor.cast": Rule(m.lower_cast),
    # convolution, dense, pooling, attention
    "nn.conv1d": Rule(nn.lower_conv, nn.check_integer),
    "nn.conv2d": Rule(nn.lower_conv, nn.check_integer),
    "nn.conv_transpose2d": Rule(nn.lower_conv_transpose),
    "nn.dense": Rule(nn.lower_dense, nn.check_integer),
    "nn.matmul": Rule(nn.lower_matmul, nn.check_integer),
    "nn.max_pool2d": Rule(nn.lower_max_pool, quant_transparent=True),
    "nn.avg_pool2d": Rule(nn.lower_avg_pool),
    "nn.global_avg_pool": Rule(nn.lower_global_pool),
    "nn.global_max_pool": Rule(nn.lower_global_pool, quant_transparent=True),
    "nn.adaptive_avg_pool2d": Rule(nn.lower_adaptive_avg_pool, nn.check_adaptive_avg_pool),
    "nn.resize": Rule(nn.lower_resize, quant_transparent=True),
    "nn.attention": Rule(nn.lower_attention, nn.check_attention),
    # data movement
    "tensor.reshape": Rule(t.lower_reshape, quant_transparent=True),
    "tensor.flatten": Rule(t.lower_flatten, quant_transparent=True),
    "tensor.transpose": Rule(t.lower_transpose, quant_transparent=True),
    "tensor.concat": Rule(t.lower_concat, quant_transparent=True),
    "tensor.split": Rule(t.lower_split, quant_transparent=True),
    "tensor.slice": Rule(t.lower_slice, quant_transparent=True),
    "tensor.squeeze": Rule(t.lower_squeeze, quant_transparent=True),
    "tensor.unsqueeze": Rule(t.lower_unsqueeze, quant_transparent=True),
    "tensor.expand": Rule(t.lower_expand, quant_transparent=True),
    "tensor.gather": Rule(t.lower_gather, quant_transparent=True),
    "tensor.gather_elements": Rule(t.lower_gather_elements),
    "tensor.pad": Rule(t.lower_pad, quant_transparent=True),
    "tensor.shape": Rule(t.lower_shape),
    "tensor.range": Rule(t.lower_range, t.check_range),
    # constants and quantization
    "const": Rule(q.lower_const),
    "q.quantize": Rule(q.lower_quantize),
    "q.dequantize": Rule(q.lower_dequantize),
    "q.requantize": Rule(q.lower_requantize),
    "q.add": Rule(q.lower_qadd),
    "q.avg_pool2d": Rule(q.lower_qavg_pool),
    "q.global_avg_pool": Rule(q.lower_qglobal_avg_pool, q.check_qglobal_avg_pool),
    "q.block_dense": Rule(llm.lower_block_dense),
}

# tensor.identity and nn.dropout move values too.
for _op in ("tensor.identity", "nn.dropout"):
    _RULES[_op] = Rule(_RULES[_op].lower, quant_transparent=True)

#: IR ops (from ``compiler.ir.ops_more``) the exporter does not write yet: each has a rule
#: whose check refuses the node with this reason, so ``unsupported`` lists them cleanly.
NOT_EXPORTED: frozenset[str] = frozenset(
    {
        "math.reduce", "tensor.scatter_elements", "tensor.scatter_nd", "tensor.trilu",
        "math.topk", "math.einsum", "nn.rms_norm",
        "math.bitshift", "math.floor_mod", "nn.nll_loss", "nn.resize_linear", "math.ceil",
        "math.floor", "math.round", "math.sign", "math.tan", "math.asin", "math.acos",
        "math.atan", "math.sinh", "math.cosh", "math.asinh", "math.acosh", "math.atanh",
        "math.bitwise_not", "math.bitwise_and", "math.bitwise_or", "math.bitwise_xor",
        "q.softmax", "q.layernorm",
        # compiler/ir/ops_dynamic.py: shapes decided by runtime operands
        "tensor.reshape_dyn", "tensor.expand_dyn", "tensor.slice_dyn", "tensor.split_dyn",
        "tensor.squeeze_dyn", "tensor.unsqueeze_dyn", "tensor.tile_dyn", "tensor.pad_dyn",
        "tensor.range_dyn", "tensor.constant_of_shape", "tensor.one_hot", "nn.resize_dyn",
    }
) | extra_ops()  # fmt: skip


def _not_exported(node: Node, opset: int) -> str | None:
    return f"{node.op} has no ONNX export rule yet"


def _never(node: Node, em: Emitter) -> list:
    raise AssertionError(f"{node.op} is refused by its check and never lowered")


for _op in NOT_EXPORTED:
    _RULES.setdefault(_op, Rule(_never, _not_exported))

#: The table, restricted to ops the IR defines (a test checks that it covers all of them).
RULES: dict[str, Rule] = {op: rule for op, rule in _RULES.items() if op in OPS}


def check_node(node: Node, opset: int) -> str | None:
    """Why ``node`` cannot be exported at ``opset``, or None."""
    rule = RULES.get(node.op)
    if rule is None:
        return NO_RULE
    return _guard(node, rule, opset) or rule.reason(node, opset)


#: What ``unsupported`` says of an op without a rule.
NO_RULE = "no ONNX lowering rule"


def _guard(node: Node, rule: SharedRule[int, Emitter], opset: int) -> str | None:
    """The check every export rule shares: the operand and result types ONNX can hold (a
    type the exporter cannot declare, float8, int2, ..., refuses the node reading or making
    it)."""
    odd = [v.dtype for v in (*node.inputs, *node.outputs) if v.dtype not in ONNX_DTYPES]
    if odd:
        return f"dtype {odd[0]} has no ONNX export type"
    return q.check_types(node, opset)


def unsupported_nodes(
    graph: Graph, opset: int, also: Callable[[Node], str | None] | None = None
) -> list[Unsupported]:
    """Every node the exporter cannot write at ``opset`` (the shared walker of
    ``compiler.rules``), each with its reason; ``also`` adds the limits of a backend that
    reads the exported model (TensorRT), asked only of nodes the exporter takes."""
    if also is None:
        return walk(graph, opset, RULES, NO_RULE, guard=_guard)

    def guard(node: Node, rule: SharedRule[int, Emitter], opset: int) -> str | None:
        return _guard(node, rule, opset) or rule.reason(node, opset) or also(node)

    return walk(graph, opset, RULES, NO_RULE, guard=guard)
