// Element traits and the exp, written once over an ISA's vector traits (avx2/traits.hpp, neon/traits.hpp,
// avx512/traits.hpp).
//
// Textual include, the simdjson "generic" pattern: an ISA translation unit includes its traits.hpp, then
// this file INSIDE its own namespace (normexp::<isa>::(anonymous)), so every name here is a distinct,
// internal entity per ISA and nothing can collide or be shared at link time. This file therefore has no
// #include and no include guard; the includer provides <cstddef>, <cstdint>, <type_traits>,
// exp_constants.hpp and kernel_table.hpp, and the primitive traits V32 and V64.
//
// Defined here: the double accumulators, lanes<P> (the primitives of P plus the exp core, the clamps,
// the flush to double and the counters, i.e. what the kernels call F::...), F32 = lanes<V32>,
// F64 = lanes<V64>, and arg<F, Scaled>, the shifted exp argument beta (x - m) of kernel_table.hpp.
//
// Comparison results have the traits' mask type B (vector lanes on AVX2/NEON, opmask registers on
// AVX-512) and are combined only through the mask operations of the traits (mor, mand, zero_unless,
// zero_if, blend, any, movemask, inc_where, store_mask/load_mask), never by bitwise and/or on values.

// NX_LIKELY, NX_INLINE (the exp and its argument reduction are inlined into every loop) and NX_FLATTEN
// (kernel entry points inline what they call) come from portability.hpp, through kernel_table.hpp.

using namespace normexp::expc;

// Horizontal sum of n = 2^j doubles, pairwise: (a0 + a1) + (a2 + a3) for n = 4.
inline double pairwise_sum(const double* a, std::size_t n) {
    return n == 1 ? a[0] : pairwise_sum(a, n / 2) + pairwise_sum(a + n / 2, n / 2);
}

// The transposed reduction of Q::N vectors, one per row (Q: primitive vector traits): lane r of the result is
// v[r]'s lanes combined by op, pairwise in pairwise_sum's order (lanes 2k and 2k + 1, then pairs of those, ...,
// by the traits' zip_lo / zip_hi), so with op an addition the same additions in the same order as pairwise_sum
// over each row's lanes: the same bits, for N rows in 2 (N - 1) shuffles and N - 1 operations instead of N
// horizontal reductions. v is overwritten.
template <class Q, std::size_t G = 1, class Op>
NX_INLINE typename Q::V fold_rows(typename Q::V* v, Op op) {
    if constexpr (G >= Q::N) {
        return v[0];
    } else {
        for (std::size_t i = 0; i < Q::N / (2 * G); ++i)
            v[i] = op(Q::template zip_lo<G>(v[2 * i], v[2 * i + 1]), Q::template zip_hi<G>(v[2 * i], v[2 * i + 1]));
        return fold_rows<Q, 2 * G>(v, op);
    }
}

// ------------------------------------------------------------------------------------------------------
// Double accumulators for the flushed block sums (D: the float64 vector traits).
template <class D>
struct acc_plain {  // float32 sums: double has 29 spare bits, plain addition is enough
    typename D::V s = D::zero();
    void add(typename D::V v) { s = D::add(s, v); }
    double total() const {
        alignas(64) double a[D::N];
        D::store(a, s);
        return pairwise_sum(a, D::N);
    }
};
// float64 sums: Neumaier's compensated summation per lane (Kahan-Babuska): t = s + v and its exact
// rounding error, (s - t) + v if |s| >= |v| else (v - t) + s (Fast2Sum with the larger operand first),
// accumulated in c; the sum s + c has error <= 2u |sum| + O(n u^2) sum |v_i| (u = 2^-53), independent of n
// to first order. total() merges the lanes the same way, in lane order.
template <class D>
struct acc_neumaier {
    typename D::V s = D::zero(), c = D::zero();
    void add(typename D::V v) {
        const typename D::V t = D::add(s, v);
        const typename D::B big_s = D::ge(D::abs(s), D::abs(v));
        const typename D::V cs = D::add(D::sub(s, t), v);
        const typename D::V cv = D::add(D::sub(v, t), s);
        c = D::add(c, D::blend(cv, cs, big_s));
        s = t;
    }
    double total() const {
        alignas(64) double a[D::N], b[D::N];
        D::store(a, s);
        D::store(b, c);
        double hi = 0, lo = 0;
        for (std::size_t i = 0; i < D::N; ++i) {
            const double t = hi + a[i];
            lo += (hi >= a[i] ? (hi - t) + a[i] : (a[i] - t) + hi) + b[i];
            hi = t;
        }
        return hi + lo;
    }
};

// ------------------------------------------------------------------------------------------------------
template <class P>
struct lanes : P {
    using T = typename P::T;
    using V = typename P::V;
    using I = typename P::I;
    using B = typename P::B;
    using D = typename P::D;
    static constexpr bool f32 = sizeof(T) == 4;
    using Acc = std::conditional_t<f32, acc_plain<D>, acc_neumaier<D>>;
    // ---- storage S of T's lanes: T itself or, for float32 lanes, float16 / bfloat16 (normexp/half.hpp),
    // widened exactly on load and rounded once to nearest even on store (the bits of half_convert.hpp).
    // Tails: lanes n.. load as +0 and are not stored; no access past p + n.
    template <class S>
    static constexpr bool kStorage = std::is_same_v<S, T> || (f32 && (std::is_same_v<S, float16> || std::is_same_v<S, bfloat16>));
    template <class S>
    NX_INLINE static V load_as(const S* p) {
        static_assert(kStorage<S>, "no such storage for these lanes");
        if constexpr (std::is_same_v<S, T>) return P::load(p);
        else if constexpr (std::is_same_v<S, float16>) return P::load_f16(&p->bits);
        else return P::load_bf16(&p->bits);
    }
    template <class S>
    NX_INLINE static V load_as_tail(const S* p, std::size_t n) {
        if constexpr (std::is_same_v<S, T>) return P::load_tail(p, P::tail_mask(n));
        else if constexpr (std::is_same_v<S, float16>) return P::load_f16_tail(&p->bits, n);
        else return P::load_bf16_tail(&p->bits, n);
    }
    template <class S>
    NX_INLINE static void store_as(S* p, V v) {
        static_assert(kStorage<S>, "no such storage for these lanes");
        if constexpr (std::is_same_v<S, T>) P::store(p, v);
        else if constexpr (std::is_same_v<S, float16>) P::store_f16(&p->bits, v);
        else P::store_bf16(&p->bits, v);
    }
    // Non-temporal store_as (P::kStream only), p aligned to kStreamAlignAs<S> bytes (a whole vector of S);
    // P::stream_fence() orders such stores before anything that follows. The same bits as store_as.
    template <class S>
    static constexpr std::size_t kStreamAlignAs = std::is_same_v<S, T> ? P::kStreamAlign : P::N * sizeof(S);
    template <class S>
    NX_INLINE static void stream_as(S* p, V v) {
        static_assert(kStorage<S>, "no such storage for these lanes");
        if constexpr (std::is_same_v<S, T>) P::stream(p, v);
        else if constexpr (std::is_same_v<S, float16>) P::stream_f16(&p->bits, v);
        else P::stream_bf16(&p->bits, v);
    }
    // Entries at p before whole vectors of S stop straddling cache lines (a multiple of P::kLineAlign bytes, at
    // most a vector of S; P::kLineAlign 0: they never straddle), at most min(n, N - 1): a long element-wise pass
    // takes them with one masked vector first (generic/reductions.hpp, peel_head). Arrays are mostly 16 bytes
    // past a line (malloc, numpy), where every 64-byte vector straddles two lines: AVX-512, Zen 4, 4096 float32
    // entries in L1 at a 16-byte offset, the maximum 0.93 against 0.60 ns per 16 entries aligned, log_softmax's
    // outputs 1.31 against 0.94.
    template <class S>
    NX_INLINE static std::size_t align_head(const S* p, std::size_t n) {
        constexpr std::size_t a = P::kLineAlign < P::N * sizeof(S) ? P::kLineAlign : P::N * sizeof(S);
        if constexpr (a == 0) {
            (void)p, (void)n;
            return 0;
        } else {
            const std::size_t off = reinterpret_cast<std::uintptr_t>(p) % a;
            const std::size_t h = off % sizeof(S) ? 0 : (a - off) % a / sizeof(S);
            return h < n ? h : n;
        }
    }
    template <class S>
    NX_INLINE static void store_as_tail(S* p, std::size_t n, V v) {
        if constexpr (std::is_same_v<S, T>) P::store_tail(p, P::tail_mask(n), v);
        else if constexpr (std::is_same_v<S, float16>) P::store_f16_tail(&p->bits, n, v);
        else P::store_bf16_tail(&p->bits, n, v);
    }

    // exp arguments (exp_constants.hpp): below kMinArg exp rounds to +0; from kNormalMinArg up its result is
    // normal (the fast path of exp_core).
    static constexpr T kMinArg = f32 ? T(kMinArgF) : T(kMinArgD);
    static constexpr T kNormalMinArg = f32 ? T(kNormalMinArgF) : T(kNormalMinArgD);

    // exp(t + tl) for t in [kMinArg, kMaxArg] (or NaN), |tl| tiny. FullRange: t may exceed the largest
    // argument with a normal result (88 float32, 709 float64); otherwise t <= ~0. HasLo = false: tl is
    // zero (the fast argument of fast_arg below) and its addition is left out.
    //   k = round(t / ln2) by a shifter: fma(t, log2e, S) rounds t log2e to an integer (S = 1.5*2^23 or
    //       1.5*2^52: the binade where the ulp is 1), and subtracting S gives k exactly.
    //   r = (t - k LN2_HI - k LN2_LO) + tl  (Cody-Waite: k LN2_HI exact, see exp_constants.hpp), |r| <= ln2/2;
    //       float32 adds tl as fma(tl, 1, r), the same rounding on the FMA pipes, which the exact argument's
    //       additions and min/max leave the less busy (Zen 4, AVX-512: the counting exp-sum 0.97x the time;
    //       float64's Taylor-13 keeps the FMA pipes busier than the adders); lifted (below), as a plain add:
    //       the 1 beside the lifted coefficients was one constant too many for the several-rows log_softmax
    //       (4096x128 took 1.14x the time).
    //   float32: exp(r) ~ 1 + r (1 + r (C2 + r (C3 + r (C4 + r (C5 + r C6))))) (Horner, every step one FMA);
    //   float64: Taylor-13 in Horner form (kInvFact).
    //   result = p * 2^k, 2^k built in the exponent field. Outside the normal range (subnormal results, or
    //   near overflow with FullRange) as 2^(k>>1) * 2^(k - k>>1), so gradual underflow and overflow round
    //   once, correctly; that slow path is a predicted-not-taken branch per vector. With P::kScalef
    //   (AVX-512 vscalefps/pd) the one instruction RN(p * 2^k) does all of it, branch-free; both give
    //   RN(p * 2^k), so the results are the same bits.
    // Error: <= 1 ULP against the correctly rounded exp (float32 measured exhaustively over all 2^32
    // inputs by tests/cpp/test_exp.cpp; float64 Taylor truncation 0.04 ULP plus the Horner rounding).
    // Lift: 2^kLift exp(t + tl) (exp_constants.hpp: the terms of a counting sum), every coefficient times
    // 2^kLift, so p and each Horner step are exactly 2^kLift times the plain ones: the same bits, scaled,
    // wherever the plain result is normal, and 24 (53) bits where it would be subnormal.
    // Zero: the lanes of z are +0 (a counting sum's counted entries): with P::kScalef the scaling's own
    // zero-mask (vscalefps {z}: one operation fewer per vector than a masked move after it), else a masked
    // move; the other lanes are the same bits.
    static constexpr T kLift = T(f32 ? kLiftScaleF : kLiftScaleD);
    static constexpr double kUnlift = 1 / (f32 ? kLiftScaleF : kLiftScaleD);  // scales a lifted sum back, exactly
    template <bool FullRange, bool HasLo = true, bool Lift = false, bool Zero = false>
    NX_INLINE static V exp_core(V t, V tl, B z = B()) {
        constexpr T L = Lift ? kLift : T(1);
        if constexpr (f32) {
            // kb = 1.5*2^23 + 127 + k: its low mantissa bits are the biased exponent of 2^k.
            const V kb = P::fmadd(t, P::set1(kLog2eF), P::set1(kShifterBiasedF));
            const V k = P::sub(kb, P::set1(kShifterBiasedF));
            V r = P::fnmadd(k, P::set1(kLn2HiF), t);
            r = P::fnmadd(k, P::set1(kLn2LoF), r);
            if constexpr (HasLo) r = Lift ? P::add(r, tl) : P::fmadd(tl, P::set1(T(1)), r);
            V q = P::fmadd(P::set1(kC6F * L), r, P::set1(kC5F * L));
            q = P::fmadd(q, r, P::set1(kC4F * L));
            q = P::fmadd(q, r, P::set1(kC3F * L));
            q = P::fmadd(q, r, P::set1(kC2F * L));
            q = P::fmadd(q, r, P::set1(L));
            return times_pow2<FullRange, Zero>(P::fmadd(q, r, P::set1(L)), k, kb, t, z);
        } else {
            const V ks = P::fmadd(t, P::set1(kLog2eD), P::set1(kShifterD));  // k in the low mantissa bits
            const V k = P::sub(ks, P::set1(kShifterD));
            const I ki = P::int_of_shifted(ks, P::set1(kShifterD));
            V r = P::fnmadd(k, P::set1(kLn2HiD), t);
            r = P::fnmadd(k, P::set1(kLn2LoD), r);
            if constexpr (HasLo) r = P::add(r, tl);
            V p = P::set1(kInvFact[13] * L);
            for (int i = 12; i >= 0; --i) p = P::fmadd(p, r, P::set1(kInvFact[i] * L));
            if constexpr (P::kScalef) return scaled<Zero>(p, k, z);  // k in [-1132, 1024]: one rounding
            B outside = P::lt(t, P::set1(kNormalMinArgD));
            if (FullRange) outside = P::mor(outside, P::gt(t, P::set1(709.0)));
            return scaled<Zero>(NX_LIKELY(!P::any(outside)) ? P::mul(p, P::pow2(ki)) : scale_split(p, ki), z);
        }
    }
    // float32 p * 2^k, rounded once, for kb = 1.5*2^23 + 127 + k (exp_core's shifter) and the argument t:
    // vscalefps (k in [-150, 128]), or the normal-range product with the two-factor slow path below
    // kNormalMinArg (and, FullRange, above 88).
    template <bool FullRange = false, bool Zero = false>
    NX_INLINE static V times_pow2(V p, V k, V kb, V t, B z = B()) {
        if constexpr (P::kScalef) return scaled<Zero>(p, k, z);
        B outside = P::lt(t, P::set1(kNormalMinArgF));
        if (FullRange) outside = P::mor(outside, P::gt(t, P::set1(88.0f)));
        const V e = NX_LIKELY(!P::any(outside)) ? P::mul(p, P::pow2_biased(kb))
                                                : scale_split(p, P::int_of_shifted(kb, P::set1(kShifterBiasedF)));
        return scaled<Zero>(e, z);
    }
    // exp_core's last step, Zero: RN(p * 2^k) by vscalef (with its zero-mask), or an exp scaled already (with a
    // masked move); +0 in the lanes of z.
    template <bool Zero>
    NX_INLINE static V scaled(V p, V k, B z) {
        if constexpr (Zero) return P::scalef_zero_if(z, p, k); else return P::scalef(p, k);
    }
    template <bool Zero>
    NX_INLINE static V scaled(V e, B z) {
        if constexpr (Zero) return P::zero_if(z, e); else return e;
    }
    // exp(t) for float32 t in [kMinArg, 0] (or NaN) by the one-constant reduction r = t - k kLn2F and
    // p = 1 + r q(r) with q from poly(r): the 16-bit exp and accuracy::fast's (exp_constants.hpp).
    template <class Poly>
    NX_INLINE static V exp_core_ln2f(V t, Poly poly) {
        static_assert(f32, "a float32 kernel");
        const V kb = P::fmadd(t, P::set1(kLog2eF), P::set1(kShifterBiasedF));
        const V k = P::sub(kb, P::set1(kShifterBiasedF));
        const V r = P::fnmadd(k, P::set1(kLn2F), t);
        return times_pow2(P::fmadd(poly(r), r, P::set1(1.0f)), k, kb, t);
    }
    // exp(t) for t in [kMinArg, 0] (or NaN) to 2^-17 relative, for results rounded to float16 / bfloat16
    // (exp_constants.hpp: degree 4); float32 lanes only.
    NX_INLINE static V exp_core_half(V t) {
        return exp_core_ln2f(t, [](V r) {
            V q = P::fmadd(P::set1(kH4F), r, P::set1(kH3F));
            q = P::fmadd(q, r, P::set1(kH2F));
            return P::fmadd(q, r, P::set1(1.0f));
        });
    }
    // exp(t) for t in [kMinArg, 0] (or NaN) of accuracy::fast: float32 lanes a degree-5 polynomial
    // (exp_constants.hpp, kP1F..kP5F: relative error <= 1.3 2^-23 + |t| 2^-28, two FMAs fewer than exp_core),
    // float64 lanes exp_core itself.
    NX_INLINE static V exp_core_fast(V t) {
        if constexpr (!f32) {
            return exp_core<false, false>(t, P::zero());
        } else {
            return exp_core_ln2f(t, [](V r) {
                V q = P::fmadd(P::set1(kP5F), r, P::set1(kP4F));
                q = P::fmadd(q, r, P::set1(kP3F));
                q = P::fmadd(q, r, P::set1(kP2F));
                return P::fmadd(q, r, P::set1(kP1F));
            });
        }
    }
    // The float32 polynomial in the other evaluation order, p = 1 + (r + r^2 q) with q = C2 + r (C3 + r (C4 +
    // r (C5 + r C6))) (the same coefficients, one rounding more). Not the library's exp: only the attention
    // kernels' exp_normal (generic/attention.hpp) uses it, because its results are pinned bit for bit by
    // tests/cpp/attention_golden.txt.
    NX_INLINE static V poly_split(V r) {
        V q = P::fmadd(P::set1(kC6F), r, P::set1(kC5F));
        q = P::fmadd(q, r, P::set1(kC4F));
        q = P::fmadd(q, r, P::set1(kC3F));
        q = P::fmadd(q, r, P::set1(kC2F));
        return P::add(P::fmadd(P::mul(r, r), q, r), P::set1(1.0f));
    }
    // p * 2^k as (p * 2^floor(k/2)) * 2^(k - floor(k/2)): both factors normal for every k exp can reach.
    static V scale_split(V p, I k) {
        const I k1 = P::ihalf(k);
        return P::mul(P::mul(p, P::pow2(k1)), P::pow2(P::isub(k, k1)));
    }

    // Lower clamp for x: at or below m - kClampOffset (computed in double, then lowered by 2^-22 (float32)
    // or 2^-50 (float64) relative, so the rounding to T cannot land above it), and never -inf (see
    // exp_constants.hpp).
    static T clamp_below(T m) {
        if constexpr (f32) {
            const double l = static_cast<double>(m) - kClampOffsetF;
            const double f = l - (l < 0 ? -l : l) * 0x1p-22;
            return f < -__FLT_MAX__ ? -__FLT_MAX__ : static_cast<float>(f);
        } else {
            const double l = m - kClampOffsetD;
            const double f = l - (l < 0 ? -l : l) * 0x1p-50;
            return f < -__DBL_MAX__ ? -__DBL_MAX__ : f;
        }
    }
    // clamp_below per lane (the same double arithmetic, so the same values).
    static V clamp_below_v(V m) {
        if constexpr (f32) {
            auto half = [](typename D::V md) {
                const typename D::V l = D::sub(md, D::set1(kClampOffsetF));
                const typename D::V f = D::sub(l, D::mul(D::abs(l), D::set1(0x1p-22)));
                return D::max(f, D::set1(-__FLT_MAX__));
            };
            return P::narrow(half(P::widen_lo(m)), half(P::widen_hi(m)));
        } else {
            const V l = P::sub(m, P::set1(kClampOffsetD));
            const V f = P::sub(l, P::mul(P::abs(l), P::set1(0x1p-50)));
            return P::max(f, P::set1(-__DBL_MAX__));
        }
    }

    // Add a vector's lanes (as doubles) to acc: float32 lanes pairwise-widened (lo + hi half, exact
    // conversion, one double addition), float64 lanes directly.
    template <class A>
    static void flush(A& acc, V v) {
        if constexpr (f32) acc.add(D::add(P::widen_lo(v), P::widen_hi(v)));
        else acc.add(v);
    }
    // dst[0..n) += v[0..n) in double (columns; n = N for whole vectors).
    static void add_to_doubles(double* dst, V v, std::size_t n) {
        if constexpr (f32) {
            const typename D::V lo = P::widen_lo(v), hi = P::widen_hi(v);
            if (n == P::N) {
                D::store(dst, D::add(D::load(dst), lo));
                D::store(dst + D::N, D::add(D::load(dst + D::N), hi));
                return;
            }
            alignas(64) double a[P::N];
            D::store(a, lo);
            D::store(a + D::N, hi);
            for (std::size_t i = 0; i < n; ++i) dst[i] += a[i];
        } else {
            if (n == P::N) {
                P::store(dst, P::add(P::load(dst), v));
                return;
            }
            alignas(64) double a[P::N];
            P::store(a, v);
            for (std::size_t i = 0; i < n; ++i) dst[i] += a[i];
        }
    }

    // x - m = d + lo exactly, d = x + (-m) rounded (Fast2Sum, Dekker, on (a, b) = (min, max)(x, -m)): lo =
    // b - (d - a) is exact when |a| >= |b|, which holds because x <= m: m <= 0 gives a = x, |x| >= |m|; m > 0
    // gives a = -m when |x| <= m, else a = x < -m. (One operation fewer than TwoSum, the same exact lo.)
    NX_INLINE static V minus_lo(V x, V negm, V d) { return P::sub(P::max(x, negm), P::sub(d, P::min(x, negm))); }
    // exp(x - m) for x <= m, given -m and xlow = clamp_below(m) per lane (so one vector may mix rows, as the
    // attention kernels' rescale factors do): x is clamped at xlow (keeps x - m and lo finite for x = -inf),
    // the argument d + lo is exact, and d below kMinArg is raised to it (exp rounds to +0 there). <= 1 ULP.
    // Lift: 2^kLift exp(x - m) (exp_core).
    // arg<F, false>::exp_of below is this with one row's constants.
    // Zero: the lanes of z are +0 (exp_core).
    template <bool Lift = false, bool Zero = false>
    NX_INLINE static V exp_minus(V x, V negm, V xlow, B z = B()) {
        x = P::max(xlow, x);
        const V d = P::add(x, negm);
        return exp_core<false, true, Lift, Zero>(P::max(P::set1(kMinArg), d), minus_lo(x, negm, d), z);
    }

    // Counts of entries equal to the maximum: per lane in integer lanes (a true mask is -1), or, where a
    // comparison gives a bit mask (P::kBitMasks: AVX-512 opmasks), one integer counted by P::popcount. That takes
    // the count off the vector pipes and leaves no horizontal sum per row (AVX-512, Zen 4: a float32
    // log_softmax of 4096 rows of 128 entries 0.92x the time, one row of 32000 0.97x).
    using C = typename P::Count;
    static C count_zero() {
        if constexpr (P::kBitMasks) return 0;
        else return P::izero();
    }
    static C count_add(C c, B m) {
        if constexpr (P::kBitMasks) return c + P::popcount(m);
        else return P::inc_where(c, m);
    }
    static double count_total(C c) {
        if constexpr (P::kBitMasks) return static_cast<double>(c);
        else return static_cast<double>(P::ihsum(c));
    }
};

using F32 = lanes<V32>;
using F64 = lanes<V64>;

// Work that a pass over one row carries along for another row (the several-rows kernels' pipeline,
// reductions.hpp): block(i) for the entries [i, i + kSideBlock * N) before the terms of that block, rest(i)
// for [i, n) after the last whole block. The default does nothing.
constexpr std::size_t kSideBlock = 8;
struct no_side {
    void block(std::size_t) const {}
    void rest(std::size_t) const {}
};
template <class Block, class Rest>
struct side_fn {
    Block b;
    Rest r;
    NX_INLINE void block(std::size_t i) { b(i); }
    NX_INLINE void rest(std::size_t i) { r(i); }
};
template <class Block, class Rest>
side_fn<Block, Rest> make_side(Block b, Rest r) {
    return {b, r};
}

// Sum of full(i) over full vectors i = 0, N, ... and tail(i, mask) for the remainder, summed pairwise in
// blocks of 8 vectors and flushed to double (float32). float64: every vector goes into the Neumaier
// accumulator instead (PerTerm). full is called in increasing i, then tail (full may carry state from one
// vector to the next: line_stores). side: see no_side; it does not touch the sum. blocked_acc returns the
// accumulator, whose total() is blocked_sum (the several-rows kernels total many rows' at once: fold_rows).
template <class F, class Full, class Tail, class Side = no_side>
typename F::Acc blocked_acc(std::size_t n, Full full, Tail tail, Side&& side = Side{}) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    static_assert(kSideBlock == 8, "the float32 blocks below are the side blocks");
    typename F::Acc acc;
    std::size_t i = 0;
    constexpr bool PerTerm = sizeof(typename F::T) == 8;
    if constexpr (PerTerm) {
        // float64: every vector goes straight into the Neumaier accumulator. A pairwise block in
        // working precision would round 1 + tiny terms in the lane holding the maximum (several ULP
        // on rows dominated by one term, found by the fuzzer).
        for (; i + 8 * N <= n; i += 8 * N) {
            side.block(i);
            for (std::size_t k = 0; k < 8 * N; k += N) F::flush(acc, full(i + k));
        }
        side.rest(i);
        for (; i + N <= n; i += N) F::flush(acc, full(i));
        if (i < n) F::flush(acc, tail(i, F::tail_mask(n - i)));
        return acc;
    }
    // One pairwise tree of eight terms, for the blocks and for the remainder.
    auto tree8 = [](V t0, V t1, V t2, V t3, V t4, V t5, V t6, V t7) {
        return F::add(F::add(F::add(t0, t1), F::add(t2, t3)), F::add(F::add(t4, t5), F::add(t6, t7)));
    };
    for (; i + 8 * N <= n; i += 8 * N) {
        side.block(i);
        const V t0 = full(i), t1 = full(i + N), t2 = full(i + 2 * N), t3 = full(i + 3 * N);
        const V t4 = full(i + 4 * N), t5 = full(i + 5 * N), t6 = full(i + 6 * N), t7 = full(i + 7 * N);
        F::flush(acc, tree8(t0, t1, t2, t3, t4, t5, t6, t7));
    }
    side.rest(i);
    if (i == n) return acc;  // no remainder: its flush would add +0, which leaves a sum that started at +0 as it is
    // The remainder (at most 7 vectors and a tail) by the blocks' tree too, the missing terms +0. Added one
    // after the other, the lane that holds the maximum's 1 rounded each term below half its ulp away in
    // turn: a softmax whose other terms are about 2^-24 of the maximum was 7.4 ULP off with 121 entries.
    // The terms in order (full may carry state), each in a register of its own: an array indexed at run time
    // sat on the stack and made rows of three remainder vectors 1.1-1.25x slower.
    const std::size_t k = (n - i + N - 1) / N;  // whole vectors and the tail: 1..8 terms
    auto term = [&](std::size_t j) {
        const std::size_t at = i + j * N;
        if (j >= k) return F::zero();
        return at + N <= n ? full(at) : tail(at, F::tail_mask(n - at));
    };
    const V t0 = term(0);
    if (k == 1) {
        F::flush(acc, t0);
        return acc;
    }
    const V t1 = term(1);
    if (k == 2) {
        F::flush(acc, F::add(t0, t1));
        return acc;
    }
    const V t2 = term(2), t3 = term(3), t4 = term(4), t5 = term(5), t6 = term(6), t7 = term(7);
    F::flush(acc, tree8(t0, t1, t2, t3, t4, t5, t6, t7));
    return acc;
}
template <class F, class Full, class Tail, class Side = no_side>
double blocked_sum(std::size_t n, Full full, Tail tail, Side&& side = Side{}) {
    return blocked_acc<F>(n, full, tail, std::forward<Side>(side)).total();
}

// ------------------------------------------------------------------------------------------------------
// Shifted argument t = beta (x - m) as hi + lo (see kernel_table.hpp). Entries whose t is below the
// underflow threshold (including x = -inf) are clamped to it: their exp rounds to +0. Lift: exp_of is
// 2^kLift exp(t), the terms of a counting sum (exp_core).
template <class F, bool Scaled, bool Lift = false>
struct arg {
    using V = typename F::V;
    using T = typename F::T;
    V nm, bh, bl, tmin, xmin;
    arg(T m, scale2<T> beta)
        : nm(F::set1(-m)), bh(F::set1(beta.hi)), bl(F::set1(beta.lo)), tmin(F::set1(F::kMinArg)),
          xmin(F::set1(F::clamp_below(m))) {}
    // exp(beta (x - m)) for a vector x and -m (per row, or per column with xlow = clamp_below(m)); Zero: +0
    // in the lanes of z (exp_zero_if below).
    template <bool Zero = false>
    NX_INLINE V exp_of(V x, V negm, V xlow, typename F::B z = typename F::B()) const {
        if constexpr (!Scaled) {
            return F::template exp_minus<Lift, Zero>(x, negm, xlow, z);
        } else {
            // x - m = d + lo exactly (F::minus_lo), then beta * (d + lo) as hi + lo (TwoProduct by FMA:
            // fmsub(d, bh, hi) is the exact error of the product); products can overflow for extreme
            // temperatures, so entries below the underflow threshold (and x = -inf, whose error term is NaN)
            // drop lo.
            const V d = F::add(x, negm);
            const V hi = F::mul(d, bh);
            V lo = F::fmadd(F::minus_lo(x, negm, d), bh, F::fmadd(d, bl, F::fmsub(d, bh, hi)));
            lo = F::zero_unless(F::ge(hi, tmin), lo);
            return F::template exp_core<false, true, Lift, Zero>(F::max(tmin, hi), lo, z);
        }
    }
    NX_INLINE V exp_of(V x) const { return exp_of(x, nm, xmin); }
    // exp_of with the lanes of z at +0: a counting sum's terms, z the entries equal to the maximum.
    NX_INLINE V exp_zero_if(typename F::B z, V x, V negm, V xlow) const { return exp_of<true>(x, negm, xlow, z); }
    NX_INLINE V exp_zero_if(typename F::B z, V x) const { return exp_of<true>(x, nm, xmin, z); }
};

// The shifted argument of accuracy::fast (kernel_table.hpp): t = fl(fl(x - m) * beta.hi), rounded as the
// peers round it, with no error term. Relative error of exp(t): the exp's <= 1 ULP plus |t| 2^-24 (float64:
// 2^-53) from each rounding of the argument, since d(exp t)/exp t = dt: one (x - m), or three with a
// temperature (x - m, beta rounded to beta.hi, the product). x = -inf gives
// t = -inf, raised to kMinArg (exp rounds to +0 there); a product that overflows is -inf too. The same
// interface as arg, so the kernels take either (xlow is not needed: nothing here can be NaN for x <= m).
// E names the exp it feeds: accuracy::fast's exp_core_fast, the library's exp_core lifted by 2^kLift (the
// counting sums of float16 / bfloat16 scores, which feed log(sum)), exp_core_half (the outputs and sums of
// 16-bit softmax; storage_kernels in kernel_table.hpp), or exp_core itself (exact: m = 0, where x - 0 is the
// exact argument, so exp_of is arg's exp_of bit for bit without its error term; kernel_table.hpp: softmax_shift).
enum class exp_kind { fast, lifted, half, exact };
template <class F, bool Scaled, exp_kind E = exp_kind::fast>
struct fast_arg {
    using V = typename F::V;
    using T = typename F::T;
    V nm, bh, tmin;
    fast_arg(T m, scale2<T> beta) : nm(F::set1(-m)), bh(F::set1(beta.hi)), tmin(F::set1(F::kMinArg)) {}
    // The argument itself, before the clamp (log_softmax's t).
    NX_INLINE V t_of(V x, V negm) const {
        const V d = F::add(x, negm);
        return Scaled ? F::mul(d, bh) : d;
    }
    NX_INLINE V exp_of(V x, V negm, V) const {
        const V t = F::max(tmin, t_of(x, negm));
        if constexpr (E == exp_kind::half) return F::exp_core_half(t);
        else if constexpr (E == exp_kind::lifted) return F::template exp_core<false, false, true>(t, F::zero());
        else if constexpr (E == exp_kind::exact) return F::template exp_core<false, false>(t, F::zero());
        else return F::exp_core_fast(t);
    }
    NX_INLINE V exp_of(V x) const { return exp_of(x, nm, nm); }
    // exp_of with the lanes of z at +0 (arg::exp_zero_if).
    NX_INLINE V exp_zero_if(typename F::B z, V x, V negm, V) const {
        if constexpr (E == exp_kind::lifted)
            return F::template exp_core<false, false, true, true>(F::max(tmin, t_of(x, negm)), F::zero(), z);
        else return F::zero_if(z, exp_of(x, negm, negm));
    }
    NX_INLINE V exp_zero_if(typename F::B z, V x) const { return exp_zero_if(z, x, nm, nm); }
};

// The argument of each mode: Fast selects fast_arg (accuracy::fast), else the exact arg.
template <class F, bool Scaled, bool Fast>
using mode_arg = std::conditional_t<Fast, fast_arg<F, Scaled>, arg<F, Scaled>>;

// ---- software prefetch of the decoding kernels (generic/attention.hpp, avx512bf16/attention.cpp) --------
// Prefetches (F::prefetch, an attention traits' hint) the cache lines of `rows` rows of row_bytes bytes each,
// ld_bytes apart, four lines per next() call, in address order: all of row 0's lines, then row 1's, ... A
// decoding tile calls next() once per cache line of its four key rows, so over the tile it prefetches every
// line of the four rows kPrefetchRows ahead. The order matters: the L2 stream prefetcher follows a run of
// misses in address order and then fetches ahead of it; the same lines prefetched a line of each row at a
// time (row_bytes apart, then back) did not train it (Zen 4, a float32 decode from memory:
// docs/attention.md, decode from memory).
template <class F>
struct line_prefetcher {
    const char* row;
    std::ptrdiff_t ld_bytes;
    std::size_t row_bytes;
    std::size_t rows;
    std::size_t off = 0;
    NX_INLINE void next() {
NX_UNROLL(4)
        for (int c = 0; c < 4; ++c) {
            if (rows == 0) return;
            F::prefetch(row + off);
            off += 64;
            if (off >= row_bytes) {
                off = 0;
                row += ld_bytes;
                --rows;
            }
        }
    }
};

// Spreads a caller's prefetch_lines (kernel_table.hpp) over a decoding kernel's steps: `per` lines into L2 at
// each next(), chosen so that `steps` calls of next() cover them all; finish() prefetches whatever is left.
struct span_prefetcher {
    std::uintptr_t p, end;
    std::size_t per;
    span_prefetcher(prefetch_lines pf, std::size_t steps)
        : p(pf.first), end(pf.first + 64 * pf.count), per(steps ? (pf.count + steps - 1) / steps : 0) {}
    NX_INLINE void next() {
        for (std::size_t i = 0; i < per && p < end; ++i, p += 64) NX_PREFETCH_L2(reinterpret_cast<const char*>(p));
    }
    NX_INLINE void finish() {
        for (; p < end; p += 64) NX_PREFETCH_L2(reinterpret_cast<const char*>(p));
    }
};
