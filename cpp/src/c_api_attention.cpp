// The C entry points of attention: normexp_attention_f32 (contiguous (batch, heads, len, dim), causal only),
// normexp_attention and normexp_paged_attention (every option, through a parameter struct).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "c_api.hpp"
#include "normexp/normexp.h"
#include "normexp/normexp.hpp"

namespace {

// Elements of a (batch, heads, len, dim) tensor, or 0 with INVALID_SIZE recorded on overflow/zero.
int tensor_elems(const char* fn, std::size_t batch, std::size_t heads, std::size_t len, std::size_t dim,
                 std::size_t& n) {
    std::size_t bh = 0, ld = 0;
    // Each partial product is checked at the element size too (a part beyond PTRDIFF_MAX bytes makes the
    // whole one so), so the message names the real element size.
    if (const int rc = normexp::capi::check_sizes(fn, batch, heads, sizeof(float), bh)) return rc;
    if (const int rc = normexp::capi::check_sizes(fn, len, dim, sizeof(float), ld)) return rc;
    return normexp::capi::check_sizes(fn, bh, ld, sizeof(float), n);
}

}  // namespace

extern "C" int normexp_attention_f32(const float* q, const float* k, const float* v, float* out, size_t batch,
                                     size_t heads_q, size_t heads_kv, size_t len_q, size_t len_kv, size_t head_dim,
                                     size_t head_dim_v, float scale, int is_causal) {
    using normexp::capi::fail;
    static const char* const fn = "normexp_attention_f32";
    if (!q || !k || !v || !out) return fail(NORMEXP_ERROR_NULL_POINTER, fn, "q, k, v and out must not be NULL");
    std::size_t nq = 0, nk = 0, nv = 0, no = 0;
    if (const int rc = tensor_elems(fn, batch, heads_q, len_q, head_dim, nq)) return rc;
    if (const int rc = tensor_elems(fn, batch, heads_kv, len_kv, head_dim, nk)) return rc;
    if (const int rc = tensor_elems(fn, batch, heads_kv, len_kv, head_dim_v, nv)) return rc;
    if (const int rc = tensor_elems(fn, batch, heads_q, len_q, head_dim_v, no)) return rc;
    if (heads_q % heads_kv != 0)
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "heads_q must be a multiple of heads_kv (grouped-query attention)");
    if (!(std::isfinite(scale) && scale >= 0))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "scale must be finite and >= 0 (0 means 1/sqrt(head_dim))");
    const std::size_t bytes = sizeof(float);
    if (normexp::capi::overlaps(out, no * bytes, q, nq * bytes) || normexp::capi::overlaps(out, no * bytes, k, nk * bytes) ||
        normexp::capi::overlaps(out, no * bytes, v, nv * bytes))
        return fail(NORMEXP_ERROR_OVERLAP, fn, "out must not overlap q, k or v");
    return normexp::capi::guard(fn, [&] {
        normexp::attention_options<float> o;
        o.scale = scale;
        o.is_causal = is_causal != 0;
        normexp::attention<float>(q, k, v, out, batch, heads_q, heads_kv, len_q, len_kv, head_dim, head_dim_v, o);
        return NORMEXP_OK;
    });
}

// ---- normexp_attention / normexp_paged_attention: the parameter structs -------------------------------
namespace {

using normexp::capi::fail;

std::size_t size_of(int dtype) {
    return dtype == NORMEXP_FLOAT64 ? 8 : dtype == NORMEXP_FLOAT32 ? 4 : 2;
}

// The element sizes of one call's operands, or INVALID_ARGUMENT naming the supported combinations:
// q, k, v all FLOAT32, all FLOAT64, all FLOAT16 or all BFLOAT16, or a FLOAT32 q over FLOAT16 / BFLOAT16
// keys and values (or pages). eq: q and out; ekv: k and v; ec: the computation's type, which lse and an
// additive mask have (FLOAT32 for 16-bit operands).
int element_sizes(const char* fn, int dtype, int kv_dtype, std::size_t& eq, std::size_t& ekv, std::size_t& ec) {
    const int kv = kv_dtype == 0 ? dtype : kv_dtype;
    const auto known = [](int t) { return t >= NORMEXP_FLOAT32 && t <= NORMEXP_BFLOAT16; };
    const bool half_kv = kv == NORMEXP_FLOAT16 || kv == NORMEXP_BFLOAT16;
    if (!(known(dtype) && known(kv) && (kv == dtype || (dtype == NORMEXP_FLOAT32 && half_kv))))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn,
                    "dtype / kv_dtype: q, k, v must be all FLOAT32, all FLOAT64, all FLOAT16 or all BFLOAT16, or a "
                    "FLOAT32 q with FLOAT16 or BFLOAT16 keys and values");
    eq = size_of(dtype);
    ekv = size_of(kv);
    ec = dtype == NORMEXP_FLOAT64 ? 8 : 4;
    return NORMEXP_OK;
}

// n = a * b * c * d elements of `size` bytes, each factor > 0, within PTRDIFF_MAX bytes.
int elems4(const char* fn, std::size_t a, std::size_t b, std::size_t c, std::size_t d, std::size_t size, std::size_t& n) {
    std::size_t ab = 0, cd = 0;
    if (const int rc = normexp::capi::check_sizes(fn, a, b, size, ab)) return rc;  // as tensor_elems
    if (const int rc = normexp::capi::check_sizes(fn, c, d, size, cd)) return rc;
    return normexp::capi::check_sizes(fn, ab, cd, size, n);
}

struct region {
    const void* p;
    std::size_t bytes;
};

// Does an output region overlap any of the others (the inputs, and the other output)?
bool any_overlap(const region& o, std::initializer_list<region> others) {
    for (const region& r : others)
        if (o.p && r.p && normexp::capi::overlaps(o.p, o.bytes, r.p, r.bytes)) return true;
    return false;
}

// T: the computation's type (of lse and an additive mask), Q: q's and out's, S: k's and v's.
// run(T{}, Q{}, S{}) for the types of a combination element_sizes accepted (T: the computation's type).
template <class Run>
void for_dtypes(int dtype, int kv_dtype, Run&& run) {
    using normexp::bfloat16;
    using normexp::float16;
    const int kv = kv_dtype == 0 ? dtype : kv_dtype;
    if (dtype == NORMEXP_FLOAT64) run(double{}, double{}, double{});
    else if (dtype == NORMEXP_FLOAT16) run(float{}, float16{}, float16{});
    else if (dtype == NORMEXP_BFLOAT16) run(float{}, bfloat16{}, bfloat16{});
    else if (kv == NORMEXP_FLOAT16) run(float{}, float{}, float16{});
    else if (kv == NORMEXP_BFLOAT16) run(float{}, float{}, bfloat16{});
    else run(float{}, float{}, float{});
}

template <class T, class Q = T, class S = T>
void run_attention(const normexp_attention_params& p) {
    normexp::attention_options<T> o;
    o.scale = p.scale;
    o.is_causal = p.is_causal != 0;
    o.alignment = p.causal_alignment == NORMEXP_CAUSAL_BOTTOM_RIGHT ? normexp::causal_alignment::bottom_right
                                                                     : normexp::causal_alignment::top_left;
    o.window = p.window;
    o.softcap = p.softcap;
    if (p.mask_kind != NORMEXP_MASK_NONE) {
        o.mask_kind = p.mask_kind == NORMEXP_MASK_KEEP ? normexp::attention_mask_kind::keep
                                                       : normexp::attention_mask_kind::additive;
        o.mask = p.mask;
        const auto lk = std::ptrdiff_t(p.len_kv), lq = std::ptrdiff_t(p.len_q);
        o.mask_strides = {p.mask_batch == 1 ? 0 : std::ptrdiff_t(p.mask_heads) * lq * lk, p.mask_heads == 1 ? 0 : lq * lk,
                          lk, 1};
    }
    o.alibi_slopes = p.alibi_slopes;
    o.alibi_strides = {0, 1};
    o.sinks = p.sinks;
    o.sinks_strides = {0, 1};
    o.lse = static_cast<T*>(p.lse);
    o.lse_strides = {std::ptrdiff_t(p.heads_q * p.len_q), std::ptrdiff_t(p.len_q), 1};
    const auto c = [&](std::size_t h, std::size_t l, std::size_t d) {  // contiguous (batch, h, l, d)
        return normexp::strides4{std::ptrdiff_t(h * l * d), std::ptrdiff_t(l * d), std::ptrdiff_t(d), 1};
    };
    const normexp::attention_shape sh{p.batch, p.heads_q, p.heads_kv, p.len_q, p.len_kv, p.head_dim, p.head_dim_v};
    const auto* q = static_cast<const Q*>(p.q);
    const auto* k = static_cast<const S*>(p.k);
    const auto* v = static_cast<const S*>(p.v);
    auto* out = static_cast<Q*>(p.out);
    const auto qs = c(p.heads_q, p.len_q, p.head_dim), ks = c(p.heads_kv, p.len_kv, p.head_dim),
               vs = c(p.heads_kv, p.len_kv, p.head_dim_v), os = c(p.heads_q, p.len_q, p.head_dim_v);
    if constexpr (std::is_same_v<Q, T> && std::is_same_v<S, T>)
        normexp::attention<T>(sh, q, qs, k, ks, v, vs, out, os, o);
    else
        normexp::attention(sh, q, qs, k, ks, v, vs, out, os, o);
}

template <class T, class Q = T, class S = T>
void run_paged(const normexp_paged_attention_params& p) {
    normexp::paged_attention_shape sh;
    sh.num_seqs = p.num_seqs;
    sh.total_queries = p.total_queries;
    sh.heads_q = p.heads_q;
    sh.heads_kv = p.heads_kv;
    sh.head_dim = p.head_dim;
    sh.head_dim_v = p.head_dim_v;
    sh.num_pages = p.num_pages;
    sh.page_size = p.page_size;
    sh.max_pages = p.max_pages;
    normexp::paged_attention_options<T> o;
    o.scale = p.scale;
    o.is_causal = p.is_causal != 0;
    o.window = p.window;
    o.softcap = p.softcap;
    o.alibi_slopes = p.alibi_slopes;
    o.sinks = p.sinks;
    o.lse = static_cast<T*>(p.lse);
    o.lse_strides = {std::ptrdiff_t(p.heads_q), 1};
    std::vector<std::int32_t> decode;  // query_start NULL: one query per sequence
    const std::int32_t* starts = p.query_start;
    if (!starts) {
        decode.resize(p.num_seqs + 1);
        for (std::size_t s = 0; s <= p.num_seqs; ++s) decode[s] = static_cast<std::int32_t>(s);
        starts = decode.data();
    }
    const auto d = [](std::size_t heads, std::size_t dim) {  // (rows, heads, dim), contiguous
        return normexp::strides3{std::ptrdiff_t(heads * dim), std::ptrdiff_t(dim), 1};
    };
    const auto pg = [](std::size_t s, std::size_t h, std::size_t dim) {
        return normexp::strides4{std::ptrdiff_t(s * h * dim), std::ptrdiff_t(h * dim), std::ptrdiff_t(dim), 1};
    };
    const auto* q = static_cast<const Q*>(p.q);
    const auto* kp = static_cast<const S*>(p.k_pages);
    const auto* vp = static_cast<const S*>(p.v_pages);
    auto* out = static_cast<Q*>(p.out);
    const auto qs = d(p.heads_q, p.head_dim), os = d(p.heads_q, p.head_dim_v);
    const auto ks = pg(p.page_size, p.heads_kv, p.head_dim), vs = pg(p.page_size, p.heads_kv, p.head_dim_v);
    if constexpr (std::is_same_v<Q, T> && std::is_same_v<S, T>)
        normexp::paged_attention<T>(sh, q, qs, kp, ks, vp, vs, p.block_table, std::ptrdiff_t(p.max_pages), p.seq_lens,
                                    starts, out, os, o);
    else
        normexp::paged_attention(sh, q, qs, kp, ks, vp, vs, p.block_table, std::ptrdiff_t(p.max_pages), p.seq_lens,
                                 starts, out, os, o);
}

}  // namespace

extern "C" void normexp_attention_params_init(normexp_attention_params* p) {
    if (!p) return;
    *p = normexp_attention_params{};
    p->struct_size = sizeof(normexp_attention_params);
    p->dtype = NORMEXP_FLOAT32;
    p->causal_alignment = NORMEXP_CAUSAL_TOP_LEFT;
    p->mask_kind = NORMEXP_MASK_NONE;
    p->mask_batch = 1;
    p->mask_heads = 1;
    p->batch = p->heads_q = p->heads_kv = 1;
}

extern "C" void normexp_paged_attention_params_init(normexp_paged_attention_params* p) {
    if (!p) return;
    *p = normexp_paged_attention_params{};
    p->struct_size = sizeof(normexp_paged_attention_params);
    p->dtype = NORMEXP_FLOAT32;
    p->is_causal = 1;
    p->heads_q = p->heads_kv = 1;
}

extern "C" int normexp_attention(const normexp_attention_params* params) {
    static const char* const fn = "normexp_attention";
    if (!params) return fail(NORMEXP_ERROR_NULL_POINTER, fn, "params must not be NULL");
    const normexp_attention_params& p = *params;
    if (p.struct_size != sizeof(normexp_attention_params))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn,
                    "struct_size does not match this library's normexp_attention_params (call normexp_attention_params_init)");
    std::size_t eq = 0, ekv = 0, ec = 0;
    if (const int rc = element_sizes(fn, p.dtype, p.kv_dtype, eq, ekv, ec)) return rc;
    if (!p.q || !p.k || !p.v || !p.out) return fail(NORMEXP_ERROR_NULL_POINTER, fn, "q, k, v and out must not be NULL");
    std::size_t nq = 0, nk = 0, nv = 0, no = 0, nm = 0;
    if (const int rc = elems4(fn, p.batch, p.heads_q, p.len_q, p.head_dim, eq, nq)) return rc;
    if (const int rc = elems4(fn, p.batch, p.heads_kv, p.len_kv, p.head_dim, ekv, nk)) return rc;
    if (const int rc = elems4(fn, p.batch, p.heads_kv, p.len_kv, p.head_dim_v, ekv, nv)) return rc;
    if (const int rc = elems4(fn, p.batch, p.heads_q, p.len_q, p.head_dim_v, eq, no)) return rc;
    if (p.heads_q % p.heads_kv != 0)
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "heads_q must be a multiple of heads_kv (grouped-query attention)");
    if (!(std::isfinite(p.scale) && p.scale >= 0))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "scale must be finite and >= 0 (0 means 1/sqrt(head_dim))");
    if (p.causal_alignment != NORMEXP_CAUSAL_TOP_LEFT && p.causal_alignment != NORMEXP_CAUSAL_BOTTOM_RIGHT)
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "causal_alignment must be NORMEXP_CAUSAL_TOP_LEFT or NORMEXP_CAUSAL_BOTTOM_RIGHT");
    std::size_t mask_elem = 0;
    if (p.mask_kind != NORMEXP_MASK_NONE) {
        if (p.mask_kind != NORMEXP_MASK_KEEP && p.mask_kind != NORMEXP_MASK_ADDITIVE)
            return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "mask_kind must be a normexp_mask_kind");
        if (!p.mask) return fail(NORMEXP_ERROR_NULL_POINTER, fn, "mask must not be NULL when mask_kind is set");
        if (!(p.mask_batch == 1 || p.mask_batch == p.batch) || !(p.mask_heads == 1 || p.mask_heads == p.heads_q))
            return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "mask_batch must be 1 or batch, and mask_heads 1 or heads_q");
        mask_elem = p.mask_kind == NORMEXP_MASK_KEEP ? 1 : ec;
        if (const int rc = elems4(fn, p.mask_batch, p.mask_heads, p.len_q, p.len_kv, mask_elem, nm)) return rc;
    }
    const std::size_t nl = no / p.head_dim_v;  // batch x heads_q x len_q
    const region in_q{p.q, nq * eq}, in_k{p.k, nk * ekv}, in_v{p.v, nv * ekv}, in_m{p.mask, nm * mask_elem};
    const region out_r{p.out, no * eq}, lse_r{p.lse, nl * ec};
    if (any_overlap(out_r, {in_q, in_k, in_v, in_m, lse_r}) || any_overlap(lse_r, {in_q, in_k, in_v, in_m}))
        return fail(NORMEXP_ERROR_OVERLAP, fn, "out and lse must not overlap q, k, v, the mask or each other");
    return normexp::capi::guard(fn, [&] {
        for_dtypes(p.dtype, p.kv_dtype, [&](auto t, auto q, auto s) {
            run_attention<decltype(t), decltype(q), decltype(s)>(p);
        });
        return NORMEXP_OK;
    });
}

extern "C" int normexp_paged_attention(const normexp_paged_attention_params* params) {
    static const char* const fn = "normexp_paged_attention";
    if (!params) return fail(NORMEXP_ERROR_NULL_POINTER, fn, "params must not be NULL");
    const normexp_paged_attention_params& p = *params;
    if (p.struct_size != sizeof(normexp_paged_attention_params))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn,
                    "struct_size does not match this library's normexp_paged_attention_params (call "
                    "normexp_paged_attention_params_init)");
    std::size_t es = 0, ekv = 0, ec = 0;
    if (const int rc = element_sizes(fn, p.dtype, p.kv_dtype, es, ekv, ec)) return rc;
    if (!p.q || !p.k_pages || !p.v_pages || !p.out || !p.block_table || !p.seq_lens)
        return fail(NORMEXP_ERROR_NULL_POINTER, fn, "q, k_pages, v_pages, out, block_table and seq_lens must not be NULL");
    std::size_t nq = 0, nk = 0, nv = 0, no = 0, nt = 0;
    if (const int rc = elems4(fn, p.total_queries, p.heads_q, p.head_dim, 1, es, nq)) return rc;
    if (const int rc = elems4(fn, p.num_pages, p.page_size, p.heads_kv, p.head_dim, ekv, nk)) return rc;
    if (const int rc = elems4(fn, p.num_pages, p.page_size, p.heads_kv, p.head_dim_v, ekv, nv)) return rc;
    if (const int rc = elems4(fn, p.total_queries, p.heads_q, p.head_dim_v, 1, es, no)) return rc;
    if (const int rc = elems4(fn, p.num_seqs, p.max_pages, 1, 1, sizeof(std::int32_t), nt)) return rc;
    if (p.num_seqs >= std::size_t(INT32_MAX) || p.total_queries > std::size_t(INT32_MAX))
        return fail(NORMEXP_ERROR_INVALID_SIZE, fn, "num_seqs and total_queries must fit int32 offsets");
    if (!p.query_start && p.total_queries != p.num_seqs)
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn,
                    "query_start is NULL (one query per sequence) but total_queries differs from num_seqs");
    if (p.heads_q % p.heads_kv != 0)
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "heads_q must be a multiple of heads_kv (grouped-query attention)");
    if (!(std::isfinite(p.scale) && p.scale >= 0))
        return fail(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "scale must be finite and >= 0 (0 means 1/sqrt(head_dim))");
    const region in_q{p.q, nq * es}, in_k{p.k_pages, nk * ekv}, in_v{p.v_pages, nv * ekv},
        in_t{p.block_table, nt * sizeof(std::int32_t)}, in_l{p.seq_lens, p.num_seqs * sizeof(std::int32_t)},
        in_s{p.query_start, (p.num_seqs + 1) * sizeof(std::int32_t)};
    const region out_r{p.out, no * es}, lse_r{p.lse, no / p.head_dim_v * ec};
    if (any_overlap(out_r, {in_q, in_k, in_v, in_t, in_l, in_s, lse_r}) ||
        any_overlap(lse_r, {in_q, in_k, in_v, in_t, in_l, in_s}))
        return fail(NORMEXP_ERROR_OVERLAP, fn, "out and lse must not overlap the inputs or each other");
    return normexp::capi::guard(fn, [&] {
        for_dtypes(p.dtype, p.kv_dtype, [&](auto t, auto q, auto s) {
            run_paged<decltype(t), decltype(q), decltype(s)>(p);
        });
        return NORMEXP_OK;
    });
}
