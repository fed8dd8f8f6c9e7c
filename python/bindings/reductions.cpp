// Bindings of the reductions (softmax, log_softmax, logsumexp, exp) and of the library-wide controls.
// Argument checking, dtype promotion and broadcasting live in python/normexp/_api.py: this layer trusts
// the arguments it is given (axes normalized, temperatures checked) and checks only what the raw-pointer
// C++ calls need to be memory-safe (dtypes, ranks, shapes, writeability). The C++ library checks its own
// arguments again for its C and C++ callers (cpp/src/reduce.cpp). The op is the bound enum
// normexp._core.Reduction, never an integer or a string.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"

namespace py = pybind11;

bool has_shape_of(const py::array& a, const py::array& x, py::ssize_t reduced) {
    if (a.ndim() != x.ndim()) return false;
    for (py::ssize_t d = 0; d < x.ndim(); ++d)
        if (a.shape(d) != (d == reduced ? 1 : x.shape(d))) return false;
    return true;
}

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
// The byte-order character of a dtype that is not in this machine's order ('>' on a little-endian one).
char swapped_byteorder() {
    const std::uint16_t probe = 1;
    unsigned char first;
    std::memcpy(&first, &probe, 1);
    return first == 1 ? '>' : '<';
}
}  // namespace

bool is_float16(const py::array& a) {
    constexpr int kNpyHalf = 23;  // NPY_HALF (pybind11's npy_api does not name it)
    const py::dtype dt = a.dtype();
    return dt.num() == kNpyHalf && dt.byteorder() != swapped_byteorder();
}
// Recognized by name once, by its type number after that (a user dtype's number is fixed for the process,
// and NumPy builds its name on every access: microseconds per check, most of a small bfloat16 call). Called
// with the GIL held, so the static needs no atomics.
// Native byte order only, as is_float16: a byte-swapped bfloat16 has the same number and name, and read in
// place it would be garbage (the Python layer converts it first).
bool is_bfloat16(const py::array& a) {
    constexpr int kNpyUserDef = 256;  // NPY_USERDEF: the first user type number, never a plain void's
    static int known = -1;
    const py::dtype dt = a.dtype();
    if (dt.byteorder() == swapped_byteorder()) return false;
    if (known >= 0 && dt.num() == known) return true;
    if (!(dt.itemsize() == 2 && dt.kind() == 'V' && py::str(dt.attr("name")).cast<std::string>() == "bfloat16"))
        return false;
    if (dt.num() >= kNpyUserDef) known = dt.num();
    return true;
}

namespace {

template <class T>
void reduce_typed(normexp::reduction op, const py::array& x, py::array& out, int axis, double temperature,
                  const std::string& isa, normexp::accuracy acc) {
    const layout lx = layout_of(x, "x"), lo = layout_of(out, "out");
    const T* xp = static_cast<const T*>(x.data());
    T* op_ = static_cast<T*>(out.mutable_data());
    release_gil nogil;
    normexp::reduce<T>(op, xp, lx.strides, op_, lo.strides, lx.shape, axis, temperature, isa.c_str(), acc);
}

// x and out: float32 or float64 arrays of the same dtype, out writeable with x's shape; for logsumexp
// with length 1 along axis (its stride there is ignored). axis: normalized (0 <= axis < x.ndim).
void reduce(normexp::reduction op, const py::array& x, py::array out, int axis, double temperature,
            const std::string& isa, normexp::accuracy acc) {
    if (!has_shape_of(out, x, op == normexp::reduction::logsumexp ? axis : -1))
        throw py::value_error("out must have x's shape (logsumexp: with length 1 along axis)");
    if (has_dtype<float>(x) && has_dtype<float>(out))
        reduce_typed<float>(op, x, out, axis, temperature, isa, acc);
    else if (has_dtype<double>(x) && has_dtype<double>(out))
        reduce_typed<double>(op, x, out, axis, temperature, isa, acc);
    else if (is_float16(x) && is_float16(out))
        reduce_typed<normexp::float16>(op, x, out, axis, temperature, isa, acc);
    else if (is_bfloat16(x) && is_bfloat16(out))
        reduce_typed<normexp::bfloat16>(op, x, out, axis, temperature, isa, acc);
    else
        throw py::type_error(
            "normexp kernels take float32, float64, float16 or bfloat16 arrays (x and out of the same dtype)");
}

template <class T>
void exp_typed(const py::array& x, py::array& out, const std::string& isa) {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(out.mutable_data());
    const auto n = static_cast<std::size_t>(x.size());
    release_gil nogil;
    normexp::exp<T>(xp, yp, n, isa.c_str());
}

// Elementwise exp of a C-contiguous array into a C-contiguous array of the same dtype and size.
void vexp(const py::array& x, py::array out, const std::string& isa) {
    if (x.size() != out.size()) throw py::value_error("x and out must have the same size");
    const auto cflags = py::array::c_style;
    if (!(x.flags() & cflags) || !(out.flags() & cflags)) throw py::value_error("x and out must be C-contiguous");
    if (has_dtype<float>(x) && has_dtype<float>(out))
        exp_typed<float>(x, out, isa);
    else if (has_dtype<double>(x) && has_dtype<double>(out))
        exp_typed<double>(x, out, isa);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays (x and out of the same dtype)");
}

// ---- fast path ---------------------------------------------------------------------------------------
// The common call (an exact ndarray of float32/float64/float16/bfloat16, an int axis, a valid temperature, no where=,
// out= absent or a matching array) is handled here in one crossing, without the Python-level checks:
// the general path in _api.py costs ~10 us, which dominates small inputs. Anything else returns None
// and the caller runs the general path, which owns every error message.
bool is_exact_ndarray(py::handle h) {
    static PyObject* const ndarray_type = py::module_::import("numpy").attr("ndarray").ptr();  // kept alive by numpy
    return reinterpret_cast<PyObject*>(Py_TYPE(h.ptr())) == ndarray_type;
}

bool is_little_endian() {
    const std::uint16_t probe = 1;
    unsigned char first;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

// The storage the kernels read for an array the fast path takes: 4 float32, 8 float64, 2 float16 or
// bfloat16 (half says which), 0 none.
int storage_bytes(const py::array& a, bool& bf16) {
    const int num = a.dtype().num();
    bf16 = false;
    if (num == py::detail::npy_api::NPY_FLOAT_) return 4;
    if (num == py::detail::npy_api::NPY_DOUBLE_) return 8;
    if (is_float16(a)) return 2;
    if (a.dtype().kind() == 'V' && is_bfloat16(a)) return bf16 = true, 2;
    return 0;
}

bool kernel_ready(const py::array& a, bool writeable) {
    // Native float32/float64/float16 and ml_dtypes.bfloat16 only (dtype equivalence includes the byte order:
    // a '>f4' array must take the general path, which converts it, never be read as native floats).
    const py::dtype dt = a.dtype();
    bool bf16;
    if (storage_bytes(a, bf16) == 0) return false;
    if (dt.byteorder() == (is_little_endian() ? '>' : '<')) return false;
    const int need = py::detail::npy_api::NPY_ARRAY_ALIGNED_ | (writeable ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0);
    if ((a.flags() & need) != need) return false;
    for (py::ssize_t d = 0; d < a.ndim(); ++d)
        if (a.strides(d) % a.itemsize() != 0) return false;
    return true;
}

// Byte range [lo, hi) an array can touch.
std::pair<std::uintptr_t, std::uintptr_t> extent(const py::array& a) {
    std::intptr_t lo = 0, hi = a.itemsize();
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (a.shape(d) == 0) return {0, 0};
        const std::intptr_t span = (a.shape(d) - 1) * a.strides(d);
        (span < 0 ? lo : hi) += span;
    }
    const auto base = reinterpret_cast<std::intptr_t>(a.data());
    return {std::uintptr_t(base + lo), std::uintptr_t(base + hi)};
}

// out may be x itself (same data and strides), or disjoint from it.
bool safe_alias(const py::array& x, const py::array& out) {
    const auto a = extent(x), b = extent(out);
    if (a.second <= b.first || b.second <= a.first) return true;
    if (x.data() != out.data() || x.ndim() != out.ndim()) return false;
    for (py::ssize_t d = 0; d < x.ndim(); ++d)
        if (x.strides(d) != out.strides(d)) return false;
    return true;
}

// The accuracy keyword as the fast path reads it: exactly the str "high" or "fast", else nothing (the general
// path owns the message).
bool accuracy_of(py::handle h, normexp::accuracy& acc) {
    if (!PyUnicode_CheckExact(h.ptr())) return false;
    if (PyUnicode_CompareWithASCIIString(h.ptr(), "high") == 0) acc = normexp::accuracy::high;
    else if (PyUnicode_CompareWithASCIIString(h.ptr(), "fast") == 0) acc = normexp::accuracy::fast;
    else return false;
    return true;
}

py::object fast_reduce(normexp::reduction op, py::handle xh, py::handle axis_h, py::handle temp_h, py::handle out_h,
                       bool keepdims, const std::string& isa, py::handle acc_h) {
    normexp::accuracy acc = normexp::accuracy::high;
    if (!is_exact_ndarray(xh) || !accuracy_of(acc_h, acc)) return py::none();
    const auto x = py::reinterpret_borrow<py::array>(xh);
    const py::ssize_t nd = x.ndim();
    if (nd < 1 || !kernel_ready(x, false) || !PyLong_CheckExact(axis_h.ptr())) return py::none();
    // An int beyond a C long (axis=2**63) or a double (temperature=10**400) sets OverflowError: clear it
    // (returning with an exception set is a SystemError) and let the general path refuse the value.
    int overflow = 0;
    long axis = PyLong_AsLongAndOverflow(axis_h.ptr(), &overflow);
    if (overflow != 0 || (axis == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return py::none();
    }
    if (axis < -nd || axis >= nd) return py::none();
    if (axis < 0) axis += nd;
    double temperature = 1.0;  // logsumexp passes no temperature (a null handle)
    if (temp_h) {
        if (PyFloat_CheckExact(temp_h.ptr())) {
            temperature = PyFloat_AS_DOUBLE(temp_h.ptr());
        } else if (PyLong_CheckExact(temp_h.ptr())) {
            temperature = PyLong_AsDouble(temp_h.ptr());
            if (temperature == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return py::none();
            }
        } else {
            return py::none();
        }
        if (!(std::isfinite(temperature) && temperature > 0)) return py::none();
    }
    const bool lse = op == normexp::reduction::logsumexp;

    // Result shape: x's, or x's without the axis (keepdims: with length 1).
    std::vector<py::ssize_t> rshape;
    for (py::ssize_t d = 0; d < nd; ++d) {
        if (lse && d == axis) {
            if (keepdims) rshape.push_back(1);
        } else {
            rshape.push_back(x.shape(d));
        }
    }
    py::array out;
    if (out_h.is_none()) {
        out = py::array(x.dtype(), rshape);
    } else {
        if (!is_exact_ndarray(out_h)) return py::none();
        out = py::reinterpret_borrow<py::array>(out_h);
        if (!out.dtype().is(x.dtype()) || !kernel_ready(out, true) || out.ndim() != py::ssize_t(rshape.size()))
            return py::none();
        for (std::size_t d = 0; d < rshape.size(); ++d)
            if (out.shape(py::ssize_t(d)) != rshape[d]) return py::none();
        if (!safe_alias(x, out)) return py::none();
    }
    const layout lx = layout_of(x, "x");
    normexp::strides_t ys(std::size_t(nd), 0);
    for (py::ssize_t d = 0, k = 0; d < nd; ++d) {
        if (lse && d == axis) {
            if (keepdims) ++k;
            continue;
        }
        ys[std::size_t(d)] = out.strides(k) / out.itemsize();
        ++k;
    }
    bool bf16 = false;
    const int bytes = storage_bytes(x, bf16);
    {
        release_gil nogil;
        if (bytes == 2 && bf16)
            normexp::reduce<normexp::bfloat16>(op, static_cast<const normexp::bfloat16*>(x.data()), lx.strides,
                                               static_cast<normexp::bfloat16*>(out.mutable_data()), ys, lx.shape,
                                               int(axis), temperature, isa.c_str(), acc);
        else if (bytes == 2)
            normexp::reduce<normexp::float16>(op, static_cast<const normexp::float16*>(x.data()), lx.strides,
                                              static_cast<normexp::float16*>(out.mutable_data()), ys, lx.shape,
                                              int(axis), temperature, isa.c_str(), acc);
        else if (bytes == 4)
            normexp::reduce<float>(op, static_cast<const float*>(x.data()), lx.strides, static_cast<float*>(out.mutable_data()),
                                   ys, lx.shape, int(axis), temperature, isa.c_str(), acc);
        else
            normexp::reduce<double>(op, static_cast<const double*>(x.data()), lx.strides, static_cast<double*>(out.mutable_data()),
                                    ys, lx.shape, int(axis), temperature, isa.c_str(), acc);
    }
    if (out_h.is_none() && out.ndim() == 0) return out[py::tuple()];  // a NumPy scalar, like NumPy reductions
    return std::move(out);
}

}  // namespace

void bind_reductions(py::module_& m) {
    // The op of reduce and normalize_with. pybind11 converts only members of this type
    // (an int is a TypeError); Reduction(7) can still be built from Python, and the library refuses it.
    py::enum_<normexp::reduction>(m, "Reduction")
        .value("softmax", normexp::reduction::softmax)
        .value("log_softmax", normexp::reduction::log_softmax)
        .value("logsumexp", normexp::reduction::logsumexp);
    // The accuracy contract of reduce, logsumexp_parts and normalize_with (normexp::accuracy); like Reduction,
    // only members convert (the Python API maps the strings "high" / "fast" onto it, _api.py).
    py::enum_<normexp::accuracy>(m, "Accuracy")
        .value("high", normexp::accuracy::high)
        .value("fast", normexp::accuracy::fast);
    // The fast path: one entry point per op, so no op value crosses on the hot path at all. accuracy is the
    // user's value, taken only when it is exactly "high" or "fast".
    m.def("fast_softmax", [](py::handle x, py::handle axis, py::handle temperature, py::handle out, const std::string& isa,
                             py::handle accuracy) {
        return fast_reduce(normexp::reduction::softmax, x, axis, temperature, out, false, isa, accuracy);
    });
    m.def("fast_log_softmax", [](py::handle x, py::handle axis, py::handle temperature, py::handle out, const std::string& isa,
                                 py::handle accuracy) {
        return fast_reduce(normexp::reduction::log_softmax, x, axis, temperature, out, false, isa, accuracy);
    });
    m.def("fast_logsumexp", [](py::handle x, py::handle axis, py::handle out, bool keepdims, const std::string& isa,
                               py::handle accuracy) {
        return fast_reduce(normexp::reduction::logsumexp, x, axis, py::handle(), out, keepdims, isa, accuracy);
    });
    m.def("reduce", &reduce, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"),
          py::arg("isa") = "", py::arg("accuracy") = normexp::accuracy::high);
    m.def("exp", &vexp, py::arg("x"), py::arg("out"), py::arg("isa") = "");
    m.def("set_num_threads", &normexp::set_num_threads, py::arg("n"));
    m.def("get_num_threads", &normexp::get_num_threads);
    m.def("isa", [] { return std::string(normexp::isa()); });
    m.def("available_isas", &normexp::available_isas);
    m.def("isa_extensions", &normexp::isa_extensions);
    m.attr("__version__") = normexp::version();
}
