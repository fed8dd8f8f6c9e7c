// normexp._probe: the machine probe (cpp/src/machine_probe.hpp), memory bandwidth and FMA peak, used by
// the benchmark (normexp.bench.machine) to put every measurement next to this machine's physical limits.
// A module of its own, so that the library module normexp._core carries no benchmark code.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "machine_probe.hpp"
#include "release_gil.hpp"

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
    if (r.huge_page_bytes >= 0) d["huge_page_bytes"] = r.huge_page_bytes;
    return d;
}

// True if the library's dispatch lists the kernel set `isa` (normexp.available_isas(): this CPU and OS run
// it), asked of normexp._core so that this module links no copy of the dispatcher.
bool isa_runs(const std::string& isa) {
    for (const auto& name : py::module_::import("normexp._core").attr("available_isas")())
        if (name.cast<std::string>() == isa) return true;
    return false;
}

}  // namespace

PYBIND11_MODULE(_probe, m) {
    m.doc() = "normexp's machine probe for the benchmark (memory bandwidth, FMA peak)";
    m.def(
        "probe_memory",
        [](const std::string& op, std::size_t bytes, int threads, int reps) {
            const auto o = parse_memory_op(op);
            pr::timed_passes r;
            {
                release_gil nogil;
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
            const bool runs = isa_runs(isa);  // fma_peak names the loops and ignores this for baseline
            pr::timed_passes r;
            {
                release_gil nogil;
                r = pr::fma_peak(isa, runs, iterations, threads, reps);
            }
            py::dict d = as_dict(r);
            d["flops_per_thread_pass"] = pr::fma_flops_per_iteration(isa) * static_cast<double>(iterations);
            return d;
        },
        py::arg("isa"), py::arg("iterations"), py::arg("threads"), py::arg("reps"));
}
