"""What compression buys and costs on the FPGA-sized zoo models, against torch's own pruning.

    python bench/compress_bench.py                       # digits_cnn and jet_mlp
    python bench/compress_bench.py --models jet_mlp --cpu-runs 200

Per model, one table with a row per variant:

- ``float``: the trained model as imported; ``int8``: it, post-training quantized (the FPGA
  pipeline's ``quantize``, calibrated on 256 training samples);
- ``pruned``: digits_cnn loses half of its channels (``prune-channels{criterion=bn_scale}``),
  jet_mlp 75% of its weights (``prune-magnitude``), no retraining;
- ``pruned+distilled``: that, distilled from the float model (``compiler.distill``; pruned zeros
  stay zero);
- ``pruned+int8``: the distilled pruned model, post-training quantized;
- ``pruned+int8+distilled``: distilled again with fake-quantized weights (``FakeQuant``, the
  quantize pass's own scales), then quantized: what was trained is what runs.

Columns: non-zero parameters; effective MACs (multiplies by non-zero weights, what the HLS
backend pays for); weight bytes as stored (f32: 4, i8: 1, i32 bias: 4 per entry, zeros
included); test accuracy, computed by the reference interpreter on the variant's own IR (the
integer IR for int8 rows); the FPGA estimate of ``compiler.compile(..., target="fpga")``
(DSPs, latency) for the int8 rows; CPU latency per sample (batch 1, median) of the TVM
``target="cpu"`` artifact, or of the reference interpreter where TVM is not available (the
column header says which). int8 rows on the CPU compile with ``precision="int8"``.

The peer, in the same run: ``torch.nn.utils.prune.global_unstructured`` (L1) at the weight
sparsity of our ``pruned`` row (the fraction of conv / dense weights it removed or zeroed),
without fine-tuning, as a user of torch would do it; the line
under each table compares its accuracy with ours, as ratios.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import compiler  # noqa: E402
from compiler.ir import Graph  # noqa: E402
from compiler.report import format_table  # noqa: E402
from compiler.torchside.fake_quant import FakeQuant  # noqa: E402
from compiler.torchside.prune import graph_accuracy, student_from_graph  # noqa: E402
from passes._prune import snapshot  # noqa: E402
from passes.prune_channels import prune_channels  # noqa: E402
from passes.prune_magnitude import prune_magnitude  # noqa: E402

CALIBRATION = 256


@dataclass
class Setup:
    """How one model is pruned and retrained."""

    prune: Callable[[Graph], object]
    describe: str
    epochs: int
    qat_epochs: int
    lr: float
    batch_size: int


SETUPS: dict[str, Setup] = {
    "digits_cnn": Setup(
        lambda g: prune_channels(g, ratio=0.5, criterion="bn_scale"),
        "50% of channels (prune-channels, bn_scale)",
        epochs=20, qat_epochs=5, lr=3e-3, batch_size=64,
    ),
    "jet_mlp": Setup(
        lambda g: prune_magnitude(g, sparsity=0.75),
        "75% of weights (prune-magnitude, global)",
        epochs=10, qat_epochs=3, lr=5e-3, batch_size=128,
    ),
}  # fmt: skip


def tvm_available() -> bool:
    try:
        import tvm  # noqa: F401
    except Exception:
        return False
    return True


def weight_bytes(graph: Graph) -> int:
    """Bytes of every constant a compute node uses (as stored: zeros included)."""
    seen: dict[int, np.ndarray] = {}
    for node in graph.compute_nodes():
        for value in node.inputs:
            data = graph.const_value(value)
            if data is not None and data.ndim > 0:
                seen[id(value)] = data
    return sum(int(d.nbytes) for d in seen.values())


def cpu_latency_ms(graph: Graph, x: np.ndarray, calib: np.ndarray, int8: bool, runs: int) -> str:
    """Median per-sample latency on the CPU: TVM when present, else the interpreter."""
    if not tvm_available():
        if int8:
            graph = compiler.compile(graph, "reference", (x,), calib, precision="int8").graph
        return f"{_median_ms(lambda: compiler.interpret(graph, x), runs):.3f}"
    try:
        art = compiler.compile(graph, "cpu", (x,), calib, precision="int8" if int8 else None)
    except Exception as e:  # an int8 CPU path still missing must not stop the table
        logging.getLogger(__name__).warning("cpu compile failed: %s", e)
        return "n/a"
    return f"{_median_ms(lambda: art.run(x), runs):.3f}"


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(name: str, graph: Graph, int8: bool, data: tuple, runs: int) -> dict[str, Any]:
    """One table row: size, accuracy, FPGA estimate (int8 rows), CPU latency."""
    x, _, x_test, y_test = data
    calib, sample = x[:CALIBRATION], x_test[:1]
    row: dict[str, Any] = {"variant": name}
    fpga = "n/a (float)"
    latency = "n/a (float)"
    measured = graph
    if int8:
        try:
            art = compiler.compile(graph, "fpga", (sample,), calib)
            measured = art.graph
            summary = art.report_json()["summary"]
            fpga, latency = str(summary["dsp"]), f"{summary['latency_ns']:.0f} ns"
        except Exception as e:
            logging.getLogger(__name__).warning("fpga compile failed: %s", e)
            measured = compiler.compile(
                graph, "reference", (sample,), calib, precision="int8"
            ).graph
            fpga = latency = "n/a"
    snap = snapshot(measured)
    row.update(
        params=snap.nonzero,
        MACs=snap.effective_macs,
        bytes=weight_bytes(measured),
        accuracy=f"{100 * graph_accuracy(measured, x_test, y_test):.2f}%",
        DSP=fpga,
        latency=latency,
    )
    row["cpu_ms"] = cpu_latency_ms(graph, sample, calib, int8, runs)
    return row


def variants(name: str, data: tuple) -> tuple[list[tuple[str, Graph, bool]], Any, float]:
    """The variants' graphs, the float torch model, and the pruned weight sparsity."""
    from compiler.frontends.torch_export import import_torch
    from tests.cases import get_case

    setup = SETUPS[name]
    case = get_case(name)
    model = case.build()
    x, y, _, _ = data
    graph = import_torch(model, case.example_inputs())
    pruned = graph.copy()
    setup.prune(pruned)
    weight_sparsity = 1 - _weights(pruned, nonzero=True) / _weights(graph, nonzero=False)
    student = student_from_graph(pruned)
    train = dict(lr=setup.lr, batch_size=setup.batch_size, progress=sys.stderr.isatty())
    compiler.distill(model, student, (x, y), epochs=setup.epochs, **train)
    distilled = student.to_graph()
    qat = student_from_graph(distilled, fake_quant=FakeQuant(power_of_two=True))
    compiler.distill(model, qat, (x, y), epochs=setup.qat_epochs, **{**train, "lr": setup.lr / 10})
    rows = [
        ("float", graph, False),
        ("int8", graph, True),
        ("pruned", pruned, False),
        ("pruned+distilled", distilled, False),
        ("pruned+int8", distilled, True),
        ("pruned+int8+distilled", qat.to_graph(), True),
    ]
    return rows, model, weight_sparsity


def _weights(graph: Graph, nonzero: bool) -> int:
    """Conv / dense weights of ``graph``: all of them, or the non-zero ones."""
    layers = snapshot(graph).layers.values()
    return sum(size - (zeros if nonzero else 0) for _, _, size, zeros, _ in layers)


def torch_peer(model: Any, amount: float, data: tuple) -> float:
    """Accuracy of torch's global L1 unstructured pruning at ``amount``, no fine-tuning."""
    import copy

    import torch
    from torch.nn.utils import prune

    from compiler.torchside.distill import accuracy

    peer = copy.deepcopy(model)
    layers = [m for m in peer.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=amount
    )
    return accuracy(peer, data[2], data[3])


def bench_model(name: str, runs: int) -> str:
    from tests.datasets import digits_split, jet_split

    data = {"digits_cnn": digits_split, "jet_mlp": jet_split}[name]()
    rows_in, model, amount = variants(name, data)
    rows = [measure(label, graph, int8, data, runs) for label, graph, int8 in rows_in]
    cpu = "cpu_ms (TVM)" if tvm_available() else "cpu_ms (interpreter)"
    for row in rows:
        row[cpu] = row.pop("cpu_ms")
    peer = torch_peer(model, amount, data)
    ours = {r["variant"]: float(r["accuracy"].rstrip("%")) / 100 for r in rows}
    lines = [
        f"{name}: pruned = {SETUPS[name].describe}: {100 * amount:.1f}% of the conv/dense "
        f"weights gone (removed or zero)",
        format_table(rows),
        f"peer torch.nn.utils.prune.global_unstructured(L1, amount={amount:.3f}), no fine-tune: "
        f"{100 * peer:.2f}%; ours pruned {100 * ours['pruned']:.2f}% "
        f"({ours['pruned'] / peer:.2f}x), pruned+distilled "
        f"{100 * ours['pruned+distilled']:.2f}% ({ours['pruned+distilled'] / peer:.2f}x), "
        f"pruned+int8+distilled {100 * ours['pruned+int8+distilled']:.2f}% "
        f"({ours['pruned+int8+distilled'] / peer:.2f}x)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="digits_cnn,jet_mlp")
    parser.add_argument("--cpu-runs", type=int, default=50, help="timed runs per CPU latency")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    for name in args.models.split(","):
        start = time.perf_counter()
        print(bench_model(name, args.cpu_runs))
        print(f"({time.perf_counter() - start:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
