/*
 * host_ops.c: host-CPU kernels of tapeout's ASIC flow (see host_ops.h). Each function names
 * the interpreter code it mirrors. Build with -ffp-contract=off so that a*b+c stays two
 * roundings, as in NumPy.
 */
#include "host_ops.h"

#include <math.h>
#include <string.h>

static size_t channel_of(size_t i, size_t channels, size_t inner) {
  return channels > 1 ? (i / inner) % channels : 0;
}

static int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t wrap_mul(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }

/* numerics.quantize: rint(x / scale) half to even (nearbyintf in the default rounding
 * mode), + zp, saturate. NaN saturates to the low end, as NumPy's cast does. */
void host_quantize_f32_i8(const float *x, int8_t *out, size_t size, const float *scale,
                          const int32_t *zero_point, size_t channels, size_t inner) {
  for (size_t i = 0; i < size; ++i) {
    const size_t ch = channel_of(i, channels, inner);
    const float r = nearbyintf(x[i] / scale[ch]);
    int64_t q = (r != r || r < -1e18f) ? INT64_MIN / 2 : (r > 1e18f ? INT64_MAX / 2 : (int64_t)r);
    q += zero_point[ch];
    out[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
}

/* numerics.dequantize: float32(q - zp) * float32(scale). */
void host_dequantize_i8(const int8_t *q, float *out, size_t size, const float *scale,
                        const int32_t *zero_point, size_t channels, size_t inner) {
  for (size_t i = 0; i < size; ++i) {
    const size_t ch = channel_of(i, channels, inner);
    out[i] = (float)((int64_t)q[i] - zero_point[ch]) * scale[ch];
  }
}

void host_dequantize_i32(const int32_t *q, float *out, size_t size, const float *scale,
                         const int32_t *zero_point, size_t channels, size_t inner) {
  for (size_t i = 0; i < size; ++i) {
    const size_t ch = channel_of(i, channels, inner);
    out[i] = (float)((int64_t)q[i] - zero_point[ch]) * scale[ch];
  }
}

static int64_t rounding_shift(int64_t p, int64_t shift) {
  if (shift > 0) p = (p + ((int64_t)1 << (shift - 1))) >> shift;
  return p;
}

static int8_t clamp8(int64_t r, int32_t lo, int32_t hi) {
  return (int8_t)(r < lo ? lo : (r > hi ? hi : r));
}

/* numerics.requantize (+ interpreter_ops._requantize's clip_min/clip_max). */
void host_requantize_i32_i8(const int32_t *acc, int8_t *out, size_t size,
                            const int64_t *multiplier, const int64_t *shift,
                            const int32_t *zero_point, size_t channels, size_t inner,
                            int32_t lo, int32_t hi) {
  for (size_t i = 0; i < size; ++i) {
    const size_t ch = channel_of(i, channels, inner);
    const int64_t r = rounding_shift((int64_t)acc[i] * multiplier[ch], shift[ch]);
    out[i] = clamp8(r + zero_point[ch], lo, hi);
  }
}

/* interpreter_quant._qadd */
void host_qadd_i8(const int8_t *a, const int8_t *b, int8_t *out, size_t size, int32_t za,
                  int32_t zb, int64_t ma, int64_t mb, int32_t shift, int32_t zo, int32_t lo,
                  int32_t hi) {
  for (size_t i = 0; i < size; ++i) {
    const int64_t acc = ((int64_t)a[i] - za) * ma + ((int64_t)b[i] - zb) * mb;
    out[i] = clamp8(rounding_shift(acc, shift) + zo, lo, hi);
  }
}

#define POOL_LOOP(BODY)                                                                    \
  for (int32_t b = 0; b < p->n; ++b)                                                       \
    for (int32_t c = 0; c < p->c; ++c)                                                     \
      for (int32_t y = 0; y < p->oh; ++y)                                                  \
        for (int32_t x0 = 0; x0 < p->ow; ++x0) {                                           \
          const size_t plane = ((size_t)b * p->c + c) * p->h;                              \
          BODY                                                                             \
        }

/* interpreter_nn._pool(max): padding never wins (-inf / the dtype's minimum). */
void host_max_pool2d_i8(const int8_t *x, int8_t *out, const host_pool2d *p) {
  POOL_LOOP({
    int32_t best = -128;
    for (int32_t i = 0; i < p->kernel_h; ++i)
      for (int32_t j = 0; j < p->kernel_w; ++j) {
        const int32_t iy = y * p->stride_h + i * p->dilation_h - p->pad_top;
        const int32_t ix = x0 * p->stride_w + j * p->dilation_w - p->pad_left;
        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
        const int32_t v = x[(plane + iy) * p->w + ix];
        if (v > best) best = v;
      }
    out[(((size_t)b * p->c + c) * p->oh + y) * p->ow + x0] = (int8_t)best;
  })
}

void host_max_pool2d_f32(const float *x, float *out, const host_pool2d *p) {
  POOL_LOOP({
    float best = -INFINITY;
    for (int32_t i = 0; i < p->kernel_h; ++i)
      for (int32_t j = 0; j < p->kernel_w; ++j) {
        const int32_t iy = y * p->stride_h + i * p->dilation_h - p->pad_top;
        const int32_t ix = x0 * p->stride_w + j * p->dilation_w - p->pad_left;
        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
        const float v = x[(plane + iy) * p->w + ix];
        if (v > best || v != v) best = v; /* NumPy's max propagates NaN */
      }
    out[(((size_t)b * p->c + c) * p->oh + y) * p->ow + x0] = best;
  })
}

/* interpreter_quant._qavg_pool2d / _qglobal_avg_pool */
void host_qavg_pool2d_i8(const int8_t *x, int8_t *out, const host_pool2d *p, int32_t zx,
                         int64_t multiplier, int64_t shift, int32_t zo) {
  POOL_LOOP({
    int64_t sum = 0;
    for (int32_t i = 0; i < p->kernel_h; ++i)
      for (int32_t j = 0; j < p->kernel_w; ++j) {
        const int32_t iy = y * p->stride_h + i - p->pad_top;
        const int32_t ix = x0 * p->stride_w + j - p->pad_left;
        if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
        sum += (int64_t)x[(plane + iy) * p->w + ix] - zx;
      }
    out[(((size_t)b * p->c + c) * p->oh + y) * p->ow + x0] =
        clamp8(rounding_shift(sum * multiplier, shift) + zo, -128, 127);
  })
}

static float binary(host_binary_op op, float a, float b) {
  switch (op) {
    case HOST_ADD: return a + b;
    case HOST_SUB: return a - b;
    case HOST_MUL: return a * b;
    case HOST_DIV: return a / b;
    case HOST_MAX: return (a != a || b != b) ? NAN : (a > b ? a : b); /* np.maximum */
    case HOST_MIN: return (a != a || b != b) ? NAN : (a < b ? a : b);
  }
  return 0.0f;
}

void host_binary_f32(host_binary_op op, const float *a, const int64_t *a_strides,
                     const float *b, const int64_t *b_strides, float *out,
                     const int64_t *shape, int32_t rank) {
  int64_t index[HOST_MAX_RANK] = {0};
  size_t size = 1;
  for (int32_t d = 0; d < rank; ++d) size *= (size_t)shape[d];
  for (size_t i = 0; i < size; ++i) {
    int64_t ia = 0, ib = 0;
    for (int32_t d = 0; d < rank; ++d) ia += index[d] * a_strides[d], ib += index[d] * b_strides[d];
    out[i] = binary(op, a[ia], b[ib]);
    for (int32_t d = rank - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
}

void host_relu_f32(const float *x, float *out, size_t size) {
  for (size_t i = 0; i < size; ++i) out[i] = (x[i] != x[i]) ? x[i] : (x[i] > 0.0f ? x[i] : 0.0f);
}

void host_clip_f32(const float *x, float *out, size_t size, float lo, float hi) {
  for (size_t i = 0; i < size; ++i) {
    float v = x[i];
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    out[i] = v;
  }
}

void host_relu_i8(const int8_t *x, int8_t *out, size_t size) {
  for (size_t i = 0; i < size; ++i) out[i] = x[i] > 0 ? x[i] : 0;
}

void host_transpose(const void *x, void *out, size_t elem_size, const int64_t *out_shape,
                    const int64_t *in_strides_permuted, int32_t rank) {
  int64_t index[HOST_MAX_RANK] = {0};
  size_t size = 1;
  for (int32_t d = 0; d < rank; ++d) size *= (size_t)out_shape[d];
  for (size_t i = 0; i < size; ++i) {
    int64_t src = 0;
    for (int32_t d = 0; d < rank; ++d) src += index[d] * in_strides_permuted[d];
    memcpy((char *)out + i * elem_size, (const char *)x + (size_t)src * elem_size, elem_size);
    for (int32_t d = rank - 1; d >= 0; --d) {
      if (++index[d] < out_shape[d]) break;
      index[d] = 0;
    }
  }
}

/* interpreter_nn.conv_nd on integers (then _finish: bias, wrap to i32, relu). */
void host_conv2d_i8(const int8_t *x, int32_t n, int32_t c, int32_t h, int32_t w,
                    int32_t in_zero_point, const int8_t *weight, int32_t out_channels,
                    int32_t groups, const int32_t *bias, int32_t kernel_h, int32_t kernel_w,
                    int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left,
                    int32_t dilation_h, int32_t dilation_w, int32_t oh, int32_t ow,
                    int32_t relu, int32_t *out) {
  const int32_t cg = c / groups, og = out_channels / groups;
  for (int32_t b = 0; b < n; ++b)
    for (int32_t o = 0; o < out_channels; ++o)
      for (int32_t y = 0; y < oh; ++y)
        for (int32_t x0 = 0; x0 < ow; ++x0) {
          int32_t acc = 0;
          const int32_t g = o / og;
          for (int32_t ci = 0; ci < cg; ++ci)
            for (int32_t i = 0; i < kernel_h; ++i)
              for (int32_t j = 0; j < kernel_w; ++j) {
                const int32_t iy = y * stride_h + i * dilation_h - pad_top;
                const int32_t ix = x0 * stride_w + j * dilation_w - pad_left;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                const int32_t v =
                    x[(((size_t)b * c + g * cg + ci) * h + iy) * w + ix] - in_zero_point;
                acc = wrap_add(acc, wrap_mul(v, weight[(((size_t)o * cg + ci) * kernel_h + i) *
                                                       kernel_w + j]));
              }
          if (bias != NULL) acc = wrap_add(acc, bias[o]);
          if (relu && acc < 0) acc = 0;
          out[(((size_t)b * out_channels + o) * oh + y) * ow + x0] = acc;
        }
}

void host_dense_i8(const int8_t *x, int32_t m, int32_t k, int32_t in_zero_point,
                   const int8_t *weight, int32_t n, const int32_t *bias, int32_t relu,
                   int32_t *out) {
  for (int32_t i = 0; i < m; ++i)
    for (int32_t o = 0; o < n; ++o) {
      int32_t acc = 0;
      for (int32_t q = 0; q < k; ++q)
        acc = wrap_add(acc, wrap_mul(x[(size_t)i * k + q] - in_zero_point,
                                     weight[(size_t)o * k + q]));
      if (bias != NULL) acc = wrap_add(acc, bias[o]);
      if (relu && acc < 0) acc = 0;
      out[(size_t)i * n + o] = acc;
    }
}
