// Bindings of attention and merge_attention. Argument checking, broadcasting and the flattening of batch
// dimensions live in python/normexp/attention.py; this layer reads 4-d strided views, releases the GIL and
// calls the C++ API.
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

// Both float32 or both float64, compared by equivalence (has_dtype): an unpickled array has its own dtype
// descriptor, so pointer identity (dtype::is) rejected the arrays of a spawn/forkserver child.
bool same_float_dtype(const py::array& a, const py::array& b) {
    return (has_dtype<float>(a) && has_dtype<float>(b)) || (has_dtype<double>(a) && has_dtype<double>(b));
}

// The element type of an attention operand: float32, float64, float16 (NumPy's, native byte order) or
// bfloat16 (ml_dtypes'; NumPy has none, so it is recognized by name and size).
enum class elem { f32, f64, f16, bf16, other };
elem elem_of(const py::array& a) {
    if (has_dtype<float>(a)) return elem::f32;
    if (has_dtype<double>(a)) return elem::f64;
    if (is_float16(a)) return elem::f16;
    if (is_bfloat16(a)) return elem::bf16;
    return elem::other;
}
// Calls run(T{}, Q{}, S{}) for a supported combination of q's element type eq and k's / v's (or the pages')
// ek: all float32, all float64, all float16, all bfloat16 (T float32 for 16-bit), or float32 q over a 16-bit
// cache; a TypeError naming them otherwise. The one place the bindings state the combinations.
template <class Run>
void for_combination(elem eq, elem ek, const char* fn, const char* kv, Run&& run) {
    using normexp::bfloat16;
    using normexp::float16;
    if (eq == elem::f32 && ek == elem::f32) run(float{}, float{}, float{});
    else if (eq == elem::f64 && ek == elem::f64) run(double{}, double{}, double{});
    else if (eq == elem::f16 && ek == elem::f16) run(float{}, float16{}, float16{});
    else if (eq == elem::bf16 && ek == elem::bf16) run(float{}, bfloat16{}, bfloat16{});
    else if (eq == elem::f32 && ek == elem::f16) run(float{}, float{}, float16{});
    else if (eq == elem::f32 && ek == elem::bf16) run(float{}, float{}, bfloat16{});
    else
        throw py::type_error(std::string("normexp ") + fn + " takes q and " + kv + " all float32, all float64, all "
                             "float16 or all bfloat16, or float32 q with float16 or bfloat16 " + kv);
}

template <std::size_t N>
std::array<std::ptrdiff_t, N> strides_of(const py::array& a, const char* name) {
    const layout l = layout_of(a, name);
    if (l.strides.size() != N) throw py::value_error(std::string(name) + ": expected " + std::to_string(N) + " dimensions");
    std::array<std::ptrdiff_t, N> s{};
    for (std::size_t i = 0; i < N; ++i) s[i] = l.strides[i];
    return s;
}

// T: the compute type (float32 for 16-bit operands), Q: q's and out's element type, S: k's and v's.
template <class T, class Q, class S>
void attention_typed(const py::array& q, const py::array& k, const py::array& v, py::array& out,
                     const py::object& lse, const py::object& mask, bool is_causal, bool bottom_right, double scale,
                     std::size_t window, double softcap, const py::object& alibi, const py::object& sinks,
                     const std::string& isa) {
    normexp::attention_shape sh;
    sh.batch = static_cast<std::size_t>(q.shape(0));
    sh.heads_q = static_cast<std::size_t>(q.shape(1));
    sh.heads_kv = static_cast<std::size_t>(k.shape(1));
    sh.len_q = static_cast<std::size_t>(q.shape(2));
    sh.len_kv = static_cast<std::size_t>(k.shape(2));
    sh.head_dim = static_cast<std::size_t>(q.shape(3));
    sh.head_dim_v = static_cast<std::size_t>(v.shape(3));
    normexp::attention_options<T> opt;
    opt.scale = scale;
    opt.is_causal = is_causal;
    opt.alignment = bottom_right ? normexp::causal_alignment::bottom_right : normexp::causal_alignment::top_left;
    opt.window = window;
    opt.softcap = softcap;
    opt.isa = isa.c_str();
    py::array mask_a, alibi_a, lse_a, sinks_a;
    if (!mask.is_none()) {
        mask_a = mask.cast<py::array>();
        if (has_dtype<bool>(mask_a)) {
            opt.mask_kind = normexp::attention_mask_kind::keep;
        } else if (has_dtype<T>(mask_a)) {
            opt.mask_kind = normexp::attention_mask_kind::additive;
        } else {
            throw py::type_error(std::is_same_v<Q, T> ? "mask must be bool or the dtype of q"
                                                      : "mask must be bool or float32 (16-bit attention)");
        }
        opt.mask = mask_a.data();
        opt.mask_strides = strides_of<4>(mask_a, "mask");
    }
    if (!alibi.is_none()) {
        alibi_a = alibi.cast<py::array>();
        if (!has_dtype<double>(alibi_a)) throw py::type_error("alibi_slopes must be float64 here");
        opt.alibi_slopes = static_cast<const double*>(alibi_a.data());
        opt.alibi_strides = strides_of<2>(alibi_a, "alibi_slopes");
    }
    if (!sinks.is_none()) {
        sinks_a = sinks.cast<py::array>();
        if (!has_dtype<double>(sinks_a)) throw py::type_error("sinks must be float64 here");
        if (sinks_a.ndim() != 2 || sinks_a.shape(0) != q.shape(0) || sinks_a.shape(1) != q.shape(1))
            throw py::value_error("sinks must have shape (batch, heads_q) here");
        opt.sinks = static_cast<const double*>(sinks_a.data());
        opt.sinks_strides = strides_of<2>(sinks_a, "sinks");
    }
    if (!lse.is_none()) {
        lse_a = lse.cast<py::array>();
        if (!has_dtype<T>(lse_a)) throw py::type_error("lse must be float32 (16-bit q) or have the dtype of q");
        opt.lse = static_cast<T*>(lse_a.mutable_data());
        opt.lse_strides = strides_of<3>(lse_a, "lse");
    }
    const auto qs = strides_of<4>(q, "q"), ks = strides_of<4>(k, "k"), vs = strides_of<4>(v, "v"),
               os = strides_of<4>(out, "out");
    const Q* qp = static_cast<const Q*>(q.data());
    const S* kp = static_cast<const S*>(k.data());
    const S* vp = static_cast<const S*>(v.data());
    Q* op = static_cast<Q*>(out.mutable_data());
    release_gil nogil;
    if constexpr (std::is_same_v<Q, T> && std::is_same_v<S, T>)
        normexp::attention<T>(sh, qp, qs, kp, ks, vp, vs, op, os, opt);
    else
        normexp::attention(sh, qp, qs, kp, ks, vp, vs, op, os, opt);
}

// q (B, Hq, Lq, D), k (B, Hkv, Lkv, D), v (B, Hkv, Lkv, Dv), out (B, Hq, Lq, Dv), lse (B, Hq, Lq) or None,
// mask (B, Hq, Lq, Lkv) (bool or q's dtype; stride 0 on broadcast dimensions) or None, alibi (B, Hq) float64
// or None, sinks (B, Hq) float64 or None. Shapes are checked by the caller (normexp.attention).
void attention(const py::array& q, const py::array& k, const py::array& v, py::array out, const py::object& lse,
               const py::object& mask, bool is_causal, bool bottom_right, double scale, std::size_t window,
               double softcap, const py::object& alibi, const py::object& sinks, const std::string& isa) {
    if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || out.ndim() != 4)
        throw py::value_error("q, k, v and out must be 4-d here");
    const elem eq = elem_of(q), ek = elem_of(k);
    if (elem_of(v) != ek || elem_of(out) != eq)
        throw py::type_error("k and v must share a dtype, and out must have q's dtype");
    for_combination(eq, ek, "attention", "k, v", [&](auto t, auto qt, auto st) {
        attention_typed<decltype(t), decltype(qt), decltype(st)>(q, k, v, out, lse, mask, is_causal, bottom_right, scale,
                                                                  window, softcap, alibi, sinks, isa);
    });
}

// T: the compute type, Q: q's and out's element type, S: the pages'.
template <class T, class Q, class S>
void paged_typed(const py::array& q, const py::array& kp, const py::array& vp, const py::array& table,
                 const py::array& seq_lens, const py::array& query_start, py::array& out, const py::object& lse,
                 bool is_causal, double scale, std::size_t window, double softcap, const py::object& alibi,
                 const py::object& sinks, const std::string& isa) {
    normexp::paged_attention_shape sh;
    sh.num_seqs = static_cast<std::size_t>(seq_lens.shape(0));
    sh.total_queries = static_cast<std::size_t>(q.shape(0));
    sh.heads_q = static_cast<std::size_t>(q.shape(1));
    sh.heads_kv = static_cast<std::size_t>(kp.shape(2));
    sh.head_dim = static_cast<std::size_t>(q.shape(2));
    sh.head_dim_v = static_cast<std::size_t>(vp.shape(3));
    sh.num_pages = static_cast<std::size_t>(kp.shape(0));
    sh.page_size = static_cast<std::size_t>(kp.shape(1));
    sh.max_pages = static_cast<std::size_t>(table.shape(1));
    normexp::paged_attention_options<T> opt;
    opt.scale = scale;
    opt.is_causal = is_causal;
    opt.window = window;
    opt.softcap = softcap;
    opt.isa = isa.c_str();
    py::array alibi_a, sinks_a, lse_a;
    auto per_head = [&](const py::object& o, py::array& keep, const char* name) -> const double* {
        if (o.is_none()) return nullptr;
        keep = o.cast<py::array>();
        if (!has_dtype<double>(keep) || keep.ndim() != 1 || static_cast<std::size_t>(keep.shape(0)) != sh.heads_q ||
            !(keep.flags() & py::array::c_style))
            throw py::value_error(std::string(name) + " must be a contiguous float64 array of heads_q values here");
        return static_cast<const double*>(keep.data());
    };
    opt.alibi_slopes = per_head(alibi, alibi_a, "alibi_slopes");
    opt.sinks = per_head(sinks, sinks_a, "sinks");
    if (!lse.is_none()) {
        lse_a = lse.cast<py::array>();
        if (!has_dtype<T>(lse_a) || lse_a.ndim() != 2 || lse_a.shape(0) != q.shape(0) || lse_a.shape(1) != q.shape(1) ||
            !lse_a.writeable())
            throw py::value_error("lse must be a writeable (total_queries, heads_q) array of q's dtype (float32 for 16-bit q)");
        opt.lse = static_cast<T*>(lse_a.mutable_data());
        opt.lse_strides = strides_of<2>(lse_a, "lse");
    }
    const auto qs = strides_of<3>(q, "q"), os = strides_of<3>(out, "out");
    const auto ks = strides_of<4>(kp, "k_pages"), vs = strides_of<4>(vp, "v_pages");
    const Q* qd = static_cast<const Q*>(q.data());
    const S* kd = static_cast<const S*>(kp.data());
    const S* vd = static_cast<const S*>(vp.data());
    const auto* td = static_cast<const std::int32_t*>(table.data());
    const auto* ld = static_cast<const std::int32_t*>(seq_lens.data());
    const auto* qsd = static_cast<const std::int32_t*>(query_start.data());
    Q* od = static_cast<Q*>(out.mutable_data());
    const std::ptrdiff_t trow = static_cast<std::ptrdiff_t>(sh.max_pages);
    release_gil nogil;
    if constexpr (std::is_same_v<Q, T> && std::is_same_v<S, T>)
        normexp::paged_attention<T>(sh, qd, qs, kd, ks, vd, vs, td, trow, ld, qsd, od, os, opt);
    else
        normexp::paged_attention(sh, qd, qs, kd, ks, vd, vs, td, trow, ld, qsd, od, os, opt);
}

// q (T, Hq, D), k_pages (P, S, Hkv, D), v_pages (P, S, Hkv, Dv), out (T, Hq, Dv) of one float dtype (any
// strides); block_table (N, M), seq_lens (N,), query_start (N + 1,): C-contiguous int32; lse (T, Hq) or
// None; alibi, sinks: (Hq,) contiguous float64 or None. normexp.paged_attention checks the values; the
// library checks them again (every page index before any read).
void paged_attention(const py::array& q, const py::array& kp, const py::array& vp, const py::array& table,
                     const py::array& seq_lens, const py::array& query_start, py::array out, const py::object& lse,
                     bool is_causal, double scale, std::size_t window, double softcap, const py::object& alibi,
                     const py::object& sinks, const std::string& isa) {
    if (q.ndim() != 3 || kp.ndim() != 4 || vp.ndim() != 4 || out.ndim() != 3)
        throw py::value_error("q and out must be 3-d and k_pages, v_pages 4-d here");
    const elem eq = elem_of(q), ek = elem_of(kp);
    if (elem_of(vp) != ek || elem_of(out) != eq)
        throw py::type_error("k_pages and v_pages must share a dtype, and out must have q's dtype");
    const auto cflags = py::array::c_style;
    for (const py::array* a : {&table, &seq_lens, &query_start})
        if (!has_dtype<std::int32_t>(*a) || !(a->flags() & cflags))
            throw py::type_error("block_table, seq_lens and query_start must be C-contiguous int32 arrays here");
    if (table.ndim() != 2 || seq_lens.ndim() != 1 || query_start.ndim() != 1 || table.shape(0) != seq_lens.shape(0) ||
        query_start.shape(0) != seq_lens.shape(0) + 1)
        throw py::value_error("block_table (N, M), seq_lens (N,) and query_start (N + 1,) do not fit together");
    if (kp.shape(0) != vp.shape(0) || kp.shape(1) != vp.shape(1) || kp.shape(2) != vp.shape(2) ||
        kp.shape(3) != q.shape(2) || out.shape(0) != q.shape(0) || out.shape(1) != q.shape(1) ||
        out.shape(2) != vp.shape(3))
        throw py::value_error("q, k_pages, v_pages and out have shapes that do not fit together");
    if (!out.writeable()) throw py::value_error("out must be writeable");
    for_combination(eq, ek, "paged_attention", "pages", [&](auto t, auto qt, auto st) {
        paged_typed<decltype(t), decltype(qt), decltype(st)>(q, kp, vp, table, seq_lens, query_start, out, lse, is_causal,
                                                              scale, window, softcap, alibi, sinks, isa);
    });
}

// Q: the outputs' element type, L: the lses' (Q, or float32 for 16-bit outputs).
template <class Q, class L>
void merge_typed(const std::vector<py::array>& outs, const std::vector<py::array>& lses, py::array& out,
                 py::array& lse) {
    std::vector<const Q*> po;
    std::vector<const L*> pl;
    for (const auto& a : outs) po.push_back(static_cast<const Q*>(a.data()));
    for (const auto& a : lses) pl.push_back(static_cast<const L*>(a.data()));
    const auto rows = static_cast<std::size_t>(out.shape(0)), dv = static_cast<std::size_t>(out.shape(1));
    Q* o = static_cast<Q*>(out.mutable_data());
    L* l = static_cast<L*>(lse.mutable_data());
    release_gil nogil;
    if constexpr (std::is_same_v<Q, L>)
        normexp::merge_attention<Q>(po.size(), po.data(), pl.data(), rows, dv, o, l);
    else
        normexp::merge_attention(po.size(), po.data(), pl.data(), rows, dv, o, l);
}

// outs: C-contiguous (rows, dv) arrays, lses: C-contiguous (rows,) arrays, all of out's dtype.
void merge_attention(const std::vector<py::array>& outs, const std::vector<py::array>& lses, py::array out,
                     py::array lse) {
    const auto cflags = py::array::c_style;
    if (outs.size() != lses.size() || outs.empty()) throw py::value_error("outs and lses must be equally long, non-empty");
    if (out.ndim() != 2 || lse.ndim() != 1 || !(out.flags() & cflags) || !(lse.flags() & cflags))
        throw py::value_error("out must be a C-contiguous (rows, dv) array and lse (rows,)");
    const elem eo = elem_of(out);
    const bool half = eo == elem::f16 || eo == elem::bf16;
    if (half ? !has_dtype<float>(lse) : !same_float_dtype(lse, out))
        throw py::type_error("lse must have out's dtype (float32 for 16-bit outputs)");
    for (std::size_t p = 0; p < outs.size(); ++p) {
        if (elem_of(outs[p]) != eo || (half ? !has_dtype<float>(lses[p]) : !same_float_dtype(lses[p], out)))
            throw py::type_error("every part must have out's dtype (lses: float32 for 16-bit outputs)");
        if (!(outs[p].flags() & cflags) || !(lses[p].flags() & cflags) || outs[p].ndim() != 2 || lses[p].ndim() != 1 ||
            outs[p].shape(0) != out.shape(0) || outs[p].shape(1) != out.shape(1) || lses[p].shape(0) != out.shape(0))
            throw py::value_error("every part must be C-contiguous with out's shape");
    }
    if (eo == elem::f32)
        merge_typed<float, float>(outs, lses, out, lse);
    else if (eo == elem::f64)
        merge_typed<double, double>(outs, lses, out, lse);
    else if (eo == elem::f16)
        merge_typed<normexp::float16, float>(outs, lses, out, lse);
    else if (eo == elem::bf16)
        merge_typed<normexp::bfloat16, float>(outs, lses, out, lse);
    else
        throw py::type_error("merge_attention takes float32, float64, float16 or bfloat16 arrays");
}

}  // namespace

void bind_attention(py::module_& m) {
    m.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
          py::arg("mask"), py::arg("is_causal"), py::arg("bottom_right"), py::arg("scale"), py::arg("window"),
          py::arg("softcap"), py::arg("alibi"), py::arg("sinks") = py::none(), py::arg("isa") = "");
    m.def("paged_attention", &paged_attention, py::arg("q"), py::arg("k_pages"), py::arg("v_pages"),
          py::arg("block_table"), py::arg("seq_lens"), py::arg("query_start"), py::arg("out"), py::arg("lse"),
          py::arg("is_causal"), py::arg("scale"), py::arg("window"), py::arg("softcap"), py::arg("alibi"),
          py::arg("sinks"), py::arg("isa") = "");
    m.def("merge_attention", &merge_attention, py::arg("outs"), py::arg("lses"), py::arg("out"), py::arg("lse"));
}
