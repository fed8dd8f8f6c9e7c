// Test-only allocation-failure injector, loaded with LD_PRELOAD by tests/python/test_alloc_failure.py
// (which compiles it at test time; it is never part of the shipped library).
//
// It replaces every form of the global operator new and operator delete (plain, array, nothrow,
// aligned, sized). Once armed with failalloc_arm(n), the n-th operator new call after arming fails:
// the throwing forms throw std::bad_alloc, the nothrow forms return nullptr. That single failure
// disarms it; later calls succeed. Only C++ allocations are affected: CPython and NumPy allocate with
// malloc, which is left alone, so the interpreter keeps working while the library is tested.
//
// Control (extern "C", called through ctypes):
//   failalloc_arm(n)    n >= 1: fail the n-th operator new from now on; n <= 0: disarm.
//   failalloc_fired()   1 if the armed failure has happened since the last arm, else 0.
//   failalloc_count()   operator new calls seen since the last arm.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace {

std::atomic<long> g_countdown{0};  // > 0: the call that brings it to 0 fails
std::atomic<long> g_seen{0};
std::atomic<int> g_fired{0};

// True if this call is the one to fail.
bool should_fail() noexcept {
    g_seen.fetch_add(1, std::memory_order_relaxed);
    long c = g_countdown.load(std::memory_order_relaxed);
    while (c > 0) {
        if (g_countdown.compare_exchange_weak(c, c - 1, std::memory_order_relaxed)) {
            if (c == 1) {
                g_fired.store(1, std::memory_order_relaxed);
                return true;
            }
            return false;
        }
    }
    return false;
}

void* raw_alloc(std::size_t n) noexcept { return std::malloc(n ? n : 1); }

void* raw_alloc_aligned(std::size_t n, std::align_val_t al) noexcept {
    std::size_t a = static_cast<std::size_t>(al);
    if (a < sizeof(void*)) a = sizeof(void*);
    void* p = nullptr;
    return posix_memalign(&p, a, n ? n : 1) == 0 ? p : nullptr;
}

void* alloc_or_throw(std::size_t n) {
    if (should_fail()) throw std::bad_alloc();
    if (void* p = raw_alloc(n)) return p;
    throw std::bad_alloc();
}

void* alloc_aligned_or_throw(std::size_t n, std::align_val_t al) {
    if (should_fail()) throw std::bad_alloc();
    if (void* p = raw_alloc_aligned(n, al)) return p;
    throw std::bad_alloc();
}

void* alloc_nothrow(std::size_t n) noexcept { return should_fail() ? nullptr : raw_alloc(n); }

void* alloc_aligned_nothrow(std::size_t n, std::align_val_t al) noexcept {
    return should_fail() ? nullptr : raw_alloc_aligned(n, al);
}

}  // namespace

extern "C" {
__attribute__((visibility("default"))) void failalloc_arm(long n) {
    g_seen.store(0, std::memory_order_relaxed);
    g_fired.store(0, std::memory_order_relaxed);
    g_countdown.store(n > 0 ? n : 0, std::memory_order_relaxed);
}
__attribute__((visibility("default"))) int failalloc_fired() { return g_fired.load(std::memory_order_relaxed); }
__attribute__((visibility("default"))) long failalloc_count() { return g_seen.load(std::memory_order_relaxed); }
}

void* operator new(std::size_t n) { return alloc_or_throw(n); }
void* operator new[](std::size_t n) { return alloc_or_throw(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return alloc_nothrow(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return alloc_nothrow(n); }
void* operator new(std::size_t n, std::align_val_t al) { return alloc_aligned_or_throw(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return alloc_aligned_or_throw(n, al); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return alloc_aligned_nothrow(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return alloc_aligned_nothrow(n, al);
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
