"""The backend contract and the artifact every backend returns.

A backend has two methods: ``unsupported(graph, target)`` lists *every* node it cannot take,
each with a reason, before any work starts; ``compile(graph, target, out_dir, options)``
writes the artifact into ``out_dir`` and returns an ``Artifact`` that can run it where the
toolchain is present. ``load(path, graph, target, manifest)`` reopens a saved artifact.

``BACKENDS`` maps a backend name (a target file's ``backend`` key) to ``"module:Class"``,
imported only when used, so that ``import compiler`` needs no toolchain.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph

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

FORMAT_VERSION = 1


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
        self.timings: dict[str, float] = {}  # seconds per compile stage; not in the files

    @property
    def backend(self) -> str:
        return self.target.backend

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
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
        self.path = dest
        return dest


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
        "report": art.report_json(deterministic=True),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    (folder / "report.txt").write_text(art.report(deterministic=True))
    (folder / "report.json").write_text(
        json.dumps(art.report_json(deterministic=True), indent=2, default=str))


def _is_shipped(source_file: str) -> bool:
    from compiler.target import targets_dir

    return Path(source_file).resolve().parent == Path(str(targets_dir())).resolve()


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``dest``; on success it replaces ``dest``, on failure it is
    deleted, so a failed compile never leaves a half-written artifact."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
