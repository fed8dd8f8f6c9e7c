// libFuzzer harness for the C++ driver normexp::attention<T> (blocked scaled dot-product attention).
//
// From the fuzz input it builds: float or double; a shape (batch, grouped-query heads, lengths that cross
// the 96-row query blocks, the 128-key blocks, the few-row direct path and the split-key decode path,
// head dimensions 0..20); strided views of q, k, v (any order, gaps, signs, broadcast axes), of out and
// of the optional lse; the options (scale: default, moderate, extreme or invalid; softcap; causal with
// either alignment; a sliding window up to 2^64 - 1; ALiBi slopes with their strides; a bool or additive
// mask with arbitrary strides including broadcast ones); and the values (mostly moderate, sometimes ties,
// NaN, infinities, huge, subnormal or raw bit patterns).
//
// Every array lives in its own heap buffer just large enough for its view (ASan flags any access
// outside it). Then, for every kernel set:
//  * normexp::error is thrown exactly when an argument is invalid, and then nothing is written;
//  * nothing outside the out and lse views is written, and the inputs are unchanged.
// Against a long double reference computed here from the definition in normexp.hpp (scores, masks,
// causal diagonal, window, ALiBi, softcap, softmax), for each query row whose inputs are finite and whose
// scores and outputs cannot overflow T (|scores| <= max(T) / 8):
//  * no NaN; a row with no visible key gives exactly 0 and lse -inf;
//  * each output lies within [min v, max v] of the visible keys' values (a convex combination), up to
//    the accumulation's rounding;
//  * out and lse agree with the reference within a bound derived from the rounding of the dot products
//    and scores (relative weight error e^(2E) - 1 for a score error E; see row_bound) and of the sums.
// And for every row whose finite parts cannot overflow (inputs may be NaN or infinite): each kernel set
// gives NaN in exactly the positions where the scalar specification does.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "fuzz_views.hpp"
#include "normexp/normexp.hpp"

namespace {

using LD = long double;
using fuzz::view;
using shape_v = std::vector<std::size_t>;

// Printed with every failure: the case's shape and options.
std::string g_case;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "%s\n", g_case.c_str());
    std::fprintf(stderr, "fuzz_attention: invariant violated: %s\n", what);
    std::abort();
}

// Values come from a generator seeded by the input, with a distribution the input chooses: uniform in
// [-range, range], with a share of ties (small integers) and of special values (NaN, infinities, huge,
// subnormal, zero) out of 64. A short input thus still gives every array rich values.
struct value_source {
    std::mt19937_64 rng;
    double range;
    unsigned ties, specials;
    explicit value_source(FuzzedDataProvider& fdp)
        : rng(fdp.ConsumeIntegral<std::uint64_t>()),
          range(fdp.PickValueInArray<double>({1.0, 4.0, 30.0, 1e4})),
          ties(fdp.PickValueInArray<unsigned>({0, 0, 8, 32, 64})),
          specials(fdp.PickValueInArray<unsigned>({0, 0, 0, 1, 4})) {}
    unsigned pick() { return unsigned(rng() % 64); }
    double uniform() { return std::uniform_real_distribution<double>(-range, range)(rng); }
    template <class T>
    T next() {
        const unsigned u = pick();
        if (u < specials) {
            const T s[] = {std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                           std::numeric_limits<T>::quiet_NaN(), T(1e30), T(-1e30), std::numeric_limits<T>::denorm_min(), T(0)};
            return s[rng() % 7];
        }
        if (u < specials + ties) return T(int(rng() % 5) - 2);
        return T(uniform());
    }
};

// A buffer for a view: exact size (at least 1 element), filled by fill(offset) on the view's elements and
// `outside` elsewhere.
template <class T>
struct buffer {
    view v;
    std::vector<T> data;
};

template <class T, class F>
buffer<T> make_buffer(FuzzedDataProvider& fdp, const shape_v& shape, bool broadcast, T outside, F fill) {
    buffer<T> b;
    b.v = fuzz::make_view(fdp, shape, broadcast);
    b.data.assign(std::max<std::size_t>(b.v.size, 1), outside);
    fuzz::each(shape, b.v.strides, b.v.base, [&](std::size_t off, const shape_v&) { b.data[off] = fill(); });
    return b;
}

normexp::strides4 s4(const view& v) { return {v.strides[0], v.strides[1], v.strides[2], v.strides[3]}; }

// Bit-identical (NaN payloads aside: any NaN equals any NaN).
template <class T>
bool same(T a, T b) {
    return (a != a && b != b) || std::memcmp(&a, &b, sizeof a) == 0;
}

template <class T>
void run(FuzzedDataProvider& fdp) {
    constexpr double kMax = double(std::numeric_limits<T>::max());
    constexpr double eps = std::numeric_limits<T>::epsilon();
    const double inf = std::numeric_limits<double>::infinity();

    // ---- shape ----
    normexp::attention_shape sh;
    sh.batch = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? 0 : fdp.ConsumeIntegralInRange<std::size_t>(1, 2);
    sh.heads_kv = fdp.ConsumeIntegralInRange<int>(0, 31) == 0 ? 0 : fdp.ConsumeIntegralInRange<std::size_t>(1, 3);
    const std::size_t group = fdp.ConsumeIntegralInRange<std::size_t>(1, 4);
    sh.heads_q = sh.heads_kv * group + (fdp.ConsumeIntegralInRange<int>(0, 31) == 0 ? 1 : 0);  // sometimes invalid
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
        case 0:  // query blocks of 96 rows, and a partial second one
            sh.len_q = fdp.ConsumeIntegralInRange<std::size_t>(90, 100);
            sh.len_kv = fdp.ConsumeIntegralInRange<std::size_t>(0, 20);
            break;
        case 1:  // key blocks of 128
            sh.len_q = fdp.ConsumeIntegralInRange<std::size_t>(0, 8);
            sh.len_kv = fdp.ConsumeIntegralInRange<std::size_t>(120, 300);
            break;
        case 2:  // decoding: keys split into pieces of >= 512 merged afterwards
            sh.len_q = fdp.ConsumeIntegralInRange<std::size_t>(1, 2);
            sh.len_kv = fdp.ConsumeIntegralInRange<std::size_t>(1000, 1100);
            break;
        default:
            sh.len_q = fdp.ConsumeIntegralInRange<std::size_t>(0, 7);
            sh.len_kv = fdp.ConsumeIntegralInRange<std::size_t>(0, 10);
    }
    sh.head_dim = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? 0 : fdp.ConsumeIntegralInRange<std::size_t>(1, 20);
    sh.head_dim_v = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? 0 : fdp.ConsumeIntegralInRange<std::size_t>(1, 20);
    const std::size_t rows = sh.batch * sh.heads_q * sh.len_q;
    if (rows * std::max<std::size_t>(sh.len_kv, 1) * (sh.head_dim + sh.head_dim_v + 1) > 300000) return;

    // ---- options ----
    normexp::attention_options<T> opt;
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
        case 0: case 1: break;  // default 1/sqrt(D)
        case 2:
            opt.scale = fdp.PickValueInArray<double>({1e-30, 1e-8, 1e4, 1e8, 1e10, 1e20, 1e30, -1e10, 1e39, 1e300, -0.0});
            break;
        case 3:
            opt.scale = fdp.PickValueInArray<double>({std::nan(""), inf, -inf});  // invalid
            break;
        default:
            opt.scale = fdp.ConsumeFloatingPointInRange<double>(-3.0, 3.0);
    }
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
        case 0: opt.softcap = fdp.ConsumeFloatingPointInRange<double>(0.5, 50.0); break;
        case 1: opt.softcap = fdp.PickValueInArray<double>({1e-30, 1e-3, 1e30, 1e39}); break;
        case 2: opt.softcap = fdp.PickValueInArray<double>({-1.0, std::nan(""), inf}); break;  // invalid
        default: break;
    }
    opt.is_causal = fdp.ConsumeBool();
    opt.alignment = fdp.ConsumeBool() ? normexp::causal_alignment::bottom_right : normexp::causal_alignment::top_left;
    switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
        case 0: opt.window = fdp.ConsumeIntegralInRange<std::size_t>(1, sh.len_kv + 2); break;
        case 1:
            opt.window = fdp.PickValueInArray<std::size_t>({std::size_t(1) << 63, std::numeric_limits<std::size_t>::max(),
                                                            sh.len_q + sh.len_kv, sh.len_q + sh.len_kv + 1});
            break;
        default: break;
    }
    const bool use_alibi = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
    const int mask_mode = fdp.ConsumeIntegralInRange<int>(0, 5);  // 0: bool, 1: additive, 2: kind set but no mask
    const bool want_lse = fdp.ConsumeBool();

    // ---- arrays ----
    const shape_v qshape{sh.batch, sh.heads_q, sh.len_q, sh.head_dim};
    const shape_v kshape{sh.batch, sh.heads_kv, sh.len_kv, sh.head_dim};
    const shape_v vshape{sh.batch, sh.heads_kv, sh.len_kv, sh.head_dim_v};
    const shape_v oshape{sh.batch, sh.heads_q, sh.len_q, sh.head_dim_v};
    const shape_v mshape{sh.batch, sh.heads_q, sh.len_q, sh.len_kv};
    const shape_v lshape{sh.batch, sh.heads_q, sh.len_q};
    const shape_v ashape{sh.batch, sh.heads_q};
    value_source qkv(fdp);
    auto gen = [&] { return qkv.next<T>(); };
    const buffer<T> q = make_buffer<T>(fdp, qshape, true, T(0.5), gen);
    const buffer<T> k = make_buffer<T>(fdp, kshape, true, T(0.5), gen);
    const buffer<T> v = make_buffer<T>(fdp, vshape, true, T(0.5), gen);
    buffer<double> alibi;
    if (use_alibi) {
        const int style = fdp.ConsumeIntegralInRange<int>(0, 7);  // 0: some huge, 1: any sign, else 2^-k
        alibi = make_buffer<double>(fdp, ashape, true, 0.0, [&] {
            if (style == 0 && qkv.pick() < 16) return fdp.PickValueInArray<double>({1e30, 1e39, -1e39, 0.0});
            if (style == 1) return qkv.uniform() / qkv.range * 2;
            return std::ldexp(1.0, -int(1 + qkv.rng() % 8));
        });
        opt.alibi_slopes = alibi.data.data() + alibi.v.base;
        opt.alibi_strides = {alibi.v.strides[0], alibi.v.strides[1]};
    }
    buffer<std::uint8_t> keep;
    buffer<T> bias;
    if (mask_mode == 0) {
        const unsigned drop = fdp.PickValueInArray<unsigned>({0, 8, 32, 56, 64});  // masked out of 64
        keep = make_buffer<std::uint8_t>(fdp, mshape, true, 0, [&] {
            return std::uint8_t(qkv.pick() < drop ? 0 : 1 + qkv.rng() % 255);  // any non-zero byte keeps
        });
        opt.mask_kind = normexp::attention_mask_kind::keep;
        opt.mask = keep.data.data() + keep.v.base;
        opt.mask_strides = s4(keep.v);
    } else if (mask_mode == 1) {
        const unsigned drop = fdp.PickValueInArray<unsigned>({0, 8, 32, 64});  // -inf out of 64
        const unsigned special = fdp.PickValueInArray<unsigned>({0, 0, 2});
        bias = make_buffer<T>(fdp, mshape, true, T(0), [&] {
            const unsigned u = qkv.pick();
            if (u < special) {
                const T s[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(), T(1e30), T(-1e30)};
                return s[qkv.rng() % 4];
            }
            if (u < special + drop) return -std::numeric_limits<T>::infinity();
            return T(qkv.uniform());
        });
        opt.mask_kind = normexp::attention_mask_kind::additive;
        opt.mask = bias.data.data() + bias.v.base;
        opt.mask_strides = s4(bias.v);
    } else if (mask_mode == 2 && fdp.ConsumeIntegralInRange<int>(0, 7) == 0) {
        opt.mask_kind = fdp.ConsumeBool() ? normexp::attention_mask_kind::keep : normexp::attention_mask_kind::additive;
        opt.mask = nullptr;  // invalid
    }
    const T sentinel = T(-12345.5);
    const buffer<T> out0 = make_buffer<T>(fdp, oshape, false, sentinel, [&] { return sentinel; });
    buffer<T> lse0;
    if (want_lse) lse0 = make_buffer<T>(fdp, lshape, false, sentinel, [&] { return sentinel; });

    {
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "case: %s B=%zu Hq=%zu Hkv=%zu Lq=%zu Lkv=%zu D=%zu Dv=%zu scale=%g softcap=%g causal=%d %s window=%zu "
                      "alibi=%d mask=%s lse=%d",
                      sizeof(T) == 4 ? "float32" : "float64", sh.batch, sh.heads_q, sh.heads_kv, sh.len_q, sh.len_kv,
                      sh.head_dim, sh.head_dim_v, opt.scale, opt.softcap, int(opt.is_causal),
                      opt.alignment == normexp::causal_alignment::bottom_right ? "bottom_right" : "top_left", opt.window,
                      int(use_alibi), mask_mode == 0 ? "bool" : mask_mode == 1 ? "additive" : "none", int(want_lse));
        g_case = buf;
    }
    // Invalid: heads that do not divide, a scale or softcap not finite in T (or a negative softcap), a mask
    // kind without a mask, and (when there is any row) an ALiBi slope not finite in T.
    bool slopes_ok = true;
    if (use_alibi && rows > 0)
        fuzz::each(ashape, alibi.v.strides, alibi.v.base,
                   [&](std::size_t off, const shape_v&) { slopes_ok &= std::fabs(alibi.data[off]) <= kMax; });
    const bool valid = (sh.heads_kv > 0 || sh.heads_q == 0) && (sh.heads_kv == 0 || sh.heads_q % sh.heads_kv == 0) &&
                       std::fabs(opt.scale) <= kMax && opt.softcap >= 0 && opt.softcap <= kMax &&
                       (opt.mask_kind == normexp::attention_mask_kind::none || opt.mask != nullptr) && slopes_ok;

    // ---- every kernel set ----
    const std::vector<std::string> isas = normexp::available_isas();
    std::vector<std::vector<T>> outs, lses;
    for (const std::string& isa : isas) {
        // Exact-size heap copies so ASan sees the real bounds of each view.
        auto heap = [](const std::vector<T>& src) {
            T* p = new T[src.size()];
            std::copy(src.begin(), src.end(), p);
            return p;
        };
        T *qm = heap(q.data), *km = heap(k.data), *vm = heap(v.data), *om = heap(out0.data);
        T* lm = want_lse ? heap(lse0.data) : nullptr;
        opt.isa = isa.c_str();
        opt.lse = want_lse ? lm + lse0.v.base : nullptr;
        if (want_lse) opt.lse_strides = {lse0.v.strides[0], lse0.v.strides[1], lse0.v.strides[2]};
        bool threw = false;
        try {
            normexp::attention<T>(sh, qm + q.v.base, s4(q.v), km + k.v.base, s4(k.v), vm + v.v.base, s4(v.v),
                                  om + out0.v.base, s4(out0.v), opt);
        } catch (const normexp::error&) {
            threw = true;
        }
        if (threw == valid) {
            std::fprintf(stderr, "scale %g softcap %g heads %zu/%zu\n", opt.scale, opt.softcap, sh.heads_q, sh.heads_kv);
            fail(valid ? "a valid call threw normexp::error" : "an invalid call did not throw");
        }
        if (std::memcmp(qm, q.data.data(), q.data.size() * sizeof(T)) || std::memcmp(km, k.data.data(), k.data.size() * sizeof(T)) ||
            std::memcmp(vm, v.data.data(), v.data.size() * sizeof(T)))
            fail("an input was modified");
        std::vector<T> o(om, om + out0.data.size()), l;
        if (want_lse) l.assign(lm, lm + lse0.data.size());
        delete[] qm;
        delete[] km;
        delete[] vm;
        delete[] om;
        delete[] lm;
        // Nothing outside the views written (nothing at all by an invalid call).
        std::vector<char> in_o(o.size(), 0), in_l(l.size(), 0);
        if (!threw) {
            fuzz::each(oshape, out0.v.strides, out0.v.base, [&](std::size_t off, const shape_v&) { in_o[off] = 1; });
            if (want_lse) fuzz::each(lshape, lse0.v.strides, lse0.v.base, [&](std::size_t off, const shape_v&) { in_l[off] = 1; });
        }
        for (std::size_t i = 0; i < o.size(); ++i)
            if (!in_o[i] && !same(o[i], sentinel)) fail(threw ? "an invalid call wrote out" : "a write outside the out view");
        for (std::size_t i = 0; i < l.size(); ++i)
            if (!in_l[i] && !same(l[i], sentinel)) fail(threw ? "an invalid call wrote lse" : "a write outside the lse view");
        if (threw) return;
        outs.push_back(std::move(o));
        lses.push_back(std::move(l));
    }
    if (rows == 0) return;

    // ---- the reference, row by row ----
    const std::size_t D = sh.head_dim, Dv = sh.head_dim_v, L = sh.len_kv;
    const double scale = opt.scale != 0 ? opt.scale : 1.0 / std::sqrt(double(std::max<std::size_t>(1, D)));
    const std::ptrdiff_t off = opt.alignment == normexp::causal_alignment::bottom_right
                                   ? std::ptrdiff_t(sh.len_kv) - std::ptrdiff_t(sh.len_q) : 0;
    const double bound = kMax / 8;
    std::vector<LD> x(L);
    std::vector<char> hard(L), vis(L);
    std::vector<double> row_err(L);
    for (std::size_t b = 0; b < sh.batch; ++b)
        for (std::size_t h = 0; h < sh.heads_q; ++h)
            for (std::size_t i = 0; i < sh.len_q; ++i) {
                const std::size_t hk = h / (sh.heads_q / sh.heads_kv);
                const std::ptrdiff_t diag = std::ptrdiff_t(i) + off;
                const double slope = use_alibi ? alibi.data[fuzz::offset(alibi.v, {b, h})] : 0.0;
                // finite: every input entering the row's visible scores and outputs is finite.
                // no_overflow: the finite parts stay far below max(T) whatever the order of operations.
                bool finite = std::isfinite(slope), no_overflow = std::fabs(slope) * double(L + 1) <= kMax / 8;
                LD m = -INFINITY;
                double max_term = 0;
                for (std::size_t j = 0; j < L; ++j) {
                    const std::ptrdiff_t jj = std::ptrdiff_t(j);
                    bool masked = false;
                    if (mask_mode == 0) masked = keep.data[fuzz::offset(keep.v, {b, h, i, j})] == 0;
                    if (opt.is_causal && jj > diag) masked = true;
                    if (opt.window > 0 && opt.window <= sh.len_q + sh.len_kv && jj <= diag - std::ptrdiff_t(opt.window))
                        masked = true;
                    hard[j] = masked;
                    x[j] = -INFINITY;
                    row_err[j] = 0;
                    if (masked) continue;
                    LD dot = 0, absdot = 0, absfin = 0;
                    for (std::size_t d = 0; d < D; ++d) {
                        const LD t = LD(q.data[fuzz::offset(q.v, {b, h, i, d})]) * LD(k.data[fuzz::offset(k.v, {b, hk, j, d})]);
                        dot += t;
                        absdot += std::fabs(t);
                        if (std::isfinite(t)) absfin += std::fabs(t);
                    }
                    const double bj = mask_mode == 1 ? double(bias.data[fuzz::offset(bias.v, {b, h, i, j})]) : 0.0;
                    const double dist = std::fabs(double(jj - diag));
                    LD xj = LD(scale) * dot;
                    if (opt.softcap > 0) xj = LD(opt.softcap) * std::tanh(xj / LD(opt.softcap));
                    xj -= LD(slope) * LD(dist);
                    xj += LD(bj);
                    x[j] = xj;
                    const double term = std::fabs(scale) * double(absdot) + std::fabs(double(xj)) + std::fabs(bj) +
                                        std::fabs(slope) * dist + opt.softcap;
                    row_err[j] = term;
                    finite &= std::isfinite(double(absdot)) && (std::isfinite(bj) || bj == -inf) && std::isfinite(double(dot));
                    no_overflow &= std::fabs(scale) * double(absfin) + (std::isfinite(bj) ? std::fabs(bj) : 0.0) <= kMax / 8;
                    if (std::isfinite(double(xj)) || xj == -INFINITY) {
                        if (xj > m) m = xj;
                        if (std::isfinite(double(xj))) max_term = std::max(max_term, term);
                    }
                }
                // v of every key of the block range is multiplied by its weight (0 for masked keys).
                double vmax_fin = 0;
                bool vfinite = true;
                for (std::size_t j = 0; j < L; ++j)
                    for (std::size_t c = 0; c < Dv; ++c) {
                        const double vv = double(v.data[fuzz::offset(v.v, {b, hk, j, c})]);
                        vfinite &= std::isfinite(vv);
                        if (std::isfinite(vv)) vmax_fin = std::max(vmax_fin, std::fabs(vv));
                    }
                no_overflow &= vmax_fin * double(L + 1) <= kMax / 8;
                finite &= vfinite;
                const bool in_domain =
                    finite && no_overflow && max_term <= bound && (m == -INFINITY || std::fabs(double(m)) <= bound);

                // The row's inputs, printed before a failure.
                auto dump = [&] {
                    std::fprintf(stderr, "row b=%zu h=%zu i=%zu (kv head %zu, diag %td, slope %g)\n  q:", b, h, i, hk, diag, slope);
                    for (std::size_t d = 0; d < D; ++d) std::fprintf(stderr, " %a", double(q.data[fuzz::offset(q.v, {b, h, i, d})]));
                    for (std::size_t j = 0; j < L && j < 40; ++j) {
                        std::fprintf(stderr, "\n  key %zu%s x=%Lg k:", j, hard[j] ? " (masked)" : "", x[j]);
                        for (std::size_t d = 0; d < D; ++d) std::fprintf(stderr, " %a", double(k.data[fuzz::offset(k.v, {b, hk, j, d})]));
                        std::fprintf(stderr, " v:");
                        for (std::size_t c = 0; c < Dv; ++c) std::fprintf(stderr, " %a", double(v.data[fuzz::offset(v.v, {b, hk, j, c})]));
                        if (mask_mode == 1) std::fprintf(stderr, " bias %a", double(bias.data[fuzz::offset(bias.v, {b, h, i, j})]));
                    }
                    std::fprintf(stderr, "\n");
                };
                // NaN pattern: every kernel set as the scalar specification (results[0] is "scalar"). With a
                // non-finite v, an output is NaN where that key's weight is exactly 0 (0 * inf): every set takes
                // the weight as 0 where the key's exp argument x - m is below the normal range's end
                // (kernel_table.hpp), so the sets may differ only where x - m lies within the scores' error
                // bound of that end (a score of |q_d k_d| terms cancelling 1e30 is off by far more), or of exp's
                // underflow to 0, where a later block's rescale factor exp(m_old - m_new) of an infinite
                // output may round to 0 or to the smallest subnormal (exp within 1 ULP there).
                const double E_nan = m == -INFINITY ? 0.0 : double(D + 16) * eps * (max_term + std::fabs(double(m))) + 16 * eps;
                const double normal_end = std::is_same_v<T, float> ? -87.3 : -708.3;
                const double underflow = std::is_same_v<T, float> ? -103.973 : -745.134;
                bool nan_defined = true;
                for (std::size_t j = 0; j < L && !vfinite; ++j) {
                    if (hard[j] || x[j] == -INFINITY) continue;
                    bool vinf = false;
                    for (std::size_t c = 0; c < Dv; ++c) vinf |= !std::isfinite(double(v.data[fuzz::offset(v.v, {b, hk, j, c})]));
                    const double t = double(x[j] - m), slack = 2 * E_nan + 1e-3;
                    if (vinf && (std::fabs(t - normal_end) <= slack || std::fabs(t - underflow) <= slack)) nan_defined = false;
                }
                const std::size_t lo = want_lse ? fuzz::offset(lse0.v, {b, h, i}) : 0;
                if (no_overflow && nan_defined) {
                    for (std::size_t s = 1; s < outs.size(); ++s) {
                        for (std::size_t c = 0; c < Dv; ++c) {
                            const std::size_t oo = fuzz::offset(out0.v, {b, h, i, c});
                            if (std::isnan(outs[s][oo]) != std::isnan(outs[0][oo])) {
                                std::fprintf(stderr, "isa %s: out[%zu,%zu,%zu,%zu] = %a, scalar %a\n", isas[s].c_str(), b, h,
                                             i, c, double(outs[s][oo]), double(outs[0][oo]));
                                dump();
                                fail("kernel sets disagree on NaN");
                            }
                        }
                        if (want_lse && std::isnan(lses[s][lo]) != std::isnan(lses[0][lo])) {
                            dump();
                            fail("kernel sets disagree on a NaN lse");
                        }
                    }
                }
                if (!in_domain) continue;

                // Reference softmax over the visible keys.
                LD z = 0;
                std::size_t nvis = 0;
                for (std::size_t j = 0; j < L; ++j) {
                    vis[j] = !hard[j] && x[j] != -INFINITY;
                    if (vis[j]) z += std::exp(x[j] - m), ++nvis;
                }
                // Score error bound E (see the file comment): dot products (D + 16 roundings of the largest
                // term), the score steps, x - m, and the exp approximations.
                const double E = double(D + 16) * eps * (max_term + std::fabs(double(m))) + 16 * eps;
                const double wrel = std::expm1(std::min(4 * E, 700.0));
                for (std::size_t s = 0; s < outs.size(); ++s) {
                    const T* o = outs[s].data();
                    if (want_lse) {
                        const double got = double(lses[s][lo]);
                        if (nvis == 0) {
                            if (!(got == -inf)) fail("a row with no visible key has lse != -inf");
                        } else {
                            const double want = double(m + std::log(z));
                            if (!(std::fabs(got - want) <= 4 * E + double(D + 16) * eps * std::fabs(want) + 1e-300)) {
                                std::fprintf(stderr, "isa %s: lse %.17g, reference %.17g (E %g)\n", isas[s].c_str(), got, want, E);
                                dump();
                            fail("lse differs from the reference");
                            }
                        }
                    }
                    for (std::size_t c = 0; c < Dv; ++c) {
                        const T got = o[fuzz::offset(out0.v, {b, h, i, c})];
                        if (got != got) {
                            std::fprintf(stderr, "isa %s: NaN at [%zu,%zu,%zu,%zu] for finite inputs (row max score %Lg)\n",
                                         isas[s].c_str(), b, h, i, c, m);
                            dump();
                            fail("NaN output for finite, moderate inputs");
                        }
                        if (nvis == 0) {
                            if (got != 0) fail("a row with no visible key has a non-zero output");
                            continue;
                        }
                        LD acc = 0;
                        double vmin = inf, vmax = -inf, vabs = 0;
                        for (std::size_t j = 0; j < L; ++j) {
                            if (!vis[j]) continue;
                            const double vv = double(v.data[fuzz::offset(v.v, {b, hk, j, c})]);
                            acc += std::exp(x[j] - m) * LD(vv);
                            vmin = std::min(vmin, vv), vmax = std::max(vmax, vv), vabs = std::max(vabs, std::fabs(vv));
                        }
                        const double want = double(acc / z);
                        const double round = double(nvis + 16) * 4 * eps * vabs + 4 * std::numeric_limits<T>::denorm_min();
                        if (!(double(got) >= vmin - round && double(got) <= vmax + round)) {
                            std::fprintf(stderr, "isa %s: out %a outside [%a, %a] of the visible values\n", isas[s].c_str(),
                                         double(got), vmin, vmax);
                            dump();
                            fail("output outside the range of the visible values");
                        }
                        const double tol = wrel * (vmax - vmin) + round;
                        if (!(std::fabs(double(got) - want) <= tol)) {
                            std::fprintf(stderr,
                                         "isa %s: out[%zu,%zu,%zu,%zu] = %.17g, reference %.17g, bound %g (E %g, %zu visible "
                                         "keys, scale %g, softcap %g, slope %g, causal %d, window %zu)\n",
                                         isas[s].c_str(), b, h, i, c, double(got), want, tol, E, nvis, scale, opt.softcap,
                                         slope, int(opt.is_causal), opt.window);
                            dump();
                            fail("output differs from the reference");
                        }
                    }
                }
            }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    if (fdp.ConsumeBool())
        run<float>(fdp);
    else
        run<double>(fdp);
    return 0;
}
