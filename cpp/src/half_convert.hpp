// The specification of the 16-bit conversions (normexp/half.hpp types), for baseline code only: the scalar
// kernel set (kernels/scalar.cpp) and the drivers. Every SIMD set's loads and stores of 16-bit lanes
// (kernels/<isa>/traits.hpp: load_f16, store_f16, load_bf16, store_bf16) must give these bits exactly
// (tests/cpp/test_convert.cpp, over every float16 and bfloat16 value and ~10^6 float32 values per set).
// ISA translation units must not include this file (the ODR trap: docs/architecture.md, "Dispatch").
//
//   widening (16 -> 32 bits) is exact. float16 NaN -> float32 NaN with the payload in the top mantissa bits
//     and the quiet bit set (what F16C's vcvtph2ps and aarch64's fcvtl give); bfloat16 is the top half of a
//     float32, so widening is a 16-bit shift (a signalling NaN stays signalling).
//   narrowing (32 -> 16 bits) rounds once, to nearest, ties to even; beyond the largest finite value it
//     gives inf (float16: |x| >= 65520 = 0x1.ffcp15 + half an ulp); float16 subnormals round exactly;
//     NaN -> quiet NaN of the same sign with the top payload bits (vcvtps2ph, fcvtn, and the bfloat16
//     rule x86 and Arm bfloat16 instructions use).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "normexp/half.hpp"

namespace normexp::detail {

inline std::uint32_t f32_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
inline float f32_from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline float to_f32(bfloat16 h) { return f32_from_bits(std::uint32_t(h.bits) << 16); }

inline bfloat16 to_bf16(float f) {
    const std::uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x40u)};
    return {static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

inline float to_f32(float16 h) {
    const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
    const std::uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
    if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u));
    if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float32
        const float a = static_cast<float>(m) * 0x1p-24f;
        return sign ? -a : a;
    }
    return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));  // rebias 15 -> 127
}

inline float16 to_f16(float f) {
    const std::uint32_t u = f32_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return {static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};
    if (a >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
    if (a >= 0x38800000u) {  // normal float16 (>= 2^-14): rebias, round the 13 dropped bits to nearest even
        const std::uint32_t r = a - (112u << 23);
        return {static_cast<std::uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13))};
    }
    // Subnormal float16: round(|f| / 2^-24) = m 2^(e - 126) for the float32 significand m (implicit bit
    // included) and biased exponent e; below 2^-25 (shift > 24) it is 0.
    const std::uint32_t e = a >> 23;
    if (e < 102) return {static_cast<std::uint16_t>(sign)};
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;  // 14 <= shift <= 24
    const std::uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return {static_cast<std::uint16_t>(sign | (q + (rem > half || (rem == half && (q & 1u)))))};
}

// double -> 16 bits, rounded once to nearest even (a result computed in double: attention's o / l, the
// drivers' logsumexp, the scalar specification's outputs). First to float32 rounded to odd: the float32 next
// to x towards zero, with its last significand bit set when that is inexact (x exact or NaN: x; a finite x
// beyond float32's range gives the largest float32, odd, which both round to inf); then to_f16 / to_bf16
// above. Rounding to odd keeps what a second rounding needs (inexact results stay off the midpoints of the
// coarser format), so the pair is the correctly rounded double -> 16-bit conversion whenever the
// intermediate has at least 2 more significand bits than the target at every magnitude: float32 has 24
// against float16's 11 (float16's subnormals, from 2^-24, are normal float32 numbers) and bfloat16's 8
// (their subnormals both have 2^-149 / 2^-133 steps). Boldo and Melquiond, "Emulation of FMA and correctly
// rounded sums: proved algorithms using rounding to odd", IEEE TC 57(4), 2008. A plain double -> float ->
// 16-bit chain rounds twice and can land on the wrong side of a 16-bit midpoint (1 + 2^-11 + 2^-40 -> 1 in
// float16 instead of 1 + 2^-10).
// Written without branches: whether the nearest float32 lies away from zero is a coin toss for computed
// results, and a mispredicted branch per element made attention's 16-bit output pass ~13 ns an element.
inline float to_f32_odd(double x) {
    const float f = static_cast<float>(x);  // nearest (even); inf beyond the float32 range
    const double fd = static_cast<double>(f);
    const std::uint32_t inexact = static_cast<std::uint32_t>(fd != x) & static_cast<std::uint32_t>(x == x);
    const std::uint32_t away = static_cast<std::uint32_t>(std::fabs(fd) > std::fabs(x));  // one step back
    return f32_from_bits(((f32_bits(f) - (inexact & away)) | inexact));
}
inline float16 to_f16(double x) { return to_f16(to_f32_odd(x)); }
inline bfloat16 to_bf16(double x) { return to_bf16(to_f32_odd(x)); }

}  // namespace normexp::detail
