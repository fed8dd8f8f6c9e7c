// normexp_attention_f32, normexp_attention and normexp_paged_attention: results against a double reference and
// bit-identical to the C++ API; every documented error code; out= untouched on error.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// Reference for normexp_attention / normexp_paged_attention with every option, float64, one head of one
// batch entry: q (Lq x D), k (Lk x D), v (Lk x Dv) row-major; keep (Lq x Lk) or null; diag(i) = i + off.
struct opts {
    double scale = 0, softcap = 0, slope = 0, sink = -INFINITY;
    bool causal = false;
    std::ptrdiff_t off = 0;
    std::size_t window = 0;
};
void reference_head(const float* q, const float* k, const float* v, const unsigned char* keep, std::size_t Lq,
                    std::size_t Lk, std::size_t D, std::size_t Dv, const opts& o, double* out, double* lse) {
    const double scale = o.scale != 0 ? o.scale : 1.0 / std::sqrt(double(D));
    for (std::size_t i = 0; i < Lq; ++i) {
        std::vector<double> s(Lk, -INFINITY);
        double m = o.sink;
        const std::ptrdiff_t diag = std::ptrdiff_t(i) + o.off;
        for (std::size_t j = 0; j < Lk; ++j) {
            const std::ptrdiff_t jj = std::ptrdiff_t(j);
            if ((o.causal && jj > diag) || (o.window && jj <= diag - std::ptrdiff_t(o.window)) || (keep && !keep[i * Lk + j]))
                continue;
            double dot = 0;
            for (std::size_t d = 0; d < D; ++d) dot += double(q[i * D + d]) * k[j * D + d];
            double x = dot * scale;
            if (o.softcap > 0) x = o.softcap * std::tanh(x / o.softcap);
            x -= o.slope * std::fabs(double(jj - diag));
            s[j] = x;
            m = std::max(m, x);
        }
        for (std::size_t c = 0; c < Dv; ++c) out[i * Dv + c] = 0;
        if (m == -INFINITY) {
            lse[i] = -INFINITY;
            continue;
        }
        double sum = std::exp(o.sink - m);
        for (double& x : s) sum += (x = std::exp(x - m));
        for (std::size_t j = 0; j < Lk; ++j)
            for (std::size_t c = 0; c < Dv; ++c) out[i * Dv + c] += s[j] / sum * v[j * Dv + c];
        lse[i] = m + std::log(sum);
    }
}

// normexp_attention with a mask, bottom-right causal window, softcap, ALiBi, sinks, GQA and lse against the
// reference; the C++ API gives the same bits.
void test_attention_params() {
    const std::size_t B = 2, Hq = 4, Hkv = 2, Lq = 9, Lk = 150, D = 16, Dv = 8;
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> q(B * Hq * Lq * D), k(B * Hkv * Lk * D), v(B * Hkv * Lk * Dv), out(B * Hq * Lq * Dv),
        lse(B * Hq * Lq), cpp(out.size()), cpp_lse(lse.size());
    for (auto* t : {&q, &k, &v})
        for (auto& x : *t) x = g(rng);
    std::vector<unsigned char> keep(B * Lq * Lk);  // (B, 1, Lq, Lk): broadcast over the heads
    for (auto& x : keep) x = (rng() % 5) != 0;
    const double slopes[Hq] = {0.01, 0.02, 0.05, 0.1}, sinks[Hq] = {0.5, -INFINITY, 3.0, -1.0};
    normexp_attention_params p;
    normexp_attention_params_init(&p);
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data(), p.lse = lse.data();
    p.batch = B, p.heads_q = Hq, p.heads_kv = Hkv, p.len_q = Lq, p.len_kv = Lk, p.head_dim = D, p.head_dim_v = Dv;
    p.is_causal = 1, p.causal_alignment = NORMEXP_CAUSAL_BOTTOM_RIGHT, p.window = 60, p.softcap = 5, p.scale = 0.3;
    p.mask_kind = NORMEXP_MASK_KEEP, p.mask = keep.data(), p.mask_batch = B;
    p.alibi_slopes = slopes, p.sinks = sinks;
    const int rc = normexp_attention(&p);
    CHECK(rc == NORMEXP_OK, "normexp_attention rc %d: %s", rc, normexp_last_error());
    double worst = 0, worst_lse = 0;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < Hq; ++h) {
            const std::size_t hk = h / (Hq / Hkv);
            opts o;
            o.scale = 0.3, o.softcap = 5, o.slope = slopes[h], o.sink = sinks[h], o.causal = true;
            o.off = std::ptrdiff_t(Lk - Lq), o.window = 60;
            std::vector<double> ro(Lq * Dv), rl(Lq);
            reference_head(&q[(b * Hq + h) * Lq * D], &k[(b * Hkv + hk) * Lk * D], &v[(b * Hkv + hk) * Lk * Dv],
                           &keep[b * Lq * Lk], Lq, Lk, D, Dv, o, ro.data(), rl.data());
            for (std::size_t i = 0; i < Lq * Dv; ++i) worst = std::max(worst, std::fabs(out[(b * Hq + h) * Lq * Dv + i] - ro[i]));
            for (std::size_t i = 0; i < Lq; ++i) worst_lse = std::max(worst_lse, std::fabs(lse[(b * Hq + h) * Lq + i] - rl[i]));
        }
    // float32 scores of length-16 dot products, softcap and ALiBi rounded once each: a few 1e-7 relative.
    CHECK(worst < 1e-5 && worst_lse < 1e-5, "normexp_attention vs reference: out %g, lse %g", worst, worst_lse);
    normexp::attention_options<float> o;
    o.scale = 0.3, o.is_causal = true, o.alignment = normexp::causal_alignment::bottom_right, o.window = 60, o.softcap = 5;
    o.mask_kind = normexp::attention_mask_kind::keep, o.mask = keep.data(), o.mask_strides = {std::ptrdiff_t(Lq * Lk), 0, std::ptrdiff_t(Lk), 1};
    o.alibi_slopes = slopes, o.sinks = sinks, o.lse = cpp_lse.data(), o.lse_strides = {std::ptrdiff_t(Hq * Lq), std::ptrdiff_t(Lq), 1};
    normexp::attention<float>(q.data(), k.data(), v.data(), cpp.data(), B, Hq, Hkv, Lq, Lk, D, Dv, o);
    CHECK(cpp == out && cpp_lse == lse, "normexp_attention and the C++ API differ");

    // float64 through the same struct.
    std::vector<double> qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end()), od(out.size());
    normexp_attention_params p64 = p;
    p64.dtype = NORMEXP_FLOAT64, p64.q = qd.data(), p64.k = kd.data(), p64.v = vd.data(), p64.out = od.data(), p64.lse = nullptr;
    CHECK(normexp_attention(&p64) == NORMEXP_OK, "float64: %s", normexp_last_error());
    double d64 = 0;
    for (std::size_t i = 0; i < od.size(); ++i) d64 = std::max(d64, std::fabs(od[i] - out[i]));
    CHECK(d64 < 1e-5, "float64 vs float32 results differ by %g", d64);

    // Errors: the documented code, a message naming the argument, out untouched.
    const std::vector<float> before = out;
    auto expect = [&](normexp_attention_params bad, int code, const char* word) {
        const int r = normexp_attention(&bad);
        CHECK(r == code, "expected status %d, got %d (%s)", code, r, normexp_last_error());
        CHECK(std::strstr(normexp_last_error(), word) != nullptr, "message %s should name %s", normexp_last_error(), word);
    };
    normexp_attention_params bad = p;
    bad.struct_size = sizeof(bad) - 8;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "struct_size");
    bad = p, bad.dtype = 9;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "dtype");
    bad = p, bad.dtype = NORMEXP_FLOAT16, bad.kv_dtype = NORMEXP_BFLOAT16;  // float16 q over a bfloat16 cache
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "kv_dtype");
    bad = p, bad.dtype = NORMEXP_FLOAT64, bad.kv_dtype = NORMEXP_FLOAT16;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "kv_dtype");
    bad = p, bad.q = nullptr;
    expect(bad, NORMEXP_ERROR_NULL_POINTER, "q, k, v");
    bad = p, bad.mask = nullptr;
    expect(bad, NORMEXP_ERROR_NULL_POINTER, "mask");
    bad = p, bad.mask_heads = 3;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "mask_heads");
    bad = p, bad.heads_kv = 3;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "heads_kv");
    bad = p, bad.len_kv = 0;
    expect(bad, NORMEXP_ERROR_INVALID_SIZE, "sizes");
    bad = p, bad.batch = SIZE_MAX / 2;  // batch x heads alone past PTRDIFF_MAX bytes: the message names float32's 4 bytes
    expect(bad, NORMEXP_ERROR_INVALID_SIZE, "elements of 4 bytes exceed PTRDIFF_MAX");
    bad = p, bad.causal_alignment = 7;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "causal_alignment");
    const double nan_sinks[Hq] = {0, NAN, 0, 0};
    bad = p, bad.sinks = nan_sinks;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "sinks[0, 1]");
    bad = p, bad.lse = q.data() + 5;
    expect(bad, NORMEXP_ERROR_OVERLAP, "overlap");
    bad = p, bad.out = static_cast<void*>(keep.data());
    expect(bad, NORMEXP_ERROR_OVERLAP, "overlap");
    CHECK(out == before, "out changed by a failing call");
    CHECK(normexp_attention(nullptr) == NORMEXP_ERROR_NULL_POINTER, "NULL params");
}

// 16-bit operands through normexp_attention: all bfloat16, all float16, and float32 q over a bfloat16 or
// float16 cache (with GQA, causal, a float32 additive mask and lse). Each against the C++ overload (the same
// bits) and a float64 reference over the widened values: 16-bit inputs accumulate in float32, so the error
// is a 16-bit output's rounding (2^-8 / 2^-11 relative) plus ~1e-5.
std::uint16_t to_bits16(float f, bool bf) {  // test data: bfloat16 by truncation, float16 of |f| in [2^-3, 4)
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if (bf) return static_cast<std::uint16_t>(u >> 16);
    const std::uint32_t e = std::min<std::uint32_t>(16, std::max<std::uint32_t>(12, (u >> 23 & 0xff) - 112));
    return static_cast<std::uint16_t>((u >> 16 & 0x8000) | e << 10 | (u >> 13 & 0x3ff));
}
float widen16(std::uint16_t h, bool bf) {
    if (bf) {
        const std::uint32_t u = std::uint32_t(h) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
    const float m = 1.0f + float(h & 0x3ff) / 1024.0f;
    const float v = std::ldexp(m, int(h >> 10 & 0x1f) - 15);
    return (h & 0x8000) ? -v : v;
}

void test_attention_16bit() {
    const std::size_t B = 1, Hq = 4, Hkv = 2, Lq = 19, Lk = 45, D = 24, Dv = 12;
    std::mt19937 rng(31);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> qf(B * Hq * Lq * D), kf(B * Hkv * Lk * D), vf(B * Hkv * Lk * Dv);
    for (auto* t : {&qf, &kf, &vf})
        for (auto& x : *t) x = g(rng);
    std::vector<float> bias(Lq * Lk);
    for (auto& x : bias) x = 0.25f * g(rng);
    for (const bool bf : {true, false})
        for (const bool q16 : {true, false}) {
            std::vector<std::uint16_t> q16v(qf.size()), k16(kf.size()), v16(vf.size());
            std::vector<float> qw(qf.size()), kw(kf.size()), vw(vf.size());  // the values the kernels see
            for (std::size_t i = 0; i < qf.size(); ++i) {
                q16v[i] = to_bits16(qf[i], bf);
                qw[i] = q16 ? widen16(q16v[i], bf) : qf[i];
            }
            for (std::size_t i = 0; i < kf.size(); ++i) kw[i] = widen16(k16[i] = to_bits16(kf[i], bf), bf);
            for (std::size_t i = 0; i < vf.size(); ++i) vw[i] = widen16(v16[i] = to_bits16(vf[i], bf), bf);
            const int t16 = bf ? NORMEXP_BFLOAT16 : NORMEXP_FLOAT16;
            normexp_attention_params p;
            normexp_attention_params_init(&p);
            p.dtype = q16 ? t16 : NORMEXP_FLOAT32;
            p.kv_dtype = t16;
            p.q = q16 ? static_cast<const void*>(q16v.data()) : qf.data();
            p.k = k16.data(), p.v = v16.data();
            std::vector<std::uint16_t> out16(B * Hq * Lq * Dv), cpp16(out16.size());
            std::vector<float> out32(out16.size()), cpp32(out16.size()), lse(B * Hq * Lq), cpp_lse(lse.size());
            p.out = q16 ? static_cast<void*>(out16.data()) : out32.data();
            p.lse = lse.data();
            p.batch = B, p.heads_q = Hq, p.heads_kv = Hkv, p.len_q = Lq, p.len_kv = Lk, p.head_dim = D, p.head_dim_v = Dv;
            p.is_causal = 1, p.causal_alignment = NORMEXP_CAUSAL_BOTTOM_RIGHT;
            p.mask_kind = NORMEXP_MASK_ADDITIVE, p.mask = bias.data();
            const int rc = normexp_attention(&p);
            CHECK(rc == NORMEXP_OK, "16-bit (bf=%d, q16=%d): %s", int(bf), int(q16), normexp_last_error());
            // The C++ overload with the same operands.
            normexp::attention_options<float> o;
            o.is_causal = true, o.alignment = normexp::causal_alignment::bottom_right;
            o.mask_kind = normexp::attention_mask_kind::additive, o.mask = bias.data(),
            o.mask_strides = {0, 0, std::ptrdiff_t(Lk), 1};
            o.lse = cpp_lse.data(), o.lse_strides = {std::ptrdiff_t(Hq * Lq), std::ptrdiff_t(Lq), 1};
            const normexp::attention_shape sh{B, Hq, Hkv, Lq, Lk, D, Dv};
            const normexp::strides4 qs{std::ptrdiff_t(Hq * Lq * D), std::ptrdiff_t(Lq * D), std::ptrdiff_t(D), 1},
                ks{std::ptrdiff_t(Hkv * Lk * D), std::ptrdiff_t(Lk * D), std::ptrdiff_t(D), 1},
                vs{std::ptrdiff_t(Hkv * Lk * Dv), std::ptrdiff_t(Lk * Dv), std::ptrdiff_t(Dv), 1},
                os{std::ptrdiff_t(Hq * Lq * Dv), std::ptrdiff_t(Lq * Dv), std::ptrdiff_t(Dv), 1};
            auto run = [&](auto tag) {
                using S = decltype(tag);
                const auto* k = reinterpret_cast<const S*>(k16.data());
                const auto* v = reinterpret_cast<const S*>(v16.data());
                if (q16)
                    normexp::attention(sh, reinterpret_cast<const S*>(q16v.data()), qs, k, ks, v, vs,
                                       reinterpret_cast<S*>(cpp16.data()), os, o);
                else
                    normexp::attention(sh, qf.data(), qs, k, ks, v, vs, cpp32.data(), os, o);
            };
            if (bf) run(normexp::bfloat16{}); else run(normexp::float16{});
            CHECK((q16 ? cpp16 == out16 : cpp32 == out32) && cpp_lse == lse, "16-bit (bf=%d, q16=%d): C and C++ differ",
                  int(bf), int(q16));
            // Against the float64 reference over the widened values (bottom-right causal, the additive mask).
            const double tol = q16 ? (bf ? 0x1p-8 : 0x1p-11) : 0.0;
            double worst = 0;
            for (std::size_t h = 0; h < Hq; ++h) {
                std::vector<float> qh(qw.begin() + h * Lq * D, qw.begin() + (h + 1) * Lq * D);
                const std::size_t hk = h / (Hq / Hkv);
                for (std::size_t i = 0; i < Lq; ++i) {
                    std::vector<double> s(Lk, -INFINITY);
                    double m = -INFINITY;
                    for (std::size_t j = 0; j + Lq <= Lk + i; ++j) {
                        double dot = 0;
                        for (std::size_t d = 0; d < D; ++d) dot += double(qh[i * D + d]) * kw[(hk * Lk + j) * D + d];
                        s[j] = dot / std::sqrt(double(D)) + bias[i * Lk + j];
                        m = std::max(m, s[j]);
                    }
                    double sum = 0;
                    for (double& x : s) sum += (x = std::exp(x - m));
                    for (std::size_t c = 0; c < Dv; ++c) {
                        double acc = 0;
                        for (std::size_t j = 0; j < Lk; ++j) acc += s[j] / sum * vw[(hk * Lk + j) * Dv + c];
                        const double got = q16 ? widen16(out16[(h * Lq + i) * Dv + c], bf) : out32[(h * Lq + i) * Dv + c];
                        worst = std::max(worst, std::fabs(got - acc) / (tol * std::fabs(acc) + 1e-5));
                    }
                    const double lse_ref = m + std::log(sum);
                    worst = std::max(worst, std::fabs(lse[h * Lq + i] - lse_ref) / 1e-5);
                }
            }
            CHECK(worst <= 1.0, "16-bit (bf=%d, q16=%d) vs float64: %g of the bound", int(bf), int(q16), worst);
        }
}

// normexp_paged_attention on a pool in a random page order (page size 5: pages end inside key blocks) with
// decodes, a sequence without queries and a prefill, against the reference over each gathered sequence.
void test_paged_params() {
    const std::size_t Hq = 4, Hkv = 2, D = 16, Dv = 8, page = 5, nseq = 4;
    const std::int32_t lens[nseq] = {700, 1, 6, 260}, starts[nseq + 1] = {0, 1, 2, 2, 42};
    std::size_t npages = 0, maxp = 0;
    for (std::int32_t n : lens) {
        npages += (std::size_t(n) + page - 1) / page;
        maxp = std::max(maxp, (std::size_t(n) + page - 1) / page);
    }
    npages += 2;  // unused pages
    std::mt19937 rng(12);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> kp(npages * page * Hkv * D), vp(npages * page * Hkv * Dv), q(42 * Hq * D), out(42 * Hq * Dv),
        lse(42 * Hq);
    for (auto* t : {&kp, &vp, &q})
        for (auto& x : *t) x = g(rng);
    std::vector<std::int32_t> perm(npages), table(nseq * maxp, -1);
    for (std::size_t i = 0; i < npages; ++i) perm[i] = std::int32_t(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::size_t at = 0;
    for (std::size_t s = 0; s < nseq; ++s)
        for (std::size_t i = 0; i < (std::size_t(lens[s]) + page - 1) / page; ++i) table[s * maxp + i] = perm[at++];
    const double sinks[Hq] = {0.0, 1.0, -INFINITY, 2.0};
    normexp_paged_attention_params p;
    normexp_paged_attention_params_init(&p);
    p.q = q.data(), p.k_pages = kp.data(), p.v_pages = vp.data(), p.out = out.data(), p.lse = lse.data();
    p.block_table = table.data(), p.seq_lens = lens, p.query_start = starts;
    p.num_seqs = nseq, p.total_queries = 42, p.heads_q = Hq, p.heads_kv = Hkv, p.head_dim = D, p.head_dim_v = Dv;
    p.num_pages = npages, p.page_size = page, p.max_pages = maxp, p.window = 300, p.sinks = sinks;
    const int rc = normexp_paged_attention(&p);
    CHECK(rc == NORMEXP_OK, "normexp_paged_attention rc %d: %s", rc, normexp_last_error());
    double worst = 0, worst_lse = 0;
    for (std::size_t s = 0; s < nseq; ++s) {
        const std::size_t L = std::size_t(lens[s]), nq = std::size_t(starts[s + 1] - starts[s]);
        if (nq == 0) continue;
        for (std::size_t h = 0; h < Hq; ++h) {
            const std::size_t hk = h / (Hq / Hkv);
            std::vector<float> qs(nq * D), ks(L * D), vs(L * Dv);  // gathered
            for (std::size_t i = 0; i < nq; ++i)
                for (std::size_t d = 0; d < D; ++d) qs[i * D + d] = q[((std::size_t(starts[s]) + i) * Hq + h) * D + d];
            for (std::size_t j = 0; j < L; ++j) {
                const std::size_t pg = std::size_t(table[s * maxp + j / page]), slot = j % page;
                for (std::size_t d = 0; d < D; ++d) ks[j * D + d] = kp[((pg * page + slot) * Hkv + hk) * D + d];
                for (std::size_t d = 0; d < Dv; ++d) vs[j * Dv + d] = vp[((pg * page + slot) * Hkv + hk) * Dv + d];
            }
            opts o;
            o.causal = true, o.off = std::ptrdiff_t(L) - std::ptrdiff_t(nq), o.window = 300, o.sink = sinks[h];
            std::vector<double> ro(nq * Dv), rl(nq);
            reference_head(qs.data(), ks.data(), vs.data(), nullptr, nq, L, D, Dv, o, ro.data(), rl.data());
            for (std::size_t i = 0; i < nq; ++i) {
                const std::size_t r = std::size_t(starts[s]) + i;
                for (std::size_t c = 0; c < Dv; ++c) worst = std::max(worst, std::fabs(out[(r * Hq + h) * Dv + c] - ro[i * Dv + c]));
                worst_lse = std::max(worst_lse, std::fabs(lse[r * Hq + h] - rl[i]));
            }
        }
    }
    CHECK(worst < 1e-5 && worst_lse < 1e-5, "normexp_paged_attention vs reference: out %g, lse %g", worst, worst_lse);

    // query_start NULL: a decode step of every sequence.
    std::vector<float> dec(nseq * Hq * Dv);
    normexp_paged_attention_params pd = p;
    pd.query_start = nullptr, pd.total_queries = nseq, pd.out = dec.data(), pd.lse = nullptr;
    CHECK(normexp_paged_attention(&pd) == NORMEXP_OK, "decode step: %s", normexp_last_error());

    // A bad table entry: INVALID_ARGUMENT naming the sequence and the entry, out untouched.
    const std::vector<float> before = out;
    auto expect = [&](normexp_paged_attention_params bad, int code, const char* word) {
        const int r = normexp_paged_attention(&bad);
        CHECK(r == code, "expected status %d, got %d (%s)", code, r, normexp_last_error());
        CHECK(std::strstr(normexp_last_error(), word) != nullptr, "message %s should name %s", normexp_last_error(), word);
        // One name: the C function's, not the C++ function's after it.
        CHECK(std::strncmp(normexp_last_error(), "normexp_paged_attention: ", 25) == 0 &&
                  std::strstr(normexp_last_error(), "normexp.") == nullptr,
              "message %s should start with the C function's name only", normexp_last_error());
    };
    std::vector<std::int32_t> broken = table;
    broken[3 * maxp + 10] = std::int32_t(npages);
    normexp_paged_attention_params bad = p;
    bad.block_table = broken.data();
    char page_word[96];
    std::snprintf(page_word, sizeof page_word, "block_table[3, 10] = %d: page 10 of sequence 3", int(npages));
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, page_word);
    const std::int32_t long_lens[nseq] = {700, 1, 6, 2600};
    bad = p, bad.seq_lens = long_lens;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "seq_lens[3] = 2600");
    const std::int32_t bad_starts[nseq + 1] = {0, 1, 3, 2, 42};
    bad = p, bad.query_start = bad_starts;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "sequence 2");
    bad = p, bad.query_start = nullptr;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "query_start");
    bad = p, bad.struct_size = 0;
    expect(bad, NORMEXP_ERROR_INVALID_ARGUMENT, "struct_size");
    bad = p, bad.seq_lens = nullptr;
    expect(bad, NORMEXP_ERROR_NULL_POINTER, "seq_lens");
    bad = p, bad.page_size = 0;
    expect(bad, NORMEXP_ERROR_INVALID_SIZE, "sizes");
    bad = p, bad.out = kp.data() + 3;
    expect(bad, NORMEXP_ERROR_OVERLAP, "overlap");
    CHECK(out == before, "out changed by a failing call");

    // 16-bit pages (kv_dtype BFLOAT16 / FLOAT16) under a float32 q: the bits of the C++ overload, and within
    // the 16-bit rounding of the pages of the float32 result above (2^-8 relative for bfloat16 keys: a few
    // 1e-2 absolute on these outputs of magnitude ~1).
    for (const bool bf : {true, false}) {
        std::vector<std::uint16_t> k16(kp.size()), v16(vp.size());
        for (std::size_t i = 0; i < kp.size(); ++i) k16[i] = to_bits16(kp[i], bf);
        for (std::size_t i = 0; i < vp.size(); ++i) v16[i] = to_bits16(vp[i], bf);
        std::vector<float> o16(out.size()), cpp16(out.size()), l16(lse.size()), cl16(lse.size());
        normexp_paged_attention_params ph = p;
        ph.kv_dtype = bf ? NORMEXP_BFLOAT16 : NORMEXP_FLOAT16;
        ph.k_pages = k16.data(), ph.v_pages = v16.data(), ph.out = o16.data(), ph.lse = l16.data();
        CHECK(normexp_paged_attention(&ph) == NORMEXP_OK, "16-bit pages: %s", normexp_last_error());
        normexp::paged_attention_shape sh;
        sh.num_seqs = nseq, sh.total_queries = 42, sh.heads_q = Hq, sh.heads_kv = Hkv, sh.head_dim = D;
        sh.head_dim_v = Dv, sh.num_pages = npages, sh.page_size = page, sh.max_pages = maxp;
        normexp::paged_attention_options<float> po;
        po.scale = p.scale, po.is_causal = true, po.window = p.window, po.softcap = p.softcap;
        po.alibi_slopes = p.alibi_slopes, po.sinks = p.sinks, po.lse = cl16.data(), po.lse_strides = {std::ptrdiff_t(Hq), 1};
        const normexp::strides3 qs{std::ptrdiff_t(Hq * D), std::ptrdiff_t(D), 1}, os{std::ptrdiff_t(Hq * Dv), std::ptrdiff_t(Dv), 1};
        const normexp::strides4 ks{std::ptrdiff_t(page * Hkv * D), std::ptrdiff_t(Hkv * D), std::ptrdiff_t(D), 1},
            vs{std::ptrdiff_t(page * Hkv * Dv), std::ptrdiff_t(Hkv * Dv), std::ptrdiff_t(Dv), 1};
        auto run = [&](auto tag) {
            using S = decltype(tag);
            normexp::paged_attention(sh, q.data(), qs, reinterpret_cast<const S*>(k16.data()), ks,
                                     reinterpret_cast<const S*>(v16.data()), vs, table.data(), std::ptrdiff_t(maxp),
                                     lens, starts, cpp16.data(), os, po);
        };
        if (bf) run(normexp::bfloat16{}); else run(normexp::float16{});
        CHECK(cpp16 == o16 && cl16 == l16, "16-bit pages (bf=%d): C and C++ differ", int(bf));
        double d16 = 0;
        for (std::size_t i = 0; i < out.size(); ++i) d16 = std::max(d16, std::fabs(double(o16[i]) - out[i]));
        // float16 test data clamps magnitudes to [2^-3, 4) (to_bits16), so only bfloat16 is close to out.
        if (bf) CHECK(d16 < 0.1 && d16 > 0, "bfloat16 pages vs float32 pages: %g", d16);
    }
}

}  // namespace

int main() {
    test_attention_params();
    test_attention_16bit();
    test_paged_params();
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
