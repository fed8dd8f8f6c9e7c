// Sampling weights: the one computation that must be BIT-IDENTICAL on every ISA.
//
// normexp.sample promises that one seed gives the same tokens on every ISA and thread count. The
// randomness is one uniform u per row (drawn in Python); the token is the inverse CDF of the row's
// weights at u * sum(weights). So every weight, and every partial sum the driver compares with, must be
// the same bits on scalar, AVX2 and NEON. That is achieved by specifying the exact sequence of IEEE
// float32 operations (each correctly rounded, round-to-nearest-even, no FMA: the library is built with
// -ffp-contract=off and the SIMD code uses separate mul/add intrinsics) and the exact summation order.
// Weights below 2^-124 relative to the maximum are flushed to zero, so no subnormal is ever produced
// (FTZ/DAZ settings cannot change anything).
//
// sample_exp(t), t <= 0 (float32 throughout):
//   if !(t >= kSampleMinArg): return 0                       (t < -86, or -inf)
//   kd = (t * kLog2eF + kSampleShifter) - kSampleShifter      (round(t / ln2) to nearest even, exact)
//   r  = (t - kd * kLn2HiF) - kd * kLn2LoF                    (kd * kLn2HiF is exact: |kd| <= 124)
//   q  = ((((kC6F * r + kC5F) * r + kC4F) * r + kC3F) * r + kC2F)
//   p  = ((r * r) * q + r) + 1
//   return p * 2^kd                                           (2^kd built in the exponent field; kd >= -124)
// Accuracy (not the point, but documented): measured <= 1 ULP of float32 against exp(t) on t in [-86, 0]
// (tests/cpp/test_sampling_kernels.cpp checks <= 3 ULP), i.e. relative error < 2e-7.
//
// Block sums: block b covers w[64b .. 64b+64), entries past n count as +0. With L_j (j = 0..7) the
// lane sums L_j = (((w[j] + w[8+j]) + w[16+j]) + ... + w[56+j]) in that order,
//   s_j = L_j + L_{j+4}  (j = 0..3),   S_b = (s_0 + s_2) + (s_1 + s_3).
// (This is the natural AVX2 order: 8 vector adds, then the 256 -> 128 -> 64 -> 32 bit horizontal sum.)
#pragma once

#include <cstddef>

#include "exp_constants.hpp"

namespace normexp::sampling {

constexpr std::size_t kSampleBlock = 64;        // entries per block sum
constexpr float kSampleMinArg = -86.0f;         // exp(-86) = 4.4e-38: weights below are flushed to 0
constexpr float kSampleShifter = 0x1.8p23f;     // 1.5 * 2^23: adding it rounds to an integer

}  // namespace normexp::sampling
