// tb_engine.cpp -- testbench of the engine: the DDR images and golden data from the compiler.
//
//   tb_engine <project folder>
// loads ddr/schedule.bin, ddr/weights.bin and ddr/params.bin, then for every sample writes
// tb/data/input_<i>.bin (int8, the engine's memory order) into the activation arena, runs the
// engine and compares the arena at each output with tb/data/output_<i>.bin, which the
// reference interpreter computed. Exits 0 when every output byte matched.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine_io.h"

int tapeout_engine(const int32_t* sched, int n_layers, const int8_t* wgt, const int32_t* par,
                   int8_t* act);

static bool read_file(const std::string& path, std::vector<char>& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    std::fseek(f, 0, SEEK_END);
    const long size = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    out.resize(static_cast<size_t>(size > 0 ? size : 0));
    const size_t got = out.empty() ? 0 : std::fread(out.data(), 1, out.size(), f);
    std::fclose(f);
    return got == out.size();
}

int main(int argc, char** argv) {
    const std::string root = argc > 1 ? argv[1] : ".";
    std::vector<char> sched, wgt, par;
    if (!read_file(root + "/ddr/schedule.bin", sched) || !read_file(root + "/ddr/weights.bin", wgt) ||
        !read_file(root + "/ddr/params.bin", par)) {
        std::printf("cannot read the DDR images under %s/ddr\n", root.c_str());
        return 2;
    }
    std::vector<int8_t> arena(ENGINE_ARENA);
    std::vector<std::vector<char> > ins(ENGINE_INPUTS), outs(ENGINE_OUTPUTS);
    for (int i = 0; i < ENGINE_INPUTS; i++) {
        if (!read_file(root + "/tb/data/input_" + std::to_string(i) + ".bin", ins[i])) return 2;
    }
    for (int i = 0; i < ENGINE_OUTPUTS; i++) {
        if (!read_file(root + "/tb/data/output_" + std::to_string(i) + ".bin", outs[i])) return 2;
    }
    long mismatches = 0;
    for (int s = 0; s < ENGINE_SAMPLES; s++) {
        for (int i = 0; i < ENGINE_INPUTS; i++) {
            std::memcpy(arena.data() + ENGINE_IN_OFFSET[i], ins[i].data() + s * ENGINE_IN_SIZE[i],
                        ENGINE_IN_SIZE[i]);
        }
        const int status = tapeout_engine(reinterpret_cast<const int32_t*>(sched.data()),
                                          ENGINE_LAYERS, reinterpret_cast<const int8_t*>(wgt.data()),
                                          reinterpret_cast<const int32_t*>(par.data()), arena.data());
        if (status != 0) {
            std::printf("engine status %d (layer %d)\n", status & 255, status >> 8);
            return 1;
        }
        for (int i = 0; i < ENGINE_OUTPUTS; i++) {
            const char* want = outs[i].data() + s * ENGINE_OUT_SIZE[i];
            const int8_t* got = arena.data() + ENGINE_OUT_OFFSET[i];
            for (long k = 0; k < ENGINE_OUT_SIZE[i]; k++) mismatches += got[k] != static_cast<int8_t>(want[k]);
        }
    }
    std::printf("%d samples, %ld mismatching output bytes\n", ENGINE_SAMPLES, mismatches);
    return mismatches == 0 ? 0 : 1;
}
