// Every kernel of every ISA this CPU runs, against a long double reference and against the scalar
// specification, at every length around the vector width (tails) and at block boundaries.
//
// Bounds and their reasons:
//  * exp-valued outputs (row_exp_store, col/row_exp_scale): <= 2 ULP: exp is within 1 ULP and the
//    final multiplication by the (rounded) reciprocal adds at most one more rounding.
//  * log_softmax outputs: <= 2 ULP (float32 is evaluated in double and rounded once; float64 carries
//    x - m and c as TwoSum pairs).
//  * sums (rest of row_exp_sum / col_exp_sum): relative error <= 64 eps of the type: blocks of at most
//    8 vectors are summed pairwise in working precision before flushing to double.
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "half_convert.hpp"
#include "temperature.hpp"
#include "normexp/normexp.hpp"

namespace {

using ld = long double;
using normexp::scale2;


template <class T>
const normexp::reduction_kernels<T>& kern(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32; else return t.f64;
}

template <class T>
const normexp::reduction_kernels<T>& kern_fast(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32_fast; else return t.f64_fast;
}

template <class T>
std::vector<T> make_row(std::mt19937_64& rng, std::size_t n, int kind) {
    std::normal_distribution<double> g(0.0, kind == 1 ? 30.0 : 3.0);
    std::vector<T> x(n);
    for (auto& v : x) v = T(g(rng));
    if (kind == 2 && n > 2) {  // duplicated maxima and -inf entries
        x[n / 2] = x[0] = T(20);
        x[1] = -std::numeric_limits<T>::infinity();
    }
    if (kind == 3) for (auto& v : x) v = T(v * 1e-3 + 1000);  // large offset: x - m needs TwoSum
    return x;
}

template <class T>
void test_rows(const normexp::kernel_table& kt) {
    const auto& k = kern<T>(kt);
    std::mt19937_64 rng(7);
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n <= 80; ++n) lengths.push_back(n);
    for (std::size_t n : {127, 128, 129, 255, 256, 257, 1000, 4099, 70001}) lengths.push_back(n);
    double worst_exp = 0, worst_ls = 0, worst_sum = 0;
    for (double temp : {1.0, 0.7}) {
        const auto b = normexp::detail::split_beta<T>(temp);
        const ld beta = ld(1) / ld(temp);
        for (int kind = 0; kind < 4; ++kind) {
            for (std::size_t n : lengths) {
                const auto x = make_row<T>(rng, n, kind);
                // max
                T mref = -std::numeric_limits<T>::infinity();
                for (T v : x) mref = v > mref ? v : mref;
                const T m = k.row_max(x.data(), n);
                CHECK(m == mref, "%s row_max n=%zu", kt.name, n);
                if (n == 0) continue;
                // reference exp terms
                std::vector<ld> e(n);
                ld rest = 0, sum = 0;
                double count = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    e[i] = std::exp(beta * (ld(x[i]) - ld(m)));
                    sum += e[i];
                    if (x[i] == m) count += 1; else rest += e[i];
                }
                const auto s = k.row_exp_sum(x.data(), n, m, b);
                CHECK(s.count == count, "%s row_exp_sum count n=%zu: %g vs %g", kt.name, n, s.count, count);
                // Terms below the smallest normal number are absolute errors of at most one subnormal ULP.
                const double abs_err = double(std::fabs(ld(s.rest) - rest));
                const double tiny = double(n) * std::numeric_limits<T>::denorm_min();
                const double rel = rest == 0 ? abs_err : abs_err / double(rest);
                if (abs_err > tiny) worst_sum = std::max(worst_sum, rel / std::numeric_limits<T>::epsilon());
                CHECK(abs_err <= 64 * std::numeric_limits<T>::epsilon() * double(rest) + tiny,
                      "%s row_exp_sum n=%zu kind=%d rel %g", kt.name, n, kind, rel);
                // store + sum
                std::vector<T> y(n), z(n);
                const double st = k.row_exp_store(x.data(), y.data(), n, m, b);
                CHECK(std::fabs(st - double(sum)) <= 64 * std::numeric_limits<T>::epsilon() * double(sum),
                      "%s row_exp_store sum n=%zu", kt.name, n);
                for (std::size_t i = 0; i < n; ++i) {
                    const double u = check::ulp_diff(y[i], T(e[i]));
                    worst_exp = std::max(worst_exp, u);
                    CHECK(u <= 1, "%s row_exp_store n=%zu i=%zu x=%a: %a vs %a", kt.name, n, i, double(x[i]), double(y[i]), double(T(e[i])));
                }
                // in place scale
                const T c = T(1 / sum);
                k.row_scale(y.data(), n, c);
                k.row_exp_scale(x.data(), z.data(), n, m, b, c);
                // The streaming variant gives the same bits at every alignment of y.
                for (std::size_t off = 0; off < 3; ++off) {
                    std::vector<T> zs(n + 8);
                    k.row_exp_scale_stream(x.data(), zs.data() + off, n, m, b, c);
                    for (std::size_t i = 0; i < n; ++i)
                        CHECK(zs[off + i] == z[i], "%s row_exp_scale_stream n=%zu off=%zu", kt.name, n, off);
                }
                for (std::size_t i = 0; i < n; ++i) {
                    const T ref = T(e[i] * ld(c));
                    CHECK(check::ulp_diff(z[i], ref) <= 2, "%s row_exp_scale n=%zu i=%zu", kt.name, n, i);
                    CHECK(check::ulp_diff(y[i], ref) <= 2, "%s row_scale n=%zu i=%zu", kt.name, n, i);
                }
                // log_softmax, in place
                const double lc = double(std::log(sum));
                z = x;
                k.row_log_softmax(z.data(), z.data(), n, m, b, lc);
                for (std::size_t i = 0; i < n; ++i) {
                    const T ref = T(beta * (ld(x[i]) - ld(m)) - ld(lc));
                    const double u = check::ulp_diff(z[i], ref);
                    worst_ls = std::max(worst_ls, u);
                    CHECK(u <= 2, "%s row_log_softmax n=%zu i=%zu: %a vs %a", kt.name, n, i, double(z[i]), double(ref));
                }
                for (std::size_t off = 0; off < 3; ++off) {  // the streaming variant: the same bits, any alignment
                    std::vector<T> zs(n + 8);
                    k.row_log_softmax_stream(x.data(), zs.data() + off, n, m, b, lc);
                    for (std::size_t i = 0; i < n; ++i)
                        CHECK(zs[off + i] == z[i] || (zs[off + i] != zs[off + i] && z[i] != z[i]),
                              "%s row_log_softmax_stream n=%zu off=%zu", kt.name, n, off);
                }
            }
        }
    }
    std::printf("%-7s %s rows: max exp error %.0f ULP, log_softmax %.0f ULP, sum %.1f eps\n", kt.name,
                sizeof(T) == 4 ? "float32" : "float64", worst_exp, worst_ls, worst_sum);
}

template <class T>
void test_cols(const normexp::kernel_table& kt) {
    const auto& k = kern<T>(kt);
    std::mt19937_64 rng(11);
    std::normal_distribution<double> g(0.0, 5.0);
    for (double temp : {1.0, 2.5}) {
        const auto b = normexp::detail::split_beta<T>(temp);
        const ld beta = ld(1) / ld(temp);
        for (std::size_t rows : {1, 2, 7, 8, 9, 17}) {
            for (std::size_t w = 0; w <= 20; ++w) {
                const std::ptrdiff_t sx = std::ptrdiff_t(w) + 3, sy = std::ptrdiff_t(w) + 1;
                std::vector<T> x(rows * sx), y(rows * sy, T(-7)), z(rows * sy, T(-7));
                for (auto& v : x) v = T(g(rng));
                if (w && rows > 1) x[sx + 0] = x[0];  // duplicated max in column 0 (maybe)
                std::vector<T> m(w, -std::numeric_limits<T>::infinity()), c(w);
                std::vector<double> rest(w, 0), count(w, 0), lc(w);
                std::vector<T> copy(rows * w);
                k.col_max(x.data(), rows, sx, w, m.data(), copy.data());
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < w; ++j) CHECK(copy[i * w + j] == x[i * sx + j], "%s col_max copy", kt.name);
                k.col_exp_sum(x.data(), rows, sx, w, m.data(), b, rest.data(), count.data());
                for (std::size_t j = 0; j < w; ++j) {
                    T mref = -std::numeric_limits<T>::infinity();
                    for (std::size_t i = 0; i < rows; ++i) mref = std::max(mref, x[i * sx + j]);
                    CHECK(m[j] == mref, "%s col_max rows=%zu w=%zu j=%zu", kt.name, rows, w, j);
                    ld r = 0, sum = 0;
                    double cnt = 0;
                    for (std::size_t i = 0; i < rows; ++i) {
                        const ld e = std::exp(beta * (ld(x[i * sx + j]) - ld(m[j])));
                        sum += e;
                        if (x[i * sx + j] == m[j]) cnt += 1; else r += e;
                    }
                    CHECK(count[j] == cnt, "%s col_exp_sum count", kt.name);
                    CHECK(std::fabs(ld(rest[j]) - r) <= 64 * std::numeric_limits<T>::epsilon() * r + 1e-300L,
                          "%s col_exp_sum rows=%zu w=%zu j=%zu", kt.name, rows, w, j);
                    c[j] = T(1 / sum);
                    lc[j] = double(std::log(sum));
                }
                // In-cache column softmax kernels: exp in place on the gathered block, then the scale.
                std::vector<double> sums(w, 0.0);
                k.col_exp_store(copy.data(), rows, w, m.data(), b, sums.data());
                std::vector<T> scaled(rows * sy, T(-7));
                k.col_scale(copy.data(), std::ptrdiff_t(w), scaled.data(), sy, rows, w, c.data());
                for (std::size_t j = 0; j < w; ++j) {
                    ld sref = 0;
                    for (std::size_t i = 0; i < rows; ++i) {
                        const ld e = std::exp(beta * (ld(x[i * sx + j]) - ld(m[j])));
                        sref += e;
                        CHECK(check::ulp_diff(copy[i * w + j], T(e)) <= 1, "%s col_exp_store", kt.name);
                        CHECK(scaled[i * sy + j] == copy[i * w + j] * c[j], "%s col_scale", kt.name);
                    }
                    CHECK(std::fabs(ld(sums[j]) - sref) <= 64 * std::numeric_limits<T>::epsilon() * sref, "%s col_exp_store sum", kt.name);
                }
                k.col_exp_scale(x.data(), sx, y.data(), sy, rows, w, m.data(), b, c.data());
                k.col_log_softmax(x.data(), sx, z.data(), sy, rows, w, m.data(), b, lc.data());
                for (std::size_t i = 0; i < rows; ++i) {
                    for (std::size_t j = 0; j < w; ++j) {
                        const ld t = beta * (ld(x[i * sx + j]) - ld(m[j]));
                        CHECK(check::ulp_diff(y[i * sy + j], T(std::exp(t) * ld(c[j]))) <= 2, "%s col_exp_scale", kt.name);
                        CHECK(check::ulp_diff(z[i * sy + j], T(t - ld(lc[j]))) <= 2, "%s col_log_softmax", kt.name);
                    }
                    for (std::size_t j = w; j < std::size_t(sy); ++j) {  // padding untouched (masked tails)
                        CHECK(y[i * sy + j] == T(-7) && z[i * sy + j] == T(-7), "%s col kernels wrote past w", kt.name);
                    }
                }
            }
        }
    }
}

// p rounded up to a 64-byte boundary (the caller allocated 64 bytes more).
template <class T>
T* align64(T* p) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    return reinterpret_cast<T*>((a + 63) / 64 * 64);
}

// col_exp_scale_stream / col_log_softmax_stream give their plain kernels' bits (only the store instruction
// differs) at every width of 1-70 columns (every head and tail of a row) with 1-40 rows, both accuracy
// modes, both temperature cases, input rows padded or contiguous, output rows contiguous or padded and
// starting at several offsets from a cache line, and write nothing outside the block (the head before a row's first 64-byte boundary and the
// tail take masked stores).
template <class T>
void test_col_streams(const normexp::kernel_table& kt) {
    std::mt19937_64 rng(12);
    std::normal_distribution<double> g(0.0, 5.0);
    std::size_t compared = 0;
    const T kSentinel = std::numeric_limits<T>::quiet_NaN();  // compared by bits (memcmp)
    const normexp::reduction_kernels<T>* fast;
    if constexpr (sizeof(T) == 4) fast = &kt.f32_fast; else fast = &kt.f64_fast;
    for (const auto* k : {&kern<T>(kt), fast}) {
        const auto& kk = *k;
        for (double temp : {1.0, 2.5}) {
            const auto b = normexp::detail::split_beta<T>(temp);
            for (std::size_t rows : {1, 2, 3, 5, 8, 13, 21, 40}) {  // rows are independent: a few counts
                for (std::size_t wx = 0; wx < 140; ++wx) {
                    // Input rows 2 apart past the row, or contiguous (with contiguous output rows, the
                    // streaming kernels walk the block as one run: col_runs in generic/reductions.hpp).
                    const std::size_t w = wx % 70 + 1;
                    const std::ptrdiff_t sx = std::ptrdiff_t(w) + (wx < 70 ? 2 : 0);
                    std::vector<T> x(rows * std::size_t(sx));
                    for (auto& v : x) v = T(g(rng));
                    std::vector<T> m(w, -std::numeric_limits<T>::infinity()), c(w);
                    std::vector<double> lc(w);
                    kk.col_max(x.data(), rows, sx, w, m.data(), nullptr);
                    for (std::size_t j = 0; j < w; ++j) c[j] = T(1) / T(rows), lc[j] = std::log(double(rows));
                    // Rows starting 0, 3 or 13 elements past a 64-byte boundary (float64: 0, 24, 104 bytes),
                    // w or w + 5 elements apart.
                    for (std::size_t off : {0, 3, 13}) {
                        for (std::ptrdiff_t pad : {0, 5}) {
                            const std::ptrdiff_t sy = std::ptrdiff_t(w) + pad;
                            const std::size_t len = off + rows * std::size_t(sy) + 16;
                            std::vector<T> ybuf(len + 16, kSentinel), ysbuf(len + 16, kSentinel);
                            T* const y = align64(ybuf.data());
                            T* const ys = align64(ysbuf.data());
                            kk.col_exp_scale(x.data(), sx, y + off, sy, rows, w, m.data(), b, c.data());
                            kk.col_exp_scale_stream(x.data(), sx, ys + off, sy, rows, w, m.data(), b, c.data());
                            CHECK(std::memcmp(y, ys, len * sizeof(T)) == 0,
                                  "%s col_exp_scale_stream rows=%zu w=%zu off=%zu sy=%td T=%g", kt.name, rows, w, off, sy, temp);
                            std::fill(y, y + len, kSentinel), std::fill(ys, ys + len, kSentinel);
                            kk.col_log_softmax(x.data(), sx, y + off, sy, rows, w, m.data(), b, lc.data());
                            kk.col_log_softmax_stream(x.data(), sx, ys + off, sy, rows, w, m.data(), b, lc.data());
                            CHECK(std::memcmp(y, ys, len * sizeof(T)) == 0,
                                  "%s col_log_softmax_stream rows=%zu w=%zu off=%zu sy=%td T=%g", kt.name, rows, w, off, sy, temp);
                            // The plain kernels wrote the block and nothing else (so the comparison is not vacuous).
                            std::size_t written = 0;
                            for (std::size_t i = 0; i < len; ++i) written += !std::isnan(y[i]);  // the kernels write no NaN here
                            CHECK(written == rows * w, "%s col_log_softmax wrote %zu of %zu", kt.name, written, rows * w);
                            compared += 2;
                        }
                    }
                }
            }
        }
    }
    std::printf("%-7s %s col_*_stream: %zu blocks bit-identical to the plain kernels\n", kt.name,
                sizeof(T) == 4 ? "float32" : "float64", compared);
}

// The strided driver on all axes of a 3-d array against a long double reference.
template <class T>
void test_driver(const std::string& isa) {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> g(0.0, 4.0);
    const normexp::shape_t shape{5, 37, 19};
    std::vector<T> x(5 * 37 * 19);
    for (auto& v : x) v = T(g(rng));
    const normexp::strides_t cs{37 * 19, 19, 1};
    for (int axis = 0; axis < 3; ++axis) {
        for (auto op : {normexp::reduction::softmax, normexp::reduction::log_softmax, normexp::reduction::logsumexp}) {
            std::vector<T> y(x.size());
            normexp::strides_t ys = cs;
            if (op == normexp::reduction::logsumexp) ys[axis] = 0;
            normexp::reduce<T>(op, x.data(), cs, y.data(), ys, shape, axis, 1.0, isa.c_str());
            for (std::size_t a = 0; a < 5; ++a)
                for (std::size_t b = 0; b < 37; ++b)
                    for (std::size_t c = 0; c < 19; ++c) {
                        std::size_t idx[3] = {a, b, c};
                        if (idx[axis] != 0 && op == normexp::reduction::logsumexp) continue;
                        ld mx = -INFINITY, s = 0;
                        for (std::size_t i = 0; i < shape[axis]; ++i) {
                            idx[axis] = i;
                            mx = std::max(mx, ld(x[idx[0] * cs[0] + idx[1] * cs[1] + idx[2]]));
                        }
                        // s = sum of exp(x - max) over all but one maximal entry: log(1 + s) is then
                        // formed as log1p(s), as exact as the long double reference allows.
                        bool skipped = false;
                        for (std::size_t i = 0; i < shape[axis]; ++i) {
                            idx[axis] = i;
                            const ld v = x[idx[0] * cs[0] + idx[1] * cs[1] + idx[2]];
                            if (v == mx && !skipped) skipped = true; else s += std::exp(v - mx);
                        }
                        idx[axis] = op == normexp::reduction::logsumexp ? 0 : (a + b + c) % shape[axis];
                        const std::size_t off = idx[0] * cs[0] + idx[1] * cs[1] + idx[2];
                        const std::size_t yoff = idx[0] * ys[0] + idx[1] * ys[1] + idx[2] * ys[2];
                        const ld xv = x[off];
                        const ld ref = op == normexp::reduction::softmax     ? std::exp(xv - mx) / (1 + s)
                                       : op == normexp::reduction::log_softmax ? xv - mx - std::log1p(s)
                                                                                : mx + std::log1p(s);
                        // <= 4 ULP, or an absolute 8 eps: log(sum) carries an absolute error of a few eps
                        // (relative error of the sum), which no longer looks small in ULP when
                        // m + log(sum) cancels to near zero (an ill-conditioned output; log_softmax
                        // at the maximum, where it matters, is -log1p(rest): relative accuracy holds).
                        const double tol_abs = 8 * std::numeric_limits<T>::epsilon();
                        CHECK(check::ulp_diff(y[yoff], T(ref)) <= 4 || std::fabs(double(y[yoff]) - double(ref)) <= tol_abs, "%s driver op=%d axis=%d: %a vs %a", isa.c_str(), int(op), axis, double(y[yoff]), double(T(ref)));
                    }
        }
    }
    // Errors are exceptions derived from std::invalid_argument.
    bool threw = false;
    try {
        std::vector<T> y(x.size());
        normexp::reduce<T>(normexp::reduction::softmax, x.data(), cs, y.data(), cs, shape, 3, 1.0, isa.c_str());
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw, "bad axis must throw");
    // An op that is no member of the enum (a cast integer) is refused, not run as some other op.
    threw = false;
    try {
        std::vector<T> y(x.size());
        normexp::reduce<T>(static_cast<normexp::reduction>(7), x.data(), cs, y.data(), cs, shape, 0, 1.0, isa.c_str());
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw, "an unknown reduction must throw");
}

}  // namespace

// col_exp_sum_max (the online column statistics' step): with count, bit for bit col_exp_sum of the chunk and
// col_max of the next one (NaN, +inf and -inf planted in the next chunk, a running maximum to start from,
// some of it NaN); with count == nullptr, rest is the whole sum (count + rest of col_exp_sum, within the
// sums' 64 eps). Shapes around the vector widths, the groups of 4 rows of col_max, and past a 1024-column
// panel; rows 0 or rows_n 0 (the last chunk).
template <class T>
void test_col_exp_sum_max(const normexp::kernel_table& kt) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    std::mt19937_64 rng(29);
    std::normal_distribution<double> g(0.0, 5.0);
    auto same = [](T a, T b) { return (a != a && b != b) || (a == b && std::signbit(a) == std::signbit(b)); };
    for (const auto* kp : {&kern<T>(kt), &kern_fast<T>(kt)}) {
        const auto& k = *kp;
        for (double temp : {1.0, 0.7}) {
            const auto b = normexp::detail::split_beta<T>(temp);
            for (std::size_t w : {1, 5, 8, 16, 17, 31, 33, 64, 70, 1030}) {
                for (std::size_t rows : {0, 1, 3, 6, 13}) {
                    for (std::size_t rows_n : {0, 1, 4, 7, 9}) {
                        const std::ptrdiff_t sx = std::ptrdiff_t(w) + 5;
                        std::vector<T> x((rows + rows_n) * sx + 1);
                        for (auto& v : x) v = T(g(rng));
                        const T* xn = x.data() + std::ptrdiff_t(rows) * sx;
                        std::vector<T> m(w), mn(w), mref(w);
                        for (std::size_t j = 0; j < w; ++j) m[j] = T(10 + j % 2);
                        if (rows > 1 && w > 2) x[2] = x[sx + 2] = m[2];  // entries equal to the maximum
                        for (std::size_t j = 0; j < w; ++j) mn[j] = j % 11 == 10 ? T(NAN) : j % 7 == 3 ? T(40) : -inf;
                        if (rows_n) {  // in the next chunk: NaN in its last row, +inf in its first, -inf
                            const std::size_t base = rows * std::size_t(sx);
                            x[base + (rows_n - 1) * sx + (w - 1)] = T(NAN);
                            if (w > 4) x[base + w / 2] = inf, x[base + (rows_n / 2) * sx + 4] = -inf;
                        }
                        mref = mn;
                        std::vector<double> rest(w, 0.5), count(w, 1), rref(w, 0.5), cref(w, 1), total(w, 0.5);
                        k.col_exp_sum_max(x.data(), rows, sx, w, m.data(), b, rest.data(), count.data(), rows_n ? xn : nullptr,
                                          rows_n, mn.data());
                        k.col_exp_sum(x.data(), rows, sx, w, m.data(), b, rref.data(), cref.data());
                        k.col_max(xn, rows_n, sx, w, mref.data(), nullptr);
                        for (std::size_t j = 0; j < w; ++j) {
                            CHECK(rest[j] == rref[j] && count[j] == cref[j], "%s col_exp_sum_max sum w=%zu rows=%zu j=%zu",
                                  kt.name, w, rows, j);
                            CHECK(same(mn[j], mref[j]), "%s col_exp_sum_max max w=%zu rows_n=%zu j=%zu: %g vs %g", kt.name, w,
                                  rows_n, j, double(mn[j]), double(mref[j]));
                        }
                        std::fill(mn.begin(), mn.end(), -inf);
                        k.col_exp_sum_max(x.data(), rows, sx, w, m.data(), b, total.data(), nullptr, nullptr, 0, mn.data());
                        for (std::size_t j = 0; j < w; ++j) {
                            const double want = rref[j] + cref[j] - 1;  // both started from 0.5 (+ count 1)
                            CHECK(std::fabs(total[j] - want) <= 64 * std::numeric_limits<T>::epsilon() * want,
                                  "%s col_exp_sum_max uncounted w=%zu rows=%zu j=%zu: %g vs %g", kt.name, w, rows, j, total[j], want);
                            CHECK(mn[j] == -inf, "%s col_exp_sum_max rows_n = 0 leaves the maxima", kt.name);
                        }
                    }
                }
            }
        }
    }
}

template <class S>
S from_float(float v) {
    if constexpr (std::is_same_v<S, normexp::float16>) return normexp::detail::to_f16(v);
    else if constexpr (std::is_same_v<S, normexp::bfloat16>) return normexp::detail::to_bf16(v);
    else return S(v);
}

// Every alignment of x and y within a cache line gives the bits of the aligned call: element-wise passes over
// more than kPeelBytes start with a masked head up to y's (row_max: x's) line alignment (generic/reductions.hpp,
// peel_head). Rows of normal numbers (no tie between +0 and -0, whose maximum may differ in its zero's sign),
// lengths around the head and tail sizes on both sides of kPeelBytes (and rows_softmax past kSoftmaxChunkedMin),
// in place and out of place, one row and a batch; x and y offset alike and apart; nothing written outside the
// rows (the long rows' softmax stores join lines across vectors where y is off a line: generic/reductions.hpp,
// line_stores).
template <class K, class S, class M>
void test_alignments(const char* name, const K& k, const char* type) {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> g(0.0, 4.0);
    constexpr std::size_t L = 64 / sizeof(S) + 1;  // every offset within a 64-byte line
    using B = decltype(normexp::detail::split_beta<M>(1.0));
    const B b1 = normexp::detail::split_beta<M>(1.0), b2 = normexp::detail::split_beta<M>(0.7);
    std::size_t cases = 0;
    for (std::size_t n : {1, 2, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 64, 100, 257, 1000, 1030, 2053, 4099, 65551}) {
        const std::size_t rows = 3;
        std::vector<S> src(rows * n);
        for (auto& v : src) v = from_float<S>(float(g(rng)));
        // Buffers aligned to 64 bytes, the data at element offset ox (x) and oy (y).
        auto run = [&](std::size_t ox, std::size_t oy, auto&& call) {
            std::vector<S> xb(rows * n + 2 * L + 64 / sizeof(S)), yb(rows * n + 2 * L + 64 / sizeof(S));
            auto align = [](S* p) { return p + (64 - reinterpret_cast<std::uintptr_t>(p) % 64) % 64 / sizeof(S); };
            const S guard = from_float<S>(-3.25f);
            std::fill(xb.begin(), xb.end(), guard);
            std::fill(yb.begin(), yb.end(), guard);
            S* x = align(xb.data()) + ox;
            S* y = align(yb.data()) + oy;
            std::copy(src.begin(), src.end(), x);
            std::vector<M> ms(rows);
            call(x, y, ms.data());
            auto clean = [&](const std::vector<S>& buf, const S* p) {
                for (std::size_t i = 0; i < buf.size(); ++i) {
                    const S* q = buf.data() + i;
                    if ((q < p || q >= p + rows * n) && std::memcmp(q, &guard, sizeof(S)) != 0) return false;
                }
                return true;
            };
            CHECK(clean(xb, x) && clean(yb, y), "%s %s n=%zu x offset %zu y offset %zu: written outside the rows",
                  name, type, n, ox, oy);
            std::vector<S> out(y, y + rows * n);
            std::vector<S> xin(x, x + rows * n);  // in-place calls write x
            out.insert(out.end(), xin.begin(), xin.end());
            for (M v : ms) {  // the maxima, bit for bit, as pairs of S
                S two[sizeof(M) / sizeof(S) > 0 ? sizeof(M) / sizeof(S) : 1];
                std::memcpy(two, &v, sizeof two);
                out.insert(out.end(), two, two + sizeof two / sizeof(S));
            }
            return out;
        };
        auto same = [&](const char* what, auto&& call) {
            const auto want = run(0, 0, call);
            for (std::size_t ox = 0; ox < L; ++ox)
                for (std::size_t oy : {ox, (ox + 3) % L}) {
                    const auto got = run(ox, oy, call);
                    CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(S)) == 0,
                          "%s %s %s n=%zu x offset %zu y offset %zu: differs from the aligned call", name, type, what,
                          n, ox, oy);
                    ++cases;
                }
        };
        for (const B& b : {b1, b2}) {
            if (n > normexp::kSoftmaxChunkedMin) {  // the chunked rows only (unit temperature: b1)
                const std::ptrdiff_t ld = std::ptrdiff_t(n);
                const M lim = std::numeric_limits<M>::max();
                same("rows_softmax", [&](S* x, S* y, M* m) { k.rows_softmax(x, ld, y, ld, rows, n, b, lim, m); });
                break;
            }
            same("row_max", [&](S* x, S*, M* m) { m[0] = k.row_max(x, n); });
            same("row_exp_scale", [&](S* x, S* y, M*) { k.row_exp_scale(x, y, n, M(1.5), b, M(0.25)); });
            same("row_log_softmax", [&](S* x, S* y, M*) { k.row_log_softmax(x, y, n, M(1.5), b, 2.5); });
            same("row_log_softmax in place", [&](S* x, S*, M*) { k.row_log_softmax(x, x, n, M(1.5), b, 2.5); });
            const M lim = std::numeric_limits<M>::max();
            const std::ptrdiff_t ld = std::ptrdiff_t(n);
            same("rows_softmax", [&](S* x, S* y, M* m) { k.rows_softmax(x, ld, y, ld, rows, n, b, lim, m); });
            same("rows_softmax in place", [&](S* x, S*, M* m) { k.rows_softmax(x, ld, x, ld, rows, n, b, lim, m); });
            same("rows_log_softmax", [&](S* x, S* y, M* m) { k.rows_log_softmax(x, ld, y, ld, rows, n, b, lim, m); });
            if constexpr (std::is_same_v<S, M>) {
                same("row_scale", [&](S* x, S*, M*) { k.row_scale(x, n, M(0.375)); });
                same("row_exp_store", [&](S* x, S* y, M* m) {  // the sum's bits too, in the maxima's place
                    const double sum = k.row_exp_store(x, y, n, M(1.5), b);
                    std::memcpy(m, &sum, sizeof sum);
                });
            }
        }
    }
    std::printf("%-7s %s alignments: %zu cases\n", name, type, cases);
}

int main() {
    for (const auto& name : normexp::detail::available_isas()) {
        const auto& kt = normexp::detail::kernels_for(name);
        test_rows<float>(kt);
        test_rows<double>(kt);
        test_cols<float>(kt);
        test_cols<double>(kt);
        test_col_streams<float>(kt);
        test_col_streams<double>(kt);
        test_col_exp_sum_max<float>(kt);
        test_col_exp_sum_max<double>(kt);
        test_driver<float>(name);
        test_driver<double>(name);
        using normexp::bfloat16, normexp::float16, normexp::reduction_kernels, normexp::storage_kernels;
        test_alignments<reduction_kernels<float>, float, float>(kt.name, kt.f32, "float32");
        test_alignments<reduction_kernels<float>, float, float>(kt.name, kt.f32_fast, "float32 fast");
        test_alignments<reduction_kernels<double>, double, double>(kt.name, kt.f64, "float64");
        test_alignments<reduction_kernels<double>, double, double>(kt.name, kt.f64_fast, "float64 fast");
        test_alignments<storage_kernels<float16>, float16, float>(kt.name, kt.f16, "float16");
        test_alignments<storage_kernels<bfloat16>, bfloat16, float>(kt.name, kt.bf16, "bfloat16");
    }
    return check::finish("test_kernels");
}
