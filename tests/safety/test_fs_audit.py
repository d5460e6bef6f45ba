"""The file-system audit (tests/fs_audit.py) catches writes outside the temporary roots."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fs_audit import _Audit


def _audit(root: Path) -> _Audit:
    audit = _Audit()
    audit.roots = [str(root)]
    audit.active = True
    return audit


def test_writes_outside_the_roots_are_recorded(tmp_path: Path) -> None:
    audit = _audit(tmp_path / "inside")
    outside = str(tmp_path / "outside" / "f.txt")
    audit.hook("open", (outside, "w", os.O_WRONLY | os.O_CREAT))
    audit.hook("os.mkdir", (str(tmp_path / "outside" / "d"), 0o777, -1))
    audit.hook("shutil.rmtree", (str(tmp_path / "outside"), None))
    assert set(audit.violations) == {outside, str(tmp_path / "outside" / "d"),
                                     str(tmp_path / "outside")}


def test_reads_and_writes_inside_the_roots_are_not(tmp_path: Path) -> None:
    audit = _audit(tmp_path)
    audit.hook("open", (str(tmp_path / "a.txt"), "w", os.O_WRONLY))
    audit.hook("open", ("/etc/hostname", "r", os.O_RDONLY))
    audit.hook("os.remove", (str(tmp_path / "a.txt"), None))
    audit.hook("open", ("/dev/null", "w", os.O_WRONLY))
    assert audit.violations == {}


def test_paths_relative_to_a_directory_descriptor_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    audit = _audit(tmp_path / "inside")
    fd = os.open(tmp_path / "outside", os.O_RDONLY)
    try:
        audit.hook("os.remove", ("f.txt", fd))  # how shutil.rmtree removes a folder's files
    finally:
        os.close(fd)
    assert list(audit.violations) == [str(tmp_path / "outside" / "f.txt")]
