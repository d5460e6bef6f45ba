/*
 * npu_runtime.c: reference implementation of npu_runtime.h, the functional simulator.
 *
 * It computes what the array computes, the way the array computes it: the layer becomes a
 * matrix product A[M x K] * W[K x N] (A: im2col rows of the input in the array's NHWC order,
 * zero point already subtracted; W: the weights), the weights are cut into rows x cols
 * tiles, each tile is held stationary while all M activation rows stream through it, and
 * the partial sums of successive K tiles accumulate in int32 (wrapping, as the hardware's
 * adders do). Then the output stage runs once per element.
 */
#include "npu_runtime.h"

#include <stdlib.h>
#include <string.h>

static npu_config g_config = {16, 16, 512};
static npu_stats g_stats;

int npu_init(const npu_config *config) {
  if (config == NULL || config->rows <= 0 || config->cols <= 0) return NPU_EINVAL;
  g_config = *config;
  memset(&g_stats, 0, sizeof g_stats);
  return NPU_OK;
}

npu_stats npu_get_stats(void) { return g_stats; }

void npu_reset_stats(void) { memset(&g_stats, 0, sizeof g_stats); }

static int32_t wrap_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b); /* two's complement, no UB on overflow */
}

static int32_t wrap_mul(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }

/* acc[M x N] = A[M x K] * W[K x N], tile by tile; A int16 (x - zp), W int8 [K x N]. */
static void systolic_gemm(const int16_t *a, const int8_t *w, int32_t m, int32_t k, int32_t n,
                          int32_t *acc) {
  const int32_t rows = g_config.rows, cols = g_config.cols;
  uint64_t tiles = 0;
  memset(acc, 0, sizeof(int32_t) * (size_t)m * (size_t)n);
  for (int32_t k0 = 0; k0 < k; k0 += rows) {
    const int32_t k1 = k0 + rows < k ? k0 + rows : k;
    for (int32_t n0 = 0; n0 < n; n0 += cols) {
      const int32_t n1 = n0 + cols < n ? n0 + cols : n;
      ++tiles;
      for (int32_t i = 0; i < m; ++i) {
        for (int32_t j = n0; j < n1; ++j) {
          int32_t sum = 0;
          for (int32_t q = k0; q < k1; ++q)
            sum = wrap_add(sum, wrap_mul(a[(size_t)i * k + q], w[(size_t)q * n + j]));
          acc[(size_t)i * n + j] = wrap_add(acc[(size_t)i * n + j], sum);
        }
      }
    }
  }
  g_stats.calls += 1;
  g_stats.macs += (uint64_t)m * (uint64_t)k * (uint64_t)n;
  g_stats.tiles += tiles;
  g_stats.cycles += tiles * ((uint64_t)m + (uint64_t)rows + (uint64_t)cols);
}

static int8_t output_stage(int32_t acc, int32_t shift, const npu_output_stage *stage) {
  int64_t r = (int64_t)acc;
  if (shift > 0) r = (r + ((int64_t)1 << (shift - 1))) >> shift;
  r += stage->out_zero_point;
  const int64_t lo = stage->clip_min > -128 ? stage->clip_min : -128;
  const int64_t hi = stage->clip_max < 127 ? stage->clip_max : 127;
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return (int8_t)r;
}

/* Bias, ReLU and the output stage; acc is [M x N] with M = batch * pixels, written to
 * out in NCHW ([batch, N, pixels]) or, for dense (pixels == 1), [M, N]. */
static void finish(const int32_t *acc, int32_t m, int32_t n, int32_t pixels,
                   const int32_t *bias, int32_t relu, const npu_output_stage *stage,
                   void *output) {
  for (int32_t i = 0; i < m; ++i) {
    const int32_t b = i / pixels, p = i % pixels;
    for (int32_t j = 0; j < n; ++j) {
      int32_t v = acc[(size_t)i * n + j];
      if (bias != NULL) v = wrap_add(v, bias[j]);
      if (relu && v < 0) v = 0;
      const size_t at = ((size_t)b * n + j) * pixels + p;
      if (stage != NULL)
        ((int8_t *)output)[at] = output_stage(v, stage->shift[j], stage);
      else
        ((int32_t *)output)[at] = v;
    }
  }
}

int npu_conv2d(const int8_t *input, npu_shape4 s, int32_t in_zero_point,
               const int8_t *weight, int32_t out_channels, const int32_t *bias,
               const npu_conv_params *p, int32_t relu, const npu_output_stage *stage,
               void *output) {
  if (input == NULL || weight == NULL || p == NULL || output == NULL) return NPU_EINVAL;
  const int32_t kh = p->kernel_h, kw = p->kernel_w;
  const int32_t oh = (s.h + p->pad_top + p->pad_bottom - p->dilation_h * (kh - 1) - 1) /
                     p->stride_h + 1;
  const int32_t ow = (s.w + p->pad_left + p->pad_right - p->dilation_w * (kw - 1) - 1) /
                     p->stride_w + 1;
  const int32_t m = s.n * oh * ow, k = kh * kw * s.c, n = out_channels;
  int16_t *a = malloc(sizeof(int16_t) * (size_t)m * (size_t)k);
  int8_t *w = malloc((size_t)k * (size_t)n);
  int32_t *acc = malloc(sizeof(int32_t) * (size_t)m * (size_t)n);
  if (a == NULL || w == NULL || acc == NULL) {
    free(a), free(w), free(acc);
    return NPU_ENOMEM;
  }
  /* DMA model: im2col rows in NHWC order (kh, kw, c), padding is real zero. */
  for (int32_t b = 0; b < s.n; ++b)
    for (int32_t y = 0; y < oh; ++y)
      for (int32_t x = 0; x < ow; ++x) {
        int16_t *row = a + ((size_t)(b * oh + y) * ow + x) * k;
        for (int32_t i = 0; i < kh; ++i)
          for (int32_t j = 0; j < kw; ++j)
            for (int32_t c = 0; c < s.c; ++c) {
              const int32_t iy = y * p->stride_h + i * p->dilation_h - p->pad_top;
              const int32_t ix = x * p->stride_w + j * p->dilation_w - p->pad_left;
              int16_t v = 0;
              if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w)
                v = (int16_t)(input[(((size_t)b * s.c + c) * s.h + iy) * s.w + ix] -
                              in_zero_point);
              row[(i * kw + j) * s.c + c] = v;
            }
      }
  /* Weights OIHW -> [K = (kh, kw, c)] x [N]. */
  for (int32_t o = 0; o < n; ++o)
    for (int32_t c = 0; c < s.c; ++c)
      for (int32_t i = 0; i < kh; ++i)
        for (int32_t j = 0; j < kw; ++j)
          w[(size_t)((i * kw + j) * s.c + c) * n + o] =
              weight[(((size_t)o * s.c + c) * kh + i) * kw + j];
  systolic_gemm(a, w, m, k, n, acc);
  finish(acc, m, n, oh * ow, bias, relu, stage, output);
  free(a), free(w), free(acc);
  return NPU_OK;
}

int npu_dense(const int8_t *input, int32_t m, int32_t k, int32_t in_zero_point,
              const int8_t *weight, int32_t n, const int32_t *bias, int32_t relu,
              const npu_output_stage *stage, void *output) {
  if (input == NULL || weight == NULL || output == NULL) return NPU_EINVAL;
  int16_t *a = malloc(sizeof(int16_t) * (size_t)m * (size_t)k);
  int8_t *w = malloc((size_t)k * (size_t)n);
  int32_t *acc = malloc(sizeof(int32_t) * (size_t)m * (size_t)n);
  if (a == NULL || w == NULL || acc == NULL) {
    free(a), free(w), free(acc);
    return NPU_ENOMEM;
  }
  for (size_t i = 0; i < (size_t)m * (size_t)k; ++i) a[i] = (int16_t)(input[i] - in_zero_point);
  for (int32_t o = 0; o < n; ++o)
    for (int32_t q = 0; q < k; ++q) w[(size_t)q * n + o] = weight[(size_t)o * k + q];
  systolic_gemm(a, w, m, k, n, acc);
  finish(acc, m, n, 1, bias, relu, stage, output);
  free(a), free(w), free(acc);
  return NPU_OK;
}
