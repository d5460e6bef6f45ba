"""The backend contract and the artifact every backend returns.

A backend has two methods: ``unsupported(graph, target)`` lists *every* node it cannot take,
each with a reason, before any work starts (the one walker of ``compiler.rules`` over the
backend's one rule table, each rule a ``check(node, ctx)`` and a ``lower(node, ctx)``);
``compile(graph, target, out_dir, options)`` writes the artifact into ``out_dir`` and
returns an ``Artifact`` that can run it where the toolchain is present.
``load(path, graph, target, manifest)`` reopens a saved artifact.

``BACKENDS`` maps a backend name (a target file's ``backend`` key) to ``"module:Class"``,
imported only when used, so that ``import compiler`` needs no toolchain.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph
from compiler.manifest import file_hashes, sha256_file, versions
from compiler.outdir import release_temporary, staged_dir

__all__ = ["BACKENDS", "Artifact", "Backend", "get_backend", "staged_dir", "write_manifest"]

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)

BACKENDS: dict[str, str] = {
    "reference": "backends.reference:ReferenceBackend",
    "hls": "backends.hls:HlsBackend",
    "tvm": "backends.tvm:TvmBackend",
    "asic": "backends.asic:AsicBackend",
    "multi": "compiler.multi:MultiBackend",
    "onnx": "backends.onnx:OnnxBackend",
    "tensorrt": "backends.tensorrt:TensorRTBackend",
}

#: The one declaration of every backend's options (``compile(**options)``, CLI ``--option
#: KEY=VALUE``): backend -> option -> what it does. The "unknown option, did you mean" check,
#: the backends' own checks, ``tapeout compile --help`` and the README's option table (made
#: by ``scripts/support_matrix.py``) all read it; a key no backend reads is a typo, refused
#: instead of silently ignored. A backend reads its options with ``options.get(key)``.
BACKEND_OPTIONS: dict[str, dict[str, str]] = {
    "reference": {},
    "hls": {
        "reuse_factor": "\"auto\" (default: fit the part at the lowest latency), an int for "
        "every MAC layer, or a dict layer -> int",
        "top": "name of the top function (default: the graph's name)",
        "dsp_packing": "8-bit products per DSP in the estimate (default: the family's, "
        "2 on UltraScale+)",
        "port_layout": "4-D tensors at the ports: \"nhwc\" (default) or \"nchw\"",
        "tb_samples": "random golden samples for the testbench (dataflow 32, engine 2)",
        "tb_inputs": "a list of input arrays (stacked samples) for the testbench instead",
        "fpga_arch": "\"auto\" (default), \"dataflow\" or \"engine\"",
        "engine": "engine size: \"B512\" ... \"B4096\" (default: the largest that fits) or "
        "a dict of EngineConfig fields",
        "engine_clock_mhz": "the engine's clock (default: the target's clock_mhz)",
        "max_utilization": "share of the part the automatic reuse factors may fill (0..1)",
    },
    "tvm": {
        "tune": "MetaSchedule trials (0: no tuning)",
        "tune_minutes": "tuning time budget in minutes",
        "cache_dir": "the tuning database folder (default: $TAPEOUT_CACHE/tvm)",
        "tune_progress": "log tuning progress (default true)",
        "rpc_tracker": "HOST:PORT of TVM's RPC tracker to measure candidates on",
        "rpc_key": "the RPC servers' key on the tracker",
        "specialize_shapes": "fix graph inputs that decide shapes (reshape shapes, reduction "
        "axes, top-k's k, ...) to the example inputs' values, checked at run (default true; "
        "false: such inputs stay runtime data and their ops are refused)",
        "exec_mode": "how the Relax VM runs the model's main function: \"bytecode\" "
        "(default, interpreted) or \"compiled\" (to machine code: no interpreter per kernel call)",
        "weights_file": "true: constants of 1 KiB or more go into params.bin (memory-mapped "
        "at load) instead of model.so (compile_llm sets it: one weights.bin for both graphs)",
        "cache_writes": "an LLM step graph writes its new keys/values into its KV-cache inputs "
        "in place (compile_llm sets it; default false)",
        "workspace": "true: the intermediate tensors of main are made once per loaded model, "
        "not per call (compile_llm sets it; default false)",
    },
    "asic": {},
    "onnx": {"opset": "ONNX opset to write (17..the installed onnx's newest)"},
    "tensorrt": {
        "engine": "build model.engine (default true; false: the deployable bundle only)",
        "precision": "\"int8\", \"fp16\" or \"fp32\" (default: int8 when quantized)",
        "float_precision": "precision of the float islands of an int8 model (default fp16)",
        "sparsity": "2:4 structured sparsity: \"auto\" (default), true or false",
        "workspace_mb": "builder workspace (default: the target's workspace_mb)",
        "shape_ranges": "optimization profiles: input -> [min, opt, max] shapes",
        "dla_core": "run on this DLA core (Jetson)",
        "timing_cache": "the timing cache file (default: $TAPEOUT_CACHE/tensorrt)",
        "opset": "ONNX opset of the exported model (default 17)",
        "tf32": "allow TF32 for fp32 layers where the GPU has it (default true)",
    },
}
#: Options of compiler.multi (partitions and pipeline stages), accepted on every target.
MULTI_OPTIONS: dict[str, str] = {
    "pipeline_stages": "cut the graph into N pipeline stages (one worker process each)",
    "stage_cores": "the CPU cores of each stage's worker, e.g. [[0], [1]]",
    "stage_devices": "where each stage runs: \"local\", rpc://HOST:PORT (a server) or "
    "rpc://HOST:PORT/KEY (a tracker and its servers' key)",
}


def known_options(backend: str, multi: bool = True) -> list[str]:
    """The option names a compile for ``backend`` takes (``multi``: every backend's), with
    ``compiler.multi``'s own unless ``multi`` is False (a backend called by it)."""
    names = [backend] if backend in BACKEND_OPTIONS else list(BACKEND_OPTIONS)
    own = MULTI_OPTIONS if multi else {}
    return sorted({*own, *(k for name in names for k in BACKEND_OPTIONS[name])})


def check_options(backend: str, options: dict[str, Any], error: type[Exception] | None = None,
                  multi: bool = True) -> None:
    """Raise ``UsageError`` (or ``error``) for an option no backend of this compile reads (a
    partitioned compile, backend ``multi``, passes options on to every kind of part)."""
    import difflib

    from compiler.errors import UsageError

    known = known_options(backend, multi)
    for key in sorted(set(options) - set(known)):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise (error or UsageError)(f"unknown option {key!r} for the {backend} backend{hint} "
                                    f"(it takes: {', '.join(known) or 'none'})")


def options_help() -> str:
    """One line per backend listing its options, for ``--option``'s help."""
    return "; ".join(f"{name}: {', '.join(opts)}" for name, opts in BACKEND_OPTIONS.items()
                     if opts)


#: 2: the manifest lists file hashes, the input model, the target file's hash and versions.
FORMAT_VERSION = 2


class Backend(Protocol):
    name: str

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]: ...

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> Artifact: ...

    def load(
        self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]
    ) -> Artifact: ...


def get_backend(name: str) -> Backend:
    """Import and instantiate backend ``name`` from ``BACKENDS``."""
    spec = BACKENDS.get(name)
    if spec is None:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module_name, _, cls_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
            raise BackendError(f"backend {name!r} is not implemented yet ({spec})") from None
        raise
    return getattr(module, cls_name)()


class Artifact:
    """A compiled model: runs, saves, and reports what the compiler did.

    Backends subclass it and override ``run``. Everything an artifact needs at run time lives
    under ``self.path`` and is found through it when running: the compile folder is renamed
    into place after ``compile`` returns. ``layers`` holds the per-layer rows of the report;
    ``summary`` the totals.
    """

    def __init__(
        self,
        graph: Graph,
        target: Target,
        path: Path | None = None,
        layers: list[dict[str, Any]] | None = None,
        summary: dict[str, Any] | None = None,
    ):
        self.graph = graph
        self.target = target
        self.path = path
        self.layers: list[dict[str, Any]] = layers or []
        self.summary: dict[str, Any] = summary or {}
        self.passes: list[dict[str, Any]] = []
        #: What quantization did (``QuantReport.to_json()`` per quantize pass), for report.json
        self.quantization: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}  # seconds per compile stage; not in the files

    @property
    def backend(self) -> str:
        return self.target.backend

    #: Files the artifact's own tools rewrite after compiling (a TensorRT engine built later
    #: by the bundle's script): left out of the manifest's hashes.
    unverified_files: tuple[str, ...] = ()
    #: The input model's file name and sha256 (``compiler.manifest.model_source``).
    source: dict[str, Any] | None = None

    #: ``run`` also takes a leading batch axis of any size (see ``check_inputs``).
    batched_inputs = False

    def run(self, *inputs: Any) -> list[np.ndarray]:
        """Run the artifact on one array per graph input; a wrong count, rank, shape or
        dtype (a 0-d array included) is an ``InputError``, checked here for every backend."""
        from compiler.interpreter import check_inputs
        from compiler.specialize import check_guards

        arrays = check_inputs(self.graph, inputs, batch=self.batched_inputs)
        check_guards(self.graph, self.summary.get("specialized"), arrays)
        return self.execute(arrays)

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on inputs already checked and converted (C order, the graph's dtypes)."""
        raise NotImplementedError

    # ---- reporting -----------------------------------------------------------------------
    def report_json(self, deterministic: bool = False) -> dict[str, Any]:
        """The report as a dict; ``deterministic`` leaves out timings and the absolute path,
        so that compiling the same model twice writes byte-identical artifact folders."""
        data: dict[str, Any] = {
            "graph": self.graph.name,
            "target": self.target.name,
            "backend": self.backend,
            "artifact": None if deterministic or self.path is None else str(self.path),
            "summary": self.summary,
            "passes": [{k: v for k, v in p.items() if k != "seconds"} if deterministic else p
                       for p in self.passes],
            "layers": self.layers,
        }
        if self.quantization:
            data["quantization"] = self.quantization
        if not deterministic:
            data["timings"] = self.timings
        return data

    def report(self, deterministic: bool = False) -> str:
        from compiler.report import format_report

        return format_report(self.report_json(deterministic))

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the artifact folder to ``path`` (atomically: a temp folder renamed)."""
        dest = Path(path)
        with staged_dir(dest) as tmp:
            if self.path is not None and self.path.exists():
                shutil.copytree(self.path, tmp, dirs_exist_ok=True)
            write_manifest(tmp, self)
        old, self.path = self.path, dest.resolve()
        release_temporary(old)  # a compile without output_dir: its temp folder is not needed
        return self.path


def write_manifest(folder: Path, art: Artifact) -> None:
    """graph.ir + constants.npz + manifest.json: what ``compiler.load`` needs."""
    (folder / "graph.ir").write_text(str(art.graph))
    np.savez(folder / "constants.npz", **art.graph.constants)  # type: ignore[arg-type]
    manifest = {
        "format": FORMAT_VERSION,
        "backend": art.backend,
        "target": art.target.name,
        # A custom target file is recorded by path; a shipped one by name alone.
        "target_file": None if _is_shipped(art.target.source_file) else art.target.source_file,
        "target_sha256": sha256_file(Path(art.target.source_file))
        if Path(art.target.source_file).is_file() else None,
        "input_model": art.source,
        "versions": versions(),
        "report": art.report_json(deterministic=True),
    }
    (folder / "report.txt").write_text(art.report(deterministic=True))
    (folder / "report.json").write_text(
        json.dumps(art.report_json(deterministic=True), indent=2, default=str))
    # Hashed last, over everything written above; the manifest itself is written last of all,
    # so a folder with a manifest is complete.
    manifest["files"] = file_hashes(folder, {"manifest.json", *art.unverified_files})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))


def _is_shipped(source_file: str) -> bool:
    from compiler.target import targets_dir

    return Path(source_file).resolve().parent == Path(str(targets_dir())).resolve()
