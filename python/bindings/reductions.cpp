// Bindings of the reductions (softmax, log_softmax, logsumexp, exp) and of the library-wide controls.
// Argument checking, dtype promotion and broadcasting live in python/normexp/_api.py; this layer only
// reads buffer layouts, releases the GIL and calls the C++ API.
#include <string>

#include "bindings.hpp"

namespace py = pybind11;

layout layout_of(const py::array& a, const char* name) {
    layout l;
    const auto item = static_cast<py::ssize_t>(a.itemsize());
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        l.shape.push_back(static_cast<std::size_t>(a.shape(d)));
        if (a.strides(d) % item != 0)
            throw py::value_error(std::string(name) + ": strides must be a multiple of the item size");
        l.strides.push_back(a.strides(d) / item);
    }
    return l;
}

namespace {

normexp::reduction parse_op(const std::string& op) {
    if (op == "softmax") return normexp::reduction::softmax;
    if (op == "log_softmax") return normexp::reduction::log_softmax;
    if (op == "logsumexp") return normexp::reduction::logsumexp;
    throw py::value_error("unknown reduction '" + op + "'");
}

template <class T>
void reduce_typed(normexp::reduction op, const py::array& x, py::array& out, int axis, double temperature,
                  const std::string& isa) {
    const layout lx = layout_of(x, "x"), lo = layout_of(out, "out");
    const T* xp = static_cast<const T*>(x.data());
    T* op_ = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release nogil;
    normexp::reduce<T>(op, xp, lx.strides, op_, lo.strides, lx.shape, axis, temperature, isa.c_str());
}

// x and out: float32 or float64 arrays of the same dtype, out writeable; for logsumexp out has x's rank
// with length 1 along axis (its stride there is ignored).
void reduce(const std::string& op_name, const py::array& x, py::array out, int axis, double temperature,
            const std::string& isa) {
    const auto op = parse_op(op_name);
    if (!x.dtype().equal(out.dtype())) throw py::type_error("x and out must have the same dtype");
    if (out.ndim() != x.ndim()) throw py::value_error("out must have the rank of x");
    if (x.dtype().equal(py::dtype::of<float>()))
        reduce_typed<float>(op, x, out, axis, temperature, isa);
    else if (x.dtype().equal(py::dtype::of<double>()))
        reduce_typed<double>(op, x, out, axis, temperature, isa);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays");
}

template <class T>
void exp_typed(const py::array& x, py::array& out, const std::string& isa) {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(out.mutable_data());
    const auto n = static_cast<std::size_t>(x.size());
    py::gil_scoped_release nogil;
    normexp::exp<T>(xp, yp, n, isa.c_str());
}

// Elementwise exp of a C-contiguous array into a C-contiguous array of the same dtype and size.
void vexp(const py::array& x, py::array out, const std::string& isa) {
    if (!x.dtype().equal(out.dtype())) throw py::type_error("x and out must have the same dtype");
    if (x.size() != out.size()) throw py::value_error("x and out must have the same size");
    const auto cflags = py::array::c_style;
    if (!(x.flags() & cflags) || !(out.flags() & cflags)) throw py::value_error("x and out must be C-contiguous");
    if (x.dtype().equal(py::dtype::of<float>()))
        exp_typed<float>(x, out, isa);
    else if (x.dtype().equal(py::dtype::of<double>()))
        exp_typed<double>(x, out, isa);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays");
}

}  // namespace

void bind_reductions(py::module_& m) {
    m.def("reduce", &reduce, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"),
          py::arg("isa") = "");
    m.def("exp", &vexp, py::arg("x"), py::arg("out"), py::arg("isa") = "");
    m.def("set_num_threads", &normexp::set_num_threads, py::arg("n"));
    m.def("get_num_threads", &normexp::get_num_threads);
    m.def("isa", [] { return std::string(normexp::isa()); });
    m.def("available_isas", &normexp::available_isas);
    m.attr("__version__") = normexp::version();
}
