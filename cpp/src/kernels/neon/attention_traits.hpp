// NEON (aarch64 Advanced SIMD) attention traits (4 x float32 / 2 x float64 per register): what only the
// attention kernels need on top of the element traits F32 = lanes<V32>, F64 = lanes<V64> (generic/lanes.hpp
// over neon/traits.hpp), which supply every general vector operation and the accumulators.
// kernels/generic/attention.hpp lists what an attention traits struct must provide.
//
// Textual include, like generic/: kernels/neon/attention.cpp includes it INSIDE normexp::neon::(anonymous),
// after neon/traits.hpp and generic/lanes.hpp (internal linkage; see tests/isa/check_isa_objects.cmake).
// No include guard; the includer provides <arm_neon.h>.
//
// exp_minus is NOT lanes' exp_minus. The NEON attention kernels keep the exp they had before the reduction
// kernels moved to generic/ (tests/cpp/attention_golden.txt pins their results bit for bit): float32 rounds
// k = FRINTN(t log2e) (the product rounded first, then rounded to an integer) where lanes' exp_core rounds
// t log2e + shifter in one FMA, and evaluates the polynomial as poly_split (p = 1 + (r + r^2 q)) instead of
// fully fused Horner; the two differ in the last bit for some arguments (both <= 1 ULP). The argument is
// TwoSum with the error dropped below kMinArg instead of the x >= clamp_below(m) clamp and Fast2Sum (the same
// exact error term). float64 uses lanes' exp_core (the same operations as before). Moving NEON attention to
// lanes' exp_minus is a numerical change: it needs the NEON lines of attention_golden.txt re-recorded under
// qemu-aarch64 (tests/cpp/test_attention_golden.cpp says how).

// exp(x - m) with x - m = d + e exactly by TwoSum; for x = -inf the error e is NaN and is dropped with every
// argument below the underflow threshold kMinArg, which is raised to it and gives +0. xlow is not needed.
template <class A>
inline typename A::V neon_attn_exp_minus(typename A::V x, typename A::V negm) {
    using V = typename A::V;
    const V d = A::add(x, negm);
    const V bb = A::sub(d, x);
    V e = A::add(A::sub(x, A::sub(d, bb)), A::sub(negm, bb));
    const V tmin = A::set1(A::kMinArg);
    e = A::and_(e, A::ge(d, tmin));  // false for -inf, NaN and far underflow
    return A::attn_exp_core(A::max(tmin, d), e);
}

// store_hsum4: hsum (FADDP) of each vector; NEON has no cheaper four-way form.
template <class F>
inline void store_each_hsum(typename F::T* s, typename F::V a0, typename F::V a1, typename F::V a2, typename F::V a3) {
    s[0] = F::hsum(a0);
    s[1] = F::hsum(a1);
    s[2] = F::hsum(a2);
    s[3] = F::hsum(a3);
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
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) { store_each_hsum<F32>(s, a0, a1, a2, a3); }
    // The maximum ignoring NaN (FMAXNM), like the specification's `x > mx`.
    static V maxnm(V a, V b) { return vmaxnmq_f32(a, b); }
    static T hmaxnm(V a) { return vmaxnmvq_f32(a); }
    // exp(t + tl), t in [kMinArg, ~0] or NaN (see the header): k = FRINTN(t log2e), Cody-Waite reduction,
    // poly_split; subnormal results by scale_split (generic/lanes.hpp). <= 1 ULP.
    static V attn_exp_core(V t, V tl) {
        const V k = vrndnq_f32(mul(t, set1(kLog2eF)));  // round to nearest, ties to even
        V r = fnmadd(k, set1(kLn2HiF), t);
        r = fnmadd(k, set1(kLn2LoF), r);
        const V p = poly_split(add(r, tl));
        const I ki = vcvtq_s32_f32(k);  // exact: k is an integer (NaN converts to 0)
        if (NX_LIKELY(!any(lt(t, set1(kNormalMinArgF))))) return mul(p, pow2(ki));
        return scale_split(p, ki);
    }
    static V exp_minus(V x, V negm, V /*xlow*/) { return neon_attn_exp_minus<AttnF32>(x, negm); }
};

struct AttnF64 : F64, AttnNeon {
    static void transpose_store(const T* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {  // 2 x 2
        const float64x2_t r0 = vld1q_f64(k), r1 = vld1q_f64(k + k_row);
        vst1q_f64(kt, vtrn1q_f64(r0, r1));
        vst1q_f64(kt + ldkt, vtrn2q_f64(r0, r1));
    }
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) { store_each_hsum<F64>(s, a0, a1, a2, a3); }
    static V maxnm(V a, V b) { return vmaxnmq_f64(a, b); }
    static T hmaxnm(V a) { return vmaxnmvq_f64(a); }
    static V attn_exp_core(V t, V tl) { return exp_core<false>(t, tl); }
    static V exp_minus(V x, V negm, V /*xlow*/) { return neon_attn_exp_minus<AttnF64>(x, negm); }
};
