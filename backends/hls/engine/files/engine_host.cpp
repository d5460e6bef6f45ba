// engine_host.cpp -- the C entry point of the engine's C simulation (what ctypes calls).
//
//   int tapeout_engine_run(const int32_t* sched, int n_layers, const int8_t* wgt,
//                          const int32_t* par, int8_t* act);
// runs the schedule over the activation arena `act` (the host has written the inputs at
// their offsets; see ddr/io.json) and returns the engine's status (0: done).
#include <cstdint>

int tapeout_engine(const int32_t* sched, int n_layers, const int8_t* wgt, const int32_t* par,
                   int8_t* act);

extern "C" int tapeout_engine_run(const int32_t* sched, int n_layers, const int8_t* wgt,
                                  const int32_t* par, int8_t* act) {
    return tapeout_engine(sched, n_layers, wgt, par, act);
}
