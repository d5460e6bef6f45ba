"""Backend options are declared once (``compiler.backend.BACKEND_OPTIONS``): every option a
backend's code reads is declared for it, every declared option is read, and the checks, the
CLI help and the README table all come from that one declaration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compiler.backend import BACKEND_OPTIONS, check_options, options_help
from compiler.errors import BackendError, UsageError

ROOT = Path(__file__).resolve().parents[1]
#: options.get("key"...) or options["key"]: how every backend reads its options.
READ = re.compile(r"""options(?:\.get\(|\[)\s*["']([a-z_0-9]+)["']""")
#: The backends whose options live in their own folder (tensorrt shares onnx's exporter).
FOLDERS = {"hls": "hls", "tvm": "tvm", "onnx": "onnx", "tensorrt": "tensorrt"}


def _read_keys(folder: str) -> set[str]:
    return {key for path in (ROOT / "backends" / folder).rglob("*.py")
            for key in READ.findall(path.read_text())}


@pytest.mark.parametrize("backend", sorted(FOLDERS))
def test_declared_options_are_exactly_the_ones_read(backend: str) -> None:
    read = _read_keys(FOLDERS[backend])
    declared = set(BACKEND_OPTIONS[backend])
    assert read <= declared, f"read but not declared: {sorted(read - declared)}"
    assert declared <= read, f"declared but never read: {sorted(declared - read)}"


def test_unknown_option_did_you_mean_from_the_table() -> None:
    with pytest.raises(UsageError, match="did you mean 'reuse_factor'"):
        check_options("hls", {"reuse_facter": 2})
    with pytest.raises(BackendError, match="'pipeline_stages'"):
        check_options("hls", {"pipeline_stages": 2}, BackendError, multi=False)
    check_options("hls", {"pipeline_stages": 2, "reuse_factor": 2})
    check_options("multi", {"tune": 4, "reuse_factor": 2})  # a partitioned compile: any part's


def test_cli_help_lists_every_option() -> None:
    text = options_help()
    for backend, options in BACKEND_OPTIONS.items():
        for name in options:
            assert name in text, (backend, name)
