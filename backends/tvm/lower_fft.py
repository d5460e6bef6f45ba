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

from backends.tvm.fft_plan import CfftPlan, Cx, Stage, butterfly, cfft_plan, special_mul
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


def _fenced_mul(a: Any, b: Any) -> Any:
    """``a * b`` that LLVM cannot fuse into a following add (see the module docstring)."""
    from tvm import tirx

    dtype = a.dtype if isinstance(a, tirx.PrimExpr) else b.dtype
    a, b = (v if isinstance(v, tirx.PrimExpr) else tirx.const(float(v), dtype) for v in (a, b))
    return tirx.call_llvm_pure_intrin(dtype, "llvm.arithmetic.fence", a * b)


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
        ys = butterfly(st, xs, fwd, _fenced_mul, dt)
        y = (_pick(m, [v[0] for v in ys]), _pick(m, [v[1] for v in ys]))
        if tw is not None:  # ido > 1: outputs past the first, elements past the first
            turned = special_mul(y, (tw(m, i, 0), tw(m, i, 1)), fwd, _fenced_mul)
            plain = tirx.any(i == 0, m == 0)
            y = (tirx.if_then_else(plain, y[0], turned[0]),
                 tirx.if_then_else(plain, y[1], turned[1]))  # fmt: skip
        return tirx.if_then_else(c == 0, y[0], y[1])

    return te.compute(data.shape, body, name=f"fft_pass{ip}")


def fft_te(x: Any, *tws: Any, plan: CfftPlan, fwd: bool, fct: float) -> Any:
    """``x`` [batch, n_in, 1 or 2] -> its transform [batch, plan.length, 2]: the input cut or
    zero-padded (an imaginary part of zeros for a real signal), the passes, the scale."""
    from tvm import te, tirx

    batch, n_in, parts = (int(d) for d in x.shape)
    n, dt = plan.length, plan.dtype
    zero = tirx.const(0, str(dt))

    def load(b: Any, j: Any, c: Any) -> Any:
        value = x(b, tirx.min(j, n_in - 1), tirx.min(c, parts - 1))
        inside = tirx.all(j < n_in, c < parts) if n > n_in or parts == 1 else None
        return value if inside is None else tirx.if_then_else(inside, value, zero)

    data = te.compute((batch, n, 2), load, name="fft_in")
    for st, tw in zip(plan.stages, _stage_twiddles(plan, tws), strict=True):
        data = _stage_te(data, st, tw, fwd, dt)
    if fct != 1:
        scale = tirx.const(float(dt.type(fct)), str(dt))
        data = te.compute(data.shape, lambda *i: data(*i) * scale, name="fft_scale")
    return data


def _stage_twiddles(plan: CfftPlan, tws: tuple[Any, ...]) -> list[Any]:
    """The twiddle tensors in stage order, None where a stage has none (ido == 1)."""
    it = iter(tws)
    return [next(it) if st.ido > 1 else None for st in plan.stages]


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
    tws = [tvm_const(st.tw, dtype) for st in plan.stages if st.ido > 1]
    fwd = not attrs["inverse"]
    fct = 1.0 if fwd else float(plan.dtype.type(1) / plan.dtype.type(plan.length))
    y = ctx.emit_te(fft_te, flat, *tws, plan=plan, fwd=fwd, fct=fct, name="fft", opaque=True)
    y = ctx.emit(R.astype(R.reshape(y, (*outer, plan.length, 2)), out_dtype))
    return ctx.emit(R.permute_dims(y, [perm.index(d) for d in range(rank)]))


def _relax_op() -> Any:
    from tvm import relax

    return relax.op
