"""IR graphs for the ONNX and TensorRT backend tests (no frontend, no passes), written as IR
text in the ``.ir`` files beside this module, with their weights drawn here.

``quantized_cnn.ir`` and ``quantized_mlp.ir`` follow the quantized IR form of
``passes/quantize.py`` (i8 activations with per-tensor scales, i8 per-channel weights, i32 bias
and accumulators, ``q.requantize`` with fixed-point multipliers, ``q.add`` for residuals); their
scales and multipliers are ``$`` placeholders, calibrated here on the float graph so that the
numbers are realistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compiler import numerics
from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.ir.printer import format_attr
from tests.backends.ir_text import load_graph

HERE = Path(__file__).parent


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _cnn_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv1.weight": _randn(rng, 8, 3, 3, 3, scale=0.3),
        "conv1.bias": _randn(rng, 8, scale=0.1),
        "block.conv.weight": _randn(rng, 8, 8, 3, 3, scale=0.15),
        "block.conv.bias": _randn(rng, 8, scale=0.1),
        "fc.weight": _randn(rng, 10, 8, scale=0.5),
        "fc.bias": _randn(rng, 10, scale=0.1),
    }


def float_cnn(batch: int | str = 1, seed: int = 0) -> Graph:
    """``float_cnn.ir``: conv-relu, maxpool, residual conv block, global pool, dense."""
    return load_graph(HERE / "float_cnn.ir", _cnn_weights(seed), batch=str(batch))


def float_transformer(batch: int | str = 1, seq: int | str = 8, seed: int = 0) -> Graph:
    """``float_transformer.ir``: embedding, causal self-attention, GELU MLP, residuals."""
    rng = np.random.default_rng(seed)
    d, vocab = 16, 32
    table = _randn(rng, vocab, d, scale=0.5)
    weights = {
        "wte": table,
        "ln.weight": 1 + _randn(rng, d, scale=0.1),
        "ln.bias": _randn(rng, d, scale=0.1),
        "attn.qkv.weight": _randn(rng, 3 * d, d, scale=0.3),
        "mlp.up.weight": _randn(rng, 4 * d, d, scale=0.3),
        "mlp.up.bias": _randn(rng, 4 * d, scale=0.1),
        "mlp.down.weight": _randn(rng, d, 4 * d, scale=0.2),
        "mlp.down.bias": _randn(rng, d, scale=0.1),
        "lm_head": np.ascontiguousarray(table.T),  # tied to the embedding
    }
    sizes = {"batch": str(batch), "seq": str(seq)}
    sizes.update(batch_attr=format_attr(batch), seq_attr=format_attr(seq))  # "b" quoted
    return load_graph(HERE / "float_transformer.ir", weights, **sizes)


# ---- quantization by hand ------------------------------------------------------------------
def _calibrate(g: Graph, inputs: list[np.ndarray]) -> dict[str, float]:
    """max |value| of every value over ``inputs`` (one batch)."""
    ranges: dict[str, float] = {}

    def observe(node: Any, outs: list[np.ndarray]) -> None:
        for v, o in zip(node.outputs, outs, strict=True):
            if np.issubdtype(o.dtype, np.floating):
                ranges[v.name] = max(ranges.get(v.name, 0.0), float(np.abs(o).max()))

    for x in inputs:
        interpret(g, x, observe=observe)
    return ranges


class _Quantizer:
    """The numbers of a quantized ``.ir`` template: activation scales from calibrated ranges,
    and per layer its i8 weights, i32 bias, weight scales and requantize multipliers."""

    def __init__(self, ranges: dict[str, float], power_of_two: bool = False):
        self.ranges = ranges
        self.power_of_two = power_of_two
        self.values: dict[str, Any] = {}  # the template's placeholders
        self.constants: dict[str, np.ndarray] = {}

    def scale(self, name: str) -> float:
        s = max(self.ranges[name], 1e-6) / 127.0
        s = float(2.0 ** np.ceil(np.log2(s))) if self.power_of_two else s
        self.values[f"{name}_scale"] = s
        return s

    def layer(self, name: str, sx: float, w: np.ndarray, b: np.ndarray) -> None:
        """Integer conv/dense ``name`` on an input of scale ``sx``, requantized to the
        calibrated scale of ``name``."""
        flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        sw = np.maximum(flat, 1e-8) / 127.0
        self.constants[f"{name}.weight"] = numerics.quantize(w, sw, 0, "i8", axis=0)
        acc_scale = sx * sw.astype(np.float64)
        self.constants[f"{name}.bias"] = np.round(b / acc_scale).astype(np.int32)
        so = self.scale(name)
        mult, shift = zip(*(numerics.quantize_multiplier(s / so) for s in acc_scale), strict=True)
        self.values[f"{name}_wscale"] = [float(s) for s in sw]
        self.values[f"{name}_multiplier"] = list(mult)
        self.values[f"{name}_shift"] = list(shift)

    def add(self, name: str, sa: float, sb: float, shift: int = 20) -> None:
        so = self.scale(name)
        self.values[f"{name}_a_multiplier"] = round(sa / so * 2**shift)
        self.values[f"{name}_b_multiplier"] = round(sb / so * 2**shift)


def quantized_cnn(seed: int = 0, power_of_two: bool = False) -> tuple[Graph, np.ndarray]:
    """``quantized_cnn.ir``: ``float_cnn`` in int8 (returns the graph and a calibration
    input)."""
    rng = np.random.default_rng(seed + 1)
    x_cal = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    ranges = _calibrate(float_cnn(seed=seed), [x_cal])
    ranges["x"] = float(np.abs(x_cal).max())
    ranges["c2_pre"] = ranges["c2"]
    w = _cnn_weights(seed)
    qz = _Quantizer(ranges, power_of_two)
    sx = qz.scale("x")
    qz.layer("c1", sx, w["conv1.weight"], w["conv1.bias"])
    s1 = qz.values["c1_scale"]
    qz.layer("c2_pre", s1, w["block.conv.weight"], w["block.conv.bias"])
    qz.add("c2", qz.values["c2_pre_scale"], s1)
    qz.layer("logits", qz.values["c2_scale"], w["fc.weight"], w["fc.bias"])
    return load_graph(HERE / "quantized_cnn.ir", qz.constants, **qz.values), x_cal


def quantized_mlp(seed: int = 0, zero_point: int = 0) -> tuple[Graph, np.ndarray]:
    """``quantized_mlp.ir``: two int8 dense layers, relu6 as the first requantize's clip,
    a float softmax; ``zero_point`` makes the input asymmetric (u8)."""
    rng = np.random.default_rng(seed)
    x_cal = np.abs(rng.standard_normal((4, 16))).astype(np.float32)
    w1, b1 = _randn(rng, 32, 16, scale=0.3), _randn(rng, 32, scale=0.1)
    w2, b2 = _randn(rng, 8, 32, scale=0.3), _randn(rng, 8, scale=0.1)
    qz = _Quantizer({"h": 6.0, "o": 4.0})
    sx = float(x_cal.max()) / (255.0 if zero_point else 127.0)
    qz.values.update(x_dtype="u8" if zero_point else "i8", x_scale=sx, x_zp=zero_point)
    qz.layer("h", sx, w1, b1)
    qz.values["h_six"] = min(int(round(6.0 / qz.values["h_scale"])), 127)
    qz.layer("o", qz.values["h_scale"], w2, b2)
    return load_graph(HERE / "quantized_mlp.ir", qz.constants, **qz.values), x_cal


# ---- comparing an exported model with the interpreter --------------------------------------
def expose_all(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every typed intermediate tensor added as a graph output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for info in model.graph.value_info:
        if info.name not in have:
            out.graph.output.append(info)
    return out


def stepwise_lsb(
    g: Graph, model: onnx.ModelProto, inputs: tuple, optimize: bool = False
) -> dict[str, int]:
    """For every quantized value: how many LSBs onnxruntime differs from the interpreter
    when the interpreter's node is fed onnxruntime's own operands (so that one rounding
    difference upstream is not counted again downstream)."""
    from backends.onnx import ort_session
    from compiler.interpreter import IMPLS, Context

    full = expose_all(model)
    session = ort_session(full, optimize=optimize)
    names = [o.name for o in full.graph.output]
    feeds = {v.name: x for v, x in zip(g.inputs, inputs, strict=True)}
    ort = dict(zip(names, session.run(None, feeds), strict=True))
    local: dict[str, np.ndarray] = {v.name: x for v, x in zip(g.inputs, inputs, strict=True)}
    ctx = Context(g)
    diffs: dict[str, int] = {}
    for node in g.nodes:
        args: list[np.ndarray] = []
        for v in node.inputs:
            theirs = ort.get(v.name)
            same = theirs is not None and theirs.dtype == v.type.np_dtype
            args.append(theirs if theirs is not None and same else local[v.name])
        outs = IMPLS[node.op](ctx, node, args)
        for v, o in zip(node.outputs, outs, strict=True):
            local[v.name] = np.asarray(o).astype(v.type.np_dtype)
            theirs = ort.get(v.name)
            if v.type.quant is not None and theirs is not None and theirs.dtype == o.dtype:
                diffs[v.name] = int(np.abs(o.astype(np.int64) - theirs.astype(np.int64)).max())
    return diffs
