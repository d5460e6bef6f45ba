"""A symbolic cache length (``dynamic_cache``): the step graphs take the slots written so far,
and the gpu target's TensorRT bundle carries one optimization profile over that length."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import compiler  # noqa: E402
from backends.tensorrt import build_engine  # noqa: E402
from compiler.errors import InputError  # noqa: E402
from compiler.llm import load_llm  # noqa: E402
from compiler.llm.runtime import Batch  # noqa: E402
from tests.backends.tensorrt.fake_trt import FakeTensorRT  # noqa: E402
from tests.llm.hf_models import VOCAB, build, torch_greedy  # noqa: E402

MAX_CONTEXT, PREFILL, NEW_TOKENS = 40, 8, 24
SLOTS = MAX_CONTEXT + PREFILL


def _prompt(seed: int, length: int) -> list[int]:
    return np.random.default_rng(seed).integers(3, VOCAB, length).tolist()


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_onnx_steps_with_a_symbolic_cache_decode_as_torch(name: str, tmp_path: Path) -> None:
    """Prefill over two chunks (the first left-padded onto a masked dummy slot), then decode
    steps whose cache grows by one slot each: onnxruntime runs one model for every length."""
    model = build(name)
    art = compiler.compile_llm(
        model, "onnx", max_context=MAX_CONTEXT, prefill_len=PREFILL, dynamic_cache=True,
        output_dir=tmp_path / "llm",
    )  # fmt: skip
    assert art.spec.dynamic_cache
    prompt = _prompt(3, 11)
    want = [torch_greedy(model, prompt, NEW_TOKENS)]
    assert art.generate(prompt, max_new_tokens=NEW_TOKENS, stop=[]).tokens == want
    again = load_llm(tmp_path / "llm")
    assert again.spec.dynamic_cache
    assert again.generate(prompt, max_new_tokens=NEW_TOKENS, stop=[]).tokens == want


def test_gpu_bundle_has_one_profile_over_the_cache_length(tmp_path: Path) -> None:
    model = build("llama")
    compiler.compile_llm(
        model, "gpu", max_context=MAX_CONTEXT, prefill_len=PREFILL, engine=False,
        output_dir=tmp_path / "llm",
    )  # fmt: skip
    kv = model.config.num_key_value_heads
    hd = model.config.hidden_size // model.config.num_attention_heads
    opt = MAX_CONTEXT // 2
    for part, chunk in (("prefill", PREFILL), ("decode", 1)):
        profiles = json.loads((tmp_path / "llm" / part / "build_config.json").read_text())[
            "profiles"
        ]
        assert profiles["attention_mask"] == {
            "min": [1, 1 + chunk], "opt": [1, opt + chunk], "max": [1, SLOTS + chunk],
        }  # fmt: skip
        for layer in range(model.config.num_hidden_layers):
            for kind in ("key", "value"):
                assert profiles[f"past_{kind}_{layer}"] == {
                    "min": [1, kv, 1, hd], "opt": [1, kv, opt, hd], "max": [1, kv, SLOTS, hd],
                }  # fmt: skip
        assert set(profiles) == {"attention_mask"} | {
            f"past_{k}_{i}" for i in range(model.config.num_hidden_layers) for k in ("key", "value")
        }


def test_gpu_bundle_onnx_runs_at_every_cache_length_as_the_interpreter(tmp_path: Path) -> None:
    """The model TensorRT builds from, run by onnxruntime at a short and a long cache,
    against the reference artifact's decode step on the same inputs."""
    ort = pytest.importorskip("onnxruntime")
    model = build("qwen2")
    compiler.compile_llm(
        model, "gpu", max_context=MAX_CONTEXT, prefill_len=PREFILL, engine=False,
        output_dir=tmp_path / "gpu",
    )  # fmt: skip
    ref = compiler.compile_llm(
        model, "reference", max_context=MAX_CONTEXT, prefill_len=PREFILL, dynamic_cache=True
    )
    session = ort.InferenceSession(str(tmp_path / "gpu" / "decode" / "model.onnx"))
    rng = np.random.default_rng(0)
    spec = ref.spec
    for past in (1, 3, SLOTS):
        shape = (1, spec.num_kv_heads, past, spec.head_dim)
        caches = [rng.standard_normal(shape).astype(np.float32) for _ in range(2 * spec.num_layers)]
        mask = np.ones((1, past + 1), np.int64)
        mask[0, : past // 2] = 0  # some slots not (yet) valid
        feeds = [np.array([[5]]), np.array([[past]]), mask, *caches]
        names = [i.name for i in session.get_inputs()]
        got = session.run(None, dict(zip(names, feeds, strict=True)))
        want = ref.decode.run(*feeds)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_gpu_engine_build_sets_the_cache_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_engine.py on the bundle, against the recording stand-in of TensorRT."""
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT())
    compiler.compile_llm(
        build("llama"), "gpu", max_context=MAX_CONTEXT, prefill_len=PREFILL, engine=False,
        output_dir=tmp_path / "llm",
    )  # fmt: skip
    folder = tmp_path / "llm" / "decode"
    build_engine.build(build_engine.load_config(folder / "build_config.json"))
    (profile,) = json.loads((folder / "model.engine").read_bytes())["profiles"]
    assert profile["attention_mask"] == [[1, 2], [1, MAX_CONTEXT // 2 + 1], [1, SLOTS + 1]]
    assert profile["past_key_0"][2][2] == SLOTS and profile["past_key_0"][0][2] == 1


def test_static_cache_steps_are_unchanged_by_default(tmp_path: Path) -> None:
    art = compiler.compile_llm(build("llama"), "onnx", max_context=MAX_CONTEXT, prefill_len=PREFILL)
    assert not art.spec.dynamic_cache
    state = Batch(art.spec, 1)
    assert state.caches[0].shape[2] == SLOTS


def test_dynamic_cache_is_refused_where_the_backend_is_static() -> None:
    with pytest.raises(InputError, match="dynamic_cache=True: target 'cpu'"):
        compiler.compile_llm(build("llama"), "cpu", max_context=MAX_CONTEXT, dynamic_cache=True)


@pytest.mark.gpu
def test_gpu_engine_with_a_cache_profile_decodes_as_torch(tmp_path: Path) -> None:
    model = build("llama")
    art = compiler.compile_llm(
        model, "gpu", max_context=MAX_CONTEXT, prefill_len=PREFILL, output_dir=tmp_path / "llm",
        precision="fp32",
    )  # fmt: skip
    prompt = _prompt(4, 11)
    want = [torch_greedy(model, prompt, NEW_TOKENS)]
    assert art.generate(prompt, max_new_tokens=NEW_TOKENS, stop=[]).tokens == want
