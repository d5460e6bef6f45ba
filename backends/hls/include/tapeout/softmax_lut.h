// tapeout/softmax_lut.h -- integer softmax with an exp lookup table.
//
// Exact integer algorithm, per row of N 8-bit inputs x (int8_t or uint8_t):
//     m      = max_i x[i]
//     e[i]   = exp_table[m - x[i]]                 (m - x[i] in [0, 255])
//     sum    = sum_i e[i]                          (int64)
//     recip  = floor(2^30 / sum)                   (one division per row)
//     y[i]   = requantize<TOut>(e[i] * recip, multiplier, shift, out_zp)
// Contract on the table: 0 <= exp_table[d] <= 2^16 and exp_table[0] >= 1 (so sum >= 1), and
// N <= 2^14 (so recip >= 1). Then e[i] <= sum gives e[i] * recip <= 2^30 and the requantize
// product stays below 2^61: nothing overflows.
// The generator computes (float math, done once at compile time, not part of the integer
// contract):
//     exp_table[d] = round(2^16 * exp(-d * s_in))         d = 0..255, s_in the input scale
//     (multiplier, shift) = numerics.quantize_multiplier(2^-30 / s_out)
// e.g. s_out = 1/256 gives (1, 22): y = (e*recip + 2^21) >> 22 + out_zp, no DSP. The absolute
// error of the probability before the final rounding is below 2^-14 (floor of recip).
//
//   softmax_lut<TIn, TOut, ROWS, N>(const TIn x[ROWS*N], TOut y[ROWS*N],
//                                   const int32_t exp_table[256], int32_t multiplier,
//                                   int32_t shift, int32_t out_zp)
//     softmax over the innermost axis (NHWC channels, or the features of a [1, N] tensor).
//
// Pragmas: the max, exp/sum and normalize passes over a row are each pipelined at II=1;
// the generator emits exp_table as a `static const` array (a ROM).
#ifndef TAPEOUT_SOFTMAX_LUT_H
#define TAPEOUT_SOFTMAX_LUT_H

#include "tapeout/common.h"
#include "tapeout/requant.h"

namespace tapeout {

template <typename TIn, typename TOut, int ROWS, int N>
void softmax_lut(const TIn x[ROWS * N], TOut y[ROWS * N], const int32_t exp_table[256],
                 int32_t multiplier, int32_t shift, int32_t out_zp) {
    static_assert(sizeof(TIn) == 1, "softmax_lut takes 8-bit inputs (a 256-entry table)");
    static_assert(N > 0 && N <= (1 << 14), "softmax_lut needs 0 < N <= 2^14");
    for (int r = 0; r < ROWS; r++) {
        const TIn* row = x + r * N;
        TIn m = row[0];
        for (int i = 1; i < N; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            if (row[i] > m) m = row[i];
        }
        int64_t sum = 0;
        for (int i = 0; i < N; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            sum += exp_table[static_cast<int>(m) - static_cast<int>(row[i])];
        }
        const int64_t recip = (static_cast<int64_t>(1) << 30) / sum;
        for (int i = 0; i < N; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int64_t e = exp_table[static_cast<int>(m) - static_cast<int>(row[i])];
            y[r * N + i] = requantize<TOut>(e * recip, multiplier, shift, out_zp);
        }
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_SOFTMAX_LUT_H
