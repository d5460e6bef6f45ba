"""The cpu target's decode-step attention kernel (``backends/tvm/kernels_attention.py``):
the cache read in place, masked slots skipped, against the interpreter's concat + attention."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.errors import BackendError
from compiler.ir import parse

pytestmark = pytest.mark.tvm

#: One decode step of a layer: 1 query token, ``S`` cache slots plus the new one, GQA or not.
STEP = """graph @g(%q: f32[2,H,1,16], %pk: f32[2,2,6,16], %nk: f32[2,2,1,16], \
%pv: f32[2,2,6,16], %nv: f32[2,2,1,16], %m: bool[MB,1,1,7]) -> (f32[2,H,1,16]) {
  %k: f32[2,2,7,16] = tensor.concat(%pk, %nk) {axis=2}
  %v: f32[2,2,7,16] = tensor.concat(%pv, %nv) {axis=2}
REPEAT
  %y: f32[2,H,1,16] = nn.attention(%q, KEYS, VALUES, %m)
  return %y
}"""
REPEAT_KV = """  %k1: f32[2,2,1,7,16] = tensor.unsqueeze(%k) {axes=[2]}
  %k2: f32[2,2,2,7,16] = tensor.expand(%k1) {shape=[2, 2, 2, 7, 16]}
  %k3: f32[2,4,7,16] = tensor.reshape(%k2) {shape=[2, 4, 7, 16]}
  %v1: f32[2,2,1,7,16] = tensor.unsqueeze(%v) {axes=[2]}
  %v2: f32[2,2,2,7,16] = tensor.expand(%v1) {shape=[2, 2, 2, 7, 16]}
  %v3: f32[2,4,7,16] = tensor.reshape(%v2) {shape=[2, 4, 7, 16]}"""


def _step(grouped: bool, mask_batch: int) -> tuple:
    heads = 4 if grouped else 2
    text = STEP.replace("H", str(heads)).replace("MB", str(mask_batch))
    text = text.replace("REPEAT\n", REPEAT_KV + "\n" if grouped else "")
    keys, values = ("%k3", "%v3") if grouped else ("%k", "%v")
    text = text.replace("KEYS", keys).replace("VALUES", values)
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, heads, 1, 16)).astype(np.float32)
    pk, pv = (rng.standard_normal((2, 2, 6, 16)).astype(np.float32) for _ in range(2))
    nk, nv = (rng.standard_normal((2, 2, 1, 16)).astype(np.float32) for _ in range(2))
    mask = np.zeros((mask_batch, 1, 1, 7), bool)
    mask[0, ..., 2:5] = True  # used slots in the middle of the cache
    mask[0, ..., 6] = mask_batch == 1  # the new token's slot: seen in one case, masked in the other
    if mask_batch > 1:
        mask[1] = False  # a padding row: sees no slot at all
    # Masked slots hold garbage the kernel must never let through (a stale or unused slot).
    pk[..., 5, :] = pv[..., 5, :] = np.nan
    return parse(text), (q, pk, nk, pv, nv, mask)


@pytest.mark.parametrize(
    ("grouped", "mask_batch", "exec_mode"),
    [(True, 2, "bytecode"), (False, 1, "compiled")],
)
def test_decode_attention_reads_the_cache_in_place(
    grouped: bool, mask_batch: int, exec_mode: str
) -> None:
    graph, args = _step(grouped, mask_batch)
    ok = args[-1].copy()
    ok_args = (*args[:1], *(np.nan_to_num(a) for a in args[1:5]), ok)
    (want,) = compiler.interpret(graph, *ok_args)
    art = compiler.compile(graph, target="cpu", exec_mode=exec_mode)
    assert "decode_attention x1" in art.summary["tapeout_kernels"]
    (got,) = art.run(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if mask_batch > 1:
        np.testing.assert_array_equal(got[1], 0.0)


def test_unknown_exec_mode_is_refused() -> None:
    graph, _ = _step(False, 1)
    with pytest.raises(BackendError, match="exec_mode='jit'"):
        compiler.compile(graph, target="cpu", exec_mode="jit")
