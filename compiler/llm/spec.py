"""What an LLM artifact knows about its model: cache geometry, limits, the cache-rule table.

NumPy and the standard library only: ``import compiler.llm`` loads no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from compiler.errors import FrontendError

#: Attention modules whose key/value cache is the standard one: the module hands its new
#: ``[B, n_kv, T, head_dim]`` keys and values to ``cache.update(k, v, layer_idx)`` and
#: attends over what it returns. A class not listed here has no cache rule (sliding windows,
#: cross attention, recurrent state): importing it as a decoder is refused, naming it.
CACHE_RULES: dict[str, str] = {
    "LlamaAttention": "standard",
    "MistralAttention": "standard",
    "Qwen2Attention": "standard",
    "Qwen3Attention": "standard",
    "Phi3Attention": "standard",
    "GemmaAttention": "standard",
    "GPT2Attention": "standard",
    "GPTNeoXAttention": "standard",
    "OlmoAttention": "standard",
    "GraniteAttention": "standard",
    "StableLmAttention": "standard",
}


class NoCacheRuleError(FrontendError):
    """The model has an attention module whose key/value cache tapeout cannot build."""


@dataclass(frozen=True)
class LLMSpec:
    """The shape of a decoder's KV cache and the limits of its artifact.

    ``cache_slots`` = ``max_context + prefill_len``: the first prefill chunk is left-padded
    to ``prefill_len`` tokens and the padding occupies (masked) slots, so a prompt plus its
    new tokens may use all of ``max_context``.
    """

    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    prefill_len: int
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    dtype: str = "f32"
    #: The cache length is the symbol ``past`` (1 to ``cache_slots``) in the step graphs:
    #: each step is handed only the slots written so far (at least one, masked while none
    #: is), and a backend with shape profiles (TensorRT) builds one engine for all lengths.
    #: False: every step takes all ``cache_slots`` slots, unwritten ones masked.
    dynamic_cache: bool = False

    @property
    def cache_slots(self) -> int:
        return self.max_context + self.prefill_len

    def cache_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.num_kv_heads, self.cache_slots, self.head_dim)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["eos_token_ids"] = list(self.eos_token_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LLMSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise FrontendError(f"llm.json: unknown keys {unknown}")
        return cls(**{**data, "eos_token_ids": tuple(data.get("eos_token_ids", ()))})


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def spec_from_config(config: Any, max_context: int, prefill_len: int) -> LLMSpec:
    """Cache geometry from a Hugging Face config (the names differ between families)."""
    layers = _first(config, "num_hidden_layers", "n_layer")
    heads = _first(config, "num_attention_heads", "n_head")
    hidden = _first(config, "hidden_size", "n_embd")
    vocab = _first(config, "vocab_size")
    if None in (layers, heads, hidden, vocab):
        raise FrontendError(
            f"config {type(config).__name__} lacks the layer/head/hidden/vocab sizes of a decoder"
        )
    kv_heads = _first(config, "num_key_value_heads") or heads
    head_dim = _first(config, "head_dim") or hidden // heads
    eos = _first(config, "eos_token_id")
    eos_list = eos if isinstance(eos, list | tuple) else [eos]
    eos_ids = tuple(int(e) for e in eos_list if e is not None)
    limit = _first(config, "max_position_embeddings", "n_positions")
    if limit is not None and max_context > int(limit):
        raise FrontendError(f"max_context={max_context} exceeds the model's {int(limit)} positions")
    return LLMSpec(
        num_layers=int(layers),
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=int(vocab),
        max_context=int(max_context),
        prefill_len=int(prefill_len),
        eos_token_ids=eos_ids,
        pad_token_id=int(_first(config, "pad_token_id") or 0),
    )
