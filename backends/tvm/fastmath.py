"""Vectorizable float32 exp, erf and tanh for the LLVM target.

TVM 0.27 lowers ``exp``/``erf``/``tanh`` on CPUs to scalar libm calls (``expf@PLT`` once per
element, even inside a vectorized loop), which makes softmax and GELU cost more than the
matrix products around them. These lowering rules replace them, for float32, with the
branch-free polynomial and rational approximations of Cephes (exp) and Eigen (erf, tanh),
within a few ulp of libm, which LLVM vectorizes. float64 exp and erf (the float64 islands of
quantized graphs) get Cephes' double-precision exp and Cody's erf, to an ulp or two, for the
same reason. Other dtypes keep TVM's lowering.

The rules are registered for the whole process (TVM keeps one intrinsic table) on first use
by the TVM backend; a model built by another TVM user in the same process gets them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_registered = False

# Cephes expf: exp(x) = 2^n * exp(r), r = x - n ln 2 (ln 2 split in two for exactness).
EXP_POLY = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
# Eigen's generic_fast_erf_float: erf(x) = x P(x^2) / Q(x^2) on [-4, 4].
ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
# Eigen's generic_fast_tanh_float: tanh(x) = x P(x^2) / Q(x^2) on [-7.9988, 7.9988].
TANH_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _horner(x: Any, coefficients: Sequence[float]) -> Any:
    from tvm import tirx

    acc = tirx.const(coefficients[0], "float32")
    for c in coefficients[1:]:
        acc = acc * x + tirx.const(c, "float32")
    return acc


def _clamp(x: Any, bound: float) -> Any:
    from tvm import tirx

    return tirx.min(tirx.max(x, tirx.const(-bound, "float32")), tirx.const(bound, "float32"))


def fast_exp(x: Any, lanes: str = "") -> Any:
    """``lanes``: "" for a scalar, "x16" for a 16-lane vector (the suffix of the dtype)."""
    from tvm import tirx

    f32 = "float32"
    x = _clamp(x, 88.3762626647949)
    n = tirx.floor(x * tirx.const(1.44269504088896341, f32) + tirx.const(0.5, f32))
    r = x - n * tirx.const(0.693359375, f32) - n * tirx.const(-2.12194440e-4, f32)
    z = r * r
    y = _horner(r, EXP_POLY) * z + r + tirx.const(1.0, f32)
    # 2^n from the exponent bits; n = -127 gives the bit pattern of +0 (exp of -inf is 0).
    bits = tirx.shift_left(n.astype("int32" + lanes) + 127, tirx.const(23, "int32"))
    return y * tirx.reinterpret("float32" + lanes, bits)


# Cephes exp (double): exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) on |r| <= ln 2 / 2.
EXP64_P = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
EXP64_Q = (
    3.00198505138664455042e-6,
    2.52448340349684104192e-3,
    2.27265548208155028766e-1,
    2.00000000000000000009e0,
)


def exp64(x: Any, lanes: str = "") -> Any:
    """float64 exp within an ulp or two of libm, which LLVM vectorizes (its ``llvm.exp``
    has no vector float64 form here; libm's ``exp`` is scalar)."""
    from tvm import tirx

    f64 = "float64"

    def c(v: float) -> Any:
        return tirx.const(v, f64)

    def horner(r: Any, coefficients: Sequence[float]) -> Any:
        acc = c(coefficients[0])
        for k in coefficients[1:]:
            acc = acc * r + c(k)
        return acc

    xc = tirx.min(tirx.max(x, c(-708.0)), c(709.0))
    n = tirx.floor(xc * c(1.4426950408889634073599) + c(0.5))
    r = xc - n * c(6.93145751953125e-1) - n * c(1.42860682030941723212e-6)
    rr = r * r
    p = r * horner(rr, EXP64_P)
    y = c(1.0) + c(2.0) * (p / (horner(rr, EXP64_Q) - p))
    bits = tirx.shift_left(n.astype("int64" + lanes) + 1023, tirx.const(52, "int64"))
    y = y * tirx.reinterpret(f64 + lanes, bits)
    # Below -708 the result would be subnormal: 0, as exp(-inf) of a masked softmax must be
    return y * (x >= c(-708.0)).astype(f64 + lanes)


# W. J. Cody, "Rational Chebyshev approximations for the error function" (Math. Comp. 1969),
# the coefficients of SPECFUN's CALERF: erf on |x| <= 0.46875 (A/B), erfc on (0.46875, 4]
# (C/D) and beyond 4 (P/Q), each to double precision.
ERF64_A = (3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947,
           0.185777706184603153)
ERF64_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
ERF64_C = (0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131,
           881.95222124176909, 1712.04761263407058, 2051.07837782607147, 1230.33935479799725,
           2.15311535474403846e-8)
ERF64_D = (15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019,
           3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942)
ERF64_P = (0.305326634961232344, 0.360344899949804439, 0.125781726111229246,
           0.0160837851487422766, 6.58749161529837803e-4, 0.0163153871373020978)
ERF64_Q = (2.56852019228982242, 1.87295284992346047, 0.527905102951428412,
           0.0605183413124413191, 0.00233520497626869185)


def _cody(y: Any, z: Any, num: Sequence[float], den: Sequence[float], n: int) -> tuple:
    """CALERF's loop, as (numerator, denominator): xnum = num[n] * z; xden = z; n - 1 times
    (xnum + num[i]) * y, (xden + den[i]) * y; then xnum + num[n - 1], xden + den[n - 1]."""
    from tvm import tirx

    def c(v: float) -> Any:
        return tirx.const(v, "float64")

    xnum, xden = c(num[n]) * z, z
    for i in range(n - 1):
        xnum, xden = (xnum + c(num[i])) * y, (xden + c(den[i])) * y
    return xnum + c(num[n - 1]), xden + c(den[n - 1])


def erf64(x: Any, lanes: str = "") -> Any:
    """float64 erf to about an ulp. Cody's three ranges are all evaluated (so LLVM can
    vectorize; libm's ``erf`` is scalar) as numerator/denominator pairs, one pair is selected
    per lane and divided once: a vector float64 division costs as much as the rest."""
    from tvm import tirx

    def c(v: float) -> Any:
        return tirx.const(v, "float64")

    y = tirx.min(tirx.abs(x), c(6.0))  # erf(6) is 1 in double precision
    ysq = y * y
    small_n, small_d = _cody(ysq, ysq, ERF64_A, ERF64_B, 4)  # erf = x * n / d
    mid_n, mid_d = _cody(y, y, ERF64_C, ERF64_D, 8)  # erfc = exp(-y^2) * n / d
    inv = c(1.0) / tirx.max(ysq, c(16.0))
    large_p, large_q = _cody(inv, inv, ERF64_P, ERF64_Q, 5)
    # erfc = exp(-y^2) * (1/sqrt(pi) - inv * p / q) / y = exp(-y^2) * n / d
    large_n = c(0.56418958354775628695) * large_q - inv * large_p
    large_d = large_q * y
    mid = y <= c(4.0)
    n = tirx.Select(mid, mid_n, large_n)
    d = tirx.Select(mid, mid_d, large_d)
    big_n = d - exp64(-ysq, lanes) * n  # erf = 1 - erfc = (d - exp(-y^2) n) / d
    big_n = tirx.Select(x < c(0.0), -big_n, big_n)
    small = y <= c(0.46875)
    return tirx.Select(small, x * small_n, big_n) / tirx.Select(small, small_d, d)


def fast_erf(x: Any, lanes: str = "") -> Any:
    x = _clamp(x, 4.0)
    x2 = x * x
    return x * _horner(x2, ERF_P) / _horner(x2, ERF_Q)


def fast_tanh(x: Any, lanes: str = "") -> Any:
    x = _clamp(x, 7.99881172180175781)
    x2 = x * x
    return x * _horner(x2, TANH_P) / _horner(x2, TANH_Q)


def _rule(fast: Callable[..., Any], fallback: Callable[[str, Any], Any]) -> Callable[[Any], Any]:
    def lower(call: Any) -> Any:
        (x,) = call.args
        dtype = str(call.ty)
        if dtype == "float32" or dtype.startswith("float32x"):
            return fast(x, dtype[len("float32") :])
        return fallback(dtype, x)

    return lower


def _llvm_exp(dtype: str, x: Any) -> Any:
    from tvm import tirx

    if dtype == "float64" or dtype.startswith("float64x"):
        return exp64(x, dtype[len("float64") :])
    return tirx.call_llvm_pure_intrin(dtype, "llvm.exp", 1, x)


def _erf64_or_libm(dtype: str, x: Any) -> Any:
    if dtype == "float64" or dtype.startswith("float64x"):
        return erf64(x, dtype[len("float64") :])
    return _libm("erf")(dtype, x)


def _libm(name: str) -> Callable[[str, Any], Any]:
    """libm's scalar ``name`` (``namef`` for float32). A vector is done lane by lane: a
    call of the scalar function on a vector type reads garbage (float64x4 tanh did)."""

    def call(dtype: str, x: Any) -> Any:
        from tvm import tirx

        base, _, lanes = dtype.partition("x")
        fn = name if base == "float64" else name + "f"
        if not lanes:
            return tirx.call_pure_extern(dtype, fn, x)
        parts = [tirx.call_pure_extern(base, fn, tirx.Shuffle([x], [i])) for i in range(int(lanes))]
        return tirx.Shuffle(parts, list(range(int(lanes))))

    return call


def register() -> None:
    """Install the rules for the ``llvm`` target (once per process)."""
    global _registered
    if _registered:
        return
    from tvm.tirx.op import register_intrin_lowering

    register_intrin_lowering("tirx.exp", "llvm", f=_rule(fast_exp, _llvm_exp), level=100)
    register_intrin_lowering("tirx.erf", "llvm", f=_rule(fast_erf, _erf64_or_libm), level=100)
    register_intrin_lowering("tirx.tanh", "llvm", f=_rule(fast_tanh, _libm("tanh")), level=100)
    _registered = True
