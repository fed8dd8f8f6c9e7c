// Thread-count policy and the parallel regions shared by every driver (the only places that enter OpenMP).
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <limits>
#include <new>

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#endif

namespace normexp::detail {

// Below this many elements of work a call runs on the calling thread: a parallel region costs a few
// microseconds, and calls from many Python threads must not oversubscribe the cores.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

// Threads to use for `work` elements split into `items` independent pieces.
int threads_for(std::size_t work, std::size_t items);

// count * each elements of scratch; std::bad_alloc if that overflows size_t (it could not be allocated).
inline std::size_t scratch_elems(std::size_t count, std::size_t each) {
    if (each != 0 && count > std::numeric_limits<std::size_t>::max() / each) throw std::bad_alloc();
    return count * each;
}

// Parallel regions. Every driver enters OpenMP only through these: an exception must not leave an
// OpenMP region (the runtime calls std::terminate), so each thread catches what its body throws and the
// first exception is rethrown on the calling thread after the region. Drivers also allocate every
// per-thread buffer before the region (indexed by the `slot` argument below), so that a failed
// allocation happens before any output is written.
//
// With nt <= 1 the body runs on the calling thread and no OpenMP region is entered: a region costs
// microseconds even with one thread.

// body(slot, begin, end) over [0, count) split into contiguous ranges, one per thread; slot in [0, nt)
// is the thread's index (for per-thread scratch). The split depends only on the team size, and callers
// make results independent of it.
#if defined(NORMEXP_USE_OPENMP)
// The first exception thrown by any thread of a region, rethrown on the calling thread after it.
class region_error {
public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            failed_.store(true, std::memory_order_relaxed);
#pragma omp critical(normexp_parallel_error)
            if (!error_) error_ = std::current_exception();
        }
    }
    bool failed() const { return failed_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::exception_ptr error_;
    std::atomic<bool> failed_{false};
};
#endif

template <class Body>
void parallel_slices(int nt, std::size_t count, Body&& body) {
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

// body(begin, end): parallel_slices without the slot.
template <class Body>
void parallel_ranges(int nt, std::size_t count, Body&& body) {
    parallel_slices(nt, count, [&](std::size_t, std::size_t b, std::size_t e) { body(b, e); });
}

// body(slot, i) for every i in [0, count), handed out one at a time in increasing order from a shared
// counter (a dynamic schedule, for items of uneven cost). Which thread runs an item varies from run to
// run, so each item must write only its own outputs. After an exception no new item is started.
template <class Body>
void parallel_dynamic(int nt, std::size_t count, Body&& body) {
#if defined(NORMEXP_USE_OPENMP)
    if (nt > 1 && count > 1) {
        region_error error;
        std::atomic<std::size_t> next{0};
#pragma omp parallel num_threads(nt)
        {
            const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
            error.run([&] {
                for (std::size_t i; !error.failed() && (i = next.fetch_add(1, std::memory_order_relaxed)) < count;)
                    body(t, i);
            });
        }
        error.rethrow();
        return;
    }
#endif
    (void)nt;
    for (std::size_t i = 0; i < count; ++i) body(std::size_t(0), i);
}

}  // namespace normexp::detail
