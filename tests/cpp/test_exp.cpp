// ULP error of every ISA's float32 and float64 exp kernel against a reference.
//
// float32: every step-th float32 bit pattern in [-104, 88.8] (default step 97, about 23M inputs; set
// NORMEXP_EXP_SWEEP_STEP=1 for the exhaustive sweep). Reference: glibc's double exp rounded to float32;
// its error (< 1 double ULP) can only matter for results within 2^-29 of a float32 rounding boundary.
// Bound asserted: 1 ULP (what the polynomial's 0.05 ULP approximation error plus the Horner rounding
// gives; a wrong coefficient or range reduction shows up as thousands of ULP).
// float64: a stratified sample of 10M inputs in [-745, 709.7]; reference long double expl (64-bit
// significand on x86, 113-bit software quad on aarch64); bound 1 ULP.
#include <cstdlib>
#include <random>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "normexp/normexp.hpp"

namespace {

void sweep_f32(const normexp::kernel_table& k, std::uint32_t step) {
    constexpr std::size_t B = 1 << 16;
    std::vector<float> x(B), y(B);
    double worst = 0;
    float worst_x = 0;
    std::uint64_t count = 0;
    auto run = [&](std::size_t n) {
        k.f32.exp(x.data(), y.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            const float ref = static_cast<float>(std::exp(static_cast<double>(x[i])));
            const double u = check::ulp_diff(y[i], ref);
            if (u > worst) worst = u, worst_x = x[i];
        }
        count += n;
    };
    // Both signs: bit patterns from +0 up to 88.8, and from -0 down to -104.
    const std::uint32_t hi_pos = 0x42B1999Au, hi_neg = 0xC2D00000u;
    for (int sign = 0; sign < 2; ++sign) {
        const std::uint32_t lo = sign ? 0x80000000u : 0u, hi = sign ? hi_neg : hi_pos;
        std::size_t n = 0;
        for (std::uint64_t b = lo; b <= hi; b += step) {
            const std::uint32_t bits = static_cast<std::uint32_t>(b);
            std::memcpy(&x[n], &bits, 4);
            if (++n == B) run(n), n = 0;
        }
        if (n) run(n);
    }
    // Special inputs.
    const float inf = std::numeric_limits<float>::infinity();
    const float specials[] = {inf, -inf, std::numeric_limits<float>::quiet_NaN(), 88.72283f, 88.7229f, -87.33654f,
                              -103.97208f, -103.279f, 1e30f, -1e30f};
    for (float s : specials) {
        float out;
        k.f32.exp(&s, &out, 1);
        const float ref = static_cast<float>(std::exp(static_cast<double>(s)));
        CHECK(check::ulp_diff(out, ref) <= 1, "%s exp(%a) = %a, expected %a", k.name, s, out, ref);
    }
    std::printf("%-7s float32 exp: %llu inputs, max error %.0f ULP (at x = %a)\n", k.name,
                static_cast<unsigned long long>(count), worst, worst_x);
    CHECK(worst <= 1, "%s float32 exp max error %.0f ULP at x = %a", k.name, worst, worst_x);
}

// The inputs and their long double reference are computed once and shared by every ISA (expl is
// software quad precision on aarch64, and by far the slowest part of this test under qemu).
struct f64_sample {
    std::vector<double> x, ref;
    f64_sample() : x(10'000'000), ref(x.size()) {
        std::mt19937_64 rng(42);
        std::uniform_real_distribution<double> u(-745.0, 709.7);
        for (auto& v : x) v = u(rng);
        for (std::size_t i = 0; i < 1000; ++i) x[i] = std::ldexp(u(rng), -40);  // near 0
        for (std::size_t i = 0; i < x.size(); ++i) ref[i] = static_cast<double>(std::exp(static_cast<long double>(x[i])));
    }
};

void sample_f64(const normexp::kernel_table& k, const f64_sample& s) {
    const std::size_t n = s.x.size();
    std::vector<double> y(n);
    k.f64.exp(s.x.data(), y.data(), n);
    double worst = 0, worst_x = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double e = check::ulp_diff(y[i], s.ref[i]);
        if (e > worst) worst = e, worst_x = s.x[i];
    }
    std::printf("%-7s float64 exp: %zu inputs, max error %.0f ULP (at x = %a)\n", k.name, n, worst, worst_x);
    CHECK(worst <= 1, "%s float64 exp max error %.0f ULP at x = %a", k.name, worst, worst_x);
}

}  // namespace

int main() {
    const char* s = std::getenv("NORMEXP_EXP_SWEEP_STEP");
    const std::uint32_t step = s ? static_cast<std::uint32_t>(std::strtoul(s, nullptr, 10)) : 97u;
    const f64_sample sample;
    for (const auto& name : normexp::detail::available_isas()) {
        const auto& k = normexp::detail::kernels_for(name);
        sweep_f32(k, step ? step : 1);
        sample_f64(k, sample);
    }
    return check::finish("test_exp");
}
