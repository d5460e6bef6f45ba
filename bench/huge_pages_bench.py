"""Decode and prefill of one LLM artifact with its weights in huge pages and without.

    tapeout compile-llm SmolLM2-135M-Instruct.Q4_1.gguf --target x86-64-avx512 -o /tmp/q41
    python bench/huge_pages_bench.py /tmp/q41 --rounds 12

The artifact is loaded twice in this process: once as ``load_llm`` loads it (the arrays a
step streams read into memory advised ``MADV_HUGEPAGE``, ``WeightFile.resident``), once with
``TAPEOUT_HUGE_PAGES=0`` (the weights file's memory map, 4 KB pages). Each round generates
64 tokens after a 32-token prompt with both, in alternating order (a slow spell of the
shared machine hits both); the table gives the medians with the min-max spread and the
ratio. The two copies compete for the same memory bandwidth only in turn, never at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT, NEW = 32, 64


def anon_huge_mb() -> float:
    """AnonHugePages of this process, MB (Linux; 0 elsewhere)."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", help="folder written by compile-llm (cpu target)")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from compiler.llm.artifact import load_llm

    prompt = list(range(100, 100 + PROMPT))
    arts = {}
    for mode, flag in (("huge pages", "1"), ("memory map", "0")):
        os.environ["TAPEOUT_HUGE_PAGES"] = flag
        before = anon_huge_mb()
        arts[mode] = load_llm(args.artifact)
        arts[mode].generate(prompt, max_new_tokens=2, stop=[])  # binds the weights
        print(f"{mode}: {anon_huge_mb() - before:.0f} MB of anonymous huge pages", flush=True)
    os.environ.pop("TAPEOUT_HUGE_PAGES")
    tps: dict[str, list[float]] = {m: [] for m in arts}
    pre: dict[str, list[float]] = {m: [] for m in arts}
    order = list(arts)
    for r in range(args.rounds):
        for mode in order if r % 2 == 0 else order[::-1]:
            res = arts[mode].generate(prompt, max_new_tokens=NEW, stop=[])
            tps[mode].append(res.decode_tokens_per_s)
            pre[mode].append(res.prefill_ms)
    base = statistics.median(tps["memory map"])
    print(f"\n{args.artifact}: prompt {PROMPT}, {NEW} new tokens, medians of {args.rounds} "
          "alternating rounds [min-max]")  # fmt: skip
    print(f"{'weights':12} {'decode tok/s':>24} {'vs map':>7} {'prefill ms':>20}")
    for mode in arts:
        t, p = tps[mode], pre[mode]
        print(
            f"{mode:12} {statistics.median(t):8.1f} [{min(t):6.1f}-{max(t):6.1f}] "
            f"{statistics.median(t) / base:6.3f}x {statistics.median(p):6.1f} "
            f"[{min(p):5.1f}-{max(p):5.1f}]"
        )


if __name__ == "__main__":
    main()
