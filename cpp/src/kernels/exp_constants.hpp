// Constants of the exp algorithm shared by every ISA file (values only: no functions, so nothing here
// can be compiled with one ISA's flags and linked into another's code).
//
// Algorithm (Cody-Waite range reduction + polynomial):
//   exp(t) = 2^k * exp(r),  k = round(t / ln2),  r = t - k*ln2 in [-ln2/2, ln2/2]
//   with ln2 = LN2_HI + LN2_LO split so that k*LN2_HI is exact for every k that can occur.
//
// float32:  exp(r) ~= 1 + r + r^2 * (C2 + r*(C3 + r*(C4 + r*(C5 + r*C6))))
//   A degree-6 relative-minimax fit on [-ln2/2, ln2/2] (Lawson-iterated weighted least squares against a
//   40-digit reference); approximation error 3.1e-9 relative = 0.05 ULP.  With the rounding of the
//   Horner steps the vector kernel is within 1 ULP of the correctly rounded exp over the whole float32
//   domain (measured exhaustively: tests/cpp/test_exp.cpp).
//
// float64:  exp(r) ~= sum_{i=0..13} r^i / i!   (Taylor, degree 13)
//   Truncation error |r|^14/14! <= 4.1e-18 relative = 0.04 ULP on |r| <= ln2/2; with Horner rounding
//   the result is within 1 ULP.
#pragma once

#include <cstdint>

namespace normexp::expc {

// ---- float32 -----------------------------------------------------------------------------------------
constexpr float kLog2eF = 0x1.715476p+0f;   // 1/ln2 rounded
constexpr float kLn2HiF = 0x1.62e4p-1f;     // 16 significant bits: k*kLn2HiF exact for |k| < 2^8
constexpr float kLn2LoF = 0x1.7f7d1cp-20f;  // ln2 - kLn2HiF
constexpr float kC2F = 0x1.fffffcp-2f;
constexpr float kC3F = 0x1.555492p-3f;
constexpr float kC4F = 0x1.5558f2p-5f;
constexpr float kC5F = 0x1.1239d4p-7f;
constexpr float kC6F = 0x1.6a244cp-10f;
// float16 / bfloat16 softmax (storage_kernels in kernel_table.hpp; lanes::exp_core_half): an output
// exp(t) / sum rounded to 11 or 8 bits needs exp(t) to about 2^-12 relative for 1 ULP, not float32's 0.05 ULP
// (the sums of logsumexp / log_softmax keep the float32 exp: their results cancel towards 0), so
//   r = t - k*kLn2F          (ln2 rounded to float32, one FMA: error |k| |ln2 - kLn2F| < 150 * 2^-28.9)
//   exp(r) ~= 1 + r + r^2 * (H2 + r*(H3 + r*H4))
// degree 4, a relative-minimax fit on [-ln2/2, ln2/2] (Lawson-iterated weighted least squares), error
// 5.3e-6 relative = 2^-17.5 with the float32 Horner rounding (tests/cpp/test_half_kernels.cpp holds the
// whole exp to 2^-17 over every float16 and bfloat16 argument). Three FMAs fewer than the float32 exp.
constexpr float kLn2F = 0x1.62e430p-1f;
constexpr float kH2F = 0x1.0006b6p-1f;
constexpr float kH3F = 0x1.571cc2p-3f;
constexpr float kH4F = 0x1.52258ep-5f;
// accuracy::fast (kernel_table.hpp; lanes::exp_core_fast), whose contract already allows |t| 2^-24 per
// rounding of the argument t = fl(x - m):
//   r = t - k*kLn2F          (one FMA: error |k| |ln2 - kLn2F| <= (|t|/ln2 + 1/2) 2^-28.97 = |t| 2^-28.4 + 2^-30)
//   exp(r) ~= 1 + r*(P1 + r*(P2 + r*(P3 + r*(P4 + r*P5))))
// degree 5, a relative-minimax fit on [-ln2/2, ln2/2] (Lawson-iterated weighted least squares, P1 free),
// error 9.5e-8 = 1.6 2^-24 with the coefficients rounded to float32. Measured over every float32 t in
// [-104, 0] (tests/cpp/test_exp.cpp, AVX2 and AVX-512): relative error <= 1.3 2^-23 + |t| 2^-28 (0.97 of it
// at worst), and within 0.58 of 2^-22 + |t| 2^-24, the fast mode's stated bound, everywhere. Two FMAs fewer
// than the float32 exp: 1.19x the exp-and-sum rate on AVX-512 (Zen 4, one core, a 4096-entry row in L1).
constexpr float kP1F = 0x1.fffff6p-1f;
constexpr float kP2F = 0x1.fffdc6p-2f;
constexpr float kP3F = 0x1.555a6ap-3f;
constexpr float kP4F = 0x1.573a54p-5f;
constexpr float kP5F = 0x1.0fa832p-7f;
// Below this every exp rounds to +0 in float32, also lifted by 2^kLiftF (exp(-121) 2^24 = 2^-150.6 < 2^-150,
// RN to +0); clamping there keeps k inside the range where the two-factor scaling 2^(k/2) * 2^(k - k/2) is
// exact.
constexpr float kMinArgF = -121.0f;
// exp(88.8) > FLT_MAX: clamping here still overflows to +inf, and keeps k <= 129.
constexpr float kMaxArgF = 88.8f;
// Below this the result is subnormal (k < -126) and needs the two-factor scaling.
constexpr float kNormalMinArgF = -87.3f;

// ---- float64 -----------------------------------------------------------------------------------------
constexpr double kLog2eD = 0x1.71547652b82fep+0;
constexpr double kLn2HiD = 0x1.62e42fp-1;              // 25 significant bits
constexpr double kLn2LoD = 0x1.df473de6af279p-26;      // ln2 - kLn2HiD
constexpr double kInvFact[14] = {
    0x1p+0,                 0x1p+0,                 0x1p-1,                 0x1.5555555555555p-3,
    0x1.5555555555555p-5,   0x1.1111111111111p-7,   0x1.6c16c16c16c17p-10,  0x1.a01a01a01a01ap-13,
    0x1.a01a01a01a01ap-16,  0x1.71de3a556c734p-19,  0x1.27e4fb7789f5cp-22,  0x1.ae64567f544e4p-26,
    0x1.1eed8eff8d898p-29,  0x1.6124613a86d09p-33,
};
constexpr double kMinArgD = -784.0;   // exp(-784) 2^54 < 2^-1075: rounds to +0, also lifted by 2^kLiftD
constexpr double kMaxArgD = 709.9;    // exp(709.9) > DBL_MAX
constexpr double kNormalMinArgD = -708.3;

// Round-to-nearest-integer by the 1.5*2^52 shifter (valid for |v| < 2^51 in round-to-nearest mode).
constexpr double kShifterD = 0x1.8p+52;
// float32: 1.5*2^23 + 127. v + kShifterBiasedF rounds v to an integer k and leaves k + 127 (the biased
// exponent of 2^k) in the low mantissa bits, so (bits << 23) is 2^k directly (valid for |v| < 2^22).
constexpr float kShifterBiasedF = 0x1.8000fep+23f;

// Scores are clamped from below at m - kClampOffset (rounded down) before forming x - m, just past
// the underflow threshold. Then x - m and its TwoSum error stay finite (x = -inf would make both NaN),
// and the error is tiny: below 2^-16 when |m| < 2 kClampOffset, and 0 (Sterbenz) otherwise.
constexpr double kClampOffsetF = 122.0;
constexpr double kClampOffsetD = 785.0;

// The terms of a counting sum (log_softmax's and logsumexp's rest, whose log1p is the result near the
// maximum) are formed as 2^kLift exp(t), and the sum is scaled back by 2^-kLift in double: a term whose
// exp is below the smallest normal (float32 t in about [-104, -87.3], float64 [-745, -708]) would reach the
// sum rounded to a subnormal, half a subnormal step of absolute error each, thousands of ULP of a rest
// itself near the smallest normal ([0] + [-96.93] * 19999: 2395 ULP). Lifted, it keeps 24 (53) bits down to
// exp(t) = 2^-150 (2^-1075). The lift costs nothing: it is the exp polynomial's coefficients times 2^kLift
// (exact), and wherever the terms are normal the lifted sum is 2^kLift times the plain one, bit for bit.
constexpr int kLiftF = 24;
constexpr int kLiftD = 54;
constexpr double kLiftScaleF = 0x1p24;  // 2^kLiftF
constexpr double kLiftScaleD = 0x1p54;  // 2^kLiftD; also the scale of exp_sum::lifted (kernel_table.hpp)
static_assert(kLiftScaleF == double(std::uint64_t(1) << kLiftF) && kLiftScaleD == double(std::uint64_t(1) << kLiftD),
              "the lift scales are 2^kLift");

// Rows are summed in blocks of this many elements per accumulator lane before flushing into double,
// bounding the working-precision error of a block independently of the row length.
constexpr int kSumBlock = 512;

}  // namespace normexp::expc
