/*
 * npu_runtime.h: the host API of a generic int8 systolic-array NPU (tapeout's ASIC flow).
 *
 * The accelerator computes int8 x int8 -> int32 matrix products on an R x C weight-stationary
 * array of multiply-accumulate cells and requantizes in its output stage. The host hands it
 * whole layers: a convolution or a dense layer with bias, a ReLU on the accumulator and an
 * optional output stage that applies a per-channel rounding shift, adds the output zero point
 * and saturates to int8 (power-of-two scales: the stage has a shifter, no multiplier).
 *
 * Activations cross the API in NCHW (dense: [M, K]); the runtime's DMA model converts them to
 * the array's NHWC on-chip layout. Weights are OIHW (dense: [N, K]) int8, biases int32.
 *
 * Integer semantics (bit-exact with tapeout's reference interpreter, compiler/numerics.py):
 *   acc  = sum (x - in_zero_point) * w + bias            (int32, wraps modulo 2^32)
 *   acc  = max(acc, 0)                                    if relu
 *   out  = ((acc + 2^(shift-1)) >> shift) + out_zp         (64-bit, arithmetic shift;
 *                                                           shift 0 adds nothing)
 *   out  = clamp(out, max(-128, clip_min), min(127, clip_max))
 * Without an output stage (stage == NULL) the int32 accumulators are written out.
 *
 * npu_runtime.c is the reference implementation: a functional simulator that walks the same
 * weight tiles the array would and counts the cycles of a weight-stationary schedule:
 *   tiles  = ceil(K / rows) * ceil(N / cols)
 *   cycles = tiles * (M + rows + cols)        (stream M activation rows, fill + drain)
 * with M the output pixels (or dense rows), K the reduction length, N the output channels.
 */
#ifndef NPU_RUNTIME_H
#define NPU_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t rows;     /* systolic array rows (reduction direction) */
  int32_t cols;     /* systolic array columns (output channels) */
  int32_t sram_kib; /* on-chip SRAM */
} npu_config;

typedef struct {
  uint64_t calls;
  uint64_t macs;
  uint64_t tiles;
  uint64_t cycles;
} npu_stats;

typedef struct {
  int32_t n, c, h, w;
} npu_shape4;

typedef struct {
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_left, pad_bottom, pad_right;
  int32_t dilation_h, dilation_w;
} npu_conv_params;

typedef struct {
  const int32_t *shift; /* one per output channel */
  int32_t out_zero_point;
  int32_t clip_min, clip_max;
} npu_output_stage;

enum { NPU_OK = 0, NPU_EINVAL = 1, NPU_ENOMEM = 2 };

/* Configure the (simulated) device and clear its statistics. */
int npu_init(const npu_config *config);
/* Statistics since npu_init or the last npu_reset_stats. */
npu_stats npu_get_stats(void);
void npu_reset_stats(void);

/* out: [N, out_channels, OH, OW], int8 when stage != NULL, else int32. */
int npu_conv2d(const int8_t *input, npu_shape4 in_shape, int32_t in_zero_point,
               const int8_t *weight, int32_t out_channels, const int32_t *bias,
               const npu_conv_params *params, int32_t relu, const npu_output_stage *stage,
               void *output);

/* out: [M, N], int8 when stage != NULL, else int32. */
int npu_dense(const int8_t *input, int32_t m, int32_t k, int32_t in_zero_point,
              const int8_t *weight, int32_t n, const int32_t *bias, int32_t relu,
              const npu_output_stage *stage, void *output);

#ifdef __cplusplus
}
#endif

#endif /* NPU_RUNTIME_H */
