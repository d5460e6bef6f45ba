"""quantize-llm: dense weights to block-quantized integers with int8 per-block activations.

Before::

    %h: f32[1,32,1536] = nn.dense(%x, %mlp.up_proj.weight)

After (``quantize-llm{weights=int4,group=32,sym=true}``)::

    %mlp.up_proj.weight_q: i4[1536,576] = const @mlp.up_proj.weight_q
    %mlp.up_proj.weight_d: f16[1536,18] = const @mlp.up_proj.weight_d
    %h: f32[1,32,1536] = q.block_dense(%x, %mlp.up_proj.weight_q, %mlp.up_proj.weight_d) {group=32}

``q.block_dense`` quantizes its input per row and per block of ``group`` to int8 and does the
dot products in integers (llama.cpp's Q8_0 activations: W8A8 for ``weights=int8``, W4A8 for
``weights=int4``); ``act_bits=16`` makes the codes 16-bit (two int8 planes per dot product:
W8A16/W4A16, nearly float accuracy). ``compiler.numerics.block_dense`` defines it bit for bit.

Policy. Only ``nn.dense`` (and ``nn.matmul`` by a constant ``[K, N]``) with a constant 2-D
float weight and no fused activation or residual is rewritten; a bias becomes a ``math.add``.
Embedding tables (``tensor.gather``) stay float: decoding reads one row per token, so
quantizing them saves no time. The LM head (a dense whose result is a graph output) takes
``lm_head``: ``int8`` (default: the logits are the most sensitive layer, as llama.cpp's
quantizers also keep it at 6-8 bits), ``same`` (the ``weights`` format) or ``f32``.
``blocks`` (Python API only) maps constant names to ``BlockWeight`` s taken as they are,
e.g. a GGUF file's own Q4_0/Q4_1/Q8_0 blocks: nothing is re-quantized, nothing is lost.
The pass must not fire on weights whose ``in_features`` the group does not divide: those
are declined with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from compiler.context import PassContext
from compiler.errors import TapeoutError
from compiler.frontends.gguf_blocks import BlockWeight
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import view_ops
from compiler.ir.types import TensorType
from compiler.numerics import ACT_LEVELS
from compiler.rewrite import Reject, RewritePass
from passes.quant.llm_smooth import smooth_llm
from passes.quant.llm_weights import FORMATS, quantize_blocks
from passes.quant.plan import matches

#: Ops whose result only moves data: a dense feeding an output through them is the LM head.
#: The views, and what exporters put after an LM head: the last position's slice, the cast
#: of the logits to f32 (not transpose or concat: a K/V projection reaches the present-key
#: output through those).
_MOVES = (*view_ops(), "tensor.slice", "tensor.cast")
LM_HEAD_POLICIES = ("int8", "same", "f32")


@dataclass(frozen=True)
class QuantizeLLM(RewritePass):
    """Block-quantize dense weights (see the module docstring)."""

    name: ClassVar[str] = "quantize-llm"
    weights: str = "int4"
    group: int = 32
    sym: bool = True
    lm_head: str = "int8"
    #: Activation codes per block: 8 (W8A8/W4A8, llama.cpp's Q8_0) or 16 (two int8 planes per
    #: dot product, ``compiler.numerics``: nearly float accuracy at about the same decode cost).
    act_bits: int = 8
    exclude: tuple[str, ...] = ()
    blocks: Mapping[str, BlockWeight] = field(default_factory=dict)
    #: Filled with each weight this pass quantized (by constant name): a second graph over
    #: the same weights (prefill and decode) then reuses them instead of quantizing again.
    cache: dict[str, BlockWeight] | None = None

    def __post_init__(self) -> None:
        if self.weights not in ("int4", "int8"):
            raise TapeoutError(f"quantize-llm: weights={self.weights!r} is not int4 or int8")
        if self.lm_head not in LM_HEAD_POLICIES:
            raise TapeoutError(f"quantize-llm: lm_head={self.lm_head!r} not in {LM_HEAD_POLICIES}")
        if self.act_bits not in ACT_LEVELS:
            raise TapeoutError(
                f"quantize-llm: act_bits={self.act_bits!r} not in {sorted(ACT_LEVELS)}"
            )

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op not in ("nn.dense", "nn.matmul") or matches(node, self.exclude):
            return None
        w = node.inputs[1]
        data = graph.const_value(w)
        if data is None or w.dtype != "f32" or data.ndim != 2:
            return None
        if node.op == "nn.dense" and (
            node.attrs.get("act", "none") != "none" or len(node.inputs) > 3
        ):
            return Reject("dense with a fused activation or residual")
        ref = w.producer.attrs["ref"] if w.producer is not None else w.name
        rows = data if node.op == "nn.dense" else data.T
        weight = self._weight(graph, node, ref, rows)
        if isinstance(weight, Reject) or weight is None:
            return weight
        _replace(graph, node, ref, weight, self.act_bits)
        return True

    def _weight(
        self, graph: Graph, node: Node, ref: str, rows: np.ndarray
    ) -> BlockWeight | Reject | None:
        if ref in self.blocks:
            return self.blocks[ref]
        if self.cache is not None and ref in self.cache:
            return self.cache[ref]
        fmt = FORMATS[(4 if self.weights == "int4" else 8, self.sym)]
        if _is_lm_head(graph, node):
            if self.lm_head == "f32":
                return None
            if self.lm_head == "int8":
                fmt = FORMATS[(8, self.sym)]
        if rows.shape[1] % self.group:
            return Reject(f"group {self.group} does not divide in_features {rows.shape[1]}")
        weight = quantize_blocks(rows, fmt, self.group, ref)
        if self.cache is not None:
            self.cache[ref] = weight
        return weight


def _is_lm_head(graph: Graph, node: Node) -> bool:
    value = node.outputs[0]
    outputs = {id(v) for v in graph.outputs}
    while id(value) not in outputs:
        if len(value.uses) != 1 or value.uses[0][0].op not in _MOVES:
            return False
        value = value.uses[0][0].outputs[0]
    return True


def _replace(graph: Graph, node: Node, ref: str, weight: BlockWeight, act_bits: int) -> None:
    """``node`` -> ``q.block_dense`` (+ ``math.add`` of its bias)."""
    n, k = weight.q.shape
    loc = node.loc
    q = graph.add_const(ref + "_q", weight.q, TensorType(weight.dtype, (n, k)), loc)
    scales: list[Value] = [_scale_const(graph, ref + "_d", weight.d, loc)]
    if weight.m is not None:
        scales.append(_scale_const(graph, ref + "_m", weight.m, loc))
    out = node.outputs[0]
    dense = graph.add_node(
        "q.block_dense",
        [node.inputs[0], q, *scales],
        {"group": weight.group, "act_bits": act_bits},
        names=[out.name + "_bq"],
        loc=loc,
        before=node,
    )
    result = dense.outputs[0]
    if node.op == "nn.dense" and len(node.inputs) > 2:
        result = graph.add_node(
            "math.add",
            [result, node.inputs[2]],
            {},
            names=[out.name + "_b"],
            loc=loc,
            before=node,
        ).outputs[0]
    graph.replace_all_uses(out, result)
    graph.remove(node)


def _scale_const(graph: Graph, hint: str, data: np.ndarray, loc: str | None) -> Value:
    dtype = "f16" if data.dtype == np.float16 else "f32"
    store = data.astype(np.float16 if dtype == "f16" else np.float32)
    return graph.add_const(hint, store, TensorType(dtype, tuple(store.shape)), loc)


def quantize_llm_graphs(
    graphs: Any,
    awq: bool = False,
    calib: Sequence[Sequence[int]] = (),
    **options: Any,
) -> dict[str, float | None]:
    """Run ``quantize-llm`` over an LLM's prefill and decode graphs and their shared weights.

    ``graphs``: ``compiler.llm.LLMGraphs`` (``prefill``, ``decode``, ``weights``), as
    ``compile_llm(..., rewrite=...)`` hands it over; ``options`` are ``QuantizeLLM`` fields.
    Each weight is quantized once; the new constants replace the old ones in ``weights``.
    ``awq=True`` first searches activation-aware channel scales on the token-id prompts
    ``calib`` and folds them into the float weights (``passes.quant.llm_smooth``); the
    alpha it chose per smoothed value is returned (empty without ``awq``).
    """
    chosen: dict[str, float | None] = {}
    if awq:
        if not calib:
            raise TapeoutError("quantize-llm: awq=true needs calibration prompts (calib=)")
        if options.get("blocks"):
            raise TapeoutError("quantize-llm: awq cannot change weights taken as blocks")
        probe = QuantizeLLM(**options)
        fmt = FORMATS[(4 if probe.weights == "int4" else 8, probe.sym)]
        chosen = smooth_llm(graphs, calib, fmt, probe.group)
    cache: dict[str, BlockWeight] = {}
    quantize = QuantizeLLM(**options, cache=cache)
    for graph in (graphs.prefill, graphs.decode):
        quantize.run(graph, PassContext())
    used = {name for graph in (graphs.prefill, graphs.decode) for name in graph.constants}
    for graph in (graphs.prefill, graphs.decode):
        for name, data in graph.constants.items():
            graphs.weights[name] = graphs.weights.get(name, data)
        # Both graphs must hold the very same arrays for the constants they share.
        graph.constants = {name: graphs.weights[name] for name in graph.constants}
    for name in list(graphs.weights):
        if name not in used:
            del graphs.weights[name]
    return chosen
