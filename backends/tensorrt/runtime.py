"""Running a TensorRT engine: TensorRT's runtime, with torch CUDA tensors as the buffers.

TensorRT 10 execution: ``context.set_input_shape`` for each input (dynamic dimensions),
``context.set_tensor_address`` for every input and output buffer, ``execute_async_v3`` on a
CUDA stream. torch owns the device memory, so no pycuda or cuda-python is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import BackendError, ToolchainUnavailable

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "pip install 'tapeout[tensorrt]' (TensorRT 10) on a machine with an NVIDIA GPU and driver, "
    "or compile with engine=False (CLI --no-engine) to write the deployable bundle (ONNX, "
    "build_engine.py, trtexec command) without building the engine"
)


def missing_toolchain() -> tuple[str, str] | None:
    """(what is missing, why) for building or running engines here, or None if all is there."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a broken CUDA library raising anything else
        return "tensorrt", f"import tensorrt failed: {type(e).__name__}: {e}"
    try:
        import torch
    except Exception as e:
        return "torch (with CUDA, for TensorRT's buffers)", f"import torch failed: {e}"
    if not torch.cuda.is_available():
        return "a CUDA GPU (for TensorRT)", "torch.cuda.is_available() is False"
    return None


def require_toolchain() -> None:
    """Raise ToolchainUnavailable naming what is missing (TensorRT, torch, or a GPU)."""
    missing = missing_toolchain()
    if missing is not None:
        raise ToolchainUnavailable(missing[0], INSTALL_HINT, missing[1])


class EngineRunner:
    """A deserialized engine with one execution context; runs NumPy arrays or torch tensors."""

    def __init__(self, engine_path: Path):
        require_toolchain()
        import tensorrt as trt

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(
                f"TensorRT could not load {engine_path}: an engine runs only with the "
                "TensorRT version and GPU it was built for (rebuild with build_engine.py)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]

    def _torch_dtype(self, name: str) -> Any:
        import torch

        np_dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
        return torch.from_numpy(np.zeros(0, np_dtype)).dtype

    def bind(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Give the context its input tensors (moved to the GPU, cast to the engine's
        dtypes) and fresh output tensors, which it returns; ``execute`` then runs it."""
        import torch

        self._inputs = []  # keep the device copies alive while the context points at them
        for name in self.inputs:
            tensor = feeds[name].to("cuda", self._torch_dtype(name)).contiguous()
            self._inputs.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, outs[name].data_ptr())
        return outs

    def execute(self) -> None:
        """Enqueue one inference on torch's current CUDA stream (asynchronously)."""
        import torch

        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def run_torch(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run on torch tensors; returns the outputs as CUDA tensors."""
        import torch

        outs = self.bind(feeds)
        self.execute()
        torch.cuda.current_stream().synchronize()
        return outs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
        return {k: v.cpu().numpy() for k, v in self.run_torch(tensors).items()}
