// The fused output layer (normexp.hpp: linear_logsumexp, linear_cross_entropy; cpp/src/linear_head.cpp)
// against a long double reference that forms the logits, on every ISA this CPU runs, for float32 and
// float64: vocabulary sizes around the driver's block (128) and piece (4096), dims that are not a multiple
// of a vector, the direct product (<= 4 rows) and several row blocks (> 192 rows), bias, ignore_index,
// label smoothing; strided rows; the errors; bit-identity for 1 to 4 threads. Public API only.
//
// Tolerance (derived): each logit is a dot product over dim terms, within (dim + 2) u sum_d |h_d w_d| of
// the exact value (the qk bound of cpp/src/kernels/generic/attention.hpp); log-sum-exp is 1-Lipschitz in
// the largest logit error; the exp, sum and log add a few u of the result.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.hpp"

namespace {

using ld = long double;

template <class T>
struct problem {
    std::size_t rows, vocab, dim, ldh;
    std::vector<T> h, w, b;
    std::vector<std::int64_t> y;
};

template <class T>
problem<T> make(std::size_t rows, std::size_t vocab, std::size_t dim, std::size_t pad, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    problem<T> p{rows, vocab, dim, dim + pad, {}, {}, {}, {}};
    p.h.resize(rows * p.ldh);
    for (auto& v : p.h) v = T(g(rng));
    p.w.resize(vocab * dim);
    for (auto& v : p.w) v = T(g(rng) * 4 / std::sqrt(double(dim)));
    p.b.resize(vocab);
    for (auto& v : p.b) v = T(g(rng) * 2);
    p.y.resize(rows);
    for (std::size_t i = 0; i < rows; ++i) p.y[i] = std::int64_t(rng() % vocab);
    return p;
}

template <class T>
struct reference {
    std::vector<ld> lse, loss;
    std::vector<double> tol;
};

template <class T>
reference<T> ref_of(const problem<T>& p, double eps, bool bias) {
    const double u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
    reference<T> r;
    std::vector<ld> x(p.vocab);
    for (std::size_t i = 0; i < p.rows; ++i) {
        ld m = -INFINITY, mag = 0, sum = 0;
        for (std::size_t j = 0; j < p.vocab; ++j) {
            ld acc = 0, a = 0;
            for (std::size_t d = 0; d < p.dim; ++d) {
                acc += ld(p.h[i * p.ldh + d]) * ld(p.w[j * p.dim + d]);
                a += std::fabs(ld(p.h[i * p.ldh + d]) * ld(p.w[j * p.dim + d]));
            }
            x[j] = acc + (bias ? ld(p.b[j]) : 0);
            m = std::max(m, x[j]);
            mag = std::max(mag, a);
            sum += x[j];
        }
        ld s = 0;
        for (std::size_t j = 0; j < p.vocab; ++j) s += std::exp(x[j] - m);
        const ld lse = m + std::log(s);
        r.lse.push_back(lse);
        const ld nll = lse - x[std::size_t(p.y[i])], smooth = lse - sum / ld(p.vocab);
        r.loss.push_back((1 - ld(eps)) * nll + ld(eps) * smooth);
        r.tol.push_back(double(2 * (ld(p.dim) + 2) * ld(u) * (mag + 1) + 16 * ld(u) * (1 + std::fabs(lse) + std::fabs(m))));
    }
    return r;
}

template <class T>
void test_shape(const std::string& isa, std::size_t rows, std::size_t vocab, std::size_t dim) {
    const char* tn = sizeof(T) == 4 ? "float32" : "float64";
    for (int bias = 0; bias < 2; ++bias) {
        const problem<T> p = make<T>(rows, vocab, dim, 3, unsigned(rows * 131 + vocab + dim));
        const double eps = bias ? 0.2 : 0.0;
        const reference<T> r = ref_of(p, eps, bias);
        normexp::linear_head_options<T> o;
        o.bias = bias ? p.b.data() : nullptr;
        o.hidden_stride = std::ptrdiff_t(p.ldh);
        o.isa = isa.c_str();
        std::vector<T> lse(rows);
        normexp::linear_logsumexp<T>(p.h.data(), p.w.data(), rows, vocab, dim, lse.data(), o);
        std::vector<double> loss(rows, -1.0);
        normexp::linear_cross_entropy_options ce;
        ce.label_smoothing = eps;
        std::vector<std::int64_t> y = p.y;
        y[0] = -100;  // ignored
        normexp::linear_cross_entropy<T>(p.h.data(), p.w.data(), rows, vocab, dim, y.data(), loss.data(), ce, o);
        for (std::size_t i = 0; i < rows; ++i) {
            CHECK(std::fabs(ld(lse[i]) - r.lse[i]) <= r.tol[i], "%s %s %zux%zux%zu bias %d row %zu: lse %.17g vs %.17Lg",
                  isa.c_str(), tn, rows, vocab, dim, bias, i, double(lse[i]), r.lse[i]);
            const ld want = i == 0 ? 0 : r.loss[i];
            CHECK(std::fabs(ld(loss[i]) - want) <= r.tol[i], "%s %s %zux%zux%zu bias %d row %zu: loss %.17g vs %.17Lg",
                  isa.c_str(), tn, rows, vocab, dim, bias, i, loss[i], want);
        }
    }
}

template <class T>
void test_errors_and_special() {
    const problem<T> p = make<T>(3, 50, 5, 0, 1);
    std::vector<double> loss(3);
    auto throws = [&](std::vector<std::int64_t> y, double eps) {
        normexp::linear_cross_entropy_options ce;
        ce.label_smoothing = eps;
        try {
            normexp::linear_cross_entropy<T>(p.h.data(), p.w.data(), 3, 50, 5, y.data(), loss.data(), ce);
        } catch (const normexp::error&) {
            return true;
        }
        return false;
    };
    CHECK(throws({0, 50, 1}, 0), "label == vocab accepted");
    CHECK(throws({0, -1, 1}, 0), "label -1 accepted");
    CHECK(throws({0, 1, 1}, 1.5), "label_smoothing 1.5 accepted");
    CHECK(throws({0, 1, 1}, std::nan("")), "label_smoothing NaN accepted");
    CHECK(!throws({0, -100, 49}, 0), "ignore_index refused");
    CHECK(loss[1] == 0, "ignored row: %g", loss[1]);
    // NaN in a hidden row: that row is NaN, the others are not
    problem<T> q = p;
    q.h[1 * 5 + 2] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> lse(3);
    normexp::linear_logsumexp<T>(q.h.data(), q.w.data(), 3, 50, 5, lse.data());
    CHECK(std::isnan(lse[1]) && std::isfinite(lse[0]) && std::isfinite(lse[2]), "NaN row: %g %g %g", double(lse[0]),
          double(lse[1]), double(lse[2]));
}

// The same bits for 1 to 4 threads (pieces and row blocks depend on the shape only).
void test_threads() {
    const problem<float> p = make<float>(300, 9000, 40, 0, 5);
    std::vector<float> first;
    std::vector<double> first_loss;
    normexp::linear_head_options<float> o;
    o.bias = p.b.data();
    normexp::linear_cross_entropy_options ce;
    ce.label_smoothing = 0.1;
    for (int n = 1; n <= 4; ++n) {
        normexp::set_num_threads(n);
        std::vector<float> lse(p.rows);
        std::vector<double> loss(p.rows);
        normexp::linear_logsumexp<float>(p.h.data(), p.w.data(), p.rows, p.vocab, p.dim, lse.data(), o);
        normexp::linear_cross_entropy<float>(p.h.data(), p.w.data(), p.rows, p.vocab, p.dim, p.y.data(), loss.data(),
                                             ce, o);
        if (n == 1) {
            first = lse;
            first_loss = loss;
        }
        CHECK(lse == first && loss == first_loss, "%d threads differ from 1", n);
    }
}

}  // namespace

int main() {
    const std::size_t shapes[][3] = {{1, 1, 1}, {2, 129, 7}, {4, 4097, 17}, {5, 300, 33}, {197, 4225, 9}};
    for (const std::string& isa : normexp::available_isas())
        for (const auto& s : shapes) {
            test_shape<float>(isa, s[0], s[1], s[2]);
            test_shape<double>(isa, s[0], s[1], s[2]);
        }
    test_errors_and_special<float>();
    test_errors_and_special<double>();
    test_threads();
    return check::finish("linear_head");
}
