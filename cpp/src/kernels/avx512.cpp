// AVX-512 kernel set (x86-64, F + BW + DQ + VL with FMA; 16 x float32 / 8 x float64 per vector): the
// assembly of the avx512 kernel table.
//
// Compiled with the AVX-512 flags (cmake/normexpIsa.cmake), as are avx512/reductions.cpp,
// avx512/sampling.cpp and avx512/attention.cpp, and nothing else. The only external symbol is avx512_kernels(), which the
// dispatcher calls after checking cpuid and xgetbv (dispatch.cpp).
//
// Entries, all AVX-512 native, the algorithms of generic/ over avx512/traits.hpp: reductions and sampling
// (f32, f64; avx512/reductions.cpp, avx512/sampling.cpp) and attention (attn_f32, attn_f64;
// avx512/attention.cpp over avx512/attention_traits.hpp, its own register tiles).
#include "isa_parts.hpp"
#include "kernel_table.hpp"

namespace normexp {
const kernel_table& avx512_kernels() {
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "avx512";
        avx512_add_reductions(t);
        avx512_add_sampling(t);
        avx512_add_attention(t);
        return t;
    }();
    return table;
}
}  // namespace normexp
