// AVX-512 (F + BW + DQ + VL, with FMA) vector traits: the only place the reduction and sampling
// algorithms meet AVX-512 intrinsics.
//
// V32 (16 x float32) and V64 (8 x float64) wrap one intrinsic (or a fixed short sequence) per operation
// and contain no algorithm; the algorithms are written once over them in ../generic/ (lanes.hpp builds
// F32 = lanes<V32>, F64 = lanes<V64>). The operations and their semantics are those of
// ../avx2/traits.hpp (see there); where AVX-512 differs:
//  * Masks are opmask registers (B = M = __mmask16 / __mmask8, bit i = lane i), not vector lanes:
//    comparisons write a k register, and zero_unless/zero_if/blend/inc_where consume one directly
//    (zero-masking moves, vblendmps, masked integer add). store_mask/load_mask spill a mask to a T
//    array as all-ones/zero lanes (vpmovm2d / vpmovd2m, AVX512DQ). kBitMasks: counts of true lanes are
//    popcnt of the mask (the translation units take -mpopcnt; dispatch.cpp checks the CPU has it).
//  * Tails are masked loads and stores (vmovups with a k mask): the masked-off lanes are never read
//    (no fault past the end) and load as +0, as _mm256_maskload does.
//  * kScalef: exp scales its polynomial by 2^k with vscalefps/vscalefpd, RN(p * 2^k) with a single
//    rounding for every integral k, so overflow to +inf and gradual underflow come out correctly
//    rounded in the one instruction, and lanes.hpp drops the out-of-range branch and its two-factor
//    scaling (whose result, RN(p * 2^k) as well, is the same bits: the float32 exp stays bit-identical
//    to the AVX2 one); scalef_zero_if zero-masks it (a counting sum's counted lanes, in the one
//    instruction). max/min have the SSE/AVX2 semantics (second operand if either is NaN).
//  * No vrndscaleps/pd: exp's k = round(t log2e) comes from the shifter, fma(t, log2e, S) - S, which
//    rounds the exact product once; vmulps + vrndscaleps is as many instructions but rounds the product
//    first, so near a half-integer it can pick the other k (still a valid reduction, but different
//    bits from AVX2/NEON and the scalar specification's structure). Nothing to gain, so not used.
// Include only from translation units compiled with the AVX-512 flags (cmake/normexpIsa.cmake).
// Everything is in an anonymous namespace: each AVX-512 translation unit gets its own internal copy, so
// no AVX-512 code can be picked by the linker for baseline or AVX2 code.
#pragma once

// GCC's AVX-512 intrinsics (12 at least) pass _mm512_undefined_ps() (a self-initialized variable) as the unused
// merge source of unmasked operations (vmaxps, vcvtps2pd, vscalefps, ...), which -Wmaybe-uninitialized
// reports at every inlined use (and -Wuninitialized, where clamp_below_v's conversions are inlined into
// col_exp_sum_max); the warning is about the header's idiom, not our values.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstddef>
#include <cstdint>

namespace normexp::avx512 {
namespace {

struct V64 {
    using T = double;
    using V = __m512d;
    using M = __mmask8;  // tail mask
    using B = __mmask8;  // comparison results
    using I = __m512i;   // 8 x int64
    using D = V64;
    static constexpr std::size_t N = 8;

    static V load(const T* p) { return _mm512_loadu_pd(p); }
    static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
    static M tail_mask(std::size_t n) { return static_cast<M>((1u << n) - 1u); }  // n <= 8
    static V load_tail(const T* p, M mk) { return _mm512_maskz_loadu_pd(mk, p); }
    static void store_tail(T* p, M mk, V v) { _mm512_mask_storeu_pd(p, mk, v); }
    static B mask_v(M mk) { return mk; }
    static constexpr bool kStream = true;
    static constexpr std::size_t kStreamAlign = 64;
    static constexpr std::size_t kLineAlign = 64;  // a whole vector from a 64-byte boundary is one cache line
    static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
    static void stream_fence() { _mm_sfence(); }
    // The line between consecutive vectors a, b stored s lanes past a line boundary (0 < s < N): lanes [N - s, N)
    // of a, then lanes [0, N - s) of b, by one two-source permute (funnel_index(s): lane j takes j + N - s).
    static I funnel_index(std::size_t s) {
        return _mm512_add_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64(static_cast<long long>(N - s)));
    }
    static V funnel(V a, I idx, V b) { return _mm512_permutex2var_pd(a, idx, b); }

    static V set1(T v) { return _mm512_set1_pd(v); }
    static V zero() { return _mm512_setzero_pd(); }
    static V add(V a, V b) { return _mm512_add_pd(a, b); }
    static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
    static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
    static V div(V a, V b) { return _mm512_div_pd(a, b); }
    static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }    // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }  // c - a*b, one rounding
    static V fmsub(V a, V b, V c) { return _mm512_fmsub_pd(a, b, c); }    // a*b - c, one rounding
    static V max(V a, V b) { return _mm512_max_pd(a, b); }  // b if either is NaN
    static V min(V a, V b) { return _mm512_min_pd(a, b); }  // b if either is NaN
    static V abs(V a) { return _mm512_abs_pd(a); }
    static B eq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
    static B ge(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
    static B lt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
    static B gt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
    static B le(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
    static B unord(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_UNORD_Q); }
    static V and_(V a, V b) { return _mm512_and_pd(a, b); }
    static V andnot(V a, V b) { return _mm512_andnot_pd(a, b); }  // ~a & b
    static V or_(V a, V b) { return _mm512_or_pd(a, b); }
    static V blend(V a, V b, B m) { return _mm512_mask_blend_pd(m, a, b); }  // m ? b : a
    static bool any(B m) { return m != 0; }
    static std::uint32_t movemask(B m) { return m; }  // bit i = lane i
    static T hmax(V v) { return _mm512_reduce_max_pd(v); }  // NaN-free v
    template <std::size_t G>  // (avx2/traits.hpp: zip_lo, zip_hi)
    static V zip_lo(V a, V b) {
        if constexpr (G == 1) return _mm512_unpacklo_pd(a, b);
        else if constexpr (G == 2) return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), b);
        else return _mm512_shuffle_f64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0));
    }
    template <std::size_t G>
    static V zip_hi(V a, V b) {
        if constexpr (G == 1) return _mm512_unpackhi_pd(a, b);
        else if constexpr (G == 2) return _mm512_permutex2var_pd(a, _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15), b);
        else return _mm512_shuffle_f64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2));
    }

    // ---- masks ----
    static B mnone() { return 0; }
    static B mor(B a, B b) { return static_cast<B>(a | b); }
    static B mand(B a, B b) { return static_cast<B>(a & b); }
    static V zero_unless(B m, V v) { return _mm512_maskz_mov_pd(m, v); }    // m ? v : +0
    static V zero_if(B m, V v) { return _mm512_mask_mov_pd(v, m, zero()); }  // m ? +0 : v
    static void store_mask(T* p, B m) { store(p, _mm512_castsi512_pd(_mm512_movm_epi64(m))); }
    static B load_mask(const T* p) { return _mm512_movepi64_mask(_mm512_castpd_si512(load(p))); }

    // ---- integer lanes (exponent arithmetic, counts) ----
    static I isub(I a, I b) { return _mm512_sub_epi64(a, b); }
    static I izero() { return _mm512_setzero_si512(); }
    static I bits(V v) { return _mm512_castpd_si512(v); }
    static I inc_where(I c, B m) { return _mm512_mask_add_epi64(c, m, c, _mm512_set1_epi64(1)); }
    static std::int64_t ihsum(I c) { return _mm512_reduce_add_epi64(c); }
    static I ihalf(I k) { return _mm512_srai_epi64(k, 1); }  // floor(k/2)
    static I int_of_shifted(V ks, V s) { return _mm512_sub_epi64(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-1022, 1023]
        return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(k, _mm512_set1_epi64(1023)), 52));
    }
    // p * 2^k (k integral, as a double) rounded once: vscalefpd (overflow +inf, gradual underflow).
    static constexpr bool kScalef = true;
    static constexpr int kRegisters = 32;  // architectural vector registers (zmm0-31)
    static V scalef(V p, V k) { return _mm512_scalef_pd(p, k); }
    static V scalef_zero_if(B m, V p, V k) { return _mm512_maskz_scalef_pd(_knot_mask8(m), p, k); }  // m ? +0 : scalef
    // Comparisons give bit masks: lanes.hpp counts their set bits with popcnt (-mpopcnt, part of x86-64-v4).
    static constexpr bool kBitMasks = true;
    using Count = std::uint64_t;
    static unsigned popcount(B m) { return static_cast<unsigned>(_mm_popcnt_u32(m)); }
};

struct V32 {
    using T = float;
    using V = __m512;
    using M = __mmask16;
    using B = __mmask16;
    using I = __m512i;  // 16 x int32
    using D = V64;
    static constexpr std::size_t N = 16;

    static V load(const T* p) { return _mm512_loadu_ps(p); }
    static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
    static M tail_mask(std::size_t n) { return static_cast<M>((1u << n) - 1u); }  // n <= 16
    static V load_tail(const T* p, M mk) { return _mm512_maskz_loadu_ps(mk, p); }
    static void store_tail(T* p, M mk, V v) { _mm512_mask_storeu_ps(p, mk, v); }
    static B mask_v(M mk) { return mk; }
    static constexpr bool kStream = true;
    static constexpr std::size_t kStreamAlign = 64;
    static constexpr std::size_t kLineAlign = 64;  // a whole vector from a 64-byte boundary is one cache line
    static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
    static void stream_fence() { _mm_sfence(); }
    // As V64's funnel.
    static I funnel_index(std::size_t s) {
        return _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                _mm512_set1_epi32(static_cast<int>(N - s)));
    }
    static V funnel(V a, I idx, V b) { return _mm512_permutex2var_ps(a, idx, b); }

    static V set1(T v) { return _mm512_set1_ps(v); }
    static V zero() { return _mm512_setzero_ps(); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V div(V a, V b) { return _mm512_div_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
    static V fmsub(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
    static V max(V a, V b) { return _mm512_max_ps(a, b); }
    static V min(V a, V b) { return _mm512_min_ps(a, b); }
    static V abs(V a) { return _mm512_abs_ps(a); }
    static B eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
    static B ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static B lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static B gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static B le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
    static B unord(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
    static V and_(V a, V b) { return _mm512_and_ps(a, b); }
    static V andnot(V a, V b) { return _mm512_andnot_ps(a, b); }
    static V or_(V a, V b) { return _mm512_or_ps(a, b); }
    static V blend(V a, V b, B m) { return _mm512_mask_blend_ps(m, a, b); }
    static bool any(B m) { return m != 0; }
    static std::uint32_t movemask(B m) { return m; }
    static T hmax(V v) { return _mm512_reduce_max_ps(v); }
    template <std::size_t G>  // (avx2/traits.hpp: zip_lo, zip_hi; G = 2, 4 as V64's G = 1, 2 on the same bits)
    static V zip_lo(V a, V b) {
        if constexpr (G == 1) return _mm512_mask_moveldup_ps(a, 0xAAAA, b);
        else if constexpr (G == 8) return _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0));
        else return _mm512_castpd_ps(V64::zip_lo<G / 2>(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    }
    template <std::size_t G>
    static V zip_hi(V a, V b) {
        if constexpr (G == 1) return _mm512_mask_movehdup_ps(b, 0x5555, a);
        else if constexpr (G == 8) return _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2));
        else return _mm512_castpd_ps(V64::zip_hi<G / 2>(_mm512_castps_pd(a), _mm512_castps_pd(b)));
    }

    // ---- masks ----
    static B mnone() { return 0; }
    static B mor(B a, B b) { return static_cast<B>(a | b); }
    static B mand(B a, B b) { return static_cast<B>(a & b); }
    static V zero_unless(B m, V v) { return _mm512_maskz_mov_ps(m, v); }
    static V zero_if(B m, V v) { return _mm512_mask_mov_ps(v, m, zero()); }
    static void store_mask(T* p, B m) { store(p, _mm512_castsi512_ps(_mm512_movm_epi32(m))); }
    static B load_mask(const T* p) { return _mm512_movepi32_mask(_mm512_castps_si512(load(p))); }

    // ---- float64 lanes: lanes 0..7 and 8..15 widened (exact), and two float64 vectors narrowed ----
    static V64::V widen_lo(V v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
    static V64::V widen_hi(V v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
    static V narrow(V64::V lo, V64::V hi) {  // each lane rounded to nearest float32
        return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
    }
    // Each lane rounded to float32 by round-to-odd (half_convert.hpp, to_f32_odd): truncated by the embedded
    // rounding mode, the last bit set where that was inexact (NaN compares unordered: left as converted).
    static V narrow_odd(V64::V lo, V64::V hi) {
        auto half = [](V64::V x) {
            const __m256 t = _mm512_cvt_roundpd_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t), x, _CMP_NEQ_OQ);
            const __m256i b = _mm256_castps_si256(t);
            return _mm256_castsi256_ps(_mm256_mask_or_epi32(b, inexact, b, _mm256_set1_epi32(1)));
        };
        return _mm512_insertf32x8(_mm512_castps256_ps512(half(lo)), half(hi), 1);
    }
    // kConvertHalves: float32 <-> float64 passes convert D::N = 8 floats straight from and to memory
    // (load_widen, store_narrow: vcvtps2pd / vcvtpd2ps with a 256-bit memory operand), without the
    // vextractf32x8 / vinsertf32x8 of widen_hi and narrow, which cost a quarter of such a pass on Zen 4.
    static constexpr bool kConvertHalves = true;
    static V64::V load_widen(const T* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
    static void store_narrow(T* p, V64::V v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)); }
    // store_narrow non-temporally (p 32-byte aligned; two make a 64-byte line), fenced by stream_fence.
    static void stream_narrow(T* p, V64::V v) { _mm256_stream_ps(p, _mm512_cvtpd_ps(v)); }
    static V hi8(V v) { return _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2)); }  // lanes 8..15 to 0..7
    static B narrow_mask(V64::B lo, V64::B hi) {  // lanes 0..7 from lo, 8..15 from hi
        return static_cast<B>(static_cast<unsigned>(lo) | (static_cast<unsigned>(hi) << 8));
    }

    // ---- 16-bit storage (the bits of half_convert.hpp): float16 by F16C, bfloat16 by integer shifts ----
    // (vcvtneps2bf16 would need AVX512_BF16, which x86-64-v4 does not include.) Tails are masked.
    // The widening loads use the zero-masked forms with every lane selected (the same instructions): inlined
    // into some callers, the unmasked intrinsics' _mm512_undefined_* merge source draws -Wuninitialized.
    static V load_f16(const std::uint16_t* p) {
        return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static void store_f16(std::uint16_t* p, V v) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    static V load_bf16(const std::uint16_t* p) {
        return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static void store_bf16(std::uint16_t* p, V v) { _mm512_mask_cvtepi32_storeu_epi16(p, 0xffff, round_bf16(v)); }
    // Non-temporal 16-bit stores (kStream; p 32-byte aligned): the same conversions into a register, then one
    // 256-bit vmovntdq.
    static void stream_f16(std::uint16_t* p, V v) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    static void stream_bf16(std::uint16_t* p, V v) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(round_bf16(v)));
    }
    static V load_f16_tail(const std::uint16_t* p, std::size_t n) {
        return _mm512_maskz_cvtph_ps(0xffff, _mm256_maskz_loadu_epi16(tail_mask(n), p));
    }
    static void store_f16_tail(std::uint16_t* p, std::size_t n, V v) {
        _mm256_mask_storeu_epi16(p, tail_mask(n), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    static V load_bf16_tail(const std::uint16_t* p, std::size_t n) { return widen_bf16(_mm256_maskz_loadu_epi16(tail_mask(n), p)); }
    static void store_bf16_tail(std::uint16_t* p, std::size_t n, V v) {
        _mm512_mask_cvtepi32_storeu_epi16(p, tail_mask(n), round_bf16(v));
    }
    static V widen_bf16(__m256i h) {
        return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, h), 16));
    }
    // Round to nearest even on the bits: (u + 0x7fff + bit 16 of u) >> 16; NaN: (u >> 16) | quiet bit.
    static __m512i round_bf16(V v) {
        const __m512i u = _mm512_castps_si512(v);
        const __m512i hi = _mm512_srli_epi32(u, 16);
        const __m512i odd = _mm512_and_si512(hi, _mm512_set1_epi32(1));
        const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
        return _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), hi, _mm512_set1_epi32(0x40));
    }

    // ---- integer lanes ----
    static I isub(I a, I b) { return _mm512_sub_epi32(a, b); }
    static I izero() { return _mm512_setzero_si512(); }
    static I bits(V v) { return _mm512_castps_si512(v); }
    static I inc_where(I c, B m) { return _mm512_mask_add_epi32(c, m, c, _mm512_set1_epi32(1)); }
    static std::int64_t ihsum(I c) {  // widened to int64 lanes first: no int32 overflow in the sum
        const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(c));
        const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(c, 1));
        return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
    }
    static I ihalf(I k) { return _mm512_srai_epi32(k, 1); }  // floor(k/2)
    static I int_of_shifted(V ks, V s) { return _mm512_sub_epi32(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-126, 127]
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
    }
    static V pow2_biased(V kb) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(kb), 23)); }
    // p * 2^k (k integral, as a float) rounded once: vscalefps (overflow +inf, gradual underflow).
    static constexpr bool kScalef = true;
    static constexpr int kRegisters = 32;  // architectural vector registers (zmm0-31)
    static V scalef(V p, V k) { return _mm512_scalef_ps(p, k); }
    static V scalef_zero_if(B m, V p, V k) { return _mm512_maskz_scalef_ps(_knot_mask16(m), p, k); }  // m ? +0 : scalef
    static constexpr bool kBitMasks = true;  // as V64's
    using Count = std::uint64_t;
    static unsigned popcount(B m) { return static_cast<unsigned>(_mm_popcnt_u32(m)); }
};

}  // namespace
}  // namespace normexp::avx512
