// CPU feature detection and the single kernel-selection point.
//
// x86-64: AVX2 needs cpuid.7.EBX[5], FMA cpuid.1.ECX[12], and the OS must save YMM state
// (cpuid.1.ECX[27] OSXSAVE, then xgetbv(0) bits 1 and 2). aarch64: Advanced SIMD is architectural.
#include "dispatch.hpp"

#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace normexp::detail {
namespace {

#if defined(NORMEXP_HAVE_AVX2)
bool cpu_has_avx2_fma() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return false;  // XMM and YMM state enabled by the OS
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b >> 5) & 1;
}
#endif

struct isa_entry {
    const char* name;
    bool supported;
    const kernel_table* (*get)();
};

std::vector<isa_entry> all_isas() {
    std::vector<isa_entry> v;
    v.push_back({"scalar", true, [] { return &scalar_kernels(); }});
#if defined(NORMEXP_HAVE_AVX2)
    v.push_back({"avx2", cpu_has_avx2_fma(), [] { return &avx2_kernels(); }});
#endif
#if defined(NORMEXP_HAVE_NEON)
    v.push_back({"neon", true, [] { return &neon_kernels(); }});
#endif
    return v;
}

const std::vector<isa_entry>& isas() {
    static const std::vector<isa_entry> v = all_isas();
    return v;
}

const kernel_table& select() {
    const char* forced = std::getenv("NORMEXP_ISA");
    if (forced && *forced) return kernels_for(forced);
    const kernel_table* best = nullptr;
    for (const auto& e : isas())
        if (e.supported) best = e.get();
    return *best;
}

}  // namespace

const kernel_table& kernels_for(const std::string& isa) {
    std::string known;
    for (const auto& e : isas()) {
        if (isa == e.name) {
            if (!e.supported)
                throw std::invalid_argument("NORMEXP_ISA: '" + isa + "' is built in but this CPU or OS does not support it");
            return *e.get();
        }
        known += known.empty() ? e.name : std::string(", ") + e.name;
    }
    throw std::invalid_argument("NORMEXP_ISA: unknown ISA '" + isa + "' (this build has: " + known + ")");
}

const kernel_table& active_kernels() {
    static const kernel_table& table = select();
    return table;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> v;
    for (const auto& e : isas())
        if (e.supported) v.push_back(e.name);
    return v;
}

}  // namespace normexp::detail
