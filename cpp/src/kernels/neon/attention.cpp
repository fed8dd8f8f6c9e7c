// NEON attention micro-kernels: the algorithms of kernels/generic/attention.hpp over the traits of
// kernels/neon/attention_traits.hpp, compiled for aarch64 only (cmake/normexpIsa.cmake; Advanced SIMD needs no flags).
// Everything here has internal linkage except the two table makers declared in kernel_table.hpp, which
// neon_kernels() (kernels/neon.cpp) calls to fill its attention entries.
#include "attention_traits.hpp"

#define NORMEXP_ISA neon
#include "../generic/attention.hpp"
#undef NORMEXP_ISA

namespace normexp::neon {
attention_kernels<float> make_attention_kernels_f32() { return make_attention_table<AttnF32>(); }
attention_kernels<double> make_attention_kernels_f64() { return make_attention_table<AttnF64>(); }
}  // namespace normexp::neon
