"""q.block_dense on the CPU backend: every weight format bit for bit against the interpreter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.context import PassContext
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.target import load_target
from passes.quant.llm_weights import quantize_blocks
from passes.quantize_llm import QuantizeLLM
from tests.backends.ir_text import load_graph

pytestmark = pytest.mark.tvm

#: One dense per format, chained: (format, in, out features); 40 outputs: a partial row tile.
FORMATS = [("int4", 64, 96), ("int4a", 96, 64), ("int8", 64, 128), ("int8a", 128, 40)]
GRAPH = Path(__file__).parent / "graphs" / "blocks.ir"


def _graph(rng: np.random.Generator, tokens: int, group: int) -> tuple[Graph, dict]:
    """``graphs/blocks.ir`` with random weights, and their blocks in each layer's format."""
    weights = {
        f"layer{i}.weight": rng.standard_normal((n, k)).astype(np.float32)
        for i, (_, k, n) in enumerate(FORMATS)
    }
    blocks = {
        ref: quantize_blocks(w, fmt, group)
        for (ref, w), (fmt, _, _) in zip(weights.items(), FORMATS, strict=True)
    }
    return load_graph(GRAPH, weights, tokens=str(tokens)), blocks


def _compile_and_compare(target_name: str, tokens: int, group: int, act_bits: int = 8) -> None:
    from backends.tvm import TvmBackend

    rng = np.random.default_rng(tokens)
    g, blocks = _graph(rng, tokens, group)
    QuantizeLLM(blocks=blocks, act_bits=act_bits).run(g, PassContext())
    assert {n.attrs["act_bits"] for n in g.nodes if n.op == "q.block_dense"} == {act_bits}
    assert sorted(n.inputs[1].dtype for n in g.nodes if n.op == "q.block_dense") == sorted(
        ["i4", "u4", "i8", "u8"]
    )
    x = (rng.standard_normal((1, tokens, FORMATS[0][1])) * 3).astype(np.float32)
    x[0, 0, :8] = 0  # a zero activation block
    backend, target = TvmBackend(), load_target(target_name)
    assert backend.unsupported(g, target) == []
    art = backend.compile(g, target, Path(tempfile.mkdtemp()), {})
    for got, want in zip(art.run(x), interpret(g, x), strict=True):
        np.testing.assert_array_equal(got, want)


def test_prefill_rows_match_the_interpreter_bit_for_bit() -> None:
    _compile_and_compare("cpu", tokens=3, group=16)


def _need_vnni() -> None:
    from backends.tvm.build import host_can_run

    ok, why = host_can_run(load_target("x86-64-avx512"))
    if not ok:
        pytest.skip(f"needs an AVX-512 VNNI host: {why}")


def test_vnni_decode_matches_the_interpreter_bit_for_bit() -> None:
    _need_vnni()
    _compile_and_compare("x86-64-avx512", tokens=1, group=32)


@pytest.mark.parametrize("tokens", [1, 9])
def test_16bit_activations_match_the_interpreter_bit_for_bit(tokens: int) -> None:
    """``act_bits=16``: the decode GEMV (1 row) and the prefill GEMM (9 rows), every format."""
    _need_vnni()
    _compile_and_compare("x86-64-avx512", tokens=tokens, group=32, act_bits=16)


def test_projections_of_one_input_share_a_kernel_bit_for_bit() -> None:
    """Three asymmetric int4 weights that read one input (a layer's q/k/v) become one kernel
    over their rows, sliced after (a partial row tile in the middle); the int8 weight on the
    same input is another variant and keeps its own kernel."""
    from backends.tvm import TvmBackend

    rng = np.random.default_rng(7)
    g = Graph("qkv")
    x_in = g.add_input("x", TensorType("f32", (1, 2, 64)))
    blocks, outs = {}, []
    for i, (fmt, n) in enumerate([("int4a", 96), ("int4a", 40), ("int8", 32), ("int4a", 48)]):
        w = rng.standard_normal((n, 64)).astype(np.float32)
        blocks[f"w{i}"] = quantize_blocks(w, fmt, 32)
        outs.append(g.add_node("nn.dense", [x_in, g.add_const(f"w{i}", w)]).output)
    g.outputs = outs
    QuantizeLLM(blocks=blocks).run(g, PassContext())
    art = TvmBackend().compile(g, load_target("cpu"), Path(tempfile.mkdtemp()), {})
    assert "block_dense x2" in art.summary["tapeout_kernels"]
    x = (rng.standard_normal((1, 2, 64)) * 3).astype(np.float32)
    for got, want in zip(art.run(x), interpret(g, x), strict=True):
        np.testing.assert_array_equal(got, want)
