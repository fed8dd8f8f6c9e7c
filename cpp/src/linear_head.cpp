// Driver for the output layer fused with its reduction (normexp.hpp, "linear_logsumexp" and
// "linear_cross_entropy"): the logits x = hidden @ weight^T + bias are reduced over the vocabulary while
// they are computed, a block of vocabulary entries at a time, so the rows x vocab matrix never exists.
//
// This is attention's score loop with the vocabulary as the keys (attention.cpp, run_block), reusing its
// kernels (kernel_table.hpp, attention_kernels):
//   pack_kt (a block of weight rows -> K^T panels)  ->  qk (S = H W^T, register-blocked)
//   ->  [the label's logit and, for label smoothing, the row sums of S, read here]
//   ->  softmax_step (x = s + bias[j], running max m and sum l = sum_j exp(x_j - m) in double).
// For very few hidden rows (decoding) the products come straight from the weight rows (qk_direct), as in
// attention, since each weight row is used once and packing would cost as much as the product.
//
// Work: tasks (vocabulary piece p, row block r). A piece is kPieceVocab entries of the vocabulary and a row
// block kBlockRows rows of hidden; a task leaves per row the statistics (m_p, l_p) of its piece (and the
// piece's sum of logits), and the pieces of a row are merged afterwards in piece order with the log-sum-exp
// rule of online_stats.hpp (merge_pieces, as attention's key splits):
//   M = max_p m_p,  L = sum_p l_p exp(m_p - M),  lse = M + log(L).
// The pieces and blocks depend only on the shape (vocab, rows), never on the thread count, so results are
// bit-identical for every thread count. Pieces are the outer loop of the task order, so the threads work on
// the same piece of the weight at the same time and share its reads in the last-level cache.
//
// Memory: per thread the K^T panels (dim x kBlockV) and S (kBlockRows x kBlockV) and a few rows; per hidden
// row two doubles per piece (three with label smoothing) and one for the label's logit: 16 B x vocab / 4096
// per row against the 4 B x vocab of the logits it replaces (0.4%). Everything is allocated before the
// first task runs (threading.hpp), so a failed allocation throws before anything is written.
//
// The weight's element type is a template parameter (weight_reader): only the packing and the direct
// product read the weight, so a float16 / bfloat16 weight is read through the attention kernels that widen
// 16-bit keys in registers, and nothing else changes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"
#include "format.hpp"
#include "normexp/normexp.hpp"
#include "online_stats.hpp"
#include "threading.hpp"

namespace normexp {
namespace {

constexpr std::size_t kBlockV = 128;       // vocabulary entries per block (K^T panel width; as attention's kBlockK)
constexpr std::size_t kBlockRows = 192;    // hidden rows per task: whole row groups of qk (24) and tiles (6, 4, 1)
constexpr std::size_t kPieceVocab = 4096;  // vocabulary entries per piece (merged afterwards)
constexpr std::size_t kDirectRows = 4;     // up to this many rows in the call: no packing (qk_direct)
static_assert(kBlockV % kAttnKeyPanel == 0, "vocabulary blocks must be whole panels");
static_assert(kPieceVocab % kBlockV == 0, "pieces must be whole blocks");

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// msg: text, or a callable that builds it on failure (detail::message, format.hpp).
template <class Msg>
void check(bool ok, const char* fn, Msg&& msg) {
    if (!ok) throw error(std::string("normexp.") + fn + ": " + detail::message(std::forward<Msg>(msg)));
}

inline std::ptrdiff_t sp(std::size_t v) { return static_cast<std::ptrdiff_t>(v); }

// How the driver reads the weight: a block of its rows packed into K^T panels, or the products straight
// from the rows (few hidden rows). W = T: the attention kernels as they are; W 16-bit (T float): the
// attention kernels that widen 16-bit keys in registers (below).
template <class T, class W>
struct weight_reader;

template <class T>
struct weight_reader<T, T> {
    const attention_kernels<T>& k;
    explicit weight_reader(const kernel_table& kt) : k(pick(kt)) {}
    static const attention_kernels<T>& pick(const kernel_table& kt) {
        if constexpr (sizeof(T) == 4) return kt.attn_f32; else return kt.attn_f64;
    }
    void pack(const T* w, std::ptrdiff_t ldw, std::size_t n, std::size_t dim, T* kt, std::size_t ldkt) const {
        k.pack_kt(w, ldw, 1, n, dim, kt, ldkt);
    }
    void direct(const T* h, std::size_t ldh, const T* w, std::ptrdiff_t ldw, std::size_t rows, std::size_t n,
                std::size_t dim, T* s, std::size_t lds, std::size_t ahead) const {
        k.qk_direct(h, ldh, w, ldw, rows, n, dim, s, lds, ahead, {});
    }
};

// A float16 / bfloat16 weight: the attention kernels that read 16-bit keys (attention_kv_kernels), which
// widen each vector in registers; the products and everything after them are float32.
template <class S>
struct half_weight_reader {
    const attention_kv_kernels<S>& k;
    explicit half_weight_reader(const kernel_table& kt) : k(pick(kt)) {}
    static const attention_kv_kernels<S>& pick(const kernel_table& kt) {
        if constexpr (std::is_same_v<S, float16>) return kt.attn_kv_f16; else return kt.attn_kv_bf16;
    }
    void pack(const S* w, std::ptrdiff_t ldw, std::size_t n, std::size_t dim, float* kt, std::size_t ldkt) const {
        k.pack_kt(w, ldw, 1, n, dim, kt, ldkt);
    }
    void direct(const float* h, std::size_t ldh, const S* w, std::ptrdiff_t ldw, std::size_t rows, std::size_t n,
                std::size_t dim, float* s, std::size_t lds, std::size_t ahead) const {
        k.qk_direct(h, ldh, w, ldw, rows, n, dim, s, lds, ahead, {});
    }
};
template <>
struct weight_reader<float, float16> : half_weight_reader<float16> {
    using half_weight_reader::half_weight_reader;
};
template <>
struct weight_reader<float, bfloat16> : half_weight_reader<bfloat16> {
    using half_weight_reader::half_weight_reader;
};

// What one call computes besides the log-sum-exp.
struct extras {
    const std::int64_t* labels = nullptr;  // the label's logit of every row (cross entropy)
    bool use_ignore = false;
    std::int64_t ignore = 0;
    bool sums = false;  // the sum of the logits of every row (label smoothing)
};

// The per-row results of every piece, merged by finish.
struct partials {
    std::size_t pieces;
    std::vector<double> m, l, sum;  // [row * pieces + piece]
    std::vector<double> label;      // [row]: written by the one task whose piece holds the row's label
};

template <class T>
struct workspace {
    std::vector<T> kt, s, m, alpha;
    std::vector<double> l;
    workspace(std::size_t dim, std::size_t block_rows, bool direct) {
        if (!direct) kt.resize(std::max<std::size_t>(1, detail::scratch_elems(dim, kBlockV)));
        s.resize(detail::scratch_elems(block_rows, kBlockV));
        m.resize(block_rows);
        alpha.resize(block_rows);
        l.resize(block_rows);
    }
};

// sum_j x_j over one block's row of logits, x_j = s_j (+ bias_j, rounded to T as softmax_step rounds it), in
// double with four partial sums (one dependent add chain would take 4 cycles per entry).
template <class T>
double block_sum(const T* s, const T* bias, std::size_t n) {
    double a[4] = {0, 0, 0, 0};
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (std::size_t k = 0; k < 4; ++k) a[k] += double(bias ? T(s[j + k] + bias[j + k]) : s[j + k]);
    for (; j < n; ++j) a[0] += double(bias ? T(s[j] + bias[j]) : s[j]);
    return (a[0] + a[1]) + (a[2] + a[3]);
}

// Statistics of every row and piece (and the extras) for hidden rows x vocab, on nt threads.
template <class T, class W>
void run_pieces(const weight_reader<T, W>& wr, const attention_kernels<T>& ak, const T* hidden, std::size_t ldh,
                const W* weight, std::ptrdiff_t ldw, const T* bias, std::size_t rows, std::size_t vocab,
                std::size_t dim, const extras& ex, partials& pt) {
    const std::size_t np = pt.pieces;
    const std::size_t block_rows = std::min(rows, kBlockRows);
    const std::size_t nrb = (rows + kBlockRows - 1) / kBlockRows;
    const std::size_t ntasks = np * nrb;
    const bool direct = rows <= kDirectRows;
    // Work in multiply-adds (saturating: only a threshold reads it).
    const double fl = double(rows) * double(vocab) * double(std::max<std::size_t>(1, dim));
    const std::size_t work = fl >= 1e18 ? std::size_t(1e18) : static_cast<std::size_t>(fl);
    const int nt = detail::threads_for(work, ntasks);
    std::vector<workspace<T>> wss;
    wss.reserve(static_cast<std::size_t>(std::max(nt, 1)));
    for (int i = 0; i < std::max(nt, 1); ++i) wss.emplace_back(dim, block_rows, direct);

    detail::parallel_dynamic(nt, ntasks, [&](std::size_t slot, std::size_t t) {
        workspace<T>& ws = wss[slot];
        const std::size_t p = t / nrb, r0 = (t % nrb) * kBlockRows;
        const std::size_t nr = std::min(kBlockRows, rows - r0);
        const std::size_t v0 = p * kPieceVocab, v1 = std::min(vocab, v0 + kPieceVocab);
        const T* h = hidden + r0 * ldh;
        std::fill(ws.m.begin(), ws.m.begin() + nr, -std::numeric_limits<T>::infinity());
        std::fill(ws.l.begin(), ws.l.begin() + nr, 0.0);
        double* const sums = ex.sums ? pt.sum.data() : nullptr;
        if (sums)
            for (std::size_t i = 0; i < nr; ++i) sums[(r0 + i) * np + p] = 0;
        attn_scores<T> sc{};
        sc.scale = T(1);
        sc.bias_ld = 0;  // one bias row for every hidden row
        for (std::size_t j0 = v0; j0 < v1; j0 += kBlockV) {
            const std::size_t n = std::min(kBlockV, v1 - j0);
            const W* wb = weight + sp(j0) * ldw;
            T* const s = ws.s.data();
            if (direct) {
                wr.direct(h, ldh, wb, ldw, nr, n, dim, s, kBlockV, v1 - j0 - n);  // the piece's next rows follow
            } else {
                wr.pack(wb, ldw, n, dim, ws.kt.data(), kBlockV);
                ak.qk(h, ldh, ws.kt.data(), kBlockV, nr, n, dim, s, kBlockV);
            }
            // The logit softmax_step forms from s (x = 1 * s, then + bias, each rounded to T: the scalar
            // specification rounds s + bias once, which is the same single rounding of a sum of two T).
            const T* const bb = bias ? bias + j0 : nullptr;
            if (ex.labels)
                for (std::size_t i = 0; i < nr; ++i) {
                    const std::int64_t y = ex.labels[r0 + i];
                    if ((ex.use_ignore && y == ex.ignore) || y < std::int64_t(j0) || y >= std::int64_t(j0 + n)) continue;
                    const std::size_t j = static_cast<std::size_t>(y) - j0;
                    T x = s[i * kBlockV + j];
                    if (bb) x = x + bb[j];
                    pt.label[r0 + i] = double(x);
                }
            if (sums)
                for (std::size_t i = 0; i < nr; ++i) sums[(r0 + i) * np + p] += block_sum(s + i * kBlockV, bb, n);
            sc.bias = bb;
            ak.softmax_step(s, kBlockV, nr, n, sc, ws.m.data(), ws.l.data(), ws.alpha.data());
        }
        for (std::size_t i = 0; i < nr; ++i) {
            pt.m[(r0 + i) * np + p] = double(ws.m[i]);
            pt.l[(r0 + i) * np + p] = ws.l[i];
        }
    });
}

// The log-sum-exp of row i from its pieces (online_stats.hpp, merge_pieces, in piece order): NaN when a
// piece saw a NaN or +inf logit, -inf when every logit is -inf.
template <class T>
double row_lse(const partials& pt, std::size_t i) {
    const std::size_t np = pt.pieces;
    const detail::merged mg = detail::merge_pieces<T>(
        np, [&](std::size_t p) { return detail::piece<T>{pt.m[i * np + p], pt.l[i * np + p], nullptr}; }, nullptr, 0);
    if (mg.nan || mg.m == kInf) return kNaN;
    if (mg.m == -kInf) return -kInf;
    return mg.m + std::log(mg.l);
}

template <class T, class W>
struct call {
    const T* hidden;
    std::size_t ldh;
    const W* weight;
    std::ptrdiff_t ldw;
    const kernel_table& kt;
};

template <class T, class W>
call<T, W> prepare(const char* fn, const T* hidden, const W* weight, std::size_t rows, std::size_t vocab,
                   std::size_t dim, const linear_head_options<T>& o) {
    check(o.hidden_stride >= 0, fn, "hidden_stride must be >= 0 (0: contiguous rows)");
    check(o.weight_stride >= 0, fn, "weight_stride must be >= 0 (0: contiguous rows)");
    if (rows > 0 && vocab > 0 && dim > 0) check(hidden != nullptr && weight != nullptr, fn, "null data pointer");
    const kernel_table& kt = (o.isa && *o.isa) ? detail::kernels_for(o.isa) : detail::active_kernels();
    return {hidden, o.hidden_stride ? static_cast<std::size_t>(o.hidden_stride) : dim, weight,
            o.weight_stride ? o.weight_stride : sp(dim), kt};
}

template <class T, class W>
partials compute(const call<T, W>& c, const T* bias, std::size_t rows, std::size_t vocab, std::size_t dim,
                 const extras& ex) {
    partials pt;
    pt.pieces = (vocab + kPieceVocab - 1) / kPieceVocab;
    const std::size_t cells = detail::scratch_elems(rows, pt.pieces);
    pt.m.resize(cells);
    pt.l.resize(cells);
    if (ex.sums) pt.sum.resize(cells);
    if (ex.labels) pt.label.assign(rows, kNaN);
    const weight_reader<T, W> wr(c.kt);
    const attention_kernels<T>& ak = weight_reader<T, T>::pick(c.kt);
    run_pieces<T, W>(wr, ak, c.hidden, c.ldh, c.weight, c.ldw, bias, rows, vocab, dim, ex, pt);
    return pt;
}

// Merging costs a few exp per row and piece: threads only for many rows.
template <class F>
void per_row(std::size_t rows, std::size_t pieces, F&& f) {
    const int nt = detail::threads_for(detail::scratch_elems(rows, pieces + 1) * 16, rows);
    detail::parallel_ranges(nt, rows, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) f(i);
    });
}

template <class T, class W>
void logsumexp_impl(const T* hidden, const W* weight, std::size_t rows, std::size_t vocab, std::size_t dim, T* lse,
                    const linear_head_options<T>& o) {
    const char* fn = "linear_logsumexp";
    const call<T, W> c = prepare(fn, hidden, weight, rows, vocab, dim, o);
    if (rows == 0) return;
    check(lse != nullptr, fn, "null output pointer");
    if (vocab == 0) {  // the log of an empty sum
        std::fill(lse, lse + rows, -std::numeric_limits<T>::infinity());
        return;
    }
    const partials pt = compute(c, o.bias, rows, vocab, dim, extras{});
    per_row(rows, pt.pieces, [&](std::size_t i) { lse[i] = static_cast<T>(row_lse<T>(pt, i)); });
}

template <class T, class W>
void cross_entropy_impl(const T* hidden, const W* weight, std::size_t rows, std::size_t vocab, std::size_t dim,
                        const std::int64_t* labels, double* loss, const linear_cross_entropy_options& ce,
                        const linear_head_options<T>& o) {
    const char* fn = "linear_cross_entropy";
    const double eps = ce.label_smoothing;
    check(eps >= 0 && eps <= 1, fn, [&] { return "label_smoothing must be in [0, 1], got " + detail::format_number(eps); });
    const call<T, W> c = prepare(fn, hidden, weight, rows, vocab, dim, o);
    if (rows == 0) return;
    check(labels != nullptr && loss != nullptr, fn, "null labels or loss pointer");
    auto ignored = [&](std::size_t i) { return ce.use_ignore_index && labels[i] == ce.ignore_index; };
    bool any = false;
    for (std::size_t i = 0; i < rows; ++i) {
        if (ignored(i)) continue;
        any = true;
        check(labels[i] >= 0 && std::uint64_t(labels[i]) < vocab, fn, [&] {
            return "labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) + " is outside [0, " +
                   std::to_string(vocab) + ")";
        });
    }
    if (!any) {  // every row ignored (or none to compute): nothing is read
        std::fill(loss, loss + rows, 0.0);
        return;
    }
    extras ex;
    ex.labels = labels;
    ex.use_ignore = ce.use_ignore_index;
    ex.ignore = ce.ignore_index;
    ex.sums = eps > 0;
    const partials pt = compute(c, o.bias, rows, vocab, dim, ex);
    const std::size_t np = pt.pieces;
    per_row(rows, np, [&](std::size_t i) {
        if (ignored(i)) {
            loss[i] = 0;
            return;
        }
        const double lse = row_lse<T>(pt, i);
        if (lse != lse || lse == -kInf) {  // a NaN or +inf logit; or every logit -inf (NaN in torch too)
            loss[i] = kNaN;
            return;
        }
        const double xy = pt.label[i];
        const double nll = xy == -kInf ? kInf : lse - xy;
        if (!(eps > 0)) {
            loss[i] = nll;
            return;
        }
        double total = 0;
        for (std::size_t p = 0; p < np; ++p) total += pt.sum[i * np + p];
        const double mean = total / double(vocab);
        const double smooth = mean == -kInf ? kInf : lse - mean;
        // eps = 1: the label's term has weight 0 and is left out (0 * inf would be NaN for a -inf label).
        loss[i] = (eps < 1 ? (1 - eps) * nll : 0.0) + eps * smooth;
    });
}

}  // namespace

template <class T>
void linear_logsumexp(const T* hidden, const T* weight, std::size_t rows, std::size_t vocab, std::size_t dim, T* lse,
                      const linear_head_options<T>& o) {
    logsumexp_impl(hidden, weight, rows, vocab, dim, lse, o);
}
template <class T>
void linear_cross_entropy(const T* hidden, const T* weight, std::size_t rows, std::size_t vocab, std::size_t dim,
                          const std::int64_t* labels, double* loss, const linear_cross_entropy_options& ce,
                          const linear_head_options<T>& o) {
    cross_entropy_impl(hidden, weight, rows, vocab, dim, labels, loss, ce, o);
}
template void linear_logsumexp<float>(const float*, const float*, std::size_t, std::size_t, std::size_t, float*,
                                      const linear_head_options<float>&);
template void linear_logsumexp<double>(const double*, const double*, std::size_t, std::size_t, std::size_t, double*,
                                       const linear_head_options<double>&);
template void linear_cross_entropy<float>(const float*, const float*, std::size_t, std::size_t, std::size_t,
                                          const std::int64_t*, double*, const linear_cross_entropy_options&,
                                          const linear_head_options<float>&);
template void linear_cross_entropy<double>(const double*, const double*, std::size_t, std::size_t, std::size_t,
                                           const std::int64_t*, double*, const linear_cross_entropy_options&,
                                           const linear_head_options<double>&);

// 16-bit weights (float32 hidden, bias and results).
#define NX_LINEAR_HEAD_16(W)                                                                                        \
    void linear_logsumexp(const float* hidden, const W* weight, std::size_t rows, std::size_t vocab,                \
                          std::size_t dim, float* lse, const linear_head_options<float>& o) {                       \
        logsumexp_impl(hidden, weight, rows, vocab, dim, lse, o);                                                   \
    }                                                                                                               \
    void linear_cross_entropy(const float* hidden, const W* weight, std::size_t rows, std::size_t vocab,            \
                              std::size_t dim, const std::int64_t* labels, double* loss,                            \
                              const linear_cross_entropy_options& ce, const linear_head_options<float>& o) {        \
        cross_entropy_impl(hidden, weight, rows, vocab, dim, labels, loss, ce, o);                                  \
    }
NX_LINEAR_HEAD_16(float16)
NX_LINEAR_HEAD_16(bfloat16)
#undef NX_LINEAR_HEAD_16

}  // namespace normexp
