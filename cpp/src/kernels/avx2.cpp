// AVX2 + FMA kernels (x86-64, 8 x float32 / 4 x float64 per vector).
//
// Compiled with -mavx2 -mfma (this file only). Everything here has internal linkage; the only external
// symbol is avx2_kernels(), which the dispatcher calls after checking cpuid and xgetbv.
//
// The kernels are written once over a lane-type traits struct (F32, F64) in the style of Highway:
// the exp algorithm and the blocking are shared, the polynomial and the integer tricks differ.
//
// exp(t + tl) (see exp_constants.hpp for the polynomials):
//   k = round(t / ln2);  r = (t - k LN2_HI - k LN2_LO) + tl;  p = poly(r);  result = p * 2^k.
//   2^k is built in the exponent field; outside the normal range (subnormal results, or near overflow
//   in the full-range exp) it is applied as 2^(k>>1) * 2^(k - k>>1) so gradual underflow and overflow
//   round correctly.  That slow path is a predicted-not-taken branch per vector.
// Measured maximum error of the float32 vector exp against the correctly rounded value over every
// float32 input: 1 ULP (tests/cpp/test_exp.cpp sweeps all 2^32 inputs per ISA).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "exp_constants.hpp"
#include "kernel_table.hpp"
#include "sampling_weights.hpp"

namespace normexp::avx2 {
namespace {

using namespace normexp::expc;

alignas(32) const std::int32_t kTailMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) const std::int64_t kTailMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

#define NX_LIKELY(x) __builtin_expect(!!(x), 1)
// The exp and its argument reduction must be inlined into every loop: as calls they spill the vector
// constants and cost a third of the kernel.
#define NX_INLINE inline __attribute__((always_inline))
// Kernel entry points inline everything they call (the per-vector lambdas included): GCC's size
// heuristics otherwise leave the lambdas as calls that reload every constant per vector.
#define NX_FLATTEN __attribute__((flatten))

// ------------------------------------------------------------------------------------------------------
// Double accumulators for the flushed block sums.
struct acc_plain {  // float32 sums: double has 29 spare bits, plain addition is enough
    __m256d s = _mm256_setzero_pd();
    void add(__m256d v) { s = _mm256_add_pd(s, v); }
    double total() const {
        alignas(32) double a[4];
        _mm256_store_pd(a, s);
        return (a[0] + a[1]) + (a[2] + a[3]);
    }
};
struct acc_neumaier {  // float64 sums: Neumaier compensation per lane
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

// ------------------------------------------------------------------------------------------------------
struct F32 {
    using T = float;
    using V = __m256;
    using M = __m256i;  // lane mask for tails
    using Acc = acc_plain;
    static constexpr std::size_t N = 8;

    static V load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
    static M tail_mask(std::size_t n) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask32 + 8 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_ps(p, mk); }
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_ps(p, mk, v); }
    static void stream(T* p, V v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
    static V mask_v(M mk) { return _mm256_castsi256_ps(mk); }
    static V set1(T v) { return _mm256_set1_ps(v); }
    static V zero() { return _mm256_setzero_ps(); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b
    static V fmsub(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }    // a*b - c
    static V max(V a, V b) { return _mm256_max_ps(a, b); }  // returns b if either is NaN
    static V min(V a, V b) { return _mm256_min_ps(a, b); }  // returns b if either is NaN
    static V eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
    static V unord(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
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
    // Convert a vector to double lanes and add to acc.
    template <class A>
    static void flush(A& acc, V v) {
        acc.add(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
    }
    // Add 1 to count lanes where m is set; counts are kept as int32 (blocks are bounded).
    using C = __m256i;
    static C count_zero() { return _mm256_setzero_si256(); }
    static C count_add(C c, V m) { return _mm256_sub_epi32(c, _mm256_castps_si256(m)); }
    static double count_total(C c) {
        alignas(32) std::int32_t a[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
        double s = 0;
        for (int i = 0; i < 8; ++i) s += a[i];
        return s;
    }
    // Per-lane count and double-sum flush into memory arrays (columns): dst[0..N) += v.
    static void add_to_doubles(double* dst, V v, M mk, bool full) {
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        if (full) {
            _mm256_storeu_pd(dst, _mm256_add_pd(_mm256_loadu_pd(dst), lo));
            _mm256_storeu_pd(dst + 4, _mm256_add_pd(_mm256_loadu_pd(dst + 4), hi));
        } else {
            alignas(32) double a[8];
            alignas(32) std::int32_t m[8];
            _mm256_store_pd(a, lo);
            _mm256_store_pd(a + 4, hi);
            _mm256_store_si256(reinterpret_cast<__m256i*>(m), mk);
            for (int i = 0; i < 8; ++i)
                if (m[i]) dst[i] += a[i];
        }
    }

    static V pow2(__m256i k) {  // 2^k for k in [-126, 127]
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
    }
    // exp(t + tl) for t in [kMinArgF, kMaxArgF] (or NaN). FullRange: t may exceed 88.
    // k = round(t/ln2) by the biased shifter: kb holds k + 127 in its low bits, so 2^k = kb << 23.
    // exp(r) by Horner fully fused: 1 + r (1 + r (C2 + r (C3 + r (C4 + r (C5 + r C6))))).
    template <bool FullRange>
    NX_INLINE static V exp_core(V t, V tl) {
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
        V outside = lt(t, set1(kNormalMinArgF));
        if (FullRange) outside = or_(outside, gt(t, set1(88.0f)));
        if (NX_LIKELY(!any(outside))) return mul(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(kb), 23)));
        const __m256i ki = _mm256_cvtps_epi32(k);
        const __m256i k1 = _mm256_srai_epi32(ki, 1);
        const __m256i k2 = _mm256_sub_epi32(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }
    // Lower clamp for x: at or below m - kClampOffsetF (exact in double, then lowered by 2^-22 relative
    // so that rounding to float cannot land above it), and never -inf (see exp_constants.hpp).
    static T clamp_below(T m) {
        const double l = static_cast<double>(m) - kClampOffsetF;
        const double f = l - (l < 0 ? -l : l) * 0x1p-22;
        return f < -__FLT_MAX__ ? -__FLT_MAX__ : static_cast<float>(f);
    }

    // clamp_below for 8 lanes at once (the same double arithmetic, so the same values).
    static V clamp_below_v(V m) {
        const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
        auto half = [&](__m128 h) {
            const __m256d l = _mm256_sub_pd(_mm256_cvtps_pd(h), _mm256_set1_pd(kClampOffsetF));
            const __m256d f = _mm256_sub_pd(l, _mm256_mul_pd(_mm256_and_pd(l, absmask), _mm256_set1_pd(0x1p-22)));
            return _mm256_cvtpd_ps(_mm256_max_pd(f, _mm256_set1_pd(-__FLT_MAX__)));
        };
        return _mm256_insertf128_ps(_mm256_castps128_ps256(half(_mm256_castps256_ps128(m))), half(_mm256_extractf128_ps(m, 1)), 1);
    }

    // float32 log_softmax: beta (x - m) - c evaluated in double (x - m exact), rounded once.
    static V log_softmax(V x, double m, double beta, double c, bool scaled) {
        const __m256d md = _mm256_set1_pd(m), cd = _mm256_set1_pd(c), bd = _mm256_set1_pd(beta);
        __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), md);
        __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), md);
        if (scaled) {
            lo = _mm256_mul_pd(lo, bd);
            hi = _mm256_mul_pd(hi, bd);
        }
        lo = _mm256_sub_pd(lo, cd);
        hi = _mm256_sub_pd(hi, cd);
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
    }
    static V log_softmax_cols(V x, V m, double beta, const double* c, bool scaled) {
        const __m256d bd = _mm256_set1_pd(beta);
        __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(m)));
        __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
        if (scaled) {
            lo = _mm256_mul_pd(lo, bd);
            hi = _mm256_mul_pd(hi, bd);
        }
        lo = _mm256_sub_pd(lo, _mm256_loadu_pd(c));
        hi = _mm256_sub_pd(hi, _mm256_loadu_pd(c + 4));
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
    }
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
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask64 + 4 - n));
    }
    static V load_tail(const T* p, M mk) { return _mm256_maskload_pd(p, mk); }
    static void store_tail(T* p, M mk, V v) { _mm256_maskstore_pd(p, mk, v); }
    static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
    static V mask_v(M mk) { return _mm256_castsi256_pd(mk); }
    static V set1(T v) { return _mm256_set1_pd(v); }
    static V zero() { return _mm256_setzero_pd(); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
    static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
    static V div(V a, V b) { return _mm256_div_pd(a, b); }
    static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
    static V fmsub(V a, V b, V c) { return _mm256_fmsub_pd(a, b, c); }
    static V max(V a, V b) { return _mm256_max_pd(a, b); }
    static V min(V a, V b) { return _mm256_min_pd(a, b); }
    static V eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
    static V ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
    static V lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static V gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
    static V le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
    static V unord(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_UNORD_Q); }
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
    template <class A>
    static void flush(A& acc, V v) { acc.add(v); }
    using C = __m256i;
    static C count_zero() { return _mm256_setzero_si256(); }
    static C count_add(C c, V m) { return _mm256_sub_epi64(c, _mm256_castpd_si256(m)); }
    static double count_total(C c) {
        alignas(32) std::int64_t a[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(a), c);
        return static_cast<double>(a[0] + a[1] + a[2] + a[3]);
    }
    static void add_to_doubles(double* dst, V v, M mk, bool full) {
        if (full) {
            _mm256_storeu_pd(dst, _mm256_add_pd(_mm256_loadu_pd(dst), v));
        } else {
            _mm256_maskstore_pd(dst, mk, _mm256_add_pd(_mm256_maskload_pd(dst, mk), v));
        }
    }

    static V pow2(__m256i k) {  // 2^k for k in [-1022, 1023]
        return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k, _mm256_set1_epi64x(1023)), 52));
    }
    template <bool FullRange>
    NX_INLINE static V exp_core(V t, V tl) {
        // k by the 1.5*2^52 shifter: the integer k sits in the low mantissa bits of ks.
        const V ks = fmadd(t, set1(kLog2eD), set1(kShifterD));
        const V k = sub(ks, set1(kShifterD));
        const __m256i ki = _mm256_sub_epi64(_mm256_castpd_si256(ks), _mm256_castpd_si256(set1(kShifterD)));
        V r = fnmadd(k, set1(kLn2HiD), t);
        r = fnmadd(k, set1(kLn2LoD), r);
        r = add(r, tl);
        V p = set1(kInvFact[13]);
        for (int i = 12; i >= 0; --i) p = fmadd(p, r, set1(kInvFact[i]));
        V outside = lt(t, set1(kNormalMinArgD));
        if (FullRange) outside = or_(outside, gt(t, set1(709.0)));
        if (NX_LIKELY(!any(outside))) return mul(p, pow2(ki));
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
    static V clamp_below_v(V m) {
        const V l = sub(m, set1(kClampOffsetD));
        const V f = sub(l, mul(and_(l, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL))), set1(0x1p-50)));
        return max(f, set1(-__DBL_MAX__));
    }

    // float64 log_softmax: (hi + lo) - c with the TwoSum error of hi - c folded back in.
    static V log_softmax_2(V hi, V lo, V c) {
        const V s = sub(hi, c);
        const V bb = sub(s, hi);
        const V err = add(sub(hi, sub(s, bb)), sub(sub(zero(), c), bb));
        // The correction is NaN only when hi or c is infinite (x = -inf); the result is s then.
        V corr = add(lo, err);
        corr = and_(corr, eq(corr, corr));
        return add(s, corr);
    }
};

// ------------------------------------------------------------------------------------------------------
// Shifted argument t = beta (x - m) as hi + lo (see kernel_table.hpp). Entries whose t is below the
// underflow threshold (including x = -inf) are clamped to it with lo = 0: their exp rounds to +0.
template <class F, bool Scaled>
struct arg {
    using V = typename F::V;
    using T = typename F::T;
    V nm, bh, bl, tmin, xmin;
    arg(T m, scale2<T> beta)
        : nm(F::set1(-m)), bh(F::set1(beta.hi)), bl(F::set1(beta.lo)), tmin(F::set1(min_arg())),
          xmin(F::set1(F::clamp_below(m))) {}
    static T min_arg() {
        if constexpr (sizeof(T) == 4) return kMinArgF; else return kMinArgD;
    }
    // exp(beta (x - m)) for a vector x and -m (per row, or per column with xlow = clamp_below(m)).
    NX_INLINE V exp_of(V x, V negm, V xlow) const {
        if constexpr (!Scaled) x = F::max(xlow, x);  // keeps x - m and its rounding error finite
        const V d = F::add(x, negm);
        // x - m = d + lo exactly by Fast2Sum on (a, b) = (min, max)(x, -m), which has |a| >= |b| because
        // x <= m: m <= 0 gives a = x, |x| >= |m|; m > 0 gives a = -m when |x| <= m, else a = x < -m.
        // (One operation fewer than TwoSum, with the same exact lo.)
        V lo = F::sub(F::max(x, negm), F::sub(d, F::min(x, negm)));
        V hi = d;
        if constexpr (Scaled) {
            // beta * (d + lo) as hi + lo; products can overflow for extreme temperatures, so entries
            // below the underflow threshold (and x = -inf, whose TwoSum error is NaN) drop lo.
            hi = F::mul(d, bh);
            lo = F::fmadd(lo, bh, F::fmadd(d, bl, F::fmsub(d, bh, hi)));
            lo = F::and_(lo, F::ge(hi, tmin));
        }
        hi = F::max(tmin, hi);
        return F::template exp_core<false>(hi, lo);
    }
    NX_INLINE V exp_of(V x) const { return exp_of(x, nm, xmin); }
};

// Sum of contrib(i) over full vectors i = 0, N, ... and contrib_tail(i, mask) for the remainder,
// summed pairwise in blocks of 8 vectors and flushed to double.
template <class F, class Full, class Tail>
double blocked_sum(std::size_t n, Full full, Tail tail) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    typename F::Acc acc;
    std::size_t i = 0;
    if constexpr (std::is_same_v<F, F64>) {
        // float64: every vector goes straight into the Neumaier accumulator. A pairwise block in
        // working precision would round 1 + tiny terms in the lane holding the maximum (several ULP
        // on rows dominated by one term, found by the fuzzer).
        for (; i + N <= n; i += N) F::flush(acc, full(i));
        if (i < n) F::flush(acc, tail(i, F::tail_mask(n - i)));
        return acc.total();
    }
    for (; i + 8 * N <= n; i += 8 * N) {
        const V a0 = F::add(full(i), full(i + N));
        const V a1 = F::add(full(i + 2 * N), full(i + 3 * N));
        const V a2 = F::add(full(i + 4 * N), full(i + 5 * N));
        const V a3 = F::add(full(i + 6 * N), full(i + 7 * N));
        F::flush(acc, F::add(F::add(a0, a1), F::add(a2, a3)));
    }
    V part = F::zero();
    for (; i + N <= n; i += N) part = F::add(part, full(i));
    if (i < n) part = F::add(part, tail(i, F::tail_mask(n - i)));
    F::flush(acc, part);
    return acc.total();
}

template <class F>
NX_FLATTEN void k_exp(const typename F::T* x, typename F::T* y, std::size_t n) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr T lo = sizeof(T) == 4 ? T(kMinArgF) : T(kMinArgD);
    constexpr T hi = sizeof(T) == 4 ? T(kMaxArgF) : T(kMaxArgD);
    auto one = [&](V v) { return F::template exp_core<true>(F::min(F::set1(hi), F::max(F::set1(lo), v)), F::zero()); };
    std::size_t i = 0;
    for (; i + F::N <= n; i += F::N) F::store(y + i, one(F::load(x + i)));
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        F::store_tail(y + i, mk, one(F::load_tail(x + i, mk)));
    }
}

template <class F>
NX_FLATTEN typename F::T k_row_max(const typename F::T* x, std::size_t n) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    const V ninf = F::set1(-__builtin_huge_val());
    V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, nan = F::zero();
    std::size_t i = 0;
    for (; i + 4 * N <= n; i += 4 * N) {
        const V a = F::load(x + i), b = F::load(x + i + N), c = F::load(x + i + 2 * N), d = F::load(x + i + 3 * N);
        m0 = F::max(m0, a);
        m1 = F::max(m1, b);
        m2 = F::max(m2, c);
        m3 = F::max(m3, d);
        nan = F::or_(nan, F::or_(F::unord(a, b), F::unord(c, d)));
    }
    for (; i + N <= n; i += N) {
        const V a = F::load(x + i);
        m0 = F::max(m0, a);
        nan = F::or_(nan, F::unord(a, a));
    }
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        const V a = F::blend(ninf, F::load_tail(x + i, mk), F::mask_v(mk));
        m0 = F::max(m0, a);
        nan = F::or_(nan, F::unord(a, a));
    }
    if (F::any(nan)) return T(__builtin_nan(""));
    return F::hmax(F::max(F::max(m0, m1), F::max(m2, m3)));
}

template <class F, bool Scaled>
NX_FLATTEN exp_sum row_exp_sum_impl(const typename F::T* x, std::size_t n, typename F::T m, scale2<typename F::T> beta) {
    using V = typename F::V;
    const arg<F, Scaled> a(m, beta);
    const V mv = F::set1(m);
    typename F::C cnt = F::count_zero();
    double total_count = 0;
    // Counts are flushed with the sums: int32 lanes would overflow past 2^31 elements per lane.
    constexpr std::size_t kChunk = std::size_t(1) << 24;
    double rest = 0;
    for (std::size_t base = 0; base < n; base += kChunk) {
        const std::size_t len = n - base < kChunk ? n - base : kChunk;
        const typename F::T* xb = x + base;
        auto full = [&](std::size_t i) {
            const V v = F::load(xb + i);
            const V e = F::eq(v, mv);
            cnt = F::count_add(cnt, e);
            return F::andnot(e, a.exp_of(v));
        };
        auto tail = [&](std::size_t i, typename F::M mk) {
            const V v = F::load_tail(xb + i, mk);
            const V e = F::and_(F::eq(v, mv), F::mask_v(mk));
            cnt = F::count_add(cnt, e);
            return F::and_(F::andnot(e, a.exp_of(v)), F::mask_v(mk));
        };
        rest += blocked_sum<F>(len, full, tail);
        total_count += F::count_total(cnt);
        cnt = F::count_zero();
    }
    return {rest, total_count};
}

template <class F>
NX_FLATTEN exp_sum k_row_exp_sum(const typename F::T* x, std::size_t n, typename F::T m, scale2<typename F::T> beta) {
    return beta.lo == 0 && beta.hi == 1 ? row_exp_sum_impl<F, false>(x, n, m, beta)
                                        : row_exp_sum_impl<F, true>(x, n, m, beta);
}

template <class F, bool Scaled>
NX_FLATTEN double row_exp_store_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                          scale2<typename F::T> beta) {
    using V = typename F::V;
    const arg<F, Scaled> a(m, beta);
    auto full = [&](std::size_t i) {
        const V e = a.exp_of(F::load(x + i));
        F::store(y + i, e);
        return e;
    };
    auto tail = [&](std::size_t i, typename F::M mk) {
        const V e = F::and_(a.exp_of(F::load_tail(x + i, mk)), F::mask_v(mk));
        F::store_tail(y + i, mk, e);
        return e;
    };
    return blocked_sum<F>(n, full, tail);
}

template <class F>
NX_FLATTEN double k_row_exp_store(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                       scale2<typename F::T> beta) {
    return beta.lo == 0 && beta.hi == 1 ? row_exp_store_impl<F, false>(x, y, n, m, beta)
                                        : row_exp_store_impl<F, true>(x, y, n, m, beta);
}

template <class F>
NX_FLATTEN void k_row_scale(typename F::T* y, std::size_t n, typename F::T c) {
    const auto cv = F::set1(c);
    std::size_t i = 0;
    for (; i + 2 * F::N <= n; i += 2 * F::N) {
        F::store(y + i, F::mul(F::load(y + i), cv));
        F::store(y + i + F::N, F::mul(F::load(y + i + F::N), cv));
    }
    for (; i + F::N <= n; i += F::N) F::store(y + i, F::mul(F::load(y + i), cv));
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        F::store_tail(y + i, mk, F::mul(F::load_tail(y + i, mk), cv));
    }
}

template <class F, bool Scaled>
NX_FLATTEN void row_exp_scale_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                        scale2<typename F::T> beta, typename F::T c) {
    const arg<F, Scaled> a(m, beta);
    const auto cv = F::set1(c);
    std::size_t i = 0;
    for (; i + F::N <= n; i += F::N) F::store(y + i, F::mul(a.exp_of(F::load(x + i)), cv));
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        F::store_tail(y + i, mk, F::mul(a.exp_of(F::load_tail(x + i, mk)), cv));
    }
}

template <class F>
NX_FLATTEN void k_row_exp_scale(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                     scale2<typename F::T> beta, typename F::T c) {
    if (beta.lo == 0 && beta.hi == 1)
        row_exp_scale_impl<F, false>(x, y, n, m, beta, c);
    else
        row_exp_scale_impl<F, true>(x, y, n, m, beta, c);
}

template <class F, bool Scaled>
void row_exp_scale_stream_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                               scale2<typename F::T> beta, typename F::T c) {
    // Head up to the first 32-byte boundary of y with ordinary stores, then aligned streaming stores.
    std::size_t head = (32 - reinterpret_cast<std::uintptr_t>(y) % 32) % 32 / sizeof(typename F::T);
    if (head > n) head = n;
    row_exp_scale_impl<F, Scaled>(x, y, head, m, beta, c);
    const arg<F, Scaled> a(m, beta);
    const auto cv = F::set1(c);
    std::size_t i = head;
    for (; i + F::N <= n; i += F::N) F::stream(y + i, F::mul(a.exp_of(F::load(x + i)), cv));
    _mm_sfence();  // order the streaming stores before anything that follows
    row_exp_scale_impl<F, Scaled>(x + i, y + i, n - i, m, beta, c);
}

template <class F>
NX_FLATTEN void k_row_exp_scale_stream(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                                       scale2<typename F::T> beta, typename F::T c) {
    if (beta.lo == 0 && beta.hi == 1)
        row_exp_scale_stream_impl<F, false>(x, y, n, m, beta, c);
    else
        row_exp_scale_stream_impl<F, true>(x, y, n, m, beta, c);
}

// log_softmax per vector: float32 via double, float64 via TwoSum/TwoProduct.
template <class F>
struct log_softmax_op;
template <>
struct log_softmax_op<F32> {
    double m, beta;
    bool scaled;
    log_softmax_op(float m_, scale2<float> b) : m(m_), beta(double(b.hi) + double(b.lo)), scaled(!(b.lo == 0 && b.hi == 1)) {}
    __m256 row(__m256 x, double c) const { return F32::log_softmax(x, m, beta, c, scaled); }
    __m256 col(__m256 x, __m256 mv, const double* c) const { return F32::log_softmax_cols(x, mv, beta, c, scaled); }
};
template <>
struct log_softmax_op<F64> {
    __m256d bh, bl;
    bool scaled;
    double m;
    log_softmax_op(double m_, scale2<double> b) : bh(F64::set1(b.hi)), bl(F64::set1(b.lo)), scaled(!(b.lo == 0 && b.hi == 1)), m(m_) {}
    __m256d two(__m256d x, __m256d mv, __m256d c) const {
        const __m256d d = F64::sub(x, mv);
        const __m256d bb = F64::sub(d, x);
        __m256d e = F64::add(F64::sub(x, F64::sub(d, bb)), F64::sub(F64::sub(F64::zero(), mv), bb));
        __m256d hi = d;
        if (scaled) {
            hi = F64::mul(d, bh);
            e = F64::fmadd(e, bh, F64::fmadd(d, bl, F64::fmsub(d, bh, hi)));
        }
        return F64::log_softmax_2(hi, e, c);
    }
    __m256d row(__m256d x, double c) const { return two(x, F64::set1(m), F64::set1(c)); }
    __m256d col(__m256d x, __m256d mv, const double* c) const { return two(x, mv, _mm256_loadu_pd(c)); }
};

template <class F>
NX_FLATTEN void k_row_log_softmax(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                       scale2<typename F::T> beta, double c) {
    const log_softmax_op<F> op(m, beta);
    std::size_t i = 0;
    for (; i + F::N <= n; i += F::N) F::store(y + i, op.row(F::load(x + i), c));
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        F::store_tail(y + i, mk, op.row(F::load_tail(x + i, mk), c));
    }
}

// ---- columns -----------------------------------------------------------------------------------------
// Iterate column vectors j (N lanes, masked at the tail of w): body(j, mask, full) where full is
// std::true_type for whole vectors and std::false_type for the masked tail (a compile-time choice, so
// the hot loop carries no branch per load).
template <class F, class Body>
void for_col_vectors(std::size_t w, Body body) {
    std::size_t j = 0;
    const auto all = F::tail_mask(F::N);
    for (; j + F::N <= w; j += F::N) body(j, all, std::true_type{});
    if (j < w) body(j, F::tail_mask(w - j), std::false_type{});
}

template <class F, class Full>
typename F::V load_any(const typename F::T* p, typename F::M mk, Full) {
    if constexpr (Full::value) return F::load(p); else return F::load_tail(p, mk);
}
template <class F, class Full>
void store_any(typename F::T* p, typename F::M mk, Full, typename F::V v) {
    if constexpr (Full::value) F::store(p, v); else F::store_tail(p, mk, v);
}

// Column kernels stage per-column parameters for up to this many columns in stack arrays.
constexpr std::size_t kColPanel = 1024;

template <class F, bool Copy>
NX_FLATTEN void col_max_impl(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m,
                  typename F::T* copy) {
    // Rows outer (4 at a time), so wide blocks stream from memory row by row; the running maxima and
    // NaN flags of a panel of columns stay in L1.
    using V = typename F::V;
    using T = typename F::T;
    alignas(32) T nanf[kColPanel];
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        T* mp = m + j0;
        for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
            const V acc = load_any<F>(mp + j, mk, full);
            F::store(nanf + j, F::unord(acc, acc));
        });
        auto row = [&](std::size_t i, std::size_t j, typename F::M mk, auto full) {
            const V v = load_any<F>(x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0 + j), mk, full);
            if constexpr (Copy) store_any<F>(copy + i * w + j0 + j, mk, full, v);
            return v;
        };
        std::size_t i = 0;
        for (; i + 4 <= rows; i += 4) {
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                const V v0 = row(i, j, mk, full), v1 = row(i + 1, j, mk, full);
                const V v2 = row(i + 2, j, mk, full), v3 = row(i + 3, j, mk, full);
                const V acc = F::max(load_any<F>(mp + j, mk, full), F::max(F::max(v0, v1), F::max(v2, v3)));
                store_any<F>(mp + j, mk, full, acc);
                F::store(nanf + j, F::or_(F::load(nanf + j), F::or_(F::unord(v0, v1), F::unord(v2, v3))));
            });
        }
        for (; i < rows; ++i) {
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                const V v = row(i, j, mk, full);
                store_any<F>(mp + j, mk, full, F::max(load_any<F>(mp + j, mk, full), v));
                F::store(nanf + j, F::or_(F::load(nanf + j), F::unord(v, v)));
            });
        }
        for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
            store_any<F>(mp + j, mk, full, F::blend(load_any<F>(mp + j, mk, full), F::set1(T(__builtin_nan(""))), F::load(nanf + j)));
        });
    }
}

template <class F>
NX_FLATTEN void k_col_max(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m,
               typename F::T* copy) {
    if (copy)
        col_max_impl<F, true>(x, rows, sx, w, m, copy);
    else
        col_max_impl<F, false>(x, rows, sx, w, m, nullptr);
}

// Column sums, rows outer: the block streams through L1 row by row (a column walk at a stride of w
// elements thrashes L1 sets once w is a few KiB); each column's running sum (and count) lives in a stack
// array. term(i, j, mask, full, m, -m, xlow, count) returns the row-i vector of column vector j to add.
// float32: 4 rows are summed in float (3 roundings, as a pairwise block of 8) and flushed to double.
// float64: every term goes into a per-column Neumaier pair.
template <class F, bool Count, class Term>
NX_INLINE void col_sums_rows_outer(std::size_t rows, std::size_t w, const typename F::T* m, double* sum, double* count,
                                   Term term) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr bool f64 = std::is_same_v<F, F64>;
    constexpr std::size_t kFlushRows = 4;
    alignas(32) T mv[kColPanel], negm[kColPanel], xlow[kColPanel], part[kColPanel];
    alignas(32) T comp[f64 ? kColPanel : 1], cnt[Count ? kColPanel : 1];
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
            const V v = load_any<F>(m + j0 + j, mk, full);
            F::store(mv + j, v);
            F::store(negm + j, F::sub(F::zero(), v));
            F::store(xlow + j, F::clamp_below_v(v));
            F::store(part + j, F::zero());
            if constexpr (f64) F::store(comp + j, F::zero());
            if constexpr (Count) F::store(cnt + j, F::zero());
        });
        auto flush = [&](auto with_comp) {
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                V s = F::load(part + j);
                if constexpr (decltype(with_comp)::value) s = F::add(s, F::load(comp + j));
                F::add_to_doubles(sum + j0 + j, s, mk, decltype(full)::value);
                F::store(part + j, F::zero());
                if constexpr (Count) {
                    F::add_to_doubles(count + j0 + j, F::load(cnt + j), mk, decltype(full)::value);
                    F::store(cnt + j, F::zero());
                }
            });
        };
        for (std::size_t i = 0; i < rows; ++i) {
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                V c = Count ? F::load(cnt + j) : F::zero();
                V e = term(i, j0 + j, mk, full, F::load(mv + j), F::load(negm + j), F::load(xlow + j), c);
                if constexpr (Count) F::store(cnt + j, c);
                if constexpr (!decltype(full)::value) e = F::and_(e, F::mask_v(mk));
                if constexpr (f64) {
                    acc_neumaier acc;
                    acc.s = F::load(part + j), acc.c = F::load(comp + j);
                    acc.add(e);
                    F::store(part + j, acc.s);
                    F::store(comp + j, acc.c);
                } else {
                    F::store(part + j, F::add(F::load(part + j), e));
                }
            });
            if (!f64 && ((i + 1) % kFlushRows == 0 || i + 1 == rows)) flush(std::false_type{});
        }
        if (f64 && rows > 0) flush(std::true_type{});
    }
}

template <class F, bool Scaled>
NX_FLATTEN void col_exp_sum_impl(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w,
                      const typename F::T* m, scale2<typename F::T> beta, double* rest, double* count) {
    using V = typename F::V;
    const arg<F, Scaled> a(0, beta);
    const V one = F::set1(1);
    col_sums_rows_outer<F, true>(rows, w, m, rest, count,
                                 [&](std::size_t i, std::size_t j, typename F::M mk, auto full, V mv, V negm, V xlow, V& c) {
                                     const V v = load_any<F>(x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j), mk, full);
                                     const V e = F::eq(v, mv);
                                     c = F::add(c, F::and_(e, one));
                                     return F::andnot(e, a.exp_of(v, negm, xlow));
                                 });
}

template <class F>
NX_FLATTEN void k_col_exp_sum(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const typename F::T* m,
                   scale2<typename F::T> beta, double* rest, double* count) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_sum_impl<F, false>(x, rows, sx, w, m, beta, rest, count);
    else
        col_exp_sum_impl<F, true>(x, rows, sx, w, m, beta, rest, count);
}

// Pass-2 column kernels walk rows in the outer loop so each row's w contiguous entries stream once
// from memory; the per-column parameters are staged in small arrays (kColPanel) that stay in L1.

template <class F, bool Scaled>
NX_FLATTEN void col_exp_scale_impl(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy,
                        std::size_t rows, std::size_t w, const typename F::T* m, scale2<typename F::T> beta,
                        const typename F::T* c) {
    using V = typename F::V;
    using T = typename F::T;
    const arg<F, Scaled> a(0, beta);
    alignas(32) T negm[kColPanel], xlow[kColPanel];
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for (std::size_t j = 0; j < pw; ++j) negm[j] = -m[j0 + j], xlow[j] = F::clamp_below(m[j0 + j]);
        for (std::size_t i = 0; i < rows; ++i) {
            const T* xi = x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0);
            T* yi = y + static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j0);
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                const V v = load_any<F>(xi + j, mk, full);
                const V e = a.exp_of(v, F::load(negm + j), F::load(xlow + j));
                store_any<F>(yi + j, mk, full, F::mul(e, load_any<F>(c + j0 + j, mk, full)));
            });
        }
    }
}

template <class F>
NX_FLATTEN void k_col_exp_scale(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                     std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const typename F::T* c) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_scale_impl<F, false>(x, sx, y, sy, rows, w, m, beta, c);
    else
        col_exp_scale_impl<F, true>(x, sx, y, sy, rows, w, m, beta, c);
}

template <class F>
NX_FLATTEN void k_col_log_softmax(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                       std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const double* c) {
    using V = typename F::V;
    using T = typename F::T;
    const log_softmax_op<F> op(0, beta);
    alignas(32) double cbuf[kColPanel + 8];
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for (std::size_t j = 0; j < pw + 8; ++j) cbuf[j] = j < pw ? c[j0 + j] : 0.0;
        for (std::size_t i = 0; i < rows; ++i) {
            const T* xi = x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0);
            T* yi = y + static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j0);
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
                const V v = load_any<F>(xi + j, mk, full);
                store_any<F>(yi + j, mk, full, op.col(v, load_any<F>(m + j0 + j, mk, full), cbuf + j));
            });
        }
    }
}

template <class F, bool Scaled>
NX_FLATTEN void col_exp_store_impl(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                        scale2<typename F::T> beta, double* sum) {
    using V = typename F::V;
    const arg<F, Scaled> a(0, beta);
    col_sums_rows_outer<F, false>(rows, w, m, sum, nullptr,
                                  [&](std::size_t i, std::size_t j, typename F::M mk, auto full, V, V negm, V xlow, V&) {
                                      typename F::T* p = x + i * w + j;
                                      const V e = a.exp_of(load_any<F>(p, mk, full), negm, xlow);
                                      store_any<F>(p, mk, full, e);
                                      return e;
                                  });
}

template <class F>
NX_FLATTEN void k_col_exp_store(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                     scale2<typename F::T> beta, double* sum) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_store_impl<F, false>(x, rows, w, m, beta, sum);
    else
        col_exp_store_impl<F, true>(x, rows, w, m, beta, sum);
}

template <class F>
NX_FLATTEN void k_col_scale(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                 std::size_t w, const typename F::T* c) {
    for (std::size_t i = 0; i < rows; ++i) {
        const auto* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        auto* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, auto full) {
            store_any<F>(yi + j, mk, full, F::mul(load_any<F>(xi + j, mk, full), load_any<F>(c + j, mk, full)));
        });
    }
}

// ==== sampling kernels ==============================================================================
// row_collect_ge: compare a vector with the threshold, turn the lanes that pass into indices (rare
// after the first few chunks, so the bit loop is cheap). row_sample_weights: the float32 operation
// sequence of sampling_weights.hpp with separate mul/add (never fmadd), 8 lanes = the 8 lane sums.

inline std::uint32_t movemask(__m256 v) { return static_cast<std::uint32_t>(_mm256_movemask_ps(v)); }
inline std::uint32_t movemask(__m256d v) { return static_cast<std::uint32_t>(_mm256_movemask_pd(v)); }

template <class F>
std::size_t k_row_collect_ge(const typename F::T* x, std::size_t n, typename F::T thr, std::uint32_t* idx) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    const V t = F::set1(thr);
    std::size_t c = 0, i = 0;
    auto emit = [&](std::uint32_t bits, std::size_t base) {
        while (bits) {
            idx[c++] = static_cast<std::uint32_t>(base + static_cast<std::size_t>(__builtin_ctz(bits)));
            bits &= bits - 1;
        }
    };
    for (; i + 4 * N <= n; i += 4 * N) {
        const V a = F::ge(F::load(x + i), t), b = F::ge(F::load(x + i + N), t);
        const V cc = F::ge(F::load(x + i + 2 * N), t), d = F::ge(F::load(x + i + 3 * N), t);
        if (!F::any(F::or_(F::or_(a, b), F::or_(cc, d)))) continue;
        emit(movemask(a), i);
        emit(movemask(b), i + N);
        emit(movemask(cc), i + 2 * N);
        emit(movemask(d), i + 3 * N);
    }
    for (; i + N <= n; i += N) emit(movemask(F::ge(F::load(x + i), t)), i);
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        emit(movemask(F::ge(F::load_tail(x + i, mk), t)) & ((1u << (n - i)) - 1u), i);
    }
    return c;
}

// 8 float32 sampling arguments t = float(beta (x - m)) from x[0..8) (float32: in float32; float64: in
// float64, then rounded), and the mask x >= thr; `valid` lanes beyond it are excluded (tails).
inline void sample_args(const float* x, std::size_t valid, float m, float beta, float thr, __m256& t, __m256& keep) {
    __m256 v;
    if (valid >= 8) {
        v = _mm256_loadu_ps(x);
        keep = _mm256_cmp_ps(v, _mm256_set1_ps(thr), _CMP_GE_OQ);
    } else {
        const __m256i mk = F32::tail_mask(valid);
        v = _mm256_maskload_ps(x, mk);
        keep = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_set1_ps(thr), _CMP_GE_OQ), _mm256_castsi256_ps(mk));
    }
    t = _mm256_mul_ps(_mm256_sub_ps(v, _mm256_set1_ps(m)), _mm256_set1_ps(beta));
}
inline void sample_args(const double* x, std::size_t valid, double m, double beta, double thr, __m256& t, __m256& keep) {
    const __m256d md = _mm256_set1_pd(m), bd = _mm256_set1_pd(beta), td = _mm256_set1_pd(thr);
    __m256d lo, hi, klo, khi;
    if (valid >= 8) {
        lo = _mm256_loadu_pd(x);
        hi = _mm256_loadu_pd(x + 4);
        klo = _mm256_cmp_pd(lo, td, _CMP_GE_OQ);
        khi = _mm256_cmp_pd(hi, td, _CMP_GE_OQ);
    } else {
        const __m256i mlo = F64::tail_mask(valid < 4 ? valid : 4);
        const __m256i mhi = F64::tail_mask(valid > 4 ? valid - 4 : 0);
        lo = _mm256_maskload_pd(x, mlo);
        hi = _mm256_maskload_pd(x + 4, mhi);
        klo = _mm256_and_pd(_mm256_cmp_pd(lo, td, _CMP_GE_OQ), _mm256_castsi256_pd(mlo));
        khi = _mm256_and_pd(_mm256_cmp_pd(hi, td, _CMP_GE_OQ), _mm256_castsi256_pd(mhi));
    }
    const __m128 tlo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(lo, md), bd));
    const __m128 thi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(hi, md), bd));
    t = _mm256_insertf128_ps(_mm256_castps128_ps256(tlo), thi, 1);
    // 64-bit lane masks -> 32-bit lane masks (each 64-bit mask is all ones or all zeros).
    const __m256i pk = _mm256_permutevar8x32_epi32(
        _mm256_castpd_si256(klo), _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0));
    const __m256i ph = _mm256_permutevar8x32_epi32(
        _mm256_castpd_si256(khi), _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0));
    keep = _mm256_castsi256_ps(_mm256_inserti128_si256(pk, _mm256_castsi256_si128(ph), 1));
}

// sample_exp of sampling_weights.hpp on 8 lanes; lanes with !keep or t < kSampleMinArg give +0.
inline __m256 sample_exp8(__m256 t, __m256 keep) {
    using namespace normexp::sampling;
    keep = _mm256_and_ps(keep, _mm256_cmp_ps(t, _mm256_set1_ps(kSampleMinArg), _CMP_GE_OQ));
    t = _mm256_max_ps(t, _mm256_set1_ps(kSampleMinArg));  // keeps the dropped lanes harmless
    const __m256 sh = _mm256_set1_ps(kSampleShifter);
    const __m256 kd = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(t, _mm256_set1_ps(kLog2eF)), sh), sh);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(t, _mm256_mul_ps(kd, _mm256_set1_ps(kLn2HiF))),
                                   _mm256_mul_ps(kd, _mm256_set1_ps(kLn2LoF)));
    __m256 q = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(kC6F), r), _mm256_set1_ps(kC5F));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(kC4F));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(kC3F));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), _mm256_set1_ps(kC2F));
    const __m256 p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(r, r), q), r), _mm256_set1_ps(1.0f));
    const __m256 w = _mm256_mul_ps(p, F32::pow2(_mm256_cvttps_epi32(kd)));
    return _mm256_and_ps(w, keep);
}

template <class F>
void k_row_sample_weights(const typename F::T* x, std::size_t n, typename F::T m, typename F::T beta,
                          typename F::T thr, float* w, float* block_sums) {
    constexpr std::size_t B = normexp::sampling::kSampleBlock;
    for (std::size_t b0 = 0; b0 < n; b0 += B) {
        __m256 acc = _mm256_setzero_ps();
        for (std::size_t q = 0; q < B / 8 && b0 + 8 * q < n; ++q) {
            const std::size_t i = b0 + 8 * q, valid = n - i;
            __m256 t, keep;
            sample_args(x + i, valid, m, beta, thr, t, keep);
            const __m256 wv = sample_exp8(t, keep);
            // L_j = ((w[j] + w[8+j]) + ...): the first add is 0 + w[j] = w[j] exactly (w >= +0).
            acc = _mm256_add_ps(acc, wv);
            if (w) {
                if (valid >= 8)
                    _mm256_storeu_ps(w + i, wv);
                else
                    _mm256_maskstore_ps(w + i, F32::tail_mask(valid), wv);
            }
        }
        if (block_sums) {
            // s_j = L_j + L_{j+4}; (s0 + s2), (s1 + s3); their sum. Missing vectors of a short last
            // block would add +0, which changes no bit, so they are skipped.
            const __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            const __m128 u = _mm_add_ps(s, _mm_movehl_ps(s, s));
            block_sums[b0 / B] = _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
        }
    }
}

template <class F>
reduction_kernels<typename F::T> make_kernels() {
    return {k_exp<F>,         k_row_max<F>,       k_row_exp_sum<F>,     k_row_exp_store<F>,
            k_row_scale<F>,   k_row_exp_scale<F>, k_row_log_softmax<F>, k_col_max<F>,
            k_col_exp_sum<F>, k_col_exp_scale<F>, k_col_log_softmax<F>, k_col_exp_store<F>,
            k_col_scale<F>,   k_row_exp_scale_stream<F>,
            k_row_collect_ge<F>, k_row_sample_weights<F>};
}

// ======================================================================================================
// Attention micro-kernels (kernel_table.hpp, attention_kernels). Register-blocked like a GEMM:
//   qk: S = Q K^T with K^T packed in panels of 16 keys; a tile is 6 query rows x 2 vectors of keys
//       (12 accumulators + 2 panel loads + 1 broadcast = 15 of the 16 ymm registers), one broadcast
//       of q[i][d] and two loads of kt[d] per 12 FMAs, so the loop is FMA-bound, not load-bound.
//   pv: O = alpha O + P V; a tile is 6 rows x 2 vectors of the value dimension, one broadcast of p[i][j]
//       and two loads of v[j] per 12 FMAs; V rows are read in place (unit stride along dv).
//   softmax_step: scores, running max, exp(x - m) of the rounded scores with the library's exp (TwoSum
//       argument, or x - m rounded once where only a scale applies; <= 1 ULP), the block sum in working
//       precision over at most a block (flushed to double by row).
// ======================================================================================================

constexpr int kAttnRows = 6;                 // rows per register tile (both products)
constexpr std::size_t kQkRowGroup = 24;     // qk: rows whose q (<= 12 KiB at head_dim 128) stay in L1 across panels
// Decoding kernels prefetch the key/value row this many rows ahead (8 KiB at head_dim 128): each key is
// used once, so the loads are DRAM-latency bound; measured ~5% faster than hardware prefetch alone.
constexpr std::ptrdiff_t kPrefetchRows = 16;

// ---- pack_kt -----------------------------------------------------------------------------------------
inline void transpose_store(const float* k, std::ptrdiff_t k_row, float* kt, std::size_t ldkt) {  // 8 x 8
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
inline void transpose_store(const double* k, std::ptrdiff_t k_row, double* kt, std::size_t ldkt) {  // 4 x 4
    const __m256d r0 = _mm256_loadu_pd(k), r1 = _mm256_loadu_pd(k + k_row), r2 = _mm256_loadu_pd(k + 2 * k_row),
                  r3 = _mm256_loadu_pd(k + 3 * k_row);
    const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(kt, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(kt + ldkt, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(kt + 2 * ldkt, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(kt + 3 * ldkt, _mm256_permute2f128_pd(t1, t3, 0x31));
}

template <class F>
void k_pack_kt(const typename F::T* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys, std::size_t dim,
               typename F::T* kt, std::size_t ldkt) {
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
    std::size_t j0 = 0, d0 = 0;  // the part done by N x N transposes: keys < j0, dims < d0
    if (k_col == 1) {
        j0 = keys / N * N;
        d0 = dim / N * N;
        for (std::size_t j = 0; j < j0; j += N)
            for (std::size_t d = 0; d < d0; d += N)
                transpose_store(k + static_cast<std::ptrdiff_t>(j) * k_row + static_cast<std::ptrdiff_t>(d), k_row,
                                kt + d * ldkt + j, ldkt);
    }
    auto at = [&](std::size_t j, std::size_t d) {
        return k[static_cast<std::ptrdiff_t>(j) * k_row + static_cast<std::ptrdiff_t>(d) * k_col];
    };
    for (std::size_t d = 0; d < dim; ++d) {
        T* row = kt + d * ldkt;
        for (std::size_t j = d < d0 ? j0 : 0; j < keys; ++j) row[j] = at(j, d);
        for (std::size_t j = keys; j < padded; ++j) row[j] = T(0);
    }
}

// ---- qk ----------------------------------------------------------------------------------------------
template <class F, int R>
inline void qk_tile(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt,
                    std::size_t dim, typename F::T* s, std::size_t lds) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    V a0[R], a1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = F::zero();
    for (std::size_t d = 0; d < dim; ++d) {
        const V b0 = F::load(kt + d * ldkt), b1 = F::load(kt + d * ldkt + N);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const V a = F::set1(q[r * ldq + d]);
            a0[r] = F::fmadd(a, b0, a0[r]);
            a1[r] = F::fmadd(a, b1, a1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        F::store(s + r * lds, a0[r]);
        F::store(s + r * lds + N, a1[r]);
    }
}

template <class F>
void k_qk(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt, std::size_t rows,
          std::size_t keys, std::size_t dim, typename F::T* s, std::size_t lds) {
    constexpr std::size_t W = 2 * F::N;  // columns per tile; divides kAttnKeyPanel
    static_assert(kAttnKeyPanel % W == 0, "tile width must divide the key panel");
    const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
    const std::size_t RG = kQkRowGroup;
    for (std::size_t i0 = 0; i0 < rows; i0 += RG) {
    const std::size_t i1 = rows - i0 < RG ? rows : i0 + RG;
    for (std::size_t j = 0; j < padded; j += W) {
        std::size_t i = i0;
        for (; i + kAttnRows <= i1; i += kAttnRows)
            qk_tile<F, kAttnRows>(q + i * ldq, ldq, kt + j, ldkt, dim, s + i * lds + j, lds);
        const auto* qi = q + i * ldq;
        auto* si = s + i * lds + j;
        switch (i1 - i) {
            case 5: qk_tile<F, 5>(qi, ldq, kt + j, ldkt, dim, si, lds); break;
            case 4: qk_tile<F, 4>(qi, ldq, kt + j, ldkt, dim, si, lds); break;
            case 3: qk_tile<F, 3>(qi, ldq, kt + j, ldkt, dim, si, lds); break;
            case 2: qk_tile<F, 2>(qi, ldq, kt + j, ldkt, dim, si, lds); break;
            case 1: qk_tile<F, 1>(qi, ldq, kt + j, ldkt, dim, si, lds); break;
            default: break;
        }
    }
    }
}

// ---- softmax_step ------------------------------------------------------------------------------------
// Lanes j .. j+N of a boolean mask row as an all-ones-where-masked-out vector (n valid lanes).
inline __m256 masked_out(const std::uint8_t* p, std::size_t n, F32) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, p, n < 8 ? n : 8);
    const __m256i w = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bits)));
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(w, _mm256_setzero_si256()));
}
inline __m256d masked_out(const std::uint8_t* p, std::size_t n, F64) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, p, n < 4 ? n : 4);
    const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(bits)));
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(w, _mm256_setzero_si256()));
}
inline __m256 iota(F32) { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
inline __m256d iota(F64) { return _mm256_setr_pd(0, 1, 2, 3); }

// softcap * tanh(x / softcap): tanh|y| = (1 - e) / (1 + e) with e = exp(-2|y|) from the library's exp.
// Absolute error <= ~2 ulp(1) of tanh, i.e. <= 2 ulp(softcap) on the capped score.
template <class F>
inline typename F::V soft_cap(typename F::V x, typename F::V cap, typename F::V tmin) {
    using V = typename F::V;
    const V sign = F::set1(typename F::T(-0.0));
    const V y = F::div(x, cap);
    const V a = F::andnot(sign, y);
    const V e = F::template exp_core<false>(F::max(tmin, F::mul(F::set1(-2), a)), F::zero());
    const V one = F::set1(1);
    const V th = F::div(F::sub(one, e), F::add(one, e));
    return F::mul(cap, F::or_(th, F::and_(sign, y)));
}

// alpha = exp(m_old - m_new) (1 when the maximum did not move or is still -inf), with the library's exp.
template <class F>
inline typename F::T rescale_factor(typename F::T m_old, typename F::T m_new) {
    using T = typename F::T;
    if (m_old == m_new || m_new == -__builtin_huge_val()) return T(1);
    const arg<F, false> ex(m_new, {T(1), T(0)});
    alignas(32) T tmp[F::N];
    F::store(tmp, ex.exp_of(F::set1(m_old)));
    return tmp[0];
}

// exp(t) for t in [kNormalMinArg, ~0] (normal results only), by the same reduction and polynomial as
// exp_core (<= 1 ULP), with k from the round-to-nearest shifter instead of round + convert and without the
// subnormal branch. Callers clamp t at kNormalMinArg and set p = 0 where t was below it: a probability
// below exp(kNormalMinArg) (~2^-126 float32, ~2^-1022 float64) becomes 0, an absolute change smaller than
// that, far below the rounding of the row sum (>= 1).
inline __m256 exp_normal(__m256 t, F32) {
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
    return _mm256_mul_ps(p, F32::pow2(ki));
}
inline __m256d exp_normal(__m256d t, F64) { return F64::exp_core<false>(t, F64::zero()); }
inline float normal_min_arg(F32) { return kNormalMinArgF; }
inline double normal_min_arg(F64) { return kNormalMinArgD; }

// The common case: only a scale, and possibly the causal/window band (no softcap, ALiBi or mask). The
// score is x = scale s rounded once to T (the specification's). Pass 1 is the maximum of the raw dot
// products (max(scale s) = scale max(s) for scale > 0, min for scale < 0: rounding is monotonic, so
// m = round(scale max s) is exactly the maximum of the rounded scores x); pass 2 forms x again and
// t = x - m, rounded once, and p = exp(t). Every x <= m, so t <= 0, and t = 0 exactly for the maximal
// entry. The subtraction rounds once: |dt| <= u |t| (0 when x and m are within a factor 2), so
// |dp| <= u |t| e^t <= u/e, below half an ulp of 1 (and p = 0 below exp(kNormalMinArg), see exp_normal).
// One FMA, scale s - m rounded once, would not do: for the maximal entry it is the rounding error of m,
// up to ulp(m)/2, far outside exp's range for large |m|. With Band, key j of row i counts only if
// band_lo <= j - i <= band_hi; the others get p = 0 (row i's visible keys are one interval, so this is a
// lane compare, not a mask load).
template <class F, bool Band>
void softmax_step_plain(typename F::T* s, std::size_t lds, std::size_t rows, std::size_t keys,
                        const attn_scores<typename F::T>& sc, typename F::T* m, double* l, typename F::T* alpha) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    constexpr std::size_t kChunk = 64;  // rows per phase (the per-row maxima live on the stack)
    const T scale = sc.scale;
    const V ninf = F::set1(-__builtin_huge_val()), pinf = F::set1(__builtin_huge_val());
    const V vscale = F::set1(scale), tnorm = F::set1(normal_min_arg(F{}));
    const V lanes = iota(F{});
    const bool neg = scale < 0;
    const std::size_t full = keys / N * N;
    const auto mk = F::tail_mask(keys - full);
    auto clampT = [](std::ptrdiff_t v) { return T(v < -(1 << 22) ? -(1 << 22) : v > (1 << 22) ? (1 << 22) : v); };
    // Lanes of row i that count: inside the band (all of them without Band).
    auto inside = [&](std::size_t i, std::size_t j) {
        const V jv = F::add(F::set1(T(j)), lanes);
        return F::and_(F::ge(jv, F::set1(clampT(sc.band_lo + static_cast<std::ptrdiff_t>(i)))),
                       F::le(jv, F::set1(clampT(sc.band_hi + static_cast<std::ptrdiff_t>(i)))));
    };
    // Three phases per chunk of rows, so the short serial parts of each row (the horizontal max, the
    // rescale factor, the horizontal sum) are batched instead of sitting between the long loops:
    // (1) row maxima, (2) the rescale factors of 8 (or 4) rows at once, (3) p = exp(t) and the row sums.
    alignas(32) T m_new[kChunk + 8];
    for (std::size_t c0 = 0; c0 < rows; c0 += kChunk) {
        const std::size_t nr = rows - c0 < kChunk ? rows - c0 : kChunk;
        for (std::size_t r = 0; r < nr; ++r) {
            const std::size_t i = c0 + r;
            const T* si = s + i * lds;
            V hi0 = ninf, hi1 = ninf, lo0 = pinf, lo1 = pinf;
            std::size_t j = 0;
            for (; j + 2 * N <= full; j += 2 * N) {
                const V a = F::load(si + j), b = F::load(si + j + N);
                if constexpr (Band) {
                    const V ia = inside(i, j), ib = inside(i, j + N);
                    hi0 = F::max(hi0, F::blend(ninf, a, ia));
                    hi1 = F::max(hi1, F::blend(ninf, b, ib));
                    lo0 = F::min(lo0, F::blend(pinf, a, ia));
                    lo1 = F::min(lo1, F::blend(pinf, b, ib));
                } else {
                    hi0 = F::max(hi0, a);
                    hi1 = F::max(hi1, b);
                    lo0 = F::min(lo0, a);
                    lo1 = F::min(lo1, b);
                }
            }
            for (; j < keys; j += N) {
                V in = j < full ? F::eq(F::zero(), F::zero()) : F::mask_v(mk);
                if constexpr (Band) in = F::and_(in, inside(i, j));
                const V a = j < full ? F::load(si + j) : F::load_tail(si + j, mk);
                hi1 = F::max(hi1, F::blend(ninf, a, in));
                lo1 = F::min(lo1, F::blend(pinf, a, in));
            }
            const T ext = neg ? -F::hmax(F::sub(F::zero(), F::min(lo0, lo1))) : F::hmax(F::max(hi0, hi1));
            const T m_old = m[i];
            T mn = static_cast<T>(ext * scale);
            if (!(mn >= m_old)) mn = m_old == m_old ? m_old : mn;  // the running max (NaN-safe)
            m_new[r] = mn;
        }
        // alpha = exp(m_old - m_new); 1 while the maximum is -inf (and exactly 1 when it did not move).
        for (std::size_t r = 0; r < nr; r += N) {
            alignas(32) T mo[N], mn[N], xl[N], a[N];
            for (std::size_t t = 0; t < N; ++t) {
                const bool live = r + t < nr;
                mo[t] = live ? m[c0 + r + t] : T(0);
                mn[t] = live ? m_new[r + t] : T(0);
                xl[t] = F::clamp_below(mn[t]);  // m_old = -inf is clamped there: exp underflows to 0
            }
            const V vn = F::load(mn);
            const arg<F, false> ex(T(0), {T(1), T(0)});
            V av = ex.exp_of(F::load(mo), F::sub(F::zero(), vn), F::load(xl));
            av = F::blend(av, F::set1(T(1)), F::or_(F::eq(vn, ninf), F::eq(F::load(mo), vn)));
            F::store(a, av);
            for (std::size_t t = 0; t < N && r + t < nr; ++t) alpha[c0 + r + t] = a[t];
        }
        for (std::size_t r = 0; r < nr; ++r) {
            const std::size_t i = c0 + r;
            T* si = s + i * lds;
            const V mv = F::set1(m_new[r] == -__builtin_huge_val() ? T(0) : m_new[r]);
            V sum0 = F::zero(), sum1 = F::zero();
            auto pexp = [&](V x) {
                const V t = F::sub(F::mul(x, vscale), mv);
                return F::andnot(F::lt(t, tnorm), exp_normal(F::max(tnorm, t), F{}));
            };
            std::size_t j = 0;
            for (; j + 2 * N <= full; j += 2 * N) {
                V p0 = pexp(F::load(si + j)), p1 = pexp(F::load(si + j + N));
                if constexpr (Band) {
                    p0 = F::and_(p0, inside(i, j));
                    p1 = F::and_(p1, inside(i, j + N));
                }
                F::store(si + j, p0);
                F::store(si + j + N, p1);
                sum0 = F::add(sum0, p0);
                sum1 = F::add(sum1, p1);
            }
            for (; j < keys; j += N) {
                if (j < full) {
                    V p0 = pexp(F::load(si + j));
                    if constexpr (Band) p0 = F::and_(p0, inside(i, j));
                    F::store(si + j, p0);
                    sum0 = F::add(sum0, p0);
                } else {
                    V p1 = F::and_(pexp(F::load_tail(si + j, mk)), F::mask_v(mk));
                    if constexpr (Band) p1 = F::and_(p1, inside(i, j));
                    F::store_tail(si + j, mk, p1);
                    sum1 = F::add(sum1, p1);
                }
            }
            typename F::Acc acc;
            F::flush(acc, F::add(sum0, sum1));
            l[i] = l[i] * double(alpha[i]) + acc.total();
            m[i] = m_new[r];
        }
    }
}

template <class F>
void k_softmax_step(typename F::T* s, std::size_t lds, std::size_t rows, std::size_t keys,
                    const attn_scores<typename F::T>& sc, typename F::T* m, double* l, typename F::T* alpha) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    if (!(sc.softcap > 0) && sc.alibi_slope == 0 && !sc.bias && !sc.keep)
        return sc.band ? softmax_step_plain<F, true>(s, lds, rows, keys, sc, m, l, alpha)
                       : softmax_step_plain<F, false>(s, lds, rows, keys, sc, m, l, alpha);
    const V ninf = F::set1(-__builtin_huge_val());
    const V scale = F::set1(sc.scale), cap = F::set1(sc.softcap), slope = F::set1(sc.alibi_slope);
    const V tmin = F::set1(arg<F, false>::min_arg());
    const V lanes = iota(F{});
    const V all_ones = F::eq(F::zero(), F::zero());
    const bool capped = sc.softcap > 0, alibi = sc.alibi_slope != 0;
    // Band limits as T: j - i is an exact small integer; limits outside +-2^22 act as "none".
    auto clampT = [](std::ptrdiff_t v) { return T(v < -(1 << 22) ? -(1 << 22) : v > (1 << 22) ? (1 << 22) : v); };
    for (std::size_t i = 0; i < rows; ++i) {
        T* si = s + i * lds;
        const V band_lo = F::set1(clampT(sc.band_lo + static_cast<std::ptrdiff_t>(i)));
        const V band_hi = F::set1(clampT(sc.band_hi + static_cast<std::ptrdiff_t>(i)));
        const V centre = F::set1(T(static_cast<std::ptrdiff_t>(i) + sc.alibi_center));
        const T* brow = sc.bias ? sc.bias + static_cast<std::ptrdiff_t>(i) * sc.bias_ld : nullptr;
        const std::uint8_t* krow = sc.keep ? sc.keep + static_cast<std::ptrdiff_t>(i) * sc.keep_ld : nullptr;
        V mx = ninf;
        // Pass 1: scores (stored back) and their maximum; lanes past `keys` are -inf.
        for (std::size_t j = 0; j < keys; j += N) {
            const std::size_t n = keys - j < N ? keys - j : N;
            const auto mk = F::tail_mask(n);
            V x = F::mul(n == N ? F::load(si + j) : F::load_tail(si + j, mk), scale);
            const V jv = F::add(F::set1(T(j)), lanes);
            if (capped) x = soft_cap<F>(x, cap, tmin);
            if (alibi) {
                const V dist = F::andnot(F::set1(T(-0.0)), F::sub(jv, centre));
                x = F::fnmadd(slope, dist, x);
            }
            if (brow) x = F::add(x, n == N ? F::load(brow + j) : F::load_tail(brow + j, mk));
            V out = F::andnot(F::mask_v(mk), all_ones);  // lanes past the end
            if (krow) out = F::or_(out, masked_out(krow + j, n, F{}));
            if (sc.band) out = F::or_(out, F::or_(F::lt(jv, band_lo), F::gt(jv, band_hi)));
            x = F::blend(x, ninf, out);
            if (n == N) F::store(si + j, x); else F::store_tail(si + j, mk, x);
            mx = F::max(mx, x);
        }
        const T m_old = m[i];
        T m_new = F::hmax(mx);
        if (!(m_new >= m_old)) m_new = m_old == m_old ? m_old : m_new;  // keep the running max (NaN-safe)
        const T mu = m_new == -__builtin_huge_val() ? T(0) : m_new;
        const arg<F, false> ex(mu, {T(1), T(0)});
        const T a = rescale_factor<F>(m_old, m_new);
        // Pass 2: p = exp(x - m) and its sum (working precision within the block, then double).
        V sum = F::zero();
        for (std::size_t j = 0; j < keys; j += N) {
            const std::size_t n = keys - j < N ? keys - j : N;
            if (n == N) {
                const V p = ex.exp_of(F::load(si + j));
                F::store(si + j, p);
                sum = F::add(sum, p);
            } else {
                const auto mk = F::tail_mask(n);
                const V p = F::and_(ex.exp_of(F::load_tail(si + j, mk)), F::mask_v(mk));
                F::store_tail(si + j, mk, p);
                sum = F::add(sum, p);
            }
        }
        typename F::Acc acc;
        F::flush(acc, sum);
        l[i] = l[i] * double(a) + acc.total();
        m[i] = m_new;
        alpha[i] = a;
    }
}

// ---- pv ----------------------------------------------------------------------------------------------
template <class F, int R, bool Tail>
inline void pv_tile(const typename F::T* p, std::size_t ldp, const typename F::T* v, std::ptrdiff_t ldv,
                    std::size_t keys, const typename F::T* alpha, typename F::T* o, std::size_t ldo,
                    typename F::M mk0, typename F::M mk1) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    V a0[R], a1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        const V al = F::set1(alpha[r]);
        a0[r] = F::mul(al, Tail ? F::load_tail(o + r * ldo, mk0) : F::load(o + r * ldo));
        a1[r] = F::mul(al, Tail ? F::load_tail(o + r * ldo + N, mk1) : F::load(o + r * ldo + N));
    }
    for (std::size_t j = 0; j < keys; ++j) {
        const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
        const V b0 = Tail ? F::load_tail(vj, mk0) : F::load(vj);
        const V b1 = Tail ? F::load_tail(vj + N, mk1) : F::load(vj + N);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const V a = F::set1(p[r * ldp + j]);
            a0[r] = F::fmadd(a, b0, a0[r]);
            a1[r] = F::fmadd(a, b1, a1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        if (Tail) {
            F::store_tail(o + r * ldo, mk0, a0[r]);
            F::store_tail(o + r * ldo + N, mk1, a1[r]);
        } else {
            F::store(o + r * ldo, a0[r]);
            F::store(o + r * ldo + N, a1[r]);
        }
    }
}

template <class F, bool Tail>
void pv_cols(const typename F::T* p, std::size_t ldp, const typename F::T* v, std::ptrdiff_t ldv, std::size_t rows,
             std::size_t keys, const typename F::T* alpha, typename F::T* o, std::size_t ldo, typename F::M mk0,
             typename F::M mk1) {
    std::size_t i = 0;
    for (; i + kAttnRows <= rows; i += kAttnRows)
        pv_tile<F, kAttnRows, Tail>(p + i * ldp, ldp, v, ldv, keys, alpha + i, o + i * ldo, ldo, mk0, mk1);
    const auto *pi = p + i * ldp, *ai = alpha + i;
    auto* oi = o + i * ldo;
    switch (rows - i) {
        case 5: pv_tile<F, 5, Tail>(pi, ldp, v, ldv, keys, ai, oi, ldo, mk0, mk1); break;
        case 4: pv_tile<F, 4, Tail>(pi, ldp, v, ldv, keys, ai, oi, ldo, mk0, mk1); break;
        case 3: pv_tile<F, 3, Tail>(pi, ldp, v, ldv, keys, ai, oi, ldo, mk0, mk1); break;
        case 2: pv_tile<F, 2, Tail>(pi, ldp, v, ldv, keys, ai, oi, ldo, mk0, mk1); break;
        case 1: pv_tile<F, 1, Tail>(pi, ldp, v, ldv, keys, ai, oi, ldo, mk0, mk1); break;
        default: break;
    }
}

// One row x 8 vectors (64 float32 / 32 float64 columns): for a few rows (decoding) each value row is read
// in long contiguous pieces (8 accumulators, the FMAs take their V operand from memory).
template <class F>
void pv_wide_row(const typename F::T* p, const typename F::T* v, std::ptrdiff_t ldv, std::size_t keys,
                 typename F::T alpha, typename F::T* o) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    const V al = F::set1(alpha);
    V a[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) a[c] = F::mul(al, F::load(o + c * N));
    for (std::size_t j = 0; j < keys; ++j) {
        const V pj = F::set1(p[j]);
        const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
        constexpr std::size_t L = 64 / sizeof(typename F::T);  // one prefetch per cache line
        for (std::size_t c = 0; c < 8 * N; c += L)
            _mm_prefetch(reinterpret_cast<const char*>(vj + kPrefetchRows * ldv + std::ptrdiff_t(c)), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) a[c] = F::fmadd(pj, F::load(vj + c * N), a[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) F::store(o + c * N, a[c]);
}

template <class F>
void k_pv(const typename F::T* p, std::size_t ldp, const typename F::T* v, std::ptrdiff_t ldv, std::size_t rows,
          std::size_t keys, std::size_t dv, const typename F::T* alpha, typename F::T* o, std::size_t ldo) {
    constexpr std::size_t N = F::N;
    if (rows <= 2 && dv >= 8 * N) {
        const std::size_t wide = dv / (8 * N) * (8 * N);
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t c = 0; c < wide; c += 8 * N) pv_wide_row<F>(p + i * ldp, v + c, ldv, keys, alpha[i], o + i * ldo + c);
        if (wide < dv) k_pv<F>(p, ldp, v + wide, ldv, rows, keys, dv - wide, alpha, o + wide, ldo);
        return;
    }
    const auto full = F::tail_mask(N);
    const std::size_t RB = kAttnRows;  // row chunk outer, column panels inner: P rows stay in L1
    for (std::size_t i = 0; i < rows; i += RB) {
    const std::size_t rr = rows - i < RB ? rows - i : RB;
    std::size_t c = 0;
    for (; c + 2 * N <= dv; c += 2 * N) pv_cols<F, false>(p + i * ldp, ldp, v + c, ldv, rr, keys, alpha + i, o + i * ldo + c, ldo, full, full);
    if (c < dv) {
        const std::size_t rem = dv - c;
        const auto mk0 = F::tail_mask(rem < N ? rem : N);
        const auto mk1 = F::tail_mask(rem > N ? rem - N : 0);
        pv_cols<F, true>(p + i * ldp, ldp, v + c, ldv, rr, keys, alpha + i, o + i * ldo + c, ldo, mk0, mk1);
    }
    }
}

// ---- qk_direct (decoding) ----------------------------------------------------------------------------
// Four keys at a time: four accumulators over the head dimension (FMAs, the tail lanes masked), then one
// horizontal reduction of the four into four scores. Each key row is read once, contiguously.
inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}
inline void store4(float* s, __m256 a0, __m256 a1, __m256 a2, __m256 a3) { _mm_storeu_ps(s, hsum4(a0, a1, a2, a3)); }
inline float hsum1(__m256 a) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
inline void store4(double* s, __m256d a0, __m256d a1, __m256d a2, __m256d a3) {
    const __m256d t0 = _mm256_hadd_pd(a0, a1), t1 = _mm256_hadd_pd(a2, a3);  // (a0 01, a1 01, a0 23, a1 23)
    const __m256d lo = _mm256_permute2f128_pd(t0, t1, 0x20), hi = _mm256_permute2f128_pd(t0, t1, 0x31);
    _mm256_storeu_pd(s, _mm256_add_pd(lo, hi));
}
inline double hsum1(__m256d a) {
    __m128d x = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
}

template <class F>
void k_qk_direct(const typename F::T* q, std::size_t ldq, const typename F::T* k, std::ptrdiff_t ldk, std::size_t rows,
                 std::size_t keys, std::size_t dim, typename F::T* s, std::size_t lds) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    const std::size_t full = dim / N * N;
    const auto mk = F::tail_mask(dim - full);
    for (std::size_t i = 0; i < rows; ++i) {
        const auto* qi = q + i * ldq;
        auto* si = s + i * lds;
        std::size_t j = 0;
        for (; j + 4 <= keys; j += 4) {
            const auto* k0 = k + static_cast<std::ptrdiff_t>(j) * ldk;
            const auto *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
            V a0 = F::zero(), a1 = F::zero(), a2 = F::zero(), a3 = F::zero();
            std::size_t d = 0;
            for (; d < full; d += N) {
                const V qv = F::load(qi + d);
                if ((d * sizeof(typename F::T)) % 64 == 0)  // once per cache line of each of the 4 rows
                    for (int r = 0; r < 4; ++r)
                        _mm_prefetch(reinterpret_cast<const char*>(k0 + (kPrefetchRows + r) * ldk + d), _MM_HINT_T0);
                a0 = F::fmadd(qv, F::load(k0 + d), a0);
                a1 = F::fmadd(qv, F::load(k1 + d), a1);
                a2 = F::fmadd(qv, F::load(k2 + d), a2);
                a3 = F::fmadd(qv, F::load(k3 + d), a3);
            }
            if (d < dim) {
                const V qv = F::load_tail(qi + d, mk);
                a0 = F::fmadd(qv, F::load_tail(k0 + d, mk), a0);
                a1 = F::fmadd(qv, F::load_tail(k1 + d, mk), a1);
                a2 = F::fmadd(qv, F::load_tail(k2 + d, mk), a2);
                a3 = F::fmadd(qv, F::load_tail(k3 + d, mk), a3);
            }
            store4(si + j, a0, a1, a2, a3);
        }
        for (; j < keys; ++j) {
            const auto* kj = k + static_cast<std::ptrdiff_t>(j) * ldk;
            V a = F::zero();
            std::size_t d = 0;
            for (; d < full; d += N) a = F::fmadd(F::load(qi + d), F::load(kj + d), a);
            if (d < dim) a = F::fmadd(F::load_tail(qi + d, mk), F::load_tail(kj + d, mk), a);
            si[j] = hsum1(a);
        }
    }
}

template <class F>
attention_kernels<typename F::T> make_attention_kernels() {
    return {k_pack_kt<F>, k_qk<F>, k_softmax_step<F>, k_pv<F>, k_qk_direct<F>};
}

}  // namespace
}  // namespace normexp::avx2

namespace normexp {
const kernel_table& avx2_kernels() {
    static const kernel_table table{"avx2", avx2::make_kernels<avx2::F32>(), avx2::make_kernels<avx2::F64>(),
                                    avx2::make_attention_kernels<avx2::F32>(),
                                    avx2::make_attention_kernels<avx2::F64>()};
    return table;
}
}  // namespace normexp
