"""``compiler.compile``: model in, runnable artifact out (frontend -> passes -> backend)."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from compiler.backend import Artifact, get_backend, staged_dir, write_manifest
from compiler.errors import BackendError, TapeoutError, UnsupportedOpsError
from compiler.hwsearch.config import is_config
from compiler.ir.graph import Graph
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.pass_manager import Pass, PassManager, PipelineResult, build_pass, build_pipeline
from compiler.specialize import is_static, specialize_from_inputs
from compiler.target import Target, load_target

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "int16", "int4w", "mixed")

Progress = Callable[[str], None]


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor or array-like as a NumPy array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def import_model(
    model: Any, example_inputs: Sequence[Any] | None = None, dynamic_shapes: Any = None
) -> Graph:
    """A Graph from a torch module, ExportedProgram, GraphModule, ONNX model or path, or IR."""
    if isinstance(model, Graph):
        return model
    if isinstance(model, str | Path) and str(model).endswith(".ir"):
        return parse(Path(model).read_text())
    from compiler.frontends import load_model

    return load_model(model, example_inputs=example_inputs, dynamic_shapes=dynamic_shapes)


def _quantize_options(
    p: Pass, precision: str | None, calibrator: str | None, island_dtype: str | None = None
) -> Pass:
    fields: set[str] = (
        {f.name for f in dataclasses.fields(p)} if dataclasses.is_dataclass(p) else set()
    )
    changes: dict[str, Any] = {}
    if precision is not None and "precision" in fields:
        changes["precision"] = precision
    if calibrator is not None and "calibrator" in fields:
        changes["calibrator"] = calibrator
    if island_dtype is not None and "island_dtype" in fields:
        changes["island_dtype"] = island_dtype
    return dataclasses.replace(p, **changes) if changes else p  # type: ignore[type-var]


def plan_pipeline(
    target: Target,
    pipeline: str | Sequence[str] | None,
    precision: str | None,
    calibrator: str | None,
    island_dtype: str | None = None,
) -> list[Pass]:
    """The passes to run: the given pipeline or the target's, with the precision (and the
    quantize options given) applied."""
    if precision is not None and precision not in PRECISIONS:
        raise TapeoutError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision is not None and precision not in target.numerics.allowed_precisions:
        raise TapeoutError(
            f"target {target.name} does not allow precision {precision!r}; it "
            f"allows {list(target.numerics.allowed_precisions)}"
        )
    passes = build_pipeline(list(target.pipeline) if pipeline is None else pipeline)
    if precision == "fp32":
        return [p for p in passes if p.name != "quantize"]
    quantizing = any(p.name == "quantize" for p in passes)
    if precision is not None and not quantizing:
        passes.append(build_pass("quantize"))
    return [
        _quantize_options(p, precision, calibrator, island_dtype) if p.name == "quantize" else p
        for p in passes
    ]


def _calibration(data: Any, **quant_options: Any) -> AbstractContextManager[Any]:
    if data is None:
        return nullcontext()
    from passes.quantize import calibration_context

    return calibration_context(data, **quant_options)


def _from_config(
    path: str | Path, target: Any, calibration_data: Any, options: dict[str, Any]
) -> tuple[Graph, Any, Any, dict[str, Any]]:
    """A compile config's model, target, calibration data and quantize options (what the
    call gives explicitly wins); its backend options are merged into ``options``."""
    from compiler.hwsearch.config import load_config

    config = load_config(path)
    for key, value in config.options.items():
        options.setdefault(key, value)
    quant = {"overrides": config.quantize_overrides} if config.quantize_overrides else {}
    calib = config.calibration if calibration_data is None else calibration_data
    return config.graph, target or config.target, calib, quant


def compile(
    model: Any,
    target: str | Path | Target | None = None,
    example_inputs: Sequence[Any] | None = None,
    calibration_data: Any = None,
    output_dir: str | Path | None = None,
    *,
    pipeline: str | Sequence[str] | None = None,
    precision: str | None = None,
    calibrator: str | None = None,
    island_dtype: str | None = None,
    dynamic_shapes: Any = None,
    verify_each: bool = False,
    print_after: set[str] | str | None = None,
    printer: Callable[[str], None] = print,
    progress: Progress | None = None,
    **options: Any,
) -> Artifact:
    """Compile ``model`` for ``target``; returns an artifact that runs, saves and reports.

    ``model``: torch.nn.Module (exported with ``example_inputs``), ExportedProgram, ONNX
    ModelProto or .onnx path, or an IR Graph. ``target``: a name from ``targets/`` or a path to
    a target file (default ``reference``). ``model`` may also be a compile config written by
    ``tapeout search`` (``config.json``: model, target, calibration data, per-layer precisions
    and backend options). ``island_dtype`` ("f32" or "f64") overrides the target's for the float
    ops left between integer layers of a quantized model (CPU targets: f64, bit-exact with
    the interpreter; f32 is faster). ``options`` go to the backend (e.g. ``tune=64``,
    ``engine=False``).
    """
    say = progress or (lambda stage: None)
    quant_options: dict[str, Any] = {}
    if is_config(model):
        model, target, calibration_data, quant_options = _from_config(
            model, target, calibration_data, options
        )
    tgt = load_target(target or "reference")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    say("import")
    graph = import_model(model, example_inputs, dynamic_shapes)
    graph = graph.copy() if isinstance(model, Graph) else graph
    timings["import_s"] = time.perf_counter() - start
    if example_inputs is not None and not is_static(graph):
        specialize_from_inputs(graph, [to_numpy(x) for x in example_inputs])
    say("passes")
    t0 = time.perf_counter()
    manager = PassManager(
        plan_pipeline(tgt, pipeline, precision, calibrator, island_dtype),
        verify_each=verify_each,
        print_after=print_after,
        printer=printer,
    )
    with _calibration(calibration_data, **quant_options):
        result = manager.run(graph, tgt)
    verify(graph)
    timings["passes_s"] = time.perf_counter() - t0
    say("check")
    backend = get_backend(tgt.backend)
    missing = backend.unsupported(graph, tgt)
    if missing:
        raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for target {tgt.name}")
    say("compile")
    if precision is not None:
        options.setdefault("precision", precision)
    t0 = time.perf_counter()
    art = _compile_into(backend, graph, tgt, output_dir, options, result)
    timings["backend_s"] = time.perf_counter() - t0
    art.timings.update({k: round(v, 4) for k, v in timings.items()})
    if art.path is not None:
        write_manifest(art.path, art)
    say("done")
    return art


def _compile_into(
    backend: Any,
    graph: Graph,
    tgt: Target,
    output_dir: str | Path | None,
    options: dict[str, Any],
    result: PipelineResult,
) -> Artifact:
    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix="tapeout-")) / graph.name
    dest = Path(output_dir)
    with staged_dir(dest) as tmp:
        art = backend.compile(graph, tgt, tmp, dict(options))
        art.path = tmp
        art.passes = [dataclasses.asdict(r) for r in result.records]
        art.summary.setdefault("rewrites", dict(result.stats.fired))
        write_manifest(tmp, art)
    art.path = dest
    return art


def load(path: str | Path) -> Artifact:
    """Reopen an artifact folder written by ``compile(..., output_dir=...)`` or ``save``."""
    folder = Path(path)
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise BackendError(f"{folder} is not a tapeout artifact (no manifest.json)")
    try:
        manifest = json.loads(manifest_file.read_text())
        with np.load(folder / "constants.npz", allow_pickle=False) as npz:
            constants = {k: npz[k] for k in npz.files}
        graph = parse((folder / "graph.ir").read_text(), constants)
    except (OSError, ValueError, KeyError) as e:
        raise BackendError(f"artifact {folder} is damaged: {type(e).__name__}: {e}") from None
    target_file = manifest.get("target_file")
    tgt = load_target(
        target_file if target_file and Path(target_file).is_file() else manifest["target"]
    )
    if manifest.get("target") and tgt.name != manifest["target"]:
        tgt = dataclasses.replace(tgt, name=manifest["target"])
    art = get_backend(manifest["backend"]).load(folder, graph, tgt, manifest)
    art.passes = manifest.get("report", {}).get("passes", [])
    return art


def list_targets() -> list[str]:
    """Names of the shipped targets (``compiler.target.list_targets`` has the details)."""
    from compiler.target import list_targets as _list

    return [t.name for t in _list()]
