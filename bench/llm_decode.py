"""Decode speed of a tapeout LLM artifact against torch eager (HF, its own KV cache).

    python bench/llm_decode.py                        # a small random Llama, cpu target
    python bench/llm_decode.py --size smollm2 --target cpu --prompt 32 --new 64

Random weights in a Hugging Face Llama config (``small``: 4 layers, d=256, vocab 8192;
``smollm2``: SmolLM2-135M's shape, 30 layers, d=576, 9/3 heads, vocab 49152). Batch 1,
greedy. Each round times every engine once (interleaved, so a shared machine's slow spells
hit both); the table gives medians with the min-max spread, prefill ms and decode tokens/s,
and whether the greedy tokens equal torch's. ``measure_generate`` is the function part B's
``bench/llm_bench.py`` can import for tapeout's rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES: dict[str, dict[str, int]] = {
    "small": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=8192),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
}  # fmt: skip


def measure_generate(art: Any, prompt: list[int], new_tokens: int) -> dict[str, Any]:
    """One greedy generation: prefill ms, decode tokens/s and the tokens."""
    res = art.generate(prompt, max_new_tokens=new_tokens, stop=[])
    return {
        "prefill_ms": res.prefill_ms,
        "tokens_per_s": res.decode_tokens_per_s,
        "tokens": res.tokens[0],
    }


def measure_torch(model: Any, prompt: list[int], new_tokens: int) -> dict[str, Any]:
    """HF eager with its DynamicCache, the same greedy loop: prefill, then one token a step."""
    import torch

    tokens: list[int] = []
    with torch.no_grad():
        start = time.perf_counter()
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for step in range(new_tokens):
            tokens.append(int(out.logits[0, -1].argmax()))
            if step == new_tokens - 1:
                break
            out = model(input_ids=torch.tensor([[tokens[-1]]]), use_cache=True,
                        cache=out.cache)  # fmt: skip
        decode = time.perf_counter() - start
    return {"prefill_ms": 1e3 * prefill, "tokens_per_s": (new_tokens - 1) / decode,
            "tokens": tokens}  # fmt: skip


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--new", type=int, default=64, help="new tokens")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch
    import transformers

    import compiler

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**SIZES[args.size], max_position_embeddings=512,
                                      tie_word_embeddings=True)  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    prompt = torch.randint(3, config.vocab_size, (args.prompt,)).tolist()
    started = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="llm-bench-")) / "llm"
    context = args.prompt + args.new
    art = compiler.compile_llm(
        model, target=args.target, output_dir=out, max_context=context, prefill_len=args.prompt
    )
    print(f"compiled for {args.target} in {time.perf_counter() - started:.1f} s", flush=True)
    engines = {
        f"tapeout {args.target}": lambda: measure_generate(art, prompt, args.new),
        "torch eager (HF cache)": lambda: measure_torch(model, prompt, args.new),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for run in engines.values():
        run()  # warm-up
    for _ in range(args.rounds):
        for name, run in engines.items():
            rows[name].append(run())
    want = rows["torch eager (HF cache)"][0]["tokens"]
    print(
        f"\n{args.size} Llama, batch 1, prompt {args.prompt}, {args.new} new tokens, "
        f"{torch.get_num_threads()} torch threads; median (min-max) of {args.rounds} rounds"
    )
    print(f"{'engine':<24} {'prefill ms':>22} {'decode tokens/s':>22}  greedy = torch")
    base = statistics.median(r["tokens_per_s"] for r in rows["torch eager (HF cache)"])
    for name, runs in rows.items():
        speed = [r["tokens_per_s"] for r in runs]
        same = all(r["tokens"] == want for r in runs)
        print(f"{name:<24} {_spread([r['prefill_ms'] for r in runs]):>22} "
              f"{_spread(speed):>22}  {same}  x{statistics.median(speed) / base:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
