"""A pytest plugin that proves no test writes outside its temporary folders.

Two nets, because a test can write from its own process or from one it starts:

- In the pytest process, a ``sys.addaudithook`` hook sees every write-mode ``open``, every
  ``os.mkdir``/``rename``/``replace``/``remove``/``rmdir``/``symlink`` and every
  ``shutil.rmtree``/``copyfile``, and records those whose path is outside the temporary roots
  (the system temp folder, pytest's base temp, ``$TAPEOUT_CACHE``), with the test that did it.
- For child processes (the CLI, compile workers, g++, RPC servers), the repository and the home
  folder are listed at the start and compared at the end: a file that appeared there is reported.

Anything found fails the session (exit status 1) with the list printed. Python's own bytecode
cache (``__pycache__``) and the tools' own bookkeeping (``.pytest_cache``, ``.mypy_cache``,
``.ruff_cache``) are not tests' writes and are ignored. ``TAPEOUT_FS_AUDIT=0`` turns the plugin
off (for debugging a failure elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Audit events that write, create or remove a path: event -> ((path index, dir_fd index), ...);
#: a dir_fd index of None means the event carries none (Python's audit-event table gives the
#: argument order; shutil.rmtree removes with paths relative to a dir_fd).
_PATH_EVENTS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.mkdir": ((0, 2),), "os.remove": ((0, 1),), "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)), "os.symlink": ((1, 2),), "os.link": ((1, 3),),
    "os.chmod": ((0, 2),), "os.truncate": ((0, None),), "shutil.rmtree": ((0, None),),
    "shutil.copyfile": ((1, None),), "shutil.copytree": ((1, None),),
    "shutil.move": ((0, None), (1, None)),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
#: Not files: writing to these is not writing a file.
_DEVICES = ("/dev/", "/proc/", "/sys/")


class _Audit:
    """The state of one pytest session's audit (a plugin object, registered once)."""

    def __init__(self) -> None:
        self.roots: list[str] = []
        self.violations: dict[str, str] = {}  # path -> the test that wrote it
        self.active = False
        self.before: set[str] = set()

    def allowed(self, path: str) -> bool:
        if path.startswith(_DEVICES) or _IGNORED_PARTS.intersection(Path(path).parts):
            return True
        return any(path == root or path.startswith(root + os.sep) for root in self.roots)

    def check(self, raw: object, dir_fd: object = None) -> None:
        if isinstance(raw, int) or raw is None:
            return  # a file descriptor: its path was checked when it was opened
        try:
            path = os.fsdecode(raw)  # type: ignore[arg-type]
            if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            path = os.path.abspath(path)
        except (TypeError, ValueError, OSError):
            return
        if not self.allowed(path):
            self.violations.setdefault(path, os.environ.get("PYTEST_CURRENT_TEST", "(no test)"))

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = (args + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and mode is None and flags & _WRITE_FLAGS)
            if writes:
                self.check(path)
        elif event in _PATH_EVENTS:
            for at, fd_at in _PATH_EVENTS[event]:
                if at < len(args):
                    fd = args[fd_at] if fd_at is not None and fd_at < len(args) else None
                    self.check(args[at], fd)


def _listing() -> set[str]:
    """Files in the repository that git does not track, and the home folder's top entries."""
    found: set[str] = set()
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--ignored",
                              "--untracked-files=all"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
        found.update(str(ROOT / line[3:]) for line in out.splitlines() if line[3:])
    except (OSError, subprocess.SubprocessError):
        pass
    home = Path.home()
    if home.is_dir():
        found.update(str(p) for p in home.iterdir())
        cache = home / ".cache"
        if cache.is_dir():
            found.update(str(p) for p in cache.iterdir())
    return {p for p in found if not _IGNORED_PARTS.intersection(Path(p).parts)
            and "/.venv/" not in p + "/"}


_AUDIT = _Audit()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("TAPEOUT_FS_AUDIT", "1") == "0":
        return
    # bytecode of test modules would go under tests/__pycache__: harmless, but not worth writing
    sys.dont_write_bytecode = True
    _AUDIT.before = _listing()
    sys.addaudithook(_AUDIT.hook)


@pytest.fixture(scope="session", autouse=True)
def _fs_audit_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Arm the hook once the temporary roots are known (after the cache fixture set
    ``$TAPEOUT_CACHE``)."""
    roots = {tempfile.gettempdir(), str(tmp_path_factory.getbasetemp())}
    if cache := os.environ.get("TAPEOUT_CACHE"):
        roots.add(cache)
    _AUDIT.roots = sorted({os.path.realpath(r) for r in roots}
                          | {os.path.abspath(r) for r in roots})
    _AUDIT.active = os.environ.get("TAPEOUT_FS_AUDIT", "1") != "0"
    yield
    _AUDIT.active = False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("TAPEOUT_FS_AUDIT", "1") == "0":
        return
    _AUDIT.active = False
    appeared = sorted(_listing() - _AUDIT.before)
    for path in appeared:
        _AUDIT.violations.setdefault(path, "(a child process)")
    if not _AUDIT.violations:
        return
    lines = [f"  {path}  <- {test}" for path, test in sorted(_AUDIT.violations.items())]
    sys.stderr.write("\nfs_audit: tests wrote outside their temporary folders:\n"
                     + "\n".join(lines) + "\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
