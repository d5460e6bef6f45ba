"""Build the quantized graph from the float graph and its plan.

The builder walks the float graph in order and writes a new graph. It keeps, per float value,
its float form and its integer form, creating either on first demand: ``q.quantize`` where an
integer node needs a value that a float node produced, ``q.dequantize`` where a float node (or
a graph output) needs a value that an integer node produced. So each value is quantized or
dequantized at most once, right before its first user. Float values keep their names; integer
forms are ``<name>_q``, accumulators ``<name>_acc``.

Float islands in float64 (``island_dtype="f64"``, the CPU targets): the float ops between
integer layers then compute in float64, from a ``q.dequantize`` straight to float64 to the
``q.quantize`` that reads the float64 value; constants they read are widened and graph
inputs and outputs cast (the float64 forms are ``<name>_f64``). A backend's float kernels
differ from the interpreter's by a last-bit rounding (summation order, FMA contraction, its
own exp/erf): in float32 such a difference flips a ``q.quantize`` rounding often enough
to show in a model's output, in float64 it is about 2^-29 of a float32 ulp, below what the
float32 output or an 8-bit step can resolve. That is what lets a compiled transformer match
the interpreter element for element.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compiler.errors import VerifyError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import QuantParams, TensorType
from compiler.numerics import int_range, quantize_multiplier
from passes.quant.plan import Layer, Plan, node_key
from passes.quant.rewrite_integer import KINDS as INTEGER_KINDS
from passes.quant.weights import quantize_bias, quantize_weight

#: q.add's fixed-point precision: multipliers ``round(s_a / s_o * 2^ADD_SHIFT)``.
ADD_SHIFT = 16


class QuantizedBuilder:
    """Writes the quantized form of float graph ``src`` as planned by ``plan``."""

    def __init__(self, src: Graph, plan: Plan):
        self.src, self.plan = src, plan
        self.g = Graph(src.name)
        self.f: dict[str, Value] = {}
        self.q: dict[str, Value] = {}
        self.w: dict[str, Value] = {}  # float64 forms of float32 values (f64 islands)
        # accumulators with no integer consumer, dequantized on first use (to float32 for a
        # graph output, float64 for an f64 island, each straight from the integers)
        self.accs: dict[str, tuple[Value, Layer]] = {}
        self.wide = plan.options.island_dtype == "f64"
        self.consts: dict[str, Value] = {}
        self.skip = plan.absorbed_keys()
        self.values = {v.name: v for v in src.values()}

    def build(self) -> Graph:
        for v in self.src.inputs:
            self.f[v.name] = self.g.add_input(v.name, v.type, exact=True)
        for node in self.src.nodes:
            if node.op == "const" or node_key(node) in self.skip:
                continue
            layer = self.plan.layer_of_node(node)
            if layer is None:
                self._float(node)
            else:
                _KINDS[layer.kind](self, node, layer)
        self.g.outputs = [self.float_of(v) for v in self.src.outputs]
        self.g.remove_unused()
        return self.g

    # ---- value forms -----------------------------------------------------------------------
    def const(self, value: Value) -> Value:
        if value.name not in self.consts:
            data = self.src.const_value(value)
            assert value.producer is not None and data is not None
            self.consts[value.name] = self.g.add_const(
                value.producer.attrs["ref"], data, value.type, value.producer.loc
            )
        return self.consts[value.name]

    def float_of(self, value: Value) -> Value:
        if value.is_const:
            return self.const(value)
        if value.name not in self.f and value.name in self.accs:
            self.f[value.name] = self._acc_form(value.name, wide=False)
        if value.name not in self.f and value.name in self.w:
            self.f[value.name] = self.g.add_node(
                "tensor.cast", [self.w[value.name]], {"to": value.dtype}, names=[value.name]
            ).output
        if value.name not in self.f:
            if value.name not in self.q:
                raise VerifyError(f"quantize: %{value.name} is used before it is defined")
            attrs = {"dtype": value.dtype} if value.dtype != "f32" else {}
            self.f[value.name] = self.g.add_node(
                "q.dequantize", [self.q[value.name]], attrs, names=[value.name]
            ).output
        return self.f[value.name]

    def wide_of(self, value: Value) -> Value:
        """The float64 form of a float32 value (other values: their float form)."""
        if not (self.wide and value.dtype == "f32"):
            return self.float_of(value)
        if value.name not in self.w:
            wide = TensorType("f64", value.type.shape)
            if value.is_const:
                data = self.src.const_value(value)
                assert value.producer is not None and data is not None
                ref = value.producer.attrs["ref"] + "_f64"
                self.w[value.name] = self.g.add_const(
                    ref, np.asarray(data, np.float64), wide, value.producer.loc
                )
            elif value.name in self.accs:
                self.w[value.name] = self._acc_form(value.name, wide=True)
            elif value.name in self.q and value.name not in self.f:
                self.w[value.name] = self.g.add_node(
                    "q.dequantize", [self.q[value.name]], {"dtype": "f64"},
                    names=[value.name + "_f64"],
                ).output
            else:
                self.w[value.name] = self.g.add_node(
                    "tensor.cast", [self.float_of(value)], {"to": "f64"},
                    names=[value.name + "_f64"],
                ).output
        return self.w[value.name]

    def int_of(self, value: Value) -> Value:
        if value.name not in self.q:
            x = self.w[value.name] if value.name in self.w else self.float_of(value)
            dtype = self.plan.dtype[value.name]
            t = TensorType(dtype, value.type.shape, self.plan.quant[value.name])
            loc = value.producer.loc if value.producer is not None else None
            self.q[value.name] = self.g.add_node(
                "q.quantize", [x], {"dtype": dtype}, [t], [value.name + "_q"], loc
            ).output
        return self.q[value.name]

    def int_type(self, name: str, shape: tuple) -> TensorType:
        return TensorType(self.plan.dtype[name], shape, self.plan.quant[name])

    # ---- node kinds ------------------------------------------------------------------------
    def _float(self, node: Node) -> None:
        if self.wide and _widens(node):
            self._float_wide(node)
            return
        inputs = [self.float_of(v) for v in node.inputs]
        out = self.g.create_node(
            node.op,
            inputs,
            node.attrs,
            [v.type for v in node.outputs],
            [v.name for v in node.outputs],
            node.loc,
        )
        self.g.nodes.append(out)
        for v, new in zip(node.outputs, out.outputs, strict=True):
            self.f[v.name] = new

    def _float_wide(self, node: Node) -> None:
        outs = node.outputs
        out = self.g.create_node(
            node.op,
            [self.wide_of(v) for v in node.inputs],
            node.attrs,
            [TensorType("f64", v.type.shape) if v.dtype == "f32" else v.type for v in outs],
            [v.name + "_f64" if v.dtype == "f32" else v.name for v in outs],
            node.loc,
        )
        self.g.nodes.append(out)
        for v, new in zip(outs, out.outputs, strict=True):
            (self.w if v.dtype == "f32" else self.f)[v.name] = new

    def _move(self, node: Node, layer: Layer) -> None:
        inputs = [self.int_of(v) for v in node.inputs]
        attrs = dict(node.attrs)
        if node.op == "tensor.pad" and attrs.get("mode", "constant") == "constant":
            qp = inputs[0].type.quant
            assert qp is not None
            lo, hi = int_range(inputs[0].dtype)
            level = round(float(attrs.get("value", 0.0)) / qp.scale[0]) + qp.zero_point[0]
            attrs["value"] = int(min(max(level, lo), hi))
        types = [self.int_type(v.name, v.type.shape) for v in node.outputs]
        out = self.g.create_node(
            node.op, inputs, attrs, types, [v.name + "_q" for v in node.outputs], node.loc
        )
        self.g.nodes.append(out)
        for v, new in zip(node.outputs, out.outputs, strict=True):
            self.q[v.name] = new

    def _anchor(self, node: Node, layer: Layer) -> None:
        x = self.int_of(node.inputs[0])
        qx = x.type.quant
        assert qx is not None
        w_dtype = "i16" if layer.precision == "int16" else self.plan.options.weight_dtype
        w, qw = quantized_weight(self, node, layer, w_dtype)
        acc_scales = np.float64(qx.scale[0]) * np.asarray(qw.scale, dtype=np.float64)
        b = quantized_bias(self, node, acc_scales)
        out = node.outputs[0]
        axis = out.type.rank - 1 if node.op in ("nn.dense", "nn.matmul") else 1
        per_channel = acc_scales.size > 1
        acc_qp = (
            QuantParams.per_channel(acc_scales, axis)
            if per_channel
            else QuantParams.per_tensor(float(acc_scales[0]))
        )
        attrs = {k: v for k, v in node.attrs.items() if k not in ("act", "act_args", "acc")}
        if layer.act == "relu":
            attrs["act"] = "relu"  # exact on the accumulator
        attrs["acc"], bound = accumulator_dtype(self, node, x, w, b)
        inputs = [x, w] + ([b] if b is not None else [])
        acc_t = TensorType(attrs["acc"], out.type.shape, acc_qp)
        acc = self.g.add_node(node.op, inputs, attrs, [acc_t], [layer.out + "_acc"], node.loc)
        if layer.out not in self.plan.int_values:
            self._dequantize_acc(acc.output, layer)
            return
        out_t = self.int_type(layer.out, out.type.shape)
        assert out_t.quant is not None
        pairs = [fit_multiplier(s / out_t.quant.scale[0], bound) for s in acc_scales]
        rq: dict[str, Any] = {
            "dtype": out_t.dtype,
            "multiplier": [m for m, _ in pairs],
            "shift": [s for _, s in pairs],
            "axis": axis if per_channel else None,
        }
        rq.update(clamp_attrs(layer, out_t))
        self.q[layer.out] = self.g.add_node(
            "q.requantize", [acc.output], rq, [out_t], [layer.out + "_q"], node.loc
        ).output

    def _dequantize_acc(self, acc: Value, layer: Layer) -> None:
        """No integer consumer: the accumulator itself is dequantized (no second rounding),
        where it is first used (``_acc_form``)."""
        self.accs[layer.out] = (acc, layer)

    def _acc_form(self, name: str, wide: bool) -> Value:
        acc, layer = self.accs[name]
        clamp = layer.act in ("relu6", "clip")
        dtype = "f64" if wide else self.values[layer.out].dtype
        suffix = "_f64" if wide else ""
        name = layer.out + ("_pre" if clamp else "") + suffix
        attrs = {"dtype": dtype} if dtype != "f32" else {}
        y = self.g.add_node("q.dequantize", [acc], attrs, names=[name]).output
        if clamp:
            lo, hi = (0.0, 6.0) if layer.act == "relu6" else tuple(layer.act_args[:2])
            bounds = {
                "min": lo if math.isfinite(lo) else None,
                "max": hi if math.isfinite(hi) else None,
            }
            y = self.g.add_node("nn.clip", [y], bounds, names=[layer.out + suffix]).output
        return y

    def _add(self, node: Node, layer: Layer) -> None:
        a, b = (self.int_of(v) for v in node.inputs)
        qa, qb = a.type.quant, b.type.quant
        out_t = self.int_type(layer.out, self.values[layer.out].type.shape)
        assert qa is not None and qb is not None and out_t.quant is not None
        so = out_t.quant.scale[0]
        ra, rb = qa.scale[0] / so, qb.scale[0] / so
        shift = add_shift(ra, rb)
        attrs: dict[str, Any] = {
            "dtype": out_t.dtype,
            "a_multiplier": int(round(ra * 2**shift)),
            "b_multiplier": int(round(rb * 2**shift)),
            "shift": shift,
            "act": "relu" if layer.act == "relu" else "none",
        }
        attrs.update(clamp_attrs(layer, out_t))
        self.q[layer.out] = self.g.add_node(
            "q.add", [a, b], attrs, [out_t], [layer.out + "_q"], node.loc
        ).output

    def _pool(self, node: Node, layer: Layer) -> None:
        x = self.int_of(node.inputs[0])
        out_t = self.int_type(layer.out, node.outputs[0].type.shape)
        assert x.type.quant is not None and out_t.quant is not None
        if node.op == "nn.avg_pool2d":
            kernel = list(node.attrs["kernel"])
            attrs = {
                "kernel": kernel,
                "strides": node.attrs.get("strides") or kernel,
                "pads": node.attrs.get("pads") or [0, 0, 0, 0],
            }
            op, count = "q.avg_pool2d", math.prod(kernel)
        else:
            attrs, op = {}, "q.global_avg_pool"
            count = math.prod(int(d) for d in x.type.shape[2:])
        real = x.type.quant.scale[0] / (count * out_t.quant.scale[0])
        mult, shift = quantize_multiplier(real)
        attrs.update({"dtype": out_t.dtype, "multiplier": mult, "shift": shift})
        self.q[layer.out] = self.g.add_node(
            op, [x], attrs, [out_t], [layer.out + "_q"], node.loc
        ).output


def _widens(node: Node) -> bool:
    """Whether a float node runs in float64 in an f64 island: it makes a float32 value from
    float32 (or non-float) inputs, and no attribute fixes its dtype (casts and the like keep
    theirs, and their float32 results are widened where an island reads them)."""
    if not any(v.dtype == "f32" for v in node.outputs):
        return False
    if any(k in node.attrs for k in ("dtype", "to")):
        return False
    return all(v.dtype == "f32" or not v.dtype.startswith(("f", "bf")) for v in node.inputs)


def add_shift(ra: float, rb: float) -> int:
    """Smallest shift making both multipliers exact (powers of two), else ``ADD_SHIFT``;
    reduced until both multipliers fit in int32."""
    shift = ADD_SHIFT
    exact = [math.frexp(r) for r in (ra, rb)]
    if all(m == 0.5 for m, _ in exact):
        shift = max(0, max(1 - e for _, e in exact))
    while shift > 0 and max(ra, rb) * 2**shift >= 2**31:
        shift -= 1
    return shift


def clamp_attrs(layer: Layer, out_t: TensorType) -> dict[str, int]:
    """relu6/clip of an integer result: its real bounds as integer levels of the output."""
    if layer.act not in ("relu6", "clip"):
        return {}
    assert out_t.quant is not None
    lo_real, hi_real = (0.0, 6.0) if layer.act == "relu6" else tuple(layer.act_args[:2])
    s, zp = out_t.quant.scale[0], out_t.quant.zero_point[0]
    qmin, qmax = int_range(out_t.dtype)
    attrs = {}
    if math.isfinite(lo_real):
        attrs["clip_min"] = int(np.clip(round(lo_real / s) + zp, qmin, qmax))
    if math.isfinite(hi_real):
        attrs["clip_max"] = int(np.clip(round(hi_real / s) + zp, qmin, qmax))
    return attrs


def fit_multiplier(real: float, bound: int) -> tuple[int, int]:
    """``quantize_multiplier(real)``, with the multiplier cut (and the shift with it) until
    ``bound * multiplier`` fits the int64 product of numerics.requantize."""
    mult, shift = quantize_multiplier(real)
    while mult * bound >= 2**62 and shift > 0:
        mult, shift = (mult + 1) >> 1, shift - 1
    return mult, shift


def accumulator_dtype(
    builder: QuantizedBuilder, node: Node, x: Value, w: Value, b: Value | None
) -> tuple[str, int]:
    """i32 unless the worst-case sum of products (plus bias) could overflow it, then i64;
    and that worst case."""
    qx = x.type.quant
    assert qx is not None
    lo, hi = int_range(x.dtype)
    x_peak = max(hi - qx.zero_point[0], qx.zero_point[0] - lo)
    w_data = builder.g.const_value(w)
    assert w_data is not None
    axis = weight_axis(node)
    k = w_data.size // w_data.shape[axis]
    bound = k * x_peak * int(np.abs(w_data.astype(np.int64)).max(initial=0))
    b_data = builder.g.const_value(b) if b is not None else None
    if b_data is not None:
        bound += int(np.abs(b_data.astype(np.int64)).max(initial=0))
    return ("i32" if bound <= int_range("i32")[1] else "i64"), bound


def weight_axis(node: Node) -> int:
    """The output-channel axis of the weight: 0 for OIHW and [N, K], 1 for matmul's [K, N]."""
    return 1 if node.op == "nn.matmul" else 0


def quantized_weight(
    builder: QuantizedBuilder, node: Node, layer: Layer, dtype: str
) -> tuple[Value, QuantParams]:
    w = node.inputs[1]
    data = builder.src.const_value(w)
    assert data is not None and w.producer is not None
    ref = w.producer.attrs["ref"]
    axis = weight_axis(node) if layer.per_channel else None
    q, qp = quantize_weight(data, axis, dtype, builder.plan.options.power_of_two, ref)
    value = builder.g.add_const(ref + "_q", q, TensorType(dtype, w.type.shape, qp), w.producer.loc)
    return value, qp


def quantized_bias(builder: QuantizedBuilder, node: Node, acc_scales: np.ndarray) -> Value | None:
    if len(node.inputs) < 3:
        return None
    b = node.inputs[2]
    data = builder.src.const_value(b)
    if data is None or b.producer is None:
        raise VerifyError(f"{node.where()}: bias is not constant; cannot quantize it")
    ref = b.producer.attrs["ref"]
    q, qp = quantize_bias(data, acc_scales, ref)
    return builder.g.add_const(ref + "_q", q, TensorType("i32", b.type.shape, qp), b.producer.loc)


_KINDS = {
    "move": QuantizedBuilder._move,
    "anchor": QuantizedBuilder._anchor,
    "add": QuantizedBuilder._add,
    "pool": QuantizedBuilder._pool,
    **INTEGER_KINDS,
}


def quantized_graph(src: Graph, plan: Plan) -> Graph:
    """The quantized form of float graph ``src`` under ``plan``."""
    return QuantizedBuilder(src, plan).build()
