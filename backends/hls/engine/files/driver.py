"""Host driver of the tapeout engine on a board: PYNQ (Zynq, Kria) or XRT (Alveo).

Copied into every engine artifact as ``host/driver.py``. It needs only NumPy to prepare
buffers, and ``pynq`` (which also drives XRT on Alveo cards) to talk to the hardware::

    from driver import EngineDriver
    engine = EngineDriver("path/to/artifact", bitstream="engine.xclbin")  # or a .bit overlay
    y = engine.run(x)               # x: float32 (or int8) in the model's NCHW order

What it does, in the order the hardware needs it: allocate four physically contiguous
buffers (schedule, weights, parameters, activation arena), copy the DDR images the compiler
wrote (``ddr/*.bin``) into the first three once, and for every input quantize it exactly as
the model's ``q.quantize`` does, write it at its arena offset in NHWC order, start the
``tapeout_engine`` kernel with the four buffer addresses and the layer count, wait, check its
return value, and read the outputs back (``ddr/io.json`` says where they are).

This file has not been run against a board by tapeout's tests. Its host-side half
(``prepare``, ``finish``) is: a test runs it around the engine's C simulation
(``EngineArtifact.run_arena``) and compares with ``compiler.load(path).run``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


class EngineDriver:
    """Loads an engine artifact's DDR images and runs samples on the board."""

    def __init__(self, folder: str | Path, bitstream: str | Path | None = None) -> None:
        self.folder = Path(folder)
        ddr = self.folder / "ddr"
        self.io = json.loads((ddr / "io.json").read_text())
        with np.load(ddr / "io.npz") as npz:
            self.arrays = {k: npz[k] for k in npz.files}
        self.images: dict[str, np.ndarray] = {
            "sched": np.fromfile(ddr / "schedule.bin", dtype=np.int32),
            "wgt": np.fromfile(ddr / "weights.bin", dtype=np.int8),
            "par": np.fromfile(ddr / "params.bin", dtype=np.int32),
        }
        self.bitstream = bitstream
        self._kernel: Any = None
        self._buffers: dict[str, Any] = {}

    # ---- host-side conversions (no hardware) ----------------------------------------------
    def prepare(self, *inputs: np.ndarray) -> np.ndarray:
        """The activation arena with ``inputs`` (one sample each) quantized and placed."""
        arena = np.zeros(int(self.io["arena"]), dtype=np.int8)
        for spec, x in zip(self.io["inputs"], inputs, strict=True):
            shape = tuple(spec["shape"])
            q = np.asarray(x).reshape(shape)
            if spec["scale"] is not None:  # numerics.quantize: rint half to even, saturate
                scaled = q.astype(np.float32) / np.float32(spec["scale"])
                q = np.clip(np.rint(scaled).astype(np.int64) + spec["zero_point"], -128, 127)
            q = q.astype(np.int8)
            if len(shape) == 4:
                q = q.transpose(0, 2, 3, 1)
            flat = np.ascontiguousarray(q).reshape(-1)
            arena[spec["offset"] : spec["offset"] + flat.size] = flat
        return arena

    def finish(self, arena: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs read back from ``arena`` after a run."""
        outs = []
        for spec in self.io["outputs"]:
            shape = tuple(spec["shape"])
            size = int(np.prod(shape))
            mem = arena[spec["offset"] : spec["offset"] + size]
            perm = self.arrays.get(f"perm_{spec['index']}")
            ir = mem.copy() if perm is None else np.empty_like(mem)
            if perm is not None:
                ir[perm] = mem
            table = self.arrays.get(f"table_{spec['index']}")
            ir = ir.reshape(shape)
            outs.append(ir if table is None else table[ir.astype(np.int64) + 128])
        return outs

    # ---- the board ---------------------------------------------------------------------------
    def _open(self) -> None:
        if self._kernel is not None:
            return
        try:
            import pynq
        except ImportError as err:
            raise RuntimeError(
                "the board driver needs pynq (pip install pynq) on the board"
            ) from err
        if self.bitstream is None:
            raise RuntimeError("pass bitstream= (the .bit/.xclbin built from run_hls.tcl)")
        overlay = pynq.Overlay(str(self.bitstream))
        self._kernel = overlay.tapeout_engine_1
        for name, image in self.images.items():
            buf = pynq.allocate(image.shape, dtype=image.dtype)
            buf[:] = image
            buf.sync_to_device()
            self._buffers[name] = buf
        self._buffers["act"] = pynq.allocate((int(self.io["arena"]),), dtype=np.int8)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """One sample through the engine on the board."""
        self._open()
        act = self._buffers["act"]
        act[:] = self.prepare(*inputs)
        act.sync_to_device()
        b = self._buffers
        status = self._kernel.call(b["sched"], int(self.io["layers"]), b["wgt"], b["par"], act)
        if status:
            raise RuntimeError(f"engine returned status {status & 255} at layer {status >> 8}")
        act.sync_from_device()
        return self.finish(np.asarray(act))


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    driver = EngineDriver(folder, sys.argv[2] if len(sys.argv) > 2 else None)
    print(
        f"{driver.io['layers']} layers, arena {driver.io['arena']} bytes; inputs:",
        [s["shape"] for s in driver.io["inputs"]],
    )
