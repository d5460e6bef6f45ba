// tapeout/engine_desc.h -- the layer descriptor of the weight-streaming engine (engine.h).
//
// The engine runs a schedule: an array of descriptors in DDR, DESC_WORDS int32 words each, one
// per layer, written by the compiler (backends/hls/engine/schedule.py, whose FIELDS tuple
// lists these names in this order; a test checks the two agree). Offsets are element indices
// into the engine's memories:
//   act  int8  activations (every tensor of the graph, NHWC: element (h, w, c) of a tensor at
//              `base` with pixel stride `ps` is act[base + (h * W + w) * ps + c]; ps > C is a
//              channel slice of a wider tensor, which is how concat is laid out)
//   wgt  int8  weights, per layer [OC][KH][KW][IC / groups]
//   par  int32 per-channel parameters: bias[OC], multiplier[OC or 1], shift[OC or 1]
// A field that does not apply to an op is 0. A negative offset means "absent".
#ifndef TAPEOUT_ENGINE_DESC_H
#define TAPEOUT_ENGINE_DESC_H

namespace tapeout {
namespace engine {

// What one descriptor does.
//   OP_CONV     conv / dense / depthwise on the MAC array, then the epilogue: relu on the
//               int32 accumulator, requantize, clip, and optionally a residual q.add
//   OP_MAXPOOL  window max (padding reads as the int8 minimum)
//   OP_AVGPOOL  window sum of (x - in_zp), padding reads as real 0, then one requantize
//   OP_ADD      q.add of two same-shape tensors (the residual unit alone)
//   OP_COPY     copy a tensor into a channel slice of another (concat)
//   OP_LUT      y = table[x + 128], a 256-entry int8 table at wgt[F_WGT] (a float island
//               between a dequantize and a quantize: hardswish, sigmoid, GELU ...)
//   OP_RESIZE   nearest upsampling: output row oh, column ow reads input row par[F_BIAS + oh],
//               column par[F_MULT + ow] (index tables the compiler computed)
//   OP_MATMUL, OP_SOFTMAX, OP_LAYERNORM, OP_GATHER: the transformer side units
//               (engine_xf.h); their tensors are row-major, rows of F_ROW_LEN
enum Op {
    OP_CONV = 1, OP_MAXPOOL = 2, OP_AVGPOOL = 3, OP_ADD = 4, OP_COPY = 5, OP_LUT = 6, OP_RESIZE = 7,
    OP_MATMUL = 8, OP_SOFTMAX = 9, OP_LAYERNORM = 10, OP_GATHER = 11
};

enum Field {
    F_OP,
    // input tensor: offset, height, width, channels, pixel stride, zero point
    F_IN, F_IN_H, F_IN_W, F_IN_C, F_IN_PS, F_IN_ZP,
    // output tensor; F_OUT_ZP is the requantize's zero point (the add's is F_RES_OUT_ZP)
    F_OUT, F_OUT_H, F_OUT_W, F_OUT_C, F_OUT_PS, F_OUT_ZP,
    // window: kernel, strides, top/left padding, dilations, groups
    F_KH, F_KW, F_SH, F_SW, F_PT, F_PL, F_DH, F_DW, F_GROUPS,
    // parameters: offsets into wgt (weights) and par (bias, multiplier, shift)
    F_WGT, F_BIAS, F_MULT, F_SHIFT, F_PER_CHANNEL,
    // epilogue: relu on the accumulator, clip bounds after the requantize
    F_RELU, F_LO, F_HI,
    // residual add: b tensor offset, pixel stride, zero point; a/b multipliers as lo/hi
    // 32-bit halves of int64; shift; output zero point and clip bounds
    F_RES, F_RES_PS, F_RES_ZP, F_RES_AMUL_LO, F_RES_AMUL_HI, F_RES_BMUL_LO, F_RES_BMUL_HI,
    F_RES_SHIFT, F_RES_OUT_ZP, F_RES_LO, F_RES_HI,
    // the pooling requantize (per tensor)
    F_POOL_MULT, F_POOL_SHIFT,
    // tiling chosen by the compiler: output rows, output channels, input channels per tile
    F_T_OH, F_T_OC, F_T_IC,
    // transformer units: rows and row length; matmul batch count and batch strides of a and
    // b (b at F_RES, K = F_IN_C); the layer norm's integer epsilon
    F_ROWS, F_ROW_LEN, F_BATCH, F_A_BS, F_B_BS, F_EPS,
    DESC_WORDS
};

}  // namespace engine
}  // namespace tapeout

#endif  // TAPEOUT_ENGINE_DESC_H
