// tapeout/argmax.h -- index of the largest element (numpy.argmax: the first one on ties).
//
//   int32_t argmax<T, N>(const T x[N])             over N elements
//   argmax_rows<T, ROWS, N>(const T x[ROWS*N], int32_t y[ROWS])
//     argmax over the innermost axis of each row, e.g. per pixel over NHWC channels with
//     ROWS = H*W, N = C.
// Comparing quantized values is comparing the real values (dequantization is monotone), so
// no scale is needed. Pragmas: the scan is pipelined at II=1 (one comparison per cycle).
#ifndef TAPEOUT_ARGMAX_H
#define TAPEOUT_ARGMAX_H

#include "tapeout/common.h"

namespace tapeout {

template <typename T, int N>
int32_t argmax(const T x[N]) {
    static_assert(N > 0, "argmax of an empty tensor");
    T best = x[0];
    int32_t index = 0;
    for (int i = 1; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        if (x[i] > best) {
            best = x[i];
            index = i;
        }
    }
    return index;
}

template <typename T, int ROWS, int N>
void argmax_rows(const T x[ROWS * N], int32_t y[ROWS]) {
    for (int r = 0; r < ROWS; r++) {
        T best = x[r * N];
        int32_t index = 0;
        for (int i = 1; i < N; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            if (x[r * N + i] > best) {
                best = x[r * N + i];
                index = i;
            }
        }
        y[r] = index;
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_ARGMAX_H
