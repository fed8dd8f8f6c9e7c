// normexp::sample's serving options through the public C++ API (cpp/include/normexp/normexp.hpp): the
// logit bias, the penalties over prev_tokens, per-row options and logprobs.
//  * each penalty and the bias change a greedy answer the way the rule says;
//  * a bad option of one row, or a prev_tokens id outside the vocabulary, throws normexp::error naming it
//    before any token is written;
//  * a row changed by penalties alone (read in place with patched blocks) draws the same tokens and
//    logprobs as the same row built with a zero bias, on every ISA this CPU runs.
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.hpp"

namespace {

std::int64_t greedy(std::vector<double> x, const normexp::sample_options& o, const double* bias = nullptr) {
    std::int64_t tok = -1;
    double lp = 1;
    normexp::sample<double>(x.data(), 1, x.size(), 0, nullptr, &tok, o, nullptr, bias, 0, &lp);
    CHECK(lp == 0, "greedy logprob %g", lp);
    return tok;
}

void test_greedy_rules() {
    const std::vector<double> x{3.0, 2.5, 0.0};
    const std::int64_t seen[] = {0, 0, -1};
    normexp::sample_options o;
    o.temperature = 0;
    o.prev_tokens = seen;
    o.prev_len = 3;
    CHECK(greedy(x, o) == 0, "no penalty");
    o.presence_penalty = 0.6;  // 3 - 0.6 = 2.4 < 2.5
    CHECK(greedy(x, o) == 1, "presence");
    o.presence_penalty = 0;
    o.frequency_penalty = 0.3;  // seen twice: 3 - 0.6
    CHECK(greedy(x, o) == 1, "frequency counts");
    o.frequency_penalty = 0;
    o.repetition_penalty = 1.25;  // 3 / 1.25 = 2.4
    CHECK(greedy(x, o) == 1, "repetition");
    const double bias[] = {0.0, -1.0, 0.0};  // bias first: 2.4 vs 1.5
    CHECK(greedy(x, o, bias) == 0, "bias before penalties");
}

template <class F>
std::string thrown(F&& f) {
    try {
        f();
    } catch (const normexp::error& e) {
        return e.what();
    }
    return "";
}

void test_errors_before_any_token() {
    std::vector<float> x(2 * 8, 0.5f);
    std::int64_t tok[2] = {-7, -7};
    const double u[2] = {0.1, 0.2};
    const double top_ps[2] = {0.9, 1.5};
    normexp::sample_options o;
    o.top_ps = top_ps;
    std::string msg = thrown([&] { normexp::sample<float>(x.data(), 2, 8, 8, u, tok, o); });
    CHECK(msg.find("top_ps[1]") != std::string::npos, "message: %s", msg.c_str());
    CHECK(tok[0] == -7 && tok[1] == -7, "tokens written before the error");
    normexp::sample_options q;
    const std::int64_t prev[4] = {1, -1, 3, 8};
    q.prev_tokens = prev;
    q.prev_len = 2;
    q.repetition_penalty = 1.2;
    msg = thrown([&] { normexp::sample<float>(x.data(), 2, 8, 8, u, tok, q); });
    CHECK(msg.find("prev_tokens row 1") != std::string::npos, "message: %s", msg.c_str());
    CHECK(tok[0] == -7 && tok[1] == -7, "tokens written before the error");
    normexp::sample_options r;
    r.presence_penalty = -1;
    msg = thrown([&] { normexp::sample<float>(x.data(), 2, 8, 8, u, tok, r); });
    CHECK(msg.find("presence_penalty") != std::string::npos, "message: %s", msg.c_str());
}

void test_patched_rows_equal_built_rows() {
    const std::size_t rows = 6, n = 20001, len = 40;
    std::mt19937_64 g(3);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> x(rows * n), zero(n, 0.0f);
    for (auto& v : x) v = nd(g);
    std::vector<std::int64_t> prev(rows * len);
    for (auto& t : prev) t = std::int64_t(g() % 64 + (g() % 4) * 4096);  // in 4 blocks: the patched path
    prev[0] = 0, prev[1] = std::int64_t(n) - 1, prev[2] = 63, prev[3] = 64;
    std::vector<double> u(rows);
    for (auto& v : u) v = std::uniform_real_distribution<double>(0, 1)(g);
    const double temps[rows] = {0.0, 1.0, 0.7, 1.3, 1.0, 0.9};
    const std::int64_t top_ks[rows] = {0, 0, 50, 0, 5000, 20};
    const double top_ps[rows] = {1.0, 1.0, 0.9, 0.8, 1.0, 1.0};
    normexp::sample_options o;
    o.temperatures = temps;
    o.top_ks = top_ks;
    o.top_ps = top_ps;
    o.min_p = 0.001;
    o.prev_tokens = prev.data();
    o.prev_len = len;
    o.repetition_penalty = 1.4;
    o.frequency_penalty = 0.2;
    std::vector<std::int64_t> first;
    for (const std::string& name : normexp::available_isas()) {
        const char* isa = name.c_str();
        std::vector<std::int64_t> a(rows), b(rows);
        std::vector<double> la(rows), lb(rows);
        normexp::sample<float>(x.data(), rows, n, std::ptrdiff_t(n), u.data(), a.data(), o, isa, nullptr, 0, la.data());
        normexp::sample<float>(x.data(), rows, n, std::ptrdiff_t(n), u.data(), b.data(), o, isa, zero.data(), 0, lb.data());
        if (first.empty()) first = a;
        CHECK(a == first, "%s draws other tokens than %s", isa, normexp::available_isas()[0].c_str());
        for (std::size_t r = 0; r < rows; ++r) {
            CHECK(a[r] == b[r], "%s row %zu: token %lld vs %lld", isa, r, (long long)a[r], (long long)b[r]);
            CHECK(la[r] == lb[r], "%s row %zu: logprob %.17g vs %.17g", isa, r, la[r], lb[r]);
            CHECK(r == 0 ? la[r] == 0 : la[r] < 0, "%s row %zu: logprob %g", isa, r, la[r]);
        }
    }
}

}  // namespace

int main() {
    test_greedy_rules();
    test_errors_before_any_token();
    test_patched_rows_equal_built_rows();
    return check::finish("test_sample_options");
}
