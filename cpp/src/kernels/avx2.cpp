// The AVX2 + FMA kernel table (x86-64, 8 x float32 / 4 x float64 per vector). No kernel code lives here:
// each family is a translation unit of kernels/avx2/ (kernels/isa_parts.hpp), the algorithms of
// kernels/generic/ over kernels/avx2/traits.hpp (and attention_traits.hpp). Compiled with -mavx2 -mfma like
// them (cmake/normexpIsa.cmake); the only external symbol is avx2_kernels(), which the dispatcher calls
// after checking cpuid and xgetbv.
#include "isa_parts.hpp"
#include "kernel_table.hpp"

namespace normexp {
const kernel_table& avx2_kernels() {
    // Every entry is filled; an entry left null would run the scalar kernel (dispatch.cpp, with_fallback).
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "avx2";
        avx2_add_reductions(t);
        avx2_add_sampling(t);
        avx2_add_attention(t);
        return t;
    }();
    return table;
}
}  // namespace normexp
