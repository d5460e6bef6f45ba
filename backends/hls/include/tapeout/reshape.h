// tapeout/reshape.h -- layout changes between the kernels' NHWC and the IR's NCHW.
//
// Decision: a flatten (or any reshape that the IR defines on NCHW order) of an NHWC activation
// is an explicit copy through flatten_nchw, so that the next layer sees exactly the IR's element
// order and dense weights are used in the IR's layout, untouched. (Permuting the dense weights
// instead would save the copy; the generator may do that later as an optimization, and this
// kernel stays the reference for it.)
//
//   flatten_nchw<T, H, W, C>(const T x[H*W*C] /* NHWC */, T y[C*H*W] /* NCHW order */)
//     y[(c*H + h)*W + w] = x[(h*W + w)*C + c]
//   nchw_to_nhwc<T, H, W, C>(const T x[C*H*W], T y[H*W*C])   the inverse (e.g. an unflatten
//     back to an image, or an NCHW top-level input)
//   copy<T, N>(const T x[N], T y[N])   a reshape that keeps the element order (e.g. [1,C] to
//     [1,C,1,1]: with H = W = 1 NHWC and NCHW orders coincide)
//
// Pragmas: one element per cycle (PIPELINE II=1).
#ifndef TAPEOUT_RESHAPE_H
#define TAPEOUT_RESHAPE_H

#include "tapeout/common.h"

namespace tapeout {

template <typename T, int H, int W, int C>
void flatten_nchw(const T x[H * W * C], T y[C * H * W]) {
    for (int c = 0; c < C; c++) {
        for (int p = 0; p < H * W; p++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[c * H * W + p] = x[p * C + c];
        }
    }
}

template <typename T, int H, int W, int C>
void nchw_to_nhwc(const T x[C * H * W], T y[H * W * C]) {
    for (int p = 0; p < H * W; p++) {
        for (int c = 0; c < C; c++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            y[p * C + c] = x[c * H * W + p];
        }
    }
}

template <typename T, int N>
void copy(const T x[N], T y[N]) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = x[i];
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_RESHAPE_H
