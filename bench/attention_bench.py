"""Attention over a KV cache alone: tapeout's kernel against torch SDPA and onnxruntime.

    python bench/attention_bench.py                          # SmolLM2-135M shapes, 2 threads
    python bench/attention_bench.py --valid 40,100,160 --prefill-past 0,64 --rounds 7
    python bench/attention_bench.py --baseline old_kernels_attention.py  # a "tapeout old" column

One layer of SmolLM2-135M (9 query heads, 3 KV heads, head size 64) with the cache of
``compile_llm(max_context=128, prefill_len=32)``: 160 slots. Cases:

- ``decode n``: one query token over ``n`` valid slots (``n - 1`` cache slots and the new
  token); tapeout reads the static 160-slot cache in place with its mask, as in a compiled
  decode step (``backends/tvm/kernels_attention.py``: the kept slots of each KV head split
  over the threads, then merged);
- ``prefill p``: a 32-token chunk over ``p`` valid cache slots and its own keys (causal).

The peers get only the valid keys and values, contiguous ([1, 3, n, 64], GQA without a
copy), as a dynamic cache would hand them over: torch's
``scaled_dot_product_attention(enable_gqa=True)`` and onnxruntime's ``Attention`` (opset
23) with ``kv_num_heads``, a causal boolean mask for a chunk. tapeout's time comes from TVM's
``time_evaluator`` (a C loop); the peers are called from Python, so their time includes a
call's overhead (a few microseconds), which they cannot avoid either. Each round times every
engine once (interleaved, so a shared machine's slow spells hit all of them); the table
gives the median over rounds with the min-max spread, and the peers as ratios to tapeout
(> 1: tapeout is faster). The caches are hot (they fit in L2): in a real decode step they
come from L3 or memory. Idle torch and onnxruntime workers sleep rather than spin, so that
they leave the cores to the engine timed after them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from baseline import load_module

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADS, KV_HEADS, DIM, SLOTS, CHUNK = 9, 3, 64, 160, 32
GROUP = HEADS // KV_HEADS
SCALE = DIM**-0.5

Timer = Callable[[], float]  # one measurement: seconds per call


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """float64 attention: q [9, C, D], k/v [3, n, D] (the valid slots), keep [C, n]."""
    kk, vv = np.repeat(k, GROUP, axis=0), np.repeat(v, GROUP, axis=0)
    s = np.einsum("hcd,hnd->hcn", q.astype(np.float64), kk) * SCALE
    s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("hcn,hnd->hcd", p / p.sum(-1, keepdims=True), vv)


class Case:
    """One shape: a chunk of ``chunk`` queries over ``past`` valid cache slots (the first ones)
    plus the chunk's own keys; the data, the valid keys, and the mask tapeout reads."""

    def __init__(self, chunk: int, past: int, rng: np.random.Generator, slots: int = SLOTS):
        self.chunk, self.past, self.slots = chunk, past, slots
        self.name = f"decode {past + 1}" if chunk == 1 else f"prefill {chunk} + {past}"
        f32 = np.float32
        self.q = rng.standard_normal((1, HEADS, chunk, DIM)).astype(f32)
        self.pk, self.pv = (
            rng.standard_normal((1, KV_HEADS, slots, DIM)).astype(f32) for _ in "kv"
        )
        self.nk, self.nv = (
            rng.standard_normal((1, KV_HEADS, chunk, DIM)).astype(f32) for _ in "kv"
        )
        self.pk[:, :, past:] = self.pv[:, :, past:] = np.nan  # unused slots: never read
        causal = np.tril(np.ones((chunk, chunk), bool))
        self.mask = np.zeros((1, 1, chunk, slots + chunk), bool)
        self.mask[..., :past] = True
        self.mask[0, 0, :, slots:] = causal
        self.k = np.concatenate([self.pk[:, :, :past], self.nk], axis=2)
        self.v = np.concatenate([self.pv[:, :, :past], self.nv], axis=2)
        self.keep = np.concatenate([np.ones((chunk, past), bool), causal], axis=1)

    def want(self) -> np.ndarray:
        return reference(self.q[0], self.k[0], self.v[0], self.keep)[None]


def load_kernels(path: str | None) -> ModuleType:
    """``backends/tvm/kernels_attention.py`` of this tree, or another version of it."""
    if path is None:
        from backends.tvm import kernels_attention

        return kernels_attention
    return load_module(path, "baseline_kernels_attention")


def tapeout_engine(
    case: Case, target: str, number: int, parallel: bool, kernels: ModuleType | None = None,
    layers: int = 1,
) -> tuple[Timer, np.ndarray]:  # fmt: skip
    """The kernel built alone for ``target``, timed by TVM's C loop (or over ``layers`` cache
    copies, :func:`_layers_timer`); its result."""
    from backends.tvm import require_tvm
    from backends.tvm.build import tvm_target
    from compiler.target import load_target

    kernels = kernels or load_kernels(None)
    AttentionShape, attention_func = kernels.AttentionShape, kernels.attention_func
    slots = hasattr(kernels, "slots_func") and parallel  # as lower_llm.cache_attention picks
    if hasattr(kernels, "decode_attention_func") and not parallel:
        attention_func = kernels.decode_attention_func

    tvm = require_tvm()
    c = case.chunk
    shape = AttentionShape(1, KV_HEADS, GROUP, case.slots, c, DIM, 1, c, float(np.float32(SCALE)),
                           parallel=parallel)  # fmt: skip
    func = attention_func(shape).with_attr("global_symbol", shape.name)
    lib = tvm.compile(tvm.IRModule({shape.name: func}), target=tvm_target(load_target(target)))
    q = case.q.reshape(1, KV_HEADS, GROUP, c, DIM)
    masks = _mask_operands(kernels, shape, case, target) if slots else [case.mask]
    arrays = [q, case.pk, case.nk, case.pv, case.nv, *masks]
    arrays.append(np.zeros_like(q))
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib.mod[shape.name](*args)
    result = args[-1].numpy().reshape(case.q.shape)
    if layers > 1:
        return _layers_timer(lib.mod[shape.name], args, layers, number), result
    timer = lib.mod.time_evaluator(shape.name, tvm.cpu(), number=number, repeat=1)
    return (lambda: timer(*args).mean), result


def _layers_timer(kernel: Any, args: list, layers: int, number: int) -> Timer:
    """Seconds per call over ``layers`` copies of the cache called in turn, as the layers of
    a decode step read theirs: from memory or L3, not L1/L2. A Python loop: each call's time
    includes the same few microseconds of call overhead for every kernel version."""
    import tvm

    caches = [
        [tvm.runtime.tensor(a.numpy()) if i in (1, 3) else a for i, a in enumerate(args)]
        for _ in range(layers)
    ]
    rounds = max(1, number // layers)

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            for layer in caches:
                kernel(*layer)
        return (time.perf_counter() - start) / (rounds * layers)

    return measure


def _mask_operands(kernels: ModuleType, shape: Any, case: Case, target: str) -> list:
    """A prefill kernel's mask operands: the slot lists and counts of ``slots_func`` (made
    once per step for every layer in a model, so not timed here)."""
    import tvm

    from backends.tvm.build import tvm_target
    from compiler.target import load_target

    func = kernels.slots_func(shape).with_attr("global_symbol", "slots")
    lib = tvm.compile(tvm.IRModule({"slots": func}), target=tvm_target(load_target(target)))
    n = shape.slots + shape.chunk
    keep = tvm.runtime.tensor(np.zeros((1, shape.chunk, n), np.int32))
    count = tvm.runtime.tensor(np.zeros((1, shape.chunk, 2), np.int32))
    lib.mod["slots"](tvm.runtime.tensor(case.mask), keep, count)
    return [keep.numpy(), count.numpy()]


def _python_timer(fn: Callable[[], Any], number: int) -> Timer:
    def measure() -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number

    return measure


def torch_engine(case: Case, number: int) -> tuple[Timer, np.ndarray]:
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.from_numpy(x) for x in (case.q, case.k, case.v))
    mask = None if case.chunk == 1 else torch.from_numpy(case.keep)

    def run() -> Any:
        with torch.inference_mode():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    return _python_timer(run, number), run().numpy()


def onnxruntime_engine(case: Case, number: int, threads: int) -> tuple[Timer, np.ndarray]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    feed = {"q": case.q, "k": case.k, "v": case.v}
    if case.chunk > 1:
        feed["mask"] = case.keep
    kinds = {np.dtype(np.float32): f32, np.dtype(bool): TensorProto.BOOL}
    inputs = [helper.make_tensor_value_info(n, kinds[a.dtype], a.shape) for n, a in feed.items()]
    node = helper.make_node("Attention", list(feed), ["y"], scale=SCALE)
    output = helper.make_tensor_value_info("y", f32, case.q.shape)
    graph = helper.make_graph([node], "attention", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle workers that spin would take the cores from the engines timed after this one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    onnx.checker.check_model(model)
    return _python_timer(lambda: session.run(None, feed), number), session.run(None, feed)[0]


def _engines(case: Case, args: argparse.Namespace) -> dict[str, Timer]:
    """Every engine that runs here, each checked against the float64 reference first."""
    want = case.want()
    makers: dict[str, Callable[[], tuple[Timer, np.ndarray]]] = {
        "tapeout": lambda: tapeout_engine(
            case, args.target, args.number, case.chunk > 1, layers=args.layers
        ),
        "torch sdpa": lambda: torch_engine(case, args.number),
        "onnxruntime": lambda: onnxruntime_engine(case, args.number, args.threads),
    }
    if args.baseline:  # the other version of the kernel, interleaved in the same rounds
        old = load_kernels(args.baseline)
        makers["tapeout old"] = lambda: tapeout_engine(
            case, args.target, args.number, case.chunk > 1, old, args.layers
        )
    engines = {}
    for name, make in makers.items():
        try:
            timer, got = make()
        except Exception as err:  # a peer missing or refusing the op: say so, go on
            print(f"  {case.name}: {name} skipped ({type(err).__name__}: {str(err)[:120]})")
            continue
        error = float(np.max(np.abs(got - want)))
        if not error < 1e-4:
            raise SystemExit(f"{case.name}: {name} differs from the reference by {error:.2e}")
        engines[name] = timer
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--valid", default="40,100,160", help="decode: valid slots (new one included)"
    )
    parser.add_argument("--prefill-past", default="0,64", help="prefill: valid cache slots")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--slots", type=int, default=SLOTS, help="cache slots (max_context + prefill_len)"
    )
    parser.add_argument("--number", type=int, default=200, help="calls per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--layers", type=int, default=1,
        help="tapeout: cycle over this many cache copies (cold caches, as in a model; timed "
        "from Python, call overhead included)",
    )  # fmt: skip
    parser.add_argument("--target", default="x86-64-avx512")
    parser.add_argument("--baseline", help="another kernels_attention.py, timed as 'tapeout old'")
    parser.add_argument(
        "--spin-count", type=int, default=None,
        help="TVM_THREAD_POOL_SPIN_COUNT (TVM's default 300000 is best alone; 0 on a loaded "
        "machine)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    if args.spin_count is not None:
        os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = str(args.spin_count)
    # torch's OpenMP workers spin for a while after each call by default, taking the cores
    # from the engine timed next (TVM's workers); set before torch starts them.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cases = [Case(1, int(n) - 1, rng, args.slots) for n in args.valid.split(",") if n]
    cases += [Case(CHUNK, int(p), rng, args.slots) for p in args.prefill_past.split(",") if p]
    timers = {case.name: _engines(case, args) for case in cases}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for case_name, engines in timers.items():
            for name, timer in engines.items():
                times.setdefault((case_name, name), []).append(timer())
    peers = sorted({name for engines in timers.values() for name in engines} - {"tapeout"})
    print(f"\n{args.rounds} rounds, {args.threads} threads, us per call: median [min-max]")
    print("(peers: their median / tapeout's; > 1 means tapeout is faster)")
    names = ["tapeout", *peers]
    print(f"{'case':<16}" + "".join(f"  {n:<30}" for n in names))
    for case_name, engines in timers.items():
        base = statistics.median(times[(case_name, "tapeout")]) if "tapeout" in engines else None
        cells = [
            _cell(times.get((case_name, n), []), None if n == "tapeout" else base) for n in names
        ]
        print(f"{case_name:<16}" + "".join(f"  {c:<30}" for c in cells))


def _cell(runs: list[float], base: float | None) -> str:
    if not runs:
        return "-"
    mid = statistics.median(runs)
    cell = f"{1e6 * mid:.2f} [{1e6 * min(runs):.2f}-{1e6 * max(runs):.2f}]"
    return cell + (f" x{mid / base:.1f}" if base else "")


if __name__ == "__main__":
    main()
