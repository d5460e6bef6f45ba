"""Generate the host program of the ASIC flow: ``model.c`` (+ ``weights.c``, ``model.h``).

``model.c`` defines ``tapeout_run(inputs, outputs)``, which runs the graph node by node: an
NPU layer is a call into ``npu_runtime.h``; any other node is a call into the hand-written
host kernels of ``runtime/host_ops.c`` chosen by ``HOST_RULES`` (op -> ``Rule``), which
follow the reference interpreter. Every intermediate tensor is a static buffer. TVM 0.27 has
no ahead-of-time executor for Relax (its C target emits kernels that need the VM runtime to
be called), so the host orchestration is generated here rather than by TVM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.asic.partition import NpuLayer, conv_geometry
from backends.c_emitter import CTYPES, CEmitter, c_array, c_float, c_int
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import output_clamp, view_ops, zero_point
from compiler.ir.ops import get_op
from compiler.ir.ops_nn import spatial_params
from compiler.rules import Rule


@dataclass
class Program:
    """State of one code generation: the emitters and the graph's buffers."""

    graph: Graph
    code: CEmitter
    weights: CEmitter
    weight_names: dict[int, str] = field(default_factory=dict)
    decls: list[str] = field(default_factory=list)

    def size(self, value: Value) -> int:
        return math.prod(int(d) for d in value.type.shape)

    def ctype(self, value: Value) -> str:
        return CTYPES[value.dtype]

    def buf(self, value: Value) -> str:
        """The C expression of a value's data pointer."""
        if value.is_const:
            return self.weight(value)
        for i, v in enumerate(self.graph.inputs):
            if v is value:
                return f"(({self.ctype(v)} *)inputs[{i}])"
        return self.code.ident(value.name)

    def weight(self, value: Value) -> str:
        name = self.weight_names.get(id(value))
        if name is None:
            data = self.graph.const_value(value)
            assert data is not None
            name = self.weights.ident(value.name, "w_")
            self.weight_names[id(value)] = name
            self.const_array(name, self.ctype(value), np.asarray(data).reshape(-1))
        return name

    def const_array(self, name: str, ctype: str, values: Any) -> str:
        size = max(len(values), 1)
        self.decls.append(f"extern const {ctype} {name}[{size}];")
        with self.weights.block(f"const {ctype} {name}[{size}] =", "};"):
            for line in c_array(list(values) or [0], ctype):
                self.weights.line(line)
        return name

    def table(self, hint: str, ctype: str, values: Any) -> str:
        """A named constant array in weights.c (per-channel parameters)."""
        return self.const_array(self.weights.ident(hint, "t_"), ctype, list(values))


#: A host rule (the shared contract of ``compiler.rules``): ``check(node, graph)`` says why
#: the host C kernels cannot take a node, ``lower(node, program)`` emits its call.
HostRule = Rule[Graph, Program]
CheckFn = Callable[[Node, Graph], str | None]


def _channels(value: Value, axis: int | None) -> tuple[int, int]:
    """(channels, inner) of a per-channel parameter along ``axis`` (1, 1 per tensor)."""
    if axis is None:
        return 1, 1
    shape = [int(d) for d in value.type.shape]
    axis %= len(shape)
    return shape[axis], math.prod(shape[axis + 1 :])


def _qparams(p: Program, value: Value, hint: str) -> tuple[str, str, int, int]:
    qp = value.type.quant
    assert qp is not None
    channels, inner = _channels(value, qp.axis)
    scale = p.table(hint + "_scale", "float", [float(np.float32(s)) for s in qp.scale])
    zps = p.table(hint + "_zp", "int32_t", qp.zero_point)
    return scale, zps, channels, inner


def _quantize(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    scale, zp, channels, inner = _qparams(p, out, out.name)
    p.code.line(
        f"host_quantize_f32_i8({p.buf(x)}, {p.buf(out)}, {p.size(out)}, {scale}, "
        f"{zp}, {channels}, {inner});"
    )


def _dequantize(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    scale, zp, channels, inner = _qparams(p, x, x.name + "_dq")
    fn = "host_dequantize_i8" if x.dtype == "i8" else "host_dequantize_i32"
    p.code.line(
        f"{fn}({p.buf(x)}, {p.buf(out)}, {p.size(out)}, {scale}, {zp}, {channels}, {inner});"
    )


def _requantize(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    a = node.attrs
    qp = out.type.quant
    zps = list(qp.zero_point) if qp is not None else [0]
    mult, shift = list(a["multiplier"]), list(a["shift"])
    per_channel = len(mult) > 1 or len(zps) > 1
    axis = a.get("axis") if a.get("axis") is not None else (qp.axis if qp else None)
    channels, inner = _channels(x, axis) if per_channel else (1, 1)

    def table(hint: str, ctype: str, values: list) -> str:
        return p.table(out.name + hint, ctype, np.broadcast_to(values, (channels,)))

    lo, hi = output_clamp(node.attrs, 0)
    p.code.line(
        f"host_requantize_i32_i8({p.buf(x)}, {p.buf(out)}, {p.size(out)}, "
        f"{table('_mult', 'int64_t', mult)}, {table('_shift', 'int64_t', shift)}, "
        f"{table('_zp', 'int32_t', zps)}, {channels}, {inner}, {lo}, {hi});"
    )


def _qadd(node: Node, p: Program) -> None:
    a, b = node.inputs
    out = node.outputs[0]
    zo = zero_point(out)
    lo, hi = output_clamp(node.attrs, zo)
    at = node.attrs
    p.code.line(
        f"host_qadd_i8({p.buf(a)}, {p.buf(b)}, {p.buf(out)}, {p.size(out)}, {zero_point(a)}, "
        f"{zero_point(b)}, {c_int(at['a_multiplier'])}, "
        f"{c_int(at['b_multiplier'])}, {int(at['shift'])}, {zo}, {lo}, {hi});"
    )


def _same_shapes(node: Node, graph: Graph) -> str | None:
    shapes = {tuple(v.type.shape) for v in [*node.inputs, *node.outputs]}
    return None if len(shapes) == 1 else "broadcasting q.add is not implemented on the host"


def _pool_struct(
    p: Program, node: Node, kernel: list[int], strides: list[int], pads: list[int], dil: list[int]
) -> str:
    n, c, h, w = (int(d) for d in node.inputs[0].type.shape)
    oh, ow = (int(d) for d in node.outputs[0].type.shape[2:])
    name = p.code.ident(node.outputs[0].name, "pool_")
    p.code.line(
        f"static const host_pool2d {name} = {{{n}, {c}, {h}, {w}, {oh}, {ow}, "
        f"{kernel[0]}, {kernel[1]}, {strides[0]}, {strides[1]}, {dil[0]}, {dil[1]}, "
        f"{pads[0]}, {pads[1]}}};"
    )
    return name


def _max_pool(node: Node, p: Program) -> None:
    a = get_op(node.op).with_defaults(node.attrs)
    kernel = [int(k) for k in a["kernel"]]
    strides, pads, dil = spatial_params({**a, "strides": a["strides"] or kernel}, 2)
    st = _pool_struct(p, node, kernel, strides, pads, dil)
    fn = "host_max_pool2d_f32" if node.inputs[0].dtype == "f32" else "host_max_pool2d_i8"
    p.code.line(f"{fn}({p.buf(node.inputs[0])}, {p.buf(node.outputs[0])}, &{st});")


def _qavg_pool(node: Node, p: Program) -> None:
    x = node.inputs[0]
    if node.op == "q.global_avg_pool":
        kernel, strides, pads = [int(d) for d in x.type.shape[2:]], [1, 1], [0, 0, 0, 0]
    else:
        a = get_op(node.op).with_defaults(node.attrs)
        kernel = [int(k) for k in a["kernel"]]
        strides, pads, _ = spatial_params({**a, "strides": a["strides"] or kernel}, 2)
    st = _pool_struct(p, node, kernel, strides, pads, [1, 1])
    p.code.line(
        f"host_qavg_pool2d_i8({p.buf(x)}, {p.buf(node.outputs[0])}, &{st}, {zero_point(x)}, "
        f"{c_int(node.attrs['multiplier'])}, "
        f"{c_int(node.attrs['shift'])}, {zero_point(node.outputs[0])});"
    )


def _strides(shape: list[int], out_shape: list[int]) -> list[int]:
    """Element strides of ``shape`` broadcast against ``out_shape`` (0 where broadcast)."""
    full = [1] * (len(out_shape) - len(shape)) + shape
    strides, acc = [0] * len(full), 1
    for d in range(len(full) - 1, -1, -1):
        strides[d] = 0 if full[d] == 1 and out_shape[d] != 1 else acc
        acc *= full[d]
    return strides


_BINARY = {
    "math.add": "HOST_ADD",
    "math.sub": "HOST_SUB",
    "math.mul": "HOST_MUL",
    "math.div": "HOST_DIV",
    "math.maximum": "HOST_MAX",
    "math.minimum": "HOST_MIN",
}


def _binary(node: Node, p: Program) -> None:
    out = node.outputs[0]
    shape = [int(d) for d in out.type.shape] or [1]
    tables = [
        p.table(
            f"{out.name}_{i}_strides", "int64_t", _strides([int(d) for d in v.type.shape], shape)
        )
        for i, v in enumerate(node.inputs)
    ]
    dims = p.table(out.name + "_shape", "int64_t", shape)
    a, b = node.inputs
    p.code.line(
        f"host_binary_f32({_BINARY[node.op]}, {p.buf(a)}, {tables[0]}, {p.buf(b)}, "
        f"{tables[1]}, {p.buf(out)}, {dims}, {len(shape)});"
    )


def _float_only(node: Node, graph: Graph) -> str | None:
    if any(v.dtype != "f32" for v in [*node.inputs, *node.outputs]):
        return "the host kernel takes float32 only"
    return None


def _relu(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    fn = "host_relu_f32" if x.dtype == "f32" else "host_relu_i8"
    p.code.line(f"{fn}({p.buf(x)}, {p.buf(out)}, {p.size(out)});")


def _clip(node: Node, p: Program) -> None:
    lo = node.attrs.get("min", 0.0) if node.op == "nn.clip" else 0.0
    hi = node.attrs.get("max", 6.0) if node.op == "nn.clip" else 6.0
    lo_c = "-INFINITY" if lo is None else c_float(lo)
    hi_c = "INFINITY" if hi is None else c_float(hi)
    x, out = node.inputs[0], node.outputs[0]
    p.code.line(f"host_clip_f32({p.buf(x)}, {p.buf(out)}, {p.size(out)}, {lo_c}, {hi_c});")


def _copy(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    p.code.line(f"memcpy({p.buf(out)}, {p.buf(x)}, sizeof({p.ctype(out)}) * {p.size(out)});")


def _transpose(node: Node, p: Program) -> None:
    x, out = node.inputs[0], node.outputs[0]
    perm = [int(v) for v in node.attrs["perm"]]
    in_shape = [int(d) for d in x.type.shape]
    strides = [math.prod(in_shape[d + 1 :]) for d in range(len(in_shape))]
    shape = p.table(out.name + "_shape", "int64_t", [int(d) for d in out.type.shape])
    src = p.table(out.name + "_src", "int64_t", [strides[d] for d in perm])
    p.code.line(
        f"host_transpose({p.buf(x)}, {p.buf(out)}, sizeof({p.ctype(out)}), {shape}, "
        f"{src}, {len(perm)});"
    )


def _int_conv(node: Node, p: Program) -> None:
    x, w = node.inputs[0], node.inputs[1]
    n, c, h, wd = (int(d) for d in x.type.shape)
    oh, ow = (int(d) for d in node.outputs[0].type.shape[2:])
    g = conv_geometry(node)
    bias = p.buf(node.inputs[2]) if len(node.inputs) > 2 else "NULL"
    relu = int(node.attrs.get("act", "none") == "relu")
    p.code.line(
        f"host_conv2d_i8({p.buf(x)}, {n}, {c}, {h}, {wd}, {zero_point(x)}, {p.buf(w)}, "
        f"{int(w.type.shape[0])}, {int(node.attrs.get('groups', 1))}, {bias}, "
        f"{g['kernel_h']}, {g['kernel_w']}, {g['stride_h']}, {g['stride_w']}, "
        f"{g['pad_top']}, {g['pad_left']}, {g['dilation_h']}, {g['dilation_w']}, "
        f"{oh}, {ow}, {relu}, {p.buf(node.outputs[0])});"
    )


def _int_dense(node: Node, p: Program) -> None:
    x, w = node.inputs[0], node.inputs[1]
    n_out, k = (int(d) for d in w.type.shape)
    m = p.size(x) // k
    bias = p.buf(node.inputs[2]) if len(node.inputs) > 2 else "NULL"
    relu = int(node.attrs.get("act", "none") == "relu")
    p.code.line(
        f"host_dense_i8({p.buf(x)}, {m}, {k}, {zero_point(x)}, {p.buf(w)}, {n_out}, {bias}, "
        f"{relu}, {p.buf(node.outputs[0])});"
    )


def _int_layer(node: Node, graph: Graph) -> str | None:
    x, w = node.inputs[0], node.inputs[1]
    if x.dtype != "i8" or w.dtype != "i8" or graph.const_value(w) is None:
        return "only int8 layers with constant weights run on this target (quantize first)"
    if len(node.inputs) > 3:
        return "a residual operand on an integer layer"
    if node.attrs.get("act", "none") not in ("none", "relu"):
        return f"activation {node.attrs.get('act')} on an integer accumulator"
    if node.op == "nn.conv2d" and len(node.inputs) > 2 and node.inputs[2].dtype != "i32":
        return "the bias must be int32"
    return None


def _dtypes(*allowed: str) -> CheckFn:
    def check(node: Node, graph: Graph) -> str | None:
        bad = [v.dtype for v in [*node.inputs, *node.outputs] if v.dtype not in allowed]
        return f"dtype {bad[0]} is not supported by the host kernel" if bad else None

    return check


def _pool_check(node: Node, graph: Graph) -> str | None:
    if node.attrs.get("ceil_mode"):
        return "ceil_mode pooling"
    return _dtypes("i8", "f32")(node, graph)


HOST_RULES: dict[str, HostRule] = {
    "q.quantize": Rule(_quantize, _dtypes("f32", "i8")),
    "q.dequantize": Rule(_dequantize, _dtypes("i8", "i32", "f32")),
    "q.requantize": Rule(_requantize, _dtypes("i32", "i8")),
    "q.add": Rule(_qadd, lambda n, g: _same_shapes(n, g) or _dtypes("i8")(n, g)),
    "q.avg_pool2d": Rule(_qavg_pool, _dtypes("i8")),
    "q.global_avg_pool": Rule(_qavg_pool, _dtypes("i8")),
    "nn.max_pool2d": Rule(_max_pool, _pool_check),
    "nn.relu": Rule(_relu, _dtypes("f32", "i8")),
    "nn.relu6": Rule(_clip, _float_only),
    "nn.clip": Rule(_clip, _float_only),
    **{op: Rule(_binary, _float_only) for op in _BINARY},
    **{
        op: Rule(_copy)
        for op in view_ops()  # the same bytes under a new shape
    },
    "tensor.transpose": Rule(_transpose),
    "nn.conv2d": Rule(_int_conv, _int_layer),
    "nn.dense": Rule(_int_dense, _int_layer),
}


def emit_npu(p: Program, layer: NpuLayer) -> None:
    """One accelerator call (with its fused output stage, if any)."""
    node = layer.node
    x, w = node.inputs[0], node.inputs[1]
    out_node = layer.requantize or node
    out = out_node.outputs[0]
    bias = p.buf(node.inputs[2]) if len(node.inputs) > 2 else "NULL"
    relu = int(node.attrs.get("act", "none") == "relu")
    stage = "NULL"
    with p.code.block(""):
        if layer.requantize is not None:
            rq = layer.requantize
            shifts = p.table(
                out.name + "_shift", "int32_t", np.broadcast_to(rq.attrs["shift"], (layer.n,))
            )
            lo, hi = output_clamp(rq.attrs, 0)
            zo = zero_point(out)
            p.code.line(f"const npu_output_stage stage = {{{shifts}, {zo}, {lo}, {hi}}};")
            stage = "&stage"
        if layer.kind == "conv2d":
            n, c, h, wd = (int(d) for d in x.type.shape)
            g = conv_geometry(node)
            fields = ", ".join(
                str(g[k])
                for k in (
                    "kernel_h",
                    "kernel_w",
                    "stride_h",
                    "stride_w",
                    "pad_top",
                    "pad_left",
                    "pad_bottom",
                    "pad_right",
                    "dilation_h",
                    "dilation_w",
                )
            )
            p.code.line(f"const npu_conv_params params = {{{fields}}};")
            p.code.line(f"const npu_shape4 shape = {{{n}, {c}, {h}, {wd}}};")
            call = (
                f"npu_conv2d({p.buf(x)}, shape, {zero_point(x)}, {p.buf(w)}, {layer.n}, {bias}, "
                f"&params, {relu}, {stage}, {p.buf(out)})"
            )
        else:
            call = (
                f"npu_dense({p.buf(x)}, {layer.m}, {layer.k}, {zero_point(x)}, {p.buf(w)}, "
                f"{layer.n}, {bias}, {relu}, {stage}, {p.buf(out)})"
            )
        p.code.line(f"const int rc = {call};")
        p.code.line("if (rc != NPU_OK) return rc;")
