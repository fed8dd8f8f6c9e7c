// ULP error of every ISA's float32 and float64 exp kernel against a correctly rounded reference.
//
// float32: every step-th float32 bit pattern over all 2^32 of them (both signs, subnormals, the
// saturating ranges, infinities and NaNs). Default step 97 (44M inputs, a few seconds); step 1 is the
// exhaustive sweep, which .ci/run runs (NORMEXP_EXP_SWEEP_STEP=1). Threads split the bit patterns into
// ranges (NORMEXP_EXP_SWEEP_THREADS, default: every hardware thread).
//
// Reference, correctly rounded: e = glibc exp((double)x), then rounded to float32. glibc's exp is within
// 1 double ULP of exp(x), so rounding e to float32 can go wrong only when e lies within that error of a
// midpoint between two adjacent floats (double rounding). Those inputs (about 1 in 2^26) are detected
// (|e - midpoint| <= 4 double ULPs) and recomputed with long double expl (64-bit significand, error
// < 1 ULP there), which decides the side unless exp(x) is within 2^-60 relative of the midpoint; such
// inputs would be counted as "undecided" and fail the test (none exist: exp(x) of a nonzero float is
// never that close to a float32 midpoint).
//
// Bound asserted: 1 ULP (the polynomial's 0.05 ULP approximation error plus the Horner rounding; a wrong
// coefficient or range reduction shows up as thousands of ULP). Reported: the max error and where, and
// how many results are not the correctly rounded one.
// accuracy::fast's float32 exp (exp_constants.hpp: kP1F..kP5F, a one-constant reduction) is swept too, over
// every step-th float32 t in [-104, 0] (the arguments it is given), through each table's f32_fast
// row_exp_store with m = 0 (t = x - 0 exactly): relative error <= 1.3 2^-23 + |t| 2^-28 where the result
// is normal, that plus 2^-149 absolute below; reported as the largest fraction of the fast mode's own
// bound 2^-22 + |t| 2^-24 (docs/accuracy.md). Reference: glibc's exp in double (error 2^-52).
// float64: a stratified sample of 10M inputs in [-745, 709.7]; reference long double expl (64-bit
// significand on x86, 113-bit software quad on aarch64); bound 1 ULP.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "normexp/normexp.hpp"

namespace {

float from_bits(std::uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

struct ref_result {
    float value;
    bool recomputed;  // near a midpoint: decided by long double
    bool undecided;   // too close to call even in long double
};

// Correctly rounded float32 exp(x) (see the header comment).
ref_result exp_ref(float x) {
    const double e = std::exp(static_cast<double>(x));
    const float f = static_cast<float>(e);
    if (e != e || e == 0.0 || std::isinf(e)) return {f, false, false};  // NaN, exact underflow, +inf input
    if (e >= 0x1p-126 && e < 0x1.fffffep127) {
        // Fast path, normal float32 range: a float32 ULP is 2^29 double ULPs and the midpoints are the
        // doubles whose low 29 significand bits are 2^28 (also across a binade boundary).
        std::uint64_t bits;
        std::memcpy(&bits, &e, 8);
        const std::int64_t low = static_cast<std::int64_t>(bits & ((std::uint64_t(1) << 29) - 1));
        if (std::llabs(low - (std::int64_t(1) << 28)) > 4) return {f, false, false};
    }
    const double fd = f;
    if (fd == e) return {f, false, false};  // e is a float: the nearest midpoint is half a float ULP away
    // The float neighbour of f on e's side, and the midpoint between them (exact in double).
    double mid;
    float g;
    if (std::isinf(f)) {  // overflow threshold: values >= FLT_MAX + half an ULP round to +inf
        g = std::numeric_limits<float>::max();
        mid = 0x1.ffffffp127;
    } else {
        g = std::nextafter(f, e > fd ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity());
        mid = std::isinf(g) ? 0x1.ffffffp127 : (fd + static_cast<double>(g)) * 0.5;
    }
    const double ulp_e = std::nextafter(e, std::numeric_limits<double>::infinity()) - e;
    if (std::fabs(e - mid) > 4 * ulp_e) return {f, false, false};
    // Near a midpoint: decide with long double (a float's midpoint is exact in long double too).
    const long double el = std::exp(static_cast<long double>(x));
    const long double ml = mid;
    const long double ulp_l = std::nextafter(el, std::numeric_limits<long double>::infinity()) - el;
    if (std::fabs(el - ml) <= 4 * ulp_l) return {f, true, true};
    // Round el: the float on el's side of the midpoint (f and g straddle it).
    const bool above = el > ml;
    const float lo = std::min(f, g), hi = std::max(f, g);
    return {above ? hi : lo, true, false};
}

struct sweep_stats {
    double worst = 0;
    float worst_x = 0, worst_got = 0, worst_ref = 0;
    std::uint64_t count = 0, not_cr = 0;
    void merge(const sweep_stats& o) {
        if (worse(o.worst, o.worst_x)) worst = o.worst, worst_x = o.worst_x, worst_got = o.worst_got, worst_ref = o.worst_ref;
        count += o.count, not_cr += o.not_cr;
    }
    // Larger error, or the same error at a smaller bit pattern: "where" does not depend on the threads.
    bool worse(double u, float x) const {
        std::uint32_t a, b;
        std::memcpy(&a, &x, 4);
        std::memcpy(&b, &worst_x, 4);
        return u > worst || (u == worst && u > 0 && a < b);
    }
};
struct ref_stats {
    std::uint64_t recomputed = 0, undecided = 0;
};

// Bit patterns lo, lo + step, ... < hi (64-bit counters: hi may be 2^32). The reference is computed
// once per input and every ISA's kernel is compared with it.
void sweep_range(const std::vector<const normexp::kernel_table*>& ks, std::uint64_t lo, std::uint64_t hi,
                 std::uint32_t step, std::vector<sweep_stats>& st, ref_stats& rs) {
    constexpr std::size_t B = 4096;
    std::vector<float> x(B), y(B), ref(B);
    std::uint64_t b = lo;
    while (b < hi) {
        std::size_t n = 0;
        for (; n < B && b < hi; ++n, b += step) x[n] = from_bits(static_cast<std::uint32_t>(b));
        for (std::size_t i = 0; i < n; ++i) {
            const ref_result r = exp_ref(x[i]);
            ref[i] = r.value;
            rs.recomputed += r.recomputed;
            rs.undecided += r.undecided;
        }
        for (std::size_t j = 0; j < ks.size(); ++j) {
            ks[j]->f32.exp(x.data(), y.data(), n);
            sweep_stats& s = st[j];
            for (std::size_t i = 0; i < n; ++i) {
                if (y[i] == ref[i]) continue;
                const double u = check::ulp_diff(y[i], ref[i]);
                if (u != 0) ++s.not_cr;
                if (s.worse(u, x[i])) s.worst = u, s.worst_x = x[i], s.worst_got = y[i], s.worst_ref = ref[i];
            }
            s.count += n;
        }
    }
}

// The reference at its edges, against values computed with mpmath at 200 bits and rounded to nearest
// float32 (a check of exp_ref itself, independent of glibc).
void check_reference() {
    struct {
        float x, cr;
    } const known[] = {
        {0.0f, 1.0f},
        {1.0f, 0x1.5bf0a8p+1f},
        {-1.0f, 0x1.78b564p-2f},
        {0.5f, 0x1.a61298p+0f},
        {10.0f, 0x1.5829dcp+14f},
        {0x1.62e42ep+6f, 0x1.ffff08p+127f},                          // largest input with a finite result
        {0x1.62e430p+6f, std::numeric_limits<float>::infinity()},   // smallest input that overflows
        {-0x1.5d589ep+6f, 0x1.00004cp-126f},                         // just above the subnormal range
        {-0x1.9fe368p+6f, 0x1p-149f},                                // smallest input with a nonzero result
        {-0x1.9fe36ap+6f, 0.0f},                                     // largest input that underflows to 0
        {-std::numeric_limits<float>::infinity(), 0.0f},
    };
    for (const auto& kv : known)
        CHECK(exp_ref(kv.x).value == kv.cr, "exp_ref(%a) = %a, correctly rounded %a", kv.x, exp_ref(kv.x).value, kv.cr);
    CHECK(std::isnan(exp_ref(std::numeric_limits<float>::quiet_NaN()).value), "exp_ref(NaN)");
}

void sweep_f32(const std::vector<const normexp::kernel_table*>& ks, std::uint32_t step, unsigned nthreads) {
    const auto t0 = std::chrono::steady_clock::now();
    // Split [0, 2^32) into many more ranges than threads (work differs across the range: the
    // saturating inputs are cheap) and let threads take them in turn.
    const std::uint64_t total = std::uint64_t(1) << 32, nranges = 4096;
    const std::uint64_t per = (total / nranges / step + 1) * step;  // a multiple of step: one global lattice
    std::atomic<std::uint64_t> next{0};
    std::vector<std::vector<sweep_stats>> part(nthreads, std::vector<sweep_stats>(ks.size()));
    std::vector<ref_stats> rpart(nthreads);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < nthreads; ++t)
        pool.emplace_back([&, t] {
            for (std::uint64_t r; (r = next.fetch_add(1)) * per < total;)
                sweep_range(ks, r * per, std::min(total, (r + 1) * per), step, part[t], rpart[t]);
        });
    for (auto& th : pool) th.join();
    ref_stats rs;
    for (const auto& r : rpart) rs.recomputed += r.recomputed, rs.undecided += r.undecided;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("float32 exp sweep: step %u, %u threads, %.1f s for %zu ISAs; reference: %llu near-midpoint inputs "
                "recomputed in long double, %llu undecided\n",
                step, nthreads, secs, ks.size(), static_cast<unsigned long long>(rs.recomputed),
                static_cast<unsigned long long>(rs.undecided));
    CHECK(rs.undecided == 0, "%llu inputs where the reference could not decide the rounding",
          static_cast<unsigned long long>(rs.undecided));

    for (std::size_t j = 0; j < ks.size(); ++j) {
        const normexp::kernel_table& k = *ks[j];
        sweep_stats s;
        for (const auto& p : part) s.merge(p[j]);
        // Special inputs.
        const float inf = std::numeric_limits<float>::infinity();
        const float specials[] = {inf, -inf, std::numeric_limits<float>::quiet_NaN(), 88.72283f, 88.7229f, -87.33654f,
                                  -103.97208f, -103.279f, 1e30f, -1e30f, 0.0f, -0.0f, 0x1p-149f, -0x1p-149f};
        for (float sp : specials) {
            float out;
            k.f32.exp(&sp, &out, 1);
            const float ref = exp_ref(sp).value;
            CHECK(check::ulp_diff(out, ref) <= 1, "%s exp(%a) = %a, expected %a", k.name, sp, out, ref);
        }
        std::printf(
            "%-7s float32 exp: %llu inputs: max error %.0f ULP at x = %a (%.9g): got %a, correctly rounded %a; "
            "%llu results (%.4f%%) not correctly rounded\n",
            k.name, static_cast<unsigned long long>(s.count), s.worst, s.worst_x, s.worst_x, s.worst_got, s.worst_ref,
            static_cast<unsigned long long>(s.not_cr), 100.0 * double(s.not_cr) / double(s.count));
        CHECK(s.worst <= 1, "%s float32 exp max error %.0f ULP at x = %a", k.name, s.worst, s.worst_x);
        if (step == 1)
            CHECK(s.count == (std::uint64_t(1) << 32), "exhaustive sweep covered %llu inputs",
                  static_cast<unsigned long long>(s.count));
    }
}

// The fast exp over t = every step-th float32 in [-104, 0] (bit patterns from -0 up to -104), split into
// ranges that threads take in turn, as sweep_f32.
void sweep_fast_f32(const std::vector<const normexp::kernel_table*>& ks, std::uint32_t step, unsigned nthreads) {
    const std::uint32_t b_lo = 0x80000000u, b_hi = 0xc2d00000u;  // -0 and -104 (0xc2d00000), inclusive
    struct stats {
        double worst = 0, worst_ratio = 0;
        float worst_t = 0, ratio_t = 0;
        std::uint64_t count = 0;
    };
    const std::uint64_t total = std::uint64_t(b_hi - b_lo) + 1, nranges = 1024;
    const std::uint64_t per = (total / nranges / step + 1) * step;
    std::atomic<std::uint64_t> next{0};
    std::vector<std::vector<stats>> part(nthreads, std::vector<stats>(ks.size()));
    std::vector<std::thread> pool;
    for (unsigned th = 0; th < nthreads; ++th)
        pool.emplace_back([&, th] {
            constexpr std::size_t B = 4096;
            std::vector<float> x(B), y(B);
            for (std::uint64_t r; (r = next.fetch_add(1)) * per < total;) {
                const std::uint64_t hi = std::min(total, (r + 1) * per);
                for (std::uint64_t o = r * per; o < hi;) {
                    std::size_t n = 0;
                    for (; n < B && o < hi; ++n, o += step) x[n] = from_bits(static_cast<std::uint32_t>(b_lo + o));
                    for (std::size_t j = 0; j < ks.size(); ++j) {
                        ks[j]->f32_fast.row_exp_store(x.data(), y.data(), n, 0.0f, normexp::scale2<float>{1.0f, 0.0f});
                        stats& s = part[th][j];
                        for (std::size_t i = 0; i < n; ++i) {
                            const double ref = std::exp(static_cast<double>(x[i])), t = std::fabs(double(x[i]));
                            const double err = std::fabs(double(y[i]) - ref);
                            const double rel = err / ref;  // ref > 0 on [-104, 0]
                            const double bound =
                                (1.3 * 0x1p-23 + t * 0x1p-28) * ref + (ref < 0x1p-126 ? 0x1p-149 : 0.0);
                            if (err / bound > s.worst) s.worst = err / bound, s.worst_t = x[i];
                            if (ref >= 0x1p-126 && rel / (0x1p-22 + t * 0x1p-24) > s.worst_ratio)
                                s.worst_ratio = rel / (0x1p-22 + t * 0x1p-24), s.ratio_t = x[i];
                        }
                        s.count += n;
                    }
                }
            }
        });
    for (auto& t : pool) t.join();
    for (std::size_t j = 0; j < ks.size(); ++j) {
        stats s;
        for (const auto& p : part) {
            const stats& q = p[j];
            if (q.worst > s.worst) s.worst = q.worst, s.worst_t = q.worst_t;
            if (q.worst_ratio > s.worst_ratio) s.worst_ratio = q.worst_ratio, s.ratio_t = q.ratio_t;
            s.count += q.count;
        }
        std::printf("%-7s float32 fast exp: %llu inputs in [-104, 0]: max error %.3f of its bound (t = %a), %.3f "
                    "of the fast mode's 2^-22 + |t| 2^-24 (t = %a)\n",
                    ks[j]->name, static_cast<unsigned long long>(s.count), s.worst, s.worst_t, s.worst_ratio,
                    s.ratio_t);
        CHECK(s.worst <= 1, "%s float32 fast exp error %.3f of its bound at t = %a", ks[j]->name, s.worst, s.worst_t);
        if (step == 1)
            CHECK(s.count == total, "fast exp sweep covered %llu inputs", static_cast<unsigned long long>(s.count));
    }
}

void sample_f64(const normexp::kernel_table& k, std::size_t n) {
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> u(-745.0, 709.7);
    std::vector<double> x(n), y(n);
    for (auto& v : x) v = u(rng);
    for (std::size_t i = 0; i < 1000; ++i) x[i] = std::ldexp(u(rng), -40);  // near 0
    k.f64.exp(x.data(), y.data(), n);
    double worst = 0, worst_x = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double ref = static_cast<double>(std::exp(static_cast<long double>(x[i])));
        const double e = check::ulp_diff(y[i], ref);
        if (e > worst) worst = e, worst_x = x[i];
    }
    std::printf("%-7s float64 exp: %zu inputs, max error %.0f ULP (at x = %a)\n", k.name, n, worst, worst_x);
    CHECK(worst <= 1, "%s float64 exp max error %.0f ULP at x = %a", k.name, worst, worst_x);
}

unsigned env_uint(const char* name, unsigned dflt) {
    const char* s = std::getenv(name);
    return s && *s ? static_cast<unsigned>(std::strtoul(s, nullptr, 10)) : dflt;
}

}  // namespace

int main() {
    const std::uint32_t step = std::max(1u, env_uint("NORMEXP_EXP_SWEEP_STEP", 97));
    const unsigned nthreads = std::max(1u, env_uint("NORMEXP_EXP_SWEEP_THREADS", std::thread::hardware_concurrency()));
    check_reference();
    std::vector<const normexp::kernel_table*> ks;
    for (const auto& name : normexp::detail::available_isas()) ks.push_back(&normexp::detail::kernels_for(name));
    sweep_f32(ks, step, nthreads);
    sweep_fast_f32(ks, step, nthreads);
    // float64: random inputs over the whole non-saturating range (NORMEXP_EXP_F64_SAMPLES, default 10M;
    // ci/cross_aarch64.sh and ci/sanitizers.sh take fewer: their long double reference is emulated or slow).
    const std::size_t n64 = std::max(1000u, env_uint("NORMEXP_EXP_F64_SAMPLES", 10'000'000u));
    for (const auto* k : ks) sample_f64(*k, n64);
    return check::finish("test_exp");
}
