"""``tapeout doctor``: which toolchains are here, what each enables, how to get the rest.

Every probe is cheap and side-effect free: an import (with its version), ``shutil.which``,
or ``nvidia-smi -L``. Nothing is installed or built.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Probe:
    """One tool: how to find it, what it enables, how to install it."""

    name: str
    enables: str
    install: str
    find: Callable[[], str | None]  # the version or path when present, else None


def _module(name: str, attr: str = "__version__") -> Callable[[], str | None]:
    def find() -> str | None:
        try:
            module = importlib.import_module(name)
        except Exception:  # a broken install is as good as none; doctor must not crash
            return None
        return str(getattr(module, attr, "present"))

    return find


def _tvm_ffi() -> str | None:
    version = _module("tvm")()
    if version is None:
        return None
    ffi = _module("tvm_ffi")()
    return f"{version} (tvm-ffi {ffi or 'bundled'})"


def _program(*names: str) -> Callable[[], str | None]:
    return lambda: next((p for n in names if (p := shutil.which(n))), None)


def _gpu() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()
    return first[0] if out.returncode == 0 and first else None


PROBES: tuple[Probe, ...] = (
    Probe("onnx", "ONNX import and export", "pip install onnx", _module("onnx")),
    Probe("onnxruntime", "target onnx, fast calibration statistics",
          "pip install onnxruntime", _module("onnxruntime")),
    Probe("torch", "torch.nn.Module input (torch.export)", "pip install torch", _module("torch")),
    Probe("tvm", "targets cpu, x86-64-*, znver3, aarch64, asic (host code)",
          'pip install -e ".[tvm]"', _tvm_ffi),
    Probe("g++", "FPGA C simulation (tapeout run on an hls artifact), ASIC simulator",
          "apt-get install g++", _program("g++", "c++")),
    Probe("aarch64-linux-gnu-gcc", "aarch64 cross-compiled .so (else LLVM objects + build.sh)",
          "apt-get install gcc-aarch64-linux-gnu", _program("aarch64-linux-gnu-gcc")),
    Probe("vitis_hls", "FPGA synthesis of the written HLS project (csynth, cosim)",
          "install AMD Vitis HLS and source its settings64.sh", _program("vitis_hls")),
    Probe("vivado", "FPGA implementation and bitstream", "install AMD Vivado",
          _program("vivado")),
    Probe("tensorrt", "GPU engines (model.engine); without it a deployable bundle",
          'pip install -e ".[tensorrt]" on a machine with an NVIDIA GPU', _module("tensorrt")),
    Probe("cuda", "GPU runtime for TensorRT engines", "install the NVIDIA CUDA toolkit",
          _module("cuda", "__version__")),
    Probe("gpu", "running TensorRT engines", "an NVIDIA GPU and driver (nvidia-smi)", _gpu),
    Probe("chromium", "tapeout view's browser test (the page itself needs no browser)",
          "apt-get install chromium", _program("chromium", "chromium-browser")),
)  # fmt: skip


def doctor() -> list[dict[str, Any]]:
    """One row per toolchain: present, version or path, what it enables, install advice."""
    rows = []
    for probe in PROBES:
        found = probe.find()
        row = {k: v for k, v in asdict(probe).items() if k != "find"}
        rows.append({**row, "present": found is not None, "found": found or ""})
    return rows


def format_doctor(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        mark = "ok " if r["present"] else "-- "
        lines.append(f"{mark}{r['name']:<22} {r['found'] or 'missing'}")
        lines.append(f"     enables: {r['enables']}")
        if not r["present"]:
            lines.append(f"     install: {r['install']}")
    return "\n".join(lines)
