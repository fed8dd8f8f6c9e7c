// The statistics API (normexp.hpp): logsumexp_parts over the pieces of a row, merge_parts and
// logsumexp_from_parts give the whole row's statistics and logsumexp bit for bit when the pieces are
// the driver's super-chunks (65536 elements, cpp/src/reduce.cpp), and within a few ULP for any other
// cut; special pieces follow logsumexp_parts' conventions. Public API only, as a consumer links it.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.hpp"

namespace {

constexpr std::size_t kSuper = std::size_t(1) << 16;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Statistics of `rows` contiguous rows of length n (row stride ld), as (m, sums) in double.
template <class T>
void parts_of(const T* x, std::size_t rows, std::size_t n, std::size_t ld, double* m, double* sums) {
    std::vector<T> mt(rows);
    normexp::logsumexp_parts<T>(x, {std::ptrdiff_t(ld), 1}, mt.data(), sums, {1, 0}, {rows, n}, 1);
    for (std::size_t r = 0; r < rows; ++r) m[r] = double(mt[r]);
}

template <class T>
void test_pieces(const char* name, std::size_t piece, double max_ulps) {
    const std::size_t rows = 3, pieces = 4, n = pieces * piece;
    std::mt19937_64 rng(7);
    std::normal_distribution<double> g(0.0, 3.0);
    std::vector<T> x(rows * n);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < n; ++i) x[r * n + i] = T(g(rng) + (r == 0 ? 50.0 * double(i / piece) : 0.0));
    x[n + 5] = T(40), x[n + piece + 5] = T(40);  // row 1: ties at the maximum in two pieces
    for (std::size_t i = 0; i < piece; ++i) x[2 * n + i] = -std::numeric_limits<T>::infinity();  // row 2

    std::vector<double> m(rows), sums(2 * rows), pm(pieces * rows), ps(2 * pieces * rows);
    parts_of(x.data(), rows, n, n, m.data(), sums.data());
    for (std::size_t p = 0; p < pieces; ++p)
        parts_of(x.data() + p * piece, rows, piece, n, pm.data() + p * rows, ps.data() + 2 * p * rows);
    std::vector<double> mm(rows), ms(2 * rows), lse(rows);
    normexp::merge_parts(pieces, rows, pm.data(), ps.data(), mm.data(), ms.data());
    normexp::logsumexp_from_parts(rows, mm.data(), ms.data(), lse.data(), sizeof(T) < 8);
    std::vector<T> want(rows);
    normexp::logsumexp<T>(x.data(), want.data(), rows, n);
    for (std::size_t r = 0; r < rows; ++r) {
        CHECK(mm[r] == m[r], "%s row %zu: merged max %a vs %a", name, r, mm[r], m[r]);
        const double total = ms[2 * r] + ms[2 * r + 1], whole = sums[2 * r] + sums[2 * r + 1];
        if (max_ulps == 0)  // the driver's own cut: the same (count, rest)
            CHECK(ms[2 * r] == sums[2 * r] && ms[2 * r + 1] == sums[2 * r + 1], "%s row %zu: merged sums differ", name, r);
        else  // the kernels' sums carry T's rounding: compare them in T
            CHECK(check::ulp_diff(T(total), T(whole)) <= max_ulps, "%s row %zu: merged sum %a vs %a", name, r, total, whole);
        CHECK(check::ulp_diff(T(lse[r]), want[r]) <= max_ulps, "%s row %zu: logsumexp %a vs %a", name, r,
              double(T(lse[r])), double(want[r]));
    }
}

void test_special_pieces() {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // Row r of piece p at p * 4 + r: row 0 has a NaN piece, row 1 a +inf piece, row 2 only -inf or empty
    // pieces, row 3 one finite piece among empty ones.
    const double m[8] = {nan, kInf, -kInf, 2.0, 1.0, 3.0, -kInf, -kInf};
    const double sums[16] = {0, 0, 0, 0, 0, 0, 1, 0.5, 1, 0.25, 0, 0, 0, 0, 0, 0};
    double mo[4], so[8], lse[4];
    normexp::merge_parts(2, 4, m, sums, mo, so);
    CHECK(std::isnan(mo[0]) && so[0] == 0 && so[1] == 0, "NaN piece: %a (%a, %a)", mo[0], so[0], so[1]);
    CHECK(mo[1] == kInf && so[2] == 0 && so[3] == 0, "+inf piece: %a (%a, %a)", mo[1], so[2], so[3]);
    CHECK(mo[2] == -kInf && so[4] == 0 && so[5] == 0, "-inf pieces: %a (%a, %a)", mo[2], so[4], so[5]);
    CHECK(mo[3] == 2.0 && so[6] == 1 && so[7] == 0.5, "one finite piece: %a (%a, %a)", mo[3], so[6], so[7]);
    normexp::logsumexp_from_parts(4, mo, so, lse);
    CHECK(std::isnan(lse[0]) && lse[1] == kInf && lse[2] == -kInf && lse[3] == 2.0 + std::log1p(0.5),
          "logsumexp of special rows: %a %a %a %a", lse[0], lse[1], lse[2], lse[3]);
    normexp::merge_parts(0, 1, nullptr, nullptr, mo, so);  // no pieces: an empty row
    CHECK(mo[0] == -kInf && so[0] == 0 && so[1] == 0, "no pieces: %a", mo[0]);
    bool threw = false;
    try {
        normexp::merge_parts(2, 4, m, sums, mo, so, 0.0);
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw, "temperature 0 must throw");
}

}  // namespace

int main() {
    test_pieces<float>("float32 super-chunks", kSuper, 0);
    test_pieces<double>("float64 super-chunks", kSuper, 0);
    test_pieces<float>("float32 other pieces", 1000, 4);
    test_pieces<double>("float64 other pieces", 1000, 4);
    test_special_pieces();
    return check::finish("test_parts");
}
