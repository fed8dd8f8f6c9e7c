// The FP32 FMA peak loop for AVX2+FMA CPUs. This file alone is compiled with -mavx2 -mfma
// (cmake/normexpIsa.cmake); machine_probe.cpp calls it only after normexp::available_isas() lists avx2.
#include <immintrin.h>

#include "machine_probe.hpp"

namespace normexp::probe {

// 12 independent accumulators: an FMA has a latency of 4-5 cycles and 2 issue ports on current x86
// cores, so at least 8-10 chains in flight are needed to keep both ports busy every cycle; 12 chains
// plus the two constants fit in the 16 YMM registers without spilling.
constexpr int kChains = 12;
const int fma_avx2_flops_per_iteration = kChains * 8 * 2;  // 8 lanes, multiply + add

float fma_loop_avx2(std::size_t iterations, float seed) {
    // acc = acc * a + b with a just below 1 converges to b / (1 - a) = 1: values stay normal (no
    // denormal slow path) and the loop cannot be folded away by the compiler.
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    __m256 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(seed + 0.01f * static_cast<float>(j));
    for (std::size_t i = 0; i < iterations; ++i) {
        for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    }
    __m256 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace normexp::probe
