"""Frontends: read a torch or ONNX model into the Graph IR.

``load_model`` picks the frontend from what it is given. torch and onnx are imported only
when a model of theirs arrives, so ``import compiler.frontends`` stays toolchain-free.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from compiler.errors import FrontendError
from compiler.ir import Graph


def _is_torch_model(model: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch object can only exist once torch is imported
    if torch is None:
        return False
    return isinstance(model, torch.nn.Module | torch.export.ExportedProgram)


def _is_onnx_model(model: Any) -> bool:
    cls = type(model)
    return cls.__name__ == "ModelProto" and cls.__module__.startswith("onnx")


def load_model(model: Any, example_inputs: Any = None, dynamic_shapes: Any = None) -> Graph:
    """Import ``model`` into the IR.

    Takes a ``torch.nn.Module`` (``torch.fx.GraphModule`` included) or ``ExportedProgram``
    (``example_inputs`` and ``dynamic_shapes`` go to ``torch.export``), a ``.pt2`` file
    written by ``torch.export.save``, or an ``onnx.ModelProto`` or ``.onnx`` path.
    """
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if path.endswith(".onnx"):
            return _onnx(model, dynamic_shapes)
        if path.endswith(".pt2"):
            import torch

            try:
                model = torch.export.load(path)
            except Exception as e:
                raise FrontendError(f"cannot load exported program {path}: {e}") from e
        else:
            raise FrontendError(f"{path}: unknown model file type (expected .onnx or .pt2)")
    if _is_onnx_model(model):
        return _onnx(model, dynamic_shapes)
    if _is_torch_model(model):
        from compiler.frontends.torch_export import import_torch

        return import_torch(model, example_inputs, dynamic_shapes)
    raise FrontendError(
        f"cannot import a {type(model).__module__}.{type(model).__name__}: expected a "
        "torch.nn.Module, torch.export.ExportedProgram, torch.fx.GraphModule, "
        "onnx.ModelProto, or a path to a .onnx or .pt2 file"
    )


def _onnx(model: Any, dynamic_shapes: Any) -> Graph:
    if dynamic_shapes is not None:
        raise FrontendError(
            "dynamic_shapes applies to torch models; an ONNX model carries its own symbolic dims"
        )
    from compiler.frontends.onnx import import_onnx

    return import_onnx(model)
