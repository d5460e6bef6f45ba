"""A block-quantized LLM on the cpu target against the reference interpreter, end to end.

The ``q.block_dense`` kernels are the interpreter's bit for bit (tests/backends/tvm); here a
whole decoder (Llama, 2 layers, in and out of the artifact's prefill and decode steps) is
quantized once per case, built for the cpu target and for ``reference``, and must agree:
the same greedy tokens, and the decode step's logits and new cache rows within float
rounding (attention, norms and softmax are float kernels, not bit-exact ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import compiler  # noqa: E402
from passes.quantize_llm import quantize_llm_graphs  # noqa: E402
from tests.llm.hf_models import VOCAB, build  # noqa: E402

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

MAX_CONTEXT, PREFILL, NEW = 32, 8, 12

#: case -> quantize-llm options: W4A8 asymmetric int4 and W8A16 asymmetric int8.
CASES = {
    "int4a-a8": {"weights": "int4", "sym": False, "lm_head": "same"},
    "int8a-a16": {"weights": "int8", "sym": False, "act_bits": 16},
}


def _target() -> str:
    """The VNNI kernels where this host runs them, else the portable ones."""
    from backends.tvm.build import host_can_run
    from compiler.target import load_target

    return "x86-64-avx512" if host_can_run(load_target("x86-64-avx512"))[0] else "cpu"


def _build(target: str, options: dict[str, Any], out: Path) -> Any:
    return compiler.compile_llm(
        build("llama"), target, max_context=MAX_CONTEXT, prefill_len=PREFILL, output_dir=out,
        rewrite=lambda graphs: quantize_llm_graphs(graphs, group=32, **options),
    )  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_quantized_cpu_artifact_agrees_with_the_interpreter(tmp_path: Path, case: str) -> None:
    options = CASES[case]
    cpu = _build(_target(), options, tmp_path / "cpu")
    ref = _build("reference", options, tmp_path / "ref")
    ops = [n for n in cpu.decode.graph.nodes if n.op == "q.block_dense"]
    assert ops and {n.attrs["act_bits"] for n in ops} == {options.get("act_bits", 8)}
    rng = np.random.default_rng(1)
    prompts = [rng.integers(3, VOCAB, 9).tolist(), rng.integers(3, VOCAB, 4).tolist()]
    for prompt in prompts:
        got = cpu.generate([prompt], max_new_tokens=NEW, stop=[]).tokens
        assert got == ref.generate([prompt], max_new_tokens=NEW, stop=[]).tokens
    slots = cpu.spec.cache_slots
    inputs = [np.array([[4]]), np.array([[5]]), rng.integers(0, 2, (1, slots + 1))]
    inputs += [rng.standard_normal(cpu.spec.cache_shape(1)).astype(np.float32)
               for _ in range(2 * cpu.spec.num_layers)]  # fmt: skip
    inputs[2][:, -1] = 1
    got_step, want_step = cpu.decode.run(*inputs), compiler.interpret(cpu.decode.graph, *inputs)
    for g, w in zip(got_step, want_step, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
