"""recognize-attention: the written-out scaled dot-product attention -> nn.attention."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import print_graph
from tests.passes.ir_cases import (
    assert_same_outputs,
    check_rewrite,
    check_unchanged,
    expected,
    graph_from,
    rejections,
    run_passes,
)

L = 8
CONSTS = {
    "scale": np.float32(0.25),
    "root_d": np.float32(4.0),
    "ninf": np.float32(-np.inf),
    "future": np.triu(np.ones((L, L), dtype=bool), k=1),
    "causal_add": np.where(np.tril(np.ones((1, 1, L, L), dtype=bool)), 0.0, -np.inf),
}
DECLS = """
      %scale: f32[] = const @scale
      %root_d: f32[] = const @root_d
      %ninf: f32[] = const @ninf
      %future: bool[8,8] = const @future
      %causal_add: f32[1,1,8,8] = const @causal_add
"""
QKV = "%q: f32[1,4,8,16], %k: f32[1,4,8,16], %v: f32[1,4,8,16]"

#: Masking of %ss (the scaled scores) into %m.
MASKS = {
    "masked_fill-of-constant-buffer": "%m: f32[1,4,8,8] = tensor.where(%future, %ninf, %ss)",
    "additive-constant": "%m: f32[1,4,8,8] = math.add(%ss, %causal_add)",
}


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_causal_gpt_attention(mask: str) -> None:
    before = f"""
    graph @g({QKV}) -> (f32[1,4,8,16]) {{
      {DECLS}
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %ss: f32[1,4,8,8] = math.mul(%s, %scale)
      {MASKS[mask]}
      %p: f32[1,4,8,8] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v) loc("attn")
      return %y
    }}
    """
    after = f"""
    graph @g({QKV}) -> (f32[1,4,8,16]) {{
      %y: f32[1,4,8,16] = nn.attention(%q, %k, %v) {{causal=true, scale=0.25}} loc("attn")
      return %y
    }}
    """
    check_rewrite("recognize-attention", before, after, CONSTS, exact=False)


def test_multi_head_split_keeps_its_reshapes() -> None:
    # k^T composed by simplify-shapes with the head split: transpose(reshape(k), [0,2,3,1]).
    before = f"""
    graph @g(%qh: f32[1,2,8,16], %kp: f32[1,8,32], %v: f32[1,2,8,16]) -> (f32[1,2,8,16]) {{
      {DECLS}
      %kr: f32[1,8,2,16] = tensor.reshape(%kp) {{shape=[1, 8, 2, 16]}}
      %kt: f32[1,2,16,8] = tensor.transpose(%kr) {{perm=[0, 2, 3, 1]}}
      %s: f32[1,2,8,8] = nn.matmul(%qh, %kt)
      %ss: f32[1,2,8,8] = math.div(%s, %root_d)
      %p: f32[1,2,8,8] = nn.softmax(%ss) {{axis=3}}
      %y: f32[1,2,8,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = """
    graph @g(%qh: f32[1,2,8,16], %kp: f32[1,8,32], %v: f32[1,2,8,16]) -> (f32[1,2,8,16]) {
      %kr: f32[1,8,2,16] = tensor.reshape(%kp) {shape=[1, 8, 2, 16]}
      %kt_k: f32[1,2,8,16] = tensor.transpose(%kr) {perm=[0, 2, 1, 3]}
      %y: f32[1,2,8,16] = nn.attention(%qh, %kt_k, %v) {causal=false, scale=0.25}
      return %y
    }
    """
    check_rewrite("recognize-attention", before, after, CONSTS, exact=False)


def test_bert_additive_mask_input_and_scale_on_q() -> None:
    before = f"""
    graph @g({QKV}, %mask: f32[1,1,1,8]) -> (f32[1,4,8,16]) {{
      {DECLS}
      %qs: f32[1,4,8,16] = math.mul(%q, %scale)
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,8,8] = nn.matmul(%qs, %kt)
      %m: f32[1,4,8,8] = math.add(%mask, %s)
      %p: f32[1,4,8,8] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = f"""
    graph @g({QKV}, %mask: f32[1,1,1,8]) -> (f32[1,4,8,16]) {{
      %y: f32[1,4,8,16] = nn.attention(%q, %k, %v, %mask) {{causal=false, scale=0.25}}
      return %y
    }}
    """
    check_rewrite("recognize-attention", before, after, CONSTS, exact=False)


def test_masked_fill_by_an_input_condition_inserts_not() -> None:
    before = f"""
    graph @g({QKV}, %pad: bool[1,1,1,8]) -> (f32[1,4,8,16]) {{
      {DECLS}
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %m: f32[1,4,8,8] = tensor.where(%pad, %ninf, %s)
      %p: f32[1,4,8,8] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = f"""
    graph @g({QKV}, %pad: bool[1,1,1,8]) -> (f32[1,4,8,16]) {{
      %pad_keep: bool[1,1,1,8] = math.not(%pad)
      %y: f32[1,4,8,16] = nn.attention(%q, %k, %v, %pad_keep) {{causal=false, scale=1.0}}
      return %y
    }}
    """
    graph = graph_from(before, CONSTS)
    original = graph.copy()
    run_passes(graph, "recognize-attention")
    assert print_graph(graph) == expected(after)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 4, 8, 16)).astype(np.float32) for _ in range(3))
    pad = np.zeros((1, 1, 1, 8), dtype=bool)
    pad[..., :5] = True
    assert_same_outputs(original, graph, exact=False, inputs=[q, k, v, pad])
    # With every key padded, the written-out softmax gives NaN and nn.attention gives 0 (as
    # torch's SDPA does): the rewrite turns NaN rows into zeros and changes nothing else.
    (dead,) = interpret(graph, q, k, v, np.ones_like(pad))
    np.testing.assert_array_equal(dead, np.zeros_like(dead))


REJECTED = {
    "softmax is not over the last axis": """
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %p: f32[1,4,8,8] = nn.softmax(%s) {axis=2}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      return %y
    """,
    "scale is not a scalar constant": """
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %ss: f32[1,4,8,8] = math.mul(%s, %t)
      %p: f32[1,4,8,8] = nn.softmax(%ss) {axis=-1}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      return %y
    """,
    "mask shape is not broadcastable to the scores": """
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %m: f32[2,4,8,8] = math.add(%s, %wide)
      %p: f32[2,4,8,8] = nn.softmax(%m) {axis=-1}
      %y: f32[2,4,8,16] = nn.matmul(%p, %v)
      return %y
    """,
    "an intermediate of the attention has other users": """
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %p: f32[1,4,8,8] = nn.softmax(%s) {axis=-1}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      %z: f32[1,4,8,8] = nn.relu(%p)
      return %y
    """,
}


@pytest.mark.parametrize("reason", sorted(REJECTED))
def test_rejections(reason: str) -> None:
    body = REJECTED[reason]
    out = "f32[2,4,8,16]" if "wide" in body else "f32[1,4,8,16]"
    before = f"""
    graph @g({QKV}, %t: f32[1,1,1,1], %wide: f32[2,1,8,8]) -> ({out}) {{
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      {body}
    }}
    """
    stats = check_unchanged("recognize-attention", before.replace("%y\n", "%y\n"), CONSTS)
    assert set(rejections(stats, "recognize-attention")) == {reason}


def test_constant_masks_all_true_vanish_others_become_operands() -> None:
    consts = {
        **CONSTS,
        "zeros": np.zeros((1, 1, 1, L), dtype=np.float32),
        "band": np.abs(np.arange(L)[:, None] - np.arange(L)[None]) <= 2,
    }
    before = f"""
    graph @g({QKV}) -> (f32[1,4,8,16]) {{
      {DECLS}
      %zeros: f32[1,1,1,8] = const @zeros
      %band: bool[8,8] = const @band
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,8,8] = nn.matmul(%q, %kt)
      %z: f32[1,4,8,8] = math.add(%s, %zeros)
      %m: f32[1,4,8,8] = tensor.where(%band, %z, %ninf)
      %p: f32[1,4,8,8] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,8,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = f"""
    graph @g({QKV}) -> (f32[1,4,8,16]) {{
      %band: bool[8,8] = const @band
      %y: f32[1,4,8,16] = nn.attention(%q, %k, %v, %band) {{causal=false, scale=1.0}}
      return %y
    }}
    """
    check_rewrite("recognize-attention", before, after, consts, exact=False)


def test_symbolic_slice_of_a_causal_buffer_is_causal() -> None:
    # torch.export with a dynamic sequence: masked_fill(future[:seq, :seq], -inf).
    before = f"""
    graph @g(%q: f32[1,4,seq,16], %k: f32[1,4,seq,16], %v: f32[1,4,seq,16]) -> (f32[1,4,seq,16]) {{
      {DECLS}
      %rows: bool[seq,8] = tensor.slice(%future) {{axes=[0], ends=["seq"], starts=[0], steps=[1]}}
      %f: bool[seq,seq] = tensor.slice(%rows) {{axes=[1], ends=["seq"], starts=[0], steps=[1]}}
      %kt: f32[1,4,16,seq] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,seq,seq] = nn.matmul(%q, %kt)
      %ss: f32[1,4,seq,seq] = math.mul(%s, %scale)
      %m: f32[1,4,seq,seq] = tensor.where(%f, %ninf, %ss)
      %p: f32[1,4,seq,seq] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,seq,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = """
    graph @g(%q: f32[1,4,seq,16], %k: f32[1,4,seq,16], %v: f32[1,4,seq,16]) -> (f32[1,4,seq,16]) {
      %y: f32[1,4,seq,16] = nn.attention(%q, %k, %v) {causal=true, scale=0.25}
      return %y
    }
    """
    check_rewrite("recognize-attention", before, after, CONSTS, exact=False)


def test_slice_of_a_non_square_block_is_not_causal() -> None:
    before = f"""
    graph @g(%q: f32[1,4,seq,16], %k: f32[1,4,8,16], %v: f32[1,4,8,16]) -> (f32[1,4,seq,16]) {{
      {DECLS}
      %f: bool[seq,8] = tensor.slice(%future) {{axes=[0], ends=["seq"], starts=[0]}}
      %kt: f32[1,4,16,8] = tensor.transpose(%k) {{perm=[0, 1, 3, 2]}}
      %s: f32[1,4,seq,8] = nn.matmul(%q, %kt)
      %m: f32[1,4,seq,8] = tensor.where(%f, %ninf, %s)
      %p: f32[1,4,seq,8] = nn.softmax(%m) {{axis=-1}}
      %y: f32[1,4,seq,16] = nn.matmul(%p, %v)
      return %y
    }}
    """
    after = """
    graph @g(%q: f32[1,4,seq,16], %k: f32[1,4,8,16], %v: f32[1,4,8,16]) -> (f32[1,4,seq,16]) {
      %future: bool[8,8] = const @future
      %f: bool[seq,8] = tensor.slice(%future) {axes=[0], ends=["seq"], starts=[0]}
      %f_keep: bool[seq,8] = math.not(%f)
      %y: f32[1,4,seq,16] = nn.attention(%q, %k, %v, %f_keep) {causal=false, scale=1.0}
      return %y
    }
    """
    check_rewrite("recognize-attention", before, after, CONSTS, exact=False)
