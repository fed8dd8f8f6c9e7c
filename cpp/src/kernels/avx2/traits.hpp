// AVX2 + FMA vector traits: the only place the reduction and sampling algorithms meet AVX2 intrinsics.
//
// V32 (8 x float32) and V64 (4 x float64) wrap one intrinsic (or a fixed short sequence) per operation
// and contain no algorithm; the algorithms are written once over them in ../generic/ (lanes.hpp
// builds the element traits F32 = lanes<V32>, F64 = lanes<V64> from these). Include only from
// translation units compiled with -mavx2 -mfma (cmake/normexpIsa.cmake). Everything is in an anonymous
// namespace: each AVX2 translation unit gets its own internal copy, so no AVX2 code can be picked by the
// linker for baseline code (the ODR trap that tests/isa/check_isa_objects.cmake guards against).
//
// Semantics the generic code relies on (and neon/traits.hpp provides too):
//  * max/min: any result when an operand is NaN (AVX2 returns the second operand, NEON NaN); callers
//    track NaN explicitly or pass NaN only where both give NaN.
//  * Comparison results B are all-ones/all-zeros lanes of the vector type here (B = V; AVX-512 uses
//    opmask registers, avx512/traits.hpp), so the generic code combines them only through the mask
//    operations (mor, mand, zero_unless, zero_if, blend, inc_where, store_mask/load_mask), never the
//    bitwise ones. tail_mask(n) enables the first n lanes (mask_v turns it into a B) and
//    load_tail/store_tail never touch memory past them (masked lanes load as +0).
//  * kScalef = false: no single instruction for p * 2^k over the whole range, so lanes.hpp's exp uses
//    pow2/pow2_biased with a branch to a two-factor scaling outside the normal range.
//  * hsum(v): the lanes' sum in a fixed, ISA-specific order (each ISA's cheapest); iota(): lane i holds i.
//  * zip_lo<G>(a, b) / zip_hi<G>(a, b), G a power of 2 below N: in each group of 2G lanes, the first (zip_lo)
//    or last (zip_hi) G lanes of a's group, then those of b's; with G = 1, 2, ... they transpose N vectors
//    into one (generic/lanes.hpp: fold_rows).
//  * pow2(k) = 2^k exactly for k in the normal exponent range; pow2_biased(kb) the same from a value
//    kb = 1.5*2^23 + 127 + k whose low mantissa bits hold the biased exponent (float32 only);
//    int_of_shifted(ks, s) = k for ks = s + k formed by a round-to-nearest shifter s (bit difference).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace normexp::avx2 {
namespace {

alignas(32) const std::int32_t kTailMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) const std::int64_t kTailMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

struct V64 {
    using T = double;
    using V = __m256d;
    using M = __m256i;  // lane mask for tails
    using B = __m256d;  // comparison results: all-ones/all-zeros lanes
    using I = __m256i;  // 4 x int64
    using D = V64;      // the float64 traits (sums are flushed into double lanes)
    static constexpr std::size_t N = 4;

    static V load(const T* p) { return _mm256_loadu_pd(p); }
    static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
    static M tail_mask(std::size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask64 + 4 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_pd(p, mk); }
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_pd(p, mk, v); }
    static B mask_v(M mk) { return _mm256_castsi256_pd(mk); }
    // Non-temporal stores (p 32-byte aligned), ordered by stream_fence() before anything that follows.
    static constexpr bool kStream = true;
    static constexpr std::size_t kStreamAlign = 32;
    static constexpr std::size_t kLineAlign = 32;  // a whole vector from a 32-byte boundary is in one cache line
    static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
    static void stream_fence() { _mm_sfence(); }

    static V set1(T v) { return _mm256_set1_pd(v); }
    static V zero() { return _mm256_setzero_pd(); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
    static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
    static V div(V a, V b) { return _mm256_div_pd(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }    // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }  // c - a*b, one rounding
    static V fmsub(V a, V b, V c) { return _mm256_fmsub_pd(a, b, c); }    // a*b - c, one rounding
    static V max(V a, V b) { return _mm256_max_pd(a, b); }  // b if either is NaN
    static V min(V a, V b) { return _mm256_min_pd(a, b); }  // b if either is NaN
    static V abs(V a) { return _mm256_and_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL))); }
    static V eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
    static V unord(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_UNORD_Q); }
    static V and_(V a, V b) { return _mm256_and_pd(a, b); }
    static V andnot(V a, V b) { return _mm256_andnot_pd(a, b); }  // ~a & b
    static V or_(V a, V b) { return _mm256_or_pd(a, b); }
    static V blend(V a, V b, V m) { return _mm256_blendv_pd(a, b, m); }  // m ? b : a
    static bool any(V m) { return _mm256_movemask_pd(m) != 0; }
    static std::uint32_t movemask(V m) { return static_cast<std::uint32_t>(_mm256_movemask_pd(m)); }  // bit i = lane i
    static T hmax(V v) {  // NaN-free v
        __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
        m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
        return _mm_cvtsd_f64(m);
    }
    static T hsum(V a) {  // (a0 + a2) + (a1 + a3)
        const __m128d x = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
    }
    template <std::size_t G>
    static V zip_lo(V a, V b) {
        if constexpr (G == 1) return _mm256_unpacklo_pd(a, b);
        else return _mm256_permute2f128_pd(a, b, 0x20);
    }
    template <std::size_t G>
    static V zip_hi(V a, V b) {
        if constexpr (G == 1) return _mm256_unpackhi_pd(a, b);
        else return _mm256_permute2f128_pd(a, b, 0x31);
    }
    static V iota() { return _mm256_setr_pd(0, 1, 2, 3); }  // lane i holds i

    // ---- masks (B = V: all-ones/all-zeros lanes) ----
    static B mnone() { return _mm256_setzero_pd(); }
    static B mor(B a, B b) { return _mm256_or_pd(a, b); }
    static B mand(B a, B b) { return _mm256_and_pd(a, b); }
    static V zero_unless(B m, V v) { return _mm256_and_pd(m, v); }    // m ? v : +0
    static V zero_if(B m, V v) { return _mm256_andnot_pd(m, v); }     // m ? +0 : v
    static void store_mask(T* p, B m) { store(p, m); }
    static B load_mask(const T* p) { return load(p); }

    // ---- integer lanes (exponent arithmetic, counts) ----
    static I isub(I a, I b) { return _mm256_sub_epi64(a, b); }
    static I izero() { return _mm256_setzero_si256(); }
    static I bits(V v) { return _mm256_castpd_si256(v); }
    static std::int64_t ihsum(I c) {
        alignas(32) std::int64_t a[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
        return a[0] + a[1] + a[2] + a[3];
    }
    static I ihalf(I k) {  // floor(k/2) without a 64-bit arithmetic shift: ((k + 2048) >> 1) - 1024
        return _mm256_sub_epi64(_mm256_srli_epi64(_mm256_add_epi64(k, _mm256_set1_epi64x(2048)), 1),
                                _mm256_set1_epi64x(1024));
    }
    static I inc_where(I c, B m) { return _mm256_sub_epi64(c, bits(m)); }  // c + 1 where m (m = -1)
    static I int_of_shifted(V ks, V s) { return _mm256_sub_epi64(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-1022, 1023]
        return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k, _mm256_set1_epi64x(1023)), 52));
    }
    static constexpr bool kScalef = false;
    static constexpr int kRegisters = 16;  // architectural vector registers (ymm0-15)
    static constexpr bool kBitMasks = false;  // comparisons give vector lanes, counted in I lanes
    using Count = I;
};

struct V32 {
    using T = float;
    using V = __m256;
    using M = __m256i;
    using B = __m256;
    using I = __m256i;  // 8 x int32
    using D = V64;
    static constexpr std::size_t N = 8;

    static V load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
    static M tail_mask(std::size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask32 + 8 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_ps(p, mk); }
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_ps(p, mk, v); }
    static B mask_v(M mk) { return _mm256_castsi256_ps(mk); }
    static constexpr bool kStream = true;
    static constexpr std::size_t kStreamAlign = 32;
    static constexpr std::size_t kLineAlign = 32;  // a whole vector from a 32-byte boundary is in one cache line
    static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
    static void stream_fence() { _mm_sfence(); }

    static V set1(T v) { return _mm256_set1_ps(v); }
    static V zero() { return _mm256_setzero_ps(); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
    static V fmsub(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }
    static V max(V a, V b) { return _mm256_max_ps(a, b); }
    static V min(V a, V b) { return _mm256_min_ps(a, b); }
    static V abs(V a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
    static V eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
    static V unord(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
    static V and_(V a, V b) { return _mm256_and_ps(a, b); }
    static V andnot(V a, V b) { return _mm256_andnot_ps(a, b); }
    static V or_(V a, V b) { return _mm256_or_ps(a, b); }
    static V blend(V a, V b, V m) { return _mm256_blendv_ps(a, b, m); }
    static bool any(V m) { return _mm256_movemask_ps(m) != 0; }
    static std::uint32_t movemask(V m) { return static_cast<std::uint32_t>(_mm256_movemask_ps(m)); }
    static T hmax(V v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        return _mm_cvtss_f32(m);
    }
    static T hsum(V a) {  // ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    }
    template <std::size_t G>
    static V zip_lo(V a, V b) {
        if constexpr (G == 1) return _mm256_blend_ps(a, _mm256_moveldup_ps(b), 0xAA);
        else if constexpr (G == 2) return _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
        else return _mm256_permute2f128_ps(a, b, 0x20);
    }
    template <std::size_t G>
    static V zip_hi(V a, V b) {
        if constexpr (G == 1) return _mm256_blend_ps(_mm256_movehdup_ps(a), b, 0xAA);
        else if constexpr (G == 2) return _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
        else return _mm256_permute2f128_ps(a, b, 0x31);
    }
    static V iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }

    // ---- masks (B = V: all-ones/all-zeros lanes) ----
    static B mnone() { return _mm256_setzero_ps(); }
    static B mor(B a, B b) { return _mm256_or_ps(a, b); }
    static B mand(B a, B b) { return _mm256_and_ps(a, b); }
    static V zero_unless(B m, V v) { return _mm256_and_ps(m, v); }    // m ? v : +0
    static V zero_if(B m, V v) { return _mm256_andnot_ps(m, v); }     // m ? +0 : v
    static void store_mask(T* p, B m) { store(p, m); }
    static B load_mask(const T* p) { return load(p); }

    // ---- float64 lanes: lanes 0..3 and 4..7 widened (exact), and two float64 vectors narrowed ----
    static V64::V widen_lo(V v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
    static V64::V widen_hi(V v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
    static V narrow(V64::V lo, V64::V hi) {  // each lane rounded to nearest float32
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
    }
    // Each lane rounded to float32 by round-to-odd, half_convert.hpp's to_f32_odd step for step (no embedded
    // rounding here): nearest, one step back towards zero where that went past x (the -1 of the all-ones
    // mask), then the last bit set where inexact (NaN compares unordered: left as converted).
    static V narrow_odd(V64::V lo, V64::V hi) {
        const V f = narrow(lo, hi);
        const V64::V flo = widen_lo(f), fhi = widen_hi(f);
        const V inexact = narrow_mask(_mm256_cmp_pd(flo, lo, _CMP_NEQ_OQ), _mm256_cmp_pd(fhi, hi, _CMP_NEQ_OQ));
        const V64::V sign = _mm256_set1_pd(-0.0);
        const V away = narrow_mask(_mm256_cmp_pd(_mm256_andnot_pd(sign, flo), _mm256_andnot_pd(sign, lo), _CMP_GT_OQ),
                                   _mm256_cmp_pd(_mm256_andnot_pd(sign, fhi), _mm256_andnot_pd(sign, hi), _CMP_GT_OQ));
        const __m256i stepped = _mm256_add_epi32(_mm256_castps_si256(f), _mm256_castps_si256(away));
        const __m256i odd = _mm256_and_si256(_mm256_castps_si256(inexact), _mm256_set1_epi32(1));
        return _mm256_castsi256_ps(_mm256_or_si256(stepped, odd));
    }
    // No load_widen / store_narrow (see avx512/traits.hpp): the 128-bit extract and insert cost little
    // here, and 128-bit loads and stores in their place measured slower on 32000-element rows.
    static constexpr bool kConvertHalves = false;
    static V narrow_mask(V64::V lo, V64::V hi) {  // 64-bit all-ones/zero lane masks -> 32-bit lane masks
        const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
        const __m256i pl = _mm256_permutevar8x32_epi32(_mm256_castpd_si256(lo), pick);
        const __m256i ph = _mm256_permutevar8x32_epi32(_mm256_castpd_si256(hi), pick);
        return _mm256_castsi256_ps(_mm256_inserti128_si256(pl, _mm256_castsi256_si128(ph), 1));
    }

    // ---- 16-bit storage (the bits of half_convert.hpp): float16 by F16C, bfloat16 by integer shifts ----
    // Tails (n < 8) go through a zeroed stack buffer: AVX2 has no masked 16-bit load or store.
    static V load_f16(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    static void store_f16(std::uint16_t* p, V v) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    static V load_bf16(const std::uint16_t* p) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    static void store_bf16(std::uint16_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), round_bf16(v)); }
    static __m128i round_bf16(V v) {
        // Round to nearest even on the bits: u + 0x7fff + (bit 16 of u), top half; NaN -> top half | quiet bit.
        const __m256i u = _mm256_castps_si256(v);
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        const __m256i h = _mm256_blendv_epi8(r, qnan, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        // packus (values <= 0xffff) interleaves the 128-bit halves; vpermq puts lanes 0..7 in the low half.
        return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0xd8));
    }
    // Non-temporal 16-bit stores (kStream; p 16-byte aligned): the same conversions, then one 128-bit vmovntdq.
    static void stream_f16(std::uint16_t* p, V v) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    static void stream_bf16(std::uint16_t* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), round_bf16(v)); }
    static V load_f16_tail(const std::uint16_t* p, std::size_t n) { return load_f16(tail_copy(p, n).b); }
    static V load_bf16_tail(const std::uint16_t* p, std::size_t n) { return load_bf16(tail_copy(p, n).b); }
    static void store_f16_tail(std::uint16_t* p, std::size_t n, V v) {
        alignas(16) std::uint16_t b[8];
        store_f16(b, v);
        std::memcpy(p, b, n * sizeof b[0]);
    }
    static void store_bf16_tail(std::uint16_t* p, std::size_t n, V v) {
        alignas(16) std::uint16_t b[8];
        store_bf16(b, v);
        std::memcpy(p, b, n * sizeof b[0]);
    }
    struct tail_buf {
        alignas(16) std::uint16_t b[8];
    };
    static tail_buf tail_copy(const std::uint16_t* p, std::size_t n) {  // lanes >= n: +0
        tail_buf t{};
        std::memcpy(t.b, p, n * sizeof t.b[0]);
        return t;
    }

    // ---- integer lanes ----
    static I isub(I a, I b) { return _mm256_sub_epi32(a, b); }
    static I izero() { return _mm256_setzero_si256(); }
    static I bits(V v) { return _mm256_castps_si256(v); }
    static std::int64_t ihsum(I c) {
        alignas(32) std::int32_t a[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
        std::int64_t s = 0;
        for (int i = 0; i < 8; ++i) s += a[i];
        return s;
    }
    static I ihalf(I k) { return _mm256_srai_epi32(k, 1); }  // floor(k/2)
    static I inc_where(I c, B m) { return _mm256_sub_epi32(c, bits(m)); }
    static I int_of_shifted(V ks, V s) { return _mm256_sub_epi32(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-126, 127]
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
    }
    static V pow2_biased(V kb) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(kb), 23)); }
    static constexpr bool kScalef = false;
    static constexpr int kRegisters = 16;  // architectural vector registers (ymm0-15)
    static constexpr bool kBitMasks = false;  // comparisons give vector lanes, counted in I lanes
    using Count = I;
};

}  // namespace
}  // namespace normexp::avx2
