// AVX2 + FMA kernels (x86-64, 8 x float32 / 4 x float64 per vector): the attention micro-kernels and
// the assembly of the AVX2 kernel table.
//
// Compiled with -mavx2 -mfma (as are avx2/reductions.cpp and avx2/sampling.cpp, and nothing else).
// Everything here has internal linkage; the only external symbol is avx2_kernels(), which the
// dispatcher calls after checking cpuid and xgetbv.
//
// The reduction and sampling kernels live in avx2/reductions.cpp and avx2/sampling.cpp: the algorithms of
// generic/ over the vector traits of avx2/traits.hpp. The attention kernels below use the same element
// traits F32/F64 (generic/lanes.hpp: the exp, exp(x - m) by arg<F, Scaled>, the double accumulators).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "exp_constants.hpp"
#include "isa_parts.hpp"
#include "kernel_table.hpp"
#include "avx2/traits.hpp"

namespace normexp::avx2 {
namespace {
#include "generic/lanes.hpp"

// ======================================================================================================
// Attention micro-kernels (kernel_table.hpp, attention_kernels). Register-blocked like a GEMM:
//   qk: S = Q K^T with K^T packed in panels of 16 keys; a tile is 6 query rows x 2 vectors of keys
//       (12 accumulators + 2 panel loads + 1 broadcast = 15 of the 16 ymm registers), one broadcast
//       of q[i][d] and two loads of kt[d] per 12 FMAs, so the loop is FMA-bound, not load-bound.
//   pv: O = alpha O + P V; a tile is 6 rows x 2 vectors of the value dimension, one broadcast of p[i][j]
//       and two loads of v[j] per 12 FMAs; V rows are read in place (unit stride along dv).
//   softmax_step: scores, running max, exp(x - m) of the rounded scores with the library's exp (Fast2Sum
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
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "avx2";
        avx2_add_reductions(t);
        avx2_add_sampling(t);
        t.attn_f32 = avx2::make_attention_kernels<avx2::F32>();
        t.attn_f64 = avx2::make_attention_kernels<avx2::F64>();
        return t;
    }();
    return table;
}
}  // namespace normexp
