// Bit-for-bit regression of the reduction and sampling kernels (kernel_table.hpp: reduction_kernels).
//
// Every kernel of every available ISA table runs on a fixed, seeded set of cases, and each kernel's
// outputs (stored arrays, returned values) are hashed (FNV-1a 64 over the raw bytes) into one digest per
// (ISA, element type, kernel). The digests of a known-good build are recorded in kernel_digests.txt;
// this test fails if any digest of an ISA present in this build differs from the recorded one, so a
// refactor of the kernels that claims "no change in behaviour" is checked to the last bit.
//
// The cases: every length 0 .. 70 (every tail length 0 .. 2N+1 of every vector width in use, N <= 16, and
// the 8-vector pairwise blocks) plus longer rows; values of ordinary, wide, huge and tiny magnitude, with
// -inf, +inf, NaN, -0, subnormals and repeated maxima planted at varying positions (row_max/col_max
// also see NaN and +inf; the other kernels see rows whose maximum is finite, their precondition);
// temperatures 1, 0.7, 3e-3, 250 and extreme ones; column blocks of many widths around the vector
// widths and past the column panel (1024), with row strides larger than the width.
//
// Usage: test_kernel_digest FILE           compare with FILE (the ctest `kernel_digest`)
//        test_kernel_digest --print        print this build's digests (to record a new FILE)
// FILE lines: "<arch> <isa> <f32|f64> <kernel> <16 hex digits>"; '#' starts a comment. Lines of another
// architecture are skipped (the scalar digests may differ there: other libm, other compiler), but every
// (ISA, type, kernel) this build has must be in FILE.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "temperature.hpp"

namespace {

using normexp::scale2;

struct digest {
    std::uint64_t h = 0xcbf29ce484222325ull;
    void bytes(const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    }
    template <class T>
    void value(T v) { bytes(&v, sizeof v); }
    template <class T>
    void array(const std::vector<T>& v, std::size_t n) { bytes(v.data(), n * sizeof(T)); }
};

template <class T>
const normexp::reduction_kernels<T>& kern(const normexp::kernel_table& t) {
    if constexpr (sizeof(T) == 4) return t.f32; else return t.f64;
}

template <class T>
constexpr T inf = std::numeric_limits<T>::infinity();

// A row of n values of one of several kinds; `specials` plants special values.
template <class T>
std::vector<T> make_row(std::size_t n, int kind, bool allow_nan_pinf, std::mt19937_64& rng) {
    std::normal_distribution<double> g(0.0, 1.0);
    std::uniform_int_distribution<std::size_t> pos(0, n ? n - 1 : 0);
    std::vector<T> x(n);
    const double big = sizeof(T) == 4 ? 1e30 : 1e300, tiny = sizeof(T) == 4 ? 1e-30 : 1e-300;
    for (auto& v : x) {
        switch (kind % 6) {
            case 0: v = T(g(rng)); break;
            case 1: v = T(30 * g(rng)); break;                 // wide: many entries underflow
            case 2: v = T(big * g(rng)); break;                 // huge magnitudes
            case 3: v = T(tiny * g(rng)); break;                // tiny: all exp close to 1
            case 4: v = T(std::round(4 * g(rng)) / 4); break;   // many ties, with the maximum too
            default: v = T(-100 + 3 * g(rng)); break;           // negative offset, near underflow
        }
    }
    if (n && kind >= 6) {  // specials
        const std::size_t k = 1 + n / 7;
        for (std::size_t r = 0; r < k; ++r) {
            switch ((kind + r) % 5) {
                case 0: x[pos(rng)] = -inf<T>; break;
                case 1: x[pos(rng)] = T(-0.0); break;
                case 2: x[pos(rng)] = std::numeric_limits<T>::denorm_min() * 3; break;
                case 3: x[pos(rng)] = std::numeric_limits<T>::lowest(); break;
                default: x[pos(rng)] = x[pos(rng)]; break;  // a duplicate
            }
        }
        if (allow_nan_pinf && kind % 3 == 0) x[pos(rng)] = std::numeric_limits<T>::quiet_NaN();
        if (allow_nan_pinf && kind % 3 == 1) x[pos(rng)] = inf<T>;
    }
    return x;
}

std::vector<std::size_t> lengths() {
    std::vector<std::size_t> v;
    for (std::size_t n = 0; n <= 70; ++n) v.push_back(n);
    for (std::size_t n : {127, 128, 129, 255, 256, 257, 511, 512, 513, 1000, 4099}) v.push_back(n);
    return v;
}

template <class T>
std::vector<scale2<T>> betas() {
    std::vector<scale2<T>> b;
    for (double t : {1.0, 0.7, 3e-3, 250.0, 1.0 / 3.0}) b.push_back(normexp::detail::split_beta<T>(t));
    if constexpr (sizeof(T) == 8) b.push_back(normexp::detail::split_beta<T>(1e-290));
    else b.push_back(normexp::detail::split_beta<T>(1e-35));
    return b;
}

// m = the finite maximum of a row (what the drivers pass), or 0 for an empty/all -inf row.
template <class T>
T finite_max(const std::vector<T>& x) {
    T m = -inf<T>;
    for (T v : x)
        if (v > m) m = v;
    return m == -inf<T> ? T(0) : m;
}

using digests = std::map<std::string, std::uint64_t>;  // "<type> <kernel>" -> digest

template <class T>
void rows(const normexp::reduction_kernels<T>& k, digests& out) {
    const char* ty = sizeof(T) == 4 ? "f32 " : "f64 ";
    digest d_exp, d_max, d_sum, d_store, d_scale, d_escale, d_stream, d_log, d_collect, d_weights;
    std::mt19937_64 rng(20261203);
    int kind = 0;
    for (std::size_t n : lengths()) {
        for (int rep = 0; rep < (n <= 70 ? 4 : 2); ++rep, ++kind) {
            const int kd = kind % 12;
            // exp over the whole domain, and row_max with NaN / +inf.
            {
                std::vector<T> x = make_row<T>(n, kd, true, rng), y(n + 1, T(7));
                for (std::size_t i = 0; i < n; i += 5) x[i] = T(x[i] * (sizeof(T) == 4 ? 3e-29 : 3e-297));
                k.exp(x.data(), y.data(), n);
                d_exp.array(y, n + 1);
                d_max.value(k.row_max(x.data(), n));
                std::vector<T> big = make_row<T>(n, kd, true, rng);
                d_max.value(k.row_max(big.data(), n));
            }
            const std::vector<T> x = make_row<T>(n, kd, false, rng);
            const T m = finite_max(x);
            for (const auto& b : betas<T>()) {
                const normexp::exp_sum es = k.row_exp_sum(x.data(), n, m, b);
                d_sum.value(es.rest);
                d_sum.value(es.count);
                std::vector<T> y(n + 1, T(7));
                d_store.value(k.row_exp_store(x.data(), y.data(), n, m, b));
                d_store.array(y, n + 1);
                // c and log(sum) do not come from the kernels above, so each digest covers one kernel's own results.
                const T c = T(1.0 / (double(n) + 0.5));
                k.row_scale(y.data(), n, c);
                d_scale.array(y, n + 1);
                std::vector<T> z(n + 1, T(7)), s(n + 9, T(7));
                k.row_exp_scale(x.data(), z.data(), n, m, b, c);
                d_escale.array(z, n + 1);
                k.row_exp_scale_stream(x.data(), s.data() + 1, n, m, b, c);  // misaligned start
                d_stream.array(s, n + 9);
                k.row_log_softmax(x.data(), z.data(), n, m, b, std::log(double(n) + 1.0));
                d_log.array(z, n + 1);
            }
            // Sampling: collect x >= thr (NaN planted), weights with and without the outputs.
            {
                std::vector<T> xs = make_row<T>(n, kd, true, rng);
                std::vector<std::uint32_t> idx(n + 1, 0xdeadbeefu);
                for (T thr : {T(-inf<T>), T(0), T(0.5), m}) {
                    const std::size_t c = k.row_collect_ge(xs.data(), n, thr, idx.data());
                    d_collect.value(c);
                    d_collect.array(idx, c);
                }
                const T mw = finite_max(x);
                for (T beta : {T(1), T(1 / 0.7), T(40)}) {
                    for (T thr : {T(-inf<T>), T(mw - 2)}) {
                        std::vector<float> w(n + 1, 7.f), bs(n / 64 + 2, 7.f);
                        k.row_sample_weights(x.data(), n, mw, beta, thr, w.data(), bs.data());
                        d_weights.array(w, n + 1);
                        d_weights.array(bs, n / 64 + 2);
                        std::vector<float> bs2(n / 64 + 2, 7.f);
                        k.row_sample_weights(x.data(), n, mw, beta, thr, nullptr, bs2.data());
                        d_weights.array(bs2, n / 64 + 2);
                    }
                }
            }
        }
    }
    out[std::string(ty) + "exp"] = d_exp.h;
    out[std::string(ty) + "row_max"] = d_max.h;
    out[std::string(ty) + "row_exp_sum"] = d_sum.h;
    out[std::string(ty) + "row_exp_store"] = d_store.h;
    out[std::string(ty) + "row_scale"] = d_scale.h;
    out[std::string(ty) + "row_exp_scale"] = d_escale.h;
    out[std::string(ty) + "row_exp_scale_stream"] = d_stream.h;
    out[std::string(ty) + "row_log_softmax"] = d_log.h;
    out[std::string(ty) + "row_collect_ge"] = d_collect.h;
    out[std::string(ty) + "row_sample_weights"] = d_weights.h;
}

template <class T>
void cols(const normexp::reduction_kernels<T>& k, digests& out) {
    const char* ty = sizeof(T) == 4 ? "f32 " : "f64 ";
    digest d_max, d_sum, d_escale, d_log, d_store, d_scale;
    std::mt19937_64 rng(7031);
    std::vector<std::size_t> widths;
    for (std::size_t w = 1; w <= 19; ++w) widths.push_back(w);
    for (std::size_t w : {31, 32, 33, 100, 1030}) widths.push_back(w);
    int kind = 0;
    for (std::size_t w : widths) {
        for (std::size_t rows : {0, 1, 2, 3, 4, 5, 7, 8, 9, 17, 33}) {
            if (w == 1030 && rows > 9) continue;
            ++kind;
            const std::size_t sx = w + 3, sy = w + 5;
            std::vector<T> x(rows * sx + 1);
            for (std::size_t i = 0; i < rows; ++i) {
                const std::vector<T> r = make_row<T>(w, (kind + int(i)) % 12, false, rng);
                std::copy(r.begin(), r.end(), x.begin() + static_cast<std::ptrdiff_t>(i * sx));
            }
            // col_max: with NaN / +inf planted in some columns, a running maximum to start from, and copy.
            {
                std::vector<T> xm = x;
                if (rows) {
                    xm[(rows - 1) * sx + (w - 1)] = std::numeric_limits<T>::quiet_NaN();
                    xm[(rows / 2) * sx] = inf<T>;
                }
                std::vector<T> m(w, -inf<T>), copy(rows * w + 1, T(7));
                for (std::size_t j = 0; j < w; j += 3) m[j] = T(0.25);
                if (w > 4) m[4] = std::numeric_limits<T>::quiet_NaN();
                k.col_max(xm.data(), rows, static_cast<std::ptrdiff_t>(sx), w, m.data(), copy.data());
                d_max.array(m, w);
                d_max.array(copy, rows * w + 1);
                std::vector<T> m2(w, -inf<T>);
                k.col_max(x.data(), rows, static_cast<std::ptrdiff_t>(sx), w, m2.data(), nullptr);
                d_max.array(m2, w);
            }
            std::vector<T> m(w, -inf<T>);
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < w; ++j)
                    if (x[i * sx + j] > m[j]) m[j] = x[i * sx + j];
            for (auto& v : m)
                if (v == -inf<T>) v = T(0);
            for (const auto& b : betas<T>()) {
                std::vector<double> rest(w, 0.5), count(w, 1.0);
                k.col_exp_sum(x.data(), rows, static_cast<std::ptrdiff_t>(sx), w, m.data(), b, rest.data(), count.data());
                d_sum.array(rest, w);
                d_sum.array(count, w);
                std::vector<T> c(w);
                std::vector<double> lc(w);
                for (std::size_t j = 0; j < w; ++j) {
                    c[j] = T(1.0 / (double(rows + j) + 0.5));  // not from col_exp_sum (see rows())
                    lc[j] = std::log(double(rows + j) + 1.0);
                }
                std::vector<T> y(rows * sy + 1, T(7));
                k.col_exp_scale(x.data(), static_cast<std::ptrdiff_t>(sx), y.data(), static_cast<std::ptrdiff_t>(sy), rows, w,
                                m.data(), b, c.data());
                d_escale.array(y, rows * sy + 1);
                k.col_log_softmax(x.data(), static_cast<std::ptrdiff_t>(sx), y.data(), static_cast<std::ptrdiff_t>(sy), rows,
                                  w, m.data(), b, lc.data());
                d_log.array(y, rows * sy + 1);
                std::vector<T> blk(rows * w + 1, T(7));
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < w; ++j) blk[i * w + j] = x[i * sx + j];
                std::vector<double> sum(w, 0.25);
                k.col_exp_store(blk.data(), rows, w, m.data(), b, sum.data());
                d_store.array(blk, rows * w + 1);
                d_store.array(sum, w);
                k.col_scale(x.data(), static_cast<std::ptrdiff_t>(sx), y.data(), static_cast<std::ptrdiff_t>(sy), rows, w,
                            c.data());
                d_scale.array(y, rows * sy + 1);
            }
        }
    }
    out[std::string(ty) + "col_max"] = d_max.h;
    out[std::string(ty) + "col_exp_sum"] = d_sum.h;
    out[std::string(ty) + "col_exp_scale"] = d_escale.h;
    out[std::string(ty) + "col_log_softmax"] = d_log.h;
    out[std::string(ty) + "col_exp_store"] = d_store.h;
    out[std::string(ty) + "col_scale"] = d_scale.h;
}

digests run(const normexp::kernel_table& t) {
    digests d;
    rows<float>(t.f32, d);
    rows<double>(t.f64, d);
    cols<float>(t.f32, d);
    cols<double>(t.f64, d);
    return d;
}

#if defined(__aarch64__)
constexpr const char* kArch = "aarch64";
#elif defined(__x86_64__)
constexpr const char* kArch = "x86_64";
#else
constexpr const char* kArch = "other";
#endif

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FILE | --print\n", argv[0]);
        return 2;
    }
    const bool print = std::string(argv[1]) == "--print";
    std::map<std::string, std::uint64_t> expected;  // "<isa> <type> <kernel>"
    if (!print) {
        std::ifstream in(argv[1]);
        if (!in) {
            std::fprintf(stderr, "cannot read %s\n", argv[1]);
            return 2;
        }
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream ls(line);
            std::string arch, isa, ty, name, hex;
            ls >> arch >> isa >> ty >> name >> hex;
            if (arch == kArch) expected[isa + " " + ty + " " + name] = std::stoull(hex, nullptr, 16);
        }
    }
    int failures = 0, checked = 0;
    for (const std::string& isa : normexp::detail::available_isas()) {
        for (const auto& [key, h] : run(normexp::detail::kernels_for(isa))) {
            const std::string full = isa + " " + key;
            if (print) {
                std::printf("%s %s %016llx\n", kArch, full.c_str(), static_cast<unsigned long long>(h));
                continue;
            }
            ++checked;
            const auto it = expected.find(full);
            if (it == expected.end()) {
                std::printf("MISSING %s %016llx (not in the recorded file)\n", full.c_str(), static_cast<unsigned long long>(h));
                ++failures;
            } else if (it->second != h) {
                std::printf("DIFFERS %s: %016llx, recorded %016llx\n", full.c_str(), static_cast<unsigned long long>(h),
                            static_cast<unsigned long long>(it->second));
                ++failures;
            }
        }
    }
    if (!print) std::printf("kernel_digest: %d digests checked, %d differ or are missing\n", checked, failures);
    return failures ? 1 : 0;
}
