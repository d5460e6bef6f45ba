"""Flow stages: a graph saved as IR text plus its weights, readable as a model everywhere.

A stage folder holds ``graph.ir``, ``constants.npz`` and ``stage.json`` (which passes ran and
for which target); an artifact folder holds the same two files plus ``manifest.json``. Either
is a valid model input (``tapeout compile build/quantized/ --target cpu``): the passes that
already ran are not run again, so one calibration serves several targets. A lone ``m.ir``
takes its weights from ``m.npz`` beside it; without one it can still be inspected (the text
carries every shape), but not compiled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.backend import staged_dir
from compiler.errors import FrontendError
from compiler.ir.graph import Graph
from compiler.ir.parser import parse

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
FORMAT_VERSION = 1


def is_saved_graph(model: Any) -> bool:
    """True for an ``.ir`` file or a folder with ``graph.ir`` (a stage or an artifact)."""
    if not isinstance(model, str | Path):
        return False
    path = Path(model)
    return path.suffix == ".ir" or (path.is_dir() and (path / "graph.ir").is_file())


def _weights_file(path: Path) -> Path:
    return path / "constants.npz" if path.is_dir() else path.with_suffix(".npz")


def load_saved_graph(model: str | Path, weights_optional: bool = False) -> Graph:
    """The graph of an ``.ir`` file or a stage/artifact folder, with its weights.

    ``weights_optional``: a graph whose weights are missing still loads (for printing); its
    constants are then absent and running it fails, naming the constant.
    """
    path = Path(model)
    ir_file = path / "graph.ir" if path.is_dir() else path
    if not ir_file.is_file():
        raise FrontendError(f"{ir_file} does not exist")
    weights = _weights_file(path)
    constants: dict[str, np.ndarray] = {}
    if weights.is_file():
        try:
            with np.load(weights, allow_pickle=False) as npz:
                constants = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise FrontendError(f"cannot read the weights {weights}: {e}") from None
    elif not weights_optional:
        raise FrontendError(
            f"{ir_file} has no weights: expected {weights} (write a stage with "
            "`tapeout compile ... --stop-after PASS -o DIR` or `tapeout inspect ... -o m.ir`)"
        )
    return parse(ir_file.read_text(), constants, allow_missing_constants=weights_optional)


def passes_done(model: Any) -> list[str]:
    """Names of the passes already run on a saved stage or artifact (empty for anything else);
    ``quantize`` when its stages ran (the records name the stages)."""
    from compiler.tools.passes_run import QUANTIZE_STAGES

    names = [p["name"] for p in pass_records(model)]
    return names + (["quantize"] if set(names) & set(QUANTIZE_STAGES) else [])


def pass_records(model: Any) -> list[dict[str, Any]]:
    """``{"name", "options"}`` of the passes already run on a saved stage or artifact."""
    if not isinstance(model, str | Path) or not Path(model).is_dir():
        return []
    folder = Path(model)
    for name, key in ((STAGE_FILE, None), ("manifest.json", "report")):
        file = folder / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as e:
                raise FrontendError(f"cannot read {file}: {e}") from None
            data = data.get(key, {}) if key else data
            return [
                {"name": p["name"], "options": p.get("options", "")}
                if isinstance(p, dict)
                else {"name": str(p), "options": ""}
                for p in data.get("passes", [])
            ]
    return []


def source_model(model: Any) -> str | None:
    """The float model a compile started from: a stage's or an artifact's recorded source,
    or the path itself (None for an in-memory model). ``tapeout verify`` compares with it."""
    if not isinstance(model, str | Path):
        return None
    path = Path(model)
    for name, keys in (
        (STAGE_FILE, ("source_model",)),
        ("manifest.json", ("report", "summary", "source_model")),
    ):
        file = path / name
        if path.is_dir() and file.is_file():
            data: Any = json.loads(file.read_text())
            for key in keys:
                data = data.get(key) if isinstance(data, dict) else None
            return data if isinstance(data, str) else None
    return str(path.resolve())


def write_graph(graph: Graph, path: str | Path) -> Path:
    """``m.ir`` plus ``m.npz`` (its weights), each written whole or not at all."""
    ir_file = Path(path)
    ir_file.parent.mkdir(parents=True, exist_ok=True)
    weights = ir_file.with_suffix(".npz")
    tmp_weights = weights.with_name(f".{weights.stem}.tmp.npz")
    tmp_ir = ir_file.with_name(f".{ir_file.name}.tmp")
    try:
        np.savez(tmp_weights, **graph.constants)  # type: ignore[arg-type]
        tmp_ir.write_text(str(graph))
        tmp_weights.replace(weights)
        tmp_ir.replace(ir_file)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_ir.unlink(missing_ok=True)
    return ir_file


def write_stage(
    graph: Graph,
    folder: str | Path,
    target: str,
    passes: list[dict[str, Any]],
    stopped_after: str,
    source: str | None = None,
) -> Path:
    """Write a stage folder (atomically: a temp folder renamed into place)."""
    dest = Path(folder)
    with staged_dir(dest) as tmp:
        (tmp / "graph.ir").write_text(str(graph))
        np.savez(tmp / "constants.npz", **graph.constants)  # type: ignore[arg-type]
        info = {
            "format": FORMAT_VERSION,
            "graph": graph.name,
            "target": target,
            "stopped_after": stopped_after,
            "passes": passes,
            "source_model": source,
        }
        (tmp / STAGE_FILE).write_text(json.dumps(info, indent=2))
    log.info("wrote stage %s (after %s)", dest, stopped_after)
    return dest


def compile_stage(
    model: Any,
    target: str | Path,
    output_dir: str | Path,
    stop_after: str,
    *,
    calibration_data: Any = None,
    example_inputs: Any = None,
    pipeline: Any = None,
    quant: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the target's pipeline up to and including pass ``stop_after``; write a stage.

    ``quant``: QuantConfig fields to change (as ``compile(quant=...)``). Returns what was
    written: folder, passes run (those of an input stage included), nodes.
    """
    from compiler.api import import_model, plan_pipeline, remaining_passes, resolve_quant, to_numpy
    from compiler.errors import TapeoutError
    from compiler.ir.verifier import verify
    from compiler.specialize import is_static, specialize_from_inputs
    from compiler.target import load_target
    from compiler.tools.passes_run import run_passes

    tgt = load_target(target)
    whole, changes = resolve_quant(tgt, quant)
    planned = plan_pipeline(tgt, pipeline, whole, changes)
    names = [p.name for p in planned]
    if stop_after not in names:
        raise TapeoutError(
            f"--stop-after {stop_after}: no such pass in the pipeline for target {tgt.name} "
            f"({', '.join(names)})"
        )
    todo = remaining_passes(planned[: names.index(stop_after) + 1], model)
    graph = import_model(model, example_inputs)
    if example_inputs is not None and not is_static(graph):
        specialize_from_inputs(graph, [to_numpy(x) for x in example_inputs])
    result = run_passes(graph, todo, tgt, calibration_data)
    verify(graph)
    done = [*pass_records(model), *({"name": r.name, "options": r.options} for r in result.records)]
    folder = write_stage(graph, output_dir, tgt.name, done, stop_after, source_model(model))
    names = [p["name"] for p in done]
    return {"stage": str(folder), "passes": names, "nodes": len(graph.compute_nodes())}
