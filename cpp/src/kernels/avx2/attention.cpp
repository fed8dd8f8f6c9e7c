// AVX2 + FMA attention micro-kernels: generic/attention.hpp over avx2/attention_traits.hpp, built on the
// element traits of generic/lanes.hpp over avx2/traits.hpp (compiled with -mavx2 -mfma like every file of kernels/avx2/,
// cmake/normexpIsa.cmake). Exports only avx2_add_attention (isa_parts.hpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::avx2 {
namespace {
#include "../generic/lanes.hpp"
#include "attention_traits.hpp"
#include "../generic/attention.hpp"
}  // namespace
}  // namespace normexp::avx2

namespace normexp {
void avx2_add_attention(kernel_table& t) {
    t.attn_f32 = avx2::make_attention_table<avx2::AttnF32>();
    t.attn_f64 = avx2::make_attention_table<avx2::AttnF64>();
    t.attn_kv_f16 = avx2::make_attention_kv_table<avx2::AttnF32, float16>();
    t.attn_kv_bf16 = avx2::make_attention_kv_table<avx2::AttnF32, bfloat16>();
}
}  // namespace normexp
