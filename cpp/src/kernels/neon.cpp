// The NEON kernel table (aarch64 Advanced SIMD, 4 x float32 / 2 x float64 per vector). No kernel code lives
// here: each family is a translation unit of kernels/neon/ (kernels/isa_parts.hpp), the algorithms of
// kernels/generic/ over kernels/neon/traits.hpp (and attention_traits.hpp), so NEON and AVX2 differ only in
// the intrinsics and the vector width. Advanced SIMD is part of armv8-a: no extra flags; compiled only for
// aarch64 (cmake/normexpIsa.cmake). The only external symbol is neon_kernels().
#include "isa_parts.hpp"
#include "kernel_table.hpp"

namespace normexp {
const kernel_table& neon_kernels() {
    // Every entry is filled; an entry left null would run the scalar kernel (dispatch.cpp, with_fallback).
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "neon";
        neon_add_reductions(t);
        neon_add_sampling(t);
        neon_add_attention(t);
        return t;
    }();
    return table;
}
}  // namespace normexp
