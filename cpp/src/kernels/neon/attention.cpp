// NEON (aarch64 Advanced SIMD) attention micro-kernels: generic/attention.hpp over neon/attention_traits.hpp, built on the
// element traits of generic/lanes.hpp over neon/traits.hpp (compiled for aarch64 only; Advanced SIMD needs no flags,
// cmake/normexpIsa.cmake). Exports only neon_add_attention (isa_parts.hpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::neon {
namespace {
#include "../generic/lanes.hpp"
#include "attention_traits.hpp"
#include "../generic/attention.hpp"
}  // namespace
}  // namespace normexp::neon

namespace normexp {
void neon_add_attention(kernel_table& t) {
    t.attn_f32 = neon::make_attention_table<neon::AttnF32>();
    t.attn_f64 = neon::make_attention_table<neon::AttnF64>();
    t.attn_kv_f16 = neon::make_attention_kv_table<neon::AttnF32, float16>();
    t.attn_kv_bf16 = neon::make_attention_kv_table<neon::AttnF32, bfloat16>();
}
}  // namespace normexp
