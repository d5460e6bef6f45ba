/*
 * host_ops.h: the host-CPU kernels of tapeout's ASIC flow, everything the NPU does not run.
 *
 * Each kernel follows the NumPy implementation of its op in tapeout's reference interpreter
 * (compiler/interpreter*.py, compiler/numerics.py) and is bit-exact with it when compiled
 * without floating-point contraction (-ffp-contract=off): float32 arithmetic in the same
 * order, rint half to even (nearbyintf), 64-bit integer requantization.
 *
 * Tensors are dense row-major (NCHW). A per-channel parameter along an axis is indexed as
 * (i / inner) % channels, where inner is the product of the dimensions after the axis.
 */
#ifndef TAPEOUT_HOST_OPS_H
#define TAPEOUT_HOST_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOST_MAX_RANK 8

/* saturate(rint(x / scale) + zp) to [lo, hi]; scale/zp per channel when channels > 1. */
void host_quantize_f32_i8(const float *x, int8_t *out, size_t size, const float *scale,
                          const int32_t *zero_point, size_t channels, size_t inner);
/* (q - zp) * scale in float32. */
void host_dequantize_i8(const int8_t *q, float *out, size_t size, const float *scale,
                        const int32_t *zero_point, size_t channels, size_t inner);
void host_dequantize_i32(const int32_t *q, float *out, size_t size, const float *scale,
                         const int32_t *zero_point, size_t channels, size_t inner);
/* numerics.requantize, then clamp to [lo, hi] (dtype range narrowed by clip_min/max). */
void host_requantize_i32_i8(const int32_t *acc, int8_t *out, size_t size,
                            const int64_t *multiplier, const int64_t *shift,
                            const int32_t *zero_point, size_t channels, size_t inner,
                            int32_t lo, int32_t hi);
/* q.add: ((a - za)*ma + (b - zb)*mb) rounded by shift, + zo, clamped; same shapes. */
void host_qadd_i8(const int8_t *a, const int8_t *b, int8_t *out, size_t size, int32_t za,
                  int32_t zb, int64_t ma, int64_t mb, int32_t shift, int32_t zo, int32_t lo,
                  int32_t hi);

/* 2-D pooling over NCHW; pads = {top, left, bottom, right}. */
typedef struct {
  int32_t n, c, h, w, oh, ow;
  int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int32_t pad_top, pad_left;
} host_pool2d;
void host_max_pool2d_i8(const int8_t *x, int8_t *out, const host_pool2d *p);
void host_max_pool2d_f32(const float *x, float *out, const host_pool2d *p);
/* q.avg_pool2d / q.global_avg_pool: window sum of (x - zx), requantized. */
void host_qavg_pool2d_i8(const int8_t *x, int8_t *out, const host_pool2d *p, int32_t zx,
                         int64_t multiplier, int64_t shift, int32_t zo);

/* Elementwise float32 with NumPy broadcasting: strides are 0 along broadcast dimensions. */
typedef enum {
  HOST_ADD, HOST_SUB, HOST_MUL, HOST_DIV, HOST_MAX, HOST_MIN
} host_binary_op;
void host_binary_f32(host_binary_op op, const float *a, const int64_t *a_strides,
                     const float *b, const int64_t *b_strides, float *out,
                     const int64_t *shape, int32_t rank);
void host_relu_f32(const float *x, float *out, size_t size);
void host_clip_f32(const float *x, float *out, size_t size, float lo, float hi);
void host_relu_i8(const int8_t *x, int8_t *out, size_t size);

/* out[i] = x[permuted index]: a general transpose; in_strides are in elements. */
void host_transpose(const void *x, void *out, size_t elem_size, const int64_t *out_shape,
                    const int64_t *in_strides_permuted, int32_t rank);

/* Integer conv2d / dense on the host (what the NPU does not take: groups > 1, ...);
 * int32 accumulators out, the input zero point subtracted, padding real zero. */
void host_conv2d_i8(const int8_t *x, int32_t n, int32_t c, int32_t h, int32_t w,
                    int32_t in_zero_point, const int8_t *weight, int32_t out_channels,
                    int32_t groups, const int32_t *bias, int32_t kernel_h, int32_t kernel_w,
                    int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                    int32_t dilation_h, int32_t dilation_w, int32_t oh, int32_t ow,
                    int32_t relu, int32_t *out);
void host_dense_i8(const int8_t *x, int32_t m, int32_t k, int32_t in_zero_point,
                   const int8_t *weight, int32_t n, const int32_t *bias, int32_t relu,
                   int32_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TAPEOUT_HOST_OPS_H */
