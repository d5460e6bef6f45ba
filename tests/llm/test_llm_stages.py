"""An LLM's decoder layers split across pipeline stages: both graphs (prefill and decode) of a
tiny random Llama are cut into stages, and generation equals the unsplit artifact's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import compiler  # noqa: E402
from compiler.frontends.torch_llm import import_causal_lm  # noqa: E402
from compiler.llm import load_llm  # noqa: E402
from compiler.partition import cut_stages  # noqa: E402
from tests.llm.hf_models import VOCAB, build  # noqa: E402

LAYER = re.compile(r"\blayers\.(\d+)\b")


def _layers(nodes: list) -> set[int]:
    return {int(m.group(1)) for n in nodes if (m := LAYER.search(n.loc or ""))}


def test_llama_decoder_layers_split_across_two_stages(tmp_path: Path) -> None:
    graphs = import_causal_lm(build("llama"), max_context=16, prefill_len=4, batch_size=1)
    # The cut falls between the two decoder layers: each stage holds whole layers.
    for graph in graphs.graphs:
        parts = cut_stages(graph, 2)
        assert [_layers(p.nodes) for p in parts] == [{0}, {1}], graph.name
    one = compiler.compile_llm(graphs, "reference", output_dir=tmp_path / "one")
    two = compiler.compile_llm(graphs, "reference", output_dir=tmp_path / "two", pipeline_stages=2)
    assert len(two.prefill.parts) == len(two.decode.parts) == 2  # type: ignore[attr-defined]
    prompt = np.random.default_rng(0).integers(3, VOCAB, 6).tolist()  # two prefill chunks
    want = one.generate([prompt], max_new_tokens=8)
    got = two.generate([prompt], max_new_tokens=8)
    assert got.tokens == want.tokens
    again = load_llm(tmp_path / "two")
    assert again.generate([prompt], max_new_tokens=8).tokens == want.tokens
