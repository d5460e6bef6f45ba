"""``tapeout compile-llm model.gguf``: a GGUF file straight to an artifact, blocks kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf", reason="GGUF import needs the gguf package (dev extra)")
pytest.importorskip("transformers")

from compiler.cli import main  # noqa: E402
from compiler.frontends.gguf import read_gguf  # noqa: E402
from compiler.llm.weights import WeightFile  # noqa: E402
from tests.frontends.test_gguf import _write  # noqa: E402


def test_compile_llm_keeps_the_files_blocks(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "tiny.gguf"
    _write(path, rng)
    out = tmp_path / "llm"
    argv = ["compile-llm", str(path), "-t", "reference", "-o", str(out), "--max-context", "16",
            "--prefill-len", "4", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    model = read_gguf(path)
    weights = WeightFile(out / "weights.bin")
    # Q4_1 gate, Q4_0 up, Q8_0 down: the integers exactly as the file stores them.
    for gguf_name, hf_name in [
        ("blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"),
        ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
    ]:
        block = model.block_weight(gguf_name)
        assert block is not None
        stored = [k for k in list(weights) if k == hf_name + "_q"]
        assert stored, (hf_name, list(weights)[:8])
        np.testing.assert_array_equal(weights[stored[0]], block.q)
    assert main(["generate", str(out), "--prompt", "hello world", "--max-new-tokens", "3",
                 "--stop", "", "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert len(result["tokens"]) == 3 and isinstance(result["text"], str)


def test_weights_gguf_needs_a_gguf_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.llm.hf_models import build

    build("llama").save_pretrained(tmp_path / "hf")
    argv = ["compile-llm", str(tmp_path / "hf"), "-t", "reference", "-o", str(tmp_path / "o"),
            "--weights", "gguf", "--json"]  # fmt: skip
    assert main(argv) == 1  # an InputError
    assert "no .gguf" in json.loads(capsys.readouterr().out)["error"]["message"]
    assert not (tmp_path / "o").exists()


def test_act_bits_16_reaches_every_block_dense(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture
) -> None:
    """``--act-bits 16``: the file's blocks kept, their activations quantized to 16-bit codes
    in both saved step graphs."""
    path = tmp_path / "tiny.gguf"
    _write(path, rng)
    out = tmp_path / "llm"
    argv = ["compile-llm", str(path), "-t", "reference", "-o", str(out), "--max-context", "16",
            "--prefill-len", "4", "--act-bits", "16", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    texts = [p.read_text() for p in sorted(out.rglob("*.ir"))]
    assert texts, sorted(p.name for p in out.rglob("*"))
    lines = [ln for t in texts for ln in t.splitlines() if "q.block_dense(" in ln]
    assert lines and all("act_bits=16" in ln for ln in lines)
