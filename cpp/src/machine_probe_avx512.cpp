// The FP32 FMA peak loop for AVX-512 CPUs. This file alone of the probe is compiled with the avx512 kernel
// set's flags (cmake/normexpIsa.cmake); machine_probe.cpp calls it only after normexp::available_isas() lists
// avx512. Cores with two 512-bit FMA units (Intel Xeon since Skylake-SP, most SKUs) retire twice the FLOPs
// of the AVX2 loop per cycle; cores that split 512-bit operations into two 256-bit halves (AMD Zen 4) the
// same: the benchmark's "% of peak" is against what the widest kernel set could reach.
#include <immintrin.h>

#include "machine_probe.hpp"

namespace normexp::probe {

// 16 independent accumulators: FMA latency 4 cycles x 2 ports needs at least 8 chains in flight; 16 chains
// and the two constants fit in the 32 ZMM registers without spilling.
constexpr int kChains = 16;
const int fma_avx512_flops_per_iteration = kChains * 16 * 2;  // 16 lanes, multiply + add

float fma_loop_avx512(std::size_t iterations, float seed) {
    // acc = acc * a + b with a just below 1 converges to b / (1 - a) = 1: values stay normal (no
    // denormal slow path) and the loop cannot be folded away by the compiler.
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    __m512 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(seed + 0.01f * static_cast<float>(j));
    for (std::size_t i = 0; i < iterations; ++i) {
        for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
    __m512 s = acc[0];
    for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace normexp::probe
