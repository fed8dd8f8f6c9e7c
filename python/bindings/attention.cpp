// Bindings of attention and merge_attention. Argument checking, broadcasting and the flattening of batch
// dimensions live in python/normexp/attention.py; this layer reads 4-d strided views, releases the GIL and
// calls the C++ API.
#include <array>
#include <string>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

// Both float32 or both float64, compared by equivalence (has_dtype): an unpickled array has its own dtype
// descriptor, so pointer identity (dtype::is) rejected the arrays of a spawn/forkserver child.
bool same_float_dtype(const py::array& a, const py::array& b) {
    return (has_dtype<float>(a) && has_dtype<float>(b)) || (has_dtype<double>(a) && has_dtype<double>(b));
}

template <std::size_t N>
std::array<std::ptrdiff_t, N> strides_of(const py::array& a, const char* name) {
    const layout l = layout_of(a, name);
    if (l.strides.size() != N) throw py::value_error(std::string(name) + ": expected " + std::to_string(N) + " dimensions");
    std::array<std::ptrdiff_t, N> s{};
    for (std::size_t i = 0; i < N; ++i) s[i] = l.strides[i];
    return s;
}

template <class T>
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
            throw py::type_error("mask must be bool or the dtype of q");
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
        if (!has_dtype<T>(lse_a)) throw py::type_error("lse must have the dtype of q");
        opt.lse = static_cast<T*>(lse_a.mutable_data());
        opt.lse_strides = strides_of<3>(lse_a, "lse");
    }
    const auto qs = strides_of<4>(q, "q"), ks = strides_of<4>(k, "k"), vs = strides_of<4>(v, "v"),
               os = strides_of<4>(out, "out");
    const T* qp = static_cast<const T*>(q.data());
    const T* kp = static_cast<const T*>(k.data());
    const T* vp = static_cast<const T*>(v.data());
    T* op = static_cast<T*>(out.mutable_data());
    release_gil nogil;
    normexp::attention<T>(sh, qp, qs, kp, ks, vp, vs, op, os, opt);
}

// q (B, Hq, Lq, D), k (B, Hkv, Lkv, D), v (B, Hkv, Lkv, Dv), out (B, Hq, Lq, Dv), lse (B, Hq, Lq) or None,
// mask (B, Hq, Lq, Lkv) (bool or q's dtype; stride 0 on broadcast dimensions) or None, alibi (B, Hq) float64
// or None, sinks (B, Hq) float64 or None. Shapes are checked by the caller (normexp.attention).
void attention(const py::array& q, const py::array& k, const py::array& v, py::array out, const py::object& lse,
               const py::object& mask, bool is_causal, bool bottom_right, double scale, std::size_t window,
               double softcap, const py::object& alibi, const py::object& sinks, const std::string& isa) {
    if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || out.ndim() != 4)
        throw py::value_error("q, k, v and out must be 4-d here");
    if (!same_float_dtype(q, k) || !same_float_dtype(q, v) || !same_float_dtype(q, out))
        throw py::type_error("q, k, v and out must have the same dtype");
    if (has_dtype<float>(q))
        attention_typed<float>(q, k, v, out, lse, mask, is_causal, bottom_right, scale, window, softcap, alibi, sinks, isa);
    else if (has_dtype<double>(q))
        attention_typed<double>(q, k, v, out, lse, mask, is_causal, bottom_right, scale, window, softcap, alibi, sinks, isa);
    else
        throw py::type_error("normexp attention takes float32 or float64 arrays");
}

template <class T>
void merge_typed(const std::vector<py::array>& outs, const std::vector<py::array>& lses, py::array& out,
                 py::array& lse) {
    std::vector<const T*> po, pl;
    for (const auto& a : outs) po.push_back(static_cast<const T*>(a.data()));
    for (const auto& a : lses) pl.push_back(static_cast<const T*>(a.data()));
    const auto rows = static_cast<std::size_t>(out.shape(0)), dv = static_cast<std::size_t>(out.shape(1));
    T* o = static_cast<T*>(out.mutable_data());
    T* l = static_cast<T*>(lse.mutable_data());
    release_gil nogil;
    normexp::merge_attention<T>(po.size(), po.data(), pl.data(), rows, dv, o, l);
}

// outs: C-contiguous (rows, dv) arrays, lses: C-contiguous (rows,) arrays, all of out's dtype.
void merge_attention(const std::vector<py::array>& outs, const std::vector<py::array>& lses, py::array out,
                     py::array lse) {
    const auto cflags = py::array::c_style;
    if (outs.size() != lses.size() || outs.empty()) throw py::value_error("outs and lses must be equally long, non-empty");
    if (out.ndim() != 2 || lse.ndim() != 1 || !(out.flags() & cflags) || !(lse.flags() & cflags))
        throw py::value_error("out must be a C-contiguous (rows, dv) array and lse (rows,)");
    for (std::size_t p = 0; p < outs.size(); ++p) {
        if (!same_float_dtype(outs[p], out) || !same_float_dtype(lses[p], out))
            throw py::type_error("every part must have out's dtype");
        if (!(outs[p].flags() & cflags) || !(lses[p].flags() & cflags) || outs[p].ndim() != 2 || lses[p].ndim() != 1 ||
            outs[p].shape(0) != out.shape(0) || outs[p].shape(1) != out.shape(1) || lses[p].shape(0) != out.shape(0))
            throw py::value_error("every part must be C-contiguous with out's shape");
    }
    if (has_dtype<float>(out))
        merge_typed<float>(outs, lses, out, lse);
    else if (has_dtype<double>(out))
        merge_typed<double>(outs, lses, out, lse);
    else
        throw py::type_error("merge_attention takes float32 or float64 arrays");
}

}  // namespace

void bind_attention(py::module_& m) {
    m.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
          py::arg("mask"), py::arg("is_causal"), py::arg("bottom_right"), py::arg("scale"), py::arg("window"),
          py::arg("softcap"), py::arg("alibi"), py::arg("sinks") = py::none(), py::arg("isa") = "");
    m.def("merge_attention", &merge_attention, py::arg("outs"), py::arg("lses"), py::arg("out"), py::arg("lse"));
}
