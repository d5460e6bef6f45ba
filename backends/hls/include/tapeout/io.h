// tapeout/io.h -- moving a whole tensor across the top function's ports.
//
// AXI-Stream ports carry packets of K elements (one TDATA beat of K * bits(T) bits), so a
// small tensor crosses in one beat and a large one in N / K beats (K divides N; the generator
// picks K so that a beat is at most 512 bits wide).
//
//   packet<T, K>                                 struct { T data[K]; }
//   read_stream<T, N, K>(stream<packet<T,K>>& s, T y[N])     N / K reads, pipelined II=1
//   write_stream<T, N, K>(const T x[N], stream<packet<T,K>>& s)
//
// m_axi ports are plain arrays: the top copies them in and out with reshape.h's copy().
#ifndef TAPEOUT_IO_H
#define TAPEOUT_IO_H

#include "tapeout/common.h"
#include "tapeout/stream.h"

namespace tapeout {

template <typename T, int K>
struct packet {
    T data[K];
};

template <typename T, int N, int K>
void read_stream(stream<packet<T, K> >& s, T y[N]) {
    static_assert(K > 0 && N % K == 0, "packet size K must divide the tensor size N");
    for (int b = 0; b < N / K; b++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        const packet<T, K> p = s.read();
        for (int i = 0; i < K; i++) {
            y[b * K + i] = p.data[i];
        }
    }
}

template <typename T, int N, int K>
void write_stream(const T x[N], stream<packet<T, K> >& s) {
    static_assert(K > 0 && N % K == 0, "packet size K must divide the tensor size N");
    for (int b = 0; b < N / K; b++) {
        TAPEOUT_PRAGMA(HLS PIPELINE II=1)
        packet<T, K> p;
        for (int i = 0; i < K; i++) {
            p.data[i] = x[b * K + i];
        }
        s.write(p);
    }
}

}  // namespace tapeout

#endif  // TAPEOUT_IO_H
