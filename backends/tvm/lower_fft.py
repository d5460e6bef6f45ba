"""The DFT on the CPU target as pocketfft's FFT, so that it agrees with ``np.fft``.

ONNX's expected DFT results (and the interpreter's) are NumPy's pocketfft in the signal's
own precision; a float64 DFT matrix gives the exact answer instead, which differs from them by
float32 rounding noise where the true value is 0 (more than the conformance atol of 1e-7).
``fft_along`` runs the plan of ``fft_plan`` as one TE stage per pass: each output element
evaluates its group's butterfly with the same additions in the same order, so the results are
pocketfft's bit for bit. Every product is wrapped in ``llvm.arithmetic.fence``: TVM builds
with ``FPOpFusion::Fast``, under which LLVM would contract a product and its sum into an FMA
(one rounding instead of pocketfft's two). O(n log n) work, not a DFT matrix.

Covered: float32/float64 complex transforms (forward or inverse, real or complex input, cut
or zero-padded to ``length``) of lengths pocketfft runs with ``cfftp``. Not covered (the
caller keeps its DFT matrix): one-sided transforms (``rfft``/``irfft``, pocketfft's ``rfftp``
is not ported), Bluestein lengths, other dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.tvm.fft_plan import CfftPlan, Cx, Mul, Stage, butterfly, cfft_plan, special_mul
from backends.tvm.lower import LowerContext, tvm_const

#: IR dtypes computed in their own precision, as NumPy's FFT does.
FFT_DTYPES = {"f32": np.float32, "f64": np.float64}


def fft_covers(dtype: str, attrs: dict[str, Any], n_in: int) -> CfftPlan | None:
    """The plan for a DFT of ``n_in`` samples of ``dtype`` with these attributes, or None
    where the DFT matrix stays."""
    if dtype not in FFT_DTYPES or attrs["onesided"]:
        return None
    size = int(attrs["length"]) if attrs["length"] is not None else n_in
    # np.fft.fft passes its scale as the Python int 1, for which NumPy picks the float64
    # loop: a forward float32 transform is computed in float64 and rounded once at the end.
    # np.fft.ifft's scale is float32(1/n), so the inverse runs in float32.
    work = FFT_DTYPES[dtype] if attrs["inverse"] else np.float64
    return cfft_plan(size, work)


def _fenced_mul(dtype: str) -> Mul:
    """``a * b`` that LLVM cannot fuse into a following add (see the module docstring)."""
    from tvm import tirx

    def mul(a: Any, b: Any) -> Any:
        # The butterflies' constants are NumPy scalars; the data are TIR expressions.
        a, b = (tirx.const(float(v), dtype) if isinstance(v, np.generic) else v for v in (a, b))
        return tirx.call_llvm_pure_intrin(dtype, "llvm.arithmetic.fence", a * b)

    return mul


def _pick(m: Any, values: list[Any]) -> Any:
    """``values[m]`` for a runtime ``m``: a lazy chain, only the chosen one is evaluated."""
    from tvm import tirx

    out = values[-1]
    for q in range(len(values) - 2, -1, -1):
        out = tirx.if_then_else(m == q, values[q], out)
    return out


def _stage_te(data: Any, st: Stage, tw: Any, fwd: bool, dt: np.dtype) -> Any:
    """One pass: ``[batch, n, 2]`` -> ``[batch, n, 2]``, input groups ``[l1][ip][ido]``,
    outputs ``[ip][l1][ido]`` (pocketfft's CC and CH layouts)."""
    from tvm import te, tirx

    ip, l1, ido = st.ip, st.l1, st.ido

    def body(b: Any, j: Any, c: Any) -> Any:
        i, k, m = j % ido, (j // ido) % l1, j // (ido * l1)
        at = [i + ido * (q + ip * k) for q in range(ip)]
        xs: list[Cx] = [(data(b, a, 0), data(b, a, 1)) for a in at]
        mul = _fenced_mul(str(dt))
        ys = butterfly(st, xs, fwd, mul, dt)
        y = (_pick(m, [v[0] for v in ys]), _pick(m, [v[1] for v in ys]))
        if tw is not None:  # ido > 1: outputs past the first, elements past the first
            turned = special_mul(y, (tw(m, i, 0), tw(m, i, 1)), fwd, mul)
            plain = tirx.any(i == 0, m == 0)
            y = (tirx.if_then_else(plain, y[0], turned[0]),
                 tirx.if_then_else(plain, y[1], turned[1]))  # fmt: skip
        return tirx.if_then_else(c == 0, y[0], y[1])

    return te.compute(data.shape, body, name=f"fft_pass{ip}")


def _input_te(x: Any, n: int, dtype: str) -> Any:
    """``x`` [batch, n_in, 1 or 2] cut or zero-padded to [batch, n, 2] (a real signal gets an
    imaginary part of zeros): a buffer, so that no constant zero reaches the butterflies."""
    from tvm import te, tirx

    batch, n_in, parts = (int(d) for d in x.shape)
    zero = tirx.const(0, dtype)

    def load(b: Any, j: Any, c: Any) -> Any:
        value = x(b, tirx.min(j, n_in - 1), tirx.min(c, parts - 1))
        if n <= n_in and parts == 2:
            return value
        return tirx.if_then_else(tirx.all(j < n_in, c < parts), value, zero)

    return te.compute((batch, n, 2), load, name="fft_in")


def fft_along(
    ctx: LowerContext, data: Any, shape: tuple[int, ...], axis: int, attrs: dict[str, Any],
    plan: CfftPlan, out_dtype: str,
) -> Any:  # fmt: skip
    """The transform of ``data`` (Relax, ``shape`` [..., n, 1 or 2]) along ``axis``: moved
    next to last, flattened to [batch, n, parts], transformed in the plan's dtype, moved back
    and rounded to ``out_dtype``."""
    R = _relax_op()
    rank = len(shape)
    perm = [d for d in range(rank - 1) if d != axis] + [axis, rank - 1]
    moved = ctx.emit(R.permute_dims(data, perm))
    outer = [shape[d] for d in perm[:-2]]
    batch = int(np.prod(outer, dtype=np.int64))
    dtype = str(plan.dtype)
    flat = ctx.emit(R.astype(R.reshape(moved, (batch, shape[axis], shape[-1])), dtype))
    fwd = not attrs["inverse"]
    fct = 1.0 if fwd else float(plan.dtype.type(1) / plan.dtype.type(plan.length))
    # One opaque kernel a pass: inlined into the next, each pass would carry all of the
    # previous one's butterflies once per operand (exponential in the number of passes).
    y = ctx.emit_te(_input_te, flat, plan.length, dtype, opaque=True)
    for st in plan.stages:
        tw = tvm_const(st.tw, dtype) if st.ido > 1 else None
        y = ctx.emit_te(_stage_te, y, st, tw, fwd, plan.dtype, name=f"fft{st.ip}", opaque=True)
    if fct != 1:
        y = ctx.emit(R.multiply(y, tvm_const(plan.dtype.type(fct), dtype)))
    y = ctx.emit(R.astype(R.reshape(y, (*outer, plan.length, 2)), out_dtype))
    return ctx.emit(R.permute_dims(y, [perm.index(d) for d in range(rank)]))


def _relax_op() -> Any:
    from tvm import relax

    return relax.op
