"""The TVM rules of ``backends.tvm.lower_ops_b`` / ``lower_recurrent`` against the interpreter.

Two IR graphs, one TVM build each: the sequence/signal/bit ops together, and two recurrent
cells (a bidirectional LSTM with runtime sequence lengths, a batch-first GRU with custom
activations). Floats within 1e-5 (relative), integers exactly. Plus the refusals of the ops
whose result size depends on the data (no build).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.target import load_target
from tests.backends.tvm.helpers import mismatches, relative_errors

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(7)


def _compare(text: str, *inputs: np.ndarray) -> None:
    from backends.tvm import TvmBackend

    graph = parse(text)
    verify(graph)
    backend = TvmBackend()
    target = load_target("cpu")
    assert backend.unsupported(graph, target) == []
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    got, want = art.run(*inputs), interpret(graph, *inputs)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, (graph.outputs[i].name, a.shape)
        if a.dtype.kind == "f":
            assert np.array_equal(np.isnan(a), np.isnan(b)), graph.outputs[i].name
            assert relative_errors([np.nan_to_num(a)], [np.nan_to_num(b)])[0] <= 1e-5, i
        else:
            assert mismatches([a], [b]) == [0], graph.outputs[i].name


OPS_B = """
graph @ops_b(%s: f32[3,4], %f: f32[2,3], %seq: f32[4,2,3], %lens: i64[2], %cache: f32[2,5,3], %upd: f32[2,2,3], %at: i64[2], %sig: f32[2,6,2], %tok: i32[2,7], %img: f32[1,2,5,5], %d: f64[8,64]) -> (f32[3,1], f32[3], i32[2,3], f32[4,2,3], f32[2,5,3], f32[2,6,2], f32[2,10,1], f32[2,5], f32[1,2,3,3], i64[1,2,3,3], f64[8,64]) {
  %mx: f32[3,1] = math.reduce_max(%s) {axes=[-1], keepdims=true}
  %mn: f32[3] = math.reduce_min(%s) {axes=[1], keepdims=false}
  %bits: i32[2,3] = tensor.bitcast(%f) {to="i32"}
  %rev: f32[4,2,3] = tensor.reverse_sequence(%seq, %lens) {batch_axis=1, time_axis=0}
  %sc: f32[2,5,3] = tensor.tensor_scatter(%cache, %upd, %at) {mode="circular", axis=1}
  %ft: f32[2,6,2] = math.dft(%sig) {axis=1}
  %ir: f32[2,10,1] = math.dft(%sig) {axis=1, inverse=true, onesided=true}
  %tf: f32[2,5] = nn.tfidf(%tok) {min_n=1, max_n=2, max_skip=2, mode="TFIDF", counts=[0, 3], indexes=[0, 1, 2, 3, 4], pool=[2, 3, 5, 2, 3, 5, 4], weights=[1.0, 2.0, 3.0, 4.0, 5.0]}
  %mp: f32[1,2,3,3], %mi: i64[1,2,3,3] = nn.max_pool_argmax(%img) {kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], storage_order=1}
  %th: f64[8,64] = math.tanh(%d)
  return %mx, %mn, %bits, %rev, %sc, %ft, %ir, %tf, %mp, %mi, %th
}
"""  # noqa: E501


def test_sequence_signal_and_bit_ops() -> None:
    s = RNG.standard_normal((3, 4)).astype(np.float32)
    s[1] = -np.inf  # a fully masked row: max is -inf, not the lowest finite float
    s[2, 0] = np.inf
    img = RNG.standard_normal((1, 2, 5, 5)).astype(np.float32)
    img[0, 1, :2, :2] = 3.0  # ties: the first tap wins
    _compare(
        OPS_B,
        s,
        RNG.standard_normal((2, 3)).astype(np.float32),
        RNG.standard_normal((4, 2, 3)).astype(np.float32),
        np.asarray([3, 1], np.int64),
        RNG.standard_normal((2, 5, 3)).astype(np.float32),
        RNG.standard_normal((2, 2, 3)).astype(np.float32),
        np.asarray([4, 1], np.int64),  # the first wraps around the cache's end
        RNG.standard_normal((2, 6, 2)).astype(np.float32),
        np.asarray([[2, 3, 5, 4, 2, 3, 3], [5, 4, 5, 1, 2, 9, 3]], np.int32),
        img,
        np.linspace(-3, 3, 512).reshape(8, 64),  # vectorized float64 tanh: libm lane by lane
    )


RECURRENT = """
graph @cells(%x: f32[3,2,3], %w: f32[2,16,3], %r: f32[2,16,4], %b: f32[2,32], %lens: i32[2], %h0: f32[2,2,4], %c0: f32[2,2,4], %p: f32[2,12], %gx: f32[2,3,3], %gw: f32[1,12,3], %gr: f32[1,12,4], %gb: f32[1,24], %gl: i32[2], %gh: f32[2,1,4], %gp: f32[1,12]) -> (f32[3,2,2,4], f32[2,2,4], f32[2,2,4], f32[2,3,1,4], f32[2,1,4]) {
  %y: f32[3,2,2,4], %h: f32[2,2,4], %c: f32[2,2,4] = nn.recurrent(%x, %w, %r, %b, %lens, %h0, %c0, %p) {cell="lstm", hidden=4, direction="bidirectional"}
  %gy: f32[2,3,1,4], %gh2: f32[2,1,4], %gc: f32[2,1,4] = nn.recurrent(%gx, %gw, %gr, %gb, %gl, %gh, %gh, %gp) {cell="gru", hidden=4, direction="reverse", layout=1, linear_before_reset=true, activations=["HardSigmoid", "Softsign"], alphas=[0.3], betas=[0.4], clip=2.5}
  return %y, %h, %c, %gy, %gh2
}
"""  # noqa: E501


def test_recurrent_cells() -> None:
    def f32(*shape: int) -> np.ndarray:
        return (0.5 * RNG.standard_normal(shape)).astype(np.float32)

    _compare(
        RECURRENT,
        f32(3, 2, 3), f32(2, 16, 3), f32(2, 16, 4), f32(2, 32),
        np.asarray([3, 2], np.int32),  # the second sequence is one step short
        f32(2, 2, 4), f32(2, 2, 4), f32(2, 12),
        f32(2, 3, 3), f32(1, 12, 3), f32(1, 12, 4), f32(1, 24),
        np.asarray([1, 3], np.int32), f32(2, 1, 4), f32(1, 12),
    )  # fmt: skip


def test_data_dependent_shapes_are_refused_with_the_reason() -> None:
    from backends.tvm import TvmBackend

    graph = parse(
        """
graph @dd(%x: f32[6], %keep: bool[6]) -> (f32[unique'], f32[kept']) {
  %u: f32[unique'], %first: i64[unique'], %inv: i64[6], %n: i64[unique'] = tensor.unique(%x)
  %k: f32[kept'] = tensor.compress(%x, %keep)
  return %u, %k
}
"""
    )
    reasons = {u.op: u.reason for u in TvmBackend().unsupported(graph, load_target("cpu"))}
    assert set(reasons) == {"tensor.unique", "tensor.compress"}
    assert all("depends on the input values" in why for why in reasons.values())


def test_attention_with_a_scalar_or_per_key_mask() -> None:
    """A 0-d or 1-d mask (what constant folding leaves of a flex-attention score mod) is
    broadcast over the rows before the dead-row check (it reduced a 0-d tensor over axis -1)."""
    q = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    _compare("""
graph @scalar_mask(%q: f32[2,3,4], %m: bool[], %k: bool[3]) -> (f32[2,3,4], f32[2,3,4]) {
  %a: f32[2,3,4] = nn.attention(%q, %q, %q, %m)
  %b: f32[2,3,4] = nn.attention(%q, %q, %q, %k)
  return %a, %b
}""", q, np.array(True), np.array([True, False, True]))
