// Binding of normexp::logsumexp_parts: the (max, log-sum) pair of each row, the partial result that
// normexp.dask merges across chunks. Argument checking lives in python/normexp/dask.py (_parts); this
// layer only checks what the C++ call needs to be memory-safe.
#include <string>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

template <class T>
void parts_typed(const py::array& x, py::array& m, py::array& l, int axis, double temperature, const std::string& isa) {
    const layout lx = layout_of(x, "x"), lm = layout_of(m, "m");
    const T* xp = static_cast<const T*>(x.data());
    T* mp = static_cast<T*>(m.mutable_data());
    double* lp = static_cast<double*>(l.mutable_data());
    py::gil_scoped_release nogil;
    normexp::logsumexp_parts<T>(xp, lx.strides, mp, lp, lm.strides, lx.shape, axis, temperature, isa.c_str());
}

// x: float32 or float64; m: x's dtype, l: float64, both writeable with x's rank, length 1 along axis, and
// the same shape and element strides (e.g. both C-contiguous).
void logsumexp_parts(const py::array& x, py::array m, py::array l, int axis, double temperature,
                     const std::string& isa) {
    if (!x.dtype().is(m.dtype())) throw py::type_error("x and m must have the same dtype");
    if (!l.dtype().is(py::dtype::of<double>())) throw py::type_error("l must be a float64 array");
    if (m.ndim() != x.ndim() || l.ndim() != x.ndim()) throw py::value_error("m and l must have the rank of x");
    const layout lm = layout_of(m, "m"), ll = layout_of(l, "l");
    if (lm.shape != ll.shape) throw py::value_error("m and l must have the same shape");
    for (std::size_t d = 0; d < lm.shape.size(); ++d) {
        const auto want = (int(d) == (axis < 0 ? axis + x.ndim() : axis)) ? std::size_t(1) : static_cast<std::size_t>(x.shape(d));
        if (lm.shape[d] != want) throw py::value_error("m and l must have x's shape with length 1 along axis");
        if (lm.shape[d] > 1 && lm.strides[d] != ll.strides[d])
            throw py::value_error("m and l must have the same element strides");
    }
    if (x.dtype().is(py::dtype::of<float>()))
        parts_typed<float>(x, m, l, axis, temperature, isa);
    else if (x.dtype().is(py::dtype::of<double>()))
        parts_typed<double>(x, m, l, axis, temperature, isa);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays");
}

}  // namespace

void bind_parts(py::module_& m) {
    m.def("logsumexp_parts", &logsumexp_parts, py::arg("x"), py::arg("m"), py::arg("l"), py::arg("axis"),
          py::arg("temperature") = 1.0, py::arg("isa") = "");
}
