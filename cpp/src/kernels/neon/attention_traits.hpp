// NEON (aarch64 Advanced SIMD) vector traits of the attention kernels (4 x float32 / 2 x float64 per register).
//
// Included only by kernels/neon/attention.cpp (aarch64 builds; Advanced SIMD is armv8-a baseline, no flags).
// Everything is in an anonymous namespace inside normexp::neon (internal linkage; see
// tests/isa/check_isa_objects.cmake).
//
// Two layers, as in kernels/avx2/attention_traits.hpp:
//  1. General vector traits (F32, F64). OVERLAP: the same operations and instruction sequences as the F32/F64
//     traits of the reduction kernels in kernels/neon.cpp (moving to kernels/neon/traits.hpp); deleted at the
//     merge in favour of that header.
//  2. Attention traits (AttnF32, AttnF64, deriving from layer 1 and AttnNeon) used by
//     kernels/generic/attention.hpp.
//
// NEON has no masked loads or stores: a tail mask carries its lane count n, and tails use lane loads/stores
// of exactly the n valid elements (zeros in the other lanes, like _mm256_maskload).
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "../exp_constants.hpp"
#include "../kernel_table.hpp"

namespace normexp::neon {
namespace {

using namespace normexp::expc;

#define NX_ATTN_LIKELY(x) __builtin_expect(!!(x), 1)

// ======================================================================================================
// Layer 1: general vector traits (OVERLAP with the reduction traits of kernels/neon.cpp; see the header).
// ======================================================================================================

alignas(16) const std::uint32_t kAttnTailMask32[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
alignas(16) const std::uint64_t kAttnTailMask64[4] = {~0ull, ~0ull, 0, 0};

// Double accumulators of the block sums (float32: plain; float64: Neumaier-compensated per lane).
struct acc_plain {
    float64x2_t s = vdupq_n_f64(0.0);
    void add(float64x2_t v) { s = vaddq_f64(s, v); }
    double total() const { return vgetq_lane_f64(s, 0) + vgetq_lane_f64(s, 1); }
};
struct acc_neumaier {
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

struct F32 {
    using T = float;
    using V = float32x4_t;
    using M = mask32;
    using Acc = acc_plain;
    static constexpr std::size_t N = 4;

    static V load(const T* p) { return vld1q_f32(p); }
    static void store(T* p, V v) { vst1q_f32(p, v); }
    static M tail_mask(std::size_t n) { return {vld1q_u32(kAttnTailMask32 + 4 - n), n}; }
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
    static V fmadd(V a, V b, V c) { return vfmaq_f32(c, a, b); }   // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return vfmsq_f32(c, a, b); }  // c - a*b, one rounding
    static V max(V a, V b) { return vmaxq_f32(a, b); }  // NaN if either is NaN
    static V ge(V a, V b) { return vreinterpretq_f32_u32(vcgeq_f32(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f32_u32(vcltq_f32(a, b)); }
    static uint32x4_t u(V a) { return vreinterpretq_u32_f32(a); }
    static V and_(V a, V b) { return vreinterpretq_f32_u32(vandq_u32(u(a), u(b))); }
    static bool any(V m) { return vmaxvq_u32(u(m)) != 0; }
    static void flush(Acc& acc, V v) { acc.add(vaddq_f64(vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v))); }
    static V pow2(int32x4_t k) {  // 2^k for k in [-126, 127]
        return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
    }
    // exp(t + tl) for t in [kMinArgF, 88] or NaN (exp_constants.hpp: Cody-Waite reduction, degree-6 minimax
    // polynomial, <= 1 ULP): k = round-to-nearest-even(t / ln2) by FRINTN, p = 1 + (r + r^2 q); subnormal
    // results take 2^k as 2^(k>>1) * 2^(k - k>>1).
    static V exp_core(V t, V tl) {
        const V k = vrndnq_f32(mul(t, set1(kLog2eF)));
        V r = fnmadd(k, set1(kLn2HiF), t);
        r = fnmadd(k, set1(kLn2LoF), r);
        r = add(r, tl);
        V q = fmadd(set1(kC6F), r, set1(kC5F));
        q = fmadd(q, r, set1(kC4F));
        q = fmadd(q, r, set1(kC3F));
        q = fmadd(q, r, set1(kC2F));
        const V p = add(fmadd(mul(r, r), q, r), set1(1.0f));
        const int32x4_t ki = vcvtq_s32_f32(k);  // exact: k is an integer (NaN converts to 0)
        const V outside = lt(t, set1(kNormalMinArgF));
        if (NX_ATTN_LIKELY(!any(outside))) return mul(p, pow2(ki));
        const int32x4_t k1 = vshrq_n_s32(ki, 1);  // arithmetic shift: floor(k/2)
        const int32x4_t k2 = vsubq_s32(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }
    static constexpr T kMinArg = kMinArgF;
};

struct F64 {
    using T = double;
    using V = float64x2_t;
    using M = mask64;
    using Acc = acc_neumaier;
    static constexpr std::size_t N = 2;

    static V load(const T* p) { return vld1q_f64(p); }
    static void store(T* p, V v) { vst1q_f64(p, v); }
    static M tail_mask(std::size_t n) { return {vld1q_u64(kAttnTailMask64 + 2 - n), n}; }
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
    static V max(V a, V b) { return vmaxq_f64(a, b); }
    static V ge(V a, V b) { return vreinterpretq_f64_u64(vcgeq_f64(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f64_u64(vcltq_f64(a, b)); }
    static uint64x2_t u(V a) { return vreinterpretq_u64_f64(a); }
    static V and_(V a, V b) { return vreinterpretq_f64_u64(vandq_u64(u(a), u(b))); }
    static bool any(V m) { return vmaxvq_u32(vreinterpretq_u32_f64(m)) != 0; }
    static void flush(Acc& acc, V v) { acc.add(v); }
    static V pow2(int64x2_t k) {  // 2^k for k in [-1022, 1023]
        return vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(k, vdupq_n_s64(1023)), 52));
    }
    // exp(t + tl) (exp_constants.hpp: degree-13 Taylor polynomial, <= 1 ULP), k by the 1.5*2^52 shifter.
    static V exp_core(V t, V tl) {
        const V ks = fmadd(t, set1(kLog2eD), set1(kShifterD));
        const V k = sub(ks, set1(kShifterD));
        const int64x2_t ki = vsubq_s64(vreinterpretq_s64_f64(ks), vreinterpretq_s64_f64(set1(kShifterD)));
        V r = fnmadd(k, set1(kLn2HiD), t);
        r = fnmadd(k, set1(kLn2LoD), r);
        r = add(r, tl);
        V p = set1(kInvFact[13]);
        for (int i = 12; i >= 0; --i) p = fmadd(p, r, set1(kInvFact[i]));
        const V outside = lt(t, set1(kNormalMinArgD));
        if (NX_ATTN_LIKELY(!any(outside))) return mul(p, pow2(ki));
        const int64x2_t k1 = vshrq_n_s64(ki, 1);  // arithmetic shift: floor(k/2)
        const int64x2_t k2 = vsubq_s64(ki, k1);
        return mul(mul(p, pow2(k1)), pow2(k2));
    }
    static constexpr T kMinArg = kMinArgD;
};

// ======================================================================================================
// Layer 2: attention traits (kernels/generic/attention.hpp).
// ======================================================================================================

// exp(x - m) with x - m = d + e exactly by TwoSum (the reduction kernels' non-scaled argument, kernels/neon.cpp
// `arg`; no clamp of x is needed: for x = -inf the error e is NaN and is dropped with every argument below
// the underflow threshold kMinArg, which is raised to it and gives +0). xlow is unused (the AVX2 form clamps).
template <class B>
typename B::V neon_exp_minus(typename B::V x, typename B::V negm) {
    using V = typename B::V;
    const V d = B::add(x, negm);
    const V bb = B::sub(d, x);
    V e = B::add(B::sub(x, B::sub(d, bb)), B::sub(negm, bb));
    const V tmin = B::set1(B::kMinArg);
    e = B::and_(e, B::ge(d, tmin));  // false for -inf, NaN and far underflow
    return B::exp_core(B::max(tmin, d), e);
}

// What both lane types share.
struct AttnNeon {
    // qk and pv register tiles: 4 rows x 4 vectors (16 float32 keys = one panel, or 8 float64) = 16
    // accumulators + 4 loads + 1 broadcast of the 32 NEON registers; one broadcast and 4 loads per 16 FMAs.
    static constexpr int kTileRows = 4;
    static constexpr int kQkVectors = 4;
    static constexpr int kPvVectors = 4;
    static constexpr std::ptrdiff_t kPrefetchRows = 0;  // no software prefetch
    static void prefetch(const void*) {}
    // softmax_step: non-plain scores formed as the scalar specification does (attention_score.hpp).
    static constexpr bool kSpecScores = true;
};

struct AttnF32 : F32, AttnNeon {

    // kt[r * ldkt + c] = k[c * k_row + r] for a 4 x 4 block: TRN1/TRN2 on 32-bit, then on 64-bit lanes.
    static void transpose_store(const T* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        const float32x4_t r0 = vld1q_f32(k), r1 = vld1q_f32(k + k_row), r2 = vld1q_f32(k + 2 * k_row),
                          r3 = vld1q_f32(k + 3 * k_row);
        const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
        const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
        vst1q_f32(kt, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
        vst1q_f32(kt + ldkt, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
        vst1q_f32(kt + 2 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
        vst1q_f32(kt + 3 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
    }
    // Horizontal sums by FADDP (vaddvq): (a0 + a1) + (a2 + a3) per vector.
    static T hsum(V a) { return vaddvq_f32(a); }
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        s[0] = hsum(a0);
        s[1] = hsum(a1);
        s[2] = hsum(a2);
        s[3] = hsum(a3);
    }
    // The maximum ignoring NaN (FMAXNM), like the specification's `x > mx`.
    static V maxnm(V a, V b) { return vmaxnmq_f32(a, b); }
    static T hmaxnm(V a) { return vmaxnmvq_f32(a); }
    static V exp_minus(V x, V negm, V /*xlow*/) { return neon_exp_minus<F32>(x, negm); }
};

struct AttnF64 : F64, AttnNeon {
    static void transpose_store(const T* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {  // 2 x 2
        const float64x2_t r0 = vld1q_f64(k), r1 = vld1q_f64(k + k_row);
        vst1q_f64(kt, vtrn1q_f64(r0, r1));
        vst1q_f64(kt + ldkt, vtrn2q_f64(r0, r1));
    }
    static T hsum(V a) { return vaddvq_f64(a); }
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        s[0] = hsum(a0);
        s[1] = hsum(a1);
        s[2] = hsum(a2);
        s[3] = hsum(a3);
    }
    static V maxnm(V a, V b) { return vmaxnmq_f64(a, b); }
    static T hmaxnm(V a) { return vmaxnmvq_f64(a); }
    static V exp_minus(V x, V negm, V /*xlow*/) { return neon_exp_minus<F64>(x, negm); }
};

}  // namespace
}  // namespace normexp::neon
