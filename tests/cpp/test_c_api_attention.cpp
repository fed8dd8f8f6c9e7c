// normexp_attention_f32: results against a double reference and bit-identical to the C++ API; every
// documented error code; out= untouched on error.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.h"
#include "normexp/normexp.hpp"

namespace {

// Reference: float64, GQA, optional top-left causal mask.
std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                              std::size_t B, std::size_t Hq, std::size_t Hkv, std::size_t Lq, std::size_t Lk,
                              std::size_t D, std::size_t Dv, double scale, bool causal) {
    std::vector<double> out(B * Hq * Lq * Dv, 0.0);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < Hq; ++h) {
            const std::size_t hk = h / (Hq / Hkv);
            for (std::size_t i = 0; i < Lq; ++i) {
                std::vector<double> s(Lk, -INFINITY);
                double m = -INFINITY;
                for (std::size_t j = 0; j < Lk; ++j) {
                    if (causal && j > i) continue;
                    double dot = 0;
                    for (std::size_t d = 0; d < D; ++d)
                        dot += double(q[((b * Hq + h) * Lq + i) * D + d]) * k[((b * Hkv + hk) * Lk + j) * D + d];
                    s[j] = dot * scale;
                    m = std::max(m, s[j]);
                }
                if (m == -INFINITY) continue;
                double sum = 0;
                for (double& x : s) sum += (x = std::exp(x - m));
                for (std::size_t j = 0; j < Lk; ++j)
                    for (std::size_t d = 0; d < Dv; ++d)
                        out[((b * Hq + h) * Lq + i) * Dv + d] += s[j] / sum * v[((b * Hkv + hk) * Lk + j) * Dv + d];
            }
        }
    return out;
}

}  // namespace

int main() {
    const std::size_t B = 2, Hq = 4, Hkv = 2, Lq = 37, Lk = 53, D = 24, Dv = 17;
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> q(B * Hq * Lq * D), k(B * Hkv * Lk * D), v(B * Hkv * Lk * Dv), out(B * Hq * Lq * Dv),
        cpp(out.size());
    for (auto* t : {&q, &k, &v})
        for (auto& x : *t) x = g(rng);
    for (int causal = 0; causal < 2; ++causal) {
        const int rc = normexp_attention_f32(q.data(), k.data(), v.data(), out.data(), B, Hq, Hkv, Lq, Lk, D, Dv, 0.0f, causal);
        CHECK(rc == NORMEXP_OK, "attention rc %d: %s", rc, normexp_last_error());
        const auto ref = reference(q, k, v, B, Hq, Hkv, Lq, Lk, D, Dv, 1.0 / std::sqrt(double(D)), causal);
        // Bound: 1e-5 absolute on outputs of magnitude ~1 (float32 dot products of length 24 and a
        // convex combination of values: a few float32 ulps of the largest terms).
        double worst = 0;
        for (std::size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - ref[i]));
        CHECK(worst < 1e-5, "attention vs reference: max error %g (causal=%d)", worst, causal);
        normexp::attention_options<float> o;
        o.is_causal = causal != 0;
        normexp::attention<float>(q.data(), k.data(), v.data(), cpp.data(), B, Hq, Hkv, Lq, Lk, D, Dv, o);
        CHECK(cpp == out, "C and C++ APIs differ (causal=%d)", causal);
    }
    // Errors: the documented code, and out untouched.
    const std::vector<float> before = out;
    auto call = [&](const float* qq, float* oo, std::size_t hq, std::size_t hkv, std::size_t lq, float scale) {
        return normexp_attention_f32(qq, k.data(), v.data(), oo, B, hq, hkv, lq, Lk, D, Dv, scale, 0);
    };
    CHECK(call(nullptr, out.data(), Hq, Hkv, Lq, 0) == NORMEXP_ERROR_NULL_POINTER, "null q");
    CHECK(call(q.data(), nullptr, Hq, Hkv, Lq, 0) == NORMEXP_ERROR_NULL_POINTER, "null out");
    CHECK(call(q.data(), out.data(), 0, Hkv, Lq, 0) == NORMEXP_ERROR_INVALID_SIZE, "zero heads");
    CHECK(call(q.data(), out.data(), Hq, Hkv, 0, 0) == NORMEXP_ERROR_INVALID_SIZE, "zero len_q");
    CHECK(call(q.data(), out.data(), Hq, std::size_t(-1) / 2, Lq, 0) == NORMEXP_ERROR_INVALID_SIZE, "overflow");
    CHECK(call(q.data(), out.data(), 3, Hkv, Lq, 0) == NORMEXP_ERROR_INVALID_ARGUMENT, "heads_q not a multiple of heads_kv");
    CHECK(call(q.data(), out.data(), Hq, Hkv, Lq, -1.0f) == NORMEXP_ERROR_INVALID_ARGUMENT, "negative scale");
    CHECK(call(q.data(), out.data(), Hq, Hkv, Lq, NAN) == NORMEXP_ERROR_INVALID_ARGUMENT, "NaN scale");
    CHECK(std::string(normexp_last_error()).find("scale") != std::string::npos, "message names the scale");
    CHECK(call(q.data(), q.data(), Hq, Hkv, Lq, 0) == NORMEXP_ERROR_OVERLAP, "out overlaps q");
    CHECK(out == before, "out changed by a failing call");
    return check::finish("test_c_api_attention");
}
