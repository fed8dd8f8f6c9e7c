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
// read once per group rather than once per query head.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "format.hpp"
#include "normexp/normexp.hpp"
#include "online_stats.hpp"
#include "threading.hpp"

namespace normexp {
namespace {

constexpr std::size_t kBlockQMin = 96;      // query rows per task: at least this many (see row_blocking)
constexpr std::size_t kBlockK = 128;        // keys per block (a multiple of kAttnKeyPanel)
constexpr std::size_t kDirectRows = 4;      // up to this many query rows: no K^T packing (qk_direct)
constexpr std::size_t kDiagRowsMin = 24;    // row groups on the causal diagonal: at least this many rows
constexpr std::size_t kSplitTasks = 32;     // decode: split keys until there are about this many tasks
constexpr std::size_t kSplitMinKeys = 512;  // decode: never split below this many keys per piece
static_assert(kBlockK % kAttnKeyPanel == 0, "key blocks must be whole panels");

constexpr std::ptrdiff_t kNoLimit = std::numeric_limits<std::ptrdiff_t>::max() / 4;

void check(bool ok, const std::string& msg) {
    if (!ok) throw error("normexp.attention: " + msg);
}

template <class T>
const attention_kernels<T>& attn_kernels(const kernel_table& kt) {
    if constexpr (sizeof(T) == 4) return kt.attn_f32; else return kt.attn_f64;
}

// Row groups in whole register tiles of the kernels (attention_kernels::tile_rows): causal-diagonal groups of
// kDiagRowsMin rows rounded up to whole tiles, query blocks of kBlockQMin rows rounded up to whole diagonal
// groups, so neither ends in a partial tile (24 and 96 rows for the 6-row AVX2, 4-row NEON and 1-row scalar
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

// Everything constant over one call.
template <class T>
struct plan {
    const attention_kernels<T>& k;
    attention_shape sh;
    const T *q, *kk, *v;
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
};

// Which optional per-thread buffers a call needs (the copies run_block makes of non-unit-stride data).
struct copies {
    bool q;     // Q rows packed: head_dim stride not 1, or rows going backwards
    bool v;     // V block packed: head_dim_v stride not 1
    bool keep;  // a bool mask block copied: key stride not 1
    bool bias;  // an additive mask block copied: key stride not 1
};

// Per-thread buffers, sized for the largest task (bq = block_q rows, kBlockK keys) when constructed.
template <class T>
struct workspace {
    std::vector<T> kt, s, o, qbuf, vbuf, bias, m, alpha;
    std::vector<std::uint8_t> keep;
    std::vector<double> l;
    // Sizes through scratch_elems: a head dimension near 2^64 / kBlockK (possible with stride-0 views) throws
    // std::bad_alloc instead of wrapping around to a small buffer.
    workspace(const attention_shape& sh, const copies& c, std::size_t bq) {
        using detail::scratch_elems;
        kt.resize(std::max<std::size_t>(1, scratch_elems(sh.head_dim, kBlockK)));
        s.resize(scratch_elems(bq, kBlockK));
        o.resize(std::max<std::size_t>(1, scratch_elems(bq, sh.head_dim_v)));
        m.resize(bq);
        alpha.resize(bq);
        l.resize(bq);
        if (c.q) qbuf.resize(std::max<std::size_t>(1, scratch_elems(bq, sh.head_dim)));  // a task has <= bq rows
        if (c.v) vbuf.resize(std::max<std::size_t>(1, scratch_elems(kBlockK, sh.head_dim_v)));
        if (c.keep) keep.resize(scratch_elems(bq, kBlockK));
        if (c.bias) bias.resize(scratch_elems(bq, kBlockK));
    }
};

// Key range [lo, hi) that query rows [i0, i0 + rows) can see.
template <class T>
void key_range(const plan<T>& p, std::size_t i0, std::size_t rows, std::ptrdiff_t& lo, std::ptrdiff_t& hi) {
    lo = std::max<std::ptrdiff_t>(0, sp(i0) + p.lo_d);
    hi = std::min<std::ptrdiff_t>(sp(p.sh.len_kv), sp(i0 + rows) - 1 + p.hi_d + 1);
    if (hi < lo) hi = lo;
}

// One task: query rows [i0, i0 + rows) of head (b, h) against keys [jlo, jhi) (grouped: query heads
// h .. h + rows of query position 0). Leaves the unnormalized output in ws.o (rows x head_dim_v) and the
// running statistics in ws.m, ws.l.
template <class T>
void run_block(const plan<T>& p, workspace<T>& ws, std::size_t b, std::size_t h, std::size_t i0, std::size_t rows,
               std::ptrdiff_t jlo, std::ptrdiff_t jhi) {
    const attention_shape& sh = p.sh;
    const attention_options<T>& opt = p.opt;
    const std::size_t D = sh.head_dim, Dv = sh.head_dim_v, hk = h / p.group;
    std::fill(ws.m.begin(), ws.m.begin() + rows, -std::numeric_limits<T>::infinity());
    std::fill(ws.l.begin(), ws.l.begin() + rows, 0.0);
    std::fill(ws.o.begin(), ws.o.begin() + rows * Dv, T(0));
    if (jhi <= jlo) return;

    // Q rows: in place when the head dimension is contiguous and rows go forward, else packed once.
    const T* qp = p.q + sp(b) * p.qs[0] + sp(h) * p.qs[1] + sp(i0) * p.qs[2];
    const std::ptrdiff_t qrow = p.grouped ? p.qs[1] : p.qs[2];  // from one row to the next
    std::size_t ldq = static_cast<std::size_t>(qrow);
    if (!(p.qs[3] == 1 && qrow >= 0)) {  // ws.qbuf holds block_q x D (copies::q)
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t d = 0; d < D; ++d) ws.qbuf[i * D + d] = qp[sp(i) * qrow + sp(d) * p.qs[3]];
        qp = ws.qbuf.data();
        ldq = D;
    }
    const T* kp = p.kk + sp(b) * p.ks[0] + sp(hk) * p.ks[1];
    const T* vp = p.v + sp(b) * p.vs[0] + sp(hk) * p.vs[1];

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

        // Few rows (decoding): scores straight from the key rows; else pack K^T once for all the rows.
        const bool direct = rows <= kDirectRows && p.ks[3] == 1;
        const T* kb = kp + j0 * p.ks[2];
        if (!direct) p.k.pack_kt(kb, p.ks[2], p.ks[3], keys, D, ws.kt.data(), kBlockK);
        const T* vb = vp + j0 * p.vs[2];
        std::ptrdiff_t ldv = p.vs[2];
        if (p.vs[3] != 1) {  // ws.vbuf holds kBlockK x Dv (copies::v)
            for (std::size_t j = 0; j < keys; ++j)
                for (std::size_t c = 0; c < Dv; ++c) ws.vbuf[j * Dv + c] = vb[sp(j) * p.vs[2] + sp(c) * p.vs[3]];
            vb = ws.vbuf.data();
            ldv = sp(Dv);
        }
        // Rows [r0, r0 + nr) against the first nk keys of the block (shifting the row-relative parts of sc).
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
            T* sb = ws.s.data() + r0 * kBlockK;
            if (direct)
                p.k.qk_direct(qp + r0 * ldq, ldq, kb, p.ks[2], nr, nk, D, sb, kBlockK);
            else
                p.k.qk(qp + r0 * ldq, ldq, ws.kt.data(), kBlockK, nr, nk, D, sb, kBlockK);
            p.k.softmax_step(sb, kBlockK, nr, nk, g, ws.m.data() + r0, ws.l.data() + r0, ws.alpha.data() + r0);
            p.k.pv(sb, kBlockK, vb, ldv, nr, nk, Dv, ws.alpha.data() + r0, ws.o.data() + r0 * Dv, Dv);
        };
        if (p.grouped && sc.band) {
            // The kernels' band is relative to the row index; grouped rows all sit at query position 0.
            for (std::size_t r0 = 0; r0 < rows; ++r0) step(r0, 1, keys);
        } else if (sc.band && sc.band_hi < kNoLimit && sc.band_hi + 1 < sp(keys)) {
            // The causal diagonal crosses this block: in groups of rb.diag rows, only the keys the group's
            // last row can see are computed (row group g sees local keys j <= i + band_hi). A group that sees
            // none of them is skipped: its statistics and output are unchanged (alpha = 1).
            for (std::size_t r0 = 0; r0 < rows; r0 += p.rb.diag) {
                const std::size_t nr = std::min(p.rb.diag, rows - r0);
                const std::ptrdiff_t nk = std::min(sp(keys), sc.band_hi + sp(r0 + nr));
                if (nk > 0) step(r0, nr, static_cast<std::size_t>(nk));
            }
        } else {
            step(0, rows, keys);
        }
    }
}

// out row = o / l and lse = m + log(l); a row that saw no key (l == 0) gives 0 and -inf. O is the task's
// output row (T) or a merged accumulator (double, kept in double until the division).
template <class T, class O>
void finish_row(const O* o, double m, double l, std::size_t Dv, T* out, std::ptrdiff_t out_c, T* lse) {
    if (l != l) {  // a NaN score (NaN or infinite input) poisons its row
        for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = std::numeric_limits<T>::quiet_NaN();
        if (lse) *lse = std::numeric_limits<T>::quiet_NaN();
        return;
    }
    if (l == 0 || m == -std::numeric_limits<double>::infinity()) {
        for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = T(0);
        if (lse) *lse = -std::numeric_limits<T>::infinity();
        return;
    }
    const double inv = 1.0 / l;
    for (std::size_t c = 0; c < Dv; ++c) out[sp(c) * out_c] = static_cast<T>(double(o[c]) * inv);
    if (lse) *lse = static_cast<T>(m + std::log(l));
}

// A row from pieces of its keys' online statistics merged in order (online_stats.hpp, merge_pieces): the key
// splits of a decode task, or the one piece of a task that saw all its keys. An attention sink is one more
// piece, after them: maximum sink, sum 1 (the single term exp(sink - sink)) and the zero vector as output (it
// has no value row). So M = max(m_keys, sink), L = l_keys e^(m_keys - M) + e^(sink - M), out = o / L and
// lse = M + log(L), with the rescaling by exp_scale's exact argument; a sink of -inf has weight 0 (and
// changes no bit of o / l), a row without keys gives 0 and lse = sink. acc: Dv doubles; zeros: Dv zeros.
template <class T, class Piece>
void finish_merged(std::size_t pieces, Piece piece_at, const double* sink, const T* zeros, double* acc,
                   std::size_t Dv, T* out, std::ptrdiff_t out_c, T* lse) {
    const std::size_t n = pieces + (sink ? 1 : 0);
    const detail::merged mg = detail::merge_pieces<T>(
        n,
        [&](std::size_t s) { return s < pieces ? piece_at(s) : detail::piece<T>{*sink, 1.0, zeros}; },
        acc, Dv);
    // A NaN piece, or an infinite maximum (whose piece's sum is NaN too): NaN, as finish_row.
    const bool nan = mg.nan || mg.m == std::numeric_limits<double>::infinity();
    finish_row(acc, mg.m, nan ? std::numeric_limits<double>::quiet_NaN() : mg.l, Dv, out, out_c, lse);
}

}  // namespace

template <class T>
void attention(const attention_shape& sh, const T* q, const strides4& qs, const T* k, const strides4& ks, const T* v,
               const strides4& vs, T* out, const strides4& os, const attention_options<T>& opt) {
    check(sh.heads_kv > 0 || sh.heads_q == 0, "heads_kv must be at least 1");
    check(sh.heads_kv == 0 || sh.heads_q % sh.heads_kv == 0,
          "heads_q (" + std::to_string(sh.heads_q) + ") must be a multiple of heads_kv (" +
              std::to_string(sh.heads_kv) + ")");
    check(std::isfinite(opt.scale), "scale must be finite");
    check(std::isfinite(opt.softcap) && opt.softcap >= 0, "softcap must be a finite number > 0 (or 0 for none)");
    check(opt.mask_kind == attention_mask_kind::none || opt.mask != nullptr, "mask_kind is set but mask is null");
    // The options arrive as doubles and the kernels take them in T: one beyond T's range would become inf
    // there and every score inf or NaN (softcap * tanh(x / softcap) = inf * 0 for a float32 softcap 1e39).
    constexpr double kMaxT = double(std::numeric_limits<T>::max());
    const char* const tname = sizeof(T) == 4 ? "float32" : "float64";
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

    const kernel_table& kt = (opt.isa && *opt.isa) ? detail::kernels_for(opt.isa) : detail::active_kernels();
    const double scale = opt.scale != 0 ? opt.scale : 1.0 / std::sqrt(double(std::max<std::size_t>(1, sh.head_dim)));
    const std::ptrdiff_t off =
        opt.alignment == causal_alignment::bottom_right ? sp(sh.len_kv) - sp(sh.len_q) : 0;
    // A window of len_q + len_kv keys or more reaches past key 0 from every diagonal: no limit (and no
    // conversion of a window >= 2^63 to a negative ptrdiff_t).
    const bool windowed = opt.window > 0 && opt.window < sh.len_q + sh.len_kv;
    const attention_kernels<T>& ak = attn_kernels<T>(kt);
    plan<T> p{ak, sh, q, k, v, qs, ks, vs, opt, static_cast<T>(scale), sh.heads_q / sh.heads_kv, off,
              windowed ? off - sp(opt.window) + 1 : -kNoLimit, opt.is_causal ? off : kNoLimit,
              blocking_for(ak.tile_rows), 0, 1, false, 0};
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
    const copies cp{!(qs[3] == 1 && qrow >= 0), vs[3] != 1, mask_copy && opt.mask_kind == attention_mask_kind::keep,
                    mask_copy && opt.mask_kind == attention_mask_kind::additive};
    std::vector<workspace<T>> wss;
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
    const std::size_t width = std::max<std::size_t>(1, Dv);
    if (opt.sinks) {
        zeros.assign(width, T(0));
        if (!split) sink_acc.resize(detail::scratch_elems(static_cast<std::size_t>(std::max(nt, 1)), width));
    }
    auto sink_of = [&](std::size_t b, std::size_t h) -> const double* {
        return opt.sinks ? opt.sinks + sp(b) * opt.sinks_strides[0] + sp(h) * opt.sinks_strides[1] : nullptr;
    };

    // Tasks differ in cost (causal blocks, windows): handed out one at a time. Each writes only its own
    // rows of out and lse (or its own partial slots), so which thread runs it does not matter.
    detail::parallel_dynamic(nt, ntasks, [&](std::size_t slot, std::size_t t) {
        workspace<T>& ws = wss[slot];
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
            std::copy(ws.o.begin(), ws.o.begin() + rows * Dv, part_o.begin() + t * rpt * Dv);
            for (std::size_t i = 0; i < rows; ++i) {
                part_m[t * rpt + i] = double(ws.m[i]);
                part_l[t * rpt + i] = ws.l[i];
            }
            return;
        }
        for (std::size_t i = 0; i < rows; ++i) {
            // Row i is query i0 + i of head h, or (grouped) query 0 of head h + i.
            const std::size_t hh = p.grouped ? h + i : h, ii = p.grouped ? 0 : i0 + i;
            T* orow = out + sp(b) * os[0] + sp(hh) * os[1] + sp(ii) * os[2];
            T* lrow = opt.lse ? opt.lse + sp(b) * opt.lse_strides[0] + sp(hh) * opt.lse_strides[1] +
                                    sp(ii) * opt.lse_strides[2]
                              : nullptr;
            if (opt.sinks) {
                const double mi = double(ws.m[i]), li = ws.l[i];
                const T* oi = ws.o.data() + i * Dv;
                finish_merged<T>(1, [&](std::size_t) { return detail::piece<T>{mi, li, oi}; }, sink_of(b, hh),
                                 zeros.data(), sink_acc.data() + slot * width, Dv, orow, os[3], lrow);
            } else {
                finish_row(ws.o.data() + i * Dv, double(ws.m[i]), ws.l[i], Dv, orow, os[3], lrow);
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
            T* orow = out + sp(b) * os[0] + sp(h) * os[1] + sp(i) * os[2];
            T* lrow = opt.lse ? opt.lse + sp(b) * opt.lse_strides[0] + sp(h) * opt.lse_strides[1] + sp(i) * opt.lse_strides[2]
                              : nullptr;
            finish_merged<T>(
                p.nsplit,
                [&](std::size_t s) {
                    return detail::piece<T>{part_m[at(s)], part_l[at(s)], part_o.data() + at(s) * Dv};
                },
                sink_of(b, h), zeros.data(), accd.data(), Dv, orow, os[3], lrow);
        }
    }
}

template <class T>
void merge_attention(std::size_t parts, const T* const* outs, const T* const* lses, std::size_t rows, std::size_t dv,
                     T* out, T* lse) {
    if (rows == 0) return;
    check(parts > 0, "merge_attention needs at least one part");
    const int nt = detail::threads_for(parts * rows * (dv + 1), rows);
    // One accumulator row per thread, allocated before anything is written.
    const std::size_t width = std::max<std::size_t>(1, dv);
    std::vector<double> accs(detail::scratch_elems(static_cast<std::size_t>(std::max(nt, 1)), width));
    detail::parallel_slices(nt, rows, [&](std::size_t slot, std::size_t r0, std::size_t r1) {
        double* const acc = accs.data() + slot * width;
        for (std::size_t r = r0; r < r1; ++r) {
            // Part p is a piece of the online rule with maximum lse_p and sum 1 (its out is normalized): merged
            // (online_stats.hpp), s = sum_p e^(lse_p - M) in [1, parts], out = sum_p e^(lse_p - M) out_p / s and
            // lse = M + log(s). The weights e^(lse_p - M) / s sum to 1 (a few u) even where M + log(s) rounds
            // to M (|M| > 2^53 log(s)), which would make e^(lse_p - lse) ~1 for every part. Parts with lse -inf
            // (no key) are skipped.
            const detail::merged mg = detail::merge_pieces<T>(
                parts,
                [&](std::size_t p) {
                    const double l = double(lses[p][r]);
                    return detail::piece<T>{l, l == -std::numeric_limits<double>::infinity() ? 0.0 : 1.0, outs[p] + r * dv};
                },
                acc, dv);
            T* orow = out + r * dv;
            if (mg.nan || mg.m == std::numeric_limits<double>::infinity()) {
                for (std::size_t c = 0; c < dv; ++c) orow[c] = std::numeric_limits<T>::quiet_NaN();
                if (lse) lse[r] = mg.nan ? std::numeric_limits<T>::quiet_NaN() : std::numeric_limits<T>::infinity();
                continue;
            }
            finish_row(acc, mg.m, mg.l, dv, orow, 1, lse ? lse + r : nullptr);  // M = -inf: 0 and -inf
        }
    });
}

template void attention<float>(const attention_shape&, const float*, const strides4&, const float*, const strides4&,
                               const float*, const strides4&, float*, const strides4&, const attention_options<float>&);
template void attention<double>(const attention_shape&, const double*, const strides4&, const double*,
                                const strides4&, const double*, const strides4&, double*, const strides4&,
                                const attention_options<double>&);
template void merge_attention<float>(std::size_t, const float* const*, const float* const*, std::size_t, std::size_t,
                                     float*, float*);
template void merge_attention<double>(std::size_t, const double* const*, const double* const*, std::size_t,
                                      std::size_t, double*, double*);

}  // namespace normexp
