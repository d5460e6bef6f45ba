// tapeout/stream.h -- optional AXI-Stream helpers for a streaming top-level interface.
//
// Under Vitis HLS (__SYNTHESIS__ defined) tapeout::stream<T> is hls::stream<T> from
// <hls_stream.h>; in C simulation with g++ it is a small FIFO with the same read()/write()/
// empty()/size() calls, so the generated top function compiles unchanged in both. Only this
// header includes a vendor header, and only under __SYNTHESIS__.
//
//   array_to_stream<T, N>(const T x[N], stream<T>& s)   N writes, pipelined II=1
//   stream_to_array<T, N>(stream<T>& s, T y[N])         N reads, pipelined II=1
#ifndef TAPEOUT_STREAM_H
#define TAPEOUT_STREAM_H

#include "tapeout/common.h"

#ifdef __SYNTHESIS__
#include <hls_stream.h>
#else
#include <cstddef>
#include <deque>
#endif

namespace tapeout {

#ifdef __SYNTHESIS__
template <typename T>
using stream = hls::stream<T>;
#else
// C-simulation stand-in for hls::stream: unbounded FIFO; reading an empty stream is a
// programming error (HLS would deadlock), so it returns T() and is counted in underflows.
template <typename T>
class stream {
   public:
    void write(const T& v) { fifo_.push_back(v); }
    T read() {
        if (fifo_.empty()) {
            ++underflows_;
            return T();
        }
        T v = fifo_.front();
        fifo_.pop_front();
        return v;
    }
    bool empty() const { return fifo_.empty(); }
    std::size_t size() const { return fifo_.size(); }
    std::size_t underflows() const { return underflows_; }

   private:
    std::deque<T> fifo_;
    std::size_t underflows_ = 0;
};
#endif

template <typename T, int N>
void array_to_stream(const T x[N], stream<T>& s) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        s.write(x[i]);
    }
}

template <typename T, int N>
void stream_to_array(stream<T>& s, T y[N]) {
    for (int i = 0; i < N; i++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        y[i] = s.read();
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_STREAM_H
