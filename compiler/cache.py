"""The one cache folder of every backend, its lock, and what happens to a corrupt entry.

Root: ``$TAPEOUT_CACHE``, else ``~/.cache/tapeout``; each backend keeps a subfolder
(``tvm/`` tuning databases, ``hls/`` and ``asic/`` built C simulations, ``tensorrt/`` timing
caches). Entries are shared by every compile on the machine, so

* writers hold ``locked(entry)`` (an ``flock`` on ``<entry>.lock``): two compiles sharing a
  cache wait for each other instead of interleaving half records;
* a reader that finds an entry it cannot parse (binary garbage, truncated JSON, a half-written
  record) calls ``quarantine(entry, why)``: the entry is moved aside as
  ``<entry>.corrupt-<time>`` with a warning (kept for a bug report, never deleted) and the
  caller rebuilds it. A corrupt cache costs time, never a failed compile.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compiler.errors import CacheError

log = logging.getLogger(__name__)

ENV = "TAPEOUT_CACHE"


def cache_root() -> Path:
    """``$TAPEOUT_CACHE`` or ``~/.cache/tapeout`` (not created here)."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tapeout"


def cache_dir(name: str) -> Path:
    """The subfolder ``name`` of the cache root, created; ``CacheError`` if it cannot be."""
    path = cache_root() / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create cache folder {path}: {e.strerror or e} "
                         f"(set ${ENV} to a writable folder)") from None
    return path


@contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``entry`` (a file or folder of the cache) for the block."""
    lock_path = entry.with_name(entry.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CacheError(f"cannot lock cache entry {entry}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def quarantine(entry: Path, why: str) -> Path | None:
    """Move a corrupt ``entry`` aside (``<entry>.corrupt-<time>``) with a warning; returns
    where it went, or None if it was already gone."""
    aside = entry.with_name(f"{entry.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(entry, aside)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CacheError(f"cache entry {entry} is corrupt ({why}) and cannot be moved "
                         f"aside: {e.strerror or e}") from None
    log.warning("cache entry %s is corrupt (%s): moved to %s and rebuilt", entry, why, aside.name)
    return aside


def read_json(path: Path, default: Any, valid: Callable[[Any], bool] = lambda v: True) -> Any:
    """The JSON in ``path``, or ``default`` if it is missing, or if it is corrupt (then it
    is quarantined first)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return default
    except (UnicodeDecodeError, ValueError) as e:
        quarantine(path, f"{type(e).__name__}: {e}")
        return default
    if not valid(data):
        quarantine(path, "unexpected content")
        return default
    return data


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def json_lines_ok(path: Path) -> str | None:
    """Why the JSON-lines file ``path`` is corrupt (a line that is not JSON: garbage or a
    half-written record), or None if it is sound or missing."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        return f"not UTF-8 text: {e}"
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as e:
            return f"line {number} is not JSON: {e}"
    if text and not text.endswith("\n"):
        return "the last record is not terminated (a half-written record)"
    return None
