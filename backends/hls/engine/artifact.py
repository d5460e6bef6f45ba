"""The engine artifact: C simulation of the engine running the compiled schedule.

``run(*inputs)`` builds ``firmware/engine_top.cpp`` with ``tb/engine_host.cpp`` into a shared
library (optimized: ``ENGINE_CXXFLAGS``, cached like the dataflow design's) and calls it
through ctypes once per sample. The host side is this class, as on a board it would be the
driver (``host/driver.py``): it quantizes float inputs exactly as ``q.quantize`` does, writes
them into the activation arena in the engine's memory order, and reads the outputs back
(in IR order, through a float table where the graph ends in float math on an i8 tensor).
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from backends.hls.artifact import HlsArtifact, batch_size
from compiler import numerics
from compiler.errors import BackendError, InputError

#: -O3 -march=native lets g++ vectorize the MAC loop's int8 dot products with the host's widest
#: SIMD (integer code: the results do not depend on it): ResNet-50 in seconds per image.
ENGINE_CXXFLAGS = ["-O3", "-march=native", "-std=c++14", "-Wall", "-Werror", "-ffp-contract=off"]

_STATUS = {
    1: "unknown op",
    2: "input buffer",
    3: "weight buffer",
    4: "accumulator buffer",
    5: "parameter registers",
}


def to_memory(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An IR-order sample as the engine stores it (NHWC for 4-D)."""
    x = np.asarray(x).reshape(shape)
    if len(shape) == 4:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x).reshape(-1)


def from_memory(mem: np.ndarray, shape: tuple[int, ...], perm: np.ndarray | None) -> np.ndarray:
    """Engine memory back to IR order (``perm[m]``: IR index at memory position ``m``)."""
    if perm is None:
        return mem.reshape(shape)
    out = np.empty_like(mem)
    out[perm] = mem
    return out.reshape(shape)


class EngineArtifact(HlsArtifact):
    """A compiled engine schedule that runs in C simulation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._images: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._io: dict[str, Any] | None = None

    @property
    def top(self) -> str:
        return "engine_top"

    def sources(self, testbench: bool = False) -> list[Path]:
        root = self._folder()
        host = root / "tb" / ("tb_engine.cpp" if testbench else "engine_host.cpp")
        return [root / "firmware" / "engine_top.cpp", host]

    def build(self, sanitize: bool = False) -> Path:
        from backends.hls.artifact import SANITIZE

        flags = [*ENGINE_CXXFLAGS, *(SANITIZE if sanitize else []), "-fPIC", "-shared"]
        return self._build(flags, False, "libengine.so")

    def build_testbench(self, sanitize: bool = False) -> Path:
        from backends.hls.artifact import SANITIZE

        flags = [*ENGINE_CXXFLAGS, *(SANITIZE if sanitize else [])]
        return self._build(flags, True, "tb_engine_san" if sanitize else "tb_engine")

    def run_testbench(self, sanitize: bool = False) -> Any:
        import subprocess

        exe = self.build_testbench(sanitize)
        return subprocess.run(
            [str(exe), str(self._folder())], capture_output=True, text=True, timeout=900
        )

    # ---- running -------------------------------------------------------------------------
    def _load(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
        if self._images is None or self._io is None:
            ddr = self._folder() / "ddr"
            sched = np.fromfile(ddr / "schedule.bin", dtype=np.int32)
            wgt = np.fromfile(ddr / "weights.bin", dtype=np.int8)
            par = np.fromfile(ddr / "params.bin", dtype=np.int32)
            self._images = (sched, wgt, par)
            self._io = json.loads((ddr / "io.json").read_text())
            with np.load(ddr / "io.npz") as npz:
                self._io["arrays"] = {k: npz[k] for k in npz.files}
        return self._images, self._io

    def _engine(self) -> ctypes.CDLL:
        path = self.build()
        if self._lib is None or self._lib_path != path:
            lib = ctypes.CDLL(str(path))
            ptr, count = ctypes.c_void_p, ctypes.c_int
            lib.tapeout_engine_run.argtypes = [ptr, count, ptr, ptr, ptr]
            lib.tapeout_engine_run.restype = ctypes.c_int
            self._lib, self._lib_path = lib, path
        return self._lib

    def run_arena(self, arena: np.ndarray) -> None:
        """Run the schedule once over ``arena`` (int8, the inputs already written)."""
        (sched, wgt, par), io = self._load()
        status = self._engine().tapeout_engine_run(
            sched.ctypes.data,
            int(io["layers"]),
            wgt.ctypes.data,
            par.ctypes.data,
            arena.ctypes.data,
        )
        if status != 0:
            layer = (
                io["layer_names"][status >> 8] if (status >> 8) < len(io["layer_names"]) else "?"
            )
            raise BackendError(
                f"engine C simulation stopped at layer {layer}: "
                f"{_STATUS.get(status & 255, 'status ' + str(status & 255))} too small"
            )

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run the C simulation (inputs checked by ``Artifact.run``), one run per sample."""
        _, io = self._load()
        counts = {batch_size(v.type, a) for v, a in zip(self.graph.inputs, arrays, strict=True)}
        if len(counts) != 1:
            raise InputError(f"inputs have different batch sizes {sorted(counts)}")
        n = counts.pop()
        arena = np.zeros(int(io["arena"]), dtype=np.int8)
        results: list[list[np.ndarray]] = [[] for _ in io["outputs"]]
        for s in range(n):
            for spec, arr in zip(io["inputs"], arrays, strict=True):
                shape = tuple(spec["shape"])
                sample = arr[s : s + 1] if len(shape) >= 2 else arr
                q = (
                    sample
                    if spec["scale"] is None
                    else numerics.quantize(sample, float(spec["scale"]), spec["zero_point"], "i8")
                )
                mem = to_memory(q, shape)
                arena[spec["offset"] : spec["offset"] + mem.size] = mem
            self.run_arena(arena)
            for i, spec in enumerate(io["outputs"]):
                results[i].append(self._output(arena, spec, io["arrays"]))
        return [np.concatenate(r) if n else np.empty((0,)) for r in results]

    @staticmethod
    def _output(
        arena: np.ndarray, spec: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> np.ndarray:
        shape = tuple(spec["shape"])
        size = int(np.prod(shape))
        mem = arena[spec["offset"] : spec["offset"] + size].copy()
        ir = from_memory(mem, shape, arrays.get(f"perm_{spec['index']}"))
        table = arrays.get(f"table_{spec['index']}")
        return ir if table is None else table[ir.astype(np.int64) + 128]
