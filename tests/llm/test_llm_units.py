"""compiler.llm without a real model: sampling, prompt checks, cache rules, masked rows."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.errors import InputError
from compiler.ir import parse
from compiler.llm import LLMSpec, Sampler
from compiler.llm.runtime import check_prompts

SPEC = LLMSpec(num_layers=1, num_kv_heads=1, head_dim=4, vocab_size=10, max_context=6,
               prefill_len=2)  # fmt: skip


def test_greedy_takes_the_first_of_tied_maxima() -> None:
    logits = np.array([[0.0, 3.0, 3.0, 1.0], [5.0, 0.0, 0.0, 5.0]], np.float32)
    np.testing.assert_array_equal(Sampler()(logits, np.random.default_rng(0)), [1, 0])


def test_top_k_and_top_p_keep_only_the_likely_tokens() -> None:
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.1, 0.06, 0.04]] * 400))
    top2 = Sampler(temperature=1.0, top_k=2)(logits, rng)
    assert set(top2.tolist()) == {0, 1}
    # top_p=0.7: 0.5 alone is below it, 0.5 + 0.3 reaches it, so tokens 0 and 1 remain.
    nucleus = Sampler(temperature=1.0, top_p=0.7)(logits, rng)
    assert set(nucleus.tolist()) == {0, 1}
    frequency = np.mean(nucleus == 0)
    assert 0.55 < frequency < 0.70  # 0.5 / 0.8 = 0.625 after renormalizing


def test_sampling_is_reproducible_with_a_seed() -> None:
    logits = np.random.default_rng(1).standard_normal((3, 50))
    a = Sampler(temperature=0.8, top_k=10)(logits, np.random.default_rng(7))
    b = Sampler(temperature=0.8, top_k=10)(logits, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_k": -2}, "top_k")],
)
def test_bad_sampling_settings_are_input_errors(kwargs: dict, what: str) -> None:
    with pytest.raises(InputError, match=what):
        Sampler(**kwargs)


def test_prompt_checks() -> None:
    check_prompts(SPEC, [[1, 2, 3, 4, 5, 6]])
    with pytest.raises(InputError, match="7 tokens, more than max_context=6"):
        check_prompts(SPEC, [[1, 2], [1] * 7])
    with pytest.raises(InputError, match="outside the vocabulary"):
        check_prompts(SPEC, [[1, 10]])
    with pytest.raises(InputError, match="empty"):
        check_prompts(SPEC, [[]])


ATTENTION = """graph @g(%q: f32[1,2,4,8], %k: f32[1,2,4,8], %v: f32[1,2,4,8], \
%m: MASK[1,1,4,4]) -> (f32[1,2,4,8]) {
  %y: f32[1,2,4,8] = nn.attention(%q, %k, %v, %m) {causal=CAUSAL}
  return %y
}"""


def _attention_case(mask_dtype: str, causal: bool) -> tuple:
    text = ATTENTION.replace("MASK", mask_dtype).replace("CAUSAL", str(causal).lower())
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 4, 8)).astype(np.float32) for _ in range(3))
    keep = np.ones((1, 1, 4, 4), bool)
    keep[..., :2, :] = False  # two left-padded queries see no key at all
    keep[..., 2:, :1] = False
    mask = keep if mask_dtype == "bool" else np.where(keep, 0.0, -np.inf).astype(np.float32)
    return parse(text), (q, k, v, mask), keep


@pytest.mark.parametrize("mask_dtype", ["bool", "f32"])
def test_fully_masked_attention_rows_are_zero_in_the_interpreter(mask_dtype: str) -> None:
    graph, args, keep = _attention_case(mask_dtype, causal=False)
    (y,) = compiler.interpret(graph, *args)
    np.testing.assert_array_equal(y[:, :, :2], 0.0)
    q, k, v, _ = args
    scores = np.where(keep, q @ k.swapaxes(-1, -2) / np.sqrt(8), -np.inf)[:, :, 2:]
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    want = (weights / weights.sum(-1, keepdims=True)) @ v
    np.testing.assert_allclose(y[:, :, 2:], want, rtol=1e-5, atol=1e-6)


@pytest.mark.tvm
@pytest.mark.parametrize(("mask_dtype", "causal"), [("bool", True), ("f32", False)])
def test_fully_masked_attention_rows_are_zero_on_cpu(mask_dtype: str, causal: bool) -> None:
    graph, args, _ = _attention_case(mask_dtype, causal)
    (want,) = compiler.interpret(graph, *args)
    (got,) = compiler.compile(graph, target="cpu").run(*args)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


GQA = """graph @g(%q: f32[1,4,3,8], %k: f32[1,2,5,8], %v: f32[1,2,5,8], \
%m: MASK[1,1,3,5]) -> (f32[1,4,3,8]) {
  %k1: f32[1,2,1,5,8] = tensor.unsqueeze(%k) {axes=[2]}
  %k2: f32[1,2,2,5,8] = tensor.expand(%k1) {shape=[1, 2, 2, 5, 8]}
  %k3: f32[1,4,5,8] = tensor.reshape(%k2) {shape=[1, 4, 5, 8]}
  %v1: f32[1,2,1,5,8] = tensor.unsqueeze(%v) {axes=[2]}
  %v2: f32[1,2,2,5,8] = tensor.expand(%v1) {shape=[1, 2, 2, 5, 8]}
  %v3: f32[1,4,5,8] = tensor.reshape(%v2) {shape=[1, 4, 5, 8]}
  %y: f32[1,4,3,8] = nn.attention(%q, %k3, %v3, %m) {causal=CAUSAL}
  return %y
}"""


@pytest.mark.tvm
@pytest.mark.parametrize(("mask_dtype", "causal"), [("bool", True), ("f32", False)])
def test_grouped_query_attention_on_cpu(mask_dtype: str, causal: bool) -> None:
    """The cpu target reads the 2 KV heads as they are (no copy per query head): the same
    result as the interpreter's repeated heads, fully masked rows 0."""
    graph = parse(GQA.replace("MASK", mask_dtype).replace("CAUSAL", str(causal).lower()))
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 4, 3, 8)).astype(np.float32)
    k, v = (rng.standard_normal((1, 2, 5, 8)).astype(np.float32) for _ in range(2))
    keep = np.ones((1, 1, 3, 5), bool)
    keep[..., 0, :] = False  # a left-padded query
    keep[..., 1:, :1] = False
    mask = keep if mask_dtype == "bool" else np.where(keep, 0.0, -np.inf).astype(np.float32)
    (want,) = compiler.interpret(graph, q, k, v, mask)
    (got,) = compiler.compile(graph, target="cpu").run(q, k, v, mask)
    np.testing.assert_array_equal(got[:, :, 0], 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fully_masked_attention_rows_are_zero_in_onnx() -> None:
    pytest.importorskip("onnxruntime")
    graph, args, _ = _attention_case("bool", causal=True)
    (want,) = compiler.interpret(graph, *args)
    (got,) = compiler.compile(graph, target="onnx").run(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _llm_ops_graph() -> tuple:
    """isnan, cumsum and gather_elements (what HF models need from ONNX and torch.export)."""
    text = """graph @ops(%x: f32[3,5], %i: i64[2,2], %m: i64[2,5]) -> (bool[3,5], f32[3,5], \
i64[2,5], f32[2,2]) {
  %one: i64[] = const @one
  %last: i64[] = const @last
  %nan: bool[3,5] = math.isnan(%x)
  %run: f32[3,5] = math.cumsum(%x, %one)
  %pos: i64[2,5] = math.cumsum(%m, %last)
  %pick: f32[2,2] = tensor.gather_elements(%x, %i) {axis=1}
  return %nan, %run, %pos, %pick
}"""
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    x[1, 2] = np.nan
    i = np.array([[0, 4], [2, 2]], np.int64)
    m = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    axes = {"one": np.array(1, np.int64), "last": np.array(-1, np.int64)}
    return parse(text, axes), (x, i, m)


def test_llm_ops_in_the_interpreter() -> None:
    graph, (x, i, m) = _llm_ops_graph()
    nan, run, pos, pick = compiler.interpret(graph, x, i, m)
    np.testing.assert_array_equal(nan, np.isnan(x))
    np.testing.assert_array_equal(run[0], np.cumsum(x[0]))
    np.testing.assert_array_equal(pos, [[0, 0, 1, 2, 3], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(pick, [[x[0, 0], x[0, 4]], [x[1, 2], x[1, 2]]])


@pytest.mark.tvm
def test_llm_ops_on_cpu() -> None:
    graph, args = _llm_ops_graph()
    want = compiler.interpret(graph, *args)
    got = compiler.compile(graph, target="cpu").run(*args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def _counting_step(calls: list) -> object:
    """A fake step graph: the next token is the last input token + 1; records its inputs."""

    def run(ids: np.ndarray, pos: np.ndarray, mask: np.ndarray, *caches: np.ndarray) -> list:
        calls.append((ids.copy(), pos.copy(), mask.copy()))
        logits = np.zeros((ids.shape[0], SPEC.vocab_size), np.float32)
        logits[np.arange(ids.shape[0]), (ids[:, -1] + 1) % SPEC.vocab_size] = 1.0
        chunk = ids.shape[1]
        new = np.full((ids.shape[0], 1, chunk, 4), 1.0, np.float32)
        return [logits, new, new]

    return run


def test_generate_loop_pads_left_and_stops_per_row() -> None:
    from compiler.llm.runtime import generate_batch

    calls: list = []
    step = _counting_step(calls)
    res = generate_batch(SPEC, 2, step, step, [[1, 2, 3], [4]], 3, Sampler(), frozenset({6}),
                         None, np.random.default_rng(0))  # fmt: skip
    # Row 0 counts 4, 5, 6; row 1 counts 5, then 6 is a stop token and ends it.
    assert res.tokens == [[4, 5, 6], [5, 6]]
    (ids, pos, mask), (ids2, pos2, _), (_, pos3, mask3) = calls[0], calls[1], calls[2]
    np.testing.assert_array_equal(ids, [[0, 1], [0, 0]])  # 4 slots: first chunk left-padded
    np.testing.assert_array_equal(pos, [[0, 0], [0, 0]])
    np.testing.assert_array_equal(mask[:, -2:], [[0, 1], [0, 0]])
    assert not mask[:, :-2].any()  # nothing cached before the first chunk
    np.testing.assert_array_equal(ids2, [[2, 3], [0, 4]])
    np.testing.assert_array_equal(pos2, [[1, 2], [0, 0]])
    np.testing.assert_array_equal(pos3, [[3], [1]])  # the first new token's position
    np.testing.assert_array_equal(mask3[:, :4], [[0, 1, 1, 1], [0, 0, 0, 1]])
    assert len(calls) == 4  # two prefill chunks, two decode steps (the third token is last)
