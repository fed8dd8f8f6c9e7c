// Every SIMD kernel set against the scalar specification, on special values, at every tail length.
//
// test_kernels checks each ISA against a long double reference on ordinary data; this test pins down
// what must not depend on the ISA: where NaN and infinities go, what -inf entries, +-0, subnormal
// results and duplicated maxima give, and that nothing changes with the position of a special value
// inside a vector or its tail. It matters most for NEON, whose vmaxq propagates NaN where AVX2's
// max_ps returns its second operand: row_max and col_max must be NaN iff the scalar one is, for a NaN
// in every position (and in the running column maximum), on every ISA.
//
// Bounds (SIMD against scalar) and their reasons:
//  * row_max, col_max, counts of maxima: identical (a maximum is an exact selection).
//  * exp and exp(beta (x - m)) outputs: <= 2 ULP. Each set is within 1 ULP of the correctly rounded
//    value (test_exp, test_kernels), so they are at most 2 apart; special values (0, 1, inf, NaN, exact
//    underflow to 0) must be identical, which the ULP distance also enforces (NaN vs number = infinite).
//  * the same times a scale c: <= 3 ULP (one more rounding of the product on each side).
//  * float32 log_softmax: identical. Both evaluate fl(fl(x - m) - fl(c)) at unit temperature
//    (kernel_table.hpp, below log_sum_out) and fl32(fl64(fl64(x) - m) * beta - c) with a temperature: the
//    same operations in the same order.
//  * float64 log_softmax: <= 1 ULP, or 2^-96 |beta (x - m)| absolute: both carry beta (x - m) as a
//    double-double to ~2^-100 relative (scalar: Dekker's product, SIMD: FMA) and round once at the end;
//    only that last rounding (or cancellation against c) can differ.
//  * sums of exp: relative 64 eps (the blocked summation bound of test_kernels) plus one subnormal ULP
//    per term for results below the smallest normal number.
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "temperature.hpp"

namespace {

using normexp::scale2;

template <class T>
const normexp::reduction_kernels<T>& kern(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32; else return t.f64;
}


template <class T>
bool same(T a, T b) {  // identical value (NaN == NaN; +0 == -0)
    return (std::isnan(a) && std::isnan(b)) || a == b;
}

template <class T>
constexpr T inf = std::numeric_limits<T>::infinity();

template <class T>
T nan_with_payload(bool negative, bool signaling) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    U bits;
    if constexpr (sizeof(T) == 4) bits = signaling ? 0x7f800001u : 0x7fc00123u;
    else bits = signaling ? 0x7ff0000000000001ull : 0x7ff8000000000123ull;
    if (negative) bits |= U(1) << (8 * sizeof(T) - 1);
    T v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// Lengths around every vector width and block size in use (N = 2, 4, 8; blocks of 8 vectors).
std::vector<std::size_t> lengths() {
    std::vector<std::size_t> v;
    for (std::size_t n = 0; n <= 40; ++n) v.push_back(n);
    for (std::size_t n : {63, 64, 65, 127, 128, 129}) v.push_back(n);
    return v;
}

// ---- maxima ------------------------------------------------------------------------------------------
template <class T>
void test_max(const normexp::kernel_table& kt, const normexp::kernel_table& ks) {
    const auto &k = kern<T>(kt), &s = kern<T>(ks);
    std::mt19937_64 rng(5);
    std::normal_distribution<double> g(0.0, 10.0);
    const T nans[] = {nan_with_payload<T>(false, false), nan_with_payload<T>(true, false),
                      nan_with_payload<T>(false, true), nan_with_payload<T>(true, true)};
    int cases = 0;
    for (std::size_t n : lengths()) {
        std::vector<T> x(n);
        for (auto& v : x) v = T(g(rng));
        CHECK(same(k.row_max(x.data(), n), s.row_max(x.data(), n)), "%s row_max n=%zu", kt.name, n);
        for (std::size_t p = 0; p < n; ++p) {
            // One special value at every position, alone and next to others.
            for (int kind = 0; kind < 7; ++kind) {
                std::vector<T> y = x;
                if (kind < 4) y[p] = nans[kind];
                if (kind == 4) y[p] = inf<T>, y[n - 1 - p] = nans[0];  // NaN wins over +inf, either order
                if (kind == 5) y[p] = inf<T>;
                if (kind == 6) for (auto& v : y) v = (&v - y.data()) == std::ptrdiff_t(p) ? T(-0.0) : -inf<T>;
                const T a = k.row_max(y.data(), n), b = s.row_max(y.data(), n);
                CHECK(same(a, b), "%s row_max n=%zu p=%zu kind=%d: %g vs scalar %g", kt.name, n, p, kind,
                      double(a), double(b));
                if (kind < 5) CHECK(std::isnan(a), "%s row_max must be NaN (n=%zu p=%zu)", kt.name, n, p);
                ++cases;
            }
        }
    }
    // Columns: NaN at every (row, column), and NaN already in the running maximum.
    for (std::size_t rows : {1, 2, 3, 9}) {
        for (std::size_t w = 0; w <= 19; ++w) {
            const std::ptrdiff_t sx = std::ptrdiff_t(w) + 2;
            std::vector<T> x(rows * sx);
            for (auto& v : x) v = T(g(rng));
            for (std::size_t q = 0; q <= rows * w; ++q) {
                for (int kind = 0; kind < 3; ++kind) {
                    std::vector<T> y = x;
                    const std::size_t i = q / (w ? w : 1), j = q % (w ? w : 1);
                    // m has w entries and a sentinel after them that no kernel may touch.
                    std::vector<T> ma(w + 1, -inf<T>), mb(w + 1, -inf<T>);
                    ma[w] = mb[w] = T(-7);
                    if (q < rows * w) {
                        if (kind == 0) y[i * sx + j] = nans[q % 4];
                        if (kind == 1) ma[j] = mb[j] = nans[0];
                        if (kind == 2) y[i * sx + j] = inf<T>;
                    }
                    k.col_max(y.data(), rows, sx, w, ma.data(), nullptr);
                    s.col_max(y.data(), rows, sx, w, mb.data(), nullptr);
                    for (std::size_t c = 0; c <= w; ++c)
                        CHECK(same(ma[c], mb[c]), "%s col_max rows=%zu w=%zu q=%zu kind=%d col %zu: %g vs scalar %g",
                              kt.name, rows, w, q, kind, c, double(ma[c]), double(mb[c]));
                    if (q < rows * w && kind < 2) CHECK(std::isnan(ma[j]), "%s col_max must be NaN", kt.name);
                    ++cases;
                }
            }
        }
    }
    std::printf("%-7s %s maxima: %d special-value placements identical to scalar\n", kt.name,
                sizeof(T) == 4 ? "float32" : "float64", cases);
}

// ---- exp over special and boundary inputs ------------------------------------------------------------
template <class T>
void test_exp_specials(const normexp::kernel_table& kt, const normexp::kernel_table& ks) {
    const auto &k = kern<T>(kt), &s = kern<T>(ks);
    const bool f32 = sizeof(T) == 4;
    const T lim = std::numeric_limits<T>::max();
    std::vector<T> sp = {T(0), T(-0.0), inf<T>, -inf<T>, nan_with_payload<T>(false, false),
                         nan_with_payload<T>(true, true), lim, -lim, std::numeric_limits<T>::denorm_min(),
                         T(1), T(-1), T(0.5)};
    // Overflow, subnormal and underflow thresholds and the edges of the clamps, with their neighbours.
    const double edges32[] = {88.0, 88.72283, 88.7228394, 88.8, -87.3, -87.33654, -103.279, -103.972, -104.0, -150.0};
    const double edges64[] = {709.0, 709.782712893384, 709.9, -708.3, -708.39641853226, -744.44007, -745.1332191,
                              -746.0, -1100.0};
    for (double e : f32 ? std::vector<double>(std::begin(edges32), std::end(edges32))
                        : std::vector<double>(std::begin(edges64), std::end(edges64))) {
        const T v = T(e);
        sp.push_back(v);
        sp.push_back(std::nextafter(v, inf<T>));
        sp.push_back(std::nextafter(v, -inf<T>));
    }
    double worst = 0;
    for (std::size_t n : lengths()) {
        for (std::size_t shift = 0; shift < sp.size(); shift += 5) {
            std::vector<T> x(n), a(n + 1, T(-7)), b(n + 1, T(-7));
            for (std::size_t i = 0; i < n; ++i) x[i] = sp[(i + shift) % sp.size()];
            k.exp(x.data(), a.data(), n);
            s.exp(x.data(), b.data(), n);
            CHECK(a[n] == T(-7), "%s exp wrote past n=%zu", kt.name, n);
            for (std::size_t i = 0; i < n; ++i) {
                const double u = check::ulp_diff(a[i], b[i]);
                worst = std::max(worst, u);
                CHECK(u <= 2, "%s exp(%a) = %a, scalar %a", kt.name, double(x[i]), double(a[i]), double(b[i]));
                const bool exact = std::isnan(x[i]) || std::isinf(x[i]) || x[i] == 0 || std::fabs(x[i]) >= 1e3;
                if (exact) CHECK(same(a[i], b[i]), "%s exp(%a) = %a, scalar %a (must be identical)", kt.name,
                                 double(x[i]), double(a[i]), double(b[i]));
            }
        }
    }
    std::printf("%-7s %s exp on %zu special inputs at every position: max %.0f ULP from scalar\n", kt.name,
                f32 ? "float32" : "float64", sp.size(), worst);
}

// ---- row kernels on rows with special entries --------------------------------------------------------
template <class T>
struct worst_t {
    double exp = 0, scaled = 0, ls = 0, sum = 0;
};

template <class T>
bool ls_close(T a, T b, T t) {  // see the header: float32 identical, float64 1 ULP or 2^-96 |t|
    if constexpr (sizeof(T) == 4) return same(a, b);
    else return check::ulp_diff(a, b) <= 1 || std::fabs(a - b) <= std::ldexp(std::fabs(t), -96);
}

template <class T>
bool sum_close(double a, double b, std::size_t n) {
    const double tiny = double(n) * double(std::numeric_limits<T>::denorm_min());
    return std::fabs(a - b) <= 64 * double(std::numeric_limits<T>::epsilon()) * std::fabs(b) + tiny;
}

// A row whose maximum m is finite, with -inf entries, duplicated maxima, signed zeros, entries whose
// exp is subnormal or underflows, and entries far below m.
template <class T>
std::vector<T> special_row(std::mt19937_64& rng, std::size_t n, int kind) {
    std::normal_distribution<double> g(0.0, kind == 0 ? 3.0 : 40.0);
    const bool f32 = sizeof(T) == 4;
    std::vector<T> x(n);
    for (auto& v : x) v = T(g(rng));
    const T pool[] = {-inf<T>, T(0), T(-0.0), T(f32 ? -90.0 : -710.0), T(f32 ? -103.5 : -745.5),
                      T(f32 ? -200.0 : -2000.0), T(-1e30), -std::numeric_limits<T>::max(), T(8), T(8)};
    for (std::size_t i = 0; i < n; ++i)
        if ((i * 7 + std::size_t(kind)) % 3 == 0) x[i] = pool[(i + std::size_t(kind)) % 10];
    if (kind == 2 && n) x[n - 1] = T(8);  // the maximum in the tail
    return x;
}

template <class T>
void test_rows(const normexp::kernel_table& kt, const normexp::kernel_table& ks) {
    const auto &k = kern<T>(kt), &s = kern<T>(ks);
    std::mt19937_64 rng(17);
    worst_t<T> w;
    for (double temp : {1.0, 0.3}) {
        const auto beta = normexp::detail::split_beta<T>(temp);
        for (int kind = 0; kind < 3; ++kind) {
            for (std::size_t n : lengths()) {
                if (n == 0) continue;
                const auto x = special_row<T>(rng, n, kind);
                const T m = s.row_max(x.data(), n);
                CHECK(same(k.row_max(x.data(), n), m), "%s row_max", kt.name);
                if (!std::isfinite(m)) continue;  // drivers handle these rows; kernels require a finite m
                const auto ea = k.row_exp_sum(x.data(), n, m, beta), eb = s.row_exp_sum(x.data(), n, m, beta);
                CHECK(ea.count == eb.count, "%s row_exp_sum count n=%zu: %g vs %g", kt.name, n, ea.count, eb.count);
                CHECK(sum_close<T>(ea.rest, eb.rest, n), "%s row_exp_sum n=%zu kind=%d: %a vs %a", kt.name, n, kind,
                      ea.rest, eb.rest);
                // Reported in eps only where the subnormal allowance is below 1 eps of the sum.
                if (eb.rest * double(std::numeric_limits<T>::epsilon()) > double(n) * double(std::numeric_limits<T>::denorm_min()))
                    w.sum = std::max(w.sum, std::fabs(ea.rest - eb.rest) / eb.rest / double(std::numeric_limits<T>::epsilon()));
                std::vector<T> ya(n + 1, T(-7)), yb(n + 1, T(-7));
                const double sa = k.row_exp_store(x.data(), ya.data(), n, m, beta);
                const double sb = s.row_exp_store(x.data(), yb.data(), n, m, beta);
                CHECK(sum_close<T>(sa, sb, n), "%s row_exp_store sum n=%zu", kt.name, n);
                CHECK(ya[n] == T(-7), "%s row_exp_store wrote past n=%zu", kt.name, n);
                for (std::size_t i = 0; i < n; ++i) {
                    const double u = check::ulp_diff(ya[i], yb[i]);
                    w.exp = std::max(w.exp, u);
                    CHECK(u <= 2, "%s row_exp_store n=%zu x=%a m=%a: %a vs %a", kt.name, n, double(x[i]), double(m),
                          double(ya[i]), double(yb[i]));
                }
                const T c = T(1 / sb);
                k.row_scale(ya.data(), n, c);  // same input (ya = yb within 2 ULP), so compare to scalar's
                s.row_scale(yb.data(), n, c);
                std::vector<T> za(n + 1, T(-7)), zb(n + 1, T(-7));
                k.row_exp_scale(x.data(), za.data(), n, m, beta, c);
                s.row_exp_scale(x.data(), zb.data(), n, m, beta, c);
                CHECK(za[n] == T(-7), "%s row_exp_scale wrote past n=%zu", kt.name, n);
                for (std::size_t i = 0; i < n; ++i) {
                    const double u = check::ulp_diff(za[i], zb[i]);
                    w.scaled = std::max(w.scaled, u);
                    CHECK(u <= 3, "%s row_exp_scale n=%zu x=%a: %a vs %a", kt.name, n, double(x[i]), double(za[i]),
                          double(zb[i]));
                    CHECK(check::ulp_diff(ya[i], yb[i]) <= 3, "%s row_scale n=%zu", kt.name, n);
                }
                // log_softmax, in place on the SIMD side (y aliases x), out of place on the scalar side.
                const double lc = std::log(double(eb.count) + eb.rest);
                std::vector<T> la = x, lb(n);
                k.row_log_softmax(la.data(), la.data(), n, m, beta, lc);
                s.row_log_softmax(x.data(), lb.data(), n, m, beta, lc);
                for (std::size_t i = 0; i < n; ++i) {
                    const T t = T(double(beta.hi) * (double(x[i]) - double(m)));
                    w.ls = std::max(w.ls, check::ulp_diff(la[i], lb[i]));
                    CHECK(ls_close(la[i], lb[i], t), "%s row_log_softmax n=%zu x=%a: %a vs %a", kt.name, n,
                          double(x[i]), double(la[i]), double(lb[i]));
                }
            }
        }
    }
    std::printf("%-7s %s rows with special entries vs scalar: exp %.0f ULP, scaled %.0f ULP, log_softmax %.0f ULP, "
                "sum %.1f eps\n", kt.name, sizeof(T) == 4 ? "float32" : "float64", w.exp, w.scaled, w.ls, w.sum);
}

// ---- column kernels on columns with special entries --------------------------------------------------
template <class T>
void test_cols(const normexp::kernel_table& kt, const normexp::kernel_table& ks) {
    const auto &k = kern<T>(kt), &s = kern<T>(ks);
    std::mt19937_64 rng(23);
    for (double temp : {1.0, 0.3}) {
        const auto beta = normexp::detail::split_beta<T>(temp);
        for (std::size_t rows : {1, 2, 3, 8, 9, 17}) {
            for (std::size_t w = 0; w <= 19; ++w) {
                const std::ptrdiff_t sx = std::ptrdiff_t(w) + 1, sy = std::ptrdiff_t(w) + 2;
                // Column-major view of special rows: entry (i, j) = special_row(..)[i * w + j].
                auto flat = special_row<T>(rng, rows * w, int((rows + w) % 3));
                std::vector<T> x(rows * sx, T(-5));
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < w; ++j) x[i * sx + j] = flat[i * w + j];
                if (w && rows > 2) x[2 * sx] = x[0];  // a duplicated maximum candidate in column 0
                std::vector<T> m(w + 1, -inf<T>), ma(w + 1, -inf<T>);
                m[w] = ma[w] = T(-7);
                s.col_max(x.data(), rows, sx, w, m.data(), nullptr);
                k.col_max(x.data(), rows, sx, w, ma.data(), nullptr);
                for (std::size_t j = 0; j <= w; ++j) CHECK(same(m[j], ma[j]), "%s col_max", kt.name);
                bool finite = true;
                for (std::size_t j = 0; j < w; ++j) finite = finite && std::isfinite(m[j]);
                if (!finite) continue;
                std::vector<double> ra(w + 1, 0), ca(w + 1, 0), rb(w + 1, 0), cb(w + 1, 0), lc(w);
                k.col_exp_sum(x.data(), rows, sx, w, m.data(), beta, ra.data(), ca.data());
                s.col_exp_sum(x.data(), rows, sx, w, m.data(), beta, rb.data(), cb.data());
                std::vector<T> c(w);
                for (std::size_t j = 0; j <= w; ++j) {
                    CHECK(ca[j] == cb[j], "%s col_exp_sum count rows=%zu w=%zu j=%zu", kt.name, rows, w, j);
                    CHECK(sum_close<T>(ra[j], rb[j], rows), "%s col_exp_sum rows=%zu w=%zu j=%zu: %a vs %a", kt.name,
                          rows, w, j, ra[j], rb[j]);
                    if (j < w) c[j] = T(1 / (cb[j] + rb[j])), lc[j] = std::log(cb[j] + rb[j]);
                }
                std::vector<T> ya(rows * sy, T(-7)), yb(rows * sy, T(-7)), za(rows * sy, T(-7)), zb(rows * sy, T(-7));
                k.col_exp_scale(x.data(), sx, ya.data(), sy, rows, w, m.data(), beta, c.data());
                s.col_exp_scale(x.data(), sx, yb.data(), sy, rows, w, m.data(), beta, c.data());
                k.col_log_softmax(x.data(), sx, za.data(), sy, rows, w, m.data(), beta, lc.data());
                s.col_log_softmax(x.data(), sx, zb.data(), sy, rows, w, m.data(), beta, lc.data());
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < std::size_t(sy); ++j) {
                        const std::size_t o = i * sy + j;
                        if (j >= w) {
                            CHECK(ya[o] == T(-7) && za[o] == T(-7), "%s column kernels wrote past w", kt.name);
                            continue;
                        }
                        const T t = T(double(beta.hi) * (double(x[i * sx + j]) - double(m[j])));
                        CHECK(check::ulp_diff(ya[o], yb[o]) <= 3, "%s col_exp_scale x=%a: %a vs %a", kt.name,
                              double(x[i * sx + j]), double(ya[o]), double(yb[o]));
                        CHECK(ls_close(za[o], zb[o], t), "%s col_log_softmax x=%a: %a vs %a", kt.name,
                              double(x[i * sx + j]), double(za[o]), double(zb[o]));
                    }
            }
        }
    }
}

}  // namespace

// argv[1] (optional): an ISA that must be available (ctest passes "neon" on aarch64, where NEON is
// architectural), so a build that silently lost its SIMD set cannot pass by comparing nothing.
int main(int argc, char** argv) {
    const auto& scalar = normexp::detail::kernels_for("scalar");
    const auto isas = normexp::detail::available_isas();
    if (argc > 1) {
        bool found = false;
        for (const auto& n : isas) found = found || n == argv[1];
        CHECK(found, "required ISA '%s' is not available in this build/CPU", argv[1]);
    }
    int compared = 0;
    for (const auto& name : isas) {
        if (name == "scalar") continue;
        const auto& kt = normexp::detail::kernels_for(name);
        test_max<float>(kt, scalar);
        test_max<double>(kt, scalar);
        test_exp_specials<float>(kt, scalar);
        test_exp_specials<double>(kt, scalar);
        test_rows<float>(kt, scalar);
        test_rows<double>(kt, scalar);
        test_cols<float>(kt, scalar);
        test_cols<double>(kt, scalar);
        ++compared;
    }
    // A build or CPU with only the scalar set has nothing to compare; say so instead of passing silently.
    std::printf("test_isa_agreement: %d SIMD kernel set(s) compared with scalar\n", compared);
    return check::finish("test_isa_agreement");
}
