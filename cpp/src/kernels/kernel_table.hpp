// The kernel table: the one interface between the ISA translation units and the drivers.
//
// Every ISA file (scalar.cpp, avx2.cpp, neon.cpp) implements these kernels with internal linkage and
// exports exactly one function returning a filled table. Kernels are single-threaded, take pointers and
// counts, and never allocate. Drivers (cpp/src/*.cpp) own axes, blocking, threads and special values.
//
// Conventions shared by all kernels
//  * "t = beta * (x - m)" is the shifted, temperature-scaled score.  x - m is formed with an error term
//    (TwoSum), and beta is a two-term constant {hi, lo}, so t is known to ~2^-48 relative before exp;
//    this is what keeps exp(t) within a few ULP when |t| is large (a plain fl(x - m) costs up to
//    |t| * 2^-24 relative error, i.e. ~50 ULP at t = -100).
//  * m is the row (or column) maximum: t <= 0 for every entry, and m is finite (drivers handle rows whose
//    maximum is NaN or +-inf before calling a kernel).
//  * Sums of exp are accumulated in blocks in working precision and flushed into double (Neumaier
//    compensated for float64), so error does not grow with the row length.
//  * "rest/count" split: entries equal to m contribute exactly exp(0) = 1 each and are counted instead
//    of summed, so the driver can form log(count + rest) as log1p(rest) when count == 1 and keep full
//    relative accuracy near the maximum.
#pragma once

#include <cstddef>
#include <cstdint>

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

template <class T>
struct reduction_kernels {
    // y[i] = exp(x[i]) over the whole domain (overflow to +inf, gradual underflow, NaN propagates).
    void (*exp)(const T* x, T* y, std::size_t n);

    // ---- contiguous rows -------------------------------------------------------------------------
    // max of x[0..n); NaN if any element is NaN; -inf for n == 0.
    T (*row_max)(const T* x, std::size_t n);
    // {sum over x != m of exp(beta (x - m)), #(x == m)}.
    exp_sum (*row_exp_sum)(const T* x, std::size_t n, T m, scale2<T> beta);
    // y = exp(beta (x - m)); returns sum of y (all entries). y may alias x.
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
};

struct kernel_table {
    const char* name;
    reduction_kernels<float> f32;
    reduction_kernels<double> f64;
};

// One getter per ISA translation unit; each is compiled with its own flags.
const kernel_table& scalar_kernels();
#if defined(NORMEXP_HAVE_AVX2)
const kernel_table& avx2_kernels();
#endif
#if defined(NORMEXP_HAVE_NEON)
const kernel_table& neon_kernels();
#endif

}  // namespace normexp
