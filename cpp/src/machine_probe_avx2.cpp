// The FP32 FMA peak loop for AVX2+FMA CPUs, with the avx2 kernel set's flags (cmake/normexpIsa.cmake) and
// lane traits; machine_probe.cpp calls it only after normexp::available_isas() lists avx2.
#include "kernels/avx2/traits.hpp"
#include "machine_probe.hpp"
#include "machine_probe_fma.hpp"

namespace normexp::probe {

constexpr int kAvx2Chains = 12;
const int fma_avx2_flops_per_iteration = kAvx2Chains * static_cast<int>(avx2::V32::N) * 2;  // multiply + add

float fma_loop_avx2(std::size_t iterations, float seed) { return fma_chains<avx2::V32, kAvx2Chains>(iterations, seed); }

}  // namespace normexp::probe
