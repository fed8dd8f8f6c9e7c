// Thread-count policy and the parallel helpers shared by every driver (the only places that use threads).
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <limits>
#include <mutex>
#include <new>

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#endif

namespace normexp::detail {

// Below this many elements of work a call runs on the calling thread: waking a helper costs a few
// microseconds, and calls from many Python threads must not oversubscribe the cores.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

// Threads to use for `work` elements split into `items` independent pieces.
int threads_for(std::size_t work, std::size_t items);

// count * each elements of scratch; std::bad_alloc if that overflows size_t (it could not be allocated).
inline std::size_t scratch_elems(std::size_t count, std::size_t each) {
    if (each != 0 && count > std::numeric_limits<std::size_t>::max() / each) throw std::bad_alloc();
    return count * each;
}

// Elements of T per slot of scratch that different threads write (one slot per thread or per piece of work):
// n rounded up to a 64-byte line of T and one line more, so that whatever the array's alignment no cache line
// holds entries of two slots. Packed n apart, narrow slots shared lines and every write bounced a line between
// the cores (false sharing: axis 0 of a (200003, 7) float32 array, accuracy="fast", took 1.7-2x the
// one-thread time with two threads; docs/benchmarks.md).
template <class T>
inline std::size_t slot_stride(std::size_t n) {
    constexpr std::size_t L = 64 / sizeof(T) > 0 ? 64 / sizeof(T) : 1;
    return scratch_elems((n + L - 1) / L + 1, L);
}

// ---- How work is shared out ------------------------------------------------------------------------
// A call with nt > 1 threads cuts its items into chunks and runs them through the helper pool
// (threading.cpp): the calling thread starts on the chunks at once, claiming them one at a time from a
// shared counter, and up to nt - 1 pool threads (OpenMP threads of one long-lived team) join in as they
// wake. A helper that arrives late finds the chunks taken and goes back to sleep; the caller waits only
// for chunks that someone has claimed and not finished, never for a helper that has nothing left to do.
// Waits are a short spin and then a sleep, so a helper that another process's time slice has delayed
// does not hold the call up, and idle helpers leave the cores to whoever needs them (a busy neighbour
// process, the caller's own Python code). No OpenMP barrier is on the calling thread's path.
//
// Which thread runs which chunk varies from call to call; what each chunk computes and where it writes
// does not (chunk boundaries depend only on the item count and nt, and drivers merge per-item partial
// results in item order), so results are bit-identical for every thread count.
//
// The pool serves one call at a time: a call that finds it busy (another Python thread's call, or a
// nested call from inside a chunk) runs on its own thread, which keeps concurrent callers from
// oversubscribing the cores.
//
// Exceptions: one leaving a helper thread would terminate the process, so each chunk's exception is
// caught; after the first, the remaining chunks are skipped and it is rethrown on the calling thread
// once every claimed chunk has finished. Drivers allocate every per-thread buffer before the call
// (indexed by the `slot` argument below), so that a failed allocation happens before any output is
// written.

// The first exception thrown by any chunk of a call, rethrown on the calling thread after it.
class region_error {
public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
    }
    bool failed() const { return failed_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::mutex mutex_;
    std::exception_ptr error_;
    std::atomic<bool> failed_{false};
};

// run(ctx, slot, chunk) for every chunk in [0, nchunks), on the calling thread (slot 0) and up to nt - 1
// pool threads (slots 1 .. nt - 1; a slot is never used by two threads at once). Returns once every
// chunk has run. run must not throw. Falls back to the calling thread alone where there is no pool
// (no OpenMP, after fork(), a busy pool).
using chunk_fn = void (*)(void* ctx, std::size_t slot, std::size_t chunk);
void run_chunks(int nt, std::size_t nchunks, chunk_fn run, void* ctx);

// Chunks per thread of parallel_slices: enough that the thread that runs while another is delayed
// takes over most of the delayed one's share (the imbalance at the end is at most one chunk).
constexpr std::size_t kChunksPerThread = 16;

// Runs f(slot, chunk) for every chunk through run_chunks, catching what f throws; after the first
// exception the remaining chunks are skipped, and it is rethrown here.
template <class F>
void run_chunked(int nt, std::size_t nchunks, F& f) {
    struct ctx_t {
        F& f;
        region_error error;
    } ctx{f, {}};
    run_chunks(nt, nchunks,
               [](void* p, std::size_t slot, std::size_t chunk) {
                   ctx_t& c = *static_cast<ctx_t*>(p);
                   if (!c.error.failed()) c.error.run([&] { c.f(slot, chunk); });
               },
               &ctx);
    ctx.error.rethrow();
}

// With nt <= 1 (or a single item) each helper below runs its body on the calling thread, with no
// atomic operation and no pool.

// body(slot, begin, end) over [0, count) split into contiguous ranges (about kChunksPerThread per
// thread), each run once, by any thread; slot in [0, nt) names the running thread's per-thread scratch.
// One thread may run several ranges, in any order: callers make results independent of the split.
template <class Body>
void parallel_slices(int nt, std::size_t count, Body&& body) {
    if (nt <= 1 || count <= 1) {
        body(std::size_t(0), std::size_t(0), count);
        return;
    }
    const std::size_t per = static_cast<std::size_t>(nt) * kChunksPerThread;
    const std::size_t nchunks = count < per ? count : per;
    // Chunk c is [floor(count c / nchunks), floor(count (c + 1) / nchunks)), formed without overflow.
    auto f = [&](std::size_t slot, std::size_t c) {
        body(slot, count / nchunks * c + (count % nchunks) * c / nchunks,
             count / nchunks * (c + 1) + (count % nchunks) * (c + 1) / nchunks);
    };
    run_chunked(nt, nchunks, f);
}

// body(begin, end): parallel_slices without the slot.
template <class Body>
void parallel_ranges(int nt, std::size_t count, Body&& body) {
    parallel_slices(nt, count, [&](std::size_t, std::size_t b, std::size_t e) { body(b, e); });
}

// body(slot, i) for every i in [0, count), handed out one at a time in increasing order from the shared
// counter (for items of uneven cost). Which thread runs an item varies from run to run, so each item must
// write only its own outputs. After an exception no new item is started.
template <class Body>
void parallel_dynamic(int nt, std::size_t count, Body&& body) {
    if (nt <= 1 || count <= 1) {
        for (std::size_t i = 0; i < count; ++i) body(std::size_t(0), i);
        return;
    }
    auto f = [&](std::size_t slot, std::size_t i) { body(slot, i); };
    run_chunked(nt, count, f);
}

// body(slot, begin, end) with [0, count) split into one contiguous range per thread of an OpenMP team of
// nt threads, all running at once, thread t on range t: for the benchmark's machine probe
// (machine_probe.cpp), which measures what nt threads reach together. A team barrier ends it, so it is
// not for the drivers.
template <class Body>
void parallel_team(int nt, std::size_t count, Body&& body) {
#if defined(NORMEXP_USE_OPENMP)
    if (nt > 1 && count > 1) {
        region_error error;
#pragma omp parallel num_threads(nt)
        {
            const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
            const std::size_t T = static_cast<std::size_t>(omp_get_num_threads());
            const std::size_t b = count * t / T, e = count * (t + 1) / T;
            if (b < e) error.run([&] { body(t, b, e); });
        }
        error.rethrow();
        return;
    }
#endif
    (void)nt;
    body(std::size_t(0), std::size_t(0), count);
}

}  // namespace normexp::detail
