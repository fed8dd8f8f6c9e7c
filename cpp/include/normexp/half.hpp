// 16-bit floating-point storage types: IEEE 754 binary16 (float16) and bfloat16 (the upper half of a
// float32). They hold the bits only (layout-compatible with NumPy's float16, ml_dtypes.bfloat16,
// torch.float16/bfloat16, _Float16 and __bf16); normexp's kernels widen them to float32 in registers,
// compute in float32 and round once, to nearest even, when they store one.
#pragma once

#include <cstdint>

namespace normexp {

struct float16 {
    std::uint16_t bits;
};
struct bfloat16 {
    std::uint16_t bits;
};
static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2, "16-bit storage types must be 2 bytes");

}  // namespace normexp
