// libFuzzer harness for the C API (cpp/include/normexp/normexp.h): every entry point with fuzzed
// arguments. The header promises that no exception, abort or signal leaves these functions, whatever the
// arguments, and that a failure is reported by a status code and normexp_last_error().
//
// Each input calls one entry point:
//  * softmax / log_softmax / logsumexp (f32, f64) and attention_f32 with NULL or real pointers, sizes that
//    are valid (small, matching exact-size buffers, so ASan flags any access beyond them), zero, or too
//    large for PTRDIFF_MAX (SIZE_MAX, negative ints converted to size_t, products that overflow),
//    outputs that are the input, overlap it partly or not at all, heads that do not divide, scales that
//    are negative, NaN or infinite, any is_causal int. The status must be one the header assigns to an
//    argument that is wrong (OK exactly when none is); a failed call writes nothing; a successful one
//    matches the C++ API bit for bit and leaves the inputs unchanged.
//  * normexp_last_error after each of those: "" after a success, "<function name>: ..." after a failure.
//  * normexp_status_string (any int), normexp_isa, normexp_set/get_num_threads (any int),
//    normexp_version.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "normexp/normexp.h"
#include "normexp/normexp.hpp"

namespace {

[[noreturn]] void fail(const char* what, int rc = -1) {
    std::fprintf(stderr, "fuzz_c_api: invariant violated: %s (status %d, last error \"%s\")\n", what, rc,
                 normexp_last_error());
    std::abort();
}

constexpr std::size_t kMaxSize = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kPtrdiffMax = static_cast<std::size_t>(PTRDIFF_MAX);

// a * b, saturated at SIZE_MAX.
std::size_t mul_sat(std::size_t a, std::size_t b) { return b != 0 && a > kMaxSize / b ? kMaxSize : a * b; }

// A size for an argument: small and valid, zero, or one of the values that cannot describe real data.
std::size_t size_arg(FuzzedDataProvider& fdp, std::size_t lo, std::size_t hi) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 15)) {
        case 0: return 0;
        case 1:
            return fdp.PickValueInArray<std::size_t>({kMaxSize, kMaxSize / 2 + 1, kPtrdiffMax, kPtrdiffMax / 4 + 1,
                                                      std::size_t(-5), std::size_t(1) << 62, std::size_t(1) << 32,
                                                      std::size_t(std::uint32_t(-1))});
        default: return fdp.ConsumeIntegralInRange<std::size_t>(lo, hi);
    }
}

template <class T>
T value(std::mt19937_64& rng, unsigned specials) {
    if (rng() % 64 < specials) {
        const T s[] = {std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                       std::numeric_limits<T>::quiet_NaN(), T(1e30), T(-1e30), T(0)};
        return s[rng() % 6];
    }
    return T(std::uniform_real_distribution<double>(-20, 20)(rng));
}

// normexp_last_error() after a call that returned rc.
void check_last_error(const char* fn, int rc) {
    const char* msg = normexp_last_error();
    if (msg == nullptr) fail("normexp_last_error returned NULL", rc);
    if (rc == NORMEXP_OK) {
        if (*msg != '\0') fail("a successful call left an error message", rc);
        return;
    }
    const std::size_t n = std::strlen(fn);
    if (std::strncmp(msg, fn, n) != 0 || std::strncmp(msg + n, ": ", 2) != 0 || msg[n + 2] == '\0')
        fail("the error message does not start with the function's name and say something", rc);
}

bool bits_equal(const void* a, const void* b, std::size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

// ---- reductions -----------------------------------------------------------------------------------------
template <class T>
void reduction(FuzzedDataProvider& fdp) {
    using fn_t = int (*)(const T*, T*, size_t, size_t);
    const int op = fdp.ConsumeIntegralInRange<int>(0, 2);
    const bool lse = op == 2;
    const bool f32 = sizeof(T) == 4;
    static const char* const names[2][3] = {{"normexp_softmax_f64", "normexp_log_softmax_f64", "normexp_logsumexp_f64"},
                                            {"normexp_softmax_f32", "normexp_log_softmax_f32", "normexp_logsumexp_f32"}};
    fn_t fns[3];
    if constexpr (sizeof(T) == 4) {
        fns[0] = normexp_softmax_f32, fns[1] = normexp_log_softmax_f32, fns[2] = normexp_logsumexp_f32;
    } else {
        fns[0] = normexp_softmax_f64, fns[1] = normexp_log_softmax_f64, fns[2] = normexp_logsumexp_f64;
    }
    const char* name = names[f32][op];
    const std::size_t rows = size_arg(fdp, 1, 8), cols = size_arg(fdp, 1, 300);
    const bool size_ok = rows != 0 && cols != 0 && mul_sat(rows, cols) <= kPtrdiffMax / sizeof(T);
    if (size_ok && rows * cols > 4096) return;  // valid but too large to allocate here: not a fuzz case
    // Buffers: the real extent when the sizes are valid, a few elements otherwise (the call must not read
    // them). x and y live in one allocation so that y can be placed anywhere relative to x.
    const std::size_t n = size_ok ? rows * cols : 4, ny = size_ok ? (lse ? rows : n) : 4;
    const int placement = fdp.ConsumeIntegralInRange<int>(0, 4);  // 0, 1: apart; 2: y == x; 3: overlapping
    const std::size_t gap = fdp.ConsumeIntegralInRange<std::size_t>(0, 3);
    std::size_t xo = 0, yo = n + gap;
    if (placement == 2) yo = 0;
    if (placement == 3) {  // y starts inside x, or x inside y
        const std::size_t shift = fdp.ConsumeIntegralInRange<std::size_t>(1, n);
        if (fdp.ConsumeBool() && shift < n) yo = shift; else xo = std::min(shift, ny - 1), yo = 0;
    }
    const std::size_t total = std::max(xo + n, yo + ny);
    T* const mem = new T[total];
    std::mt19937_64 rng(fdp.ConsumeIntegral<std::uint64_t>());
    const unsigned specials = fdp.PickValueInArray<unsigned>({0, 0, 2, 16});
    const T sentinel = T(-12345.5);
    for (std::size_t i = 0; i < total; ++i) mem[i] = sentinel;
    for (std::size_t i = 0; i < n; ++i) mem[xo + i] = value<T>(rng, specials);
    const std::vector<T> before(mem, mem + total);
    const T* x = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : mem + xo;
    T* y = fdp.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : mem + yo;

    // The statuses the header assigns to what is wrong with these arguments.
    const bool overlap = x && y && (xo < yo + ny && yo < xo + n) && (lse || xo != yo);
    std::vector<int> allowed;
    if (!x || !y) allowed.push_back(NORMEXP_ERROR_NULL_POINTER);
    if (!size_ok) allowed.push_back(NORMEXP_ERROR_INVALID_SIZE);
    if (size_ok && overlap) allowed.push_back(NORMEXP_ERROR_OVERLAP);

    const int rc = fns[op](x, y, rows, cols);
    check_last_error(name, rc);
    if (allowed.empty()) {
        if (rc != NORMEXP_OK) fail("a valid call failed", rc);
        // The C++ API on a copy of the input gives the same bits.
        std::vector<T> xin(before.begin() + std::ptrdiff_t(xo), before.begin() + std::ptrdiff_t(xo + n)), want(ny);
        const std::ptrdiff_t c = std::ptrdiff_t(cols);
        normexp::reduce<T>(op == 0 ? normexp::reduction::softmax : op == 1 ? normexp::reduction::log_softmax
                                                                            : normexp::reduction::logsumexp,
                           xin.data(), {c, 1}, want.data(), lse ? normexp::strides_t{1, 0} : normexp::strides_t{c, 1},
                           {rows, cols}, 1);
        if (!bits_equal(want.data(), mem + yo, ny * sizeof(T))) fail("the result differs from the C++ API", rc);
        for (std::size_t i = 0; i < total; ++i) {
            const bool in_y = i >= yo && i < yo + ny;
            if (!in_y && !bits_equal(&mem[i], &before[i], sizeof(T))) fail("a write outside y, or x modified", rc);
        }
    } else {
        bool ok = false;
        for (int a : allowed) ok |= rc == a;
        if (!ok) fail("the status is not one the header gives for these arguments", rc);
        if (!bits_equal(mem, before.data(), total * sizeof(T))) fail("a failed call wrote memory", rc);
    }
    delete[] mem;
}

// ---- attention --------------------------------------------------------------------------------------------
void attention(FuzzedDataProvider& fdp) {
    const char* const name = "normexp_attention_f32";
    const std::size_t batch = size_arg(fdp, 1, 2), heads_kv = size_arg(fdp, 1, 3);
    std::size_t heads_q = heads_kv;
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
        case 0: heads_q = size_arg(fdp, 1, 7); break;  // often not a multiple
        case 1: case 2: heads_q = mul_sat(heads_kv, fdp.ConsumeIntegralInRange<std::size_t>(1, 3)); break;
        default: break;
    }
    const std::size_t len_q = size_arg(fdp, 1, 6), len_kv = size_arg(fdp, 1, 10);
    const std::size_t head_dim = size_arg(fdp, 1, 16), head_dim_v = size_arg(fdp, 1, 16);
    float scale = 0;
    switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
        case 0: scale = fdp.PickValueInArray<float>({-1.0f, -0.0f, std::nanf(""), INFINITY, -INFINITY}); break;
        case 1: scale = fdp.PickValueInArray<float>({1e-30f, 1e30f, std::numeric_limits<float>::max()}); break;
        case 2: break;
        default: scale = fdp.ConsumeFloatingPointInRange<float>(0.0f, 3.0f);
    }
    const int is_causal = fdp.ConsumeIntegral<int>();
    // Elements of a (batch, heads, len, dim) tensor, or 0 if that is not a valid size.
    auto elems = [](std::size_t b, std::size_t h, std::size_t l, std::size_t d) -> std::size_t {
        if (!b || !h || !l || !d) return 0;
        const std::size_t p = mul_sat(mul_sat(mul_sat(b, h), l), d);
        return p <= kPtrdiffMax / sizeof(float) ? p : 0;
    };
    const std::size_t nq = elems(batch, heads_q, len_q, head_dim), nk = elems(batch, heads_kv, len_kv, head_dim),
                      nv = elems(batch, heads_kv, len_kv, head_dim_v), no = elems(batch, heads_q, len_q, head_dim_v);
    const bool size_ok = nq && nk && nv && no;
    if (size_ok && nq + nk + nv + no > 20000) return;  // valid but large: not a fuzz case
    const bool args_ok = size_ok && heads_q % heads_kv == 0 && std::isfinite(scale) && scale >= 0;
    // One allocation holding q, k, v, out (in that order, gaps of 0..3), out sometimes moved onto q, k or v.
    const std::size_t sq = size_ok ? nq : 4, sk = size_ok ? nk : 4, sv = size_ok ? nv : 4, so = size_ok ? no : 4;
    std::size_t at[4] = {0, 0, 0, 0};
    std::size_t pos = 0;
    const std::size_t sizes[4] = {sq, sk, sv, so};
    for (int i = 0; i < 4; ++i) at[i] = pos, pos += sizes[i] + fdp.ConsumeIntegralInRange<std::size_t>(0, 3);
    if (fdp.ConsumeIntegralInRange<int>(0, 5) == 0) {  // out overlapping one of the inputs
        const int t = fdp.ConsumeIntegralInRange<int>(0, 2);
        at[3] = at[t] + fdp.ConsumeIntegralInRange<std::size_t>(0, sizes[t] - 1);
    }
    const std::size_t total = std::max(pos, at[3] + so);
    float* const mem = new float[total];
    std::mt19937_64 rng(fdp.ConsumeIntegral<std::uint64_t>());
    const unsigned specials = fdp.PickValueInArray<unsigned>({0, 0, 2, 16});
    for (std::size_t i = 0; i < total; ++i) mem[i] = value<float>(rng, specials);
    const std::vector<float> before(mem, mem + total);
    float* p[4];
    for (int i = 0; i < 4; ++i) p[i] = fdp.ConsumeIntegralInRange<int>(0, 19) == 0 ? nullptr : mem + at[i];

    bool overlap = false;
    for (int t = 0; t < 3; ++t) overlap |= p[t] && p[3] && at[3] < at[t] + sizes[t] && at[t] < at[3] + so;
    std::vector<int> allowed;
    if (!p[0] || !p[1] || !p[2] || !p[3]) allowed.push_back(NORMEXP_ERROR_NULL_POINTER);
    if (!size_ok) allowed.push_back(NORMEXP_ERROR_INVALID_SIZE);
    if (size_ok && !args_ok) allowed.push_back(NORMEXP_ERROR_INVALID_ARGUMENT);
    if (size_ok && overlap) allowed.push_back(NORMEXP_ERROR_OVERLAP);

    const int rc = normexp_attention_f32(p[0], p[1], p[2], p[3], batch, heads_q, heads_kv, len_q, len_kv, head_dim,
                                         head_dim_v, scale, is_causal);
    check_last_error(name, rc);
    if (allowed.empty()) {
        if (rc != NORMEXP_OK) fail("a valid call failed", rc);
        std::vector<float> want(no);
        normexp::attention_options<float> o;
        o.scale = scale;
        o.is_causal = is_causal != 0;
        normexp::attention<float>(before.data() + at[0], before.data() + at[1], before.data() + at[2], want.data(), batch,
                                  heads_q, heads_kv, len_q, len_kv, head_dim, head_dim_v, o);
        if (!bits_equal(want.data(), mem + at[3], no * sizeof(float))) fail("the result differs from the C++ API", rc);
        for (std::size_t i = 0; i < total; ++i) {
            const bool in_out = i >= at[3] && i < at[3] + no;
            if (!in_out && !bits_equal(&mem[i], &before[i], sizeof(float))) fail("a write outside out, or an input modified", rc);
        }
    } else {
        bool ok = false;
        for (int a : allowed) ok |= rc == a;
        if (!ok) fail("the status is not one the header gives for these arguments", rc);
        if (!bits_equal(mem, before.data(), total * sizeof(float))) fail("a failed call wrote memory", rc);
    }
    delete[] mem;
}

// ---- the rest ------------------------------------------------------------------------------------------
void library(FuzzedDataProvider& fdp) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: {
            const int status = fdp.ConsumeIntegral<int>();
            const char* s = normexp_status_string(status);
            if (s == nullptr || *s == '\0') fail("normexp_status_string returned nothing", status);
            const bool known = status >= NORMEXP_OK && status <= NORMEXP_ERROR_INTERNAL;
            if (known == (std::strcmp(s, "unknown status") == 0)) fail("normexp_status_string: known/unknown mixed up", status);
            if (known)  // the codes have distinct descriptions
                for (int other = NORMEXP_OK; other <= NORMEXP_ERROR_INTERNAL; ++other)
                    if (other != status && std::strcmp(s, normexp_status_string(other)) == 0)
                        fail("two status codes share a description", status);
            break;
        }
        case 1: {
            const char* isa = normexp_isa();  // NORMEXP_ISA is unset here: a supported set
            if (isa == nullptr) fail("normexp_isa returned NULL");
            bool listed = false;
            for (const auto& name : normexp::available_isas()) listed |= name == isa;
            if (!listed) fail("normexp_isa is not an available kernel set");
            break;
        }
        case 2: {
            normexp_set_num_threads(fdp.ConsumeIntegral<int>());
            const int n = normexp_get_num_threads();
            normexp_set_num_threads(0);
            if (n < 1) fail("normexp_get_num_threads < 1", n);
            break;
        }
        default:
            if (std::strcmp(normexp_version(), NORMEXP_VERSION_STRING) != 0) fail("normexp_version differs from the header");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
        case 0: case 1: reduction<float>(fdp); break;
        case 2: reduction<double>(fdp); break;
        case 3: case 4: attention(fdp); break;
        default: library(fdp);
    }
    return 0;
}
