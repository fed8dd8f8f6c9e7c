// AVX512_BF16 reductions entries: the avx512 set's bfloat16 conversion (convert_kernels::f32_to_bf16) and
// bfloat16 reductions (storage_kernels<bfloat16>) with their bfloat16 stores done by vcvtneps2bf16
// (avx512bf16/traits.hpp), the same bits as avx512's. generic/convert.hpp and generic/reductions.hpp over
// those traits, compiled with the AVX-512 flags plus -mavx512bf16 (cmake/normexpIsa.cmake). Exports only
// avx512bf16_add_reductions (isa_parts.hpp), which the dispatcher calls on the avx512 table where the CPU
// has AVX512_BF16 (dispatch.cpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "../avx512/traits.hpp"

namespace normexp::avx512bf16 {
namespace {
#include "traits.hpp"
#include "../generic/lanes.hpp"
#include "../generic/reductions.hpp"
#include "../generic/convert.hpp"
}  // namespace
}  // namespace normexp::avx512bf16

namespace normexp {
void avx512bf16_add_reductions(kernel_table& t) {
    t.cvt.f32_to_bf16 = avx512bf16::k_narrow<avx512bf16::F32, bfloat16>;
    avx512bf16::add_storage_reductions<avx512bf16::F32>(t.bf16);
}
}  // namespace normexp
