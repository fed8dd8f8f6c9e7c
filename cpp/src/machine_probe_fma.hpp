// The FMA peak loop of the benchmark's probe, written once over the kernel sets' own float32 lane traits
// (kernels/<isa>/traits.hpp: V32's set1, fmadd, add, store and N lanes). Each ISA file of the probe
// (machine_probe_avx2.cpp, machine_probe_avx512.cpp: the only probe files compiled with ISA flags, those of
// their kernel set) instantiates it with its set's traits, which live in that file's anonymous namespace.
// Chains independent accumulators: an FMA has a latency of 4-5 cycles and 2 issue ports on current x86
// cores, so at least 8-10 chains must be in flight to keep both ports busy every cycle, and all of them and
// the two constants must fit in the ISA's registers without spilling (12 of 16 YMM, 16 of 32 ZMM).
#pragma once

#include <cstddef>

namespace normexp::probe {
namespace {

template <class P, int Chains>
float fma_chains(std::size_t iterations, float seed) {
    using V = typename P::V;
    // acc = acc * a + b with a just below 1 converges to b / (1 - a) = 1: values stay normal (no
    // denormal slow path) and the loop cannot be folded away by the compiler.
    const V a = P::set1(0.999f), b = P::set1(0.001f);
    V acc[Chains];
    for (int j = 0; j < Chains; ++j) acc[j] = P::set1(seed + 0.01f * static_cast<float>(j));
    for (std::size_t i = 0; i < iterations; ++i) {
        for (int j = 0; j < Chains; ++j) acc[j] = P::fmadd(acc[j], a, b);
    }
    V s = acc[0];
    for (int j = 1; j < Chains; ++j) s = P::add(s, acc[j]);
    float lanes[P::N];
    P::store(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace
}  // namespace normexp::probe
