// The parallel helpers of cpp/src/threading.hpp: every item runs exactly once whatever the thread count,
// a slot (per-thread scratch) is never used by two threads at once and stays below the thread count, no
// more threads than asked take part, exceptions come back to the caller (and the pool keeps working),
// nested and concurrent calls finish, and a forked child runs everything on its calling thread.
// (Windows has no fork(): the fork check is compiled out there.)
#if !defined(_WIN32)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.hpp"
#include "normexp/normexp.hpp"
#include "threading.hpp"

using normexp::detail::parallel_dynamic;
using normexp::detail::parallel_ranges;
using normexp::detail::parallel_slices;

namespace {

// What one call saw: how often each item ran, slot misuse, the threads that took part.
struct observed {
    explicit observed(std::size_t count) : runs(new std::atomic<int>[count]()) {}
    std::unique_ptr<std::atomic<int>[]> runs;
    std::atomic<int> busy_slot[64] = {};
    std::atomic<bool> slot_shared{false}, slot_out_of_range{false};
    std::mutex mutex;
    std::set<std::thread::id> threads;

    void enter(std::size_t slot, int nt) {
        if (slot >= std::size_t(nt < 1 ? 1 : nt) || slot >= 64) {
            slot_out_of_range = true;
            return;
        }
        if (busy_slot[slot].fetch_add(1) != 0) slot_shared = true;
        std::lock_guard<std::mutex> lock(mutex);
        threads.insert(std::this_thread::get_id());
    }
    void leave(std::size_t slot) {
        if (slot < 64) busy_slot[slot].fetch_sub(1);
    }
};

void spin_a_little() {
    volatile double v = 1;
    for (int i = 0; i < 2000; ++i) v = v * 1.0000001;
}

void check_slices(int nt, std::size_t count) {
    observed o(count ? count : 1);
    parallel_slices(nt, count, [&](std::size_t slot, std::size_t b, std::size_t e) {
        o.enter(slot, nt);
        CHECK(b <= e && e <= count, "nt %d count %zu: range [%zu, %zu)", nt, count, b, e);
        for (std::size_t i = b; i < e && i < count; ++i) {
            o.runs[i].fetch_add(1);
            spin_a_little();
        }
        o.leave(slot);
    });
    for (std::size_t i = 0; i < count; ++i) CHECK(o.runs[i].load() == 1, "nt %d count %zu: item %zu ran %d times", nt, count, i, o.runs[i].load());
    CHECK(!o.slot_shared, "nt %d count %zu: a slot was used by two threads at once", nt, count);
    CHECK(!o.slot_out_of_range, "nt %d count %zu: slot out of range", nt, count);
    CHECK(o.threads.size() <= std::size_t(nt < 1 ? 1 : nt), "nt %d count %zu: %zu threads took part", nt, count, o.threads.size());
}

void check_dynamic(int nt, std::size_t count) {
    observed o(count ? count : 1);
    parallel_dynamic(nt, count, [&](std::size_t slot, std::size_t i) {
        o.enter(slot, nt);
        CHECK(i < count, "nt %d count %zu: item %zu", nt, count, i);
        if (i < count) o.runs[i].fetch_add(1);
        spin_a_little();
        o.leave(slot);
    });
    for (std::size_t i = 0; i < count; ++i) CHECK(o.runs[i].load() == 1, "dynamic nt %d: item %zu ran %d times", nt, i, o.runs[i].load());
    CHECK(!o.slot_shared && !o.slot_out_of_range, "dynamic nt %d count %zu: slot misuse", nt, count);
    CHECK(o.threads.size() <= std::size_t(nt < 1 ? 1 : nt), "dynamic nt %d: %zu threads", nt, o.threads.size());
}

void check_exceptions(int nt) {
    for (std::size_t bad : {std::size_t(0), std::size_t(7), std::size_t(99)}) {
        std::atomic<int> after{0};
        bool caught = false;
        try {
            parallel_ranges(nt, 100, [&](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i) {
                    if (i == bad) throw std::runtime_error("item " + std::to_string(i));
                    after.fetch_add(1);
                }
            });
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "item " + std::to_string(bad);
        }
        CHECK(caught, "nt %d: the exception of item %zu did not reach the caller", nt, bad);
        caught = false;
        try {
            parallel_dynamic(nt, 50, [&](std::size_t, std::size_t i) {
                if (i == bad % 50) throw std::length_error("dynamic");
            });
        } catch (const std::length_error&) {
            caught = true;
        }
        CHECK(caught, "nt %d: parallel_dynamic lost the exception of item %zu", nt, bad);
    }
    check_slices(nt, 1000);  // the pool still works after exceptions
}

void check_nested(int nt) {
    std::atomic<int> total{0};
    parallel_ranges(nt, 8, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i)
            parallel_ranges(nt, 100, [&](std::size_t b2, std::size_t e2) { total.fetch_add(int(e2 - b2)); });
    });
    CHECK(total.load() == 800, "nt %d: nested calls covered %d of 800 items", nt, total.load());
}

void check_concurrent(int nt) {
    std::atomic<int> wrong{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&, c] {
            for (int rep = 0; rep < 50; ++rep) {
                const std::size_t count = 37 + std::size_t(c * 50 + rep);
                std::vector<std::atomic<int>> runs(count);
                parallel_slices(nt, count, [&](std::size_t, std::size_t b, std::size_t e) {
                    for (std::size_t i = b; i < e; ++i) runs[i].fetch_add(1);
                });
                for (auto& r : runs) wrong += r.load() != 1;
            }
        });
    for (auto& t : callers) t.join();
    CHECK(wrong.load() == 0, "nt %d: %d items of concurrent calls ran other than once", nt, wrong.load());
}

#if !defined(_WIN32)
// After fork() the child has no pool threads: a call asking for 4 threads must still finish, on the
// calling thread alone.
void check_fork() {
    check_slices(2, 1000);  // the parent's pool is running
    const pid_t pid = fork();
    if (pid == 0) {
        std::set<std::thread::id> seen;
        std::atomic<int> n{0};
        parallel_slices(4, 1000, [&](std::size_t, std::size_t b, std::size_t e) {
            n.fetch_add(int(e - b));
            seen.insert(std::this_thread::get_id());  // single-threaded by contract here
        });
        _exit(n.load() == 1000 && seen.size() == 1 && normexp::get_num_threads() == 1 ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid failed");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child did not run its call on one thread");
}
#endif

// Back-to-back calls with more threads than cores, so helpers are often descheduled and wake after the
// call they were woken for has ended, while the next call is being published. Every chunk of every call
// must run exactly once, inside its own call (never after it returned), on a slot no other thread holds.
// (A helper that read the previous call's claim word with the next call's chunk count ran a chunk twice;
// the window is a few stores wide, so this stress finds it reliably only with a delay added between them
// in run(): see the seqlock in threading.cpp.)
void check_back_to_back(int nt, int calls) {
    std::atomic<int> late{0}, wrong{0};
    for (int c = 0; c < calls; ++c) {
        const std::size_t count = (c % 3 == 0) ? 2 : (c % 3 == 1) ? 5 : 40;
        auto o = std::make_unique<observed>(count);
        std::atomic<bool> open{true};
        parallel_dynamic(nt, count, [&, count](std::size_t slot, std::size_t i) {
            if (!open.load()) late.fetch_add(1);
            o->enter(slot, nt);
            if (i < count) o->runs[i].fetch_add(1);
            o->leave(slot);
        });
        open.store(false);
        for (std::size_t i = 0; i < count; ++i) wrong += o->runs[i].load() != 1;
        wrong += o->slot_shared.load() || o->slot_out_of_range.load();
    }
    CHECK(late.load() == 0, "nt %d: %d chunks ran after their call returned", nt, late.load());
    CHECK(wrong.load() == 0, "nt %d: %d chunks ran other than once or on a shared slot", nt, wrong.load());
}

}  // namespace

int main() {
    for (int nt : {0, 1, 2, 3, 4, 8})
        for (std::size_t count : {std::size_t(0), std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(17),
                                  std::size_t(64), std::size_t(1000), std::size_t(10007)}) {
            check_slices(nt, count);
            check_dynamic(nt, count);
        }
    for (int nt : {1, 2, 4}) {
        check_exceptions(nt);
        check_nested(nt);
        check_concurrent(nt);
    }
    check_slices(3, 1000);  // grows the pool again after smaller calls
    for (int nt : {2, 8}) check_back_to_back(nt, 20000);
#if !defined(_WIN32)
    check_fork();
#endif
    return check::finish("threading");
}
