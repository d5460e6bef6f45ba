// tapeout/common.h -- shared definitions of the tapeout HLS kernel library.
//
// Every kernel header includes this one. The library is plain C++14: the same source compiles
// with `g++ -O2 -std=c++14 -Wall -Wextra -Werror` for C simulation and with Vitis HLS for
// synthesis. It uses no vendor header (stream.h is the one optional exception).
//
// Pragmas
//   TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf) expands to `#pragma HLS PIPELINE II=CFG::rf` when
//   __SYNTHESIS__ is defined (Vitis HLS defines it) and to nothing otherwise, so that g++
//   -Wall (which warns on unknown pragmas, -Wunknown-pragmas) stays silent. Generated code
//   uses the same macro, e.g. TAPEOUT_PRAGMA(HLS DATAFLOW) in the top function.
//   TAPEOUT_UNUSED(x) silences -Wunused for constants that only pragmas read.
//
// Integer arithmetic (bit-exact with compiler/numerics.py)
//   * Accumulators wrap modulo 2^bits of the accumulator type acc_t (numerics.wrap). Kernels
//     accumulate in the *unsigned* type of the same width (acc_traits<TAcc>::uacc), where
//     overflow is defined as modular arithmetic, and convert once at the end with
//     to_signed<TAcc>(); wrapping once at the end equals wrapping after every addition.
//     Signed overflow (undefined behaviour in C++) never happens anywhere in the library.
//   * Right shifts of negative values are arithmetic (floor division by 2^s). The library does
//     not rely on the compiler for that (it is implementation-defined before C++20, although
//     gcc and Vitis HLS both shift arithmetically): asr64() computes it portably.
//   * saturate<T>(v) clamps to T's range (numerics.saturate).
#ifndef TAPEOUT_COMMON_H
#define TAPEOUT_COMMON_H

#include <cstdint>
#include <limits>
#include <type_traits>

#ifdef __SYNTHESIS__
#define TAPEOUT_PRAGMA(...) _Pragma(#__VA_ARGS__)
#else
#define TAPEOUT_PRAGMA(...)
#endif

#define TAPEOUT_UNUSED(x) ((void)(x))

namespace tapeout {

// Ceiling division of two compile-time sizes (multiplier budget = ceil(N_MACS / RF)).
constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Types that go with an accumulator type TAcc (int8_t ... int64_t).
//   uacc: unsigned twin, wraps modulo 2^bits by definition.
template <typename TAcc>
struct acc_traits {
    static_assert(std::is_integral<TAcc>::value && std::is_signed<TAcc>::value,
                  "accumulator type must be a signed integer type (int8_t..int64_t)");
    typedef typename std::make_unsigned<TAcc>::type uacc;
    static const int bits = 8 * static_cast<int>(sizeof(TAcc));
};

// Exact type of one product (x - zero_point) * w: the difference of two 8-bit values needs 9
// bits and a product 17, which int32_t holds; 16-bit operands need int64_t.
template <typename TIn, typename TW>
struct product_type {
    typedef typename std::conditional<(sizeof(TIn) <= 1 && sizeof(TW) <= 2) ||
                                          (sizeof(TIn) <= 2 && sizeof(TW) <= 1),
                                      int32_t, int64_t>::type type;
};

// Two's-complement reinterpretation of an unsigned value as the signed type of TAcc's width,
// without implementation-defined conversions: u in [0, 2^bits) -> u or u - 2^bits.
template <typename TAcc>
inline TAcc to_signed(typename acc_traits<TAcc>::uacc u) {
    typedef typename acc_traits<TAcc>::uacc U;
    const U max_pos = static_cast<U>(std::numeric_limits<TAcc>::max());
    if (u <= max_pos) return static_cast<TAcc>(u);
    // u - 2^bits == -(~u) - 1, and ~u <= max_pos fits TAcc.
    return static_cast<TAcc>(-static_cast<TAcc>(static_cast<U>(~u)) - 1);
}

// numerics.wrap(x, acc dtype): reduce an int64 value modulo 2^bits into TAcc's range.
template <typename TAcc>
inline TAcc wrap_to(int64_t x) {
    typedef typename acc_traits<TAcc>::uacc U;
    return to_signed<TAcc>(static_cast<U>(static_cast<uint64_t>(x)));
}

// Bits of a uint64_t as int64_t (two's complement), portable.
inline int64_t u64_to_i64(uint64_t u) { return to_signed<int64_t>(u); }

// Arithmetic right shift of an int64 by s in [0, 63]: floor(v / 2^s).
inline int64_t asr64(int64_t v, int s) {
    return v >= 0 ? (v >> s) : ~((~v) >> s);
}

// numerics.saturate: clamp to T's range.
template <typename T>
inline T saturate(int64_t v) {
    const int64_t lo = static_cast<int64_t>(std::numeric_limits<T>::min());
    const int64_t hi = static_cast<int64_t>(std::numeric_limits<T>::max());
    return static_cast<T>(v < lo ? lo : (v > hi ? hi : v));
}

// The fused activation of every kernel: min(max(v, lo), hi), then saturate to T (the same
// order as np.minimum(np.maximum(v, lo), hi), so lo > hi gives hi). relu is [out_zp, T max],
// relu6 is [out_zp, quantize(6.0)], none is [T min, T max]; the generator computes the
// bounds in the integer domain of the output type. An activation that the IR applies to the
// wrapped accumulator, clamp(acc, A_lo, A_hi) followed by requantize, is exactly
// clip_lo = requantize(A_lo), clip_hi = requantize(A_hi) here, because requantize is monotone
// non-decreasing for multiplier >= 0 (max and min commute with it); relu: requantize(0) =
// out_zp. With per-channel multipliers that holds for bounds that requantize to the same value
// in every channel (relu's 0 always does).
template <typename T>
inline T clip(int64_t v, int32_t lo, int32_t hi) {
    const int64_t above = v < lo ? static_cast<int64_t>(lo) : v;
    return saturate<T>(above > hi ? static_cast<int64_t>(hi) : above);
}

}  // namespace tapeout

#endif  // TAPEOUT_COMMON_H
