// AVX512_BF16 on top of the AVX-512 traits (avx512/traits.hpp): V32 here is avx512::V32 with the bfloat16
// stores (ordinary, tail and streaming) done by vcvtneps2bf16, the one AVX512_BF16 instruction the element traits use. Everything else (and
// V64) is avx512's, so the generic algorithms instantiated over these traits are avx512's kernels with that
// store, and the same bits (tests/cpp/test_convert.cpp, test_half_kernels.cpp, test_kernel_digest.cpp).
//
// vcvtneps2bf16 rounds to nearest even, and its NaN result is the quiet NaN of the same sign with the top
// payload bits (the input's top 16 bits with bit 6 set), both as half_convert.hpp's to_bf16 specifies, but
// it treats denormal inputs as zero (whatever MXCSR says): a float32 subnormal x (exponent field 0, x != 0)
// gives +-0 instead of to_bf16(x), a bfloat16 subnormal or the smallest normal. Such lanes (rare: below
// 2^-126) take the exact integer rounding of avx512::V32::round_bf16, blended in behind a branch that a
// vector without them skips. The conversion does not consult or raise MXCSR flags.
//
// Include only from translation units compiled with the AVX-512 flags plus -mavx512bf16
// (cmake/normexpIsa.cmake: kernels/avx512bf16/*.cpp), inside their anonymous namespace, after
// avx512/traits.hpp.
#pragma once

struct V32 : avx512::V32 {
    using avx512::V32::V;
    // float32 -> bfloat16 of 16 lanes, the bits of to_bf16 (see above).
    static __m256i cvt_bf16(V v) {
        __m256i r = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
        const __mmask16 tiny = _mm512_testn_epi32_mask(_mm512_castps_si512(v), _mm512_set1_epi32(0x7f800000));
        if (tiny) r = _mm256_mask_blend_epi16(tiny, r, _mm512_cvtepi32_epi16(avx512::V32::round_bf16(v)));
        return r;
    }
    static void store_bf16(std::uint16_t* p, V v) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), cvt_bf16(v));
    }
    static void store_bf16_tail(std::uint16_t* p, std::size_t n, V v) {
        _mm256_mask_storeu_epi16(p, tail_mask(n), cvt_bf16(v));
    }
    static void stream_bf16(std::uint16_t* p, V v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), cvt_bf16(v)); }
};
using V64 = avx512::V64;
