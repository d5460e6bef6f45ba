// tapeout/depthwise.h -- depthwise 2-D convolution: conv2d with groups == in_c.
//
// Same computation, layouts and config as conv2d.h; the config must have groups == in_c, and
// out_c == in_c * M for a channel multiplier M. Weights are [out_c][k_h][k_w] (OHWI with I = 1),
// i.e. the IR's [C*M][1][KH][KW] with the unit axis moved last. Output channel co reads input
// channel co / M. The separate name makes the generated code say what it is, and the
// static_assert catches a config that is not depthwise.
#ifndef TAPEOUT_DEPTHWISE_H
#define TAPEOUT_DEPTHWISE_H

#include "tapeout/conv2d.h"

namespace tapeout {

template <class CFG>
void depthwise_conv2d(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::in_c],
                      typename CFG::out_t y[CFG::out_h * CFG::out_w * CFG::out_c],
                      const typename CFG::weight_t w[CFG::out_c * CFG::k_h * CFG::k_w],
                      const int32_t bias[CFG::out_c], const int32_t multiplier[],
                      const int32_t shift[], int32_t in_zp, int32_t out_zp, int32_t clip_lo,
                      int32_t clip_hi) {
    static_assert(CFG::groups == CFG::in_c, "depthwise_conv2d needs groups == in_c");
    TAPEOUT_PRAGMA(HLS INLINE)
    conv2d<CFG>(x, y, w, bias, multiplier, shift, in_zp, out_zp, clip_lo, clip_hi);
}

template <class CFG, typename TRes>
void depthwise_conv2d_residual(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::in_c],
                               const TRes residual[CFG::out_h * CFG::out_w * CFG::out_c],
                               typename CFG::out_t y[CFG::out_h * CFG::out_w * CFG::out_c],
                               const typename CFG::weight_t w[CFG::out_c * CFG::k_h * CFG::k_w],
                               const int32_t bias[CFG::out_c], const int32_t multiplier[],
                               const int32_t shift[], int32_t in_zp, int32_t out_zp,
                               int32_t clip_lo, int32_t clip_hi, residual_params rp,
                               const int32_t res_mult[]) {
    static_assert(CFG::groups == CFG::in_c, "depthwise_conv2d needs groups == in_c");
    TAPEOUT_PRAGMA(HLS INLINE)
    conv2d_residual<CFG, TRes>(x, residual, y, w, bias, multiplier, shift, in_zp, out_zp, clip_lo,
                               clip_hi, rp, res_mult);
}

}  // namespace tapeout

#endif  // TAPEOUT_DEPTHWISE_H
