// engine_top.cpp -- top function of the tapeout weight-streaming engine (tapeout/engine.h).
//
// The same engine runs every model of its size: what is model-specific lives in DDR (the
// schedule, the weight and parameter images the compiler wrote into ddr/) and in
// engine_config.h (the array and buffer sizes). Four AXI4 masters reach DDR; the host starts
// the engine through AXI4-Lite with the buffers' addresses and the number of layers, and reads
// the return value (0, or (layer << 8) | status: see engine.h).
#include "engine_config.h"
#include "tapeout/engine.h"

int tapeout_engine(const int32_t* sched, int n_layers, const int8_t* wgt, const int32_t* par,
                   int8_t* act) {
    TAPEOUT_PRAGMA(HLS INTERFACE m_axi port=sched offset=slave bundle=gmem0)
    TAPEOUT_PRAGMA(HLS INTERFACE m_axi port=wgt offset=slave bundle=gmem1 max_read_burst_length=256)
    TAPEOUT_PRAGMA(HLS INTERFACE m_axi port=par offset=slave bundle=gmem2)
    TAPEOUT_PRAGMA(HLS INTERFACE m_axi port=act offset=slave bundle=gmem3 max_read_burst_length=256)
    TAPEOUT_PRAGMA(HLS INTERFACE s_axilite port=n_layers)
    TAPEOUT_PRAGMA(HLS INTERFACE s_axilite port=return)
    return tapeout::engine::run_schedule<engine_cfg>(sched, n_layers, wgt, par, act);
}
