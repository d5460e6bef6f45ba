// tapeout/add.h -- residual add of two quantized tensors with different scales.
//
// Formula (the spec; tests/backends/hls/test_kernels.py::add_ref is the NumPy twin):
//     t = wrap( ((a - a_zp) << a_lshift) * a_mult + ((b - b_zp) << b_lshift) * b_mult , TAcc )
//     y = clip( requantize<TOut>(t, out_mult, out_shift, out_zp), clip_lo, clip_hi )
// where every operation is two's-complement int64 arithmetic (wrapping modulo 2^64, as NumPy
// int64 arrays do; the code uses uint64_t so nothing is undefined), wrap(., TAcc) is
// numerics.wrap to the accumulator type (int64_t: no further wrap), requantize is
// numerics.requantize and clip is min(max(., lo), hi) (tapeout::clip).
// How the generator picks the parameters (a choice, not part of the bit-exact contract): with
// a common accumulator scale s_acc = min(s_a, s_b) * 2^-l (l = 20 for 8-bit operands keeps the
// rounding error far below one output LSB),
//     (a_mult, a_lshift) ~ s_a / s_acc,  (b_mult, b_lshift) ~ s_b / s_acc   (integers >= 1),
//     (out_mult, out_shift) = numerics.quantize_multiplier(s_acc / s_out),
// so that for power-of-two scales every multiplier is 1 and the add uses no DSP.
// Shifts must be in [0, 62]; a_mult and b_mult are int64 (the IR's q.add multipliers
// round(s / s_out * 2^shift) can exceed 31 bits), out_mult is int32 like every requantize.
// The IR's q.add {a_multiplier, b_multiplier, shift, act, clip_min, clip_max} is this kernel
// with a_lshift = b_lshift = 0, out_mult = 1, out_shift = shift, TAcc = int64_t and
// clip_lo = max(clip_min, zo) for relu (type bounds where unset).
//
// Kernel
//   add<TA, TB, TOut, TAcc, N>(const TA a[N], const TB b[N], TOut y[N], add_params p)
//     elementwise over N elements of same-shape tensors (any layout, both the same; the
//     generator inserts an explicit broadcast for anything else). Pipelined at II=1.
//
// The same rescale-and-sum is the `residual` of dense.h/conv2d.h: there the layer's own
// accumulator plays `a` (with zero point 0) and the residual tensor plays `b`; see
// residual_params below.
#ifndef TAPEOUT_ADD_H
#define TAPEOUT_ADD_H

#include "tapeout/common.h"
#include "tapeout/requant.h"

namespace tapeout {

struct add_params {
    int32_t a_zp;
    int32_t a_lshift;
    int64_t a_mult;
    int32_t b_zp;
    int32_t b_lshift;
    int64_t b_mult;
    int32_t out_mult;
    int32_t out_shift;
    int32_t out_zp;
    int32_t clip_lo;
    int32_t clip_hi;
};

// Residual operand of a fused dense/conv (see dense.h, conv2d.h):
//     t = wrap( (acc << acc_lshift) * acc_mult + ((r - res_zp) << res_lshift) * res_mult[c], acc_t )
// acc is the layer's bias + sum of products; res_mult is an array (one entry, or one per output
// channel when the layer is per_channel), the other fields are per tensor.
struct residual_params {
    int32_t acc_lshift;
    int64_t acc_mult;
    int32_t res_zp;
    int32_t res_lshift;
};

// (v << lshift) * mult modulo 2^64.
inline uint64_t scale_term(int64_t v, int32_t lshift, int64_t mult) {
    return (static_cast<uint64_t>(v) << lshift) * static_cast<uint64_t>(mult);
}

template <typename TAcc, typename TOut>
inline TOut add_one(int64_t a, int64_t b, const add_params& p) {
    const uint64_t sum = scale_term(a - p.a_zp, p.a_lshift, p.a_mult) +
                         scale_term(b - p.b_zp, p.b_lshift, p.b_mult);
    const TAcc t = wrap_to<TAcc>(u64_to_i64(sum));
    return clip<TOut>(requantize<TOut>(t, p.out_mult, p.out_shift, p.out_zp), p.clip_lo, p.clip_hi);
}

template <typename TA, typename TB, typename TOut, typename TAcc, int N>
void add(const TA a[N], const TB b[N], TOut y[N], add_params p) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = add_one<TAcc, TOut>(a[i], b[i], p);
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_ADD_H
