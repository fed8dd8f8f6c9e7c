// The accuracy::fast kernels (kernel_table.hpp: f32_fast, f64_fast) of every kernel set against the scalar
// fast specification and against a long double reference, at every length around the vector widths; and
// the several-rows kernels (rows_softmax, rows_exp_sum) of both modes against the single-row kernels they
// stand for, bit for bit, skipped rows included.
//
// Bounds and their reasons:
//  * row_exp_sum / col_exp_sum: count is 0 (nothing is counted) and rest is the whole sum; SIMD against
//    scalar within 64 eps relative (the blocked summation bound of test_kernels).
//  * exp(t) outputs (row_exp_store, row_exp_scale(_stream), col_exp_store, col_exp_scale): the argument t
//    is the same rounded value on every set (IEEE operations in T), so only the exps differ. float64: <= 2
//    ULP apart (each <= 1 ULP), 3 with the scale's rounding. float32 (the SIMD sets' exp_core_fast against
//    the specification's correctly rounded exp, exp_constants.hpp): relative 1.27 2^-23 + |t| 2^-28.4, i.e.
//    <= 2.6 + |t| / 20 ULP, plus the specification's half ULP: 4 + |t| / 16 ULP, 5 + |t| / 16 with the scale.
//  * log_softmax (row and column): identical bits (fl(fl(fl(x - m) beta) - fl(c)) on every set).
//  * against the exact value exp(beta (x - m)): relative error <= 2 ULP + |t| 2^-24 per rounding of the
//    argument (float64: 2^-53; one rounding, x - m, or three with a temperature: x - m, beta.hi, the
//    product), the stated contract of accuracy::fast.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "temperature.hpp"

namespace {

using normexp::scale2;

template <class T>
const normexp::reduction_kernels<T>& fast(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32_fast; else return t.f64_fast;
}

std::vector<std::size_t> lengths() {
    std::vector<std::size_t> v;
    for (std::size_t n = 0; n <= 40; ++n) v.push_back(n);
    for (std::size_t n : {63, 64, 65, 127, 128, 129, 1000}) v.push_back(n);
    return v;
}

// The ULPs by which a SIMD exp(t) output may differ from the specification's (see the header).
template <class T>
double exp_ulps(long double t, int scaled) {
    if constexpr (sizeof(T) == 8) return 2 + scaled;
    else return 4 + scaled + double(std::fabs(t)) / 16;
}

template <class T>
void test_rows(const normexp::kernel_table& kt, const normexp::kernel_table& ks, double temperature) {
    const auto &k = fast<T>(kt), &s = fast<T>(ks);
    const scale2<T> b = normexp::detail::split_beta<T>(temperature);
    const long double beta = 1.0L / temperature;
    const double eps = std::numeric_limits<T>::epsilon();
    const double arg_u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> g(0.0, 30.0);
    for (std::size_t n : lengths()) {
        std::vector<T> x(n), y(n), ys(n);
        for (auto& v : x) v = T(g(rng));
        if (n > 3) x[n / 2] = -std::numeric_limits<T>::infinity();
        const T m = s.row_max(x.data(), n);
        if (n == 0 || !std::isfinite(m)) continue;
        const std::string where = std::string(kt.name) + " n=" + std::to_string(n) + " T=" + std::to_string(temperature);
        // Sums: nothing counted, the whole sum in rest.
        const normexp::exp_sum e = k.row_exp_sum(x.data(), n, m, b), es = s.row_exp_sum(x.data(), n, m, b);
        CHECK(e.count == 0 && es.count == 0, "%s: count %g / %g", where.c_str(), e.count, es.count);
        CHECK(std::fabs(e.rest - es.rest) <= 64 * eps * es.rest, "%s: sum %.17g vs %.17g", where.c_str(), e.rest, es.rest);
        // Stored exps, against the specification and the exact value.
        const double sum = k.row_exp_store(x.data(), y.data(), n, m, b);
        s.row_exp_store(x.data(), ys.data(), n, m, b);
        CHECK(std::fabs(sum - es.rest) <= 64 * eps * es.rest, "%s: store sum %.17g vs %.17g", where.c_str(), sum, es.rest);
        for (std::size_t i = 0; i < n; ++i) {
            const long double t = beta * ((long double)x[i] - (long double)m);
            CHECK(check::ulp_diff(y[i], ys[i]) <= exp_ulps<T>(t, 0), "%s i=%zu: exp %.9g vs spec %.9g", where.c_str(),
                  i, double(y[i]), double(ys[i]));
            const long double ref = std::exp(t);
            if (ref < std::numeric_limits<T>::min()) continue;  // subnormal results: absolute, checked by the ULP test above
            const double rel = double(std::fabs((long double)y[i] - ref) / ref);
            const double bound = 2 * eps + (temperature == 1.0 ? 1 : 3) * double(std::fabs(t)) * arg_u;
            CHECK(rel <= bound, "%s i=%zu: t=%g rel %g > %g", where.c_str(), i, double(t), rel, bound);
        }
        const T c = T(1 / sum);
        for (auto* f : {k.row_exp_scale, k.row_exp_scale_stream}) {
            f(x.data(), y.data(), n, m, b, c);
            s.row_exp_scale(x.data(), ys.data(), n, m, b, c);
            for (std::size_t i = 0; i < n; ++i)
                CHECK(check::ulp_diff(y[i], ys[i]) <= exp_ulps<T>(beta * ((long double)x[i] - (long double)m), 1),
                      "%s i=%zu: exp*c %.9g vs %.9g", where.c_str(), i, double(y[i]), double(ys[i]));
        }
        const double lc = std::log(sum);
        s.row_log_softmax(x.data(), ys.data(), n, m, b, lc);
        for (auto* f : {k.row_log_softmax, k.row_log_softmax_stream}) {
            f(x.data(), y.data(), n, m, b, lc);
            for (std::size_t i = 0; i < n; ++i)
                CHECK(y[i] == ys[i], "%s i=%zu: log_softmax %.9g vs %.9g", where.c_str(), i, double(y[i]), double(ys[i]));
        }
    }
}

template <class T>
void test_cols(const normexp::kernel_table& kt, const normexp::kernel_table& ks, double temperature) {
    const auto &k = fast<T>(kt), &s = fast<T>(ks);
    const scale2<T> b = normexp::detail::split_beta<T>(temperature);
    const double eps = std::numeric_limits<T>::epsilon();
    std::mt19937_64 rng(12);
    std::normal_distribution<double> g(0.0, 20.0);
    for (std::size_t w : lengths()) {
        if (w > 129) continue;
        const std::size_t rows = 7;
        const std::ptrdiff_t sx = std::ptrdiff_t(w) + 3;
        std::vector<T> x(rows * std::size_t(sx)), m(w, -std::numeric_limits<T>::infinity());
        for (auto& v : x) v = T(g(rng));
        s.col_max(x.data(), rows, sx, w, m.data(), nullptr);
        const std::string where = std::string(kt.name) + " w=" + std::to_string(w) + " T=" + std::to_string(temperature);
        std::vector<double> rest(w, 0), count(w, 0), rs(w, 0), cs(w, 0);
        k.col_exp_sum(x.data(), rows, sx, w, m.data(), b, rest.data(), count.data());
        s.col_exp_sum(x.data(), rows, sx, w, m.data(), b, rs.data(), cs.data());
        std::vector<T> c(w);
        std::vector<double> lc(w);
        for (std::size_t j = 0; j < w; ++j) {
            CHECK(count[j] == 0 && cs[j] == 0, "%s j=%zu: count %g", where.c_str(), j, count[j]);
            CHECK(std::fabs(rest[j] - rs[j]) <= 64 * eps * rs[j], "%s j=%zu: sum %.17g vs %.17g", where.c_str(), j, rest[j], rs[j]);
            c[j] = T(1 / rs[j]);
            lc[j] = std::log(rs[j]);
        }
        std::vector<T> y(rows * w), ys(rows * w);
        k.col_exp_scale(x.data(), sx, y.data(), std::ptrdiff_t(w), rows, w, m.data(), b, c.data());
        s.col_exp_scale(x.data(), sx, ys.data(), std::ptrdiff_t(w), rows, w, m.data(), b, c.data());
        const long double beta = 1.0L / temperature;
        auto t_of = [&](std::size_t i) {  // entry i of a w-wide block: row i / w, column i % w
            return beta * ((long double)x[i / w * std::size_t(sx) + i % w] - (long double)m[i % w]);
        };
        for (std::size_t i = 0; i < y.size(); ++i)
            CHECK(check::ulp_diff(y[i], ys[i]) <= exp_ulps<T>(t_of(i), 1), "%s i=%zu: col exp*c %.9g vs %.9g",
                  where.c_str(), i, double(y[i]), double(ys[i]));
        k.col_log_softmax(x.data(), sx, y.data(), std::ptrdiff_t(w), rows, w, m.data(), b, lc.data());
        s.col_log_softmax(x.data(), sx, ys.data(), std::ptrdiff_t(w), rows, w, m.data(), b, lc.data());
        for (std::size_t i = 0; i < y.size(); ++i)
            CHECK(y[i] == ys[i], "%s i=%zu: col log_softmax %.9g vs %.9g", where.c_str(), i, double(y[i]), double(ys[i]));
        // In place on a contiguous block.
        std::vector<T> blk(rows * w), blks(rows * w);
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < w; ++j) blk[i * w + j] = blks[i * w + j] = x[i * std::size_t(sx) + j];
        std::vector<double> sum(w, 0), sums(w, 0);
        k.col_exp_store(blk.data(), rows, w, m.data(), b, sum.data());
        s.col_exp_store(blks.data(), rows, w, m.data(), b, sums.data());
        for (std::size_t i = 0; i < blk.size(); ++i)
            CHECK(check::ulp_diff(blk[i], blks[i]) <= exp_ulps<T>(t_of(i), 0), "%s i=%zu: col store %.9g vs %.9g",
                  where.c_str(), i, double(blk[i]), double(blks[i]));
        for (std::size_t j = 0; j < w; ++j)
            CHECK(std::fabs(sum[j] - sums[j]) <= 64 * eps * sums[j], "%s j=%zu: col store sum", where.c_str(), j);
    }
}

// rows_softmax / rows_exp_sum / rows_log_softmax: each row exactly row_max, row_exp_store + row_scale (or
// row_exp_sum, or row_exp_sum + row_log_softmax with c = log_sum_out); rows with a NaN, +inf, all -inf or a maximum
// above m_limit are skipped (y untouched, sums {0, 0}; a NaN row may report any maximum that skips it, and
// rows_softmax may have written it). float32 rows of more than kSoftmaxChunkedMin entries with unit temperature
// and m_limit the largest float are rows_softmax's chunked definition (kernel_table.hpp: softmax_row_chunked over
// the same table's single-row entries), and such a skipped row may be written where the kernel contract allows:
// run in place, it still has the NaN,
// +inf or -inf that skipped it (what the driver, which redoes it, reads). The kernels pipeline the rows (one
// row's exp pass carries the next row's maximum and the previous row's outputs, in blocks of 8 vectors;
// rows_softmax and rows_log_softmax only for rows of at most 4 KiB; longer rows carry the next row's (or chunk's)
// maximum in their exp pass): lengths around every block and 4-vector boundary of every ISA, on both sides of 1,
// 4 and 16 KiB and over several chunks, skipped rows first, last, alone and adjacent, a first chunk of -inf only
// (with and without a NaN in it), a +inf in the last chunk, and maxima tied between +0 and -0 (the same zero as
// row_max, bit for bit). The lengths include every one that the groups' kernels fix at compile time (a
// power-of-two multiple of the vector length up to 512 bytes: generic/reductions.hpp, fixed_length).
template <class T>
void test_several_rows(const normexp::reduction_kernels<T>& k, const char* name, double temperature, bool max_limit,
                       bool fast) {
    const scale2<T> b = normexp::detail::split_beta<T>(temperature);
    const T inf = std::numeric_limits<T>::infinity();
    std::mt19937_64 rng(13);
    std::normal_distribution<double> g(0.0, 10.0);
    const bool chunked_table = std::is_same_v<T, float> && max_limit && temperature == 1.0;
    // The chunked definition over this table's single-row entries (float32 rows only).
    auto chunked_row = [&](const T* xr, T* out, std::size_t n) -> T {
        if constexpr (std::is_same_v<T, float>)
            return normexp::softmax_row_chunked<float>(xr, out, n, b, k.row_max, k.row_exp_store, k.row_scale);
        else
            return T(0);
    };
    // Which rows are skipped, and how: 'n' NaN last, 'N' NaN a third in (before the row's last maxima: found
    // by the sum), 'i' +inf, 'I' +inf last, '-' all -inf, 'L' above the limit (1e20; none with max_limit),
    // 'F' the first chunk -inf (all of a row of one chunk), 'M' that and a NaN in it, '.' none; not skipped, with
    // maxima on both sides of softmax_shift's bounds (kernel_table.hpp): 'a' 64, 'b' just above 64, 'c' just below
    // 0, 'w' -30, 'u' 10 with most entries' exps subnormal or zero.
    for (const char* layout : {".n.i.-.L.zz", "n..-L..izz.", ".z.ni.L-z.z", "N.zN.i.N-.N", "F.I.M.zF.IF", "MF.zI.F.-.F",
                               "abcwu.ab.cw", "u.w.a.b.c.z"}) {
        for (std::size_t n : {1, 7, 8, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 191, 192, 255, 256, 300,
                              513, 1024, 1025, 2000, 2048, 2049, 4096, 4097, 6000, 8193, 12000, 65536, 65537, 90000})
        // 11 rows, and 53 (the layout repeated): whole groups of 4, 8 and 16 rows and a partial one, skipped
        // rows at group ends and starts (generic/reductions.hpp: rows_groups).
        for (std::size_t rows : {std::size_t(11), std::size_t(53)}) {
            if (rows > 11 && n > 300) continue;
            const bool chunked = chunked_table && n > normexp::kSoftmaxChunkedMin;
            if (n >= 65536 && !chunked_table) continue;  // (the long rows for the chunked definition)
            const std::size_t C = chunked ? normexp::softmax_chunk<T>(n) : n, first = std::min(n, C);
            const std::ptrdiff_t sx = std::ptrdiff_t(n) + 5, sy = std::ptrdiff_t(n) + 2;
            std::vector<T> x(rows * std::size_t(sx));
            for (auto& v : x) v = T(g(rng));
            const T m_limit = max_limit ? std::numeric_limits<T>::max() : T(1e20);
            for (std::size_t r = 0; r < rows; ++r) {
                T* xr = x.data() + r * std::size_t(sx);
                switch (layout[r % 11]) {
                    case 'n': xr[n - 1] = std::numeric_limits<T>::quiet_NaN(); break;
                    case 'N': xr[n / 3] = std::numeric_limits<T>::quiet_NaN(); break;
                    case 'i': xr[n / 2] = inf; break;
                    case '-': for (std::size_t j = 0; j < n; ++j) xr[j] = -inf; break;
                    case 'L': xr[0] = T(1e30); break;
                    case 'I': xr[n - 1] = inf; break;
                    case 'F': case 'M':
                        for (std::size_t j = 0; j < first; ++j) xr[j] = -inf;
                        if (layout[r % 11] == 'M') xr[first / 2] = std::numeric_limits<T>::quiet_NaN();
                        break;
                    case 'a': case 'b': case 'c': case 'w': case 'u': {
                        const char l = layout[r % 11];
                        const T top = l == 'a' ? T(64) : l == 'b' ? std::nextafter(T(64), inf) : l == 'c' ? T(-1e-30)
                                    : l == 'w' ? T(-30) : T(10);
                        for (std::size_t j = 0; j < n; ++j)
                            xr[j] = l == 'u' ? T(-5 * std::fabs(double(xr[j])) - 70) : top - T(1) - std::fabs(xr[j]);
                        xr[n / 2] = top;
                        break;
                    }
                    case 'z':  // maximum 0: -0 and +0 at positions that meet in different accumulators
                        for (std::size_t j = 0; j < n; ++j) xr[j] = -std::fabs(xr[j]) - T(1);
                        xr[n / 3] = T(-0.0), xr[(2 * n) / 3] = T(0.0), xr[n - 1] = T(-0.0);
                        break;
                    default: break;
                }
            }
            std::vector<T> y(rows * std::size_t(sy), T(7)), m(rows);
            std::vector<normexp::exp_sum> es(rows);
            k.rows_softmax(x.data(), sx, y.data(), sy, rows, n, b, m_limit, m.data());
            std::vector<T> m2(rows), m3(rows), z(rows * std::size_t(sy), T(7));
            k.rows_exp_sum(x.data(), sx, rows, n, b, m_limit, m2.data(), es.data());
            k.rows_log_softmax(x.data(), sx, z.data(), sy, rows, n, b, m_limit, m3.data());
            // The same call in place (x rows as y rows).
            std::vector<T> xin(x), min_(rows);
            k.rows_softmax(xin.data(), sx, xin.data(), sx, rows, n, b, m_limit, min_.data());
            for (std::size_t r = 0; r < rows; ++r) {
                const T* xr = x.data() + r * std::size_t(sx);
                const T* yr = y.data() + r * std::size_t(sy);
                const T mr = k.row_max(xr, n);
                const T* zr = z.data() + r * std::size_t(sy);
                const char lr = layout[r % 11];
                const bool nan_row = lr == 'n' || lr == 'N' || lr == 'M';
                const bool skipped_row = !std::strchr(".zabcwu", lr) && !(lr == 'L' && max_limit) && !(lr == 'F' && n > C);
                // In place, a skipped row keeps what skipped it; any other row is what it is out of place.
                const T* xir = xin.data() + r * std::size_t(sx);
                const T mi = k.row_max(xir, n);
                if (skipped_row)
                    CHECK(std::memcmp(&mi, &mr, sizeof(T)) == 0 || (mi != mi && mr != mr),
                          "%s %s n=%zu r=%zu: in place, a skipped row's maximum %g became %g", name, layout, n, r,
                          double(mr), double(mi));
                else
                    CHECK(std::memcmp(xir, yr, n * sizeof(T)) == 0, "%s %s n=%zu r=%zu: in place differs", name,
                          layout, n, r);
                if (nan_row) {  // any maximum that skips the row (kernel_table.hpp)
                    auto skipped = [&](T v) { return !(v <= m_limit) || v == -inf; };
                    CHECK(skipped(m[r]) && skipped(m2[r]) && skipped(m3[r]),
                          "%s %s n=%zu r=%zu: NaN row max %g / %g / %g", name, layout, n, r, double(m[r]),
                          double(m2[r]), double(m3[r]));
                } else {
                    // A chunked row's maximum is the last running maximum: between +0 and -0 its zero may be
                    // the other one than row_max's. So may the several-rows kernels' (row_max starts at the
                    // row's line alignment, generic/reductions.hpp): no output depends on which zero (the
                    // outputs are compared bit for bit below).
                    std::vector<T> scratch(n);
                    const T msm = chunked ? chunked_row(xr, scratch.data(), n) : mr;
                    auto same = [](T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0 || (a == 0 && b == 0); };
                    CHECK(same(m[r], msm) && same(m2[r], mr) && same(m3[r], mr),
                          "%s %s n=%zu r=%zu: max %g / %g / %g vs %g", name, layout, n, r, double(m[r]), double(m2[r]),
                          double(m3[r]), double(mr));
                }
                if (skipped_row) {
                    CHECK(es[r].rest == 0 && es[r].count == 0, "%s %s n=%zu r=%zu: skipped sums", name, layout, n, r);
                    // rows_softmax may have written a row with a NaN (its exp pass finds the NaN), and chunked
                    // rows before the chunk that skips them.
                    for (std::size_t j = 0; j < n; ++j)
                        CHECK((nan_row || chunked || yr[j] == T(7)) && zr[j] == T(7),
                              "%s %s n=%zu r=%zu: skipped row written", name, layout, n, r);
                    continue;
                }
                std::vector<T> want(n);
                if (chunked) {
                    chunked_row(xr, want.data(), n);
                } else {
                    const double sum = k.row_exp_store(xr, want.data(), n, normexp::softmax_shift(mr, b, fast), b);
                    k.row_scale(want.data(), n, T(1.0 / sum));
                }
                for (std::size_t j = 0; j < n; ++j)
                    CHECK(std::memcmp(&yr[j], &want[j], sizeof(T)) == 0, "%s %s n=%zu r=%zu j=%zu: rows_softmax %.9g vs %.9g",
                          name, layout, n, r, j, double(yr[j]), double(want[j]));
                for (std::size_t j = n; j < std::size_t(sy); ++j)
                    CHECK(yr[j] == T(7), "%s %s n=%zu r=%zu: gap written", name, layout, n, r);
                const normexp::exp_sum e = k.row_exp_sum(xr, n, mr, b);
                CHECK(es[r].rest == e.rest && es[r].count == e.count, "%s %s n=%zu r=%zu: rows_exp_sum", name, layout, n, r);
                // rows_log_softmax: row_log_softmax with c = log_sum_out of that sum (what the drivers give).
                const double c = normexp::log_sum_out<T>(e.count, e.rest);
                k.row_log_softmax(xr, want.data(), n, mr, b, c);
                for (std::size_t j = 0; j < n; ++j)
                    CHECK(std::memcmp(&zr[j], &want[j], sizeof(T)) == 0,
                          "%s %s n=%zu r=%zu j=%zu: rows_log_softmax %.9g vs %.9g", name, layout, n, r, j,
                          double(zr[j]), double(want[j]));
                for (std::size_t j = n; j < std::size_t(sy); ++j)
                    CHECK(zr[j] == T(7), "%s %s n=%zu r=%zu: log_softmax gap written", name, layout, n, r);
            }
        }
    }
}

// The mode-free entries of a fast table are the high table's, and the high tables did not change.
void test_tables(const normexp::kernel_table& t) {
    CHECK(t.f32_fast.row_max == t.f32.row_max && t.f64_fast.col_max == t.f64.col_max, "%s: shared max", t.name);
    CHECK(t.f32_fast.row_sample_weights == t.f32.row_sample_weights, "%s: shared sampling", t.name);
    CHECK(t.f32_fast.row_exp_sum != t.f32.row_exp_sum && t.f64_fast.row_log_softmax != t.f64.row_log_softmax,
          "%s: the fast entries are their own", t.name);
}

}  // namespace

// row_exp_sum_max: row_exp_sum of one chunk (its rest times kSumLift) and row_max of the next, each bit for
// bit what the single entry gives, for chunk and next-chunk lengths around every block boundary (the next
// chunk shorter, longer, empty), with a NaN in the next chunk and maxima tied between +0 and -0.
template <class T>
void test_row_exp_sum_max(const normexp::reduction_kernels<T>& k, const char* name, double temperature) {
    const scale2<T> b = normexp::detail::split_beta<T>(temperature);
    std::mt19937_64 rng(17);
    std::normal_distribution<double> g(0.0, 10.0);
    const std::size_t lens[] = {0, 1, 7, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4096, 4097};
    for (std::size_t n : lens) {
        if (n == 0) continue;
        for (std::size_t nn : lens) {
            for (int kind = 0; kind < 3; ++kind) {
                std::vector<T> x(n + nn + 1);
                for (auto& v : x) v = T(g(rng));
                T* xn = x.data() + n;
                if (kind == 1 && nn > 0) xn[(nn * 2) / 3] = std::numeric_limits<T>::quiet_NaN();
                if (kind == 2 && nn > 0) {  // maximum 0: -0 and +0 in different accumulators
                    for (std::size_t j = 0; j < nn; ++j) xn[j] = -std::fabs(xn[j]) - T(1);
                    xn[nn / 3] = T(-0.0), xn[(2 * nn) / 3] = T(0.0), xn[nn - 1] = T(-0.0);
                }
                const T m = k.row_max(x.data(), n);
                T mn = T(7);
                const normexp::exp_sum e = k.row_exp_sum_max(x.data(), n, m, b, xn, nn, &mn);
                const normexp::exp_sum want = k.row_exp_sum(x.data(), n, m, b);
                const T want_m = k.row_max(xn, nn);
                // rest in kSumLift's scale (kernel_table.hpp), exactly: the data's sums are normal.
                const double want_rest = want.rest * normexp::kSumLift;
                CHECK(std::memcmp(&e.rest, &want_rest, sizeof e.rest) == 0 && e.count == want.count,
                      "%s row_exp_sum_max n=%zu nn=%zu kind=%d: sum %.17g vs %.17g", name, n, nn, kind, e.rest,
                      want_rest);
                // Equal, or both NaN; where +0 and -0 tie, row_max (from the row's line alignment) may keep
                // the other zero: no result depends on which (generic/reductions.hpp, k_row_max).
                CHECK((mn != mn && want_m != want_m) || mn == want_m,
                      "%s row_exp_sum_max n=%zu nn=%zu kind=%d: next max %.9g vs row_max %.9g", name, n, nn, kind,
                      double(mn), double(want_m));
            }
        }
    }
}

// log_sum_float (kernel_table.hpp), the c of the float32 fast and 16-bit log_softmax outputs: relative error
// <= 2^-29 against long double, across its table's intervals and their edges, powers of two, sums next to 1,
// and count == 1 with rests down to the subnormals (log1p(rest), relative); std::log outside the normal range.
void test_log_sum_float() {
    std::mt19937_64 rng(41);
    std::uniform_real_distribution<double> u(0, 1);
    double worst = 0;
    auto one = [&](double count, double rest) {
        const long double ref = count == 1 ? std::log1p((long double)rest) : std::log((long double)count + rest);
        const double got = normexp::log_sum_float(count, rest);
        const long double err = ref == 0 ? std::fabs((long double)got) : std::fabs((got - ref) / ref);
        if (double(err) > worst) worst = double(err);
        CHECK(err <= 0x1p-29L, "log_sum_float(%a, %a) = %a, log = %.21Lg: relative %Lg", count, rest, got, ref, err);
    };
    for (int i = 0; i < 128; ++i)
        for (int e : {0, 1, 7, 40}) {
            const double edge = std::ldexp(1 + i / 128.0, e);
            for (double v : {edge, std::nextafter(edge, 0.0), std::nextafter(edge, 1e300), edge * (1 + 0.5 / 128)})
                if (v >= 1) one(0, v);
        }
    for (int k = 1; k < 53; ++k) one(0, 1 + std::ldexp(1.0, -k)), one(0, 2 - std::ldexp(1.0, -k));
    for (int k = 0; k <= 1074; ++k) one(1, std::ldexp(1.0, -k)), one(1, std::ldexp(1.5, -k - 1));
    for (int i = 0; i < 200000; ++i) {
        one(0, std::exp2(62 * u(rng)));
        one(0, 1 + 64 * u(rng));
        one(1, 0.5 * u(rng));
        one(double(1 + i % 7), 3 * u(rng));
    }
    one(1, 0.0);
    CHECK(normexp::log_sum_float(0, INFINITY) == INFINITY && normexp::log_sum_float(0, 0) == -INFINITY &&
              std::isnan(normexp::log_sum_float(0, NAN)),
          "log_sum_float outside the normal range");
    std::printf("log_sum_float: worst relative error 2^%.2f\n", std::log2(worst));
}

// exp_neg (kernel_table.hpp), the float32 counting sums' unshift factor exp(-m): relative error <= 2^-45 against
// long double over [0, kUnshiftedMax], at every table boundary (i and i + j/16) and beside it, and at random.
void test_exp_neg() {
    std::mt19937_64 rng(43);
    std::uniform_real_distribution<double> u(0, normexp::kUnshiftedMax);
    double worst = 0;
    auto one = [&](double m) {
        const long double ref = std::exp(-(long double)m);
        const long double err = std::fabs((normexp::exp_neg(m) - ref) / ref);
        if (double(err) > worst) worst = double(err);
        CHECK(err <= 0x1p-45L, "exp_neg(%a) = %a, exp(-m) = %.21Lg: relative %Lg", m, normexp::exp_neg(m), ref, err);
    };
    for (int k = 0; k <= 64 * 16; ++k) {
        const double edge = k / 16.0;
        one(edge);
        if (edge > 0) one(std::nextafter(float(edge), 0.0f));
        if (edge < normexp::kUnshiftedMax) one(std::nextafter(float(edge), 100.0f));
    }
    for (int i = 0; i < 1000000; ++i) one(double(float(u(rng))));
    std::printf("exp_neg: worst relative error 2^%.2f\n", std::log2(worst));
}

int main() {
    const normexp::kernel_table& ks = normexp::detail::kernels_for("scalar");
    test_log_sum_float();
    test_exp_neg();
    for (const std::string& name : normexp::detail::available_isas()) {
        const normexp::kernel_table& kt = normexp::detail::kernels_for(name);
        test_tables(kt);
        for (double temperature : {1.0, 0.7}) {
            for (bool max_limit : {false, true}) {
                test_several_rows<float>(kt.f32, kt.name, temperature, max_limit, false);
                test_several_rows<double>(kt.f64, kt.name, temperature, max_limit, false);
                test_several_rows<float>(kt.f32_fast, kt.name, temperature, max_limit, true);
                test_several_rows<double>(kt.f64_fast, kt.name, temperature, max_limit, true);
            }
            test_row_exp_sum_max<float>(kt.f32, kt.name, temperature);
            test_row_exp_sum_max<double>(kt.f64, kt.name, temperature);
            test_row_exp_sum_max<float>(kt.f32_fast, kt.name, temperature);
            test_row_exp_sum_max<double>(kt.f64_fast, kt.name, temperature);
        }
        for (double temperature : {1.0, 0.7, 3.0}) {
            test_rows<float>(kt, ks, temperature);
            test_rows<double>(kt, ks, temperature);
            test_cols<float>(kt, ks, temperature);
            test_cols<double>(kt, ks, temperature);
        }
    }
    return check::finish("fast_kernels");
}
