// Memory bandwidth and FMA peak of this machine (see machine_probe.hpp). Compiled for the baseline CPU;
// the AVX2 and AVX-512 FMA loops are in machine_probe_avx2.cpp and machine_probe_avx512.cpp.
//
// Method (STREAM-like): buffers far larger than the last-level cache (the caller picks the size), each
// thread works on its own contiguous part and first-touches it (pages land on its NUMA node), one
// untimed warm-up pass, then `reps` passes each timed between two barriers. Copy traffic is counted as
// bytes read + bytes written (the STREAM convention); regular stores also cost a read-for-ownership of
// each written line, which non-temporal stores avoid.
#include "machine_probe.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#if defined(_WIN32)
#include <malloc.h>  // _aligned_malloc, _aligned_free: Windows has no aligned_alloc
#endif
#if defined(__linux__)
#include <sys/mman.h>  // mmap, mprotect, madvise
#include <unistd.h>    // sysconf
#endif

#include "threading.hpp"
#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define NORMEXP_PROBE_SSE2 1
#endif

namespace normexp::probe {
namespace {

using clock_type = std::chrono::steady_clock;

double now() { return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count(); }

// Frees what allocate() gave: the whole mapping on Linux (base, total), else the aligned allocation.
struct buffer_deleter {
    void* base = nullptr;
    std::size_t total = 0;
    void operator()(std::uint64_t* p) const {
#if defined(_WIN32)
        (void)base;
        _aligned_free(p);
#elif defined(__linux__)
        (void)p;
        munmap(base, total);
#else
        (void)base;
        std::free(p);
#endif
    }
};
using buffer = std::unique_ptr<std::uint64_t, buffer_deleter>;

// A buffer on 2 MiB boundaries, backed by transparent huge pages where Linux offers them. Where THP is
// "madvise" (the default of many distributions) only an madvise(MADV_HUGEPAGE) gets them, and NumPy
// asks for them on every array of 4 MiB or more: the bench's operands live on 2 MiB pages, so the probe
// must too. On 4 KiB pages a sequential read takes a TLB miss every 4 KiB and ran 25-35% slower (the
// probe at two threads on the Intel Xeon VM of docs/benchmarks.md, session 26: 22.5-25.9 against 34.8-37.3
// GB/s), which made library rows read "above" the probe's bandwidth. On Linux the buffer is a mapping of
// its own between two PROT_NONE guard pages, so the kernel never merges it with a neighbouring mapping
// and its /proc/self/smaps entry (huge_page_bytes) counts the buffer alone.
buffer allocate(std::size_t bytes) {
    constexpr std::size_t align = std::size_t(2) << 20;
    const std::size_t rounded = (bytes + align - 1) / align * align;
#if defined(__linux__)
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t total = rounded + align + 2 * page;
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    char* const b = static_cast<char*>(base);
    // The first 2 MiB boundary at least a page in; at least a page is left after the buffer too.
    char* const p = b + ((reinterpret_cast<std::uintptr_t>(b) + page + align - 1) / align * align -
                         reinterpret_cast<std::uintptr_t>(b));
    if (mprotect(b, static_cast<std::size_t>(p - b), PROT_NONE) != 0 ||
        mprotect(p + rounded, static_cast<std::size_t>(b + total - (p + rounded)), PROT_NONE) != 0) {
        munmap(base, total);
        throw std::bad_alloc();
    }
#if defined(MADV_HUGEPAGE)
    (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: the probe runs on 4 KiB pages without it
#endif
    return buffer(reinterpret_cast<std::uint64_t*>(p), buffer_deleter{base, total});
#else
#if defined(_WIN32)
    void* p = _aligned_malloc(rounded, align);
#else
    void* p = std::aligned_alloc(align, rounded);
#endif
    if (!p) throw std::bad_alloc();
    return buffer(static_cast<std::uint64_t*>(p));
#endif
}

// Bytes of the mapping holding p that are on transparent huge pages (for allocate()'s buffers: of the
// buffer): the AnonHugePages line of its entry in /proc/self/smaps (a header "start-end perms ..." in hex,
// then "Key: value kB" lines). -1 where there is no such file or entry.
long long huge_page_bytes(const void* p) {
#if defined(__linux__)
    std::ifstream smaps("/proc/self/smaps");
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2) {
            inside = lo <= a && a < hi;
            continue;
        }
        unsigned long long kb = 0;
        if (inside && std::sscanf(line.c_str(), "AnonHugePages: %llu kB", &kb) == 1)
            return static_cast<long long>(kb) * 1024;
    }
#else
    (void)p;
#endif
    return -1;
}

volatile std::uint64_t g_sink;  // keeps the read pass observable

// Sum of n 64-bit words with 8 independent integer accumulators: integer addition is associative, so
// the compiler may vectorize it freely, and no dependency chain limits the load rate.
std::uint64_t read_words(const std::uint64_t* p, std::size_t n) {
    std::uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) a[j] += p[i + j];
    for (; i < n; ++i) a[0] += p[i];
    std::uint64_t s = 0;
    for (auto v : a) s += v;
    return s;
}

// Copies n words (n a multiple of 8, p and q 64-byte aligned) with explicit vector loads and stores,
// so the compiler cannot turn the loop into a memcpy call (glibc's memcpy switches to non-temporal
// stores for large sizes, which would make "regular" and "non-temporal" the same measurement).
void copy_words(const std::uint64_t* p, std::uint64_t* q, std::size_t n, bool nontemporal) {
#if defined(NORMEXP_PROBE_SSE2)
    const auto* src = reinterpret_cast<const __m128i*>(p);
    auto* dst = reinterpret_cast<__m128i*>(q);
    const std::size_t m = n / 2;
    if (nontemporal) {
        for (std::size_t i = 0; i < m; i += 4) {
            const __m128i a = _mm_load_si128(src + i), b = _mm_load_si128(src + i + 1);
            const __m128i c = _mm_load_si128(src + i + 2), d = _mm_load_si128(src + i + 3);
            _mm_stream_si128(dst + i, a);
            _mm_stream_si128(dst + i + 1, b);
            _mm_stream_si128(dst + i + 2, c);
            _mm_stream_si128(dst + i + 3, d);
        }
        _mm_sfence();
    } else {
        for (std::size_t i = 0; i < m; i += 4) {
            const __m128i a = _mm_load_si128(src + i), b = _mm_load_si128(src + i + 1);
            const __m128i c = _mm_load_si128(src + i + 2), d = _mm_load_si128(src + i + 3);
            _mm_store_si128(dst + i, a);
            _mm_store_si128(dst + i + 1, b);
            _mm_store_si128(dst + i + 2, c);
            _mm_store_si128(dst + i + 3, d);
        }
    }
#else
    (void)nontemporal;  // supported() is false for copy_nt here
    for (std::size_t i = 0; i < n; i += 8) {
        std::uint64_t t[8];
        for (int j = 0; j < 8; ++j) t[j] = reinterpret_cast<const volatile std::uint64_t*>(p)[i + j];
        for (int j = 0; j < 8; ++j) q[i + j] = t[j];
    }
#endif
}

int clamp_threads(int threads) {
#if defined(NORMEXP_USE_OPENMP)
    return std::max(1, std::min(threads, omp_get_num_procs()));
#else
    (void)threads;
    return 1;
#endif
}

// Runs body(part, parts, pass) for parts 0..threads-1, thread t of the team on part t: pass -1 untimed
// (warm-up and first touch), then passes 0..reps-1, each one parallel region of the threading guard
// (cpp/src/threading.hpp: exceptions come back to the caller) timed from its start to its end. The
// split depends only on the team size, so each thread touches the same part in every pass (its pages'
// NUMA node); a region's start and join (microseconds) are noise against a pass (milliseconds).
template <class Body>
timed_passes timed_parallel(int threads, int reps, Body body) {
    timed_passes r;
    r.seconds.assign(static_cast<std::size_t>(reps), 0.0);
    const int parts = clamp_threads(threads);
    std::atomic<int> team{0};  // threads that ran the warm-up (OpenMP may give fewer than asked)
    auto pass = [&](int k) {
        detail::parallel_team(parts, static_cast<std::size_t>(parts), [&](std::size_t, std::size_t b, std::size_t e) {
            if (k < 0) team.fetch_add(1, std::memory_order_relaxed);
            for (std::size_t t = b; t < e; ++t) body(static_cast<int>(t), parts, k);
        });
    };
    pass(-1);
    for (int k = 0; k < reps; ++k) {
        const double t0 = now();
        pass(k);
        r.seconds[static_cast<std::size_t>(k)] = now() - t0;
    }
    r.threads = team.load();
    return r;
}

// The part [begin, end) of n words for thread t of nt, in whole 64-byte lines.
void part(std::size_t n, int t, int nt, std::size_t& begin, std::size_t& end) {
    const std::size_t lines = n / 8;
    begin = lines * static_cast<std::size_t>(t) / static_cast<std::size_t>(nt) * 8;
    end = lines * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(nt) * 8;
}

constexpr int kBaselineChains = 12;  // as in the AVX2 loop: enough independent chains to fill the ports
#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));
#else
// MSVC has no vector extension: four floats with the same operations, which its optimizer keeps in
// one SSE register (the loop below is what is measured, not the type).
struct v4f {
    float e[4];
    float operator[](int i) const { return e[i]; }
};
inline v4f operator*(v4f x, v4f y) { return {x.e[0] * y.e[0], x.e[1] * y.e[1], x.e[2] * y.e[2], x.e[3] * y.e[3]}; }
inline v4f operator+(v4f x, v4f y) { return {x.e[0] + y.e[0], x.e[1] + y.e[1], x.e[2] + y.e[2], x.e[3] + y.e[3]}; }
inline v4f& operator+=(v4f& x, v4f y) { return x = x + y; }
#endif

float fma_loop_baseline(std::size_t iterations, float seed) {
    const v4f a = {0.999f, 0.999f, 0.999f, 0.999f}, b = {0.001f, 0.001f, 0.001f, 0.001f};
    v4f acc[kBaselineChains];
    for (int j = 0; j < kBaselineChains; ++j) {
        const float s = seed + 0.01f * static_cast<float>(j);
        acc[j] = v4f{s, s, s, s};
    }
    for (std::size_t i = 0; i < iterations; ++i)
        for (int j = 0; j < kBaselineChains; ++j) acc[j] = acc[j] * a + b;
    v4f s = acc[0];
    for (int j = 1; j < kBaselineChains; ++j) s += acc[j];
    return s[0] + s[1] + s[2] + s[3];
}

volatile float g_fsink;

}  // namespace

bool supported(memory_op op) {
#if defined(NORMEXP_PROBE_SSE2)
    (void)op;
    return true;
#else
    return op != memory_op::copy_nt;
#endif
}

timed_passes memory_bandwidth(memory_op op, std::size_t bytes, int threads, int reps) {
    if (bytes < 4096) throw std::invalid_argument("memory probe: bytes must be at least 4096");
    if (threads < 1) throw std::invalid_argument("memory probe: threads must be >= 1");
    if (reps < 1) throw std::invalid_argument("memory probe: reps must be >= 1");
    if (!supported(op)) throw std::invalid_argument("memory probe: this CPU has no non-temporal store");
    const std::size_t n = bytes / 64 * 8;  // whole 64-byte lines
    buffer src = allocate(n * 8);
    buffer dst = op == memory_op::read ? buffer() : allocate(n * 8);
    std::uint64_t* p = src.get();
    std::uint64_t* q = dst.get();
    timed_passes r = timed_parallel(threads, reps, [&](int t, int nt, int pass) {
        std::size_t b, e;
        part(n, t, nt, b, e);
        if (pass < 0) {  // first touch by the owning thread
            for (std::size_t i = b; i < e; ++i) p[i] = i;
            if (q) std::memset(q + b, 0, (e - b) * 8);
        }
        if (op == memory_op::read)
            g_sink = read_words(p + b, e - b);
        else
            copy_words(p + b, q + b, e - b, op == memory_op::copy_nt);
    });
#if defined(NORMEXP_PROBE_SSE2)
    r.variant = "sse2";
#else
    r.variant = "generic";
#endif
    if (q && q[n - 1] != n - 1) throw std::runtime_error("memory probe: copy check failed");
    r.huge_page_bytes = huge_page_bytes(p);
    return r;
}

double fma_flops_per_iteration(const std::string& isa) {
    if (isa == "avx2") return fma_avx2_flops_per_iteration;
    if (isa == "avx512") return fma_avx512_flops_per_iteration;
    return kBaselineChains * 4 * 2;
}

timed_passes fma_peak(const std::string& isa, bool isa_runs, std::size_t iterations, int threads, int reps) {
    if (threads < 1) throw std::invalid_argument("fma probe: threads must be >= 1");
    if (reps < 1) throw std::invalid_argument("fma probe: reps must be >= 1");
    enum class loop { baseline, avx2, avx512 } which = loop::baseline;
    if (isa == "avx2") which = loop::avx2;
    else if (isa == "avx512") which = loop::avx512;
    else if (!isa.empty() && isa != "baseline")
        throw std::invalid_argument("fma probe: isa must be 'avx512', 'avx2' or 'baseline', got '" + isa + "'");
    bool built = which == loop::baseline;
#if defined(NORMEXP_PROBE_HAVE_AVX2)
    built = built || which == loop::avx2;
#endif
#if defined(NORMEXP_PROBE_HAVE_AVX512)
    built = built || which == loop::avx512;
#endif
    if (!built) throw std::invalid_argument("fma probe: this build has no " + isa + " loop");
    if (which != loop::baseline && !isa_runs)
        throw std::invalid_argument("fma probe: this CPU cannot run " + isa + " (see normexp.available_isas())");
    timed_passes r = timed_parallel(threads, reps, [&](int t, int, int pass) {
        const float seed = 0.5f + 0.001f * static_cast<float>(t);
        const std::size_t iters = pass < 0 ? iterations / 4 + 1 : iterations;
#if defined(NORMEXP_PROBE_HAVE_AVX512)
        if (which == loop::avx512) {
            g_fsink = fma_loop_avx512(iters, seed);
            return;
        }
#endif
#if defined(NORMEXP_PROBE_HAVE_AVX2)
        if (which == loop::avx2) {
            g_fsink = fma_loop_avx2(iters, seed);
            return;
        }
#endif
        g_fsink = fma_loop_baseline(iters, seed);
    });
    r.variant = which == loop::avx512 ? "avx512-fma" : which == loop::avx2 ? "avx2-fma" : "baseline";
    return r;
}

}  // namespace normexp::probe
