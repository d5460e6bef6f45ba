"""float32 dense with few rows (``kernels_gemv``) on the CPU backend against the interpreter.

Shapes the SmolLM2 ones do not exercise: an odd number of outputs (a partial tile), a
reduction length that is no multiple of the vector (and odd: no split partial sums),
several rows (register blocks of 6), siblings with different biases and activations merged
into one kernel, a residual operand, and a small weight left to the TE kernel.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.target import load_target

pytestmark = pytest.mark.tvm

K = 510  # not a multiple of 16; even, so one row splits its sums in two


def _graph(rows: int, rng: np.random.Generator) -> Graph:
    """x -> three sibling projections (131 outputs + bias + SiLU, 200, 129 + GELU), a small
    one (8 outputs: TE), then 131 -> 520 (K odd) with bias and a residual input."""
    g = Graph(f"gemv_r{rows}")
    x = g.add_input("x", TensorType("f32", (1, rows, K)))
    r = g.add_input("r", TensorType("f32", (1, rows, 520)))

    def weight(name: str, n: int, k: int) -> object:
        return g.add_const(name, (rng.standard_normal((n, k)) * 0.1).astype(np.float32))

    def bias(name: str, n: int) -> object:
        return g.add_const(name, rng.standard_normal(n).astype(np.float32))

    a = g.add_node("nn.dense", [x, weight("wa", 131, K), bias("ba", 131)], {"act": "silu"})
    b = g.add_node("nn.dense", [x, weight("wb", 200, K)])
    c = g.add_node("nn.dense", [x, weight("wc", 129, K)], {"act": "gelu"})
    small = g.add_node("nn.dense", [x, weight("ws", 8, K)])
    d = g.add_node("nn.dense", [a.output, weight("wd", 520, 131), bias("bd", 520), r])
    g.outputs = [a.output, b.output, c.output, small.output, d.output]
    return g


@pytest.mark.parametrize("rows", [1, 12])
def test_few_row_dense_matches_the_interpreter(rows: int) -> None:
    from backends.tvm import TvmBackend

    rng = np.random.default_rng(rows)
    g = _graph(rows, rng)
    art = TvmBackend().compile(g, load_target("cpu"), Path(tempfile.mkdtemp()), {})
    # the siblings share one kernel, the residual dense has its own, the small one is TE
    assert "gemv x2" in art.summary["tapeout_kernels"], art.summary["tapeout_kernels"]
    assert "dense x1" in art.summary["tapeout_kernels"], art.summary["tapeout_kernels"]
    x = rng.standard_normal((1, rows, K)).astype(np.float32)
    r = rng.standard_normal((1, rows, 520)).astype(np.float32)
    got, want = art.run(x, r), interpret(g, x, r)
    for value, gv, wv in zip(g.outputs, got, want, strict=True):
        assert gv.shape == wv.shape
        np.testing.assert_allclose(gv, wv, rtol=1e-4, atol=1e-4, err_msg=value.name)


def test_layout_blocks_rows_and_splits_single_rows() -> None:
    from backends.tvm.kernels_gemv import GemvLayout, pack

    assert GemvLayout(1, 576, 960).split == 2  # two vector accumulators: split in two
    assert GemvLayout(1, 575, 960).split == 1  # odd length: no split
    assert GemvLayout(32, 576, 960).row_block == 8
    assert GemvLayout(12, 576, 960).row_block == 6
    assert GemvLayout(1, 576, 49).tiles == 2
    w = np.arange(49 * 3, dtype=np.float32).reshape(49, 3)
    p = pack(w)
    assert p.shape == (2, 3, 32)
    np.testing.assert_array_equal(p[1, :, 16], w[48])  # output 48: tile 1, column 16
    assert not p[1, :, 17:].any()  # padded outputs are zero


@pytest.mark.slow
def test_llama_decode_on_gemv_kernels_equals_torch_greedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The small Llama of the LLM tests with every projection on ``kernels_gemv`` (its
    weights are below the size limit, lowered to 0 here): q/k/v and gate/up merged, prefill
    rows and decode rows, the same greedy tokens as transformers."""
    pytest.importorskip("transformers")
    import compiler
    from backends.tvm import kernels_gemv
    from compiler.llm import load_llm
    from tests.llm.hf_models import VOCAB, build, torch_greedy

    monkeypatch.setattr(kernels_gemv, "MIN_WEIGHTS", 0)
    model = build("llama")
    compiler.compile_llm(model, "cpu", max_context=32, prefill_len=8, output_dir=tmp_path / "llm")
    art = load_llm(tmp_path / "llm")
    assert "gemv x" in art.decode.summary["tapeout_kernels"], art.decode.summary
    prompt = np.random.default_rng(3).integers(3, VOCAB, 6).tolist()
    res = art.generate([prompt], max_new_tokens=16, stop=[])
    assert res.tokens == [torch_greedy(model, prompt, 16)]
