"""The registry of torch rules: op name -> a function computing it on torch tensors.

A leaf module: ``compiler.torchside.ops`` fills ``TORCH_OPS`` with ``@rule`` at import, and
``compiler.torchside.module`` reads it; neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compiler.ir.graph import Node

#: (op, operand index) of the constants that are trained.
TRAINABLE: dict[str, tuple[int, ...]] = {
    "nn.conv1d": (1, 2),
    "nn.conv2d": (1, 2),
    "nn.dense": (1, 2),
    "nn.batch_norm": (1, 2),
    "nn.layer_norm": (1, 2),
}
#: (op, operand index) of the weights that masks and fake quantization apply to.
WEIGHTS: dict[str, int] = {"nn.conv1d": 1, "nn.conv2d": 1, "nn.dense": 1}

TorchRule = Callable[[Node, list[Any], dict[str, Any]], Any]
TORCH_OPS: dict[str, TorchRule] = {}


def rule(*ops: str) -> Callable[[TorchRule], TorchRule]:
    def register(fn: TorchRule) -> TorchRule:
        for op in ops:
            TORCH_OPS[op] = fn
        return fn

    return register


def runtime_shape(node: Node, shape: list[int], x: Any) -> list[int]:
    """A reshape target with the batch dimension following the runtime input."""
    static = node.inputs[0].type.shape
    if shape and static and shape[0] == static[0] and x.shape[0] != static[0]:
        return [int(x.shape[0]), *shape[1:]]
    return shape
