// The machine's own limits, measured by the benchmark (python -m normexp bench): memory bandwidth and
// FP32 FMA peak. Not part of the library: built only into the benchmark's module normexp._probe
// (python/bindings/probe.cpp), whose threads go through the drivers' threading guard (threading.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace normexp::probe {

// One pass over `bytes` of memory: read (sum of 64-bit words), copy (regular stores, so each written
// line is also read for ownership) or copy_nt (non-temporal stores that bypass the caches).
enum class memory_op { read, copy, copy_nt };

struct timed_passes {
    std::vector<double> seconds;  // one entry per timed pass
    int threads = 1;              // threads that actually ran (OpenMP may give fewer than asked)
    std::string variant;          // what ran: e.g. "sse2", "generic", "avx2-fma"
    // Memory probe: bytes of its source buffer (rounded up to 2 MiB) on transparent huge pages after the
    // passes, from /proc/self/smaps (AnonHugePages); -1 where the OS does not say (not Linux, no smaps).
    long long huge_page_bytes = -1;
};

// Times `reps` passes of `op` over a buffer of `bytes` (copy: two buffers of `bytes`), split evenly over
// `threads` threads, after one untimed warm-up pass. Each thread first-touches its own part. Throws
// std::invalid_argument for bytes < 4 KiB, threads < 1, reps < 1, or copy_nt where the CPU has no
// non-temporal store (supported(op) tells).
timed_passes memory_bandwidth(memory_op op, std::size_t bytes, int threads, int reps);
bool supported(memory_op op);

// Times `reps` passes of a register-blocked multiply-add loop on `threads` threads, each thread running
// `iterations` iterations; flops_per_thread_pass() gives the floating-point operations of one thread's
// pass (a fused multiply-add counts as 2). isa: "avx2" runs 256-bit FMA instructions, "avx512" 512-bit ones
// (only allowed when isa_runs, the caller's word that normexp::available_isas() lists that set, else
// std::invalid_argument); "" or "baseline" runs 128-bit vectors compiled for the baseline CPU (mul + add on
// x86-64, fused on aarch64).
timed_passes fma_peak(const std::string& isa, bool isa_runs, std::size_t iterations, int threads, int reps);
double fma_flops_per_iteration(const std::string& isa);

// The AVX2 loop lives in machine_probe_avx2.cpp (the avx2 set's flags), the AVX-512 loop in
// machine_probe_avx512.cpp (the avx512 set's flags): the probe's only files with ISA flags.
float fma_loop_avx2(std::size_t iterations, float seed);
extern const int fma_avx2_flops_per_iteration;
float fma_loop_avx512(std::size_t iterations, float seed);
extern const int fma_avx512_flops_per_iteration;

}  // namespace normexp::probe
