// The sampling kernels of every ISA this CPU runs against the scalar specification:
//  * row_sample_weights must be BIT-IDENTICAL to scalar (weights and block sums), at every length around
//    the vector width and the 64-entry block, with thresholds, -inf entries and temperatures; this is
//    what makes one seed give the same tokens on every ISA.
//  * the weights approximate exp(t): <= 3 ULP of float32 against a long double exp of the same float32
//    argument t (the Horner steps without FMA add ~2 roundings to the 0.05 ULP fit), 0 below t = -86.
//  * row_collect_ge returns exactly the scalar index list.
#include <cmath>
#include <random>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "kernels/sampling_weights.hpp"
#include "normexp/normexp.hpp"

namespace {

template <class T>
const normexp::reduction_kernels<T>& kern(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32; else return t.f64;
}

template <class T>
void test_weights(const normexp::kernel_table& kt, const normexp::kernel_table& ref) {
    const auto& k = kern<T>(kt);
    const auto& r = kern<T>(ref);
    std::mt19937_64 rng(5);
    std::vector<std::size_t> lengths;
    for (std::size_t n = 1; n <= 140; ++n) lengths.push_back(n);
    for (std::size_t n : {255, 256, 257, 1000, 4099, 32000}) lengths.push_back(n);
    double worst = 0;
    for (double temp : {1.0, 0.7, 3.0, 0.05}) {
        for (int kind = 0; kind < 3; ++kind) {
            std::normal_distribution<double> g(0.0, kind == 1 ? 30.0 : 4.0);
            for (std::size_t n : lengths) {
                std::vector<T> x(n);
                for (auto& v : x) v = T(g(rng));
                if (kind == 2) {
                    x[0] = -std::numeric_limits<T>::infinity();
                    x[n / 2] = T(1000);  // large values: x - m rounds in float32
                    for (std::size_t i = 1; i < n; i += 3) x[i] = T(1000) - T(i % 17) * T(0.37);
                }
                T m = -std::numeric_limits<T>::infinity();
                for (T v : x) m = std::max(m, v);
                const T beta = T(1.0 / temp);
                for (T thr : {-std::numeric_limits<T>::infinity(), T(m - 3), m}) {
                    const std::size_t nb = (n + 63) / 64;
                    std::vector<float> w1(n, -1.f), w2(n, -2.f), b1(nb, -1.f), b2(nb, -2.f);
                    k.row_sample_weights(x.data(), n, m, beta, thr, w1.data(), b1.data());
                    r.row_sample_weights(x.data(), n, m, beta, thr, w2.data(), b2.data());
                    CHECK(std::memcmp(w1.data(), w2.data(), n * sizeof(float)) == 0,
                          "%s weights differ from scalar bits n=%zu T=%g kind=%d", kt.name, n, temp, kind);
                    CHECK(std::memcmp(b1.data(), b2.data(), nb * sizeof(float)) == 0,
                          "%s block sums differ from scalar bits n=%zu T=%g kind=%d", kt.name, n, temp, kind);
                    // null outputs are allowed
                    std::vector<float> b3(nb, -3.f), w3(n, -3.f);
                    k.row_sample_weights(x.data(), n, m, beta, thr, nullptr, b3.data());
                    k.row_sample_weights(x.data(), n, m, beta, thr, w3.data(), nullptr);
                    CHECK(b3 == b1 && w3 == w1, "%s null outputs change results n=%zu", kt.name, n);
                    for (std::size_t i = 0; i < n; ++i) {
                        float t;
                        if constexpr (sizeof(T) == 4) t = (x[i] - m) * beta; else t = float((x[i] - m) * beta);
                        const bool kept = x[i] >= thr && t >= normexp::sampling::kSampleMinArg;
                        if (!kept) {
                            CHECK(w1[i] == 0.0f, "%s dropped entry has weight %g", kt.name, double(w1[i]));
                            continue;
                        }
                        const float e = float(std::exp((long double)t));
                        const double u = check::ulp_diff(w1[i], e);
                        worst = std::max(worst, u);
                        CHECK(u <= 3, "%s weight t=%a: %a vs %a (%g ULP)", kt.name, double(t), double(w1[i]), double(e), u);
                    }
                }
            }
        }
    }
    std::printf("%-7s %s sampling weights: bit-identical to scalar, max %.0f ULP from exp\n", kt.name,
                sizeof(T) == 4 ? "float32" : "float64", worst);
}

template <class T>
void test_collect(const normexp::kernel_table& kt, const normexp::kernel_table& ref) {
    const auto& k = kern<T>(kt);
    const auto& r = kern<T>(ref);
    std::mt19937_64 rng(9);
    std::normal_distribution<double> g(0.0, 1.0);
    for (std::size_t n = 0; n <= 300; ++n) {
        std::vector<T> x(n);
        for (auto& v : x) v = T(g(rng));
        if (n > 3) x[3] = std::numeric_limits<T>::quiet_NaN(), x[1] = -std::numeric_limits<T>::infinity();
        for (T thr : {-std::numeric_limits<T>::infinity(), T(-0.5), T(1.5), T(10)}) {
            std::vector<std::uint32_t> a(n + 1), b(n + 1);
            const std::size_t ca = k.row_collect_ge(x.data(), n, thr, a.data());
            const std::size_t cb = r.row_collect_ge(x.data(), n, thr, b.data());
            a.resize(ca);
            b.resize(cb);
            CHECK(a == b, "%s row_collect_ge n=%zu thr=%g: %zu vs %zu", kt.name, n, double(thr), ca, cb);
            std::size_t expect = 0;
            for (T v : x) expect += v >= thr;
            CHECK(cb == expect, "scalar row_collect_ge n=%zu count", n);
        }
    }
}

}  // namespace

int main() {
    const auto& ref = normexp::detail::kernels_for("scalar");
    for (const auto& name : normexp::detail::available_isas()) {
        const auto& kt = normexp::detail::kernels_for(name);
        test_weights<float>(kt, ref);
        test_weights<double>(kt, ref);
        test_collect<float>(kt, ref);
        test_collect<double>(kt, ref);
    }
    return check::finish("test_sampling_kernels");
}
