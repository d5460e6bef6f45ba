// tb_io.h -- golden-data file reading and bitwise comparison for tapeout testbenches.
// Part of tapeout's HLS backend (backends/hls/include/tb/tb_io.h), copied into tb/.
#ifndef TAPEOUT_TB_IO_H
#define TAPEOUT_TB_IO_H

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

// Reads a raw file of samples of sample_bytes each; n is the sample count seen so far (-1 for
// none yet): every file of one run must hold the same number of samples.
static bool load(const std::string& path, size_t sample_bytes, std::vector<unsigned char>& out,
                 int& n) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        std::fprintf(stderr, "tb: cannot open %s\n", path.c_str());
        return false;
    }
    unsigned char chunk[4096];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
        out.insert(out.end(), chunk, chunk + got);
    }
    std::fclose(f);
    const int samples = static_cast<int>(out.size() / sample_bytes);
    if (out.size() % sample_bytes != 0 || (n >= 0 && samples != n)) {
        std::fprintf(stderr, "tb: %s has %zu bytes, not %d samples of %zu\n", path.c_str(),
                     out.size(), n, sample_bytes);
        return false;
    }
    n = samples;
    return true;
}

// Counts elements of width bytes whose bits differ; prints the first ten.
static long compare(const char* name, const std::vector<unsigned char>& got,
                    const std::vector<unsigned char>& want, size_t elems, size_t width) {
    long bad = 0;
    for (size_t i = 0; i * width < want.size(); i++) {
        if (std::memcmp(&got[i * width], &want[i * width], width) != 0) {
            if (bad < 10) {
                std::fprintf(stderr, "tb: %s sample %zu element %zu differs\n", name, i / elems,
                             i % elems);
            }
            bad++;
        }
    }
    return bad;
}

#endif  // TAPEOUT_TB_IO_H
