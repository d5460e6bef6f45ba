"""Interpreter, part 7: NumPy implementations of the ops in ``compiler.ir.ops_signal``.

The recurrent cells compute in float64 and round once to the input's dtype; the DFT uses
NumPy's FFT in the input's precision (complex64 for float32).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpreter_context import Context, impl
from compiler.ir.graph import Node
from compiler.ir.ops import OPS
from compiler.ir.ops_signal import CELLS

Act = Callable[[np.ndarray, float, float], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


#: ONNX activation name -> (function of x, alpha, beta; default alpha, default beta).
ACTS: dict[str, tuple[Act, float, float]] = {
    "Relu": (lambda x, a, b: np.maximum(x, 0), 0, 0),
    "Tanh": (lambda x, a, b: np.tanh(x), 0, 0),
    "Sigmoid": (lambda x, a, b: _sigmoid(x), 0, 0),
    "Affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "LeakyRelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, 0),
    "ThresholdedRelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, 0),
    "ScaledTanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "HardSigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "Elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1)), 1.0, 0),
    "Softsign": (lambda x, a, b: x / (1 + np.abs(x)), 0, 0),
    "Softplus": (lambda x, a, b: np.log1p(np.exp(x)), 0, 0),
}


def _activations(attrs: dict, dirs: int, per_dir: int) -> list[list[Callable]]:
    """Per direction, the cell's activations bound to their alpha/beta (ONNX lists the
    alphas and betas only for the activations that take them, in order)."""
    names = attrs["activations"] or list(CELLS[attrs["cell"]][1]) * dirs
    alphas, betas = list(attrs["alphas"] or []), list(attrs["betas"] or [])
    bound: list[Callable] = []
    for name in names:
        fn, a, b = ACTS[name]
        takes = name in ("Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
                         "HardSigmoid", "Elu")  # fmt: skip
        alpha = alphas.pop(0) if takes and alphas else a
        beta = betas.pop(0) if name in ("Affine", "ScaledTanh", "HardSigmoid") and betas else b
        bound.append(lambda x, f=fn, al=alpha, be=beta: f(x, al, be))
    return [bound[d * per_dir : (d + 1) * per_dir] for d in range(dirs)]


def _step(cell: str, attrs: dict, acts: list[Callable], x: np.ndarray, h: np.ndarray,
          c: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray, p: np.ndarray,
          ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One time step of one direction: the new hidden and cell states."""
    hidden = h.shape[-1]
    clip = attrs["clip"]

    def gate(v: np.ndarray) -> np.ndarray:
        return np.clip(v, -clip, clip) if clip is not None else v

    gates = len(w) // hidden
    wb, rb = b[: gates * hidden], b[gates * hidden :]
    xw = x @ w.T + wb
    if cell == "rnn":
        return acts[0](gate(xw + h @ r.T + rb)), c
    if cell == "gru":
        f, g = acts
        hr = h @ r.T
        z = f(gate(xw[:, :hidden] + hr[:, :hidden] + rb[:hidden]))
        rr = f(gate(xw[:, hidden : 2 * hidden] + hr[:, hidden : 2 * hidden]
                    + rb[hidden : 2 * hidden]))  # fmt: skip
        rh, rbh = r[2 * hidden :], rb[2 * hidden :]
        if attrs["linear_before_reset"]:
            cand = xw[:, 2 * hidden :] + rr * (h @ rh.T + rbh)
        else:
            cand = xw[:, 2 * hidden :] + (rr * h) @ rh.T + rbh
        n = g(gate(cand))
        return (1 - z) * n + z * h, c
    f, g, hact = acts
    pre = xw + h @ r.T + rb
    pi, po, pf = p[:hidden], p[hidden : 2 * hidden], p[2 * hidden :]
    i = f(gate(pre[:, :hidden] + pi * c))
    o_pre = pre[:, hidden : 2 * hidden]
    fg = 1 - i if attrs["input_forget"] else f(gate(pre[:, 2 * hidden : 3 * hidden] + pf * c))
    cell_new = fg * c + i * g(gate(pre[:, 3 * hidden :]))
    o = f(gate(o_pre + po * cell_new))
    return o * hact(cell_new), cell_new


@impl("nn.recurrent")
def _recurrent(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = OPS[node.op].with_defaults(node.attrs)
    x, w, r, b, lens, h0, c0, p = (a.astype(np.float64) if i != 4 else a
                                   for i, a in enumerate(xs))  # fmt: skip
    if attrs["layout"]:
        x, h0, c0 = x.swapaxes(0, 1), h0.swapaxes(0, 1), c0.swapaxes(0, 1)
    seq, batch = x.shape[0], x.shape[1]
    dirs = w.shape[0]
    cell = attrs["cell"]
    acts = _activations(attrs, dirs, len(CELLS[cell][1]))
    y = np.zeros((seq, dirs, batch, h0.shape[-1]))
    hs, cs = np.array(h0), np.array(c0)
    for d in range(dirs):
        backward = attrs["direction"] == "reverse" or d == 1
        h, c = h0[d], c0[d]
        for step in range(seq):
            # Backward runs start at each sequence's own last valid step.
            t = step
            active = (step < lens)[:, None]
            if backward:
                t_per = lens - 1 - step
                xt = x[np.clip(t_per, 0, seq - 1), np.arange(batch)]
            else:
                xt = x[t]
            nh, nc = _step(cell, attrs, acts[d], xt, h, c, w[d], r[d], b[d], p[d])
            h, c = np.where(active, nh, h), np.where(active, nc, c)
            if backward:
                for bi in range(batch):
                    if step < lens[bi]:
                        y[lens[bi] - 1 - step, d, bi] = h[bi]
            else:
                y[t, d] = np.where(active, h, 0)
        hs[d], cs[d] = h, c
    if attrs["layout"]:
        y, hs, cs = y.transpose(2, 0, 1, 3), hs.swapaxes(0, 1), cs.swapaxes(0, 1)
    dtype = xs[0].dtype
    return [y.astype(dtype), hs.astype(dtype), cs.astype(dtype)]


def _complex(x: np.ndarray) -> np.ndarray:
    """The signal as complex numbers in the input's precision (NumPy's FFT keeps single
    precision for complex64, as ONNX's own expected results were computed)."""
    ctype = np.complex128 if x.dtype == np.float64 else np.complex64
    if x.shape[-1] == 1:
        return x[..., 0].astype(ctype)
    return (x[..., 0] + 1j * x[..., 1].astype(np.float64)).astype(ctype)


@impl("math.dft")
def _dft(ctx: Context, node: Node, xs: list[np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    attrs = OPS[node.op].with_defaults(node.attrs)
    axis_value = int(xs[1].reshape(-1)[0]) if len(xs) > 1 else int(attrs["axis"])
    axis = axis_value % x.ndim
    signal = _complex(x)  # the real/imaginary dimension is gone: axes before it keep place
    n = attrs["length"]
    if attrs["inverse"] and attrs["onesided"]:
        length = int(n) if n is not None else 2 * (x.shape[axis] - 1)
        return [np.fft.irfft(signal, n=length, axis=axis)[..., None].astype(x.dtype)]
    length = int(n) if n is not None else x.shape[axis]
    if attrs["inverse"]:
        out = np.fft.ifft(signal, n=length, axis=axis)
    else:
        out = np.fft.fft(signal, n=length, axis=axis)
        if attrs["onesided"]:
            out = np.take(out, np.arange(length // 2 + 1), axis=axis)
    return [np.stack([out.real, out.imag], axis=-1).astype(x.dtype)]
