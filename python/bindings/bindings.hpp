// Shared helpers of the pybind11 bindings, and one bind_* function per feature file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "normexp/normexp.hpp"
#include "release_gil.hpp"

// Shape and element strides of a NumPy array (strides must be a multiple of the item size).
struct layout {
    normexp::shape_t shape;
    normexp::strides_t strides;
};
layout layout_of(const pybind11::array& a, const char* name);

// True if a has x's shape, with length 1 along dimension `reduced` (-1: none). The bindings take axes
// normalized by python/normexp/_api.py; any other value just asks for x's whole shape here, and the
// C++ call then refuses the axis or writes less than a holds: never out of bounds.
bool has_shape_of(const pybind11::array& a, const pybind11::array& x, pybind11::ssize_t reduced);

void bind_reductions(pybind11::module_& m);
void bind_parts(pybind11::module_& m);

// True if a's dtype is T's (native byte order), compared by equivalence: NumPy dtype objects are not
// singletons (an unpickled float32 array has its own descriptor), so pointer identity (dtype::is)
// would wrongly reject them.
template <class T>
bool has_dtype(const pybind11::array& a) {
    return pybind11::isinstance<pybind11::array_t<T>>(a);
}

// The 16-bit storage types the kernels read and write in place (normexp::float16 / bfloat16): NumPy's
// float16 in native byte order, and ml_dtypes.bfloat16 (a NumPy user dtype, recognized by its name and size).
bool is_float16(const pybind11::array& a);
bool is_bfloat16(const pybind11::array& a);

void bind_attention(pybind11::module_& m);
void bind_sampling(pybind11::module_& m);
void bind_lm_head(pybind11::module_& m);
