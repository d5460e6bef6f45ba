"""The hand-written HLS kernels (backends/hls/include/tapeout/*.h) against NumPy, bit for bit.

kernel_harness.cpp instantiates every kernel for a few fixed configurations behind extern "C"
wrappers; this file compiles it once with g++ (-Wall -Wextra -Werror), calls the wrappers
through ctypes and compares with references built on compiler/numerics.py with zero
tolerance, on random data salted with the extreme values that force saturation and
accumulator wrap-around. The references of the formulas the headers define (residual add,
integer softmax) are the executable spec the interpreter must match. A second build with
-fsanitize=address,undefined runs a stress self-test and must agree with the -O2 build.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

try:
    from compiler import numerics
except ImportError:  # compiler/ not importable as a package: load the file itself
    _path = Path(__file__).resolve().parents[3] / "compiler" / "numerics.py"
    _spec = importlib.util.spec_from_file_location("tapeout_numerics", _path)
    assert _spec is not None and _spec.loader is not None
    numerics = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(numerics)

ROOT = Path(__file__).resolve().parents[3]
INCLUDE = ROOT / "backends" / "hls" / "include"
HEADERS = sorted((INCLUDE / "tapeout").glob("*.h"))
HARNESS = Path(__file__).resolve().parent / "kernel_harness.cpp"
CXX = shutil.which("g++")
STRICT = ["-std=c++14", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer", "-DTAPEOUT_HARNESS_MAIN"]

pytestmark = pytest.mark.skipif(CXX is None, reason="needs g++ to compile the HLS kernels")

DTYPE = {np.int8: "i8", np.uint8: "u8", np.int16: "i16", np.int32: "i32", np.int64: "i64"}

# ctypes signatures: p = pointer to a NumPy array, i = int32, f = float; return int32 if "->i".
SIGNATURES = {
    **{f"tq_requantize_{t}": "pipppp" for t in ("i8", "u8", "i16", "i32", "i64")},
    "tq_requantize_pow2_i8": "pippp",
    **{f"tq_wrap_{t}": "pip" for t in ("i8", "i16", "i32", "i64")},
    **{f"tq_requantize_tensor_{n}": "ppippi" for n in ("last", "mid", "pt")},
    "tq_quantize_i8": "ppfi", "tq_quantize_u8": "ppfi", "tq_dequantize_i8": "ppfi",
    **{f"tq_dense_d{n}": "ppppppiiii" for n in (1, 2, 3, 4)},
    "tq_dense_residual_d1": "pppppppiiiipp",
    **{f"tq_conv_c{n}": "ppppppiiii" for n in (1, 2, 3, 4, 5)},
    "tq_conv_residual_c4": "pppppppiiiipp", "tq_conv_residual_c5": "pppppppiiiipp",
    "tq_max_pool_p1": "pp", "tq_max_pool_p2": "pp",
    **{f"tq_avg_pool_p{n}": "ppiiii" for n in (1, 2, 3, 4)},
    "tq_global_avg_pool_a": "ppiiii", "tq_global_avg_pool_b": "ppiiii",
    "tq_global_max_pool_a": "pp", "tq_global_max_pool_u8": "pp",
    "tq_add_i8_acc64": "pppp", "tq_add_i8_acc32": "pppp", "tq_add_u8_i8_i16": "pppp",
    "tq_relu_i8": "ppi", "tq_relu_u8": "ppi", "tq_clip_i8": "ppii",
    "tq_lut_i8": "ppp", "tq_lut_u8_i16": "ppp",
    "tq_argmax_i8": "p->i", "tq_argmax_i16": "p->i", "tq_argmax_rows": "pp",
    "tq_softmax_i8_u8": "pppiii", "tq_softmax_u8_i8": "pppiii",
    "tq_concat2": "ppp", "tq_concat3": "pppp", "tq_flatten_nchw": "pp",
    "tq_nchw_to_nhwc": "pp", "tq_copy": "pp", "tq_stream_roundtrip": "pp->i",
    "tq_selftest": "pi->i",
}
_CTYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int32, "f": ctypes.c_float}


class Kernels:
    """The compiled harness: ``kernels.tq_dense_d1(x, y, ...)`` with NumPy arrays and ints."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        for name, sig in SIGNATURES.items():
            args, _, ret = sig.partition("->")
            fn = getattr(self._lib, name)
            fn.argtypes = [_CTYPES[c] for c in args]
            fn.restype = ctypes.c_int32 if ret else None

    def __getattr__(self, name: str):
        fn = getattr(self._lib, name)

        def call(*args):
            converted = []
            for a in args:
                if isinstance(a, np.ndarray):
                    assert a.flags.c_contiguous, f"{name}: pass C-contiguous arrays"
                    converted.append(a.ctypes.data)
                else:
                    converted.append(a)
            return fn(*converted)

        return call


def _compile(args: list[str], out: Path) -> subprocess.Popen:
    return subprocess.Popen([CXX, *args, "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"g++ failed:\n{err}"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Starts both builds at once (2 CI cores); each consumer waits for its own."""
    out = tmp_path_factory.mktemp("hls_kernels")
    so, exe = out / "kernels.so", out / "kernels_sanitized"
    return {
        "so": (_compile(["-O2", *STRICT, "-shared", "-fPIC", str(HARNESS)], so), so),
        "sanitized": (_compile([*SANITIZE, *STRICT, str(HARNESS)], exe), exe),
    }


@pytest.fixture(scope="module")
def k(builds) -> Kernels:
    proc, path = builds["so"]
    _wait(proc)
    return Kernels(path)


# ---- data -----------------------------------------------------------------------------------
def rand_int(rng, dtype, shape, extremes: float = 0.25) -> np.ndarray:
    """Uniform integers of ``dtype``, a fraction of them set to its minimum or maximum."""
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64)
    mask = rng.random(shape) < extremes
    x[mask] = np.where(rng.random(int(mask.sum())) < 0.5, info.min, info.max)
    return x.astype(dtype)


def rand_scale_params(rng, n: int, lo: float, hi: float, pow2: bool = False):
    """``n`` (multiplier, shift) pairs of random real scales in [2^lo, 2^hi]."""
    if pow2:
        exps = rng.integers(int(-hi), int(-lo) + 1, size=n)
        return np.ones(n, np.int32), exps.astype(np.int32)
    pairs = [numerics.quantize_multiplier(2.0 ** rng.uniform(lo, hi)) for _ in range(n)]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def rand_zp(rng, dtype) -> int:
    info = np.iinfo(dtype)
    return int(rng.choice([info.min, 0, info.max, rng.integers(info.min, int(info.max) + 1)]))


def fit_requant(rng, acc, out_t, n: int, pow2: bool = False):
    """(multiplier, shift) arrays that map ``acc``'s spread onto ``out_t``'s range, times a
    random factor in [1/4, 4] so that some outputs saturate and most do not."""
    info = np.iinfo(out_t)
    spread = float(np.std(np.asarray(acc, np.float64))) + 1.0
    target = (float(info.max) - float(info.min)) / 4 / spread
    lo = math.log2(target) - 2
    return rand_scale_params(rng, n, lo, lo + 4, pow2)


def rand_clip(rng, dtype, zp: int) -> tuple[int, int]:
    """Bounds of a fused activation: none, relu, or a random clip inside the type."""
    info = np.iinfo(dtype)
    kind = rng.integers(3)
    if kind == 0:
        return int(info.min), int(info.max)
    if kind == 1:
        return zp, int(info.max)
    lo, hi = sorted(rng.integers(info.min, int(info.max) + 1, size=2))
    return int(lo), int(hi)


# ---- references (the executable spec of each header) ----------------------------------------
def clip_ref(y, lo: int, hi: int, dtype) -> np.ndarray:
    """tapeout::clip: min(max(y, lo), hi), saturated to ``dtype``."""
    v = np.minimum(np.maximum(np.asarray(y, np.int64), lo), hi)
    return numerics.saturate(v, DTYPE[dtype])


def rescale(v, lshift: int, mult) -> np.ndarray:
    """``(v << lshift) * mult`` in int64, wrapping like the kernels' uint64 arithmetic."""
    return np.left_shift(np.asarray(v, np.int64), lshift) * np.asarray(mult, np.int64)


def layer_acc(acc, bias, acc_t, per_channel, residual=None, rp=None, res_mult=None):
    """layer.h up to the requantize: bias, optional residual (add.h's formula), wrap."""
    acc = np.asarray(acc, np.int64) + bias.astype(np.int64)
    if residual is not None:
        acc_lshift, acc_mult, res_zp, res_lshift = rp
        rm = res_mult if per_channel else res_mult[0]
        acc = rescale(acc, acc_lshift, acc_mult) + rescale(
            residual.astype(np.int64) - res_zp, res_lshift, rm)
    return numerics.wrap(acc, DTYPE[acc_t])


def layer_out(acc, m, s, out_zp, out_t, lo, hi, per_channel) -> np.ndarray:
    """layer.h after the accumulator: requantize (per channel along the last axis), clip."""
    if per_channel:
        y = numerics.requantize(acc, m, s, out_zp, DTYPE[out_t], axis=-1)
    else:
        y = numerics.requantize(acc, m[0], s[0], out_zp, DTYPE[out_t])
    return clip_ref(y, lo, hi, out_t)


def conv_sum_ref(x_nchw, w_oihw, in_zp, stride, pads, dil, groups) -> np.ndarray:
    """sum (x - in_zp) * w in the IR's layouts (NCHW, OIHW), as int64 [O, OH, OW]."""
    (_, _, h, w_), (o, cig, kh, kw) = x_nchw.shape, w_oihw.shape
    top, left, bottom, right = pads
    xp = np.pad(x_nchw[0].astype(np.int64) - in_zp, ((0, 0), (top, bottom), (left, right)))
    oh = (h + top + bottom - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w_ + left + right - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((o, oh, ow), np.int64)
    cog = o // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                       j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
            for g in range(groups):
                wg = w_oihw[g * cog:(g + 1) * cog, :, i, j].astype(np.int64)
                out[g * cog:(g + 1) * cog] += np.einsum("oc,chw->ohw", wg,
                                                        patch[g * cig:(g + 1) * cig])
    return out


def windows(x_hwc, k, stride, pads, dil, fill) -> np.ndarray:
    """Pooling windows of an [H, W, C] int64 tensor: [KH*KW, OH, OW, C], padding = ``fill``."""
    top, left, bottom, right = pads
    xp = np.pad(x_hwc, ((top, bottom), (left, right), (0, 0)), constant_values=fill)
    h, w_ = x_hwc.shape[0] + top + bottom, x_hwc.shape[1] + left + right
    oh = (h - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = (w_ - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
    return np.stack([xp[i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                        j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
                     for i in range(k[0]) for j in range(k[1])])


def add_ref(a, b, p, acc_t, out_t) -> np.ndarray:
    """add.h: t = wrap(((a-za) << la)*ma + ((b-zb) << lb)*mb, acc_t); clip(requantize(t))."""
    az, al, am, bz, bl, bm, om, os_, oz, lo, hi = (int(v) for v in p)
    t = rescale(a.astype(np.int64) - az, al, am) + rescale(b.astype(np.int64) - bz, bl, bm)
    y = numerics.requantize(numerics.wrap(t, DTYPE[acc_t]), om, os_, oz, DTYPE[out_t])
    return clip_ref(y, lo, hi, out_t)


def softmax_ref(x_rows, table, m, s, zp, out_t) -> np.ndarray:
    """softmax_lut.h: e = table[max - x]; recip = 2^30 // sum(e); requantize(e * recip)."""
    x = x_rows.astype(np.int64)
    e = table.astype(np.int64)[x.max(axis=-1, keepdims=True) - x]
    recip = (1 << 30) // e.sum(axis=-1, keepdims=True)
    return numerics.requantize(e * recip, m, s, zp, DTYPE[out_t])


# ---- tests: header hygiene ------------------------------------------------------------------
def test_each_header_compiles_alone(tmp_path) -> None:
    sources = []
    for header in HEADERS:
        src = tmp_path / f"{header.stem}.cpp"
        src.write_text(f'#include "tapeout/{header.name}"\n')
        sources.append(str(src))
    result = subprocess.run([CXX, *STRICT, "-pedantic", "-fsyntax-only", *sources],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_hls_pragmas_only_under_synthesis(tmp_path) -> None:
    """g++ sees no pragma; with __SYNTHESIS__ they come out as `#pragma HLS ...` and parse."""
    def preprocess(*defines: str) -> str:
        return subprocess.run([CXX, *STRICT, *defines, "-E", "-P", "-x", "c++",
                               str(INCLUDE / "tapeout" / "tapeout.h")],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    assert "#pragma HLS" not in preprocess()
    text = preprocess("-D__SYNTHESIS__")
    for pragma in ("#pragma HLS PIPELINE II=CFG::rf",
                   "#pragma HLS ALLOCATION operation instances=mul limit=block",
                   "#pragma HLS ARRAY_PARTITION variable=w cyclic factor=block",
                   "#pragma HLS ARRAY_PARTITION variable=acc complete",
                   "#pragma HLS PIPELINE II=1"):
        assert pragma in text
    # The synthesis path of the whole harness parses (a stand-in for Vitis' hls_stream.h).
    (tmp_path / "hls_stream.h").write_text(
        "namespace hls { template <typename T> struct stream {\n"
        "  void write(const T&) {} T read() { return T(); } bool empty() const { return true; }\n"
        "  unsigned long size() const { return 0; } unsigned long underflows() const { return 0; }"
        "\n}; }\n")
    result = subprocess.run([CXX, *STRICT, "-D__SYNTHESIS__", "-Wno-unknown-pragmas",
                             f"-I{tmp_path}", "-fsyntax-only", str(HARNESS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_sanitized_build_agrees_with_optimized_build(builds, k) -> None:
    """ASan + UBSan (no signed overflow, no bad shift, no out-of-bounds) on stress data."""
    proc, exe = builds["sanitized"]
    _wait(proc)
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    buf = ctypes.create_string_buffer(1 << 16)
    n = k.tq_selftest(buf, len(buf))
    assert n > 0
    assert result.stdout == buf.raw[:n].decode()
    assert len(result.stdout.splitlines()) >= 50  # one line per kernel call site


# ---- tests: requantize.h / common.h ---------------------------------------------------------
REQUANT_OUT = {"i8": np.int8, "u8": np.uint8, "i16": np.int16, "i32": np.int32, "i64": np.int64}


def _requant(k, name: str, acc, m, s, zp: int) -> np.ndarray:
    acc, m, s = (np.ascontiguousarray(v, dt) for v, dt in
                 ((acc, np.int64), (m, np.int32), (s, np.int32)))
    out = np.zeros(acc.size, REQUANT_OUT[name])
    getattr(k, f"tq_requantize_{name}")(acc, acc.size, m, s, zp, out)
    return out


def test_requantize_rounds_half_up(k) -> None:
    acc = np.array([-5, 5, -3, 3, -1, 1, -7, 7, -6, 6, 0], np.int64)
    ones = np.ones(acc.size, np.int32)
    out = _requant(k, "i8", acc, ones, ones, 0)  # acc / 2
    assert out.tolist() == [-2, 3, -1, 2, 0, 1, -3, 4, -3, 3, 0]  # -2.5 -> -2, 2.5 -> 3
    out = _requant(k, "i8", acc, ones, 2 * ones, 0)  # acc / 4: -1.75 -> -2, -1.25 -> -1
    assert out.tolist() == [-1, 1, -1, 1, 0, 0, -2, 2, -1, 2, 0]


@pytest.mark.parametrize("name", sorted(REQUANT_OUT))
def test_requantize_matches_numerics(k, rng, name) -> None:
    n = 4000
    acc = np.concatenate([
        rng.integers(-(2**31), 2**31, n, dtype=np.int64),   # int32 accumulators
        rng.integers(-(2**20), 2**20, n, dtype=np.int64),
        rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True),  # products wrap
        np.array([0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 2**62, -(2**62)], np.int64),
    ])
    mult = rng.choice([0, 1, 2, 2**30, 2**31 - 1, 1518500250, 1 << 20], acc.size).astype(np.int32)
    mult[: 2 * n] = rng.integers(2**30, 2**31, 2 * n)
    shift = rng.choice([0, 1, 2, 30, 31, 32, 33, 40, 47, 61, 62], acc.size).astype(np.int32)
    lo, hi = numerics.int_range(name)
    for zp in (0, max(lo, -(2**31)), min(hi, 2**31 - 1), 17):
        expected = numerics.requantize(acc, mult, shift, zp, name)
        np.testing.assert_array_equal(_requant(k, name, acc, mult, shift, zp), expected)


def test_requantize_pow2_equals_multiplier_one(k, rng) -> None:
    acc = rng.integers(-(2**40), 2**40, 3000, dtype=np.int64)
    shift = rng.integers(0, 63, acc.size).astype(np.int32)
    out = np.zeros(acc.size, np.int8)
    k.tq_requantize_pow2_i8(acc, acc.size, shift, -3, out)
    np.testing.assert_array_equal(out, numerics.requantize(acc, 1, shift, -3, "i8"))


@pytest.mark.parametrize("name", ["i8", "i16", "i32", "i64"])
def test_wrap_matches_numerics(k, rng, name) -> None:
    x = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 3000, dtype=np.int64, endpoint=True),
                        rng.integers(-70000, 70000, 3000, dtype=np.int64),
                        np.array([2**31, -(2**31) - 1, 2**15, -(2**15) - 1, 128, -129], np.int64)])
    out = np.zeros(x.size, REQUANT_OUT[name])
    getattr(k, f"tq_wrap_{name}")(x, x.size, out)
    np.testing.assert_array_equal(out, numerics.wrap(x, name))


def test_requantize_tensor_per_channel_axes(k, rng) -> None:
    for _ in range(10):
        x32 = rand_int(rng, np.int32, (4, 5, 6))
        m, s = rand_scale_params(rng, 6, -30, -20)
        zp = rand_zp(rng, np.int8)
        y = np.zeros(120, np.int8)
        k.tq_requantize_tensor_last(x32, y, 0, m, s, zp)
        np.testing.assert_array_equal(
            y.reshape(4, 5, 6), numerics.requantize(x32, m, s, zp, "i8", axis=2))
        x8 = rand_int(rng, np.int8, (4, 5, 6))
        m, s = rand_scale_params(rng, 5, -3, 2)
        in_zp = rand_zp(rng, np.int8)
        k.tq_requantize_tensor_mid(x8, y, in_zp, m, s, zp)
        expected = numerics.requantize(x8.astype(np.int64) - in_zp, m, s, zp, "i8", axis=1)
        np.testing.assert_array_equal(y.reshape(4, 5, 6), expected)
        x16 = rand_int(rng, np.int16, (120,))
        u8 = np.zeros(120, np.uint8)
        m, s = rand_scale_params(rng, 1, -9, -1)
        k.tq_requantize_tensor_pt(x16, u8, in_zp, m, s, 128)
        expected = numerics.requantize(x16.astype(np.int64) - in_zp, m[0], s[0], 128, "u8")
        np.testing.assert_array_equal(u8, expected)


def test_quantize_dequantize_match_numerics(k, rng) -> None:
    ties = (np.arange(-128, 128, dtype=np.float32) + np.float32(0.5)) * np.float32(0.0625)
    wide = rng.normal(0, 30, 256).astype(np.float32)
    for x, scale, zp in ((ties, 0.0625, 0), (ties, 0.0625, -5), (wide, 0.0625, 3),
                         (wide, 0.1, 0), (wide * 1000, 3.0, 127)):
        for name, dtype, fn in (("i8", np.int8, k.tq_quantize_i8), ("u8", np.uint8,
                                                                     k.tq_quantize_u8)):
            x = np.ascontiguousarray(x, np.float32)
            y = np.zeros(256, dtype)
            fn(x, y, scale, zp if name == "i8" else zp + 128)
            expected = numerics.quantize(x, scale, zp if name == "i8" else zp + 128, name)
            np.testing.assert_array_equal(y, expected)
    q = rand_int(rng, np.int8, (256,))
    f = np.zeros(256, np.float32)
    k.tq_dequantize_i8(q, f, 0.1, -7)
    np.testing.assert_array_equal(f, numerics.dequantize(q, np.float32(0.1), -7))


# ---- tests: dense.h -------------------------------------------------------------------------
# name: (in_t, weight_t, out_t, acc_t, n_in, n_out, per_channel, requant_pow2), as in the harness
DENSE = {
    "d1": (np.int8, np.int8, np.int8, np.int32, 64, 16, False, False),
    "d2": (np.int8, np.int8, np.int8, np.int16, 64, 16, True, False),
    "d3": (np.uint8, np.int8, np.int16, np.int64, 37, 5, True, True),
    "d4": (np.int16, np.int16, np.uint8, np.int32, 33, 7, False, False),
}


def _rand_bias(rng, acc, n: int) -> np.ndarray:
    """Bias of the accumulator's size, now and then an extreme int32 that forces a wrap."""
    spread = int(np.std(np.asarray(acc, np.float64))) + 1
    b = rng.integers(-4 * spread, 4 * spread + 1, n).clip(-(2**31), 2**31 - 1)
    if rng.random() < 0.3:
        b[rng.integers(n)] = rng.choice([-(2**31), 2**31 - 1])
    return b.astype(np.int32)


@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense(k, rng, name) -> None:
    in_t, w_t, out_t, acc_t, n_in, n_out, per_channel, pow2 = DENSE[name]
    nq = n_out if per_channel else 1
    for _ in range(25):
        x, w = rand_int(rng, in_t, (n_in,)), rand_int(rng, w_t, (n_out, n_in))
        in_zp, out_zp = rand_zp(rng, in_t), rand_zp(rng, out_t)
        acc = w.astype(np.int64) @ (x.astype(np.int64) - in_zp)
        bias = _rand_bias(rng, acc, n_out)
        acc = layer_acc(acc, bias, acc_t, per_channel)
        m, s = fit_requant(rng, acc, out_t, nq, pow2)
        lo, hi = rand_clip(rng, out_t, out_zp)
        y = np.zeros(n_out, out_t)
        getattr(k, f"tq_dense_{name}")(x, y, w, bias, m, s, in_zp, out_zp, lo, hi)
        np.testing.assert_array_equal(y, layer_out(acc, m, s, out_zp, out_t, lo, hi, per_channel))


def _rand_residual_params(rng) -> np.ndarray:
    return np.array([rng.choice([0, 0, 1, 3]), rng.choice([1, 1, 3, 2**30 + 7]),
                     rand_zp(rng, np.int8), rng.integers(0, 12)], np.int64)


def test_dense_residual(k, rng) -> None:
    for _ in range(25):
        x, w, r = rand_int(rng, np.int8, (64,)), rand_int(rng, np.int8, (16, 64)), rand_int(
            rng, np.int8, (16,))
        in_zp, out_zp = rand_zp(rng, np.int8), rand_zp(rng, np.int8)
        acc = w.astype(np.int64) @ (x.astype(np.int64) - in_zp)
        bias = _rand_bias(rng, acc, 16)
        rp, res_mult = _rand_residual_params(rng), rng.integers(1, 2**12, 1).astype(np.int32)
        acc = layer_acc(acc, bias, np.int32, False, r, rp, res_mult)
        m, s = fit_requant(rng, acc, np.int8, 1)
        lo, hi = rand_clip(rng, np.int8, out_zp)
        y = np.zeros(16, np.int8)
        k.tq_dense_residual_d1(x, r, y, w, bias, m, s, in_zp, out_zp, lo, hi, rp, res_mult)
        np.testing.assert_array_equal(y, layer_out(acc, m, s, out_zp, np.int8, lo, hi, False))


# ---- tests: conv2d.h / depthwise.h ----------------------------------------------------------
# name: (in_t, acc_t, x CHW, w OIHW, stride, pads [t, l, b, r], dilation, groups, per_channel,
#        requant_pow2); weights are int8 and outputs int8 everywhere, as in the harness.
CONV = {
    "c1": (np.int8, np.int32, (3, 9, 10), (4, 3, 3, 3), (2, 2), (1, 2, 2, 1), (2, 2), 1, True,
           False),
    "c2": (np.uint8, np.int16, (4, 6, 6), (6, 2, 3, 2), (1, 1), (1, 0, 1, 1), (1, 1), 2, False,
           False),
    "c3": (np.int8, np.int32, (4, 7, 7), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4, True,
           True),
    "c4": (np.int8, np.int32, (3, 5, 5), (3, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3, True,
           False),
    "c5": (np.int8, np.int64, (5, 4, 3), (6, 5, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, False,
           False),
}


def _conv_case(k, rng, name, residual: bool):
    """Runs conv ``name`` (with a residual if asked) on random data: (kernel out, reference)."""
    in_t, acc_t, xs, ws, stride, pads, dil, groups, per_channel, pow2 = CONV[name]
    x, w = rand_int(rng, in_t, (1, *xs)), rand_int(rng, np.int8, ws)
    in_zp, out_zp = rand_zp(rng, in_t), rand_zp(rng, np.int8)
    acc = conv_sum_ref(x, w, in_zp, stride, pads, dil, groups).transpose(1, 2, 0)  # HWC
    bias = _rand_bias(rng, acc, ws[0])
    nq = ws[0] if per_channel else 1
    args, extra = (), ()
    if residual:
        r = rand_int(rng, np.int8, acc.shape)
        rp = _rand_residual_params(rng)
        res_mult = rng.integers(1, 2**12, nq).astype(np.int32)
        acc = layer_acc(acc, bias, acc_t, per_channel, r, rp, res_mult)
        args, extra = (r,), (rp, res_mult)
    else:
        acc = layer_acc(acc, bias, acc_t, per_channel)
    m, s = fit_requant(rng, acc, np.int8, nq, pow2)
    lo, hi = rand_clip(rng, np.int8, out_zp)
    x_nhwc = np.ascontiguousarray(x[0].transpose(1, 2, 0))
    w_ohwi = np.ascontiguousarray(w.transpose(0, 2, 3, 1))  # the documented weight layout
    y = np.zeros(acc.shape, np.int8)
    fn = getattr(k, f"tq_conv_residual_{name}" if residual else f"tq_conv_{name}")
    fn(x_nhwc, *args, y, w_ohwi, bias, m, s, in_zp, out_zp, lo, hi, *extra)
    return y, layer_out(acc, m, s, out_zp, np.int8, lo, hi, per_channel)


@pytest.mark.parametrize("name", sorted(CONV))
def test_conv2d(k, rng, name) -> None:
    for _ in range(15):
        y, expected = _conv_case(k, rng, name, residual=False)
        np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", ["c4", "c5"])
def test_conv2d_residual(k, rng, name) -> None:
    for _ in range(15):
        y, expected = _conv_case(k, rng, name, residual=True)
        np.testing.assert_array_equal(y, expected)


# ---- tests: pool.h --------------------------------------------------------------------------
# name: (in_t, acc_t, x HWC, kernel, stride, pads [t, l, b, r], dilation), as in the harness
POOL = {
    "p1": (np.int8, np.int32, (9, 8, 3), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    "p2": (np.uint8, np.int16, (5, 5, 2), (2, 2), (1, 1), (0, 0, 0, 0), (2, 2)),
    "p3": (np.int8, np.int32, (8, 8, 3), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
    "p4": (np.int8, np.int8, (6, 7, 2), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
}


@pytest.mark.parametrize("name", ["p1", "p2"])
def test_max_pool2d(k, rng, name) -> None:
    in_t, _, shape, kernel, stride, pads, dil = POOL[name]
    for _ in range(10):
        x = rand_int(rng, in_t, shape)
        expected = windows(x.astype(np.int64), kernel, stride, pads, dil,
                           np.iinfo(in_t).min).max(axis=0).astype(in_t)
        y = np.zeros(expected.shape, in_t)
        getattr(k, f"tq_max_pool_{name}")(x, y)
        np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", sorted(POOL))
def test_avg_pool2d(k, rng, name) -> None:
    in_t, acc_t, shape, kernel, stride, pads, dil = POOL[name]
    for _ in range(15):
        x = rand_int(rng, in_t, shape)
        in_zp, out_zp = rand_zp(rng, in_t), rand_zp(rng, in_t)
        # Padding contributes (pad - in_zp) = 0 and counts in the divisor (count_include_pad).
        acc = windows(x.astype(np.int64) - in_zp, kernel, stride, pads, dil, 0).sum(axis=0)
        acc = numerics.wrap(acc, DTYPE[acc_t])
        m, s = numerics.quantize_multiplier(2.0 ** rng.uniform(-1, 1) / (kernel[0] * kernel[1]))
        y = np.zeros(acc.shape, in_t)
        getattr(k, f"tq_avg_pool_{name}")(x, y, in_zp, m, s, out_zp)
        np.testing.assert_array_equal(y, numerics.requantize(acc, m, s, out_zp, DTYPE[in_t]))


@pytest.mark.parametrize("name, shape, out_t, acc_t", [
    ("a", (5, 6, 4), np.int8, np.int32), ("b", (16, 16, 3), np.int16, np.int16)])
def test_global_avg_pool(k, rng, name, shape, out_t, acc_t) -> None:
    for _ in range(15):
        x = rand_int(rng, np.int8, shape, extremes=0.6)
        in_zp, out_zp = rand_zp(rng, np.int8), rand_zp(rng, out_t)
        acc = numerics.wrap((x.astype(np.int64) - in_zp).sum(axis=(0, 1)), DTYPE[acc_t])
        m, s = numerics.quantize_multiplier(2.0 ** rng.uniform(-2, 2) / (shape[0] * shape[1]))
        y = np.zeros(shape[2], out_t)
        getattr(k, f"tq_global_avg_pool_{name}")(x, y, in_zp, m, s, out_zp)
        np.testing.assert_array_equal(y, numerics.requantize(acc, m, s, out_zp, DTYPE[out_t]))


@pytest.mark.parametrize("name, shape, dtype", [("a", (5, 6, 4), np.int8),
                                                ("u8", (3, 3, 5), np.uint8)])
def test_global_max_pool(k, rng, name, shape, dtype) -> None:
    for _ in range(5):
        x = rand_int(rng, dtype, shape)
        y = np.zeros(shape[2], dtype)
        getattr(k, f"tq_global_max_pool_{name}")(x, y)
        np.testing.assert_array_equal(y, x.max(axis=(0, 1)))


# ---- tests: add.h ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, a_t, out_t, acc_t", [
    ("i8_acc64", np.int8, np.int8, np.int64), ("i8_acc32", np.int8, np.int8, np.int32),
    ("u8_i8_i16", np.uint8, np.int16, np.int64)])
def test_add(k, rng, name, a_t, out_t, acc_t) -> None:
    for trial in range(40):
        a, b = rand_int(rng, a_t, (257,)), rand_int(rng, np.int8, (257,))
        za, zb, zo = rand_zp(rng, a_t), rand_zp(rng, np.int8), rand_zp(rng, out_t)
        if trial < 30:  # the generator's kind of parameters: 20-bit headroom, 31-bit multipliers
            la, lb = rng.integers(0, 21, 2)
            ma, mb = (int(rng.choice([1, rng.integers(2**30, 2**31)])) for _ in range(2))
        else:  # anything goes: int64 (and int32) wrap-around must still agree
            la, lb = rng.integers(0, 63, 2)
            ma, mb = (int(rng.integers(-(2**40), 2**40)) for _ in range(2))
        p = np.array([za, la, ma, zb, lb, mb, 0, 0, zo, 0, 0], np.int64)
        t = rescale(a.astype(np.int64) - za, la, ma) + rescale(b.astype(np.int64) - zb, lb, mb)
        m, s = fit_requant(rng, numerics.wrap(t, DTYPE[acc_t]), out_t, 1)
        p[6], p[7] = m[0], s[0]
        p[9], p[10] = rand_clip(rng, out_t, zo)
        y = np.zeros(257, out_t)
        getattr(k, f"tq_add_{name}")(a, b, y, p)
        np.testing.assert_array_equal(y, add_ref(a, b, p, acc_t, out_t))


def test_add_is_a_rescaled_sum() -> None:
    """add.h's formula with power-of-two scales is the exact sum, rounded half up."""
    a, b = np.array([10, -3, 127, -128], np.int8), np.array([1, 1, 127, -128], np.int8)
    # s_a = 2^-4, s_b = 2^-3, s_out = 2^-3, s_acc = 2^-4: a * 1 + b * 2, then >> 1.
    p = np.array([0, 0, 1, 0, 1, 1, 1, 1, 0, -128, 127], np.int64)
    assert add_ref(a, b, p, np.int64, np.int8).tolist() == [6, 0, 127, -128]


def test_add_runs_the_ir_q_add(k, rng) -> None:
    """The IR's q.add (compiler/ir/ops_quant.py) is add.h with no left shifts, out_mult 1:
    acc = (a-za)*a_multiplier + (b-zb)*b_multiplier; requantize(acc, 1, shift, zo); relu."""
    for _ in range(20):
        a, b = rand_int(rng, np.int8, (257,)), rand_int(rng, np.int8, (257,))
        za, zb, zo = (rand_zp(rng, np.int8) for _ in range(3))
        shift = int(rng.integers(10, 40))
        a_mult, b_mult = (round(2.0 ** rng.uniform(-3, 3) * 2**shift) for _ in range(2))
        acc = (a.astype(np.int64) - za) * a_mult + (b.astype(np.int64) - zb) * b_mult
        expected = np.maximum(numerics.requantize(acc, 1, shift, zo, "i8"), zo)  # act="relu"
        p = np.array([za, 0, a_mult, zb, 0, b_mult, 1, shift, zo, zo, 127], np.int64)
        y = np.zeros(257, np.int8)
        k.tq_add_i8_acc64(a, b, y, p)
        np.testing.assert_array_equal(y, expected)


# ---- tests: act.h ---------------------------------------------------------------------------
def test_relu_clip_lut(k, rng) -> None:
    x8 = np.ascontiguousarray(np.arange(-128, 128, dtype=np.int8)[rng.permutation(256)])
    xu = np.ascontiguousarray(np.arange(256, dtype=np.uint8)[rng.permutation(256)])
    y8, yu = np.zeros(256, np.int8), np.zeros(256, np.uint8)
    for zp in (-128, -5, 0, 127):
        k.tq_relu_i8(x8, y8, zp)
        np.testing.assert_array_equal(y8, np.maximum(x8, zp))
        k.tq_relu_u8(xu, yu, zp + 128)
        np.testing.assert_array_equal(yu, np.maximum(xu, zp + 128))
    for lo, hi in ((-128, 127), (0, 6), (-20, -20), (-300, 300), (10, -10)):
        k.tq_clip_i8(x8, y8, lo, hi)
        np.testing.assert_array_equal(y8, clip_ref(x8, lo, hi, np.int8))
    x = rand_int(rng, np.int8, (300,))
    table, y = rand_int(rng, np.int8, (256,)), np.zeros(300, np.int8)
    k.tq_lut_i8(x, y, table)
    np.testing.assert_array_equal(y, table[x.astype(np.int64) + 128])
    x = rand_int(rng, np.uint8, (300,))
    table, y = rand_int(rng, np.int16, (256,)), np.zeros(300, np.int16)
    k.tq_lut_u8_i16(x, y, table)
    np.testing.assert_array_equal(y, table[x])


# ---- tests: argmax.h, softmax_lut.h ---------------------------------------------------------
def test_argmax_first_of_ties(k, rng) -> None:
    for _ in range(20):
        x = rng.integers(-128, rng.choice([-126, 0, 128]), 100).astype(np.int8)  # many ties
        assert k.tq_argmax_i8(x) == np.argmax(x)
        x16 = rand_int(rng, np.int16, (33,), extremes=0.5)
        assert k.tq_argmax_i16(x16) == np.argmax(x16)
        rows, y = rng.integers(-128, -120, (6, 10)).astype(np.int8), np.zeros(6, np.int32)
        k.tq_argmax_rows(rows, y)
        np.testing.assert_array_equal(y, np.argmax(rows, axis=1))


def exp_table(s_in: float) -> np.ndarray:
    """The generator's table (softmax_lut.h): round(2^16 * exp(-d * s_in))."""
    return np.array([round(65536 * math.exp(-d * s_in)) for d in range(256)], np.int32)


@pytest.mark.parametrize("name, in_t, out_t, rows, n, out_zp", [
    ("i8_u8", np.int8, np.uint8, 3, 10, 0), ("u8_i8", np.uint8, np.int8, 2, 100, -128)])
def test_softmax_lut(k, rng, name, in_t, out_t, rows, n, out_zp) -> None:
    for s_in, s_out in ((2.0**-4, 1 / 256), (0.05, 1 / 256), (0.3, 1 / 255), (2.0**-7, 1 / 512)):
        table = exp_table(s_in)
        m, s = numerics.quantize_multiplier(2.0**-30 / s_out)
        for extremes in (0.0, 0.5, 1.0):
            x = rand_int(rng, in_t, (rows, n), extremes)
            y = np.zeros((rows, n), out_t)
            getattr(k, f"tq_softmax_{name}")(x, y, table, m, s, out_zp)
            expected = softmax_ref(x, table, m, s, out_zp, out_t)
            np.testing.assert_array_equal(y, expected)
            # ... and the algorithm is a softmax: within 2 output steps of the float one.
            logits = x.astype(np.float64) * s_in
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            q = (expected.astype(np.float64) - out_zp) * s_out
            assert np.abs(q - np.minimum(p, (np.iinfo(out_t).max - out_zp) * s_out)).max() \
                <= 2 * s_out


# ---- tests: concat.h, reshape.h, stream.h ---------------------------------------------------
def test_concat_reshape_stream(k, rng) -> None:
    a, b = rand_int(rng, np.int8, (3, 4, 2)), rand_int(rng, np.int8, (3, 4, 5))
    y = np.zeros((3, 4, 7), np.int8)
    k.tq_concat2(a, b, y)
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=2))
    a, b, c = (rand_int(rng, np.int8, (h, 4, 3)) for h in (2, 1, 3))
    y = np.zeros((6, 4, 3), np.int8)
    k.tq_concat3(a, b, c, y)
    np.testing.assert_array_equal(y, np.concatenate([a, b, c], axis=0))
    x = rand_int(rng, np.int8, (3, 4, 5))  # HWC
    y = np.zeros(60, np.int8)
    k.tq_flatten_nchw(x, y)
    np.testing.assert_array_equal(y, x.transpose(2, 0, 1).reshape(-1))  # the IR's flatten order
    back = np.zeros((3, 4, 5), np.int8)
    k.tq_nchw_to_nhwc(y, back)
    np.testing.assert_array_equal(back, x)
    k.tq_copy(x, y)
    np.testing.assert_array_equal(y, x.reshape(-1))
    s16, out = rand_int(rng, np.int16, (50,)), np.zeros(50, np.int16)
    assert k.tq_stream_roundtrip(s16, out) == 0
    np.testing.assert_array_equal(out, s16)


def test_dense_matches_accumulator_domain_activation_and_raw_residual(k, rng) -> None:
    """The interpreter's integer nn.dense: wrap(sum + b + residual), act on the accumulator,
    then q.requantize. The kernel gets the same bits with identity residual parameters and the
    clip bounds requantized (requantize is monotone)."""
    for _ in range(20):
        x, w = rand_int(rng, np.int8, (64,)), rand_int(rng, np.int8, (16, 64))
        r = rand_int(rng, np.int8, (16,))
        in_zp, out_zp = rand_zp(rng, np.int8), rand_zp(rng, np.int8)
        acc = w.astype(np.int64) @ (x.astype(np.int64) - in_zp)
        bias = _rand_bias(rng, acc, 16)
        acc = numerics.wrap(acc + bias + r, "i32").astype(np.int64)
        m, s = fit_requant(rng, acc, np.int8, 1)
        a_lo, a_hi = sorted(int(v) for v in rng.integers(-(2**20), 2**20, 2))
        for lo, hi in ((0, None), (a_lo, a_hi)):  # relu, clip
            clamped = np.clip(acc, lo, hi)
            expected = numerics.requantize(clamped, m[0], s[0], out_zp, "i8")
            q_lo = int(numerics.requantize(np.int64(lo), m[0], s[0], out_zp, "i8"))
            q_hi = 127 if hi is None else int(numerics.requantize(np.int64(hi), m[0], s[0],
                                                                   out_zp, "i8"))
            y = np.zeros(16, np.int8)
            rp = np.array([0, 1, 0, 0], np.int64)
            k.tq_dense_residual_d1(x, r, y, w, bias, m, s, in_zp, out_zp, q_lo, q_hi, rp,
                                   np.ones(1, np.int32))
            np.testing.assert_array_equal(y, expected)
