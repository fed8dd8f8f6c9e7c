// AVX2 + FMA reduction kernels: generic/reductions.hpp over avx2/traits.hpp (compiled with -mavx2 -mfma,
// cmake/normexpIsa.cmake). Also the 16-bit conversions (generic/convert.hpp) and the float16 / bfloat16 reductions (storage_kernels). Exports only avx2_add_reductions (isa_parts.hpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::avx2 {
namespace {
#include "../generic/lanes.hpp"
#include "../generic/reductions.hpp"
#include "../generic/convert.hpp"
}  // namespace
}  // namespace normexp::avx2

namespace normexp {
void avx2_add_reductions(kernel_table& t) {
    avx2::add_reductions<avx2::F32>(t.f32);
    avx2::add_reductions<avx2::F64>(t.f64);
    avx2::add_reductions<avx2::F32, true>(t.f32_fast);
    avx2::add_reductions<avx2::F64, true>(t.f64_fast);
    avx2::add_convert<avx2::F32>(t.cvt);
    avx2::add_storage_reductions<avx2::F32>(t.f16);
    avx2::add_storage_reductions<avx2::F32>(t.bf16);
}
}  // namespace normexp
