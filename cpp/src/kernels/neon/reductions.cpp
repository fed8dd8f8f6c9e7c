// NEON reduction kernels: generic/reductions.hpp over neon/traits.hpp (Advanced SIMD: no extra flags,
// cmake/normexpIsa.cmake). Also the 16-bit conversions (generic/convert.hpp) and the float16 / bfloat16 reductions (storage_kernels). Exports only neon_add_reductions (isa_parts.hpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "traits.hpp"

namespace normexp::neon {
namespace {
#include "../generic/lanes.hpp"
#include "../generic/reductions.hpp"
#include "../generic/convert.hpp"
}  // namespace
}  // namespace normexp::neon

namespace normexp {
void neon_add_reductions(kernel_table& t) {
    neon::add_reductions<neon::F32>(t.f32);
    neon::add_reductions<neon::F64>(t.f64);
    neon::add_reductions<neon::F32, true>(t.f32_fast);
    neon::add_reductions<neon::F64, true>(t.f64_fast);
    neon::add_convert<neon::F32>(t.cvt);
    neon::add_storage_reductions<neon::F32>(t.f16);
    neon::add_storage_reductions<neon::F32>(t.bf16);
}
}  // namespace normexp
