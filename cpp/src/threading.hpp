// Thread-count policy shared by every driver. OpenMP appears only in the drivers' .cpp files.
#pragma once

#include <cstddef>
#include <exception>

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#endif

namespace normexp::detail {

// Below this many elements of work a call runs on the calling thread: a parallel region costs a few
// microseconds, and calls from many Python threads must not oversubscribe the cores.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

// Threads to use for `work` elements split into `items` independent pieces.
int threads_for(std::size_t work, std::size_t items);

// body(begin, end) over [0, count) split into contiguous ranges, one per thread (the split depends only
// on the thread count, and callers make results independent of it). With nt <= 1 the body runs on the
// calling thread and no OpenMP region is entered: a region costs microseconds even with one thread.
template <class Body>
void parallel_ranges(int nt, std::size_t count, Body&& body) {
#if defined(NORMEXP_USE_OPENMP)
    if (nt > 1 && count > 1) {
        // An exception must not leave an OpenMP region (std::terminate): the first one is carried out.
        std::exception_ptr error;
#pragma omp parallel num_threads(nt)
        {
            const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
            const std::size_t T = static_cast<std::size_t>(omp_get_num_threads());
            const std::size_t b = count * t / T, e = count * (t + 1) / T;
            try {
                if (b < e) body(b, e);
            } catch (...) {
#pragma omp critical(normexp_parallel_error)
                if (!error) error = std::current_exception();
            }
        }
        if (error) std::rethrow_exception(error);
        return;
    }
#endif
    (void)nt;
    body(std::size_t(0), count);
}

}  // namespace normexp::detail
