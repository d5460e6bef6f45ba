"""``tapeout search``: the budget search from the command line (``compiler.hwsearch.fit``).

    tapeout search model.onnx --target pynq-z2 --max-dsp 220 --max-latency-ns 500 \\
        --max-accuracy-drop 1 --data x_test.npz --labels y_test.npy \\
        --train-data x_train.npz --train-labels y_train.npy -o search-out
    tapeout compile search-out/config.json -o build

Prints the Pareto table; writes ``search-out/`` (table, plot, ``config.json``, the compiled
design in ``build/``). When nothing fits, the error names the short resource and by how much.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from compiler.errors import BudgetError, InputError


def _array(path: str | None, what: str) -> np.ndarray | None:
    """The first array of an .npz (one array per model input, samples first) or an .npy."""
    from compiler.cli import load_npz_or_npy

    if path is None:
        return None
    data = load_npz_or_npy(path)
    if isinstance(data, dict):
        if not data:
            raise InputError(f"{what} {path} holds no arrays")
        return np.asarray(next(iter(data.values())))
    return np.asarray(data)


def cmd_search(args: argparse.Namespace) -> dict[str, Any]:
    import compiler

    budget = {
        "max_dsp": args.max_dsp,
        "max_bram18k": args.max_bram18k,
        "max_lut": args.max_lut,
        "max_latency_ns": args.max_latency_ns,
        "max_accuracy_drop": args.max_accuracy_drop,
    }
    train = None
    if args.train_data or args.train_labels:
        if not (args.train_data and args.train_labels):
            raise InputError("--train-data and --train-labels go together")
        train = (_array(args.train_data, "--train-data"), _array(args.train_labels, "labels"))
    say = None if args.json or args.quiet else (lambda m: print(m, file=sys.stderr))
    try:
        result = compiler.search(
            args.model,
            args.target,
            budget,
            _array(args.data, "--data"),
            _array(args.labels, "--labels"),
            train=train,
            calibration=_array(args.calib, "--calib"),
            output_dir=args.output,
            epochs=args.epochs,
            max_train_samples=args.max_train_samples,
            seed=args.seed,
            progress=say,
        )
    except BudgetError as e:
        if not args.json and hasattr(e.result, "table"):
            print(e.result.table())
        raise
    if not args.json:
        print(result.table())
        print(f"wrote {result.config_path} (tapeout compile {result.config_path} -o build)")
    chosen = result.chosen
    assert chosen is not None and chosen.cost is not None
    return {
        "config": result.config_path,
        "plot": result.plot_path,
        "accuracy": chosen.accuracy,
        "accuracy_drop_points": chosen.drop,
        "prune": chosen.prune,
        "bits": chosen.bits,
        "reuse_factor": chosen.cost.reuse,
        "estimate": {"dsp": chosen.cost.dsp, "latency_ns": chosen.cost.latency_ns},
        "compiled": result.compiled,
        "seconds": round(result.seconds, 1),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file (or .ir text)")
    p.add_argument("--target", "-t", required=True, help="an FPGA target (pynq-z2, kv260, ...)")
    p.add_argument("--max-dsp", type=int)
    p.add_argument("--max-bram18k", type=int)
    p.add_argument("--max-lut", type=int)
    p.add_argument("--max-latency-ns", type=float)
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, help="points (default 0.5)")
    p.add_argument("--data", required=True, help="evaluation inputs (.npz or .npy)")
    p.add_argument("--labels", required=True, help="evaluation labels (.npy)")
    p.add_argument("--train-data", help="fine-tuning inputs (default: --data)")
    p.add_argument("--train-labels", help="fine-tuning labels")
    p.add_argument("--calib", help="calibration inputs (default: 256 training inputs)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per point")
    p.add_argument("--max-train-samples", type=int, help="fine-tune on at most this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="search-out", help="folder to write")


#: This command's entry in ``compiler.cli.COMMANDS`` (after its help text).
COMMAND = (add_arguments, cmd_search)
