"""The ``q.block_dense`` kernels alone, on SmolLM2-135M's shapes, against onnxruntime.

    python bench/block_dense_bench.py                          # 2 threads, then 1
    python bench/block_dense_bench.py --threads 2 --shapes gate_up,lm_head --rows 1
    python bench/block_dense_bench.py --baseline old_kernels_blocks.py   # a "before" column
    python bench/block_dense_bench.py --threads 1 --cpu-time   # on a loaded machine

Each kernel (4-bit with a minimum = GGML Q4_1, symmetric 4-bit, 8-bit = Q8_0, 8-bit with a
minimum = tapeout's int8a, ``--formats u8``, no onnxruntime peer; 1 row = a
decode step, 32 rows = a prefill) runs the way the model runs it: one ``call_tir`` after
another in a compiled Relax VM function, over as many copies of the weight as make
``--working-set`` MB (a model's 30 layers do not fit the L3 cache either, so the weights
stream from memory). Columns: microseconds per call (median of ``--rounds`` interleaved
rounds, with the min-max spread), the GB/s of weight bytes read (packed weights, scales,
offsets, and the per-block sums the old 8-bit kernel read), and onnxruntime's
``MatMulNBits`` (com.microsoft, block 32, ``accuracy_level=4``: int8 activations, the same
W4A8/W8A8 scheme) on the same shape and working set, with the ratio ort / tapeout (above 1:
tapeout is faster); ``FMT/a16`` (e.g. ``q4_1/a16``) is the same kernel with 16-bit
activation codes (two int8 planes; the peer stays int8). The ``f32`` format is onnxruntime's
float ``MatMul``: the bandwidth a float GEMV reaches. ``--baseline FILE`` loads another version of
``backends/tvm/kernels_blocks.py`` (e.g. ``git show main:backends/tvm/kernels_blocks.py``)
and times it interleaved in the same rounds; this tree's rows > 1 run
``backends/tvm/kernels_blocks_gemm.py`` as a compiled model does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
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

#: SmolLM2-135M: name -> (N, K) of one layer's kernel (q/k/v and gate/up run as one kernel).
SHAPES = {
    "qkv": (960, 576),
    "o": (576, 576),
    "gate_up": (3072, 576),
    "down": (576, 1536),
    "lm_head": (49152, 576),
}
#: format -> (weight dtype, has a minimum, MatMulNBits bits); group 32, f16 scales.
FORMATS = {
    "q4_1": ("u4", True, 4),
    "i4": ("i4", False, 4),
    "q8_0": ("i8", False, 8),
    "u8": ("u8", True, 8),  # tapeout's int8a: 8-bit with a per-block minimum
}
GROUP = 32
Timer = Callable[[int], float]  # runs every copy `n` times, returns seconds
#: The clock of every timer: wall time, or with ``--cpu-time`` (one thread: the kernels run
#: on the calling thread) this thread's CPU time, which a loaded machine disturbs far less.
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def load_kernels(path: str | None) -> ModuleType:
    """``backends/tvm/kernels_blocks.py`` of this tree, or another version of it."""
    if path is None:
        from backends.tvm import kernels_blocks

        return kernels_blocks
    return load_module(path, "baseline_kernels_blocks")


def kernel_builder(kernels: ModuleType) -> Callable[..., Any]:
    """``(layout, rows, vnni) -> PrimFunc`` as the model compiles it: this tree sends a chunk
    of rows to ``kernels_blocks_gemm``; a ``--baseline`` file is timed as it is."""
    if kernels.__name__ == "backends.tvm.kernels_blocks":
        from backends.tvm.kernels_blocks_gemm import block_kernel_func

        return block_kernel_func
    return kernels.block_dense_func


def split_format(fmt: str) -> tuple[str, int]:
    """``q4_1`` -> (``q4_1``, 8); ``q4_1/a16`` -> (``q4_1``, 16): 16-bit activation codes."""
    base, _, act = fmt.partition("/a")
    return base, int(act or 8)


def random_weight(fmt: str, n: int, k: int, rng: np.random.Generator) -> tuple:
    dtype, has_min, _ = FORMATS[split_format(fmt)[0]]
    lo, hi = {"u4": (0, 15), "i4": (-8, 7), "i8": (-127, 127), "u8": (0, 255)}[dtype]
    q = rng.integers(lo, hi + 1, size=(n, k)).astype(np.uint8 if dtype == "u8" else np.int8)
    d = (rng.random((n, k // GROUP)) * 0.02 + 0.001).astype(np.float16)
    m = (rng.standard_normal((n, k // GROUP)) * 0.01).astype(np.float16) if has_min else None
    return q, d, m


def kernel_operands(kernels: ModuleType, fmt: str, q: Any, d: Any, m: Any) -> tuple:
    """(layout, {buffer name: array} of the kernel's constant operands, bytes read per call);
    works for the old layout (``WS`` sums, ``signed8``) as for the new."""
    n, k = q.shape
    base, act_bits = split_format(fmt)
    extra = () if act_bits == 8 else (act_bits,)  # a baseline file may predate act_bits
    layout = kernels.layout_for(FORMATS[base][0], n, k, GROUP, m is not None, "float16", *extra)
    packed = kernels.pack(layout, q, d, m)
    tiles = (layout.tiles, layout.blocks, kernels.LANES)
    signed8 = getattr(layout, "signed8", False)
    arrays = {"W": packed[0], "D": packed[1]}
    arrays["MN"] = packed[2] if layout.has_min else np.zeros(tiles, np.float16)
    arrays["WS"] = packed[-1] if signed8 else np.zeros(tiles, np.int32)
    read = packed[0].nbytes + packed[1].nbytes
    read += (packed[2].nbytes if layout.has_min else 0) + (packed[-1].nbytes if signed8 else 0)
    return layout, arrays, read


def tapeout_timer(kernels: ModuleType, fmt: str, weight: tuple, rows: int, copies: int) -> tuple:
    """A timer over ``copies`` calls of the kernel in one compiled VM function, and the bytes
    one call reads."""
    import tvm
    from tvm import relax

    from backends.tvm.build import compile_module, tvm_target
    from compiler.target import load_target

    layout, arrays, read = kernel_operands(kernels, fmt, *weight)
    func = kernel_builder(kernels)(layout, rows, True).with_attr("global_symbol", "kernel")
    names = [str(p.name) for p in func.params[1:-1]]
    shapes = {str(p.name): tuple(int(s) for s in p.ty.shape) for p in func.params[1:-1]}
    consts = [np.ascontiguousarray(np.resize(arrays[name], shapes[name])) for name in names]
    n, k = layout.n, layout.k
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((rows, k), "float32"))
    params = [
        relax.Var(f"{name}{i}", relax.TensorType(c.shape, str(c.dtype)))
        for i in range(copies)
        for name, c in zip(names, consts, strict=True)
    ]
    with bb.function("main", [x, *params]):
        gv = bb.add_func(func, "kernel")
        with bb.dataflow():
            outs = []
            for i in range(copies):
                args = relax.Tuple([x, *params[i * len(names) : (i + 1) * len(names)]])
                outs.append(
                    bb.emit(relax.call_tir(gv, args, relax.TensorType((rows, n), "float32")))
                )
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    target = tvm_target(load_target("x86-64-avx512"))
    vm = relax.VirtualMachine(compile_module(bb.get(), target, "compiled"), tvm.cpu())
    inputs = [
        tvm.runtime.tensor(np.random.default_rng(0).standard_normal((rows, k)).astype(np.float32))
    ]
    inputs += [tvm.runtime.tensor(c.copy()) for _ in range(copies) for c in consts]

    def timer(reps: int) -> float:
        start = CLOCK[0]()
        vm.time_evaluator("main", tvm.cpu(), number=reps, repeat=1)(*inputs)
        return CLOCK[0]() - start

    return timer, read


def _nbits_node(i: int, fmt: str, n: int, k: int, rng: np.random.Generator) -> tuple:
    from onnx import helper, numpy_helper

    _, has_min, bits = FORMATS[split_format(fmt)[0]]
    blocks = k // GROUP
    inits = [
        numpy_helper.from_array(
            rng.integers(0, 256, (n, blocks, GROUP * bits // 8), dtype=np.uint8), f"b{i}"
        ),
        numpy_helper.from_array((rng.random(n * blocks) * 0.02).astype(np.float32), f"s{i}"),
    ]
    if has_min:
        zp = rng.integers(0, 256, n * ((blocks + 1) // 2), dtype=np.uint8)
        inits.append(numpy_helper.from_array(zp, f"z{i}"))
    node = helper.make_node(
        "MatMulNBits", ["A", *(t.name for t in inits)], [f"y{i}"], domain="com.microsoft",
        K=k, N=n, bits=bits, block_size=GROUP, accuracy_level=4,
    )  # fmt: skip
    return node, inits


def _matmul_node(i: int, fmt: str, n: int, k: int, rng: np.random.Generator) -> tuple:
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), f"w{i}")
    return helper.make_node("MatMul", ["A", f"w{i}"], [f"y{i}"]), [w]


def ort_timer(fmt: str, n: int, k: int, rows: int, copies: int, threads: int) -> Timer:
    """A timer over ``copies`` onnxruntime nodes of the shape (one session, IO binding)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    make = _matmul_node if fmt == "f32" else _nbits_node
    nodes, inits = zip(*(make(i, fmt, n, k, rng) for i in range(copies)), strict=True)
    graph = helper.make_graph(
        list(nodes), "peer", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [rows, n])
         for i in range(copies)],
        [t for group in inits for t in group],
    )  # fmt: skip
    opset = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opset)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    io = sess.io_binding()
    io.bind_cpu_input("A", rng.standard_normal((rows, k)).astype(np.float32))
    for i in range(copies):
        io.bind_output(f"y{i}")

    def timer(reps: int) -> float:
        start = CLOCK[0]()
        for _ in range(reps):
            sess.run_with_iobinding(io)
        return CLOCK[0]() - start

    return timer


def measure(timers: dict[str, tuple[Timer, int]], rounds: int) -> dict[str, list[float]]:
    """Seconds per kernel call of each timer over ``rounds`` interleaved rounds (each round
    about 30 ms per timer)."""
    reps = {}
    for name, (timer, _) in timers.items():
        timer(1)  # warm up: first touch of the weights, thread pools started
        per = timer(2) / 2
        reps[name] = max(1, int(0.03 / max(per, 1e-7)))
    out: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, (timer, copies) in timers.items():
            out[name].append(timer(reps[name]) / (reps[name] * copies))
    return out


def _stat(samples: list[float]) -> tuple[float, float]:
    med = statistics.median(samples)
    return med, (max(samples) - min(samples)) / med * 100


def bench_group(fmt: str, shape: str, args: argparse.Namespace, kernels: dict) -> list[str]:
    """Every timer of one (format, shape) over all requested rows, interleaved; table lines."""
    n, k = SHAPES[shape]
    rng = np.random.default_rng(0)
    weight = random_weight(fmt, n, k, rng) if fmt != "f32" else None
    bytes_ = n * k * 4 if weight is None else kernel_operands(kernels["new"], fmt, *weight)[2]
    copies = int(min(64, max(2, -(-args.working_set * 1e6 // bytes_))))
    timers: dict[str, tuple[Timer, int]] = {}
    reads: dict[str, int] = {}
    for rows in args.rows:
        for label, module in kernels.items() if weight is not None else ():
            timer, reads[f"{label}{rows}"] = tapeout_timer(module, fmt, weight, rows, copies)
            timers[f"{label}{rows}"] = (timer, copies)
        try:
            peer = ort_timer(fmt, n, k, rows, copies, args.threads)
            peer(1)
            timers[f"ort{rows}"] = (peer, copies)
        except Exception as err:  # an onnxruntime without this MatMulNBits variant
            print(f"# ort {fmt} {shape}: {str(err).splitlines()[0][:100]}", file=sys.stderr)
    res = {name: _stat(s) for name, s in measure(timers, args.rounds).items()}
    lines = []
    for rows in args.rows:
        cells = [f"{fmt:9} {shape:8} {n:>5}x{k:<5} {rows:>4}"]
        for label in kernels if weight is not None else ():
            us, spread = res[f"{label}{rows}"]
            gbs = reads[f"{label}{rows}"] / us / 1e9
            cells.append(f"{us * 1e6:9.1f} ±{spread:3.0f}% {gbs:6.1f}")
        if f"ort{rows}" in res:
            us, spread = res[f"ort{rows}"]
            ratio = "" if weight is None else f"{us / res[f'new{rows}'][0]:6.2f}"
            cells.append(f"{us * 1e6:9.1f} ±{spread:3.0f}% {bytes_ / us / 1e9:6.1f} {ratio}")
        lines.append("  ".join(cells))
    return lines


def run(args: argparse.Namespace) -> None:
    kernels = {"new": load_kernels(None)}
    if args.baseline:
        kernels = {"old": load_kernels(args.baseline), **kernels}
    cols = "  ".join(f"{label + ' us':>9} spread  GB/s" for label in kernels)
    clock = "thread CPU time" if args.cpu_time else "wall time"
    print(f"\n{args.threads} thread(s), {clock}, {args.working_set} MB, {args.rounds} rounds")
    print(f"fmt       shape    {'N x K':11} rows  {cols}  {'ort us':>9} spread  GB/s  ort/new")
    for shape in args.shapes:
        for fmt in args.formats:
            for line in bench_group(fmt, shape, args, kernels):
                print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="2,1", help="thread counts, comma-separated")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--formats", default="q4_1,i4,q8_0,f32")
    parser.add_argument("--rows", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--working-set", type=int, default=64, help="MB of weights per timer")
    parser.add_argument("--baseline", help="another kernels_blocks.py, timed as 'old'")
    parser.add_argument(
        "--cpu-time", action="store_true", help="time this thread's CPU (only with --threads 1)"
    )
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if len(threads) > 1:  # TVM reads its thread count once: one process per count
        argv = [f"--shapes={args.shapes}", f"--formats={args.formats}", f"--rows={args.rows}"]
        argv += [f"--rounds={args.rounds}", f"--working-set={args.working_set}"]
        argv += [f"--baseline={args.baseline}"] if args.baseline else []
        argv += ["--cpu-time"] if args.cpu_time else []
        for t in threads:
            subprocess.run([sys.executable, __file__, *argv, f"--threads={t}"], check=True)
        return
    args.threads = threads[0]
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time needs --threads 1: other threads' work is not counted")
        CLOCK[0] = time.thread_time
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    args.shapes = args.shapes.split(",")
    args.formats = args.formats.split(",")
    args.rows = [int(r) for r in args.rows.split(",")]
    run(args)


if __name__ == "__main__":
    main()
