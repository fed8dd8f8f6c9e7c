// normexp: SIMD softmax, log_softmax and logsumexp for C++.
//
// Two forms per function:
//  * row-major:  softmax(x, y, rows, cols)  reduces along `cols` of a contiguous rows x cols matrix.
//  * strided:    softmax(x, x_strides, y, y_strides, shape, axis)  reduces along `axis` of an n-d array
//    given by its shape and its strides in elements (negative strides allowed). For logsumexp the output
//    is described with the input's rank: its stride along `axis` is ignored (the keepdims layout).
// y may be x (in place) when both have the same layout. All functions are thread-safe and run their own
// OpenMP team (see set_num_threads). Bad arguments throw normexp::error (a std::invalid_argument).
// Symbols: every function or class defined in the library (not inline here) is declared NORMEXP_API
// (normexp/export.h); a shared build exports those and nothing else. The C API is normexp/normexp.h.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "normexp/export.h"
#include "normexp/version.h"

namespace normexp {

class NORMEXP_API error : public std::invalid_argument {
   public:
    using std::invalid_argument::invalid_argument;
    ~error() override;  // out of line: one vtable and typeinfo, in the library
};

using shape_t = std::vector<std::size_t>;
using strides_t = std::vector<std::ptrdiff_t>;  // in elements, not bytes

enum class reduction { softmax, log_softmax, logsumexp };

// Reduce along `axis` (negative counts from the end). temperature divides the scores (softmax and
// log_softmax; must be finite and > 0; logsumexp requires 1). isa: a kernel set by name ("scalar",
// "avx2", "neon"), or nullptr/"" for the active one.
template <class T>
NORMEXP_API void reduce(reduction op, const T* x, const strides_t& x_strides, T* y, const strides_t& y_strides,
            const shape_t& shape, int axis, double temperature = 1.0, const char* isa = nullptr);

template <class T>
void softmax(const T* x, T* y, std::size_t rows, std::size_t cols, double temperature = 1.0) {
    reduce<T>(reduction::softmax, x, {std::ptrdiff_t(cols), 1}, y, {std::ptrdiff_t(cols), 1}, {rows, cols}, 1,
              temperature);
}
template <class T>
void log_softmax(const T* x, T* y, std::size_t rows, std::size_t cols, double temperature = 1.0) {
    reduce<T>(reduction::log_softmax, x, {std::ptrdiff_t(cols), 1}, y, {std::ptrdiff_t(cols), 1}, {rows, cols}, 1,
              temperature);
}
template <class T>
void logsumexp(const T* x, T* out, std::size_t rows, std::size_t cols) {
    reduce<T>(reduction::logsumexp, x, {std::ptrdiff_t(cols), 1}, out, {1, 0}, {rows, cols}, 1);
}

template <class T>
void softmax(const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape, int axis,
             double temperature = 1.0) {
    reduce<T>(reduction::softmax, x, xs, y, ys, shape, axis, temperature);
}
template <class T>
void log_softmax(const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape, int axis,
                 double temperature = 1.0) {
    reduce<T>(reduction::log_softmax, x, xs, y, ys, shape, axis, temperature);
}
template <class T>
void logsumexp(const T* x, const strides_t& xs, T* out, const strides_t& out_strides, const shape_t& shape, int axis) {
    reduce<T>(reduction::logsumexp, x, xs, out, out_strides, shape, axis);
}

// The statistics behind logsumexp, for merging partial results over disjoint pieces of a row exactly
// (the online-softmax rule; normexp.dask merges them across chunks and machines). m receives the max
// along `axis` (NaN if the row has a NaN, -inf if it is empty or all -inf); the sum of
// exp((x - m) / temperature) is written in double as a pair, sums[2k] = count (the entries equal to m)
// and sums[2k + 1] = rest (the others), both 0 for rows whose max is not finite; k is m's element
// offset. m has the input's rank with length 1 along `axis` and element strides out_strides; sums has
// twice those strides. logsumexp = m / temperature + log(count + rest), via log1p(rest) if count is 1.
template <class T>
NORMEXP_API void logsumexp_parts(const T* x, const strides_t& x_strides, T* m, double* sums,
                                 const strides_t& out_strides, const shape_t& shape, int axis,
                                 double temperature = 1.0, const char* isa = nullptr);

// softmax or log_softmax along `axis` with each row's statistics given instead of computed, as
// logsumexp_parts writes them (m, and sums = (count, rest) pairs, possibly merged over the pieces of a
// longer row of which x holds one): y = exp((x - m) / T) / (count + rest), or its log, with the same
// kernels, accuracy and special values as softmax. m has x's rank with length 1 along `axis` and element
// strides stat_strides; sums has twice those. One pass over x: how normexp.dask normalizes each chunk.
template <class T>
NORMEXP_API void normalize_with(reduction op, const T* x, const strides_t& x_strides, T* y,
                                const strides_t& y_strides, const shape_t& shape, int axis, const T* m,
                                const double* sums, const strides_t& stat_strides, double temperature = 1.0,
                                const char* isa = nullptr);

// Elementwise exp with the library's vector kernel (within 1 ULP for float32).
template <class T>
NORMEXP_API void exp(const T* x, T* y, std::size_t n, const char* isa = nullptr);

// Threads: process-wide; n <= 0 means "as many as OpenMP allows". Capped by omp_get_max_threads(), so
// OMP_NUM_THREADS and threadpoolctl limits hold. Without OpenMP always 1.
NORMEXP_API void set_num_threads(int n);
NORMEXP_API int get_num_threads();

// The active kernel set ("scalar", "avx2", "neon") and every set this CPU can run.
NORMEXP_API const char* isa();
NORMEXP_API std::vector<std::string> available_isas();

NORMEXP_API const char* version();

}  // namespace normexp
