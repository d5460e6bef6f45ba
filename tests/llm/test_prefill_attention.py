"""The cpu target's prefill-chunk attention kernel (``backends/tvm/kernels_attention.py``):
a chunk of queries against the cache where it lies plus the chunk's own keys, against the
interpreter's concat + attention."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.ir import parse

pytestmark = pytest.mark.tvm

B, KV, S, C = 2, 2, 6, 4  # a chunk shorter than the cache

#: One prefill chunk of a layer: C query tokens over S cache slots plus the chunk's own.
CHUNK = """graph @g(%q: f32[2,H,4,D], %pk: f32[2,2,6,D], %nk: f32[2,2,4,D], \
%pv: f32[2,2,6,D], %nv: f32[2,2,4,D], %m: bool[MASK]) -> (f32[2,H,4,D]) {
  %k: f32[2,2,10,D] = tensor.concat(%pk, %nk) {axis=2}
  %v: f32[2,2,10,D] = tensor.concat(%pv, %nv) {axis=2}
REPEAT
  %y: f32[2,H,4,D] = nn.attention(%q, KEYS, VALUES, %m) {causal=CAUSAL}
  return %y
}"""
REPEAT_KV = """  %k1: f32[2,2,1,10,D] = tensor.unsqueeze(%k) {axes=[2]}
  %k2: f32[2,2,3,10,D] = tensor.expand(%k1) {shape=[2, 2, 3, 10, D]}
  %k3: f32[2,6,10,D] = tensor.reshape(%k2) {shape=[2, 6, 10, D]}
  %v1: f32[2,2,1,10,D] = tensor.unsqueeze(%v) {axes=[2]}
  %v2: f32[2,2,3,10,D] = tensor.expand(%v1) {shape=[2, 2, 3, 10, D]}
  %v3: f32[2,6,10,D] = tensor.reshape(%v2) {shape=[2, 6, 10, D]}"""


def _chunk_mask() -> np.ndarray:
    """[B, 1, C, S + C] as the LLM step graphs build it: row 0 has 3 tokens in its cache and a
    full chunk; row 1 is left-padded (an empty cache, the chunk's first 2 tokens padding, so
    its first 2 queries see nothing)."""
    valid = np.zeros((B, S + C), bool)
    valid[0, :3] = valid[0, S:] = True
    valid[1, S + 2 :] = True
    causal = np.tril(np.ones((C, C), bool))
    old = np.broadcast_to(valid[:, None, None, :S], (B, 1, C, S))
    new = causal[None, None] & valid[:, None, None, S:]
    return np.concatenate([old, new], axis=-1)


def _chunk(grouped: bool, dim: int, causal: bool) -> tuple:
    heads = 6 if grouped else 2
    mask_shape = "1,1,1,10" if causal else "2,1,4,10"
    text = CHUNK.replace("MASK", mask_shape).replace("H", str(heads)).replace("D", str(dim))
    text = text.replace("CAUSAL", str(causal).lower())
    text = text.replace("REPEAT\n", REPEAT_KV.replace("D", str(dim)) + "\n" if grouped else "")
    keys, values = ("%k3", "%v3") if grouped else ("%k", "%v")
    text = text.replace("KEYS", keys).replace("VALUES", values)
    rng = np.random.default_rng(5)
    q = rng.standard_normal((B, heads, C, dim)).astype(np.float32)
    pk, pv = (rng.standard_normal((B, KV, S, dim)).astype(np.float32) for _ in range(2))
    nk, nv = (rng.standard_normal((B, KV, C, dim)).astype(np.float32) for _ in range(2))
    if causal:  # one mask for every row and query; the causal attribute does the rest
        mask = np.ones((1, 1, 1, S + C), bool)
        mask[..., 2:S] = False
    else:
        mask = _chunk_mask()
    # Unused cache slots hold garbage the kernel must never let through.
    pk[:, :, 3:] = pv[:, :, 3:] = np.nan
    return parse(text), (q, pk, nk, pv, nv, mask)


@pytest.mark.parametrize(
    ("grouped", "dim", "causal", "exec_mode"),
    [(True, 32, False, "compiled"), (False, 24, True, "bytecode")],
)
def test_prefill_attention_reads_the_cache_in_place(
    grouped: bool, dim: int, causal: bool, exec_mode: str
) -> None:
    graph, args = _chunk(grouped, dim, causal)
    ok_args = (args[0], *(np.nan_to_num(a) for a in args[1:5]), args[5])
    (want,) = compiler.interpret(graph, *ok_args)
    assert np.isfinite(want).all()
    art = compiler.compile(graph, target="cpu", exec_mode=exec_mode)
    assert "prefill_attention x1" in art.summary["tapeout_kernels"]
    (got,) = art.run(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if not causal:  # row 1's padding queries see no slot at all
        np.testing.assert_array_equal(got[1, :, :2], 0.0)
        assert np.abs(got[1, :, 2:]).max() > 0
