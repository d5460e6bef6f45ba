// tapeout/engine_xf.h -- the engine's transformer side units (engine.h dispatches to them).
//
// Tensors here are in row-major (IR) order in the activation memory. Arithmetic is the IR's,
// bit for bit (compiler/numerics.py, "integer softmax and layer norm"):
//   OP_MATMUL     y[b][m][n] = clip(requantize(wrap_i32(sum_k (a[b][m][k] - a_zp) *
//                                   (w[b][k][n] - b_zp)), mult, shift, out_zp), lo, hi)
//                 (q @ k^T and attn @ v: both operands are activations, per-tensor scales)
//   OP_SOFTMAX    per row: e = T[max - x] (T: 256 int32 at par[F_BIAS], Q15), S = sum e,
//                 rcp = 2^46 / S, p = (e * rcp + 2^30) >> 31, y = requantize(p, mult, shift)
//   OP_LAYERNORM  per row of n: c = n * (x - zp) - sum, V = sum c^2,
//                 R = max(1, isqrt(V / n + eps)), inv = 2^32 / R, z = (c * inv + 2^15) >> 16,
//                 y = requantize(z * G[j] + B[j] * 2^16, 1, 32, out_zp)  (G at par[F_BIAS],
//                 B at par[F_MULT], both int32 Q16 of the output scale)
//   OP_GATHER     y[i] = x[par[F_BIAS + i]]: a transpose or any reorder, through an index
//                 table the compiler computed
// A row is read twice (statistics, then the normalized values): in hardware it is held in a
// row buffer of F_ROW_LEN bytes; in C simulation the second pass reads memory again.
#ifndef TAPEOUT_ENGINE_XF_H
#define TAPEOUT_ENGINE_XF_H

#include "tapeout/common.h"
#include "tapeout/engine_desc.h"
#include "tapeout/requant.h"

namespace tapeout {
namespace engine {

inline void matmul(const int32_t* d, const int32_t* par, int8_t* act) {
    const int m_n = d[F_ROWS], n_n = d[F_ROW_LEN], k_n = d[F_IN_C];
    const int32_t a_zp = d[F_IN_ZP], b_zp = d[F_RES_ZP];
    const int32_t mult = par[d[F_MULT]], shift = par[d[F_SHIFT]];
    for (int b = 0; b < d[F_BATCH]; b++) {
        const int8_t* a = act + d[F_IN] + static_cast<int64_t>(b) * d[F_A_BS];
        const int8_t* w = act + d[F_RES] + static_cast<int64_t>(b) * d[F_B_BS];
        int8_t* y = act + d[F_OUT] + static_cast<int64_t>(b) * m_n * n_n;
        for (int m = 0; m < m_n; m++) {
            for (int n = 0; n < n_n; n++) {
                TAPEOUT_PRAGMA(HLS PIPELINE II=1)
                uint32_t s = 0u;
                for (int k = 0; k < k_n; k++) {
                    s += static_cast<uint32_t>((a[m * k_n + k] - a_zp) * (w[k * n_n + n] - b_zp));
                }
                const int32_t acc = to_signed<int32_t>(s);
                y[m * n_n + n] = clip<int8_t>(requantize<int8_t>(acc, mult, shift, d[F_OUT_ZP]),
                                              d[F_LO], d[F_HI]);
            }
        }
    }
}

inline void softmax(const int32_t* d, const int32_t* par, int8_t* act) {
    const int len = d[F_ROW_LEN];
    const int32_t* table = par + d[F_BIAS];
    const int32_t mult = par[d[F_MULT]], shift = par[d[F_SHIFT]];
    for (int r = 0; r < d[F_ROWS]; r++) {
        const int8_t* x = act + d[F_IN] + static_cast<int64_t>(r) * len;
        int8_t* y = act + d[F_OUT] + static_cast<int64_t>(r) * len;
        int mx = -256;
        for (int i = 0; i < len; i++) mx = x[i] > mx ? x[i] : mx;
        int64_t total = 0;
        for (int i = 0; i < len; i++) total += table[mx - x[i]];
        const int64_t rcp = (static_cast<int64_t>(1) << 46) / total;
        for (int i = 0; i < len; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int64_t p = (table[mx - x[i]] * rcp + (static_cast<int64_t>(1) << 30)) >> 31;
            y[i] = requantize<int8_t>(p, mult, shift, d[F_OUT_ZP]);
        }
    }
}

// floor(sqrt(v)) for v >= 0, one result bit per step (a shift-and-subtract square root).
inline int64_t isqrt64(int64_t v) {
    int64_t r = 0, bit = static_cast<int64_t>(1) << 62;
    while (bit > v) bit >>= 2;
    while (bit != 0) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

inline void layernorm(const int32_t* d, const int32_t* par, int8_t* act) {
    const int n = d[F_ROW_LEN];
    const int32_t zp = d[F_IN_ZP];
    const int32_t* gamma = par + d[F_BIAS];
    const int32_t* beta = par + d[F_MULT];
    for (int r = 0; r < d[F_ROWS]; r++) {
        const int8_t* x = act + d[F_IN] + static_cast<int64_t>(r) * n;
        int8_t* y = act + d[F_OUT] + static_cast<int64_t>(r) * n;
        int64_t sum = 0, var = 0;
        for (int i = 0; i < n; i++) sum += x[i] - zp;
        for (int i = 0; i < n; i++) {
            const int64_t c = static_cast<int64_t>(n) * (x[i] - zp) - sum;
            var += c * c;
        }
        int64_t root = isqrt64(var / n + d[F_EPS]);
        if (root < 1) root = 1;
        const int64_t inv = (static_cast<int64_t>(1) << 32) / root;
        for (int i = 0; i < n; i++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int64_t c = static_cast<int64_t>(n) * (x[i] - zp) - sum;
            const int64_t z = asr64(c * inv + (static_cast<int64_t>(1) << 15), 16);
            const int64_t acc = z * gamma[i] + static_cast<int64_t>(beta[i]) * 65536;
            y[i] = requantize<int8_t>(acc, 1, 32, d[F_OUT_ZP]);
        }
    }
}

inline void gather(const int32_t* d, const int32_t* par, int8_t* act) {
    const int32_t* index = par + d[F_BIAS];
    for (int i = 0; i < d[F_ROW_LEN]; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        act[d[F_OUT] + i] = act[d[F_IN] + index[i]];
    }
}

}  // namespace engine
}  // namespace tapeout

#endif  // TAPEOUT_ENGINE_XF_H
