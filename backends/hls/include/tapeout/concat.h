// tapeout/concat.h -- concatenation of tensors stored in the same layout.
//
// A concatenation along any axis of row-major tensors is, for each of OUTER leading index
// combinations, a block of A_INNER elements of a followed by B_INNER elements of b:
//     OUTER   = product of the dims before the axis
//     A_INNER = a's dim on the axis * product of the dims after it (likewise B_INNER)
// For NHWC activations and the IR's channel axis (NCHW axis 1 -> NHWC axis 3):
// OUTER = H*W, A_INNER = Ca, B_INNER = Cb. Concatenating along H: OUTER = 1, A_INNER =
// Ha*W*C. The operands must already share scale and zero point (the generator inserts
// requantize_tensor otherwise); the kernel only moves data.
//
//   concat2<T, OUTER, A_INNER, B_INNER>(const T a[], const T b[], T y[])
//   concat3<T, OUTER, A_INNER, B_INNER, C_INNER>(const T a[], const T b[], const T c[], T y[])
//
// Pragmas: each copy loop is pipelined at II=1.
#ifndef TAPEOUT_CONCAT_H
#define TAPEOUT_CONCAT_H

#include "tapeout/common.h"

namespace tapeout {

template <typename T, int OUTER, int A_INNER, int B_INNER>
void concat2(const T a[OUTER * A_INNER], const T b[OUTER * B_INNER],
             T y[OUTER * (A_INNER + B_INNER)]) {
    for (int o = 0; o < OUTER; o++) {
        for (int i = 0; i < A_INNER; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[o * (A_INNER + B_INNER) + i] = a[o * A_INNER + i];
        }
        for (int i = 0; i < B_INNER; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[o * (A_INNER + B_INNER) + A_INNER + i] = b[o * B_INNER + i];
        }
    }
}

template <typename T, int OUTER, int A_INNER, int B_INNER, int C_INNER>
void concat3(const T a[OUTER * A_INNER], const T b[OUTER * B_INNER], const T c[OUTER * C_INNER],
             T y[OUTER * (A_INNER + B_INNER + C_INNER)]) {
    const int row = A_INNER + B_INNER + C_INNER;
    for (int o = 0; o < OUTER; o++) {
        for (int i = 0; i < A_INNER; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[o * row + i] = a[o * A_INNER + i];
        }
        for (int i = 0; i < B_INNER; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[o * row + A_INNER + i] = b[o * B_INNER + i];
        }
        for (int i = 0; i < C_INNER; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[o * row + A_INNER + B_INNER + i] = c[o * C_INNER + i];
        }
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_CONCAT_H
