// CPU feature detection and the single kernel-selection point.
//
// x86-64: AVX2 needs cpuid.7.EBX[5], FMA cpuid.1.ECX[12], F16C cpuid.1.ECX[29] (its 16-bit loads and
// stores; every AVX2 CPU has it), and the OS must save YMM state (cpuid.1.ECX[27] OSXSAVE, then xgetbv(0)
// bits 1 and 2). AVX-512 (the avx512 set: F, BW, DQ, VL) needs all of that, cpuid.7.EBX bits 16 (F), 17 (DQ),
// 30 (BW), 31 (VL), POPCNT (cpuid.1.ECX[23]: it counts opmask bits; every AVX-512 CPU has it), and the OS
// must save the AVX-512 state too: xgetbv(0) bits 5 (opmask k0-k7), 6 (ZMM_Hi256: upper halves of
// zmm0-15) and 7 (Hi16_ZMM: zmm16-31). An OS that leaves those off (some hypervisors, or Linux booted
// with AVX-512 state disabled) makes every AVX-512 instruction fault although cpuid lists it.
// AVX512_BF16 (vdpbf16ps, vcvtneps2bf16: kernels/avx512bf16/) is cpuid.(EAX=7,ECX=1).EAX[5], on top of the
// avx512 set's requirements (its state is the AVX-512 state). It is not an ISA name of its own: it changes
// only entries of the avx512 table that read or write bfloat16: a cheaper store with the same bits, which
// the avx512 table takes where the CPU has the extension ("avx512_bf16"), and dot products of bfloat16 by
// bfloat16 with their own error bound (kernel_table.hpp), which it takes only where vdpbf16ps outruns
// float32 FMA ("avx512_bf16_dot": avx512_bf16_dot_wanted). NORMEXP_AVX512_BF16=0 leaves both out (the plain
// avx512 table), =1 insists on both (an error where unsupported); read once, at the avx512 table's first use.
// aarch64: Advanced SIMD is architectural.
#include "dispatch.hpp"

#include "kernels/isa_parts.hpp"

#include <cstdlib>
#include <stdexcept>

#if defined(NORMEXP_HAVE_AMX) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(NORMEXP_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#elif defined(NORMEXP_HAVE_AVX2) && defined(_MSC_VER)
#include <intrin.h>
#endif

namespace normexp::detail {
namespace {

#if defined(NORMEXP_HAVE_AVX2)
// cpuid leaf `leaf`, subleaf `sub` into a, b, c, d; false if the CPU does not have that leaf. GCC and
// Clang (MinGW-w64 and clang-cl too) through <cpuid.h>, MSVC through __cpuid / __cpuidex.
bool cpuid(unsigned leaf, unsigned sub, unsigned& a, unsigned& b, unsigned& c, unsigned& d) {
#if defined(__GNUC__) || defined(__clang__)
    return __get_cpuid_count(leaf, sub, &a, &b, &c, &d) != 0;
#else
    int r[4];
    __cpuid(r, 0);
    if (static_cast<unsigned>(r[0]) < leaf) return false;
    __cpuidex(r, static_cast<int>(leaf), static_cast<int>(sub));
    a = static_cast<unsigned>(r[0]), b = static_cast<unsigned>(r[1]);
    c = static_cast<unsigned>(r[2]), d = static_cast<unsigned>(r[3]);
    return true;
#endif
}

// The low word of XCR0 (xgetbv(0)): which register states the OS saves. Valid only once cpuid.1.ECX
// has shown OSXSAVE.
unsigned xcr0_low() {
#if defined(__GNUC__) || defined(__clang__)
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
#else
    return static_cast<unsigned>(_xgetbv(0));
#endif
}
#endif

#if defined(NORMEXP_HAVE_AVX2)
bool cpu_has_avx2_fma() {
    unsigned a, b, c, d;
    if (!cpuid(1, 0, a, b, c, d)) return false;
    const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return false;
    if ((xcr0_low() & 0x6) != 0x6) return false;  // XMM and YMM state enabled by the OS
    if (!cpuid(7, 0, a, b, c, d)) return false;
    return (b >> 5) & 1;
}
#endif

#if defined(NORMEXP_HAVE_AVX512)
bool cpu_has_avx512() {
    if (!cpu_has_avx2_fma()) return false;  // also proves OSXSAVE, so xgetbv is valid
    unsigned a, b, c, d;
    if ((xcr0_low() & 0xe6) != 0xe6) return false;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM state
    if (!cpuid(1, 0, a, b, c, d) || !((c >> 23) & 1)) return false;  // POPCNT
    if (!cpuid(7, 0, a, b, c, d)) return false;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);  // F, DQ, BW, VL
    return (b & need) == need;
}
#endif

#if defined(NORMEXP_HAVE_AVX512)
// An extension's switch in the environment: -1 unset or empty (the CPU decides), 0 off, 1 on (an error where
// unsupported); any other value is an error.
int env_switch(const char* name) {
    const char* e = std::getenv(name);
    const std::string v = e ? e : "";
    if (v.empty()) return -1;
    if (v == "0" || v == "1") return v == "1";
    throw std::invalid_argument(std::string(name) + ": expected 0 or 1, got '" + v + "'");
}
int avx512_bf16_switch() { return env_switch("NORMEXP_AVX512_BF16"); }
int amx_switch() { return env_switch("NORMEXP_AMX"); }
#endif

#if defined(NORMEXP_HAVE_AVX512BF16)
bool cpu_has_avx512_bf16() {
    if (!cpu_has_avx512()) return false;
    unsigned a, b, c, d;
    if (!cpuid(7, 0, a, b, c, d) || a < 1) return false;  // EAX: the highest subleaf of leaf 7
    if (!cpuid(7, 1, a, b, c, d)) return false;
    return (a >> 5) & 1;
}
// Whether the avx512 table takes the AVX512_BF16 entries: the CPU, unless NORMEXP_AVX512_BF16 says otherwise.
bool avx512_bf16_wanted() {
    const int on = avx512_bf16_switch();
    if (on < 0) return cpu_has_avx512_bf16();
    if (on == 1 && !cpu_has_avx512_bf16())
        throw std::invalid_argument("NORMEXP_AVX512_BF16=1: this CPU or OS does not support AVX512_BF16");
    return on == 1;
}
// cpuid.0's vendor string "AuthenticAMD" (EBX, EDX, ECX).
bool cpu_is_amd() {
    unsigned a, b, c, d;
    if (!cpuid(0, 0, a, b, c, d)) return false;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "Auth" "enti" "cAMD"
}
#endif

#if defined(NORMEXP_HAVE_AMX)
// AMX (kernels/avx512amx/: tdpbf16ps on the tile unit) needs AMX-TILE and AMX-BF16 (cpuid.(7,0).EDX bits 24
// and 22), the OS's tile state in XCR0 (bits 17 XTILECFG and 18 XTILEDATA), and, on Linux, the process's
// permission to use the tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux 5.16; the
// first AMX instruction of a process without it faults). Asked for once, on the avx512 table's first use,
// only where the table would take the AMX entries. Elsewhere (other systems) not used.
bool cpu_has_amx_bf16() {
#if defined(__linux__)
    if (!cpu_has_avx512_bf16()) return false;  // also proves OSXSAVE and leaf 7
    unsigned a, b, c, d;
    if (!cpuid(7, 0, a, b, c, d)) return false;
    const unsigned need = (1u << 22) | (1u << 24);  // AMX-BF16, AMX-TILE
    if ((d & need) != need) return false;
    if ((xcr0_low() & 0x60000u) != 0x60000u) return false;  // XTILECFG, XTILEDATA
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
}
#endif

#if defined(NORMEXP_HAVE_AVX512BF16)
// Whether the table also takes the vdpbf16ps dot products (bf16_dot), given the extension is in: where the
// instruction outruns float32 FMA: on AMD Zen 4 the pair scores ran at 1.8x qk's rate (docs/attention.md);
// on the Intel cores with AVX512_BF16 vdpbf16ps has half the FMA rate (a Sapphire Rapids-class Xeon: 80
// GFLOP/s against 172 of 512-bit FMA per core), and there the pair kernels made bfloat16 attention slower
// (docs/architecture.md, "Dispatch"). A fixed rule, not a timing: the kernels round differently, and a
// process's results must not depend on a race with the scheduler. NORMEXP_AVX512_BF16=1 takes them anywhere
// the CPU has the extension (tests), =0 nowhere.
bool avx512_bf16_dot_wanted() {
    const int on = avx512_bf16_switch();
    return on < 0 ? cpu_is_amd() : on == 1;
}
#endif

// Overwrite the entries of `base` with every function pointer `isa` provides: each table starts as the
// scalar set and takes the ISA's entries, so an ISA that leaves one null still gets the scalar kernel. The member lists below are the one place
// that must name every function pointer of kernel_table.hpp; test_dispatch checks each one.
template <class T>
void overwrite(reduction_kernels<T>& b, const reduction_kernels<T>& s) {
#define NX_TAKE(f) if (s.f) b.f = s.f
    NX_TAKE(exp); NX_TAKE(row_max); NX_TAKE(row_exp_sum); NX_TAKE(row_exp_store); NX_TAKE(row_scale);
    NX_TAKE(row_exp_scale); NX_TAKE(row_log_softmax); NX_TAKE(col_max); NX_TAKE(col_exp_sum);
    NX_TAKE(col_exp_scale); NX_TAKE(col_log_softmax); NX_TAKE(col_exp_store); NX_TAKE(col_scale);
    NX_TAKE(row_exp_scale_stream); NX_TAKE(row_log_softmax_stream); NX_TAKE(col_exp_scale_stream);
    NX_TAKE(col_log_softmax_stream);
    NX_TAKE(row_collect_ge); NX_TAKE(row_sample_weights);
    NX_TAKE(rows_softmax); NX_TAKE(rows_exp_sum); NX_TAKE(rows_log_softmax); NX_TAKE(col_exp_sum_max);
    NX_TAKE(row_exp_sum_max);
}
template <class T>
void overwrite(attention_kernels<T>& b, const attention_kernels<T>& s) {
    NX_TAKE(pack_kt); NX_TAKE(qk); NX_TAKE(softmax_step); NX_TAKE(pv); NX_TAKE(qk_direct); NX_TAKE(tile_rows);
    NX_TAKE(pv_split);
}
void overwrite(convert_kernels& b, const convert_kernels& s) {
    NX_TAKE(f16_to_f32); NX_TAKE(f32_to_f16); NX_TAKE(bf16_to_f32); NX_TAKE(f32_to_bf16);
    NX_TAKE(scale_f32_to_f32); NX_TAKE(scale_f32_to_f16); NX_TAKE(scale_f32_to_bf16);
    NX_TAKE(scale_f64_to_f32); NX_TAKE(scale_f64_to_f16); NX_TAKE(scale_f64_to_bf16);
}
template <class S>
void overwrite(storage_kernels<S>& b, const storage_kernels<S>& s) {
    NX_TAKE(row_max); NX_TAKE(row_exp_sum); NX_TAKE(row_exp_scale); NX_TAKE(row_log_softmax); NX_TAKE(col_max);
    NX_TAKE(col_exp_sum); NX_TAKE(col_exp_scale); NX_TAKE(col_log_softmax); NX_TAKE(rows_softmax);
    NX_TAKE(rows_exp_sum); NX_TAKE(rows_log_softmax); NX_TAKE(row_exp_total); NX_TAKE(row_exp_scale_stream);
    NX_TAKE(row_log_softmax_stream); NX_TAKE(row_exp_sum_max); NX_TAKE(row_exp_total_max);
}
template <class S>
void overwrite(attention_kv_kernels<S>& b, const attention_kv_kernels<S>& s) {
    NX_TAKE(pack_kt); NX_TAKE(pv); NX_TAKE(qk_direct);
}
void overwrite(bf16_dot_kernels& b, const bf16_dot_kernels& s) {
    NX_TAKE(pack_kt_pairs); NX_TAKE(qk_pairs); NX_TAKE(qk_direct_pairs); NX_TAKE(pack_v_pairs); NX_TAKE(pv_pairs);
#undef NX_TAKE
}

// Selected tables are cached per ISA; an ISA's getter runs only once the CPU is known to support it
// (constructing its table may already execute that ISA's instructions).
template <const kernel_table& (*Get)()>
const kernel_table* filled() {
    static const kernel_table t = with_fallback(Get(), scalar_kernels());
    return &t;
}

#if defined(NORMEXP_HAVE_AVX512)
// The avx512 table: avx512_kernels() with the AVX512_BF16 entries written over its own where wanted.
bool avx512_bf16_in_table() {
#if defined(NORMEXP_HAVE_AVX512BF16)
    static const bool on = avx512_bf16_wanted();
    return on;
#else
    if (avx512_bf16_switch() == 1)
        throw std::invalid_argument("NORMEXP_AVX512_BF16=1: this build has no AVX512_BF16 kernels (the compiler "
                                    "lacks -mavx512bf16)");
    return false;
#endif
}
// Whether the avx512 table takes the AMX entries (bf16_dot's qk_pairs, pack_v_pairs and pv_pairs on the tile
// unit, beside avx512bf16's pack_kt_pairs; no qk_direct_pairs): wherever the CPU and OS allow them and the
// table has the AVX512_BF16 entries, unless NORMEXP_AMX=0, or NORMEXP_AVX512_BF16=1 asks for the vdpbf16ps
// scores (and NORMEXP_AMX is unset). On an Intel Xeon with AMX, bfloat16 prefill ran at 2.0-2.4x the float32
// GFLOP rate, against 1.0-1.1x on the float32 kernels (docs/benchmarks.md, session 23).
bool amx_in_table() {
#if defined(NORMEXP_HAVE_AMX) && defined(NORMEXP_HAVE_AVX512BF16)
    static const bool on = [] {
        const int sw = amx_switch();
        if (sw == 0 || (sw < 0 && avx512_bf16_switch() == 1)) return false;
        const bool can = avx512_bf16_in_table() && cpu_has_amx_bf16();
        if (sw == 1 && !can)
            throw std::invalid_argument("NORMEXP_AMX=1: this CPU or OS does not support AMX-BF16 (or "
                                        "NORMEXP_AVX512_BF16=0 left out the avx512 set's bfloat16 entries)");
        return can;
    }();
    return on;
#else
    if (amx_switch() == 1)
        throw std::invalid_argument("NORMEXP_AMX=1: this build has no AMX kernels (the compiler lacks -mamx-bf16, "
                                    "or the system is not Linux)");
    return false;
#endif
}
// Whether the avx512 table holds the vdpbf16ps bf16_dot entries (never without the extension's stores).
bool avx512_bf16_dot_in_table() {
#if defined(NORMEXP_HAVE_AVX512BF16)
    static const bool on = avx512_bf16_in_table() && avx512_bf16_dot_wanted() && !amx_in_table();
    return on;
#else
    return false;
#endif
}
const kernel_table* filled_avx512() {
    static const kernel_table t = [] {
        kernel_table k = with_fallback(avx512_kernels(), scalar_kernels());
#if defined(NORMEXP_HAVE_AVX512BF16)
        if (avx512_bf16_in_table()) {
            avx512bf16_add_reductions(k);
            if (avx512_bf16_dot_in_table() || amx_in_table()) avx512bf16_add_attention(k);
#if defined(NORMEXP_HAVE_AMX)
            if (amx_in_table()) avx512amx_add_attention(k);
#endif
        }
#endif
        return k;
    }();
    return &t;
}
#endif

struct isa_entry {
    const char* name;
    bool supported;
    const kernel_table* (*get)();
};

std::vector<isa_entry> all_isas() {
    std::vector<isa_entry> v;
    v.push_back({"scalar", true, [] { return &scalar_kernels(); }});  // complete: the specification
#if defined(NORMEXP_HAVE_AVX2)
    v.push_back({"avx2", cpu_has_avx2_fma(), filled<avx2_kernels>});
#endif
#if defined(NORMEXP_HAVE_AVX512)
    // Listed after avx2, so chosen by default where supported. Measured on Zen 4 (which splits 512-bit
    // operations into two 256-bit halves, so the win is fewer instructions, branch-free vscalefps
    // scaling and masked tails, not wider arithmetic), one thread, avx2 and avx512 interleaved call by
    // call: float32 softmax / logsumexp / log_softmax on in-cache rows 1x32000, 4096x128, 512x4096 run
    // 1.24-1.54x faster (minimum times), and the float64, column and out-of-cache cases of the
    // benchmark 1.1-2.2x; no case was slower. Attention entries are avx2's (avx512.cpp), so equal.
    v.push_back({"avx512", cpu_has_avx512(), filled_avx512});
#endif
#if defined(NORMEXP_HAVE_NEON)
    v.push_back({"neon", true, filled<neon_kernels>});
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

kernel_table with_fallback(const kernel_table& isa, const kernel_table& fallback) {
    kernel_table t = fallback;
    t.name = isa.name;
    overwrite(t.f32, isa.f32);
    overwrite(t.f64, isa.f64);
    overwrite(t.attn_f32, isa.attn_f32);
    overwrite(t.attn_f64, isa.attn_f64);
    overwrite(t.f32_fast, isa.f32_fast);
    overwrite(t.f64_fast, isa.f64_fast);
    overwrite(t.cvt, isa.cvt);
    overwrite(t.f16, isa.f16);
    overwrite(t.bf16, isa.bf16);
    overwrite(t.attn_kv_f16, isa.attn_kv_f16);
    overwrite(t.attn_kv_bf16, isa.attn_kv_bf16);
    overwrite(t.bf16_dot, isa.bf16_dot);
    share_mode_free(t.f32_fast, t.f32);  // the ISA's sampling entries, not the fallback's
    share_mode_free(t.f64_fast, t.f64);
    return t;
}

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

const kernel_table& kernels_without_extensions(const std::string& isa) {
    const kernel_table& t = kernels_for(isa);  // the checks and messages of a name
#if defined(NORMEXP_HAVE_AVX512)
    if (isa == "avx512") return *filled<avx512_kernels>();
#endif
    return t;
}

std::vector<std::string> isa_extensions() {
    std::vector<std::string> v;
#if defined(NORMEXP_HAVE_AVX512)
    if (cpu_has_avx512() && avx512_bf16_in_table()) v.push_back("avx512_bf16");
    if (cpu_has_avx512() && avx512_bf16_dot_in_table()) v.push_back("avx512_bf16_dot");
    if (cpu_has_avx512() && amx_in_table()) v.push_back("amx_bf16");
#endif
    return v;
}

std::vector<std::string> available_isas() {
    std::vector<std::string> v;
    for (const auto& e : isas())
        if (e.supported) v.push_back(e.name);
    return v;
}

}  // namespace normexp::detail
