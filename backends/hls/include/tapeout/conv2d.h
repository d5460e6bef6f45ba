// tapeout/conv2d.h -- 2-D convolution, NHWC, with stride, padding, dilation and groups
// (groups == 1, grouped, and depthwise with groups == in_c), fused bias, requantize, activation
// clip and an optional residual.
//
// Computes, for output pixel (oh, ow) and output channel co in group g = co / (out_c/groups):
//     acc = bias[co] + sum_{kh, kw, ci < in_c/groups} (x[ih][iw][g*in_c/groups + ci] - in_zp)
//                                                     * w[co][kh][kw][ci]
//           ih = oh*stride_h - pad_top + kh*dil_h,  iw = ow*stride_w - pad_left + kw*dil_w
//     y[oh][ow][co] = clip(requantize(wrap(acc, acc_t), multiplier[co or 0], shift[co or 0],
//                                     out_zp), clip_lo, clip_hi)
// Positions outside the input are padding with value in_zp, i.e. they contribute nothing
// (layer.h). conv2d_residual adds residual[oh][ow][co] rescaled into the accumulator first
// (residual_params, add.h): the IR's nn.conv2d(%x, %w, %b, %skip).
//
// Layouts
//   x:  [in_h][in_w][in_c]      y, residual: [out_h][out_w][out_c]     (NHWC, batch 1 per call)
//   w:  [out_c][k_h][k_w][in_c/groups]  (OHWI: the IR's OIHW transposed with
//        np.transpose(w, (0, 2, 3, 1)); the innermost index walks input channels, which are
//        contiguous in NHWC. Depthwise weights [C*M][1][KH][KW] become [C*M][KH][KW][1].)
//   bias: [out_c] int32;  multiplier, shift: [out_c] when per_channel, else [1]
//
// Config CFG:
//   typedef in_t, weight_t, out_t, acc_t
//   static const int in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w,
//                    stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right,
//                    dil_h, dil_w, groups
//   static const int rf            reuse factor: II of the output-pixel loop
//   static const bool per_channel, requant_pow2     (as in dense.h)
// out_h/out_w are checked at compile time against the usual formula
//   out = (in + pad_begin + pad_end - dil*(k-1) - 1) / stride + 1.
//
// Pragmas: the output-pixel loop is pipelined at II=rf, which unrolls the channel and window
// loops inside it: out_c*k_h*k_w*in_c/groups MACs per pixel, shared by
// ceil(that/rf) multipliers (ALLOCATION), weights partitioned cyclic by the same factor,
// accumulators in registers. The input is read as an array; for a BRAM input the memory ports
// bound the II, so the generator partitions x or (for large images) uses a streaming form.
#ifndef TAPEOUT_CONV2D_H
#define TAPEOUT_CONV2D_H

#include "tapeout/layer.h"

namespace tapeout {

template <class CFG>
struct conv2d_checks {
    static_assert(CFG::groups > 0 && CFG::in_c % CFG::groups == 0 &&
                      CFG::out_c % CFG::groups == 0,
                  "in_c and out_c must be multiples of groups");
    static_assert(CFG::stride_h > 0 && CFG::stride_w > 0 && CFG::dil_h > 0 && CFG::dil_w > 0 &&
                      CFG::rf > 0,
                  "stride, dilation and rf must be positive");
    static_assert(CFG::out_h == (CFG::in_h + CFG::pad_top + CFG::pad_bottom -
                                 CFG::dil_h * (CFG::k_h - 1) - 1) / CFG::stride_h + 1,
                  "out_h does not match in_h, k_h, stride, padding and dilation");
    static_assert(CFG::out_w == (CFG::in_w + CFG::pad_left + CFG::pad_right -
                                 CFG::dil_w * (CFG::k_w - 1) - 1) / CFG::stride_w + 1,
                  "out_w does not match in_w, k_w, stride, padding and dilation");
    static const int cin_g = CFG::in_c / CFG::groups;
    static const int cout_g = CFG::out_c / CFG::groups;
    static const int macs = CFG::out_c * CFG::k_h * CFG::k_w * (CFG::in_c / CFG::groups);
};

// Accumulators of all output channels of pixel (oh, ow). Window positions outside the input
// (padding) are skipped once per position; each remaining position adds, for every output
// channel, one dot product over the input channels of its group (contiguous in NHWC).
template <class CFG>
void conv2d_pixel(const typename CFG::in_t x[], const typename CFG::weight_t w[],
                  const int32_t bias[], int32_t in_zp, int oh, int ow,
                  typename layer_types<CFG>::uacc_t acc[CFG::out_c]) {
    TAPEOUT_PRAGMA(HLS INLINE)
    typedef conv2d_checks<CFG> K;
    for (int co = 0; co < CFG::out_c; co++) {
        acc[co] = acc_init<CFG>(bias[co]);
    }
    for (int kh = 0; kh < CFG::k_h; kh++) {
        const int ih = oh * CFG::stride_h - CFG::pad_top + kh * CFG::dil_h;
        if (ih < 0 || ih >= CFG::in_h) continue;
        for (int kw = 0; kw < CFG::k_w; kw++) {
            const int iw = ow * CFG::stride_w - CFG::pad_left + kw * CFG::dil_w;
            if (iw < 0 || iw >= CFG::in_w) continue;
            typename operand<CFG>::x_t xs[CFG::in_c];
            widen<CFG, CFG::in_c>(&x[(ih * CFG::in_w + iw) * CFG::in_c], xs);
            for (int co = 0; co < CFG::out_c; co++) {
                const int ci0 = (co / K::cout_g) * K::cin_g;
                acc[co] = dot<CFG, K::cin_g>(
                    acc[co], xs + ci0, &w[((co * CFG::k_h + kh) * CFG::k_w + kw) * K::cin_g],
                    in_zp);
            }
        }
    }
}

template <class CFG>
void conv2d(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::in_c],
            typename CFG::out_t y[CFG::out_h * CFG::out_w * CFG::out_c],
            const typename CFG::weight_t
                w[CFG::out_c * CFG::k_h * CFG::k_w * (CFG::in_c / CFG::groups)],
            const int32_t bias[CFG::out_c], const int32_t multiplier[], const int32_t shift[],
            int32_t in_zp, int32_t out_zp, int32_t clip_lo, int32_t clip_hi) {
    const int block = ceil_div(conv2d_checks<CFG>::macs, CFG::rf);
    TAPEOUT_UNUSED(block);
    TAPEOUT_PRAGMA(HLS ALLOCATION operation instances=mul limit=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=w cyclic factor=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=bias complete)
    for (int oh = 0; oh < CFG::out_h; oh++) {
        for (int ow = 0; ow < CFG::out_w; ow++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
            typename layer_types<CFG>::uacc_t acc[CFG::out_c];
            TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=acc complete)
            conv2d_pixel<CFG>(x, w, bias, in_zp, oh, ow, acc);
            for (int co = 0; co < CFG::out_c; co++) {
                y[(oh * CFG::out_w + ow) * CFG::out_c + co] =
                    finish<CFG>(acc[co], co, multiplier, shift, out_zp, clip_lo, clip_hi);
            }
        }
    }
}

template <class CFG, typename TRes>
void conv2d_residual(const typename CFG::in_t x[CFG::in_h * CFG::in_w * CFG::in_c],
                     const TRes residual[CFG::out_h * CFG::out_w * CFG::out_c],
                     typename CFG::out_t y[CFG::out_h * CFG::out_w * CFG::out_c],
                     const typename CFG::weight_t
                         w[CFG::out_c * CFG::k_h * CFG::k_w * (CFG::in_c / CFG::groups)],
                     const int32_t bias[CFG::out_c], const int32_t multiplier[],
                     const int32_t shift[], int32_t in_zp, int32_t out_zp, int32_t clip_lo,
                     int32_t clip_hi, residual_params rp, const int32_t res_mult[]) {
    const int block = ceil_div(conv2d_checks<CFG>::macs, CFG::rf);
    TAPEOUT_UNUSED(block);
    TAPEOUT_PRAGMA(HLS ALLOCATION operation instances=mul limit=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=w cyclic factor=block)
    TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=bias complete)
    for (int oh = 0; oh < CFG::out_h; oh++) {
        for (int ow = 0; ow < CFG::out_w; ow++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=CFG::rf)
            typename layer_types<CFG>::uacc_t acc[CFG::out_c];
            TAPEOUT_PRAGMA(HLS ARRAY_PARTITION variable=acc complete)
            conv2d_pixel<CFG>(x, w, bias, in_zp, oh, ow, acc);
            for (int co = 0; co < CFG::out_c; co++) {
                const int i = (oh * CFG::out_w + ow) * CFG::out_c + co;
                y[i] = finish_residual<CFG>(acc[co], residual[i], co, multiplier, shift, out_zp,
                                            clip_lo, clip_hi, rp, res_mult);
            }
        }
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_CONV2D_H
