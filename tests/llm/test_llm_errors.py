"""compile_llm refuses what it cannot cache, naming the module; the CLI round trip."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import compiler  # noqa: E402
from compiler.cli import main  # noqa: E402
from compiler.llm import NoCacheRuleError  # noqa: E402
from tests.llm.hf_models import build, torch_greedy  # noqa: E402


class WindowAttention(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = WindowAttention()


class Toy(torch.nn.Module):
    """A decoder-shaped module whose attention tapeout has no cache rule for."""

    def __init__(self) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(
            num_hidden_layers=1, num_attention_heads=1, hidden_size=4, vocab_size=8
        )
        self.blocks = torch.nn.ModuleList([Block()])


def test_attention_without_a_cache_rule_is_named() -> None:
    with pytest.raises(NoCacheRuleError, match=r"blocks\.0\.attn \(WindowAttention"):
        compiler.compile_llm(Toy(), max_context=8, prefill_len=4)


def test_module_without_attention_is_refused() -> None:
    model = torch.nn.Linear(2, 2)
    model.config = Toy().config  # type: ignore[assignment]
    with pytest.raises(NoCacheRuleError, match="no attention module"):
        compiler.compile_llm(model, max_context=8, prefill_len=4)


def test_cli_compile_llm_then_generate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = build("llama")
    model.save_pretrained(tmp_path / "hf")
    out = tmp_path / "llm"
    argv = ["compile-llm", str(tmp_path / "hf"), "-t", "reference", "-o", str(out)]
    assert main([*argv, "--max-context", "24", "--prefill-len", "4", "--json"]) == 0
    capsys.readouterr()
    prompt = [5, 17, 33, 9, 60]
    ids = ",".join(map(str, prompt))
    assert main(["generate", str(out), "--prompt-ids", ids, "--max-new-tokens", "6",
                 "--stop", "", "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == torch_greedy(model, prompt, 6)
    assert result["prefill_ms"] > 0
    # Streaming: one line of ids and the timings.
    assert main(["generate", str(out), "--prompt-ids", ids, "--max-new-tokens", "3",
                 "--stop", ""]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert text.startswith(" ".join(map(str, result["tokens"][:3])))
    assert "prefill" in text and "tokens/s" in text
    # A prompt longer than max_context is an InputError: exit code 1 and its message.
    long_ids = ",".join(["5"] * 25)
    assert main(["generate", str(out), "--prompt-ids", long_ids, "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "InputError" and "max_context=24" in error["message"]


def _word_tokenizer() -> object:
    """A word-level HF tokenizer over "w0".."w127", built in code (nothing downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(128)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0")


def test_text_prompt_streams_text_with_the_saved_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("tokenizers")
    model = build("gpt2")
    out = tmp_path / "llm"
    compiler.compile_llm(model, "onnx", max_context=16, prefill_len=4, output_dir=out,
                         tokenizer=_word_tokenizer())  # fmt: skip
    assert main(["generate", str(out), "--prompt", "w5 w17 w33", "--max-new-tokens", "5",
                 "--stop", ""]) == 0  # fmt: skip
    want = " ".join(f"w{t}" for t in torch_greedy(model, [5, 17, 33], 5))
    printed = capsys.readouterr().out
    assert printed.startswith(want), printed
    assert "target onnx" in printed
