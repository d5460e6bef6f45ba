"""Activation-aware smoothing of an LLM's dense inputs (AWQ / SmoothQuant style).

For the denses that read one value ``x``, scaling ``x``'s channels by ``1/s`` and the
denses' weight columns by ``s`` leaves the float model as it is::

    (x / s) @ (W * s).T == x @ W.T

and the division folds into what made ``x``, so no op is added:

* ``x = c * n`` with ``c`` a per-channel constant (an RMSNorm / LayerNorm weight): ``c / s``;
* ``x = a * (y @ U.T)`` (the gated MLP's ``silu(gate) * up``): the rows of ``U`` over ``s``.

The scales move quantization difficulty between the int8 per-block activations of
``q.block_dense`` and its block weights. ``s = amax ** alpha / wmax ** (1 - alpha)`` per
channel (``amax``: the largest ``|x|`` seen on calibration prompts; ``wmax``: the largest
weight of that column), with ``alpha`` searched per group on a grid for the least squared
error of the quantized denses on those activations (weights as ``quantize_blocks`` makes
them, activations as ``numerics.quantize_act_blocks``). ``s = 1`` is a candidate, so a
group is never made worse on its calibration data. The LM head (whose weight the embedding
table shares when tied) is left alone. The IR and its integer semantics are unchanged:
only constants are replaced (in both graphs, by name, so they stay shared).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.errors import TapeoutError
from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Node, Value
from compiler.numerics import quantize_act_blocks
from passes.quant.llm_weights import quantize_blocks

log = logging.getLogger(__name__)

#: The alpha grid of the search (None: no smoothing).
ALPHAS: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: Calibration rows kept per group (evenly spaced): enough for stable squared errors.
MAX_ROWS = 256


@dataclass(frozen=True)
class SmoothGroup:
    """Denses reading one value ``x`` and where ``x``'s channel scale folds."""

    x: Value
    weights: tuple[str, ...]  # constant names of the denses' [N, K] weights
    fold: str  # constant name: the per-channel vector, or the producing dense's weight
    rows: bool  # True: fold into ``fold``'s rows (a dense), False: into a vector


def _const_ref(graph: Graph, value: Value) -> str | None:
    node = value.producer
    if node is None or node.op != "const" or graph.const_value(value) is None:
        return None
    ref: str = node.attrs["ref"]
    return ref


def _const_uses(graph: Graph) -> Counter[str]:
    """How many operands read each constant (over every const node naming it)."""
    uses: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op == "const":
            uses[node.attrs["ref"]] += len(node.outputs[0].uses)
    return uses


def _dense_weight(graph: Graph, node: Node) -> str | None:
    """The constant [N, K] f32 weight name of a plain ``nn.dense`` (None otherwise)."""
    if node.op != "nn.dense" or len(node.inputs) != 2 or node.attrs.get("act", "none") != "none":
        return None
    ref = _const_ref(graph, node.inputs[1])
    data = None if ref is None else graph.constants[ref]
    return ref if data is not None and data.ndim == 2 and data.dtype == np.float32 else None


def _fold_target(graph: Graph, x: Value, k: int) -> tuple[str, bool] | None:
    """Where ``x``'s channel scale can fold: a [K] constant factor, or a dense's rows."""
    node = x.producer
    if node is None or node.op != "math.mul" or len(node.inputs) != 2:
        return None
    for operand in node.inputs:
        ref = _const_ref(graph, operand)
        if ref is not None and graph.constants[ref].shape == (k,) and len(operand.uses) == 1:
            return ref, False
        producer = operand.producer
        if producer is not None and len(operand.uses) == 1 and operand.shape == x.shape:
            weight = _dense_weight(graph, producer)
            if weight is not None and len(producer.inputs[1].uses) == 1:
                return weight, True
    return None


def smooth_groups(graph: Graph) -> list[SmoothGroup]:
    """Every value read only by plain denses whose channel scale can fold (graph order)."""
    groups = []
    uses = _const_uses(graph)
    for node in graph.nodes:
        for x in node.outputs:
            if not x.uses or x.shape[-1:] == () or not isinstance(x.shape[-1], int):
                continue
            weights = [_dense_weight(graph, user) for user, _ in x.uses]
            if any(w is None or uses[w] != 1 for w in weights):
                continue
            fold = _fold_target(graph, x, x.shape[-1])
            if fold is not None and uses[fold[0]] == 1:
                names = tuple(dict.fromkeys(w for w in weights if w is not None))
                groups.append(SmoothGroup(x, names, fold[0], fold[1]))
    return groups


def collect_inputs(
    graphs: Any, prompts: Sequence[Sequence[int]], groups: list[SmoothGroup]
) -> list[np.ndarray]:
    """The float prefill graph run on ``prompts``: each group's ``x`` rows [R, K]."""
    from compiler.llm.runtime import Batch

    index = {id(g.x): i for i, g in enumerate(groups)}
    seen: list[list[np.ndarray]] = [[] for _ in groups]

    def observe(node: Node, outs: list[np.ndarray]) -> None:
        for value, arr in zip(node.outputs, outs, strict=True):
            if id(value) in index:
                seen[index[id(value)]].append(arr.reshape(-1, arr.shape[-1]))

    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        return interpret(graphs.prefill, *inputs, observe=observe)

    spec, chunk = graphs.spec, graphs.spec.prefill_len
    batch = graphs.batch
    for prompt in prompts:
        state = Batch(spec, batch)
        usable = list(prompt)[: spec.max_context // chunk * chunk]
        for start in range(0, len(usable) - chunk + 1, chunk):
            ids = np.tile(np.asarray(usable[start : start + chunk], np.int64), (batch, 1))
            pos = np.tile(np.arange(start, start + chunk, dtype=np.int64), (batch, 1))
            state.step(run, ids, pos, np.ones((batch, chunk), np.int64))
    if not seen or not seen[0]:
        raise TapeoutError(
            f"awq: no calibration prompt holds a full prefill chunk of {chunk} tokens"
        )
    out = []
    for rows in seen:
        x = np.concatenate(rows)
        out.append(x[np.linspace(0, len(x) - 1, min(MAX_ROWS, len(x))).astype(int)])
    return out


def _quantized_error(
    x: np.ndarray, weights: list[np.ndarray], s: np.ndarray, fmt: str, group: int
) -> float:
    """Squared error of the block-quantized denses on ``x`` smoothed by ``s``."""
    qx, dx = quantize_act_blocks(x / s, group)
    xq = (qx.reshape(len(x), -1, group) * dx[..., None]).reshape(x.shape)
    err = 0.0
    for w in weights:
        wq = quantize_blocks(w * s, fmt, group).dequantize()
        err += float(((xq @ wq.T - x @ w.T) ** 2).sum())
    return err


def _scales(x: np.ndarray, weights: list[np.ndarray], alpha: float | None) -> np.ndarray:
    if alpha is None:
        return np.ones(x.shape[1], np.float32)
    amax = np.maximum(np.abs(x).max(axis=0), 1e-5)
    wmax = np.maximum(np.abs(np.concatenate(weights)).max(axis=0), 1e-5)
    s = amax**alpha / wmax ** (1 - alpha)
    # Scale-free: centred on 1 (geometric mean of the extremes) so neither side overflows.
    return (s / np.sqrt(s.max() * s.min())).astype(np.float32)


def smooth_llm(
    graphs: Any, prompts: Sequence[Sequence[int]], fmt: str, group: int
) -> dict[str, float | None]:
    """Search and fold the scales of every group of ``graphs.prefill`` (see the module
    docstring) into the constants of both graphs; the chosen alpha per group's ``x``."""
    groups = [g for g in smooth_groups(graphs.prefill) if g.x.shape[-1] % group == 0]
    inputs = collect_inputs(graphs, prompts, groups)
    chosen: dict[str, float | None] = {}
    for grp, x in zip(groups, inputs, strict=True):
        weights = [graphs.weights[name] for name in grp.weights]
        best = min(
            ALPHAS,
            key=lambda a: _quantized_error(x, weights, _scales(x, weights, a), fmt, group),
        )
        chosen[grp.x.name] = best
        if best is None:
            continue
        s = _scales(x, weights, best)
        new = {name: (graphs.weights[name] * s).astype(np.float32) for name in grp.weights}
        old = graphs.weights[grp.fold]
        new[grp.fold] = (old / (s[:, None] if grp.rows else s)).astype(np.float32)
        _replace_constants(graphs, new)
    log.info("awq: alpha per group %s", chosen)
    return chosen


def _replace_constants(graphs: Any, new: dict[str, np.ndarray]) -> None:
    """New arrays for named constants in both graphs and the shared dict (never in place)."""
    for name, data in new.items():
        graphs.weights[name] = data
        for graph in graphs.graphs:
            if name in graph.constants:
                graph.constants[name] = data
