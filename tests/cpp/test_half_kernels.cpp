// The float16 / bfloat16 reduction kernels (kernel_table.hpp: storage_kernels, the tables f16 and bf16) of
// every kernel set against the scalar specification and a long double reference, at every length around the
// vector widths, rows and columns, with and without a temperature.
//
// Bounds and their reasons (kernel_table.hpp, storage_kernels):
//  * row_max / col_max: exact (a maximum is one of the widened inputs), NaN sticky.
//  * the SIMD sets' exp (lanes::exp_core_half, through row_exp_total of one entry): within 2^-17 relative of
//    exp of the same float32 argument, for every float16 and bfloat16 score against several maxima.
//  * row_exp_sum / col_exp_sum: the same count of entries equal to the maximum; rest within 64 float32 eps
//    relative of the specification's (the blocked float32 summation bound of test_kernels; the float32 exp).
//  * outputs (row_exp_scale, row_log_softmax, col_exp_scale, col_log_softmax): within 1 ULP of S of the
//    specification and of the exact value (both round once to S; the SIMD argument's |t| 2^-24 is far below
//    S's half ULP), and nothing is stored past the last element.
//  * rows_softmax / rows_exp_sum / rows_log_softmax: bit for bit what the single-row entries give (the
//    driver's do_row).
//  * row_exp_total (softmax's sum of a long row): count 0, rest within 2^-16 relative of the
//    specification's count + rest (the 16-bit exp's 2^-17 plus the blocked float32 summation) (the SIMD sets sum as row_exp_sum does, with the 1s of the entries at the
//    maximum in the float32 blocks; the specification's own row_exp_total to 2^-50 of its count + rest).
//  * row_exp_scale_stream / row_log_softmax_stream: row_exp_scale's / row_log_softmax's bits at every offset of
//    y from a 64-byte boundary (the head of ordinary stores, the streamed middle, the tail), nothing stored
//    before y or past y + n.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "half_convert.hpp"
#include "temperature.hpp"

namespace {

using normexp::bfloat16;
using normexp::float16;
using normexp::scale2;
namespace d = normexp::detail;

template <class S>
const normexp::storage_kernels<S>& table(const normexp::kernel_table& t) {
    if constexpr (std::is_same_v<S, float16>) return t.f16; else return t.bf16;
}
template <class S>
const char* type_name() {
    return std::is_same_v<S, float16> ? "float16" : "bfloat16";
}
template <class S>
S narrow(double v) {
    if constexpr (std::is_same_v<S, float16>) return d::to_f16(v); else return d::to_bf16(v);
}

// Position of a 16-bit value on a monotonic integer line (sign-magnitude to two's complement).
int ord16(std::uint16_t b) { return (b & 0x8000u) ? -int(b & 0x7fffu) : int(b); }
template <class S>
int ulps(S a, S b) {
    const bool na = std::isnan(d::to_f32(a)), nb = std::isnan(d::to_f32(b));
    if (na || nb) return na && nb ? 0 : 1 << 20;
    return std::abs(ord16(a.bits) - ord16(b.bits));
}

std::vector<std::size_t> lengths() {
    std::vector<std::size_t> v;
    for (std::size_t n = 0; n <= 40; ++n) v.push_back(n);
    for (std::size_t n : {63, 64, 65, 127, 128, 129, 1000, 2049}) v.push_back(n);
    return v;
}

constexpr std::uint16_t kGuard = 0x7e5a;  // a NaN pattern no kernel stores
constexpr double kExpTol = 0x1p-17;        // the 16-bit exp's relative error (exp_constants.hpp)
constexpr double kSumTol = 0x1p-16;        // row_exp_total against the specification's sum, relative

template <class S>
std::vector<S> scores(std::mt19937_64& rng, std::size_t n, double scale) {
    std::normal_distribution<double> g(0.0, scale);
    std::vector<S> x(n);
    for (auto& v : x) v = narrow<S>(g(rng));
    return x;
}

template <class S>
void test_rows(const normexp::kernel_table& kt, const normexp::kernel_table& ks, double temperature) {
    const auto &k = table<S>(kt), &s = table<S>(ks);
    const scale2<float> b = d::split_beta<float>(temperature);
    const long double beta = 1.0L / temperature;
    std::mt19937_64 rng(21);
    for (std::size_t n : lengths()) {
        std::vector<S> x = scores<S>(rng, n, 4.0);
        if (n > 3) x[n / 2] = narrow<S>(-INFINITY), x[n / 3] = x[1];  // -inf, and a repeated value
        const std::string where = std::string(kt.name) + " " + type_name<S>() + " n=" + std::to_string(n) +
                                  " T=" + std::to_string(temperature);
        const float m = s.row_max(x.data(), n), mk = k.row_max(x.data(), n);
        CHECK(m == mk || (std::isnan(m) && std::isnan(mk)), "%s: row_max %g vs %g", where.c_str(), mk, m);
        if (n == 0 || !std::isfinite(m)) continue;
        const normexp::exp_sum e = k.row_exp_sum(x.data(), n, m, b), es = s.row_exp_sum(x.data(), n, m, b);
        CHECK(e.count == es.count && e.count >= 1, "%s: count %g vs %g", where.c_str(), e.count, es.count);
        CHECK(std::fabs(e.rest - es.rest) <= 64 * 0x1p-23 * (es.rest + 1e-300), "%s: rest %.9g vs %.9g", where.c_str(),
              e.rest, es.rest);
        const double sum = es.count + es.rest;
        const float c = static_cast<float>(1.0 / sum);
        const double lc = std::log(sum);
        std::vector<S> y(n + 8), ys(n + 8), z(n + 8), zs(n + 8);
        for (auto* v : {&y, &ys, &z, &zs})
            for (auto& h : *v) h.bits = kGuard;
        k.row_exp_scale(x.data(), y.data(), n, m, b, c);
        s.row_exp_scale(x.data(), ys.data(), n, m, b, c);
        k.row_log_softmax(x.data(), z.data(), n, m, b, lc);
        s.row_log_softmax(x.data(), zs.data(), n, m, b, lc);
        for (std::size_t i = 0; i < n; ++i) {
            const long double t = beta * ((long double)d::to_f32(x[i]) - m);
            const S ex = narrow<S>(double(std::exp(t) * c)), lx = narrow<S>(double(t - lc));
            CHECK(ulps(y[i], ys[i]) <= 1 && ulps(y[i], ex) <= 1, "%s: exp_scale[%zu] %a, spec %a, exact %a",
                  where.c_str(), i, d::to_f32(y[i]), d::to_f32(ys[i]), d::to_f32(ex));
            CHECK(ulps(z[i], zs[i]) <= 1 && ulps(z[i], lx) <= 1, "%s: log_softmax[%zu] %a, spec %a, exact %a",
                  where.c_str(), i, d::to_f32(z[i]), d::to_f32(zs[i]), d::to_f32(lx));
        }
        for (std::size_t i = n; i < n + 8; ++i)
            CHECK(y[i].bits == kGuard && z[i].bits == kGuard, "%s: stored past the end at %zu", where.c_str(), i);

        // Several rows per call: the single-row entries' bits (rows of n, 3 rows, stride n + 5).
        const std::size_t R = 3, sx = n + 5;
        std::vector<S> xr(R * sx), yr(R * sx), yo(R * sx);
        for (std::size_t r = 0; r < R; ++r)
            for (std::size_t i = 0; i < n; ++i) xr[r * sx + i] = x[(i + 7 * r) % n];
        float mr[R];
        normexp::exp_sum er[R];
        const float limit = 3e38f;
        k.rows_softmax(xr.data(), std::ptrdiff_t(sx), yr.data(), std::ptrdiff_t(sx), R, n, b, limit, mr);
        k.rows_exp_sum(xr.data(), std::ptrdiff_t(sx), R, n, b, limit, mr, er);
        std::vector<S> zr(R * sx), zo(R * sx);
        float mz[R];
        k.rows_log_softmax(xr.data(), std::ptrdiff_t(sx), zr.data(), std::ptrdiff_t(sx), R, n, b, limit, mz);
        for (std::size_t r = 0; r < R; ++r) {
            const S* xi = &xr[r * sx];
            const float m1 = k.row_max(xi, n);
            const normexp::exp_sum e1 = k.row_exp_sum(xi, n, m1, b);
            CHECK(mr[r] == m1 && er[r].rest == e1.rest && er[r].count == e1.count, "%s: rows_exp_sum row %zu",
                  where.c_str(), r);
            k.row_exp_scale(xi, &yo[r * sx], n, m1, b, static_cast<float>(1.0 / (e1.count + e1.rest)));
            for (std::size_t i = 0; i < n; ++i)
                CHECK(yr[r * sx + i].bits == yo[r * sx + i].bits, "%s: rows_softmax row %zu [%zu]", where.c_str(), r, i);
            k.row_log_softmax(xi, &zo[r * sx], n, m1, b, normexp::log_sum_out<float>(e1.count, e1.rest));
            CHECK(mz[r] == m1, "%s: rows_log_softmax max row %zu", where.c_str(), r);
            for (std::size_t i = 0; i < n; ++i)
                CHECK(zr[r * sx + i].bits == zo[r * sx + i].bits, "%s: rows_log_softmax row %zu [%zu]", where.c_str(), r, i);
        }
    }
}

template <class S>
void test_cols(const normexp::kernel_table& kt, const normexp::kernel_table& ks, double temperature) {
    const auto &k = table<S>(kt), &s = table<S>(ks);
    const scale2<float> b = d::split_beta<float>(temperature);
    const long double beta = 1.0L / temperature;
    std::mt19937_64 rng(22);
    const std::size_t rows = 6;
    for (std::size_t w : lengths()) {
        if (w == 0) continue;
        const std::size_t sx = w + 3;
        std::vector<S> x = scores<S>(rng, rows * sx, 4.0);
        x[sx + w / 2] = narrow<S>(-INFINITY);
        const std::string where = std::string(kt.name) + " " + type_name<S>() + " cols w=" + std::to_string(w) +
                                  " T=" + std::to_string(temperature);
        std::vector<float> m(w, -INFINITY), ms(w, -INFINITY);
        k.col_max(x.data(), rows, std::ptrdiff_t(sx), w, m.data(), nullptr);
        s.col_max(x.data(), rows, std::ptrdiff_t(sx), w, ms.data(), nullptr);
        for (std::size_t j = 0; j < w; ++j) CHECK(m[j] == ms[j], "%s: col_max[%zu] %g vs %g", where.c_str(), j, m[j], ms[j]);
        std::vector<double> rest(w, 0.0), count(w, 0.0), rests(w, 0.0), counts(w, 0.0), lc(w);
        k.col_exp_sum(x.data(), rows, std::ptrdiff_t(sx), w, ms.data(), b, rest.data(), count.data());
        s.col_exp_sum(x.data(), rows, std::ptrdiff_t(sx), w, ms.data(), b, rests.data(), counts.data());
        std::vector<float> c(w);
        for (std::size_t j = 0; j < w; ++j) {
            CHECK(count[j] == counts[j] && count[j] >= 1, "%s: count[%zu] %g vs %g", where.c_str(), j, count[j], counts[j]);
            CHECK(std::fabs(rest[j] - rests[j]) <= 64 * 0x1p-23 * (rests[j] + 1e-300), "%s: rest[%zu]", where.c_str(), j);
            c[j] = static_cast<float>(1.0 / (counts[j] + rests[j]));
            lc[j] = std::log(counts[j] + rests[j]);
        }
        std::vector<S> y(rows * sx), ys(rows * sx), z(rows * sx), zs(rows * sx);
        for (auto* v : {&y, &ys, &z, &zs})
            for (auto& h : *v) h.bits = kGuard;
        k.col_exp_scale(x.data(), std::ptrdiff_t(sx), y.data(), std::ptrdiff_t(sx), rows, w, ms.data(), b, c.data());
        s.col_exp_scale(x.data(), std::ptrdiff_t(sx), ys.data(), std::ptrdiff_t(sx), rows, w, ms.data(), b, c.data());
        k.col_log_softmax(x.data(), std::ptrdiff_t(sx), z.data(), std::ptrdiff_t(sx), rows, w, ms.data(), b, lc.data());
        s.col_log_softmax(x.data(), std::ptrdiff_t(sx), zs.data(), std::ptrdiff_t(sx), rows, w, ms.data(), b, lc.data());
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < sx; ++j) {
                const std::size_t q = i * sx + j;
                if (j >= w) {
                    CHECK(y[q].bits == kGuard && z[q].bits == kGuard, "%s: stored past the block at (%zu, %zu)",
                          where.c_str(), i, j);
                    continue;
                }
                const long double t = beta * ((long double)d::to_f32(x[q]) - ms[j]);
                const S ex = narrow<S>(double(std::exp(t) * c[j])), lx = narrow<S>(double(t - lc[j]));
                CHECK(ulps(y[q], ys[q]) <= 1 && ulps(y[q], ex) <= 1, "%s: col_exp_scale (%zu, %zu)", where.c_str(), i, j);
                CHECK(ulps(z[q], zs[q]) <= 1 && ulps(z[q], lx) <= 1, "%s: col_log_softmax (%zu, %zu)", where.c_str(), i, j);
            }
        }
    }
}

// The SIMD sets' 16-bit exp through row_exp_total of single entries: exp(t) for t = fl(x - m) (float32, as
// the kernel forms it), every finite S value x <= m, within kExpTol relative where exp(t) is a normal float32
// (below 2^-126 the float32 result itself is subnormal, far below every 16-bit output's resolution).
// Returns the largest relative error seen, which must also be above the float32 exp's (a negative control:
// the check sees the shorter polynomial).
template <class S>
double test_exp(const normexp::kernel_table& kt, const std::string& name) {
    const auto& k = table<S>(kt);
    double worst = 0;
    for (float m : {0.0f, 1.0f, 7.25f, -3.5f, 100.0f}) {
        for (std::uint32_t b = 0; b < 0x10000; ++b) {
            S x;
            x.bits = static_cast<std::uint16_t>(b);
            const float xf = d::to_f32(x);
            if (!(xf <= m)) continue;  // NaN, or above the maximum
            const float t = xf - m;
            const long double want = std::exp(static_cast<long double>(t));
            const double got = k.row_exp_total(&x, 1, m, scale2<float>{1.0f, 0.0f}).rest;
            if (want < 0x1p-126L) {
                CHECK(got <= 0x1p-125, "%s %s: exp(%a) = %a, want %La", name.c_str(), type_name<S>(), t, got, want);
                continue;
            }
            const double rel = static_cast<double>(std::fabs((got - want) / want));
            if (rel > worst) worst = rel;
            CHECK(rel <= kExpTol, "%s %s: exp(%a) = %a, want %La (relative %.3g)", name.c_str(), type_name<S>(), t, got,
                  want, rel);
        }
    }
    return worst;
}

// The long-row softmax entries (row_exp_total, row_exp_scale_stream) against row_exp_sum / row_exp_scale.
template <class S>
void test_long_row_entries(const normexp::kernel_table& kt, const normexp::kernel_table& ks, const std::string& name,
                           double temperature) {
    const auto &k = table<S>(kt), &s = table<S>(ks);
    const scale2<float> b = d::split_beta<float>(temperature);
    std::mt19937_64 rng(23);
    std::vector<std::size_t> ns = lengths();
    for (std::size_t n : {255, 256, 257, 4099, 9000}) ns.push_back(n);
    for (std::size_t n : ns) {
        std::vector<S> x = scores<S>(rng, n, 4.0);
        if (n > 3) x[n / 2] = narrow<S>(-INFINITY), x[n / 3] = x[1];
        if (n > 5) x[n / 5] = narrow<S>(12.0);  // the maximum, twice
        if (n > 7) x[n - 1] = narrow<S>(12.0);
        const std::string where = name + " " + type_name<S>() + " n=" + std::to_string(n) + " T=" + std::to_string(temperature);
        const float m = s.row_max(x.data(), n);
        if (n == 0 || !std::isfinite(m)) continue;
        const normexp::exp_sum es = s.row_exp_sum(x.data(), n, m, b);
        const double want = es.count + es.rest;
        const normexp::exp_sum t = k.row_exp_total(x.data(), n, m, b), ts = s.row_exp_total(x.data(), n, m, b);
        CHECK(t.count == 0 && ts.count == 0, "%s: row_exp_total counted %g, spec %g", where.c_str(), t.count, ts.count);
        CHECK(std::fabs(t.rest - want) <= kSumTol * want, "%s: row_exp_total %.9g vs %.9g", where.c_str(), t.rest, want);
        CHECK(std::fabs(ts.rest - want) <= 0x1p-50 * want, "%s: spec row_exp_total %.17g vs %.17g", where.c_str(), ts.rest, want);
        const float c = static_cast<float>(1.0 / want);
        const double lc = std::log(want);
        // y at every element offset from a 64-byte boundary (32 float16 / bfloat16 elements), guards around: the
        // streaming entry's bits are the cached one's, nothing stored outside y.
        std::vector<S> buf(n + 128);
        const std::size_t lead = (64 - reinterpret_cast<std::uintptr_t>(buf.data()) % 64) % 64 / sizeof(S);
        auto check_stream = [&](const char* what, const std::vector<S>& want_y, auto&& stream) {
            for (std::size_t off = 0; off <= 32; ++off) {
                for (auto& h : buf) h.bits = kGuard;
                S* ys = buf.data() + lead + 32 + off;  // off elements past a 64-byte boundary
                stream(ys);
                bool same = true, clean = true;
                for (std::size_t i = 0; i < n; ++i) same = same && ys[i].bits == want_y[i].bits;
                for (S* g = buf.data(); g < ys; ++g) clean = clean && g->bits == kGuard;
                for (S* g = ys + n; g < buf.data() + buf.size(); ++g) clean = clean && g->bits == kGuard;
                CHECK(same, "%s: %s differs from the cached entry, y offset %zu", where.c_str(), what, off);
                CHECK(clean, "%s: %s stored outside y, offset %zu", where.c_str(), what, off);
            }
        };
        std::vector<S> y(n);
        k.row_exp_scale(x.data(), y.data(), n, m, b, c);
        check_stream("row_exp_scale_stream", y, [&](S* ys) { k.row_exp_scale_stream(x.data(), ys, n, m, b, c); });
        k.row_log_softmax(x.data(), y.data(), n, m, b, lc);
        check_stream("row_log_softmax_stream", y, [&](S* ys) { k.row_log_softmax_stream(x.data(), ys, n, m, b, lc); });
    }
}

// row_exp_sum_max / row_exp_total_max: row_exp_sum's / row_exp_total's sum of one chunk (rest times kSumLift)
// and row_max of the next, each bit for bit what the single entry gives, for chunk and next-chunk lengths
// around every block boundary (the next chunk shorter, longer, empty), with a NaN in the next chunk and maxima
// tied between +0 and -0.
template <class S>
void test_sum_max(const normexp::kernel_table& kt, const std::string& name, double temperature) {
    const auto& k = table<S>(kt);
    const scale2<float> b = d::split_beta<float>(temperature);
    std::mt19937_64 rng(19);
    const std::size_t lens[] = {0, 1, 7, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4097, 8192};
    for (std::size_t n : lens) {
        if (n == 0) continue;
        for (std::size_t nn : lens) {
            for (int kind = 0; kind < 3; ++kind) {
                std::vector<S> x = scores<S>(rng, n + nn + 1, 4.0);
                S* xn = x.data() + n;
                if (kind == 1 && nn > 0) xn[(nn * 2) / 3] = narrow<S>(NAN);
                if (kind == 2 && nn > 0) {  // maximum 0: -0 and +0 in different accumulators
                    for (std::size_t j = 0; j < nn; ++j) xn[j] = narrow<S>(-std::fabs(d::to_f32(xn[j])) - 1.0);
                    xn[nn / 3] = narrow<S>(-0.0), xn[(2 * nn) / 3] = narrow<S>(0.0), xn[nn - 1] = narrow<S>(-0.0);
                }
                const float m = k.row_max(x.data(), n);
                const float want_m = k.row_max(xn, nn);
                const std::string where = name + " " + type_name<S>() + " n=" + std::to_string(n) +
                                          " nn=" + std::to_string(nn) + " kind=" + std::to_string(kind);
                for (bool total : {false, true}) {
                    float mn = 7.f;
                    const normexp::exp_sum e = (total ? k.row_exp_total_max : k.row_exp_sum_max)(x.data(), n, m, b, xn, nn, &mn);
                    const normexp::exp_sum want = (total ? k.row_exp_total : k.row_exp_sum)(x.data(), n, m, b);
                    const double want_rest = want.rest * normexp::kSumLift;  // exactly: the data's sums are normal
                    CHECK(std::memcmp(&e.rest, &want_rest, sizeof e.rest) == 0 && e.count == want.count,
                          "%s %s: sum %.17g vs %.17g", where.c_str(), total ? "row_exp_total_max" : "row_exp_sum_max",
                          e.rest, want_rest);
                    // Equal, or both NaN; where +0 and -0 tie either zero may be kept (generic/reductions.hpp: k_row_max).
                    CHECK((mn != mn && want_m != want_m) || mn == want_m, "%s: next max %.9g vs row_max %.9g",
                          where.c_str(), double(mn), double(want_m));
                }
            }
        }
    }
}

// NaN rows: row_max and col_max report NaN.
template <class S>
void test_nan(const normexp::kernel_table& kt) {
    const auto& k = table<S>(kt);
    for (std::size_t n : lengths()) {
        if (n == 0) continue;
        std::vector<S> x(n, narrow<S>(1.0));
        x[n - 1] = narrow<S>(NAN);
        CHECK(std::isnan(k.row_max(x.data(), n)), "%s %s: NaN at the end of %zu", kt.name, type_name<S>(), n);
        std::vector<float> m(n, -INFINITY);
        k.col_max(x.data(), 1, 0, n, m.data(), nullptr);
        CHECK(std::isnan(m[n - 1]) && (n == 1 || m[0] == 1.0f), "%s %s: col_max NaN lane", kt.name, type_name<S>());
    }
}

}  // namespace

int main() {
    const normexp::kernel_table& ks = normexp::detail::kernels_for("scalar");
    for (const std::string& name : normexp::detail::available_isas()) {
        const normexp::kernel_table& kt = normexp::detail::kernels_for(name);
        if (name != "scalar") {  // every SIMD set provides its own 16-bit kernels (not the scalar fallback)
            CHECK(kt.f16.row_exp_scale != ks.f16.row_exp_scale && kt.bf16.col_log_softmax != ks.bf16.col_log_softmax,
                  "%s: 16-bit kernels fall back to scalar", name.c_str());
        }
        for (double temperature : {1.0, 0.7}) {
            test_rows<float16>(kt, ks, temperature);
            test_rows<bfloat16>(kt, ks, temperature);
            test_cols<float16>(kt, ks, temperature);
            test_cols<bfloat16>(kt, ks, temperature);
        }
        test_nan<float16>(kt);
        test_nan<bfloat16>(kt);
        if (name != "scalar") {
            const double w16 = test_exp<float16>(kt, name), wb16 = test_exp<bfloat16>(kt, name);
            CHECK(w16 > 0x1p-20 && wb16 > 0x1p-20, "%s: the exp check sees no more than float32 rounding (%g, %g)",
                  name.c_str(), w16, wb16);
            std::printf("%s: 16-bit exp within %.3g (float16), %.3g (bfloat16) relative\n", name.c_str(), w16, wb16);
        }
        // The long-row entries, also on the set without its extensions (avx512 without AVX512_BF16's stores).
        const normexp::kernel_table& plain = d::kernels_without_extensions(name);
        for (double temperature : {1.0, 0.7}) {
            test_long_row_entries<float16>(kt, ks, name, temperature);
            test_long_row_entries<bfloat16>(kt, ks, name, temperature);
            test_sum_max<float16>(kt, name, temperature);
            test_sum_max<bfloat16>(kt, name, temperature);
            if (&plain != &kt) {
                test_long_row_entries<bfloat16>(plain, ks, name + " (no extensions)", temperature);
                test_sum_max<bfloat16>(plain, name + " (no extensions)", temperature);
            }
        }
        std::printf("%s: float16 / bfloat16 kernels checked\n", name.c_str());
    }
    return check::failures() == 0 ? 0 : 1;
}
