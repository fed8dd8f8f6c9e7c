// The C API (normexp/normexp.h) through its public symbols only (this test links the library as a
// consumer does, so in a shared build it also proves the C API is exported):
//  * results equal the C++ API's bit for bit (same driver and kernels underneath, so the bound is 0),
//    and are close to a long double reference (bounds below);
//  * y == x (in place) gives the out-of-place result bit for bit;
//  * every kind of bad argument returns its documented code, sets a message naming the function,
//    leaves the output untouched, and a success clears the message; messages are per thread;
//  * isa, threads, version, status strings.
// Run with the argument "bad-isa" under NORMEXP_ISA=bogus (a separate ctest entry), it checks that an
// unusable NORMEXP_ISA is NORMEXP_ERROR_ISA for every reduction and NULL from normexp_isa().
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.h"
#include "normexp/normexp.hpp"

namespace {

template <class T>
struct capi;
template <>
struct capi<float> {
    static constexpr auto softmax = normexp_softmax_f32;
    static constexpr auto log_softmax = normexp_log_softmax_f32;
    static constexpr auto logsumexp = normexp_logsumexp_f32;
    static constexpr auto softmax_ex = normexp_softmax_ex_f32;
    static constexpr auto log_softmax_ex = normexp_log_softmax_ex_f32;
    static constexpr auto logsumexp_ex = normexp_logsumexp_ex_f32;
    static constexpr const char* suffix = "f32";
};
template <>
struct capi<double> {
    static constexpr auto softmax = normexp_softmax_f64;
    static constexpr auto log_softmax = normexp_log_softmax_f64;
    static constexpr auto logsumexp = normexp_logsumexp_f64;
    static constexpr auto softmax_ex = normexp_softmax_ex_f64;
    static constexpr auto log_softmax_ex = normexp_log_softmax_ex_f64;
    static constexpr auto logsumexp_ex = normexp_logsumexp_ex_f64;
    static constexpr const char* suffix = "f64";
};

template <class T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0 || (std::isnan(a) && std::isnan(b));
}

template <class T>
std::vector<T> random_matrix(std::mt19937_64& rng, std::size_t n, double spread) {
    std::normal_distribution<double> d(0.0, spread);
    std::vector<T> x(n);
    for (auto& v : x) v = static_cast<T>(d(rng));
    return x;
}

// Reference in long double for one row.
template <class T>
void reference(const T* x, std::size_t cols, std::vector<long double>& sm, std::vector<long double>& lsm,
               long double& lse) {
    long double m = -std::numeric_limits<long double>::infinity();
    for (std::size_t j = 0; j < cols; ++j) m = std::max<long double>(m, x[j]);
    long double s = 0;
    for (std::size_t j = 0; j < cols; ++j) s += std::exp(static_cast<long double>(x[j]) - m);
    lse = m + std::log(s);
    sm.resize(cols);
    lsm.resize(cols);
    for (std::size_t j = 0; j < cols; ++j) {
        sm[j] = std::exp(static_cast<long double>(x[j]) - m) / s;
        lsm[j] = static_cast<long double>(x[j]) - lse;
    }
}

template <class T>
void check_results() {
    using C = capi<T>;
    std::mt19937_64 rng(42);
    // Relative error bounds against the long double reference: the contract is a few ULP; 8 ULP of
    // the type leaves room for exp (1 ULP), the scaling and the reference's own rounding to T.
    const double eps = std::numeric_limits<T>::epsilon(), rel = 8 * eps;
    // Column counts around the vector widths, a long in-cache row, and rows longer than the driver's
    // super-chunk (65536) and in-cache limit, which take the two-pass, multi-threaded path.
    const std::size_t cols_list[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 70001};
    for (std::size_t cols : cols_list) {
        for (std::size_t rows : {std::size_t(1), std::size_t(3)}) {
            const double spread = cols > 100 ? 3.0 : 30.0;
            const std::size_t n = rows * cols;
            const std::vector<T> x = random_matrix<T>(rng, n, spread);
            std::vector<T> y(n), y_cpp(n), y_in(x), l(n), l_cpp(n), l_in(x), s(rows), s_cpp(rows);
            CHECK(C::softmax(x.data(), y.data(), rows, cols) == NORMEXP_OK, "softmax %s %zux%zu: %s", C::suffix, rows, cols,
                  normexp_last_error());
            CHECK(*normexp_last_error() == '\0', "a success leaves the message empty, got '%s'", normexp_last_error());
            CHECK(C::log_softmax(x.data(), l.data(), rows, cols) == NORMEXP_OK, "log_softmax %s: %s", C::suffix,
                  normexp_last_error());
            CHECK(C::logsumexp(x.data(), s.data(), rows, cols) == NORMEXP_OK, "logsumexp %s: %s", C::suffix,
                  normexp_last_error());
            CHECK(C::softmax(y_in.data(), y_in.data(), rows, cols) == NORMEXP_OK, "in-place softmax: %s", normexp_last_error());
            CHECK(C::log_softmax(l_in.data(), l_in.data(), rows, cols) == NORMEXP_OK, "in-place log_softmax: %s",
                  normexp_last_error());
            normexp::softmax<T>(x.data(), y_cpp.data(), rows, cols);
            normexp::log_softmax<T>(x.data(), l_cpp.data(), rows, cols);
            normexp::logsumexp<T>(x.data(), s_cpp.data(), rows, cols);

            int bad_same = 0, bad_inplace = 0, bad_ref = 0;
            double worst = 0;
            std::vector<long double> sm, lsm;
            for (std::size_t r = 0; r < rows; ++r) {
                long double lse;
                reference(x.data() + r * cols, cols, sm, lsm, lse);
                bad_same += !same_bits(s[r], s_cpp[r]);
                const double es = double(std::fabs((s[r] - lse) / lse));
                if (!(es <= rel || std::fabs(double(s[r] - lse)) <= rel)) ++bad_ref, worst = std::max(worst, es);
                for (std::size_t j = 0; j < cols; ++j) {
                    const std::size_t i = r * cols + j;
                    bad_same += !same_bits(y[i], y_cpp[i]) + !same_bits(l[i], l_cpp[i]);
                    bad_inplace += !same_bits(y[i], y_in[i]) + !same_bits(l[i], l_in[i]);
                    // softmax: relative (values are probabilities, down to subnormal: those compare
                    // absolutely at the smallest normal). log_softmax: relative, or absolute near 0.
                    const long double tiny = std::numeric_limits<T>::min();
                    const double e1 = double(std::fabs(y[i] - sm[j]) / std::max(sm[j], tiny));
                    const double e2 = double(std::fabs(l[i] - lsm[j]) / std::max<long double>(std::fabs(lsm[j]), 1));
                    if (!(e1 <= rel && e2 <= rel)) ++bad_ref, worst = std::max(worst, std::max(e1, e2));
                }
            }
            CHECK(bad_same == 0, "%s %zux%zu: %d outputs differ from the C++ API", C::suffix, rows, cols, bad_same);
            CHECK(bad_inplace == 0, "%s %zux%zu: %d in-place outputs differ", C::suffix, rows, cols, bad_inplace);
            CHECK(bad_ref == 0, "%s %zux%zu: %d outputs off the reference by more than %g (worst %g)", C::suffix, rows, cols,
                  bad_ref, rel, worst);
        }
    }
}

template <class T>
void check_special_values() {
    using C = capi<T>;
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    // rows: all -inf; contains NaN; contains +inf; finite with one -inf.
    const std::vector<T> x = {-inf, -inf, -inf, 1, nan, 2, 1, inf, 2, 0, -inf, 0};
    const std::size_t rows = 4, cols = 3;
    std::vector<T> y(12), y_cpp(12), l(12), l_cpp(12), s(4), s_cpp(4);
    CHECK(C::softmax(x.data(), y.data(), rows, cols) == NORMEXP_OK, "special softmax: %s", normexp_last_error());
    CHECK(C::log_softmax(x.data(), l.data(), rows, cols) == NORMEXP_OK, "special log_softmax: %s", normexp_last_error());
    CHECK(C::logsumexp(x.data(), s.data(), rows, cols) == NORMEXP_OK, "special logsumexp: %s", normexp_last_error());
    normexp::softmax<T>(x.data(), y_cpp.data(), rows, cols);
    normexp::log_softmax<T>(x.data(), l_cpp.data(), rows, cols);
    normexp::logsumexp<T>(x.data(), s_cpp.data(), rows, cols);
    for (std::size_t i = 0; i < 12; ++i) {
        CHECK(same_bits(y[i], y_cpp[i]) && same_bits(l[i], l_cpp[i]), "special value %zu differs from the C++ API", i);
    }
    for (std::size_t r = 0; r < 4; ++r) CHECK(same_bits(s[r], s_cpp[r]), "special logsumexp row %zu", r);
    // SciPy's conventions, spelled out.
    CHECK(s[0] == -inf && std::isnan(y[0]), "all -inf row: logsumexp -inf, softmax NaN");
    CHECK(std::isnan(s[1]) && std::isnan(y[3]), "NaN row: NaN");
    CHECK(s[2] == inf, "+inf row: logsumexp +inf");
    CHECK(y[10] == 0 && l[10] == -inf && y[9] == T(0.5), "a -inf entry has probability 0");
}

// A failing call returns `code`, names `fn` in the message and leaves `y` (n values) untouched.
template <class T, class F>
void expect_fail(const char* what, int code, const char* fn, F&& call, const T* y = nullptr, std::size_t n = 0) {
    const std::vector<T> before = y ? std::vector<T>(y, y + n) : std::vector<T>();  // (y, y + 0) from null: -Wnonnull
    const int rc = call();
    CHECK(rc == code, "%s: expected %d (%s), got %d (%s)", what, code, normexp_status_string(code), rc,
          normexp_status_string(rc));
    const std::string msg = normexp_last_error();
    CHECK(msg.find(fn) != std::string::npos && msg.size() > std::strlen(fn) + 4, "%s: message '%s' should name %s", what,
          msg.c_str(), fn);
    for (std::size_t i = 0; i < n; ++i) CHECK(same_bits(y[i], before[i]), "%s: output %zu modified", what, i);
}

// The plain functions (Acc < 0) or the _ex ones with accuracy Acc, under one signature, so that
// check_errors holds the _ex functions to every rule of the plain ones.
template <class T, int Acc>
struct variant {
    using C = capi<T>;
    static int softmax(const T* x, T* y, std::size_t r, std::size_t c) {
        if constexpr (Acc < 0) return C::softmax(x, y, r, c); else return C::softmax_ex(x, y, r, c, Acc);
    }
    static int log_softmax(const T* x, T* y, std::size_t r, std::size_t c) {
        if constexpr (Acc < 0) return C::log_softmax(x, y, r, c); else return C::log_softmax_ex(x, y, r, c, Acc);
    }
    static int logsumexp(const T* x, T* out, std::size_t r, std::size_t c) {
        if constexpr (Acc < 0) return C::logsumexp(x, out, r, c); else return C::logsumexp_ex(x, out, r, c, Acc);
    }
    static std::string name(const char* op) { return std::string("normexp_") + op + (Acc < 0 ? "_" : "_ex_") + C::suffix; }
};

template <class T, int Acc = -1>
void check_errors() {
    using C = variant<T, Acc>;
    const std::string sm = C::name("softmax"), lsm = C::name("log_softmax"), lse = C::name("logsumexp");
    std::vector<T> x(64, T(1)), y(64, T(7)), s(8, T(7));
    const std::size_t big = std::numeric_limits<std::size_t>::max();
    const std::size_t max_elems = std::size_t(PTRDIFF_MAX) / sizeof(T);
    for (auto f : {C::softmax, C::log_softmax}) {
        const char* fn = f == C::softmax ? sm.c_str() : lsm.c_str();
        expect_fail<T>("null x", NORMEXP_ERROR_NULL_POINTER, fn, [&] { return f(nullptr, y.data(), 2, 3); }, y.data(), 64);
        expect_fail<T>("null y", NORMEXP_ERROR_NULL_POINTER, fn, [&] { return f(x.data(), nullptr, 2, 3); });
        expect_fail<T>("zero rows", NORMEXP_ERROR_INVALID_SIZE, fn, [&] { return f(x.data(), y.data(), 0, 3); }, y.data(), 64);
        expect_fail<T>("zero cols", NORMEXP_ERROR_INVALID_SIZE, fn, [&] { return f(x.data(), y.data(), 3, 0); }, y.data(), 64);
        expect_fail<T>("rows*cols overflows", NORMEXP_ERROR_INVALID_SIZE, fn, [&] { return f(x.data(), y.data(), big / 2 + 1, 2); },
                       y.data(), 64);
        expect_fail<T>("negative rows", NORMEXP_ERROR_INVALID_SIZE, fn,
                       [&] { return f(x.data(), y.data(), static_cast<std::size_t>(-1), 1); }, y.data(), 64);
        expect_fail<T>("bytes exceed PTRDIFF_MAX", NORMEXP_ERROR_INVALID_SIZE, fn,
                       [&] { return f(x.data(), y.data(), 1, max_elems + 1); }, y.data(), 64);
        expect_fail<T>("y = x + 1", NORMEXP_ERROR_OVERLAP, fn, [&] { return f(x.data(), x.data() + 1, 2, 3); }, x.data(), 64);
        expect_fail<T>("y = x - 5", NORMEXP_ERROR_OVERLAP, fn, [&] { return f(x.data() + 5, x.data(), 2, 3); }, x.data(), 64);
        // Adjacent buffers do not overlap.
        CHECK(f(x.data(), x.data() + 6, 2, 3) == NORMEXP_OK, "%s: adjacent y must be accepted: %s", fn, normexp_last_error());
        std::fill(x.begin(), x.end(), T(1));
    }
    expect_fail<T>("null x", NORMEXP_ERROR_NULL_POINTER, lse.c_str(), [&] { return C::logsumexp(nullptr, s.data(), 2, 3); },
                   s.data(), 8);
    expect_fail<T>("null out", NORMEXP_ERROR_NULL_POINTER, lse.c_str(), [&] { return C::logsumexp(x.data(), nullptr, 2, 3); });
    expect_fail<T>("zero cols", NORMEXP_ERROR_INVALID_SIZE, lse.c_str(), [&] { return C::logsumexp(x.data(), s.data(), 2, 0); },
                   s.data(), 8);
    expect_fail<T>("zero rows", NORMEXP_ERROR_INVALID_SIZE, lse.c_str(), [&] { return C::logsumexp(x.data(), s.data(), 0, 2); },
                   s.data(), 8);
    expect_fail<T>("overflow", NORMEXP_ERROR_INVALID_SIZE, lse.c_str(), [&] { return C::logsumexp(x.data(), s.data(), big, big); },
                   s.data(), 8);
    expect_fail<T>("out == x", NORMEXP_ERROR_OVERLAP, lse.c_str(), [&] { return C::logsumexp(x.data(), x.data(), 2, 3); },
                   x.data(), 64);
    expect_fail<T>("out inside x", NORMEXP_ERROR_OVERLAP, lse.c_str(), [&] { return C::logsumexp(x.data(), x.data() + 5, 2, 3); },
                   x.data(), 64);
    expect_fail<T>("x ends inside out", NORMEXP_ERROR_OVERLAP, lse.c_str(),
                   [&] { return C::logsumexp(x.data() + 1, x.data(), 2, 3); }, x.data(), 64);
    CHECK(C::logsumexp(x.data(), x.data() + 6, 2, 3) == NORMEXP_OK, "adjacent out must be accepted: %s", normexp_last_error());
    CHECK(*normexp_last_error() == '\0', "the success after a failure clears the message");
}

void check_thread_local_messages() {
    float x[6] = {0, 1, 2, 3, 4, 5}, y[6];
    CHECK(normexp_softmax_f32(nullptr, y, 2, 3) == NORMEXP_ERROR_NULL_POINTER, "null x");
    std::string other;
    int other_rc = -1;
    std::thread t([&] {
        other = normexp_last_error();  // a fresh thread has no error
        other_rc = normexp_softmax_f32(x, y, 0, 3);
        other += "|";
        other += normexp_last_error();
    });
    t.join();
    CHECK(other_rc == NORMEXP_ERROR_INVALID_SIZE, "zero rows in a thread");
    CHECK(other.rfind("|", 0) == 0 && other.find("sizes") != std::string::npos,
          "a new thread starts with an empty message and sees only its own: '%s'", other.c_str());
    CHECK(std::string(normexp_last_error()).find("x is NULL") != std::string::npos,
          "this thread's message is unchanged by the other thread: '%s'", normexp_last_error());
}

void check_library_functions() {
    const char* isa = normexp_isa();
    CHECK(isa != nullptr && std::string(isa) == normexp::isa(), "normexp_isa() = %s, normexp::isa() = %s", isa ? isa : "NULL",
          normexp::isa());
    bool listed = false;
    for (const auto& a : normexp::available_isas()) listed |= isa && a == isa;
    CHECK(listed, "the active ISA is one of available_isas()");

    const int initial = normexp_get_num_threads();
    CHECK(initial >= 1, "get_num_threads() >= 1, got %d", initial);
    normexp_set_num_threads(1);
    CHECK(normexp_get_num_threads() == 1 && normexp::get_num_threads() == 1, "set_num_threads(1)");
    normexp_set_num_threads(-3);  // <= 0: as many as OpenMP allows
    CHECK(normexp_get_num_threads() == initial, "set_num_threads(-3) restores the default %d, got %d", initial,
          normexp_get_num_threads());
    normexp_set_num_threads(0);

    CHECK(std::string(normexp_version()) == NORMEXP_VERSION_STRING, "library %s vs header %s", normexp_version(),
          NORMEXP_VERSION_STRING);
    CHECK(std::string(normexp_version()) == normexp::version(), "C and C++ version strings");
    for (int a = NORMEXP_OK; a <= NORMEXP_ERROR_INTERNAL; ++a) {
        CHECK(std::string(normexp_status_string(a)) != "unknown status", "status %d has a description", a);
        for (int b = NORMEXP_OK; b < a; ++b)
            CHECK(std::string(normexp_status_string(a)) != normexp_status_string(b), "statuses %d and %d differ", a, b);
    }
    CHECK(std::string(normexp_status_string(-1)) == "unknown status", "unknown status -1");
    CHECK(std::string(normexp_status_string(1000)) == "unknown status", "unknown status 1000");
}

// Under NORMEXP_ISA=bogus: every reduction reports NORMEXP_ERROR_ISA with NORMEXP_ISA's message.
int run_bad_isa() {
    float xf[4] = {1, 2, 3, 4}, yf[4];
    double xd[4] = {1, 2, 3, 4}, yd[4];
    CHECK(normexp_isa() == nullptr, "normexp_isa() is NULL when NORMEXP_ISA is unusable");
    CHECK(std::string(normexp_last_error()).find("NORMEXP_ISA") != std::string::npos, "message: '%s'",
          normexp_last_error());
    const int rcs[] = {normexp_softmax_f32(xf, yf, 2, 2), normexp_log_softmax_f32(xf, yf, 2, 2),
                       normexp_logsumexp_f32(xf, yf, 2, 2), normexp_softmax_f64(xd, yd, 2, 2),
                       normexp_log_softmax_f64(xd, yd, 2, 2), normexp_logsumexp_f64(xd, yd, 2, 2)};
    for (int rc : rcs) CHECK(rc == NORMEXP_ERROR_ISA, "expected NORMEXP_ERROR_ISA, got %d", rc);
    CHECK(std::string(normexp_last_error()).find("normexp_logsumexp_f64: NORMEXP_ISA") == 0, "message: '%s'",
          normexp_last_error());
    // Argument errors are still reported first (they need no kernels).
    CHECK(normexp_softmax_f32(nullptr, yf, 2, 2) == NORMEXP_ERROR_NULL_POINTER, "null before ISA");
    return check::finish("c_api (bad NORMEXP_ISA)");
}

}  // namespace

// The _ex functions: NORMEXP_ACCURACY_HIGH is the plain function bit for bit; FAST is within its bound of
// it on ordinary data (|x - m| < 30: 2 ULP + 30 * 2^-24 relative, ~32 ULP for float32); any other value is
// INVALID_ARGUMENT with a message naming accuracy, and nothing is written.
void check_accuracy_ex() {
    float x[2][40], y[2][40], yh[2][40], l[2][40], lh[2][40], s[2], sh[2];
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 40; ++c) x[r][c] = float((c * 7 + r * 3) % 23) - 11.5f;
    CHECK(normexp_softmax_f32(&x[0][0], &yh[0][0], 2, 40) == NORMEXP_OK, "softmax");
    CHECK(normexp_log_softmax_f32(&x[0][0], &lh[0][0], 2, 40) == NORMEXP_OK, "log_softmax");
    CHECK(normexp_logsumexp_f32(&x[0][0], sh, 2, 40) == NORMEXP_OK, "logsumexp");
    CHECK(normexp_softmax_ex_f32(&x[0][0], &y[0][0], 2, 40, NORMEXP_ACCURACY_HIGH) == NORMEXP_OK, "softmax_ex high");
    CHECK(std::memcmp(y, yh, sizeof y) == 0, "softmax_ex high is softmax");
    CHECK(normexp_softmax_ex_f32(&x[0][0], &y[0][0], 2, 40, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "softmax_ex fast");
    CHECK(normexp_log_softmax_ex_f32(&x[0][0], &l[0][0], 2, 40, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "log_softmax_ex");
    CHECK(normexp_logsumexp_ex_f32(&x[0][0], s, 2, 40, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "logsumexp_ex");
    float z[2][40];  // in place (y == x) is the out-of-place result bit for bit, in the fast mode too
    std::memcpy(z, x, sizeof z);
    CHECK(normexp_softmax_ex_f32(&z[0][0], &z[0][0], 2, 40, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "softmax_ex in place");
    CHECK(std::memcmp(z, y, sizeof z) == 0, "softmax_ex fast in place");
    std::memcpy(z, x, sizeof z);
    CHECK(normexp_log_softmax_ex_f32(&z[0][0], &z[0][0], 2, 40, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "log_softmax_ex in place");
    CHECK(std::memcmp(z, l, sizeof z) == 0, "log_softmax_ex fast in place");
    for (int r = 0; r < 2; ++r) {
        CHECK(std::fabs(s[r] - sh[r]) <= 4e-6f * std::fabs(sh[r]) + 1e-6f, "logsumexp fast %g vs %g", s[r], sh[r]);
        for (int c = 0; c < 40; ++c) {
            CHECK(check::ulp_diff(y[r][c], yh[r][c]) <= 40, "softmax fast %g vs %g", y[r][c], yh[r][c]);
            CHECK(std::fabs(l[r][c] - lh[r][c]) <= 4e-6f * (std::fabs(lh[r][c]) + 12), "log_softmax fast");
        }
    }
    double xd[3] = {1, 2, 3}, yd[3] = {7, 7, 7};
    CHECK(normexp_softmax_ex_f64(xd, yd, 1, 3, 2) == NORMEXP_ERROR_INVALID_ARGUMENT, "accuracy 2 refused");
    CHECK(std::strstr(normexp_last_error(), "accuracy") != nullptr, "message names accuracy: %s", normexp_last_error());
    CHECK(yd[0] == 7 && yd[2] == 7, "nothing written after a refused accuracy");
    CHECK(normexp_logsumexp_ex_f64(xd, yd, 1, 3, -1) == NORMEXP_ERROR_INVALID_ARGUMENT, "accuracy -1 refused");
    for (const int bad : {2, -1, 7, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()}) {
        for (auto f : {normexp_softmax_ex_f64, normexp_log_softmax_ex_f64, normexp_logsumexp_ex_f64})
            CHECK(f(xd, yd, 1, 3, bad) == NORMEXP_ERROR_INVALID_ARGUMENT, "accuracy %d refused", bad);
        // The accuracy is checked first: a bad one is reported whatever the other arguments are.
        CHECK(normexp_softmax_ex_f32(nullptr, nullptr, 0, 0, bad) == NORMEXP_ERROR_INVALID_ARGUMENT, "accuracy %d first", bad);
        CHECK(std::strstr(normexp_last_error(), "normexp_softmax_ex_f32: accuracy") != nullptr, "%s", normexp_last_error());
    }
    CHECK(yd[0] == 7 && yd[2] == 7, "nothing written after a refused accuracy");
    CHECK(normexp_log_softmax_ex_f64(xd, yd, 1, 3, NORMEXP_ACCURACY_FAST) == NORMEXP_OK, "f64 fast");
    CHECK(std::fabs(yd[2] - (-0.40760596444438013)) <= 1e-15, "f64 fast log_softmax %.17g", yd[2]);
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "bad-isa") return run_bad_isa();
    CHECK(*normexp_last_error() == '\0', "no error before the first call");
    check_results<float>();
    check_results<double>();
    check_special_values<float>();
    check_special_values<double>();
    check_errors<float>();
    check_errors<double>();
    check_errors<float, NORMEXP_ACCURACY_HIGH>();
    check_errors<double, NORMEXP_ACCURACY_HIGH>();
    check_errors<float, NORMEXP_ACCURACY_FAST>();
    check_errors<double, NORMEXP_ACCURACY_FAST>();
    check_thread_local_messages();
    check_library_functions();
    check_accuracy_ex();
    return check::finish("c_api");
}
