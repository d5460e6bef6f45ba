"""Tiny random Hugging Face decoders (2 layers, d=64, vocab 128) built from their configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

VOCAB = 128


def _llama(t: Any) -> Any:
    return t.LlamaForCausalLM(t.LlamaConfig(**_common(), num_key_value_heads=2))


def _qwen2(t: Any) -> Any:
    return t.Qwen2ForCausalLM(t.Qwen2Config(**_common(), num_key_value_heads=2))


def _phi3(t: Any) -> Any:
    return t.Phi3ForCausalLM(t.Phi3Config(**_common(), num_key_value_heads=2, pad_token_id=0))


def _gpt2(t: Any) -> Any:
    config = t.GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=128,
        bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
    )  # fmt: skip
    return t.GPT2LMHeadModel(config)


def _common() -> dict[str, Any]:
    return dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    )


DECODERS: dict[str, Callable[[Any], Any]] = {
    "gpt2": _gpt2,
    "llama": _llama,
    "qwen2": _qwen2,
    "phi3": _phi3,
}


def build(name: str, seed: int = 0) -> Any:
    """The named decoder with seeded random weights, in eval mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    return DECODERS[name](transformers).eval()


def torch_greedy(model: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy decode in torch with transformers' own KV cache (``DynamicCache``), never
    stopping early. (``generate(min_new_tokens=...)`` would also forbid the eos token.)"""
    import inspect

    import torch

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    tokens: list[int] = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        for _ in range(new_tokens):
            token = int(out.logits[0, -1].argmax())
            tokens.append(token)
            cache = getattr(out, name)
            out = model(input_ids=torch.tensor([[token]]), use_cache=True, **{name: cache})
    return tokens


def _bert(t: Any) -> Any:
    return t.BertModel(t.BertConfig(**_encoder()))


def _roberta(t: Any) -> Any:
    return t.RobertaModel(t.RobertaConfig(**_encoder(), pad_token_id=1))


def _distilbert(t: Any) -> Any:
    config = t.DistilBertConfig(
        vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
        max_position_embeddings=64,
    )  # fmt: skip
    return t.DistilBertModel(config)


def _encoder() -> dict[str, Any]:
    return dict(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64,
    )  # fmt: skip


ENCODERS: dict[str, Callable[[Any], Any]] = {
    "bert": _bert,
    "distilbert": _distilbert,
    "roberta": _roberta,
}


def build_encoder(name: str, seed: int = 0) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    return ENCODERS[name](transformers).eval()
