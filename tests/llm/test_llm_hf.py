"""HF decoders: import vs torch logits, KV-cache greedy decode vs transformers' generate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import compiler  # noqa: E402
from compiler.errors import IntegrityError  # noqa: E402
from compiler.llm import load_llm  # noqa: E402
from compiler.llm.artifact import LLMArtifact  # noqa: E402
from compiler.llm.weights import WeightFile  # noqa: E402
from tests.llm.hf_models import DECODERS, VOCAB, build, torch_greedy  # noqa: E402

NEW_TOKENS = 32
MAX_CONTEXT = 48
PREFILL = 8


class Logits(torch.nn.Module):
    """input_ids -> logits, no cache: what a plain ``compiler.import_model`` sees."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def _prompt(seed: int, length: int) -> list[int]:
    return np.random.default_rng(seed).integers(3, VOCAB, length).tolist()


@pytest.fixture(scope="module", params=sorted(DECODERS))
def decoder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(name, torch model, reference LLM artifact for 2 prompts at a time)."""
    model = build(request.param)
    out = tmp_path_factory.mktemp(request.param) / "llm"
    art = compiler.compile_llm(
        model, "reference", max_context=MAX_CONTEXT, prefill_len=PREFILL, batch_size=2,
        output_dir=out,
    )  # fmt: skip
    return request.param, model, art


def test_import_matches_torch_logits(decoder: tuple) -> None:
    _, model, _ = decoder
    ids = torch.tensor([_prompt(1, 12)])
    graph = compiler.import_model(Logits(model), example_inputs=(ids,))
    (got,) = compiler.interpret(graph, ids.numpy())
    with torch.no_grad():
        want = Logits(model)(ids).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_kv_cache_greedy_decode_equals_torch(decoder: tuple) -> None:
    # 11 tokens: two prefill chunks of 8, the first left-padded (dead attention rows).
    _, model, art = decoder
    prompt = _prompt(2, 11)
    res = art.generate(prompt, max_new_tokens=NEW_TOKENS, stop=[])
    assert res.tokens == [torch_greedy(model, prompt, NEW_TOKENS)]


def test_left_padded_batch_equals_each_prompt_alone(decoder: tuple) -> None:
    _, model, art = decoder
    prompts = [_prompt(3, 5), _prompt(4, 13), _prompt(5, 2)]  # 3 prompts: two groups of 2
    res = art.generate(prompts, max_new_tokens=8, stop=[])
    assert res.tokens == [torch_greedy(model, p, 8) for p in prompts]


def test_saved_artifact_stores_weights_once_and_decodes_the_same(decoder: tuple) -> None:
    name, model, art = decoder
    loaded = load_llm(art.path)
    assert not (art.path / "prefill" / "constants.npz").exists()
    assert not (art.path / "decode" / "constants.npz").exists()
    params = {n for n, _ in model.named_parameters()}
    shared = params & set(loaded.prefill.graph.constants) & set(loaded.decode.graph.constants)
    assert shared, "no parameter kept its name in both graphs"
    for n in shared:
        assert loaded.prefill.graph.constants[n] is loaded.decode.graph.constants[n]
    prompt = _prompt(6, 7)
    assert (
        loaded.generate(prompt, max_new_tokens=6, stop=[]).tokens
        == art.generate(prompt, max_new_tokens=6, stop=[]).tokens
    )


@pytest.mark.tvm
@pytest.mark.slow
def test_cpu_target_greedy_decode_equals_torch(tmp_path: Path) -> None:
    model = build("llama")
    out = tmp_path / "llm"
    compiler.compile_llm(model, "cpu", max_context=MAX_CONTEXT, prefill_len=PREFILL, output_dir=out)
    _weights_stored_once(out)
    prompts = [_prompt(7, 11), _prompt(8, 3)]
    art = load_llm(out)
    assert art.prefill.weights is art.decode.weights  # type: ignore[attr-defined]
    res = art.generate(prompts, max_new_tokens=NEW_TOKENS, stop=[])
    assert res.tokens == [torch_greedy(model, p, NEW_TOKENS) for p in prompts]
    # Generating needs the graphs' signatures only: neither graph was parsed.
    assert not art.prefill.graph.parsed and not art.decode.graph.parsed  # type: ignore[attr-defined]
    # The steps write their keys/values into the cache in place; the same kernels through
    # the copy path (run: the caches copied, the new rows returned) give the same tokens.
    assert art.decode.cache_writes and art.prefill.cache_writes  # type: ignore[attr-defined]
    # The first norm alone, each residual add with the norm after it (the final one's too).
    kernels = art.decode.summary["tapeout_kernels"]
    assert "rms_norm_rows x1" in kernels and "add_rms_norm x4" in kernels, kernels
    assert art.decode.meta["workspace"]  # type: ignore[attr-defined]
    plain = (_RunOnly(art.prefill), _RunOnly(art.decode))
    copy = LLMArtifact(art.spec, 1, *plain, art.path)  # type: ignore[arg-type]
    assert copy.generate(prompts, max_new_tokens=NEW_TOKENS, stop=[]).tokens == res.tokens
    rng = np.random.default_rng(0)
    slots = art.spec.cache_slots
    inputs = [np.array([[4]]), np.array([[5]]), rng.integers(0, 2, (1, slots + 1))]
    inputs += [rng.standard_normal(art.spec.cache_shape(1)).astype(np.float32)
               for _ in range(2 * art.spec.num_layers)]  # fmt: skip
    inputs[2][:, -1] = 1
    got, want = art.decode.run(*inputs), compiler.interpret(art.decode.graph, *inputs)
    assert art.decode.graph.parsed  # type: ignore[attr-defined]  # the interpreter parsed it
    assert len(got) == len(want) == 1 + 2 * art.spec.num_layers
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    weights = out / "weights.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(IntegrityError, match="weights.bin"):
        load_llm(out)
    weights.unlink()
    with pytest.raises(IntegrityError, match="weights.bin"):
        load_llm(out)


def _weights_stored_once(out: Path) -> None:
    """The two TVM modules take their arrays from the artifact's one weights.bin, where each
    array is one blob: the file is smaller than the graph constants plus both modules'."""
    weights = WeightFile(out / "weights.bin")
    assert not (out / "weights.npz").exists()
    keys = {}
    for part in ("prefill", "decode"):
        params = json.loads((out / part / "tvm.json").read_text())["params"]
        assert params["file"] == "../weights.bin" and not (out / part / "params.bin").exists()
        keys[part] = params["keys"]
        assert set(keys[part]) <= set(weights)
    size = {part: sum(weights[k].nbytes for k in keys[part]) for part in keys}
    shared = set(keys["prefill"]) & set(keys["decode"])
    assert sum(weights[k].nbytes for k in shared) > 0.9 * size["decode"]
    graph = sum(a.nbytes for n, a in weights.items() if not n.startswith("tvm:"))
    # The dense weights the kernels read packed are recipes over the packed arrays, not
    # stored: what the file stores besides the modules' arrays is small (norms, biases).
    assert weights.derived and not any(n.startswith("tvm:") for n in weights.derived)
    stored = [n for n in weights if n not in weights.derived]
    distinct = {id(a): a.nbytes for a in (weights[n] for n in stored)}
    assert weights.blobs == len(distinct)
    modules = {id(weights[k]) for part in keys for k in keys[part]}
    assert sum(nbytes for i, nbytes in distinct.items() if i not in modules) < 0.05 * graph
    assert weights.size <= sum(distinct.values()) + 64 * (len(distinct) + 1) + 65536
    assert weights.size < graph + size["prefill"] + size["decode"]
    largest = max(keys["decode"], key=lambda k: weights[k].nbytes)
    for part in ("prefill", "decode"):
        assert weights[largest].tobytes()[:256] not in (out / part / "model.so").read_bytes()


class _RunOnly:
    """An artifact's ``run`` alone: what a backend without in-place cache writes offers."""

    def __init__(self, art: object):
        self.run = art.run  # type: ignore[attr-defined]
