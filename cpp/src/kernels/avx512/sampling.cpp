// AVX-512 (F+BW+DQ+VL, FMA) sampling kernels: generic/sampling.hpp over avx512/traits.hpp (compiled with the
// AVX-512 flags, cmake/normexpIsa.cmake). Exports only avx512_add_sampling (isa_parts.hpp).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "../sampling_weights.hpp"
#include "traits.hpp"

namespace normexp::avx512 {
namespace {
#include "../generic/lanes.hpp"
#include "../generic/sampling.hpp"
}  // namespace
}  // namespace normexp::avx512

namespace normexp {
void avx512_add_sampling(kernel_table& t) {
    avx512::add_sampling<avx512::F32>(t.f32);
    avx512::add_sampling<avx512::F64>(t.f64);
}
}  // namespace normexp
