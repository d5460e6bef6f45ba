"""The ONNX converter table, part 6: recurrent cells (RNN, GRU, LSTM) and the DFT.

Each maps to one op of ``compiler.ir.ops_signal``; the optional operands ONNX leaves out
are filled here (zero biases, states and peepholes; full sequence lengths).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.frontends.onnx_importer import OnnxNode, Output, Reject
from compiler.frontends.onnx_table import converts
from compiler.ir import TensorType, Value
from compiler.ir.ops_signal import CELLS, DIRECTIONS


def _zeros(n: OnnxNode, index: int, shape: tuple[int, ...], dtype: str, hint: str) -> Value:
    if n.has(index):
        return n.value(index, dtype)
    t = TensorType(dtype, shape)
    return n.constant(np.zeros(shape, t.np_dtype), n.name_hint(hint), t)


@converts("RNN", "GRU", "LSTM")
def _recurrent(n: OnnxNode) -> Sequence[Output]:
    cell = n.op_type.lower()
    x = n.value(0)
    gates = CELLS[cell][0]
    layout = int(n.attr("layout", 0))
    seq, batch, _ = n.static_shape(0, n.op_type)
    if layout:
        seq, batch = batch, seq
    direction = n.attr("direction", "forward")
    if direction not in DIRECTIONS:
        raise Reject(f"{n.op_type} direction={direction!r}")
    dirs = DIRECTIONS[direction]
    hidden = int(n.attr("hidden_size") or n.static_shape(2, "R")[-1])
    state = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    if n.has(4):
        lens = n.value(4, "i32")
    else:
        lens = n.constant(np.full(batch, seq, np.int32), n.name_hint("lens"))
    inputs = [
        x, n.value(1, x.dtype), n.value(2, x.dtype),
        _zeros(n, 3, (dirs, 2 * gates * hidden), x.dtype, "b"), lens,
        _zeros(n, 5, state, x.dtype, "h0"),
        _zeros(n, 6, state, x.dtype, "c0") if cell == "lstm" else
        n.constant(np.zeros(state, x.type.np_dtype), n.name_hint("c0"), TensorType(x.dtype,
                                                                                   state)),
        _zeros(n, 7, (dirs, 3 * hidden), x.dtype, "p") if cell == "lstm" else
        n.constant(np.zeros((dirs, 3 * hidden), x.type.np_dtype), n.name_hint("p"),
                   TensorType(x.dtype, (dirs, 3 * hidden))),
    ]  # fmt: skip
    attrs = {
        "cell": cell, "hidden": hidden, "direction": direction, "layout": layout,
        "activations": n.attr("activations"), "alphas": n.attr("activation_alpha"),
        "betas": n.attr("activation_beta"), "clip": n.attr("clip"),
        "linear_before_reset": bool(n.attr("linear_before_reset", 0)),
        "input_forget": bool(n.attr("input_forget", 0)),
    }  # fmt: skip
    names = [n.name_hint(index=i) if i < len(n.outputs) and n.outputs[i] else
             n.name_hint(f"out{i}") for i in range(3)]  # fmt: skip
    outs = n.emit_multi("nn.recurrent", inputs, attrs, None, names)
    return outs[: 3 if cell == "lstm" else 2]


@converts("DFT")
def _dft(n: OnnxNode) -> Sequence[Output]:
    """Opset 20 takes the axis as an input (default -2), before that an attribute."""
    x = n.value(0)
    length = None
    if n.has(1):
        length = int(np.asarray(n.need_known(1, "the DFT length")).reshape(-1)[0])
    attrs = {"inverse": bool(n.attr("inverse", 0)), "onesided": bool(n.attr("onesided", 0)),
             "length": length}  # fmt: skip
    if n.opset < 20:
        return [n.emit("math.dft", [x], {**attrs, "axis": int(n.attr("axis", 1))})]
    if not n.has(2):
        return [n.emit("math.dft", [x], {**attrs, "axis": -2})]
    known = n.known(2)
    if known is not None and known.dtype != object:
        return [n.emit("math.dft", [x], {**attrs, "axis": int(known.reshape(-1)[0])})]
    axis = n.value(2)
    if axis.dtype not in ("i32", "i64"):
        raise Reject(f"DFT axis of dtype {axis.dtype}")
    return [n.emit("math.dft", [x, axis], attrs)]
