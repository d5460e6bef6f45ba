"""``compiler.compile``: model in, runnable artifact out (frontend -> passes -> backend)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compiler.backend import Artifact, check_options, get_backend, staged_dir, write_manifest
from compiler.context import Executor, PassContext, interpreter_executor
from compiler.errors import BackendError, TapeoutError, UnsupportedOpsError
from compiler.hwsearch.config import is_config
from compiler.ir.graph import Graph
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.manifest import model_source, verify_files
from compiler.outdir import check_output_dir, release_temporary, temporary_root
from compiler.pass_manager import (
    Pass,
    PassManager,
    PipelineResult,
    build_pass,
    build_pipeline,
    fit_to_quantize,
)
from compiler.quant_config import Precision, QuantConfig
from compiler.specialize import is_static, specialize_from_inputs
from compiler.target import Target, load_target

log = logging.getLogger(__name__)

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
    from compiler.tools.stage import is_saved_graph, load_saved_graph

    if is_saved_graph(model):  # an .ir file with its .npz, a stage or an artifact folder
        return load_saved_graph(model)
    from compiler.frontends import load_model

    return load_model(model, example_inputs=example_inputs, dynamic_shapes=dynamic_shapes)


def resolve_quant(
    target: Target, quant: QuantConfig | Mapping[str, Any] | None, **shortcuts: Any
) -> tuple[QuantConfig | None, dict[str, Any]]:
    """(the whole config given, the fields to change): ``quant`` is a whole ``QuantConfig``
    (it replaces the pipeline's quantize options) or a mapping of fields to change (the CLI
    flags); ``shortcuts`` (``precision=`` ...) change fields too. None values are not given.
    """
    whole: QuantConfig | None = None
    changes: dict[str, Any] = {}
    if isinstance(quant, QuantConfig):
        whole = quant
    elif quant is not None:
        changes = dict(quant)
    changes.update({k: v for k, v in shortcuts.items() if v is not None})
    try:
        QuantConfig(**changes)  # typed error now, naming the field, not mid-pipeline
    except TypeError as e:
        raise TapeoutError(f"quantization: {e}") from None
    precision = changes.get("precision", whole.precision if whole is not None else None)
    if precision is not None and precision not in target.numerics.allowed_precisions:
        raise TapeoutError(
            f"target {target.name} does not allow precision {precision!r}; it "
            f"allows {list(target.numerics.allowed_precisions)}"
        )
    return whole, changes


def plan_pipeline(
    target: Target,
    pipeline: str | Sequence[str] | None,
    quant: QuantConfig | None = None,
    changes: Mapping[str, Any] | None = None,
) -> list[Pass]:
    """The passes to run: the given pipeline or the target's, its quantize passes configured
    by ``quant`` (whole) and ``changes`` (fields; see ``resolve_quant``). A precision
    asked for adds a quantize pass where the pipeline has none; fp32 removes it. The passes
    before an integer quantize take their integer form (``fit_to_quantize``)."""
    changes = dict(changes or {})
    precision = changes.get("precision", quant.precision if quant is not None else None)
    passes = build_pipeline(list(target.pipeline) if pipeline is None else pipeline)
    if precision == "fp32":
        return [p for p in passes if p.name != "quantize"]
    if precision is not None and not any(p.name == "quantize" for p in passes):
        passes.append(build_pass("quantize"))
    configured = [_configure(p, quant, changes) if p.name == "quantize" else p for p in passes]
    return fit_to_quantize(configured, quant)


def _configure(p: Pass, quant: QuantConfig | None, changes: Mapping[str, Any]) -> Pass:
    """The quantize pass ``p`` with its config: ``quant`` or its own, ``changes`` applied."""
    if quant is None and not changes:
        return p
    base = quant or getattr(p, "config", None) or QuantConfig()
    new = dataclasses.replace(base, **changes)
    return dataclasses.replace(p, config=new)  # type: ignore[type-var]


def remaining_passes(passes: list[Pass], model: Any) -> list[Pass]:
    """The passes a saved stage or artifact has not run yet (all of them for other models)."""
    from compiler.tools.stage import passes_done

    done = set(passes_done(model))
    if done:
        log.info("resuming: skipping the passes already run (%s)", ", ".join(sorted(done)))
    return [p for p in passes if p.name not in done]


def calibration_executor() -> Executor:
    """onnxruntime as the calibration executor where the ONNX backend imports, else the
    interpreter (``compiler.context``: passes never import a backend, so it is injected)."""
    try:
        from backends.onnx.executor import OrtExecutor
    except ImportError:  # the onnx extra is not installed: the interpreter still calibrates
        return interpreter_executor
    return OrtExecutor()


def pass_context(
    target: Target,
    calibration_data: Any,
    quant: QuantConfig | None = None,
    example_inputs: Sequence[np.ndarray] | None = None,
) -> PassContext:
    """The context ``compile()`` runs its pipeline in (``example_inputs``: the values
    ``specialize-shapes`` may fix shape-deciding inputs to)."""
    if calibration_data is None:
        return PassContext(target=target, quant=quant, example_inputs=example_inputs)
    return PassContext(
        target=target,
        quant=quant,
        calibration_data=calibration_data,
        executor=calibration_executor(),
        example_inputs=example_inputs,
    )


def _from_config(
    path: str | Path, target: Any, calibration_data: Any, quant: Any, options: dict[str, Any]
) -> tuple[Graph, Any, Any, Any]:
    """A compile config's model, target, calibration data and per-layer precisions (what the
    call gives explicitly wins); its backend options are merged into ``options``."""
    from compiler.hwsearch.config import load_config

    config = load_config(path)
    for key, value in config.options.items():
        options.setdefault(key, value)
    if config.quantize_overrides and not isinstance(quant, QuantConfig):
        quant = {"overrides": config.quantize_overrides, **(quant or {})}
    calib = config.calibration if calibration_data is None else calibration_data
    return config.graph, target or config.target, calib, quant


def compile(
    model: Any,
    target: str | Path | Target | Sequence[str | Path | Target] | None = None,
    example_inputs: Sequence[Any] | None = None,
    calibration_data: Any = None,
    output_dir: str | Path | None = None,
    *,
    pipeline: str | Sequence[str] | None = None,
    quant: QuantConfig | Mapping[str, Any] | None = None,
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
    ModelProto or .onnx path, or an IR Graph, or a compile config written by ``tapeout search``
    (``config.json``: model, target, calibration data, per-layer precisions, backend options).
    ``target``: a name from ``targets/`` or a path to a target file (default ``reference``); a
    list of targets (or ``"zcu104+cpu"``) partitions the model across them,
    and ``pipeline_stages=N`` cuts it into N pipelined stages (``compiler.multi``).
    ``quant``: a ``QuantConfig`` (it replaces the quantize options of the
    target's pipeline; a precision other than fp32 adds a quantize pass where there is none)
    or a mapping of its fields to change; ``precision``, ``calibrator`` and ``island_dtype``
    are shortcuts for those fields (``island_dtype``: "f32" or "f64" for the float ops left
    between integer layers of a quantized model; CPU targets: f64, bit-exact with the
    interpreter; f32 is faster). ``options`` go to the backend (e.g. ``tune=64``,
    ``engine=False``); the precision reaches it as the target's ``numerics.precision``.
    """
    say = progress or (lambda stage: None)
    if is_config(model):
        model, target, calibration_data, quant = _from_config(
            model, target, calibration_data, quant, options
        )
    tgt = load_target(target if target is not None else "reference")
    # Before any work: a typo or a refused folder should not cost a compile.
    check_options(tgt.backend, options)
    if output_dir is not None:
        output_dir = check_output_dir(output_dir, model)
    whole, changes = resolve_quant(
        tgt, quant, precision=precision, calibrator=calibrator, island_dtype=island_dtype
    )
    tgt = _with_precision(tgt, changes.get("precision", whole.precision if whole else None))
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
        remaining_passes(plan_pipeline(tgt, pipeline, whole, changes), model),
        verify_each=verify_each,
        print_after=print_after,
        printer=printer,
    )
    # Shape-deciding inputs are fixed to the example's values (and guarded) unless the
    # backend's option says no (a backend without the option leaves it to the pipeline).
    specializes = getattr(get_backend(tgt.backend), "specializes", None)
    examples = None
    if example_inputs is not None and (specializes is None or specializes(options)):
        examples = [to_numpy(x) for x in example_inputs]
    ctx = pass_context(tgt, calibration_data, whole, examples)
    result = manager.run(graph, ctx)
    verify(graph)
    timings["passes_s"] = time.perf_counter() - t0
    say("check")
    # Pipeline stages are cut and compiled by the multi backend (compiler.multi) too.
    backend = get_backend("multi" if options.get("pipeline_stages") else tgt.backend)
    missing = backend.unsupported(graph, tgt)
    if missing:
        raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for target {tgt.name}")
    say("compile")
    t0 = time.perf_counter()
    art = _compile_into(backend, graph, tgt, output_dir, options, result, ctx.quant_reports,
                        ctx.specialized)
    timings["backend_s"] = time.perf_counter() - t0
    art.timings.update({k: round(v, 4) for k, v in timings.items()})
    from compiler.tools.stage import pass_records, source_model

    # A resumed stage's report lists the passes run before it too (debug re-runs them).
    art.passes = [*pass_records(model), *art.passes]
    source = source_model(model)  # what `tapeout verify` compares against by default
    if source is not None:
        art.summary.setdefault("source_model", source)
    art.source = model_source(model)
    if art.path is not None:
        write_manifest(art.path, art)
    say("done")
    return art


def _with_precision(target: Target, precision: Precision | None) -> Target:
    """The target whose ``numerics.precision`` is the one asked for: that is how a backend
    that builds per precision (TensorRT's builder flags) learns it, without a backend option
    that the others would reject."""
    if precision is None or precision == target.numerics.precision:
        return target
    numerics = dataclasses.replace(target.numerics, precision=precision)
    return dataclasses.replace(target, numerics=numerics)


def _compile_into(
    backend: Any,
    graph: Graph,
    tgt: Target,
    output_dir: str | Path | None,
    options: dict[str, Any],
    result: PipelineResult,
    quant_reports: Sequence[Any] = (),
    specialized: Mapping[str, Any] | None = None,
) -> Artifact:
    temporary = output_dir is None
    if output_dir is None:
        output_dir = temporary_root() / graph.name
    dest = Path(output_dir)
    with staged_dir(dest) as tmp:
        art = backend.compile(graph, tgt, tmp, dict(options))
        art.path = tmp
        art.passes = [dataclasses.asdict(r) for r in result.records]
        art.summary.setdefault("rewrites", dict(result.stats.fired))
        if specialized:  # the run-time guard (Artifact.run) and the report read it
            art.summary["specialized"] = dict(specialized)
        if quant_reports:
            from compiler.report import attach_sqnr

            art.quantization = [r.to_json() for r in quant_reports]
            attach_sqnr(art.layers, quant_reports)
        write_manifest(tmp, art)
    art.path = dest
    if temporary:  # removed when the artifact is collected, or at exit, unless saved first
        weakref.finalize(art, release_temporary, dest)
    return art


def load(path: str | Path, verify: bool = True) -> Artifact:
    """Reopen an artifact folder written by ``compile(..., output_dir=...)`` or ``save``.

    ``verify`` checks every file against the manifest's sha256 and refuses a changed one
    (``IntegrityError`` naming it); ``verify=False`` loads it anyway."""
    folder = Path(path)
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise BackendError(f"{folder} is not a tapeout artifact (no manifest.json)")
    try:
        manifest = json.loads(manifest_file.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("format", 1), int):
            raise ValueError("manifest.json is not a JSON object with an integer format")
        for key in ("backend", "target"):
            if not isinstance(manifest.get(key), str):
                raise KeyError(f"manifest.json has no {key!r} name")
        if verify and manifest.get("format", 1) >= 2:
            verify_files(folder, manifest)
        elif verify:
            log.warning("artifact %s has a format-1 manifest without file hashes: not "
                        "verified (recompile it to get them)", folder)
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
    art.quantization = manifest.get("report", {}).get("quantization", [])
    return art


def list_targets() -> list[str]:
    """Names of the shipped targets (``compiler.target.list_targets`` has the details)."""
    from compiler.target import list_targets as _list

    return [t.name for t in _list()]
