// tapeout/layer.h -- the accumulate/requantize steps that dense.h and conv2d.h share.
//
// For output channel c of a layer with config CFG (see dense.h for the fields):
//     acc = bias[c] + sum (x - in_zp) * w            accumulated modulo 2^bits(acc_t)
//     y   = clip( requantize(wrap(acc, acc_t), multiplier[c'], shift[c'], out_zp), lo, hi )
// with c' = c for per_channel layers and 0 otherwise. With a residual r (residual_params in
// add.h) the value requantized is
//     t = wrap( (acc << acc_lshift) * acc_mult + ((r - res_zp) << res_lshift) * res_mult[c'], acc_t ).
// Weights are symmetric (zero point 0); the generator rejects others. Padding positions of a
// convolution are skipped, which is exactly padding with in_zp (their (x - in_zp) is 0), and
// equals the folded form bias' + sum x * w with bias' = bias - in_zp * sum(w) modulo 2^bits.
#ifndef TAPEOUT_LAYER_H
#define TAPEOUT_LAYER_H

#include <type_traits>

#include "tapeout/add.h"
#include "tapeout/common.h"
#include "tapeout/requant.h"

namespace tapeout {

template <class CFG>
struct layer_types {
    typedef typename CFG::in_t in_t;
    typedef typename CFG::weight_t weight_t;
    typedef typename CFG::out_t out_t;
    typedef typename CFG::acc_t acc_t;
    typedef typename acc_traits<acc_t>::uacc uacc_t;
    typedef typename product_type<in_t, weight_t>::type prod_t;
};

// The accumulator's initial value: the bias, modulo 2^bits.
template <class CFG>
inline typename layer_types<CFG>::uacc_t acc_init(int32_t bias) {
    typedef typename layer_types<CFG>::uacc_t U;
    return static_cast<U>(static_cast<uint64_t>(static_cast<int64_t>(bias)));
}

// acc + (x - in_zp) * w, modulo 2^bits.
template <class CFG>
inline typename layer_types<CFG>::uacc_t mac(typename layer_types<CFG>::uacc_t acc,
                                             typename CFG::in_t x, typename CFG::weight_t w,
                                             int32_t in_zp) {
    typedef layer_types<CFG> T;
    const typename T::prod_t xd = static_cast<typename T::prod_t>(x) - in_zp;
    const typename T::prod_t p = xd * static_cast<typename T::prod_t>(w);
    return static_cast<typename T::uacc_t>(acc + static_cast<typename T::uacc_t>(p));
}

// Dot products of one block: acc + sum_{i < N} (x[i] - in_zp) * w[i], modulo 2^bits.
// The caller widens the activations once into operand<CFG>::x_t (shared by every output that
// reads them). With 8-bit operands and blocks of up to 32768 terms the block is summed as
// sum x*w - in_zp * sum w, with sum x*w exact in int32 (|x*w| <= 255 * 255), which C
// compilers turn into 16-bit multiply-add vector instructions and HLS into a plain adder tree;
// other blocks take the product-by-product form of mac(). Both are the same integer modulo
// 2^bits.
template <class CFG>
struct operand {
    static const bool narrow =
        sizeof(typename CFG::in_t) == 1 && sizeof(typename CFG::weight_t) == 1;
    typedef typename std::conditional<narrow, int16_t, typename CFG::in_t>::type x_t;
};

template <class CFG, int N, bool Narrow = (operand<CFG>::narrow && N <= 32768)>
struct dot_block {
    typedef typename layer_types<CFG>::uacc_t U;
    static U run(U acc, const typename operand<CFG>::x_t x[], const typename CFG::weight_t w[],
                 int32_t in_zp) {
        for (int i = 0; i < N; i++) {
            acc = mac<CFG>(acc, static_cast<typename CFG::in_t>(x[i]), w[i], in_zp);
        }
        return acc;
    }
};

template <class CFG, int N>
struct dot_block<CFG, N, true> {
    typedef typename layer_types<CFG>::uacc_t U;
    static U run(U acc, const int16_t x[], const typename CFG::weight_t w[], int32_t in_zp) {
        int32_t sum = 0;  // |x * w| <= 255 * 255 and N <= 32768: no int32 overflow
        for (int i = 0; i < N; i++) sum += x[i] * static_cast<int16_t>(w[i]);
        uint64_t t = static_cast<uint64_t>(acc) + static_cast<uint64_t>(static_cast<int64_t>(sum));
        if (in_zp != 0) {  // symmetric activations (zero point 0) need no correction
            int64_t sum_w = 0;
            for (int i = 0; i < N; i++) sum_w += w[i];
            t -= static_cast<uint64_t>(static_cast<int64_t>(in_zp)) * static_cast<uint64_t>(sum_w);
        }
        return static_cast<U>(t);
    }
};

// Widen N activations for dot().
template <class CFG, int N>
inline void widen(const typename CFG::in_t x[], typename operand<CFG>::x_t xs[]) {
    for (int i = 0; i < N; i++) xs[i] = static_cast<typename operand<CFG>::x_t>(x[i]);
}

template <class CFG, int N>
inline typename layer_types<CFG>::uacc_t dot(typename layer_types<CFG>::uacc_t acc,
                                             const typename operand<CFG>::x_t x[],
                                             const typename CFG::weight_t w[], int32_t in_zp) {
    return dot_block<CFG, N>::run(acc, x, w, in_zp);
}

template <class CFG>
inline typename CFG::out_t finish(typename layer_types<CFG>::uacc_t acc, int c,
                                  const int32_t multiplier[], const int32_t shift[],
                                  int32_t out_zp, int32_t clip_lo, int32_t clip_hi) {
    typedef layer_types<CFG> T;
    const typename T::acc_t a = to_signed<typename T::acc_t>(acc);
    return clip<typename T::out_t>(
        requantize_channel<typename T::out_t, CFG::per_channel, CFG::requant_pow2>(
            a, multiplier, shift, c, out_zp),
        clip_lo, clip_hi);
}

template <class CFG, typename TRes>
inline typename CFG::out_t finish_residual(typename layer_types<CFG>::uacc_t acc, TRes r, int c,
                                           const int32_t multiplier[], const int32_t shift[],
                                           int32_t out_zp, int32_t clip_lo, int32_t clip_hi,
                                           const residual_params& rp, const int32_t res_mult[]) {
    typedef layer_types<CFG> T;
    const int64_t a = to_signed<typename T::acc_t>(acc);
    const uint64_t t = scale_term(a, rp.acc_lshift, rp.acc_mult) +
                       scale_term(static_cast<int64_t>(r) - rp.res_zp, rp.res_lshift,
                                  res_mult[CFG::per_channel ? c : 0]);
    return finish<CFG>(static_cast<typename T::uacc_t>(t), c, multiplier, shift, out_zp, clip_lo,
                       clip_hi);
}

}  // namespace tapeout

#endif  // TAPEOUT_LAYER_H
