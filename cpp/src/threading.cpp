#include "threading.hpp"

#include <atomic>

#include "normexp/normexp.hpp"

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#include <pthread.h>
#endif

namespace normexp {
namespace {
std::atomic<int> g_requested{0};  // 0: as many as OpenMP allows

#if defined(NORMEXP_USE_OPENMP)
// fork() safety. A child created by fork() after an OpenMP team ran inherits the runtime's bookkeeping
// but not its worker threads; GNU libgomp then deadlocks the first time the child enters a parallel
// region with more than one thread (multiprocessing's default start method on Linux is fork). The
// child handler marks the process, and get_num_threads() answers 1 there for the rest of its life, so
// every driver (all size their teams through it) stays on the calling thread. Registered once, at
// load time, by a static initializer of this translation unit.
std::atomic<bool> g_forked_child{false};
void on_fork_child() { g_forked_child.store(true, std::memory_order_relaxed); }
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
#endif
}  // namespace

void set_num_threads(int n) { g_requested.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int get_num_threads() {
#if defined(NORMEXP_USE_OPENMP)
    (void)g_atfork_registered;
    if (g_forked_child.load(std::memory_order_relaxed)) return 1;
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
