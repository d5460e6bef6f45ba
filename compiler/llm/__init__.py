"""Decoder LLMs: a prefill and a decode-step graph with an explicit KV cache, and generate.

``compile_llm(hf_model, target=..., max_context=...)`` returns an :class:`LLMArtifact` whose
``generate`` runs a left-padded batch of prompts; ``load_llm`` reopens a saved one. The graph
signatures, the on-disk layout and how a weight-rewriting pass plugs in are in
``compiler/llm/README.md``. Nothing here imports torch at module level (the HF import is in
``compiler.frontends.torch_llm``).
"""

from compiler.llm.artifact import LLMArtifact, compile_llm, load_llm
from compiler.llm.graphs import LLMGraphs
from compiler.llm.runtime import GenerateResult
from compiler.llm.sampling import Sampler
from compiler.llm.spec import CACHE_RULES, LLMSpec, NoCacheRuleError

__all__ = [
    "CACHE_RULES",
    "GenerateResult",
    "LLMArtifact",
    "LLMGraphs",
    "LLMSpec",
    "NoCacheRuleError",
    "Sampler",
    "compile_llm",
    "load_llm",
]
