// Bindings of normexp::logsumexp_parts (the (max, count, rest) statistics of each row, the partial result
// that normexp.dask merges across chunks), normexp::merge_parts and logsumexp_from_parts (the merge and
// the logsumexp of merged statistics: the driver's own rule, cpp/src/reduce.cpp) and
// normexp::normalize_with (softmax / log_softmax of a chunk with the merged statistics). Argument checking lives in python/normexp/dask.py and _api.py (axes come
// normalized); this layer checks what the raw-pointer C++ calls need to be memory-safe, and the C++
// library checks its own arguments (axis, temperature, op).
#include <string>
#include <utility>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

template <class T>
void parts_typed(const py::array& x, py::array& m, py::array& sums, int axis, double temperature,
                 const std::string& isa, normexp::accuracy acc) {
    const layout lx = layout_of(x, "x"), lm = layout_of(m, "m");
    const T* xp = static_cast<const T*>(x.data());
    T* mp = static_cast<T*>(m.mutable_data());
    double* sp = static_cast<double*>(sums.mutable_data());
    release_gil nogil;
    normexp::logsumexp_parts<T>(xp, lx.strides, mp, sp, lm.strides, lx.shape, axis, temperature, isa.c_str(), acc);
}

// m: x's dtype and rank, x's shape with length 1 along axis (normalized: 0 <= axis < x.ndim). sums:
// float64, m's shape plus a last axis of length 2 (count, rest), with twice m's element strides and unit
// stride last (e.g. both C-contiguous).
void check_stats(const py::array& x, const py::array& m, const py::array& sums, int axis, bool writeable) {
    if (!x.dtype().equal(m.dtype())) throw py::type_error("x and m must have the same dtype");
    if (!has_dtype<double>(sums)) throw py::type_error("sums must be a float64 array");
    const auto nd = x.ndim();
    if (!has_shape_of(m, x, axis)) throw py::value_error("m must have x's shape with length 1 along axis");
    if (sums.ndim() != nd + 1) throw py::value_error("sums must have m's shape plus a last axis of length 2");
    if (writeable && (!m.writeable() || !sums.writeable())) throw py::value_error("m and sums must be writeable");
    const layout lm = layout_of(m, "m"), ls = layout_of(sums, "sums");
    if (ls.shape[nd] != 2 || ls.strides[nd] != 1) throw py::value_error("sums must end in a unit-stride axis of length 2");
    for (py::ssize_t d = 0; d < nd; ++d) {
        if (ls.shape[d] != lm.shape[d]) throw py::value_error("sums must have m's shape plus a last axis of length 2");
        if (lm.shape[d] > 1 && ls.strides[d] != 2 * lm.strides[d])
            throw py::value_error("sums must have twice m's element strides");
    }
}

void logsumexp_parts(const py::array& x, py::array m, py::array sums, int axis, double temperature,
                     const std::string& isa, normexp::accuracy acc) {
    check_stats(x, m, sums, axis, true);
    if (has_dtype<float>(x) && has_dtype<float>(m))
        parts_typed<float>(x, m, sums, axis, temperature, isa, acc);
    else if (has_dtype<double>(x) && has_dtype<double>(m))
        parts_typed<double>(x, m, sums, axis, temperature, isa, acc);
    else if (is_float16(x) && is_float16(m))
        parts_typed<normexp::float16>(x, m, sums, axis, temperature, isa, acc);
    else if (is_bfloat16(x) && is_bfloat16(m))
        parts_typed<normexp::bfloat16>(x, m, sums, axis, temperature, isa, acc);
    else
        throw py::type_error("normexp kernels take float32, float64, float16 or bfloat16 arrays");
}

template <class T>
void normalize_typed(normexp::reduction op, const py::array& x, py::array& out, const py::array& m,
                     const py::array& sums, int axis, double temperature, const std::string& isa,
                     normexp::accuracy acc) {
    const layout lx = layout_of(x, "x"), lo = layout_of(out, "out"), lm = layout_of(m, "m");
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(out.mutable_data());
    const T* mp = static_cast<const T*>(m.data());
    const double* sp = static_cast<const double*>(sums.data());
    release_gil nogil;
    normexp::normalize_with<T>(op, xp, lx.strides, yp, lo.strides, lx.shape, axis, mp, sp, lm.strides, temperature,
                               isa.c_str(), acc);
}

// op: softmax or log_softmax (the library refuses logsumexp); out: x's shape and dtype, writeable; m,
// sums as for logsumexp_parts.
void normalize_with(normexp::reduction op, const py::array& x, py::array out, const py::array& m,
                    const py::array& sums, int axis, double temperature, const std::string& isa,
                    normexp::accuracy acc) {
    check_stats(x, m, sums, axis, false);
    if (!x.dtype().equal(out.dtype())) throw py::type_error("x and out must have the same dtype");
    if (!has_shape_of(out, x, -1)) throw py::value_error("out must have x's shape");
    if (!out.writeable()) throw py::value_error("out must be writeable");
    if (has_dtype<float>(x) && has_dtype<float>(out) && has_dtype<float>(m))
        normalize_typed<float>(op, x, out, m, sums, axis, temperature, isa, acc);
    else if (has_dtype<double>(x) && has_dtype<double>(out) && has_dtype<double>(m))
        normalize_typed<double>(op, x, out, m, sums, axis, temperature, isa, acc);
    else if (is_float16(x) && is_float16(out) && is_float16(m))
        normalize_typed<normexp::float16>(op, x, out, m, sums, axis, temperature, isa, acc);
    else if (is_bfloat16(x) && is_bfloat16(out) && is_bfloat16(m))
        normalize_typed<normexp::bfloat16>(op, x, out, m, sums, axis, temperature, isa, acc);
    else
        throw py::type_error("normexp kernels take float32, float64, float16 or bfloat16 arrays");
}

bool is_c_float64(const py::array& a, py::ssize_t ndim) {
    return has_dtype<double>(a) && a.ndim() == ndim && (a.flags() & py::array::c_style);
}

// m: (parts, rows) and sums: (parts, rows, 2), float64 C-contiguous, piece by piece as logsumexp_parts
// wrote them (m in float64). Returns the merged (m, sums) of shapes (rows,) and (rows, 2).
py::tuple merge_parts(const py::array& m, const py::array& sums, double temperature) {
    if (!is_c_float64(m, 2) || !is_c_float64(sums, 3) || sums.shape(0) != m.shape(0) ||
        sums.shape(1) != m.shape(1) || sums.shape(2) != 2)
        throw py::value_error("merge_parts: m (parts, rows) and sums (parts, rows, 2) must be C-contiguous float64");
    const auto parts = static_cast<std::size_t>(m.shape(0)), rows = static_cast<std::size_t>(m.shape(1));
    py::array_t<double> m_out(m.shape(1)), sums_out({m.shape(1), py::ssize_t(2)});
    const auto* mp = static_cast<const double*>(m.data());
    const auto* sp = static_cast<const double*>(sums.data());
    double* mo = m_out.mutable_data();
    double* so = sums_out.mutable_data();
    {
        release_gil nogil;
        normexp::merge_parts(parts, rows, mp, sp, mo, so, temperature);
    }
    return py::make_tuple(std::move(m_out), std::move(sums_out));
}

// m: (rows,) and sums: (rows, 2), float64 C-contiguous. Returns logsumexp (rows,) in float64, to be rounded
// to float32 or a 16-bit type when float_result (normexp.hpp).
py::array_t<double> logsumexp_from_parts(const py::array& m, const py::array& sums, bool float_result) {
    if (!is_c_float64(m, 1) || !is_c_float64(sums, 2) || sums.shape(0) != m.shape(0) || sums.shape(1) != 2)
        throw py::value_error("logsumexp_from_parts: m (rows,) and sums (rows, 2) must be C-contiguous float64");
    py::array_t<double> out(m.shape(0));
    const auto* mp = static_cast<const double*>(m.data());
    const auto* sp = static_cast<const double*>(sums.data());
    normexp::logsumexp_from_parts(static_cast<std::size_t>(m.shape(0)), mp, sp, out.mutable_data(), float_result);
    return out;
}

}  // namespace

void bind_parts(py::module_& m) {
    m.def("merge_parts", &merge_parts, py::arg("m"), py::arg("sums"), py::arg("temperature") = 1.0);
    m.def("logsumexp_from_parts", &logsumexp_from_parts, py::arg("m"), py::arg("sums"),
          py::arg("float_result").noconvert() = false);
    m.def("logsumexp_parts", &logsumexp_parts, py::arg("x"), py::arg("m"), py::arg("sums"), py::arg("axis"),
          py::arg("temperature") = 1.0, py::arg("isa") = "", py::arg("accuracy") = normexp::accuracy::high);
    m.def("normalize_with", &normalize_with, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("m"), py::arg("sums"),
          py::arg("axis"), py::arg("temperature") = 1.0, py::arg("isa") = "",
          py::arg("accuracy") = normexp::accuracy::high);
}
