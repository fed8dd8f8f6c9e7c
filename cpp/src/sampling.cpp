// Driver for the language-model output layer: token sampling (logit bias, repetition / presence /
// frequency penalties, temperature, top-k, top-p, min-p, greedy; per-row parameters; log-probabilities)
// and the cross-entropy loss (with the derivatives in 1/T that temperature fitting needs).
//
// Sampling, per row (one thread per row; rows in parallel):
//   options  every option of every row and every prev_tokens id are checked first (check_sample_options).
//   changes  logit_bias: the row is built in a per-thread buffer (x + bias in T, then the penalties);
//           penalties alone: the seen tokens' new values are patches over the caller's row, read through
//           row_view (only the 64-entry blocks holding a patch are copied, to the stack, as a pass
//           reaches them). The passes below then run on that row exactly as on an unchanged one.
//   pass 1  m = row max (row_max kernel; NaN, +inf and all -inf rows are errors).
//   greedy  the first index with x == m (row_collect_ge on chunks, stops at the first hit).
//   top_k <= kListMaxK (the usual k = 20..100):
//   pass 2  streaming selection: row_collect_ge gathers the entries >= a threshold that only rises (the
//           k-th largest of the candidates so far); when the candidate buffer fills, nth_element finds the
//           new threshold and the buffer is pruned. Expected O(n + k log(n/k) log k): after the first
//           chunks nearly every vector fails the compare. Ends with tau_k and the candidates x >= tau_k.
//           Their weights (row_sample_weights on the gathered scores), then top_p / min_p on that list
//           and the draw from it. The vocabulary is never sorted.
//   otherwise (no top_k, or a large one: tau_k by nth_element on a copy):
//   pass 2  row_sample_weights: the weights of the entries >= tau_k and one float sum per 64-entry block.
//           No top_p / min_p: the draw walks the block sums (double, in order) to the block holding
//           u * Z and recomputes that block's 64 weights: the token. Nothing else is read.
//           top_p / min_p: the weights are stored, and a threshold is chosen that provably keeps every
//           entry of the answer: min_p itself, and for top_p theta = (1 - p) Z / n (everything below it
//           weighs less than (1 - p) Z in total, so the top-p set lies above it). row_collect_ge collects
//           the entries >= theta (theta raised further from the block sums: top_p_collect_bound);
//           top_p is a weighted quickselect on their weights (the largest weight v
//           with mass(w >= v) >= p Z, expected linear); then min_p; then the draw from the list.
// Threads: rows in parallel; a batch smaller than the thread count (batch 1 when decoding) splits each
// row's passes (max, block maxima, top-k streaming, weights) into 16384-entry chunks over the threads.
// Determinism: every weight and every sum compared with u * Z is computed by the bit-exact sampling
// weights (kernels/sampling_weights.hpp) and by sequential double arithmetic here, in an order fixed by
// the row alone; thresholds are exact comparisons. So the token depends only on the logits and u.
// logprobs: log(w_token) - log(Z_kept), the float32 weight of the drawn entry over the (double) sum of
// the kept weights it was drawn among: the log-probability under the distribution actually sampled.
//
// Cross-entropy, per row: online max and exp-sum over L1-sized chunks (row_max, row_exp_sum: one pass
// over memory), the label's score by one load; label smoothing adds the row sum, computed on the same
// chunks while they are in L1. Non-contiguous rows are gathered into a per-thread buffer first.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "format.hpp"
#include "kernels/sampling_weights.hpp"
#include "normexp/normexp.hpp"
#include "online_stats.hpp"
#include "temperature.hpp"
#include "threading.hpp"

namespace normexp {
namespace {

using detail::threads_for;

constexpr std::size_t kBlock = sampling::kSampleBlock;
constexpr std::size_t kScanChunk = 4096;   // entries per row_collect_ge call (its index buffer stays in L1)
constexpr std::size_t kListMaxK = 4096;    // top_k up to this: streaming selection into a candidate list
constexpr std::size_t kChunk = 4096;       // cross_entropy: entries per online-statistics chunk (L1)
constexpr std::size_t kInnerChunk = std::size_t(1) << 14;  // a single long row split over threads (64 | it)

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

template <class T>
const reduction_kernels<T>& kernels_of(const kernel_table& kt) {
    if constexpr (sizeof(T) == 4) return kt.f32; else return kt.f64;
}

const kernel_table& table_for(const char* isa) {
    return (isa && *isa) ? detail::kernels_for(isa) : detail::active_kernels();
}

// msg: text, or a callable that builds it on failure (detail::message, format.hpp).
template <class Msg>
void check(bool ok, Msg&& msg) {
    if (!ok) throw error(detail::message(std::forward<Msg>(msg)));
}

// Per-row outcome, turned into an exception after the parallel region (exceptions must not escape it).
enum row_status : std::uint8_t { kOk = 0, kNaN, kPosInf, kAllNegInf, kBadLabel, kBadUniform };

// modified: the row was changed by logit_bias or penalties before the check (sample), said in the message.
std::string row_message(const char* fn, row_status st, std::size_t row, bool modified = false) {
    const std::string r = std::to_string(row) + (modified ? " (after logit_bias and penalties)" : "");
    switch (st) {
        case kNaN: return std::string(fn) + ": logits row " + r + " contains NaN";
        case kPosInf: return std::string(fn) + ": logits row " + r + " contains +inf; probabilities are undefined";
        case kAllNegInf: return std::string(fn) + ": logits row " + r + " is all -inf (no class has any probability)";
        case kBadUniform: return std::string(fn) + ": uniforms[" + r + "] is not in [0, 1)";
        default: return std::string(fn) + ": bad row " + r;
    }
}

// ======================================================================================================
// Sampling
// ======================================================================================================
// A thread's buffers for sampling rows, created before any parallel region (prepare_scratch sizes the
// ones whose size the options fix). The candidate lists of the top-k and top-p paths grow with the
// data inside the rows (as does `row` for a row whose penalties touch many blocks, see changed_row); they
// are bounded by the vocabulary and grow only inside the guarded regions of threading.hpp, so a failed
// allocation there is a std::bad_alloc like any other.
template <class T>
struct sample_scratch {
    std::vector<std::uint32_t> idx;   // row_collect_ge output for one chunk
    std::vector<std::uint32_t> cand;  // candidate indices, increasing
    std::vector<T> vals;              // scores for selection
    std::vector<T> gathered;          // candidate scores, contiguous
    std::vector<float> cw, cw2;       // candidate weights (and a copy the quickselect permutes)
    std::vector<float> w;             // the row's weights (block path with top_p / min_p)
    std::vector<float> bs;            // block sums
    // A row split over threads (nt > 1): maxima per chunk, candidates per chunk, and per thread the
    // selection scores and row_collect_ge output of stream_top_k.
    std::vector<T> part;
    std::vector<std::vector<std::uint32_t>> chunk_cand;
    std::vector<std::vector<T>> tvals;
    std::vector<std::uint32_t> tidx;
    // Rows changed by logit_bias or penalties: the changed row (with a bias), the row's seen tokens
    // sorted, and the patches of a row changed by penalties alone (see row_view).
    std::vector<T> row;
    std::vector<std::int64_t> seen;
    std::vector<std::uint32_t> patch_ids;
    std::vector<T> patch_vals;
};

// The row the sampler reads: x itself with, optionally, a few entries replaced (the patches: the tokens
// a penalty changed, by increasing index, and their new values), so that a row changed by penalties
// alone is never copied. Passes over the row go through pieces(lo, hi, f), which calls f(p, off, len)
// with p[0..len) = the row's entries off..off+len: in-place pieces of x, and for each 64-entry block
// holding a patch, that block's part of [lo, hi) copied to the stack with the patches applied. Pieces
// start at lo or at a block boundary, so a pass over whole blocks (the sampling weights and their block
// sums) computes each block from exactly its entries: the same bits as over a patched copy of the row.
// Without patches, pieces is one call on x[lo, hi) and at(i) is x[i]: the plain path is unchanged.
template <class T>
struct row_view {
    const T* x;
    std::size_t n;
    const std::uint32_t* ids = nullptr;  // patched indices, increasing
    const T* vals = nullptr;             // their values
    std::size_t count = 0;

    T at(std::size_t i) const {
        if (count == 0) return x[i];
        const std::uint32_t* p = std::lower_bound(ids, ids + count, static_cast<std::uint32_t>(i));
        return (p != ids + count && *p == i) ? vals[p - ids] : x[i];
    }
    template <class F>
    void pieces(std::size_t lo, std::size_t hi, F&& f) const {
        std::size_t j = count ? std::size_t(std::lower_bound(ids, ids + count, static_cast<std::uint32_t>(lo)) - ids) : 0;
        std::size_t pos = lo;
        while (pos < hi) {
            if (j == count || ids[j] >= hi) {
                f(x + pos, pos, hi - pos);
                return;
            }
            const std::size_t blk = std::size_t(ids[j]) / kBlock * kBlock;
            const std::size_t b0 = std::max(pos, blk), b1 = std::min(hi, blk + kBlock);
            if (b0 > pos) f(x + pos, pos, b0 - pos);
            T buf[kBlock];
            std::memcpy(buf, x + b0, (b1 - b0) * sizeof(T));
            for (; j < count && ids[j] < b1; ++j) buf[ids[j] - b0] = vals[j];
            f(static_cast<const T*>(buf), b0, b1 - b0);
            pos = b1;
        }
    }
    // max of [lo, hi) (exact, so however it is cut), NaN if an entry is NaN.
    T max(const reduction_kernels<T>& k, std::size_t lo, std::size_t hi) const {
        T m = -std::numeric_limits<T>::infinity();
        pieces(lo, hi, [&](const T* p, std::size_t, std::size_t len) {
            const T c = k.row_max(p, len);
            m = (c != c || m != m) ? std::numeric_limits<T>::quiet_NaN() : std::max(m, c);
        });
        return m;
    }
    // row_collect_ge over [lo, hi): the indices (relative to lo, increasing) of the entries >= thr.
    std::size_t collect_ge(const reduction_kernels<T>& k, std::size_t lo, std::size_t hi, T thr, std::uint32_t* idx) const {
        std::size_t c = 0;
        pieces(lo, hi, [&](const T* p, std::size_t off, std::size_t len) {
            const std::size_t got = k.row_collect_ge(p, len, thr, idx + c);
            if (off != lo)
                for (std::size_t j = c; j < c + got; ++j) idx[j] += static_cast<std::uint32_t>(off - lo);
            c += got;
        });
        return c;
    }
};

// Streaming top-k (see the file comment): one pass over x[lo, hi) appending to cand (indices into x,
// increasing) every entry >= a threshold that starts at `start` and only rises: when the buffer fills,
// the threshold becomes the k-th largest candidate and the buffer is pruned. Valid for any sub-range
// and any start <= tau_k (the k-th largest score of the row): the threshold is always the k-th largest
// of a subset of the row, so <= tau_k, and an entry is dropped only below it. So cand ends holding every
// entry of x[lo, hi) that is >= tau_k.
template <class T>
T kth_largest(const row_view<T>& x, const std::vector<std::uint32_t>& cand, std::size_t kk, std::vector<T>& vals) {
    vals.resize(cand.size());
    for (std::size_t j = 0; j < cand.size(); ++j) vals[j] = x.at(cand[j]);
    std::nth_element(vals.begin(), vals.begin() + std::ptrdiff_t(kk - 1), vals.end(), std::greater<T>());
    return vals[kk - 1];
}
template <class T>
void prune_below(const row_view<T>& x, std::vector<std::uint32_t>& cand, T t) {
    cand.erase(std::remove_if(cand.begin(), cand.end(), [&](std::uint32_t i) { return x.at(i) < t; }), cand.end());
}
// idx: kScanChunk entries of scratch.
template <class T>
void stream_top_k(const reduction_kernels<T>& k, const row_view<T>& x, std::size_t lo, std::size_t hi, std::size_t kk, T start,
                  std::vector<std::uint32_t>& cand, std::vector<T>& vals, std::uint32_t* idx) {
    std::size_t cap = std::max<std::size_t>(2 * kk, kk + 1024);
    T thr = start;
    for (std::size_t c0 = lo; c0 < hi; c0 += kScanChunk) {
        const std::size_t got = x.collect_ge(k, c0, c0 + std::min(kScanChunk, hi - c0), thr, idx);
        for (std::size_t j = 0; j < got; ++j) cand.push_back(static_cast<std::uint32_t>(c0 + idx[j]));
        if (cand.size() > cap) {
            thr = kth_largest(x, cand, kk, vals);
            prune_below(x, cand, thr);
            if (cand.size() > cap / 2) cap = 2 * cand.size();  // many ties at the threshold: grow
        }
    }
}

// tau_k and s.cand = the indices of every entry >= tau_k, increasing (ties at tau_k included); kk < n.
// With nt > 1 the row is cut into chunks streamed in parallel, their candidates concatenated in order;
// the result is the same set (it is defined by tau_k alone), so the token does not depend on nt.
template <class T>
T select_top_k(const reduction_kernels<T>& k, const row_view<T>& x, std::size_t n, std::size_t kk, T start,
               sample_scratch<T>& s, int nt) {
    s.cand.clear();
    const std::size_t nchunks = (n + kInnerChunk - 1) / kInnerChunk;
    if (nt > 1 && nchunks > 1) {  // s.chunk_cand, s.tvals, s.tidx: prepared for nt threads
        for (auto& part : s.chunk_cand) part.clear();
        detail::parallel_slices(nt, nchunks, [&](std::size_t slot, std::size_t c0, std::size_t c1) {
            for (std::size_t c = c0; c < c1; ++c)
                stream_top_k(k, x, c * kInnerChunk, std::min(n, (c + 1) * kInnerChunk), kk, start, s.chunk_cand[c],
                             s.tvals[slot], s.tidx.data() + slot * kScanChunk);
        });
        for (const auto& part : s.chunk_cand) s.cand.insert(s.cand.end(), part.begin(), part.end());
    } else {
        stream_top_k(k, x, 0, n, kk, start, s.cand, s.vals, s.idx.data());
    }
    const T tau = kth_largest(x, s.cand, kk, s.vals);
    prune_below(x, s.cand, tau);
    return tau;
}

// Max of a NaN-free-so-far set of partial maxima; NaN if any is NaN.
template <class T>
T combine_max(const std::vector<T>& part) {
    T m = -kInf<T>;
    for (T v : part) {
        if (v != v) return v;
        m = std::max(m, v);
    }
    return m;
}

// The row max (NaN if any entry is NaN), with nt threads over chunks (part: one entry per chunk).
template <class T>
T row_max(const reduction_kernels<T>& k, const row_view<T>& x, std::size_t n, int nt, std::vector<T>& part) {
    const std::size_t nchunks = (n + kInnerChunk - 1) / kInnerChunk;
    if (nt <= 1 || nchunks < 2) return x.max(k, 0, n);
    detail::parallel_ranges(nt, nchunks, [&](std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; ++c)
            part[c] = x.max(k, c * kInnerChunk, std::min(n, (c + 1) * kInnerChunk));
    });
    return combine_max(part);
}

// The row maximum together with a starting threshold for select_top_k: the row is cut into at least
// 4k blocks (of >= 16 entries) and the k-th largest block maximum is taken. That is a valid lower bound
// of tau_k (k distinct entries reach it) and, when the top k entries fall into distinct blocks, nearly
// tau_k itself, so the streaming pass collects little more than the answer. Returns NaN for a NaN row.
template <class T>
T block_max_start(const reduction_kernels<T>& k, const row_view<T>& x, std::size_t n, std::size_t kk, T& start,
                  sample_scratch<T>& s, int nt) {
    const std::size_t b = n / (4 * kk);
    start = -kInf<T>;
    if (b < 16) return row_max(k, x, n, nt, s.part);  // too few blocks for a useful bound: start from -inf
    const std::size_t nb = (n + b - 1) / b;
    s.vals.resize(nb);
    detail::parallel_ranges(nb * b >= 2 * kInnerChunk ? nt : 1, nb, [&](std::size_t b0, std::size_t b1) {
        for (std::size_t i = b0; i < b1; ++i) s.vals[i] = x.max(k, i * b, std::min(n, (i + 1) * b));
    });
    const T m = combine_max(s.vals);
    if (m != m) return m;
    std::nth_element(s.vals.begin(), s.vals.begin() + std::ptrdiff_t(kk - 1), s.vals.end(), std::greater<T>());
    start = s.vals[kk - 1];
    return m;
}

// Branchless Lomuto partition of a[lo, hi): the entries satisfying pred first; returns their end and
// their mass. (The weights of a flat distribution are in random order: a branchy partition would
// mispredict on about every other entry.)
template <class Pred>
std::size_t partition_mass(std::vector<float>& a, std::size_t lo, std::size_t hi, Pred pred, double& mass) {
    std::size_t j = lo;
    double m[2] = {0, 0};  // two chains: the double adds, not the swaps, bound the loop
    for (std::size_t i = lo; i < hi; ++i) {
        const float v = a[i];
        const bool t = pred(v);
        a[i] = a[j];
        a[j] = v;
        j += t;
        m[i & 1] += double(v) * double(t);  // a multiply, not a select: the compiler keeps it branch-free
    }
    mass = m[0] + m[1];
    return j;
}

// The top-p threshold over weights a (permuted in place): the largest value v with
// mass(a >= v) >= target, by a quickselect that carries the mass of the part already known to be kept.
// Median-of-three pivots; after 64 rounds the rest is sorted (bounds the worst case). If rounding
// leaves the whole mass short of the target, the smallest weight is returned (keep all).
float top_p_threshold(std::vector<float>& a, double target) {
    double above = 0;  // mass of entries known to be above every entry of [lo, hi)
    std::size_t lo = 0, hi = a.size();
    for (int round = 0; hi > lo; ++round) {
        if (round == 64) {
            std::sort(a.begin() + std::ptrdiff_t(lo), a.begin() + std::ptrdiff_t(hi), std::greater<float>());
            for (std::size_t i = lo; i < hi; ++i) {
                above += a[i];
                if (above >= target) return a[i];
            }
            return a[hi - 1];
        }
        const float p0 = a[lo], p1 = a[lo + (hi - lo) / 2], p2 = a[hi - 1];
        const float pivot = std::max(std::min(p0, p1), std::min(std::max(p0, p1), p2));
        double mg = 0, me = 0;
        const std::size_t g = partition_mass(a, lo, hi, [pivot](float v) { return v > pivot; }, mg);
        if (above + mg >= target) {
            hi = g;  // the answer is inside the greater part (non-empty: above < target)
            continue;
        }
        const std::size_t l = partition_mass(a, g, hi, [pivot](float v) { return v == pivot; }, me);
        if (above + mg + me >= target) return pivot;
        above += mg + me;
        if (l == hi) return pivot;  // nothing smaller: keep everything
        lo = l;
    }
    return a.empty() ? 0.0f : a[lo > 0 ? lo - 1 : 0];
}

// A weight threshold theta below which the entries weigh at most `budget` in total, so every entry of the
// top-p set (whose complement weighs (1 - p) Z) is >= theta. Block b holds at most 64 entries below
// theta and at most its sum S_b, so the mass below theta is <= F(theta) = sum_b min(S_b, 64 theta).
// theta = budget / n always qualifies (F <= n theta); it is raised by factors of 4 while F stays within
// the budget, which for a peaked distribution (most blocks hold only tiny weights) lifts theta by orders
// of magnitude and shrinks the candidate list accordingly. budget carries a 2e-5 relative margin for the
// float32 rounding of the block sums (64 terms: <= 4e-6 relative each).
double top_p_collect_bound(const std::vector<float>& bs, std::size_t n, double budget) {
    double theta = budget / double(n);
    for (int it = 0; it < 64; ++it) {
        const double next = theta * 4, cap = next * double(kBlock);
        double f0 = 0, f1 = 0;
        std::size_t b = 0;
        for (; b + 2 <= bs.size(); b += 2) {
            f0 += std::min(double(bs[b]), cap);
            f1 += std::min(double(bs[b + 1]), cap);
        }
        if (b < bs.size()) f0 += std::min(double(bs[b]), cap);
        if (f0 + f1 > budget) break;
        theta = next;
    }
    return theta;
}

// log(w / z): the log-probability of a drawn entry of weight w > 0 among weights summing to z.
double log_share(float w, double z) { return std::log(double(w)) - std::log(z); }

// Inverse CDF over a list (index order): the first entry whose running sum exceeds u * total; the last
// entry of positive weight if rounding leaves none. Returns its index and sets its log_share.
std::uint32_t draw_list(const std::uint32_t* idx, const float* w, std::size_t cnt, double u, double& logprob) {
    double z = 0;
    for (std::size_t j = 0; j < cnt; ++j) z += w[j];
    const double target = u * z;
    double c = 0;
    std::size_t last = 0;
    for (std::size_t j = 0; j < cnt; ++j) {
        if (!(w[j] > 0)) continue;
        last = j;
        c += w[j];
        if (c > target) break;
    }
    // The loop stops at the drawn entry; if it ran out, `last` is the last one of positive weight.
    logprob = log_share(w[last], z);
    return idx[last];
}

// top_p and min_p over a candidate list (indices increasing, weights cw), then the draw.
// z: the mass top_p is relative to (the top-k set's).
template <class T>
std::uint32_t finish_list(sample_scratch<T>& s, double z, double top_p, double min_p, double u, double& logprob) {
    double thr = 0;
    if (top_p < 1) {
        s.cw2 = s.cw;
        thr = top_p_threshold(s.cw2, top_p * z);
    }
    if (min_p > 0) thr = std::max(thr, min_p);  // the largest weight is exactly 1 (t = 0)
    if (thr > 0) {
        std::size_t o = 0;
        for (std::size_t j = 0; j < s.cand.size(); ++j) {
            if (double(s.cw[j]) >= thr) {
                s.cand[o] = s.cand[j];
                s.cw[o++] = s.cw[j];
            }
        }
        s.cand.resize(o);
        s.cw.resize(o);
    }
    return draw_list(s.cand.data(), s.cw.data(), s.cand.size(), u, logprob);
}

// Inverse CDF over the block sums: the block holding u * Z, then that block's 64 weights recomputed.
// Sets the drawn entry's log_share of Z.
template <class T>
std::size_t draw_blocks(const reduction_kernels<T>& k, const row_view<T>& x, std::size_t n, T m, T beta, T thr,
                        const std::vector<float>& bs, double z, double u, double& logprob) {
    const double target = u * z;
    double c = 0;
    std::size_t b = bs.size(), last = 0;
    for (std::size_t j = 0; j < bs.size(); ++j) {
        if (!(bs[j] > 0)) continue;
        last = j;
        if (c + bs[j] > target) {
            b = j;
            break;
        }
        c += bs[j];
    }
    double rem = target - c;
    if (b == bs.size()) {  // rounding: take the last entry of positive weight
        b = last;
        rem = std::numeric_limits<double>::infinity();
    }
    float wb[kBlock];
    const std::size_t b0 = b * kBlock, len = std::min(kBlock, n - b0);
    x.pieces(b0, b0 + len, [&](const T* p, std::size_t off, std::size_t l) {
        k.row_sample_weights(p, l, m, beta, thr, wb + (off - b0), nullptr);
    });
    double cc = 0;
    std::size_t lastpos = 0;
    for (std::size_t i = 0; i < len; ++i) {
        if (!(wb[i] > 0)) continue;
        lastpos = i;
        cc += wb[i];
        if (cc > rem) break;
    }
    logprob = log_share(wb[lastpos], z);
    return b0 + lastpos;
}

struct sample_plan {
    bool greedy;
    std::size_t top_k;  // 0: none (also when >= vocab)
    double top_p, min_p;
};

// Allocates the buffers of s whose size depends only on the plan, the vocabulary n and the threads nt
// that split one row (sample_row's uses, path by path).
template <class T>
void prepare_scratch(sample_scratch<T>& s, const sample_plan& p, std::size_t n, int nt) {
    const bool list_path = !p.greedy && p.top_k && p.top_k <= kListMaxK;
    const std::size_t nchunks = (n + kInnerChunk - 1) / kInnerChunk;
    const bool split = nt > 1 && nchunks > 1;
    s.idx.resize(kScanChunk);
    if (split) s.part.resize(nchunks);
    if (list_path) {
        const std::size_t b = n / (4 * p.top_k);  // block_max_start's blocks
        if (b >= 16) s.vals.reserve((n + b - 1) / b);
        if (split) {
            s.chunk_cand.resize(nchunks);
            s.tvals.resize(static_cast<std::size_t>(nt));
            s.tidx.resize(detail::scratch_elems(static_cast<std::size_t>(nt), kScanChunk));
        }
    } else if (!p.greedy) {
        if (p.top_k) s.vals.reserve(n);
        s.bs.reserve((n + kBlock - 1) / kBlock);
        if (p.top_p < 1 || p.min_p > 0) {
            s.w.reserve(n);
            s.cand.reserve(n);
        }
    }
}

// One row. nt > 1 (a batch too small to fill the threads): the passes over the row are split into
// kInnerChunk chunks across threads; every chunk boundary is a multiple of the 64-entry block, and
// each pass produces exactly what one thread would (maxima are exact, block sums are per block, the
// top-k and top-p candidate sets are defined by their thresholds), so the token does not change.
template <class T>
row_status sample_row(const reduction_kernels<T>& k, const reduction_kernels<float>& kf, const row_view<T>& x, std::size_t n,
                      const sample_plan& p, T beta, double u, std::int64_t& token, double& logprob, sample_scratch<T>& s,
                      int nt) {
    logprob = 0;
    const bool list_path = !p.greedy && p.top_k && p.top_k <= kListMaxK;
    T start = -kInf<T>;
    const T m = list_path ? block_max_start(k, x, n, p.top_k, start, s, nt) : row_max(k, x, n, nt, s.part);
    if (m != m) return kNaN;
    if (m == kInf<T>) return kPosInf;
    if (m == -kInf<T>) return kAllNegInf;
    if (p.greedy) {
        for (std::size_t c0 = 0; c0 < n; c0 += 1024) {
            if (x.collect_ge(k, c0, std::min<std::size_t>(n, c0 + 1024), m, s.idx.data())) {
                token = std::int64_t(c0 + s.idx[0]);
                return kOk;
            }
        }
        return kNaN;  // unreachable: m is an element of x
    }
    if (!(u >= 0 && u < 1)) return kBadUniform;

    if (list_path) {
        select_top_k(k, x, n, p.top_k, start, s, nt);
        const std::size_t cnt = s.cand.size();
        s.gathered.resize(cnt);
        for (std::size_t j = 0; j < cnt; ++j) s.gathered[j] = x.at(s.cand[j]);
        s.cw.resize(cnt);
        k.row_sample_weights(s.gathered.data(), cnt, m, beta, -kInf<T>, s.cw.data(), nullptr);
        double z = 0;
        for (float v : s.cw) z += v;
        token = finish_list(s, z, p.top_p, p.min_p, u, logprob);
        return kOk;
    }

    T thr = -kInf<T>;
    if (p.top_k) {  // a large k: the k-th largest by nth_element on a copy (O(n))
        s.vals.assign(x.x, x.x + n);
        for (std::size_t j = 0; j < x.count; ++j) s.vals[x.ids[j]] = x.vals[j];
        std::nth_element(s.vals.begin(), s.vals.begin() + std::ptrdiff_t(p.top_k - 1), s.vals.end(), std::greater<T>());
        thr = s.vals[p.top_k - 1];
    }
    const bool cuts = p.top_p < 1 || p.min_p > 0;
    s.bs.resize((n + kBlock - 1) / kBlock);
    if (cuts) s.w.resize(n);
    const std::size_t nchunks = (n + kInnerChunk - 1) / kInnerChunk;
    detail::parallel_ranges(nt, nchunks, [&](std::size_t c0, std::size_t c1) {
        const std::size_t i0 = c0 * kInnerChunk, i1 = std::min(n, c1 * kInnerChunk);
        x.pieces(i0, i1, [&](const T* p, std::size_t off, std::size_t len) {
            k.row_sample_weights(p, len, m, beta, thr, cuts ? s.w.data() + off : nullptr, s.bs.data() + off / kBlock);
        });
    });
    double z = 0;
    for (float v : s.bs) z += v;
    if (!cuts) {
        token = std::int64_t(draw_blocks(k, x, n, m, beta, thr, s.bs, z, u, logprob));
        return kOk;
    }
    // Collect every entry that can survive the cuts (see the file comment), then cut the list.
    double theta = 0;
    if (p.top_p < 1) theta = top_p_collect_bound(s.bs, n, (1 - p.top_p) * z * (1 - 2e-5));
    if (p.min_p > 0) theta = std::max(theta, p.min_p);
    float tf = static_cast<float>(theta);
    if (double(tf) > theta) tf = std::nextafter(tf, 0.0f);  // round down: never lose an entry
    s.cand.resize(n);
    std::size_t cnt = 0;
    for (std::size_t c0 = 0; c0 < n; c0 += kScanChunk) {
        const std::size_t got = kf.row_collect_ge(s.w.data() + c0, std::min(kScanChunk, n - c0), tf, s.cand.data() + cnt);
        for (std::size_t j = cnt; j < cnt + got; ++j) s.cand[j] += static_cast<std::uint32_t>(c0);
        cnt += got;
    }
    s.cand.resize(cnt);
    s.cw.resize(cnt);
    for (std::size_t j = 0; j < cnt; ++j) s.cw[j] = s.w[s.cand[j]];
    token = finish_list(s, z, p.top_p, p.min_p, u, logprob);
    return kOk;
}

// ======================================================================================================
// Cross-entropy
// ======================================================================================================
using detail::split_beta;

// Sum of x[0..n) in double: 4 independent accumulators per 256-entry block, blocks Neumaier-summed.
template <class T>
struct row_summer {
    double s = 0, c = 0;
    void add(const T* x, std::size_t n) {
        for (std::size_t b = 0; b < n; b += 256) {
            const std::size_t e = std::min(n, b + 256);
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            std::size_t i = b;
            for (; i + 4 <= e; i += 4) {
                a0 += double(x[i]);
                a1 += double(x[i + 1]);
                a2 += double(x[i + 2]);
                a3 += double(x[i + 3]);
            }
            for (; i < e; ++i) a0 += double(x[i]);
            const double v = (a0 + a1) + (a2 + a3);
            const double t = s + v;
            c += std::fabs(s) >= std::fabs(v) ? (s - t) + v : (v - t) + s;
            s = t;
        }
    }
    double value() const { return s + c; }
};

// The mean of x[0..n) when row_summer's sum is not finite: -inf if an entry is -inf (the compensation
// turns -inf - (-inf) into NaN, and the mean is -inf), else a float64 row whose sum overflows while its
// mean does not: summed scaled by 2^-64 (exact above 2^-958; n < 2^64 terms cannot overflow then).
template <class T>
double slow_row_mean(const T* x, std::size_t n) {
    double s = 0, c = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (x[i] == -kInf<T>) return -kInf<double>;
        const double v = double(x[i]) * 0x1p-64, t = s + v;
        c += std::fabs(s) >= std::fabs(v) ? (s - t) + v : (v - t) + s;
        s = t;
    }
    return (s + c) / double(n) * 0x1p64;
}

struct ce_row_result {
    row_status st = kOk;
    double loss = 0, d1 = 0, d2 = 0;
};

// The loss of a row whose statistics are m (finite, the row's maximum) and count + rest = sum exp(beta (x - m))
// (row_exp_sum's split): the label's term and, with eps > 0, the smoothing term over the row's mean (summed
// in kChunk pieces). mean receives that mean (0 without smoothing).
template <class T>
double ce_loss(const T* x, std::size_t n, std::size_t label, double beta, double eps, double m, double count,
               double rest, double& mean) {
    const double ls = normexp::log_sum(count, rest);
    const double xy = double(x[label]);
    const double nll = xy == -kInf<double> ? kInf<double> : ls + beta * (m - xy);
    mean = 0;
    if (!(eps > 0)) return nll;
    row_summer<T> sum;
    for (std::size_t i = 0; i < n; i += kChunk) sum.add(x + i, std::min(kChunk, n - i));
    mean = sum.value() / double(n);
    if (!std::isfinite(mean)) mean = slow_row_mean(x, n);
    const double smooth = mean == -kInf<double> ? kInf<double> : ls + beta * (m - mean);
    // eps = 1: the label's term has weight 0 and is left out (0 * inf would be NaN for a -inf label).
    return (eps < 1 ? (1 - eps) * nll : 0.0) + eps * smooth;
}

template <class T>
ce_row_result ce_row(const reduction_kernels<T>& k, const T* x, std::size_t n, std::size_t label, double beta,
                     scale2<T> b2, const detail::exp_scale& ex, double eps, bool derivs, std::vector<T>& buf) {
    ce_row_result res;
    double m = -kInf<double>, rest = 0, count = 0;
    for (std::size_t i = 0; i < n; i += kChunk) {
        const std::size_t len = std::min(kChunk, n - i);
        const T cm = k.row_max(x + i, len);
        if (cm != cm) return res.st = kNaN, res;
        if (cm == kInf<T>) return res.st = kPosInf, res;
        if (double(cm) > m) {
            rest = detail::rescaled(ex, rest + count, m, double(cm));
            count = 0;
            m = cm;
        }
        if (m == -kInf<double>) continue;  // all -inf so far
        const exp_sum e = k.row_exp_sum(x + i, len, static_cast<T>(m), b2);
        rest += e.rest;
        count += e.count;
    }
    if (m == -kInf<double>) return res.st = kAllNegInf, res;
    double mean;
    res.loss = ce_loss(x, n, label, beta, eps, m, count, rest, mean);
    const double xy = double(x[label]);
    if (derivs) {
        // E_p[x] - m and Var_p[x] from S1 = sum e (x - m), S2 = sum e (x - m)^2, e = exp(beta (x - m)).
        double s1 = 0, s2 = 0;
        buf.resize(std::min(kChunk, n));
        for (std::size_t i = 0; i < n; i += kChunk) {
            const std::size_t len = std::min(kChunk, n - i);
            k.row_exp_store(x + i, buf.data(), len, static_cast<T>(m), b2);
            for (std::size_t j = 0; j < len; ++j) {
                if (!(buf[j] > 0)) continue;
                const double d = double(x[i + j]) - m, e = double(buf[j]);
                s1 += e * d;
                s2 += e * d * d;
            }
        }
        const double z = count + rest, e1 = s1 / z;
        res.d1 = e1 - (eps < 1 ? (1 - eps) * (xy - m) : 0.0) - (eps > 0 ? eps * (mean - m) : 0.0);
        res.d2 = std::max(0.0, s2 / z - e1 * e1);
    }
    return res;
}

// One row's parameters, resolved from the options (a per-row array entry or the scalar).
struct row_params {
    double temperature, top_p, min_p, rep, pres, freq;
    std::size_t top_k;
    bool penalized() const { return rep != 1 || pres != 0 || freq != 0; }
};

row_params params_of(const sample_options& o, std::size_t r) {
    row_params q;
    q.temperature = o.temperatures ? o.temperatures[r] : o.temperature;
    q.top_k = o.top_ks ? static_cast<std::size_t>(o.top_ks[r]) : o.top_k;  // checked >= 0 first
    q.top_p = o.top_ps ? o.top_ps[r] : o.top_p;
    q.min_p = o.min_ps ? o.min_ps[r] : o.min_p;
    q.rep = o.repetition_penalties ? o.repetition_penalties[r] : o.repetition_penalty;
    q.pres = o.presence_penalties ? o.presence_penalties[r] : o.presence_penalty;
    q.freq = o.frequency_penalties ? o.frequency_penalties[r] : o.frequency_penalty;
    return q;
}

// One option of every row: the per-row array's entries, or else the scalar, must satisfy ok(v); the
// message (built only for a failure) names the scalar, or the array entry "<array>[r]".
template <class Ok>
void check_option(const double* per_row, double scalar, std::size_t rows, Ok ok, const char* scalar_name,
                  const char* array_name, const char* rule) {
    auto fail = [&](const std::string& name, double v) {
        throw error("normexp.sample: " + name + " must be " + rule + ", got " + detail::format_number(v));
    };
    if (!per_row) {
        if (!ok(scalar)) fail(scalar_name, scalar);
        return;
    }
    for (std::size_t r = 0; r < rows; ++r)
        if (!ok(per_row[r])) fail(std::string(array_name) + "[" + std::to_string(r) + "]", per_row[r]);
}

// Every option of every row, and prev_tokens, before any row is sampled.
void check_sample_options(const sample_options& o, std::size_t rows, std::size_t n) {
    check_option(o.temperatures, o.temperature, rows, [](double v) { return std::isfinite(v) && v >= 0; },
                 "temperature", "temperatures", "a finite number >= 0 (0 is greedy)");
    check_option(o.top_ps, o.top_p, rows, [](double v) { return v > 0 && v <= 1; }, "top_p", "top_ps", "in (0, 1]");
    check_option(o.min_ps, o.min_p, rows, [](double v) { return v >= 0 && v <= 1; }, "min_p", "min_ps", "in [0, 1]");
    check_option(o.repetition_penalties, o.repetition_penalty, rows, [](double v) { return std::isfinite(v) && v > 0; },
                 "repetition_penalty", "repetition_penalties", "a finite number > 0 (1: none)");
    check_option(o.presence_penalties, o.presence_penalty, rows, [](double v) { return std::isfinite(v) && v >= 0; },
                 "presence_penalty", "presence_penalties", "a finite number >= 0");
    check_option(o.frequency_penalties, o.frequency_penalty, rows, [](double v) { return std::isfinite(v) && v >= 0; },
                 "frequency_penalty", "frequency_penalties", "a finite number >= 0");
    if (o.top_ks)
        for (std::size_t r = 0; r < rows; ++r)
            if (o.top_ks[r] < 0)
                throw error("normexp.sample: top_ks[" + std::to_string(r) + "] must be >= 0 (0: no cut), got " +
                            std::to_string(o.top_ks[r]));
    if (o.prev_len == 0 || rows == 0) return;
    check(o.prev_tokens != nullptr, "normexp.sample: prev_tokens is null but prev_len > 0");
    for (std::size_t i = 0; i < rows * o.prev_len; ++i) {
        const std::int64_t t = o.prev_tokens[i];
        if (t == -1 || (t >= 0 && std::uint64_t(t) < n)) continue;
        throw error("normexp.sample: prev_tokens row " + std::to_string(i / o.prev_len) + " holds token " +
                    std::to_string(t) + ", out of range [0, " + std::to_string(n) + ") (-1 is padding)");
    }
}

// The row as the sampler sees it after logit_bias and penalties (x is never written). The penalties
// change only the seen tokens: the row's ids are sorted, and each distinct token t seen c times gets,
// in float64 rounded to T,
//   v = x_t > 0 ? x_t / r : x_t * r;   x_t = v - (p + f c).
// With a bias the row is built in s.row (x + bias added in T over kInnerChunk chunks split over nt
// threads: an elementwise add, the same bits however it is split) and penalized there. With penalties
// alone the changed tokens are the view's patches (s.patch_ids, s.patch_vals) and nothing is copied,
// unless they touch more than 1/16 of the 64-entry blocks: then each pass would copy a large part of the
// row piece by piece (measured slower than one copy), and the row is copied into s.row and penalized
// there. Both give the same row, so the same bits: the choice is only about speed.
template <class T>
row_view<T> changed_row(const T* x, const T* bias, std::size_t n, const std::int64_t* prev, std::size_t prev_len,
                        const row_params& q, sample_scratch<T>& s, int nt) {
    std::size_t cnt = 0;
    if (prev && q.penalized()) {
        for (std::size_t j = 0; j < prev_len; ++j)
            if (prev[j] >= 0) s.seen[cnt++] = prev[j];
        std::sort(s.seen.begin(), s.seen.begin() + std::ptrdiff_t(cnt));
    }
    // Calls f(t, new value of x_t) for each distinct seen token t, by increasing t.
    auto each_penalized = [&](const T* row, auto&& f) {
        for (std::size_t j = 0; j < cnt;) {
            const std::int64_t t = s.seen[j];
            std::size_t e = j + 1;
            while (e < cnt && s.seen[e] == t) ++e;
            double v = double(row[t]);
            if (q.rep != 1) v = v > 0 ? v / q.rep : v * q.rep;
            f(static_cast<std::size_t>(t), static_cast<T>(v - (q.pres + q.freq * double(e - j))));
            j = e;
        }
    };
    std::size_t blocks = 0;  // distinct 64-entry blocks holding a seen token
    for (std::size_t j = 0; j < cnt; ++j) blocks += j == 0 || s.seen[j] / std::int64_t(kBlock) != s.seen[j - 1] / std::int64_t(kBlock);
    if (bias || blocks * 16 > (n + kBlock - 1) / kBlock) {
        s.row.resize(n);  // grows at most once per thread; inside the guarded regions (see sample_scratch)
        T* row = s.row.data();
        const std::size_t nchunks = (n + kInnerChunk - 1) / kInnerChunk;
        detail::parallel_ranges(nt, nchunks, [&](std::size_t c0, std::size_t c1) {
            const std::size_t i0 = c0 * kInnerChunk, i1 = std::min(n, c1 * kInnerChunk);
            if (bias)
                for (std::size_t i = i0; i < i1; ++i) row[i] = x[i] + bias[i];
            else
                std::memcpy(row + i0, x + i0, (i1 - i0) * sizeof(T));
        });
        each_penalized(row, [&](std::size_t t, T v) { row[t] = v; });
        return row_view<T>{row, n};
    }
    std::size_t np = 0;
    each_penalized(x, [&](std::size_t t, T v) {
        s.patch_ids[np] = static_cast<std::uint32_t>(t);
        s.patch_vals[np++] = v;
    });
    return row_view<T>{x, n, s.patch_ids.data(), s.patch_vals.data(), np};
}

// A float32 row whose finite scores span more than float32's range: x - m overflows to -inf for its lowest
// entries, whose weight row_sample_weights then makes 0. Under 1/temperature from kWideSpanBeta up that is
// right (beta (x - m) < -2^8: the weight flushes to 0 anyway); below it (temperatures above about 1.3e36) such
// an entry can have a weight of any size, so the row is sampled as its float64 values would be, where x - m is
// exact enough and beta (x - m) rounds once to float32 (sample_args). True for such a row when it holds
// finite entries m and mn with m - mn = inf in float32 (NaN and infinite entries aside: sample_row reports or
// zeroes those as before). Never for float64 rows.
constexpr float kWideSpanBeta = 0x1p-120f;
template <class T>
bool spans_beyond_float(const row_view<T>& x) {
    if constexpr (!std::is_same_v<T, float>) {
        (void)x;
        return false;
    } else {
        float m = -kInf<float>, mn = kInf<float>;
        x.pieces(0, x.n, [&](const float* p, std::size_t, std::size_t len) {
            for (std::size_t i = 0; i < len; ++i)
                if (std::fabs(p[i]) <= std::numeric_limits<float>::max()) m = std::max(m, p[i]), mn = std::min(mn, p[i]);
        });
        return m - mn == kInf<float>;
    }
}
template <class T>
row_status sample_wide_row(const kernel_table& kt, const row_view<T>& x, std::size_t n, const sample_plan& p,
                           double temperature, double u, std::int64_t& token, double& logprob, int nt) {
    std::vector<double> row(n);
    x.pieces(0, n, [&](const T* q, std::size_t off, std::size_t len) { std::copy(q, q + len, row.begin() + std::ptrdiff_t(off)); });
    sample_scratch<double> s;
    prepare_scratch(s, p, n, nt);
    return sample_row(kernels_of<double>(kt), kt.f32, row_view<double>{row.data(), n}, n, p, 1.0 / temperature, u, token,
                      logprob, s, nt);
}

}  // namespace

template <class T>
void sample(const T* x, std::size_t rows, std::size_t n, std::ptrdiff_t row_stride, const double* uniforms,
            std::int64_t* tokens, const sample_options& o, const char* isa, const T* bias, std::ptrdiff_t bias_stride,
            double* logprobs) {
    check_sample_options(o, rows, n);
    if (rows == 0) return;
    check(n >= 1, "normexp.sample: the vocabulary (last axis) is empty");
    check(n < (std::size_t(1) << 32), "normexp.sample: vocabularies of 2^32 entries or more are not supported");
    check(x != nullptr && tokens != nullptr, "normexp.sample: null data pointer");
    const bool per_row = o.temperatures || o.top_ks || o.top_ps || o.min_ps || o.repetition_penalties ||
                         o.presence_penalties || o.frequency_penalties;
    const bool prev = o.prev_tokens != nullptr && o.prev_len > 0;

    // The rows' plans. With scalar options every row has the same one, as before the per-row options.
    const double bmax = double(std::numeric_limits<T>::max());
    std::vector<sample_plan> plans(per_row ? rows : 1);
    std::vector<T> betas(plans.size());
    bool any_sampled = false, any_changed = bias != nullptr;
    for (std::size_t r = 0; r < plans.size(); ++r) {
        const row_params q = params_of(o, r);
        const bool greedy = q.temperature == 0;
        plans[r] = sample_plan{greedy, q.top_k >= n ? 0 : q.top_k, q.top_p, q.min_p};
        betas[r] = static_cast<T>(greedy ? 1.0 : std::min(1.0 / q.temperature, bmax));
        any_sampled |= !greedy;
        any_changed |= prev && q.penalized();
    }
    check(!any_sampled || uniforms != nullptr, "normexp.sample: uniforms are required when temperature > 0");

    const kernel_table& kt = table_for(isa);
    const reduction_kernels<T>& k = kernels_of<T>(kt);
    std::vector<std::uint8_t> status(rows, kOk);
    constexpr std::uint8_t kChanged = 0x80;  // status flag: the row was changed by bias or penalties
    auto one_row = [&](std::size_t r, sample_scratch<T>& s, int nt) {
        const std::size_t pr = per_row ? r : 0;
        const T* xr = x + std::ptrdiff_t(r) * row_stride;
        row_view<T> view{xr, n};
        std::uint8_t changed = 0;
        const row_params q = per_row ? params_of(o, r) : params_of(o, 0);
        if (bias || (prev && q.penalized())) {
            view = changed_row(xr, bias ? bias + std::ptrdiff_t(r) * bias_stride : nullptr, n,
                               prev ? o.prev_tokens + r * o.prev_len : nullptr, o.prev_len, q, s, nt);
            changed = kChanged;
        }
        double lp = 0;
        const double u = uniforms ? uniforms[r] : 0.0;
        const bool wide = !plans[pr].greedy && betas[pr] < T(kWideSpanBeta) && spans_beyond_float(view);
        const row_status st = wide ? sample_wide_row(kt, view, n, plans[pr], q.temperature, u, tokens[r], lp, nt)
                                   : sample_row(k, kt.f32, view, n, plans[pr], betas[pr], u, tokens[r], lp, s, nt);
        status[r] = st == kOk || st == kBadUniform ? std::uint8_t(st) : std::uint8_t(st | changed);
        if (logprobs) logprobs[r] = lp;
    };
    // Per-thread scratch, allocated before the first row (see sample_scratch) for every plan in use.
    auto prepare = [&](sample_scratch<T>& s, int nt) {
        for (std::size_t r = 0; r < plans.size(); ++r) {
            const sample_plan& p = plans[r];
            if (r > 0 && p.greedy == plans[r - 1].greedy && p.top_k == plans[r - 1].top_k &&
                p.top_p == plans[r - 1].top_p && p.min_p == plans[r - 1].min_p)
                continue;  // the same buffers as the previous row's plan
            prepare_scratch(s, p, n, nt);
        }
        if (bias) s.row.resize(n);  // penalties alone: only if a row needs it (changed_row)
        if (prev && any_changed) {
            s.seen.resize(o.prev_len);
            if (!bias) {
                s.patch_ids.resize(o.prev_len);
                s.patch_vals.resize(o.prev_len);
            }
        }
    };
    // Threads over rows; a batch smaller than the thread count runs its rows one after another, each
    // split over the threads (batch 1 is the common decoding case).
    const int nt_rows = threads_for(rows * n, rows);
    const int nt_inner = threads_for(n, (n + kInnerChunk - 1) / kInnerChunk);
    if (rows < std::size_t(nt_inner)) {
        sample_scratch<T> s;
        prepare(s, nt_inner);
        for (std::size_t r = 0; r < rows; ++r) one_row(r, s, nt_inner);
    } else {
        std::vector<sample_scratch<T>> scratch(static_cast<std::size_t>(std::max(nt_rows, 1)));
        for (auto& s : scratch) prepare(s, 1);
        detail::parallel_slices(nt_rows, rows, [&](std::size_t slot, std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r) one_row(r, scratch[slot], 1);
        });
    }
    for (std::size_t r = 0; r < rows; ++r)
        if (status[r] != kOk)
            throw error(row_message("normexp.sample", row_status(status[r] & ~kChanged), r, status[r] & kChanged));
}

template <class T>
void cross_entropy(const T* x, const strides_t& xs, const shape_t& shape, int axis, const std::int64_t* labels,
                   double* loss, const cross_entropy_options& o, double* dloss, double* d2loss, const char* isa) {
    const std::size_t nd = shape.size();
    check(nd >= 1, "normexp.cross_entropy: logits must have at least one dimension");
    check(xs.size() == nd, "normexp.cross_entropy: strides must have one entry per dimension");
    const int ind = static_cast<int>(nd);
    check(axis >= -ind && axis < ind, [&] {
        return "normexp.cross_entropy: axis " + std::to_string(axis) + " is out of bounds for an array of dimension " +
               std::to_string(nd);
    });
    if (axis < 0) axis += ind;
    check(std::isfinite(o.temperature) && o.temperature > 0, [&] {
        return "normexp.cross_entropy: temperature must be a finite number > 0, got " + detail::format_number(o.temperature);
    });
    // The scores are scaled by 1/temperature in T (split_beta): it must fit there (temperature.hpp).
    if (const std::string e = detail::temperature_range_error<T>(o.temperature, sizeof(T) == 4 ? "float32" : "float64", "logits");
        !e.empty())
        throw error("normexp.cross_entropy: " + e);
    check(o.label_smoothing >= 0 && o.label_smoothing <= 1, [&] {
        return "normexp.cross_entropy: label_smoothing must be in [0, 1], got " + detail::format_number(o.label_smoothing);
    });
    const std::size_t n = shape[axis];
    std::vector<std::size_t> oshape;
    std::vector<std::ptrdiff_t> ostr;
    std::size_t rows = 1;
    for (std::size_t d = 0; d < nd; ++d) {
        if (int(d) == axis) continue;
        rows *= shape[d];
        if (shape[d] != 1) {
            oshape.push_back(shape[d]);
            ostr.push_back(xs[d]);
        }
    }
    if (rows == 0) return;
    check(n >= 1, "normexp.cross_entropy: the class axis is empty");
    check(x != nullptr && labels != nullptr && loss != nullptr, "normexp.cross_entropy: null data pointer");
    for (std::size_t r = 0; r < rows; ++r) {  // labels first: a clear message before any work
        const std::int64_t y = labels[r];
        if (o.use_ignore_index && y == o.ignore_index) continue;
        check(y >= 0 && std::uint64_t(y) < n, [&] {
            return "normexp.cross_entropy: label " + std::to_string(y) + " at row " + std::to_string(r) +
                   " is out of range [0, " + std::to_string(n) + ")";
        });
    }

    const reduction_kernels<T>& k = kernels_of<T>(table_for(isa));
    const double beta = 1.0 / o.temperature;
    const scale2<T> b2 = split_beta<T>(o.temperature);
    const scale2<double> bd = split_beta<double>(o.temperature);
    const detail::exp_scale ex{bd.hi, bd.lo};
    const std::ptrdiff_t sx = xs[axis];
    const bool derivs = dloss != nullptr || d2loss != nullptr;
    std::vector<std::uint8_t> status(rows, kOk);
    // Per-thread buffers, allocated before the first row: a gathered row (strided class axis) and
    // ce_row's chunk for the derivatives.
    const int nt = threads_for(rows * n, rows);
    const std::size_t slots = static_cast<std::size_t>(std::max(nt, 1));
    std::vector<std::vector<T>> gathers(slots), bufs(slots);
    for (std::size_t t = 0; t < slots; ++t) {
        if (sx != 1 && n > 1) gathers[t].resize(n);
        if (derivs) bufs[t].resize(std::min(kChunk, n));
    }
    // Rows of one chunk, one stride apart, without derivatives: their statistics from the several-rows kernel
    // (rows_exp_sum: row_max and row_exp_sum of each row, pipelined; ce_row's single chunk), kRowBatch at a
    // time; a row it skips (a maximum that is not finite) goes through ce_row, which reports it. 4096 x 128
    // float32 rows, one thread: 399 -> 296 us (torch.nn.functional.cross_entropy: 311 us).
    const bool batched = !derivs && (sx == 1 || n == 1) && n <= kChunk && oshape.size() <= 1;
    const std::ptrdiff_t row_stride = oshape.empty() ? 0 : ostr[0];
    detail::parallel_slices(nt, rows, [&](std::size_t slot, std::size_t r0, std::size_t r1) {
        std::vector<T>& gather = gathers[slot];
        std::vector<T>& buf = bufs[slot];
        if (batched) {
            constexpr T no_limit = std::numeric_limits<T>::max();
            T m[kRowBatch];
            exp_sum es[kRowBatch];
            for (std::size_t b = r0; b < r1; b += kRowBatch) {
                const std::size_t cnt = std::min(kRowBatch, r1 - b);
                const T* xb = x + std::ptrdiff_t(b) * row_stride;
                k.rows_exp_sum(xb, row_stride, cnt, n, b2, no_limit, m, es);
                for (std::size_t i = 0; i < cnt; ++i) {
                    const std::size_t r = b + i;
                    const std::int64_t y = labels[r];
                    ce_row_result res;
                    const T* xr = xb + std::ptrdiff_t(i) * row_stride;
                    const bool used = !(o.use_ignore_index && y == o.ignore_index);
                    double mean;
                    if (used && rows_skip(m[i], no_limit))
                        res = ce_row(k, xr, n, std::size_t(y), beta, b2, ex, o.label_smoothing, false, buf);
                    else if (used)
                        res.loss = ce_loss(xr, n, std::size_t(y), beta, o.label_smoothing, double(m[i]), es[i].count,
                                           es[i].rest, mean);
                    status[r] = res.st;
                    loss[r] = res.loss;
                }
            }
            return;
        }
        for (std::size_t r = r0; r < r1; ++r) {
            const std::int64_t y = labels[r];
            ce_row_result res;
            if (!(o.use_ignore_index && y == o.ignore_index)) {
                std::ptrdiff_t off = 0;
                std::size_t idx = r;
                for (std::size_t d = oshape.size(); d-- > 0;) {
                    off += std::ptrdiff_t(idx % oshape[d]) * ostr[d];
                    idx /= oshape[d];
                }
                const T* xr = x + off;
                if (sx != 1 && n > 1) {
                    for (std::size_t i = 0; i < n; ++i) gather[i] = xr[std::ptrdiff_t(i) * sx];
                    xr = gather.data();
                }
                res = ce_row(k, xr, n, std::size_t(y), beta, b2, ex, o.label_smoothing, derivs, buf);
            }
            status[r] = res.st;
            loss[r] = res.loss;
            if (dloss) dloss[r] = res.d1;
            if (d2loss) d2loss[r] = res.d2;
        }
    });
    for (std::size_t r = 0; r < rows; ++r)
        if (status[r] != kOk) throw error(row_message("normexp.cross_entropy", row_status(status[r]), r));
}

template void sample<float>(const float*, std::size_t, std::size_t, std::ptrdiff_t, const double*, std::int64_t*,
                            const sample_options&, const char*, const float*, std::ptrdiff_t, double*);
template void sample<double>(const double*, std::size_t, std::size_t, std::ptrdiff_t, const double*, std::int64_t*,
                             const sample_options&, const char*, const double*, std::ptrdiff_t, double*);
template void cross_entropy<float>(const float*, const strides_t&, const shape_t&, int, const std::int64_t*, double*,
                                   const cross_entropy_options&, double*, double*, const char*);
template void cross_entropy<double>(const double*, const strides_t&, const shape_t&, int, const std::int64_t*, double*,
                                    const cross_entropy_options&, double*, double*, const char*);

}  // namespace normexp
