"""pocketfft's complex FFT (``cfftp``), the plan and the butterflies, over any scalar type.

NumPy 2's ``np.fft`` runs the C++ pocketfft (``pocketfft_hdronly.hpp``, mreineck/pocketfft
branch ``cpp``): ``ifft`` of complex64 in float32 (its true zeros hold rounding noise that
ONNX's expected outputs keep, ``test_dft_inverse``: 1.9e-6 where the exact answer is 0),
``fft`` of complex64 in float64 (its scale, the Python int 1, selects NumPy's double loop),
rounded to float32 at the end. To agree with it, this is the same algorithm, operation for
operation: factors 8s first, then 4s, a 2 moved to the front, then odd factors; the
pass2/3/4/5/7/8/11 butterflies and the generic ``passg`` for larger primes in the same order
of additions; twiddles computed in double (the long-double angle rounded as C++ does) and
rounded to the working type; the inverse's ``1/n`` applied last. Lengths pocketfft hands to
Bluestein's algorithm are not covered (``cfft_plan`` returns None).

The butterflies take complex numbers as ``(re, im)`` pairs of any scalar that has ``+``,
``-`` and unary ``-``, and multiply through ``mul``: NumPy float32 arrays here (the check
against ``np.fft``), TIR expressions in ``lower_fft`` (where ``mul`` fences each product so
that LLVM cannot contract it into an FMA, which rounds once instead of twice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Cx = tuple[Any, Any]
Mul = Callable[[Any, Any], Any]

#: The largest generic (``passg``) factor covered; its butterfly grows as its square.
MAX_GENERIC_FACTOR = 64

# The decimal literals of pocketfft's hard-coded butterflies: (cos, sin) of 2*pi*k/p.
_LITERALS: dict[int, list[tuple[str, str]]] = {
    3: [("-0.5", "0.8660254037844386467637231707529362")],
    5: [
        ("0.3090169943749474241022934171828191", "0.9510565162951535721164393333793821"),
        ("-0.8090169943749474241022934171828191", "0.5877852522924731291687059546390728"),
    ],
    7: [
        ("0.6234898018587335305250048840042398", "0.7818314824680298087084445266740578"),
        ("-0.2225209339563144042889025644967948", "0.9749279121818236070181316829939312"),
        ("-0.9009688679024191262361023195074451", "0.433883739117558120475768332848359"),
    ],
    11: [
        ("0.8412535328311811688618116489193677", "0.5406408174555975821076359543186917"),
        ("0.4154150130018864255292741492296232", "0.9096319953545183714117153830790285"),
        ("-0.1423148382732851404437926686163697", "0.9898214418809327323760920377767188"),
        ("-0.6548607339452850640569250724662936", "0.7557495743542582837740358439723444"),
        ("-0.9594929736144973898903680570663277", "0.2817325568414296977114179153466169"),
    ],
}
_HSQT2 = "0.707106781186547524400844362104849"
_PI = "3.141592653589793238462643383279502884197"


def literal(text: str, dtype: Any) -> Any:
    """A C++ ``T0(...L)`` constant: the decimal read as long double, then rounded to
    ``dtype`` (two roundings, as the compiler does)."""
    return np.dtype(dtype).type(np.longdouble(text))


# ---- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One pass: factor ``ip`` over ``l1`` groups of ``ido`` elements; ``tw[m][i]`` the
    twiddle of output ``m`` at element ``i`` (row 0 and column 0 unused: 1), ``csarr`` the
    generic pass's roots of unity."""

    ip: int
    l1: int
    ido: int
    tw: np.ndarray  # complex pairs [ip, ido, 2] of the working dtype
    csarr: np.ndarray | None  # [ip, 2] for a generic factor


@dataclass(frozen=True)
class CfftPlan:
    length: int
    stages: tuple[Stage, ...]
    dtype: np.dtype


def factorize(n: int) -> list[int]:
    """cfftp::factorize: 8s, 4s, a 2 swapped to the front, then odd divisors ascending."""
    fact: list[int] = []
    while n % 8 == 0:
        fact.append(8)
        n //= 8
    while n % 4 == 0:
        fact.append(4)
        n //= 4
    if n % 2 == 0:
        n //= 2
        fact.append(2)
        fact[0], fact[-1] = fact[-1], fact[0]
    d = 3
    while d * d <= n:
        while n % d == 0:
            fact.append(d)
            n //= d
        d += 2
    if n > 1:
        fact.append(n)
    return fact


def _largest_prime_factor(n: int) -> int:
    res = 1
    while n % 2 == 0:
        res, n = 2, n // 2
    x = 3
    while x * x <= n:
        while n % x == 0:
            res, n = x, n // x
        x += 2
    return n if n > 1 else res


def _cost_guess(n: int) -> float:
    ni, result = n, 0.0
    while n % 2 == 0:
        result += 2
        n //= 2
    x = 3
    while x * x <= n:
        while n % x == 0:
            result += x if x <= 5 else 1.1 * x
            n //= x
        x += 2
    if n > 1:
        result += n if n <= 5 else 1.1 * n
    return result * ni


def _good_size_cmplx(n: int) -> int:
    if n <= 12:
        return n
    best = 2 * n
    f11 = 1
    while f11 < best:
        f117 = f11
        while f117 < best:
            f1175 = f117
            while f1175 < best:
                x = f1175
                while x < n:
                    x *= 2
                while True:
                    if x < n:
                        x *= 3
                    elif x > n:
                        best = min(best, x)
                        if x & 1:
                            break
                        x >>= 1
                    else:
                        return n
                f1175 *= 5
            f117 *= 7
        f11 *= 11
    return best


def uses_bluestein(n: int) -> bool:
    """pocketfft_c's choice between cfftp and Bluestein's algorithm for length ``n``."""
    p = 0 if n < 50 else _largest_prime_factor(n)
    if p * p <= n:
        return False
    return 1.5 * 2 * _cost_guess(_good_size_cmplx(2 * n - 1)) < _cost_guess(n)


class _Roots:
    """sincos_2pibyn: exp(2*pi*i*k/n) from two tables in double, rounded to the dtype."""

    def __init__(self, n: int) -> None:
        self.n = n
        ang = float(np.longdouble("0.25") * np.longdouble(_PI) / np.longdouble(n))
        nval = (n + 2) // 2
        shift = 1
        while (1 << shift) * (1 << shift) < nval:
            shift += 1
        self.shift, self.mask = shift, (1 << shift) - 1
        self.v1 = [(1.0, 0.0)] + [self._calc(i, ang) for i in range(1, self.mask + 1)]
        count = (nval + self.mask) // (self.mask + 1)
        self.v2 = [(1.0, 0.0)] + [self._calc(i * (self.mask + 1), ang) for i in range(1, count)]

    def _calc(self, x: int, ang: float) -> tuple[float, float]:
        n, x = self.n, x << 3
        cos, sin = math.cos, math.sin
        if x < 4 * n:
            if x < 2 * n:
                if x < n:
                    return cos(x * ang), sin(x * ang)
                return sin((2 * n - x) * ang), cos((2 * n - x) * ang)
            x -= 2 * n
            if x < n:
                return -sin(x * ang), cos(x * ang)
            return -cos((2 * n - x) * ang), sin((2 * n - x) * ang)
        x = 8 * n - x
        if x < 2 * n:
            if x < n:
                return cos(x * ang), -sin(x * ang)
            return sin((2 * n - x) * ang), -cos((2 * n - x) * ang)
        x -= 2 * n
        if x < n:
            return -sin(x * ang), -cos(x * ang)
        return -cos((2 * n - x) * ang), -sin((2 * n - x) * ang)

    def get(self, idx: int, dtype: np.dtype) -> tuple[Any, Any]:
        mirrored = 2 * idx > self.n
        if mirrored:
            idx = self.n - idx
        (ar, ai), (br, bi) = self.v1[idx & self.mask], self.v2[idx >> self.shift]
        re, im = dtype.type(ar * br - ai * bi), dtype.type(ar * bi + ai * br)
        return re, -im if mirrored else im


def cfft_plan(n: int, dtype: Any = np.float32) -> CfftPlan | None:
    """The plan pocketfft makes for a complex FFT of length ``n`` in ``dtype``, or None
    where pocketfft uses Bluestein's algorithm or a generic factor is too large."""
    dt = np.dtype(dtype)
    if n < 1 or uses_bluestein(n):
        return None
    fact = factorize(n) if n > 1 else []
    if any(p > MAX_GENERIC_FACTOR for p in fact if p not in (2, 3, 4, 5, 7, 8, 11)):
        return None
    roots, stages, l1 = _Roots(n), [], 1
    for ip in fact:
        ido = n // (l1 * ip)
        tw = np.zeros((ip, ido, 2), dt)
        tw[..., 0] = 1
        for j in range(1, ip):
            for i in range(1, ido):
                tw[j, i] = roots.get(j * l1 * i, dt)
        csarr = None
        if ip > 11:
            csarr = np.asarray([roots.get(j * l1 * ido, dt) for j in range(ip)], dt)
        stages.append(Stage(ip, l1, ido, tw, csarr))
        l1 *= ip
    return CfftPlan(n, tuple(stages), dt)


# ---- the butterflies -------------------------------------------------------------------------
def _add(a: Cx, b: Cx) -> Cx:
    return a[0] + b[0], a[1] + b[1]


def _sub(a: Cx, b: Cx) -> Cx:
    return a[0] - b[0], a[1] - b[1]


def _rot90(a: Cx, fwd: bool) -> Cx:
    return (a[1], -a[0]) if fwd else (-a[1], a[0])


def special_mul(v: Cx, w: Cx, fwd: bool, mul: Mul) -> Cx:
    """``v * conj(w)`` forward, ``v * w`` backward, in pocketfft's order."""
    if fwd:
        return mul(v[0], w[0]) + mul(v[1], w[1]), mul(v[1], w[0]) - mul(v[0], w[1])
    return mul(v[0], w[0]) - mul(v[1], w[1]), mul(v[0], w[1]) + mul(v[1], w[0])


def _pass2(x: Sequence[Cx], fwd: bool, mul: Mul, dt: np.dtype) -> list[Cx]:
    return [_add(x[0], x[1]), _sub(x[0], x[1])]


def _pass4(x: Sequence[Cx], fwd: bool, mul: Mul, dt: np.dtype) -> list[Cx]:
    t2, t1 = _add(x[0], x[2]), _sub(x[0], x[2])
    t3, t4 = _add(x[1], x[3]), _rot90(_sub(x[1], x[3]), fwd)
    return [_add(t2, t3), _add(t1, t4), _sub(t2, t3), _sub(t1, t4)]


def _pass8(x: Sequence[Cx], fwd: bool, mul: Mul, dt: np.dtype) -> list[Cx]:
    h = literal(_HSQT2, dt)

    def rot45(a: Cx) -> Cx:
        if fwd:
            return mul(h, a[0] + a[1]), mul(h, a[1] - a[0])
        return mul(h, a[0] - a[1]), mul(h, a[1] + a[0])

    def rot135(a: Cx) -> Cx:
        if fwd:
            return mul(h, a[1] - a[0]), mul(h, -a[0] - a[1])
        return mul(h, -a[0] - a[1]), mul(h, a[0] - a[1])

    a1, a5 = _add(x[1], x[5]), _sub(x[1], x[5])
    a3, a7 = _add(x[3], x[7]), _rot90(_sub(x[3], x[7]), fwd)
    a1, a3 = _add(a1, a3), _rot90(_sub(a1, a3), fwd)
    a5, a7 = rot45(_add(a5, a7)), rot135(_sub(a5, a7))
    a0, a4 = _add(x[0], x[4]), _sub(x[0], x[4])
    a2, a6 = _add(x[2], x[6]), _rot90(_sub(x[2], x[6]), fwd)
    a0, a2 = _add(a0, a2), _sub(a0, a2)
    a4, a6 = _add(a4, a6), _sub(a4, a6)
    return [
        _add(a0, a1), _add(a4, a5), _add(a2, a3), _add(a6, a7),
        _sub(a0, a1), _sub(a4, a5), _sub(a2, a3), _sub(a6, a7),
    ]  # fmt: skip


def _pass_odd(x: Sequence[Cx], fwd: bool, mul: Mul, dt: np.dtype) -> list[Cx]:
    """pass3/5/7/11: sums and differences of mirrored inputs, each output pair from the
    hard-coded cosines (real part) and signed sines (imaginary part)."""
    p, half = len(x), len(x) // 2
    lits = _LITERALS[p]
    sign = -1 if fwd else 1

    def cos_sin(k: int) -> tuple[Any, Any]:  # exp(+-2*pi*i*k/p) from the literals
        k %= p
        c, s = lits[min(k, p - k) - 1]
        im = sign * literal(s, dt)
        return literal(c, dt), (im if k <= half else -im)

    sums = [_add(x[j], x[p - j]) for j in range(1, half + 1)]
    diffs = [_sub(x[j], x[p - j]) for j in range(1, half + 1)]
    y0 = x[0]
    for s in sums:
        y0 = _add(y0, s)
    out: list[Cx] = [y0] * p
    for u in range(1, half + 1):
        ws = [cos_sin(u * j) for j in range(1, half + 1)]
        ca = x[0]
        for (wr, _), s in zip(ws, sums, strict=True):
            ca = _add(ca, (mul(s[0], wr), mul(s[1], wr)))
        cb_i = mul(ws[0][1], diffs[0][0])
        cb_r = mul(ws[0][1], diffs[0][1])
        for (_, wi), d in zip(ws[1:], diffs[1:], strict=True):
            cb_i, cb_r = cb_i + mul(wi, d[0]), cb_r + mul(wi, d[1])
        cb = (-cb_r, cb_i)
        out[u], out[p - u] = _add(ca, cb), _sub(ca, cb)
    return out


BUTTERFLIES: dict[int, Callable[[Sequence[Cx], bool, Mul, np.dtype], list[Cx]]] = {
    2: _pass2,
    3: _pass_odd,
    4: _pass4,
    5: _pass_odd,
    7: _pass_odd,
    8: _pass8,
    11: _pass_odd,
}


def pass_generic(x: Sequence[Cx], fwd: bool, mul: Mul, csarr: np.ndarray) -> list[Cx]:
    """passg, for a prime factor above 11: the outputs of one group before its twiddles."""
    ip = len(x)
    ipph = (ip + 1) // 2
    wal = [(csarr[i, 0], -csarr[i, 1] if fwd else csarr[i, 1]) for i in range(ip)]
    ch: list[Cx] = [x[0]] * ip
    for j in range(1, ipph):
        ch[j], ch[ip - j] = _add(x[j], x[ip - j]), _sub(x[j], x[ip - j])
    cx: list[Cx] = [x[0]] * ip
    total = ch[0]
    for j in range(1, ipph):
        total = _add(total, ch[j])
    cx[0] = total
    for lo in range(1, ipph):
        lc = ip - lo
        w1, w2 = wal[lo], wal[2 * lo]
        ar = ch[0][0] + mul(w1[0], ch[1][0]) + mul(w2[0], ch[2][0])
        ai = ch[0][1] + mul(w1[0], ch[1][1]) + mul(w2[0], ch[2][1])
        br = mul(-w1[1], ch[ip - 1][1]) - mul(w2[1], ch[ip - 2][1])
        bi = mul(w1[1], ch[ip - 1][0]) + mul(w2[1], ch[ip - 2][0])
        iwal, j, jc = 2 * lo, 3, ip - 3
        while j < ipph - 1:
            iwal = iwal + lo - ip if iwal + lo > ip else iwal + lo
            xw = wal[iwal]
            iwal = iwal + lo - ip if iwal + lo > ip else iwal + lo
            xw2 = wal[iwal]
            ar = ar + (mul(ch[j][0], xw[0]) + mul(ch[j + 1][0], xw2[0]))
            ai = ai + (mul(ch[j][1], xw[0]) + mul(ch[j + 1][1], xw2[0]))
            br = br - (mul(ch[jc][1], xw[1]) + mul(ch[jc - 1][1], xw2[1]))
            bi = bi + (mul(ch[jc][0], xw[1]) + mul(ch[jc - 1][0], xw2[1]))
            j, jc = j + 2, jc - 2
        while j < ipph:
            iwal = iwal + lo - ip if iwal + lo > ip else iwal + lo
            xw = wal[iwal]
            ar, ai = ar + mul(ch[j][0], xw[0]), ai + mul(ch[j][1], xw[0])
            br, bi = br - mul(ch[jc][1], xw[1]), bi + mul(ch[jc][0], xw[1])
            j, jc = j + 1, jc - 1
        cx[lo], cx[lc] = (ar, ai), (br, bi)
    out = list(cx)
    for j in range(1, ipph):
        out[j], out[ip - j] = _add(cx[j], cx[ip - j]), _sub(cx[j], cx[ip - j])
    return out


def butterfly(stage: Stage, x: Sequence[Cx], fwd: bool, mul: Mul, dt: np.dtype) -> list[Cx]:
    """The ``stage.ip`` outputs of one group of a pass, before the twiddles."""
    if stage.csarr is not None:
        return pass_generic(x, fwd, mul, stage.csarr)
    return BUTTERFLIES[stage.ip](x, fwd, mul, dt)


def _np_mul(a: Any, b: Any) -> Any:
    return a * b


def run_numpy(plan: CfftPlan, re: np.ndarray, im: np.ndarray, fwd: bool, fct: Any = 1) -> Cx:
    """The plan on rows ``[batch, n]`` of the plan's dtype, in NumPy, vectorized over the
    batch and the groups: the check that the port agrees with ``np.fft``."""
    dt, n = plan.dtype, plan.length
    batch = re.shape[0]
    for st in plan.stages:
        cr = re.reshape(batch, st.l1, st.ip, st.ido)
        ci = im.reshape(batch, st.l1, st.ip, st.ido)
        ys = butterfly(st, [(cr[:, :, q], ci[:, :, q]) for q in range(st.ip)], fwd, _np_mul, dt)
        out_r, out_i = np.empty((2, batch, st.ip, st.l1, st.ido), dt)
        for m, (yr, yi) in enumerate(ys):
            out_r[:, m], out_i[:, m] = yr, yi
            if m and st.ido > 1:
                v = (yr[..., 1:], yi[..., 1:])
                w = (st.tw[m, 1:, 0], st.tw[m, 1:, 1])
                out_r[:, m, :, 1:], out_i[:, m, :, 1:] = special_mul(v, w, fwd, _np_mul)
        re, im = out_r.reshape(batch, n), out_i.reshape(batch, n)
    if fct != 1:
        re, im = re * dt.type(fct), im * dt.type(fct)
    return re, im
