// Bindings of the output-layer functions: sample and cross_entropy. Argument checking, dtype promotion
// and the random numbers live in python/normexp/sampling.py (with _api.py's helpers); this layer checks
// what the raw-pointer calls need to be memory-safe (buffer layouts and sizes), releases the GIL and
// calls the C++ API, which checks its own arguments.
#include <optional>
#include <string>
#include <type_traits>

#include "bindings.hpp"

namespace py = pybind11;

namespace {

template <class T>
void sample_typed(const py::array& x, const std::optional<py::array>& u, py::array& out,
                  const normexp::sample_options& opt, const std::string& isa, const std::optional<py::array>& bias,
                  double* logprobs) {
    const auto rows = static_cast<std::size_t>(x.shape(0)), vocab = static_cast<std::size_t>(x.shape(1));
    const T* xp = static_cast<const T*>(x.data());
    const double* up = u ? static_cast<const double*>(u->data()) : nullptr;
    auto* op = static_cast<std::int64_t*>(out.mutable_data());
    const std::ptrdiff_t rs = x.strides(0) / static_cast<py::ssize_t>(sizeof(T));
    const T* bp = bias ? static_cast<const T*>(bias->data()) : nullptr;
    const std::ptrdiff_t bs = bias && bias->ndim() == 2 ? bias->strides(0) / static_cast<py::ssize_t>(sizeof(T)) : 0;
    release_gil nogil;
    normexp::sample<T>(xp, rows, vocab, rs, up, op, opt, isa.c_str(), bp, bs, logprobs);
}

// A per-row option: None, or a contiguous array of `rows` entries of type E.
template <class E>
const E* per_row(const std::optional<py::array>& a, py::ssize_t rows, const char* name) {
    if (!a) return nullptr;
    if (!has_dtype<E>(*a) || a->ndim() != 1 || a->shape(0) != rows || !(a->flags() & py::array::c_style))
        throw py::value_error(std::string("sample: ") + name + " must be a contiguous " +
                              (std::is_same<E, double>::value ? "float64" : "int64") + " array of one entry per row");
    return static_cast<const E*>(a->data());
}

// x: (rows, vocab) float32/float64 with unit stride along vocab; uniforms: (rows,) float64 contiguous or
// None (every row greedy); out: (rows,) int64 contiguous, writeable. The per-row options: None or (rows,)
// contiguous (float64; top_ks int64); prev_tokens: None or (rows, n) int64 C-contiguous; logit_bias: None,
// (vocab,) contiguous or (rows, vocab) with unit stride along vocab, of x's dtype; logprobs: None or
// (rows,) float64 contiguous, writeable.
void sample(const py::array& x, const std::optional<py::array>& uniforms, py::array out, double temperature,
            std::size_t top_k, double top_p, double min_p, const std::string& isa, double repetition_penalty,
            double presence_penalty, double frequency_penalty, const std::optional<py::array>& temperatures,
            const std::optional<py::array>& top_ks, const std::optional<py::array>& top_ps,
            const std::optional<py::array>& min_ps, const std::optional<py::array>& repetition_penalties,
            const std::optional<py::array>& presence_penalties, const std::optional<py::array>& frequency_penalties,
            const std::optional<py::array>& prev_tokens, const std::optional<py::array>& logit_bias,
            const std::optional<py::array>& logprobs) {
    if (x.ndim() != 2) throw py::value_error("sample: logits must be 2-d (rows, vocab)");
    if (x.shape(1) > 1 && x.strides(1) != x.itemsize())
        throw py::value_error("sample: logits must be contiguous along the vocabulary axis");
    if (x.strides(0) % x.itemsize() != 0) throw py::value_error("sample: row stride must be a multiple of the item size");
    const auto c = py::array::c_style;
    const py::ssize_t rows = x.shape(0), vocab = x.shape(1);
    if (!has_dtype<std::int64_t>(out) || out.ndim() != 1 || out.shape(0) != rows || !(out.flags() & c) ||
        !out.writeable())
        throw py::value_error("sample: out must be a writeable contiguous int64 array of one entry per row");
    if (uniforms) {
        if (!has_dtype<double>(*uniforms) || uniforms->ndim() != 1 || uniforms->shape(0) != rows ||
            !(uniforms->flags() & c))
            throw py::value_error("sample: uniforms must be a contiguous float64 array of one entry per row");
    }
    normexp::sample_options opt;
    opt.temperature = temperature;
    opt.top_k = top_k;
    opt.top_p = top_p;
    opt.min_p = min_p;
    opt.repetition_penalty = repetition_penalty;
    opt.presence_penalty = presence_penalty;
    opt.frequency_penalty = frequency_penalty;
    opt.temperatures = per_row<double>(temperatures, rows, "temperatures");
    opt.top_ks = per_row<std::int64_t>(top_ks, rows, "top_ks");
    opt.top_ps = per_row<double>(top_ps, rows, "top_ps");
    opt.min_ps = per_row<double>(min_ps, rows, "min_ps");
    opt.repetition_penalties = per_row<double>(repetition_penalties, rows, "repetition_penalties");
    opt.presence_penalties = per_row<double>(presence_penalties, rows, "presence_penalties");
    opt.frequency_penalties = per_row<double>(frequency_penalties, rows, "frequency_penalties");
    if (prev_tokens) {
        if (!has_dtype<std::int64_t>(*prev_tokens) || prev_tokens->ndim() != 2 || prev_tokens->shape(0) != rows ||
            !(prev_tokens->flags() & c))
            throw py::value_error("sample: prev_tokens must be a C-contiguous int64 array of shape (rows, n)");
        opt.prev_tokens = static_cast<const std::int64_t*>(prev_tokens->data());
        opt.prev_len = static_cast<std::size_t>(prev_tokens->shape(1));
    }
    if (logit_bias) {
        const py::array& b = *logit_bias;
        const bool one = b.ndim() == 1 && b.shape(0) == vocab && (vocab <= 1 || b.strides(0) == b.itemsize());
        const bool each = b.ndim() == 2 && b.shape(0) == rows && b.shape(1) == vocab &&
                          (vocab <= 1 || b.strides(1) == b.itemsize()) && b.strides(0) % b.itemsize() == 0;
        if (b.dtype().not_equal(x.dtype()) || !(one || each))
            throw py::value_error("sample: logit_bias must have the logits' dtype and shape (vocab,) or (rows, vocab), "
                                  "contiguous along the vocabulary");
    }
    double* lp = nullptr;
    if (logprobs) {
        py::array l = *logprobs;  // another handle to the same buffer (the caller's keeps it alive)
        if (!has_dtype<double>(l) || l.ndim() != 1 || l.shape(0) != rows || !(l.flags() & c) || !l.writeable())
            throw py::value_error("sample: logprobs must be a writeable contiguous float64 array of one entry per row");
        lp = static_cast<double*>(l.mutable_data());
    }
    if (has_dtype<float>(x))
        sample_typed<float>(x, uniforms, out, opt, isa, logit_bias, lp);
    else if (has_dtype<double>(x))
        sample_typed<double>(x, uniforms, out, opt, isa, logit_bias, lp);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays");
}

double* optional_doubles(const std::optional<py::array>& a, py::ssize_t rows, const char* name) {
    if (!a) return nullptr;
    if (!has_dtype<double>(*a) || a->size() != rows || !(a->flags() & py::array::c_style) ||
        !a->writeable())
        throw py::value_error(std::string("cross_entropy: ") + name + " must be a writeable contiguous float64 array of one entry per row");
    py::array arr = *a;  // another handle to the same buffer (the caller's keeps it alive)
    return static_cast<double*>(arr.mutable_data());
}

template <class T>
void ce_typed(const py::array& x, const std::int64_t* labels, double* loss, int axis,
              const normexp::cross_entropy_options& opt, double* d1, double* d2, const std::string& isa) {
    const layout lx = layout_of(x, "logits");
    const T* xp = static_cast<const T*>(x.data());
    release_gil nogil;
    normexp::cross_entropy<T>(xp, lx.strides, lx.shape, axis, labels, loss, opt, d1, d2, isa.c_str());
}

// logits: any layout; axis: normalized (0 <= axis < logits.ndim); labels: int64 contiguous, one per row
// (C order of the non-class dimensions);
// loss (and dloss, d2loss): float64 contiguous, one per row.
void cross_entropy(const py::array& x, const py::array& labels, py::array loss, int axis, double temperature,
                   double label_smoothing, bool use_ignore_index, std::int64_t ignore_index,
                   const std::optional<py::array>& dloss, const std::optional<py::array>& d2loss, const std::string& isa) {
    // axis comes normalized (python/normexp/sampling.py); any other value counts every element as a row
    // here, and the library refuses the axis before it reads a label.
    py::ssize_t rows = 1;
    for (py::ssize_t d = 0; d < x.ndim(); ++d)
        if (d != axis) rows *= x.shape(d);
    const auto c = py::array::c_style;
    if (!has_dtype<std::int64_t>(labels) || !(labels.flags() & c) || labels.size() != rows)
        throw py::value_error("cross_entropy: labels must be a contiguous int64 array of one entry per row");
    if (!has_dtype<double>(loss) || !(loss.flags() & c) || !loss.writeable() ||
        loss.size() != labels.size())
        throw py::value_error("cross_entropy: loss must be a writeable contiguous float64 array like labels");
    normexp::cross_entropy_options opt;
    opt.temperature = temperature;
    opt.label_smoothing = label_smoothing;
    opt.use_ignore_index = use_ignore_index;
    opt.ignore_index = ignore_index;
    double* d1 = optional_doubles(dloss, labels.size(), "dloss");
    double* d2 = optional_doubles(d2loss, labels.size(), "d2loss");
    const auto* lp = static_cast<const std::int64_t*>(labels.data());
    auto* lo = static_cast<double*>(loss.mutable_data());
    if (has_dtype<float>(x))
        ce_typed<float>(x, lp, lo, axis, opt, d1, d2, isa);
    else if (has_dtype<double>(x))
        ce_typed<double>(x, lp, lo, axis, opt, d1, d2, isa);
    else
        throw py::type_error("normexp kernels take float32 or float64 arrays");
}

}  // namespace

void bind_sampling(py::module_& m) {
    m.def("sample", &sample, py::arg("x"), py::arg("uniforms"), py::arg("out"), py::arg("temperature"),
          py::arg("top_k"), py::arg("top_p"), py::arg("min_p"), py::arg("isa") = "", py::kw_only(),
          py::arg("repetition_penalty") = 1.0, py::arg("presence_penalty") = 0.0, py::arg("frequency_penalty") = 0.0,
          py::arg("temperatures") = py::none(), py::arg("top_ks") = py::none(), py::arg("top_ps") = py::none(),
          py::arg("min_ps") = py::none(), py::arg("repetition_penalties") = py::none(),
          py::arg("presence_penalties") = py::none(), py::arg("frequency_penalties") = py::none(),
          py::arg("prev_tokens") = py::none(), py::arg("logit_bias") = py::none(), py::arg("logprobs") = py::none());
    m.def("cross_entropy", &cross_entropy, py::arg("x"), py::arg("labels"), py::arg("loss"), py::arg("axis"),
          py::arg("temperature"), py::arg("label_smoothing"), py::arg("use_ignore_index"), py::arg("ignore_index"),
          py::arg("dloss") = py::none(), py::arg("d2loss") = py::none(), py::arg("isa") = "");
}
