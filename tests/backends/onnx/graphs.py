"""Hand-built IR graphs for the ONNX and TensorRT backend tests (no frontend, no passes).

``quantized_cnn`` and ``quantized_mlp`` follow the quantized IR form of ``passes/quantize.py``
(i8 activations with per-tensor scales, i8 per-channel weights, i32 bias and accumulators,
``q.requantize`` with fixed-point multipliers, ``q.add`` for residuals), calibrated here on
the float graph so that the numbers are realistic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from compiler import numerics
from compiler.interpreter import interpret
from compiler.ir import Graph, QuantParams, TensorType, Value, verify


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def float_cnn(batch: int | str = 1, seed: int = 0) -> Graph:
    """conv-relu, maxpool, residual conv block, global pool, dense: a ResNet in miniature."""
    rng = np.random.default_rng(seed)
    g = Graph("float_cnn")
    x = g.add_input("x", TensorType("f32", (batch, 3, 16, 16)))
    w1 = g.add_const("conv1.weight", _randn(rng, 8, 3, 3, 3, scale=0.3))
    b1 = g.add_const("conv1.bias", _randn(rng, 8, scale=0.1))
    c1 = g.add_node(
        "nn.conv2d", [x, w1, b1], {"pads": [1, 1, 1, 1], "act": "relu"}, names=["c1"], loc="conv1"
    ).output
    p1 = g.add_node("nn.max_pool2d", [c1], {"kernel": [2, 2]}, names=["p1"], loc="pool").output
    w2 = g.add_const("block.conv.weight", _randn(rng, 8, 8, 3, 3, scale=0.15))
    b2 = g.add_const("block.conv.bias", _randn(rng, 8, scale=0.1))
    c2 = g.add_node(
        "nn.conv2d",
        [p1, w2, b2, p1],
        {"pads": [1, 1, 1, 1], "act": "relu"},
        names=["c2"],
        loc="block.conv",
    ).output
    gp = g.add_node("nn.global_avg_pool", [c2], names=["gap"], loc="avgpool").output
    f = g.add_node("tensor.flatten", [gp], {"axis": 1}, names=["flat"]).output
    w3 = g.add_const("fc.weight", _randn(rng, 10, 8, scale=0.5))
    b3 = g.add_const("fc.bias", _randn(rng, 10, scale=0.1))
    y = g.add_node("nn.dense", [f, w3, b3], names=["logits"], loc="fc").output
    g.outputs = [y]
    verify(g)
    return g


def float_transformer(batch: int | str = 1, seq: int | str = 8, seed: int = 0) -> Graph:
    """Embedding, pre-norm causal self-attention, GELU MLP, residuals: a GPT block."""
    rng = np.random.default_rng(seed)
    d, vocab = 16, 32
    g = Graph("float_transformer")
    ids = g.add_input("ids", TensorType("i64", (batch, seq)))
    table = _randn(rng, vocab, d, scale=0.5)
    emb = g.add_const("wte", table)
    h = g.add_node("tensor.gather", [emb, ids], {"axis": 0}, names=["h0"], loc="wte").output
    gamma = g.add_const("ln.weight", 1 + _randn(rng, d, scale=0.1))
    beta = g.add_const("ln.bias", _randn(rng, d, scale=0.1))
    n = g.add_node("nn.layer_norm", [h, gamma, beta], {"eps": 1e-5}, names=["ln"]).output
    qkv_w = g.add_const("attn.qkv.weight", _randn(rng, 3 * d, d, scale=0.3))
    qkv = g.add_node("nn.dense", [n, qkv_w], names=["qkv"], loc="attn.qkv").output
    q, k, v = g.add_node(
        "tensor.split", [qkv], {"axis": 2, "sizes": [d, d, d]}, names=["q", "k", "v"]
    ).outputs
    heads = []
    for name, t in (("qh", q), ("kh", k), ("vh", v)):
        r = g.add_node("tensor.reshape", [t], {"shape": [batch, seq, 2, d // 2]}).output
        heads.append(
            g.add_node("tensor.transpose", [r], {"perm": [0, 2, 1, 3]}, names=[name]).output
        )
    a = g.add_node("nn.attention", heads, {"causal": True}, names=["attn"]).output
    a = g.add_node("tensor.transpose", [a], {"perm": [0, 2, 1, 3]}).output
    a = g.add_node("tensor.reshape", [a], {"shape": [batch, seq, d]}).output
    h1 = g.add_node("math.add", [h, a], names=["h1"]).output
    w_up = g.add_const("mlp.up.weight", _randn(rng, 4 * d, d, scale=0.3))
    b_up = g.add_const("mlp.up.bias", _randn(rng, 4 * d, scale=0.1))
    up = g.add_node("nn.dense", [h1, w_up, b_up], {"act": "gelu"}, names=["up"]).output
    w_dn = g.add_const("mlp.down.weight", _randn(rng, d, 4 * d, scale=0.2))
    b_dn = g.add_const("mlp.down.bias", _randn(rng, d, scale=0.1))
    out = g.add_node("nn.dense", [up, w_dn, b_dn, h1], names=["h2"], loc="mlp.down").output
    head = g.add_const("lm_head", np.ascontiguousarray(table.T))
    logits = g.add_node("nn.matmul", [out, head], names=["logits"]).output
    g.outputs = [logits]
    verify(g)
    return g


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


def _act_type(shape: tuple, scale: float, dtype: str = "i8", zp: int = 0) -> TensorType:
    return TensorType(dtype, shape, QuantParams.per_tensor(scale, zp))


class _Quantizer:
    """Builds the quantized graph node by node, with scales from the float graph."""

    def __init__(self, name: str, ranges: dict[str, float], power_of_two: bool = False):
        self.g = Graph(name)
        self.ranges = ranges
        self.power_of_two = power_of_two

    def scale(self, name: str) -> float:
        s = max(self.ranges[name], 1e-6) / 127.0
        return float(2.0 ** np.ceil(np.log2(s))) if self.power_of_two else s

    def weight(self, name: str, w: np.ndarray) -> tuple[Value, np.ndarray]:
        flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        sw = np.maximum(flat, 1e-8) / 127.0
        q = numerics.quantize(w, sw, 0, "i8", axis=0)
        t = TensorType("i8", w.shape, QuantParams.per_channel(sw, 0))
        return self.g.add_const(name, q, t), sw.astype(np.float64)

    def compute(
        self,
        op: str,
        xq: Value,
        w: np.ndarray,
        b: np.ndarray,
        attrs: dict,
        out_name: str,
        residual: Value | None = None,
    ) -> Value:
        """Integer conv/dense + requantize to the calibrated scale of ``out_name``."""
        g = self.g
        wq, sw = self.weight(f"{out_name}.weight", w)
        sx = xq.type.quant.scale[0]  # type: ignore[union-attr]
        acc_scale = sx * sw
        bq = g.add_const(f"{out_name}.bias", np.round(b / acc_scale).astype(np.int32))
        operands = [xq, wq, bq] + ([residual] if residual is not None else [])
        acc = g.add_node(
            op, operands, {**attrs, "acc": "i32"}, names=[f"{out_name}_acc"], loc=out_name
        ).output
        so = self.scale(out_name)
        mult, shift = zip(*(numerics.quantize_multiplier(s / so) for s in acc_scale), strict=True)
        axis = 1 if op == "nn.conv2d" else acc.type.rank - 1
        return g.add_node(
            "q.requantize",
            [acc],
            {"dtype": "i8", "multiplier": list(mult), "shift": list(shift), "axis": axis},
            out_types=[_act_type(acc.type.shape, so)],
            names=[out_name],
            loc=out_name,
        ).output

    def add(self, a: Value, b: Value, out_name: str, act: str = "none") -> Value:
        so = self.scale(out_name)
        shift = 20
        sa, sb = a.type.quant.scale[0], b.type.quant.scale[0]  # type: ignore[union-attr]
        attrs = {
            "dtype": "i8",
            "a_multiplier": round(sa / so * 2**shift),
            "b_multiplier": round(sb / so * 2**shift),
            "shift": shift,
            "act": act,
        }
        return self.g.add_node(
            "q.add", [a, b], attrs, out_types=[_act_type(a.type.shape, so)], names=[out_name]
        ).output


def quantized_cnn(seed: int = 0, power_of_two: bool = False) -> tuple[Graph, np.ndarray]:
    """``float_cnn`` in int8 (returns the graph and a calibration input)."""
    rng = np.random.default_rng(seed + 1)
    fg = float_cnn(seed=seed)
    x_cal = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    ranges = _calibrate(fg, [x_cal])
    ranges["x"] = float(np.abs(x_cal).max())
    consts = {n.outputs[0].name: fg.constants[n.attrs["ref"]] for n in fg.nodes_of("const")}
    ranges["c2_pre"] = ranges["c2"]
    qz = _Quantizer("quantized_cnn", ranges, power_of_two)
    g = qz.g
    x = g.add_input("x", TensorType("f32", (1, 3, 16, 16)))
    xq = g.add_node(
        "q.quantize",
        [x],
        {"dtype": "i8"},
        out_types=[_act_type(x.type.shape, qz.scale("x"))],
        names=["xq"],
    ).output
    c1 = qz.compute(
        "nn.conv2d",
        xq,
        consts["conv1.weight"],
        consts["conv1.bias"],
        {"pads": [1, 1, 1, 1], "act": "relu"},
        "c1",
    )
    p1 = g.add_node("nn.max_pool2d", [c1], {"kernel": [2, 2]}, names=["p1"]).output
    c2 = qz.compute(
        "nn.conv2d",
        p1,
        consts["block.conv.weight"],
        consts["block.conv.bias"],
        {"pads": [1, 1, 1, 1]},
        "c2_pre",
    )
    s2 = qz.add(c2, p1, "c2", act="relu")
    gp = g.add_node(
        "q.global_avg_pool",
        [s2],
        {"dtype": "i8", "multiplier": 1, "shift": 6},
        out_types=[_act_type((1, 8, 1, 1), s2.type.quant.scale[0])],  # type: ignore[union-attr]
        names=["gap"],
    ).output
    f = g.add_node("tensor.flatten", [gp], {"axis": 1}, names=["flat"]).output
    lg = qz.compute("nn.dense", f, consts["fc.weight"], consts["fc.bias"], {}, "logits")
    y = g.add_node("q.dequantize", [lg], names=["y"]).output
    g.outputs = [y]
    verify(g)
    return g, x_cal


def quantized_mlp(seed: int = 0, zero_point: int = 0) -> tuple[Graph, np.ndarray]:
    """Two int8 dense layers, relu6 fused as clip_min/clip_max of the requantize, softmax
    as a float island; ``zero_point`` makes the input asymmetric (u8)."""
    rng = np.random.default_rng(seed)
    x_cal = np.abs(rng.standard_normal((4, 16))).astype(np.float32)
    w1, b1 = _randn(rng, 32, 16, scale=0.3), _randn(rng, 32, scale=0.1)
    w2, b2 = _randn(rng, 8, 32, scale=0.3), _randn(rng, 8, scale=0.1)
    ranges = {"h": 6.0, "o": 4.0}
    qz = _Quantizer("quantized_mlp", ranges)
    g = qz.g
    x = g.add_input("x", TensorType("f32", (4, 16)))
    dtype = "u8" if zero_point else "i8"
    sx = float(x_cal.max()) / (255.0 if zero_point else 127.0)
    xq = g.add_node(
        "q.quantize",
        [x],
        {"dtype": dtype},
        out_types=[_act_type(x.type.shape, sx, dtype, zero_point)],
        names=["xq"],
    ).output
    h = qz.compute("nn.dense", xq, w1, b1, {}, "h")
    six = int(round(6.0 / h.type.quant.scale[0]))  # type: ignore[union-attr]
    h.producer.attrs.update({"clip_min": 0, "clip_max": min(six, 127)})  # type: ignore[union-attr]
    o = qz.compute("nn.dense", h, w2, b2, {}, "o")
    of = g.add_node("q.dequantize", [o], names=["of"]).output
    y = g.add_node("nn.softmax", [of], {"axis": -1}, names=["probs"]).output
    g.outputs = [y, of]
    verify(g)
    return g, x_cal


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
