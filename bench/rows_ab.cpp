// Row reductions of a 2-d float32 array, timed in C++ (a measuring tool, not part of the library or its tests):
// softmax, log_softmax or logsumexp over the last axis of R x C, one thread, x and y at a byte offset from a
// cache line (OFF, default 16: numpy's; OFFY for y if it differs). Prints the median and the 10th percentile
// of the calls' times. docs/benchmarks.md's short-row A/B figures (session 24) are these medians, two builds
// alternated.
//
//   cmake --build build/dev --target normexp
//   g++ -O2 -std=c++17 -fopenmp -Icpp/include -Ibuild/dev/include bench/rows_ab.cpp build/dev/libnormexp.a
//       -o build/rows_ab     (one line)
//   [ISA=avx2] [OFF=16] build/rows_ab R C reps {0 softmax|1 log_softmax|2 logsumexp} {0 high|1 fast}
//
// A/B of two builds: link one binary per build and alternate their runs.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "normexp/normexp.hpp"

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: rows_ab R C reps op(0 softmax, 1 log_softmax, 2 logsumexp) fast(0/1)\n");
        return 2;
    }
    const std::size_t R = std::strtoul(argv[1], nullptr, 10), C = std::strtoul(argv[2], nullptr, 10);
    const int reps = std::atoi(argv[3]), op = std::atoi(argv[4]), fast = std::atoi(argv[5]);
    const std::size_t off = (std::getenv("OFF") ? std::strtoul(std::getenv("OFF"), nullptr, 10) : 16) / 4;
    const std::size_t offy = std::getenv("OFFY") ? std::strtoul(std::getenv("OFFY"), nullptr, 10) / 4 : off;
    const char* isa = std::getenv("ISA");
    std::vector<float> xb(R * C + 64), yb(R * C + 64);
    auto line = [](float* p) { return reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(p) + 63) & ~std::uintptr_t(63)); };
    float* x = line(xb.data()) + off;
    float* y = line(yb.data()) + offy;
    std::mt19937 g(1);
    std::normal_distribution<float> d;
    for (std::size_t i = 0; i < R * C; ++i) x[i] = d(g);
    const auto acc = fast ? normexp::accuracy::fast : normexp::accuracy::high;
    const auto red = op == 0 ? normexp::reduction::softmax : op == 1 ? normexp::reduction::log_softmax
                                                                      : normexp::reduction::logsumexp;
    normexp::set_num_threads(1);
    std::vector<double> t;
    for (int k = 0; k < reps; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        if (op < 2)
            normexp::reduce<float>(red, x, {std::ptrdiff_t(C), 1}, y, {std::ptrdiff_t(C), 1}, {R, C}, 1, 1.0, isa, acc);
        else
            normexp::reduce<float>(red, x, {std::ptrdiff_t(C), 1}, y, {1, 0}, {R, C}, 1, 1.0, isa, acc);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    std::printf("%zux%zu op%d fast%d %s: median %.1f us  p10 %.1f\n", R, C, op, fast, isa ? isa : "auto",
                t[t.size() / 2] * 1e6, t[t.size() / 10] * 1e6);
}
