"""The slots each query keeps are listed once per step (``kernels_attention.slots_func``):
two layers that attend with one mask share one list, and each still gets its own answer."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.ir import parse

pytestmark = pytest.mark.tvm

#: Two layers of a prefill chunk (C = 4 queries, S = 6 cache slots, 2 KV heads of 2 query
#: heads, head size 16) reading one mask; the second layer attends to the first's output.
GRAPH = """graph @g(%q: f32[1,4,4,16], %pk0: f32[1,2,6,16], %nk0: f32[1,2,4,16], \
%pv0: f32[1,2,6,16], %nv0: f32[1,2,4,16], %pk1: f32[1,2,6,16], %pv1: f32[1,2,6,16], \
%m: bool[1,1,4,10]) -> (f32[1,4,4,16]) {
LAYER0
LAYER1
  return %y1
}"""
LAYER = """  %kI: f32[1,2,10,16] = tensor.concat(%pkI, NK) {axis=2}
  %vI: f32[1,2,10,16] = tensor.concat(%pvI, NV) {axis=2}
  %ka: f32[1,2,1,10,16] = tensor.unsqueeze(%kI) {axes=[2]}
  %kb: f32[1,2,2,10,16] = tensor.expand(%ka) {shape=[1, 2, 2, 10, 16]}
  %kc: f32[1,4,10,16] = tensor.reshape(%kb) {shape=[1, 4, 10, 16]}
  %va: f32[1,2,1,10,16] = tensor.unsqueeze(%vI) {axes=[2]}
  %vb: f32[1,2,2,10,16] = tensor.expand(%va) {shape=[1, 2, 2, 10, 16]}
  %vc: f32[1,4,10,16] = tensor.reshape(%vb) {shape=[1, 4, 10, 16]}
  %yI: f32[1,4,4,16] = nn.attention(QUERY, %kc, %vc, %m)"""


def _layer(i: int, query: str, nk: str, nv: str) -> str:
    text = LAYER.replace("%ka", f"%ka{i}").replace("%kb", f"%kb{i}").replace("%kc", f"%kc{i}")
    text = text.replace("%va", f"%va{i}").replace("%vb", f"%vb{i}").replace("%vc", f"%vc{i}")
    return text.replace("I", str(i)).replace("QUERY", query).replace("NK", nk).replace("NV", nv)


def test_layers_share_one_slot_list() -> None:
    text = GRAPH.replace("LAYER0", _layer(0, "%q", "%nk0", "%nv0"))
    # The second layer queries with the first layer's output, over its own cache.
    text = text.replace("LAYER1", _layer(1, "%y0", "%nk0", "%nv0"))
    graph = parse(text)
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(tuple(v.type.shape)).astype(np.float32) for v in graph.inputs[:-1]]
    mask = np.zeros((1, 1, 4, 10), bool)
    mask[..., :3] = True  # 3 cache slots in use
    mask[0, 0, :, 6:] = np.tril(np.ones((4, 4), bool))  # causal within the chunk
    mask[0, 0, 2, 1] = False  # a query that skips one cache slot
    (want,) = compiler.interpret(graph, *args, mask)
    art = compiler.compile(graph, target="cpu")
    kernels = art.summary["tapeout_kernels"]
    assert "prefill_attention x2" in kernels and "attention_slots x1" in kernels, kernels
    (got,) = art.run(*args, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
