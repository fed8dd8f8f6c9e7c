// Bindings of the fused output layer: linear_logsumexp and linear_cross_entropy. Argument checking and dtype
// promotion live in python/normexp/lm_head.py; this layer checks what the raw-pointer calls need to be
// memory-safe (dtypes, ranks, shapes, unit stride along the hidden dimension, output buffers), releases the
// GIL and calls the C++ API (cpp/src/linear_head.cpp), which checks its own arguments.
#include <optional>
#include <string>
#include <type_traits>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

// Is a's dtype W? float16 and bfloat16 recognized as the reductions' bindings recognize them (bindings.hpp).
template <class W>
bool is_dtype(const py::array& a) {
    if constexpr (std::is_same_v<W, normexp::float16>) return is_float16(a);
    else if constexpr (std::is_same_v<W, normexp::bfloat16>) return is_bfloat16(a);
    else return has_dtype<W>(a);
}

// hidden (rows, dim) of dtype T and weight (vocab, dim) of dtype W (T, or 16-bit with T float32) with unit
// stride along dim and non-negative row strides; bias (vocab,) of dtype T, contiguous, or None.
template <class T, class W>
normexp::linear_head_options<T> head_options(const char* fn, const py::array& hidden, const py::array& weight,
                                             const std::optional<py::array>& bias) {
    const std::string f = fn;
    if (hidden.ndim() != 2 || weight.ndim() != 2)
        throw py::value_error(f + ": hidden must be 2-d (rows, dim) and weight 2-d (vocab, dim)");
    if (hidden.shape(1) != weight.shape(1)) throw py::value_error(f + ": hidden and weight differ in dim");
    if (!is_dtype<W>(weight)) throw py::type_error(f + ": weight has an unexpected dtype");
    // An empty array is never read, and NumPy gives it any strides (0, 0 for a fresh one): only the layout of
    // arrays with elements is checked.
    for (const py::array* a : {&hidden, &weight}) {
        const auto item = static_cast<py::ssize_t>(a == &hidden ? sizeof(T) : sizeof(W));
        if (a->size() > 0 && ((a->shape(1) > 1 && a->strides(1) != item) || (a->shape(0) > 1 && a->strides(0) <= 0) ||
                              a->strides(0) % item != 0))
            throw py::value_error(f + ": hidden and weight must have unit stride along dim and forward rows");
    }
    normexp::linear_head_options<T> o;
    if (bias) {
        if (!has_dtype<T>(*bias) || bias->ndim() != 1 || bias->shape(0) != weight.shape(0) ||
            !(bias->flags() & py::array::c_style))
            throw py::value_error(f + ": bias must be a contiguous array of one entry per vocabulary row, like weight");
        o.bias = static_cast<const T*>(bias->data());
    }
    // A row stride of 0 means "dim" to the library: only a single row gets here with one (checked above).
    const auto stride = [&](const py::array& a) {
        const py::ssize_t s = a.strides(0) / a.itemsize();
        return s > 0 ? static_cast<std::ptrdiff_t>(s) : static_cast<std::ptrdiff_t>(a.shape(1));
    };
    o.hidden_stride = stride(hidden);
    o.weight_stride = stride(weight);
    return o;
}

template <class T, class W>
void lse_typed(const py::array& hidden, const py::array& weight, const std::optional<py::array>& bias, py::array& out,
               const std::string& isa) {
    normexp::linear_head_options<T> o = head_options<T, W>("linear_logsumexp", hidden, weight, bias);
    if (!has_dtype<T>(out)) throw py::value_error("linear_logsumexp: out must have hidden's dtype");
    o.isa = isa.c_str();
    const auto rows = static_cast<std::size_t>(hidden.shape(0)), vocab = static_cast<std::size_t>(weight.shape(0)),
               dim = static_cast<std::size_t>(hidden.shape(1));
    const T* hp = static_cast<const T*>(hidden.data());
    const W* wp = static_cast<const W*>(weight.data());
    T* op = static_cast<T*>(out.mutable_data());
    release_gil nogil;
    if constexpr (std::is_same_v<W, T>)
        normexp::linear_logsumexp<T>(hp, wp, rows, vocab, dim, op, o);
    else
        normexp::linear_logsumexp(hp, wp, rows, vocab, dim, op, o);
}

// out: (rows,) writeable, contiguous, hidden's dtype.
void linear_logsumexp(const py::array& hidden, const py::array& weight, const std::optional<py::array>& bias,
                      py::array out, const std::string& isa) {
    if (out.ndim() != 1 || hidden.ndim() < 1 || out.shape(0) != hidden.shape(0) ||
        !(out.flags() & py::array::c_style) || !out.writeable())
        throw py::value_error("linear_logsumexp: out must be a writeable contiguous array of one entry per row");
    if (has_dtype<double>(hidden) && has_dtype<double>(weight))
        lse_typed<double, double>(hidden, weight, bias, out, isa);
    else if (!has_dtype<float>(hidden))
        throw py::type_error("linear_logsumexp: hidden must be float32 or float64");
    else if (is_dtype<normexp::float16>(weight))
        lse_typed<float, normexp::float16>(hidden, weight, bias, out, isa);
    else if (is_dtype<normexp::bfloat16>(weight))
        lse_typed<float, normexp::bfloat16>(hidden, weight, bias, out, isa);
    else
        lse_typed<float, float>(hidden, weight, bias, out, isa);
}

template <class T, class W>
void ce_typed(const py::array& hidden, const py::array& weight, const std::optional<py::array>& bias,
              const std::int64_t* labels, double* loss, const normexp::linear_cross_entropy_options& ce,
              const std::string& isa) {
    normexp::linear_head_options<T> o = head_options<T, W>("linear_cross_entropy", hidden, weight, bias);
    o.isa = isa.c_str();
    const auto rows = static_cast<std::size_t>(hidden.shape(0)), vocab = static_cast<std::size_t>(weight.shape(0)),
               dim = static_cast<std::size_t>(hidden.shape(1));
    const T* hp = static_cast<const T*>(hidden.data());
    const W* wp = static_cast<const W*>(weight.data());
    release_gil nogil;
    if constexpr (std::is_same_v<W, T>)
        normexp::linear_cross_entropy<T>(hp, wp, rows, vocab, dim, labels, loss, ce, o);
    else
        normexp::linear_cross_entropy(hp, wp, rows, vocab, dim, labels, loss, ce, o);
}

// labels: (rows,) int64 contiguous; loss: (rows,) float64 contiguous, writeable.
void linear_cross_entropy(const py::array& hidden, const py::array& weight, const py::array& labels,
                          const std::optional<py::array>& bias, py::array loss, double label_smoothing,
                          bool use_ignore_index, std::int64_t ignore_index, const std::string& isa) {
    const auto c = py::array::c_style;
    if (hidden.ndim() < 1 || !has_dtype<std::int64_t>(labels) || labels.ndim() != 1 ||
        labels.shape(0) != hidden.shape(0) || !(labels.flags() & c))
        throw py::value_error("linear_cross_entropy: labels must be a contiguous int64 array of one entry per row");
    if (!has_dtype<double>(loss) || loss.ndim() != 1 || loss.shape(0) != labels.shape(0) || !(loss.flags() & c) ||
        !loss.writeable())
        throw py::value_error("linear_cross_entropy: loss must be a writeable contiguous float64 array like labels");
    normexp::linear_cross_entropy_options ce;
    ce.label_smoothing = label_smoothing;
    ce.use_ignore_index = use_ignore_index;
    ce.ignore_index = ignore_index;
    const auto* lp = static_cast<const std::int64_t*>(labels.data());
    auto* lo = static_cast<double*>(loss.mutable_data());
    if (has_dtype<double>(hidden) && has_dtype<double>(weight))
        ce_typed<double, double>(hidden, weight, bias, lp, lo, ce, isa);
    else if (!has_dtype<float>(hidden))
        throw py::type_error("linear_cross_entropy: hidden must be float32 or float64");
    else if (is_dtype<normexp::float16>(weight))
        ce_typed<float, normexp::float16>(hidden, weight, bias, lp, lo, ce, isa);
    else if (is_dtype<normexp::bfloat16>(weight))
        ce_typed<float, normexp::bfloat16>(hidden, weight, bias, lp, lo, ce, isa);
    else
        ce_typed<float, float>(hidden, weight, bias, lp, lo, ce, isa);
}

}  // namespace

void bind_lm_head(py::module_& m) {
    m.def("linear_logsumexp", &linear_logsumexp, py::arg("hidden"), py::arg("weight"), py::arg("bias"),
          py::arg("out"), py::arg("isa") = "");
    m.def("linear_cross_entropy", &linear_cross_entropy, py::arg("hidden"), py::arg("weight"), py::arg("labels"),
          py::arg("bias"), py::arg("loss"), py::arg("label_smoothing"), py::arg("use_ignore_index"),
          py::arg("ignore_index"), py::arg("isa") = "");
}
