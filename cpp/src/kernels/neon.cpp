// NEON kernels (aarch64 Advanced SIMD, 4 x float32 / 2 x float64 per vector): the attention
// micro-kernels and the assembly of the NEON kernel table.
//
// Advanced SIMD is part of armv8-a, so these files need no extra flags; they are compiled only for
// aarch64 (cmake/normexpIsa.cmake). Everything here has internal linkage; the only external symbol is
// neon_kernels().
//
// The reduction and sampling kernels live in neon/reductions.cpp and neon/sampling.cpp: the same
// algorithms as on AVX2 (generic/) over the vector traits of neon/traits.hpp, so the two SIMD sets differ
// only in the intrinsics (and the vector width: the blocking follows N). The attention kernels below use
// the same element traits F32/F64 (generic/lanes.hpp) and row_exp_store_impl (generic/reductions.hpp).
#include <arm_neon.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "exp_constants.hpp"
#include "isa_parts.hpp"
#include "kernel_table.hpp"
#include "neon/traits.hpp"

namespace normexp::neon {
namespace {
#include "generic/lanes.hpp"
#include "generic/reductions.hpp"

// ==== attention micro-kernels (kernel_table.hpp, attention_kernels) ===================================
// qk and pv are register-blocked like a GEMM: a tile is R = 4 query rows x 4 vectors (16 float32 = one
// key panel, or 8 float64), i.e. 16 accumulators + 4 loads + 1 broadcast of the 32 NEON registers, and
// each step does one broadcast and 4 loads per 16 vfmaq. Accumulation is in working precision with one
// FMA per product, so |err| <= dim u sum|q k| (qk) and (keys + 1) u (|alpha o| + sum|p v|) (pv), the
// bounds test_attention_kernels checks. Every attention entry is NEON (a null one would get the scalar
// kernel from the dispatcher: dispatch.cpp, with_fallback).
constexpr int kAttnRowsNeon = 4;

template <class F, int R>
inline void qk_tile(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt,
                    std::size_t dim, typename F::T* s, std::size_t lds) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    V a[R][4];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) a[r][c] = F::zero();
    for (std::size_t d = 0; d < dim; ++d) {
        const typename F::T* kd = kt + d * ldkt;
        const V b0 = F::load(kd), b1 = F::load(kd + N), b2 = F::load(kd + 2 * N), b3 = F::load(kd + 3 * N);
        for (int r = 0; r < R; ++r) {
            const V x = F::set1(q[r * ldq + d]);
            a[r][0] = F::fmadd(x, b0, a[r][0]);
            a[r][1] = F::fmadd(x, b1, a[r][1]);
            a[r][2] = F::fmadd(x, b2, a[r][2]);
            a[r][3] = F::fmadd(x, b3, a[r][3]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < 4; ++c) F::store(s + r * lds + c * N, a[r][c]);
}

// Calls tile.template operator()<R>(i) over row tiles: full tiles of kAttnRowsNeon, then one of 1..3.
template <class Tile>
void for_row_tiles(std::size_t rows, Tile tile) {
    std::size_t i = 0;
    for (; i + kAttnRowsNeon <= rows; i += kAttnRowsNeon) tile(i, std::integral_constant<int, kAttnRowsNeon>{});
    switch (rows - i) {
        case 3: tile(i, std::integral_constant<int, 3>{}); break;
        case 2: tile(i, std::integral_constant<int, 2>{}); break;
        case 1: tile(i, std::integral_constant<int, 1>{}); break;
        default: break;
    }
}

template <class F>
void k_qk(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt, std::size_t rows,
          std::size_t keys, std::size_t dim, typename F::T* s, std::size_t lds) {
    constexpr std::size_t W = 4 * F::N;  // columns per tile
    static_assert(kAttnKeyPanel % W == 0, "tile width must divide the key panel");
    const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
    for (std::size_t j = 0; j < padded; j += W)
        for_row_tiles(rows, [&](std::size_t i, auto r) {
            qk_tile<F, decltype(r)::value>(q + i * ldq, ldq, kt + j, ldkt, dim, s + i * lds + j, lds);
        });
}

// o = alpha o + p V on R rows x NV vectors of the value dimension; Tail: NV == 1 and only mk.n columns.
template <class F, int R, int NV, bool Tail>
inline void pv_tile(const typename F::T* p, std::size_t ldp, const typename F::T* v, std::ptrdiff_t ldv,
                    std::size_t keys, const typename F::T* alpha, typename F::T* o, std::size_t ldo,
                    typename F::M mk) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    static_assert(!Tail || NV == 1, "only single-vector tiles have a tail");
    V a[R][NV];
    for (int r = 0; r < R; ++r) {
        const V al = F::set1(alpha[r]);
        for (int c = 0; c < NV; ++c)
            a[r][c] = F::mul(al, Tail ? F::load_tail(o + r * ldo, mk) : F::load(o + r * ldo + c * N));
    }
    for (std::size_t j = 0; j < keys; ++j) {
        const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
        V b[NV];
        for (int c = 0; c < NV; ++c) b[c] = Tail ? F::load_tail(vj, mk) : F::load(vj + c * N);
        for (int r = 0; r < R; ++r) {
            const V x = F::set1(p[r * ldp + j]);
            for (int c = 0; c < NV; ++c) a[r][c] = F::fmadd(x, b[c], a[r][c]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) {
            if (Tail)
                F::store_tail(o + r * ldo, mk, a[r][c]);
            else
                F::store(o + r * ldo + c * N, a[r][c]);
        }
}

template <class F>
void k_pv(const typename F::T* p, std::size_t ldp, const typename F::T* v, std::ptrdiff_t ldv, std::size_t rows,
          std::size_t keys, std::size_t dv, const typename F::T* alpha, typename F::T* o, std::size_t ldo) {
    constexpr std::size_t N = F::N;
    const auto full = F::tail_mask(N);
    // Row tiles outer, column tiles inner: a tile's P rows stay in L1 while V streams by.
    for_row_tiles(rows, [&](std::size_t i, auto r) {
        constexpr int R = decltype(r)::value;
        const auto* pi = p + i * ldp;
        const auto* ai = alpha + i;
        auto* oi = o + i * ldo;
        std::size_t c = 0;
        for (; c + 4 * N <= dv; c += 4 * N) pv_tile<F, R, 4, false>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, full);
        for (; c + N <= dv; c += N) pv_tile<F, R, 1, false>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, full);
        if (c < dv) pv_tile<F, R, 1, true>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, F::tail_mask(dv - c));
    });
}

// qk_direct (decoding): four keys at a time, four accumulators over the head dimension (the tail lanes
// load as zeros and add nothing), then one pairwise horizontal add per key (FADDP). Each key row is read
// once, contiguously. |err| <= (dim + 1) u sum|q k| like qk.
inline float hsum(float32x4_t a) { return vaddvq_f32(a); }
inline double hsum(float64x2_t a) { return vaddvq_f64(a); }

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
            si[j] = hsum(a0);
            si[j + 1] = hsum(a1);
            si[j + 2] = hsum(a2);
            si[j + 3] = hsum(a3);
        }
        for (; j < keys; ++j) {
            const auto* kj = k + static_cast<std::ptrdiff_t>(j) * ldk;
            V a = F::zero();
            std::size_t d = 0;
            for (; d < full; d += N) a = F::fmadd(F::load(qi + d), F::load(kj + d), a);
            if (d < dim) a = F::fmadd(F::load_tail(qi + d, mk), F::load_tail(kj + d, mk), a);
            si[j] = hsum(a);
        }
    }
}

// pack_kt: N x N register transposes (TRN1/TRN2) where the key rows have unit stride along the head
// dimension, element by element for the edges and other layouts; the zero padding as the spec says.
inline void transpose_store(const float* k, std::ptrdiff_t k_row, float* kt, std::size_t ldkt) {  // 4 x 4
    const float32x4_t r0 = vld1q_f32(k), r1 = vld1q_f32(k + k_row), r2 = vld1q_f32(k + 2 * k_row),
                      r3 = vld1q_f32(k + 3 * k_row);
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
    const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
    vst1q_f32(kt, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(kt + ldkt, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(kt + 2 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(kt + 3 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}
inline void transpose_store(const double* k, std::ptrdiff_t k_row, double* kt, std::size_t ldkt) {  // 2 x 2
    const float64x2_t r0 = vld1q_f64(k), r1 = vld1q_f64(k + k_row);
    vst1q_f64(kt, vtrn1q_f64(r0, r1));
    vst1q_f64(kt + ldkt, vtrn2q_f64(r0, r1));
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
    for (std::size_t d = 0; d < dim; ++d) {
        T* row = kt + d * ldkt;
        for (std::size_t j = d < d0 ? j0 : 0; j < keys; ++j)
            row[j] = k[static_cast<std::ptrdiff_t>(j) * k_row + static_cast<std::ptrdiff_t>(d) * k_col];
        for (std::size_t j = keys; j < padded; ++j) row[j] = T(0);
    }
}

// softmax_step: the scores, then the online-softmax update with the library's exp (<= 1 ULP, Fast2Sum
// argument: generic/lanes.hpp) and the block sum of row_exp_store (working precision in blocks, flushed to double).
//  * Scores: with only a scale (and possibly the band) x = scale * s is one vector multiply: the product
//    of two T values rounded once to T, which is what the specification's double product rounded to T
//    gives (the double product of two floats is exact; for doubles it is the same single rounding). Keys
//    outside the band are one prefix and one suffix of the row, set to -inf. With softcap, ALiBi, bias or
//    a boolean mask each score is formed exactly as the scalar specification does (double, one rounding).
//  * The maximum ignores NaN (FMAXNM, starting from -inf), like the specification's `x > mx`; a NaN score
//    still makes its p, and so l, NaN.
#include "attn_score.hpp"
template <class T>
T attn_score_spec(T raw, std::size_t i, std::size_t j, const attn_scores<T>& sc) {  // scalar.cpp's, exactly
    return attn_score(raw, i, j, sc);
}

inline float32x4_t maxnm(float32x4_t a, float32x4_t b) { return vmaxnmq_f32(a, b); }
inline float64x2_t maxnm(float64x2_t a, float64x2_t b) { return vmaxnmq_f64(a, b); }
inline float hmaxnm(float32x4_t a) { return vmaxnmvq_f32(a); }
inline double hmaxnm(float64x2_t a) { return vmaxnmvq_f64(a); }

template <class F>
void k_softmax_step(typename F::T* s, std::size_t lds, std::size_t rows, std::size_t keys,
                    const attn_scores<typename F::T>& sc, typename F::T* m, double* l, typename F::T* alpha) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    constexpr T ninf = -__builtin_huge_val();
    const bool plain = !(sc.softcap > 0) && sc.alibi_slope == 0 && !sc.bias && !sc.keep;
    const V scale = F::set1(sc.scale);
    for (std::size_t i = 0; i < rows; ++i) {
        T* si = s + i * lds;
        if (plain) {
            std::size_t j = 0;
            for (; j + N <= keys; j += N) F::store(si + j, F::mul(F::load(si + j), scale));
            for (; j < keys; ++j) si[j] = si[j] * sc.scale;
            if (sc.band) {  // visible keys: band_lo <= j - i <= band_hi
                const auto ii = static_cast<std::ptrdiff_t>(i), kk = static_cast<std::ptrdiff_t>(keys);
                std::ptrdiff_t lo = ii + sc.band_lo, hi = ii + sc.band_hi + 1;  // [lo, hi) clipped to [0, keys)
                lo = lo < 0 ? 0 : lo > kk ? kk : lo;
                hi = hi > kk ? kk : hi < lo ? lo : hi;
                for (std::ptrdiff_t q = 0; q < lo; ++q) si[q] = ninf;
                for (std::ptrdiff_t q = hi; q < kk; ++q) si[q] = ninf;
            }
        } else {
            for (std::size_t j = 0; j < keys; ++j) si[j] = attn_score_spec(si[j], i, j, sc);
        }
        V mv = F::set1(ninf);
        std::size_t j = 0;
        for (; j + N <= keys; j += N) mv = maxnm(mv, F::load(si + j));
        T rmax = hmaxnm(mv);
        for (; j < keys; ++j)
            if (si[j] > rmax) rmax = si[j];
        const T mx = rmax > m[i] ? rmax : m[i];
        // While every score so far is -inf, subtract 0 instead: masked entries give exp(-inf) = 0.
        const T mu = mx == ninf ? T(0) : mx;
        T a = T(1);
        if (!(mx == m[i] || mx == ninf)) {
            const arg<F, false> e(mu, scale2<T>{T(1), T(0)});
            T out[N];
            F::store(out, e.exp_of(F::set1(m[i])));
            a = out[0];
        }
        const double sum = row_exp_store_impl<F, false>(si, si, keys, mu, scale2<T>{T(1), T(0)});
        l[i] = l[i] * double(a) + sum;
        m[i] = mx;
        alpha[i] = a;
    }
}

template <class F>
attention_kernels<typename F::T> make_attention_kernels() {
    attention_kernels<typename F::T> k{};
    k.pack_kt = k_pack_kt<F>;
    k.qk = k_qk<F>;
    k.softmax_step = k_softmax_step<F>;
    k.pv = k_pv<F>;
    k.qk_direct = k_qk_direct<F>;
    return k;
}

}  // namespace
}  // namespace normexp::neon

namespace normexp {
const kernel_table& neon_kernels() {
    // Every entry is filled; an entry left null would run the scalar kernel (dispatch.cpp, with_fallback).
    static const kernel_table table = [] {
        kernel_table t{};
        t.name = "neon";
        neon_add_reductions(t);
        neon_add_sampling(t);
        t.attn_f32 = neon::make_attention_kernels<neon::F32>();
        t.attn_f64 = neon::make_attention_kernels<neon::F64>();
        return t;
    }();
    return table;
}
}  // namespace normexp
