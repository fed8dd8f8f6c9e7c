// The kernel table: the one interface between the ISA translation units and the drivers.
//
// Every ISA (scalar.cpp; avx2.cpp + avx2/; avx512.cpp + avx512/; neon.cpp + neon/) implements these
// kernels with internal linkage and exports exactly one function returning a filled table (the SIMD
// ones assemble it from their kernel-family files: isa_parts.hpp; the algorithms are written once in
// generic/). Kernels are
// single-threaded, take pointers and counts, and never allocate. Drivers (cpp/src/*.cpp) own axes,
// blocking, threads and special values.
//
// Conventions shared by all kernels
//  * "t = beta * (x - m)" is the shifted, temperature-scaled score.  x - m is formed with an error term
//    (TwoSum in scalar.cpp; Fast2Sum in generic/lanes.hpp, exact as well because x <= m), and beta is
//    a two-term constant {hi, lo}, so t is known to ~2^-48 relative before exp; this is what keeps
//    exp(t) within a few ULP when |t| is large (a plain fl(x - m) costs up to |t| * 2^-24 relative
//    error, i.e. ~50 ULP at t = -100).
//  * m is the row (or column) maximum: t <= 0 for every entry, and m is finite (drivers handle rows whose
//    maximum is NaN or +-inf before calling a kernel). A softmax row's exps may be taken against another
//    shift, softmax_shift(m) below, since softmax(x) = exp(x - c) / sum exp(x - c) for every c.
//  * Sums of exp are accumulated in blocks in working precision and flushed into double (Neumaier
//    compensated for float64), so error does not grow with the row length.
//  * "rest/count" split: entries equal to m contribute exactly exp(0) = 1 each and are counted instead
//    of summed, so the driver can form log(count + rest) as log1p(rest) when count == 1 and keep full
//    relative accuracy near the maximum.
//  * accuracy::fast (kernel_table::f32_fast / f64_fast: the same entry points, filled by the same
//    templates with the mode as a parameter): t = fl(fl(x - m) * beta.hi), rounded in working precision as
//    the peers round it (no error term: relative error |t| 2^-24, 2^-53 for float64, per rounding, on top of
//    the exp's <= 1 ULP: one rounding without a temperature, three with one, counting beta.hi's own); nothing
//    is counted (row_exp_sum / col_exp_sum return count 0 and the whole sum in
//    rest, so log(count + rest) is log(rest)); log_softmax is fl(t - fl(c)) in working precision. Sums are
//    accumulated as in the high mode. The entries that do not depend on the mode (exp, row_max, row_scale,
//    col_max, col_scale, sampling) are the high table's.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "normexp/half.hpp"
#include "../portability.hpp"
#include "exp_constants.hpp"

namespace normexp {

// beta = 1/temperature as an unevaluated sum hi + lo (lo == 0 when the temperature is 1).
template <class T>
struct scale2 {
    T hi;
    T lo;
};

// Partial statistics of a row segment relative to the maximum m: sum_{x != m} exp(t) and #{x == m}.
struct exp_sum {
    double rest;
    double count;
};
// The scale of row_exp_sum_max's rest (exp_constants.hpp: 2^kLiftD).
constexpr double kSumLift = expc::kLiftScaleD;

// log(count + rest) with full relative accuracy when a single maximum dominates. log1p(r) as
// log(u) + (r - (u - 1)) / u with u = 1 + r rounded: the quotient restores what rounding u lost (the
// classic correction; within ~1 ULP like std::log1p, at the cost of a log, which is 2-3x faster here).
// The drivers and the several-rows kernels (rows_log_softmax) form c = log(sum) with it, or with
// log_sum_float below where the output rounds c to float32 (log_sum_out picks), so both give the same c.
// Internal linkage: each translation unit has its own copy, compiled with its own flags (an inline
// function the linker could pick from an ISA file would run its instructions on any CPU); plain IEEE
// operations and one call of std::log, never contracted (-ffp-contract=off), so the copies agree.
namespace {
inline double log_sum(double count, double rest) {
    if (count != 1) return std::log(count + rest);
    const double u = 1.0 + rest;
    return u == 1.0 ? rest : std::log(u) + (rest - (u - 1.0)) / u;
}

// log(x) for x in [1/2, 2], at compile time: 2 atanh(z), z = (x - 1) / (x + 1), |z| <= 1/3, summed to 2^-100.
constexpr double log_series(double x) {
    const double z = (x - 1) / (x + 1), z2 = z * z;
    double term = z, sum = 0;
    for (int k = 0; k < 64; ++k) sum += term / (2 * k + 1), term *= z2;
    return 2 * sum;
}

// The reduction table of log_sum_float: for mantissas in [1 + i/128, 1 + (i + 1)/128), inv[i] = 1 / c_i and
// lg[i] = log(c_i), c_i = 1 + (i + 1/2)/128 the interval's centre; c_0 = 1, so that log(m) = log1p(m - 1)
// keeps its relative accuracy next to 1.
struct log_reduction {
    double inv[128];
    double lg[128];
};
constexpr log_reduction make_log_reduction() {
    log_reduction t{};
    for (int i = 0; i < 128; ++i) {
        const double c = i == 0 ? 1.0 : 1 + (i + 0.5) / 128;
        t.inv[i] = 1 / c, t.lg[i] = log_series(c);
    }
    return t;
}
constexpr log_reduction kLogReduction = make_log_reduction();

// log(count + rest) to float32 accuracy, for the outputs that round c to float32: accuracy::fast float32 and
// the 16-bit types (log_softmax_range). count + rest = 2^e m, m in [1, 2) and in the table's interval i:
// log = e log(2) + log(c_i) + log1p(r), r = m / c_i - 1 (|r| <= 2^-8, for i = 0 in [0, 2^-7); the product
// rounded, an absolute 2^-53) and log1p by its Taylor polynomial to r^4 (error r^5 / 5: at most 2^-42, and
// for i = 0, where the result is log1p(r) itself, at most 2^-30 of it). About a dozen floating-point
// operations, no call and no division: the several-rows kernel seals each row with it, beside an exp pass
// that keeps the FP pipes busy (fast log_softmax of 4096 rows of 128 entries, AVX-512: 191-195 us with
// std::log, a call that spilled the live vectors; 185 with a degree-9 polynomial on [sqrt(1/2), sqrt(2)),
// twice the operations; 178-182 with this; 167 with a multiply in its place). count == 1 with rest < 2^-7
// (the counting sums, a dominant maximum): r = rest itself, so a tiny rest keeps its relative accuracy, as in
// log_sum. The sum is >= 1 where the drivers and kernels call this (the maximum's term is 1); outside the
// normal range std::log answers. Plain IEEE operations, never contracted, and a table fixed at compile time:
// every copy gives the same bits.
NX_INLINE double log_sum_float(double count, double rest) {
    constexpr double kLn2 = 0x1.62e42fefa39efp-1, kThird = 0x1.5555555555555p-2;
    const double s = count + rest;
    if (!(s >= 0x1p-1022 && s <= 0x1.fffffffffffffp+1023)) return std::log(s);
    std::uint64_t b;
    std::memcpy(&b, &s, sizeof b);
    const int e = static_cast<int>(b >> 52) - 1023;
    const std::size_t i = static_cast<std::size_t>(b >> 45) & 127;
    b = (b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    double m;
    std::memcpy(&m, &b, sizeof m);
    const bool tiny = count == 1 && rest < 0x1p-7;
    const double r = tiny ? rest : m * kLogReduction.inv[i] - 1.0;
    const double k = tiny ? 0.0 : static_cast<double>(e), lg = tiny ? 0.0 : kLogReduction.lg[i];
    const double p = r + (r * r) * (-0.5 + r * (kThird + r * -0.25));
    return (k * kLn2 + lg) + p;
}

// c = log(count + rest) for log_softmax's output in T: log_sum_float for every float32 output (its relative
// error, at most 2^-30, is 2^-6 of a float32 ULP of y = t - c, whose terms never cancel: t <= 0 <= c), log_sum
// for float64. The drivers and the kernels form c with it, so a row's c does not depend on which of them ran it.
template <class T>
inline double log_sum_out(double count, double rest) {
    if constexpr (sizeof(T) == 4) return log_sum_float(count, rest); else return log_sum(count, rest);
}
// logsumexp's m + log(count + rest), in double, for a result rounded to T. float32 and the 16-bit types take
// log_sum_float's c (a call of std::log took a sixth of the time of 16384 rows of 32 float32 entries) unless m
// cancels it: c's error, at most 2^-30 c, is 2^-28 of y = m + c where |y| >= c / 4, but where the result is
// near 0 by cancellation (a row of n equal entries -log(n): y ~ 1e-10) it was thousands of ULP of y, so there
// log_sum (std::log), as for float64. Statistics outside log_sum_float's domain (a sum below 1: never the
// kernels', whose maximum's term is 1) take log_sum too.
template <class T>
NX_INLINE double lse_out(double m, double count, double rest) {
    if constexpr (sizeof(T) == 4) {
        const double c = log_sum_float(count, rest), y = m + c;
        if (count + rest >= 1 && std::fabs(y) >= 0.25 * c) return y;
    }
    return m + log_sum(count, rest);
}
// log_softmax's float32 output at unit temperature, both modes: y = fl(fl(x - m) - fl(c)), two float operations
// per entry, the peers' arithmetic. (Rounding x - m - c once from double took four conversions and two double
// subtractions per 16 entries: the high-mode log_softmax took 1.22-1.27x the time, AVX-512.) No cancellation
// (x - m <= 0 <= c), so each rounding costs at most half an ULP of y: at most 1.5 ULP; and y depends on x only
// through fl(x - m), so adding a constant to a row whose x - m are exact leaves every bit as it was. The modes
// differ in c (counted, log1p near the maximum, from the exact-argument exp) and with a temperature, where the
// high mode rounds beta (x - m) - c once from double (generic/reductions.hpp: log_softmax_op).

// rows_softmax's chunked rows (reduction_kernels below): a float32 row of more than kSoftmaxChunkedMin entries, of
// unit temperature with m_limit the largest float, is taken in chunks of softmax_chunk<float>(n) entries, whole
// 16 KiB but for the last, or more when a row has more than kSoftmaxMaxChunks of them. (Shorter rows keep one
// maximum per row: chunked, batches of 64-256 KiB rows from memory took 1.04-1.13x the time, though a single
// 32000-entry row in cache took 0.92-0.95x. float64 rows are not chunked: there a - b rounds, and with it
// exactly the factor cost 1-2 ULP more, 5 against 3.)
constexpr std::size_t kSoftmaxChunkedMin = std::size_t(1) << 16;
constexpr std::size_t kSoftmaxChunkBytes = std::size_t(16) << 10;
constexpr std::size_t kSoftmaxMaxChunks = 64;
template <class T>
constexpr std::size_t softmax_chunk(std::size_t n) {
    const std::size_t c = kSoftmaxChunkBytes / sizeof(T), per = (n + kSoftmaxMaxChunks - 1) / kSoftmaxMaxChunks;
    return per > c ? (per + c - 1) / c * c : c;
}
// exp(a - b) in double for float32 maxima a <= b of a row's chunks (a = -inf gives 0): the factor that moves a sum
// or an output taken against a onto b; a - b is exact in double, as the kernels' exp arguments are exact.
inline double chunk_rescale(float a, float b) {
    return std::exp(static_cast<double>(a) - static_cast<double>(b));
}
// The factor of chunk c of a chunked row (its running maximum mc, the row's m, inv = 1 / S), rounded once.
inline float chunk_factor(float mc, float m, double inv) {
    return mc == m ? static_cast<float>(inv) : static_cast<float>(chunk_rescale(mc, m) * inv);
}
// rows_softmax's definition of a chunked float32 row in terms of the single-row entries row_max, row_exp_store and
// row_scale (the scalar set's rows_softmax, and what tests/cpp/test_fast_kernels.cpp holds every set's to, bit
// for bit). Returns m: the row's maximum, or NaN / +inf / -inf for a row skipped for a NaN, +inf, or -inf only.
template <class T, class Max, class ExpStore, class Scale>
T softmax_row_chunked(const T* x, T* y, std::size_t n, scale2<T> beta, Max row_max, ExpStore row_exp_store,
                      Scale row_scale) {
    static_assert(std::is_same_v<T, float>, "float32 rows only");
    const T ninf = -std::numeric_limits<T>::infinity();
    const std::size_t C = softmax_chunk<T>(n), nc = (n + C - 1) / C;
    T mc[kSoftmaxMaxChunks];  // nc <= kSoftmaxMaxChunks
    T mr = ninf;
    double s = 0;
    for (std::size_t c = 0; c < nc; ++c) {
        const std::size_t i0 = c * C, len = n - i0 < C ? n - i0 : C;
        const T mx = row_max(x + i0, len);
        if (mx != mx || mx == std::numeric_limits<T>::infinity()) return mx;
        if (mx > mr) {
            s *= chunk_rescale(mr, mx);
            mr = mx;
        }
        mc[c] = mr;
        if (mr != ninf) s += row_exp_store(x + i0, y + i0, len, mr, beta);
    }
    if (mr == ninf) return mr;
    const double inv = 1.0 / s;
    for (std::size_t c = 0; c < nc; ++c) {
        const std::size_t i0 = c * C, len = n - i0 < C ? n - i0 : C;
        if (mc[c] == ninf)
            for (std::size_t i = 0; i < len; ++i) y[i0 + i] = T(0);
        else
            row_scale(y + i0, len, chunk_factor(mc[c], mr, inv));
    }
    return mr;
}

// Rows whose exps accuracy::high takes against 0 instead of their maximum m: unit temperature and 0 <= m <=
// kUnshiftedMax. Every result is invariant under the shift c of the exps' argument (softmax(x) = exp(x - c) /
// sum exp(x - c), and sum exp(x - m) = exp(c - m) sum exp(x - c)); the kernels take c = m so that every term is
// at most 1. With c = 0 the argument x - c = x is exact as it stands, so the exp needs no error term (Fast2Sum's
// four operations and the term's addition left out: a 4096-entry float32 row in L1 takes 0.78x the time, AVX-512,
// Zen 4), and the contract holds: each term is exp(x) within 1 ULP, as exp(x - m) was; at most e^64, times the
// counting sums' 2^24 lift 1e35 (finite in any float32 partial sum of fewer than 2^11 terms: the blocked sums
// flush to double every 8 vectors); and next to a sum of at least exp(m) >= 1 a term that underflows loses no
// more than it did against m (its exponent x is above x - m). Rows with m < 0 (a sum below 1, where an
// underflowed term's error would be magnified) or m > kUnshiftedMax keep c = m, and so does accuracy::fast,
// whose argument has no error term to save.
//  * softmax (softmax_shift): y = exp(x - c) T(1 / sum exp(x - c)). The drivers and the several-rows kernels
//    (rows_softmax) take every row's shift from here, so a row's bits do not depend on which of them ran it.
//    (Chunked rows and columns keep c = m.)
//  * the float32 counting sums of more than kUnshiftedSumMin entries (row_exp_sum, row_exp_sum_max, rows_exp_sum,
//    rows_log_softmax; unshifted_sum): the terms exp(x) of the entries other than m, their sum scaled back by
//    exp_neg(m) = exp(-m) in double (below), so they return rest against m as ever and no caller sees c.
//    Shorter rows keep c = m: exp_neg's score of scalar operations costs more than it saves on a few vectors
//    (16384 rows of 32 entries took 1.2-1.3x the time), and so do float64 (terms good to 2^-53) and columns.
// Internal linkage, as log_sum: the ISA files and the drivers take the rule from here.
constexpr double kUnshiftedMax = 64.0;
constexpr std::size_t kUnshiftedSumMin = 128;

// exp(-m) in double for m in [0, kUnshiftedMax] (the float32 counting sums' unshift factor). m = i + j/16 + g with
// integers i, j and g in [0, 1/16), each exact in double: exp(-i) and exp(-j/16) from tables made at compile
// time (powers of exp(-1) and exp(-1/16) in long double, whose series converge without cancellation), exp(-g) by
// its Taylor polynomial to g^7 (truncation error below 2^-47). Relative error below 2^-45, far below the float32
// terms' 2^-24. No call: a call of std::exp for each row made the several-rows kernels spill their vectors
// (16384 rows of 32 float32 entries took 1.26x the time); plain IEEE operations, never contracted, so every
// copy gives the same bits.
struct exp_neg_tables {
    double whole[65];    // exp(-i), i = 0..64
    double sixteenth[16];  // exp(-j/16)
};
constexpr long double exp_neg_series(long double x) {  // exp(-x) for x in [0, 1]
    long double term = 1, sum = 1;
    for (int k = 1; k < 40; ++k) term *= -x / k, sum += term;
    return sum;
}
constexpr exp_neg_tables make_exp_neg_tables() {
    exp_neg_tables t{};
    const long double e1 = exp_neg_series(1), e16 = exp_neg_series(0.0625L);
    long double p = 1;
    for (int i = 0; i <= 64; ++i) t.whole[i] = static_cast<double>(p), p *= e1;
    p = 1;
    for (int j = 0; j < 16; ++j) t.sixteenth[j] = static_cast<double>(p), p *= e16;
    return t;
}
constexpr exp_neg_tables kExpNegTables = make_exp_neg_tables();
NX_INLINE double exp_neg(double m) {
    const int i = static_cast<int>(m);
    const double f = m - i;
    const int j = static_cast<int>(f * 16);
    const double g = f - j * 0.0625;
    constexpr double c3 = 0x1.5555555555555p-3, c4 = 0x1.5555555555555p-5, c5 = 0x1.1111111111111p-7,
                     c6 = 0x1.6c16c16c16c17p-10, c7 = 0x1.a01a01a01a01ap-13;  // 1/k!
    const double q = 1 - g * (1 - g * (0.5 - g * (c3 - g * (c4 - g * (c5 - g * (c6 - g * c7))))));
    return kExpNegTables.whole[i] * kExpNegTables.sixteenth[j] * q;
}
template <class T>
inline bool unshifted(T m, scale2<T> beta, bool fast) {
    return !fast && beta.hi == T(1) && beta.lo == T(0) && m >= T(0) && m <= T(kUnshiftedMax);
}
template <class T>
inline T softmax_shift(T m, scale2<T> beta, bool fast) {
    return unshifted(m, beta, fast) ? T(0) : m;
}
inline bool unshifted_sum(float m, scale2<float> beta, std::size_t n) {
    return n > kUnshiftedSumMin && unshifted(m, beta, false);
}
}  // namespace

// Rows per batch of the several-rows kernels (rows_softmax, rows_log_softmax, rows_exp_sum) in the drivers
// (reduce.cpp, sampling.cpp's cross_entropy): their maxima and sums go to stack arrays of this size.
constexpr std::size_t kRowBatch = 64;

// Whether the several-rows kernels (reduction_kernels below) skip a row whose maximum (or reported m) is m:
// NaN, +inf, above m_limit, or -inf (all -inf); the driver then redoes it with the single-row entries.
template <class T>
inline bool rows_skip(T m, T m_limit) {
    return !(m <= m_limit) || m == -std::numeric_limits<T>::infinity();
}

template <class T>
struct reduction_kernels {
    // y[i] = exp(x[i]) over the whole domain (overflow to +inf, gradual underflow, NaN propagates).
    void (*exp)(const T* x, T* y, std::size_t n);

    // ---- contiguous rows -------------------------------------------------------------------------
    // max of x[0..n); NaN if any element is NaN; -inf for n == 0.
    T (*row_max)(const T* x, std::size_t n);
    // {sum over x != m of exp(beta (x - m)), #(x == m)}.
    exp_sum (*row_exp_sum)(const T* x, std::size_t n, T m, scale2<T> beta);
    // y = exp(beta (x - m)); returns sum of y (all entries). y may alias x. m may also be a softmax row's
    // shift softmax_shift(max) = 0, with x up to kUnshiftedMax: x itself is then the exact argument.
    double (*row_exp_store)(const T* x, T* y, std::size_t n, T m, scale2<T> beta);
    // y *= c.
    void (*row_scale)(T* y, std::size_t n, T c);
    // y = exp(beta (x - m)) * c. y may alias x.
    void (*row_exp_scale)(const T* x, T* y, std::size_t n, T m, scale2<T> beta, T c);
    // y = beta (x - m) - c, with c = log(sum) carried in double. y may alias x.
    void (*row_log_softmax)(const T* x, T* y, std::size_t n, T m, scale2<T> beta, double c);

    // ---- columns: `rows` rows of `w` contiguous entries, rows `sx` (or `sy`) elements apart ----------
    // m[j] = max(m[j], max_i x[i*sx + j]); NaN sticks. If copy is not null, also copy[i*w + j] = x[i*sx + j]
    // (gathers a strided column block into contiguous scratch while it streams by).
    void (*col_max)(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, T* m, T* copy);
    // rest[j] += sum over x != m[j] of exp(beta (x - m[j])); count[j] += #(x == m[j]).
    void (*col_exp_sum)(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const T* m,
                        scale2<T> beta, double* rest, double* count);
    // y[i*sy + j] = exp(beta (x[i*sx + j] - m[j])) * c[j].
    void (*col_exp_scale)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                          std::size_t w, const T* m, scale2<T> beta, const T* c);
    // y[i*sy + j] = beta (x[i*sx + j] - m[j]) - c[j].
    void (*col_log_softmax)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                            std::size_t w, const T* m, scale2<T> beta, const double* c);
    // In place on a contiguous rows x w block: x[i*w + j] = exp(beta (x[i*w + j] - m[j])); sum[j] += the
    // column's sum of the stored values.
    void (*col_exp_store)(T* x, std::size_t rows, std::size_t w, const T* m, scale2<T> beta, double* sum);
    // y[i*sy + j] = x[i*sx + j] * c[j].
    void (*col_scale)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows, std::size_t w,
                      const T* c);
    // row_exp_scale for outputs far larger than the caches: stores bypass them where the ISA can
    // (non-temporal), saving the read-for-ownership of every output line. Same results.
    void (*row_exp_scale_stream)(const T* x, T* y, std::size_t n, T m, scale2<T> beta, T c);
    // row_log_softmax likewise (same results).
    void (*row_log_softmax_stream)(const T* x, T* y, std::size_t n, T m, scale2<T> beta, double c);
    // col_exp_scale and col_log_softmax for column blocks far larger than the caches, likewise: the whole
    // vectors of each output row from its first cache-line boundary on bypass the caches where the ISA can
    // (the driver's online column path then moves x twice and y once, as many bytes as the last axis).
    // Same results.
    void (*col_exp_scale_stream)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                                 std::size_t w, const T* m, scale2<T> beta, const T* c);
    void (*col_log_softmax_stream)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                                   std::size_t w, const T* m, scale2<T> beta, const double* c);

    // ---- sampling (driver cpp/src/sampling.cpp) ---------------------------------------------------
    // Writes the indices i < n with x[i] >= thr to idx in increasing order and returns how many
    // (NaN is never collected). idx has room for n entries; n < 2^32.
    std::size_t (*row_collect_ge)(const T* x, std::size_t n, T thr, std::uint32_t* idx);
    // Sampling weights, BIT-IDENTICAL on every ISA (same seed -> same token rests on this; see
    // sampling_weights.hpp for the exact operation sequence every implementation must follow):
    //   t_i = float32 of beta * (x_i - m)   (float32 input: both operations in float32;
    //                                         float64 input: both in float64, then rounded to float32)
    //   w_i = sample_exp(t_i) if x_i >= thr, else 0          (m is the row max, so t_i <= 0, w_i <= 1)
    // w (if not null) receives w[0..n). block_sums (if not null) receives one float per block of
    // kSampleBlock = 64 entries (the last one padded with zeros), summed in a fixed lane order.
    void (*row_sample_weights)(const T* x, std::size_t n, T m, T beta, T thr, float* w, float* block_sums);

    // ---- several short rows per call: `rows` rows of n entries, x rows sx apart (y rows sy apart) --------
    // One call per batch of rows amortizes what a row costs besides its arithmetic (the driver's
    // bookkeeping, the calls, the horizontal reductions that end each row, which overlap the neighbouring
    // rows' work: generic/reductions.hpp pipelines the rows). Per row r: m[r] = row_max(row r), except that
    // a row with a NaN reports some m[r] that skips it, not necessarily NaN (the SIMD sets find a NaN from
    // the row's sum, not in the maximum's pass); a row is skipped when m[r] is not finite or m[r] > m_limit:
    // the driver redoes it with the single-row entries (rows_softmax may have written y of a row with a
    // NaN). For the others exactly what the single-row entries give:
    //   rows_softmax:  y_r = row_exp_store(x_r, softmax_shift(m[r])) scaled in place by row_scale with T(1 / sum);
    //                  rows of n > kSoftmaxChunkedMin float32 entries with unit beta and m_limit = the largest
    //                  float in chunks (softmax_chunk), so that a long row's maximum comes from the pass over
    //                  its previous chunk instead of a pass of its own: M_c = row_max(chunk c), m_c = max(m_{c-1}, M_c); the row is skipped when an M_c
    //                  is NaN or +inf or every m_c is -inf; chunk c's terms s_c = row_exp_store(chunk, y_c,
    //                  m_c) (none, and y_c untouched, while m_c = -inf); S = s_0, then per chunk S = S *
    //                  chunk_rescale(m_{c-1}, m_c) where m_c > m_{c-1}, and S += s_c; with m = the last m_c,
    //                  y_c scaled by row_scale with T(1 / S) where m_c = m, else T(chunk_rescale(m_c, m) *
    //                  (1 / S)), and y_c = 0 where m_c = -inf. (Against exp(x - m) / S, the factor's exp in
    //                  double adds nothing measurable: one rounding to T as before.) Such a skipped row may be
    //                  written anywhere but in its -inf chunks and past an entry that is +inf, so that the
    //                  driver, which redoes it in place, still finds the row's NaN, +inf or -inf;
    //   rows_exp_sum:  s[r] = row_exp_sum(x_r, m[r])  (s[r] = {0, 0} for skipped rows);
    //   rows_log_softmax: row_log_softmax(x_r, y_r, m[r], c) with c = log_sum_out of row_exp_sum(x_r, m[r]).
    void (*rows_softmax)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                         scale2<T> beta, T m_limit, T* m);
    void (*rows_exp_sum)(const T* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, scale2<T> beta, T m_limit,
                         T* m, exp_sum* s);
    void (*rows_log_softmax)(const T* x, std::ptrdiff_t sx, T* y, std::ptrdiff_t sy, std::size_t rows,
                             std::size_t n, scale2<T> beta, T m_limit, T* m);

    // ---- one step of the online column statistics (the driver's col_stats_rows) ----------------------------
    // col_exp_sum(x, rows, sx, w, m, beta, rest, count) of a chunk (in cache) and col_max(xn, rows_n, sx, w,
    // mn, nullptr) of the next one in the same call, so that the next chunk streams from memory while this
    // one's exps run (where nothing is counted; a counting sum is the two entries one after the other:
    // generic/reductions.hpp); mn must not alias m. Both results bit for bit what those entries give, except
    // that count == nullptr counts nothing: every entry's term goes to rest, an entry equal to m[j] adding
    // exp(0) = 1 exactly (softmax needs only count + rest; accuracy::fast never counts). rows_n may be 0.
    void (*col_exp_sum_max)(const T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const T* m,
                            scale2<T> beta, double* rest, double* count, const T* xn, std::size_t rows_n, T* mn);
    // row_exp_sum(x, n, m, beta) with rest times kSumLift, and *mn = row_max(xn, nn) (bit for bit both; nn <=
    // kSuperChunk, may be 0): a chunk's sum and the next chunk's maximum in one pass (the driver's online row
    // statistics, reduce.cpp: segment_stats). rest is returned in the lifted scale in which the kernel formed it,
    // so that the chunks' sums add before one scaling back: a float64 rest below the smallest normal would
    // round at every chunk (15 ULP of a logsumexp of 65536 such terms).
    exp_sum (*row_exp_sum_max)(const T* x, std::size_t n, T m, scale2<T> beta, const T* xn, std::size_t nn, T* mn);
};

// ---- reductions over 16-bit storage ---------------------------------------------------------------------
// The entries of reduction_kernels that the driver needs for float16 / bfloat16 scores (S), with the same
// contracts and argument orders, except that x and y are in S: each entry widens x to float32 in registers,
// computes in float32 and rounds every y once, to nearest even, into S (the bits of half_convert.hpp). The
// statistics (m, the sums, c) are float32 / double as in reduction_kernels<float>. There is one table per
// storage type and no accuracy mode:
//  * the SIMD sets use accuracy::fast's arithmetic whatever accuracy= says: t = fl(fl(x - m) * beta.hi)
//    costs |t| 2^-24 relative (three roundings with a temperature), and |t| is below ~17 wherever a float16
//    softmax is not 0 (~90 for bfloat16), so ~2^-20 relative at most: far below the output's rounding,
//    2^-11 (float16) or 2^-8 (bfloat16); log_softmax is fl(t - fl(c)): t <= 0 <= c, so y = t - c never
//    cancels. softmax's own entries (row_exp_scale, row_exp_scale_stream, col_exp_scale, row_exp_total)
//    take a shorter exp, within 2^-17 relative (exp_constants.hpp: kH2F..), since y = exp(t) / sum is
//    relative; the counting sums keep the float32 exp (logsumexp = m + log(sum) can cancel towards 0). The sums (row_exp_sum, col_exp_sum) are the high mode's, entries equal to the maximum counted:
//    c = log(count + rest) must be log1p(rest) when the maximum dominates, since a float32 block sum
//    1 + rest keeps rest only to 2^-24 absolute, and log_softmax / logsumexp near 0 (|y| ~ 1e-5, float16
//    subnormals) would be off by several ULP of the 16-bit result.
//  * the scalar set is the specification: the exact argument of the float32 specification (in double), exp
//    in double, each output rounded once from double into S (half_convert.hpp: to_f16 / to_bf16 of a
//    double), entries equal to the maximum counted as well.
// Both are within 1 ULP of S against the exact result. The entries that store a value to read it back
// (row_exp_store, row_scale, col_exp_store, col_scale) are absent: a 16-bit intermediate would round twice,
// so the driver takes the two-exp paths (row_exp_sum then row_exp_scale) for 16-bit softmax, and rows_softmax
// is max, row_exp_sum and row_exp_scale per row. col_max's copy must be null.
template <class S>
struct storage_kernels {
    float (*row_max)(const S* x, std::size_t n);
    exp_sum (*row_exp_sum)(const S* x, std::size_t n, float m, scale2<float> beta);
    void (*row_exp_scale)(const S* x, S* y, std::size_t n, float m, scale2<float> beta, float c);
    void (*row_log_softmax)(const S* x, S* y, std::size_t n, float m, scale2<float> beta, double c);
    void (*col_max)(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, float* m, S* copy);
    void (*col_exp_sum)(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const float* m,
                        scale2<float> beta, double* rest, double* count);
    void (*col_exp_scale)(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t w,
                          const float* m, scale2<float> beta, const float* c);
    void (*col_log_softmax)(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                            std::size_t w, const float* m, scale2<float> beta, const double* c);
    void (*rows_softmax)(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                         scale2<float> beta, float m_limit, float* m);
    void (*rows_exp_sum)(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, scale2<float> beta,
                         float m_limit, float* m, exp_sum* s);
    void (*rows_log_softmax)(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                             std::size_t n, scale2<float> beta, float m_limit, float* m);
    // softmax of a long row (the driver's super-chunks; cpp/src/reduce.cpp) needs only count + rest:
    // row_exp_total is row_exp_sum without the count, {sum over every x of exp(beta (x - m)), 0} (an entry
    // equal to m adds exp(0) = 1 exactly; accuracy::fast's row_exp_sum), and row_exp_scale_stream is
    // row_exp_scale with stores that bypass the caches where the ISA can (the same values; NEON: the
    // ordinary kernel), row_log_softmax_stream likewise for log_softmax's long rows. Sums: the SIMD sets as
    // row_exp_sum's rest, the specification in double.
    exp_sum (*row_exp_total)(const S* x, std::size_t n, float m, scale2<float> beta);
    void (*row_exp_scale_stream)(const S* x, S* y, std::size_t n, float m, scale2<float> beta, float c);
    void (*row_log_softmax_stream)(const S* x, S* y, std::size_t n, float m, scale2<float> beta, double c);
    // row_exp_sum and row_exp_total of one chunk of a long row with the next chunk's row_max read in the same
    // pass, as reduction_kernels' row_exp_sum_max (rest times kSumLift, both results bit for bit those of the
    // single entries; nn <= kSuperChunk, may be 0): a 16-bit row's statistics then read memory during the exps.
    exp_sum (*row_exp_sum_max)(const S* x, std::size_t n, float m, scale2<float> beta, const S* xn, std::size_t nn,
                               float* mn);
    exp_sum (*row_exp_total_max)(const S* x, std::size_t n, float m, scale2<float> beta, const S* xn,
                                 std::size_t nn, float* mn);
};

// ---- attention (blocked, flash-style) ------------------------------------------------------------------
// One query block (rows) against one key/value block (keys) of one head. The driver (attention.cpp) runs
// for each key/value block:  pack_kt -> qk -> softmax_step -> pv,  with per-row running statistics
// (max m, sum l) and an unnormalized output accumulator o, so the Lq x Lkv score matrix never exists.
// All matrices are row-major with a leading dimension (ld) in elements; the head dimension of q and v
// has unit stride (the driver packs other layouts).

// Packed K^T panels are zero-padded to a multiple of this many keys, so every micro-kernel can compute
// whole panels (16 = 2 AVX2 float32 vectors = 4 NEON vectors).
constexpr std::size_t kAttnKeyPanel = 16;

// How one block's raw dot products s become scores x (in this order), in block-local indices i (row) and
// j (key):
//   x = scale * s
//   x = softcap * tanh(x / softcap)                       if softcap > 0
//   x -= alibi_slope * |j - i - alibi_center|             if alibi_slope != 0
//   x += bias[i * bias_ld + j]                            if bias (additive mask, unit key stride)
//   x = -inf  unless keep[i * keep_ld + j] != 0           if keep (boolean mask, unit key stride)
//   x = -inf  unless band_lo <= j - i <= band_hi          if band (causal diagonal / sliding window)
// ld may be 0 (one mask row broadcast over the queries). An entry masked by keep or band is -inf (p = 0)
// whatever its dot product, even NaN. float32 SIMD kernels may round after each step (the scalar
// specification rounds once); the tests bound the difference.
template <class T>
struct attn_scores {
    T scale;
    T softcap;
    T alibi_slope;
    std::ptrdiff_t alibi_center;
    const T* bias;
    std::ptrdiff_t bias_ld;
    const std::uint8_t* keep;
    std::ptrdiff_t keep_ld;
    bool band;
    std::ptrdiff_t band_lo, band_hi;
};

// Cache lines that a decoding kernel (qk_direct, qk_direct_pairs, pv) prefetches into L2 for its caller while
// it computes: `count` lines of 64 bytes from the line at `first` (a 64-byte boundary; the caller's, not the
// kernel's, rows: the kernel never reads them). Every line is prefetched during the call, a few at each step of
// the kernel's loads, the rest at its end; {} asks for none; results never depend on it. A streaming decode's
// driver hands out its prefetch list this way (attention.cpp, run_block): the same lines prefetched in bursts
// between kernel calls stalled on the core's few line-fill buffers, the kernels' loads behind them.
struct prefetch_lines {
    std::uintptr_t first = 0;
    std::size_t count = 0;
};

template <class T>
struct attention_kernels {
    // kt[d * ldkt + j] = k[j * k_row + d * k_col] for j < keys, d < dim; columns keys .. round_up(keys,
    // kAttnKeyPanel) are set to 0. ldkt >= round_up(keys, kAttnKeyPanel).
    void (*pack_kt)(const T* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys, std::size_t dim,
                    T* kt, std::size_t ldkt);
    // s[i * lds + j] = sum_d q[i * ldq + d] * kt[d * ldkt + j] for i < rows and every j < round_up(keys,
    // kAttnKeyPanel) (lds must leave room for the padded panel).
    void (*qk)(const T* q, std::size_t ldq, const T* kt, std::size_t ldkt, std::size_t rows, std::size_t keys,
               std::size_t dim, T* s, std::size_t lds);
    // The online-softmax step of one block, per row i < rows, over j < keys:
    //   x_j as in attn_scores;  m' = max(m_i, max_j x_j);
    //   alpha_i = exp(m_i - m') (1 while m' = -inf);  p_j = exp(x_j - m') (0 while m' = -inf);
    //   l_i = l_i * alpha_i + sum_j p_j;  m_i = m';  s[i * lds + j] = p_j.
    // m starts at -inf and l at 0. A NaN score makes the row's l (and so its output) NaN. A weight below T's
    // normal range is 0: p_j = 0 where x_j - m' < kNormalMinArg (exp_constants.hpp; -87.3 for float32, so
    // p_j < 2^-125.9, and its share of an output is below that of the row's maximum by as much). Every set
    // does this (the SIMD sets' common path takes an exp without a subnormal branch), so an infinite v_j whose
    // weight is that small gives 0 * inf = NaN on every set alike; alpha keeps its subnormal values.
    void (*softmax_step)(T* s, std::size_t lds, std::size_t rows, std::size_t keys, const attn_scores<T>& sc, T* m,
                         double* l, T* alpha);
    // o[i * ldo + c] = alpha[i] * o[i * ldo + c] + sum_{j < keys} p[i * ldp + j] * v[j * ldv + c], c < dv.
    // pf: lines to prefetch for the caller (prefetch_lines above); the result does not depend on it.
    void (*pv)(const T* p, std::size_t ldp, const T* v, std::ptrdiff_t ldv, std::size_t rows, std::size_t keys,
               std::size_t dv, const T* alpha, T* o, std::size_t ldo, prefetch_lines pf);
    // s[i * lds + j] = sum_d q[i * ldq + d] * k[j * ldk + d] for i < rows, j < keys, straight from the key rows
    // (no packing; for a few query rows, i.e. decoding, where each key is used once and packing would cost
    // as much as the product). ahead: the rows k[j * ldk], keys <= j < keys + ahead, are the ones the caller
    // reads next (0: unknown); the kernel may prefetch them, never reads them. pf: lines to prefetch for the
    // caller (prefetch_lines above). Results depend on neither.
    void (*qk_direct)(const T* q, std::size_t ldq, const T* k, std::ptrdiff_t ldk, std::size_t rows,
                      std::size_t keys, std::size_t dim, T* s, std::size_t lds, std::size_t ahead, prefetch_lines pf);
    // Rows per register tile of qk and pv (the kernel's, not the driver's choice: 6 on AVX2, 4 on NEON, 1 for
    // the scalar specification). The driver sizes its row groups (query blocks, causal-diagonal groups) in
    // whole tiles, so no group ends in a partial tile (attention.cpp, row_blocking).
    std::size_t tile_rows;
    // Where pv may be cut: pv over keys [0, a) and then [a, keys) with alpha = 1 gives the bits of one call
    // over [0, keys) when a is a multiple of pv_split. 1 on the SIMD sets (one FMA chain per output in key
    // order, stored and reloaded exactly); kPvNoSplit for the scalar specification, which accumulates a call
    // in double and rounds once per call. The driver reads a paged decode in place, page segment by page
    // segment, only where its pages may be cut so (attention.cpp, run_block).
    std::size_t pv_split;
};
constexpr std::size_t kPvNoSplit = ~std::size_t(0);

// The entries that read K or V, for a key/value cache stored in 16 bits (S = float16 or bfloat16): the
// contracts of attention_kernels<float>'s pack_kt, qk_direct and pv with k / v read as S and widened exactly
// to float32 in registers (no float32 copy of K or V exists); everything else is float32, and qk and
// softmax_step (which never see K or V) are attn_f32's. Each result is the float32 entry's on the widened
// values, bit for bit where the float32 entry is (the same templates; the scalar specification widens with
// half_convert.hpp's to_f32 and then runs its float32 arithmetic).
template <class S>
struct attention_kv_kernels {
    void (*pack_kt)(const S* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys, std::size_t dim,
                    float* kt, std::size_t ldkt);
    void (*pv)(const float* p, std::size_t ldp, const S* v, std::ptrdiff_t ldv, std::size_t rows, std::size_t keys,
               std::size_t dv, const float* alpha, float* o, std::size_t ldo, prefetch_lines pf);
    void (*qk_direct)(const float* q, std::size_t ldq, const S* k, std::ptrdiff_t ldk, std::size_t rows,
                      std::size_t keys, std::size_t dim, float* s, std::size_t lds, std::size_t ahead,
                      prefetch_lines pf);
};

// ---- 16-bit conversions -------------------------------------------------------------------------------
// y[i] = x[i] widened (exact) or rounded once to nearest even, for i < n, in the bits half_convert.hpp
// specifies (NaN quieted with its top payload bits, overflow to inf). Whole vectors through the traits'
// load_f16 / store_f16 / load_bf16 / store_bf16 and one masked (or buffered) tail: these entries are what
// the tests hold every set's 16-bit loads and stores to, and what drivers use to round a float32 result
// row into a 16-bit output.
struct convert_kernels {
    void (*f16_to_f32)(const float16* x, float* y, std::size_t n);
    void (*f32_to_f16)(const float* x, float16* y, std::size_t n);
    void (*bf16_to_f32)(const bfloat16* x, float* y, std::size_t n);
    void (*f32_to_bf16)(const float* x, bfloat16* y, std::size_t n);
    // y[i] = x[i] * c for i < n: the product in double (exact for float32 x), rounded once to y's type, float32
    // by the conversion (nearest even), float16 / bfloat16 as half_convert.hpp's to_f16 / to_bf16 of a double
    // (float32 rounded to odd, then nearest even). Attention's output rows o / l (attention.cpp, finish_row):
    // from the float32 accumulator (scale_f32_*) or the double merge of key splits (scale_f64_*).
    void (*scale_f32_to_f32)(const float* x, double c, float* y, std::size_t n);
    void (*scale_f32_to_f16)(const float* x, double c, float16* y, std::size_t n);
    void (*scale_f32_to_bf16)(const float* x, double c, bfloat16* y, std::size_t n);
    void (*scale_f64_to_f32)(const double* x, double c, float* y, std::size_t n);
    void (*scale_f64_to_f16)(const double* x, double c, float16* y, std::size_t n);
    void (*scale_f64_to_bf16)(const double* x, double c, bfloat16* y, std::size_t n);
};

// ---- bfloat16 x bfloat16 attention scores (optional) ---------------------------------------------------
// Scores of a bfloat16 q against a bfloat16 K by a bfloat16 dot-product instruction (x86 AVX512_BF16's
// vdpbf16ps: kernels/avx512bf16/attention.cpp; AMX's tdpbf16ps, which has its own summation within the bound of
// qk_direct_pairs below and P V too: kernels/avx512amx/attention.cpp). Optional: null where the ISA has no such instruction (every
// table but avx512 on a CPU with AVX512_BF16; the scalar set too), and the driver (attention.cpp) then takes
// attn_kv_bf16's entries; where present, the driver uses them for every bfloat16-q, bfloat16-K call.
// q is float32 holding bfloat16 values (a bfloat16 q widened, exactly), so its bfloat16 halves are exact.
// The arithmetic (specified in tests/cpp/test_attention_bf16.cpp, which holds qk_pairs to it bit for bit):
// head dimensions in pairs P_p = (2p, 2p + 1), the odd one of a pair first, for each (row, key) one chain
//   acc = ftz(fma(q[2p+1], k[2p+1], acc));  acc = ftz(fma(q[2p], k[2p], acc))     for p = 0, 1, ...
// with bfloat16 subnormal inputs read as zero (DAZ) and a float32 subnormal result flushed to a zero of its
// sign (FTZ), round to nearest even. A product of two bfloat16 values is exact in float32, so each step is one
// rounding, as for qk's FMA chain: |err| <= (dim + 1) u sum|q_d k_d| (u = 2^-24), plus the flushes: each
// product with a subnormal factor is lost (|q_d k_d| < 2^-126 times the other factor), and each flushed partial
// sum is below 2^-126 (2 dim 2^-126 in all). qk_direct_pairs sums 16 lane chains (pairs p = l mod 16) by halves:
// (2 ceil(dim / 32) + 4) u sum|q_d k_d| plus the same flushes (tests/cpp/test_attention_bf16.cpp checks both).
// A lost product is not small when its other factor is large (2^-127 x 2^127), and 0 x inf is NaN where the
// exact product is infinite: the entries that read K return false when K holds a bfloat16 subnormal, and the
// driver then computes those scores with attn_kv_bf16's entries; it checks q itself before it uses them.
struct bf16_dot_kernels {
    // kt viewed as 32-bit words: word[p * ldkt + j] = bits(k[j][2p]) | bits(k[j][2p + 1]) << 16 for
    // p < ceil(dim / 2) (k[j][dim] = 0 when dim is odd), j < keys, where k[j][d] = k[j * k_row + d * k_col];
    // words for keys .. round_up(keys, kAttnKeyPanel) are 0. ldkt >= round_up(keys, kAttnKeyPanel).
    // Returns false when one of the keys' elements is a bfloat16 subnormal (kt then as stated, but unusable).
    bool (*pack_kt_pairs)(const bfloat16* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys,
                          std::size_t dim, float* kt, std::size_t ldkt);
    // s[i * lds + j] = the pair chain above of q row i and key j (kt as pack_kt_pairs leaves it), for i < rows
    // and every j < round_up(keys, kAttnKeyPanel).
    void (*qk_pairs)(const float* q, std::size_t ldq, const float* kt, std::size_t ldkt, std::size_t rows,
                     std::size_t keys, std::size_t dim, float* s, std::size_t lds);
    // attn_kv_bf16.qk_direct's contract (key rows read in place, unit stride along dim) with the pairs'
    // arithmetic, summed as stated above, q given as its pair words (bf16_q_pairs below: row i at qw + i ldqw,
    // ldqw a multiple of 16 and at least bf16_pair_words(dim)), converted once by the caller for all the
    // calls of a task. Returns false (s unusable) when K holds a bfloat16 subnormal. Null with AMX (decodes
    // then take attn_kv_bf16.qk_direct: kernels/avx512amx/attention.cpp).
    bool (*qk_direct_pairs)(const std::uint32_t* qw, std::size_t ldqw, const bfloat16* k, std::ptrdiff_t ldk,
                            std::size_t rows, std::size_t keys, std::size_t dim, float* s, std::size_t lds,
                            std::size_t ahead, prefetch_lines pf);
    // P V of a bfloat16 V block on the same unit (optional within the optional: the AMX entries only, null with
    // vdpbf16ps; the driver takes them for a bfloat16-q, bfloat16-V block of many rows, else P V is
    // attn_kv_bf16's float32 FMA on the widened rows). pack_v_pairs: V rows (rows[j]: key j's row, unit
    // stride, j < keys) as pair words vp[k * ldvp + c] = bits(v[2k][c]) | bits(v[2k + 1][c]) << 16 for c < dv,
    // v[j] = 0 for j >= keys, pair rows k < round_up(keys, 32) / 2. Returns false (vp unusable) when dv is not a
    // multiple of 16 or V holds a value other than 0 outside [2^-64, 2^120) in magnitude (a subnormal, which the
    // unit reads as zero; values whose products with the weights could flush below 2^-126 or whose partial sums
    // could overflow inside an instruction; inf and NaN: a weight's zero part times inf would be NaN where the
    // float32 kernels give the infinity; kernels/avx512amx/attention.cpp).
    bool (*pack_v_pairs)(const bfloat16* const* rows, std::size_t keys, std::size_t dv, std::uint32_t* vp,
                         std::size_t ldvp);
    // o[i][c] = alpha[i] o[i][c] + sum over j < keys of p[i][j] v[j][c], for i < rows, c < dv (vp as
    // pack_v_pairs leaves it, for at least `keys` keys: finite words). Each p is split exactly into three bfloat16 by truncation (hi + mid + lo = p
    // wherever lo is normal: p >= 2^-110; below, at most p 2^-16 is lost), every product is exact, and the
    // unit accumulates in float32, one rounding per instruction (32 keys of one part): within
    // (3 ceil(keys / 32) + 2) u (|alpha o| + sum_j |p_j v_j|) of the exact result plus the flushes
    // (tests/cpp/test_attention_bf16.cpp).
    void (*pv_pairs)(const float* p, std::size_t ldp, const std::uint32_t* vp, std::size_t ldvp, std::size_t rows,
                     std::size_t keys, std::size_t dv, const float* alpha, float* o, std::size_t ldo);
};

// Words of one q row in pairs: ceil(dim / 2) rounded up to whole vectors of 16 words (32 head dimensions).
inline std::size_t bf16_pair_words(std::size_t dim) { return (dim + 31) / 32 * 16; }
// A q row (float32 holding bfloat16 values) as pair words, the layout of pack_kt_pairs' words along one key:
// w[p] = bits(q[2p]) | bits(q[2p + 1]) << 16 for p < ceil(dim / 2) (q[dim] = 0 when dim is odd), then 0 up to
// bf16_pair_words(dim). Exact: a bfloat16 value's float32 bits are its own bits followed by 16 zeros.
// The whole pairs without a branch, so the compiler vectorizes them (a decode task converts all its q rows).
inline void bf16_q_pairs(const float* q, std::size_t dim, std::uint32_t* w) {
    const std::size_t words = bf16_pair_words(dim), whole = dim / 2;
    for (std::size_t p = 0; p < whole; ++p) {
        std::uint32_t a, b;
        std::memcpy(&a, q + 2 * p, sizeof a);
        std::memcpy(&b, q + 2 * p + 1, sizeof b);
        w[p] = (a >> 16) | (b & 0xFFFF0000u);
    }
    for (std::size_t p = whole; p < words; ++p) {
        std::uint32_t a = 0;
        if (2 * p < dim) std::memcpy(&a, q + 2 * p, sizeof a);
        w[p] = a >> 16;
    }
}
// Whether any of x[0, n) is a float32 subnormal (a bfloat16 subnormal widened, which vdpbf16ps and AMX read as
// zero): |x| as bits in [1, 2^23 - 1]. Branchless, so the compiler vectorizes it (once per task over its q rows).
inline bool any_subnormal(const float* x, std::size_t n) {
    std::uint32_t any = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t u;
        std::memcpy(&u, x + i, sizeof u);
        any |= static_cast<std::uint32_t>((u & 0x7FFFFFFFu) - 1u < 0x007FFFFFu);
    }
    return any != 0;
}

struct kernel_table {
    const char* name;
    reduction_kernels<float> f32;
    reduction_kernels<double> f64;
    // Appended after the reductions (other features append their own fields after these).
    attention_kernels<float> attn_f32;
    attention_kernels<double> attn_f64;
    // The reductions in accuracy::fast (see the conventions above).
    reduction_kernels<float> f32_fast;
    reduction_kernels<double> f64_fast;
    convert_kernels cvt;
    // The reductions of float16 and bfloat16 scores (storage_kernels above).
    storage_kernels<float16> f16;
    storage_kernels<bfloat16> bf16;
    // Attention over 16-bit K/V (attention_kv_kernels above).
    attention_kv_kernels<float16> attn_kv_f16;
    attention_kv_kernels<bfloat16> attn_kv_bf16;
    // Optional (null unless the ISA has a bfloat16 dot product; test_dispatch allows these nulls only).
    bf16_dot_kernels bf16_dot;
};

// The entries of a fast table that do not depend on the mode and that the reduction families do not fill
// (sampling): taken from the high table, so both tables of an ISA are complete.
template <class T>
void share_mode_free(reduction_kernels<T>& fast, const reduction_kernels<T>& high) {
    fast.row_collect_ge = high.row_collect_ge;
    fast.row_sample_weights = high.row_sample_weights;
}

// One getter per ISA translation unit; each is compiled with its own flags.
const kernel_table& scalar_kernels();
#if defined(NORMEXP_HAVE_AVX2)
const kernel_table& avx2_kernels();
#endif
#if defined(NORMEXP_HAVE_AVX512)
const kernel_table& avx512_kernels();
#endif
#if defined(NORMEXP_HAVE_NEON)
const kernel_table& neon_kernels();
#endif

}  // namespace normexp
