// Driver for softmax, log_softmax and logsumexp along one axis of a strided n-d array.
//
// The driver owns everything the kernels do not: validation, the choice of traversal, blocking,
// threads and the rows or columns whose maximum is not finite.
//
// Traversals
//  * rows:    the axis has unit stride. Each row is handled by the row kernels.
//             softmax of a row that fits in cache (<= kInCacheBytes): three passes over the row
//             (max; y = exp(x - m) and its sum; y *= 1/sum), one exp per element.
//             longer rows and log_softmax/logsumexp: two passes over memory. Pass 1 computes the row
//             statistics (max, sum of exp) online in L1-sized chunks: each chunk's max is read during the
//             previous chunk's exp pass (row_exp_sum_max), its sum from L1. Pass 2 writes the output,
//             around the caches for rows of kStreamBytes or more (softmax and log_softmax alike).
//  * columns: the axis is strided but another dimension has unit stride (e.g. axis 0 of a C-ordered
//             matrix). The column kernels vectorize across that contiguous dimension, so no transposing
//             copy is made. Blocks are up to kColBlock columns wide, so each row of a block is a long
//             contiguous run (narrow runs one page apart defeat the prefetchers). Statistics are computed
//             online over chunks of rows, per row super-chunk (threads split the rows of a single block);
//             float32 softmax stores exp(x - running max) in y and rescales it (one exp per element), except
//             for outputs of kStreamBytes or more: those (softmax and log_softmax) take the online path with
//             non-temporal stores, x read twice and y written once (as many bytes as the last axis moves).
//  * gather:  neither: each row is gathered into a per-thread buffer (and scattered back).
//
// Determinism: rows longer than kSuperChunk are split into fixed super-chunks whose statistics are
// merged in order, whether or not threads run them in parallel, so results are bit-identical for every
// thread count.
//
// Accuracy: accuracy::fast runs the same traversals with the kernel table's fast entries (f32_fast /
// f64_fast, kernel_table.hpp): the shifted argument rounded once and nothing counted, so the statistics
// are (m, count = 0, rest = the whole sum) and log_sum is log(rest). The merge rule, the rescale factors
// and the special values are the same in both modes.
//
// Special values (the SciPy conventions): a row containing NaN gives NaN everywhere; a row whose max is
// +inf gives logsumexp +inf, softmax NaN, log_softmax NaN at the +inf entries and -inf elsewhere; a row
// of only -inf gives logsumexp -inf and NaN for softmax and log_softmax; an empty row gives -inf.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "format.hpp"
#include "half_convert.hpp"
#include "normexp/normexp.hpp"
#include "online_stats.hpp"
#include "temperature.hpp"
#include "threading.hpp"

namespace normexp {
namespace {

using detail::threads_for;

constexpr std::size_t kInCacheBytes = std::size_t(256) << 10;  // half of a 512 KiB L2
constexpr std::size_t kChunkBytes = std::size_t(16) << 10;     // L1-resident chunk for online statistics
constexpr std::size_t kColChunkBytes = std::size_t(256) << 10; // L2-resident chunk of a column block
constexpr std::size_t kColSuperMinBytes = std::size_t(1) << 20; // row super-chunks of a column block:
constexpr std::size_t kColSuperMaxBytes = std::size_t(4) << 20; //   between these sizes (col_super_rows)
constexpr std::size_t kSuperChunk = std::size_t(1) << 16;      // elements; unit of row splitting
constexpr std::size_t kColBlock = 1024;                        // columns per work item (column traversal)
constexpr std::size_t kStreamBytes = std::size_t(8) << 20;     // rows this long write around the caches

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();
template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();

// Storage S of the scores and outputs: float, double, or the 16-bit float16 / bfloat16 (normexp/half.hpp),
// whose values the kernels widen to float32 and whose outputs they round once (storage_kernels,
// kernel_table.hpp). value_t<S> is the type of the statistics the driver keeps (maxima, factors): S itself or
// float. No 16-bit array is ever widened into a float32 copy: the driver's buffers (gathered pieces of strided
// rows) hold S.
template <class S>
struct storage_of {
    using value = S;
    using kernels = reduction_kernels<S>;
};
template <>
struct storage_of<float16> {
    using value = float;
    using kernels = storage_kernels<float16>;
};
template <>
struct storage_of<bfloat16> {
    using value = float;
    using kernels = storage_kernels<bfloat16>;
};
template <class S>
using value_t = typename storage_of<S>::value;
template <class S>
using kernels_t = typename storage_of<S>::kernels;
template <class S>
constexpr bool kHalf = std::is_same_v<S, float16> || std::is_same_v<S, bfloat16>;

// An element of S as a value (exact), and a double rounded once into S.
template <class S>
value_t<S> widen(S v) {
    if constexpr (kHalf<S>) return detail::to_f32(v); else return v;
}
template <class S>
S to_storage(double v) {
    if constexpr (std::is_same_v<S, float16>) return detail::to_f16(v);
    else if constexpr (std::is_same_v<S, bfloat16>) return detail::to_bf16(v);
    else return static_cast<S>(v);
}
template <class S>
const char* dtype_name() {
    if constexpr (std::is_same_v<S, float16>) return "float16";
    else if constexpr (std::is_same_v<S, bfloat16>) return "bfloat16";
    else return sizeof(S) == 4 ? "float32" : "float64";
}

// ------------------------------------------------------------------------------------------------------
// Row statistics: max m, and sum of exp(beta (x - m)) split as count (entries equal to m) + rest.
struct stats {
    double m = -std::numeric_limits<double>::infinity();
    double rest = 0, count = 0;
    bool nan = false;
};

inline bool finite(double v) { return std::isfinite(v); }

using detail::exp_scale;
using detail::rescaled;

// Merge b into a (the online-softmax rule). ex: exp(beta (. - .)).
inline void merge(stats& a, const stats& b, const exp_scale& ex) {
    if (a.nan || b.nan) {
        a.nan = true;
        return;
    }
    if (b.m == -kInf<double> && b.count == 0) return;  // b empty or all -inf
    if (a.m == -kInf<double> && a.count == 0) {
        a = b;
        return;
    }
    if (!finite(a.m) || !finite(b.m)) {  // +inf (or all -inf rows): sums are meaningless, keep the max
        a.m = std::max(a.m, b.m);
        return;
    }
    if (b.m > a.m) {
        a.rest = ex.times(a.rest + a.count, a.m, b.m) + b.rest;
        a.count = b.count;
        a.m = b.m;
    } else if (b.m < a.m) {
        a.rest += ex.times(b.rest + b.count, b.m, a.m);
    } else {
        a.rest += b.rest;
        a.count += b.count;
    }
}

// Parts 0..n-1 merged in their order (so the result does not depend on how threads computed them).
template <class Part>
stats merge_in_order(std::size_t n, const exp_scale& ex, Part part) {
    stats s = part(0);
    for (std::size_t c = 1; c < n; ++c) merge(s, part(c), ex);
    return s;
}

// log(count + rest) of a row's statistics for log_softmax's results in T, and logsumexp's m + log(count +
// rest) (kernels/kernel_table.hpp: log_sum_out, lse_out; the 16-bit types compute in float32).
template <class T>
inline double log_sum(const stats& s) { return log_sum_out<T>(s.count, s.rest); }
template <class T>
inline double lse_of(const stats& s) { return lse_out<T>(s.m, s.count, s.rest); }

using detail::split_beta;

// ------------------------------------------------------------------------------------------------------
template <class S>
struct plan {
    using T = value_t<S>;
    const kernels_t<S>& k;     // the mode's table (accuracy::high or fast; 16-bit S: the one table)
    const kernels_t<S>& spec;  // the scalar set, accuracy::high in both modes (see kernels_for_max)
    bool fast;                 // accuracy::fast
    reduction op;
    scale2<T> b2;  // 1/temperature for the kernels
    exp_scale ex;  // exp(beta (a - b)) for the online rule
    // logsumexp_parts only: logsumexp writes the max m to y and the sum of exp(beta (x - m)) as the pair
    // (count, rest) to parts[2 k], parts[2 k + 1], k = y - y0 (parts has twice y's element strides).
    double* parts = nullptr;
    const S* y0 = nullptr;
    // normalize_with only: softmax / log_softmax take each row's statistics from here instead of computing
    // them (m and the (count, rest) pairs, at the offset outer_dims gives as oz; sums at 2 oz).
    const S* given_m = nullptr;
    const double* given_sums = nullptr;
};

// The kernels for scores whose maximum is m (a row's, or the largest of a column block's). With a
// temperature, x - m overflows T once m > 2^102 (float32; 2^969 float64), since x >= -max: beta (x - m)
// can still be moderate. The scalar specification forms it exactly there (float32 in double, float64
// from halves); the SIMD sets do not, so such rows (scores near the top of T's range) take the scalar
// kernels. Without a temperature, an overflowing x - m is -inf, which is right. In accuracy::fast too (the
// exact argument is within the fast bound; the fast argument would be -inf there).
template <class T>
constexpr double kHugeMax = sizeof(T) == 4 ? 0x1p102 : 0x1p969;
template <class S>
bool unit_temperature(const plan<S>& p) {
    return p.b2.hi == 1 && p.b2.lo == 0;
}
// The largest maximum the several-rows kernels take (their m_limit): above it a row needs the scalar ones.
template <class S>
value_t<S> rows_limit(const plan<S>& p) {
    using T = value_t<S>;
    return unit_temperature(p) ? std::numeric_limits<T>::max() : static_cast<T>(kHugeMax<T>);
}
template <class S>
const kernels_t<S>& kernels_for_max(const plan<S>& p, double m) {
    return m > kHugeMax<value_t<S>> && !unit_temperature(p) ? p.spec : p.k;
}
template <class S>
const kernels_t<S>& kernels_for_max(const plan<S>& p, const value_t<S>* m, std::size_t w) {
    if (unit_temperature(p)) return p.k;  // no maximum needs the scalar set
    double mx = -kInf<double>;
    for (std::size_t j = 0; j < w; ++j) mx = m[j] > mx ? double(m[j]) : mx;  // NaN ignored
    return kernels_for_max(p, mx);
}

// Statistics as logsumexp_parts writes them: m, and sums[0], sums[1] = count, rest.
inline stats stats_from(double m, const double* sums) {
    stats s;
    s.m = m;
    s.nan = m != m;
    s.count = sums[0];
    s.rest = sums[1];
    return s;
}

// The statistics given for the row at offset oz (normalize_with).
template <class S>
stats given_stats(const plan<S>& p, std::ptrdiff_t oz) {
    return stats_from(widen(p.given_m[oz]), p.given_sums + 2 * oz);
}

// Statistics of one contiguous row segment, online over L1-sized chunks: each chunk's maximum comes from the
// previous chunk's exp pass (row_exp_sum_max, the same bits as row_max), so the row streams from memory while
// the exps run. 16-bit softmax sums without the count (row_exp_total_max: softmax needs only count + rest, and
// its rows here are the long ones, longer than a super-chunk, so every path of such a row, contiguous, strided
// or threaded, takes this same sum); the log family needs the count (log_sum), and float32 / float64 keep the
// mode's row_exp_sum.
template <class S>
stats segment_stats(const plan<S>& p, const S* x, std::size_t n) {
    using T = value_t<S>;
    constexpr std::size_t C = kChunkBytes / sizeof(S);
    stats s;
    T cm = n > 0 ? p.k.row_max(x, std::min(C, n)) : T(0);
    // The chunks' rests added in kSumLift's scale (row_exp_sum_max's) and scaled back once at the end: a float64
    // rest below the smallest normal would round at every chunk.
    double lifted = 0;
    for (std::size_t i = 0; i < n; i += C) {
        const std::size_t len = std::min(C, n - i);
        if (cm != cm) {
            s.nan = true;
            return s;
        }
        if (cm > s.m) {
            lifted = rescaled(p.ex, lifted + s.count * kSumLift, s.m, double(cm));
            s.count = 0;
            s.m = cm;
        }
        const std::size_t next = i + len < n ? std::min(C, n - i - len) : 0;
        if (!finite(s.m)) {  // +inf, or all -inf so far: keep scanning for NaN
            if (next) cm = p.k.row_max(x + i + len, next);
            continue;
        }
        const kernels_t<S>& k = kernels_for_max(p, s.m);
        auto sum_max = k.row_exp_sum_max;
        if constexpr (kHalf<S>) {
            if (p.op == reduction::softmax) sum_max = k.row_exp_total_max;
        }
        const exp_sum e = sum_max(x + i, len, static_cast<T>(s.m), p.b2, x + i + len, next, &cm);
        lifted += e.rest;
        s.count += e.count;
    }
    s.rest = lifted / kSumLift;
    return s;
}

// Super-chunks of a row of n elements.
inline std::size_t super_chunks(std::size_t n) { return (n + kSuperChunk - 1) / kSuperChunk; }

// softmax rows that take the in-cache path of do_row (and rows_softmax): at most kInCacheBytes and one
// super-chunk (the float32 limit of both; 16-bit rows fit twice as many elements in the bytes, but a longer
// row must be cut at the super-chunks, as do_strided_row cuts it, to give the same bits either way).
template <class S>
bool in_cache_row(std::size_t n) {
    return n * sizeof(S) <= kInCacheBytes && n <= kSuperChunk;
}

// float32 softmax rows longer than a super-chunk but at most kChunkedRowBytes (unit temperature) that do_row
// still gives whole to the several-rows kernel, which takes them in chunks (kernel_table.hpp: rows_softmax):
// exp once per entry and the row read twice, where the super-chunk path takes exp twice (statistics, then
// outputs) to read x twice and write y once, which pays only once the row is far larger than the caches. One
// thread, Zen 4, AVX-512, from Python: 128000 entries 71 -> 46 us by default, 43 -> 33 us fast (two threads
// took as long as one on the super-chunk path). The same bits for every thread count (one thread takes the row);
// a strided row is gathered whole (do_strided_row).
constexpr std::size_t kChunkedRowBytes = std::size_t(1) << 20;
template <class S>
bool chunked_long_row(const plan<S>& p, std::size_t n) {
    return std::is_same_v<S, float> && p.op == reduction::softmax && unit_temperature(p) && n > kSuperChunk &&
           n * sizeof(S) <= kChunkedRowBytes;
}

// Statistics of a contiguous row: fixed super-chunks merged in order (threads over super-chunks).
// part: scratch for super_chunks(n) statistics when there are several.
template <class S>
stats row_stats(const plan<S>& p, const S* x, std::size_t n, int nt, stats* part) {
    const std::size_t nchunks = super_chunks(n);
    if (nchunks <= 1) return segment_stats(p, x, n);
    detail::parallel_ranges(nt, nchunks, [&](std::size_t b, std::size_t e) {
        for (std::size_t c = b; c < e; ++c) {
            const std::size_t i = c * kSuperChunk;
            part[c] = segment_stats(p, x + i, std::min(kSuperChunk, n - i));
        }
    });
    return merge_in_order(nchunks, p.ex, [&](std::size_t c) { return part[c]; });
}

// The output at an entry of a row whose statistics are not finite (NaN, +inf max, all -inf): SciPy's
// values, NaN everywhere but log_softmax's -inf at the entries below a +inf maximum.
template <class S>
S special_value(reduction op, const stats& s, bool entry_is_pinf) {
    const bool below_pinf = op == reduction::log_softmax && !s.nan && s.m == kInf<double> && !entry_is_pinf;
    return to_storage<S>(below_pinf ? -kInf<double> : kNaN<double>);
}
template <class S>
void special_row(reduction op, const stats& s, const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy,
                 std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        y[std::ptrdiff_t(i) * sy] = special_value<S>(op, s, widen(x[std::ptrdiff_t(i) * sx]) == kInf<double>);
}
template <class T>
T special_lse(const stats& s) {
    return s.nan ? kNaN<T> : static_cast<T>(s.m);  // +inf or -inf
}
inline bool is_special(const stats& s) { return s.nan || !finite(s.m); }

// The logsumexp output of one row: m + log_sum, or with parts the statistics (m, count, rest) themselves,
// so that partial results over disjoint pieces of a row merge exactly (nothing rounded to T but m, which
// is an entry of x). Rows whose statistics are not finite get m = NaN / +inf / -inf, count = rest = 0.
template <class S>
void write_lse(const plan<S>& p, S* y, const stats& s) {
    if (p.parts) {
        const bool sp = is_special(s);
        *y = to_storage<S>(s.nan ? kNaN<double> : s.m);
        p.parts[2 * (y - p.y0)] = sp ? 0.0 : s.count;
        p.parts[2 * (y - p.y0) + 1] = sp ? 0.0 : s.rest;
        return;
    }
    *y = to_storage<S>(is_special(s) ? special_lse<double>(s) : lse_of<value_t<S>>(s));  // rounded once
}

// The outputs of len entries of a row (x, y) from the row's statistics: c is 1/sum (softmax) or log(sum)
// (log_softmax). stream: the output bypasses the caches (same values as the cached store).
template <class S>
void row_piece(const plan<S>& p, const stats& s, double c, const S* x, S* y, std::size_t len, bool stream) {
    using T = value_t<S>;
    const T m = static_cast<T>(s.m);
    const kernels_t<S>& k = kernels_for_max(p, m);
    if (p.op == reduction::softmax)
        (stream ? k.row_exp_scale_stream : k.row_exp_scale)(x, y, len, m, p.b2, static_cast<T>(c));
    else
        (stream ? k.row_log_softmax_stream : k.row_log_softmax)(x, y, len, m, p.b2, c);
}

// One contiguous row (x and y unit stride; for logsumexp y is the single output).
// given: the row's statistics when they come from outside (normalize_with), else nullptr.
// part: row_stats' scratch.
template <class S>
void do_row(const plan<S>& p, const S* x, S* y, std::size_t n, int nt, stats* part, const stats* given) {
    using T = value_t<S>;
    if (!given && chunked_long_row(p, n)) {
        // The several-rows kernel on this one row, which takes it in chunks with exp once per entry
        // (kernel_table.hpp: rows_softmax). A row it skips (a NaN, +inf or only -inf; written only where that
        // is still seen) goes on to the super-chunk path below.
        T m;
        const T m_limit = rows_limit(p);
        p.k.rows_softmax(x, 1, y, 1, 1, n, p.b2, m_limit, &m);
        if (!rows_skip(m, m_limit)) return;
    }
    if (!given && p.op == reduction::softmax && in_cache_row<S>(n)) {
        const T m = p.k.row_max(x, n);
        stats s;
        s.m = m;
        s.nan = m != m;
        if (is_special(s)) return special_row(p.op, s, x, 1, y, 1, n);
        if constexpr (kHalf<S>) {  // a stored 16-bit exp read back would round twice: exp twice instead
            const exp_sum e = kernels_for_max(p, m).row_exp_sum(x, n, m, p.b2);
            kernels_for_max(p, m).row_exp_scale(x, y, n, m, p.b2, static_cast<T>(1.0 / (e.count + e.rest)));
        } else {
            const double sum = kernels_for_max(p, m).row_exp_store(x, y, n, softmax_shift(m, p.b2, p.fast), p.b2);
            p.k.row_scale(y, n, static_cast<T>(1.0 / sum));
        }
        return;
    }
    const stats s = given ? *given : row_stats(p, x, n, nt, part);
    if (p.op == reduction::logsumexp) {
        write_lse(p, y, s);
        return;
    }
    if (is_special(s)) return special_row(p.op, s, x, 1, y, 1, n);
    const double c =
        p.op == reduction::softmax ? 1.0 / (s.count + s.rest) : log_sum<value_t<S>>(s);
    detail::parallel_ranges(nt, super_chunks(n), [&](std::size_t b, std::size_t e) {
        const std::size_t i = b * kSuperChunk, len = std::min(e * kSuperChunk, n) - i;
        row_piece(p, s, c, x + i, y + i, len, n * sizeof(S) >= kStreamBytes);
    });
}

// Scratch of a strided row (do_strided_row): gather and scatter buffers of `piece` elements for each
// thread over the row's pieces (x, y: null when not needed), super-chunk statistics (part).
template <class T>
struct row_scratch {
    T *x, *y;
    std::size_t piece;
    stats* part;
};

template <class T>
void gather(const T* x, std::ptrdiff_t sx, std::size_t n, T* buf) {
    for (std::size_t i = 0; i < n; ++i) buf[i] = x[std::ptrdiff_t(i) * sx];
}
template <class T>
void scatter(const T* buf, std::size_t n, T* y, std::ptrdiff_t sy) {
    for (std::size_t i = 0; i < n; ++i) y[std::ptrdiff_t(i) * sy] = buf[i];
}

// A row whose x (or y) is not contiguous: handled piece by piece through buffers of kSuperChunk
// elements. A row that fits in one piece (or a chunked_long_row, whose buffers hold it whole) is gathered
// whole and goes through do_row; a longer one is cut
// at the super-chunk boundaries that row_stats and do_row use, so the results are bit-identical to
// those of the same row stored contiguously. With nt threads over the pieces, thread t uses the buffers
// at t * rs.piece.
template <class S>
void do_strided_row(const plan<S>& p, const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t n, int nt,
                    const stats* given, const row_scratch<S>& rs) {
    if (n <= kSuperChunk || chunked_long_row(p, n)) {  // rs holds the whole row (run_rows)
        if (rs.x) gather(x, sx, n, rs.x);
        do_row(p, rs.x ? rs.x : x, rs.y ? rs.y : y, n, nt, rs.part, given);
        if (rs.y) scatter(rs.y, n, y, sy);
        return;
    }
    const std::size_t nchunks = super_chunks(n);
    // body(c, i, len, x piece, y buffer) over the pieces c = [i, i + len) of the row, x gathered.
    auto pieces = [&](auto&& body) {
        detail::parallel_slices(nt, nchunks, [&](std::size_t t, std::size_t cb, std::size_t ce) {
            S* const xb = rs.x ? rs.x + t * rs.piece : nullptr;
            S* const yb = rs.y ? rs.y + t * rs.piece : nullptr;
            for (std::size_t c = cb; c < ce; ++c) {
                const std::size_t i = c * kSuperChunk, len = std::min(kSuperChunk, n - i);
                if (xb) gather(x + std::ptrdiff_t(i) * sx, sx, len, xb);
                body(c, i, len, xb ? xb : x + i, yb);
            }
        });
    };
    stats s;
    if (given) {
        s = *given;
    } else {
        pieces([&](std::size_t c, std::size_t, std::size_t len, const S* xp, S*) { rs.part[c] = segment_stats(p, xp, len); });
        s = merge_in_order(nchunks, p.ex, [&](std::size_t c) { return rs.part[c]; });
    }
    if (p.op == reduction::logsumexp) return write_lse(p, y, s);
    if (is_special(s)) return special_row(p.op, s, x, sx, y, sy, n);
    const double c =
        p.op == reduction::softmax ? 1.0 / (s.count + s.rest) : log_sum<value_t<S>>(s);
    pieces([&](std::size_t, std::size_t i, std::size_t len, const S* xp, S* yb) {
        S* const yp = y + std::ptrdiff_t(i) * sy;
        row_piece(p, s, c, xp, yb ? yb : yp, len, false);
        if (yb) scatter(yb, len, yp, sy);
    });
}

// ------------------------------------------------------------------------------------------------------
// Iteration over the dimensions that are neither reduced nor vectorized.
// zs: strides of given statistics (normalize_with), 0 otherwise.
struct outer_dims {
    std::vector<std::size_t> shape;
    std::vector<std::ptrdiff_t> xs, ys, zs;
    std::size_t count = 1;
    void add(std::size_t n, std::ptrdiff_t x, std::ptrdiff_t y, std::ptrdiff_t z = 0) {
        if (n == 1) return;
        shape.push_back(n);
        xs.push_back(x);
        ys.push_back(y);
        zs.push_back(z);
        count *= n;
    }
    void offsets(std::size_t idx, std::ptrdiff_t& ox, std::ptrdiff_t& oy) const {
        std::ptrdiff_t oz;
        offsets(idx, ox, oy, oz);
    }
    void offsets(std::size_t idx, std::ptrdiff_t& ox, std::ptrdiff_t& oy, std::ptrdiff_t& oz) const {
        ox = oy = oz = 0;
        for (std::size_t d = shape.size(); d-- > 0;) {
            const std::size_t i = idx % shape[d];
            idx /= shape[d];
            ox += std::ptrdiff_t(i) * xs[d];
            oy += std::ptrdiff_t(i) * ys[d];
            oz += std::ptrdiff_t(i) * zs[d];
        }
    }
};

// Rows [rb, re) of a 2-d contiguous layout (row r at x + r xr, y + r yr) whose rows are short: softmax in
// cache, or a log-family row that is one chunk of segment_stats. The kernels take a batch of rows per call;
// each row gets exactly what do_row gives it (the same kernels on the same values: bit-identical), and a
// row they skip (a maximum that is not finite, or one that needs the scalar kernels: kernels_for_max)
// goes through do_row itself.
template <class S>
void short_rows(const plan<S>& p, const S* x, std::ptrdiff_t xr, S* y, std::ptrdiff_t yr, std::size_t n,
                std::size_t rb, std::size_t re) {
    using T = value_t<S>;
    const T m_limit = rows_limit(p);
    T m[kRowBatch];
    exp_sum es[kRowBatch];
    for (std::size_t b = rb; b < re; b += kRowBatch) {
        const std::size_t cnt = std::min(kRowBatch, re - b);
        const S* xb = x + std::ptrdiff_t(b) * xr;
        S* yb = y + std::ptrdiff_t(b) * yr;
        if (p.op == reduction::softmax)
            p.k.rows_softmax(xb, xr, yb, yr, cnt, n, p.b2, m_limit, m);
        else if (p.op == reduction::log_softmax)
            p.k.rows_log_softmax(xb, xr, yb, yr, cnt, n, p.b2, m_limit, m);
        else
            p.k.rows_exp_sum(xb, xr, cnt, n, p.b2, m_limit, m, es);
        // logsumexp's results first, in a loop of independent rows with lse_out inlined: write_lse's formula for
        // a row the kernel did not skip (the skipped ones follow). Called row by row, write_lse and log_sum_float
        // took a quarter of the time of 16384 rows of 32 float32 entries (one thread, AVX-512, Zen 4; 402 -> 370
        // us with this loop and both inlined).
        if (p.op == reduction::logsumexp && !p.parts)
            for (std::size_t i = 0; i < cnt; ++i)
                if (!rows_skip(m[i], m_limit))
                    yb[std::ptrdiff_t(i) * yr] = to_storage<S>(lse_out<T>(m[i], es[i].count, es[i].rest));
        for (std::size_t i = 0; i < cnt; ++i) {
            const S* xi = xb + std::ptrdiff_t(i) * xr;
            S* yi = yb + std::ptrdiff_t(i) * yr;
            if (rows_skip(m[i], m_limit)) {
                do_row(p, xi, yi, n, 1, nullptr, nullptr);
                continue;
            }
            if (p.op != reduction::logsumexp || !p.parts) continue;
            stats s;  // segment_stats of a single chunk
            s.m = m[i], s.rest = es[i].rest, s.count = es[i].count;
            write_lse(p, yi, s);
        }
    }
}

// Rows: the axis is contiguous in x (and in y unless logsumexp) or gathered.
template <class S>
void run_rows(const plan<S>& p, const S* x, S* y, const outer_dims& od, std::size_t n, std::ptrdiff_t sx,
              std::ptrdiff_t sy) {
    const bool lse = p.op == reduction::logsumexp;
    const bool gather_x = sx != 1 && n > 1, scatter_y = !lse && sy != 1 && n > 1;
    const std::size_t rows = od.count;
    // Many rows: threads take whole rows. Few long rows (fewer than four per thread, a count that whole rows
    // cannot share out evenly): the rows go one after another, each split across the threads by its
    // super-chunks (the same bits for every thread count). Whole rows left threads idle there: 3 rows of 5M
    // float32 entries ran 1.5x faster on 2 threads than on one, and 3.0-3.6x on 16 (docs/benchmarks.md).
    const int nt_split = threads_for(n, super_chunks(n));
    const bool split_rows = nt_split > 1 && (rows < 2 || (rows < 4 * std::size_t(nt_split) && rows % nt_split != 0));
    const int nt_rows = split_rows ? 1 : threads_for(rows * n, rows);
    const int nt_inner = split_rows ? nt_split : 1;
    // Per-thread buffers, allocated before the first row is written (a failed allocation throws
    // std::bad_alloc, MemoryError in Python, with y untouched): pieces of a gathered row and of a row to
    // scatter (do_strided_row: at most kSuperChunk elements, or a chunked_long_row whole), a long row's super-chunk
    // statistics. Slots are the threads over rows or, for a single row, over its pieces.
    const std::size_t slots = static_cast<std::size_t>(std::max({nt_rows, nt_inner, 1}));
    const std::size_t piece = chunked_long_row(p, n) ? n : std::min(n, kSuperChunk);
    const std::size_t pstride = detail::slot_stride<S>(piece);
    const std::unique_ptr<S[]> xbufs(gather_x ? new S[detail::scratch_elems(slots, pstride)] : nullptr);
    const std::unique_ptr<S[]> ybufs(scatter_y ? new S[detail::scratch_elems(slots, pstride)] : nullptr);
    const std::size_t nparts = super_chunks(n) > 1 ? super_chunks(n) : 0;
    std::vector<stats> parts(detail::scratch_elems(slots, nparts));
    // Many short rows of a 2-d layout: several rows per kernel call (short_rows).
    const bool short_ok = rows > 1 && !gather_x && !scatter_y && !p.given_m && od.shape.size() == 1 &&
                          (p.op == reduction::softmax ? in_cache_row<S>(n) : n * sizeof(S) <= kChunkBytes);
    if (short_ok) {
        detail::parallel_slices(nt_rows, rows, [&](std::size_t, std::size_t rb, std::size_t re) {
            short_rows(p, x, od.xs[0], y, od.ys[0], n, rb, re);
        });
        return;
    }
    detail::parallel_slices(nt_rows, rows, [&](std::size_t slot, std::size_t rb, std::size_t re) {
        const row_scratch<S> rs{gather_x ? xbufs.get() + slot * pstride : nullptr,
                                scatter_y ? ybufs.get() + slot * pstride : nullptr, piece,
                                nparts ? parts.data() + slot * nparts : nullptr};
        for (std::size_t r = rb; r < re; ++r) {
            std::ptrdiff_t ox, oy, oz;
            od.offsets(r, ox, oy, oz);
            stats g;
            if (p.given_m) g = given_stats(p, oz);
            const stats* given = p.given_m ? &g : nullptr;
            if (gather_x || scatter_y)
                do_strided_row(p, x + ox, sx, y + oy, sy, n, nt_inner, given, rs);
            else
                do_row(p, x + ox, y + oy, n, nt_inner, rs.part, given);
        }
    });
}

// ---- columns ----------------------------------------------------------------------------------------
// Sizes of the scratch a thread needs for the column blocks of one call (run_cols computes them, for
// the widest of its blocks' needs); every buffer is allocated before the first block is written.
struct col_need {
    std::size_t bw = 0;        // columns per block
    std::size_t scratch = 0;   // in-cache softmax: the gathered block
    std::size_t supers = 0;    // statistics per row super-chunk and column (online with several; stored)
    std::size_t chunks = 0;    // stored softmax: the running maximum per chunk and column
    std::size_t tchunk = 0;    // stored softmax, per thread splitting the rows: one gathered chunk
    std::size_t threads = 1;   // threads splitting one block's rows (a single block), else 1
};

// Per-thread buffers for the column blocks. The per-part arrays that threads write (the super-chunk statistics
// pm, pcm, prest, pcount; the per-thread tcm, tkm, tf) are detail::slot_stride<T> apart, the float64 ones at the
// same index as the T ones (whole lines of T are whole lines of float64 too).
template <class S>
struct col_buffers {
    using T = value_t<S>;
    std::vector<T> m, cm, c;
    std::vector<S> scratch;
    std::vector<double> rest, count, lc;
    std::vector<unsigned char> special;
    std::vector<std::size_t> pinf;           // special columns: the +inf entries (i bw + j) that stay NaN
    std::vector<T> pm, pcm, mc;              // per super-chunk maxima (and their scratch), per chunk maxima
    std::vector<double> prest, pcount;       // per super-chunk sums
    std::vector<S> tchunk;                   // per row-splitting thread: a chunk,
    std::vector<T> tcm, tkm, tf;             // maxima, factors (bw each)
    std::size_t tchunk_elems;
    explicit col_buffers(const col_need& need)
        : m(need.bw), cm(need.bw), c(need.bw), scratch(need.scratch), rest(need.bw), count(need.bw), lc(need.bw),
          special(need.bw), pm(need.supers), pcm(need.supers), mc(need.chunks), prest(need.supers),
          pcount(need.supers), tchunk(detail::scratch_elems(need.threads, need.tchunk)),
          tcm(need.chunks ? need.threads * detail::slot_stride<T>(need.bw) : 0), tkm(tcm.size()), tf(tcm.size()),
          tchunk_elems(need.tchunk) {}
};

// Marks columns whose maximum is not finite and gives the kernels harmless placeholder statistics for
// them; returns whether there are any. Their outputs are written after the kernels' pass
// (finish_special_columns), which may have overwritten x in place: what they depend on in x, the +inf
// entries of a log_softmax column whose maximum is +inf, is recorded here, before that pass.
template <class S>
bool mark_special_columns(const plan<S>& p, col_buffers<S>& b, std::size_t bw, const S* xb, std::ptrdiff_t sx,
                          std::size_t n) {
    bool any = false;
    b.pinf.clear();
    for (std::size_t j = 0; j < bw; ++j) {
        b.special[j] = !finite(b.m[j]);
        if (b.special[j]) {
            any = true;
            if (p.op == reduction::log_softmax && b.m[j] == kInf<value_t<S>>)
                for (std::size_t i = 0; i < n; ++i)
                    if (widen(xb[std::ptrdiff_t(i) * sx + std::ptrdiff_t(j)]) == kInf<double>)
                        b.pinf.push_back(i * bw + j);
            b.cm[j] = b.m[j];
            b.m[j] = 0, b.c[j] = 0, b.lc[j] = 0, b.rest[j] = 0, b.count[j] = 1;
        }
    }
    return any;
}

template <class S>
void finish_special_columns(const plan<S>& p, const col_buffers<S>& b, std::size_t bw, S* yb, std::ptrdiff_t sy,
                            std::size_t n) {
    for (std::size_t j = 0; j < bw; ++j) {
        if (!b.special[j]) continue;
        stats s;
        s.m = b.cm[j], s.nan = b.cm[j] != b.cm[j];
        const S v = special_value<S>(p.op, s, false);
        for (std::size_t i = 0; i < n; ++i) yb[std::ptrdiff_t(i) * sy + std::ptrdiff_t(j)] = v;
    }
    const S at_pinf = to_storage<S>(kNaN<double>);
    for (const std::size_t k : b.pinf) yb[std::ptrdiff_t(k / bw) * sy + std::ptrdiff_t(k % bw)] = at_pinf;
}

// softmax of a column block whose n x bw values fit in cache: the max pass also gathers the block into
// contiguous scratch, exp is taken once in place there, and the scaled values are written to y, so x
// and y each cross memory once and exp runs once per element, as in the last-axis case.
template <class T>
void col_block_softmax_in_cache(const plan<T>& p, col_buffers<T>& b, const T* xb, std::ptrdiff_t sx, T* yb,
                                std::ptrdiff_t sy, std::size_t n, std::size_t bw) {
    std::fill_n(b.m.begin(), bw, -kInf<T>);
    p.k.col_max(xb, n, sx, bw, b.m.data(), b.scratch.data());
    const bool any_special = mark_special_columns(p, b, bw, xb, sx, n);
    std::fill_n(b.rest.begin(), bw, 0.0);
    kernels_for_max(p, b.m.data(), bw).col_exp_store(b.scratch.data(), n, bw, b.m.data(), p.b2, b.rest.data());
    for (std::size_t j = 0; j < bw; ++j) b.c[j] = static_cast<T>(1.0 / b.rest[j]);
    p.k.col_scale(b.scratch.data(), std::ptrdiff_t(bw), yb, sy, n, bw, b.c.data());
    if (any_special) finish_special_columns(p, b, bw, yb, sy, n);
}

// Rows per chunk of col_block_softmax_stored: its gathered chunk fills the in-cache scratch.
template <class T>
std::size_t col_stored_rows(std::size_t bw) {
    return std::max<std::size_t>(1, kInCacheBytes / (bw * sizeof(T)));
}

// Rows per chunk of the online column statistics (col_stats_rows).
template <class T>
std::size_t col_chunk_rows(std::size_t bw) {
    return std::max<std::size_t>(1, kColChunkBytes / (bw * sizeof(T)));  // T: the storage
}

// Rows of a column block of n rows per row super-chunk: a quarter of the block, at least kColSuperMinBytes and
// at most kColSuperMaxBytes, rounded down to a multiple of the chunk R (at least R). Each super-chunk restarts
// the online maximum and its merge costs an exp per column, so they are large: with 1 MiB super-chunks these
// costs took a fifth of the time of axis 0 of a (4096, 1024) float32 array, with 4 MiB ones a tenth.
// Four of them leave work for threads splitting a single block's rows. Depends only on the shape, so the
// merged statistics are the same for every thread count.
template <class T>
std::size_t col_super_rows(std::size_t n, std::size_t bw, std::size_t R) {
    const std::size_t row = bw * sizeof(T);
    const std::size_t lo = std::max<std::size_t>(1, kColSuperMinBytes / row);
    const std::size_t hi = std::max<std::size_t>(1, kColSuperMaxBytes / row);
    const std::size_t rows = std::min(hi, std::max(lo, n / 4));
    return std::max<std::size_t>(1, rows / R) * R;
}

// f(j) for each j < n where pred(j), in increasing order; pred is evaluated for all n without a branch.
template <class Pred, class F>
void for_each_set(std::size_t n, Pred pred, F f) {
    for (std::size_t j0 = 0; j0 < n; j0 += 32) {
        const std::size_t e = std::min(n, j0 + 32);
        std::uint32_t bits = 0;
        for (std::size_t j = j0; j < e; ++j) bits |= std::uint32_t(pred(j)) << (j - j0);
        for (; bits; bits &= bits - 1) f(j0 + std::size_t(port::ctz32(bits)));
    }
}

// One column's statistics from a super-chunk's arrays (a NaN maximum marks the part NaN).
inline stats col_part(double m, double rest, double count) {
    stats s;
    s.m = m, s.rest = rest, s.count = count, s.nan = m != m;
    return s;
}

// Column statistics (m, rest, count; bw columns) of rows [0, n) of a column block, online over chunks of
// R rows, each read from memory for its max and again from L2 for its sum. float32 / float64: the sum of a
// chunk and the max of the next one come from one kernel call (col_exp_sum_max), which overlaps the next
// chunk's read with this chunk's exps where nothing is counted (accuracy::fast, and float32 softmax, which
// needs only count + rest: count stays 0 and rest is the whole sum). 16-bit storage: col_max then
// col_exp_sum per chunk. cm: bw scratch.
template <class S>
void col_stats_rows(const plan<S>& p, const S* xb, std::ptrdiff_t sx, std::size_t n, std::size_t bw, value_t<S>* m,
                    value_t<S>* cm, double* rest, double* count) {
    using T = value_t<S>;
    const std::size_t R = col_chunk_rows<S>(bw);
    std::fill_n(m, bw, -kInf<T>);
    std::fill_n(rest, bw, 0.0);
    std::fill_n(count, bw, 0.0);
    constexpr bool fused = !kHalf<S>;
    // float32 softmax counts nothing: its sums are double, far below its outputs' rounding. float64 keeps the
    // count (exact) apart from rest: summing the 1s into the compensated lanes cost 1-2 ULP more in the
    // outputs (10 against the 8 of test_column_paths.py).
    const bool uncounted = p.op == reduction::softmax && sizeof(T) == 4;
    if (fused && n > 0) {  // the first chunk's max; each call below takes the next one's
        std::copy_n(m, bw, cm);
        p.k.col_max(xb, std::min(R, n), sx, bw, cm, nullptr);
    }
    for (std::size_t i = 0; i < n; i += R) {
        const std::size_t len = std::min(R, n - i);
        const S* xc = xb + std::ptrdiff_t(i) * sx;
        if constexpr (!fused) {
            std::copy_n(m, bw, cm);
            p.k.col_max(xc, len, sx, bw, cm, nullptr);  // cm = max(m, chunk max), NaN sticky
        }
        // cm = max(m, the chunk's max), NaN sticky: the online rule rescales what was summed against the
        // old max where it moved; a few columns per chunk (a new maximum in chunk k of random data has
        // probability 1/k), found without a branch per column, whose mispredictions cost more than the rescales.
        for_each_set(bw, [&](std::size_t j) { return cm[j] > m[j]; }, [&](std::size_t j) {
            rest[j] = rescaled(p.ex, rest[j] + count[j], m[j], cm[j]);
            count[j] = 0;
        });
        for (std::size_t j = 0; j < bw; ++j) m[j] = cm[j] > m[j] || cm[j] != cm[j] ? cm[j] : m[j];
        const kernels_t<S>& k = kernels_for_max(p, m, bw);
        if constexpr (fused) {
            // cm = max(m, the next chunk's max), what col_max gives, while this chunk is summed.
            const std::size_t next = i + len < n ? std::min(R, n - i - len) : 0;
            std::copy_n(m, bw, cm);
            k.col_exp_sum_max(xc, len, sx, bw, m, p.b2, rest, uncounted ? nullptr : count,
                              next ? xc + std::ptrdiff_t(len) * sx : nullptr, next, cm);
        } else {
            k.col_exp_sum(xc, len, sx, bw, m, p.b2, rest, count);
        }
    }
    // A column still all -inf has no sum (the kernel counted its entries as equal to the max): an empty
    // part for merge(), as segment_stats leaves it.
    for (std::size_t j = 0; j < bw; ++j)
        if (m[j] == -kInf<T>) rest[j] = count[j] = 0;
}

// Any reduction of a column block, two passes over memory: column statistics over row super-chunks
// (nt threads over them when a single block splits its rows, merged in order), then the outputs
// (threads over row ranges).
// With given statistics (normalize_with) the first pass is replaced by reading them: column j's are at
// offset oz + j * zs.
template <class S>
void col_block_online(const plan<S>& p, col_buffers<S>& b, const S* xb, std::ptrdiff_t sx, S* yb, std::ptrdiff_t sy,
                      std::ptrdiff_t y_inner_stride, std::size_t n, std::size_t bw, std::ptrdiff_t oz,
                      std::ptrdiff_t zs, int nt, bool stream) {
    using T = value_t<S>;
    const std::size_t RS = col_super_rows<S>(n, bw, col_chunk_rows<S>(bw)), nsc = (n + RS - 1) / RS;
    if (p.given_m) {
        for (std::size_t j = 0; j < bw; ++j) {
            const stats g = given_stats(p, oz + std::ptrdiff_t(j) * zs);
            b.m[j] = static_cast<T>(g.m), b.count[j] = g.count, b.rest[j] = g.rest;
        }
    } else if (nsc <= 1) {
        col_stats_rows(p, xb, sx, n, bw, b.m.data(), b.cm.data(), b.rest.data(), b.count.data());
    } else {
        // Per super-chunk: m, scratch (T), rest, count (double); merged in order below.
        T* const pm = b.pm.data();
        T* const pcm = b.pcm.data();
        double* const prest = b.prest.data();
        double* const pcount = b.pcount.data();
        const std::size_t ps = detail::slot_stride<value_t<S>>(bw);
        detail::parallel_ranges(nt, nsc, [&](std::size_t cb, std::size_t ce) {
            for (std::size_t c = cb; c < ce; ++c)
                col_stats_rows(p, xb + std::ptrdiff_t(c * RS) * sx, sx, std::min(RS, n - c * RS), bw, &pm[c * ps],
                               &pcm[c * ps], &prest[c * ps], &pcount[c * ps]);
        });
        for (std::size_t j = 0; j < bw; ++j) {
            const stats s = merge_in_order(nsc, p.ex, [&](std::size_t c) {
                return col_part(pm[c * ps + j], prest[c * ps + j], pcount[c * ps + j]);
            });
            // NaN and non-finite maxima go on as the block's max (mark_special_columns reads them).
            b.m[j] = s.nan ? kNaN<T> : static_cast<T>(s.m), b.rest[j] = s.rest, b.count[j] = s.count;
        }
    }
    if (p.op == reduction::logsumexp) {
        for (std::size_t j = 0; j < bw; ++j) {
            stats s;
            s.m = b.m[j], s.rest = b.rest[j], s.count = b.count[j], s.nan = b.m[j] != b.m[j];
            write_lse(p, yb + std::ptrdiff_t(j) * y_inner_stride, s);
        }
        return;
    }
    const bool any_special = mark_special_columns(p, b, bw, xb, sx, n);
    for (std::size_t j = 0; j < bw; ++j) {
        stats s;
        s.rest = b.rest[j], s.count = b.count[j];
        if (p.op == reduction::softmax)
            b.c[j] = static_cast<T>(1.0 / (s.count + s.rest));
        else
            b.lc[j] = log_sum<value_t<S>>(s);
    }
    detail::parallel_ranges(nt, nsc, [&](std::size_t cb, std::size_t ce) {
        const std::size_t r0 = cb * RS, rows = std::min(ce * RS, n) - r0;
        const S* xr = xb + std::ptrdiff_t(r0) * sx;
        S* yr = yb + std::ptrdiff_t(r0) * sy;
        const kernels_t<S>& k = kernels_for_max(p, b.m.data(), bw);
        if constexpr (!kHalf<S>) {  // 16-bit storage: no streaming stores of its own
            if (stream) {
                if (p.op == reduction::softmax)
                    k.col_exp_scale_stream(xr, sx, yr, sy, rows, bw, b.m.data(), p.b2, b.c.data());
                else
                    k.col_log_softmax_stream(xr, sx, yr, sy, rows, bw, b.m.data(), p.b2, b.lc.data());
                return;
            }
        }
        if (p.op == reduction::softmax)
            k.col_exp_scale(xr, sx, yr, sy, rows, bw, b.m.data(), p.b2, b.c.data());
        else
            k.col_log_softmax(xr, sx, yr, sy, rows, bw, b.m.data(), p.b2, b.lc.data());
    });
    if (any_special) finish_special_columns(p, b, bw, yb, sy, n);
}

// softmax of a column block too tall for cache scratch, with one exp per element (the online path takes
// two). Pass 1, over chunks of R rows per row super-chunk: the chunk's max updates the running max m_c
// (online, sums rescaled), the chunk is gathered into L2 scratch, exp(beta (x - m_c)) is stored there
// and summed (col_exp_store), and copied to y; m_c is kept per chunk (R is large: that is 1/R-th of the
// block's size). The super-chunks' statistics merge in order into (m, S). Pass 2 scales each chunk's
// stored values in y by exp(beta (m_c - m)) / S (just 1/S where the max did not move), one rounding
// more than exp(beta (x - m)) / S: within the same few ULP.
template <class T>
void col_block_softmax_stored(const plan<T>& p, col_buffers<T>& b, const T* xb, std::ptrdiff_t sx, T* yb,
                              std::ptrdiff_t sy, std::size_t n, std::size_t bw, int nt) {
    const std::size_t R = col_stored_rows<T>(bw), RS = col_super_rows<T>(n, bw, R), nsc = (n + RS - 1) / RS;
    const std::size_t nchunks = (n + R - 1) / R;
    T* const mc = b.mc.data();
    T* const pm = b.pm.data();
    double* const prest = b.prest.data();
    const std::size_t ps = detail::slot_stride<T>(bw);
    detail::parallel_slices(nt, nsc, [&](std::size_t slot, std::size_t cb, std::size_t ce) {
        T* const scratch = b.tchunk.data() + slot * b.tchunk_elems;  // R x bw unless y's rows are contiguous
        T* const cm = b.tcm.data() + slot * ps;
        T* const km = b.tkm.data() + slot * ps;
        for (std::size_t c = cb; c < ce; ++c) {
            T* m = &pm[c * ps];
            double* rest = &prest[c * ps];
            std::fill_n(m, bw, -kInf<T>);
            std::fill_n(rest, bw, 0.0);
            for (std::size_t i = c * RS; i < std::min(n, (c + 1) * RS); i += R) {
                const std::size_t len = std::min(R, n - i);
                // Gathered straight into y where its rows are contiguous (they stay in L2 until scaled).
                T* const buf = sy == std::ptrdiff_t(bw) ? yb + std::ptrdiff_t(i) * sy : scratch;
                std::copy_n(m, bw, cm);
                p.k.col_max(xb + std::ptrdiff_t(i) * sx, len, sx, bw, cm, buf);
                bool any_nonfinite = false;
                for (std::size_t j = 0; j < bw; ++j) {
                    if (cm[j] > m[j]) {
                        rest[j] = rescaled(p.ex, rest[j], m[j], cm[j]);
                        m[j] = cm[j];
                    } else if (cm[j] != cm[j]) {
                        m[j] = cm[j];
                    }
                    // The kernel takes finite maxima only. A column whose max is not finite (yet) stores
                    // 0: right for one still all -inf (its sum restarts at its first finite max); NaN
                    // and +inf columns are rewritten at the end.
                    km[j] = finite(m[j]) ? m[j] : T(0);
                    any_nonfinite |= !finite(m[j]);
                }
                kernels_for_max(p, km, bw).col_exp_store(buf, len, bw, km, p.b2, rest);
                if (any_nonfinite)
                    for (std::size_t j = 0; j < bw; ++j)
                        if (!finite(m[j])) {
                            rest[j] = 0;
                            for (std::size_t r = 0; r < len; ++r) buf[r * bw + j] = 0;
                        }
                if (buf == scratch)
                    for (std::size_t r = 0; r < len; ++r)
                        std::memcpy(yb + std::ptrdiff_t(i + r) * sy, &scratch[r * bw], bw * sizeof(T));
                std::copy_n(m, bw, &mc[(i / R) * bw]);
            }
        }
    });
    for (std::size_t j = 0; j < bw; ++j) {
        const stats s =
            merge_in_order(nsc, p.ex, [&](std::size_t c) { return col_part(pm[c * ps + j], prest[c * ps + j], 0.0); });
        b.m[j] = s.nan ? kNaN<T> : static_cast<T>(s.m);
        b.lc[j] = 1.0 / s.rest;  // 1/S
    }
    const bool any_special = mark_special_columns(p, b, bw, xb, sx, n);
    detail::parallel_slices(nt, nchunks, [&](std::size_t slot, std::size_t cb, std::size_t ce) {
        T* const f = b.tf.data() + slot * ps;
        for (std::size_t c = cb; c < ce; ++c) {
            const T* m_c = &mc[c * bw];
            for (std::size_t j = 0; j < bw; ++j)
                f[j] = b.special[j] ? T(0)
                       : m_c[j] == b.m[j] ? static_cast<T>(b.lc[j])
                                          : static_cast<T>(p.ex(m_c[j], b.m[j]) * b.lc[j]);
            T* yc = yb + std::ptrdiff_t(c * R) * sy;
            p.k.col_scale(yc, sy, yc, sy, std::min(R, n - c * R), bw, f);
        }
    });
    if (any_special) finish_special_columns(p, b, bw, yb, sy, n);
}

// Columns: the axis has stride sx (sy), dimension `inner` of length w is contiguous in x and y
// (z_inner_stride: the given statistics' stride along it, normalize_with).
// Work items are (outer index, block of columns); the blocking depends only on the shape.
template <class S>
void run_cols(const plan<S>& p, const S* x, S* y, const outer_dims& od, std::size_t n, std::ptrdiff_t sx,
              std::ptrdiff_t sy, std::size_t w, std::ptrdiff_t y_inner_stride, std::ptrdiff_t z_inner_stride) {
    using T = S;  // the sizes below are in elements of the storage
    const bool lse = p.op == reduction::logsumexp;
    // Blocks are wide (kColBlock): rows read as long contiguous runs stream from memory; 64-byte runs
    // one page apart defeat the prefetchers (measured 3x slower). softmax gathers the block into cache
    // scratch (one exp per element) when n x min(w, kColBlock) fits there, else goes online.
    // fit: columns whose n rows fit in kInCacheBytes (>= 1 when in_cache; a multiple of 8 unless the
    // block is narrower than 8). Divided in this order so that a huge n (a broadcast view) cannot wrap.
    const std::size_t fit = n > kInCacheBytes / sizeof(T) ? 0 : kInCacheBytes / sizeof(T) / n;
    // 16-bit storage takes the online path: the other two store exp in S and read it back (two roundings).
    const bool in_cache = p.op == reduction::softmax && fit >= std::min(w, kColBlock) && !p.given_m && !kHalf<S>;
    const std::size_t block = in_cache ? std::min(kColBlock, fit >= 8 ? fit / 8 * 8 : fit) : kColBlock;
    const std::size_t nblocks = (w + block - 1) / block;
    const std::size_t items = od.count * nblocks;
    const int nt = threads_for(od.count * n * w, items);
    // softmax keeps exp(x - m_c) in y and rescales it (one exp per element) in float32, where the rescale
    // factor and the sums, formed in double, add nothing measurable; float64 takes the online path
    // (a second exp), whose error does not include the factor's (the stored path measured 8-10 ULP).
    // Outputs far larger than the caches (kStreamBytes, as for rows) go online in float32 too, with the
    // second pass's stores non-temporal (col_*_stream): x read twice and y written once, 3 x the output's
    // bytes, where the stored path moves 5 x (y written, then read and written again, each write with its
    // read-for-ownership). Measured on a (4096, 1024) float32 softmax, one thread, Zen 4: 4.0-4.2 ms online
    // and streamed against 5.3-6.0 ms stored, both with 4 MiB super-chunks (docs/benchmarks.md).
    const bool stream = !lse && !kHalf<S> && !in_cache && od.count * n * w * sizeof(S) >= kStreamBytes;
    const bool stored = p.op == reduction::softmax && !p.given_m && !in_cache && std::is_same_v<S, float> && !stream;
    // Every thread's buffers, allocated before the first block is written (a failed allocation leaves y
    // untouched). Sized for the widest need over the block widths (all blocks are `block` wide but the
    // last), and for the threads that split a single block's rows (items < 2, so nt == 1 then).
    col_need need;
    need.bw = std::min(block, w);
    if (in_cache) need.scratch = detail::scratch_elems(n, block);
    for (const std::size_t bw : {std::min(block, w), w - (nblocks - 1) * block}) {
        std::size_t R = 0, super = 0;
        if (stored) {
            R = col_stored_rows<T>(bw), super = col_super_rows<T>(n, bw, R);
            need.chunks = std::max(need.chunks, detail::scratch_elems((n + R - 1) / R, bw));
            if (sy != std::ptrdiff_t(bw)) need.tchunk = std::max(need.tchunk, R * bw);
        } else if (!in_cache) {
            super = col_super_rows<T>(n, bw, col_chunk_rows<T>(bw));
        }
        const std::size_t nsc = super ? (n + super - 1) / super : 0;
        if (stored || (nsc > 1 && !p.given_m))
            need.supers = std::max(need.supers, detail::scratch_elems(nsc, detail::slot_stride<value_t<S>>(bw)));
        if (items < 2 && super) need.threads = static_cast<std::size_t>(threads_for(n * bw, nsc));
    }
    const int nt_split = static_cast<int>(need.threads);
    std::vector<col_buffers<T>> bufs;
    bufs.reserve(static_cast<std::size_t>(std::max(nt, 1)));
    for (int i = 0; i < std::max(nt, 1); ++i) bufs.emplace_back(need);
    detail::parallel_slices(nt, items, [&](std::size_t slot, std::size_t ib, std::size_t ie) {
        col_buffers<T>& b = bufs[slot];
        for (std::size_t it = ib; it < ie; ++it) {
            const std::size_t o = it / nblocks, jb = (it % nblocks) * block;
            const std::size_t bw = std::min(block, w - jb);
            std::ptrdiff_t ox, oy, oz;
            od.offsets(o, ox, oy, oz);
            const T* xb = x + ox + std::ptrdiff_t(jb);
            T* yb = y + oy + std::ptrdiff_t(jb) * (lse ? y_inner_stride : 1);
            if constexpr (!kHalf<S>) {
                if (in_cache) {
                    col_block_softmax_in_cache(p, b, xb, sx, yb, sy, n, bw);
                    continue;
                }
                if (stored) {
                    col_block_softmax_stored(p, b, xb, sx, yb, sy, n, bw, nt_split);
                    continue;
                }
            }
            col_block_online(p, b, xb, sx, yb, sy, y_inner_stride, n, bw, oz + std::ptrdiff_t(jb) * z_inner_stride,
                             z_inner_stride, nt_split, stream);
        }
    });
}

// What logsumexp_parts and normalize_with add to reduce(): the (count, rest) output of logsumexp, or the
// given statistics of softmax / log_softmax with their element strides (sums: twice those).
template <class T>
struct extras {
    double* parts = nullptr;
    const T* given_m = nullptr;
    const double* given_sums = nullptr;
    const strides_t* zs = nullptr;
};

template <class S>
void reduce_impl(reduction op, const S* x, const strides_t& xs, S* y, const strides_t& ys, const shape_t& shape,
                 int axis, double temperature, const char* isa, accuracy acc, const extras<S>& ex) {
    using T = value_t<S>;
    // Messages are built only on failure: this runs on every call, including 1000-element ones.
    double* const parts = ex.parts;
    const std::size_t nd = shape.size();
    if (op != reduction::softmax && op != reduction::log_softmax && op != reduction::logsumexp)
        throw error("normexp: unknown reduction " + std::to_string(static_cast<int>(op)));
    if (acc != accuracy::high && acc != accuracy::fast)
        throw error("normexp: unknown accuracy " + std::to_string(static_cast<int>(acc)) + " (accuracy::high or accuracy::fast)");
    if (nd < 1) throw error("normexp: the input must have at least one dimension");
    if (xs.size() != nd || ys.size() != nd) throw error("normexp: strides must have one entry per dimension");
    const int ind = static_cast<int>(nd);
    if (axis < -ind || axis >= ind)
        throw error("normexp: axis " + std::to_string(axis) + " is out of bounds for an array of dimension " +
                    std::to_string(nd));
    if (axis < 0) axis += ind;
    if (!(std::isfinite(temperature) && temperature > 0))
        throw error("normexp: temperature must be a finite number > 0, got " + detail::format_number(temperature));
    if (op == reduction::logsumexp && temperature != 1.0 && !parts)
        throw error("normexp: logsumexp takes no temperature");
    // The kernels scale by beta = 1/temperature in T, carried as hi + lo (temperature.hpp): refuse one that
    // overflows T or is too small to carry, instead of answering NaN or outside the contract silently.
    if (const std::string e = detail::temperature_range_error<T>(temperature, dtype_name<S>(), "scores"); !e.empty())
        throw error("normexp: " + e);
    std::size_t total = 1;
    for (std::size_t d = 0; d < nd; ++d) total *= shape[d];
    if (total == 0 && shape[axis] != 0) return;
    if (x == nullptr || y == nullptr) throw error("normexp: null data pointer");

    const kernel_table& kt = (isa && *isa) ? detail::kernels_for(isa) : detail::active_kernels();
    const bool fast = acc == accuracy::fast;
    // 16-bit storage has one table, whatever the accuracy (storage_kernels, kernel_table.hpp).
    const kernels_t<S>* k;
    if constexpr (std::is_same_v<S, float16>) k = &kt.f16;
    else if constexpr (std::is_same_v<S, bfloat16>) k = &kt.bf16;
    else if constexpr (sizeof(S) == 4) k = fast ? &kt.f32_fast : &kt.f32;
    else k = fast ? &kt.f64_fast : &kt.f64;
    if (ex.given_m && !(ex.given_sums && ex.zs && ex.zs->size() == nd && op != reduction::logsumexp))
        throw error("normexp: given statistics need m, sums, their strides, and softmax or log_softmax");
    const scale2<double> bd = split_beta<double>(temperature);
    static const kernel_table& spec_table = detail::kernels_for("scalar");
    const kernels_t<S>* spec;
    if constexpr (std::is_same_v<S, float16>) spec = &spec_table.f16;
    else if constexpr (std::is_same_v<S, bfloat16>) spec = &spec_table.bf16;
    else if constexpr (sizeof(S) == 4) spec = &spec_table.f32;
    else spec = &spec_table.f64;
    const plan<S> p{*k, *spec, fast, op, split_beta<T>(temperature), exp_scale{bd.hi, bd.lo},
                    parts, y, ex.given_m, ex.given_sums};
    auto zstride = [&](std::size_t d) { return ex.zs ? (*ex.zs)[d] : std::ptrdiff_t(0); };

    const std::size_t n = shape[axis];
    const bool lse = op == reduction::logsumexp;
    if (n == 0) {  // empty reduction: logsumexp of nothing is log(0) = -inf; softmax writes nothing
        if (!lse) return;
        outer_dims od;
        for (std::size_t d = 0; d < nd; ++d)
            if (int(d) != axis) od.add(shape[d], xs[d], ys[d]);
        for (std::size_t r = 0; r < od.count; ++r) {
            std::ptrdiff_t ox, oy;
            od.offsets(r, ox, oy);
            y[oy] = to_storage<S>(-kInf<double>);
            if (parts) parts[2 * oy] = parts[2 * oy + 1] = 0.0;
        }
        return;
    }
    const std::ptrdiff_t sx = xs[axis], sy = lse ? 0 : ys[axis];

    // Rows if the axis is contiguous (or trivially short); else columns across a contiguous dimension.
    int inner = -1;
    if (!(sx == 1 && (lse || sy == 1)) && n > 1) {
        for (std::size_t d = 0; d < nd; ++d)
            if (int(d) != axis && shape[d] > 1 && xs[d] == 1 && (lse || ys[d] == 1)) inner = int(d);
    }
    outer_dims od;
    for (std::size_t d = 0; d < nd; ++d)
        if (int(d) != axis && int(d) != inner) od.add(shape[d], xs[d], ys[d], zstride(d));
    if (inner >= 0)
        run_cols(p, x, y, od, n, sx, sy, shape[inner], ys[inner], zstride(std::size_t(inner)));
    else
        run_rows(p, x, y, od, n, sx, sy);
}

}  // namespace

template <class T>
void reduce(reduction op, const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape,
            int axis, double temperature, const char* isa, accuracy acc) {
    reduce_impl<T>(op, x, xs, y, ys, shape, axis, temperature, isa, acc, extras<T>{});
}

template <class T>
void logsumexp_parts(const T* x, const strides_t& xs, T* m, double* sums, const strides_t& out_strides,
                     const shape_t& shape, int axis, double temperature, const char* isa, accuracy acc) {
    if (sums == nullptr) throw error("normexp: null data pointer");
    extras<T> ex;
    ex.parts = sums;
    reduce_impl<T>(reduction::logsumexp, x, xs, m, out_strides, shape, axis, temperature, isa, acc, ex);
}

template <class T>
void normalize_with(reduction op, const T* x, const strides_t& xs, T* y, const strides_t& ys, const shape_t& shape,
                    int axis, const T* m, const double* sums, const strides_t& stat_strides, double temperature,
                    const char* isa, accuracy acc) {
    if (op == reduction::logsumexp) throw error("normexp: normalize_with takes softmax or log_softmax");
    if (m == nullptr || sums == nullptr) throw error("normexp: null data pointer");
    extras<T> ex;
    ex.given_m = m;
    ex.given_sums = sums;
    ex.zs = &stat_strides;
    reduce_impl<T>(op, x, xs, y, ys, shape, axis, temperature, isa, acc, ex);
}

void merge_parts(std::size_t parts, std::size_t rows, const double* m, const double* sums, double* m_out,
                 double* sums_out, double temperature) {
    if (!(std::isfinite(temperature) && temperature > 0))
        throw error("normexp: temperature must be a finite number > 0, got " + detail::format_number(temperature));
    if (rows == 0) return;
    if ((parts > 0 && (m == nullptr || sums == nullptr)) || m_out == nullptr || sums_out == nullptr)
        throw error("normexp: null data pointer");
    const scale2<double> bd = split_beta<double>(temperature);
    const exp_scale ex{bd.hi, bd.lo};
    for (std::size_t r = 0; r < rows; ++r) {
        stats s;  // no piece yet: an empty row
        for (std::size_t p = 0; p < parts; ++p) merge(s, stats_from(m[p * rows + r], sums + 2 * (p * rows + r)), ex);
        const bool sp = is_special(s);
        m_out[r] = s.nan ? kNaN<double> : s.m;
        sums_out[2 * r] = sp ? 0.0 : s.count;
        sums_out[2 * r + 1] = sp ? 0.0 : s.rest;
    }
}

void logsumexp_from_parts(std::size_t rows, const double* m, const double* sums, double* out, bool float_result) {
    if (rows == 0) return;
    if (m == nullptr || sums == nullptr || out == nullptr) throw error("normexp: null data pointer");
    for (std::size_t r = 0; r < rows; ++r) {  // write_lse's formula, in double
        const stats s = stats_from(m[r], sums + 2 * r);
        out[r] = is_special(s) ? special_lse<double>(s) : float_result ? lse_of<float>(s) : lse_of<double>(s);
    }
}

template <class T>
void exp(const T* x, T* y, std::size_t n, const char* isa) {
    const kernel_table& kt = (isa && *isa) ? detail::kernels_for(isa) : detail::active_kernels();
    if constexpr (sizeof(T) == 4) kt.f32.exp(x, y, n); else kt.f64.exp(x, y, n);
}

template void reduce<float>(reduction, const float*, const strides_t&, float*, const strides_t&, const shape_t&, int,
                            double, const char*, accuracy);
template void reduce<double>(reduction, const double*, const strides_t&, double*, const strides_t&, const shape_t&,
                             int, double, const char*, accuracy);
template void logsumexp_parts<float>(const float*, const strides_t&, float*, double*, const strides_t&,
                                     const shape_t&, int, double, const char*, accuracy);
template void logsumexp_parts<double>(const double*, const strides_t&, double*, double*, const strides_t&,
                                      const shape_t&, int, double, const char*, accuracy);
template void normalize_with<float>(reduction, const float*, const strides_t&, float*, const strides_t&,
                                    const shape_t&, int, const float*, const double*, const strides_t&, double,
                                    const char*, accuracy);
template void normalize_with<double>(reduction, const double*, const strides_t&, double*, const strides_t&,
                                     const shape_t&, int, const double*, const double*, const strides_t&, double,
                                     const char*, accuracy);
#define NX_INSTANTIATE_16(S)                                                                                       \
    template void reduce<S>(reduction, const S*, const strides_t&, S*, const strides_t&, const shape_t&, int, double,   \
                            const char*, accuracy);                                                                    \
    template void logsumexp_parts<S>(const S*, const strides_t&, S*, double*, const strides_t&, const shape_t&, int,   \
                                     double, const char*, accuracy);                                                   \
    template void normalize_with<S>(reduction, const S*, const strides_t&, S*, const strides_t&, const shape_t&, int,  \
                                    const S*, const double*, const strides_t&, double, const char*, accuracy);
NX_INSTANTIATE_16(float16)
NX_INSTANTIATE_16(bfloat16)
#undef NX_INSTANTIATE_16
template void exp<float>(const float*, float*, std::size_t, const char*);
template void exp<double>(const double*, double*, std::size_t, const char*);

const char* isa() { return detail::active_kernels().name; }
std::vector<std::string> available_isas() { return detail::available_isas(); }
std::vector<std::string> isa_extensions() { return detail::isa_extensions(); }

}  // namespace normexp
