"""``manifest.json``: what an artifact holds, where it came from, and proof it is unchanged.

The manifest records the sha256 of every file of the artifact (but itself and the files a
backend rewrites after compiling, such as a TensorRT engine built later by the bundle's
script), of the input model when it was a file or an ONNX model, of the target file, and the
versions of tapeout and of the toolchains that shaped the result. ``verify_files`` checks a
folder against it: ``compiler.load`` refuses an artifact whose files were changed (a
``constants.npz`` edited by hand would make the C simulation and the interpreter disagree).
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

from compiler.errors import IntegrityError

#: Distributions whose versions can change what an artifact computes (pip names).
VERSIONED = ("tapeout", "onnx", "onnxruntime", "torch", "apache-tvm")

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (imports nothing)."""
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def file_hashes(folder: Path, skip: set[str]) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``folder`` not named in ``skip``."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in skip
    }


def model_source(model: Any) -> dict[str, Any] | None:
    """The input model's identity: a file's name and hash, an ONNX model's hash, else None
    (a torch module has no stable bytes to hash)."""
    if isinstance(model, str | Path) and Path(model).is_file():
        return {"file": Path(model).name, "sha256": sha256_file(Path(model))}
    if hasattr(model, "SerializeToString") and hasattr(model, "graph"):
        return {"file": None, "sha256": hashlib.sha256(model.SerializeToString()).hexdigest()}
    return None


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Raise ``IntegrityError`` naming every file that is missing or differs from the
    manifest's hash."""
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise IntegrityError(f"artifact {folder}: manifest.json lists no file hashes; "
                             "recompile it, or load it with verify=False")
    bad = []
    for name, want in sorted(listed.items()):
        path = folder / name
        if not path.resolve().is_relative_to(folder.resolve()):
            bad.append(f"{name} (outside the artifact)")
        elif not path.is_file():
            bad.append(f"{name} (missing)")
        elif sha256_file(path) != want:
            bad.append(f"{name} (changed)")
    if bad:
        raise IntegrityError(
            f"artifact {folder} does not match its manifest: {', '.join(bad)}; recompile it, "
            "or load it with verify=False if the change is intended")
