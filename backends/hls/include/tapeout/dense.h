// tapeout/dense.h -- fully connected layer: y = clip(requantize(W x + b)), optional residual.
//
// Computes, for every output feature o (formula in layer.h):
//     acc[o] = bias[o] + sum_i (x[i] - in_zp) * w[o * n_in + i]     modulo 2^bits(acc_t)
//     y[o]   = clip(requantize(acc[o], multiplier[o or 0], shift[o or 0], out_zp), clip_lo, clip_hi)
// dense_residual adds residual[o] rescaled as in add.h (residual_params) before requantizing.
//
// Layouts
//   x: [n_in]   y, residual: [n_out]   bias: [n_out] int32
//   w: [n_out][n_in] flattened -- the IR's (torch Linear's) own layout, no transpose.
//   multiplier, shift: [n_out] when per_channel, else [1].
//   The IR flattens NCHW tensors; a dense layer after an NHWC conv sees flatten_nchw's output
//   (reshape.h), so w needs no permutation either.
//
// Config CFG (a struct the generator emits per layer):
//   typedef in_t, weight_t, out_t (int8_t/uint8_t/int16_t), acc_t (int16_t/int32_t/int64_t)
//   static const int n_in, n_out
//   static const int rf            reuse factor: the function is pipelined at II=rf and each
//                                  multiplier is reused rf times (n_in*n_out/rf in parallel)
//   static const bool per_channel  multiplier/shift indexed by output feature
//   static const bool requant_pow2 all multipliers are 1: shift-only requantize, no DSP
//
// Pragmas (hls4ml's "latency" strategy): PIPELINE II=rf on the function, which unrolls every
// loop inside; ALLOCATION limits the multipliers to ceil(n_in*n_out/rf); the weights are
// partitioned cyclic by the same factor so that each cycle can read the weights it multiplies;
// the accumulators and bias are partitioned completely (registers). Meant for layers up to a
// few thousand MACs per rf, like hls4ml's latency strategy.
#ifndef TAPEOUT_DENSE_H
#define TAPEOUT_DENSE_H

#include "tapeout/layer.h"

namespace tapeout {

template <class CFG>
void dense_accumulate(const typename CFG::in_t x[CFG::n_in], const typename CFG::weight_t w[],
                      const int32_t bias[CFG::n_out], int32_t in_zp,
                      typename layer_types<CFG>::uacc_t acc[CFG::n_out]) {
    TAPEOUT_PRAGMA(HLS INLINE)
    for (int o = 0; o < CFG::n_out; o++) {
        acc[o] = acc_init<CFG>(bias[o]);
    }
    typename operand<CFG>::x_t xs[CFG::n_in];
    widen<CFG, CFG::n_in>(x, xs);
    for (int o = 0; o < CFG::n_out; o++) {
        acc[o] = dot<CFG, CFG::n_in>(acc[o], xs, &w[o * CFG::n_in], in_zp);
    }
}

template <class CFG>
void dense(const typename CFG::in_t x[CFG::n_in], typename CFG::out_t y[CFG::n_out],
           const typename CFG::weight_t w[CFG::n_out * CFG::n_in], const int32_t bias[CFG::n_out],
           const int32_t multiplier[], const int32_t shift[], int32_t in_zp, int32_t out_zp,
           int32_t clip_lo, int32_t clip_hi) {
    static_assert(CFG::n_in > 0 && CFG::n_out > 0 && CFG::rf > 0, "bad dense config");
    const int block = ceil_div(CFG::n_in * CFG::n_out, CFG::rf);
    TAPEOUT_UNUSED(block);
    TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
    TAPEOUT_PRAGMA(HLS ALLOCATION operation instances=mul limit=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=w cyclic factor=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=bias complete)
    typename layer_types<CFG>::uacc_t acc[CFG::n_out];
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=acc complete)
    dense_accumulate<CFG>(x, w, bias, in_zp, acc);
    for (int o = 0; o < CFG::n_out; o++) {
        y[o] = finish<CFG>(acc[o], o, multiplier, shift, out_zp, clip_lo, clip_hi);
    }
}

template <class CFG, typename TRes>
void dense_residual(const typename CFG::in_t x[CFG::n_in], const TRes residual[CFG::n_out],
                    typename CFG::out_t y[CFG::n_out],
                    const typename CFG::weight_t w[CFG::n_out * CFG::n_in],
                    const int32_t bias[CFG::n_out], const int32_t multiplier[],
                    const int32_t shift[], int32_t in_zp, int32_t out_zp, int32_t clip_lo,
                    int32_t clip_hi, residual_params rp, const int32_t res_mult[]) {
    static_assert(CFG::n_in > 0 && CFG::n_out > 0 && CFG::rf > 0, "bad dense config");
    const int block = ceil_div(CFG::n_in * CFG::n_out, CFG::rf);
    TAPEOUT_UNUSED(block);
    TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
    TAPEOUT_PRAGMA(HLS ALLOCATION operation instances=mul limit=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=w cyclic factor=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=bias complete)
    typename layer_types<CFG>::uacc_t acc[CFG::n_out];
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=acc complete)
    dense_accumulate<CFG>(x, w, bias, in_zp, acc);
    for (int o = 0; o < CFG::n_out; o++) {
        y[o] = finish_residual<CFG>(acc[o], residual[o], o, multiplier, shift, out_zp, clip_lo,
                                    clip_hi, rp, res_mult);
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_DENSE_H
