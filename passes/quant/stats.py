"""Calibration: run the float graph over sample data, collect per-tensor statistics, pick ranges.

Statistics (``TensorStats``): exact min/max and a signed histogram over ``[-2^e, 2^e)`` with
``NUM_BINS`` bins per sign, where ``2^e`` is the smallest power of two above the largest
magnitude seen. When a later batch raises the range, bins merge in aligned pairs, which gives
exactly the counts that binning everything at the final range would give: the histogram does
not depend on the order or batching of the samples. At least ``NUM_BINS / 2`` bins cover
``[0, max|x|]``.

Calibrators turn a one-sided histogram into a clipping threshold ``T`` (``scale = T / qmax``),
always a bin edge, so that statistics differing by float rounding (another engine, another
batching) give the same scales:

- ``minmax``: the largest magnitude seen, rounded up to a bin edge (nothing clips);
- ``percentile``: the ``percentile`` (99.99 by default) of ``|x|``;
- ``entropy``: TensorRT's legacy KL-divergence search: the threshold whose 128-level
  quantized distribution is closest (in KL divergence) to the clipped reference (the first
  bin, which holds the zeros of a ReLU output, is flattened to its neighbour's count);
- ``mse``: the threshold minimizing the expected squared error, rounding (``s^2 / 12`` per
  value inside the range) plus clipping (``(|x| - T)^2`` outside).

Power-of-two scales take ``k`` with ``T <= qmax * 2^k`` (smallest such), or for calibrators
other than ``minmax`` the one of ``k`` and ``k - 1`` with the smaller expected squared error.
A tensor that is 0 everywhere gets scale 1 (any scale represents it exactly), with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import CalibrationError
from compiler.interpreter import interpret
from compiler.ir.graph import Node
from compiler.ir.types import QuantParams
from compiler.numerics import int_range
from compiler.quant_config import CALIBRATORS
from passes.quant.batching import BatchedRunner

log = logging.getLogger(__name__)

NUM_BINS = 4096
_ENTROPY_BINS = 2048
_ENTROPY_LEVELS = 128


@dataclass
class TensorStats:
    """Min, max, count and an order-independent signed histogram of one tensor."""

    name: str
    count: int = 0
    min: float = math.inf
    max: float = -math.inf
    exp: int | None = None
    counts: np.ndarray = field(default_factory=lambda: np.zeros(2 * NUM_BINS, np.int64))

    def add(self, x: np.ndarray, where: str = "") -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)):
            raise CalibrationError(
                f"%{self.name}{' (' + where + ')' if where else ''} holds NaN or Inf on the "
                "calibration data: a float model that overflows cannot be quantized; check the "
                "inputs and weights"
            )
        self.count += x.size
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        peak = max(abs(self.min), abs(self.max))
        if peak > 0:
            self._grow(math.frexp(peak)[1])
        idx = np.floor(np.ldexp(x, _LOG2_BINS - (self.exp or 0))).astype(np.int64) + NUM_BINS
        self.counts += np.bincount(idx.ravel(), minlength=2 * NUM_BINS)

    def _grow(self, exp: int) -> None:
        if self.exp is None:
            self.exp = exp
        elif exp > self.exp:
            self.counts = _coarsen(self.counts, 1 << min(exp - self.exp, _LOG2_BINS))
            self.exp = exp

    def merged(self, other: TensorStats) -> TensorStats:
        """The statistics of both tensors' values together (for values sharing a scale)."""
        out = TensorStats(f"{self.name}+{other.name}", self.count + other.count)
        out.min, out.max = min(self.min, other.min), max(self.max, other.max)
        exps = [e for e in (self.exp, other.exp) if e is not None]
        out.exp = max(exps) if exps else None
        for s in (self, other):
            factor = 1 << min((out.exp or 0) - (s.exp or out.exp or 0), _LOG2_BINS)
            out.counts = out.counts + (_coarsen(s.counts, factor) if factor > 1 else s.counts)
        return out

    @property
    def width(self) -> float:
        """Width of one histogram bin."""
        return math.ldexp(1.0, (self.exp or 0) - _LOG2_BINS)

    def positive(self) -> np.ndarray:
        """Counts of x >= 0 in bins [k*width, (k+1)*width)."""
        return self.counts[NUM_BINS:]

    def negative(self) -> np.ndarray:
        """Counts of x < 0 by magnitude, in bins (k*width, (k+1)*width]."""
        return self.counts[:NUM_BINS][::-1]

    def magnitude(self) -> np.ndarray:
        return self.positive() + self.negative()

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0


_LOG2_BINS = int(math.log2(NUM_BINS))


def _coarsen(counts: np.ndarray, factor: int) -> np.ndarray:
    """Merge aligned groups of ``factor`` bins; zero stays at the center."""
    out = np.zeros_like(counts)
    if factor >= NUM_BINS:
        out[NUM_BINS - 1], out[NUM_BINS] = counts[:NUM_BINS].sum(), counts[NUM_BINS:].sum()
        return out
    blocks = counts.reshape(-1, factor).sum(axis=1)
    half = NUM_BINS // factor
    out[NUM_BINS - half : NUM_BINS + half] = blocks
    return out


def collect_stats(runner: BatchedRunner, names: Iterable[str]) -> dict[str, TensorStats]:
    """Run the float graph over every sample; statistics of the values called ``names``."""
    stats = {n: TensorStats(n) for n in names}

    def observe(node: Node, outs: list[np.ndarray]) -> None:
        for value, arr in zip(node.outputs, outs, strict=True):
            if value.name in stats:
                stats[value.name].add(arr, node.where())

    for graph, inputs in runner.chunks():
        for value, arr in zip(graph.inputs, inputs, strict=True):
            if value.name in stats:
                stats[value.name].add(arr, "graph input")
        interpret(graph, *inputs, observe=observe)
    return stats


# ---- calibrators: one-sided histogram -> threshold ------------------------------------------
Calibrator = Callable[[np.ndarray, float, float, int, float], float]


def _minmax(h: np.ndarray, width: float, peak: float, levels: int, pct: float) -> float:
    return peak


def _percentile(h: np.ndarray, width: float, peak: float, levels: int, pct: float) -> float:
    cum = np.cumsum(h)
    k = int(np.searchsorted(cum, cum[-1] * pct / 100.0))
    return min((k + 1) * width, peak)


def _entropy(h: np.ndarray, width: float, peak: float, levels: int, pct: float) -> float:
    """TensorRT legacy KL calibration (128 quantized levels over a <= 2048-bin histogram)."""
    used = int(np.flatnonzero(h)[-1]) + 1 if np.any(h) else 0
    hist = h[:used].astype(np.float64)
    factor = -(-used // _ENTROPY_BINS)
    if factor > 1:
        hist = np.pad(hist, (0, -len(hist) % factor)).reshape(-1, factor).sum(axis=1)
        width *= factor
    if len(hist) > 1:
        # The spike of exact zeros after a ReLU would dominate the divergence and pull the
        # threshold far too low; flatten it as NVIDIA's pytorch-quantization does.
        hist[0] = hist[1]
    nbins, q_levels = len(hist), _ENTROPY_LEVELS
    if nbins <= q_levels:
        return peak
    best, best_i = math.inf, nbins
    stride = max(1, (nbins - q_levels) // 512)
    for i in range(q_levels, nbins + 1, stride):
        kl = _kl_of_threshold(hist, i, q_levels)
        if kl < best:
            best, best_i = kl, i
    return min(best_i * width, peak)


def _kl_of_threshold(hist: np.ndarray, i: int, levels: int) -> float:
    sliced = hist[:i]
    p = sliced.copy()
    p[-1] += hist[i:].sum()
    nonzero = sliced != 0
    merged = i // levels
    starts = np.arange(levels) * merged
    sums = np.add.reduceat(sliced, starts)
    counts = np.add.reduceat(nonzero.astype(np.float64), starts)
    sizes = np.diff(np.append(starts, i))
    mean = np.repeat(sums / np.maximum(counts, 1), sizes)
    q = np.where(nonzero, mean, 0.0)
    p, q = _smooth(p), _smooth(q)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _smooth(d: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give empty bins a little mass (taken from the others), as MXNet/TensorRT do."""
    total = d.sum()
    if total <= 0:
        return np.full_like(d, 1.0 / len(d))
    d = d / total
    zero = d == 0
    n_zero, n_nonzero = int(zero.sum()), int((~zero).sum())
    if n_zero and n_nonzero:
        d = np.where(zero, eps, d - eps * n_zero / n_nonzero)
        d = np.maximum(d, eps * 1e-3)
    return d / d.sum()


def expected_sq_error(
    h: np.ndarray, width: float, thresholds: np.ndarray, levels: int
) -> np.ndarray:
    """Expected squared error of clipping at each threshold with ``levels`` steps up to it."""
    used = int(np.flatnonzero(h)[-1]) + 1 if np.any(h) else 1
    counts = h[:used].astype(np.float64)
    centers = (np.arange(used) + 0.5) * width
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    step = t / levels
    err = np.where(centers[None, :] > t, (centers[None, :] - t) ** 2, step**2 / 12.0)
    return (err * counts[None, :]).sum(axis=1)


def _mse(h: np.ndarray, width: float, peak: float, levels: int, pct: float) -> float:
    candidates = np.unique(np.ceil(peak * np.linspace(0.05, 1.0, 191) / width) * width)
    return float(candidates[int(np.argmin(expected_sq_error(h, width, candidates, levels)))])


CALIBRATOR_FNS: dict[str, Calibrator] = {
    "minmax": _minmax,
    "percentile": _percentile,
    "entropy": _entropy,
    "mse": _mse,
}


assert set(CALIBRATOR_FNS) == set(CALIBRATORS), "one implementation per calibrator name"


def check_calibrator(name: str) -> Calibrator:
    try:
        return CALIBRATOR_FNS[name]
    except KeyError:
        raise CalibrationError(
            f"unknown calibrator {name!r}; expected one of {', '.join(CALIBRATORS)}"
        ) from None


# ---- ranges -> quantization parameters ------------------------------------------------------
@dataclass(frozen=True)
class RangeChoice:
    """Chosen quantization of one tensor, and the share of calibration values it clips."""

    quant: QuantParams
    clipped: float


def choose_quant(
    stats: TensorStats,
    dtype: str,
    calibrator: str = "minmax",
    symmetric: bool = True,
    power_of_two: bool = False,
    percentile: float = 99.99,
) -> RangeChoice:
    """Scale and zero point for ``stats`` quantized to integer ``dtype``."""
    calib = check_calibrator(calibrator)
    if dtype != "i8" and calibrator == "entropy":
        calib = _percentile  # a 128-level KL search says nothing about 16-bit or 8-bit-unsigned
    qmin, qmax = int_range(dtype)
    if stats.count == 0 or stats.absmax == 0:
        log.warning("%%%s is 0 on all calibration data; using scale 1", stats.name)
        return RangeChoice(QuantParams.per_tensor(1.0, 0 if symmetric else max(qmin, 0)), 0.0)
    width = stats.width

    def on_grid(x: float) -> float:  # thresholds on bin edges: robust to float noise
        return math.ceil(x / width) * width

    if symmetric:
        levels = min(qmax, -qmin)
        t = calib(stats.magnitude(), width, on_grid(stats.absmax), levels, percentile)
        scale = t / levels
        if power_of_two:
            scale = _pow2_scale(stats, t, levels, calibrator != "minmax")
        quant = QuantParams.per_tensor(_safe(scale, stats.name), 0)
    else:
        hi = calib(stats.positive(), width, on_grid(max(stats.max, 0.0)), qmax - qmin, percentile)
        lo = -calib(stats.negative(), width, on_grid(max(-stats.min, 0.0)), qmax - qmin, percentile)
        scale = (hi - lo) / (qmax - qmin)
        if power_of_two:
            scale = math.ldexp(1.0, math.ceil(math.log2(scale))) if scale > 0 else scale
        scale = _safe(scale, stats.name)
        zp = int(np.clip(qmin - round(lo / scale), qmin, qmax))
        quant = QuantParams.per_tensor(scale, zp)
    return RangeChoice(quant, clip_share(stats, quant, dtype))


def _pow2_scale(stats: TensorStats, t: float, levels: int, by_mse: bool) -> float:
    k = math.ceil(math.log2(t / levels)) if t > 0 else 0
    if not by_mse:
        return math.ldexp(1.0, k)
    candidates = np.array([math.ldexp(levels, k), math.ldexp(levels, k - 1)])
    errors = expected_sq_error(stats.magnitude(), stats.width, candidates, levels)
    return math.ldexp(1.0, k if errors[0] <= errors[1] else k - 1)


def _safe(scale: float, name: str) -> float:
    if scale > 0 and math.isfinite(scale) and scale > 1e-30:
        return float(scale)
    log.warning("%%%s has a degenerate calibrated range; using scale 1", name)
    return 1.0


def clip_share(stats: TensorStats, quant: QuantParams, dtype: str) -> float:
    """Share of calibration values outside the representable range (to bin resolution)."""
    if stats.count == 0:
        return 0.0
    qmin, qmax = int_range(dtype)
    s, zp = quant.scale[0], quant.zero_point[0]
    width = stats.width
    above = math.ceil((qmax - zp + 0.5) * s / width)
    below = math.ceil((zp - qmin + 0.5) * s / width)
    clipped = stats.positive()[above:].sum() + stats.negative()[below:].sum()
    return float(clipped) / stats.count
