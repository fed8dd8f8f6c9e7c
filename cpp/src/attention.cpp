// Driver for blocked (flash-style) scaled dot-product attention (normexp.hpp, "attention").
//
// Work is split into tasks (batch b, query head h, query block of block_q rows, key split). A task walks
// its key/value range in blocks of kBlockK keys and runs the kernels of kernel_table.hpp on each block:
//   pack_kt (K block -> K^T panels)  ->  qk (S = Q K^T)  ->  softmax_step (scores, running max m and sum l,
//   P = exp(x - m), rescale factor alpha)  ->  pv (O = alpha O + P V).
// The output row is O / l and lse = m + log(l). Per-thread memory: the K^T panels (head_dim x kBlockK),
// S (block_q x kBlockK), O (block_q x head_dim_v) and a few rows: independent of len_q x len_kv. All of
// it, and the decode partials, is allocated before any task runs: a failed allocation throws before
// anything is written, and nothing inside the parallel region allocates (threading.hpp).
//
// Skipped work: key blocks entirely above the causal diagonal or entirely before the sliding window are
// never visited; blocks that straddle the diagonal or the window edge get a band mask (j - i limits) in
// the kernel. Masks are read in place through their strides (a broadcast dimension has stride 0); only a
// mask whose key stride is not 1 is copied, one block at a time.
//
// Decoding (a single query block per head and few heads): each head's key range is split into up to
// kSplitTasks / heads pieces (>= kSplitMinKeys keys each) that run in parallel; their partial results
// (O, m, l) are merged afterwards with the log-sum-exp rule (flash-decoding). The split depends only on
// the problem size, never on the thread count, so results are identical for every thread count.
//
// Grouped-query attention: query head h reads key/value head h / (heads_q / heads_kv) in place. When
// decoding (len_q == 1) the query heads of a group are the rows of one task, so each key/value block is
// read once per group rather than once per query head, in place up to kDirectGroup heads (reads_direct).
//
// 16-bit inputs (the float16 / bfloat16 overloads of normexp.hpp): the compute type T is float32 and the
// storage types are template parameters, Q for q and out, S for k and v. K and V are read in place in S by
// the K/V entries of the kernel table (attention_kv_kernels: pack_kt, qk_direct, pv widen each vector in
// registers), so no float32 copy of the cache exists (a V block whose head_dim_v stride is not 1 is packed in
// S, as float32 V is; a task that is not a decode widens one block of V at a time into ws.vw, run_block). A
// 16-bit q is widened per task into the q buffer (block_q x head_dim floats). The output is rounded once from
// the double quotient o / l (half_convert.hpp, to_f16 / to_bf16); lse, an additive mask, the split partials
// and the options stay float32.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"
#include "format.hpp"
#include "half_convert.hpp"
#include "normexp/normexp.hpp"
#include "online_stats.hpp"
#include "portability.hpp"
#include "threading.hpp"

namespace normexp {
namespace {

// Query rows per task: at least this many (see row_blocking). Each task packs K^T of every key block it
// visits, so the packing (a transpose: shuffles, one port on Intel) is repeated once per query block; 192
// rows pay it half as often as 96 (Intel Xeon with AVX-512, one core, float32 prefill 8 x 1024 x 64 and
// 16 x 1024 x 128: 104-107 -> 108-113 GFLOP/s, causal 16 x 1024 x 128 96 -> 100; two threads 8 x 1024 x 64
// 199-213 -> 231 at 384 rows, which leaves too few tasks for many threads at such sizes).
constexpr std::size_t kBlockQMin = 192;
constexpr std::size_t kBlockK = 128;        // keys per block (a multiple of kAttnKeyPanel)
constexpr std::size_t kDirectRows = 4;      // up to this many query rows: no K^T packing (qk_direct)
constexpr std::size_t kDirectGroup = 16;    // grouped decodes up to this many query heads a key/value head too
constexpr std::size_t kDiagRowsMin = 24;    // row groups on the causal diagonal: at least this many rows
constexpr std::size_t kSplitTasks = 32;     // decode: split keys until there are about this many tasks
constexpr std::size_t kSplitMinKeys = 512;  // decode: never split below this many keys per piece
constexpr std::size_t kStreamPiece = 32;    // decode: keys per kernel call between prefetches (run_block)
constexpr std::size_t kUnitChunkBytes = 16384;  // paged decode over all heads: bytes of float32 K per chunk (run_block)
static_assert(kStreamPiece % 4 == 0 && kBlockK % kStreamPiece == 0, "pieces of whole four-key groups");
static_assert(kBlockK % kAttnKeyPanel == 0, "key blocks must be whole panels");

constexpr std::ptrdiff_t kNoLimit = std::numeric_limits<std::ptrdiff_t>::max() / 4;

// msg: text, or a callable that builds it on failure (detail::message, format.hpp).
template <class Msg>
void check(bool ok, Msg&& msg) {
    if (!ok) throw error("normexp.attention: " + detail::message(std::forward<Msg>(msg)));
}

template <class T>
const attention_kernels<T>& attn_kernels(const kernel_table& kt) {
    if constexpr (sizeof(T) == 4) return kt.attn_f32; else return kt.attn_f64;
}

// The entries that read K or V, for compute type T and K/V storage S (S = T: attention_kernels<T>'s own).
// With a bfloat16 q and a bfloat16 K on a table that has them (kernel_table::bf16_dot, the avx512 set with
// AVX512_BF16), the scores come from the bfloat16 dot-product entries instead, K packed in pairs of head
// dimensions (their own error bound: kernel_table.hpp); the *_pairs pointers are null otherwise.
template <class T, class S>
struct kv_kernels {
    void (*pack_kt)(const S*, std::ptrdiff_t, std::ptrdiff_t, std::size_t, std::size_t, T*, std::size_t);
    void (*pv)(const T*, std::size_t, const S*, std::ptrdiff_t, std::size_t, std::size_t, std::size_t, const T*, T*,
               std::size_t, prefetch_lines);
    void (*qk_direct)(const T*, std::size_t, const S*, std::ptrdiff_t, std::size_t, std::size_t, std::size_t, T*,
                      std::size_t, std::size_t, prefetch_lines);
    bool (*pack_kt_pairs)(const S*, std::ptrdiff_t, std::ptrdiff_t, std::size_t, std::size_t, T*, std::size_t);
    void (*qk_pairs)(const T*, std::size_t, const T*, std::size_t, std::size_t, std::size_t, std::size_t, T*,
                     std::size_t);
    bool (*qk_direct_pairs)(const std::uint32_t*, std::size_t, const S*, std::ptrdiff_t, std::size_t, std::size_t,
                            std::size_t, T*, std::size_t, std::size_t, prefetch_lines);
    void (*widen)(const S*, T*, std::size_t);  // 16-bit S: the exact widening (convert_kernels); S = T: null
    // P V of many rows on the AMX unit (bf16_dot_kernels: pack_v_pairs, pv_pairs); null without AMX.
    bool (*pack_v_pairs)(const S* const*, std::size_t, std::size_t, std::uint32_t*, std::size_t);
    void (*pv_pairs)(const T*, std::size_t, const std::uint32_t*, std::size_t, std::size_t, std::size_t, std::size_t,
                     const T*, T*, std::size_t);
};
template <class T, class Q, class S>
kv_kernels<T, S> kv_kernels_for(const kernel_table& kt) {
    if constexpr (std::is_same_v<S, T>) {
        const attention_kernels<T>& a = attn_kernels<T>(kt);
        return {a.pack_kt, a.pv, a.qk_direct, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
    } else {
        static_assert(std::is_same_v<T, float>, "16-bit K/V compute in float32");
        const attention_kv_kernels<S>& a = [&]() -> const attention_kv_kernels<S>& {
            if constexpr (std::is_same_v<S, float16>) return kt.attn_kv_f16; else return kt.attn_kv_bf16;
        }();
        void (*widen)(const S*, float*, std::size_t);
        if constexpr (std::is_same_v<S, float16>) widen = kt.cvt.f16_to_f32; else widen = kt.cvt.bf16_to_f32;
        if constexpr (std::is_same_v<Q, bfloat16> && std::is_same_v<S, bfloat16>) {
            const bf16_dot_kernels& b = kt.bf16_dot;
            if (b.pack_kt_pairs && b.qk_pairs)  // qk_direct_pairs may be null (AMX): decodes take qk_direct
                return {a.pack_kt,         a.pv,  a.qk_direct,     b.pack_kt_pairs, b.qk_pairs,
                        b.qk_direct_pairs, widen, b.pack_v_pairs, b.pv_pairs};
        }
        return {a.pack_kt, a.pv, a.qk_direct, nullptr, nullptr, nullptr, widen, nullptr, nullptr};
    }
}

// Storage <-> compute: widening is exact; a result is rounded once from double (to float32 / float64 by the
// cast, to 16 bits by half_convert.hpp's correctly rounded to_f16 / to_bf16).
inline float widen(float16 h) { return detail::to_f32(h); }
inline float widen(bfloat16 h) { return detail::to_f32(h); }
inline float widen(float x) { return x; }
inline double widen(double x) { return x; }
template <class Q>
inline Q narrow(double x) {
    if constexpr (std::is_same_v<Q, float16>) return detail::to_f16(x);
    else if constexpr (std::is_same_v<Q, bfloat16>) return detail::to_bf16(x);
    else return static_cast<Q>(x);
}
template <class Q>
constexpr const char* type_name() {
    if constexpr (std::is_same_v<Q, float16>) return "float16";
    else if constexpr (std::is_same_v<Q, bfloat16>) return "bfloat16";
    else if constexpr (std::is_same_v<Q, float>) return "float32";
    else return "float64";
}

// Row groups in whole register tiles of the kernels (attention_kernels::tile_rows): causal-diagonal groups of
// kDiagRowsMin rows rounded up to whole tiles, query blocks of kBlockQMin rows rounded up to whole diagonal
// groups, so neither ends in a partial tile (24 and 192 rows for the 6-row AVX2, 4-row NEON and 1-row scalar
// tiles). Results depend on the diagonal groups (a group computes the keys its last row sees, and the extra
// zeros can change the order of the kernels' partial sums), so a change of these sizes changes bits; the
// golden tests (tests/cpp/test_attention_golden.cpp) pin them.
struct row_blocking {
    std::size_t diag;     // rows per group on the causal diagonal
    std::size_t block_q;  // query rows per task
};
inline row_blocking blocking_for(std::size_t tile_rows) {
    const std::size_t tile = std::max<std::size_t>(1, tile_rows);
    const std::size_t diag = (kDiagRowsMin + tile - 1) / tile * tile;
    return {diag, (kBlockQMin + diag - 1) / diag * diag};
}

inline std::ptrdiff_t sp(std::size_t v) { return static_cast<std::ptrdiff_t>(v); }

// The cache lines that hold bytes [p, p + bytes), bytes > 0.
inline prefetch_lines lines_of(const void* p, std::size_t bytes) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p), first = a & ~std::uintptr_t(63);
    return {first, (((a + bytes - 1) & ~std::uintptr_t(63)) - first) / 64 + 1};
}

// Everything constant over one call: compute type T, q storage Q, k/v storage S.
template <class T, class Q = T, class S = T>
struct plan {
    const attention_kernels<T>& k;
    kv_kernels<T, S> kv;
    attention_shape sh;
    const Q* q;
    const S *kk, *v;
    strides4 qs, ks, vs;
    const attention_options<T>& opt;
    T scale;
    std::size_t group;           // heads_q / heads_kv
    std::ptrdiff_t off;          // diag(i) = i + off
    std::ptrdiff_t lo_d, hi_d;   // visible keys: lo_d <= j - i <= hi_d
    row_blocking rb;             // row groups in whole register tiles of k
    std::size_t nqb, nsplit;     // query blocks per head, key splits per query block
    // Decoding with grouped-query attention (len_q == 1, heads_q > heads_kv, no ALiBi): one task takes all
    // the query heads of a key/value head as its rows, so K and V are read once per group, not per head.
    bool grouped;
    std::size_t rows_per_task;   // for the split partials: the rows of a task with one query block
    // A paged cache (paged_attention): key j of this plan's sequence is row j % page_size of page
    // pages[j / page_size] (kk, v point at page 0; k_page, v_page are the page strides; ks[0], vs[0] unused).
    // nullptr: the contiguous layout, key j at row j.
    const std::int32_t* pages = nullptr;
    std::size_t page_size = 0;
    std::ptrdiff_t k_page = 0, v_page = 0;
    // A paged decode whose key/value heads are adjacent in each page slot (head stride = head_dim): one task
    // takes `units` consecutive units (key/value head groups, or heads when heads_q == heads_kv), so each
    // slot's rows of all heads are gathered in one contiguous read (run_block). 1: one unit per task.
    std::size_t units = 1;
};

// Leading dimension of the packed K^T panels: a block's keys plus one panel, so that pack_kt's zero padding
// after a page segment that ends inside a panel stays inside its row (a later segment overwrites it).
constexpr std::size_t kLdKt = kBlockK + kAttnKeyPanel;
constexpr std::size_t kVpRows = (kBlockK + 31) / 32 * 16;  // pair rows of a V block for pv_pairs (zero-padded)

// Which optional per-thread buffers a call needs (the copies run_block makes of non-unit-stride data).
struct copies {
    bool q;     // Q rows packed: head_dim stride not 1, or rows going backwards
    bool v;     // V block packed: head_dim_v stride not 1
    bool keep;  // a bool mask block copied: key stride not 1
    bool bias;  // an additive mask block copied: key stride not 1
    bool gather = false;    // paged decode: K and V blocks gathered from their pages (run_block)
    std::size_t units = 1;  // the most plan::units of a call (the gathered rows' width in heads)
    bool kt = true;         // K^T panels packed: some task does not read its key rows in place (reads_direct)
};

// Whether a task of `rows` query rows (grouped: the query heads of one key/value head at one position) over K
// with head_dim stride ks3 reads its key rows in place (qk_direct: run_block's `direct`) rather than packing
// K^T (copies::kt): K's head dimension contiguous, and at most kDirectRows rows, or a grouped decode's rows up
// to kDirectGroup (qk_direct takes each group of four key rows against every row, in register tiles of its own,
// so a key row is read once for all of them). Packing K^T for a decode's few rows cost more than their
// products: 8 key/value heads of 128, 16k keys from memory, two threads, Zen 4, packed -> in place: 5 query
// heads a group float32 10.1-15.8 -> 6.8-8.3 ms, bfloat16 7.7-9.7 -> 4.0-4.5 ms; 8 heads 10.7-13.4 -> 7.5-8.5,
// 8.6-9.0 -> 4.7-5.4; 12 heads 12.9-13.5 -> 7.5-10.4, 9.4-10.6 -> 6.1-6.7; 16 heads 15.8-22.3 -> 9.2-13.4,
// 11.1-15.1 -> 6.8-8.7 (4 heads: 4.5-6.0 / 2.6-3.2). At 32-64 heads a group bfloat16 took longer in place,
// where vdpbf16ps multiplies a packed tile (64 heads on one, 8k keys: 1.52-1.70 against 1.31-1.36 ms; 8
// sequences of 512 keys, 32 heads on one: 0.30-0.33 against 0.23-0.24 ms).
inline bool reads_direct(std::size_t rows, bool grouped, std::ptrdiff_t ks3) {
    return ks3 == 1 && (rows <= kDirectRows || (grouped && rows <= kDirectGroup));
}

// Whether a paged decode gathers its key block starting at key j0 into one piece (run_block, copies::gather):
// unless every page segment starts a whole number of four-key groups and of pv pieces into the block.
inline bool gathers(std::size_t page_size, std::size_t pv_split, std::size_t j0) {
    return page_size % 4 != 0 || j0 % 4 != 0 || page_size % pv_split != 0 || j0 % pv_split != 0;
}

// Per-thread buffers, sized for the largest task (bq = block_q rows, kBlockK keys) when constructed. vbuf and
// kbuf hold V and K rows in their own storage S; vw (16-bit S only) a block of V widened to T (run_block).
// kt, s, vw, o, qbuf, vbuf and kbuf are left uninitialized: run_block writes every entry of them that a kernel
// reads (pack_kt the panels qk reads, padding included; qk the scores that softmax_step and pv read; the
// widening the V rows pv reads; o's rows of the task, zeroed at its start; the task's q rows; the copied K and
// V rows). Zero-filled, they cost memsets of 280 KiB per thread and call at head_dim 128 (and the page faults
// of memory glibc had returned since the previous call; a paged bfloat16 decode of 128 keys took 0.26 ms with
// zero-filled gather buffers, 0.04 without). A call whose tasks all read K and V in place (decodes:
// copies::kt) allocates neither the K^T panel nor the widened V block.
template <class T>
T poison() {
    if constexpr (std::is_same_v<T, float16>) return float16{0x7E00};  // quiet NaNs
    else if constexpr (std::is_same_v<T, bfloat16>) return bfloat16{0x7FC0};
    else return std::numeric_limits<T>::quiet_NaN();
}
template <class T>
std::unique_ptr<T[]> scratch(std::size_t n) {
    std::unique_ptr<T[]> p(new T[n]);
#if defined(NORMEXP_POISON_SCRATCH)
    // The sanitizer build (ci/sanitizers.sh) starts it as NaN: a kernel reading an entry before run_block
    // wrote it poisons the results, and the suites fail.
    std::fill(p.get(), p.get() + n, poison<T>());
#endif
    return p;
}

template <class T, class S = T>
struct workspace {
    std::unique_ptr<T[]> kt, s, vw, o, qbuf;
    // A bfloat16 V block as pair words for pv_pairs (kVpRows pair rows of head_dim_v words), and its rows
    // (run_block).
    std::unique_ptr<std::uint32_t[]> vp;
    std::vector<const S*> vrows;
    std::vector<T> bias, m, alpha, ones;
    std::unique_ptr<S[]> vbuf, kbuf;
    std::vector<std::uint8_t> keep;
    std::vector<double> l;
    // The segments of the current key block (run_block): at most kBlockK (pages of one key).
    std::vector<std::size_t> seg_off, seg_n;
    std::vector<const S*> seg_k, seg_v;
    // A streaming decode's prefetch list (run_block): pieces of K and V (rows, or a paged block's segments
    // of all heads), their lengths in bytes, the next piece to prefetch and how far into it (bytes from its
    // first cache line), and the list's cache lines. At most the V rows of one unit's block and the K rows
    // of the next one, or a paged block's segments and the next block's first.
    std::vector<const char*> pf_row;
    std::vector<std::size_t> pf_len;
    std::size_t pf_n = 0, pf_next = 0, pf_off = 0, pf_lines = 0;
    // A paged decode over all heads (run_block): whether unit u's scores came from the pair kernels.
    std::vector<unsigned char> unit_pairs;
    // A bfloat16 decode's q rows as pair words (bf16_q_pairs, for qk_direct_pairs): up to kDirectGroup rows of
    // each unit (reads_direct).
    std::vector<std::uint32_t> qw;
    // Sizes through scratch_elems: a head dimension near 2^64 / kBlockK (possible with stride-0 views) throws
    // std::bad_alloc instead of wrapping around to a small buffer.
    workspace(const attention_shape& sh, const copies& c, std::size_t bq) {
        using detail::scratch_elems;
        if (c.kt) kt = scratch<T>(std::max<std::size_t>(1, scratch_elems(sh.head_dim, kLdKt)));
        s = scratch<T>(std::max<std::size_t>(1, scratch_elems(bq, kBlockK)));
        o = scratch<T>(std::max<std::size_t>(1, scratch_elems(bq, sh.head_dim_v)));
        m.resize(bq);
        alpha.resize(bq);
        ones.assign(bq, T(1));
        l.resize(bq);
        seg_off.resize(kBlockK);
        seg_n.resize(kBlockK);
        seg_k.resize(kBlockK);
        seg_v.resize(kBlockK);
        pf_row.resize(3 * kBlockK);
        pf_len.resize(3 * kBlockK);
        unit_pairs.resize(c.units);
        if constexpr (std::is_same_v<S, bfloat16>)
            qw.resize(scratch_elems(scratch_elems(c.units, kDirectGroup), bf16_pair_words(sh.head_dim)));
        if (c.q) qbuf = scratch<T>(std::max<std::size_t>(1, scratch_elems(bq, sh.head_dim)));  // a task has <= bq rows
        if (c.v || c.gather)
            vbuf = scratch<S>(std::max<std::size_t>(1, scratch_elems(scratch_elems(kBlockK, c.units), sh.head_dim_v)));
        if (c.gather) kbuf = scratch<S>(std::max<std::size_t>(1, scratch_elems(scratch_elems(kBlockK, c.units), sh.head_dim)));
        if constexpr (!std::is_same_v<S, T>)
            if (c.kt) vw = scratch<T>(std::max<std::size_t>(1, scratch_elems(kBlockK, sh.head_dim_v)));
        if constexpr (std::is_same_v<S, bfloat16>)
            if (c.kt) {
                vp = scratch<std::uint32_t>(std::max<std::size_t>(1, scratch_elems(kVpRows, sh.head_dim_v)));
                vrows.resize(kBlockK);
            }
        if (c.keep) keep.resize(scratch_elems(bq, kBlockK));
        if (c.bias) bias.resize(scratch_elems(bq, kBlockK));
    }
};

// Rows of each page segment of the next key block that a paged prefill prefetches (run_block).
constexpr std::size_t kPrefetchAhead = 16;

// f(offset, k row, v row, count) for the segments of keys [j0, j0 + keys) of the K and V rows at kp, vp (one
// (sequence, key/value head)): the whole range in the contiguous layout, else the runs of keys inside one page.
template <class T, class Q, class S, class F>
void for_segments(const plan<T, Q, S>& p, const S* kp, const S* vp, std::ptrdiff_t j0, std::size_t keys, F&& f) {
    if (!p.pages) {
        f(std::size_t(0), kp + j0 * p.ks[2], vp + j0 * p.vs[2], keys);
        return;
    }
    for (std::size_t done = 0; done < keys;) {
        const std::size_t j = static_cast<std::size_t>(j0) + done, slot = j % p.page_size;
        const std::ptrdiff_t page = p.pages[j / p.page_size];  // validated by paged_attention
        const std::size_t n = std::min(keys - done, p.page_size - slot);
        f(done, kp + page * p.k_page + sp(slot) * p.ks[2], vp + page * p.v_page + sp(slot) * p.vs[2], n);
        done += n;
    }
}

// Key range [lo, hi) that query rows [i0, i0 + rows) can see.
template <class P>
void key_range(const P& p, std::size_t i0, std::size_t rows, std::ptrdiff_t& lo, std::ptrdiff_t& hi) {
    lo = std::max<std::ptrdiff_t>(0, sp(i0) + p.lo_d);
    hi = std::min<std::ptrdiff_t>(sp(p.sh.len_kv), sp(i0 + rows) - 1 + p.hi_d + 1);
    if (hi < lo) hi = lo;
}

// One task: query rows [i0, i0 + rows) of head (b, h) against keys [jlo, jhi) (grouped: query heads
// h .. h + rows of query position 0), and with p.units = n > 1 the same for the n - 1 units after it (unit u:
// head h + u rows (grouped) or h + u, key/value head h / group + u; its rows follow unit u - 1's). Leaves the
// unnormalized output in ws.o (n rows x head_dim_v) and the running statistics in ws.m, ws.l.
template <class T, class Q, class S>
void run_block(const plan<T, Q, S>& p, workspace<T, S>& ws, std::size_t b, std::size_t h, std::size_t i0,
               std::size_t rows, std::ptrdiff_t jlo, std::ptrdiff_t jhi) {
    const attention_shape& sh = p.sh;
    const attention_options<T>& opt = p.opt;
    const std::size_t D = sh.head_dim, Dv = sh.head_dim_v, hk = h / p.group, U = p.units;
    std::fill(ws.m.begin(), ws.m.begin() + sp(rows * U), -std::numeric_limits<T>::infinity());
    std::fill(ws.l.begin(), ws.l.begin() + sp(rows * U), 0.0);
    std::fill(ws.o.get(), ws.o.get() + rows * U * Dv, T(0));
    if (jhi <= jlo) return;

    // Q rows: in place when the head dimension is contiguous and rows go forward (and q is T), else packed
    // (16-bit q widened) once per task. Unit u's rows start unit_heads * u heads after unit 0's.
    const Q* qsrc = p.q + sp(b) * p.qs[0] + sp(h) * p.qs[1] + sp(i0) * p.qs[2];
    const std::ptrdiff_t qrow = p.grouped ? p.qs[1] : p.qs[2];  // from one row to the next
    const std::ptrdiff_t qunit = sp(p.grouped ? rows : 1) * p.qs[1];
    const T* qp = nullptr;
    std::size_t ldq = static_cast<std::size_t>(qrow);
    std::ptrdiff_t ldq_unit = qunit;
    if constexpr (std::is_same_v<Q, T>) {
        if (p.qs[3] == 1 && qrow >= 0 && (U == 1 || qunit >= 0)) qp = qsrc;
    }
    if (!qp) {  // ws.qbuf holds block_q x D (copies::q)
        for (std::size_t u = 0; u < U; ++u)
            for (std::size_t i = 0; i < rows; ++i) {
                const Q* src = qsrc + sp(u) * qunit + sp(i) * qrow;
                T* dst = ws.qbuf.get() + (u * rows + i) * D;
                if constexpr (std::is_same_v<Q, S> && !std::is_same_v<Q, T>) {
                    if (p.qs[3] == 1) {  // a 16-bit q row (of K's storage): the exact widening kernel
                        p.kv.widen(src, dst, D);
                        continue;
                    }
                }
                for (std::size_t d = 0; d < D; ++d) dst[d] = widen(src[sp(d) * p.qs[3]]);
            }
        qp = ws.qbuf.get();
        ldq = D;
        ldq_unit = sp(rows * D);
    }
    // The bfloat16 pair kernels only for q rows without a bfloat16 subnormal (vdpbf16ps and AMX read one as zero),
    // for a decode (its key rows read in place) only where the table has qk_direct_pairs (not with AMX), and for
    // |scale| <= kPairScaleMax: the units flush products and partial sums below 2^-126 (up to 2 D 2^-126 of a dot
    // product, kernel_table.hpp), which the scale carries into the score; up to 2^64 that is below 2^-40 for
    // any head_dim under 2^20, beyond it not (a scale of 2^125 on q, k near 2^-65 lost every score).
    constexpr T kPairScaleMax = T(0x1p64);
    // Few rows (decoding, reads_direct): scores straight from the key rows; else K^T packed once per block.
    const bool direct = reads_direct(rows, p.grouped, p.ks[3]);
    bool pairs_q = false;
    const std::size_t ldqw = bf16_pair_words(D);
    if constexpr (std::is_same_v<Q, bfloat16> && std::is_same_v<S, bfloat16>) {
        if (p.kv.qk_pairs && (!direct || p.kv.qk_direct_pairs) && std::fabs(p.scale) <= kPairScaleMax) {
            const T* q0 = qp;  // ws.qbuf: a bfloat16 q is always widened there
            pairs_q = !any_subnormal(q0, U * rows * D);
            // A decode's rows as pair words (qk_direct_pairs), once for all the task's blocks.
            if (pairs_q && direct)  // ws.qw: sized for it (workspace)
                for (std::size_t i = 0; i < U * rows; ++i) bf16_q_pairs(q0 + i * D, D, ws.qw.data() + i * ldqw);
        }
    }
    const S* kp = p.kk + sp(b) * p.ks[0] + sp(hk) * p.ks[1];
    const S* vp = p.v + sp(b) * p.vs[0] + sp(hk) * p.vs[1];

    attn_scores<T> sc{};
    sc.scale = p.scale;
    sc.softcap = T(opt.softcap);
    sc.alibi_slope = T(0);
    if (opt.alibi_slopes)
        sc.alibi_slope = T(opt.alibi_slopes[sp(b) * opt.alibi_strides[0] + sp(h) * opt.alibi_strides[1]]);
    const char* mbase = nullptr;
    std::size_t msize = 0;
    if (opt.mask_kind != attention_mask_kind::none) {
        msize = opt.mask_kind == attention_mask_kind::keep ? 1 : sizeof(T);
        mbase = static_cast<const char*>(opt.mask) +
                (sp(b) * opt.mask_strides[0] + sp(h) * opt.mask_strides[1] + sp(i0) * opt.mask_strides[2]) * sp(msize);
    }

    bool primed = false;  // a streaming decode: the K rows of its first unit prefetched
    ws.pf_n = ws.pf_next = ws.pf_off = ws.pf_lines = 0;
    for (std::ptrdiff_t j0 = jlo; j0 < jhi; j0 += sp(kBlockK)) {
        const std::size_t keys = static_cast<std::size_t>(std::min<std::ptrdiff_t>(sp(kBlockK), jhi - j0));
        // Band limits of this block in local indices; skip blocks no row can see.
        const std::ptrdiff_t shift = j0 - sp(i0);  // global (j - i) = local (j - i) + shift
        const std::size_t span = p.grouped ? 1 : rows;  // distinct query positions among the rows
        const std::ptrdiff_t dmin = shift - sp(span - 1), dmax = shift + sp(keys - 1);
        if (dmin > p.hi_d || dmax < p.lo_d) continue;
        sc.band = dmax > p.hi_d || dmin < p.lo_d;
        sc.band_lo = p.lo_d <= -kNoLimit ? -kNoLimit : p.lo_d - shift;
        sc.band_hi = p.hi_d >= kNoLimit ? kNoLimit : p.hi_d - shift;
        sc.alibi_center = p.off - shift;

        sc.bias = nullptr;
        sc.keep = nullptr;
        if (mbase) {
            const std::ptrdiff_t ms2 = p.grouped ? opt.mask_strides[1] : opt.mask_strides[2], ms3 = opt.mask_strides[3];
            const char* mb = mbase + j0 * ms3 * sp(msize);
            std::ptrdiff_t ld = ms2;
            const void* blk = mb;
            if (ms3 != 1) {  // copy this block of the mask with unit key stride (one row if broadcast)
                const std::size_t nr = ms2 == 0 ? 1 : rows;
                if (opt.mask_kind == attention_mask_kind::keep) {  // ws.keep, ws.bias: block_q x kBlockK
                    const auto* src = reinterpret_cast<const std::uint8_t*>(mb);
                    for (std::size_t i = 0; i < nr; ++i)
                        for (std::size_t j = 0; j < keys; ++j) ws.keep[i * keys + j] = src[sp(i) * ms2 + sp(j) * ms3];
                    blk = ws.keep.data();
                } else {
                    const auto* src = reinterpret_cast<const T*>(mb);
                    for (std::size_t i = 0; i < nr; ++i)
                        for (std::size_t j = 0; j < keys; ++j) ws.bias[i * keys + j] = src[sp(i) * ms2 + sp(j) * ms3];
                    blk = ws.bias.data();
                }
                ld = ms2 == 0 ? 0 : sp(keys);
            }
            if (opt.mask_kind == attention_mask_kind::keep) {
                sc.keep = static_cast<const std::uint8_t*>(blk);
                sc.keep_ld = ld;
            } else {
                sc.bias = static_cast<const T*>(blk);
                sc.bias_ld = ld;
            }
        }

        // The block's keys as segments of contiguous rows: the whole block (contiguous layout), or the runs of
        // keys inside one page. Segment g is keys [off_g, off_g + n_g) of the block; its K and V rows start at
        // kseg[g], vseg[g] (row strides ks[2], vs[2]). Each kernel below writes or reads its columns at off_g,
        // in order, so a block made of segments computes what the block in one piece does.
        std::size_t nseg = 0;
        for_segments(p, kp, vp, j0, keys, [&](std::size_t off, const S* kr, const S* vr, std::size_t n) {
            ws.seg_off[nseg] = off;
            ws.seg_n[nseg] = n;
            ws.seg_k[nseg] = kr;
            ws.seg_v[nseg] = vr;
            ++nseg;
        });
        // A paged decode (direct) reads the rows in place, page segment by page segment, when every segment starts
        // a whole number of four-key groups into the block (page_size and j0 multiples of 4): qk_direct's
        // groups of four keys (store_hsum4; a key left over: hsum) are then the ones of the block in one
        // piece, and so are the bits, with a pv that may be cut at page ends (attention_kernels::pv_split:
        // anywhere on the SIMD sets). Other page sizes, and the scalar set, gather the block into one piece
        // (copies::gather).
        const bool gather = direct && p.pages && gathers(p.page_size, p.k.pv_split, static_cast<std::size_t>(j0));
        // A decode read in place takes the prefetch pipeline below (stream) unless each head's K and V rows are
        // one contiguous run, which the hardware prefetchers follow on their own: there the pump only cost time
        // (32 heads over 8, head_dim 128, one thread, calls alternating in one process: 128 keys in cache
        // 43 -> 32 us float32 and 77 -> 65 us bfloat16, 1024 keys 647 -> 502 us; two threads, bfloat16, 4k-8k
        // keys 1.35-1.45x faster; 16k-131k keys within 5% either way). Pages and strided rows (a head's rows a
        // whole (page) slot apart) keep it: a paged decode from memory took 1.2x (float32) and 1.9x (bfloat16)
        // the time without it.
        const bool contiguous_rows = !p.pages && p.ks[2] == sp(D) && p.vs[2] == sp(Dv);
        const bool stream = direct && !gather && !contiguous_rows;
        const std::size_t next = j0 + sp(kBlockK) < jhi
                                     ? static_cast<std::size_t>(std::min<std::ptrdiff_t>(sp(kBlockK), jhi - j0 - sp(kBlockK)))
                                     : 0;
        // A decode of contiguous rows tells qk_direct that the next block's key rows follow this block's
        // (attention_kernels::qk_direct's `ahead`), so its prefetch runs on from one block into the next in
        // address order, and the stream prefetcher with it (docs/attention.md, decode from memory).
        const std::size_t ahead = direct && contiguous_rows ? next : 0;
        // A paged prefill: the next block's first rows of each page segment, K and V, into the cache while this
        // block computes (a decode prefetches through its own list, below, or as it gathers).
        if (next && p.pages && !direct) {
            for_segments(p, kp, vp, j0 + sp(kBlockK), next, [&](std::size_t, const S* kr, const S* vr, std::size_t n) {
                for (std::size_t r = 0; r < std::min(n, kPrefetchAhead); ++r) {
                    for (std::size_t b = 0; b < D * sizeof(S); b += 64)
                        NX_PREFETCH(reinterpret_cast<const char*>(kr + sp(r) * p.ks[2]) + b);
                    for (std::size_t b = 0; b < Dv * sizeof(S); b += 64)
                        NX_PREFETCH(reinterpret_cast<const char*>(vr + sp(r) * p.vs[2]) + b);
                }
            });
        }
        // pack_kt pads its panel with zeros after a segment's keys; the next segment overwrites them, and after
        // the last one the block's padding is zeroed (it may end past the last segment's own padding).
        // The pair kernels (bfloat16 q x K) for this block unless q or the block's K holds a bfloat16 subnormal,
        // which vdpbf16ps would read as zero (kernel_table.hpp): pack_kt_pairs reports it, and the block is
        // packed again for the float32 kernels.
        bool pairs = pairs_q;
        if (!direct) {
            for (std::size_t g = 0; g < nseg && pairs; ++g)
                pairs = p.kv.pack_kt_pairs(ws.seg_k[g], p.ks[2], p.ks[3], ws.seg_n[g], D, ws.kt.get() + ws.seg_off[g],
                                           kLdKt);
            if (!pairs)
                for (std::size_t g = 0; g < nseg; ++g)
                    p.kv.pack_kt(ws.seg_k[g], p.ks[2], p.ks[3], ws.seg_n[g], D, ws.kt.get() + ws.seg_off[g], kLdKt);
            if (nseg > 1) {
                const std::size_t padded = (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
                for (std::size_t d = 0; d < D; ++d)
                    std::fill(ws.kt.get() + d * kLdKt + keys, ws.kt.get() + d * kLdKt + padded, T(0));
            }
        }
        std::ptrdiff_t ldk = p.ks[2], ldv = p.vs[2];
        if (gather) {
            // A paged decode whose segments cannot be read in place (page_size or j0 not a multiple of 4, or
            // the scalar set's pv) copies the block's K and V rows into ws.kbuf / ws.vbuf (kBlockK x D,
            // kBlockK x Dv), prefetching row i of the next block as it copies row i of this one. The kernels
            // then read one contiguous segment, as for a contiguous cache, with the same bits
            // (tests/python/test_paged_attention.py).
            // With p.units = U > 1 the U heads' rows of a slot are adjacent (plan::units): one read of U x D
            // per slot, kept as rows of U x D (unit u's row at column u D).
            const std::size_t wk = U * D, wv = U * Dv;
            std::size_t i = 0;
            for (std::size_t g = 0; g < nseg; ++g)
                for (std::size_t j = 0; j < ws.seg_n[g]; ++j, ++i) {
                    if (i < next) {
                        const std::size_t jn = static_cast<std::size_t>(j0) + kBlockK + i, slot = jn % p.page_size;
                        const std::ptrdiff_t page = p.pages[jn / p.page_size];
                        const char* kn = reinterpret_cast<const char*>(kp + page * p.k_page + sp(slot) * p.ks[2]);
                        const char* vn = reinterpret_cast<const char*>(vp + page * p.v_page + sp(slot) * p.vs[2]);
                        for (std::size_t b = 0; b < wk * sizeof(S); b += 64) NX_PREFETCH(kn + b);
                        for (std::size_t b = 0; b < wv * sizeof(S); b += 64) NX_PREFETCH(vn + b);
                    }
                    const S* kr = ws.seg_k[g] + sp(j) * p.ks[2];
                    const S* vr = ws.seg_v[g] + sp(j) * p.vs[2];
                    std::copy(kr, kr + wk, ws.kbuf.get() + i * wk);
                    if (p.vs[3] == 1)
                        std::copy(vr, vr + wv, ws.vbuf.get() + i * wv);
                    else
                        for (std::size_t c = 0; c < Dv; ++c) ws.vbuf[i * Dv + c] = vr[sp(c) * p.vs[3]];
                }
            nseg = 1;
            ws.seg_off[0] = 0;
            ws.seg_n[0] = keys;
            ws.seg_k[0] = ws.kbuf.get();
            ws.seg_v[0] = ws.vbuf.get();
            ldk = sp(wk);
            ldv = sp(wv);
        } else if (p.vs[3] != 1) {  // ws.vbuf holds kBlockK x Dv (copies::v)
            for (std::size_t g = 0; g < nseg; ++g) {
                S* dst = ws.vbuf.get() + ws.seg_off[g] * Dv;
                for (std::size_t j = 0; j < ws.seg_n[g]; ++j)
                    for (std::size_t c = 0; c < Dv; ++c) dst[j * Dv + c] = ws.seg_v[g][sp(j) * p.vs[2] + sp(c) * p.vs[3]];
                ws.seg_v[g] = dst;
            }
            ldv = sp(Dv);
        }
        // A block of 16-bit V for many rows (not a decode read in place): widened once, exactly, into ws.vw, so
        // that P V runs the float32 kernel, instead of every register tile of rows widening the whole block
        // again (16 tiles of a 96-row task; the widening took a third of pv's vector operations). The same
        // values in the same FMA chains: the same bits as pv over the 16-bit rows.
        const T* vw = nullptr;
        // A bfloat16 V block of many rows with a bfloat16 q on a table with AMX: V as pair words instead, for P V on
        // the tile unit (pv_pairs), unless V holds a value outside the unit's range (pack_v_pairs then says so).
        bool vpairs = false;
        if constexpr (std::is_same_v<S, bfloat16>) {
            if (!direct && U == 1 && p.kv.pv_pairs) {
                for (std::size_t g = 0; g < nseg; ++g)
                    for (std::size_t j = 0; j < ws.seg_n[g]; ++j) ws.vrows[ws.seg_off[g] + j] = ws.seg_v[g] + sp(j) * ldv;
                vpairs = p.kv.pack_v_pairs(ws.vrows.data(), keys, Dv, ws.vp.get(), Dv);
            }
        }
        if constexpr (!std::is_same_v<S, T>) {
            if (!direct && U == 1 && !vpairs) {
                for (std::size_t g = 0; g < nseg; ++g)
                    for (std::size_t j = 0; j < ws.seg_n[g]; ++j)
                        p.kv.widen(ws.seg_v[g] + sp(j) * ldv, ws.vw.get() + (ws.seg_off[g] + j) * Dv, Dv);
                vw = ws.vw.get();
            }
        }
        // Rows [r0, r0 + nr) against the first nk keys of the block (shifting the row-relative parts of sc).
        // The unit being computed (p.units > 1: gathered rows of U heads): its first row among the task's rows,
        // its query rows and its columns in the gathered K and V rows.
        std::size_t ub = 0;
        const T* qu = qp;
        std::ptrdiff_t koff = 0, voff = 0;
        // A streaming decode (strided rows, or pages read in place) computes the scores in pieces of at
        // most kStreamPiece keys (whole four-key groups: the same FMA chains and sums, so the same bits; P V
        // stays one call per segment, as the scalar specification's pv rounds once per call) and, before
        // each kernel call, prefetches the next rows of its list into L2 (pump): the V rows of the unit being
        // computed, then the K rows of the next unit (or of the next block's first unit). So the reads of the next rows are spread over the
        // compute of these, and every row is read from memory once, in its own place: a paged cache's rows
        // sit in separate 4 KiB pages (one page apart at segment ends, heads_kv x head_dim apart inside a
        // page), where the hardware prefetchers stop, and the kernels prefetch only inside their own call.
        // (The paged decode over all heads below hands its list to the score kernels instead, take; here, a
        // row per entry of the list, that was no faster: the head-major pool of bench/paged_quick.py, two
        // threads, 42.9 ms with the pump against 44.9-45.8 with the rows' shares given to the kernels.)
        // A decode of contiguous rows has P V prefetch the next block's value rows (row: their first, which
        // follows this block's last; once per block, in its first row group's call): the stream prefetcher
        // alone fetched them late. The grouped-query decode of 32k keys (32 heads on 8, D 128, an Intel Xeon,
        // two threads) took 12.4-12.8 -> 10.8-11.0 ms in float32 and 7.2-7.6 -> 6.4 ms in bfloat16 (24-25
        // GB/s, about 70% of the machine's read bandwidth on huge pages; docs/benchmarks.md, sessions 25 and
        // 26). The key rows need none: qk_direct prefetches
        // them itself (`ahead`).
        auto next_v = [&](const S* row) {
            return direct && contiguous_rows && next > 0 ? lines_of(row, next * Dv * sizeof(S)) : prefetch_lines{};
        };
        const std::size_t piece = stream ? kStreamPiece : kBlockK;  // qk; pv takes whole segments (kBlockK)
        std::size_t pf_step = 0;  // cache lines per kernel call
        // The next n cache lines of the list, in its order; each piece's lines from the one holding its first
        // byte to the one holding its last.
        auto pump = [&](std::size_t n) {
            for (; n > 0 && ws.pf_next < ws.pf_n; ws.pf_off = 0, ++ws.pf_next) {
                const prefetch_lines piece_lines = lines_of(ws.pf_row[ws.pf_next], ws.pf_len[ws.pf_next]);
                const std::uintptr_t first = piece_lines.first, last = first + 64 * (piece_lines.count - 1);
                std::uintptr_t b = first + ws.pf_off;
                for (; b <= last && n > 0; b += 64, --n) NX_PREFETCH_L2(reinterpret_cast<const char*>(b));
                ws.pf_off = b - first;
                if (b <= last) return;  // n lines done, the piece not
            }
        };
        auto pump_all = [&] { pump(std::numeric_limits<std::size_t>::max()); };
        // The next lines of the list, at most n and within one piece, for a kernel to prefetch (prefetch_lines):
        // spread over the kernel's loads rather than issued before the call.
        auto take = [&](std::size_t n) {
            prefetch_lines pl;
            if (ws.pf_next == ws.pf_n || n == 0) return pl;
            const prefetch_lines piece_lines = lines_of(ws.pf_row[ws.pf_next], ws.pf_len[ws.pf_next]);
            const std::size_t left = piece_lines.count - ws.pf_off / 64;
            pl.first = piece_lines.first + ws.pf_off;
            pl.count = std::min(n, left);
            ws.pf_off += 64 * pl.count;
            if (pl.count == left) {
                ws.pf_off = 0;
                ++ws.pf_next;
            }
            return pl;
        };
        // Appends a piece of len bytes at row to the list.
        auto pf_add = [&](const void* row, std::size_t len) {
            ws.pf_row[ws.pf_n] = static_cast<const char*>(row);
            ws.pf_len[ws.pf_n] = len;
            ++ws.pf_n;
            ws.pf_lines += lines_of(row, len).count;
        };
        auto pf_reset = [&] { ws.pf_n = ws.pf_next = ws.pf_off = ws.pf_lines = 0; };
        // f(piece offset in the block, K row, V row, keys) for the pieces of the first nk keys of the block.
        auto for_pieces = [&](std::size_t nk, std::size_t most, auto&& f) {
            for (std::size_t sg = 0; sg < nseg && ws.seg_off[sg] < nk; ++sg) {
                const std::size_t n = std::min(ws.seg_n[sg], nk - ws.seg_off[sg]);
                for (std::size_t o = 0; o < n; o += most)
                    f(ws.seg_off[sg] + o, ws.seg_k[sg] + sp(o) * ldk, ws.seg_v[sg] + sp(o) * ldv, std::min(most, n - o));
            }
        };
        auto step = [&](std::size_t r0, std::size_t nr, std::size_t nk) {
            attn_scores<T> g = sc;
            const std::ptrdiff_t r = sp(r0);
            const std::ptrdiff_t rpos = p.grouped ? 0 : r;  // grouped rows share query position 0
            if (g.band) {
                g.band_lo = g.band_lo <= -kNoLimit ? g.band_lo : g.band_lo + rpos;
                g.band_hi = g.band_hi >= kNoLimit ? g.band_hi : g.band_hi + rpos;
            }
            g.alibi_center += rpos;
            if (g.bias) g.bias += r * g.bias_ld;
            if (g.keep) g.keep += r * g.keep_ld;
            const std::size_t rr = ub + r0;
            T* sb = ws.s.get() + rr * kBlockK;
            if (direct) {
                // A block whose K holds a bfloat16 subnormal: its scores again by the float32 kernel.
                bool done = pairs;
                if (pairs)
                    for_pieces(nk, piece, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                        pump(pf_step);
                        if (done)
                            done = p.kv.qk_direct_pairs(ws.qw.data() + rr * ldqw, ldqw, kr + koff, ldk, nr, n, D,
                                                        sb + off, kBlockK, ahead, {});
                    });
                if (!done)
                    for_pieces(nk, piece, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                        pump(pf_step);
                        p.kv.qk_direct(qu + r0 * ldq, ldq, kr + koff, ldk, nr, n, D, sb + off, kBlockK, ahead, {});
                    });
            } else {
                (pairs ? p.kv.qk_pairs : p.k.qk)(qu + r0 * ldq, ldq, ws.kt.get(), kLdKt, nr, nk, D, sb, kBlockK);
            }
            p.k.softmax_step(sb, kBlockK, nr, nk, g, ws.m.data() + rr, ws.l.data() + rr, ws.alpha.data() + rr);
            // o = alpha o + P V: the first segment rescales, the others continue each output's FMA chain
            // in key order with alpha = 1 (exact), so the chain is the one of the block in one piece.
            if (vpairs) {  // the block's pair words in one call
                p.kv.pv_pairs(sb, kBlockK, ws.vp.get(), Dv, nr, nk, Dv, ws.alpha.data() + rr, ws.o.get() + rr * Dv, Dv);
                return;
            }
            for_pieces(nk, kBlockK, [&](std::size_t off, const S*, const S* vr, std::size_t n) {
                pump(pf_step);
                const T* al = off == 0 ? ws.alpha.data() + rr : ws.ones.data();
                if (vw)
                    p.k.pv(sb + off, kBlockK, vw + off * Dv, sp(Dv), nr, n, Dv, al, ws.o.get() + rr * Dv, Dv, {});
                else
                    p.kv.pv(sb + off, kBlockK, vr + voff, ldv, nr, n, Dv, al, ws.o.get() + rr * Dv, Dv,
                            r0 == 0 ? next_v(vr + voff + sp(kBlockK) * ldv) : prefetch_lines{});
            });
        };
        // A paged decode over all the heads of its pages (U > 1: each slot's heads adjacent, plan::units) and
        // no band that splits the rows: the block in chunks of about kUnitChunkBytes of one page segment,
        // one chunk after the other, every unit's scores on a chunk before the next chunk (then every unit's
        // softmax step, then P V the same way), so a chunk's rows of all heads, one contiguous piece, are read
        // together; and the list holds the block's K chunks from the second on, then its V, then the next
        // block's first K chunk, the order in which the calls read them. Every call, scores and P V, takes as
        // many lines of the list as it reads (share: prefetch_lines), which the kernel issues a few at a time
        // between its own loads, so the prefetches run one chunk ahead of the reads at the rate of the reads.
        // Issued before each call instead (pump), a burst of dozens of prefetches stalled on the core's
        // line-fill buffers while the kernel waited behind it: the batch of bench/paged_quick.py (bfloat16, an
        // Intel Xeon, two threads, the pool on a line boundary) took 42.0-42.6 ms so, 37.2-38.0 spread
        // (float32 70.3-71.5 and 58.6-59.1 ms); a stand-alone read of random 32 KiB pages with compute between
        // the loads ran at 18.0 GB/s with one prefetch per line read and 12.8 with 64 at a time (two threads;
        // docs/benchmarks.md, session 25). Unit by unit, each unit's rows lie heads_kv x
        // head_dim apart, each in a 4 KiB page of its own, where the stream prefetcher does not follow (a plain
        // read in that order: 12 GB/s against 18 for whole chunks, one Zen 4 core); chunks of a whole large page
        // (128 slots: 512 KiB of float32 K) no longer fit L2 beside the next one. The chunk: whole four-key
        // groups, at least one, of at most kUnitChunkBytes, or twice that for 16-bit K and V, whose kernels pay
        // the same fixed cost per call for half the bytes (16 decoding sequences of 2k-16k keys, 32 heads on
        // 8, pages of 16, one thread, an Intel Xeon: float32 read at 17.7 / 16.8 / 13.7 GB/s in chunks of 4 / 8
        // / 16 slots of 4 KiB, bfloat16 at 9.6 / 11.0 / 11.4 in chunks of 4 / 8 / 16 slots of 2 KiB; on Zen 4,
        // bench/decode_read_ab.cpp, bfloat16 in chunks of 8 / 16 slots 14.5-14.9 / 17.0-17.7 GB/s at one
        // thread and 23.1-25.7 / 26.4-32.2 at two, float32 in chunks of 4 / 8 slots 16.6-17.1 / 16.3-16.8 and
        // 25.9-27.0 / 26.5-28.0). The kernel calls are those of the unit-by-unit path cut at chunk ends (P V
        // continues each chain with alpha = 1): the same bits.
        // How a band splits the rows (the unit-by-unit path below): grouped rows one at a time (the kernels'
        // band is relative to the row index; grouped rows all sit at query position 0), or row groups along a
        // causal diagonal that crosses this block; else all the rows in one step.
        const bool band_per_row = p.grouped && sc.band;
        const bool band_diagonal = !band_per_row && sc.band && sc.band_hi < kNoLimit && sc.band_hi + 1 < sp(keys);
        if (stream && U > 1 && !band_per_row && !band_diagonal && ldk > 0 && ldv > 0) {
            const std::size_t slot_bytes = static_cast<std::size_t>(ldk) * sizeof(S);
            const std::size_t chunk_max = sizeof(S) == 2 ? 2 * kUnitChunkBytes : kUnitChunkBytes;
            const std::size_t chunk = std::max<std::size_t>(4, chunk_max / slot_bytes / 4 * 4);
            // A chunk of all heads: n slots from row (ld apart), U units of width each.
            auto chunk_bytes = [&](std::size_t n, std::ptrdiff_t ld, std::size_t width) {
                return ((n - 1) * static_cast<std::size_t>(ld) + U * width) * sizeof(S);
            };
            pf_reset();
            if (!primed) {
                for_pieces(keys, chunk, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                    if (off == 0) pf_add(kr, chunk_bytes(n, ldk, D));
                });
                pump_all();
                pf_reset();
                primed = true;
            }
            for_pieces(keys, chunk, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                if (off != 0) pf_add(kr, chunk_bytes(n, ldk, D));
            });
            for_pieces(keys, chunk, [&](std::size_t, const S*, const S* vr, std::size_t n) {
                pf_add(vr, chunk_bytes(n, ldv, Dv));
            });
            if (next) {
                bool first = true;
                for_segments(p, kp, vp, j0 + sp(kBlockK), next, [&](std::size_t, const S* kr, const S*, std::size_t n) {
                    if (first) pf_add(kr, chunk_bytes(std::min(n, chunk), p.ks[2], D));
                    first = false;
                });
            }
            // Each call prefetches as many lines as it reads (its rows of one unit), so the list, as long as
            // the block's K and V, runs one chunk ahead of the reads from the first call to the last. A share
            // cut short by the end of a piece of the list (pieces that do not start on a line boundary hold a
            // line more than the reads) is owed to the next call: left behind, the list fell back by a line
            // per call and the block's last pump_all became a burst (a pool 16 bytes off the line boundary,
            // as NumPy allocates, took 1.1x the time of an aligned one).
            std::size_t owed = 0;
            auto share = [&](std::size_t n, std::size_t width) {
                const std::size_t want = (n * width * sizeof(S) + 63) / 64 + owed;
                const prefetch_lines pl = take(want);
                owed = ws.pf_next == ws.pf_n ? 0 : want - pl.count;
                return pl;
            };
            auto scores = [&](std::size_t u) { return ws.s.get() + u * rows * kBlockK; };
            // Scores: the pair kernels where q and K allow (a unit whose K holds a bfloat16 subnormal is done
            // again by the float32 kernel below), else the float32 ones.
            for (std::size_t u = 0; u < U; ++u) ws.unit_pairs[u] = pairs;
            for_pieces(keys, chunk, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                for (std::size_t u = 0; u < U; ++u) {
                    const prefetch_lines pl = share(n, D);
                    if (ws.unit_pairs[u])
                        ws.unit_pairs[u] = p.kv.qk_direct_pairs(ws.qw.data() + u * rows * ldqw, ldqw, kr + sp(u * D), ldk,
                                                                rows, n, D, scores(u) + off, kBlockK, 0, pl);
                    else
                        p.kv.qk_direct(qp + sp(u) * ldq_unit, ldq, kr + sp(u * D), ldk, rows, n, D, scores(u) + off,
                                       kBlockK, 0, pl);
                }
            });
            for (std::size_t u = 0; u < U; ++u) {
                if (pairs && !ws.unit_pairs[u])
                    for_pieces(keys, chunk, [&](std::size_t off, const S* kr, const S*, std::size_t n) {
                        p.kv.qk_direct(qp + sp(u) * ldq_unit, ldq, kr + sp(u * D), ldk, rows, n, D, scores(u) + off,
                                       kBlockK, 0, {});
                    });
                p.k.softmax_step(scores(u), kBlockK, rows, keys, sc, ws.m.data() + u * rows, ws.l.data() + u * rows,
                                 ws.alpha.data() + u * rows);
            }
            // o = alpha o + P V over whole page segments, every unit's call on a segment before the next segment:
            // the order of the list's V chunks, which the calls prefetch one chunk ahead of their reads. (Unit by
            // unit, each unit read every page while the list was still near the first: `perf` put 38% of pv's
            // samples on a V row's first load; the batch of bench/paged_quick.py, an Intel Xeon, two threads,
            // took 0.93x the time this way in bfloat16, 0.95x in float32.) A unit's first segment rescales, the
            // others continue each chain with alpha = 1, in segment order as before: the same bits.
            for_pieces(keys, kBlockK, [&](std::size_t off, const S*, const S* vr, std::size_t n) {
                for (std::size_t u = 0; u < U; ++u) {
                    const T* al = off == 0 ? ws.alpha.data() + u * rows : ws.ones.data();
                    p.kv.pv(scores(u) + off, kBlockK, vr + sp(u * Dv), ldv, rows, n, Dv, al, ws.o.get() + u * rows * Dv,
                            Dv, share(n, Dv));
                }
            });
            pump_all();
            continue;
        }
        for (std::size_t u = 0; u < U; ++u) {
            ub = u * rows;
            qu = qp + sp(u) * ldq_unit;
            koff = sp(u * D);
            voff = sp(u * Dv);
            if (stream) {
                // The prefetch list of this unit: its V rows, then the K rows of the next unit or block; the K
                // rows of the task's first unit are prefetched now, all at once.
                auto add = [&](std::ptrdiff_t jb, std::size_t n, bool kside, std::size_t unit) {
                    const std::size_t len = (kside ? D : Dv) * sizeof(S);
                    const std::ptrdiff_t ld = kside ? p.ks[2] : p.vs[2], col = sp(unit * (kside ? D : Dv));
                    for_segments(p, kp, vp, jb, n, [&](std::size_t, const S* kr, const S* vr, std::size_t m) {
                        const S* base = (kside ? kr : vr) + col;
                        for (std::size_t r = 0; r < m; ++r) pf_add(base + sp(r) * ld, len);
                    });
                };
                pf_reset();
                if (!primed) {
                    add(j0, keys, true, u);
                    pump_all();
                    pf_reset();
                    primed = true;
                }
                if (p.vs[3] == 1) add(j0, keys, false, u);
                if (u + 1 < U) add(j0, keys, true, u + 1);
                else if (next) add(j0 + sp(kBlockK), next, true, 0);
                std::size_t calls = 0;  // kernel calls of this unit, qk and pv
                for_pieces(keys, piece, [&](std::size_t, const S*, const S*, std::size_t) { ++calls; });
                for_pieces(keys, kBlockK, [&](std::size_t, const S*, const S*, std::size_t) { ++calls; });
                pf_step = (ws.pf_lines + calls - 1) / std::max<std::size_t>(1, calls);
            }
            if (band_per_row) {
                for (std::size_t r0 = 0; r0 < rows; ++r0) step(r0, 1, keys);
            } else if (band_diagonal) {
                // The causal diagonal crosses this block: in groups of rb.diag rows, only the keys the group's
                // last row can see are computed (row group g sees local keys j <= i + band_hi). A group that
                // sees none of them is skipped: its statistics and output are unchanged (alpha = 1).
                for (std::size_t r0 = 0; r0 < rows; r0 += p.rb.diag) {
                    const std::size_t nr = std::min(p.rb.diag, rows - r0);
                    const std::ptrdiff_t nk = std::min(sp(keys), sc.band_hi + sp(r0 + nr));
                    if (nk > 0) step(r0, nr, static_cast<std::size_t>(nk));
                }
            } else {
                step(0, rows, keys);
            }
            pump_all();  // what the calls did not reach (a band step of fewer keys)
        }
    }
}

// The kernel that writes a row o * (1 / l) rounded once into Q (convert_kernels::scale_*, the bits of narrow
// below) from accumulators of type O; null for float64 outputs, which finish_row's loop writes.
template <class O, class Q>
using scale_fn = void (*)(const O*, double, Q*, std::size_t);
template <class O, class Q>
scale_fn<O, Q> scale_kernel(const convert_kernels& c) {
    constexpr bool f = std::is_same_v<O, float>, d = std::is_same_v<O, double>;
    if constexpr (f && std::is_same_v<Q, float>) return c.scale_f32_to_f32;
    else if constexpr (f && std::is_same_v<Q, float16>) return c.scale_f32_to_f16;
    else if constexpr (f && std::is_same_v<Q, bfloat16>) return c.scale_f32_to_bf16;
    else if constexpr (d && std::is_same_v<Q, float>) return c.scale_f64_to_f32;
    else if constexpr (d && std::is_same_v<Q, float16>) return c.scale_f64_to_f16;
    else if constexpr (d && std::is_same_v<Q, bfloat16>) return c.scale_f64_to_bf16;
    else return nullptr;
}

// out row = o / l and lse = m + log(l); a row that saw no key (l == 0) gives 0 and -inf. O is the task's
// output row (T) or a merged accumulator (double, kept in double until the division); the output (of storage Q)
// is rounded once from o * (1 / l) in double (narrow; a unit-stride row by the call's scale kernel, cv), the
// lse (L: T, float32 for 16-bit outputs) likewise.
template <class Q, class L, class O>
void finish_row(const convert_kernels& cv, const O* o, double m, double l, std::size_t Dv, Q* out,
                std::ptrdiff_t out_c, L* lse) {
    if (l != l) {  // a NaN score (NaN or infinite input) poisons its row
        for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = narrow<Q>(std::numeric_limits<double>::quiet_NaN());
        if (lse) *lse = std::numeric_limits<L>::quiet_NaN();
        return;
    }
    if (l == 0 || m == -std::numeric_limits<double>::infinity()) {
        for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = narrow<Q>(0.0);
        if (lse) *lse = -std::numeric_limits<L>::infinity();
        return;
    }
    const double inv = 1.0 / l;
    const scale_fn<O, Q> scale = scale_kernel<O, Q>(cv);
    if (scale && out_c == 1)
        scale(o, inv, out, Dv);
    else
        for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = narrow<Q>(double(o[c]) * inv);
    if (lse) *lse = static_cast<L>(m + std::log(l));
}

// A row from pieces of its keys' online statistics merged in order (online_stats.hpp, merge_pieces): the key
// splits of a decode task, or the one piece of a task that saw all its keys. An attention sink is one more
// piece, after them: maximum sink, sum 1 (the single term exp(sink - sink)) and the zero vector as output (it
// has no value row). So M = max(m_keys, sink), L = l_keys e^(m_keys - M) + e^(sink - M), out = o / L and
// lse = M + log(L), with the rescaling by exp_scale's exact argument; a sink of -inf has weight 0 (and
// changes no bit of o / l), a row without keys gives 0 and lse = sink. acc: Dv doubles; zeros: Dv zeros.
template <class T, class Piece, class Q, class L>
void finish_merged(const convert_kernels& cv, std::size_t pieces, Piece piece_at, const double* sink, const T* zeros,
                   double* acc, std::size_t Dv, Q* out, std::ptrdiff_t out_c, L* lse) {
    const std::size_t n = pieces + (sink ? 1 : 0);
    const detail::merged mg = detail::merge_pieces<T>(
        n,
        [&](std::size_t s) { return s < pieces ? piece_at(s) : detail::piece<T>{*sink, 1.0, zeros}; },
        acc, Dv);
    // A NaN piece, or an infinite maximum (whose piece's sum is NaN too): NaN, as finish_row.
    const bool nan = mg.nan || mg.m == std::numeric_limits<double>::infinity();
    finish_row(cv, acc, mg.m, nan ? std::numeric_limits<double>::quiet_NaN() : mg.l, Dv, out, out_c, lse);
}

template <class T, class Q, class S>
void paged_impl(const paged_attention_shape& sh, const Q* q, const strides3& qs3, const S* k_pages,
                const strides4& ks4, const S* v_pages, const strides4& vs4, const std::int32_t* table,
                std::ptrdiff_t table_row, const std::int32_t* seq_lens, const std::int32_t* query_start, Q* out,
                const strides3& os3, const paged_attention_options<T>& po);

// Whether a paged decode of nq query rows takes all its units (key/value groups, or heads) in one task
// (plan::units): each slot's heads adjacent (ks4, vs4: page, slot, head, element strides; head stride = head
// dim), so that a slot's heads are read in one piece rather than heads_kv pieces heads_kv x head_dim apart; units
// whose rows are read in place (reads_direct: the up to kDirectGroup grouped query heads of one key/value head,
// or one query of each head) and all of them in one query block; no ALiBi (per-head slopes: a task per head).
// 8 query heads a key/value head (64 on 8 of 128, two threads, Zen 4), unit by unit -> all units in one task:
// 16 sequences of 2k-16k keys on pages of 16 (bench/paged_quick.py's batch) float32 75.5 -> 59.7 ms, bfloat16
// 53.5 -> 37.4 ms; a (B, L, H, D) decode of 16k keys (decode_as_pages) float32 0.75-0.77x the time at 5, 8 and
// 16 heads a group, bfloat16 0.99-1.04x.
inline bool takes_all_units(std::size_t nq, std::size_t group, std::size_t heads_q, std::size_t block_q, bool alibi,
                            const strides4& ks4, const strides4& vs4, std::size_t D, std::size_t Dv) {
    const bool grouped = nq == 1 && group > 1 && group <= block_q && !alibi;  // plan::grouped
    const std::size_t unit_rows = grouped ? group : nq;
    return nq > 0 && reads_direct(unit_rows, grouped, 1) && (grouped || group == 1) && !alibi &&
           nq * heads_q <= block_q && ks4[3] == 1 && vs4[3] == 1 && ks4[2] == sp(D) && vs4[2] == sp(Dv);
}

// A decode (one query row) on a cache whose key/value heads are adjacent at each key, (batch, len, heads, dim)
// as servers keep it: run by paged_impl as a pool of one page per batch entry, whose chunked decode over all
// heads (run_block, plan::units) reads each key's heads in one piece, where attention_impl's tasks take one
// head each, its rows heads_kv x head_dim apart (a stride the hardware prefetchers do not follow). Only where
// the two mean the same (no mask or ALiBi, per-head sinks, the query at the last key: bottom-right, or no
// band) and paged_impl takes all heads in one task (takes_all_units). Zen 4, 32 query heads on 8 key/value
// heads of 128, 16k keys from memory, two threads: float32 8.1-8.5 -> 5.2-5.7 ms, bfloat16 4.0-4.7 -> 3.0-3.2
// ms (a (batch, heads, len, dim) cache: 4.5-4.8 / 2.4-2.7 ms).
template <class T, class Q, class S>
bool decode_as_pages(const attention_shape& sh, const Q* q, const strides4& qs, const S* k, const strides4& ks,
                     const S* v, const strides4& vs, Q* out, const strides4& os, const attention_options<T>& opt) {
    constexpr std::size_t kMaxI32 = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    const std::size_t D = sh.head_dim, Dv = sh.head_dim_v;
    const bool head_sinks = opt.sinks == nullptr ||
                            (opt.sinks_strides[1] == 1 && (sh.batch == 1 || opt.sinks_strides[0] == 0));
    const bool last_key = opt.alignment == causal_alignment::bottom_right || (!opt.is_causal && opt.window == 0);
    const bool same_meaning =
        opt.mask_kind == attention_mask_kind::none && opt.alibi_slopes == nullptr && head_sinks && last_key;
    // One short sequence would be one task (paged_impl splits a sequence's keys in pieces of kSplitMinKeys or
    // more), where attention_impl's tasks share its heads out across the threads (B = 1, 128 keys, float32:
    // 41-44 us head by head, 50 us as one page).
    const bool tasks = sh.batch >= 2 || sh.len_kv >= 2 * kSplitMinKeys;
    // Slots of more than one head's width (a key stride of head_dim is the (batch, heads, len, dim) cache, which
    // attention_impl reads as one contiguous run a head).
    if (!(sh.len_q == 1 && sh.batch > 0 && tasks && sh.heads_q > 0 && sh.heads_kv > 0 && D > 0 && Dv > 0 &&
          sh.len_kv > 0 && sh.batch <= kMaxI32 && sh.len_kv <= kMaxI32 && ks[2] > sp(D) && vs[2] > sp(Dv) &&
          same_meaning))
        return false;
    const strides4 ks4{ks[0], ks[2], ks[1], ks[3]}, vs4{vs[0], vs[2], vs[1], vs[3]};  // (page, slot, head, element)
    const kernel_table& kt = (opt.isa && *opt.isa) ? detail::kernels_for(opt.isa) : detail::active_kernels();
    const std::size_t block_q = blocking_for(attn_kernels<T>(kt).tile_rows).block_q;
    if (!takes_all_units(1, sh.heads_q / sh.heads_kv, sh.heads_q, block_q, false, ks4, vs4, D, Dv)) return false;
    const paged_attention_shape ps{sh.batch, sh.batch, sh.heads_q, sh.heads_kv, D, Dv, sh.batch, sh.len_kv, 1};
    // Sequence b: page b, one query (query_start b); its block table row is starts[b], one entry.
    std::vector<std::int32_t> starts(sh.batch + 1);
    std::iota(starts.begin(), starts.end(), 0);
    const std::vector<std::int32_t> lens(sh.batch, static_cast<std::int32_t>(sh.len_kv));
    const paged_attention_options<T> po{opt.scale, opt.is_causal, opt.window, opt.softcap, nullptr,  // no ALiBi
                                        opt.sinks, opt.lse, {opt.lse_strides[0], opt.lse_strides[1]}, opt.isa};
    paged_impl<T, Q, S>(ps, q, strides3{qs[0], qs[1], qs[3]}, k, ks4, v, vs4, starts.data(), 1, lens.data(),
                        starts.data(), out, strides3{os[0], os[1], os[3]}, po);
    return true;
}

// The driver for compute type T, q / out storage Q and k / v storage S (Q = S = T, or T = float with S 16-bit
// and Q = S or float).
template <class T, class Q, class S>
void attention_impl(const attention_shape& sh, const Q* q, const strides4& qs, const S* k, const strides4& ks,
                    const S* v, const strides4& vs, Q* out, const strides4& os, const attention_options<T>& opt) {
    check(sh.heads_kv > 0 || sh.heads_q == 0, "heads_kv must be at least 1");
    check(sh.heads_kv == 0 || sh.heads_q % sh.heads_kv == 0, [&] {
        return "heads_q (" + std::to_string(sh.heads_q) + ") must be a multiple of heads_kv (" +
               std::to_string(sh.heads_kv) + ")";
    });
    check(std::isfinite(opt.scale), "scale must be finite");
    check(std::isfinite(opt.softcap) && opt.softcap >= 0, "softcap must be a finite number > 0 (or 0 for none)");
    check(opt.mask_kind == attention_mask_kind::none || opt.mask != nullptr, "mask_kind is set but mask is null");
    // The options arrive as doubles and the kernels take them in T: one beyond T's range would become inf
    // there and every score inf or NaN (softcap * tanh(x / softcap) = inf * 0 for a float32 softcap 1e39).
    constexpr double kMaxT = double(std::numeric_limits<T>::max());
    const char* const tname = type_name<T>();
    if (!(std::fabs(opt.scale) <= kMaxT))
        check(false, "scale " + detail::format_number(opt.scale) + " overflows " + tname + "; use a smaller scale or float64 inputs");
    if (!(opt.softcap <= kMaxT))
        check(false, "softcap " + detail::format_number(opt.softcap) + " overflows " + tname + "; use a smaller softcap or float64 inputs");
    const std::size_t rows_total = sh.batch * sh.heads_q * sh.len_q;
    if (rows_total == 0) return;
    check(q && k && v && (out || sh.head_dim_v == 0), "null data pointer");
    if (opt.alibi_slopes)
        for (std::size_t b = 0; b < sh.batch; ++b)
            for (std::size_t h = 0; h < sh.heads_q; ++h) {
                const double slope = opt.alibi_slopes[sp(b) * opt.alibi_strides[0] + sp(h) * opt.alibi_strides[1]];
                if (!(std::fabs(slope) <= kMaxT))
                    check(false, "alibi_slopes[" + std::to_string(b) + ", " + std::to_string(h) + "] = " +
                                     detail::format_number(slope) + " is not a finite " + tname + " number (use float64 inputs for larger slopes)");
            }

    if (opt.sinks)
        for (std::size_t b = 0; b < sh.batch; ++b)
            for (std::size_t h = 0; h < sh.heads_q; ++h) {
                const double sink = opt.sinks[sp(b) * opt.sinks_strides[0] + sp(h) * opt.sinks_strides[1]];
                if (!(std::fabs(sink) <= kMaxT || sink == -std::numeric_limits<double>::infinity()))
                    check(false, "sinks[" + std::to_string(b) + ", " + std::to_string(h) + "] = " +
                                     detail::format_number(sink) + " is neither a finite " + tname + " number nor -inf");
            }

    if (decode_as_pages<T, Q, S>(sh, q, qs, k, ks, v, vs, out, os, opt)) return;
    const kernel_table& kt = (opt.isa && *opt.isa) ? detail::kernels_for(opt.isa) : detail::active_kernels();
    const double scale = opt.scale != 0 ? opt.scale : 1.0 / std::sqrt(double(std::max<std::size_t>(1, sh.head_dim)));
    const std::ptrdiff_t off =
        opt.alignment == causal_alignment::bottom_right ? sp(sh.len_kv) - sp(sh.len_q) : 0;
    // A window of len_q + len_kv keys or more reaches past key 0 from every diagonal: no limit (and no
    // conversion of a window >= 2^63 to a negative ptrdiff_t).
    const bool windowed = opt.window > 0 && opt.window < sh.len_q + sh.len_kv;
    const attention_kernels<T>& ak = attn_kernels<T>(kt);
    plan<T, Q, S> p{ak, kv_kernels_for<T, Q, S>(kt), sh, q, k, v, qs, ks, vs, opt, static_cast<T>(scale),
                    sh.heads_q / sh.heads_kv, off, windowed ? off - sp(opt.window) + 1 : -kNoLimit,
                    opt.is_causal ? off : kNoLimit, blocking_for(ak.tile_rows), 0, 1, false, 0};
    const std::size_t block_q = p.rb.block_q;
    p.nqb = (sh.len_q + block_q - 1) / block_q;
    p.grouped = sh.len_q == 1 && p.group > 1 && p.group <= block_q && opt.alibi_slopes == nullptr;
    p.rows_per_task = p.grouped ? p.group : sh.len_q;
    const std::size_t units = p.grouped ? sh.heads_kv : sh.heads_q;  // (b, unit) pairs: heads or head groups

    // Decode: split the key range when there are too few (head, query block) tasks to share out.
    const std::size_t tasks0 = sh.batch * units * p.nqb;
    if (p.nqb == 1 && tasks0 < kSplitTasks) {
        std::ptrdiff_t lo, hi;
        key_range(p, 0, sh.len_q, lo, hi);
        const std::size_t range = static_cast<std::size_t>(hi - lo);
        p.nsplit = std::max<std::size_t>(1, std::min((kSplitTasks + tasks0 - 1) / tasks0, range / kSplitMinKeys));
    }
    const std::size_t ntasks = tasks0 * p.nsplit;
    const std::size_t Dv = sh.head_dim_v;
    const std::size_t flops = rows_total * std::max<std::size_t>(1, sh.len_kv) * (sh.head_dim + Dv + 8);
    const int nt = detail::threads_for(flops, ntasks);

    // Everything is allocated here, before the first write to out or lse: one workspace per thread (with
    // the copies this call's strides need), the partial results of split tasks (o: rows x Dv, m, l per
    // split) and the merge's accumulators.
    const bool split = p.nsplit > 1;
    const std::ptrdiff_t qrow = p.grouped ? qs[1] : qs[2];
    const bool mask_copy = opt.mask_kind != attention_mask_kind::none && opt.mask_strides[3] != 1;
    const copies cp{!(qs[3] == 1 && qrow >= 0) || !std::is_same_v<Q, T>, vs[3] != 1,
                    mask_copy && opt.mask_kind == attention_mask_kind::keep,
                    mask_copy && opt.mask_kind == attention_mask_kind::additive, false, 1,
                    !reads_direct(std::min(block_q, p.grouped ? p.group : sh.len_q), p.grouped, ks[3])};
    std::vector<workspace<T, S>> wss;
    wss.reserve(static_cast<std::size_t>(std::max(nt, 1)));
    for (int i = 0; i < std::max(nt, 1); ++i) wss.emplace_back(sh, cp, block_q);
    std::vector<T> part_o;
    std::vector<double> part_m, part_l, accd;
    if (split) {
        const std::size_t prow = detail::scratch_elems(ntasks, p.rows_per_task);
        part_o.resize(detail::scratch_elems(prow, std::max<std::size_t>(1, Dv)));
        part_m.resize(prow);
        part_l.resize(prow);
        accd.resize(std::max<std::size_t>(1, Dv));
    }
    // Sinks: the sink piece's zero output vector and, for tasks that finish their rows, a merge accumulator
    // per thread.
    std::vector<T> zeros;
    std::vector<double> sink_acc;
    const std::size_t width = std::max<std::size_t>(1, Dv), accw = detail::slot_stride<double>(width);
    if (opt.sinks) {
        zeros.assign(width, T(0));
        if (!split) sink_acc.resize(detail::scratch_elems(static_cast<std::size_t>(std::max(nt, 1)), accw));
    }
    auto sink_of = [&](std::size_t b, std::size_t h) -> const double* {
        return opt.sinks ? opt.sinks + sp(b) * opt.sinks_strides[0] + sp(h) * opt.sinks_strides[1] : nullptr;
    };

    // Tasks differ in cost (causal blocks, windows): handed out one at a time. Each writes only its own
    // rows of out and lse (or its own partial slots), so which thread runs it does not matter.
    detail::parallel_dynamic(nt, ntasks, [&](std::size_t slot, std::size_t t) {
        workspace<T, S>& ws = wss[slot];
        const std::size_t s = t % p.nsplit, qb = (t / p.nsplit) % p.nqb, bh = t / (p.nsplit * p.nqb);
        const std::size_t b = bh / units, h = p.grouped ? (bh % units) * p.group : bh % units;
        const std::size_t i0 = qb * block_q, rows = p.grouped ? p.group : std::min(block_q, sh.len_q - i0);
        std::ptrdiff_t lo, hi;
        key_range(p, i0, p.grouped ? 1 : rows, lo, hi);
        if (split) {  // piece s of the key range, in whole blocks
            const std::ptrdiff_t range = hi - lo;
            std::ptrdiff_t chunk = (range + sp(p.nsplit) - 1) / sp(p.nsplit);
            chunk = (chunk + sp(kBlockK) - 1) / sp(kBlockK) * sp(kBlockK);
            const std::ptrdiff_t a = std::min(hi, lo + sp(s) * chunk);
            hi = std::min(hi, a + chunk);
            lo = a;
        }
        run_block(p, ws, b, h, i0, rows, lo, hi);
        if (split) {
            const std::size_t rpt = p.rows_per_task;
            std::copy(ws.o.get(), ws.o.get() + rows * Dv, part_o.begin() + t * rpt * Dv);
            for (std::size_t i = 0; i < rows; ++i) {
                part_m[t * rpt + i] = double(ws.m[i]);
                part_l[t * rpt + i] = ws.l[i];
            }
            return;
        }
        for (std::size_t i = 0; i < rows; ++i) {
            // Row i is query i0 + i of head h, or (grouped) query 0 of head h + i.
            const std::size_t hh = p.grouped ? h + i : h, ii = p.grouped ? 0 : i0 + i;
            Q* orow = out + sp(b) * os[0] + sp(hh) * os[1] + sp(ii) * os[2];
            T* lrow = opt.lse ? opt.lse + sp(b) * opt.lse_strides[0] + sp(hh) * opt.lse_strides[1] +
                                    sp(ii) * opt.lse_strides[2]
                              : nullptr;
            if (opt.sinks) {
                const double mi = double(ws.m[i]), li = ws.l[i];
                const T* oi = ws.o.get() + i * Dv;
                finish_merged<T>(kt.cvt, 1, [&](std::size_t) { return detail::piece<T>{mi, li, oi}; }, sink_of(b, hh),
                                 zeros.data(), sink_acc.data() + slot * accw, Dv, orow, os[3], lrow);
            } else {
                finish_row(kt.cvt, ws.o.get() + i * Dv, double(ws.m[i]), ws.l[i], Dv, orow, os[3], lrow);
            }
        }
    });
    if (!split) return;

    // Merge the pieces of each (b, h) in order (online_stats.hpp, merge_pieces): M = max m_s,
    // l = sum l_s e^(m_s - M), o = sum o_s e^(m_s - M), then the sink if any (finish_merged); the output o / l
    // and the lse M + log(l) as finish_row.
    for (std::size_t bh = 0; bh < sh.batch * sh.heads_q; ++bh) {
        const std::size_t b = bh / sh.heads_q, h = bh % sh.heads_q;
        // The split partials of (b, h, i): tasks (base + s), row r of each.
        const std::size_t rpt = p.rows_per_task;
        const std::size_t base = p.grouped ? (b * sh.heads_kv + h / p.group) * p.nsplit : bh * p.nsplit;
        for (std::size_t i = 0; i < sh.len_q; ++i) {
            const std::size_t r = p.grouped ? h % p.group : i;
            auto at = [&](std::size_t s) { return (base + s) * rpt + r; };
            Q* orow = out + sp(b) * os[0] + sp(h) * os[1] + sp(i) * os[2];
            T* lrow = opt.lse ? opt.lse + sp(b) * opt.lse_strides[0] + sp(h) * opt.lse_strides[1] + sp(i) * opt.lse_strides[2]
                              : nullptr;
            finish_merged<T>(
                kt.cvt, p.nsplit,
                [&](std::size_t s) {
                    return detail::piece<T>{part_m[at(s)], part_l[at(s)], part_o.data() + at(s) * Dv};
                },
                sink_of(b, h), zeros.data(), accd.data(), Dv, orow, os[3], lrow);
        }
    }
}

}  // namespace

template <class T>
void attention(const attention_shape& sh, const T* q, const strides4& qs, const T* k, const strides4& ks, const T* v,
               const strides4& vs, T* out, const strides4& os, const attention_options<T>& opt) {
    attention_impl<T, T, T>(sh, q, qs, k, ks, v, vs, out, os, opt);
}

// 16-bit inputs: q, k, v of one 16-bit type, or float32 q with a 16-bit K/V cache (normexp.hpp).
#define NX_ATTENTION_16(Q, S)                                                                                   \
    void attention(const attention_shape& sh, const Q* q, const strides4& qs, const S* k, const strides4& ks, \
                   const S* v, const strides4& vs, Q* out, const strides4& os,                                \
                   const attention_options<float>& opt) {                                                     \
        attention_impl<float, Q, S>(sh, q, qs, k, ks, v, vs, out, os, opt);                                   \
    }
NX_ATTENTION_16(float16, float16)
NX_ATTENTION_16(bfloat16, bfloat16)
NX_ATTENTION_16(float, float16)
NX_ATTENTION_16(float, bfloat16)
#undef NX_ATTENTION_16

// ---- paged attention ----------------------------------------------------------------------------------
// The same tasks as attention<T>, one plan per sequence: the plan's sequence is batch 0 of a one-sequence
// problem (len_q = its new queries, len_kv = its keys, bottom-right), whose keys run_block reads through the
// block table (plan::pages) in page segments. Key splits are decided for the whole batch: a task (sequence,
// head or head group, query block) of a sequence with one query block is cut into
//   nsplit = max(1, min(ceil(kSplitTasks range / total), range / kSplitMinKeys))
// pieces, range its visible keys and total the sum of every task's range, so long sequences are split and
// short ones are not, and a batch of one sequence splits exactly as attention<T> does. The split depends only
// on the shapes; pieces are merged in order with the sink (finish_merged), by all threads.
namespace {

template <class E = error, class Msg>
void paged_check(bool ok, Msg&& msg) {  // msg as for check
    if (!ok) throw E("normexp.paged_attention: " + detail::message(std::forward<Msg>(msg)));
}

struct paged_task {
    std::size_t seq, unit, qb, split, nsplit;
    std::size_t part;  // split tasks: the first of their rows in the partial results
};

}  // namespace

namespace {

// Compute type T, q / out storage Q, page storage S (as attention_impl).
template <class T, class Q, class S>
void paged_impl(const paged_attention_shape& sh, const Q* q, const strides3& qs3, const S* k_pages,
                const strides4& ks4, const S* v_pages, const strides4& vs4, const std::int32_t* table,
                std::ptrdiff_t table_row, const std::int32_t* seq_lens, const std::int32_t* query_start, Q* out,
                const strides3& os3, const paged_attention_options<T>& po) {
    using std::to_string;
    paged_check(sh.heads_kv > 0 || sh.heads_q == 0, "heads_kv must be at least 1");
    paged_check(sh.heads_kv == 0 || sh.heads_q % sh.heads_kv == 0, [&] {
        return "heads_q (" + to_string(sh.heads_q) + ") must be a multiple of heads_kv (" + to_string(sh.heads_kv) + ")";
    });
    paged_check(std::isfinite(po.scale), "scale must be finite");
    paged_check(std::isfinite(po.softcap) && po.softcap >= 0, "softcap must be a finite number > 0 (or 0 for none)");
    constexpr double kMaxT = double(std::numeric_limits<T>::max());
    const char* const tname = sizeof(T) == 4 ? "float32" : "float64";
    paged_check(std::fabs(po.scale) <= kMaxT, [&] { return "scale " + detail::format_number(po.scale) + " overflows " + tname; });
    paged_check(po.softcap <= kMaxT, [&] { return "softcap " + detail::format_number(po.softcap) + " overflows " + tname; });
    // The table: every offset, length and page index this call reads, checked before anything is read. Each
    // is copied once and the copy is checked and used (query_start, seq_lens, and the used entries of the
    // table), so memory that changes after the checks (the caller's other threads: the GIL is released; an
    // out that overlaps the table) cannot send a read outside the pool.
    auto first_offset = [&](std::int32_t q0) {
        paged_check(q0 == 0, [&] { return "query_start[0] must be 0, got " + to_string(q0); });
    };
    if (sh.num_seqs == 0) {
        if (query_start) first_offset(query_start[0]);
        paged_check(sh.total_queries == 0, "total_queries must be 0 without sequences");
        return;
    }
    paged_check(seq_lens && query_start, "seq_lens and query_start must not be null");
    const std::vector<std::int32_t> starts(query_start, query_start + sh.num_seqs + 1);
    const std::vector<std::int32_t> lens(seq_lens, seq_lens + sh.num_seqs);
    first_offset(starts[0]);
    for (std::size_t s = 0; s < sh.num_seqs; ++s) {
        const std::int32_t a = starts[s], b = starts[s + 1];
        paged_check(b >= a, [&] {
            return "query_start must be non-decreasing: sequence " + to_string(s) + " has query_start[" +
                   to_string(s + 1) + "] = " + to_string(b) + " < query_start[" + to_string(s) + "] = " + to_string(a);
        });
    }
    // From 0, non-decreasing, to total_queries: every offset is in [0, total_queries].
    paged_check(std::size_t(starts[sh.num_seqs]) == sh.total_queries, [&] {
        return "query_start[" + to_string(sh.num_seqs) + "] = " + to_string(starts[sh.num_seqs]) +
               " must be total_queries = " + to_string(sh.total_queries);
    });
    std::vector<std::size_t> first_page(sh.num_seqs);  // sequence s's pages: pages[first_page[s] ...]
    std::vector<std::int32_t> pages;
    pages.reserve(1);  // data() is not null (a plan's null pages mean a contiguous cache)
    for (std::size_t s = 0; s < sh.num_seqs; ++s) {
        const std::int32_t len = lens[s];
        first_page[s] = pages.size();
        paged_check(len >= 0, [&] {
            return "sequence " + to_string(s) + ": seq_lens[" + to_string(s) + "] = " + to_string(len) + " is negative";
        });
        if (len == 0) continue;
        paged_check(sh.page_size > 0, [&] {
            return "page_size is 0 (pages of no keys), but sequence " + to_string(s) + " has " + to_string(len) + " keys";
        });
        const std::size_t need = (std::size_t(len) + sh.page_size - 1) / sh.page_size;
        paged_check(need <= sh.max_pages, [&] {
            return "sequence " + to_string(s) + ": seq_lens[" + to_string(s) + "] = " + to_string(len) + " needs " +
                   to_string(need) + " pages of " + to_string(sh.page_size) + " keys, but block_table has " +
                   to_string(sh.max_pages) + " columns";
        });
        paged_check(table != nullptr, "block_table must not be null");
        const std::int32_t* row = table + sp(s) * table_row;
        for (std::size_t i = 0; i < need; ++i) {
            const std::int32_t page = row[i];
            if (!(page >= 0 && std::size_t(page) < sh.num_pages))
                paged_check<index_error>(false, "block_table[" + to_string(s) + ", " + to_string(i) + "] = " +
                                                    to_string(page) + ": page " + to_string(i) + " of sequence " +
                                                    to_string(s) + " is not a page of the pool (k_pages has " +
                                                    to_string(sh.num_pages) + " pages)");
            pages.push_back(page);
        }
    }
    for (const bool sink : {false, true}) {
        const double* arr = sink ? po.sinks : po.alibi_slopes;
        const char* name = sink ? "sinks" : "alibi_slopes";
        if (!arr) continue;
        for (std::size_t h = 0; h < sh.heads_q; ++h) {
            if (!(std::fabs(arr[h]) <= kMaxT || (sink && arr[h] == -std::numeric_limits<double>::infinity())))
                paged_check(false, std::string(name) + "[" + to_string(h) + "] = " + detail::format_number(arr[h]) +
                                       " is not a finite " + tname + " number" + (sink ? " (or -inf)" : ""));
        }
    }
    if (sh.total_queries == 0 || sh.heads_q == 0) return;
    paged_check(q && k_pages && v_pages && (out || sh.head_dim_v == 0), "null data pointer");

    const kernel_table& kt = (po.isa && *po.isa) ? detail::kernels_for(po.isa) : detail::active_kernels();
    const attention_kernels<T>& ak = attn_kernels<T>(kt);
    attention_options<T> aopt;  // what run_block reads: per head (sequence = batch 0 of its plan)
    aopt.scale = po.scale;
    aopt.is_causal = po.is_causal;
    aopt.alignment = causal_alignment::bottom_right;
    aopt.window = po.window;
    aopt.softcap = po.softcap;
    aopt.alibi_slopes = po.alibi_slopes;
    aopt.alibi_strides = {0, 1};
    aopt.sinks = po.sinks;
    aopt.sinks_strides = {0, 1};
    const double scale = po.scale != 0 ? po.scale : 1.0 / std::sqrt(double(std::max<std::size_t>(1, sh.head_dim)));
    const row_blocking rb = blocking_for(ak.tile_rows);
    const std::size_t block_q = rb.block_q, group = sh.heads_q / sh.heads_kv, Dv = sh.head_dim_v;

    // One plan per sequence, then the tasks in order (sequence, unit, query block, split).
    std::vector<plan<T, Q, S>> plans;
    plans.reserve(sh.num_seqs);
    std::size_t total_range = 0;
    for (std::size_t s = 0; s < sh.num_seqs; ++s) {
        const std::size_t nq = std::size_t(starts[s + 1] - starts[s]), len = std::size_t(lens[s]);
        const attention_shape one{1, sh.heads_q, sh.heads_kv, nq, len, sh.head_dim, Dv};
        const std::ptrdiff_t off = sp(len) - sp(nq);
        const bool windowed = po.window > 0 && po.window < nq + len;
        plan<T, Q, S> p{ak, kv_kernels_for<T, Q, S>(kt), one, q + sp(std::size_t(starts[s])) * qs3[0], k_pages, v_pages,
                  strides4{0, qs3[1], qs3[0], qs3[2]}, strides4{0, ks4[2], ks4[1], ks4[3]},
                  strides4{0, vs4[2], vs4[1], vs4[3]}, aopt, static_cast<T>(scale), group, off,
                  windowed ? off - sp(po.window) + 1 : -kNoLimit, po.is_causal ? off : kNoLimit, rb,
                  (nq + block_q - 1) / block_q, 1, false, 0, pages.data() + first_page[s], sh.page_size, ks4[0], vs4[0]};
        p.grouped = nq == 1 && group > 1 && group <= block_q && po.alibi_slopes == nullptr;
        const std::size_t unit_rows = p.grouped ? group : nq, nunits = p.grouped ? sh.heads_kv : sh.heads_q;
        if (takes_all_units(nq, group, sh.heads_q, block_q, po.alibi_slopes != nullptr, ks4, vs4, sh.head_dim, Dv))
            p.units = nunits;
        p.rows_per_task = unit_rows * p.units;
        if (p.nqb == 1) {
            std::ptrdiff_t lo, hi;
            key_range(p, 0, p.grouped ? 1 : nq, lo, hi);
            total_range += (p.grouped ? sh.heads_kv : sh.heads_q) * std::size_t(hi - lo);
        }
        plans.push_back(p);
    }
    std::vector<paged_task> tasks;
    std::vector<std::size_t> merges;  // the first task of each split (sequence, unit)
    std::size_t parts = 0;
    for (std::size_t s = 0; s < sh.num_seqs; ++s) {
        const plan<T, Q, S>& p = plans[s];
        const std::size_t units = (p.grouped ? sh.heads_kv : sh.heads_q) / p.units;
        std::size_t nsplit = 1;
        if (p.nqb == 1 && total_range > 0) {
            std::ptrdiff_t lo, hi;
            key_range(p, 0, p.grouped ? 1 : p.sh.len_q, lo, hi);
            const std::size_t range = std::size_t(hi - lo);
            const std::size_t want = (kSplitTasks * range + total_range - 1) / total_range;
            nsplit = std::max<std::size_t>(1, std::min(want, range / kSplitMinKeys));
        }
        for (std::size_t u = 0; u < units; ++u)
            for (std::size_t qb = 0; qb < p.nqb; ++qb) {
                if (nsplit > 1) merges.push_back(tasks.size());
                for (std::size_t sp_ = 0; sp_ < nsplit; ++sp_) {
                    tasks.push_back({s, u, qb, sp_, nsplit, parts});
                    if (nsplit > 1) parts += p.rows_per_task;
                }
            }
    }
    std::size_t flops = 0;
    for (std::size_t s = 0; s < sh.num_seqs; ++s)
        flops += plans[s].sh.len_q * sh.heads_q * std::max<std::size_t>(1, plans[s].sh.len_kv) * (sh.head_dim + Dv + 8);
    const int nt = detail::threads_for(flops, tasks.size());

    // Everything allocated before the first write (as attention<T>).
    std::size_t max_units = 1;
    for (const plan<T, Q, S>& p : plans) max_units = std::max(max_units, p.units);
    // The gather buffers (kBlockK x units rows of K and of V: 512 KiB per thread for 8 bfloat16 heads of 128,
    // zero-filled and page-faulted on every call) only where a task reads its key rows in place (a sequence's
    // last query block, reads_direct) and may gather: its blocks start at keys lo + a multiple of kBlockK.
    bool kt_any = false, gather_any = false;
    for (const plan<T, Q, S>& p : plans) {
        kt_any = kt_any || !reads_direct(std::min(block_q, p.grouped ? p.group : p.sh.len_q), p.grouped, ks4[3]);
        if (p.nqb == 0) continue;
        const std::size_t i0 = (p.nqb - 1) * block_q, rows = p.grouped ? p.group : p.sh.len_q - i0;
        if (!reads_direct(rows, p.grouped, ks4[3])) continue;
        std::ptrdiff_t lo, hi;
        key_range(p, i0, p.grouped ? 1 : rows, lo, hi);
        gather_any = gather_any || (hi > lo && (gathers(sh.page_size, ak.pv_split, std::size_t(lo)) ||
                                                gathers(sh.page_size, ak.pv_split, kBlockK)));
    }
    const copies cp{!(qs3[2] == 1 && qs3[0] >= 0 && qs3[1] >= 0) || !std::is_same_v<Q, T>, vs4[3] != 1, false, false, gather_any, max_units, kt_any};
    const attention_shape wsh{1, sh.heads_q, sh.heads_kv, block_q, 0, sh.head_dim, Dv};
    std::vector<workspace<T, S>> wss;
    wss.reserve(static_cast<std::size_t>(std::max(nt, 1)));
    for (int i = 0; i < std::max(nt, 1); ++i) wss.emplace_back(wsh, cp, block_q);
    const std::size_t width = std::max<std::size_t>(1, Dv), accw = detail::slot_stride<double>(width);
    std::vector<T> part_o(detail::scratch_elems(parts, width)), zeros(width, T(0));
    std::vector<double> part_m(parts), part_l(parts),
        accs(detail::scratch_elems(static_cast<std::size_t>(std::max(nt, 1)), accw));

    auto out_row = [&](std::size_t s, std::size_t hh, std::size_t ii, Q*& orow, T*& lrow) {
        const std::ptrdiff_t r = sp(std::size_t(starts[s]) + ii);
        orow = out + r * os3[0] + sp(hh) * os3[1];
        lrow = po.lse ? po.lse + r * po.lse_strides[0] + sp(hh) * po.lse_strides[1] : nullptr;
    };
    detail::parallel_dynamic(nt, tasks.size(), [&](std::size_t slot, std::size_t t) {
        const paged_task& tk = tasks[t];
        const plan<T, Q, S>& p = plans[tk.seq];
        workspace<T, S>& ws = wss[slot];
        const std::size_t h = p.grouped ? tk.unit * group : tk.unit;
        const std::size_t i0 = tk.qb * block_q, rows = p.grouped ? group : std::min(block_q, p.sh.len_q - i0);
        std::ptrdiff_t lo, hi;
        key_range(p, i0, p.grouped ? 1 : rows, lo, hi);
        if (tk.nsplit > 1) {  // piece tk.split of the key range, in whole blocks (as attention<T>)
            std::ptrdiff_t chunk = (hi - lo + sp(tk.nsplit) - 1) / sp(tk.nsplit);
            chunk = (chunk + sp(kBlockK) - 1) / sp(kBlockK) * sp(kBlockK);
            const std::ptrdiff_t a = std::min(hi, lo + sp(tk.split) * chunk);
            hi = std::min(hi, a + chunk);
            lo = a;
        }
        run_block(p, ws, 0, h, i0, rows, lo, hi);
        const std::size_t all = rows * p.units;  // row i: unit i / rows, row i % rows of it
        if (tk.nsplit > 1) {
            std::copy(ws.o.get(), ws.o.get() + all * Dv, part_o.begin() + sp(tk.part * Dv));
            for (std::size_t i = 0; i < all; ++i) {
                part_m[tk.part + i] = double(ws.m[i]);
                part_l[tk.part + i] = ws.l[i];
            }
            return;
        }
        for (std::size_t i = 0; i < all; ++i) {
            const std::size_t hh = p.grouped ? h + i : h + i / rows, ii = p.grouped ? 0 : i0 + i % rows;
            Q* orow;
            T* lrow;
            out_row(tk.seq, hh, ii, orow, lrow);
            if (po.sinks) {
                const double mi = double(ws.m[i]), li = ws.l[i];
                const T* oi = ws.o.get() + i * Dv;
                finish_merged<T>(kt.cvt, 1, [&](std::size_t) { return detail::piece<T>{mi, li, oi}; }, po.sinks + hh,
                                 zeros.data(), accs.data() + slot * accw, Dv, orow, os3[2], lrow);
            } else {
                finish_row(kt.cvt, ws.o.get() + i * Dv, double(ws.m[i]), ws.l[i], Dv, orow, os3[2], lrow);
            }
        }
    });
    // The split tasks' pieces, merged in order per row, with the sink (finish_merged).
    detail::parallel_dynamic(nt, merges.size(), [&](std::size_t slot, std::size_t g) {
        const paged_task& first = tasks[merges[g]];
        const plan<T, Q, S>& p = plans[first.seq];
        const std::size_t h = p.grouped ? first.unit * group : first.unit;
        const std::size_t rows = p.rows_per_task / p.units;
        for (std::size_t i = 0; i < p.rows_per_task; ++i) {
            const std::size_t hh = p.grouped ? h + i : h + i / rows, ii = p.grouped ? 0 : i % rows;
            Q* orow;
            T* lrow;
            out_row(first.seq, hh, ii, orow, lrow);
            finish_merged<T>(
                kt.cvt, first.nsplit,
                [&](std::size_t sidx) {
                    const std::size_t r = tasks[merges[g] + sidx].part + i;
                    return detail::piece<T>{part_m[r], part_l[r], part_o.data() + r * Dv};
                },
                po.sinks ? po.sinks + hh : nullptr, zeros.data(), accs.data() + slot * accw, Dv, orow, os3[2], lrow);
        }
    });
}

}  // namespace

template <class T>
void paged_attention(const paged_attention_shape& sh, const T* q, const strides3& qs3, const T* k_pages,
                     const strides4& ks4, const T* v_pages, const strides4& vs4, const std::int32_t* table,
                     std::ptrdiff_t table_row, const std::int32_t* seq_lens, const std::int32_t* query_start, T* out,
                     const strides3& os3, const paged_attention_options<T>& po) {
    paged_impl<T, T, T>(sh, q, qs3, k_pages, ks4, v_pages, vs4, table, table_row, seq_lens, query_start, out, os3, po);
}

// 16-bit pages: q and pages of one 16-bit type, or a float32 q over 16-bit pages (normexp.hpp).
#define NX_PAGED_16(Q, S)                                                                                       \
    void paged_attention(const paged_attention_shape& sh, const Q* q, const strides3& qs3, const S* k_pages,   \
                         const strides4& ks4, const S* v_pages, const strides4& vs4, const std::int32_t* table,  \
                         std::ptrdiff_t table_row, const std::int32_t* seq_lens, const std::int32_t* query_start, \
                         Q* out, const strides3& os3, const paged_attention_options<float>& po) {               \
        paged_impl<float, Q, S>(sh, q, qs3, k_pages, ks4, v_pages, vs4, table, table_row, seq_lens, query_start, out, \
                                os3, po);                                                                        \
    }
NX_PAGED_16(float16, float16)
NX_PAGED_16(bfloat16, bfloat16)
NX_PAGED_16(float, float16)
NX_PAGED_16(float, bfloat16)
#undef NX_PAGED_16

namespace {

// Q: the storage of the parts' outputs and of out, L: of the lses (T; float32 for 16-bit outputs). A 16-bit
// part row is widened into the thread's scratch (parts x dv floats) before the merge, which is then the
// float32 one; the output is rounded once from the double accumulator as attention's is.
template <class Q, class L>
void merge_impl(std::size_t parts, const Q* const* outs, const L* const* lses, std::size_t rows, std::size_t dv,
                Q* out, L* lse) {
    using W = decltype(widen(Q{}));  // the parts' values as merge_pieces reads them
    if (rows == 0) return;
    check(parts > 0, "merge_attention needs at least one part");
    const int nt = detail::threads_for(parts * rows * (dv + 1), rows);
    const convert_kernels& cv = detail::active_kernels().cvt;
    // One accumulator row per thread (and for 16-bit parts their widened rows), allocated before anything is
    // written.
    const std::size_t width = std::max<std::size_t>(1, dv), accw = detail::slot_stride<double>(width);
    const std::size_t nthr = static_cast<std::size_t>(std::max(nt, 1));
    const std::size_t widew = detail::slot_stride<W>(detail::scratch_elems(parts, width));
    std::vector<double> accs(detail::scratch_elems(nthr, accw));
    std::vector<W> wide;
    if constexpr (!std::is_same_v<Q, W>) wide.resize(detail::scratch_elems(nthr, widew));
    detail::parallel_slices(nt, rows, [&](std::size_t slot, std::size_t r0, std::size_t r1) {
        double* const acc = accs.data() + slot * accw;
        for (std::size_t r = r0; r < r1; ++r) {
            auto part_row = [&](std::size_t p) -> const W* {
                if constexpr (std::is_same_v<Q, W>) {
                    return outs[p] + r * dv;
                } else {
                    W* w = wide.data() + slot * widew + p * width;
                    for (std::size_t c = 0; c < dv; ++c) w[c] = widen(outs[p][r * dv + c]);
                    return w;
                }
            };
            // Part p is a piece of the online rule with maximum lse_p and sum 1 (its out is normalized): merged
            // (online_stats.hpp), s = sum_p e^(lse_p - M) in [1, parts], out = sum_p e^(lse_p - M) out_p / s and
            // lse = M + log(s). The weights e^(lse_p - M) / s sum to 1 (a few u) even where M + log(s) rounds
            // to M (|M| > 2^53 log(s)), which would make e^(lse_p - lse) ~1 for every part. Parts with lse -inf
            // (no key) are skipped.
            const detail::merged mg = detail::merge_pieces<W>(
                parts,
                [&](std::size_t p) {
                    const double l = double(lses[p][r]);
                    return detail::piece<W>{l, l == -std::numeric_limits<double>::infinity() ? 0.0 : 1.0, part_row(p)};
                },
                acc, dv);
            Q* orow = out + r * dv;
            if (mg.nan || mg.m == std::numeric_limits<double>::infinity()) {
                for (std::size_t c = 0; c < dv; ++c) orow[c] = narrow<Q>(std::numeric_limits<double>::quiet_NaN());
                if (lse) lse[r] = mg.nan ? std::numeric_limits<L>::quiet_NaN() : std::numeric_limits<L>::infinity();
                continue;
            }
            finish_row(cv, acc, mg.m, mg.l, dv, orow, 1, lse ? lse + r : nullptr);  // M = -inf: 0 and -inf
        }
    });
}

}  // namespace

template <class T>
void merge_attention(std::size_t parts, const T* const* outs, const T* const* lses, std::size_t rows, std::size_t dv,
                     T* out, T* lse) {
    merge_impl<T, T>(parts, outs, lses, rows, dv, out, lse);
}
void merge_attention(std::size_t parts, const float16* const* outs, const float* const* lses, std::size_t rows,
                     std::size_t dv, float16* out, float* lse) {
    merge_impl<float16, float>(parts, outs, lses, rows, dv, out, lse);
}
void merge_attention(std::size_t parts, const bfloat16* const* outs, const float* const* lses, std::size_t rows,
                     std::size_t dv, bfloat16* out, float* lse) {
    merge_impl<bfloat16, float>(parts, outs, lses, rows, dv, out, lse);
}

template void attention<float>(const attention_shape&, const float*, const strides4&, const float*, const strides4&,
                               const float*, const strides4&, float*, const strides4&, const attention_options<float>&);
template void attention<double>(const attention_shape&, const double*, const strides4&, const double*,
                                const strides4&, const double*, const strides4&, double*, const strides4&,
                                const attention_options<double>&);
template void paged_attention<float>(const paged_attention_shape&, const float*, const strides3&, const float*,
                                     const strides4&, const float*, const strides4&, const std::int32_t*,
                                     std::ptrdiff_t, const std::int32_t*, const std::int32_t*, float*, const strides3&,
                                     const paged_attention_options<float>&);
template void paged_attention<double>(const paged_attention_shape&, const double*, const strides3&, const double*,
                                      const strides4&, const double*, const strides4&, const std::int32_t*,
                                      std::ptrdiff_t, const std::int32_t*, const std::int32_t*, double*,
                                      const strides3&, const paged_attention_options<double>&);
template void merge_attention<float>(std::size_t, const float* const*, const float* const*, std::size_t, std::size_t,
                                     float*, float*);
template void merge_attention<double>(std::size_t, const double* const*, const double* const*, std::size_t,
                                      std::size_t, double*, double*);

}  // namespace normexp
