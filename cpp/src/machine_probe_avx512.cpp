// The FP32 FMA peak loop for AVX-512 CPUs, with the avx512 kernel set's flags (cmake/normexpIsa.cmake) and
// lane traits; machine_probe.cpp calls it only after normexp::available_isas() lists avx512. Cores with two
// 512-bit FMA units (Intel Xeon since Skylake-SP, most SKUs) retire twice the FLOPs of the AVX2 loop per
// cycle; cores that split 512-bit operations into two 256-bit halves (AMD Zen 4) the same: the benchmark's
// "% of peak" is against what the widest kernel set could reach.
#include "kernels/avx512/traits.hpp"
#include "machine_probe.hpp"
#include "machine_probe_fma.hpp"

namespace normexp::probe {

constexpr int kAvx512Chains = 16;
const int fma_avx512_flops_per_iteration = kAvx512Chains * static_cast<int>(avx512::V32::N) * 2;  // multiply + add

float fma_loop_avx512(std::size_t iterations, float seed) {
    return fma_chains<avx512::V32, kAvx512Chains>(iterations, seed);
}

}  // namespace normexp::probe
