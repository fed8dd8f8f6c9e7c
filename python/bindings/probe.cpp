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

// One check for the probe's integer arguments: taken signed, so that a negative or huge value is a
// ValueError naming it, not pybind11's "incompatible function arguments" (the library's own checks,
// machine_probe.cpp, refuse the values below their minimum).
long long in_range(const char* name, long long v, long long hi) {
    if (v > hi) throw py::value_error(std::string("probe: ") + name + " must be at most " + std::to_string(hi) +
                                      ", got " + std::to_string(v));
    return v;
}
std::size_t size_arg(const char* name, long long v, long long hi) {
    if (v < 0) throw py::value_error(std::string("probe: ") + name + " must be >= 0, got " + std::to_string(v));
    return static_cast<std::size_t>(in_range(name, v, hi));
}
constexpr long long kMaxBytes = 1LL << 46;       // 64 TiB
constexpr long long kMaxIterations = 1LL << 32;  // seconds per pass, not years
constexpr long long kMaxCount = 1LL << 20;       // threads (capped to the CPUs anyway), passes

}  // namespace

PYBIND11_MODULE(_probe, m) {
    m.doc() = "normexp's machine probe for the benchmark (memory bandwidth, FMA peak)";
    m.def(
        "probe_memory",
        [](const std::string& op, long long bytes, long long threads, long long reps) {
            const auto o = parse_memory_op(op);
            const std::size_t n = size_arg("bytes", bytes, kMaxBytes);
            const int t = static_cast<int>(in_range("threads", threads, kMaxCount));
            const int k = static_cast<int>(in_range("reps", reps, kMaxCount));
            pr::timed_passes r;
            {
                release_gil nogil;
                r = pr::memory_bandwidth(o, n, t, k);
            }
            return as_dict(r);
        },
        py::arg("op"), py::arg("bytes"), py::arg("threads"), py::arg("reps"));
    m.def("probe_memory_supported", [](const std::string& op) { return pr::supported(parse_memory_op(op)); },
          py::arg("op"));
    m.def(
        "probe_fma",
        [](const std::string& isa, long long iterations, long long threads, long long reps) {
            const std::size_t n = size_arg("iterations", iterations, kMaxIterations);
            const int t = static_cast<int>(in_range("threads", threads, kMaxCount));
            const int k = static_cast<int>(in_range("reps", reps, kMaxCount));
            const bool runs = isa_runs(isa);  // fma_peak names the loops and ignores this for baseline
            pr::timed_passes r;
            {
                release_gil nogil;
                r = pr::fma_peak(isa, runs, n, t, k);
            }
            py::dict d = as_dict(r);
            d["flops_per_thread_pass"] = pr::fma_flops_per_iteration(isa) * static_cast<double>(n);
            return d;
        },
        py::arg("isa"), py::arg("iterations"), py::arg("threads"), py::arg("reps"));
}
