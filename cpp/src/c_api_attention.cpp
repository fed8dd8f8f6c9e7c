// normexp_attention_f32: the C entry point of blocked attention (contiguous (batch, heads, len, dim)).
#include <cmath>
#include <cstddef>

#include "c_api.hpp"
#include "normexp/normexp.h"
#include "normexp/normexp.hpp"

namespace {

// Elements of a (batch, heads, len, dim) tensor, or 0 with INVALID_SIZE recorded on overflow/zero.
int tensor_elems(const char* fn, std::size_t batch, std::size_t heads, std::size_t len, std::size_t dim,
                 std::size_t& n) {
    std::size_t bh = 0, ld = 0;
    if (const int rc = normexp::capi::check_sizes(fn, batch, heads, 1, bh)) return rc;
    if (const int rc = normexp::capi::check_sizes(fn, len, dim, 1, ld)) return rc;
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
