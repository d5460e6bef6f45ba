"""pocketfft's complex FFT, ported (``backends.tvm.fft_plan``) and lowered to TVM
(``backends.tvm.lower_fft``), against ``np.fft``: bit for bit.

The port runs in NumPy on a sweep of lengths (every factor: 2, 3, 4, 5, 7, 8, 11 and the
generic pass for primes 13..61), forward and inverse, float32 and float64; one TVM build then
runs three DFTs through the cpu target (factors 2, 5, 8 and the generic 13; real and complex
input; forward and inverse; zero-padded), and its float32 results equal the interpreter's
(which calls ``np.fft``) exactly, the ONNX conformance case among them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from backends.tvm.fft_plan import cfft_plan, factorize, run_numpy, uses_bluestein
from compiler.interpreter import interpret
from compiler.ir.parser import parse
from compiler.ir.verifier import verify
from compiler.target import load_target

RNG = np.random.default_rng(15)
SWEEP = [*range(1, 65), 77, 100, 121, 128, 169, 1000]


def _port(n: int, z: np.ndarray, fwd: bool) -> np.ndarray:
    """The port as np.fft runs it: ifft in the signal's precision, fft in float64 (NumPy's
    double loop) rounded to the signal's precision."""
    real = z.real.dtype
    work = np.dtype(np.float64) if fwd else real
    plan = cfft_plan(n, work)
    assert plan is not None, n
    fct = 1 if fwd else work.type(1) / work.type(n)
    re, im = run_numpy(plan, z.real.astype(work), z.imag.astype(work), fwd, fct)
    out = np.empty_like(z)
    out.real, out.imag = re, im
    return out


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_port_equals_numpy_fft_bit_for_bit(dtype: type) -> None:
    for n in SWEEP:
        z = (RNG.standard_normal((4, n)) + 1j * RNG.standard_normal((4, n))).astype(dtype)
        for fwd, numpy_fft in ((True, np.fft.fft), (False, np.fft.ifft)):
            got, want = _port(n, z, fwd), numpy_fft(z, axis=-1)
            assert got.dtype == want.dtype
            same = np.array_equal(got.real, want.real) and np.array_equal(got.imag, want.imag)
            assert same, (n, factorize(n), fwd, float(np.abs(got - want).max()))


def test_plan_factors_and_bluestein_lengths() -> None:
    # pocketfft: 8s first, then 4s, a 2 moved to the front, then odd factors ascending.
    assert factorize(1000) == [8, 5, 5, 5]
    assert factorize(96) == [8, 4, 3]
    assert factorize(24) == [8, 3] and factorize(12) == [4, 3] and factorize(90) == [2, 3, 3, 5]
    assert factorize(2 * 8 * 7) == [2, 8, 7]
    # Long prime lengths go to Bluestein in pocketfft: not covered, the DFT matrix stays.
    assert uses_bluestein(1009) and cfft_plan(1009) is None
    assert not uses_bluestein(61) and cfft_plan(61) is not None


GRAPH = """
graph @ffts(%a: f32[1,10,10,2], %b: f32[2,12,1], %c: f32[13,3,2]) -> (f32[1,10,10,2], f32[2,16,2], f32[13,3,2]) {
  %fa: f32[1,10,10,2] = math.dft(%a) {axis=1, inverse=true}
  %fb: f32[2,16,2] = math.dft(%b) {axis=1, length=16}
  %fc: f32[13,3,2] = math.dft(%c) {axis=0, inverse=true}
  return %fa, %fb, %fc
}
"""  # noqa: E501


@pytest.mark.tvm
def test_cpu_dft_equals_numpy_fft_bit_for_bit() -> None:
    from backends.tvm import TvmBackend

    graph = parse(GRAPH)
    verify(graph)
    backend, target = TvmBackend(), load_target("cpu")
    assert backend.unsupported(graph, target) == []
    art = backend.compile(graph, target, Path(tempfile.mkdtemp()), {})
    # The ONNX conformance case: the inverse transform of a complex ramp along axis 1.
    ramp = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    inputs = [np.stack([ramp, np.zeros_like(ramp)], axis=-1)]
    for v in graph.inputs[1:]:
        dtype = np.float64 if v.dtype == "f64" else np.float32
        inputs.append(RNG.standard_normal([int(d) for d in v.type.shape]).astype(dtype))
    got, want = art.run(*inputs), interpret(graph, *inputs)
    for out, a, b in zip(graph.outputs, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, out.name
        assert np.array_equal(a, b), (out.name, float(np.abs(a - b).max()))
