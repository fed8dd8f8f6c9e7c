// normexp._core: the pybind11 module. Each feature binds itself from its own file (bindings.hpp).
#include "bindings.hpp"

#include "normexp/normexp.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "normexp native kernels (use the functions of the normexp package)";
    pybind11::register_exception<normexp::error>(m, "NormexpError", PyExc_ValueError);
    // Registered after its base, so tried first: an IndexError that is also a ValueError (as NumPy's AxisError).
    pybind11::register_exception<normexp::index_error>(
        m, "NormexpIndexError", pybind11::make_tuple(pybind11::handle(PyExc_IndexError), pybind11::handle(PyExc_ValueError)));
    bind_reductions(m);
    bind_attention(m);
    bind_sampling(m);
    bind_lm_head(m);
    bind_parts(m);
}
