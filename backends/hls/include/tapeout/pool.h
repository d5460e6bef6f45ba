// tapeout/pool.h -- max/average pooling with windows, and global max/average pooling. NHWC.
//
// Windowed pooling (config CFG):
//   typedef in_t; typedef out_t, acc_t (avg_pool2d only)
//   static const int in_h, in_w, c, out_h, out_w, k_h, k_w, stride_h, stride_w,
//                    pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, rf
//   out_h/out_w are checked like conv2d's. For ceil_mode the generator adds the extra rows and
//   columns to pad_bottom/pad_right (max pool only; see avg_pool2d).
//   Window of output (oh, ow): ih = oh*stride_h - pad_top + kh*dil_h, likewise iw; positions
//   outside the input are padding.
//
//   max_pool2d<CFG>(const in_t x[in_h*in_w*c], in_t y[out_h*out_w*c])
//     y = max over the window's input positions (padding never wins: it is -inf as in torch;
//     a window entirely in padding gives in_t's minimum). The output has the input's type,
//     scale and zero point (max commutes with the monotone dequantization).
//   avg_pool2d<CFG>(x, out_t y[], int32_t in_zp, int32_t multiplier, int32_t shift, int32_t out_zp)
//     acc = wrap(sum over the window's input positions of (x - in_zp), acc_t)
//     y   = requantize(acc, multiplier, shift, out_zp)   (numerics.requantize: round half up)
//     Padding contributes 0 and counts in the divisor: count_include_pad=True. The generator
//     folds the divisor into the scale: (multiplier, shift) =
//     numerics.quantize_multiplier(s_in / (s_out * k_h * k_w)); it rejects
//     count_include_pad=False with nonzero padding and ceil_mode windows that hang over.
//
// Global pooling over all H*W positions of each channel:
//   global_avg_pool<TIn, TOut, TAcc, H, W, C>(const TIn x[H*W*C], TOut y[C], in_zp,
//                                             multiplier, shift, out_zp)
//     acc = wrap(sum (x - in_zp), TAcc); y = requantize(acc, multiplier, shift, out_zp)
//     with (multiplier, shift) = quantize_multiplier(s_in / (s_out * H * W)).
//   global_max_pool<T, H, W, C>(const T x[H*W*C], T y[C])
//
// Pragmas: the output-pixel loop of windowed pooling is pipelined at II=rf; the global
// pools pipeline the loop over pixels at II=1 with all C channels in parallel (accumulators
// partitioned completely).
#ifndef TAPEOUT_POOL_H
#define TAPEOUT_POOL_H

#include <limits>

#include "tapeout/common.h"
#include "tapeout/requant.h"

namespace tapeout {

template <class CFG>
struct pool_checks {
    static_assert(CFG::stride_h > 0 && CFG::stride_w > 0 && CFG::dil_h > 0 && CFG::dil_w > 0 &&
                      CFG::rf > 0,
                  "stride, dilation and rf must be positive");
    static_assert(CFG::out_h == (CFG::in_h + CFG::pad_top + CFG::pad_bottom -
                                 CFG::dil_h * (CFG::k_h - 1) - 1) / CFG::stride_h + 1,
                  "out_h does not match in_h, k_h, stride, padding and dilation");
    static_assert(CFG::out_w == (CFG::in_w + CFG::pad_left + CFG::pad_right -
                                 CFG::dil_w * (CFG::k_w - 1) - 1) / CFG::stride_w + 1,
                  "out_w does not match in_w, k_w, stride, padding and dilation");
    static const bool ok = true;
};

template <class CFG>
void max_pool2d(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::c],
                typename CFG::in_t y[CFG::out_h * CFG::out_w * CFG::c]) {
    typedef typename CFG::in_t T;
    static_assert(pool_checks<CFG>::ok, "");
    for (int oh = 0; oh < CFG::out_h; oh++) {
        for (int ow = 0; ow < CFG::out_w; ow++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
            for (int ch = 0; ch < CFG::c; ch++) {
                T m = std::numeric_limits<T>::min();
                for (int kh = 0; kh < CFG::k_h; kh++) {
                    const int ih = oh * CFG::stride_h - CFG::pad_top + kh * CFG::dil_h;
                    for (int kw = 0; kw < CFG::k_w; kw++) {
                        const int iw = ow * CFG::stride_w - CFG::pad_left + kw * CFG::dil_w;
                        if (ih < 0 || ih >= CFG::in_h || iw < 0 || iw >= CFG::in_w) continue;
                        const T v = x[(ih * CFG::in_w + iw) * CFG::c + ch];
                        if (v > m) m = v;
                    }
                }
                y[(oh * CFG::out_w + ow) * CFG::c + ch] = m;
            }
        }
    }
}

template <class CFG>
void avg_pool2d(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::c],
                typename CFG::out_t y[CFG::out_h * CFG::out_w * CFG::c], int32_t in_zp,
                int32_t multiplier, int32_t shift, int32_t out_zp) {
    typedef typename CFG::acc_t TAcc;
    typedef typename acc_traits<TAcc>::uacc U;
    static_assert(pool_checks<CFG>::ok, "");
    for (int oh = 0; oh < CFG::out_h; oh++) {
        for (int ow = 0; ow < CFG::out_w; ow++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
            for (int ch = 0; ch < CFG::c; ch++) {
                U acc = 0;
                for (int kh = 0; kh < CFG::k_h; kh++) {
                    const int ih = oh * CFG::stride_h - CFG::pad_top + kh * CFG::dil_h;
                    for (int kw = 0; kw < CFG::k_w; kw++) {
                        const int iw = ow * CFG::stride_w - CFG::pad_left + kw * CFG::dil_w;
                        if (ih < 0 || ih >= CFG::in_h || iw < 0 || iw >= CFG::in_w) continue;
                        const int32_t d =
                            static_cast<int32_t>(x[(ih * CFG::in_w + iw) * CFG::c + ch]) - in_zp;
                        acc = static_cast<U>(acc + static_cast<U>(d));
                    }
                }
                y[(oh * CFG::out_w + ow) * CFG::c + ch] = requantize<typename CFG::out_t>(
                    to_signed<TAcc>(acc), multiplier, shift, out_zp);
            }
        }
    }
}

template <typename TIn, typename TOut, typename TAcc, int H, int W, int C>
void global_avg_pool(const TIn x[H * W * C], TOut y[C], int32_t in_zp, int32_t multiplier,
                     int32_t shift, int32_t out_zp) {
    typedef typename acc_traits<TAcc>::uacc U;
    U acc[C];
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=acc complete)
    for (int ch = 0; ch < C; ch++) {
        TAPEOUT_PRAGMA(HLS UNROLL)
        acc[ch] = 0;
    }
    for (int p = 0; p < H * W; p++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        for (int ch = 0; ch < C; ch++) {
            const int32_t d = static_cast<int32_t>(x[p * C + ch]) - in_zp;
            acc[ch] = static_cast<U>(acc[ch] + static_cast<U>(d));
        }
    }
    for (int ch = 0; ch < C; ch++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[ch] = requantize<TOut>(to_signed<TAcc>(acc[ch]), multiplier, shift, out_zp);
    }
}

template <typename T, int H, int W, int C>
void global_max_pool(const T x[H * W * C], T y[C]) {
    T m[C];
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=m complete)
    for (int ch = 0; ch < C; ch++) {
        TAPEOUT_PRAGMA(HLS UNROLL)
        m[ch] = std::numeric_limits<T>::min();
    }
    for (int p = 0; p < H * W; p++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        for (int ch = 0; ch < C; ch++) {
            const T v = x[p * C + ch];
            if (v > m[ch]) m[ch] = v;
        }
    }
    for (int ch = 0; ch < C; ch++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[ch] = m[ch];
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_POOL_H
