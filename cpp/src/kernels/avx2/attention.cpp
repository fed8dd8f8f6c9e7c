// AVX2 + FMA attention micro-kernels: the algorithms of kernels/generic/attention.hpp over the traits of
// kernels/avx2/attention_traits.hpp, compiled with -mavx2 -mfma like kernels/avx2.cpp (cmake/normexpIsa.cmake).
// Everything here has internal linkage except the two table makers declared in kernel_table.hpp, which
// avx2_kernels() (kernels/avx2.cpp) calls to fill its attention entries.
#include "attention_traits.hpp"

#define NORMEXP_ISA avx2
#include "../generic/attention.hpp"
#undef NORMEXP_ISA

namespace normexp::avx2 {
attention_kernels<float> make_attention_kernels_f32() { return make_attention_table<AttnF32>(); }
attention_kernels<double> make_attention_kernels_f64() { return make_attention_table<AttnF64>(); }
}  // namespace normexp::avx2
