"""The recurrent cells (``nn.recurrent``: ONNX RNN, GRU, LSTM) unrolled over the static
sequence length with Relax ops, in float32 (float64 for float64 operands; the interpreter
computes in float64 and rounds once, within the conformance tolerance of this).

Per direction and step: ``x_t @ W^T + Wb``, ``h @ R^T + Rb``, the cell's gates and
activations, then the state kept where the step is past a sequence's length. A backward
run starts at each sequence's own last valid step: its inputs and outputs are gathered
with indices computed from the lengths (runtime data or constants alike).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.tvm.lower import LowerContext, Rule, static_shape, tvm_dtype
from compiler.interpreter_signal import ACTS
from compiler.ir.graph import Node
from compiler.ir.ops_signal import CELLS

Act = Callable[[Any], Any]


def _R() -> Any:
    from tvm import relax

    return relax.op


def _c(value: Any, dtype: str) -> Any:
    from tvm import relax

    return relax.const(value, dtype)


#: ONNX activation -> Relax expression of (x, alpha, beta), as ``ACTS`` in the interpreter.
RELAX_ACTS: dict[str, Callable[[Any, float, float, Callable[[float], Any]], Any]] = {
    "Relu": lambda x, a, b, k: _R().nn.relu(x),
    "Tanh": lambda x, a, b, k: _R().tanh(x),
    "Sigmoid": lambda x, a, b, k: _R().sigmoid(x),
    "Affine": lambda x, a, b, k: _R().add(_R().multiply(x, k(a)), k(b)),
    "LeakyRelu": lambda x, a, b, k: _R().where(
        _R().greater_equal(x, k(0.0)), x, _R().multiply(x, k(a))
    ),
    "ThresholdedRelu": lambda x, a, b, k: _R().where(_R().greater(x, k(a)), x, k(0.0)),
    "ScaledTanh": lambda x, a, b, k: _R().multiply(k(a), _R().tanh(_R().multiply(x, k(b)))),
    "HardSigmoid": lambda x, a, b, k: _R().minimum(
        _R().maximum(_R().add(_R().multiply(x, k(a)), k(b)), k(0.0)), k(1.0)
    ),
    "Elu": lambda x, a, b, k: _R().where(
        _R().greater_equal(x, k(0.0)), x, _R().multiply(k(a), _R().subtract(_R().exp(x), k(1.0)))
    ),
    "Softsign": lambda x, a, b, k: _R().divide(x, _R().add(k(1.0), _R().abs(x))),
    "Softplus": lambda x, a, b, k: _R().log(_R().add(k(1.0), _R().exp(x))),
}

_TAKES_ALPHA = ("Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu")
_TAKES_BETA = ("Affine", "ScaledTanh", "HardSigmoid")


def _activations(attrs: dict[str, Any], dirs: int, dtype: str) -> list[list[Act]]:
    """Per direction, the cell's activations with their alpha/beta bound (ONNX lists the
    alphas and betas only for the activations that take them, in order)."""
    per_dir = len(CELLS[attrs["cell"]][1])
    names = attrs["activations"] or list(CELLS[attrs["cell"]][1]) * dirs
    alphas, betas = list(attrs["alphas"] or []), list(attrs["betas"] or [])
    bound: list[Act] = []
    for name in names:
        _, alpha, beta = ACTS[name]
        alpha = float(alphas.pop(0)) if name in _TAKES_ALPHA and alphas else alpha
        beta = float(betas.pop(0)) if name in _TAKES_BETA and betas else beta
        bound.append(_bind(RELAX_ACTS[name], float(alpha), float(beta), dtype))
    return [bound[d * per_dir : (d + 1) * per_dir] for d in range(dirs)]


def _bind(fn: Callable[..., Any], alpha: float, beta: float, dtype: str) -> Act:
    """``fn`` with its alpha, beta and constants of ``dtype`` bound."""
    return lambda x: fn(x, alpha, beta, lambda v: _c(v, dtype))


class _Cell:
    """One direction's weights as Relax values and the step function of its cell."""

    def __init__(
        self, ctx: LowerContext, node: Node, ops: list[Any], d: int, acts: list[Act], dt: str
    ):
        R = _R()
        self.dt = dt
        self.ctx, self.acts = ctx, acts
        self.attrs = ctx.attrs(node)
        self.hidden = int(self.attrs["hidden"])
        w, r, b, p = (ctx.emit(R.take(ops[i], _c(d, "int64"), 0)) for i in (1, 2, 3, 6))
        self.wt = ctx.emit(R.permute_dims(w, [1, 0]))  # [in, G*H]
        self.rt = ctx.emit(R.permute_dims(r, [1, 0]))  # [H, G*H]
        gh = int(static_shape(node.inputs[1])[1])
        self.wb, self.rb = self._cut(b, 0, gh, axis=0), self._cut(b, gh, 2 * gh, axis=0)
        self.p = p

    def _cut(self, x: Any, start: int, end: int, axis: int = 1) -> Any:
        return self.ctx.emit(_R().strided_slice(x, [axis], [start], [end]))

    def gate(self, x: Any) -> Any:
        clip = self.attrs["clip"]
        if clip is None:
            return x
        return _R().clip(x, -float(clip), float(clip))

    def part(self, x: Any, k: int) -> Any:
        """The k-th hidden-sized block of the gate dimension."""
        return self._cut(x, k * self.hidden, (k + 1) * self.hidden)

    def step(self, x: Any, h: Any, c: Any) -> tuple[Any, Any]:
        R, emit = _R(), self.ctx.emit
        xw = emit(R.add(R.matmul(x, self.wt), self.wb))
        hr = emit(R.matmul(h, self.rt))
        cell = self.attrs["cell"]
        if cell == "rnn":
            return emit(self.acts[0](self.gate(R.add(R.add(xw, hr), self.rb)))), c
        if cell == "gru":
            return self._gru(xw, hr, h), c
        return self._lstm(emit(R.add(R.add(xw, hr), self.rb)), c)

    def _gru(self, xw: Any, hr: Any, h: Any) -> Any:
        R, emit, f, g = _R(), self.ctx.emit, self.acts[0], self.acts[1]
        rb = [self._cut(self.rb, k * self.hidden, (k + 1) * self.hidden, 0) for k in range(3)]
        z = emit(f(self.gate(R.add(R.add(self.part(xw, 0), self.part(hr, 0)), rb[0]))))
        rr = emit(f(self.gate(R.add(R.add(self.part(xw, 1), self.part(hr, 1)), rb[1]))))
        rh = self._cut(self.rt, 2 * self.hidden, 3 * self.hidden)  # [H, H] of R^T
        if self.attrs["linear_before_reset"]:
            cand = R.add(self.part(xw, 2), R.multiply(rr, R.add(R.matmul(h, rh), rb[2])))
        else:
            cand = R.add(self.part(xw, 2), R.add(R.matmul(R.multiply(rr, h), rh), rb[2]))
        n = emit(g(self.gate(emit(cand))))
        one_minus = R.subtract(_c(1.0, self.dt), z)
        return emit(R.add(R.multiply(one_minus, n), R.multiply(z, h)))

    def _lstm(self, pre: Any, c: Any) -> tuple[Any, Any]:
        R, emit = _R(), self.ctx.emit
        f, g, hact = self.acts
        pi, po, pf = (self._cut(self.p, k * self.hidden, (k + 1) * self.hidden, 0)
                      for k in range(3))  # fmt: skip
        i = emit(f(self.gate(R.add(self.part(pre, 0), R.multiply(pi, c)))))
        if self.attrs["input_forget"]:
            fg = emit(R.subtract(_c(1.0, self.dt), i))
        else:
            fg = emit(f(self.gate(R.add(self.part(pre, 2), R.multiply(pf, c)))))
        new_c = emit(R.add(R.multiply(fg, c), R.multiply(i, g(self.gate(self.part(pre, 3))))))
        o = emit(f(self.gate(R.add(self.part(pre, 1), R.multiply(po, new_c)))))
        return emit(R.multiply(o, hact(new_c))), new_c


def _run_direction(
    ctx: LowerContext, cell: _Cell, x: Any, lens: Any, h: Any, c: Any, backward: bool,
    dims: tuple[int, int, int],
) -> tuple[Any, Any, Any]:  # fmt: skip
    """Every step of one direction: Y [seq, batch, H] and the last states."""
    from tvm import relax

    R, emit = _R(), ctx.emit
    seq, batch, hidden = dims
    flat_x = emit(R.reshape(x, (seq * batch, -1)))
    rows = _c(np.arange(batch, dtype=np.int64), "int64")
    outs = []
    for step in range(seq):
        active = emit(R.expand_dims(R.less(_c(step, "int64"), lens), [1]))  # [batch, 1]
        if backward:  # each sequence from its own last valid step
            t = R.clip(R.subtract(lens, _c(step + 1, "int64")), 0, seq - 1)
            xt = emit(R.take(flat_x, R.add(R.multiply(t, _c(batch, "int64")), rows), 0))
        else:
            xt = emit(R.take(x, _c(step, "int64"), 0))
        nh, nc = cell.step(xt, h, c)
        h, c = emit(R.where(active, nh, h)), emit(R.where(active, nc, c))
        outs.append(h)
    hs = emit(R.stack(relax.Tuple(outs), 0))  # [seq, batch, H]: the state after each step
    times = _c(np.arange(seq, dtype=np.int64)[:, None], "int64")
    # Y[t, b] is the state after step t (forward) or lens[b] - 1 - t (backward), 0 past lens.
    step_at = (
        R.subtract(R.subtract(R.expand_dims(lens, [0]), times), _c(1, "int64"))
        if backward
        else R.add(times, R.zeros((1, batch), "int64"))
    )
    step_at = emit(R.clip(step_at, 0, seq - 1))
    flat = emit(R.reshape(R.add(R.multiply(step_at, _c(batch, "int64")), rows), (seq * batch,)))
    y = emit(R.take(R.reshape(hs, (seq * batch, hidden)), flat, 0))
    valid = emit(R.reshape(R.less(times, R.expand_dims(lens, [0])), (seq * batch, 1)))
    y = emit(R.reshape(R.where(valid, y, _c(0.0, cell.dt)), (seq, batch, hidden)))
    return y, h, c


def _recurrent(node: Node, ctx: LowerContext) -> Sequence[Any]:
    from tvm import relax

    R, emit = _R(), ctx.emit
    a = ctx.attrs(node)
    ops = [ctx.arg(v) for v in node.inputs]
    # float32 for float16 and float32 operands (LLVM has no float16 exp on x86).
    dt = "float64" if node.inputs[0].dtype == "f64" else "float32"
    ops = [emit(R.astype(v, "int64" if i == 4 else dt)) for i, v in enumerate(ops)]
    x, lens, h0, c0 = ops[0], ops[4], ops[5], ops[6]
    if a["layout"]:
        x = emit(R.permute_dims(x, [1, 0, 2]))
        h0, c0 = emit(R.permute_dims(h0, [1, 0, 2])), emit(R.permute_dims(c0, [1, 0, 2]))
    seq, batch = (int(d) for d in static_shape(node.inputs[0])[:2])
    if a["layout"]:
        seq, batch = batch, seq
    dirs = int(static_shape(node.inputs[1])[0])
    hidden = int(a["hidden"])
    lens = emit(R.clip(lens, 0, seq))
    acts = _activations(a, dirs, dt)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        cell = _Cell(ctx, node, [None, ops[1], ops[2], ops[3], None, None, ops[7]], d, acts[d], dt)
        backward = a["direction"] == "reverse" or d == 1
        h = emit(R.take(h0, _c(d, "int64"), 0))
        c = emit(R.take(c0, _c(d, "int64"), 0))
        y, h, c = _run_direction(ctx, cell, x, lens, h, c, backward, (seq, batch, hidden))
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y = emit(R.stack(relax.Tuple(ys), 1))  # [seq, dirs, batch, H]
    h_last, c_last = emit(R.stack(relax.Tuple(hs), 0)), emit(R.stack(relax.Tuple(cs), 0))
    if a["layout"]:
        y = emit(R.permute_dims(y, [2, 0, 1, 3]))
        h_last = emit(R.permute_dims(h_last, [1, 0, 2]))
        c_last = emit(R.permute_dims(c_last, [1, 0, 2]))
    dt = tvm_dtype(node.outputs[0])
    return [emit(R.astype(v, dt)) for v in (y, h_last, c_last)]


RECURRENT_RULES: dict[str, Rule] = {"nn.recurrent": Rule(_recurrent)}
