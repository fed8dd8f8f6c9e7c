// NEON sampling kernels: generic/sampling.hpp over neon/traits.hpp (Advanced SIMD: no extra flags,
// cmake/normexpIsa.cmake). Exports only neon_add_sampling (isa_parts.hpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "../sampling_weights.hpp"
#include "traits.hpp"

namespace normexp::neon {
namespace {
#include "../generic/lanes.hpp"
#include "../generic/sampling.hpp"
}  // namespace
}  // namespace normexp::neon

namespace normexp {
void neon_add_sampling(kernel_table& t) {
    neon::add_sampling<neon::F32>(t.f32);
    neon::add_sampling<neon::F64>(t.f64);
}
}  // namespace normexp
