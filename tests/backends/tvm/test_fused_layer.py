"""A decoder layer's float ops fused on the cpu target, and intermediates made once.

``graphs/decoder_layer.ir``: the residual add and RMS norm become one kernel
(``lower_norm.add_rms_norm_func``), the q/k/v heads with RoPE one more
(``lower_heads``); with the ``workspace`` option the VM allocates only the results per call
(``backends.tvm.workspace``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.target import load_target
from tests.backends.ir_text import load_graph

pytestmark = pytest.mark.tvm

GRAPH = Path(__file__).parent / "graphs" / "decoder_layer.ir"


def _inputs(c: int, rng: np.random.Generator) -> list[np.ndarray]:
    angles = rng.uniform(0, 6, (1, 1, c, 32)).astype(np.float32)
    angles = np.concatenate([angles, angles], axis=-1)
    x, r = (rng.standard_normal((1, c, 256)).astype(np.float32) for _ in range(2))
    return [x, r, np.cos(angles), np.sin(angles)]


def _compile(c: int, options: dict[str, Any], blocks: str = "") -> Any:
    """The graph for ``c`` tokens (q/k/v in ``blocks`` format when given) and its build."""
    from backends.tvm import TvmBackend

    consts = {"two": np.float32(2.0), "eps": np.float32(1e-5)}
    graph = load_graph(GRAPH, consts, seed=c, c=str(c))
    if blocks:
        from compiler.context import PassContext
        from passes.quant.llm_weights import quantize_blocks
        from passes.quantize_llm import QuantizeLLM

        found = {f"{p}.weight": quantize_blocks(graph.constants[f"{p}.weight"], blocks, 32)
                 for p in "qkv"}  # fmt: skip
        QuantizeLLM(blocks=found).run(graph, PassContext())
    return graph, TvmBackend().compile(graph, load_target("cpu"), Path(tempfile.mkdtemp()),
                                       options)  # fmt: skip


@pytest.mark.parametrize(("c", "blocks"), [(1, ""), (3, ""), (1, "int4a")])
def test_layer_fuses_and_matches_the_interpreter(c: int, blocks: str) -> None:
    graph, art = _compile(c, {"workspace": True}, blocks)
    kernels = art.summary["tapeout_kernels"]
    assert "add_rms_norm x1" in kernels and "tapeout_rope_heads x1" in kernels, kernels
    assert ("block_dense x1" if blocks else "gemv x1") in kernels, kernels
    inputs = _inputs(c, np.random.default_rng(c))
    want = interpret(graph, *inputs)
    first = art.run(*inputs)
    for got, ref in zip(first, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)
    # The residual sum is the plain float add, bit for bit.
    np.testing.assert_array_equal(first[0], inputs[0] + inputs[1])
    # Results are fresh arrays each call: a second call does not change the first's.
    kept = [a.copy() for a in first]
    art.run(*_inputs(c, np.random.default_rng(99)))
    for a, b in zip(first, kept, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_chunk_of_many_tokens_keeps_the_add_and_its_norm_apart() -> None:
    from backends.tvm.lower_norm import FUSED_MAX_ROWS

    c = FUSED_MAX_ROWS + 1  # rows = tokens: a prefill chunk (more peak memory fused)
    graph, art = _compile(c, {"workspace": True})
    kernels = art.summary["tapeout_kernels"]
    assert "add_rms_norm" not in kernels and "rms_norm_rows x1" in kernels, kernels
    inputs = _inputs(c, np.random.default_rng(c))
    got = art.run(*inputs)
    for a, ref in zip(got, interpret(graph, *inputs), strict=True):
        np.testing.assert_allclose(a, ref, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(got[0], inputs[0] + inputs[1])


def test_workspace_leaves_only_the_results_to_allocate() -> None:
    graph, art = _compile(1, {"workspace": True})
    _, plain = _compile(1, {})
    inputs = _inputs(1, np.random.default_rng(0))
    for got, ref in zip(art.run(*inputs), plain.run(*inputs), strict=True):
        np.testing.assert_array_equal(got, ref)

    def builtins(a: Any) -> dict[str, int]:
        return {r["kernel"]: r["calls"] for r in a.profile(*inputs, repeat=1)
                if r["kernel"].startswith("vm.builtin")}  # fmt: skip

    hoisted, planned = builtins(art), builtins(plain)
    # One tensor per result of main (5), and the storage under them; nothing else.
    assert hoisted.get("vm.builtin.alloc_tensor", 0) <= len(graph.outputs)
    assert planned["vm.builtin.alloc_tensor"] > hoisted.get("vm.builtin.alloc_tensor", 0)
    assert sum(hoisted.values()) < sum(planned.values())
