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

}  // namespace
}  // namespace normexp::avx2

namespace normexp {
const kernel_table& avx2_kernels() {
    static const kernel_table table{"avx2", avx2::make_kernels<avx2::F32>(), avx2::make_kernels<avx2::F64>(),
                                    avx2::make_attention_kernels_f32(), avx2::make_attention_kernels_f64()};
    return table;
}
}  // namespace normexp
