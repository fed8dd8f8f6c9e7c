// The dispatcher fills every table it hands out from scalar's and overwrites it with the ISA's entries
// (cpp/src/dispatch.cpp), so an ISA that leaves an entry null still gets a working (scalar) kernel there.
//
// The kernel table is a run of pointer-sized members (the name, then only function pointers), so the
// test reads it as words: that is what catches a member added to kernel_table.hpp but not to the
// member lists in dispatch.cpp (it would stay null in the filled table). The one optional group,
// kernel_table::bf16_dot (null unless the ISA has a bfloat16 dot product), is the only run of words allowed
// to stay null; it is checked on its own below (present exactly where isa_extensions() lists avx512_bf16).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"

namespace {

constexpr std::size_t kWords = sizeof(normexp::kernel_table) / sizeof(void*);
static_assert(sizeof(normexp::kernel_table) % sizeof(void*) == 0, "kernel_table holds pointers only");
static_assert(sizeof(void (*)()) == sizeof(void*), "function pointers are pointer-sized");
constexpr std::size_t kOptFirst = offsetof(normexp::kernel_table, bf16_dot) / sizeof(void*);
constexpr std::size_t kOptEnd = kOptFirst + sizeof(normexp::bf16_dot_kernels) / sizeof(void*);
bool optional_word(std::size_t i) { return i >= kOptFirst && i < kOptEnd; }

std::vector<std::uintptr_t> words(const normexp::kernel_table& t) {
    std::vector<std::uintptr_t> w(kWords);
    std::memcpy(w.data(), &t, sizeof t);
    return w;
}

}  // namespace

int main() {
    using normexp::kernel_table;
    const kernel_table& scalar = normexp::scalar_kernels();
    const auto sw = words(scalar);
    for (std::size_t i = 0; i < kWords; ++i) CHECK(sw[i] != 0 || optional_word(i), "scalar table word %zu is null", i);

    // An all-null ISA table gets every scalar entry, and its own name.
    kernel_table empty{};
    empty.name = "empty";
    const kernel_table a = normexp::detail::with_fallback(empty, scalar);
    CHECK(std::strcmp(a.name, "empty") == 0, "name kept: %s", a.name);
    const auto aw = words(a);
    for (std::size_t i = 1; i < kWords; ++i) CHECK(aw[i] == sw[i], "null entry (word %zu) not filled from scalar", i);

    // Every entry the ISA provides wins: scalar over an all-null fallback reproduces scalar, member by
    // member (a member missing from dispatch.cpp's lists would stay null here).
    const kernel_table b = normexp::detail::with_fallback(scalar, empty);
    const auto bw = words(b);
    for (std::size_t i = 0; i < kWords; ++i) CHECK(bw[i] == sw[i], "entry (word %zu) of the ISA not taken", i);

    // Three null entries among provided ones: exactly those come from the fallback.
    kernel_table partial = scalar;
    partial.name = "partial";
    partial.f32.col_scale = nullptr;
    partial.attn_f64.pv = nullptr;
    partial.attn_kv_bf16.qk_direct = nullptr;
    const kernel_table c = normexp::detail::with_fallback(partial, scalar);
    CHECK(c.f32.col_scale == scalar.f32.col_scale, "f32.col_scale filled from scalar");
    CHECK(c.attn_f64.pv == scalar.attn_f64.pv, "attn_f64.pv filled from scalar");
    CHECK(c.attn_kv_bf16.qk_direct == scalar.attn_kv_bf16.qk_direct, "attn_kv_bf16.qk_direct filled from scalar");
    const auto dw = words(normexp::detail::with_fallback(partial, empty));
    std::size_t nulls = 0;
    for (std::size_t i = 1; i < kWords; ++i) nulls += dw[i] == 0 && !optional_word(i);
    CHECK(nulls == 3, "over an empty fallback exactly the 3 null entries stay null (got %zu)", nulls);

    // Every table the dispatcher hands out is complete.
    for (const auto& name : normexp::detail::available_isas()) {
        const kernel_table& t = normexp::detail::kernels_for(name);
        CHECK(std::strcmp(t.name, name.c_str()) == 0, "kernels_for(%s) has name %s", name.c_str(), t.name);
        const auto tw = words(t);
        for (std::size_t i = 0; i < kWords; ++i) CHECK(tw[i] != 0 || optional_word(i), "%s: word %zu is null", name.c_str(), i);
        // The optional bfloat16 dot products, only on avx512: with avx512_bf16_dot the three score entries,
        // with amx_bf16 the prefill's two and P V's two (decodes keep the float32 kernels), else none.
        bool vdp = false, amx = false;
        for (const auto& e : normexp::detail::isa_extensions()) {
            vdp = vdp || e == "avx512_bf16_dot";
            amx = amx || e == "amx_bf16";
        }
        const bool av = name == "avx512", scores = av && (vdp || amx), direct = av && vdp, pv = av && amx;
        const normexp::bf16_dot_kernels& o = t.bf16_dot;
        CHECK((o.pack_kt_pairs != nullptr) == scores && (o.qk_pairs != nullptr) == scores &&
                  (o.qk_direct_pairs != nullptr) == direct && (o.pack_v_pairs != nullptr) == pv &&
                  (o.pv_pairs != nullptr) == pv,
              "%s: bf16_dot entries present %d %d %d %d %d, expected %d %d %d", name.c_str(), o.pack_kt_pairs != nullptr,
              o.qk_pairs != nullptr, o.qk_direct_pairs != nullptr, o.pack_v_pairs != nullptr, o.pv_pairs != nullptr,
              scores, direct, pv);
        const normexp::kernel_table& plain = normexp::detail::kernels_without_extensions(name);
        CHECK(plain.bf16_dot.qk_pairs == nullptr, "%s without extensions has no bf16_dot entries", name.c_str());
    }
#if defined(__x86_64__)
    {
        // AVX512_BF16 is listed exactly where the CPU has it (GCC's own cpuid reading) and the environment
        // does not turn it off.
        __builtin_cpu_init();
        const char* env = std::getenv("NORMEXP_AVX512_BF16");
        const bool off = env && std::strcmp(env, "0") == 0;
        bool avx512 = false;
        for (const auto& n : normexp::detail::available_isas()) avx512 = avx512 || n == "avx512";
        bool ext = false, dot = false, amx = false;
        for (const auto& e : normexp::detail::isa_extensions()) {
            ext = ext || e == "avx512_bf16";
            dot = dot || e == "avx512_bf16_dot";
            amx = amx || e == "amx_bf16";
        }
#if defined(NORMEXP_HAVE_AVX512BF16)
        const bool cpu = avx512 && __builtin_cpu_supports("avx512bf16");
        CHECK(ext == (cpu && !off), "isa_extensions lists avx512_bf16: %d, CPU %d, NORMEXP_AVX512_BF16=0 %d", ext, cpu, off);
        // The dot products where vdpbf16ps outruns float32 FMA (AMD), or where the switch insists.
        const bool on = env && std::strcmp(env, "1") == 0, unset = !env || !*env;
        // AMX where the CPU and the OS have it (GCC reads XCR0's tile bits too) with the bfloat16 entries in,
        // unless NORMEXP_AMX=0, or NORMEXP_AVX512_BF16=1 asks for vdpbf16ps and NORMEXP_AMX is unset.
        const char* amx_env = std::getenv("NORMEXP_AMX");
        const bool amx_unset = !amx_env || !*amx_env, amx_off = amx_env && std::strcmp(amx_env, "0") == 0;
#if defined(NORMEXP_HAVE_AMX)
        const bool amx_cpu = cpu && __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-tile");
        const bool want_amx = amx_cpu && !off && !amx_off && !(on && amx_unset);
#else
        const bool want_amx = false;
#endif
        CHECK(amx == want_amx, "isa_extensions lists amx_bf16: %d, expected %d", amx, want_amx);
        const bool want_dot = cpu && (on || (unset && __builtin_cpu_is("amd"))) && !want_amx;
        CHECK(dot == want_dot, "isa_extensions lists avx512_bf16_dot: %d, expected %d", dot, want_dot);
        std::printf("test_dispatch: avx512_bf16 %s, its dot products %s, AMX %s\n",
                    ext ? "in the avx512 table" : cpu ? "turned off" : "not on this CPU", dot ? "in" : "out",
                    amx ? "in" : "out");
#else
        CHECK(!ext && !dot && !amx, "avx512_bf16 listed although not built in");
#endif
    }
#endif
    // The x86-64 SIMD sets follow the CPU and the OS: GCC's __builtin_cpu_supports reads cpuid and
    // (for AVX/AVX-512) the xgetbv state bits, independently of dispatch.cpp. A set built in must be
    // available exactly when they say so, and the log line shows when this machine cannot test one.
#if defined(__x86_64__)
    {
        const auto isas = normexp::detail::available_isas();
        CHECK(!isas.empty() && isas.front() == "scalar", "scalar first");
        struct want {
            const char* name;
            bool cpu;
        };
        __builtin_cpu_init();
        const want sets[] = {
            {"avx2", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
            {"avx512", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
        };
        for (const want& w : sets) {
            bool listed = false;
            for (const auto& n : isas) listed = listed || n == w.name;
            bool built = true;
            try {
                (void)normexp::detail::kernels_for(w.name);
            } catch (const std::invalid_argument& e) {
                built = std::strstr(e.what(), "unknown ISA") == nullptr;
            }
            if (!built) {
                std::printf("test_dispatch: %s is not built in: not tested\n", w.name);
                continue;
            }
            CHECK(listed == w.cpu, "%s listed %d, but the CPU/OS support says %d", w.name, listed, w.cpu);
            if (!listed) std::printf("test_dispatch: this CPU/OS cannot run %s: its kernels are NOT tested here\n", w.name);
        }
        if (!isas.empty() && isas.back() == "avx512") std::printf("test_dispatch: avx512 available and tested\n");
    }
#endif
    const auto actw = words(normexp::detail::active_kernels());
    for (std::size_t i = 0; i < kWords; ++i) CHECK(actw[i] != 0 || optional_word(i), "active table: word %zu is null", i);

    return check::finish("test_dispatch");
}
