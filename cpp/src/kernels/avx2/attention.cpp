// AVX2 + FMA (x86-64) attention micro-kernels: generic/attention.hpp over avx2/attention_traits.hpp,
// compiled with -mavx2 -mfma like every file of kernels/avx2/ (cmake/normexpIsa.cmake). Exports only avx2_add_attention (isa_parts.hpp).
#include "../isa_parts.hpp"
#include "attention_traits.hpp"

#define NORMEXP_ISA avx2
#include "../generic/attention.hpp"
#undef NORMEXP_ISA

namespace normexp {
void avx2_add_attention(kernel_table& t) {
    t.attn_f32 = avx2::make_attention_table<avx2::AttnF32>();
    t.attn_f64 = avx2::make_attention_table<avx2::AttnF64>();
}
}  // namespace normexp
