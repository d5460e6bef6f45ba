"""GGUF import: a llama-architecture GGUF file -> hyperparameters, weights and tokenizer.

Reads the file with the ``gguf`` package (imported lazily). What it gives:

* ``GGUFModel.hparams``: layers, heads, KV heads, RoPE theta, RMSNorm eps, vocab, context;
* ``GGUFModel.block_weight(name)``: a Q4_0/Q4_1/Q8_0 tensor's blocks exactly as stored
  (``gguf_blocks.BlockWeight``), ready to become a ``q.block_dense`` weight with nothing lost;
* ``GGUFModel.float_weight(name)``: the exact float32 dequantization of any supported tensor;
* ``hf_state_dict`` / ``to_transformers``: the float model as a ``LlamaForCausalLM`` (so the
  Hugging Face import path applies), with GGUF's Q/K row permutation undone;
* ``tokenizer()``: the tokenizer stored in the file (``compiler.frontends.gguf_tokenizer``).

A tensor type other than F32/F16/Q4_0/Q4_1/Q8_0 is an ``UnsupportedOpsError`` that lists
every such tensor, not only the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.errors import FrontendError, Unsupported, UnsupportedOpsError
from compiler.frontends.gguf_blocks import (
    BLOCK_FORMATS,
    FLOAT_FORMATS,
    BlockWeight,
    dequantize_raw,
    unpack,
)

#: GGUF tensor name (``{i}`` = layer) -> Hugging Face Llama parameter name.
HF_NAMES: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}


@dataclass(frozen=True)
class LlamaHParams:
    """The hyperparameters of a llama-architecture GGUF file (``llama.*`` metadata)."""

    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    rope_theta: float
    rms_eps: float
    vocab: int
    context: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor: its GGML type name, NumPy-order shape and raw bytes."""

    name: str
    kind: str
    shape: tuple[int, ...]
    raw: np.ndarray


@dataclass
class GGUFModel:
    """A read GGUF file: metadata, tensors by name, and the derived hyperparameters."""

    path: str
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]
    hparams: LlamaHParams = field(init=False)

    def __post_init__(self) -> None:
        self.hparams = _hparams(self)

    def kind(self, name: str) -> str:
        return self._get(name).kind

    def _get(self, name: str) -> GGUFTensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise FrontendError(f"{self.path}: no tensor {name!r} in the GGUF file") from None

    def float_weight(self, name: str) -> np.ndarray:
        """The exact float32 value of tensor ``name`` (dequantized if it is blocks)."""
        t = self._get(name)
        return _unpermute(self, name, dequantize_raw(t.kind, t.raw, t.shape))

    def block_weight(self, name: str) -> BlockWeight | None:
        """Tensor ``name`` as blocks, as stored (None for a float tensor)."""
        t = self._get(name)
        if t.kind not in BLOCK_FORMATS:
            return None
        rows, cols = int(np.prod(t.shape[:-1])), t.shape[-1]
        weight = unpack(t.kind, t.raw, rows, cols)
        order = _permutation(self, name, rows)
        return weight if order is None else weight.take_rows(order)

    def tied_embeddings(self) -> bool:
        return "output.weight" not in self.tensors

    def tokenizer(self) -> Any:
        from compiler.frontends.gguf_tokenizer import tokenizer_from_metadata

        return tokenizer_from_metadata(self.metadata, self.path)


def read_gguf(path: str | os.PathLike[str]) -> GGUFModel:
    """Read a GGUF file's metadata and tensors (memory-mapped: nothing is copied yet)."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise FrontendError("reading GGUF needs the gguf package: pip install gguf") from e
    path = os.fspath(path)
    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as e:
        raise FrontendError(f"{path}: not a readable GGUF file: {e}") from e
    metadata = {name: _field_value(f) for name, f in reader.fields.items()}
    tensors: dict[str, GGUFTensor] = {}
    bad: list[Unsupported] = []
    for t in reader.tensors:
        kind = t.tensor_type.name
        shape = tuple(int(d) for d in reversed(list(t.shape)))
        if kind not in BLOCK_FORMATS and kind not in FLOAT_FORMATS:
            supported = ", ".join([*FLOAT_FORMATS, *BLOCK_FORMATS])
            bad.append(Unsupported(kind, t.name, f"tensor type {kind} (supported: {supported})"))
            continue
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)
        tensors[t.name] = GGUFTensor(t.name, kind, shape, raw)
    if bad:
        raise UnsupportedOpsError(bad, what=f"GGUF file {path}")
    return GGUFModel(path, metadata, tensors)


def _field_value(f: Any) -> Any:
    """A metadata field as a Python value (str, number, or list of them)."""
    return f.contents()


def _meta(model: GGUFModel, key: str, default: Any = None) -> Any:
    arch = model.metadata.get("general.architecture")
    value = model.metadata.get(f"{arch}.{key}", default)
    if value is None:
        raise FrontendError(f"{model.path}: metadata {arch}.{key} is missing")
    return value


def _hparams(model: GGUFModel) -> LlamaHParams:
    arch = model.metadata.get("general.architecture")
    if arch != "llama":
        raise FrontendError(
            f"{model.path}: GGUF architecture {arch!r} is not supported (only 'llama')"
        )
    heads = int(_meta(model, "attention.head_count"))
    tokens = model.metadata.get("tokenizer.ggml.tokens")
    vocab = _meta(model, "vocab_size", len(tokens) if tokens else None)
    return LlamaHParams(
        n_layers=int(_meta(model, "block_count")),
        d_model=int(_meta(model, "embedding_length")),
        d_ff=int(_meta(model, "feed_forward_length")),
        n_heads=heads,
        n_kv_heads=int(_meta(model, "attention.head_count_kv", heads)),
        rope_theta=float(_meta(model, "rope.freq_base", 10000.0)),
        rms_eps=float(_meta(model, "attention.layer_norm_rms_epsilon", 1e-5)),
        vocab=int(vocab),
        context=int(_meta(model, "context_length", 2048)),
    )


def _permutation(model: GGUFModel, name: str, rows: int) -> np.ndarray | None:
    """The row order that undoes llama.cpp's Q/K permutation (None for other tensors).

    convert_hf_to_gguf.py stores ``attn_q``/``attn_k`` rows per head as ``[2, D/2]`` ->
    ``[D/2, 2]`` (interleaved rotary pairs); Hugging Face's rotate_half wants the halves back.
    """
    hp = model.hparams
    if name.endswith("attn_q.weight"):
        heads = hp.n_heads
    elif name.endswith("attn_k.weight"):
        heads = hp.n_kv_heads
    else:
        return None
    idx = np.arange(rows).reshape(heads, rows // heads // 2, 2)
    return idx.swapaxes(1, 2).reshape(rows)


def _unpermute(model: GGUFModel, name: str, w: np.ndarray) -> np.ndarray:
    order = _permutation(model, name, w.shape[0]) if w.ndim == 2 else None
    return w if order is None else np.ascontiguousarray(w[order])


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face Llama name of GGUF tensor ``gguf_name`` (None if it has none)."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) > 2:
        key = ".".join(["blk", "{i}", *parts[2:]])
        target = HF_NAMES.get(key)
        return None if target is None else target.replace("{i}", parts[1])
    return HF_NAMES.get(gguf_name)


def hf_state_dict(model: GGUFModel) -> dict[str, np.ndarray]:
    """Float32 Hugging Face Llama state dict (exact dequantization of every tensor)."""
    out: dict[str, np.ndarray] = {}
    for name in model.tensors:
        target = hf_name(name)
        if target is not None:
            out[target] = model.float_weight(name)
    if model.tied_embeddings():
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def hf_blocks(model: GGUFModel) -> dict[str, BlockWeight]:
    """The file's quantized tensors as stored, by Hugging Face name (Q/K rows unpermuted).

    With tied embeddings the LM head is the embedding table, so ``lm_head.weight`` gets the
    ``token_embd`` blocks too. ``quantize-llm`` takes these as they are (``blocks=``).
    """
    out: dict[str, BlockWeight] = {}
    for name in model.tensors:
        target = hf_name(name)
        weight = model.block_weight(name) if target is not None else None
        if target is not None and weight is not None:
            out[target] = weight
    if model.tied_embeddings() and "model.embed_tokens.weight" in out:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def to_transformers(model: GGUFModel) -> Any:
    """The float model as a ``transformers.LlamaForCausalLM`` in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hp = model.hparams
    config = LlamaConfig(
        vocab_size=hp.vocab,
        hidden_size=hp.d_model,
        intermediate_size=hp.d_ff,
        num_hidden_layers=hp.n_layers,
        num_attention_heads=hp.n_heads,
        num_key_value_heads=hp.n_kv_heads,
        rms_norm_eps=hp.rms_eps,
        rope_parameters={"rope_type": "default", "rope_theta": hp.rope_theta},
        max_position_embeddings=hp.context,
        tie_word_embeddings=model.tied_embeddings(),
        attention_bias=False,
        mlp_bias=False,
    )
    net = LlamaForCausalLM(config)
    state = {k: torch.from_numpy(v) for k, v in hf_state_dict(model).items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise FrontendError(
            f"{model.path}: GGUF tensors do not fill LlamaForCausalLM: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return net.eval()
