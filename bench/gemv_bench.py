"""float32 dense kernels of SmolLM2-135M's shapes: tapeout against onnxruntime and torch.

    python bench/gemv_bench.py                          # rows 1 and 32, 5 rounds
    python bench/gemv_bench.py --rows 1 --rounds 9 --shapes qkv,lm_head

Each shape is the set of projections that read one input in a decoder layer (q/k/v: three
weights, 576 -> 576 + 192 + 192; gate and up: two 576 -> 1536, the gate with SiLU; o; down;
the tied LM head 576 -> 49152), for 1 row (a decode step) and 32 rows (a 32-token prefill).
Engines:

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
rounds, in % of the median), the weight bytes read per microsecond (GB/s) and each engine's
time over tapeout's.
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


def _weights(shape: str) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((n, k)) * 0.05).astype(np.float32) for n, k, _ in SHAPES[shape]]


def _tapeout(shape: str, rows: int, fused: bool, target: str) -> Callable[[int], float]:
    """A function ``number -> seconds per call`` of the compiled graph's ``main``."""
    import tvm

    from backends.tvm import TvmBackend, kernels_gemv
    from compiler.ir import Graph, TensorType
    from compiler.target import load_target

    k = SHAPES[shape][0][1]
    g = Graph(f"{shape}_r{rows}")
    x = g.add_input("x", TensorType("f32", (1, rows, k)))
    outs = []
    for i, ((_, _, act), w) in enumerate(zip(SHAPES[shape], _weights(shape), strict=True)):
        node = g.add_node("nn.dense", [x, g.add_const(f"w{i}", w)], {"act": act})
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
    arg = tvm.runtime.tensor(np.random.default_rng(1).standard_normal((1, rows, k), np.float32))

    def run(number: int) -> float:
        return float(vm.time_evaluator("main", tvm.cpu(), number=number, repeat=1)(arg).mean)

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
    inits, nodes, outs = [], [], []
    for i, w in enumerate(_weights(shape)):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"))
        nodes.append(helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])], outs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    xv = np.random.default_rng(1).standard_normal((rows, k), np.float32)
    return _loop(lambda: sess.run(None, {"x": xv}))


def _torch(shape: str, rows: int) -> Callable[[int], float]:
    import torch

    k = SHAPES[shape][0][1]
    ws = [torch.from_numpy(w) for w in _weights(shape)]
    xv = torch.randn(rows, k)

    def call() -> None:
        with torch.inference_mode():
            for w in ws:
                torch.nn.functional.linear(xv, w)

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
        nbytes = 4 * n * SHAPES[shape][0][1]
        ref = statistics.median(times[(shape, rows, engines[0])])
        for e in engines:
            t = times[(shape, rows, e)]
            med = statistics.median(t)
            table.append(
                {
                    "shape": f"{shape} {SHAPES[shape][0][1]}->{n}",
                    "rows": rows,
                    "engine": e,
                    "us": round(med * 1e6, 1),
                    "spread %": round(100 * (max(t) - min(t)) / med, 1),
                    "GB/s": round(nbytes / med / 1e9, 1),
                    f"/ {engines[0]}": round(med / ref, 2),
                }
            )
    return table


if __name__ == "__main__":
    main()
