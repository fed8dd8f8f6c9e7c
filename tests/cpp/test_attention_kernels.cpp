// The attention micro-kernels (kernel_table.hpp, attention_kernels) of every ISA this CPU runs, against
// the scalar specification, at every tail length of rows (register tile 6), keys (panel 16, vector 8/4)
// and head dimensions (vector 8/4, tile 16/8), and with every score feature (scale, softcap, ALiBi,
// additive and boolean masks with row stride 0 or not, causal/window band).
//
// Bounds and their reasons (eps = machine epsilon of T, u = eps / 2):
//  * pack_kt: a copy, exact.
//  * qk: a dot product of length dim with FMAs in working precision vs. the scalar's double sum rounded
//    once: |err| <= (dim + 1) u sum_d |q_d k_d|  (the standard gamma_n bound, plus the final rounding).
//  * softmax_step: the SIMD kernel rounds the score after each of scale, softcap, ALiBi and bias (at most
//    5 roundings plus tanh's ~2 ulp(softcap)), the scalar once: |dx| <= 8 u (|x| + |softcap| + 1). exp is
//    within 1 ULP and its TwoSum argument exact, so |dp| <= p (|dx| + |dm| + 2 eps) with |dm| bounded like
//    |dx|; the row sum adds at most keys * u relative. We check |dp| <= 2 (8 u X + 2 eps) + keys u with
//    X = max |x| + |softcap| + 1 over the row, and the same relative bound on l and alpha.
//  * pv: alpha o + sum_j p_j v_j with FMAs: |err| <= (keys + 2) u (|alpha o| + sum_j |p_j v_j|).
//
// The K/V entries for 16-bit caches (attention_kv_kernels<float16 / bfloat16>): on every set, bit for bit the
// set's own float32 entry applied to the widened values (their contract, and what the float32 bounds above
// then cover), at every tail length, with NaN and infinities among the values; and the C++ API's 16-bit
// overloads against a double reference built from the same 16-bit values (test_driver_16).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "kernels/exp_constants.hpp"
#include "half_convert.hpp"
#include "normexp/normexp.hpp"

namespace {

using normexp::attention_kernels;
using normexp::attn_scores;
using normexp::kAttnKeyPanel;

template <class T>
const attention_kernels<T>& kern(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.attn_f32; else return t.attn_f64;
}

std::size_t padded(std::size_t keys) { return (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel; }

template <class T>
std::vector<T> randn(std::mt19937_64& rng, std::size_t n, double sd = 1.0) {
    std::normal_distribution<double> g(0.0, sd);
    std::vector<T> v(n);
    for (auto& x : v) x = T(g(rng));
    return v;
}

template <class T>
void test_pack(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(1);
    for (std::size_t keys = 0; keys <= 41; ++keys)
        for (std::size_t dim : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64, 100}) {
            for (std::ptrdiff_t kcol : {1, 3}) {
                const std::ptrdiff_t krow = std::ptrdiff_t(dim) * kcol + 5;
                const auto k = randn<T>(rng, keys * std::size_t(krow) + dim * std::size_t(kcol) + 1);
                const std::size_t ld = padded(keys) + 3;
                std::vector<T> a(dim * ld, T(7)), b(dim * ld, T(7));
                ks.pack_kt(k.data(), krow, kcol, keys, dim, a.data(), ld);
                kv.pack_kt(k.data(), krow, kcol, keys, dim, b.data(), ld);
                bool same = true;
                for (std::size_t d = 0; d < dim; ++d)
                    for (std::size_t j = 0; j < padded(keys); ++j) same &= a[d * ld + j] == b[d * ld + j];
                CHECK(same, "%s pack_kt<%zu> keys=%zu dim=%zu kcol=%td differs from scalar", isa, sizeof(T), keys, dim,
                      kcol);
            }
        }
}

template <class T>
void test_qk(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(2);
    const double u = std::numeric_limits<T>::epsilon() / 2;
    double worst = 0;
    for (std::size_t rows = 1; rows <= 25; ++rows)
        for (std::size_t keys : {1, 5, 8, 15, 16, 17, 31, 33, 64, 80, 100, 128})
            for (std::size_t dim : {1, 3, 8, 9, 64, 129}) {
                const std::size_t ldq = dim + 2, ldkt = padded(keys) + 16, lds = padded(keys) + 8;
                const auto q = randn<T>(rng, rows * ldq);
                const auto kt = randn<T>(rng, dim * ldkt);
                std::vector<T> a(rows * lds, T(0)), b(rows * lds, T(0));
                ks.qk(q.data(), ldq, kt.data(), ldkt, rows, keys, dim, a.data(), lds);
                kv.qk(q.data(), ldq, kt.data(), ldkt, rows, keys, dim, b.data(), lds);
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < padded(keys); ++j) {
                        double mag = 0;
                        for (std::size_t d = 0; d < dim; ++d) mag += std::fabs(double(q[i * ldq + d]) * kt[d * ldkt + j]);
                        const double err = std::fabs(double(a[i * lds + j]) - double(b[i * lds + j]));
                        const double bound = (dim + 1) * u * mag;
                        worst = std::max(worst, err / (u * mag + 1e-300));
                        CHECK(err <= bound, "%s qk<%zu> rows=%zu keys=%zu dim=%zu (%zu,%zu): err %g > %g", isa, sizeof(T),
                              rows, keys, dim, i, j, err, bound);
                    }
            }
    std::printf("  %s qk<%zu>: worst error %.1f u * sum|q k|\n", isa, sizeof(T), worst);
}

template <class T>
void test_qk_direct(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(5);
    const double u = std::numeric_limits<T>::epsilon() / 2;
    double worst = 0;
    for (std::size_t rows = 1; rows <= 5; ++rows)
        for (std::size_t keys = 0; keys <= 19; ++keys)
            for (std::size_t dim : {1, 3, 4, 7, 8, 9, 16, 17, 64, 129}) {
                const std::size_t ldq = dim + 1, lds = keys + 2;
                const std::ptrdiff_t ldk = std::ptrdiff_t(dim) + 3;
                const auto q = randn<T>(rng, rows * ldq);
                // kAhead rows past the keys: `ahead` lets the kernel prefetch them (its prefetching tiles
                // then run for these small key counts too); the scores must not change.
                constexpr std::size_t kAhead = 40;
                const auto k = randn<T>(rng, (keys + kAhead) * std::size_t(ldk));
                std::vector<T> a(rows * lds, T(5)), b(rows * lds, T(5)), c(rows * lds, T(5));
                ks.qk_direct(q.data(), ldq, k.data(), ldk, rows, keys, dim, a.data(), lds, 0, {});
                kv.qk_direct(q.data(), ldq, k.data(), ldk, rows, keys, dim, b.data(), lds, 0, {});
                // And lines of the caller's to prefetch (prefetch_lines): up to 200 whole lines inside k.
                const auto k0 = reinterpret_cast<std::uintptr_t>(k.data()), line0 = (k0 + 63) & ~std::uintptr_t(63);
                const normexp::prefetch_lines side{
                    line0, std::min<std::size_t>((rows * 37 + keys * 11 + dim) % 200,
                                                 (k0 + k.size() * sizeof(T) - line0) / 64)};
                kv.qk_direct(q.data(), ldq, k.data(), ldk, rows, keys, dim, c.data(), lds, kAhead, side);
                CHECK(std::memcmp(b.data(), c.data(), b.size() * sizeof(T)) == 0,
                      "%s qk_direct<%zu> rows=%zu keys=%zu dim=%zu: ahead or pf changed the scores", isa, sizeof(T),
                      rows, keys, dim);
                for (std::size_t i = 0; i < rows; ++i) {
                    for (std::size_t j = 0; j < keys; ++j) {
                        double mag = 0;
                        for (std::size_t d = 0; d < dim; ++d) mag += std::fabs(double(q[i * ldq + d]) * k[j * ldk + d]);
                        const double err = std::fabs(double(a[i * lds + j]) - double(b[i * lds + j]));
                        worst = std::max(worst, err / (u * mag + 1e-300));
                        CHECK(err <= (dim + 1) * u * mag, "%s qk_direct<%zu> rows=%zu keys=%zu dim=%zu: err %g", isa,
                              sizeof(T), rows, keys, dim, err);
                    }
                    for (std::size_t j = keys; j < lds; ++j)
                        CHECK(b[i * lds + j] == T(5), "%s qk_direct wrote past keys", isa);
                }
            }
    std::printf("  %s qk_direct<%zu>: worst error %.1f u * sum|q k|\n", isa, sizeof(T), worst);
}

template <class T>
void test_softmax(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(3);
    const double u = std::numeric_limits<T>::epsilon() / 2, eps = 2 * u;
    double worst = 0;
    std::size_t cases = 0;
    for (int feature = 0; feature < 8; ++feature)
        for (std::size_t rows : {1, 2, 3, 5, 7})
            for (std::size_t keys = 1; keys <= 40 || keys == 127 || keys == 128; keys = keys == 40 ? 127 : keys + 1) {
                const std::size_t lds = padded(keys) + 3;
                auto s0 = randn<T>(rng, rows * lds, 4.0);
                attn_scores<T> sc{};
                sc.scale = T(0.37);
                std::vector<T> bias;
                std::vector<std::uint8_t> keep;
                switch (feature) {
                    case 0: break;
                    case 1: sc.softcap = T(5); sc.scale = T(3); break;
                    case 2: sc.alibi_slope = T(0.3); sc.alibi_center = std::ptrdiff_t(keys / 2) - 3; break;
                    case 3:
                        bias = randn<T>(rng, rows * keys, 2.0);
                        bias[0] = -std::numeric_limits<T>::infinity();
                        sc.bias = bias.data();
                        sc.bias_ld = std::ptrdiff_t(keys);
                        break;
                    case 4:
                        bias = randn<T>(rng, keys, 2.0);
                        sc.bias = bias.data();
                        sc.bias_ld = 0;
                        break;
                    case 5:
                        keep.resize(rows * keys);
                        for (auto& b : keep) b = std::uint8_t(rng() % 3 != 0);
                        sc.keep = keep.data();
                        sc.keep_ld = std::ptrdiff_t(keys);
                        break;
                    case 6:  // causal diagonal inside the block, with a window
                        sc.band = true;
                        sc.band_lo = -4;
                        sc.band_hi = std::ptrdiff_t(keys % 5) - 2;
                        break;
                    default:  // everything at once; some rows fully masked
                        sc.softcap = T(8);
                        sc.alibi_slope = T(0.125);
                        sc.alibi_center = 1;
                        bias = randn<T>(rng, keys);
                        sc.bias = bias.data();
                        sc.bias_ld = 0;
                        keep.resize(rows * keys);
                        for (auto& b : keep) b = std::uint8_t(rng() % 2);
                        sc.keep = keep.data();
                        sc.keep_ld = std::ptrdiff_t(keys);
                        sc.band = true;
                        sc.band_lo = -std::ptrdiff_t(keys);
                        sc.band_hi = 0;
                }
                // Two consecutive blocks, so the running statistics and alpha are exercised.
                std::vector<T> ma(rows, -std::numeric_limits<T>::infinity()), mb = ma, aa(rows), ab(rows);
                std::vector<double> la(rows, 0.0), lb(rows, 0.0);
                for (int step = 0; step < 2; ++step) {
                    if (step == 1)
                        for (auto& x : s0) x = T(x * 1.7);
                    std::vector<T> a = s0, b = s0;
                    ks.softmax_step(a.data(), lds, rows, keys, sc, ma.data(), la.data(), aa.data());
                    kv.softmax_step(b.data(), lds, rows, keys, sc, mb.data(), lb.data(), ab.data());
                    ++cases;
                    for (std::size_t i = 0; i < rows; ++i) {
                        double X = std::fabs(double(sc.softcap)) + 1;
                        for (std::size_t j = 0; j < keys; ++j)
                            X = std::max(X, std::fabs(double(s0[i * lds + j]) * sc.scale) +
                                                std::fabs(double(sc.alibi_slope)) * double(keys + 8) + 8);
                        const double tol = 2 * (8 * u * X + 2 * eps) + keys * u;
                        CHECK(ma[i] == mb[i] || std::fabs(double(ma[i]) - double(mb[i])) <= 8 * u * X,
                              "%s softmax<%zu> f%d rows=%zu keys=%zu row %zu: m %g vs %g", isa, sizeof(T), feature, rows,
                              keys, i, double(ma[i]), double(mb[i]));
                        CHECK(std::fabs(la[i] - lb[i]) <= tol * std::max(1.0, la[i]),
                              "%s softmax<%zu> f%d rows=%zu keys=%zu row %zu: l %g vs %g", isa, sizeof(T), feature, rows,
                              keys, i, la[i], lb[i]);
                        CHECK(std::fabs(double(aa[i]) - double(ab[i])) <= tol,
                              "%s softmax<%zu> f%d rows=%zu keys=%zu row %zu: alpha %g vs %g", isa, sizeof(T), feature,
                              rows, keys, i, double(aa[i]), double(ab[i]));
                        for (std::size_t j = 0; j < keys; ++j) {
                            const double pa = a[i * lds + j], pb = b[i * lds + j];
                            const double err = std::fabs(pa - pb);
                            worst = std::max(worst, err / eps);
                            CHECK(err <= tol && ((pa == 0) == (pb == 0) || err <= tol),
                                  "%s softmax<%zu> f%d rows=%zu keys=%zu (%zu,%zu): p %.9g vs %.9g (tol %g)", isa,
                                  sizeof(T), feature, rows, keys, i, j, pa, pb, tol);
                        }
                        // Masked entries are exactly 0 in both.
                        if (sc.keep)
                            for (std::size_t j = 0; j < keys; ++j)
                                if (!sc.keep[i * keys + j]) CHECK(b[i * lds + j] == 0, "%s masked entry not 0", isa);
                    }
                }
            }
    std::printf("  %s softmax_step<%zu>: %zu blocks, worst |dp| %.1f eps\n", isa, sizeof(T), cases, worst);
}

// softmax_step at extreme magnitudes: raw scores N 2^k (integers |N| < 2^12, with ties) up to the top of
// the dtype's range, times scales that round the product (1/3, 1e10, -7.3) or not (powers of two). The
// specification rounds each score once and takes the shifted argument from that rounded score, so the
// maximal entries have p = 1 exactly and no p exceeds 1; a kernel that shifts the unrounded product
// gets exp(+-ulp(m)/2) there. Features that round again are exact here: softcap is saturated (|x| >= 64
// softcap: tanh = +-1 in both dtypes), ALiBi slopes and biases are powers of two (times small integers)
// close to the scores' unit, with a power-of-two scale. So every kernel set forms the same scores and
// maxima (m identical), and p, alpha differ by exp's rounding only: |dp| <= 4 eps; l by 4 eps + keys u
// relative.
template <class T>
void test_softmax_extremes(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(7);
    const double u = std::numeric_limits<T>::epsilon() / 2, eps = 2 * u;
    const int top = std::numeric_limits<T>::max_exponent - 14;  // N 2^k < 2^(max_exponent - 2)
    const int exps[] = {0, 20, 40, 70, top / 2, top - 40, top};
    const double scales[] = {0x1.5555555555555p-2, 0x1.2a05f2p+33, -0x1.d333333333333p+2, 0x1p-40, -0x1p+20};
    std::uniform_int_distribution<int> small(-4095, 4095);
    std::size_t cases = 0;
    for (int k : exps)
        for (double scale_d : scales)
            for (int feature = 0; feature < 6; ++feature)
                for (std::size_t rows : {1, 3, 7})
                    for (std::size_t keys : {1, 2, 5, 8, 9, 16, 17, 33, 127, 128}) {
                        const T scale = T(scale_d);
                        if (std::ldexp(4096.0, k) * std::fabs(scale_d) > 0.25 * double(std::numeric_limits<T>::max()))
                            continue;  // no overflow (tests/python/test_attention_extremes.py covers infinite scores)
                        const int se = std::ilogb(scale_d);
                        const bool exact_scale = std::ldexp(1.0, se) == std::fabs(scale_d);
                        if ((feature == 3 || feature == 4) && !exact_scale) continue;
                        const std::size_t lds = padded(keys) + 3;
                        // Raw scores: few distinct values per row (ties), copied across the row.
                        std::vector<T> s0(rows * lds, T(0));
                        for (std::size_t i = 0; i < rows; ++i) {
                            const int distinct[3] = {small(rng), small(rng), small(rng)};
                            for (std::size_t j = 0; j < keys; ++j)
                                s0[i * lds + j] = T(std::ldexp(double(distinct[(j * 7 + i) % 3] + int(j % 2)), k));
                        }
                        const double unit = std::ldexp(std::fabs(scale_d), k);  // scores are multiples of it
                        attn_scores<T> sc{};
                        sc.scale = scale;
                        std::vector<T> bias;
                        std::vector<std::uint8_t> keep;
                        switch (feature) {
                            case 0: break;
                            case 1: sc.band = true; sc.band_lo = -3; sc.band_hi = std::ptrdiff_t(keys % 5) - 2; break;
                            case 2: sc.softcap = T(unit / 64); break;
                            case 3: sc.alibi_slope = T(unit / 4); sc.alibi_center = std::ptrdiff_t(keys / 2); break;
                            case 4:
                                bias.resize(rows * keys);
                                for (auto& b : bias) b = T(double(small(rng) % 8) * unit * 2);
                                bias[0] = -std::numeric_limits<T>::infinity();
                                sc.bias = bias.data();
                                sc.bias_ld = std::ptrdiff_t(keys);
                                break;
                            default:
                                keep.resize(rows * keys);
                                for (auto& b : keep) b = std::uint8_t(rng() % 3 != 0);
                                sc.keep = keep.data();
                                sc.keep_ld = std::ptrdiff_t(keys);
                        }
                        std::vector<T> ma(rows, -std::numeric_limits<T>::infinity()), mb = ma, aa(rows), ab(rows);
                        std::vector<double> la(rows, 0.0), lb(rows, 0.0);
                        for (int step = 0; step < 2; ++step) {
                            if (step == 1)  // a second block whose maximum is larger in some rows
                                for (std::size_t x = 0; x < s0.size(); ++x) s0[x] = (x / lds) % 2 ? s0[x] * T(2) : s0[x];
                            std::vector<T> a = s0, b = s0;
                            ks.softmax_step(a.data(), lds, rows, keys, sc, ma.data(), la.data(), aa.data());
                            kv.softmax_step(b.data(), lds, rows, keys, sc, mb.data(), lb.data(), ab.data());
                            ++cases;
                            for (std::size_t i = 0; i < rows; ++i) {
                                CHECK(ma[i] == mb[i], "%s softmax extremes<%zu> 2^%d scale %g f%d rows=%zu keys=%zu row %zu: m %g vs %g",
                                      isa, sizeof(T), k, scale_d, feature, rows, keys, i, double(ma[i]), double(mb[i]));
                                CHECK(std::fabs(la[i] - lb[i]) <= (4 * eps + keys * u) * std::max(1.0, la[i]),
                                      "%s softmax extremes<%zu> 2^%d scale %g f%d rows=%zu keys=%zu row %zu: l %.17g vs %.17g",
                                      isa, sizeof(T), k, scale_d, feature, rows, keys, i, la[i], lb[i]);
                                CHECK(std::fabs(double(aa[i]) - double(ab[i])) <= 4 * eps,
                                      "%s softmax extremes<%zu> 2^%d scale %g f%d: alpha %g vs %g", isa, sizeof(T), k,
                                      scale_d, feature, double(aa[i]), double(ab[i]));
                                for (std::size_t j = 0; j < keys; ++j) {
                                    const double pa = a[i * lds + j], pb = b[i * lds + j];
                                    CHECK(std::fabs(pa - pb) <= 4 * eps && pb <= 1,
                                          "%s softmax extremes<%zu> 2^%d scale %g f%d rows=%zu keys=%zu (%zu,%zu): p %.9g vs %.9g",
                                          isa, sizeof(T), k, scale_d, feature, rows, keys, i, j, pa, pb);
                                    // Scale only: an entry whose score is the running maximum has p = 1 exactly.
                                    const auto di = std::ptrdiff_t(j) - std::ptrdiff_t(i);
                                    const bool seen = !sc.band || (di >= sc.band_lo && di <= sc.band_hi);
                                    if (feature <= 1 && seen && T(double(s0[i * lds + j]) * double(scale)) == mb[i])
                                        CHECK(pa == 1 && pb == 1, "%s softmax extremes<%zu> 2^%d scale %g: p of a maximal "
                                              "entry %.17g (scalar %.17g)", isa, sizeof(T), k, scale_d, pb, pa);
                                }
                            }
                        }
                    }
    std::printf("  %s softmax_step<%zu> extremes: %zu blocks\n", isa, sizeof(T), cases);
}

// A weight below T's normal range is 0 on every set, the scalar specification included (kernel_table.hpp,
// softmax_step): one key at the row's maximum, others at gaps just inside and just outside kNormalMinArg below
// it and far below, in every score path (scale only, the band, softcap, ALiBi, an additive and a boolean
// mask) and across the vector tails; the expected zero-ness is decided on the score as the specification forms
// it, and a gap within 0.05 of the end (softcap moves the scores) is not checked.
template <class T>
void test_weight_floor(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    const double end = std::is_same_v<T, float> ? double(normexp::expc::kNormalMinArgF) : normexp::expc::kNormalMinArgD;
    const double gaps[] = {0.0, -end - 0.5, -end + 0.5, -end + 20, -end - 30, 1.0};
    std::size_t checked = 0;
    for (int feature = 0; feature < 6; ++feature)
        for (std::size_t keys : {6, 7, 16, 17, 33}) {
            const std::size_t rows = 2, lds = padded(keys) + 1;
            std::vector<T> s(rows * lds, T(0));
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < keys; ++j) s[i * lds + j] = T(-gaps[(j + i) % 6]);
            attn_scores<T> sc{};
            sc.scale = T(1);
            std::vector<T> bias(rows * keys, T(0));
            std::vector<std::uint8_t> keep(rows * keys, 1);
            switch (feature) {
                case 1: sc.band = true; sc.band_lo = -1000; sc.band_hi = 1000; break;
                case 2: sc.softcap = T(std::is_same_v<T, float> ? 1e3 : 1e5); break;
                case 3: sc.alibi_slope = T(0x1p-20); break;
                case 4: sc.bias = bias.data(); sc.bias_ld = std::ptrdiff_t(keys); break;
                case 5: sc.keep = keep.data(); sc.keep_ld = std::ptrdiff_t(keys); break;
                default: break;
            }
            for (const auto* k : {&ks, &kv}) {
                std::vector<T> p = s, m(rows, -std::numeric_limits<T>::infinity()), a(rows);
                std::vector<double> l(rows, 0.0);
                k->softmax_step(p.data(), lds, rows, keys, sc, m.data(), l.data(), a.data());
                for (std::size_t i = 0; i < rows; ++i) {
                    // The scores as the specification forms them, in double.
                    std::vector<double> x(keys);
                    double mx = -INFINITY;
                    for (std::size_t j = 0; j < keys; ++j) {
                        double v = double(s[i * lds + j]);
                        if (sc.softcap > 0) v = double(sc.softcap) * std::tanh(v / double(sc.softcap));
                        v -= double(sc.alibi_slope) * std::fabs(double(j) - double(i));
                        x[j] = v;
                        mx = std::max(mx, v);
                    }
                    for (std::size_t j = 0; j < keys; ++j) {
                        const double t = x[j] - mx;
                        if (std::fabs(t - end) < 0.05) continue;
                        const T pj = p[i * lds + j];
                        if (t < end)
                            CHECK(pj == 0, "%s weight floor<%zu> f%d keys=%zu (%zu,%zu): x - m = %.6g, p = %g, not 0",
                                  k == &ks ? "scalar" : isa, sizeof(T), feature, keys, i, j, t, double(pj));
                        else
                            CHECK(pj >= std::numeric_limits<T>::min(),
                                  "%s weight floor<%zu> f%d keys=%zu (%zu,%zu): x - m = %.6g, p = %g, not normal",
                                  k == &ks ? "scalar" : isa, sizeof(T), feature, keys, i, j, t, double(pj));
                        ++checked;
                    }
                }
            }
        }
    std::printf("  %s softmax_step<%zu> weight floor: %zu weights\n", isa, sizeof(T), checked);
}

template <class T>
void test_pv(const attention_kernels<T>& ks, const attention_kernels<T>& kv, const char* isa) {
    std::mt19937_64 rng(4);
    const double u = std::numeric_limits<T>::epsilon() / 2;
    double worst = 0;
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    for (std::size_t rows = 1; rows <= 25; ++rows)
        for (std::size_t keys : {0, 1, 2, 7, 16, 33, 128})
            for (std::size_t dv = 1; dv <= 40 || dv == 64 || dv == 128 || dv == 129;
                 dv = dv == 40 ? 64 : dv == 64 ? 128 : dv == 128 ? 129 : dv + 1) {
                const std::size_t ldp = keys + 5, ldo = dv + 3;
                const std::ptrdiff_t ldv = std::ptrdiff_t(dv) + 7;
                std::vector<T> p(rows * ldp), alpha(rows);
                for (auto& x : p) x = T(unif(rng));
                for (auto& x : alpha) x = T(unif(rng));
                alpha[0] = T(1);
                const auto v = randn<T>(rng, std::max<std::size_t>(1, keys) * std::size_t(ldv));
                const auto o0 = randn<T>(rng, rows * ldo);
                std::vector<T> a = o0, b = o0, c2 = o0;
                ks.pv(p.data(), ldp, v.data(), ldv, rows, keys, dv, alpha.data(), a.data(), ldo, {});
                kv.pv(p.data(), ldp, v.data(), ldv, rows, keys, dv, alpha.data(), b.data(), ldo, {});
                // With lines of the caller's to prefetch (prefetch_lines, up to 200 whole lines inside v): the
                // same bits.
                const auto v0 = reinterpret_cast<std::uintptr_t>(v.data()), line0 = (v0 + 63) & ~std::uintptr_t(63);
                const auto v_end = v0 + v.size() * sizeof(T);
                const normexp::prefetch_lines side{
                    line0, std::min<std::size_t>((rows * 29 + keys * 13 + dv) % 200, (v_end - std::min(line0, v_end)) / 64)};
                kv.pv(p.data(), ldp, v.data(), ldv, rows, keys, dv, alpha.data(), c2.data(), ldo, side);
                CHECK(std::memcmp(b.data(), c2.data(), b.size() * sizeof(T)) == 0,
                      "%s pv<%zu> rows=%zu keys=%zu dv=%zu: pf changed the output", isa, sizeof(T), rows, keys, dv);
                bool pad_ok = true;
                for (std::size_t i = 0; i < rows; ++i) {
                    for (std::size_t c = 0; c < dv; ++c) {
                        double mag = std::fabs(double(alpha[i]) * o0[i * ldo + c]);
                        for (std::size_t j = 0; j < keys; ++j) mag += std::fabs(double(p[i * ldp + j]) * v[j * ldv + c]);
                        const double err = std::fabs(double(a[i * ldo + c]) - double(b[i * ldo + c]));
                        worst = std::max(worst, err / (u * mag + 1e-300));
                        CHECK(err <= (keys + 2) * u * mag, "%s pv<%zu> rows=%zu keys=%zu dv=%zu (%zu,%zu): err %g", isa,
                              sizeof(T), rows, keys, dv, i, c, err);
                    }
                    for (std::size_t c = dv; c < ldo; ++c) pad_ok &= b[i * ldo + c] == o0[i * ldo + c];
                }
                CHECK(pad_ok, "%s pv<%zu> rows=%zu keys=%zu dv=%zu wrote past dv", isa, sizeof(T), rows, keys, dv);
            }
    std::printf("  %s pv<%zu>: worst error %.1f u * (|alpha o| + sum|p v|)\n", isa, sizeof(T), worst);
}

template <class T>
void test_all(const normexp::kernel_table& isa) {
    const auto& ks = kern<T>(normexp::scalar_kernels());
    const auto& kv = kern<T>(isa);
    test_pack<T>(ks, kv, isa.name);
    test_qk<T>(ks, kv, isa.name);
    test_qk_direct<T>(ks, kv, isa.name);
    test_softmax<T>(ks, kv, isa.name);
    test_softmax_extremes<T>(ks, kv, isa.name);
    test_weight_floor<T>(ks, kv, isa.name);
    test_pv<T>(ks, kv, isa.name);
}

// One query row of attention in double: scores x_j = scale q . k_j + bias(j) over the keys with visible(j), their
// maximum m, l = sum_j e^(x_j - m), o = sum_j e^(x_j - m) v_j, and mag = max_j scale sum_d |q_d k_jd| (the bounds'
// magnitude). q(d), k(j, d), v(j, c) read the operands.
struct ref_row {
    double m = -INFINITY, l = 0, mag = 0;
    std::vector<double> o;
};
template <class QAt, class KAt, class VAt, class Visible, class Bias>
ref_row reference_row(std::size_t Lk, std::size_t D, std::size_t Dv, double scale, QAt q, KAt k, VAt v,
                      Visible visible, Bias bias) {
    ref_row r;
    std::vector<double> s(Lk, -INFINITY);
    for (std::size_t j = 0; j < Lk; ++j) {
        if (!visible(j)) continue;
        double acc = 0, a = 0;
        for (std::size_t d = 0; d < D; ++d) {
            const double x = double(q(d)) * double(k(j, d));
            acc += x;
            a += std::fabs(x);
        }
        s[j] = acc * scale + bias(j);
        r.m = std::max(r.m, s[j]);
        r.mag = std::max(r.mag, a * scale);
    }
    r.o.assign(Dv, 0.0);
    for (std::size_t j = 0; j < Lk; ++j) {
        if (s[j] == -INFINITY) continue;
        const double p = std::exp(s[j] - r.m);
        r.l += p;
        for (std::size_t c = 0; c < Dv; ++c) r.o[c] += p * double(v(j, c));
    }
    return r;
}

// The C++ API (contiguous overload, options, merge_attention) against a naive double reference, so a
// C++-only build (no Python) tests the driver too. Bound: as in tests/python/test_attention.py,
// |d out| <= max|v| (2 (D + 9) u |scale| sum|q k| + (Lkv + 16) u) per row; a merge of two parts adds a
// few roundings of out (64 u max|v| is generous).
template <class T>
void test_driver(const char* isa) {
    std::mt19937_64 rng(6);
    const double u = std::numeric_limits<T>::epsilon() / 2;
    const std::size_t B = 2, Hq = 4, Hk = 2, Lq = 37, Lk = 300, D = 24, Dv = 20;
    const auto q = randn<T>(rng, B * Hq * Lq * D), k = randn<T>(rng, B * Hk * Lk * D), v = randn<T>(rng, B * Hk * Lk * Dv);
    double vmax = 0;
    for (T x : v) vmax = std::max(vmax, std::fabs(double(x)));
    double magmax = 0;  // max over rows and keys of |scale| sum_d |q_d k_d|
    for (int causal = 0; causal < 2; ++causal) {
        normexp::attention_options<T> opt;
        opt.is_causal = causal;
        opt.alignment = normexp::causal_alignment::bottom_right;
        opt.window = 100;
        opt.isa = isa;
        std::vector<T> out(B * Hq * Lq * Dv), lse(B * Hq * Lq);
        opt.lse = lse.data();
        opt.lse_strides = {std::ptrdiff_t(Hq * Lq), std::ptrdiff_t(Lq), 1};
        normexp::attention<T>(q.data(), k.data(), v.data(), out.data(), B, Hq, Hk, Lq, Lk, D, Dv, opt);
        const double scale = 1 / std::sqrt(double(D));
        double worst = 0;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t h = 0; h < Hq; ++h)
                for (std::size_t i = 0; i < Lq; ++i) {
                    const std::size_t hk = h / (Hq / Hk);
                    const std::ptrdiff_t diag = std::ptrdiff_t(i + Lk - Lq);
                    const ref_row r = reference_row(
                        Lk, D, Dv, scale, [&](std::size_t d) { return q[((b * Hq + h) * Lq + i) * D + d]; },
                        [&](std::size_t j, std::size_t d) { return k[((b * Hk + hk) * Lk + j) * D + d]; },
                        [&](std::size_t j, std::size_t c) { return v[((b * Hk + hk) * Lk + j) * Dv + c]; },
                        [&](std::size_t j) {
                            const std::ptrdiff_t jj = std::ptrdiff_t(j);
                            return !((causal && jj > diag) || jj <= diag - 100);
                        },
                        [](std::size_t) { return 0.0; });
                    const double m = r.m, l = r.l, mag = r.mag;
                    const std::vector<double>& o = r.o;
                    magmax = std::max(magmax, mag);
                    const double bound = vmax * (2 * (D + 9) * u * mag + (Lk + 16) * u);
                    for (std::size_t c = 0; c < Dv; ++c) {
                        const double err = std::fabs(o[c] / l - double(out[((b * Hq + h) * Lq + i) * Dv + c]));
                        worst = std::max(worst, err / bound);
                        CHECK(err <= bound, "%s attention<%zu> causal=%d (%zu,%zu,%zu,%zu): err %g > %g", isa, sizeof(T),
                              causal, b, h, i, c, err, bound);
                    }
                    const double lerr = std::fabs(m + std::log(l) - double(lse[(b * Hq + h) * Lq + i]));
                    CHECK(lerr <= mag * (D + 9) * u + (Lk + 8) * u, "%s lse<%zu> err %g", isa, sizeof(T), lerr);
                }
        // Split the keys in two, attend to each half, merge: the same result.
        if (!causal) {
            normexp::attention_options<T> o2;
            o2.isa = isa;
            const std::size_t half = 131;
            std::vector<T> outs[2], lses[2];
            for (int part = 0; part < 2; ++part) {
                const std::size_t a = part ? half : 0, n = part ? Lk - half : half;
                std::vector<T> kp(B * Hk * n * D), vp(B * Hk * n * Dv);
                for (std::size_t bh = 0; bh < B * Hk; ++bh)
                    for (std::size_t j = 0; j < n; ++j) {
                        for (std::size_t d = 0; d < D; ++d) kp[(bh * n + j) * D + d] = k[(bh * Lk + a + j) * D + d];
                        for (std::size_t c = 0; c < Dv; ++c) vp[(bh * n + j) * Dv + c] = v[(bh * Lk + a + j) * Dv + c];
                    }
                outs[part].resize(B * Hq * Lq * Dv);
                lses[part].resize(B * Hq * Lq);
                o2.lse = lses[part].data();
                o2.lse_strides = {std::ptrdiff_t(Hq * Lq), std::ptrdiff_t(Lq), 1};
                normexp::attention<T>(q.data(), kp.data(), vp.data(), outs[part].data(), B, Hq, Hk, Lq, n, D, Dv, o2);
            }
            std::vector<T> full(B * Hq * Lq * Dv), merged(full.size()), mlse(B * Hq * Lq);
            o2.lse = nullptr;
            normexp::attention<T>(q.data(), k.data(), v.data(), full.data(), B, Hq, Hk, Lq, Lk, D, Dv, o2);
            const T* po[2] = {outs[0].data(), outs[1].data()};
            const T* pl[2] = {lses[0].data(), lses[1].data()};
            normexp::merge_attention<T>(2, po, pl, B * Hq * Lq, Dv, merged.data(), mlse.data());
            double md = 0;
            for (std::size_t x = 0; x < full.size(); ++x) md = std::max(md, std::fabs(double(full[x]) - merged[x]));
            // Both are within the bound above of the exact result; merging adds a few roundings of out.
            CHECK(md <= 2 * vmax * (2 * (D + 9) * u * magmax + (Lk + 16) * u) + 64 * u * vmax, "%s merge<%zu>: %g", isa,
                  sizeof(T), md);
        }
        std::printf("  %s attention<%zu> causal=%d: worst error %.3f of the bound\n", isa, sizeof(T), causal, worst);
    }
    // Bad arguments throw normexp::error.
    bool threw = false;
    try {
        std::vector<T> o(Lq * Dv);
        normexp::attention<T>(q.data(), k.data(), v.data(), o.data(), 1, 3, 2, Lq, Lk, D, Dv);
    } catch (const normexp::error&) {
        threw = true;
    }
    CHECK(threw, "heads_q not a multiple of heads_kv must throw");

    // A window of len_q + len_kv keys or more limits nothing, up to SIZE_MAX: the same result as none (a
    // window >= 2^63 once became a negative limit that masked every key, through a signed overflow).
    for (int causal = 0; causal < 2; ++causal) {
        normexp::attention_options<T> opt;
        opt.is_causal = causal;
        opt.isa = isa;
        std::vector<T> none(B * Hq * Lq * Dv), wide(none.size());
        normexp::attention<T>(q.data(), k.data(), v.data(), none.data(), B, Hq, Hk, Lq, Lk, D, Dv, opt);
        for (const std::size_t w : {Lq + Lk, Lq + Lk + 1, std::size_t(1) << 62, std::size_t(1) << 63,
                                    std::numeric_limits<std::size_t>::max()}) {
            opt.window = w;
            normexp::attention<T>(q.data(), k.data(), v.data(), wide.data(), B, Hq, Hk, Lq, Lk, D, Dv, opt);
            CHECK(std::memcmp(none.data(), wide.data(), none.size() * sizeof(T)) == 0, "%s window %zu (causal %d) masks keys",
                  isa, w, causal);
        }
    }
}

// ---- 16-bit K/V ----------------------------------------------------------------------------------------
template <class S>
const normexp::attention_kv_kernels<S>& kv_kern(const normexp::kernel_table& t) {
    if constexpr (std::is_same_v<S, normexp::float16>) return t.attn_kv_f16; else return t.attn_kv_bf16;
}
template <class S>
S to16(float x) {
    if constexpr (std::is_same_v<S, normexp::float16>) return normexp::detail::to_f16(x); else return normexp::detail::to_bf16(x);
}
template <class S>
const char* name16() { return std::is_same_v<S, normexp::float16> ? "float16" : "bfloat16"; }

// n 16-bit values from N(0, sd) (rounded to nearest even), about one in 64 replaced by +-inf or NaN if
// `specials`; `wide` receives them widened (exact).
template <class S>
std::vector<S> randn16(std::mt19937_64& rng, std::size_t n, std::vector<float>& wide, bool specials, double sd = 1.0) {
    std::normal_distribution<double> g(0.0, sd);
    std::uniform_int_distribution<int> pick(0, 191);
    std::vector<S> v(n);
    wide.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        float x = float(g(rng));
        if (specials) {
            const int c = pick(rng);
            if (c == 0) x = INFINITY; else if (c == 1) x = -INFINITY; else if (c == 2) x = NAN;
        }
        v[i] = to16<S>(x);
        wide[i] = normexp::detail::to_f32(v[i]);
    }
    return v;
}

// Identical bits, or both NaN: where several NaNs meet in one FMA, which one it propagates depends on the operand
// order the compiler chose for that instantiation (x86 returns the first source's), so NaN payloads may differ.
bool same_bits(const float* a, const float* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (std::memcmp(a + i, b + i, sizeof(float)) != 0 && !(a[i] != a[i] && b[i] != b[i])) return false;
    return true;
}

template <class S>
void test_kv(const normexp::kernel_table& isa) {
    const auto& k16 = kv_kern<S>(isa);
    const auto& k32 = isa.attn_f32;
    const char* nm = isa.name;
    std::mt19937_64 rng(7);
    std::vector<float> wide;
    std::size_t cases = 0;
    for (int specials = 0; specials < 2; ++specials) {
        // pack_kt: every key count 0..41, head dims across the vector and tile widths, unit and strided columns.
        for (std::size_t keys = 0; keys <= 41; ++keys)
            for (std::size_t dim : {1, 2, 3, 7, 8, 9, 15, 16, 17, 33, 64})
                for (std::ptrdiff_t kcol : {1, 3}) {
                    const std::ptrdiff_t krow = std::ptrdiff_t(dim) * kcol + 5;
                    const auto k = randn16<S>(rng, keys * std::size_t(krow) + dim * std::size_t(kcol) + 1, wide, specials);
                    const std::size_t ld = padded(keys) + 3;
                    std::vector<float> a(dim * ld, 7.f), b(dim * ld, 7.f);
                    k16.pack_kt(k.data(), krow, kcol, keys, dim, a.data(), ld);
                    k32.pack_kt(wide.data(), krow, kcol, keys, dim, b.data(), ld);
                    ++cases;
                    CHECK(same_bits(a.data(), b.data(), a.size()), "%s pack_kt<%s> keys=%zu dim=%zu kcol=%td differs from float32",
                          nm, name16<S>(), keys, dim, kcol);
                }
        // qk_direct: rows 1..5, every key count 0..19 (the 4-key groups and the single keys), every dim tail.
        for (std::size_t rows = 1; rows <= 5; ++rows)
            for (std::size_t keys = 0; keys <= 19; ++keys)
                for (std::size_t dim : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 129}) {
                    const std::size_t ldq = dim + 1, lds = keys + 2;
                    const std::ptrdiff_t ldk = std::ptrdiff_t(dim) + 3;
                    const auto q = randn<float>(rng, rows * ldq);
                    const auto k = randn16<S>(rng, (keys + 40) * std::size_t(ldk), wide, specials);
                    std::vector<float> a(rows * lds, 5.f), b(rows * lds, 5.f);
                    k16.qk_direct(q.data(), ldq, k.data(), ldk, rows, keys, dim, a.data(), lds, 40, {});  // 40: as test_qk_direct
                    k32.qk_direct(q.data(), ldq, wide.data(), ldk, rows, keys, dim, b.data(), lds, 0, {});
                    ++cases;
                    CHECK(same_bits(a.data(), b.data(), a.size()), "%s qk_direct<%s> rows=%zu keys=%zu dim=%zu differs from float32",
                          nm, name16<S>(), rows, keys, dim);
                }
        // pv: rows 1..13 (the decoding tiles of pv_wide up to 4 rows, the 6-row tiles past them), dv 1..40, 64,
        // 128, 129, 263 (pv_wide's 8-vector pieces at column offsets past 0, and its bfloat16 pairs).
        std::uniform_real_distribution<double> unif(0.0, 1.0);
        for (std::size_t rows = 1; rows <= 13; ++rows)
            for (std::size_t keys : {0, 1, 2, 7, 16, 33})
                for (std::size_t dv = 1; dv <= 40 || dv == 64 || dv == 128 || dv == 129 || dv == 263;
                     dv = dv == 40 ? 64 : dv == 64 ? 128 : dv == 128 ? 129 : dv == 129 ? 263 : dv + 1) {
                    const std::size_t ldp = keys + 5, ldo = dv + 3;
                    const std::ptrdiff_t ldv = std::ptrdiff_t(dv) + 7;
                    std::vector<float> p(rows * ldp), alpha(rows);
                    for (auto& x : p) x = float(unif(rng));
                    for (auto& x : alpha) x = float(unif(rng));
                    const auto v = randn16<S>(rng, std::max<std::size_t>(1, keys) * std::size_t(ldv), wide, specials);
                    const auto o0 = randn<float>(rng, rows * ldo);
                    std::vector<float> a = o0, b = o0;
                    k16.pv(p.data(), ldp, v.data(), ldv, rows, keys, dv, alpha.data(), a.data(), ldo, {});
                    k32.pv(p.data(), ldp, wide.data(), ldv, rows, keys, dv, alpha.data(), b.data(), ldo, {});
                    ++cases;
                    CHECK(same_bits(a.data(), b.data(), a.size()), "%s pv<%s> rows=%zu keys=%zu dv=%zu differs from float32",
                          nm, name16<S>(), rows, keys, dv);
                }
    }
    // Negative control: the comparison sees a difference of one value's lowest bit.
    {
        const std::size_t dim = 9, keys = 3;
        const auto q = randn<float>(rng, dim);
        auto k = randn16<S>(rng, keys * dim, wide, false);
        std::vector<float> a(keys), b(keys);
        k.back().bits ^= 1u;
        k16.qk_direct(q.data(), dim, k.data(), std::ptrdiff_t(dim), 1, keys, dim, a.data(), keys, 0, {});
        k32.qk_direct(q.data(), dim, wide.data(), std::ptrdiff_t(dim), 1, keys, dim, b.data(), keys, 0, {});
        CHECK(!same_bits(a.data(), b.data(), keys), "%s qk_direct<%s>: a changed key bit went unnoticed", nm, name16<S>());
    }
    std::printf("  %s K/V entries <%s>: %zu cases bit-identical to float32 on the widened values\n", nm, name16<S>(), cases);
}

// The 16-bit overloads of the C++ API against a double reference from the same 16-bit values: products and
// sums in float32 as the float32 driver (the bound of test_driver with u = 2^-24), then one rounding of the
// output to Q (half an ulp of Q). K/V strided as a (batch, len, heads, dim) buffer, GQA, bottom-right causal
// with a window, an additive float32 mask, lse in float32, merge_attention of two halves, and every split
// / thread count giving the same bits (decode shapes).
template <class Q, class S>
void test_driver_16(const char* isa) {
    using normexp::float16;
    using normexp::bfloat16;
    constexpr bool q16 = !std::is_same_v<Q, float>;
    std::mt19937_64 rng(8);
    const double u = 0x1p-24;
    const double uq = std::is_same_v<Q, float> ? u : std::is_same_v<Q, float16> ? 0x1p-11 : 0x1p-8;
    const std::size_t B = 2, Hq = 4, Hk = 2, Lq = 5, Lk = 1100, D = 24, Dv = 20;
    std::vector<float> qw, kw, vw;
    // q: 16-bit values (q16) or float32 ones; k, v: (B, Lk, Hk, D) buffers read as (B, Hk, Lk, D) views.
    std::vector<S> k = randn16<S>(rng, B * Lk * Hk * D, kw, false), v = randn16<S>(rng, B * Lk * Hk * Dv, vw, false);
    std::vector<Q> q(B * Hq * Lq * D);
    if constexpr (q16) {
        q = randn16<Q>(rng, q.size(), qw, false);
    } else {
        qw = randn<float>(rng, q.size());
        q = qw;
    }
    std::vector<float> mask(Lq * Lk);  // broadcast over batch and heads
    for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = float((i * 7919) % 13) * -0.25f;
    const normexp::strides4 qs{std::ptrdiff_t(Hq * Lq * D), std::ptrdiff_t(Lq * D), std::ptrdiff_t(D), 1};
    const normexp::strides4 ks{std::ptrdiff_t(Lk * Hk * D), std::ptrdiff_t(D), std::ptrdiff_t(Hk * D), 1};
    const normexp::strides4 vs{std::ptrdiff_t(Lk * Hk * Dv), std::ptrdiff_t(Dv), std::ptrdiff_t(Hk * Dv), 1};
    const normexp::strides4 os{std::ptrdiff_t(Hq * Lq * Dv), std::ptrdiff_t(Lq * Dv), std::ptrdiff_t(Dv), 1};
    const normexp::attention_shape sh{B, Hq, Hk, Lq, Lk, D, Dv};
    normexp::attention_options<float> opt;
    opt.is_causal = true;
    opt.alignment = normexp::causal_alignment::bottom_right;
    opt.window = 600;
    opt.mask_kind = normexp::attention_mask_kind::additive;
    opt.mask = mask.data();
    opt.mask_strides = {0, 0, std::ptrdiff_t(Lk), 1};
    opt.isa = isa;
    std::vector<Q> out(B * Hq * Lq * Dv);
    std::vector<float> lse(B * Hq * Lq);
    opt.lse = lse.data();
    opt.lse_strides = {std::ptrdiff_t(Hq * Lq), std::ptrdiff_t(Lq), 1};
    normexp::attention(sh, q.data(), qs, k.data(), ks, v.data(), vs, out.data(), os, opt);
    const double scale = 1 / std::sqrt(double(D));
    double vmax = 0;
    for (float x : vw) vmax = std::max(vmax, std::fabs(double(x)));
    double worst = 0;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < Hq; ++h)
            for (std::size_t i = 0; i < Lq; ++i) {
                const std::size_t hk = h / (Hq / Hk);
                const std::ptrdiff_t diag = std::ptrdiff_t(i + Lk - Lq);
                const ref_row r = reference_row(
                    Lk, D, Dv, scale, [&](std::size_t d) { return qw[((b * Hq + h) * Lq + i) * D + d]; },
                    [&](std::size_t j, std::size_t d) { return kw[((b * Lk + j) * Hk + hk) * D + d]; },
                    [&](std::size_t j, std::size_t c) { return vw[((b * Lk + j) * Hk + hk) * Dv + c]; },
                    [&](std::size_t j) { return !(std::ptrdiff_t(j) > diag || std::ptrdiff_t(j) <= diag - 600); },
                    [&](std::size_t j) { return double(mask[i * Lk + j]); });
                const double m = r.m, l = r.l, mag = r.mag + 4;  // + the mask's magnitude (its values are in [-3, 0])
                const std::vector<double>& o = r.o;
                const double bound32 = vmax * (2 * (D + 9) * u * mag + (Lk + 16) * u);
                for (std::size_t c = 0; c < Dv; ++c) {
                    const double ref = o[c] / l;
                    double got;
                    if constexpr (q16) got = normexp::detail::to_f32(out[((b * Hq + h) * Lq + i) * Dv + c]);
                    else got = out[((b * Hq + h) * Lq + i) * Dv + c];
                    const double bound = bound32 + uq * (std::fabs(ref) + bound32) + 1e-300;
                    worst = std::max(worst, std::fabs(got - ref) / bound);
                    CHECK(std::fabs(got - ref) <= bound, "%s attention(%s q, %s kv) (%zu,%zu,%zu,%zu): %.9g vs %.9g", isa,
                          q16 ? name16<Q>() : "float32", name16<S>(), b, h, i, c, got, ref);
                }
                const double lerr = std::fabs(m + std::log(l) - double(lse[(b * Hq + h) * Lq + i]));
                CHECK(lerr <= mag * (D + 9) * u + (Lk + 8) * u, "%s lse 16-bit err %g", isa, lerr);
            }
    std::printf("  %s attention(%s q, %s kv): worst error %.3f of the bound\n", isa, q16 ? name16<Q>() : "float32",
                name16<S>(), worst);

    // Decode (one query, two query heads per K/V head; 1100 keys split in two pieces): the same bits for 1 and 3 threads,
    // and merge_attention of two halves of the keys within the bound of two roundings of the output.
    {
        const normexp::attention_shape d1{B, Hq, Hk, 1, Lk, D, Dv};
        normexp::attention_options<float> o1;
        o1.isa = isa;
        std::vector<Q> a(B * Hq * Dv), c(B * Hq * Dv);
        const normexp::strides4 q1{std::ptrdiff_t(Hq * D), std::ptrdiff_t(D), std::ptrdiff_t(D), 1};
        const normexp::strides4 o1s{std::ptrdiff_t(Hq * Dv), std::ptrdiff_t(Dv), std::ptrdiff_t(Dv), 1};
        normexp::set_num_threads(1);
        normexp::attention(d1, q.data(), q1, k.data(), ks, v.data(), vs, a.data(), o1s, o1);
        normexp::set_num_threads(3);
        normexp::attention(d1, q.data(), q1, k.data(), ks, v.data(), vs, c.data(), o1s, o1);
        normexp::set_num_threads(0);
        CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(Q)) == 0, "%s 16-bit decode differs across thread counts", isa);
        if constexpr (q16) {
            const std::size_t half = 300;
            std::vector<Q> parts[2];
            std::vector<float> plse[2];
            for (int part = 0; part < 2; ++part) {
                const std::size_t j0 = part ? half : 0, n = part ? Lk - half : half;
                const normexp::attention_shape dp{B, Hq, Hk, 1, n, D, Dv};
                parts[part].resize(B * Hq * Dv);
                plse[part].resize(B * Hq);
                o1.lse = plse[part].data();
                o1.lse_strides = {std::ptrdiff_t(Hq), 1, 0};
                normexp::attention(dp, q.data(), q1, k.data() + j0 * Hk * D, ks, v.data() + j0 * Hk * Dv, vs,
                                   parts[part].data(), o1s, o1);
            }
            std::vector<Q> merged(B * Hq * Dv);
            std::vector<float> mlse(B * Hq);
            const Q* po[2] = {parts[0].data(), parts[1].data()};
            const float* pl[2] = {plse[0].data(), plse[1].data()};
            normexp::merge_attention(2, po, pl, B * Hq, Dv, merged.data(), mlse.data());
            double md = 0;
            for (std::size_t x = 0; x < merged.size(); ++x)
                md = std::max(md, std::fabs(double(normexp::detail::to_f32(merged[x])) - normexp::detail::to_f32(a[x])));
            CHECK(md <= 4 * uq * vmax, "%s merge_attention<%s>: %g", isa, name16<Q>(), md);
        }
    }
}

}  // namespace

int main() {
    for (const auto& name : normexp::detail::available_isas()) {
        const auto& t = normexp::detail::kernels_for(name);
        std::printf("%s\n", t.name);
        test_all<float>(t);
        test_all<double>(t);
        test_driver<float>(t.name);
        test_driver<double>(t.name);
        test_kv<normexp::float16>(t);
        test_kv<normexp::bfloat16>(t);
        test_driver_16<normexp::float16, normexp::float16>(t.name);
        test_driver_16<normexp::bfloat16, normexp::bfloat16>(t.name);
        test_driver_16<float, normexp::float16>(t.name);
        test_driver_16<float, normexp::bfloat16>(t.name);
    }
    return check::finish("test_attention_kernels");
}
