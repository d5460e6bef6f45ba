"""The ONNX converter table: the registry every ``onnx_ops*`` module fills, and the helpers
they share.

A leaf module. A converter takes an ``OnnxNode`` and returns one entry per ONNX output it
supports: an IR ``Value`` it emitted, or a NumPy array (data known at import). It raises
``Reject`` with a reason for a form it cannot express. ``FOLDERS`` compute a node whose
inputs are all known. The converter modules import only this module (a module that wraps an
entry of another also imports that one, first); ``onnx_ops`` loads them all, in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.frontends.onnx_importer import Known, OnnxNode, Output, Reject
from compiler.ir.types import Dim

Converter = Callable[[OnnxNode], Sequence[Output]]
Folder = Callable[[OnnxNode, list[Known | None]], Sequence[np.ndarray] | None]

CONVERTERS: dict[str, Converter] = {}
"""ONNX op type (default domain) -> converter."""
FOLDERS: dict[str, Folder] = {}
"""ONNX op type -> NumPy evaluation at import (shape arithmetic; may see symbolic dims)."""


def converts(*op_types: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn

    return register


def folds(*op_types: str) -> Callable[[Folder], Folder]:
    def register(fn: Folder) -> Folder:
        for op_type in op_types:
            FOLDERS[op_type] = fn
        return fn

    return register


# ---- helpers shared by the converter modules ------------------------------------------------
def explicit_pads(
    n: OnnxNode, sizes: Sequence[Dim], kernel: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:  # fmt: skip
    """``pads`` [begins..., ends...], with ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID resolved."""
    auto = n.attr("auto_pad", "NOTSET")
    rank = len(kernel)
    if auto in ("NOTSET", ""):
        return [int(p) for p in n.attr("pads", [0] * 2 * rank)]
    if auto == "VALID":
        return [0] * 2 * rank
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise Reject(f"auto_pad={auto!r}")
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        if not isinstance(size, int):
            raise Reject(f"auto_pad={auto} on a symbolic spatial size {size!r}")
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def spatial_attrs(n: OnnxNode, nsp: int) -> tuple[list[int], list[int]]:
    """``strides`` and ``dilations`` of a conv or pool over ``nsp`` spatial axes."""
    strides = [int(s) for s in n.attr("strides", [1] * nsp)]
    dilations = [int(d) for d in n.attr("dilations", [1] * nsp)]
    return strides, dilations


def nondefault(**attrs: Any) -> dict[str, Any]:
    """Attributes minus those at their IR default (all-ones strides, zero pads, one group)."""
    defaults = {"strides": 1, "dilations": 1, "pads": 0, "groups": 1}
    out = {}
    for key, value in attrs.items():
        default = defaults.get(key)
        if isinstance(value, list) and all(v == default for v in value) or value == default:
            continue
        out[key] = value
    return out
