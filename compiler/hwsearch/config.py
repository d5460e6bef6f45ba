"""The file a search writes and ``compile`` accepts: a model plus how to compile it.

``config.json`` (beside it ``model.ir``, the float graph with the searched pruning and
fine-tuned weights, its constants in ``model.npz``, and ``calib.npz``, the calibration
samples)::

    {"tapeout": "compile-config", "version": 1,
     "model": "model.ir", "target": "pynq-z2", "calibration": "calib.npz",
     "quantize_overrides": {"fc2": {"precision": "int16"}},
     "options": {"reuse_factor": {"fc1": 2, "fc2": 4, "fc3": 2, "fc4": 1}},
     "search": {...what the search measured: accuracy, DSP, latency...}}

``tapeout compile out/config.json -o build`` (or ``compiler.compile("out/config.json")``)
compiles exactly the design the search priced: the same graph, the same calibration data
(so the same scales), the same per-layer precisions and reuse factors. Arguments given
explicitly to ``compile`` win over the file's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import InputError, ParseError
from compiler.ir.graph import Graph
from compiler.ir.parser import parse
from compiler.ir.printer import print_graph

KIND = "compile-config"
VERSION = 1


@dataclass
class CompileConfig:
    """A loaded ``config.json``: what ``compile`` needs besides the output folder."""

    graph: Graph
    target: str
    calibration: np.ndarray | None
    quantize_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)


def is_config(model: Any) -> bool:
    """``model`` is a path to a compile config (a ``.json`` file)."""
    return isinstance(model, str | Path) and str(model).endswith(".json")


def write_config(
    folder: Path,
    graph: Graph,
    target: str,
    calibration: np.ndarray,
    quantize_overrides: dict[str, dict[str, Any]],
    options: dict[str, Any],
    search: dict[str, Any],
) -> Path:
    """Write ``config.json``, ``model.ir``, ``model.npz`` and ``calib.npz`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.ir").write_text(print_graph(graph))
    np.savez(folder / "model.npz", **graph.constants)  # type: ignore[arg-type]
    np.savez(folder / "calib.npz", calibration)
    data = {
        "tapeout": KIND,
        "version": VERSION,
        "model": "model.ir",
        "target": target,
        "calibration": "calib.npz",
        "quantize_overrides": quantize_overrides,
        "options": options,
        "search": search,
    }
    path = folder / "config.json"
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def load_config(path: str | Path) -> CompileConfig:
    """Read a ``config.json`` written by ``write_config`` (paths relative to it)."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read compile config {file}: {e}") from None
    if not isinstance(data, dict) or data.get("tapeout") != KIND:
        raise InputError(f'{file} is not a tapeout compile config (no "tapeout": "{KIND}")')
    if data.get("version") != VERSION:
        raise InputError(f"{file}: config version {data.get('version')!r}, expected {VERSION}")
    for key in ("model", "target"):
        if not isinstance(data.get(key), str):
            raise InputError(f"{file}: key {key!r} must be a string")
    model = file.parent / data["model"]
    try:
        with np.load(model.with_suffix(".npz"), allow_pickle=False) as npz:
            constants = {k: npz[k] for k in npz.files}
        graph = parse(model.read_text(), constants)
    except (OSError, ValueError, ParseError) as e:
        raise InputError(f"{file}: cannot read its model {model}: {e}") from None
    calibration = None
    if data.get("calibration"):
        with np.load(file.parent / data["calibration"], allow_pickle=False) as npz:
            calibration = npz[npz.files[0]]
    return CompileConfig(
        graph=graph,
        target=data["target"],
        calibration=calibration,
        quantize_overrides=dict(data.get("quantize_overrides") or {}),
        options=dict(data.get("options") or {}),
        search=dict(data.get("search") or {}),
    )
