"""The HLS artifact: C simulation of the generated design with g++ and ctypes.

``run(*inputs)`` compiles ``firmware/<top>.cpp`` and ``tb/host.cpp`` once into a shared
library (``g++ -O2 -std=c++14 -Wall -Werror``, cached by the sources' hash in
``$TAPEOUT_CACHE/hls`` outside the artifact folder, so the folder stays as the compiler
wrote it) and calls ``tapeout_run`` through ctypes: one top-function call per sample.
``build_testbench`` and ``run_testbench`` build and run ``tb/`` (optionally with
-fsanitize=address,undefined) the way ``make csim`` does.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from compiler import cache
from compiler.backend import Artifact
from compiler.errors import BackendError, InputError, ToolchainUnavailable

log = logging.getLogger(__name__)

CXXFLAGS = ["-O2", "-std=c++14", "-Wall", "-Werror", "-ffp-contract=off"]
SANITIZE = [
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]
_INSTALL = "install a C++ compiler (e.g. `apt-get install g++`) to run the C simulation"


def compiler_path() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx or not shutil.which(cxx):
        raise ToolchainUnavailable("g++", _INSTALL)
    return cxx


def _cache_dir() -> Path:
    # Built libraries are renamed into place whole, so a reader never sees half a file.
    return cache.cache_dir("hls")


class HlsArtifact(Artifact):
    """A generated HLS project that runs in C simulation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lib: ctypes.CDLL | None = None
        self._lib_path: Path | None = None

    # ---- files ---------------------------------------------------------------------------
    @property
    def top(self) -> str:
        return str(self.summary["top"])

    def _folder(self) -> Path:
        if self.path is None or not (self.path / "firmware").is_dir():
            raise BackendError(f"HLS artifact folder {self.path} has no firmware/")
        return self.path

    def sources(self, testbench: bool = False) -> list[Path]:
        root = self._folder()
        files = [root / "firmware" / f"{self.top}.cpp", root / "tb" / "host.cpp"]
        return files + ([root / "tb" / f"tb_{self.top}.cpp"] if testbench else [])

    def _key(self, flags: list[str], testbench: bool) -> str:
        root = self._folder()
        h = hashlib.sha256(" ".join([compiler_path(), *flags]).encode())
        for path in sorted(
            [*root.glob("firmware/**/*.h"), *root.glob("tb/*.h"), *self.sources(testbench)]
        ):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:24]

    # ---- building ------------------------------------------------------------------------
    def _build(self, flags: list[str], testbench: bool, name: str) -> Path:
        out = _cache_dir() / self._key(flags, testbench) / name
        with cache.locked(out):  # two runs sharing the cache compile it once
            if not out.exists():
                self._compile(flags, testbench, out)
        return out

    def _compile(self, flags: list[str], testbench: bool, out: Path) -> None:
        name = out.name
        out.parent.mkdir(parents=True, exist_ok=True)
        root = self._folder()
        tmp = out.with_name(f".{name}.{os.getpid()}")
        cmd = [
            compiler_path(),
            *flags,
            f"-I{root / 'firmware'}",
            f"-I{root / 'tb'}",
            *map(str, self.sources(testbench)),
            "-o",
            str(tmp),
        ]
        log.info("building C simulation: %s", " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise BackendError(
                f"g++ failed on the generated design ({root}):\n{result.stderr[-4000:]}"
            )
        os.replace(tmp, out)

    def build(self, sanitize: bool = False) -> Path:
        """The shared library that ``run`` loads (``sanitize``: ASan/UBSan instrumented)."""
        flags = [*CXXFLAGS, *(SANITIZE if sanitize else []), "-fPIC", "-shared"]
        return self._build(flags, False, "libcsim.so")

    def build_testbench(self, sanitize: bool = False) -> Path:
        """The testbench executable (what ``make csim [SANITIZE=1]`` builds)."""
        flags = [*CXXFLAGS, *(SANITIZE if sanitize else [])]
        return self._build(flags, True, "tb_sanitized" if sanitize else "tb")

    def run_testbench(self, sanitize: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the testbench on ``tb/data``; returncode 0 means every output bit matched."""
        exe = self.build_testbench(sanitize)
        return subprocess.run(
            [str(exe), str(self._folder() / "tb" / "data")],
            capture_output=True,
            text=True,
            timeout=900,
        )

    # ---- running -------------------------------------------------------------------------
    def _library(self) -> ctypes.CDLL:
        path = self.build()
        if self._lib is None or self._lib_path != path:
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:  # a damaged library in the cache: build it again
                cache.quarantine(path, str(e))
                lib = ctypes.CDLL(str(self.build()))
            lib.tapeout_run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            lib.tapeout_run.restype = ctypes.c_int
            self._lib, self._lib_path = lib, path
        return self._lib

    batched_inputs = True  # a leading axis of any size is a batch (one call per sample)

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run the C simulation, one top-function call per sample."""
        counts = {batch_size(value.type, arr) for value, arr in zip(self.graph.inputs, arrays,
                                                                strict=True)}
        if len(counts) != 1:
            raise InputError(f"inputs have different batch sizes {sorted(counts)}")
        n = counts.pop()
        outputs = [
            np.empty(_out_shape(v.type, n), dtype=v.type.np_dtype) for v in self.graph.outputs
        ]
        in_ptrs = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * len(outputs))(*[o.ctypes.data for o in outputs])
        if n and self._library().tapeout_run(n, in_ptrs, out_ptrs) != 0:
            raise BackendError("C simulation: an AXI-Stream was read empty or left unread")
        return outputs


def batch_size(t: Any, x: np.ndarray) -> int:
    """Samples in ``x`` (shapes were checked by ``Artifact.run``)."""
    return int(x.shape[0]) if len(t.shape) >= 2 else 1


def _out_shape(t: Any, n: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in t.shape)
    return (n, *shape[1:]) if len(shape) >= 2 else shape
