"""float32 dense kernels of SmolLM2-135M's shapes: tapeout against onnxruntime and torch.

    python bench/gemv_bench.py                          # rows 1 and 32, 5 rounds
    python bench/gemv_bench.py --rows 1 --rounds 9 --shapes qkv,lm_head

Each shape is the set of projections that read one input in a decoder layer (q/k/v: three
weights, 576 -> 576 + 192 + 192; gate and up: two 576 -> 1536, the gate with SiLU; o; down;
the tied LM head 576 -> 49152), for 1 row (a decode step) and 32 rows (a 32-token prefill).
A call computes ``copies`` of the shape, each with its own weights and input, together at
least ``COLD_BYTES`` of weights, so that they stream from memory as in a decode step (a
single small shape would sit in the L3 cache between calls); times are per copy. Engines:

- ``tapeout``: the graph of those ``nn.dense`` nodes compiled by the cpu backend as a model
  is (``exec_mode="compiled"``), timed by TVM's ``time_evaluator`` on the VM's ``main``
  (kernel calls, slices and the VM's own work included);
- ``tapeout-te``: the same with the few-row kernel turned off (``kernels_gemv.MAX_ROWS =
  -1``): the TE dense kernel, one per weight, as before ``kernels_gemv`` existed;
- ``ort``: onnxruntime, one ``MatMul`` per weight (the SiLU left out);
- ``torch``: ``torch.nn.functional.linear`` per weight (the SiLU left out).

The peers are timed by a Python loop around their call (a few microseconds each of call
overhead is in their numbers, which matters for the smallest shapes only). Timing: every
engine is built first, then timed in interleaved rounds (a slow spell of the shared machine
hits all alike); the table gives the median time per call, the spread (min-max over the
rounds, in % of the median), the fastest round, the weight bytes read per second (GB/s) at
the median and the fastest round, and each engine's median time over tapeout's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.report import format_table  # noqa: E402

#: shape name -> the (out features, in features, activation) of the weights reading one input
SHAPES: dict[str, list[tuple[int, int, str]]] = {
    "qkv": [(576, 576, "none"), (192, 576, "none"), (192, 576, "none")],
    "o": [(576, 576, "none")],
    "gate_up": [(1536, 576, "silu"), (1536, 576, "none")],
    "down": [(576, 1536, "none")],
    "lm_head": [(49152, 576, "none")],
}
ENGINES = ("tapeout", "tapeout-te", "ort", "torch")
SAMPLE_S = 0.03  # seconds of calls per timed sample
#: Each call reads at least this many bytes of weights (copies of the shape's weights, one
#: after the other): three times the 32 MB L3, so the weights come from memory, as in a
#: decode step that reads 538 MB of them.
COLD_BYTES = 96 << 20


def _bytes(shape: str) -> int:
    return 4 * sum(n * k for n, k, _ in SHAPES[shape])


def copies(shape: str) -> int:
    return max(1, -(-COLD_BYTES // _bytes(shape)))


def _weights(shape: str, copy: int) -> list[np.ndarray]:
    rng = np.random.default_rng(copy)
    return [(rng.standard_normal((n, k)) * 0.05).astype(np.float32) for n, k, _ in SHAPES[shape]]


def _inputs(shape: str, rows: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    k = SHAPES[shape][0][1]
    return [rng.standard_normal((rows, k)).astype(np.float32) for _ in range(copies(shape))]


def _tapeout(shape: str, rows: int, fused: bool, target: str) -> Callable[[int], float]:
    """A function ``number -> seconds per call`` of the compiled graph's ``main`` (all the
    copies of the shape's weights, each on its own input)."""
    import tvm

    from backends.tvm import TvmBackend, kernels_gemv
    from compiler.ir import Graph, TensorType
    from compiler.target import load_target

    k = SHAPES[shape][0][1]
    g = Graph(f"{shape}_r{rows}")
    outs = []
    for c in range(copies(shape)):
        x = g.add_input(f"x{c}", TensorType("f32", (1, rows, k)))
        for i, ((_, _, act), w) in enumerate(zip(SHAPES[shape], _weights(shape, c), strict=True)):
            node = g.add_node("nn.dense", [x, g.add_const(f"w{c}_{i}", w)], {"act": act})
            outs.append(node.output)
    g.outputs = outs
    saved = kernels_gemv.MAX_ROWS
    kernels_gemv.MAX_ROWS = kernels_gemv.MAX_ROWS if fused else -1
    try:
        art = TvmBackend().compile(
            g, load_target(target), Path(tempfile.mkdtemp()), {"exec_mode": "compiled"}
        )
    finally:
        kernels_gemv.MAX_ROWS = saved
    vm = art._machine()
    args = [tvm.runtime.tensor(x[None]) for x in _inputs(shape, rows)]

    def run(number: int) -> float:
        timer = vm.time_evaluator("main", tvm.cpu(), number=number, repeat=1)
        return float(timer(*args).mean)

    return run


def _loop(call: Callable[[], Any]) -> Callable[[int], float]:
    def run(number: int) -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        return (time.perf_counter() - t0) / number

    return run


def _ort(shape: str, rows: int, threads: int) -> Callable[[int], float]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = SHAPES[shape][0][1]
    inits, nodes, ins, outs = [], [], [], []
    for c in range(copies(shape)):
        ins.append(helper.make_tensor_value_info(f"x{c}", TensorProto.FLOAT, [rows, k]))
        for i, w in enumerate(_weights(shape, c)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{c}_{i}"))
            nodes.append(helper.make_node("MatMul", [f"x{c}", f"w{c}_{i}"], [f"y{c}_{i}"]))
            outs.append(helper.make_tensor_value_info(f"y{c}_{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {f"x{c}": x for c, x in enumerate(_inputs(shape, rows))}
    return _loop(lambda: sess.run(None, feed))


def _torch(shape: str, rows: int) -> Callable[[int], float]:
    import torch

    sets = [[torch.from_numpy(w) for w in _weights(shape, c)] for c in range(copies(shape))]
    xs = [torch.from_numpy(x) for x in _inputs(shape, rows)]

    def call() -> None:
        with torch.inference_mode():
            for x, ws in zip(xs, sets, strict=True):
                for w in ws:
                    torch.nn.functional.linear(x, w)

    return _loop(call)


def _number(run: Callable[[int], float]) -> int:
    run(3)  # warm up
    per = max(run(3), 1e-7)
    return max(int(SAMPLE_S / per), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", default="1,32", help="rows of the input (comma separated)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="which of " + ", ".join(SHAPES))
    ap.add_argument("--engines", default=",".join(ENGINES), help="which of " + ", ".join(ENGINES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", default="x86-64-avx512")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    engines = args.engines.split(",")
    builders: dict[str, Callable[[str, int], Callable[[int], float]]] = {
        "tapeout": lambda s, r: _tapeout(s, r, True, args.target),
        "tapeout-te": lambda s, r: _tapeout(s, r, False, args.target),
        "ort": lambda s, r: _ort(s, r, args.threads),
        "torch": _torch,
    }
    cases = [(s, int(r)) for r in args.rows.split(",") for s in args.shapes.split(",")]
    runs = {(s, r, e): builders[e](s, r) for s, r in cases for e in engines}
    numbers = {key: _number(run) for key, run in runs.items()}
    times: dict[tuple, list[float]] = {key: [] for key in runs}
    for _ in range(args.rounds):
        for key, run in runs.items():
            times[key].append(run(numbers[key]))
    print(format_table(_rows(cases, engines, times)))


def _rows(cases: list[tuple[str, int]], engines: list[str], times: dict) -> list[dict]:
    table = []
    for shape, rows in cases:
        n = sum(w[0] for w in SHAPES[shape])
        nbytes = _bytes(shape)
        ref = statistics.median(times[(shape, rows, engines[0])]) / copies(shape)
        for e in engines:
            t = [v / copies(shape) for v in times[(shape, rows, e)]]
            med = statistics.median(t)
            table.append(
                {
                    "shape": f"{shape} {SHAPES[shape][0][1]}->{n}",
                    "rows": rows,
                    "engine": e,
                    "us": round(med * 1e6, 1),
                    "spread %": round(100 * (max(t) - min(t)) / med, 1),
                    "best us": round(min(t) * 1e6, 1),
                    "GB/s": round(nbytes / med / 1e9, 1),
                    "best GB/s": round(nbytes / min(t) / 1e9, 1),
                    f"/ {engines[0]}": round(med / ref, 2),
                }
            )
    return table


if __name__ == "__main__":
    main()
