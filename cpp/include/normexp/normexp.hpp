// normexp: SIMD softmax, log_softmax and logsumexp for C++.
//
// Two forms per function:
//  * row-major:  softmax(x, y, rows, cols)  reduces along `cols` of a contiguous rows x cols matrix.
//  * strided:    softmax(x, x_strides, y, y_strides, shape, axis)  reduces along `axis` of an n-d array
//    given by its shape and its strides in elements (negative strides allowed). For logsumexp the output
//    is described with the input's rank: its stride along `axis` is ignored (the keepdims layout).
// y may be x (in place) when both have the same layout. All functions are thread-safe; a large call shares
// its work with up to set_num_threads() - 1 OpenMP helper threads. Bad arguments throw normexp::error (a
// std::invalid_argument).
// Symbols: every function or class defined in the library (not inline here) is declared NORMEXP_API
// (normexp/export.h); a shared build exports those and nothing else. The C API is normexp/normexp.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "normexp/export.h"
#include "normexp/half.hpp"
#include "normexp/version.h"

namespace normexp {

class NORMEXP_API error : public std::invalid_argument {
   public:
    using std::invalid_argument::invalid_argument;
    ~error() override;  // out of line: one vtable and typeinfo, in the library
};

// An index that does not name an element of what it indexes (a block table's page index outside the pool):
// an error like any other, which Python raises as an IndexError that is also a ValueError.
class NORMEXP_API index_error : public error {
   public:
    using error::error;
    ~index_error() override;
};

using shape_t = std::vector<std::size_t>;
using strides_t = std::vector<std::ptrdiff_t>;  // in elements, not bytes

enum class reduction { softmax, log_softmax, logsumexp };

// The accuracy contract of a reduction (docs/accuracy.md).
//  * high (the default): x - m exact, entries equal to the maximum counted and log1p of the rest: float32
//    softmax within about 4 ULP of the float64 reference, log_softmax / logsumexp with full relative
//    accuracy near the maximum.
//  * fast: t = (x - m) / temperature rounded in working precision, as the peers compute it, and no
//    bookkeeping: relative error at most about 2 ULP + |t| 2^-24 for an entry t (float64: 2^-53; with a
//    temperature 3 |t| 2^-24: 1/temperature and the product are rounded too);
//    log_softmax = t - log(sum) in working precision, logsumexp = m + log(sum).
enum class accuracy { high, fast };

// Reduce along `axis` (negative counts from the end). temperature divides the scores (softmax and
// log_softmax; must be finite and > 0; logsumexp requires 1). isa: a kernel set by name ("scalar",
// "avx2", "avx512", "neon"), or nullptr/"" for the active one. acc: the accuracy contract.
// T: float, double, or the 16-bit normexp::float16 / normexp::bfloat16 (normexp/half.hpp), which are read
// and written in place as 16-bit values (widened in registers, computed in float32, each output rounded
// once; no float32 copy is made). For them acc does not matter: float32 arithmetic with t = (x - m) /
// temperature rounded once is already far more accurate than the output's 16 bits (the kernel_table.hpp
// comment derives it), and every result is within 1 ULP of the 16-bit type. This holds for every function
// template below (softmax, log_softmax, logsumexp, logsumexp_parts, normalize_with).
template <class T>
NORMEXP_API void reduce(reduction op, const T* x, const strides_t& x_strides, T* y, const strides_t& y_strides,
            const shape_t& shape, int axis, double temperature = 1.0, const char* isa = nullptr,
            accuracy acc = accuracy::high);

template <class T>
void softmax(const T* x, T* y, std::size_t rows, std::size_t cols, double temperature = 1.0,
             accuracy acc = accuracy::high) {
    reduce<T>(reduction::softmax, x, {std::ptrdiff_t(cols), 1}, y, {std::ptrdiff_t(cols), 1}, {rows, cols}, 1,
              temperature, nullptr, acc);
}
template <class T>
void log_softmax(const T* x, T* y, std::size_t rows, std::size_t cols, double temperature = 1.0,
                 accuracy acc = accuracy::high) {
    reduce<T>(reduction::log_softmax, x, {std::ptrdiff_t(cols), 1}, y, {std::ptrdiff_t(cols), 1}, {rows, cols}, 1,
              temperature, nullptr, acc);
}
template <class T>
void logsumexp(const T* x, T* out, std::size_t rows, std::size_t cols, accuracy acc = accuracy::high) {
    reduce<T>(reduction::logsumexp, x, {std::ptrdiff_t(cols), 1}, out, {1, 0}, {rows, cols}, 1, 1.0, nullptr, acc);
}

template <class T>
void softmax(const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape, int axis,
             double temperature = 1.0, accuracy acc = accuracy::high) {
    reduce<T>(reduction::softmax, x, xs, y, ys, shape, axis, temperature, nullptr, acc);
}
template <class T>
void log_softmax(const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape, int axis,
                 double temperature = 1.0, accuracy acc = accuracy::high) {
    reduce<T>(reduction::log_softmax, x, xs, y, ys, shape, axis, temperature, nullptr, acc);
}
template <class T>
void logsumexp(const T* x, const strides_t& xs, T* out, const strides_t& out_strides, const shape_t& shape, int axis,
               accuracy acc = accuracy::high) {
    reduce<T>(reduction::logsumexp, x, xs, out, out_strides, shape, axis, 1.0, nullptr, acc);
}

// The statistics behind logsumexp, for merging partial results over disjoint pieces of a row exactly
// (the online-softmax rule; normexp.dask merges them across chunks and machines). m receives the max
// along `axis` (NaN if the row has a NaN, -inf if it is empty or all -inf); the sum of
// exp((x - m) / temperature) is written in double as a pair, sums[2k] = count (the entries equal to m)
// and sums[2k + 1] = rest (the others), both 0 for rows whose max is not finite; k is m's element
// offset. m has the input's rank with length 1 along `axis` and element strides out_strides; sums has
// twice those strides. logsumexp = m / temperature + log(count + rest), via log1p(rest) if count is 1.
// With accuracy::fast nothing is counted: count is 0 and rest the whole sum.
template <class T>
NORMEXP_API void logsumexp_parts(const T* x, const strides_t& x_strides, T* m, double* sums,
                                 const strides_t& out_strides, const shape_t& shape, int axis,
                                 double temperature = 1.0, const char* isa = nullptr,
                                 accuracy acc = accuracy::high);

// softmax or log_softmax along `axis` with each row's statistics given instead of computed, as
// logsumexp_parts writes them (m, and sums = (count, rest) pairs, possibly merged over the pieces of a
// longer row of which x holds one): y = exp((x - m) / T) / (count + rest), or its log, with the same
// kernels, accuracy and special values as softmax. m has x's rank with length 1 along `axis` and element
// strides stat_strides; sums has twice those. One pass over x: how normexp.dask normalizes each chunk.
template <class T>
NORMEXP_API void normalize_with(reduction op, const T* x, const strides_t& x_strides, T* y,
                                const strides_t& y_strides, const shape_t& shape, int axis, const T* m,
                                const double* sums, const strides_t& stat_strides, double temperature = 1.0,
                                const char* isa = nullptr, accuracy acc = accuracy::high);

// Merges the statistics of `parts` disjoint pieces of each of `rows` rows, as logsumexp_parts writes
// them, into the statistics of the whole rows, with the rule the driver applies between the pieces of a
// long row (the online-softmax merge, pieces taken in the order p = 0, 1, ...; exp of a compensated
// argument). Piece p of row r is m[p * rows + r] (logsumexp_parts' m widened to double, which is
// exact) with (count, rest) = sums[2 (p * rows + r)], sums[2 (p * rows + r) + 1]; row r's result is
// m_out[r] with sums_out[2 r], sums_out[2 r + 1], in logsumexp_parts' conventions (NaN if a piece has
// NaN; +inf, or -inf if all pieces are empty or all -inf, with count = rest = 0). temperature: the one
// the pieces were computed with. Pieces that split a row at multiples of 65536 elements, merged in
// order, give the driver's own statistics of the whole row, bit for bit. normexp.dask merges with this.
NORMEXP_API void merge_parts(std::size_t parts, std::size_t rows, const double* m, const double* sums,
                             double* m_out, double* sums_out, double temperature = 1.0);

// logsumexp of `rows` rows from their statistics (computed with temperature 1): out[r] = m[r] +
// log(count + rest), with log1p(rest) when count is 1, or m[r] itself when it is not finite. float_result:
// out will be rounded to float32, float16 or bfloat16, whose logsumexp forms the log to float32 accuracy
// (relative error below 2^-30) unless m cancels it (a result below a quarter of the log: std::log there);
// false: to float64, with std::log. Rounding out to that type gives what logsumexp returns for statistics of
// the whole row.
NORMEXP_API void logsumexp_from_parts(std::size_t rows, const double* m, const double* sums, double* out,
                                      bool float_result = false);

// Elementwise exp with the library's vector kernel (within 1 ULP for float32).
template <class T>
NORMEXP_API void exp(const T* x, T* y, std::size_t n, const char* isa = nullptr);

// Threads: process-wide; n <= 0 means "as many as OpenMP allows". Capped by omp_get_max_threads(), so
// OMP_NUM_THREADS and threadpoolctl limits hold. Without OpenMP always 1.
NORMEXP_API void set_num_threads(int n);
NORMEXP_API int get_num_threads();

// The active kernel set ("scalar", "avx2", "avx512", "neon") and every set this CPU can run.
NORMEXP_API const char* isa();
NORMEXP_API std::vector<std::string> available_isas();
// The optional CPU extensions the kernel sets use on top of their ISA: "avx512_bf16" where the avx512 set
// takes its AVX512_BF16 entries (the CPU has the extension and NORMEXP_AVX512_BF16 is not 0), and
// "avx512_bf16_dot" where it also takes their vdpbf16ps attention scores (by default on AMD only, where the
// instruction outruns float32 FMA; NORMEXP_AVX512_BF16=1 anywhere), and "amx_bf16" where bfloat16 attention
// prefill runs on the AMX tile unit (by default where the CPU and the OS have AMX; NORMEXP_AMX=0 turns it
// off, =1 insists). Empty otherwise.
NORMEXP_API std::vector<std::string> isa_extensions();

NORMEXP_API const char* version();

// ---- attention -----------------------------------------------------------------------------------------
// Blocked (flash-style) scaled dot-product attention: out = softmax(scale * q k^T + bias, masked) v, computed
// over key/value blocks with an online softmax, so no len_q x len_kv matrix is ever formed (extra memory is
// O(threads x block)). Layout like torch.nn.functional.scaled_dot_product_attention:
//   q (batch, heads_q, len_q, head_dim), k (batch, heads_kv, len_kv, head_dim),
//   v (batch, heads_kv, len_kv, head_dim_v) -> out (batch, heads_q, len_q, head_dim_v),
// each given by a pointer and 4 strides in elements (any sign; a head_dim stride other than 1 is packed per
// block). heads_q must be a multiple of heads_kv: query head h reads key/value head h / (heads_q / heads_kv).

enum class causal_alignment {
    top_left,      // query i sees keys j <= i (PyTorch's is_causal)
    bottom_right,  // query i sees keys j <= i + len_kv - len_q (decoding with a KV cache: the last query
                   // row sees every key)
};

enum class attention_mask_kind {
    none,
    keep,      // const unsigned char/bool: non-zero keeps the score, zero masks it out
    additive,  // const T: added to the scaled (and soft-capped) score; -inf masks out
};

using strides4 = std::array<std::ptrdiff_t, 4>;

struct attention_shape {
    std::size_t batch = 1, heads_q = 1, heads_kv = 1, len_q = 0, len_kv = 0, head_dim = 0, head_dim_v = 0;
};

template <class T>
struct attention_options {
    // The score of query i and key j (all optional), in this order:
    //   x = scale * q_i . k_j                     scale == 0 means 1/sqrt(head_dim)
    //   x = softcap * tanh(x / softcap)           softcap > 0
    //   x -= slope[b, h] * |j - diag(i)|          alibi_slopes != nullptr
    //   x += mask[b, h, i, j]                     mask_kind == additive
    //   x = -inf if !mask[b, h, i, j]             mask_kind == keep
    //   x = -inf if is_causal and j > diag(i)
    //   x = -inf if window > 0 and j <= diag(i) - window   (each query sees at most `window` keys up to
    //                                                        its diagonal; with is_causal: a sliding window)
    // diag(i) = i (top_left) or i + len_kv - len_q (bottom_right). A row with no key left gives out 0 and
    // lse -inf.
    // With sinks, each row's softmax has one more term, exp(sink[b, h] - M), that has no value row (an
    // "attention sink"): out_i = sum_j exp(x_ij - M) v_j / (exp(sink - M) + sum_j exp(x_ij - M)) with M the
    // maximum over the row's scores and the sink; lse includes the sink. A sink of -inf changes nothing; a row
    // with no key left gives out 0 and lse = sink.
    double scale = 0;
    bool is_causal = false;
    causal_alignment alignment = causal_alignment::top_left;
    std::size_t window = 0;  // 0: unlimited
    double softcap = 0;      // 0: none
    // Mask, broadcast to (batch, heads_q, len_q, len_kv) by its strides (0 on broadcast dimensions).
    attention_mask_kind mask_kind = attention_mask_kind::none;
    const void* mask = nullptr;  // const unsigned char* (keep) or const T* (additive)
    strides4 mask_strides{0, 0, 0, 0};
    // ALiBi slopes per (batch, head_q) by strides (e.g. {0, 1} for one slope per head).
    const double* alibi_slopes = nullptr;
    std::array<std::ptrdiff_t, 2> alibi_strides{0, 1};
    // Attention-sink logits per (batch, head_q) by strides (e.g. {0, 1} for one per head); each is finite in T
    // or -inf.
    const double* sinks = nullptr;
    std::array<std::ptrdiff_t, 2> sinks_strides{0, 1};
    // Optional output: lse[b, h, i] = log sum_j exp(x_ij), strides (batch, heads_q, len_q).
    T* lse = nullptr;
    std::array<std::ptrdiff_t, 3> lse_strides{0, 0, 0};
    const char* isa = nullptr;  // a kernel set by name, or nullptr for the active one
};

template <class T>
NORMEXP_API void attention(const attention_shape& shape, const T* q, const strides4& q_strides, const T* k,
               const strides4& k_strides, const T* v, const strides4& v_strides, T* out, const strides4& out_strides,
               const attention_options<T>& options = {});

// Contiguous (batch, heads, len, dim) tensors (the C API's layout).
template <class T>
void attention(const T* q, const T* k, const T* v, T* out, std::size_t batch, std::size_t heads_q,
               std::size_t heads_kv, std::size_t len_q, std::size_t len_kv, std::size_t head_dim,
               std::size_t head_dim_v, const attention_options<T>& options = {}) {
    const auto c = [](std::size_t h, std::size_t l, std::size_t d) {
        return strides4{std::ptrdiff_t(h * l * d), std::ptrdiff_t(l * d), std::ptrdiff_t(d), 1};
    };
    attention<T>({batch, heads_q, heads_kv, len_q, len_kv, head_dim, head_dim_v}, q, c(heads_q, len_q, head_dim), k,
                 c(heads_kv, len_kv, head_dim), v, c(heads_kv, len_kv, head_dim_v), out,
                 c(heads_q, len_q, head_dim_v), options);
}

// 16-bit inputs: q, k and v all float16 or all bfloat16, or a float32 q against a float16 / bfloat16 K/V
// cache (k and v of one type). K and V are read in their own type and widened in registers (no float32 copy
// of them is made, for any strides; a prefill widens one 128-key block of V at a time into per-thread
// scratch, as it packs K); products, the online softmax and the output accumulate in float32, and
// the output (q's type) is rounded once, to nearest even, from o / l computed in double. The options are
// float32's: an additive mask is const float* and lse (if requested) float32.
NORMEXP_API void attention(const attention_shape& shape, const float16* q, const strides4& q_strides, const float16* k,
                           const strides4& k_strides, const float16* v, const strides4& v_strides, float16* out,
                           const strides4& out_strides, const attention_options<float>& options = {});
NORMEXP_API void attention(const attention_shape& shape, const bfloat16* q, const strides4& q_strides, const bfloat16* k,
                           const strides4& k_strides, const bfloat16* v, const strides4& v_strides, bfloat16* out,
                           const strides4& out_strides, const attention_options<float>& options = {});
NORMEXP_API void attention(const attention_shape& shape, const float* q, const strides4& q_strides, const float16* k,
                           const strides4& k_strides, const float16* v, const strides4& v_strides, float* out,
                           const strides4& out_strides, const attention_options<float>& options = {});
NORMEXP_API void attention(const attention_shape& shape, const float* q, const strides4& q_strides, const bfloat16* k,
                           const strides4& k_strides, const bfloat16* v, const strides4& v_strides, float* out,
                           const strides4& out_strides, const attention_options<float>& options = {});

// Merge attentions computed over disjoint key/value blocks (the log-sum-exp rule):
//   lse = log sum_p exp(lse_p),  out = sum_p exp(lse_p - lse) out_p.
// outs[p] is rows x dv and lses[p] has rows entries, all contiguous; out and lse receive the merged result
// (lse may be nullptr). Rows whose lse is -inf in every part give 0 and -inf.
template <class T>
NORMEXP_API void merge_attention(std::size_t parts, const T* const* outs, const T* const* lses, std::size_t rows,
                     std::size_t dv, T* out, T* lse);
// 16-bit outputs (from the 16-bit attention overloads): the lses are float32; each out is rounded once.
NORMEXP_API void merge_attention(std::size_t parts, const float16* const* outs, const float* const* lses,
                                 std::size_t rows, std::size_t dv, float16* out, float* lse);
NORMEXP_API void merge_attention(std::size_t parts, const bfloat16* const* outs, const float* const* lses,
                                 std::size_t rows, std::size_t dv, bfloat16* out, float* lse);

// ---- paged attention: a batch of sequences whose keys and values live in the pages of a shared pool -------
// What an inference server with continuous batching calls (vLLM's paged KV cache): sequence s has seq_lens[s]
// keys; key j of it is row j % page_size of page block_table[s * block_table_row + j / page_size] of the pool,
//   k_pages (num_pages, page_size, heads_kv, head_dim), v_pages (num_pages, page_size, heads_kv, head_dim_v),
// each given by a pointer and 4 strides in elements (page, slot, head, dim). Its new queries are rows
// query_start[s] .. query_start[s + 1] of q (total_queries, heads_q, head_dim) (strides: query, head, dim), and
// out (total_queries, heads_q, head_dim_v) receives their attention. Causal alignment is bottom-right: the last
// query of a sequence sits at its last key (query r of n sits at key seq_len - n + r). query_start[0] must be 0
// and query_start[num_seqs] total_queries, non-decreasing (a sequence may have no new query); only the first
// ceil(seq_len / page_size) entries of a sequence's row of the table are read, each must be in [0, num_pages).
// Everything is validated before any read (normexp::error naming the sequence and the entry; a page index
// outside the pool is a normexp::index_error).
// Scores, windows, softcap, ALiBi, sinks and GQA as attention_options; results are those of attention<T> over
// each sequence's keys gathered contiguously with bottom-right alignment; for a batch of one sequence bit for
// bit (tasks of up to 4 query rows, a decode step or one query of a group of up to 4 heads, run the decoding
// kernels over the pages in place, or over a gathered copy of each key block where the page size is not a
// multiple of 4 and on the scalar set; larger tasks run the kernels per page segment, which the scalar
// specification rounds once per segment instead of once per block; tests/python/test_paged_attention.py).
// In a batch of several, a sequence's key split is its share of the batch's keys, so its bits may differ
// from the sequence alone (by rounding).
// Work is split over (sequence, head, query block) and, for sequences with few queries, key ranges (merged
// with the log-sum-exp rule): the split depends only on the shapes, so results are identical for every thread
// count.
struct paged_attention_shape {
    std::size_t num_seqs = 0, total_queries = 0, heads_q = 1, heads_kv = 1, head_dim = 0, head_dim_v = 0;
    std::size_t num_pages = 0, page_size = 0, max_pages = 0;  // the pool; block_table columns
};

template <class T>
struct paged_attention_options {
    double scale = 0;        // 0: 1/sqrt(head_dim)
    bool is_causal = true;   // bottom-right
    std::size_t window = 0;  // 0: unlimited
    double softcap = 0;      // 0: none
    const double* alibi_slopes = nullptr;  // heads_q slopes (contiguous), or nullptr
    const double* sinks = nullptr;         // heads_q sink logits (contiguous), or nullptr
    // Optional output: lse[r * lse_strides[0] + h * lse_strides[1]] for query row r, head h.
    T* lse = nullptr;
    std::array<std::ptrdiff_t, 2> lse_strides{0, 0};
    const char* isa = nullptr;  // a kernel set by name, or nullptr for the active one
};

using strides3 = std::array<std::ptrdiff_t, 3>;

template <class T>
NORMEXP_API void paged_attention(const paged_attention_shape& shape, const T* q, const strides3& q_strides,
                                 const T* k_pages, const strides4& k_strides, const T* v_pages,
                                 const strides4& v_strides, const std::int32_t* block_table,
                                 std::ptrdiff_t block_table_row, const std::int32_t* seq_lens,
                                 const std::int32_t* query_start, T* out, const strides3& out_strides,
                                 const paged_attention_options<T>& options = {});
// 16-bit pages, as attention's 16-bit overloads: q and the pages all float16 or all bfloat16, or a float32 q
// over 16-bit pages; widened in registers, computed in float32 (lse float32), a 16-bit out rounded once.
#define NORMEXP_PAGED_16(Q, S)                                                                                 \
    NORMEXP_API void paged_attention(const paged_attention_shape& shape, const Q* q, const strides3& q_strides, \
                                     const S* k_pages, const strides4& k_strides, const S* v_pages,           \
                                     const strides4& v_strides, const std::int32_t* block_table,              \
                                     std::ptrdiff_t block_table_row, const std::int32_t* seq_lens,            \
                                     const std::int32_t* query_start, Q* out, const strides3& out_strides,    \
                                     const paged_attention_options<float>& options = {});
NORMEXP_PAGED_16(float16, float16)
NORMEXP_PAGED_16(bfloat16, bfloat16)
NORMEXP_PAGED_16(float, float16)
NORMEXP_PAGED_16(float, bfloat16)
#undef NORMEXP_PAGED_16

// ---- decoding: sampling and the loss at the output layer (cpp/src/sampling.cpp) --------------------------
//
// sample: one token per row of a rows x vocab matrix of logits (unit stride along the vocabulary, rows
// row_stride elements apart). Per row, in this order (the order of the common LLM samplers, vLLM's and
// llama.cpp's controls):
//   logit_bias      x += bias (a vocab-entry row, or one per row), added in T.
//   penalties       for each token t seen c > 0 times in the row's prev_tokens (in float64, rounded to T):
//                   x_t = x_t > 0 ? x_t / r : x_t * r (repetition r), then x_t -= p + f * c (presence p,
//                   frequency f). The caller's logits are never written: a row with a bias is built
//                   in a per-thread row buffer; penalties alone patch the seen tokens as they are read.
//   temperature T   scores x / T. T == 0 is greedy: the lowest index of the maximum (the cuts are moot).
//   top_k  (k > 0)  keep the entries whose score is >= the k-th largest score (ties at the boundary kept).
//   top_p  (p < 1)  of those, keep the smallest set of the most probable entries whose probability
//                   (renormalized over the top-k set) reaches p, plus entries tied with its least member.
//   min_p  (> 0)    of those, keep the entries with probability >= min_p x the largest probability.
// Then one entry is drawn with probability proportional to exp((x - max) / T) over the kept set, by the
// inverse CDF (in index order) at uniforms[row] in [0, 1). The weights are the float32 sampling weights
// of kernels/sampling_weights.hpp, bit-identical on every ISA, and each row is computed by one thread,
// so given uniforms give the same tokens on every ISA and thread count. uniforms may be null when
// every row is greedy. logprobs (if not null, rows entries) receives log(w_token / sum of the kept
// weights): the log-probability of the token under the distribution it was drawn from (0 for a greedy
// row). Errors (normexp::error), all raised before any row is sampled for bad options and prev_tokens:
// a row containing NaN or +inf (after bias and penalties), a row of only -inf, bad options.
struct sample_options {
    double temperature = 1.0;         // finite, >= 0
    std::size_t top_k = 0;            // 0: no top-k cut (k >= vocab: none either)
    double top_p = 1.0;               // in (0, 1]; 1: no cut
    double min_p = 0.0;               // in [0, 1]; 0: no cut
    double repetition_penalty = 1.0;  // finite, > 0; 1: none
    double presence_penalty = 0.0;    // finite, >= 0
    double frequency_penalty = 0.0;   // finite, >= 0
    // Per-row values: null, or `rows` entries that replace the scalar above row by row (same ranges;
    // top_ks: >= 0, 0 = no cut).
    const double* temperatures = nullptr;
    const std::int64_t* top_ks = nullptr;
    const double* top_ps = nullptr;
    const double* min_ps = nullptr;
    const double* repetition_penalties = nullptr;
    const double* presence_penalties = nullptr;
    const double* frequency_penalties = nullptr;
    // The tokens each row has seen (the penalties' counts): rows x prev_len, row-major, each in
    // [0, vocab) or -1 (padding, ignored).
    const std::int64_t* prev_tokens = nullptr;
    std::size_t prev_len = 0;
};
// logit_bias: null, or vocab entries per row, logit_bias_row_stride apart (0: one row for every row).
template <class T>
NORMEXP_API void sample(const T* logits, std::size_t rows, std::size_t vocab, std::ptrdiff_t row_stride, const double* uniforms,
            std::int64_t* tokens, const sample_options& options = {}, const char* isa = nullptr,
            const T* logit_bias = nullptr, std::ptrdiff_t logit_bias_row_stride = 0, double* logprobs = nullptr);

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

// ---- the output layer fused with its reduction (cpp/src/linear_head.cpp) -------------------------------
//
// The logits of a language model's output layer, x = hidden @ weight^T + bias, reduced over the vocabulary
// without ever forming the rows x vocab matrix: hidden is rows x dim (row i at hidden + i * hidden_stride),
// weight is vocab x dim as a model stores it (row j at weight + j * weight_stride), both with unit stride
// along dim; bias (vocab entries, or nullptr) is added to every row's logits. The logits are computed in
// blocks of vocabulary entries by the attention kernels' register-blocked product (the vocabulary plays the
// keys) and folded into a running maximum and sum by attention's online softmax step; the pieces of the
// vocabulary are merged with the log-sum-exp rule in a fixed order, so results are bit-identical for every
// thread count. A NaN or +inf logit makes its row's result NaN; a row whose logits are all -inf has lse
// -inf. Scratch memory: per thread O(dim x block + row block x block), per row a few doubles per piece of
// the vocabulary; never rows x vocab.
template <class T>
struct linear_head_options {
    const T* bias = nullptr;           // vocab entries, or nullptr for none
    std::ptrdiff_t hidden_stride = 0;  // elements between rows of hidden; 0 means dim (contiguous)
    std::ptrdiff_t weight_stride = 0;  // elements between rows of weight; 0 means dim (contiguous)
    const char* isa = nullptr;         // a kernel set by name, or nullptr for the active one
};

// lse[i] = log sum_j exp(x_ij), i < rows.
template <class T>
NORMEXP_API void linear_logsumexp(const T* hidden, const T* weight, std::size_t rows, std::size_t vocab,
                                  std::size_t dim, T* lse, const linear_head_options<T>& options = {});

// loss[i] = torch.nn.functional.cross_entropy of row i's logits against labels[i], before the reduction:
//   loss = (1 - eps) (lse - x_y) + eps (lse - mean_j x_j),   lse = log sum_j exp(x_j),  eps = label_smoothing
// (eps = 0 leaves the mean out, eps = 1 the label's term: 0 * inf would be NaN). Rows whose label is
// ignore_index (when use_ignore_index) get loss 0. Errors (normexp::error, thrown before anything is
// written): a label outside [0, vocab) that is not ignored, label_smoothing outside [0, 1], vocab == 0.
struct linear_cross_entropy_options {
    double label_smoothing = 0.0;  // in [0, 1]
    bool use_ignore_index = true;
    std::int64_t ignore_index = -100;
};
template <class T>
NORMEXP_API void linear_cross_entropy(const T* hidden, const T* weight, std::size_t rows, std::size_t vocab,
                                      std::size_t dim, const std::int64_t* labels, double* loss,
                                      const linear_cross_entropy_options& ce = {},
                                      const linear_head_options<T>& options = {});

// A float16 / bfloat16 weight (a 16-bit model's output layer, read in place and widened in registers) with a
// float32 hidden, bias and results.
#define NORMEXP_LINEAR_HEAD_16(W)                                                                                \
    NORMEXP_API void linear_logsumexp(const float* hidden, const W* weight, std::size_t rows, std::size_t vocab, \
                                      std::size_t dim, float* lse, const linear_head_options<float>& options = {}); \
    NORMEXP_API void linear_cross_entropy(const float* hidden, const W* weight, std::size_t rows,                \
                                          std::size_t vocab, std::size_t dim, const std::int64_t* labels,        \
                                          double* loss, const linear_cross_entropy_options& ce = {},             \
                                          const linear_head_options<float>& options = {});
NORMEXP_LINEAR_HEAD_16(float16)
NORMEXP_LINEAR_HEAD_16(bfloat16)
#undef NORMEXP_LINEAR_HEAD_16

}  // namespace normexp
