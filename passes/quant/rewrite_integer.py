"""The integer forms of ``integer_ops`` layers (``passes.quant.integer_ops``): q.softmax,
q.layernorm, the two-activation matmul and the table islands, for ``QuantizedBuilder``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import CalibrationError
from compiler.ir.graph import Node
from compiler.ir.types import QuantParams, TensorType
from compiler.numerics import LAYERNORM_BITS, SOFTMAX_BITS, int_range, quantize_multiplier

if TYPE_CHECKING:
    from passes.quant.plan import Layer
    from passes.quant.rewrite import QuantizedBuilder


def bmm(builder: QuantizedBuilder, node: Node, layer: Layer) -> None:
    """``nn.matmul`` of two integer activations to an i32/i64 accumulator, requantized with
    the absorbed gain (or dequantized where only float ops read it)."""
    from passes.quant.rewrite import fit_multiplier

    a, b = (builder.int_of(v) for v in node.inputs)
    qa, qb = a.type.quant, b.type.quant
    assert qa is not None and qb is not None
    k = int(a.type.shape[-1])
    peaks = [max(hi - int(q.zero_point[0]), int(q.zero_point[0]) - lo)
             for q, (lo, hi) in ((qa, int_range(a.dtype)), (qb, int_range(b.dtype)))]  # fmt: skip
    bound = k * peaks[0] * peaks[1]
    acc_dtype = "i32" if bound <= int_range("i32")[1] else "i64"
    acc_scale = float(qa.scale[0]) * float(qb.scale[0])
    shape = builder.values[layer.out].type.shape
    acc_t = TensorType(acc_dtype, shape, QuantParams.per_tensor(acc_scale * layer.gain))
    acc = builder.g.add_node(
        "nn.matmul", [a, b], {"acc": acc_dtype}, [acc_t], [layer.out + "_acc"], node.loc
    ).output
    if layer.out not in builder.plan.int_values:
        builder.accs[layer.out] = (acc, layer)
        return
    out_t = builder.int_type(layer.out, shape)
    assert out_t.quant is not None
    mult, shift = fit_multiplier(acc_scale * layer.gain / out_t.quant.scale[0], bound)
    attrs: dict[str, Any] = {"dtype": out_t.dtype, "multiplier": [mult], "shift": [shift]}
    builder.q[layer.out] = builder.g.add_node(
        "q.requantize", [acc], attrs, [out_t], [layer.out + "_q"], node.loc
    ).output


def softmax(builder: QuantizedBuilder, node: Node, layer: Layer) -> None:
    """``q.softmax``: its Q15 probabilities requantized to the output's scale."""
    x = builder.int_of(node.inputs[0])
    out_t = builder.int_type(layer.out, node.outputs[0].type.shape)
    assert out_t.quant is not None
    mult, shift = quantize_multiplier(2.0**-SOFTMAX_BITS / out_t.quant.scale[0])
    attrs = {"axis": -1, "dtype": out_t.dtype, "multiplier": mult, "shift": shift}
    builder.q[layer.out] = builder.g.add_node(
        "q.softmax", [x], attrs, [out_t], [layer.out + "_q"], node.loc
    ).output


def layernorm(builder: QuantizedBuilder, node: Node, layer: Layer) -> None:
    """``q.layernorm`` with gamma and beta as i32 constants in Q16 of the output's scale."""
    x = builder.int_of(node.inputs[0])
    qx = x.type.quant
    out_t = builder.int_type(layer.out, node.outputs[0].type.shape)
    assert qx is not None and out_t.quant is not None
    n = int(x.type.shape[-1])
    s_o = float(out_t.quant.scale[0])
    params = []
    for index, (name, default) in enumerate((("gamma", 1.0), ("beta", 0.0)), start=1):
        given = node.inputs[index] if len(node.inputs) > index else None
        data = builder.src.const_value(given) if given is not None else None
        real = np.broadcast_to(np.asarray(default if data is None else data, np.float64), (n,))
        q = np.rint(real / s_o * 2.0**LAYERNORM_BITS)
        if np.abs(q).max(initial=0) > int_range("i32")[1]:
            raise CalibrationError(
                f"{node.where()}: layer norm {name} / output scale exceeds the i32 constant "
                f"of q.layernorm (output scale {s_o:g} is too fine for |{name}| "
                f"{np.abs(real).max():g})"
            )
        ref = f"{layer.name}.{name}_q"
        params.append(
            builder.g.add_const(ref, q.astype(np.int32), TensorType("i32", (n,)), node.loc)
        )
    eps = float(node.attrs.get("eps", 1e-5))
    eps_int = int(round(n * n * eps / float(qx.scale[0]) ** 2))
    attrs = {"axis": -1, "dtype": out_t.dtype, "eps_int": eps_int}
    builder.q[layer.out] = builder.g.add_node(
        "q.layernorm", [x, *params], attrs, [out_t], [layer.out + "_q"], node.loc
    ).output


def table(builder: QuantizedBuilder, node: Node, layer: Layer) -> None:
    """A float elementwise function of one integer tensor: the float node itself, read from
    the dequantized integer input (an integer backend runs it as a 256-entry table)."""
    builder.int_of(node.inputs[0])  # make sure the operand exists in integers first
    builder._float(node)


KINDS = {"bmm": bmm, "softmax": softmax, "layernorm": layernorm, "table": table}
