"""The torch rules of ``compiler.torchside.module``: one function per IR op, as the interpreter has.

Each rule takes the node, its operand tensors and its attributes (defaults filled in) and
returns the output tensor(s), computing what ``compiler.interpreter`` computes for float
graphs, differentiably. torch is imported on first use; the rules register at import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from compiler.ir.graph import Node
from compiler.ir.ops_nn import spatial_params
from compiler.torchside.registry import rule, runtime_shape


@functools.cache
def _torch() -> Any:
    import torch

    return torch


def _fn() -> Any:
    return _torch().nn.functional


def _activation(y: Any, act: str, args: list[float]) -> Any:
    F = _fn()
    table: dict[str, Callable[[Any], Any]] = {
        "none": lambda v: v,
        "relu": F.relu,
        "relu6": lambda v: v.clamp(0, 6),
        "clip": lambda v: v.clamp(*args),
        "leaky_relu": lambda v: F.leaky_relu(v, *args),
        "sigmoid": _torch().sigmoid,
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
        "hardswish": F.hardswish,
        "tanh": _torch().tanh,
    }
    return table[act](y)


def _finish(y: Any, xs: list[Any], a: dict[str, Any]) -> Any:
    if len(xs) > 3:
        y = y + xs[3]
    return _activation(y, a.get("act", "none"), list(a.get("act_args") or []))


def _channels_first(x: Any, a: dict[str, Any]) -> Any:
    return x.movedim(-1, 1) if a.get("layout", "NCHW") == "NHWC" else x


def _channels_back(y: Any, a: dict[str, Any]) -> Any:
    return y.movedim(1, -1) if a.get("layout", "NCHW") == "NHWC" else y


def _pad_pairs(begin: list[int], end: list[int]) -> list[int]:
    """IR pads (all begins, then all ends) as ``F.pad``'s last-dimension-first pairs."""
    return [p for i in reversed(range(len(begin))) for p in (begin[i], end[i])]


@rule("nn.conv1d", "nn.conv2d")
def _conv(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    F = _fn()
    x = _channels_first(xs[0], a)
    n = x.dim() - 2
    strides, pads, dil = spatial_params(a, n)
    begin, end = pads[:n], pads[n:]
    if begin != end:
        x, begin = F.pad(x, _pad_pairs(begin, end)), [0] * n
    conv = F.conv1d if n == 1 else F.conv2d
    bias = xs[2] if len(xs) > 2 else None
    y = conv(x, xs[1], bias, strides, begin, dil, a.get("groups") or 1)
    return _finish(_channels_back(y, a), xs, a)


@rule("nn.dense")
def _dense(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return _finish(_fn().linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None), xs, a)


@rule("nn.batch_norm")
def _batch_norm(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x, scale, bias, mean, var = xs
    axis = x.dim() - 1 if a.get("layout", "NCHW") == "NHWC" else 1
    shape = [1] * x.dim()
    shape[axis] = -1
    inv = scale / _torch().sqrt(var + a["eps"])
    return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)


@rule("nn.layer_norm")
def _layer_norm(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x = xs[0]
    axis = a["axis"] % x.dim()
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / _torch().sqrt(var + a["eps"])
    if len(xs) > 1:
        y = y * xs[1]
    return y + xs[2] if len(xs) > 2 else y


@rule("nn.max_pool2d", "nn.avg_pool2d")
def _pool(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    F = _fn()
    x = _channels_first(xs[0], a)
    kernel = list(a["kernel"])
    strides, pads, dil = spatial_params({**a, "strides": a.get("strides") or kernel}, 2)
    begin, end = pads[:2], pads[2:]
    symmetric = begin == end and all(p <= k // 2 for p, k in zip(begin, kernel, strict=True))
    if node.op == "nn.max_pool2d":
        if not symmetric:
            x, begin = F.pad(x, _pad_pairs(begin, end), value=-math.inf), [0, 0]
        y = F.max_pool2d(x, kernel, strides, begin, dil, a.get("ceil_mode", False))
    else:
        include = a.get("count_include_pad", True)
        if not symmetric:
            x, begin = F.pad(x, _pad_pairs(begin, end)), [0, 0]
        y = F.avg_pool2d(x, kernel, strides, begin, a.get("ceil_mode", False), include)
    return _channels_back(y, a)


@rule("nn.global_avg_pool", "nn.global_max_pool")
def _global_pool(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x = _channels_first(xs[0], a)
    dims = tuple(range(2, x.dim()))
    y = x.mean(dim=dims, keepdim=True) if node.op.endswith("avg_pool") else x.amax(dims, True)
    return _channels_back(y, a)


@rule("nn.adaptive_avg_pool2d")
def _adaptive(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return _fn().adaptive_avg_pool2d(xs[0], list(a["output_size"]))


@rule("tensor.reshape")
def _reshape(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return xs[0].reshape(runtime_shape(node, [int(d) for d in a["shape"]], xs[0]))


@rule("tensor.flatten")
def _flatten(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x = xs[0]
    axis = a["axis"] % (x.dim() + 1) if a["axis"] < 0 else a["axis"]
    return x.reshape(math.prod(x.shape[:axis]), -1)


@rule("tensor.squeeze")
def _squeeze(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return xs[0].squeeze(tuple(int(d) % xs[0].dim() for d in a["axes"]))


@rule("tensor.unsqueeze")
def _unsqueeze(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x = xs[0]
    rank = x.dim() + len(a["axes"])
    for axis in sorted(int(d) % rank for d in a["axes"]):
        x = x.unsqueeze(axis)
    return x


@rule("tensor.transpose")
def _transpose(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return xs[0].permute(*a["perm"])


@rule("tensor.concat")
def _concat(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return _torch().cat(xs, dim=a["axis"])


@rule("tensor.identity", "nn.dropout")
def _identity(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return xs[0]


@rule("nn.softmax", "nn.log_softmax")
def _softmax(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    fn = _fn().softmax if node.op == "nn.softmax" else _fn().log_softmax
    return fn(xs[0], dim=a["axis"])


@rule("nn.matmul")
def _matmul(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return _torch().matmul(xs[0], xs[1])


@rule("math.reduce_mean", "math.reduce_sum", "math.reduce_max", "math.reduce_min")
def _reduce(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    x = xs[0]
    dims = tuple(range(x.dim())) if a["axes"] is None else tuple(a["axes"])
    kind = node.op.rsplit("_", 1)[1]
    fns = {"mean": x.mean, "sum": x.sum, "max": x.amax, "min": x.amin}
    return fns[kind](dim=dims, keepdim=bool(a["keepdims"]))


_BINARY: dict[str, str] = {
    "math.add": "add",
    "math.sub": "sub",
    "math.mul": "mul",
    "math.div": "div",
    "math.maximum": "maximum",
    "math.minimum": "minimum",
    "math.pow": "pow",
}


@rule(*_BINARY)
def _binary(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return getattr(_torch(), _BINARY[node.op])(xs[0], xs[1])


_UNARY: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "math.neg": lambda x, a: -x,
    "math.abs": lambda x, a: x.abs(),
    "math.exp": lambda x, a: x.exp(),
    "math.log": lambda x, a: x.log(),
    "math.sqrt": lambda x, a: x.sqrt(),
    "math.rsqrt": lambda x, a: x.rsqrt(),
    "math.reciprocal": lambda x, a: x.reciprocal(),
    "math.erf": lambda x, a: x.erf(),
    "math.tanh": lambda x, a: x.tanh(),
    "math.sin": lambda x, a: x.sin(),
    "math.cos": lambda x, a: x.cos(),
    "nn.relu": lambda x, a: _fn().relu(x),
    "nn.relu6": lambda x, a: x.clamp(0, 6),
    "nn.sigmoid": lambda x, a: x.sigmoid(),
    "nn.silu": lambda x, a: _fn().silu(x),
    "nn.hardswish": lambda x, a: _fn().hardswish(x),
    "nn.hardsigmoid": lambda x, a: (x * a["alpha"] + a["beta"]).clamp(0, 1),
    "nn.leaky_relu": lambda x, a: _fn().leaky_relu(x, a["alpha"]),
    "nn.gelu": lambda x, a: _fn().gelu(x, approximate=a["approximate"]),
    "nn.clip": lambda x, a: x.clamp(a["min"], a["max"]),
}


@rule(*_UNARY)
def _unary(node: Node, xs: list[Any], a: dict[str, Any]) -> Any:
    return _UNARY[node.op](xs[0], a)
