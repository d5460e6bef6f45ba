"""tapeout: a hardware-aware neural-network compiler.

    import compiler
    art = compiler.compile(model, target="fpga", example_inputs=(x,), calibration_data=data)
    art.run(x_np); print(art.graph); print(art.report()); art.save("build/")

Importing ``compiler`` loads no toolchain (torch, onnx, tvm, tensorrt are imported lazily).
"""

from typing import Any

from compiler.api import compile, import_model, list_targets, load
from compiler.context import PassContext
from compiler.interpreter import interpret
from compiler.quant_config import QuantConfig


def distill(*args: Any, **kwargs: Any) -> Any:
    """Knowledge distillation in torch; see ``compiler.torchside.distill.distill`` (lazy: torch)."""
    from compiler.torchside.distill import distill as _distill

    return _distill(*args, **kwargs)


__all__ = [
    "PassContext",
    "QuantConfig",
    "compile",
    "distill",
    "import_model",
    "interpret",
    "list_targets",
    "load",
]
__version__ = "0.1.0"
