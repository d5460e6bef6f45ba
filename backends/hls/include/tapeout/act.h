// tapeout/act.h -- activations on quantized integers (elementwise, any layout).
//
//   clip_tensor<T, N>(const T x[N], T y[N], int32_t lo, int32_t hi)
//     y = min(max(x, lo), hi)      (tapeout::clip). relu6 and clip with the same scale and zero
//     point in and out: lo = quantize(min), hi = quantize(max), computed by the generator.
//   relu<T, N>(const T x[N], T y[N], int32_t zp)
//     y = max(x, zp): real 0 is the zero point; output keeps the input's scale and zero point.
//   lut<TIn, TOut, N>(const TIn x[N], TOut y[N], const TOut table[256])
//     y = table[x - min(TIn)]: for int8_t input table[x + 128], for uint8_t table[x]. 8-bit
//     inputs only. The generator fills the table with
//     quantize_out(f(dequantize_in(q))) for q = min(TIn) .. max(TIn), so any f (sigmoid,
//     tanh, silu, gelu, hardswish, leaky_relu, ...) costs one ROM read; the kernel is exact by
//     construction, the table's rounding is the generator's (and the interpreter's) business.
//
// Pragmas: pipelined at II=1. The generator emits a lut table as a `static const` array in the
// caller, from which HLS infers a ROM.
#ifndef TAPEOUT_ACT_H
#define TAPEOUT_ACT_H

#include <limits>

#include "tapeout/common.h"

namespace tapeout {

template <typename T, int N>
void clip_tensor(const T x[N], T y[N], int32_t lo, int32_t hi) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = clip<T>(x[i], lo, hi);
    }
}

template <typename T, int N>
void relu(const T x[N], T y[N], int32_t zp) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = clip<T>(x[i], zp, std::numeric_limits<T>::max());
    }
}

template <typename TIn, typename TOut, int N>
void lut(const TIn x[N], TOut y[N], const TOut table[256]) {
    static_assert(sizeof(TIn) == 1, "lut() takes 8-bit inputs (a 256-entry table)");
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = table[static_cast<int>(x[i]) - static_cast<int>(std::numeric_limits<TIn>::min())];
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_ACT_H
