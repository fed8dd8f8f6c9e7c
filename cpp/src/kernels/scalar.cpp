// Scalar kernels: the specification every SIMD kernel set is tested against.
//
// Plain C++ for the baseline CPU (x86-64 SSE2 / armv8-a). float32 kernels compute in double: x - m of
// two floats is exact in double whenever it matters (|x - m| < 2^29 ulp), the temperature product is
// rounded once at 2^-53, and exp is the float64 polynomial below, so every float32 result is the
// correctly rounded value up to ~2^-50 relative (<= 0.5 ULP + a hair).  float64 kernels carry x - m as
// an unevaluated sum (TwoSum) and the temperature product with Dekker's TwoProduct, then use the
// Taylor-13 exp (<= 1 ULP).  The library is compiled with -ffp-contract=off, so none of these
// error-free transformations are silently fused.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "attention_score.hpp"
#include "exp_constants.hpp"
#include "half_convert.hpp"
#include "kernel_table.hpp"
#include "sampling_weights.hpp"

namespace normexp::scalar {
namespace {

using namespace normexp::expc;

double pow2i(int k) {  // 2^k for k in [-1022, 1023]
    const std::uint64_t bits = static_cast<std::uint64_t>(k + 1023) << 52;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}

// 2^lift exp(t + tlo), |tlo| <= 2^-40 |t| or so. Cody-Waite reduction, Taylor-13, two-factor 2^k scaling
// outside the normal exponent range (gradual underflow and overflow come out correctly rounded). lift:
// kLiftD for the terms of a counting sum (exp_constants.hpp), which stay normal down to exp(t) = 2^-1075.
double exp_d(double t, double tlo, int lift = 0) {
    if (!(t >= kMinArgD)) return t != t ? t : 0.0;  // NaN, or below the underflow threshold
    if (t > kMaxArgD) return std::numeric_limits<double>::infinity();
    const double kd = (t * kLog2eD + kShifterD) - kShifterD;
    double r = t - kd * kLn2HiD;  // exact: kd has <= 11 bits, kLn2HiD 25 bits
    r = (r - kd * kLn2LoD) + tlo;
    double p = kInvFact[13];
    for (int i = 12; i >= 0; --i) p = p * r + kInvFact[i];
    const int k = static_cast<int>(kd) + lift;
    if (k < -1021 || k > 1022) {
        const int k1 = k / 2;
        return p * pow2i(k1) * pow2i(k - k1);
    }
    return p * pow2i(k);
}

// Error-free transformations (exact when evaluated without contraction).
inline double two_sum_err(double a, double b, double s) {
    const double bb = s - a;
    return (a - (s - bb)) + (b - bb);
}
inline double two_prod_err(double a, double b, double p) {  // Dekker/Veltkamp, no FMA needed
    constexpr double kSplit = 0x1.0000002p+27;              // 2^27 + 1
    const double ca = kSplit * a, cb = kSplit * b;
    const double ah = ca - (ca - a), al = a - ah;
    const double bh = cb - (cb - b), bl = b - bh;
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

// two_prod_err where one factor may exceed 2^995 (Dekker's split of it would overflow to inf - inf =
// NaN). Callers have |p| < 746, so the other factor is then tiny; scaling the two by 2^-64 and 2^64 is
// exact and keeps the product and its rounding error.
inline double two_prod_err_wide(double a, double b, double p) {
    if (std::fabs(a) > 0x1p995) return two_prod_err(a * 0x1p-64, b * 0x1p64, p);
    if (std::fabs(b) > 0x1p995) return two_prod_err(a * 0x1p64, b * 0x1p-64, p);
    return two_prod_err(a, b, p);
}

// t = beta * (x - m) as hi + lo.
struct arg2 {
    double hi, lo;
};
inline arg2 shifted(float x, float m, scale2<float> b) {
    // Exact difference in double; one rounding for the product with the 48-bit beta.
    const double d = static_cast<double>(x) - static_cast<double>(m);
    if (b.lo == 0.0f && b.hi == 1.0f) return {d, 0.0};
    return {d * (static_cast<double>(b.hi) + static_cast<double>(b.lo)), 0.0};
}
inline arg2 shifted(double x, double m, scale2<double> b) {
    const double d = x - m;
    const double e = two_sum_err(x, -m, d);
    if (b.lo == 0.0 && b.hi == 1.0) return {d, e};
    if (std::isinf(d) && std::isfinite(x) && std::isfinite(m)) {
        // |x - m| > DBL_MAX, yet beta (x - m) may be moderate: form it from the halves (exact at these
        // magnitudes) and double the result.
        const double xh = 0.5 * x, mh = 0.5 * m, dh = xh - mh;
        const double ph = dh * b.hi;
        if (!(2 * ph > kMinArgD)) return {2 * ph, 0.0};
        return {2 * ph, 2 * (two_prod_err_wide(dh, b.hi, ph) + (two_sum_err(xh, -mh, dh) * b.hi + dh * b.lo))};
    }
    const double p = d * b.hi;
    if (!(p > kMinArgD)) return {p, 0.0};  // exp underflows anyway (and keeps the split finite)
    return {p, two_prod_err_wide(d, b.hi, p) + (e * b.hi + d * b.lo)};
}
inline double exp_arg(arg2 a) { return exp_d(a.hi, a.lo); }
// A counting sum's term, lifted by 2^kLiftD (the sum is scaled back by 2^-kLiftD, exactly: the same value
// wherever the terms are normal, and full precision where they are not).
constexpr double kUnliftD = 1 / kLiftScaleD;
inline double exp_arg_lifted(arg2 a) { return exp_d(a.hi, a.lo, kLiftD); }

// The argument of each mode (kernel_table.hpp). accuracy::high: shifted above, exact. accuracy::fast: what
// the SIMD sets round, t = fl(fl(x - m) * beta.hi) in T (IEEE operations in T, no contraction), carried as
// a double; exp_d then gives its exp correctly rounded up to ~2^-50, so a SIMD set differs from this only
// by its exp's <= 1 ULP.
template <bool Fast, class T>
inline arg2 shifted_mode(T x, T m, scale2<T> b) {
    if constexpr (!Fast) {
        return shifted(x, m, b);
    } else {
        const T d = x - m;
        const T t = b.lo == T(0) && b.hi == T(1) ? d : d * b.hi;
        return {static_cast<double>(t), 0.0};
    }
}

// Neumaier-compensated accumulator (float64 kernels; float32 sums are exact enough in plain double).
struct neumaier {
    double s = 0.0, c = 0.0;
    void add(double v) {
        const double t = s + v;
        c += std::fabs(s) >= std::fabs(v) ? (s - t) + v : (v - t) + s;
        s = t;
    }
    double value() const { return s + c; }
};

template <class T>
void k_exp(const T* x, T* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(exp_d(static_cast<double>(x[i]), 0.0));
}

template <class T>
T k_row_max(const T* x, std::size_t n) {
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
        if (x[i] != x[i]) return x[i];
        if (x[i] > m) m = x[i];
    }
    return m;
}

// accuracy::fast counts nothing: every entry is summed (those equal to m as exp(0) = 1), count = 0.
// Lifted: rest times kSumLift (row_exp_sum_max, kernel_table.hpp).
template <class T, bool Fast, bool Lifted = false>
exp_sum k_row_exp_sum(const T* x, std::size_t n, T m, scale2<T> beta) {
    neumaier rest;
    double count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (Fast)
            rest.add(exp_arg(shifted_mode<Fast>(x[i], m, beta)));
        else if (x[i] == m)
            count += 1;
        else
            rest.add(exp_arg_lifted(shifted_mode<Fast>(x[i], m, beta)));
    }
    // The counted terms are lifted by 2^kLiftD = kSumLift; the fast ones are not.
    if (Fast) return {Lifted ? rest.value() * kSumLift : rest.value(), count};
    return {Lifted ? rest.value() : rest.value() * kUnliftD, count};
}

template <class T, bool Fast>
double k_row_exp_store(const T* x, T* y, std::size_t n, T m, scale2<T> beta) {
    neumaier s;
    for (std::size_t i = 0; i < n; ++i) {
        const T e = static_cast<T>(exp_arg(shifted_mode<Fast>(x[i], m, beta)));
        y[i] = e;
        s.add(e);
    }
    return s.value();
}

template <class T>
void k_row_scale(T* y, std::size_t n, T c) {
    for (std::size_t i = 0; i < n; ++i) y[i] *= c;
}

template <class T, bool Fast>
void k_row_exp_scale(const T* x, T* y, std::size_t n, T m, scale2<T> beta, T c) {
    for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(exp_arg(shifted_mode<Fast>(x[i], m, beta))) * c;
}

// y = beta (x - m) - c. float32 of unit temperature: fl(fl(x - m) - fl(c)) in float (kernel_table.hpp, the
// comment below log_sum_out); with a temperature, in double (x - m exact there, one rounding of the product)
// and rounded once to float. float64: ~1 ULP (x - m and the product carried as pairs).
inline float log_softmax_one(float x, float m, scale2<float> b, double c) {
    if (b.lo == 0.0f && b.hi == 1.0f) {
        const float d = x - m;
        return d - static_cast<float>(c);
    }
    return static_cast<float>(shifted(x, m, b).hi - c);
}
inline double log_softmax_one(double x, double m, scale2<double> b, double c) {
    const arg2 a = shifted(x, m, b);
    const double s = a.hi - c;
    const double corr = a.lo + two_sum_err(a.hi, -c, s);
    return corr == corr ? s + corr : s;  // the correction is NaN only when x = -inf: result s = -inf
}

// accuracy::fast: fl(t - fl(c)) in T, t the fast argument.
template <bool Fast, class T>
inline T log_softmax_mode(T x, T m, scale2<T> b, double c) {
    if constexpr (Fast) return static_cast<T>(shifted_mode<true>(x, m, b).hi) - static_cast<T>(c);
    else return log_softmax_one(x, m, b, c);
}

template <class T, bool Fast>
void k_row_log_softmax(const T* x, T* y, std::size_t n, T m, scale2<T> beta, double c) {
    for (std::size_t i = 0; i < n; ++i) y[i] = log_softmax_mode<Fast>(x[i], m, beta, c);
}

template <class T>
void k_col_max(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, T* m, T* copy) {
    for (std::size_t i = 0; i < rows; ++i) {
        const T* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        if (copy)
            for (std::size_t j = 0; j < w; ++j) copy[i * w + j] = xi[j];
        for (std::size_t j = 0; j < w; ++j) {
            if (m[j] != m[j]) continue;
            if (xi[j] != xi[j] || xi[j] > m[j]) m[j] = xi[j];
        }
    }
}

template <class T, bool Fast>
void k_col_exp_sum(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const T* m,
                   scale2<T> beta, double* rest, double* count) {
    // Column by column (the chunk is L1-resident), each column's terms Neumaier-summed and added to
    // rest[j] once: a plain running sum rounds at every row (the fuzzer found 11 ULP in float64
    // log_softmax over 200 equal terms). count == nullptr (col_exp_sum_max's uncounted sum) counts nothing:
    // an entry equal to m[j] adds exp_arg of an exact 0, which is 1.
    const bool counted = !Fast && count != nullptr;
    for (std::size_t j = 0; j < w; ++j) {
        neumaier s;
        double c = 0;
        for (std::size_t i = 0; i < rows; ++i) {
            const T v = x[static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j)];
            if (!counted)
                s.add(exp_arg(shifted_mode<Fast>(v, m[j], beta)));
            else if (v == m[j])
                c += 1;
            else
                s.add(exp_arg_lifted(shifted_mode<Fast>(v, m[j], beta)));
        }
        rest[j] += counted ? s.value() * kUnliftD : s.value();
        if (count) count[j] += c;
    }
}

// col_exp_sum fused with the next chunk's col_max (kernel_table.hpp): the two, one after the other.
template <class T, bool Fast>
void k_col_exp_sum_max(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const T* m, scale2<T> beta,
                       double* rest, double* count, const T* xn, std::size_t rows_n, T* mn) {
    k_col_exp_sum<T, Fast>(x, rows, sx, w, m, beta, rest, count);
    k_col_max<T>(xn, rows_n, sx, w, mn, nullptr);
}

template <class T, bool Fast>
exp_sum k_row_exp_sum_max(const T* x, std::size_t n, T m, scale2<T> beta, const T* xn, std::size_t nn, T* mn) {
    *mn = k_row_max<T>(xn, nn);
    return k_row_exp_sum<T, Fast, true>(x, n, m, beta);
}

template <class T, bool Fast>
void k_col_exp_scale(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                     std::size_t w, const T* m, scale2<T> beta, const T* c) {
    for (std::size_t i = 0; i < rows; ++i) {
        const T* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        T* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for (std::size_t j = 0; j < w; ++j)
            yi[j] = static_cast<T>(exp_arg(shifted_mode<Fast>(xi[j], m[j], beta))) * c[j];
    }
}

template <class T, bool Fast>
void k_col_log_softmax(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                       std::size_t w, const T* m, scale2<T> beta, const double* c) {
    for (std::size_t i = 0; i < rows; ++i) {
        const T* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        T* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for (std::size_t j = 0; j < w; ++j) yi[j] = log_softmax_mode<Fast>(xi[j], m[j], beta, c[j]);
    }
}

// ==== sampling kernels ==============================================================================
// The specification of sampling_weights.hpp, written out operation by operation in float32.

template <class T>
std::size_t k_row_collect_ge(const T* x, std::size_t n, T thr, std::uint32_t* idx) {
    std::size_t c = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (x[i] >= thr) idx[c++] = static_cast<std::uint32_t>(i);
    return c;
}

inline float sample_arg(float x, float m, float beta) { return (x - m) * beta; }
inline float sample_arg(double x, double m, double beta) { return static_cast<float>((x - m) * beta); }

inline float sample_exp(float t) {
    using namespace normexp::sampling;
    if (!(t >= kSampleMinArg)) return 0.0f;
    const float kd = (t * kLog2eF + kSampleShifter) - kSampleShifter;
    const float r = (t - kd * kLn2HiF) - kd * kLn2LoF;
    float q = kC6F * r + kC5F;
    q = q * r + kC4F;
    q = q * r + kC3F;
    q = q * r + kC2F;
    const float p = ((r * r) * q + r) + 1.0f;
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<int>(kd) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

template <class T>
void k_row_sample_weights(const T* x, std::size_t n, T m, T beta, T thr, float* w, float* block_sums) {
    constexpr std::size_t B = normexp::sampling::kSampleBlock;
    for (std::size_t b0 = 0; b0 < n; b0 += B) {
        float wb[B];
        for (std::size_t i = 0; i < B; ++i) {
            const std::size_t j = b0 + i;
            wb[i] = j < n && x[j] >= thr ? sample_exp(sample_arg(x[j], m, beta)) : 0.0f;
        }
        if (w)
            for (std::size_t i = 0; i < B && b0 + i < n; ++i) w[b0 + i] = wb[i];
        if (block_sums) {
            float L[8];
            for (int j = 0; j < 8; ++j) {
                L[j] = wb[j];
                for (int q = 1; q < 8; ++q) L[j] = L[j] + wb[8 * q + j];
            }
            const float s0 = L[0] + L[4], s1 = L[1] + L[5], s2 = L[2] + L[6], s3 = L[3] + L[7];
            block_sums[b0 / B] = (s0 + s2) + (s1 + s3);
        }
    }
}

template <class T, bool Fast>
void k_col_exp_store(T* x, std::size_t rows, std::size_t w, const T* m, scale2<T> beta, double* sum) {
    for (std::size_t j = 0; j < w; ++j) {
        neumaier s;
        for (std::size_t i = 0; i < rows; ++i) {
            const T e = static_cast<T>(exp_arg(shifted_mode<Fast>(x[i * w + j], m[j], beta)));
            x[i * w + j] = e;
            s.add(e);
        }
        sum[j] += s.value();
    }
}

template <class T>
void k_col_scale(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows, std::size_t w,
                 const T* c) {
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < w; ++j)
            y[static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j)] =
                x[static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j)] * c[j];
}

// Several rows per call (kernel_table.hpp): the single-row specification, row by row.
// Rows r of n entries of x (sx apart): m[r] = row_max(row, n), then body(r, row) for every row not skipped.
template <class S, class T, class Body>
void for_each_row(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, T m_limit, T* m,
                  T (*row_max)(const S*, std::size_t), Body body) {
    for (std::size_t r = 0; r < rows; ++r) {
        const S* xr = x + static_cast<std::ptrdiff_t>(r) * sx;
        m[r] = row_max(xr, n);
        if (!rows_skip(m[r], m_limit)) body(r, xr);
    }
}

template <class T, bool Fast>
void k_rows_softmax(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                    scale2<T> beta, T m_limit, T* m) {
    if constexpr (std::is_same_v<T, float>) {
        if (n > kSoftmaxChunkedMin && beta.hi == 1.0f && beta.lo == 0.0f && m_limit == std::numeric_limits<float>::max()) {
            for (std::size_t r = 0; r < rows; ++r)
                m[r] = softmax_row_chunked<float>(x + static_cast<std::ptrdiff_t>(r) * sx,
                                                  y + static_cast<std::ptrdiff_t>(r) * sy, n, beta, k_row_max<float>,
                                                  k_row_exp_store<float, Fast>, k_row_scale<float>);
            return;
        }
    }
    for_each_row(x, sx, rows, n, m_limit, m, k_row_max<T>, [&](std::size_t r, const T* xr) {
        T* yr = y + static_cast<std::ptrdiff_t>(r) * sy;
        const double sum = k_row_exp_store<T, Fast>(xr, yr, n, softmax_shift(m[r], beta, Fast), beta);
        k_row_scale(yr, n, static_cast<T>(1.0 / sum));
    });
}

template <class T, bool Fast>
void k_rows_exp_sum(const T* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, scale2<T> beta, T m_limit, T* m,
                    exp_sum* s) {
    for (std::size_t r = 0; r < rows; ++r) s[r] = exp_sum{0, 0};
    for_each_row(x, sx, rows, n, m_limit, m, k_row_max<T>,
                 [&](std::size_t r, const T* xr) { s[r] = k_row_exp_sum<T, Fast>(xr, n, m[r], beta); });
}

template <class T, bool Fast>
void k_rows_log_softmax(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                        scale2<T> beta, T m_limit, T* m) {
    for_each_row(x, sx, rows, n, m_limit, m, k_row_max<T>, [&](std::size_t r, const T* xr) {
        const exp_sum e = k_row_exp_sum<T, Fast>(xr, n, m[r], beta);
        T* yr = y + static_cast<std::ptrdiff_t>(r) * sy;
        k_row_log_softmax<T, Fast>(xr, yr, n, m[r], beta, log_sum_out<T>(e.count, e.rest));
    });
}

// Fast: the accuracy::fast table (kernel_table.hpp); the mode-free entries are the same functions.
template <class T, bool Fast = false>
constexpr reduction_kernels<T> make_kernels() {
    return {k_exp<T>,          k_row_max<T>,       k_row_exp_sum<T, Fast>,     k_row_exp_store<T, Fast>,
            k_row_scale<T>,    k_row_exp_scale<T, Fast>, k_row_log_softmax<T, Fast>, k_col_max<T>,
            k_col_exp_sum<T, Fast>,  k_col_exp_scale<T, Fast>, k_col_log_softmax<T, Fast>, k_col_exp_store<T, Fast>,
            k_col_scale<T>,    k_row_exp_scale<T, Fast>, k_row_log_softmax<T, Fast>, k_col_exp_scale<T, Fast>,
            k_col_log_softmax<T, Fast>,
            k_row_collect_ge<T>, k_row_sample_weights<T>,
            k_rows_softmax<T, Fast>, k_rows_exp_sum<T, Fast>, k_rows_log_softmax<T, Fast>,
            k_col_exp_sum_max<T, Fast>, k_row_exp_sum_max<T, Fast>};
}

// ---- attention ---------------------------------------------------------------------------------------
// The specification of the attention micro-kernels (kernel_table.hpp): every product and sum in double
// (float32 inputs), every stored value rounded once to T. The entries that read K or V take its storage S
// (S = T, or float16 / bfloat16 with T = float: attention_kv_kernels): each element is widened exactly to
// float32 by half_convert.hpp's to_f32 (widen below) and then used as the float32 kernel uses it.

inline float widen(float16 h) { return detail::to_f32(h); }
inline float widen(bfloat16 h) { return detail::to_f32(h); }
template <class T>
inline T widen(T x) { return x; }

template <class T, class S = T>
void k_pack_kt(const S* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys, std::size_t dim, T* kt,
               std::size_t ldkt) {
    const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
    for (std::size_t d = 0; d < dim; ++d) {
        T* row = kt + d * ldkt;
        for (std::size_t j = 0; j < keys; ++j)
            row[j] = widen(k[static_cast<std::ptrdiff_t>(j) * k_row + static_cast<std::ptrdiff_t>(d) * k_col]);
        for (std::size_t j = keys; j < padded; ++j) row[j] = T(0);
    }
}

template <class T>
void k_qk(const T* q, std::size_t ldq, const T* kt, std::size_t ldkt, std::size_t rows, std::size_t keys,
          std::size_t dim, T* s, std::size_t lds) {
    const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < padded; ++j) {
            double acc = 0;
            for (std::size_t d = 0; d < dim; ++d) acc += double(q[i * ldq + d]) * double(kt[d * ldkt + j]);
            s[i * lds + j] = static_cast<T>(acc);
        }
    }
}

// The score of one entry (attn_scores), evaluated in double and rounded once to T: attn_score of
// attention_score.hpp (shared with the NEON softmax_step, so its scores are these bits).

template <class T>
void k_softmax_step(T* s, std::size_t lds, std::size_t rows, std::size_t keys, const attn_scores<T>& sc, T* m,
                    double* l, T* alpha) {
    constexpr scale2<T> one{T(1), T(0)};
    for (std::size_t i = 0; i < rows; ++i) {
        T* si = s + i * lds;
        T mx = m[i];
        for (std::size_t j = 0; j < keys; ++j) {
            const T x = attn_score(si[j], i, j, sc);
            si[j] = x;
            if (x > mx) mx = x;
        }
        // While every score so far is -inf, subtract 0 instead: masked entries give exp(-inf) = 0 and a
        // NaN score still gives NaN.
        const T mu = mx == -std::numeric_limits<T>::infinity() ? T(0) : mx;
        const T a = mx == m[i] || mx == -std::numeric_limits<T>::infinity()
                        ? T(1)
                        : static_cast<T>(exp_arg(shifted(m[i], mu, one)));
        // A weight below T's normal range is 0 (kernel_table.hpp): x - mu < kNormalMinArg.
        constexpr double normal_min = std::is_same_v<T, float> ? double(kNormalMinArgF) : kNormalMinArgD;
        neumaier sum;
        for (std::size_t j = 0; j < keys; ++j) {
            const arg2 t = shifted(si[j], mu, one);
            const T p = t.hi < normal_min ? T(0) : static_cast<T>(exp_arg(t));
            si[j] = p;
            sum.add(double(p));
        }
        l[i] = l[i] * double(a) + sum.value();
        m[i] = mx;
        alpha[i] = a;
    }
}

template <class T, class S = T>
void k_pv(const T* p, std::size_t ldp, const S* v, std::ptrdiff_t ldv, std::size_t rows, std::size_t keys,
          std::size_t dv, const T* alpha, T* o, std::size_t ldo, prefetch_lines /*pf: a hint, not taken*/) {
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t c = 0; c < dv; ++c) {
            double acc = double(alpha[i]) * double(o[i * ldo + c]);
            for (std::size_t j = 0; j < keys; ++j)
                acc += double(p[i * ldp + j]) *
                       double(widen(v[static_cast<std::ptrdiff_t>(j) * ldv + static_cast<std::ptrdiff_t>(c)]));
            o[i * ldo + c] = static_cast<T>(acc);
        }
    }
}

template <class T, class S = T>
void k_qk_direct(const T* q, std::size_t ldq, const S* k, std::ptrdiff_t ldk, std::size_t rows, std::size_t keys,
                 std::size_t dim, T* s, std::size_t lds, std::size_t /*ahead*/, prefetch_lines /*pf*/) {
    // The specification prefetches nothing: ahead and pf are hints, and no result depends on them.
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < keys; ++j) {
            double acc = 0;
            for (std::size_t d = 0; d < dim; ++d)
                acc += double(q[i * ldq + d]) *
                       double(widen(k[static_cast<std::ptrdiff_t>(j) * ldk + static_cast<std::ptrdiff_t>(d)]));
            s[i * lds + j] = static_cast<T>(acc);
        }
}

template <class T>
constexpr attention_kernels<T> make_attention_kernels() {
    return {k_pack_kt<T>, k_qk<T>, k_softmax_step<T>, k_pv<T>, k_qk_direct<T>, /*tile_rows=*/1,
            /*pv_split=*/kPvNoSplit};
}
template <class S>
constexpr attention_kv_kernels<S> make_attention_kv_kernels() {
    return {k_pack_kt<float, S>, k_pv<float, S>, k_qk_direct<float, S>};
}

// 16-bit conversions: the specification itself (half_convert.hpp), one element at a time.
template <class S>
void k_widen(const S* x, float* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = detail::to_f32(x[i]);
}
void k_narrow_f16(const float* x, float16* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = detail::to_f16(x[i]);
}
void k_narrow_bf16(const float* x, bfloat16* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = detail::to_bf16(x[i]);
}
// A double rounded once into S (float32 by the cast; 16 bits by half_convert.hpp's to_f16 / to_bf16).
template <class S>
S narrow_to(double v) {
    if constexpr (std::is_same_v<S, float>) return static_cast<float>(v);
    else if constexpr (std::is_same_v<S, float16>) return detail::to_f16(v);
    else return detail::to_bf16(v);
}
template <class X, class S>
void k_scale_narrow(const X* x, double c, S* y, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) y[i] = narrow_to<S>(double(x[i]) * c);
}
constexpr convert_kernels make_convert_kernels() {
    return {k_widen<float16>, k_narrow_f16, k_widen<bfloat16>, k_narrow_bf16,
            k_scale_narrow<float, float>, k_scale_narrow<float, float16>, k_scale_narrow<float, bfloat16>,
            k_scale_narrow<double, float>, k_scale_narrow<double, float16>, k_scale_narrow<double, bfloat16>};
}

// ---- float16 / bfloat16 scores (storage_kernels, kernel_table.hpp) ----------------------------------------
// The specification: every x widened exactly (half_convert.hpp), the float32 specification's arithmetic (the
// exact argument beta (x - m) in double, exp_d, entries equal to m counted so that log_softmax near 0 is
// log1p of the rest), every y rounded once from double into S. The SIMD sets' fast float32 arithmetic
// differs from this by far less than S's rounding (kernel_table.hpp): both are within 1 ULP of S.
inline float wide(float16 h) { return detail::to_f32(h); }
inline float wide(bfloat16 h) { return detail::to_f32(h); }
template <class S>
float s_row_max(const S* x, std::size_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
        const float v = wide(x[i]);
        if (v != v) return v;
        if (v > m) m = v;
    }
    return m;
}
template <class S>
exp_sum s_row_exp_sum(const S* x, std::size_t n, float m, scale2<float> beta) {
    neumaier rest;
    double count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const float v = wide(x[i]);
        if (v == m)
            count += 1;
        else
            rest.add(exp_arg(shifted(v, m, beta)));
    }
    return {rest.value(), count};
}
// row_exp_sum without the count: every term summed, exp(0) = 1 exactly for entries equal to m.
template <class S>
exp_sum s_row_exp_total(const S* x, std::size_t n, float m, scale2<float> beta) {
    neumaier rest;
    for (std::size_t i = 0; i < n; ++i) rest.add(exp_arg(shifted(wide(x[i]), m, beta)));
    return {rest.value(), 0.0};
}
// The sum of one chunk (rest times kSumLift) and the next chunk's maximum (kernel_table.hpp: row_exp_sum_max).
template <class S, exp_sum (*Sum)(const S*, std::size_t, float, scale2<float>)>
exp_sum s_row_sum_max(const S* x, std::size_t n, float m, scale2<float> beta, const S* xn, std::size_t nn, float* mn) {
    *mn = s_row_max(xn, nn);
    const exp_sum e = Sum(x, n, m, beta);
    return {e.rest * kSumLift, e.count};
}
template <class S>
void s_row_exp_scale(const S* x, S* y, std::size_t n, float m, scale2<float> beta, float c) {
    for (std::size_t i = 0; i < n; ++i) y[i] = narrow_to<S>(exp_arg(shifted(wide(x[i]), m, beta)) * double(c));
}
template <class S>
void s_row_log_softmax(const S* x, S* y, std::size_t n, float m, scale2<float> beta, double c) {
    for (std::size_t i = 0; i < n; ++i) y[i] = narrow_to<S>(shifted(wide(x[i]), m, beta).hi - c);
}
template <class S>
void s_col_max(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, float* m, S*) {
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < w; ++j) {
            const float v = wide(x[static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j)]);
            if (m[j] != m[j]) continue;
            if (v != v || v > m[j]) m[j] = v;
        }
}
template <class S>
void s_col_exp_sum(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const float* m, scale2<float> beta,
                   double* rest, double* count) {
    for (std::size_t j = 0; j < w; ++j) {
        neumaier s;
        double c = 0;
        for (std::size_t i = 0; i < rows; ++i) {
            const float v = wide(x[static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j)]);
            if (v == m[j])
                c += 1;
            else
                s.add(exp_arg(shifted(v, m[j], beta)));
        }
        rest[j] += s.value();
        count[j] += c;
    }
}
template <class S>
void s_row_exp_scale_cols(const S* x, S* y, std::size_t w, const float* m, scale2<float> beta, const float* c) {
    for (std::size_t j = 0; j < w; ++j) y[j] = narrow_to<S>(exp_arg(shifted(wide(x[j]), m[j], beta)) * double(c[j]));
}
template <class S>
void s_col_exp_scale(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t w,
                     const float* m, scale2<float> beta, const float* c) {
    for (std::size_t i = 0; i < rows; ++i)
        s_row_exp_scale_cols(x + static_cast<std::ptrdiff_t>(i) * sx, y + static_cast<std::ptrdiff_t>(i) * sy, w, m, beta, c);
}
template <class S>
void s_col_log_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t w,
                       const float* m, scale2<float> beta, const double* c) {
    for (std::size_t i = 0; i < rows; ++i) {
        const S* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        S* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for (std::size_t j = 0; j < w; ++j) yi[j] = narrow_to<S>(shifted(wide(xi[j]), m[j], beta).hi - c[j]);
    }
}
template <class S>
void s_rows_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                    scale2<float> beta, float m_limit, float* m) {
    for_each_row(x, sx, rows, n, m_limit, m, s_row_max<S>, [&](std::size_t r, const S* xr) {
        const exp_sum e = s_row_exp_sum(xr, n, m[r], beta);
        s_row_exp_scale(xr, y + static_cast<std::ptrdiff_t>(r) * sy, n, m[r], beta,
                        static_cast<float>(1.0 / (e.count + e.rest)));
    });
}
template <class S>
void s_rows_exp_sum(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, scale2<float> beta, float m_limit,
                    float* m, exp_sum* s) {
    for (std::size_t r = 0; r < rows; ++r) s[r] = exp_sum{0, 0};
    for_each_row(x, sx, rows, n, m_limit, m, s_row_max<S>,
                 [&](std::size_t r, const S* xr) { s[r] = s_row_exp_sum(xr, n, m[r], beta); });
}
template <class S>
void s_rows_log_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                        scale2<float> beta, float m_limit, float* m) {
    for_each_row(x, sx, rows, n, m_limit, m, s_row_max<S>, [&](std::size_t r, const S* xr) {
        const exp_sum e = s_row_exp_sum(xr, n, m[r], beta);
        s_row_log_softmax(xr, y + static_cast<std::ptrdiff_t>(r) * sy, n, m[r], beta,
                          log_sum_out<float>(e.count, e.rest));
    });
}
template <class S>
constexpr storage_kernels<S> make_storage_kernels() {
    return {s_row_max<S>,      s_row_exp_sum<S>,     s_row_exp_scale<S>, s_row_log_softmax<S>, s_col_max<S>,
            s_col_exp_sum<S>,  s_col_exp_scale<S>,   s_col_log_softmax<S>, s_rows_softmax<S>,  s_rows_exp_sum<S>,
            s_rows_log_softmax<S>, s_row_exp_total<S>, s_row_exp_scale<S>,
            s_row_log_softmax<S>,  // no streaming store in the specification
            s_row_sum_max<S, s_row_exp_sum<S>>, s_row_sum_max<S, s_row_exp_total<S>>};
}

}  // namespace
}  // namespace normexp::scalar

namespace normexp {
const kernel_table& scalar_kernels() {
    static const kernel_table table{"scalar", scalar::make_kernels<float>(), scalar::make_kernels<double>(),
                                    scalar::make_attention_kernels<float>(),
                                    scalar::make_attention_kernels<double>(),
                                    scalar::make_kernels<float, true>(), scalar::make_kernels<double, true>(),
                                    scalar::make_convert_kernels(), scalar::make_storage_kernels<float16>(),
                                    scalar::make_storage_kernels<bfloat16>(),
                                    scalar::make_attention_kv_kernels<float16>(),
                                    scalar::make_attention_kv_kernels<bfloat16>(),
                                    bf16_dot_kernels{}};  // optional: no bfloat16 dot product in the specification
    return table;
}
}  // namespace normexp
