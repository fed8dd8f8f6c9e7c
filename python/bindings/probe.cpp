// Bindings of the machine probe (cpp/src/machine_probe.hpp): memory bandwidth and FMA peak, used by the
// benchmark (normexp.bench.machine) to put every measurement next to this machine's physical limits.
#include <string>

#include "bindings.hpp"
#include "machine_probe.hpp"

namespace py = pybind11;
namespace pr = normexp::probe;

namespace {

pr::memory_op parse_memory_op(const std::string& op) {
    if (op == "read") return pr::memory_op::read;
    if (op == "copy") return pr::memory_op::copy;
    if (op == "copy_nt") return pr::memory_op::copy_nt;
    throw py::value_error("memory op must be 'read', 'copy' or 'copy_nt', got '" + op + "'");
}

py::dict as_dict(const pr::timed_passes& r) {
    py::dict d;
    d["seconds"] = r.seconds;
    d["threads"] = r.threads;
    d["variant"] = r.variant;
    return d;
}

}  // namespace

void bind_probe(py::module_& m) {
    m.def(
        "probe_memory",
        [](const std::string& op, std::size_t bytes, int threads, int reps) {
            const auto o = parse_memory_op(op);
            pr::timed_passes r;
            {
                py::gil_scoped_release nogil;
                r = pr::memory_bandwidth(o, bytes, threads, reps);
            }
            return as_dict(r);
        },
        py::arg("op"), py::arg("bytes"), py::arg("threads"), py::arg("reps"));
    m.def("probe_memory_supported", [](const std::string& op) { return pr::supported(parse_memory_op(op)); },
          py::arg("op"));
    m.def(
        "probe_fma",
        [](const std::string& isa, std::size_t iterations, int threads, int reps) {
            pr::timed_passes r;
            {
                py::gil_scoped_release nogil;
                r = pr::fma_peak(isa, iterations, threads, reps);
            }
            py::dict d = as_dict(r);
            d["flops_per_thread_pass"] = pr::fma_flops_per_iteration(isa) * static_cast<double>(iterations);
            return d;
        },
        py::arg("isa"), py::arg("iterations"), py::arg("threads"), py::arg("reps"));
}
