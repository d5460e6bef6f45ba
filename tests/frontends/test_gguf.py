"""GGUF import on tiny files the tests write themselves with gguf.GGUFWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="GGUF import needs the gguf package (dev extra)")

from compiler.errors import UnsupportedOpsError  # noqa: E402
from compiler.frontends.gguf import hf_state_dict, read_gguf  # noqa: E402
from compiler.frontends.gguf_blocks import pack  # noqa: E402
from compiler.frontends.gguf_tokenizer import byte_alphabet  # noqa: E402

Q = gguf.GGMLQuantizationType
LAYERS, D, FF, HEADS, KV = 2, 64, 96, 4, 2
EXTRA = ["he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "<|im_start|>"]
MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"]
#: GGUF tensor -> (shape in NumPy order, stored type)
TENSORS = {
    "token_embd.weight": ((256 + len(EXTRA), D), Q.Q8_0),
    "output_norm.weight": ((D,), Q.F32),
    **{
        f"blk.{i}.{name}": (shape, kind)
        for i in range(LAYERS)
        for name, shape, kind in [
            ("attn_norm.weight", (D,), Q.F32),
            ("attn_q.weight", (D, D), Q.Q4_0),
            ("attn_k.weight", (D // HEADS * KV, D), Q.Q4_1),
            ("attn_v.weight", (D // HEADS * KV, D), Q.Q8_0),
            ("attn_output.weight", (D, D), Q.F16),
            ("ffn_norm.weight", (D,), Q.F32),
            ("ffn_gate.weight", (FF, D), Q.Q4_1),
            ("ffn_up.weight", (FF, D), Q.Q4_0),
            ("ffn_down.weight", (D, FF), Q.Q8_0),
        ]
    },
}


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's Q/K row permutation (what the reader must undo)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape
    )


def _write(path: Path, rng: np.random.Generator, odd: dict[str, object] | None = None) -> dict:
    """A tiny llama GGUF file; returns the float weights it stores (HF row order for Q/K)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(D)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_context_length(128)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    alphabet = byte_alphabet()
    writer.add_token_list([alphabet[b] for b in range(256)] + EXTRA)
    writer.add_token_types([1] * (256 + len(EXTRA) - 1) + [3])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(256 + len(EXTRA) - 1)
    stored = {}
    for name, (shape, kind) in {**TENSORS, **(odd or {})}.items():
        w = rng.standard_normal(shape).astype(np.float32) * 0.5
        hf = w
        if "attn_q" in name or "attn_k" in name:
            w = _permute(w, HEADS if "attn_q" in name else KV)
        if kind in (Q.F32, Q.F16):
            data = w.astype(np.float32 if kind == Q.F32 else np.float16)
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, gguf.quants.quantize(w, kind), raw_dtype=kind)
        stored[name] = hf
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


@pytest.fixture
def tiny(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict]:
    path = tmp_path / "tiny.gguf"
    return path, _write(path, rng)


def test_metadata_and_hparams(tiny: tuple[Path, dict]) -> None:
    model = read_gguf(tiny[0])
    hp = model.hparams
    assert (hp.n_layers, hp.d_model, hp.d_ff, hp.n_heads, hp.n_kv_heads) == (LAYERS, D, FF, 4, 2)
    assert hp.rope_theta == 50000.0 and hp.rms_eps == pytest.approx(1e-5)
    assert hp.vocab == 256 + len(EXTRA) and hp.context == 128
    assert model.tied_embeddings()
    assert {t: model.kind(t) for t in TENSORS} == {t: k.name for t, (_, k) in TENSORS.items()}


def test_dequantization_is_exact_against_gguf_quants(tiny: tuple[Path, dict]) -> None:
    from gguf import GGUFReader

    model = read_gguf(tiny[0])
    for t in GGUFReader(str(tiny[0])).tensors:
        want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(model.tensors[t.name].shape)
        got = model.float_weight(t.name)
        if "attn_q" in t.name or "attn_k" in t.name:  # undo the permutation on the oracle too
            heads = HEADS if "attn_q" in t.name else KV
            rows = np.arange(want.shape[0]).reshape(heads, -1, 2).swapaxes(1, 2).reshape(-1)
            want = want[rows]
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=t.name)


def test_blocks_are_kept_losslessly_and_in_hf_row_order(tiny: tuple[Path, dict]) -> None:
    path, stored = tiny
    model = read_gguf(path)
    for name in ("blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight"):
        bw = model.block_weight(name)
        assert bw is not None and bw.group == 32
        # Rows permuted back: the blocks dequantize to the HF-order weight (within 4 bits).
        err = np.abs(bw.dequantize() - stored[name]).max()
        assert err < 0.2, name
        np.testing.assert_array_equal(bw.dequantize(), model.float_weight(name))
    # Packing the (unpermuted) blocks again gives the file's bytes back.
    raw = model.tensors["blk.0.ffn_gate.weight"]
    bw = model.block_weight("blk.0.ffn_gate.weight")
    assert bw is not None and bw.dtype == "u4" and bw.m is not None
    np.testing.assert_array_equal(pack("Q4_1", bw).reshape(-1), raw.raw)
    assert model.block_weight("output_norm.weight") is None


def test_hf_state_dict_names_every_llama_parameter(tiny: tuple[Path, dict]) -> None:
    state = hf_state_dict(read_gguf(tiny[0]))
    assert len(state) == 2 + 1 + LAYERS * 9  # embed, norm, tied head, 9 per layer
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]
    assert state["model.layers.1.mlp.down_proj.weight"].shape == (D, FF)


def test_transformers_model_runs(tiny: tuple[Path, dict]) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from compiler.frontends.gguf import to_transformers

    model = read_gguf(tiny[0])
    net = to_transformers(model)
    q = net.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    np.testing.assert_array_equal(q, model.float_weight("blk.0.attn_q.weight"))
    logits = net(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 256 + len(EXTRA)) and torch.isfinite(logits).all()


def test_unsupported_tensor_types_are_all_listed(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "odd.gguf"
    odd = {"blk.0.odd_a.weight": ((4, 32), Q.Q5_0), "blk.1.odd_b.weight": ((4, 32), Q.Q5_1)}
    _write(path, rng, odd)
    with pytest.raises(UnsupportedOpsError) as info:
        read_gguf(path)
    text = str(info.value)
    assert "blk.0.odd_a.weight" in text and "blk.1.odd_b.weight" in text
    assert "Q5_0" in text and "Q5_1" in text


def test_tokenizer_merges_and_round_trips(tiny: tuple[Path, dict]) -> None:
    tok = read_gguf(tiny[0]).tokenizer()
    ids = tok.encode("hello world")
    pieces = [tok.tokens[i] for i in ids]
    assert pieces == ["hello", "Ġwor", "l", "d"]
    assert tok.encode("<|im_start|>hello") == [tok.ids["<|im_start|>"], tok.ids["hello"]]
    for text in ["hello world", "  two  spaces\n\ttab", "naïve café 😀 123", "<|im_start|>x"]:
        assert tok.decode(tok.encode(text)) == text


def test_tokenizer_agrees_with_hf_tokenizers(tiny: tuple[Path, dict]) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tok = read_gguf(tiny[0]).tokenizer()
    vocab = {t: i for i, t in enumerate(tok.tokens[:-1])}
    merges = [tuple(m.split(" ")) for m in MERGES]
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in ["hello world, hello!", "hellohello  wor 42", "x\n\nhell o"]:
        assert tok.encode(text) == hf.encode(text).ids, text


def test_spm_tokenizer_round_trips() -> None:
    from compiler.frontends.gguf_tokenizer import tokenizer_from_metadata

    tokens = ["<unk>", "<s>", "</s>", *[f"<0x{b:02X}>" for b in range(256)], "▁", "a", "b"]
    tokens += ["▁a", "ab", "▁ab"]
    scores = [0.0] * (len(tokens) - 3) + [-1.0, -2.0, -0.5]
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": [2, 3, 3] + [6] * 256 + [1] * 6,
        "tokenizer.ggml.bos_token_id": 1,
    }
    tok = tokenizer_from_metadata(meta)
    ids = tok.encode("ab ab")
    assert [tok.tokens[i] for i in ids] == ["▁ab", "▁ab"]
    assert tok.decode(tok.encode("ab é")) == "ab é"  # é by byte fallback
