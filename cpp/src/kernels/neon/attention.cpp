// NEON (aarch64 Advanced SIMD) attention micro-kernels: generic/attention.hpp over neon/attention_traits.hpp,
// compiled for aarch64 only; Advanced SIMD needs no flags (cmake/normexpIsa.cmake). Exports only neon_add_attention (isa_parts.hpp).
#include "../isa_parts.hpp"
#include "attention_traits.hpp"

#define NORMEXP_ISA neon
#include "../generic/attention.hpp"
#undef NORMEXP_ISA

namespace normexp {
void neon_add_attention(kernel_table& t) {
    t.attn_f32 = neon::make_attention_table<neon::AttnF32>();
    t.attn_f64 = neon::make_attention_table<neon::AttnF64>();
}
}  // namespace normexp
