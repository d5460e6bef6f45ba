// tapeout/engine.h -- a weight-streaming int8 engine in the spirit of the DPUCZDX8G.
//
// One array of PP x ICP x OCP multiply-accumulate units (pixels x input channels x output
// channels: B4096 is 8 x 16 x 16, B512 is 4 x 8 x 8) is reused layer after layer. Weights,
// activations and the schedule live in DDR behind four m_axi ports; each layer is one
// descriptor (engine_desc.h) that the compiler wrote, with the tiling it chose so that every
// tile fits the on-chip buffers:
//   in[2][CFG::in_buf]    int8   input rows of a tile, padded, [rows][wp][channels]
//   w[2][CFG::w_buf]      int8   weights of a tile, [oc][kh][kw][ic]
//   acc[CFG::acc_buf]     uint32 accumulators of a tile, [pixel][oc]
//   bias/mult/shift[CFG::max_oc]  per-channel parameters of an output-channel tile
// The two halves of `in` and `w` are the ping-pong buffers: the load of tile t+1 fills the half
// the MAC loop of tile t does not read (under HLS DATAFLOW the two overlap; in C simulation
// they run one after the other, with the same results).
//
// Arithmetic is the IR's, bit for bit (compiler/numerics.py):
//   acc = wrap_i32( bias + sum (x - in_zp) * w )          (uint32: defined modular sums)
//   a   = relu ? max(acc, 0) : acc
//   y   = clip(requantize<int8>(a, mult[c], shift[c], out_zp), lo, hi)
//   y   = add_one(y, r)   when the descriptor carries a residual (tapeout/add.h)
// so conv + q.requantize (+ q.add) of the IR is one descriptor. Pooling, the standalone add
// and the concat copy are small side units that stream the tensor once.
//
// run_schedule returns 0, or (layer index << 8) | Status when a descriptor asks for more than
// a buffer holds or names an unknown op (the compiler never writes such a schedule; the check
// keeps a hand-edited one from writing out of bounds).
//
// Synthesis notes: the MAC loop nest is written for the array (the ic loop unrolls by ICP, the
// oc loop by OCP, pixels by PP via the pragmas); it has been checked in C simulation only.
#ifndef TAPEOUT_ENGINE_H
#define TAPEOUT_ENGINE_H

#include "tapeout/add.h"
#include "tapeout/common.h"
#include "tapeout/engine_desc.h"
#include "tapeout/engine_xf.h"
#include "tapeout/requant.h"

namespace tapeout {
namespace engine {

enum Status { OK = 0, ERR_OP = 1, ERR_IN_BUF = 2, ERR_W_BUF = 3, ERR_ACC_BUF = 4, ERR_PAR_BUF = 5 };

inline int min_i(int a, int b) { return a < b ? a : b; }

template <class CFG>
struct Memories {
    int8_t in[2][CFG::in_buf];
    int8_t w[2][CFG::w_buf];
    uint32_t acc[CFG::acc_buf];
    int32_t bias[CFG::max_oc];
    int32_t mult[CFG::max_oc];
    int32_t shift[CFG::max_oc];
};

// int64 from the descriptor's two 32-bit halves.
inline int64_t join64(int32_t lo, int32_t hi) {
    const uint64_t u = (static_cast<uint64_t>(static_cast<uint32_t>(hi)) << 32) |
                       static_cast<uint64_t>(static_cast<uint32_t>(lo));
    return u64_to_i64(u);
}

// The residual q.add of a descriptor; a is the tensor in F_IN (OP_ADD) or the requantized
// conv output (OP_CONV, a_zp = F_OUT_ZP).
inline add_params residual_of(const int32_t* d, int32_t a_zp) {
    add_params p;
    p.a_zp = a_zp;
    p.a_lshift = 0;
    p.a_mult = join64(d[F_RES_AMUL_LO], d[F_RES_AMUL_HI]);
    p.b_zp = d[F_RES_ZP];
    p.b_lshift = 0;
    p.b_mult = join64(d[F_RES_BMUL_LO], d[F_RES_BMUL_HI]);
    p.out_mult = 1;
    p.out_shift = d[F_RES_SHIFT];
    p.out_zp = d[F_RES_OUT_ZP];
    p.clip_lo = d[F_RES_LO];
    p.clip_hi = d[F_RES_HI];
    return p;
}

// Input rows [ih0, ih0 + rows) x padded columns [0, wp) x channels [c0, c0 + nc) into buf;
// positions outside the tensor read the input zero point (real 0).
inline void load_input(const int32_t* d, const int8_t* act, int8_t* buf, int ih0, int rows,
                       int wp, int c0, int nc) {
    const int ih_n = d[F_IN_H], iw_n = d[F_IN_W], ps = d[F_IN_PS], pl = d[F_PL];
    const int8_t zp = static_cast<int8_t>(d[F_IN_ZP]);
    for (int r = 0; r < rows; r++) {
        const int ih = ih0 + r;
        for (int x = 0; x < wp; x++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int iw = x - pl;
            int8_t* dst = buf + (r * wp + x) * nc;
            const bool inside = ih >= 0 && ih < ih_n && iw >= 0 && iw < iw_n;
            const int8_t* src = act + d[F_IN] + (inside ? (ih * iw_n + iw) * ps : 0) + c0;
            for (int c = 0; c < nc; c++) dst[c] = inside ? src[c] : zp;
        }
    }
}

// Weights of output channels [oc0, oc0 + noc), input channels [ic0, ic0 + nic) of each.
inline void load_weights(const int32_t* d, const int8_t* wgt, int8_t* buf, int oc0, int noc,
                         int ic0, int nic) {
    const int taps = d[F_KH] * d[F_KW], row = d[F_IN_C] / d[F_GROUPS];
    for (int o = 0; o < noc; o++) {
        for (int k = 0; k < taps; k++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int8_t* src = wgt + d[F_WGT] + (static_cast<int64_t>(oc0 + o) * taps + k) * row + ic0;
            int8_t* dst = buf + (o * taps + k) * nic;
            for (int i = 0; i < nic; i++) dst[i] = src[i];
        }
    }
}

// Per-channel bias, multiplier and shift of output channels [oc0, oc0 + noc).
template <class CFG>
void load_params(const int32_t* d, const int32_t* par, Memories<CFG>& m, int oc0, int noc) {
    const bool per_channel = d[F_PER_CHANNEL] != 0;
    for (int o = 0; o < noc; o++) {
        m.bias[o] = d[F_BIAS] >= 0 ? par[d[F_BIAS] + oc0 + o] : 0;
        const int src = per_channel ? oc0 + o : 0;
        m.mult[o] = par[d[F_MULT] + src];
        m.shift[o] = par[d[F_SHIFT] + src];
    }
}

// acc[p][o] += sum over the window and the tile's input channels (the MAC array).
template <class CFG>
void mac_tile(const int32_t* d, const int8_t* in, const int8_t* w, uint32_t* acc, int oc0,
              int noc, int noh, int wp, int nic, int c_first) {
    const int kh_n = d[F_KH], kw_n = d[F_KW], sh = d[F_SH], sw = d[F_SW];
    const int dh = d[F_DH], dw = d[F_DW], ow_n = d[F_OUT_W], groups = d[F_GROUPS];
    const int cin_g = d[F_IN_C] / groups, cout_g = d[F_OUT_C] / groups;
    const int zp = d[F_IN_ZP];
    const int len = groups == 1 ? nic : cin_g;
    for (int o = 0; o < noc; o++) {
        TAPEOUT_PRAGMA(HLS UNROLL factor=CFG::ocp)
        const int base = groups == 1 ? 0 : ((oc0 + o) / cout_g) * cin_g - c_first;
        for (int p = 0; p < noh * ow_n; p++) {
            TAPEOUT_PRAGMA(HLS UNROLL factor=CFG::pp)
            const int oh = p / ow_n, ow = p % ow_n;
            uint32_t s = 0;
            for (int kh = 0; kh < kh_n; kh++) {
                for (int kw = 0; kw < kw_n; kw++) {
                    const int8_t* x = in + ((oh * sh + kh * dh) * wp + ow * sw + kw * dw) * nic + base;
                    const int8_t* wr = w + ((o * kh_n + kh) * kw_n + kw) * len;
                    for (int i = 0; i < len; i++) {
                        TAPEOUT_PRAGMA(HLS UNROLL factor=CFG::icp)
                        s += static_cast<uint32_t>((x[i] - zp) * wr[i]);
                    }
                }
            }
            acc[p * noc + o] += s;
        }
    }
}

// relu, requantize, clip, residual add; writes the tile's output pixels.
template <class CFG>
void epilogue(const int32_t* d, Memories<CFG>& m, int8_t* act, int oc0, int noc, int oh0,
              int noh) {
    const int ow_n = d[F_OUT_W], out_ps = d[F_OUT_PS], res_ps = d[F_RES_PS];
    const bool relu = d[F_RELU] != 0, has_res = d[F_RES] >= 0;
    const add_params ap = residual_of(d, d[F_OUT_ZP]);
    for (int p = 0; p < noh * ow_n; p++) {
        const int pix = (oh0 + p / ow_n) * ow_n + p % ow_n;
        for (int o = 0; o < noc; o++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            int32_t a = to_signed<int32_t>(m.acc[p * noc + o] + static_cast<uint32_t>(m.bias[o]));
            if (relu && a < 0) a = 0;
            int8_t y = clip<int8_t>(requantize<int8_t>(a, m.mult[o], m.shift[o], d[F_OUT_ZP]),
                                    d[F_LO], d[F_HI]);
            if (has_res) y = add_one<int64_t, int8_t>(y, act[d[F_RES] + pix * res_ps + oc0 + o], ap);
            act[d[F_OUT] + pix * out_ps + oc0 + o] = y;
        }
    }
}

template <class CFG>
int conv(const int32_t* d, const int8_t* wgt, const int32_t* par, int8_t* act, Memories<CFG>& m) {
    const int groups = d[F_GROUPS], ic_n = d[F_IN_C], oc_n = d[F_OUT_C];
    const int cin_g = ic_n / groups, cout_g = oc_n / groups;
    const int oh_n = d[F_OUT_H], ow_n = d[F_OUT_W];
    const int wp = (ow_n - 1) * d[F_SW] + (d[F_KW] - 1) * d[F_DW] + 1;
    const int toc = d[F_T_OC], toh = d[F_T_OH], taps = d[F_KH] * d[F_KW];
    int ping = 0, wbank = 0;
    for (int oc0 = 0; oc0 < oc_n; oc0 += toc) {
        const int noc = min_i(toc, oc_n - oc0);
        if (noc > CFG::max_oc) return ERR_PAR_BUF;
        load_params<CFG>(d, par, m, oc0, noc);
        // Input channels this output-channel tile reads: all of them, or its groups'.
        const int c_lo = groups == 1 ? 0 : (oc0 / cout_g) * cin_g;
        const int c_span = groups == 1 ? ic_n : ((oc0 + noc - 1) / cout_g + 1) * cin_g - c_lo;
        const int step = groups == 1 ? d[F_T_IC] : c_span;
        for (int oh0 = 0; oh0 < oh_n; oh0 += toh) {
            const int noh = min_i(toh, oh_n - oh0);
            const int rows = (noh - 1) * d[F_SH] + (d[F_KH] - 1) * d[F_DH] + 1;
            if (noh * ow_n * noc > CFG::acc_buf) return ERR_ACC_BUF;
            for (int i = 0; i < noh * ow_n * noc; i++) m.acc[i] = 0u;
            for (int ic0 = 0; ic0 < c_span; ic0 += step) {
                const int nic = min_i(step, c_span - ic0);
                const int wlen = groups == 1 ? nic : cin_g;
                if (noc * taps * wlen > CFG::w_buf) return ERR_W_BUF;
                if (rows * wp * nic > CFG::in_buf) return ERR_IN_BUF;
                // One input-channel tile: the weights stay on chip across row tiles.
                const bool keep = step >= c_span && oh0 > 0;
                if (!keep) {
                    wbank ^= 1;
                    load_weights(d, wgt, m.w[wbank], oc0, noc, groups == 1 ? ic0 : 0, wlen);
                }
                load_input(d, act, m.in[ping], oh0 * d[F_SH] - d[F_PT], rows, wp, c_lo + ic0, nic);
                mac_tile<CFG>(d, m.in[ping], m.w[wbank], m.acc, oc0, noc, noh, wp, nic, c_lo + ic0);
                ping ^= 1;
            }
            epilogue<CFG>(d, m, act, oc0, noc, oh0, noh);
        }
    }
    return OK;
}

// Max or average pooling (window sum of x - in_zp, one requantize) over NHWC tensors.
inline void pool(const int32_t* d, int8_t* act, bool is_max) {
    const int oh_n = d[F_OUT_H], ow_n = d[F_OUT_W], c_n = d[F_OUT_C];
    const int ih_n = d[F_IN_H], iw_n = d[F_IN_W], zp = d[F_IN_ZP];
    for (int oh = 0; oh < oh_n; oh++) {
        for (int ow = 0; ow < ow_n; ow++) {
            for (int c = 0; c < c_n; c++) {
                TAPEOUT_PRAGMA(HLS PIPELINE II=1)
                int64_t best = -128, sum = 0;
                for (int kh = 0; kh < d[F_KH]; kh++) {
                    const int ih = oh * d[F_SH] - d[F_PT] + kh * d[F_DH];
                    for (int kw = 0; kw < d[F_KW]; kw++) {
                        const int iw = ow * d[F_SW] - d[F_PL] + kw * d[F_DW];
                        if (ih < 0 || ih >= ih_n || iw < 0 || iw >= iw_n) continue;
                        const int64_t x = act[d[F_IN] + (ih * iw_n + iw) * d[F_IN_PS] + c];
                        best = x > best ? x : best;
                        sum += x - zp;
                    }
                }
                const int8_t y = is_max ? static_cast<int8_t>(best)
                                        : requantize<int8_t>(sum, d[F_POOL_MULT], d[F_POOL_SHIFT],
                                                             d[F_OUT_ZP]);
                act[d[F_OUT] + (oh * ow_n + ow) * d[F_OUT_PS] + c] = y;
            }
        }
    }
}

// q.add of two same-shape tensors, (OP_COPY) the first into a channel slice of the output, or
// (OP_LUT) a table lookup.
inline void eltwise(const int32_t* d, const int8_t* wgt, int8_t* act, int op) {
    const int pixels = d[F_OUT_H] * d[F_OUT_W], c_n = d[F_IN_C];
    const add_params ap = residual_of(d, d[F_IN_ZP]);
    for (int p = 0; p < pixels; p++) {
        for (int c = 0; c < c_n; c++) {
            TAPEOUT_PRAGMA(HLS PIPELINE II=1)
            const int8_t a = act[d[F_IN] + p * d[F_IN_PS] + c];
            int8_t y = a;
            if (op == OP_ADD) y = add_one<int64_t, int8_t>(a, act[d[F_RES] + p * d[F_RES_PS] + c], ap);
            if (op == OP_LUT) y = wgt[d[F_WGT] + a + 128];
            act[d[F_OUT] + p * d[F_OUT_PS] + c] = y;
        }
    }
}

// Nearest resize through the row and column index tables of the descriptor.
inline void resize(const int32_t* d, const int32_t* par, int8_t* act) {
    for (int oh = 0; oh < d[F_OUT_H]; oh++) {
        const int ih = par[d[F_BIAS] + oh];
        for (int ow = 0; ow < d[F_OUT_W]; ow++) {
            const int iw = par[d[F_MULT] + ow];
            const int8_t* src = act + d[F_IN] + (ih * d[F_IN_W] + iw) * d[F_IN_PS];
            int8_t* dst = act + d[F_OUT] + (oh * d[F_OUT_W] + ow) * d[F_OUT_PS];
            for (int c = 0; c < d[F_OUT_C]; c++) {
                TAPEOUT_PRAGMA(HLS PIPELINE II=1)
                dst[c] = src[c];
            }
        }
    }
}

template <class CFG>
int run_layer(const int32_t* d, const int8_t* wgt, const int32_t* par, int8_t* act,
              Memories<CFG>& m) {
    switch (d[F_OP]) {
        case OP_CONV: return conv<CFG>(d, wgt, par, act, m);
        case OP_MAXPOOL: pool(d, act, true); return OK;
        case OP_AVGPOOL: pool(d, act, false); return OK;
        case OP_ADD:
        case OP_COPY:
        case OP_LUT: eltwise(d, wgt, act, d[F_OP]); return OK;
        case OP_RESIZE: resize(d, par, act); return OK;
        case OP_MATMUL: matmul(d, par, act); return OK;
        case OP_SOFTMAX: softmax(d, par, act); return OK;
        case OP_LAYERNORM: layernorm(d, par, act); return OK;
        case OP_GATHER: gather(d, par, act); return OK;
        default: return ERR_OP;
    }
}

// Runs n descriptors of `sched` in order (the engine's top-level loop).
template <class CFG>
int run_schedule(const int32_t* sched, int n, const int8_t* wgt, const int32_t* par,
                 int8_t* act) {
    static Memories<CFG> m;
    for (int i = 0; i < n; i++) {
        int32_t d[DESC_WORDS];
        for (int k = 0; k < DESC_WORDS; k++) d[k] = sched[i * DESC_WORDS + k];
        const int status = run_layer<CFG>(d, wgt, par, act, m);
        if (status != OK) return (i << 8) | status;
    }
    return 0;
}

}  // namespace engine
}  // namespace tapeout

#endif  // TAPEOUT_ENGINE_H
