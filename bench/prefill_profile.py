"""Where a prefill chunk's milliseconds go: each kernel of an LLM artifact's ``prefill`` part.

    tapeout compile-llm SmolLM2-135M-Instruct.Q4_1.gguf --target x86-64-avx512 -o /tmp/q41
    python bench/prefill_profile.py /tmp/q41                  # 20 runs, an empty cache
    python bench/prefill_profile.py /tmp/q41 --past 64 --repeat 50

One chunk of ``prefill_len`` tokens after ``--past`` valid cache slots, through TVM's
instrumented VM (``Artifact.profile``): milliseconds per call of each kernel and VM builtin,
summed over its calls, most expensive first. The instrumentation adds a few microseconds
per call (the VM builtins look dearer than they are); on a shared machine the parallel
kernels wait for descheduled threads, so state the load next to the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", help="folder written by compile-llm")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--past", type=int, default=0, help="valid cache slots before the chunk")
    parser.add_argument("--top", type=int, default=30, help="rows to print")
    args = parser.parse_args()
    from compiler.llm.artifact import load_llm
    from compiler.llm.runtime import Batch

    art = load_llm(args.artifact)
    chunk, state = art.spec.prefill_len, Batch(art.spec, 1)
    state.filled[:, : args.past] = 1
    ids = np.full((1, chunk), 100, np.int64)
    positions = (args.past + np.arange(chunk, dtype=np.int64))[None]
    mask = np.concatenate([state.filled, np.ones((1, chunk), state.filled.dtype)], axis=1)
    rows = art.prefill.profile(ids, positions, mask, *state.caches, repeat=args.repeat)
    load = os.getloadavg()[0]
    print(f"{sum(r['ms'] for r in rows):.3f} ms in kernels per chunk (load {load:.2f})")
    for row in rows[: args.top]:
        print(f"{row['ms']:8.3f} ms {row['calls']:4d} x  {row['kernel']}")


if __name__ == "__main__":
    main()
