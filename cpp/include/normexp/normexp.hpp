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
#include <cstdint>
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

// ---- decoding: sampling and the loss at the output layer (cpp/src/sampling.cpp) --------------------------
//
// sample: one token per row of a rows x vocab matrix of logits (unit stride along the vocabulary, rows
// row_stride elements apart). Per row, in this order (the order of the common LLM samplers):
//   temperature T   scores x / T. T == 0 is greedy: the lowest index of the maximum (the cuts are moot).
//   top_k  (k > 0)  keep the entries whose score is >= the k-th largest score (ties at the boundary kept).
//   top_p  (p < 1)  of those, keep the smallest set of the most probable entries whose probability
//                   (renormalized over the top-k set) reaches p, plus entries tied with its least member.
//   min_p  (> 0)    of those, keep the entries with probability >= min_p x the largest probability.
// Then one entry is drawn with probability proportional to exp((x - max) / T) over the kept set, by the
// inverse CDF (in index order) at uniforms[row] in [0, 1). The weights are the float32 sampling weights
// of kernels/sampling_weights.hpp, bit-identical on every ISA, and each row is computed by one thread,
// so given uniforms give the same tokens on every ISA and thread count. uniforms may be null when
// T == 0. Errors (normexp::error): a row containing NaN or +inf, a row of only -inf, bad options.
struct sample_options {
    double temperature = 1.0;  // finite, >= 0
    std::size_t top_k = 0;     // 0: no top-k cut (k >= vocab: none either)
    double top_p = 1.0;        // in (0, 1]; 1: no cut
    double min_p = 0.0;        // in [0, 1]; 0: no cut
};
template <class T>
NORMEXP_API void sample(const T* logits, std::size_t rows, std::size_t vocab, std::ptrdiff_t row_stride, const double* uniforms,
            std::int64_t* tokens, const sample_options& options = {}, const char* isa = nullptr);

// cross_entropy: the loss of softmax(x / T) along `axis` against integer labels, per row, as
// torch.nn.functional.cross_entropy computes it (before its reduction):
//   loss = (1 - eps) (lse - x_y / T) + eps (lse - mean(x) / T),   lse = logsumexp(x / T),  eps = label_smoothing.
// Rows are the positions of the other dimensions in C order; labels[r] and loss[r] belong to row r. One
// fused pass per row (online max and sum of exp over L1-sized chunks; the label's score is one load).
// Rows whose label is ignore_index (when use_ignore_index) get loss 0 and are not read. dloss/d2loss,
// if given, receive d loss / d beta and d^2 loss / d beta^2 at beta = 1/T (a second pass per row), which
// normexp.fit_temperature uses. Errors (normexp::error): label out of [0, classes), NaN or +inf in a row
// that is read, a row of only -inf, bad options.
struct cross_entropy_options {
    double temperature = 1.0;      // finite, > 0
    double label_smoothing = 0.0;  // in [0, 1]
    bool use_ignore_index = false;
    std::int64_t ignore_index = -100;
};
template <class T>
NORMEXP_API void cross_entropy(const T* x, const strides_t& x_strides, const shape_t& shape, int axis, const std::int64_t* labels,
                   double* loss, const cross_entropy_options& options = {}, double* dloss = nullptr,
                   double* d2loss = nullptr, const char* isa = nullptr);

}  // namespace normexp
