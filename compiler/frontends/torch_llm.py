"""Hugging Face causal LMs -> a prefill graph and a decode-step graph with an explicit KV cache.

Both graphs come from one wrapper, :class:`StepModule`, exported at two chunk sizes
(``prefill_len`` tokens and 1 token). The wrapper calls the model's own forward with

- a 4-D boolean attention mask that it builds itself from a ``[B, S + C]`` validity input
  (transformers returns a 4-D mask as it is, so none of its mask-building code is traced);
- explicit ``position_ids`` (left-padded rows start at position 0 at their first token);
- a cache object, :class:`StepCache`, whose ``update`` concatenates the past keys/values
  (graph inputs) with the chunk's new ones and records the new ones as graph outputs.

Parameters keep their fully qualified names in both exports, so the two graphs share their
constants by name (``compiler.llm`` stores them once).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from compiler.errors import FrontendError
from compiler.ir import Graph
from compiler.llm.spec import CACHE_RULES, LLMSpec, NoCacheRuleError


class StepCache:
    """Duck-typed transformers ``Cache``: past keys/values in, the chunk's new ones recorded."""

    is_compileable = False

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]], layers: int):
        self.past = past
        self.new: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * layers

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.new[layer_idx] = (key, value)
        past_key, past_value = self.past[layer_idx]
        return torch.cat([past_key, key], dim=2), torch.cat([past_value, value], dim=2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


def check_cache_rules(model: torch.nn.Module) -> None:
    """Every attention module must have a cache rule; else a typed error naming it."""
    attention = [
        (name, type(m).__name__)
        for name, m in model.named_modules()
        if type(m).__name__.endswith("Attention")
    ]
    if not attention:
        raise NoCacheRuleError(
            f"{type(model).__name__}: no attention module found (a class named *Attention); "
            f"tapeout has cache rules for {sorted(CACHE_RULES)}"
        )
    missing = [(n, c) for n, c in attention if c not in CACHE_RULES]
    if missing:
        name, cls = missing[0]
        raise NoCacheRuleError(
            f"{type(model).__name__}: attention module {name or '<root>'} ({cls}, "
            f"{len(missing)} such module(s)) has no KV-cache rule; tapeout has rules for "
            f"{sorted(CACHE_RULES)}"
        )


class StepModule(torch.nn.Module):
    """``(input_ids[B,C], position_ids[B,C], attention_mask[B,S+C], past...) -> (logits[B,V],
    new keys/values[B,n_kv,C,hd] per layer)`` with S = ``spec.cache_slots``, or S read off
    the mask's width where the cache length is symbolic (``spec.dynamic_cache``)."""

    def __init__(self, model: torch.nn.Module, spec: LLMSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        self.slots = spec.cache_slots
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *past_flat: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        batch, chunk = input_ids.shape
        valid = attention_mask != 0
        causal = torch.ones(chunk, chunk, dtype=torch.bool).tril()
        if self.spec.dynamic_cache:
            # Slices from the end and a broadcast instead of an expand: no op attribute
            # holds the symbolic cache length, so every backend takes the graph as it is.
            new = causal[None, None] & valid[:, None, None, -chunk:]
            rows = torch.ones(chunk, 1, dtype=torch.bool)
            old = valid[:, None, None, :-chunk] & rows
        else:
            new = causal[None, None] & valid[:, None, None, self.slots :]
            old = valid[:, None, None, : self.slots].expand(batch, 1, chunk, self.slots)
        mask = torch.cat([old, new], dim=-1)
        pairs = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        cache = StepCache(pairs, self.spec.num_layers)
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
        )
        if any(n is None for n in cache.new):
            raise NoCacheRuleError(
                f"{type(self.model).__name__}: the attention modules of layers "
                f"{[i for i, n in enumerate(cache.new) if n is None]} never called "
                "cache.update; tapeout has no KV-cache rule for them"
            )
        news = [t for pair in cache.new if pair is not None for t in pair]
        return (out.logits[:, -1, :], *news)


def example_step_inputs(spec: LLMSpec, chunk: int, batch: int) -> tuple[torch.Tensor, ...]:
    """Zeros of the step graph's input shapes."""
    ids = torch.zeros(batch, chunk, dtype=torch.long)
    mask = torch.ones(batch, spec.cache_slots + chunk, dtype=torch.long)
    past = [torch.zeros(spec.cache_shape(batch)) for _ in range(2 * spec.num_layers)]
    return (ids, ids.clone(), mask, *past)


def build_step_graph(
    model: torch.nn.Module, spec: LLMSpec, chunk: int, batch: int, name: str
) -> Graph:
    """Export the step module at one chunk size and import it (the input/output names are
    the interface of :mod:`compiler.llm`)."""
    from compiler.frontends.torch_export import import_torch

    step = StepModule(model, spec).eval()
    dynamic = None
    if spec.dynamic_cache:  # the cache length is the symbol ``past`` in 1..cache_slots
        past = torch.export.Dim("past", min=1, max=spec.cache_slots)
        cache = tuple({2: past} for _ in range(2 * spec.num_layers))
        dynamic = (None, None, {1: past + chunk}, cache)
    with torch.no_grad():
        graph = import_torch(step, example_step_inputs(spec, chunk, batch), dynamic)
    graph.name = name
    _rename_interface(graph, spec)
    _strip_prefix(graph, "model.")
    return graph


def _strip_prefix(graph: Graph, prefix: str) -> None:
    """Constants named as in the model's own ``state_dict`` (the wrapper adds ``model.``)."""
    renames = {
        ref: ref[len(prefix) :]
        for ref in graph.constants
        if ref.startswith(prefix) and ref[len(prefix) :] not in graph.constants
    }
    graph.constants = {renames.get(k, k): v for k, v in graph.constants.items()}
    for node in graph.nodes:
        if node.op == "const" and node.attrs["ref"] in renames:
            node.attrs["ref"] = renames[node.attrs["ref"]]


def _rename_interface(graph: Graph, spec: LLMSpec) -> None:
    names = ["input_ids", "position_ids", "attention_mask"]
    names += [f"past_{kv}_{i}" for i in range(spec.num_layers) for kv in ("key", "value")]
    outs = ["logits"] + [f"new_{kv}_{i}" for i in range(spec.num_layers) for kv in ("key", "value")]
    if len(graph.inputs) != len(names) or len(graph.outputs) != len(outs):
        raise FrontendError(
            f"step graph @{graph.name}: expected {len(names)} inputs and {len(outs)} outputs, "
            f"got {len(graph.inputs)} and {len(graph.outputs)}"
        )
    taken = {v.name for v in graph.values()}
    pairs = [*zip(graph.inputs, names, strict=True), *zip(graph.outputs, outs, strict=True)]
    for value, new in pairs:
        if value.name == new or value.is_const:
            continue
        if new in taken:  # a value of the model already has that name: give it another
            other = next(v for v in graph.values() if v.name == new)
            other.name = graph.fresh_name(f"{new}_model")
        taken.discard(value.name)
        value.name = new
        taken.add(new)
        graph._names.add(new)


def import_causal_lm(
    model: torch.nn.Module,
    max_context: int,
    prefill_len: int,
    batch_size: int = 1,
    dynamic_cache: bool = False,
) -> Any:
    """The prefill and decode graphs of a Hugging Face causal LM (``LLMGraphs``); with
    ``dynamic_cache`` their cache length is the symbol ``past`` (``LLMSpec.dynamic_cache``)."""
    from compiler.llm.graphs import LLMGraphs
    from compiler.llm.spec import spec_from_config

    config = getattr(model, "config", None)
    if config is None:
        raise FrontendError(
            f"{type(model).__name__} has no .config: compile_llm takes a Hugging Face causal "
            "LM (or a module with its interface and config)"
        )
    check_cache_rules(model)
    spec = spec_from_config(config, max_context, prefill_len)
    if dynamic_cache:
        spec = dataclasses.replace(spec, dynamic_cache=True)
    model = model.eval()
    prefill = build_step_graph(model, spec, prefill_len, batch_size, "prefill")
    decode = build_step_graph(model, spec, 1, batch_size, "decode")
    return LLMGraphs(spec, prefill, decode)


def load_hf_causal_lm(folder: str) -> tuple[torch.nn.Module, Any]:
    """A causal LM and its tokenizer (None if the folder has none) from a local HF folder."""
    import transformers

    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise FrontendError(f"cannot load a causal LM from {folder}: {e}") from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    return model.eval(), tokenizer
