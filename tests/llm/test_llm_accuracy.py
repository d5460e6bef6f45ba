"""Teacher-forced accuracy of a compiled LLM against its float model (``accuracy_windows``):
top-1, KL and perplexity in the artifact, its report, ``accuracy.json`` and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import compiler  # noqa: E402
from compiler.cli import main  # noqa: E402
from compiler.errors import InputError  # noqa: E402
from compiler.llm import load_llm  # noqa: E402
from compiler.llm.evaluate import compare, text_windows, torch_logits  # noqa: E402
from passes.quantize_llm import quantize_llm_graphs  # noqa: E402
from tests.llm.hf_models import VOCAB, build  # noqa: E402

MAX_CONTEXT, PREFILL = 16, 8


def _windows(count: int = 2) -> list[list[int]]:
    ids = np.random.default_rng(5).integers(3, VOCAB, 200).tolist()
    return text_windows(ids, MAX_CONTEXT, count)


def test_float_build_agrees_and_int4_build_measurably_does_not(tmp_path: Path) -> None:
    model = build("llama")
    windows = _windows()
    float_art = compiler.compile_llm(
        model, "reference", max_context=MAX_CONTEXT, prefill_len=PREFILL,
        accuracy_windows=windows,
    )  # fmt: skip
    acc = float_art.accuracy
    assert acc is not None and acc.windows == 2 and acc.positions == 2 * (MAX_CONTEXT - PREFILL)
    assert acc.top1 == 1.0 and acc.kl < 1e-8
    assert acc.ppl == pytest.approx(acc.ppl_float, rel=1e-5)

    int4 = compiler.compile_llm(
        model, "reference", max_context=MAX_CONTEXT, prefill_len=PREFILL,
        rewrite=lambda g: quantize_llm_graphs(g, weights="int4", group=32, lm_head="same"),
        accuracy_windows=windows, output_dir=tmp_path / "int4",
    )  # fmt: skip
    got = int4.accuracy
    assert got is not None and got.kl > 1e-6 and got.ppl != pytest.approx(got.ppl_float)
    assert got.ppl_float == pytest.approx(acc.ppl_float, rel=1e-6)  # the same float model
    assert "top-1" in int4.report() and f"KL {got.kl:.5f}" in int4.report()
    assert load_llm(tmp_path / "int4").accuracy == got
    assert json.loads((tmp_path / "int4" / "accuracy.json").read_text())["kl"] == got.kl


def test_compare_is_kl_of_the_distributions() -> None:
    """One position, two-token vocabulary: the numbers by hand."""
    ref = [np.log(np.array([[0.75, 0.25]]))]
    got = [np.log(np.array([[0.25, 0.75]]))]
    acc = compare(ref, got, [[0, 1]], start=1)  # the text's next token is 1
    assert acc.kl == pytest.approx(0.5 * np.log(3.0)) and acc.top1 == 0.0
    assert acc.ppl == pytest.approx(1 / 0.75) and acc.ppl_float == pytest.approx(4.0)


def test_bad_accuracy_windows_are_refused() -> None:
    model = build("llama")
    with pytest.raises(InputError, match="window 0 has 4 tokens"):
        compiler.compile_llm(
            model, "reference", max_context=MAX_CONTEXT, prefill_len=PREFILL,
            accuracy_windows=[[5, 6, 7, 8]],
        )  # fmt: skip
    from compiler.frontends.torch_llm import import_causal_lm

    graphs = import_causal_lm(model, MAX_CONTEXT, PREFILL)
    with pytest.raises(InputError, match="reference="):
        compiler.compile_llm(graphs, "reference", accuracy_windows=_windows(1))
    ref = torch_logits(model, PREFILL)
    art = compiler.compile_llm(graphs, "reference", accuracy_windows=_windows(1), reference=ref)
    assert art.accuracy is not None and art.accuracy.top1 == 1.0


def test_cli_eval_text_reports_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gguf", reason="GGUF import needs the gguf package (dev extra)")
    from tests.frontends.test_gguf import _write

    path = tmp_path / "tiny.gguf"
    _write(path, np.random.default_rng(0))
    text = tmp_path / "text.txt"
    text.write_text("hello world, the quick brown fox jumps over the lazy dog. " * 20)
    out = tmp_path / "llm"
    argv = ["compile-llm", str(path), "-t", "reference", "-o", str(out), "--max-context", "16",
            "--prefill-len", "4", "--eval-text", str(text), "--eval-windows", "2",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    acc = json.loads(capsys.readouterr().out)["accuracy"]
    assert acc["windows"] == 2 and acc["positions"] == 2 * 12
    assert 0.0 <= acc["top1"] <= 1.0 and acc["kl"] >= 0.0
    assert json.loads((out / "accuracy.json").read_text()) == acc
    short = tmp_path / "short.txt"
    short.write_text("hi")
    argv[argv.index(str(text))] = str(short)
    argv[argv.index(str(out))] = str(tmp_path / "o2")
    assert main(argv) == 1
    assert "fewer than one window" in json.loads(capsys.readouterr().out)["error"]["message"]
    assert not (tmp_path / "o2").exists()
