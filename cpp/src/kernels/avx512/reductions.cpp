// AVX-512 (F+BW+DQ+VL, FMA) reductions kernels: generic/reductions.hpp over avx512/traits.hpp (compiled with the
// AVX-512 flags, cmake/normexpIsa.cmake). Also the 16-bit conversions (generic/convert.hpp) and the float16 / bfloat16 reductions (storage_kernels). Exports only avx512_add_reductions (isa_parts.hpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::avx512 {
namespace {
#include "../generic/lanes.hpp"
#include "../generic/reductions.hpp"
#include "../generic/convert.hpp"
}  // namespace
}  // namespace normexp::avx512

namespace normexp {
void avx512_add_reductions(kernel_table& t) {
    avx512::add_reductions<avx512::F32>(t.f32);
    avx512::add_reductions<avx512::F64>(t.f64);
    avx512::add_reductions<avx512::F32, true>(t.f32_fast);
    avx512::add_reductions<avx512::F64, true>(t.f64_fast);
    avx512::add_convert<avx512::F32>(t.cvt);
    avx512::add_storage_reductions<avx512::F32>(t.f16);
    avx512::add_storage_reductions<avx512::F32>(t.bf16);
}
}  // namespace normexp
