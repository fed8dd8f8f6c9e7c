#include "threading.hpp"

#include <atomic>

#include "normexp/normexp.hpp"

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#endif

namespace normexp {
namespace {
std::atomic<int> g_requested{0};  // 0: as many as OpenMP allows
}

void set_num_threads(int n) { g_requested.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int get_num_threads() {
#if defined(NORMEXP_USE_OPENMP)
    const int cap = omp_get_max_threads();
    const int req = g_requested.load(std::memory_order_relaxed);
    return req > 0 && req < cap ? req : cap;
#else
    return 1;
#endif
}

namespace detail {
int threads_for(std::size_t work, std::size_t items) {
    if (work < kParallelMinElements || items < 2) return 1;
    const int n = get_num_threads();
    return static_cast<std::size_t>(n) > items ? static_cast<int>(items) : n;
}
}  // namespace detail

}  // namespace normexp
