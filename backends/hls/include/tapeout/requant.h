// tapeout/requant.h -- requantize, quantize and dequantize (compiler/numerics.py, bit-exact).
//
// requantize<TOut>(acc, multiplier, shift, zp), with all arithmetic on 64 bits:
//     p   = acc * multiplier                          (wraps modulo 2^64, as NumPy int64 does)
//     r   = shift == 0 ? p : (p + 2^(shift-1)) >> shift   (arithmetic shift: round half up,
//                                                      towards +inf: -2.5 -> -2, 2.5 -> 3)
//     out = saturate<TOut>(r + zp)
// shift must be in [0, 62] (numerics.MAX_SHIFT); multiplier is whatever
// numerics.quantize_multiplier gave: (1, k) for a real scale 2^-k, else [2^30, 2^31).
// The additions and the product are done on uint64_t (defined modular arithmetic), never as
// signed overflow, and the shift is floor division by 2^shift (asr64), so the result equals
// NumPy's int64 arithmetic for every input, overflow included.
//
// requantize_pow2<TOut>(acc, shift, zp) is the same with multiplier == 1, without the
// multiplier: a power-of-two scale costs an adder and a shifter and no DSP. Kernels select it
// at compile time with the config flag `requant_pow2` (see requantize_channel below).
//
// Per-tensor vs per-channel: kernels take `const int32_t multiplier[]` and
// `const int32_t shift[]` arrays, one entry (per-tensor, config per_channel = false) or one
// per output channel (per_channel = true). The output zero point is always per tensor.
//
// Tensor kernels
//   requantize_tensor<TIn, TOut, N, C, INNER, PerChannel>(x, y, in_zp, multiplier, shift, out_zp)
//     y[i] = requantize(x[i] - in_zp, multiplier[c], shift[c], out_zp), c = (i / INNER) % C
//     (per-channel) or 0; the q.requantize node. For NHWC and the channel axis INNER = 1.
//     in_zp is 0 when x holds accumulators.
//   quantize_tensor<TOut, N>(const float x[N], TOut y[N], float scale, int32_t zp)
//     numerics.quantize: saturate(rint(x / scale) + zp), x / scale in float32, rint half to
//     even. |x / scale| >= 2^40 (and NaN) saturates to the nearer bound (NaN to the minimum);
//     NumPy's float -> int64 cast is undefined there, so tests stay below it.
//   dequantize_tensor<TIn, N>(const TIn x[N], float y[N], float scale, int32_t zp)
//     numerics.dequantize: float(x - zp) * scale in float32.
// Loops are pipelined at II=1 (one element per cycle).
#ifndef TAPEOUT_REQUANT_H
#define TAPEOUT_REQUANT_H

#include <cmath>

#include "tapeout/common.h"

namespace tapeout {

// (p + rounding) >> shift, + zp, saturate: the part of requantize after the product.
template <typename TOut>
inline TOut round_shift_saturate(uint64_t p, int shift, int32_t zp) {
    int64_t r = u64_to_i64(p);
    if (shift > 0) {
        r = asr64(u64_to_i64(p + (static_cast<uint64_t>(1) << (shift - 1))), shift);
    }
    const uint64_t out = static_cast<uint64_t>(r) + static_cast<uint64_t>(static_cast<int64_t>(zp));
    return saturate<TOut>(u64_to_i64(out));
}

template <typename TOut>
inline TOut requantize(int64_t acc, int32_t multiplier, int shift, int32_t zp) {
    const uint64_t p =
        static_cast<uint64_t>(acc) * static_cast<uint64_t>(static_cast<int64_t>(multiplier));
    return round_shift_saturate<TOut>(p, shift, zp);
}

template <typename TOut>
inline TOut requantize_pow2(int64_t acc, int shift, int32_t zp) {
    return round_shift_saturate<TOut>(static_cast<uint64_t>(acc), shift, zp);
}

// The requantize of output channel c: per-channel arrays are indexed by c, per-tensor ones by
// 0; Pow2 drops the multiplier (all multipliers must then be 1). Both flags are compile-time,
// so HLS builds only the selected datapath.
template <typename TOut, bool PerChannel, bool Pow2>
inline TOut requantize_channel(int64_t acc, const int32_t multiplier[], const int32_t shift[],
                               int c, int32_t zp) {
    const int i = PerChannel ? c : 0;
    if (Pow2) return requantize_pow2<TOut>(acc, shift[i], zp);
    return requantize<TOut>(acc, multiplier[i], shift[i], zp);
}

template <typename TIn, typename TOut, int N, int C, int INNER, bool PerChannel>
void requantize_tensor(const TIn x[N], TOut y[N], int32_t in_zp, const int32_t multiplier[],
                       const int32_t shift[], int32_t out_zp) {
    static_assert(N % (C * INNER) == 0, "N must be a multiple of C * INNER");
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        const int c = (i / INNER) % C;
        const int64_t acc = static_cast<int64_t>(x[i]) - in_zp;
        y[i] = requantize_channel<TOut, PerChannel, false>(acc, multiplier, shift, c, out_zp);
    }
}

// rint(v) half to even, then + zp, saturated; v = x / scale computed by the caller in float.
template <typename TOut>
inline TOut quantize_scaled(float v, int32_t zp) {
    const float limit = 1099511627776.0f;  // 2^40
    if (!(v > -limit)) return saturate<TOut>(-(static_cast<int64_t>(1) << 40));
    if (v > limit) return saturate<TOut>(static_cast<int64_t>(1) << 40);
    const float fl = std::floor(v);
    const float frac = v - fl;  // exact in float for |v| < 2^40
    int64_t q = static_cast<int64_t>(fl);
    if (frac > 0.5f || (frac == 0.5f && (q & 1) != 0)) q += 1;
    return saturate<TOut>(q + zp);
}

template <typename TOut>
inline TOut quantize_float(float x, float scale, int32_t zp) {
    return quantize_scaled<TOut>(x / scale, zp);
}

template <typename TIn>
inline float dequantize_float(TIn q, float scale, int32_t zp) {
    return static_cast<float>(static_cast<int64_t>(q) - zp) * scale;
}

template <typename TOut, int N>
void quantize_tensor(const float x[N], TOut y[N], float scale, int32_t zp) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = quantize_float<TOut>(x[i], scale, zp);
    }
}

template <typename TIn, int N>
void dequantize_tensor(const TIn x[N], float y[N], float scale, int32_t zp) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = dequantize_float<TIn>(x[i], scale, zp);
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_REQUANT_H
