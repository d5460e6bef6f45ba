"""Op table, part 7: sequence and signal ops of the ONNX standard (conformance coverage).

The recurrent cells (RNN, GRU, LSTM) as one op over the whole sequence, and the discrete
Fourier transform (DFT). Their optional ONNX operands are always present here (the
frontend fills zeros and full lengths), so the operand lists stay positional.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compiler.errors import ShapeError
from compiler.ir.ops import REQUIRED, norm_axis, register_op, require_float
from compiler.ir.types import Dim, TensorType

#: Cell -> gates per direction and the activations it applies (ONNX defaults).
CELLS: dict[str, tuple[int, tuple[str, ...]]] = {
    "rnn": (1, ("Tanh",)),
    "gru": (3, ("Sigmoid", "Tanh")),
    "lstm": (4, ("Sigmoid", "Tanh", "Tanh")),
}
ACTIVATIONS = (
    "Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
    "HardSigmoid", "Elu", "Softsign", "Softplus",
)  # fmt: skip
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _static(t: TensorType, what: str) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in t.shape):
        raise ShapeError(f"{what} needs a static shape, got {t}")
    return tuple(int(d) for d in t.shape)


@register_op("nn.recurrent", "x w r b seq_lens h0 c0 p", {
    "cell": REQUIRED, "hidden": REQUIRED, "direction": "forward", "layout": 0,
    "activations": None, "alphas": None, "betas": None, "clip": None,
    "linear_before_reset": False, "input_forget": False,
}, outputs=3)  # fmt: skip
def _recurrent(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX RNN/GRU/LSTM over the whole sequence: ``x`` [seq, batch, in] (``layout`` 1:
    [batch, seq, in]), weights ``w`` [dirs, gates*hidden, in], ``r`` [dirs, gates*hidden,
    hidden], biases ``b`` [dirs, 2*gates*hidden], ``seq_lens`` [batch] (steps past a
    sequence's length keep its state and give zeros), initial states ``h0``/``c0`` and
    LSTM peepholes ``p`` [dirs, 3*hidden]. Outputs: every step's hidden state Y
    [seq, dirs, batch, hidden], the last hidden state and the last cell state (LSTM; zeros
    for the others) [dirs, batch, hidden] (``layout`` 1: batch first)."""
    x = types[0]
    require_float(x)
    cell, hidden = attrs["cell"], int(attrs["hidden"])
    if cell not in CELLS or attrs["direction"] not in DIRECTIONS or hidden < 1:
        raise ShapeError(f"recurrent cell {cell!r}, direction {attrs['direction']!r}")
    gates, defaults = CELLS[cell]
    dirs = DIRECTIONS[attrs["direction"]]
    if x.rank != 3 or attrs["layout"] not in (0, 1):
        raise ShapeError(f"recurrent input must be rank 3, got {x}")
    seq, batch = (x.shape[0], x.shape[1]) if attrs["layout"] == 0 else (x.shape[1], x.shape[0])
    want = {
        1: (dirs, gates * hidden, x.shape[2]), 2: (dirs, gates * hidden, hidden),
        3: (dirs, 2 * gates * hidden), 4: (batch,), 5: (dirs, batch, hidden),
        6: (dirs, batch, hidden), 7: (dirs, 3 * hidden),
    }  # fmt: skip
    if attrs["layout"]:
        want[5] = want[6] = (batch, dirs, hidden)
    for i, shape in want.items():
        if tuple(types[i].shape) != shape or (i != 4 and types[i].dtype != x.dtype):
            raise ShapeError(f"recurrent operand {i} is {types[i]}, expected shape {shape}")
    if types[4].dtype not in ("i32", "i64"):
        raise ShapeError(f"recurrent seq_lens must be integers, got {types[4]}")
    acts = attrs["activations"] or list(defaults) * dirs
    if len(acts) != len(defaults) * dirs or any(a not in ACTIVATIONS for a in acts):
        raise ShapeError(f"recurrent activations {acts} (expected {len(defaults) * dirs})")
    y: tuple[Dim, ...] = (seq, dirs, batch, hidden) if attrs["layout"] == 0 else (
        batch, seq, dirs, hidden)  # fmt: skip
    state = types[5].shape
    return [TensorType(x.dtype, y), TensorType(x.dtype, state), TensorType(x.dtype, state)]


@register_op(
    "math.dft", "x axis?", {"axis": 1, "inverse": False, "onesided": False, "length": None}
)
def _dft(types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """The discrete Fourier transform of ``x`` [..., 1 (real) or 2 (complex)] along
    ``axis`` (the attribute, or a scalar operand known only at runtime; not the last
    dimension), zero-padded or cut to ``length``. ``onesided``: a forward transform keeps
    the first ``length // 2 + 1`` bins; an inverse one takes those bins and gives the real
    signal [..., 1] (of ``length``, default ``2 * (bins - 1)``). ``inverse`` divides by the
    length. Otherwise the result is complex, [..., 2]."""
    x = types[0]
    require_float(x)
    if x.rank < 2 or x.shape[-1] not in (1, 2):
        raise ShapeError(f"dft input must end in a dimension of 1 or 2, got {x}")
    length = attrs["length"]
    if length is not None and int(length) < 1:
        raise ShapeError(f"dft length {length}")
    inverse, onesided = bool(attrs["inverse"]), bool(attrs["onesided"])
    last = 1 if inverse and onesided else 2
    if len(types) > 1:  # the axis is runtime data: which dimension changes is unknown
        if types[1].dtype not in ("i32", "i64") or types[1].rank > 1:
            raise ShapeError(f"dft axis must be an integer scalar, got {types[1]}")
        if not onesided and length is None:
            return [TensorType(x.dtype, (*x.shape[:-1], 2))]
        return [TensorType(x.dtype, (*(f"{d}'" for d in x.shape[:-1]), last))]
    axis = norm_axis(int(attrs["axis"]), x.rank)
    if axis == x.rank - 1:
        raise ShapeError("dft axis cannot be the last (real/imaginary) dimension")
    n = x.shape[axis]
    size: Dim = n if length is None else int(length)
    if onesided and isinstance(n, int):
        if inverse:
            size = 2 * (n - 1) if length is None else int(length)
        else:
            size = size // 2 + 1 if isinstance(size, int) else f"{size}'"
    elif onesided:
        size = f"{n}'"
    if isinstance(size, int) and size < 1:
        raise ShapeError(f"dft of {n} bins")
    shape = list(x.shape)
    shape[axis], shape[-1] = size, last
    return [TensorType(x.dtype, tuple(shape))]
