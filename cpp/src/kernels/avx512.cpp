// AVX-512 kernel set (x86-64, F + BW + DQ + VL with FMA; 16 x float32 / 8 x float64 per vector): the
// assembly of the avx512 kernel table.
//
// Compiled with the AVX-512 flags (cmake/normexpIsa.cmake), as are avx512/reductions.cpp and
// avx512/sampling.cpp, and nothing else. The only external symbol is avx512_kernels(), which the
// dispatcher calls after checking cpuid and xgetbv (dispatch.cpp).
//
// Entries:
//  * reductions and sampling (f32, f64): AVX-512 native, the algorithms of generic/ over
//    avx512/traits.hpp (avx512/reductions.cpp, avx512/sampling.cpp).
//  * attention (attn_f32, attn_f64): BORROWED from the AVX2 set (avx2_add_attention: generic/attention.hpp
//    over avx2/attention_traits.hpp), valid on every CPU this table runs on (the dispatcher lists avx512
//    only where AVX2 + FMA are supported too). Results are those of the avx2 set. The generic attention
//    compares into vector lanes (F::and_/or_/blend of comparison results), which the opmask traits of
//    avx512/traits.hpp do not provide; instantiating it here needs it on the mask hooks first.
#include "isa_parts.hpp"
#include "kernel_table.hpp"

namespace normexp {
const kernel_table& avx512_kernels() {
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "avx512";
        avx512_add_reductions(t);
        avx512_add_sampling(t);
        // Borrowed (see the header): the AVX2 attention micro-kernels.
        avx2_add_attention(t);
        return t;
    }();
    return table;
}
}  // namespace normexp
