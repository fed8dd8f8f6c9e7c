// NEON (aarch64 Advanced SIMD) vector traits: the only place the reduction and sampling algorithms meet
// NEON intrinsics.
//
// V32 (4 x float32) and V64 (2 x float64) wrap one intrinsic (or a fixed short sequence) per operation
// and contain no algorithm; the algorithms are written once over them in ../generic/ (lanes.hpp builds
// F32 = lanes<V32>, F64 = lanes<V64>). The operations and their semantics are those of
// ../avx2/traits.hpp (see there); where NEON differs:
//  * max/min (FMAX/FMIN) return NaN when either operand is NaN, where AVX2 returns the second operand.
//    The kernels never rely on either: row_max and col_max track NaN explicitly (unord), and the clamps
//    in exp see NaN only where both ISAs give NaN.
//  * There are no masked loads or stores: a tail mask carries its lane count n, and tails use lane
//    loads/stores of exactly the n valid elements (never touching memory past the end), with zeros in
//    the unused lanes, like _mm256_maskload.
//  * Comparison results B are vector lanes (B = V), as on AVX2.
//  * No cache-bypassing vector store worth using (kStream = false: STNP is only a hint, and most cores
//    still allocate the lines).
// Everything is in an anonymous namespace: each NEON translation unit gets its own internal copy.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace normexp::neon {
namespace {

alignas(16) const std::uint32_t kTailMask32[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
alignas(16) const std::uint64_t kTailMask64[4] = {~0ull, ~0ull, 0, 0};

// A tail: the first n lanes are valid (n <= N); m has all bits set in those lanes.
struct mask32 {
    uint32x4_t m;
    std::size_t n;
};
struct mask64 {
    uint64x2_t m;
    std::size_t n;
};

struct V64 {
    using T = double;
    using V = float64x2_t;
    using M = mask64;
    using B = float64x2_t;  // comparison results: all-ones/all-zeros lanes
    using I = int64x2_t;
    using D = V64;
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
    static B mask_v(M mk) { return vreinterpretq_f64_u64(mk.m); }
    static constexpr bool kStream = false;
    static constexpr std::size_t kLineAlign = 0;  // 16-byte vectors at the arrays' 16-byte alignment: in one line

    static V set1(T v) { return vdupq_n_f64(v); }
    static V zero() { return vdupq_n_f64(0.0); }
    static V add(V a, V b) { return vaddq_f64(a, b); }
    static V sub(V a, V b) { return vsubq_f64(a, b); }
    static V mul(V a, V b) { return vmulq_f64(a, b); }
    static V div(V a, V b) { return vdivq_f64(a, b); }
    static V fmadd(V a, V b, V c) { return vfmaq_f64(c, a, b); }             // a*b + c, one rounding
    static V fnmadd(V a, V b, V c) { return vfmsq_f64(c, a, b); }            // c - a*b, one rounding
    static V fmsub(V a, V b, V c) { return vfmaq_f64(vnegq_f64(c), a, b); }  // a*b - c, one rounding
    static V max(V a, V b) { return vmaxq_f64(a, b); }  // NaN if either is NaN (see the header)
    static V min(V a, V b) { return vminq_f64(a, b); }
    static V abs(V a) { return vabsq_f64(a); }
    static V eq(V a, V b) { return vreinterpretq_f64_u64(vceqq_f64(a, b)); }  // ordered: false on NaN
    static V ge(V a, V b) { return vreinterpretq_f64_u64(vcgeq_f64(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f64_u64(vcltq_f64(a, b)); }
    static V gt(V a, V b) { return vreinterpretq_f64_u64(vcgtq_f64(a, b)); }
    static V le(V a, V b) { return vreinterpretq_f64_u64(vcleq_f64(a, b)); }
    static uint64x2_t u(V a) { return vreinterpretq_u64_f64(a); }
    static V unord(V a, V b) {  // true where a or b is NaN
        const uint64x2_t ord = vandq_u64(vceqq_f64(a, a), vceqq_f64(b, b));
        return vreinterpretq_f64_u32(vmvnq_u32(vreinterpretq_u32_u64(ord)));
    }
    static V and_(V a, V b) { return vreinterpretq_f64_u64(vandq_u64(u(a), u(b))); }
    static V andnot(V a, V b) { return vreinterpretq_f64_u64(vbicq_u64(u(b), u(a))); }  // ~a & b
    static V or_(V a, V b) { return vreinterpretq_f64_u64(vorrq_u64(u(a), u(b))); }
    static V blend(V a, V b, V m) { return vbslq_f64(u(m), b, a); }  // m ? b : a
    static bool any(V m) { return vmaxvq_u32(vreinterpretq_u32_f64(m)) != 0; }
    static std::uint32_t movemask(V m) {  // no movemask on NEON: AND with lane bits {1, 2} and add across
        alignas(16) static const std::uint64_t kBits[2] = {1, 2};
        return static_cast<std::uint32_t>(vaddvq_u64(vandq_u64(u(m), vld1q_u64(kBits))));
    }
    static T hmax(V v) { return vmaxvq_f64(v); }  // only called on NaN-free vectors
    static T hsum(V a) { return vaddvq_f64(a); }     // FADDP: a0 + a1
    template <std::size_t G>  // (avx2/traits.hpp: zip_lo, zip_hi)
    static V zip_lo(V a, V b) { static_assert(G == 1, "two lanes"); return vzip1q_f64(a, b); }
    template <std::size_t G>
    static V zip_hi(V a, V b) { static_assert(G == 1, "two lanes"); return vzip2q_f64(a, b); }
    static V iota() {
        alignas(16) static const double kIota[2] = {0, 1};
        return vld1q_f64(kIota);
    }

    // ---- masks (B = V: all-ones/all-zeros lanes) ----
    static B mnone() { return zero(); }
    static B mor(B a, B b) { return or_(a, b); }
    static B mand(B a, B b) { return and_(a, b); }
    static V zero_unless(B m, V v) { return and_(m, v); }  // m ? v : +0
    static V zero_if(B m, V v) { return andnot(m, v); }    // m ? +0 : v
    static void store_mask(T* p, B m) { store(p, m); }
    static B load_mask(const T* p) { return load(p); }

    // ---- integer lanes (exponent arithmetic, counts) ----
    static I isub(I a, I b) { return vsubq_s64(a, b); }
    static I izero() { return vdupq_n_s64(0); }
    static I bits(V v) { return vreinterpretq_s64_f64(v); }
    static std::int64_t ihsum(I c) { return vaddvq_s64(c); }
    static I ihalf(I k) { return vshrq_n_s64(k, 1); }  // arithmetic shift: floor(k/2)
    static I inc_where(I c, B m) { return vsubq_s64(c, bits(m)); }  // c + 1 where m (m = -1)
    static I int_of_shifted(V ks, V s) { return vsubq_s64(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-1022, 1023]
        return vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(k, vdupq_n_s64(1023)), 52));
    }
    static constexpr bool kScalef = false;  // (FSCALE is SVE only)
    static constexpr int kRegisters = 32;  // architectural vector registers (v0-v31)
    static constexpr bool kBitMasks = false;  // comparisons give vector lanes, counted in I lanes
    using Count = I;
};

struct V32 {
    using T = float;
    using V = float32x4_t;
    using M = mask32;
    using B = float32x4_t;
    using I = int32x4_t;
    using D = V64;
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
    static B mask_v(M mk) { return vreinterpretq_f32_u32(mk.m); }
    static constexpr bool kStream = false;
    static constexpr std::size_t kLineAlign = 0;  // 16-byte vectors at the arrays' 16-byte alignment: in one line

    static V set1(T v) { return vdupq_n_f32(v); }
    static V zero() { return vdupq_n_f32(0.0f); }
    static V add(V a, V b) { return vaddq_f32(a, b); }
    static V sub(V a, V b) { return vsubq_f32(a, b); }
    static V mul(V a, V b) { return vmulq_f32(a, b); }
    static V div(V a, V b) { return vdivq_f32(a, b); }
    static V fmadd(V a, V b, V c) { return vfmaq_f32(c, a, b); }
    static V fnmadd(V a, V b, V c) { return vfmsq_f32(c, a, b); }
    static V fmsub(V a, V b, V c) { return vfmaq_f32(vnegq_f32(c), a, b); }
    static V max(V a, V b) { return vmaxq_f32(a, b); }
    static V min(V a, V b) { return vminq_f32(a, b); }
    static V abs(V a) { return vabsq_f32(a); }
    static V eq(V a, V b) { return vreinterpretq_f32_u32(vceqq_f32(a, b)); }
    static V ge(V a, V b) { return vreinterpretq_f32_u32(vcgeq_f32(a, b)); }
    static V lt(V a, V b) { return vreinterpretq_f32_u32(vcltq_f32(a, b)); }
    static V gt(V a, V b) { return vreinterpretq_f32_u32(vcgtq_f32(a, b)); }
    static V le(V a, V b) { return vreinterpretq_f32_u32(vcleq_f32(a, b)); }
    static uint32x4_t u(V a) { return vreinterpretq_u32_f32(a); }
    static V unord(V a, V b) {
        return vreinterpretq_f32_u32(vmvnq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b))));
    }
    static V and_(V a, V b) { return vreinterpretq_f32_u32(vandq_u32(u(a), u(b))); }
    static V andnot(V a, V b) { return vreinterpretq_f32_u32(vbicq_u32(u(b), u(a))); }
    static V or_(V a, V b) { return vreinterpretq_f32_u32(vorrq_u32(u(a), u(b))); }
    static V blend(V a, V b, V m) { return vbslq_f32(u(m), b, a); }
    static bool any(V m) { return vmaxvq_u32(u(m)) != 0; }
    static std::uint32_t movemask(V m) {  // lane bits {1, 2, 4, 8}, added across
        alignas(16) static const std::uint32_t kBits[4] = {1, 2, 4, 8};
        return vaddvq_u32(vandq_u32(u(m), vld1q_u32(kBits)));
    }
    static T hmax(V v) { return vmaxvq_f32(v); }
    static T hsum(V a) { return vaddvq_f32(a); }  // FADDP: (a0 + a1) + (a2 + a3)
    template <std::size_t G>  // (avx2/traits.hpp: zip_lo, zip_hi)
    static V zip_lo(V a, V b) {
        if constexpr (G == 1) return vtrn1q_f32(a, b);
        else return vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
    }
    template <std::size_t G>
    static V zip_hi(V a, V b) {
        if constexpr (G == 1) return vtrn2q_f32(a, b);
        else return vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
    }
    static V iota() {
        alignas(16) static const float kIota[4] = {0, 1, 2, 3};
        return vld1q_f32(kIota);
    }

    // ---- masks ----
    static B mnone() { return zero(); }
    static B mor(B a, B b) { return or_(a, b); }
    static B mand(B a, B b) { return and_(a, b); }
    static V zero_unless(B m, V v) { return and_(m, v); }
    static V zero_if(B m, V v) { return andnot(m, v); }
    static void store_mask(T* p, B m) { store(p, m); }
    static B load_mask(const T* p) { return load(p); }

    // ---- float64 lanes ----
    static V64::V widen_lo(V v) { return vcvt_f64_f32(vget_low_f32(v)); }
    static V64::V widen_hi(V v) { return vcvt_high_f64_f32(v); }
    static V narrow(V64::V lo, V64::V hi) { return vcvt_high_f32_f64(vcvt_f32_f64(lo), hi); }  // FCVTN: nearest even
    // FCVTXN: each lane rounded to float32 by round-to-odd (half_convert.hpp, to_f32_odd).
    static V narrow_odd(V64::V lo, V64::V hi) { return vcvtx_high_f32_f64(vcvtx_f32_f64(lo), hi); }
    static constexpr bool kConvertHalves = false;  // FCVTL2 / FCVTN2 take the high half without a shuffle
    static V narrow_mask(V64::V lo, V64::V hi) {  // 64-bit all-ones/zero lane masks -> 32-bit lane masks
        return vreinterpretq_f32_u32(vcombine_u32(vmovn_u64(V64::u(lo)), vmovn_u64(V64::u(hi))));
    }

    // ---- 16-bit storage (the bits of half_convert.hpp): float16 by FCVTL / FCVTN (round to nearest even,
    // NaN quieted: FPCR.DN is clear), bfloat16 by shifts. Tails (n < 4) go through a zeroed buffer. ----
    static V load_f16(const std::uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
    static void store_f16(std::uint16_t* p, V v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }
    static V load_bf16(const std::uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
    static void store_bf16(std::uint16_t* p, V v) {
        // Round to nearest even on the bits: (u + 0x7fff + bit 16 of u) >> 16; NaN: (u >> 16) | quiet bit.
        const uint32x4_t w = u(v);
        const uint32x4_t odd = vandq_u32(vshrq_n_u32(w, 16), vdupq_n_u32(1));
        const uint32x4_t r = vshrq_n_u32(vaddq_u32(w, vaddq_u32(odd, vdupq_n_u32(0x7fff))), 16);
        const uint32x4_t qnan = vorrq_u32(vshrq_n_u32(w, 16), vdupq_n_u32(0x40));
        vst1_u16(p, vmovn_u32(vbslq_u32(vceqq_f32(v, v), r, qnan)));
    }
    static V load_f16_tail(const std::uint16_t* p, std::size_t n) { return load_f16(tail_copy(p, n).b); }
    static V load_bf16_tail(const std::uint16_t* p, std::size_t n) { return load_bf16(tail_copy(p, n).b); }
    static void store_f16_tail(std::uint16_t* p, std::size_t n, V v) {
        std::uint16_t b[4];
        store_f16(b, v);
        std::memcpy(p, b, n * sizeof b[0]);
    }
    static void store_bf16_tail(std::uint16_t* p, std::size_t n, V v) {
        std::uint16_t b[4];
        store_bf16(b, v);
        std::memcpy(p, b, n * sizeof b[0]);
    }
    struct tail_buf {
        std::uint16_t b[4];
    };
    static tail_buf tail_copy(const std::uint16_t* p, std::size_t n) {  // lanes >= n: +0
        tail_buf t{};
        std::memcpy(t.b, p, n * sizeof t.b[0]);
        return t;
    }

    // ---- integer lanes ----
    static I isub(I a, I b) { return vsubq_s32(a, b); }
    static I izero() { return vdupq_n_s32(0); }
    static I bits(V v) { return vreinterpretq_s32_f32(v); }
    static std::int64_t ihsum(I c) { return vaddlvq_s32(c); }
    static I ihalf(I k) { return vshrq_n_s32(k, 1); }  // arithmetic shift: floor(k/2)
    static I inc_where(I c, B m) { return vsubq_s32(c, bits(m)); }
    static I int_of_shifted(V ks, V s) { return vsubq_s32(bits(ks), bits(s)); }
    static V pow2(I k) {  // 2^k for k in [-126, 127]
        return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23));
    }
    static V pow2_biased(V kb) { return vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(kb), 23)); }
    static constexpr bool kScalef = false;
    static constexpr int kRegisters = 32;  // architectural vector registers (v0-v31)
    static constexpr bool kBitMasks = false;  // comparisons give vector lanes, counted in I lanes
    using Count = I;
};

}  // namespace
}  // namespace normexp::neon
