"""Output folders: nothing of the user's is ever overwritten or left half-written.

``check_output_dir(dest)`` runs before any work (a compile can take minutes): it refuses a
file, the current folder or one holding it, a folder holding the input model, and any
non-empty folder that is not a previous tapeout artifact (recognized by its
``manifest.json``), and proves the parent is writable by creating and removing a probe
folder there. ``staged_dir(dest)`` then builds the artifact in a hidden folder beside
``dest`` and renames it into place; on any exception, ``SIGTERM`` included (see
``terminate_on_sigterm``), the staging folder is removed.

``temporary_root()`` is where ``compile()`` without ``output_dir`` writes: the folder is
removed when the process exits (or earlier, when ``release_temporary`` is called).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from compiler.errors import OutputError

MANIFEST = "manifest.json"

#: Staging and temporary folders alive in this process, removed at exit if still there (a
#: process-wide resource by nature: the exit hook cannot be given a context).
_LIVE: set[Path] = set()


def is_artifact(folder: Path) -> bool:
    """A folder written by tapeout: its manifest is JSON with a ``format`` and a ``backend``."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format" in data and "backend" in data


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_dir(dest: str | Path, model: object = None) -> Path:
    """``dest`` made absolute, after refusing what must never be replaced (see the module
    docstring); raises ``OutputError`` naming the folder and why."""
    raw = Path(dest)
    if str(dest) in ("", ".", "..") or raw.name in ("", ".", ".."):
        raise OutputError(f"output folder {str(dest)!r} names the current or a parent folder; "
                          "give a new folder, e.g. -o build/model")
    path = raw.expanduser().resolve()
    if _contains(path, Path.cwd().resolve()):
        raise OutputError(f"output folder {path} holds the current folder; it cannot be replaced")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} is a file, not a folder; give a folder name")
    if isinstance(model, str | Path) and Path(model).exists():
        if _contains(path, Path(model).resolve()):
            raise OutputError(f"output folder {path} holds the input model {model}; "
                              "write the artifact elsewhere")
    if path.is_dir() and any(path.iterdir()) and not is_artifact(path):
        raise OutputError(
            f"output folder {path} is not empty and is not a tapeout artifact (no valid "
            f"{MANIFEST}); tapeout replaces only its own artifacts: remove it or pick another")
    _check_writable(path)
    return path


def _check_writable(path: Path) -> None:
    """Create and remove a probe folder where the staging folder will go (the nearest
    existing ancestor: the missing ones are created later)."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create output folder {path}: {parent} is a file")
    try:
        probe = Path(tempfile.mkdtemp(prefix=".tapeout-probe.", dir=parent))
        probe.rmdir()
    except OSError as e:
        raise OutputError(f"cannot write output folder {path}: {e.strerror or e} "
                          f"(in {parent})") from None


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``dest``; on success it replaces ``dest`` (which must be
    absent, empty, or a tapeout artifact), on failure it is deleted, so a failed compile
    never leaves a half-written artifact."""
    dest = check_output_dir(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        raise OutputError(f"cannot write output folder {dest}: {e}") from None
    _LIVE.add(tmp)
    try:
        yield tmp
        _replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _LIVE.discard(tmp)


def _replace(tmp: Path, dest: Path) -> None:
    # Checked again: the folder may have changed during a long compile.
    check_output_dir(dest)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / "artifact")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temporary_root() -> Path:
    """A fresh ``tapeout-*`` folder in the system temp dir, removed at process exit."""
    root = Path(tempfile.mkdtemp(prefix="tapeout-"))
    _LIVE.add(root)
    return root


def release_temporary(path: Path | None) -> None:
    """Remove the temporary root holding ``path`` now, if ``path`` is under one."""
    if path is None:
        return
    for root in list(_LIVE):
        if root.name.startswith("tapeout-") and _contains(root, path):
            shutil.rmtree(root, ignore_errors=True)
            _LIVE.discard(root)


@atexit.register
def _remove_live() -> None:
    for path in list(_LIVE):
        shutil.rmtree(path, ignore_errors=True)
    _LIVE.clear()


class Terminated(BaseException):  # noqa: N818  (like KeyboardInterrupt, not an error)
    """SIGTERM, raised as an exception so that ``finally`` blocks clean up."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signum}")


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` (the CLI calls it; a library leaves signals alone)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
