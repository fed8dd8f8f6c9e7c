// AVX2 + FMA vector traits of the attention kernels (8 x float32 / 4 x float64 per __m256 register).
//
// Included only by kernels/avx2/attention.cpp, which is compiled with -mavx2 -mfma (cmake/normexpIsa.cmake).
// Everything is in an anonymous namespace inside normexp::avx2: internal linkage, so no inline function or
// template instantiated with AVX2 flags can be chosen by the linker for baseline code (the ODR trap that
// tests/isa/check_isa_objects.cmake guards against).
//
// Two layers:
//  1. General vector traits (F32, F64): load/store, masked tails, broadcast, arithmetic with FMA, max/min,
//     compare/select, horizontal max, the block-sum accumulators and the exp core. OVERLAP: these are the
//     same operations, with the same instruction sequences, as the F32/F64 traits of the reduction kernels
//     in kernels/avx2.cpp (which their owner is moving to kernels/avx2/traits.hpp). At the merge this layer
//     is deleted and replaced by an include of that header; the only requirement on it is that the names
//     below exist with the same semantics and instruction sequences (the attention golden test,
//     tests/cpp/test_attention_golden.cpp, fails on any changed bit).
//  2. Attention traits (AttnF32, AttnF64, deriving from layer 1 and AttnAvx2): what only the attention kernels use: the
//     register-tile shape, the N x N transpose of pack_kt, the 4-way horizontal sum of qk_direct, the
//     boolean-mask lane expansion, prefetch distance, exp for normal results (exp_normal) and exp(x - m)
//     with an exact argument (exp_minus). kernels/generic/attention.hpp is written against these names.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../exp_constants.hpp"
#include "../kernel_table.hpp"

namespace normexp::avx2 {
namespace {

using namespace normexp::expc;

#define NX_ATTN_LIKELY(x) __builtin_expect(!!(x), 1)
// The exp core must be inlined into every loop: as a call it spills the vector constants.
#define NX_ATTN_INLINE inline __attribute__((always_inline))

// ======================================================================================================
// Layer 1: general vector traits (OVERLAP with the reduction traits of kernels/avx2.cpp; see the header).
// ======================================================================================================

alignas(32) const std::int32_t kAttnTailMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) const std::int64_t kAttnTailMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

// Double accumulators of the block sums: float32 sums need no compensation (double has 29 spare bits);
// float64 sums are Neumaier-compensated per lane (error independent of the number of blocks).
struct acc_plain {
    __m256d s = _mm256_setzero_pd();
    void add(__m256d v) { s = _mm256_add_pd(s, v); }
    double total() const {
        alignas(32) double a[4];
        _mm256_store_pd(a, s);
        return (a[0] + a[1]) + (a[2] + a[3]);
    }
};
struct acc_neumaier {
    __m256d s = _mm256_setzero_pd(), c = _mm256_setzero_pd();
    void add(__m256d v) {
        const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
        const __m256d t = _mm256_add_pd(s, v);
        const __m256d big_s = _mm256_cmp_pd(_mm256_and_pd(s, absmask), _mm256_and_pd(v, absmask), _CMP_GE_OQ);
        const __m256d cs = _mm256_add_pd(_mm256_sub_pd(s, t), v);
        const __m256d cv = _mm256_add_pd(_mm256_sub_pd(v, t), s);
        c = _mm256_add_pd(c, _mm256_blendv_pd(cv, cs, big_s));
        s = t;
    }
    double total() const {
        alignas(32) double a[4], b[4];
        _mm256_store_pd(a, s);
        _mm256_store_pd(b, c);
        double hi = 0, lo = 0;
        for (int i = 0; i < 4; ++i) {
            const double t = hi + a[i];
            lo += (hi >= a[i] ? (hi - t) + a[i] : (a[i] - t) + hi) + b[i];
            hi = t;
        }
        return hi + lo;
    }
};

struct F32 {
    using T = float;
    using V = __m256;
    using M = __m256i;  // lane mask of a tail: all ones in the first n lanes
    using Acc = acc_plain;
    static constexpr std::size_t N = 8;

    static V load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
    static M tail_mask(std::size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kAttnTailMask32 + 8 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_ps(p, mk); }  // zeros past the tail
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_ps(p, mk, v); }
    static V mask_v(M mk) { return _mm256_castsi256_ps(mk); }
    static V set1(T v) { return _mm256_set1_ps(v); }
    static V zero() { return _mm256_setzero_ps(); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b, one rounding
    static V max(V a, V b) { return _mm256_max_ps(a, b); }  // b if either is NaN
    static V min(V a, V b) { return _mm256_min_ps(a, b); }  // b if either is NaN
    static V eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
    static V and_(V a, V b) { return _mm256_and_ps(a, b); }
    static V andnot(V a, V b) { return _mm256_andnot_ps(a, b); }  // ~a & b
    static V or_(V a, V b) { return _mm256_or_ps(a, b); }
    static V blend(V a, V b, V m) { return _mm256_blendv_ps(a, b, m); }  // m ? b : a
    static bool any(V m) { return _mm256_movemask_ps(m) != 0; }
    static T hmax(V v) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        return _mm_cvtss_f32(m);
    }
    // acc += v, widened to double lanes.
    static void flush(Acc& acc, V v) {
        acc.add(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
    }
    static V pow2(__m256i k) {  // 2^k for k in [-126, 127], built in the exponent field
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
    }
    // exp(t + tl) for t in [kMinArgF, kNormalMinArgF .. 88] or NaN (exp_constants.hpp: Cody-Waite reduction,
    // degree-6 minimax polynomial, <= 1 ULP). k = round(t / ln2) by the biased shifter 0x1.8000fep+23
    // (kb holds k + 127 in its low mantissa bits, so 2^k = kb << 23); Horner fully fused:
    // 1 + r (1 + r (C2 + r (C3 + r (C4 + r (C5 + r C6))))). Below kNormalMinArgF (subnormal results)
    // 2^k is applied as 2^(k>>1) * 2^(k - k>>1), so gradual underflow rounds once.
    NX_ATTN_INLINE static V exp_core(V t, V tl) {
        const V kb = fmadd(t, set1(kLog2eF), set1(kShifterBiasedF));
        const V k = sub(kb, set1(kShifterBiasedF));
        V r = fnmadd(k, set1(kLn2HiF), t);
        r = fnmadd(k, set1(kLn2LoF), r);
        r = add(r, tl);
        V q = fmadd(set1(kC6F), r, set1(kC5F));
        q = fmadd(q, r, set1(kC4F));
        q = fmadd(q, r, set1(kC3F));
        q = fmadd(q, r, set1(kC2F));
        q = fmadd(q, r, set1(1.0f));
        const V p = fmadd(q, r, set1(1.0f));
        const V outside = lt(t, set1(kNormalMinArgF));
        if (NX_ATTN_LIKELY(!any(outside))) return mul(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(kb), 23)));
        const __m256i ki = _mm256_cvtps_epi32(k);
        const __m256i k1 = _mm256_srai_epi32(ki, 1);
        const __m256i k2 = _mm256_sub_epi32(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }
    // A value <= m - kClampOffsetF after rounding (formed in double, lowered by 2^-22 relative), never -inf:
    // x is clamped there before x - m so that the difference and its TwoSum error stay finite.
    static T clamp_below(T m) {
        const double l = static_cast<double>(m) - kClampOffsetF;
        const double f = l - (l < 0 ? -l : l) * 0x1p-22;
        return f < -__FLT_MAX__ ? -__FLT_MAX__ : static_cast<float>(f);
    }
    static constexpr T kMinArg = kMinArgF;
    static constexpr T kNormalMinArg = kNormalMinArgF;
};

struct F64 {
    using T = double;
    using V = __m256d;
    using M = __m256i;
    using Acc = acc_neumaier;
    static constexpr std::size_t N = 4;

    static V load(const T* p) { return _mm256_loadu_pd(p); }
    static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
    static M tail_mask(std::size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kAttnTailMask64 + 4 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_pd(p, mk); }
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_pd(p, mk, v); }
    static V mask_v(M mk) { return _mm256_castsi256_pd(mk); }
    static V set1(T v) { return _mm256_set1_pd(v); }
    static V zero() { return _mm256_setzero_pd(); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
    static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
    static V div(V a, V b) { return _mm256_div_pd(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
    static V max(V a, V b) { return _mm256_max_pd(a, b); }
    static V min(V a, V b) { return _mm256_min_pd(a, b); }
    static V eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
    static V and_(V a, V b) { return _mm256_and_pd(a, b); }
    static V andnot(V a, V b) { return _mm256_andnot_pd(a, b); }
    static V or_(V a, V b) { return _mm256_or_pd(a, b); }
    static V blend(V a, V b, V m) { return _mm256_blendv_pd(a, b, m); }
    static bool any(V m) { return _mm256_movemask_pd(m) != 0; }
    static T hmax(V v) {
        __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
        m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
        return _mm_cvtsd_f64(m);
    }
    static void flush(Acc& acc, V v) { acc.add(v); }
    static V pow2(__m256i k) {  // 2^k for k in [-1022, 1023]
        return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k, _mm256_set1_epi64x(1023)), 52));
    }
    // exp(t + tl) (exp_constants.hpp: degree-13 Taylor polynomial, <= 1 ULP). k by the 1.5*2^52 shifter: the
    // integer k sits in the low mantissa bits of ks. Subnormal results: 2^k as 2^floor(k/2) * 2^(k - floor(k/2)).
    NX_ATTN_INLINE static V exp_core(V t, V tl) {
        const V ks = fmadd(t, set1(kLog2eD), set1(kShifterD));
        const V k = sub(ks, set1(kShifterD));
        const __m256i ki = _mm256_sub_epi64(_mm256_castpd_si256(ks), _mm256_castpd_si256(set1(kShifterD)));
        V r = fnmadd(k, set1(kLn2HiD), t);
        r = fnmadd(k, set1(kLn2LoD), r);
        r = add(r, tl);
        V p = set1(kInvFact[13]);
        for (int i = 12; i >= 0; --i) p = fmadd(p, r, set1(kInvFact[i]));
        const V outside = lt(t, set1(kNormalMinArgD));
        if (NX_ATTN_LIKELY(!any(outside))) return mul(p, pow2(ki));
        // floor(k/2) without a 64-bit arithmetic shift: ((k + 2048) >> 1) - 1024.
        const __m256i k1 = _mm256_sub_epi64(_mm256_srli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(2048)), 1),
                                            _mm256_set1_epi64x(1024));
        const __m256i k2 = _mm256_sub_epi64(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }
    static T clamp_below(T m) {  // lowered by 2^-50 relative: certainly <= m - offset after rounding
        const double l = m - kClampOffsetD;
        const double f = l - (l < 0 ? -l : l) * 0x1p-50;
        return f < -__DBL_MAX__ ? -__DBL_MAX__ : f;
    }
    static constexpr T kMinArg = kMinArgD;
    static constexpr T kNormalMinArg = kNormalMinArgD;
};

// ======================================================================================================
// Layer 2: attention traits (kernels/generic/attention.hpp).
// ======================================================================================================

// exp(x - m) for x <= m with x - m carried exactly (the reduction kernels' non-scaled argument, kernels/avx2.cpp
// `arg`): x is first clamped at xlow = clamp_below(m) (so x = -inf stays finite), then x - m = d + lo exactly by
// Fast2Sum on (a, b) = (min, max)(x, -m), which has |a| >= |b| because x <= m. Arguments below the underflow
// threshold kMinArg are raised to it; their exp rounds to +0.
template <class B>
NX_ATTN_INLINE typename B::V avx2_exp_minus(typename B::V x, typename B::V negm, typename B::V xlow) {
    x = B::max(xlow, x);
    const typename B::V d = B::add(x, negm);
    const typename B::V lo = B::sub(B::max(x, negm), B::sub(d, B::min(x, negm)));
    return B::exp_core(B::max(B::set1(B::kMinArg), d), lo);
}

// What both lane types share.
struct AttnAvx2 {
    // qk and pv register tiles: 6 rows x 2 vectors (16 float32 keys = one panel, or 8 float64) = 12
    // accumulators + 2 loads + 1 broadcast of the 16 ymm registers; one broadcast and two loads per 12 FMAs.
    static constexpr int kTileRows = 6;
    static constexpr int kQkVectors = 2;
    static constexpr int kPvVectors = 2;
    // Decoding kernels prefetch the key/value row this many rows ahead (each key is used once, so the loads
    // are DRAM-latency bound; measured ~5% faster than the hardware prefetcher alone).
    static constexpr std::ptrdiff_t kPrefetchRows = 16;
    static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    // softmax_step: scores in vector arithmetic, rounded after each step (kernel_table.hpp allows it).
    static constexpr bool kSpecScores = false;
};

struct AttnF32 : F32, AttnAvx2 {

    static V iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
    // All ones in the lanes whose boolean mask byte is 0 (n valid bytes at p, n <= N).
    static V keep_out(const std::uint8_t* p, std::size_t n) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, p, n < 8 ? n : 8);
        const __m256i w = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bits)));
        return _mm256_castsi256_ps(_mm256_cmpeq_epi32(w, _mm256_setzero_si256()));
    }
    // kt[r * ldkt + c] = k[c * k_row + r] for an 8 x 8 block (unpack/shuffle/permute2f128 transpose).
    static void transpose_store(const T* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        __m256 r0 = _mm256_loadu_ps(k), r1 = _mm256_loadu_ps(k + k_row), r2 = _mm256_loadu_ps(k + 2 * k_row),
               r3 = _mm256_loadu_ps(k + 3 * k_row), r4 = _mm256_loadu_ps(k + 4 * k_row),
               r5 = _mm256_loadu_ps(k + 5 * k_row), r6 = _mm256_loadu_ps(k + 6 * k_row),
               r7 = _mm256_loadu_ps(k + 7 * k_row);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
        r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
        r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
        r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
        r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
        r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
        r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
        r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
        _mm256_storeu_ps(kt, r0);
        _mm256_storeu_ps(kt + ldkt, r1);
        _mm256_storeu_ps(kt + 2 * ldkt, r2);
        _mm256_storeu_ps(kt + 3 * ldkt, r3);
        _mm256_storeu_ps(kt + 4 * ldkt, r4);
        _mm256_storeu_ps(kt + 5 * ldkt, r5);
        _mm256_storeu_ps(kt + 6 * ldkt, r6);
        _mm256_storeu_ps(kt + 7 * ldkt, r7);
    }
    // s[0..4) = the horizontal sums of a0..a3 by two rounds of HADDPS and a cross-lane add: lane pairs
    // ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)).
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
    }
    // One horizontal sum: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
    static T hsum(V a) {
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    }
    // exp(t) for t in [kNormalMinArgF, ~0] (normal results only), by the same reduction and polynomial as
    // exp_core (<= 1 ULP) with k from the round-to-nearest shifter 0x1.8p23 and without the subnormal branch;
    // p = 1 + (r + r^2 q) instead of the fully fused Horner form. Callers clamp t at kNormalMinArg and set
    // the result to 0 where t was below it.
    NX_ATTN_INLINE static V exp_normal(V t) {
        const __m256 ks = _mm256_fmadd_ps(t, _mm256_set1_ps(kLog2eF), _mm256_set1_ps(0x1.8p23f));
        const __m256 k = _mm256_sub_ps(ks, _mm256_set1_ps(0x1.8p23f));
        const __m256i ki = _mm256_sub_epi32(_mm256_castps_si256(ks), _mm256_castps_si256(_mm256_set1_ps(0x1.8p23f)));
        __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2HiF), t);
        r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2LoF), r);
        __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(kC6F), r, _mm256_set1_ps(kC5F));
        q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC4F));
        q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC3F));
        q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC2F));
        const __m256 p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r), _mm256_set1_ps(1.0f));
        return _mm256_mul_ps(p, pow2(ki));
    }
    NX_ATTN_INLINE static V exp_minus(V x, V negm, V xlow) { return avx2_exp_minus<F32>(x, negm, xlow); }
};

struct AttnF64 : F64, AttnAvx2 {
    static V iota() { return _mm256_setr_pd(0, 1, 2, 3); }
    static V keep_out(const std::uint8_t* p, std::size_t n) {
        std::uint32_t bits = 0;
        std::memcpy(&bits, p, n < 4 ? n : 4);
        const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(bits)));
        return _mm256_castsi256_pd(_mm256_cmpeq_epi64(w, _mm256_setzero_si256()));
    }
    static void transpose_store(const T* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {  // 4 x 4
        const __m256d r0 = _mm256_loadu_pd(k), r1 = _mm256_loadu_pd(k + k_row), r2 = _mm256_loadu_pd(k + 2 * k_row),
                      r3 = _mm256_loadu_pd(k + 3 * k_row);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(kt, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(kt + ldkt, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(kt + 2 * ldkt, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(kt + 3 * ldkt, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
    // s[0..4) = (a_0 + a_1) + (a_2 + a_3) for a = a0..a3 (HADDPD, then the two 128-bit halves added).
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        const __m256d t0 = _mm256_hadd_pd(a0, a1), t1 = _mm256_hadd_pd(a2, a3);  // (a0 01, a1 01, a0 23, a1 23)
        const __m256d lo = _mm256_permute2f128_pd(t0, t1, 0x20), hi = _mm256_permute2f128_pd(t0, t1, 0x31);
        _mm256_storeu_pd(s, _mm256_add_pd(lo, hi));
    }
    // (a0 + a2) + (a1 + a3).
    static T hsum(V a) {
        const __m128d x = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
    }
    // float64 has no separate normal-range exp: exp_core with tl = 0 (its subnormal branch is never taken
    // for t >= kNormalMinArgD).
    NX_ATTN_INLINE static V exp_normal(V t) { return exp_core(t, zero()); }
    NX_ATTN_INLINE static V exp_minus(V x, V negm, V xlow) { return avx2_exp_minus<F64>(x, negm, xlow); }
};

}  // namespace
}  // namespace normexp::avx2
