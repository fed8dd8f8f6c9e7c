// NEON kernels (aarch64 Advanced SIMD, 4 x float32 / 2 x float64 per vector).
//
// Advanced SIMD is part of armv8-a, so this file needs no extra flags; it is compiled only for aarch64
// (cmake/normexpIsa.cmake). Everything here has internal linkage; the only external symbol is
// neon_kernels(). The structure mirrors avx2.cpp: a lane-type traits struct (F32, F64)
// under one set of kernel templates, the same exp algorithm and constants (exp_constants.hpp), the same
// TwoSum-compensated arguments, the same blocked summation and the same tail handling, so the two SIMD
// sets differ only in the intrinsics below.
//
// exp(t + tl):  k = round(t / ln2);  r = (t - k LN2_HI - k LN2_LO) + tl;  p = poly(r);  result = p * 2^k,
// with the two-factor scaling 2^(k>>1) * 2^(k - k>>1) outside the normal range (see avx2.cpp). Every
// step is the same IEEE operation as in the AVX2 kernel (fused multiply-adds in the same places), so the
// error bounds carry over: float32 within 1 ULP, float64 within 1 ULP (tests/cpp/test_exp.cpp, run under
// qemu-aarch64 in CI).
//
// Where NEON differs from AVX2 and how the result is kept the same:
//  * vmaxq/vminq (FMAX/FMIN) return NaN when either operand is NaN; _mm256_max_ps returns its second
//    operand. The kernels never rely on either: row_max and col_max track NaN explicitly (unord) and
//    return/store NaN if any element is NaN, and the clamps in exp see NaN only as the second operand,
//    where both ISAs propagate it.
//  * There are no masked loads or stores: tails use lane loads/stores of exactly the n valid elements
//    (never touching memory past the end), with zeros in the unused lanes, like _mm256_maskload.
//
// Every entry of the kernel table is provided: the reductions, the sampling kernels (row_sample_weights
// bit-identical to scalar: the operation sequence of sampling_weights.hpp, one IEEE operation per
// intrinsic) and, from neon/attention.cpp (kernels/generic/attention.hpp over neon/attention_traits.hpp),
// the attention micro-kernels. The dispatcher would fill a null entry with the scalar one.
#include <arm_neon.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "exp_constants.hpp"
#include "kernel_table.hpp"
#include "sampling_weights.hpp"

namespace normexp::neon {
namespace {

using namespace normexp::expc;

alignas(16) const std::uint32_t kTailMask32[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
alignas(16) const std::uint64_t kTailMask64[4] = {~0ull, ~0ull, 0, 0};

#define NX_LIKELY(x) __builtin_expect(!!(x), 1)

// ------------------------------------------------------------------------------------------------------
// Double accumulators for the flushed block sums.
struct acc_plain {  // float32 sums: double has 29 spare bits, plain addition is enough
    float64x2_t s = vdupq_n_f64(0.0);
    void add(float64x2_t v) { s = vaddq_f64(s, v); }
    double total() const { return vgetq_lane_f64(s, 0) + vgetq_lane_f64(s, 1); }
};
struct acc_neumaier {  // float64 sums: Neumaier compensation per lane
    float64x2_t s = vdupq_n_f64(0.0), c = vdupq_n_f64(0.0);
    void add(float64x2_t v) {
        const float64x2_t t = vaddq_f64(s, v);
        const uint64x2_t big_s = vcgeq_f64(vabsq_f64(s), vabsq_f64(v));
        const float64x2_t cs = vaddq_f64(vsubq_f64(s, t), v);
        const float64x2_t cv = vaddq_f64(vsubq_f64(v, t), s);
        c = vaddq_f64(c, vbslq_f64(big_s, cs, cv));
        s = t;
    }
    double total() const {
        const double a[2] = {vgetq_lane_f64(s, 0), vgetq_lane_f64(s, 1)};
        const double b[2] = {vgetq_lane_f64(c, 0), vgetq_lane_f64(c, 1)};
        double hi = 0, lo = 0;
        for (int i = 0; i < 2; ++i) {
            const double t = hi + a[i];
            lo += (hi >= a[i] ? (hi - t) + a[i] : (a[i] - t) + hi) + b[i];
            hi = t;
        }
        return hi + lo;
    }
};

// A tail: the first n lanes are valid (n <= N); m has all bits set in those lanes.
struct mask32 {
    uint32x4_t m;
    std::size_t n;
};
struct mask64 {
    uint64x2_t m;
    std::size_t n;
};

// ------------------------------------------------------------------------------------------------------
struct F32 {
    using T = float;
    using V = float32x4_t;
    using M = mask32;
    using Acc = acc_plain;
    static constexpr std::size_t N = 4;

    static V load(const T* p) { return vld1q_f32(p); }
    static void store(T* p, V v) { vst1q_f32(p, v); }
    static M tail_mask(std::size_t n) { return {vld1q_u32(kTailMask32 + 4 - n), n}; }
    static V load_tail(const T* p, M mk) {
        const float32x2_t z = vdup_n_f32(0.0f);
        switch (mk.n) {
            case 1: return vcombine_f32(vld1_lane_f32(p, z, 0), z);
            case 2: return vcombine_f32(vld1_f32(p), z);
            case 3: return vcombine_f32(vld1_f32(p), vld1_lane_f32(p + 2, z, 0));
            case 4: return vld1q_f32(p);
            default: return vdupq_n_f32(0.0f);
        }
    }
    static void store_tail(T* p, M mk, V v) {
        switch (mk.n) {
            case 1: vst1q_lane_f32(p, v, 0); break;
            case 2: vst1_f32(p, vget_low_f32(v)); break;
            case 3: vst1_f32(p, vget_low_f32(v)); vst1q_lane_f32(p + 2, v, 2); break;
            case 4: vst1q_f32(p, v); break;
            default: break;
        }
    }
    static V mask_v(M mk) { return vreinterpretq_f32_u32(mk.m); }
    static V set1(T v) { return vdupq_n_f32(v); }
    static V zero() { return vdupq_n_f32(0.0f); }
    static V add(V a, V b) { return vaddq_f32(a, b); }
    static V sub(V a, V b) { return vsubq_f32(a, b); }
    static V mul(V a, V b) { return vmulq_f32(a, b); }
    static V fmadd(V a, V b, V c) { return vfmaq_f32(c, a, b); }              // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return vfmsq_f32(c, a, b); }             // c - a*b, one rounding
    static V fmsub(V a, V b, V c) { return vfmaq_f32(vnegq_f32(c), a, b); }   // a*b - c, one rounding
    static V max(V a, V b) { return vmaxq_f32(a, b); }  // NaN if either is NaN (see the header)
    static V min(V a, V b) { return vminq_f32(a, b); }
    static V eq(V a, V b) { return vreinterpretq_f32_u32(vceqq_f32(a, b)); }   // ordered: false on NaN
    static V ge(V a, V b) { return vreinterpretq_f32_u32(vcgeq_f32(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f32_u32(vcltq_f32(a, b)); }
    static V gt(V a, V b) { return vreinterpretq_f32_u32(vcgtq_f32(a, b)); }
    static V unord(V a, V b) {  // true where a or b is NaN
        return vreinterpretq_f32_u32(vmvnq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b))));
    }
    static uint32x4_t u(V a) { return vreinterpretq_u32_f32(a); }
    static V and_(V a, V b) { return vreinterpretq_f32_u32(vandq_u32(u(a), u(b))); }
    static V andnot(V a, V b) { return vreinterpretq_f32_u32(vbicq_u32(u(b), u(a))); }  // ~a & b
    static V or_(V a, V b) { return vreinterpretq_f32_u32(vorrq_u32(u(a), u(b))); }
    static V blend(V a, V b, V m) { return vbslq_f32(u(m), b, a); }  // m ? b : a
    static bool any(V m) { return vmaxvq_u32(u(m)) != 0; }
    static T hmax(V v) { return vmaxvq_f32(v); }  // only called on NaN-free vectors
    template <class A>
    static void flush(A& acc, V v) {
        acc.add(vaddq_f64(vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v)));
    }
    // Counts of entries equal to the maximum, as int32 lanes (blocks are bounded).
    using C = int32x4_t;
    static C count_zero() { return vdupq_n_s32(0); }
    static C count_add(C c, V m) { return vsubq_s32(c, vreinterpretq_s32_f32(m)); }
    static double count_total(C c) { return static_cast<double>(vaddlvq_s32(c)); }
    // dst[0..n) += v (columns), n = N when full.
    static void add_to_doubles(double* dst, V v, M mk, bool full) {
        const float64x2_t lo = vcvt_f64_f32(vget_low_f32(v));
        const float64x2_t hi = vcvt_high_f64_f32(v);
        if (full) {
            vst1q_f64(dst, vaddq_f64(vld1q_f64(dst), lo));
            vst1q_f64(dst + 2, vaddq_f64(vld1q_f64(dst + 2), hi));
        } else {
            double a[4];
            vst1q_f64(a, lo);
            vst1q_f64(a + 2, hi);
            for (std::size_t i = 0; i < mk.n; ++i) dst[i] += a[i];
        }
    }

    static V pow2(int32x4_t k) {  // 2^k for k in [-126, 127]
        return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
    }
    // exp(t + tl) for t in [kMinArgF, kMaxArgF] (or NaN). FullRange: t may exceed 88.
    template <bool FullRange>
    static V exp_core(V t, V tl) {
        const V k = vrndnq_f32(mul(t, set1(kLog2eF)));  // round to nearest, ties to even
        V r = fnmadd(k, set1(kLn2HiF), t);
        r = fnmadd(k, set1(kLn2LoF), r);
        r = add(r, tl);
        V q = fmadd(set1(kC6F), r, set1(kC5F));
        q = fmadd(q, r, set1(kC4F));
        q = fmadd(q, r, set1(kC3F));
        q = fmadd(q, r, set1(kC2F));
        const V p = add(fmadd(mul(r, r), q, r), set1(1.0f));
        const int32x4_t ki = vcvtq_s32_f32(k);  // exact: k is an integer (NaN converts to 0)
        V outside = lt(t, set1(kNormalMinArgF));
        if (FullRange) outside = or_(outside, gt(t, set1(88.0f)));
        if (NX_LIKELY(!any(outside))) return mul(p, pow2(ki));
        const int32x4_t k1 = vshrq_n_s32(ki, 1);  // arithmetic shift: floor(k/2)
        const int32x4_t k2 = vsubq_s32(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }

    // float32 log_softmax: beta (x - m) - c evaluated in double (x - m exact), rounded once.
    static V narrow(float64x2_t lo, float64x2_t hi) { return vcvt_high_f32_f64(vcvt_f32_f64(lo), hi); }
    static V log_softmax(V x, double m, double beta, double c, bool scaled) {
        const float64x2_t md = vdupq_n_f64(m), cd = vdupq_n_f64(c), bd = vdupq_n_f64(beta);
        float64x2_t lo = vsubq_f64(vcvt_f64_f32(vget_low_f32(x)), md);
        float64x2_t hi = vsubq_f64(vcvt_high_f64_f32(x), md);
        if (scaled) {
            lo = vmulq_f64(lo, bd);
            hi = vmulq_f64(hi, bd);
        }
        return narrow(vsubq_f64(lo, cd), vsubq_f64(hi, cd));
    }
    static V log_softmax_cols(V x, V m, double beta, const double* c, bool scaled) {
        const float64x2_t bd = vdupq_n_f64(beta);
        float64x2_t lo = vsubq_f64(vcvt_f64_f32(vget_low_f32(x)), vcvt_f64_f32(vget_low_f32(m)));
        float64x2_t hi = vsubq_f64(vcvt_high_f64_f32(x), vcvt_high_f64_f32(m));
        if (scaled) {
            lo = vmulq_f64(lo, bd);
            hi = vmulq_f64(hi, bd);
        }
        return narrow(vsubq_f64(lo, vld1q_f64(c)), vsubq_f64(hi, vld1q_f64(c + 2)));
    }
};

struct F64 {
    using T = double;
    using V = float64x2_t;
    using M = mask64;
    using Acc = acc_neumaier;
    static constexpr std::size_t N = 2;

    static V load(const T* p) { return vld1q_f64(p); }
    static void store(T* p, V v) { vst1q_f64(p, v); }
    static M tail_mask(std::size_t n) { return {vld1q_u64(kTailMask64 + 2 - n), n}; }
    static V load_tail(const T* p, M mk) {
        switch (mk.n) {
            case 1: return vld1q_lane_f64(p, vdupq_n_f64(0.0), 0);
            case 2: return vld1q_f64(p);
            default: return vdupq_n_f64(0.0);
        }
    }
    static void store_tail(T* p, M mk, V v) {
        if (mk.n == 1) vst1q_lane_f64(p, v, 0);
        else if (mk.n == 2) vst1q_f64(p, v);
    }
    static V mask_v(M mk) { return vreinterpretq_f64_u64(mk.m); }
    static V set1(T v) { return vdupq_n_f64(v); }
    static V zero() { return vdupq_n_f64(0.0); }
    static V add(V a, V b) { return vaddq_f64(a, b); }
    static V sub(V a, V b) { return vsubq_f64(a, b); }
    static V mul(V a, V b) { return vmulq_f64(a, b); }
    static V fmadd(V a, V b, V c) { return vfmaq_f64(c, a, b); }
    static V fnmadd(V a, V b, V c) { return vfmsq_f64(c, a, b); }
    static V fmsub(V a, V b, V c) { return vfmaq_f64(vnegq_f64(c), a, b); }
    static V max(V a, V b) { return vmaxq_f64(a, b); }
    static V min(V a, V b) { return vminq_f64(a, b); }
    static V eq(V a, V b) { return vreinterpretq_f64_u64(vceqq_f64(a, b)); }
    static V ge(V a, V b) { return vreinterpretq_f64_u64(vcgeq_f64(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f64_u64(vcltq_f64(a, b)); }
    static V gt(V a, V b) { return vreinterpretq_f64_u64(vcgtq_f64(a, b)); }
    static uint64x2_t u(V a) { return vreinterpretq_u64_f64(a); }
    static V unord(V a, V b) {
        const uint64x2_t ord = vandq_u64(vceqq_f64(a, a), vceqq_f64(b, b));
        return vreinterpretq_f64_u32(vmvnq_u32(vreinterpretq_u32_u64(ord)));
    }
    static V and_(V a, V b) { return vreinterpretq_f64_u64(vandq_u64(u(a), u(b))); }
    static V andnot(V a, V b) { return vreinterpretq_f64_u64(vbicq_u64(u(b), u(a))); }
    static V or_(V a, V b) { return vreinterpretq_f64_u64(vorrq_u64(u(a), u(b))); }
    static V blend(V a, V b, V m) { return vbslq_f64(u(m), b, a); }
    static bool any(V m) { return vmaxvq_u32(vreinterpretq_u32_f64(m)) != 0; }
    static T hmax(V v) { return vmaxvq_f64(v); }
    template <class A>
    static void flush(A& acc, V v) { acc.add(v); }
    using C = int64x2_t;
    static C count_zero() { return vdupq_n_s64(0); }
    static C count_add(C c, V m) { return vsubq_s64(c, vreinterpretq_s64_f64(m)); }
    static double count_total(C c) { return static_cast<double>(vaddvq_s64(c)); }
    static void add_to_doubles(double* dst, V v, M mk, bool full) {
        if (full || mk.n == 2)
            vst1q_f64(dst, vaddq_f64(vld1q_f64(dst), v));
        else if (mk.n == 1)
            dst[0] += vgetq_lane_f64(v, 0);
    }

    static V pow2(int64x2_t k) {  // 2^k for k in [-1022, 1023]
        return vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(k, vdupq_n_s64(1023)), 52));
    }
    template <bool FullRange>
    static V exp_core(V t, V tl) {
        // k by the 1.5*2^52 shifter: the integer k sits in the low mantissa bits of ks.
        const V ks = fmadd(t, set1(kLog2eD), set1(kShifterD));
        const V k = sub(ks, set1(kShifterD));
        const int64x2_t ki = vsubq_s64(vreinterpretq_s64_f64(ks), vreinterpretq_s64_f64(set1(kShifterD)));
        V r = fnmadd(k, set1(kLn2HiD), t);
        r = fnmadd(k, set1(kLn2LoD), r);
        r = add(r, tl);
        V p = set1(kInvFact[13]);
        for (int i = 12; i >= 0; --i) p = fmadd(p, r, set1(kInvFact[i]));
        V outside = lt(t, set1(kNormalMinArgD));
        if (FullRange) outside = or_(outside, gt(t, set1(709.0)));
        if (NX_LIKELY(!any(outside))) return mul(p, pow2(ki));
        const int64x2_t k1 = vshrq_n_s64(ki, 1);  // arithmetic shift: floor(k/2)
        const int64x2_t k2 = vsubq_s64(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
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
    V nm, bh, bl, tmin;
    arg(typename F::T m, scale2<typename F::T> beta)
        : nm(F::set1(-m)), bh(F::set1(beta.hi)), bl(F::set1(beta.lo)), tmin(F::set1(min_arg())) {}
    static typename F::T min_arg() {
        if constexpr (sizeof(typename F::T) == 4) return kMinArgF; else return kMinArgD;
    }
    // exp(beta (x - m)) for a vector x and a per-lane maximum given as -m (columns) or the row's.
    V exp_of(V x, V negm) const {
        const V d = F::add(x, negm);
        const V bb = F::sub(d, x);
        V e = F::add(F::sub(x, F::sub(d, bb)), F::sub(negm, bb));  // TwoSum: x - m = d + e exactly
        V hi = d, lo = e;
        if constexpr (Scaled) {
            hi = F::mul(d, bh);
            lo = F::fmadd(e, bh, F::fmadd(d, bl, F::fmsub(d, bh, hi)));
        }
        const V keep = F::ge(hi, tmin);  // false for -inf, NaN and far underflow
        lo = F::and_(lo, keep);
        hi = F::max(tmin, hi);
        return F::template exp_core<false>(hi, lo);
    }
    V exp_of(V x) const { return exp_of(x, nm); }
};

// Sum of contrib(i) over full vectors i = 0, N, ... and contrib_tail(i, mask) for the remainder,
// summed pairwise in blocks of 8 vectors and flushed to double.
template <class F, class Full, class Tail>
double blocked_sum(std::size_t n, Full full, Tail tail) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    typename F::Acc acc;
    std::size_t i = 0;
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
void k_exp(const typename F::T* x, typename F::T* y, std::size_t n) {
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
typename F::T k_row_max(const typename F::T* x, std::size_t n) {
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
exp_sum row_exp_sum_impl(const typename F::T* x, std::size_t n, typename F::T m, scale2<typename F::T> beta) {
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
exp_sum k_row_exp_sum(const typename F::T* x, std::size_t n, typename F::T m, scale2<typename F::T> beta) {
    return beta.lo == 0 && beta.hi == 1 ? row_exp_sum_impl<F, false>(x, n, m, beta)
                                        : row_exp_sum_impl<F, true>(x, n, m, beta);
}

template <class F, bool Scaled>
double row_exp_store_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
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
double k_row_exp_store(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                       scale2<typename F::T> beta) {
    return beta.lo == 0 && beta.hi == 1 ? row_exp_store_impl<F, false>(x, y, n, m, beta)
                                        : row_exp_store_impl<F, true>(x, y, n, m, beta);
}

template <class F>
void k_row_scale(typename F::T* y, std::size_t n, typename F::T c) {
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
void row_exp_scale_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
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
void k_row_exp_scale(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                     scale2<typename F::T> beta, typename F::T c) {
    if (beta.lo == 0 && beta.hi == 1)
        row_exp_scale_impl<F, false>(x, y, n, m, beta, c);
    else
        row_exp_scale_impl<F, true>(x, y, n, m, beta, c);
}

// log_softmax per vector: float32 via double, float64 via TwoSum/TwoProduct.
template <class F>
struct log_softmax_op;
template <>
struct log_softmax_op<F32> {
    double m, beta;
    bool scaled;
    log_softmax_op(float m_, scale2<float> b) : m(m_), beta(double(b.hi) + double(b.lo)), scaled(!(b.lo == 0 && b.hi == 1)) {}
    F32::V row(F32::V x, double c) const { return F32::log_softmax(x, m, beta, c, scaled); }
    F32::V col(F32::V x, F32::V mv, const double* c) const { return F32::log_softmax_cols(x, mv, beta, c, scaled); }
};
template <>
struct log_softmax_op<F64> {
    F64::V bh, bl;
    bool scaled;
    double m;
    log_softmax_op(double m_, scale2<double> b) : bh(F64::set1(b.hi)), bl(F64::set1(b.lo)), scaled(!(b.lo == 0 && b.hi == 1)), m(m_) {}
    F64::V two(F64::V x, F64::V mv, F64::V c) const {
        const F64::V d = F64::sub(x, mv);
        const F64::V bb = F64::sub(d, x);
        F64::V e = F64::add(F64::sub(x, F64::sub(d, bb)), F64::sub(F64::sub(F64::zero(), mv), bb));
        F64::V hi = d;
        if (scaled) {
            hi = F64::mul(d, bh);
            e = F64::fmadd(e, bh, F64::fmadd(d, bl, F64::fmsub(d, bh, hi)));
        }
        return F64::log_softmax_2(hi, e, c);
    }
    F64::V row(F64::V x, double c) const { return two(x, F64::set1(m), F64::set1(c)); }
    F64::V col(F64::V x, F64::V mv, const double* c) const { return two(x, mv, vld1q_f64(c)); }
};

template <class F>
void k_row_log_softmax(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
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
// Iterate column vectors j (N lanes, masked at the tail of w); body(j, mask, full).
template <class F, class Body>
void for_col_vectors(std::size_t w, Body body) {
    std::size_t j = 0;
    for (; j + F::N <= w; j += F::N) body(j, F::tail_mask(F::N), true);
    if (j < w) body(j, F::tail_mask(w - j), false);
}

template <class F>
typename F::V load_any(const typename F::T* p, typename F::M mk, bool full) {
    return full ? F::load(p) : F::load_tail(p, mk);
}
template <class F>
void store_any(typename F::T* p, typename F::M mk, bool full, typename F::V v) {
    if (full)
        F::store(p, v);
    else
        F::store_tail(p, mk, v);
}

template <class F, bool Copy>
void col_max_impl(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m,
                  typename F::T* copy) {
    using V = typename F::V;
    for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
        V acc = load_any<F>(m + j, mk, full);
        V nan = F::unord(acc, acc);
        for (std::size_t i = 0; i < rows; ++i) {
            const V v = load_any<F>(x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j), mk, full);
            if constexpr (Copy) store_any<F>(copy + i * w + j, mk, full, v);
            acc = F::max(acc, v);
            nan = F::or_(nan, F::unord(v, v));
        }
        store_any<F>(m + j, mk, full, F::blend(acc, F::set1(typename F::T(__builtin_nan(""))), nan));
    });
}

// m[j] = max(m[j], column j), NaN sticky; with copy, the block is also gathered to copy (rows x w).
template <class F>
void k_col_max(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m,
               typename F::T* copy) {
    if (copy)
        col_max_impl<F, true>(x, rows, sx, w, m, copy);
    else
        col_max_impl<F, false>(x, rows, sx, w, m, nullptr);
}

template <class F, bool Scaled>
void col_exp_sum_impl(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w,
                      const typename F::T* m, scale2<typename F::T> beta, double* rest, double* count) {
    using V = typename F::V;
    const arg<F, Scaled> a(0, beta);
    for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
        const V mv = load_any<F>(m + j, mk, full);
        const V negm = F::sub(F::zero(), mv);
        const V one = F::set1(1);
        std::size_t i = 0;
        auto term = [&](std::size_t r, V& c) {
            const V v = load_any<F>(x + static_cast<std::ptrdiff_t>(r) * sx + static_cast<std::ptrdiff_t>(j), mk, full);
            const V e = F::eq(v, mv);
            c = F::add(c, F::and_(e, one));
            return F::andnot(e, a.exp_of(v, negm));
        };
        if constexpr (std::is_same_v<F, F64>) {
            // float64: the column's terms are Neumaier-summed in registers and added once.
            acc_neumaier acc;
            V c = F::zero();
            for (; i < rows; ++i) acc.add(term(i, c));
            F::add_to_doubles(rest + j, F::add(acc.s, acc.c), mk, full);
            F::add_to_doubles(count + j, c, mk, full);
        }
        while (i < rows) {
            // Blocks of up to 8 rows summed pairwise in working precision, then flushed to double.
            V c = F::zero();
            V s;
            if (i + 8 <= rows) {
                const V s0 = F::add(term(i, c), term(i + 1, c));
                const V s1 = F::add(term(i + 2, c), term(i + 3, c));
                const V s2 = F::add(term(i + 4, c), term(i + 5, c));
                const V s3 = F::add(term(i + 6, c), term(i + 7, c));
                s = F::add(F::add(s0, s1), F::add(s2, s3));
                i += 8;
            } else {
                s = F::zero();
                for (; i < rows; ++i) s = F::add(s, term(i, c));
            }
            F::add_to_doubles(rest + j, s, mk, full);
            F::add_to_doubles(count + j, c, mk, full);
        }
    });
}

template <class F>
void k_col_exp_sum(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const typename F::T* m,
                   scale2<typename F::T> beta, double* rest, double* count) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_sum_impl<F, false>(x, rows, sx, w, m, beta, rest, count);
    else
        col_exp_sum_impl<F, true>(x, rows, sx, w, m, beta, rest, count);
}

template <class F, bool Scaled>
void col_exp_scale_impl(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy,
                        std::size_t rows, std::size_t w, const typename F::T* m, scale2<typename F::T> beta,
                        const typename F::T* c) {
    using V = typename F::V;
    const arg<F, Scaled> a(0, beta);
    for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
        const V negm = F::sub(F::zero(), load_any<F>(m + j, mk, full));
        const V cv = load_any<F>(c + j, mk, full);
        for (std::size_t i = 0; i < rows; ++i) {
            const auto ii = static_cast<std::ptrdiff_t>(i), jj = static_cast<std::ptrdiff_t>(j);
            const V v = load_any<F>(x + ii * sx + jj, mk, full);
            store_any<F>(y + ii * sy + jj, mk, full, F::mul(a.exp_of(v, negm), cv));
        }
    });
}

template <class F>
void k_col_exp_scale(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                     std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const typename F::T* c) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_scale_impl<F, false>(x, sx, y, sy, rows, w, m, beta, c);
    else
        col_exp_scale_impl<F, true>(x, sx, y, sy, rows, w, m, beta, c);
}

template <class F>
void k_col_log_softmax(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                       std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const double* c) {
    using V = typename F::V;
    const log_softmax_op<F> op(0, beta);
    for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
        const V mv = load_any<F>(m + j, mk, full);
        double cbuf[4] = {0, 0, 0, 0};
        for (std::size_t l = 0; l < F::N && j + l < w; ++l) cbuf[l] = c[j + l];
        for (std::size_t i = 0; i < rows; ++i) {
            const auto ii = static_cast<std::ptrdiff_t>(i), jj = static_cast<std::ptrdiff_t>(j);
            const V v = load_any<F>(x + ii * sx + jj, mk, full);
            store_any<F>(y + ii * sy + jj, mk, full, op.col(v, mv, cbuf));
        }
    });
}

// In place on a contiguous rows x w block: x = exp(beta (x - m[j])), column sums in blocks of 8 rows
// summed pairwise in working precision and flushed to double (as col_exp_sum).
template <class F, bool Scaled>
void col_exp_store_impl(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                        scale2<typename F::T> beta, double* sum) {
    using V = typename F::V;
    const arg<F, Scaled> a(0, beta);
    for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
        const V negm = F::sub(F::zero(), load_any<F>(m + j, mk, full));
        typename F::T* xp = x + j;
        auto term = [&](std::size_t r) {
            const V e = a.exp_of(load_any<F>(xp + r * w, mk, full), negm);
            store_any<F>(xp + r * w, mk, full, e);
            return e;
        };
        std::size_t i = 0;
        if constexpr (std::is_same_v<F, F64>) {
            // float64: the column's terms are Neumaier-summed in registers and added once (the plain
            // double accumulation of block sums rounds 1 + tiny at every block).
            acc_neumaier acc;
            for (; i < rows; ++i) acc.add(term(i));
            F::add_to_doubles(sum + j, F::add(acc.s, acc.c), mk, full);
        }
        while (i < rows) {
            V s;
            if (i + 8 <= rows) {
                const V s0 = F::add(term(i), term(i + 1));
                const V s1 = F::add(term(i + 2), term(i + 3));
                const V s2 = F::add(term(i + 4), term(i + 5));
                const V s3 = F::add(term(i + 6), term(i + 7));
                s = F::add(F::add(s0, s1), F::add(s2, s3));
                i += 8;
            } else {
                s = F::zero();
                for (; i < rows; ++i) s = F::add(s, term(i));
            }
            F::add_to_doubles(sum + j, s, mk, full);
        }
    });
}

template <class F>
void k_col_exp_store(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                     scale2<typename F::T> beta, double* sum) {
    if (beta.lo == 0 && beta.hi == 1)
        col_exp_store_impl<F, false>(x, rows, w, m, beta, sum);
    else
        col_exp_store_impl<F, true>(x, rows, w, m, beta, sum);
}

// y[i*sy + j] = x[i*sx + j] * c[j]: one rounding, the same product as scalar.
template <class F>
void k_col_scale(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                 std::size_t w, const typename F::T* c) {
    for (std::size_t i = 0; i < rows; ++i) {
        const auto* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        auto* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, bool full) {
            store_any<F>(yi + j, mk, full, F::mul(load_any<F>(xi + j, mk, full), load_any<F>(c + j, mk, full)));
        });
    }
}

// row_exp_scale_stream: AVX2 uses non-temporal stores here. AArch64 Advanced SIMD has no cache-bypassing
// vector store worth using for this (STNP is only a hint, and most cores still allocate the lines), so
// on NEON the streaming variant is the ordinary row_exp_scale (same results, by construction).

// ==== sampling kernels ==============================================================================
// row_collect_ge: compare 4 vectors with the threshold and, only if any lane passes, turn the lane masks
// into indices (NEON has no movemask: AND with lane bits {1, 2, 4, 8} and add across). NaN compares
// false, so it is never collected.
inline std::uint32_t lane_bits(float32x4_t m) {
    alignas(16) static const std::uint32_t kBits[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(vreinterpretq_u32_f32(m), vld1q_u32(kBits)));
}
inline std::uint32_t lane_bits(float64x2_t m) {
    alignas(16) static const std::uint64_t kBits[2] = {1, 2};
    return static_cast<std::uint32_t>(vaddvq_u64(vandq_u64(vreinterpretq_u64_f64(m), vld1q_u64(kBits))));
}

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
        emit(lane_bits(a), i);
        emit(lane_bits(b), i + N);
        emit(lane_bits(cc), i + 2 * N);
        emit(lane_bits(d), i + 3 * N);
    }
    for (; i + N <= n; i += N) emit(lane_bits(F::ge(F::load(x + i), t)), i);
    if (i < n) {  // the tail's unused lanes load as 0, which may pass: cut them off
        const auto mk = F::tail_mask(n - i);
        emit(lane_bits(F::ge(F::load_tail(x + i, mk), t)) & ((1u << (n - i)) - 1u), i);
    }
    return c;
}

// row_sample_weights: the float32 operation sequence of sampling_weights.hpp, one IEEE operation per
// intrinsic (vmulq/vaddq/vsubq, never vfmaq; the file is built with -ffp-contract=off, so GCC's
// arm_neon.h, which writes vmulq_f32 as a plain a * b, cannot fuse them either). The 8 lane sums L_j of a
// block are two float32x4 accumulators: lo holds L_0..L_3, hi holds L_4..L_7.

// Sampling arguments t = float(beta (x - m)) of x[0..8) as two float32x4 (lanes 0-3, 4-7), and the
// masks x >= thr restricted to the `valid` first lanes.
inline void sample_args(const float* x, std::size_t valid, float m, float beta, float thr, float32x4_t t[2],
                        uint32x4_t keep[2]) {
    for (int h = 0; h < 2; ++h) {
        const std::size_t vh = valid > 4u * h ? valid - 4u * h : 0;
        float32x4_t v;
        uint32x4_t lanes;
        if (vh >= 4) {
            v = vld1q_f32(x + 4 * h);
            lanes = vdupq_n_u32(~0u);
        } else {
            const mask32 mk = F32::tail_mask(vh);
            v = F32::load_tail(x + 4 * h, mk);
            lanes = mk.m;
        }
        keep[h] = vandq_u32(vcgeq_f32(v, vdupq_n_f32(thr)), lanes);
        t[h] = vmulq_f32(vsubq_f32(v, vdupq_n_f32(m)), vdupq_n_f32(beta));
    }
}
inline void sample_args(const double* x, std::size_t valid, double m, double beta, double thr, float32x4_t t[2],
                        uint32x4_t keep[2]) {
    const float64x2_t md = vdupq_n_f64(m), bd = vdupq_n_f64(beta), td = vdupq_n_f64(thr);
    float32x2_t tq[4];
    uint32x2_t kq[4];
    for (int q = 0; q < 4; ++q) {
        const std::size_t vq = valid > 2u * q ? valid - 2u * q : 0;
        float64x2_t v;
        uint64x2_t lanes;
        if (vq >= 2) {
            v = vld1q_f64(x + 2 * q);
            lanes = vdupq_n_u64(~0ull);
        } else {
            const mask64 mk = F64::tail_mask(vq);
            v = F64::load_tail(x + 2 * q, mk);
            lanes = mk.m;
        }
        // (x - m) * beta in float64, then one rounding to float32 (FCVTN, round to nearest even).
        tq[q] = vcvt_f32_f64(vmulq_f64(vsubq_f64(v, md), bd));
        kq[q] = vmovn_u64(vandq_u64(vcgeq_f64(v, td), lanes));  // all-ones/zero 64-bit lanes -> 32-bit
    }
    t[0] = vcombine_f32(tq[0], tq[1]);
    t[1] = vcombine_f32(tq[2], tq[3]);
    keep[0] = vcombine_u32(kq[0], kq[1]);
    keep[1] = vcombine_u32(kq[2], kq[3]);
}

// sample_exp of sampling_weights.hpp on 4 lanes; lanes with !keep or t < kSampleMinArg give +0.
inline float32x4_t sample_exp4(float32x4_t t, uint32x4_t keep) {
    using namespace normexp::sampling;
    const float32x4_t tmin = vdupq_n_f32(kSampleMinArg);
    keep = vandq_u32(keep, vcgeq_f32(t, tmin));
    t = vbslq_f32(keep, t, tmin);  // the dropped lanes (NaN included) compute something harmless
    const float32x4_t sh = vdupq_n_f32(kSampleShifter);
    const float32x4_t kd = vsubq_f32(vaddq_f32(vmulq_f32(t, vdupq_n_f32(kLog2eF)), sh), sh);
    const float32x4_t r = vsubq_f32(vsubq_f32(t, vmulq_f32(kd, vdupq_n_f32(kLn2HiF))),
                                    vmulq_f32(kd, vdupq_n_f32(kLn2LoF)));
    float32x4_t q = vaddq_f32(vmulq_f32(vdupq_n_f32(kC6F), r), vdupq_n_f32(kC5F));
    q = vaddq_f32(vmulq_f32(q, r), vdupq_n_f32(kC4F));
    q = vaddq_f32(vmulq_f32(q, r), vdupq_n_f32(kC3F));
    q = vaddq_f32(vmulq_f32(q, r), vdupq_n_f32(kC2F));
    const float32x4_t p = vaddq_f32(vaddq_f32(vmulq_f32(vmulq_f32(r, r), q), r), vdupq_n_f32(1.0f));
    const float32x4_t w = vmulq_f32(p, F32::pow2(vcvtq_s32_f32(kd)));  // kd is an integer in [-124, 0]
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(w), keep));
}

template <class F>
void k_row_sample_weights(const typename F::T* x, std::size_t n, typename F::T m, typename F::T beta,
                          typename F::T thr, float* w, float* block_sums) {
    constexpr std::size_t B = normexp::sampling::kSampleBlock;
    for (std::size_t b0 = 0; b0 < n; b0 += B) {
        float32x4_t lo = vdupq_n_f32(0.0f), hi = vdupq_n_f32(0.0f);
        for (std::size_t q = 0; q < B / 8 && b0 + 8 * q < n; ++q) {
            const std::size_t i = b0 + 8 * q, valid = n - i;
            float32x4_t t[2];
            uint32x4_t keep[2];
            sample_args(x + i, valid, m, beta, thr, t, keep);
            const float32x4_t w0 = sample_exp4(t[0], keep[0]), w1 = sample_exp4(t[1], keep[1]);
            // L_j = ((w[j] + w[8+j]) + ...): the first add is 0 + w[j] = w[j] exactly (w >= +0).
            lo = vaddq_f32(lo, w0);
            hi = vaddq_f32(hi, w1);
            if (w) {
                if (valid >= 8) {
                    vst1q_f32(w + i, w0);
                    vst1q_f32(w + i + 4, w1);
                } else if (valid > 4) {
                    vst1q_f32(w + i, w0);
                    F32::store_tail(w + i + 4, F32::tail_mask(valid - 4), w1);
                } else {
                    F32::store_tail(w + i, F32::tail_mask(valid), w0);
                }
            }
        }
        if (block_sums) {
            // s_j = L_j + L_{j+4}; (s0 + s2), (s1 + s3); their sum. Missing vectors of a short last block
            // would add +0, which changes no bit, so they are skipped (as on AVX2).
            const float32x4_t s = vaddq_f32(lo, hi);
            const float32x2_t u = vadd_f32(vget_low_f32(s), vget_high_f32(s));  // {s0 + s2, s1 + s3}
            block_sums[b0 / B] = vget_lane_f32(u, 0) + vget_lane_f32(u, 1);
        }
    }
}

template <class F>
reduction_kernels<typename F::T> make_kernels() {
    return {k_exp<F>,            k_row_max<F>,          k_row_exp_sum<F>,     k_row_exp_store<F>,
            k_row_scale<F>,      k_row_exp_scale<F>,    k_row_log_softmax<F>, k_col_max<F>,
            k_col_exp_sum<F>,    k_col_exp_scale<F>,    k_col_log_softmax<F>, k_col_exp_store<F>,
            k_col_scale<F>,      k_row_exp_scale<F>,  // row_exp_scale_stream: see above
            k_row_collect_ge<F>, k_row_sample_weights<F>};
}

}  // namespace
}  // namespace normexp::neon

namespace normexp {
const kernel_table& neon_kernels() {
    // Every entry is filled; an entry left null would run the scalar kernel (dispatch.cpp, with_fallback).
    static const kernel_table table{"neon", neon::make_kernels<neon::F32>(), neon::make_kernels<neon::F64>(),
                                    neon::make_attention_kernels_f32(), neon::make_attention_kernels_f64()};
    return table;
}
}  // namespace normexp
