#include "threading.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "normexp/normexp.hpp"
#include "portability.hpp"

#if defined(NORMEXP_USE_OPENMP)
#include <omp.h>
#if !defined(_WIN32)
#include <pthread.h>
#endif
#endif

namespace normexp {
namespace {
std::atomic<int> g_requested{0};  // 0: as many as OpenMP allows

#if defined(NORMEXP_USE_OPENMP)
// fork() safety. A child created by fork() inherits the runtime's bookkeeping (libgomp's and the helper
// pool's below) but none of their threads; GNU libgomp then deadlocks the first time the child enters a
// parallel region with more than one thread, and the pool would wait for helpers that do not exist
// (multiprocessing's default start method on Linux is fork). The child handler marks the process, and
// get_num_threads() answers 1 there for the rest of its life, so every driver (all size their calls
// through it) stays on the calling thread; run_chunks checks the mark too. Registered once, at load
// time, by a static initializer of this translation unit. Windows has no fork(): nothing to register
// there, and the mark stays false.
std::atomic<bool> g_forked_child{false};
#if !defined(_WIN32)
void on_fork_child() { g_forked_child.store(true, std::memory_order_relaxed); }
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
#endif

// ---- The helper pool (see "How work is shared out" in threading.hpp) -------------------------------
//
// Threads: one OpenMP team, started by a host std::thread in a parallel region that lasts until the
// pool grows (a call asks for more threads than it has), so OpenMP still creates, sizes and places the
// threads (OMP_NUM_THREADS, OMP_PROC_BIND, threadpoolctl through the caller's get_num_threads()).
// The team's threads never wait in an OpenMP barrier: libgomp's waits spin for a fixed count
// (GOMP_SPINCOUNT, read once at start-up; milliseconds on this class of machine) before sleeping, and
// a spinning thread keeps a core from a busy neighbour process and from the caller itself. Measured on
// 2 cores beside a busy process (docs/reliability.md, "Threads"): a 512x4096 softmax with 2 threads
// took 3.5-6x the one-thread time per call under libgomp's regions.
//
// One call ("job") at a time, published through two words that carry its generation g in the high
// 32 bits: `claim` = (g, next chunk) and `tickets` = (g, helpers joined). A helper joins job g by
// taking a ticket (slot = ticket + 1, at most nt - 1 of them) and claims chunks by compare-and-swap
// on `claim` expecting generation g, so a helper that wakes after job g has ended can never claim a
// chunk of it. The caller returns when `done` reaches the chunk count; the job's description (function,
// context on the caller's stack, chunk and helper counts) is read by a helper only before a successful
// claim of one of its chunks, so it is never used after the caller returns.
//
// The description is written while `claim` still shows the previous job (it must be complete before
// the job is published), so a helper that sees generation g may read fields of job g + 1 that is being
// written: with g's claim word and g + 1's chunk count it could claim "chunk" n_g of g + 1 before g + 1
// is published (that chunk then runs twice, on a slot another helper also gets, and its count in `done`
// is lost or counted twice, letting the caller return while a chunk still runs). So the description is
// a seqlock: `described` holds the generation whose description is stored (kWriting while one is being
// written), and a helper uses what it read only if `described` was g before and after reading it.
//
// Waits: a spin of kSpin (a call that follows within it, as back-to-back calls from Python do, starts
// with the helpers awake), then a sleep on a condition variable. Short on purpose: on a loaded machine a
// spinning helper takes the core its own caller needs. Measured on 2 cores with the cores oversubscribed
// (load average 8-9), per-call p90 of a two-thread 64x4096 softmax over the one-thread p90: 1.8-1.9x
// with a 50 us spin, 1.1-1.4x with 0-10 us; 512x4096 beside a busy process did not tell 0, 10 and 50 us
// apart (mean 0.44-1.0x).
constexpr std::chrono::microseconds kSpin{10};


constexpr std::uint64_t gen_of(std::uint64_t w) { return w >> 32; }
constexpr std::uint64_t kWriting = ~std::uint64_t(0);  // `described` while a description is written
constexpr std::uint64_t low_of(std::uint64_t w) { return w & 0xffffffffu; }

// Spins for up to kSpin until done() is true; returns done().
template <class Done>
bool spin_until(Done done) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            port::cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= until) return done();
    }
}

class helper_pool {
public:
    // Runs the job; false (nothing run) if the pool is busy or cannot start its threads.
    bool run(int nt, std::size_t nchunks, detail::chunk_fn fn, void* ctx) {
        bool idle = false;
        if (!busy_.compare_exchange_strong(idle, true, std::memory_order_acquire)) return false;
        const std::uint64_t helpers = static_cast<std::uint64_t>(nt - 1);
        if (!grow(static_cast<int>(helpers))) {
            busy_.store(false, std::memory_order_release);
            return false;
        }
        const std::uint64_t g = (gen_of(claim_.load(std::memory_order_relaxed)) + 1) & 0xffffffffu;
        const std::uint64_t n = nchunks;
        described_.store(kWriting, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);  // kWriting is seen before any new field
        fn_.store(fn, std::memory_order_relaxed);
        ctx_.store(ctx, std::memory_order_relaxed);
        nchunks_.store(n, std::memory_order_relaxed);
        helpers_.store(helpers, std::memory_order_relaxed);
        described_.store(g, std::memory_order_release);
        done_.store(0, std::memory_order_relaxed);
        tickets_.store(g << 32, std::memory_order_relaxed);
        claim_.store(g << 32, std::memory_order_seq_cst);  // publishes the job
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            { std::lock_guard<std::mutex> lock(mutex_); }
            wake_helpers_.notify_all();
        }
        work(g, n, fn, ctx, 0);
        if (!spin_until([&] { return done_.load(std::memory_order_acquire) == n; })) {
            std::unique_lock<std::mutex> lock(mutex_);
            caller_sleeping_.store(true, std::memory_order_seq_cst);
            while (done_.load(std::memory_order_seq_cst) != n) wake_caller_.wait(lock);
            caller_sleeping_.store(false, std::memory_order_relaxed);
        }
        busy_.store(false, std::memory_order_release);
        return true;
    }

private:
    // Claims and runs chunks of job g until none is left.
    void work(std::uint64_t g, std::uint64_t n, detail::chunk_fn fn, void* ctx, std::size_t slot) {
        std::uint64_t w = claim_.load(std::memory_order_acquire);
        for (;;) {
            if (gen_of(w) != g || low_of(w) >= n) return;
            if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            fn(ctx, slot, static_cast<std::size_t>(low_of(w)));
            if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n && caller_sleeping_.load(std::memory_order_seq_cst)) {
                { std::lock_guard<std::mutex> lock(mutex_); }
                wake_caller_.notify_one();
            }
            w = claim_.load(std::memory_order_acquire);
        }
    }

    // The loop of each pool thread: wait for a job, join it if a ticket is left, help, repeat.
    void helper_loop() {
        std::uint64_t seen = gen_of(claim_.load(std::memory_order_acquire));
        for (;;) {
            auto news = [&] {
                return gen_of(claim_.load(std::memory_order_seq_cst)) != seen || stop_.load(std::memory_order_relaxed);
            };
            if (!spin_until(news)) {
                std::unique_lock<std::mutex> lock(mutex_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                while (!news()) wake_helpers_.wait(lock);
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            if (stop_.load(std::memory_order_relaxed)) return;
            const std::uint64_t w = claim_.load(std::memory_order_acquire);
            const std::uint64_t g = gen_of(w);
            seen = g;
            // The description of job g, read as a seqlock (see above): if `described` is not g on both
            // sides of the reads, job g has ended and the next call is replacing it; nothing to join.
            const std::uint64_t before = described_.load(std::memory_order_acquire);
            const detail::chunk_fn fn = fn_.load(std::memory_order_relaxed);
            void* const ctx = ctx_.load(std::memory_order_relaxed);
            const std::uint64_t n = nchunks_.load(std::memory_order_relaxed);
            const std::uint64_t helpers = helpers_.load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (before != g || described_.load(std::memory_order_relaxed) != g) continue;
            if (low_of(w) >= n) continue;  // all claimed already: nothing to join
            std::uint64_t t = tickets_.load(std::memory_order_relaxed);
            bool joined = false;
            while (gen_of(t) == g && low_of(t) < helpers)
                if ((joined = tickets_.compare_exchange_weak(t, t + 1, std::memory_order_relaxed))) break;
            if (joined) work(g, n, fn, ctx, static_cast<std::size_t>(low_of(t)) + 1);
        }
    }

    // At least `helpers` pool threads (restarts the team with more when needed). Called with busy_ held.
    bool grow(int helpers) {
        if (size_ >= helpers) return true;
        if (host_.joinable()) {
            stop_.store(true, std::memory_order_seq_cst);
            { std::lock_guard<std::mutex> lock(mutex_); }
            wake_helpers_.notify_all();
            host_.join();
            stop_.store(false, std::memory_order_relaxed);
            size_ = 0;
        }
        try {
            host_ = std::thread([this, helpers] {
#pragma omp parallel num_threads(helpers)
                helper_loop();
            });
        } catch (...) {  // no thread could be started (resource limits): the caller runs alone
            return false;
        }
        size_ = helpers;
        return true;
    }

    std::atomic<bool> busy_{false};
    std::atomic<std::uint64_t> claim_{0}, tickets_{0}, done_{0};
    std::atomic<detail::chunk_fn> fn_{nullptr};
    std::atomic<void*> ctx_{nullptr};
    std::atomic<std::uint64_t> nchunks_{0}, helpers_{0}, described_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<bool> caller_sleeping_{false}, stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_helpers_, wake_caller_;
    std::thread host_;
    int size_ = 0;  // helpers in the current team (guarded by busy_)
};

// Never destroyed: its threads may be asleep in it when the process exits.
helper_pool& pool() {
    static helper_pool* p = new helper_pool;
    return *p;
}
#endif
}  // namespace

void set_num_threads(int n) { g_requested.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int get_num_threads() {
#if defined(NORMEXP_USE_OPENMP)
#if !defined(_WIN32)
    (void)g_atfork_registered;
#endif
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

void run_chunks(int nt, std::size_t nchunks, chunk_fn run, void* ctx) {
#if defined(NORMEXP_USE_OPENMP)
    if (nt > 1 && nchunks > 1 && nchunks <= 0xffffffffu && !g_forked_child.load(std::memory_order_relaxed) &&
        pool().run(nt, nchunks, run, ctx))
        return;
#else
    (void)nt;
#endif
    for (std::size_t c = 0; c < nchunks; ++c) run(ctx, 0, c);
}
}  // namespace detail

}  // namespace normexp
