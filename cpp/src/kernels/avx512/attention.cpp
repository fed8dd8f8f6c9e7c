// AVX-512 (F+BW+DQ+VL, FMA) attention micro-kernels: generic/attention.hpp over avx512/attention_traits.hpp,
// built on the element traits of generic/lanes.hpp over avx512/traits.hpp (compiled with the AVX-512 flags
// like every file of kernels/avx512/, cmake/normexpIsa.cmake). Exports only avx512_add_attention (isa_parts.hpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::avx512 {
namespace {
#include "../generic/lanes.hpp"
#include "attention_traits.hpp"
#include "../generic/attention.hpp"
}  // namespace
}  // namespace normexp::avx512

namespace normexp {
void avx512_add_attention(kernel_table& t) {
    t.attn_f32 = avx512::make_attention_table<avx512::AttnF32>();
    t.attn_f64 = avx512::make_attention_table<avx512::AttnF64>();
    t.attn_kv_f16 = avx512::make_attention_kv_table<avx512::AttnF32, float16>();
    t.attn_kv_bf16 = avx512::make_attention_kv_table<avx512::AttnF32, bfloat16>();
}
}  // namespace normexp
