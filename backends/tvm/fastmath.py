"""Vectorizable float32 exp, erf and tanh for the LLVM target.

TVM 0.27 lowers ``exp``/``erf``/``tanh`` on CPUs to scalar libm calls (``expf@PLT`` once per
element, even inside a vectorized loop), which makes softmax and GELU cost more than the
matrix products around them. These lowering rules replace them, for float32, with the
branch-free polynomial and rational approximations of Cephes (exp) and Eigen (erf, tanh),
within a few ulp of libm, which LLVM vectorizes. Other dtypes keep TVM's lowering.

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

    return tirx.call_llvm_pure_intrin(dtype, "llvm.exp", 1, x)


def _libm(name: str) -> Callable[[str, Any], Any]:
    def call(dtype: str, x: Any) -> Any:
        from tvm import tirx

        if dtype == "float64":
            return tirx.call_pure_extern(dtype, name, x)
        return tirx.call_pure_extern(dtype, name + "f", x)

    return call


def register() -> None:
    """Install the rules for the ``llvm`` target (once per process)."""
    global _registered
    if _registered:
        return
    from tvm.tirx.op import register_intrin_lowering

    register_intrin_lowering("tirx.exp", "llvm", f=_rule(fast_exp, _llvm_exp), level=100)
    register_intrin_lowering("tirx.erf", "llvm", f=_rule(fast_erf, _libm("erf")), level=100)
    register_intrin_lowering("tirx.tanh", "llvm", f=_rule(fast_tanh, _libm("tanh")), level=100)
    _registered = True
