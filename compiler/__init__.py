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


def search(*args: Any, **kwargs: Any) -> Any:
    """Fit a model to an FPGA budget; see ``compiler.hwsearch.fit.search`` (lazy: torch)."""
    from compiler.hwsearch.fit import search as _search

    return _search(*args, **kwargs)


def nas(*args: Any, **kwargs: Any) -> Any:
    """Hardware-aware architecture search; see ``compiler.hwsearch.nas.nas`` (lazy: torch)."""
    from compiler.hwsearch.nas import nas as _nas

    return _nas(*args, **kwargs)


__all__ = [
    "PassContext",
    "QuantConfig",
    "compile",
    "distill",
    "import_model",
    "interpret",
    "list_targets",
    "load",
    "nas",
    "search",
]
__version__ = "0.1.0"
