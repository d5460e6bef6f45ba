"""onnxruntime-genai as a peer of ``bench/llm_bench.py``: SmolLM2 built by its own model builder.

onnxruntime-genai (``pip install onnxruntime-genai``, a bench extra) runs a decoder ONNX model
with past key/values in a C++ generate loop. Its model builder
(``python -m onnxruntime_genai.models.builder``) reads a Hugging Face folder; here that folder is
written from the same GGUF file every other row reads (``to_transformers``, plus a
``tokenizer.json`` made from the file's BPE vocabulary and merges: the builder insists on a
tokenizer, the bench feeds token ids). ``fp32`` is the float model; ``int4`` is the builder's
MatMulNBits int4, block 32 (its default); ``int8`` is the fp32 model with every MatMul made
MatMulNBits int8, symmetric, block 32, ``accuracy_level=4`` (int8 activations: the issue's
"onnxruntime MatMulNBits int8" peer) by onnxruntime's own ``MatMulNBitsQuantizer``. The built
folders are kept in ``CACHE`` and reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Where the Hugging Face folder and the built models are kept between runs.
CACHE = Path(os.environ.get("TAPEOUT_BENCH_CACHE", Path.home() / ".cache" / "tapeout-bench"))

Generate = Callable[[list[int]], tuple[float, float, list[int]]]
Logits = Callable[[list[int]], np.ndarray]


def _hf_folder(model: Any) -> Path:
    """The GGUF model as a Hugging Face folder (weights, config, a fast tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from compiler.frontends.gguf import to_transformers

    folder = CACHE / "smollm2-hf"
    if (folder / "tokenizer.json").exists():
        return folder
    to_transformers(model).save_pretrained(folder)
    meta = model.metadata
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=tokens[int(meta["tokenizer.ggml.bos_token_id"])],
        eos_token=tokens[int(meta["tokenizer.ggml.eos_token_id"])],
    ).save_pretrained(folder)
    return folder


def _int8(fp32: Path, out: Path) -> None:
    """``fp32``'s folder with its MatMuls as MatMulNBits int8 block 32, written to ``out``
    (through a ``.part`` folder renamed when whole)."""
    import shutil

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for f in fp32.iterdir():
        if not f.name.startswith("model.onnx"):
            shutil.copy(f, part / f.name)
    quant = MatMulNBitsQuantizer(
        onnx.load(str(fp32 / "model.onnx")),
        bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
    )  # fmt: skip
    quant.process()
    quant.model.save_model_to_file(str(part / "model.onnx"), use_external_data_format=True)
    part.rename(out)


def _built(model: Any, precision: str, threads: int) -> Path:
    """The builder's output for ``precision``, with the session's thread count set."""
    out = CACHE / f"smollm2-genai-{precision}"
    if precision == "int8" and not (out / "genai_config.json").exists():
        _int8(_built(model, "fp32", threads), out)
    if not (out / "genai_config.json").exists():
        hf = _hf_folder(model)
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m",
               "HuggingFaceTB/SmolLM2-135M-Instruct", "-i", str(hf), "-o", str(out), "-p",
               precision, "-e", "cpu", "-c", str(CACHE / "genai-cache")]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"onnxruntime-genai's builder failed: {done.stderr[-2000:]}")
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = threads
    config_path.write_text(json.dumps(config, indent=1))
    return out


def genai_engine(
    model: Any, precision: str, threads: int, new: int, prompt: int
) -> tuple[str, Generate, Logits] | None:
    """``(name, generate, logits)`` of onnxruntime-genai at ``precision``, or None when the
    package is not installed."""
    try:
        import onnxruntime_genai as og
    except ImportError:
        print("onnxruntime-genai: not installed (pip install onnxruntime-genai); row skipped")
        return None
    folder = _built(model, precision, threads)
    og_model = og.Model(str(folder))

    def start(length: int) -> Any:
        params = og.GeneratorParams(og_model)
        params.set_search_options(max_length=length, do_sample=False)
        return og.Generator(og_model, params)

    def generate(ids: list[int]) -> tuple[float, float, list[int]]:
        gen = start(len(ids) + new)
        t0 = time.perf_counter()
        gen.append_tokens(ids)  # the prefill: runs the model over the prompt
        t1 = time.perf_counter()
        tokens = []
        for _ in range(new):
            gen.generate_next_token()
            tokens.append(int(gen.get_next_tokens()[0]))
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (new - 1) / (t2 - t1), tokens

    def logits(window: list[int]) -> np.ndarray:
        gen = start(len(window))
        gen.append_tokens(window[:prompt])
        rows = [np.asarray(gen.get_output("logits"))[0, -1]]
        for token in window[prompt:-1]:
            gen.append_tokens([token])
            rows.append(np.asarray(gen.get_output("logits"))[0, -1])
        return np.asarray(rows, np.float64)

    label = {
        "fp32": "fp32",
        "int4": "int4 MatMulNBits, block 32",
        "int8": "int8 MatMulNBits, block 32 (int8 act.)",
    }[precision]
    return f"onnxruntime-genai {label}", generate, logits
