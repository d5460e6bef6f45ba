"""``compiler.search(model, target, budget, data, labels)``: the public entry of the budget
search (the strategy is in ``compiler.hwsearch.loop``).

    result = compiler.search(model, "pynq-z2", {"max_dsp": 220, "max_latency_ns": 400,
                             "max_accuracy_drop": 1.0}, x_test, y_test, train=(x_tr, y_tr),
                             output_dir="search-out")
    print(result.table())
    art = compiler.compile("search-out/config.json", output_dir="build")

``output_dir`` receives ``pareto.txt`` (the table), ``pareto.png`` (with matplotlib),
``config.json`` with ``model.ir``/``model.npz``/``calib.npz`` (the chosen configuration, a
file ``compile`` accepts) and ``build/``, the chosen design compiled. The folder is written
whole or not at all; when nothing fits, only the table and plot are written and
``BudgetError`` names what is short.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import BudgetError, InputError
from compiler.hwsearch.cost import resource_limits
from compiler.hwsearch.engine import Evaluator, TrainSettings
from compiler.hwsearch.loop import Say, SearchResult, closest, run_search
from compiler.hwsearch.space import Budget
from compiler.ir.graph import Graph


def as_arrays(data: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Float32 inputs and int64 labels of the same length."""
    if data is None or labels is None:
        raise InputError(f"{what}: needs inputs and labels (accuracy is measured on them)")
    x = np.asarray(data.numpy() if hasattr(data, "numpy") else data, dtype=np.float32)
    y = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels).astype(np.int64)
    if y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(
            f"{what}: {len(x)} inputs of shape {x.shape[1:]} and labels of shape {y.shape}: "
            "expected one integer label per input"
        )
    return x, y


def import_for_search(model: Any, sample: np.ndarray) -> Graph:
    """The model's IR with batch 1 (a torch module is exported on one sample)."""
    from compiler.api import import_model
    from compiler.specialize import is_static, specialize_from_inputs

    example: Any = None
    if hasattr(model, "parameters"):
        import torch

        example = (torch.from_numpy(sample),)
    graph = import_model(model, example)
    graph = graph.copy() if isinstance(model, Graph) else graph
    if not is_static(graph):
        specialize_from_inputs(graph, [sample])
    return graph


def search(
    model: Any,
    target: str,
    budget: Budget | dict[str, Any] | None = None,
    data: Any = None,
    labels: Any = None,
    *,
    train: tuple[Any, Any] | None = None,
    calibration: Any = None,
    output_dir: str | Path | None = None,
    epochs: int = 4,
    max_train_samples: int | None = None,
    seed: int = 0,
    progress: Say | None = None,
) -> SearchResult:
    """Search pruning ratios, bit widths and reuse factors per layer to fit ``budget``.

    ``budget``: ``max_dsp``, ``max_bram18k``, ``max_lut`` (default: the part's),
    ``max_latency_ns``, ``max_accuracy_drop`` (percentage points against the float model,
    default 0.5). ``data``/``labels``: where accuracy is measured. ``train``: ``(x, y)`` to
    fine-tune pruned points on (default: ``data``/``labels``, which then measure a fitted
    model: pass a separate split where there is one). ``calibration``: quantization samples
    (default: up to 256 training inputs). Raises ``BudgetError`` when nothing fits.
    """
    from compiler.target import load_target

    say = progress or (lambda message: None)
    tgt = load_target(target)
    limits = Budget.of(budget)
    resource_limits(tgt, limits.limits())  # an FPGA target, or say so before any work
    x, y = as_arrays(data, labels, "search data")
    train_xy = as_arrays(*train, "search train") if train is not None else (x, y)
    calib = (
        np.asarray(calibration, dtype=np.float32) if calibration is not None else train_xy[0][:256]
    )
    graph = import_for_search(model, x[:1])
    settings = TrainSettings(epochs=epochs, max_samples=max_train_samples, seed=seed)
    ev = Evaluator(graph, tgt, limits, calib, (x, y), train_xy, settings)
    say(f"float accuracy {100 * ev.float_accuracy:.2f}% on {len(x)} samples")
    result = run_search(ev, say)
    if output_dir is not None:
        write_outputs(result, ev, Path(output_dir), say)
    if result.chosen is None:
        best = closest(result.measured, limits.max_accuracy_drop)
        assert best.cost is not None
        raise BudgetError(
            f"nothing fits {tgt.name} within {limits.max_accuracy_drop:g} points of accuracy: "
            f"at the best point ({best.label()}, drop {best.drop:.2f} points) "
            f"{best.cost.shortfall()}",
            result,
        )
    return result


def write_outputs(result: SearchResult, ev: Evaluator, out: Path, say: Say) -> None:
    """The table, the plot and (when a point was chosen) the config and its compiled design."""
    import compiler
    from compiler.backend import staged_dir
    from compiler.hwsearch.config import write_config
    from compiler.hwsearch.pareto import plot_front

    with staged_dir(out) as tmp:
        (tmp / "pareto.txt").write_text(result.table() + "\n")
        plot = plot_front(result, tmp / "pareto.png")
        result.plot_path = str(out / "pareto.png") if plot else None
        chosen = result.chosen
        if chosen is None or chosen.graph is None or chosen.cost is None:
            return
        info = {
            "float_accuracy": ev.float_accuracy,
            "accuracy": chosen.accuracy,
            "accuracy_drop_points": chosen.drop,
            "prune": chosen.prune,
            "bits": chosen.bits,
            "estimate": {
                "dsp": chosen.cost.dsp,
                "bram18k": chosen.cost.bram18k,
                "lut": chosen.cost.lut,
                "latency_ns": chosen.cost.latency_ns,
            },
        }
        options = {"reuse_factor": dict(chosen.cost.reuse)}
        write_config(
            tmp,
            chosen.graph,
            ev.target.name,
            ev.calibration,
            ev.overrides(chosen.bits),
            options,
            info,
        )
        say("compiling the chosen configuration")
        art = compiler.compile(str(tmp / "config.json"), output_dir=tmp / "build")
        result.compiled = {k: art.summary[k] for k in ("dsp", "lut", "bram18k", "latency_ns")}
        (tmp / "summary.json").write_text(json.dumps(result.compiled, indent=2) + "\n")
    result.config_path = str(out / "config.json")
