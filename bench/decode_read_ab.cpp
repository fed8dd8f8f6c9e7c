// Decode against a streaming read of the same bytes, interleaved in one process (x86-64 with AVX-512 only;
// a measuring tool, not part of the library or its tests). Each repetition evicts the last-level cache with
// a read of twice its reported size (at least 256 MiB; the Intel Xeon VM of docs/benchmarks.md reports 480
// MiB), reads the K/V bytes with the same threads (each thread a contiguous share), evicts again and runs
// one decode: the grouped decode of docs/benchmarks.md (32 query heads on 8 K/V heads of 128, 16k
// or 32k keys; float32, bfloat16, float16) or the paged batch (16 sequences of 2k-16k keys, pages of 16 in
// a random order, (page, slot, head, dim)). Prints best and median GB/s of both, their ratio, and the
// process CPU time of each (a loaded machine's wall times hide how much of the decode is compute). The paged
// batch also reads its pool page by page in the block table's order (each thread a contiguous share of that
// list, each page's K rows then its V rows, P x Hk x D elements each): the rate at which this machine
// delivers the decode's own bytes in its own order, with no arithmetic, which bounds the decode more tightly
// than the streaming read. K and V live on 2 MiB transparent huge pages where Linux gives them (as NumPy's
// arrays of 4 MiB or more do; on 4 KiB pages every rate drops by a TLB miss per 4 KiB).
//
//   cmake --build build/dev --target normexp
//   g++ -O2 -std=c++17 -fopenmp -Icpp/include -Ibuild/dev/include bench/decode_read_ab.cpp build/dev/libnormexp.a
//       -o build/decode_read_ab     (one line)
//   OMP_NUM_THREADS=2 build/decode_read_ab {f32|bf16|f16|f32_32k|bf16_32k|pf32|pbf16|all} [reps] [threads]
//
// A/B of two builds: link one binary per build and alternate their runs.
#include <immintrin.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "normexp/normexp.hpp"

using namespace normexp;
using clk = std::chrono::steady_clock;

static std::ptrdiff_t sp(std::size_t v) { return std::ptrdiff_t(v); }
static double cpu() {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
static std::vector<double> g_cpu_r, g_cpu_d;
static double now() { return std::chrono::duration<double>(clk::now().time_since_epoch()).count(); }

// K and V on 2 MiB boundaries with MADV_HUGEPAGE (advice: 4 KiB pages where THP is off).
template <class T>
struct huge_allocator {
    using value_type = T;
    huge_allocator() = default;
    template <class U>
    huge_allocator(const huge_allocator<U>&) {}
    T* allocate(std::size_t n) {
        constexpr std::size_t kAlign = std::size_t(2) << 20;
        const std::size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
        void* p = nullptr;
        if (posix_memalign(&p, kAlign, bytes) != 0) throw std::bad_alloc();
        (void)madvise(p, bytes, MADV_HUGEPAGE);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) { std::free(p); }
    template <class U>
    bool operator==(const huge_allocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const huge_allocator<U>&) const { return false; }
};
template <class T>
using huge_vector = std::vector<T, huge_allocator<T>>;

__attribute__((target("avx512f"))) static float read_part(const char* p, std::size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (std::size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(reinterpret_cast<const float*>(p + i)));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(reinterpret_cast<const float*>(p + i + 64)));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(reinterpret_cast<const float*>(p + i + 128)));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(reinterpret_cast<const float*>(p + i + 192)));
    }
    alignas(64) float t[16];  // (not _mm512_reduce_add_ps: GCC 12 reports -Wuninitialized inside it)
    _mm512_store_ps(t, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    float s = 0;
    for (float x : t) s += x;
    return s;
}

// f(id, nt) on nt threads at once: the calling thread (id 0) and nt - 1 std::threads, joined. Not an OpenMP
// region: libgomp's idle team threads spin for GOMP_SPINCOUNT (milliseconds here) after a region ends, and
// that spin took a core from the decode timed right after it (docs/benchmarks.md, session 30: the bfloat16
// decode of 16k keys at two threads 5.4 against 3.3 ms with OMP_WAIT_POLICY=passive).
template <class F>
static void on_threads(int nt, F&& f) {
    std::vector<std::thread> team;
    for (int id = 1; id < nt; ++id) team.emplace_back([&f, id, nt] { f(id, nt); });
    f(0, nt);
    for (auto& t : team) t.join();
}

volatile float sink_;
static double stream_read(const std::vector<std::pair<const char*, std::size_t>>& bufs, int nt) {
    double t0 = now();
    on_threads(nt, [&](int id, int n) {
        float s = 0;
        for (auto& b : bufs) {
            std::size_t per = b.second / std::size_t(n) / 256 * 256;
            s += read_part(b.first + std::size_t(id) * per, per);
        }
        sink_ = s;
    });
    return now() - t0;
}

template <class Vec>
__attribute__((target("f16c"))) static void fill(Vec& v, std::mt19937& g) {
    using S = typename Vec::value_type;
    std::uint32_t st = g();
    for (auto& x : v) {
        st ^= st << 13; st ^= st >> 17; st ^= st << 5;
        float f = float(st >> 8) * 0x1p-23f - 1.0f;
        if constexpr (sizeof(S) == 4) x = f;
        else if constexpr (std::is_same_v<S, float16>) {
            std::uint16_t h = _cvtss_sh(f, 0);
            std::memcpy(&x, &h, 2);
        } else {
            std::uint32_t u;
            std::memcpy(&u, &f, 4);
            std::uint16_t h = std::uint16_t(u >> 16);
            std::memcpy(&x, &h, 2);
        }
    }
}

static void report(const char* name, std::vector<double>& tr, std::vector<double>& td, double bytes) {
    std::sort(g_cpu_r.begin(), g_cpu_r.end());
    std::sort(g_cpu_d.begin(), g_cpu_d.end());
    std::printf("  cpu ms: read min %.1f med %.1f | decode min %.1f med %.1f\n", g_cpu_r[0] * 1e3,
                g_cpu_r[g_cpu_r.size() / 2] * 1e3, g_cpu_d[0] * 1e3, g_cpu_d[g_cpu_d.size() / 2] * 1e3);
    g_cpu_r.clear();
    g_cpu_d.clear();
    std::sort(tr.begin(), tr.end());
    std::sort(td.begin(), td.end());
    double rb = bytes / tr[0] / 1e9, db = bytes / td[0] / 1e9;
    double rm = bytes / tr[tr.size() / 2] / 1e9, dm = bytes / td[td.size() / 2] / 1e9;
    std::printf("%-28s read best %6.1f med %6.1f GB/s | decode best %6.1f med %6.1f GB/s (%.2f ms) | best/best %.0f%% med/med %.0f%%\n",
                name, rb, rm, db, dm, td[td.size() / 2] * 1e3, 100 * db / rb, 100 * dm / rm);
}

// The A/B itself: reps rounds of (evict, stream-read K and V with nt threads, evict, one decode call),
// wall time of each into tr / td and CPU time into g_cpu_r / g_cpu_d. One eviction buffer for all.
static const std::vector<char>& flush_buffer() {
    static const std::vector<char> flush(
        std::max<std::size_t>(std::size_t(256) << 20, 2 * std::size_t(std::max(0L, sysconf(_SC_LEVEL3_CACHE_SIZE)))), 1);
    return flush;
}

template <class S, class Decode, class Pattern = std::nullptr_t>
static void ab(const huge_vector<S>& k, const huge_vector<S>& v, int nt, int reps, std::vector<double>& tr,
               std::vector<double>& td, Decode&& decode, std::vector<double>* tp = nullptr,
               Pattern&& pattern = nullptr) {
    const std::vector<std::pair<const char*, std::size_t>> fb{{flush_buffer().data(), flush_buffer().size()}};
    const std::vector<std::pair<const char*, std::size_t>> bufs{
        {reinterpret_cast<const char*>(k.data()), k.size() * sizeof(S)},
        {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(S)}};
    set_num_threads(nt);
    for (int r = 0; r < reps; ++r) {
        stream_read(fb, nt);
        double c0 = cpu();
        tr.push_back(stream_read(bufs, nt));
        g_cpu_r.push_back(cpu() - c0);
        if constexpr (!std::is_same_v<std::decay_t<Pattern>, std::nullptr_t>) {
            stream_read(fb, nt);
            tp->push_back(pattern());
        }
        stream_read(fb, nt);
        c0 = cpu();
        const double t0 = now();
        decode();
        td.push_back(now() - t0);
        g_cpu_d.push_back(cpu() - c0);
    }
}

template <class Q, class S>
static void run_contig(const char* name, std::size_t L, int nt, int reps) {
    const std::size_t H = 32, Hk = 8, D = 128;
    std::mt19937 g(1);
    std::vector<Q> q(H * D), out(H * D);
    huge_vector<S> k(Hk * L * D), v(Hk * L * D);
    fill(q, g);
    fill(k, g);
    fill(v, g);
    attention_shape sh{1, H, Hk, 1, L, D, D};
    strides4 qs{sp(H * D), sp(D), sp(D), 1}, ks{sp(Hk * L * D), sp(L * D), sp(D), 1};
    attention_options<float> opt;
    std::vector<double> tr, td;
    ab(k, v, nt, reps, tr, td, [&] { attention(sh, q.data(), qs, k.data(), ks, v.data(), ks, out.data(), qs, opt); });
    char nm[128];
    std::snprintf(nm, sizeof nm, "%s L%zuk t%d", name, L / 1024, nt);
    report(nm, tr, td, double(k.size() + v.size()) * sizeof(S));
}

template <class Q, class S>
static void run_paged(const char* name, int nt, int reps) {
    const std::size_t H = 32, Hk = 8, D = 128, P = 16, NS = 16;
    std::mt19937 g(2);
    std::vector<std::int32_t> lens(NS), qst(NS + 1);
    std::size_t total_pages = 0, maxp = 0;
    for (std::size_t s = 0; s < NS; ++s) {
        lens[s] = std::int32_t(2048 + (16384 - 2048) * s / (NS - 1));
        std::size_t np = (lens[s] + P - 1) / P;
        total_pages += np;
        maxp = std::max(maxp, np);
        qst[s + 1] = std::int32_t(s + 1);
    }
    std::vector<std::int32_t> perm(total_pages);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), g);
    std::vector<std::int32_t> table(NS * maxp, 0);
    std::size_t used = 0;
    for (std::size_t s = 0; s < NS; ++s) {
        std::size_t np = (lens[s] + P - 1) / P;
        for (std::size_t i = 0; i < np; ++i) table[s * maxp + i] = perm[used++];
    }
    std::vector<Q> q(NS * H * D), out(NS * H * D);
    huge_vector<S> k(total_pages * P * Hk * D), v(k.size());
    fill(q, g);
    fill(k, g);
    fill(v, g);
    paged_attention_shape sh{NS, NS, H, Hk, D, D, total_pages, P, maxp};
    strides3 qs{sp(H * D), sp(D), 1};
    strides4 ks{sp(P * Hk * D), sp(Hk * D), sp(D), 1};
    paged_attention_options<float> po;
    // The pages in the decode's order (sequence by sequence, the table's order), whole pages: the pool holds
    // exactly the sequences' pages, so this reads the decode's bytes (and the last pages' unused slots).
    std::vector<std::int32_t> order;
    for (std::size_t s = 0; s < NS; ++s)
        for (std::size_t i = 0; i < (lens[s] + P - 1) / P; ++i) order.push_back(table[s * maxp + i]);
    const std::size_t page_bytes = P * Hk * D * sizeof(S);
    auto page_read = [&] {
        const double t0 = now();
        on_threads(nt, [&](int id, int n) {
            const std::size_t b = order.size() * std::size_t(id) / std::size_t(n);
            const std::size_t e = order.size() * std::size_t(id + 1) / std::size_t(n);
            float acc = 0;
            for (std::size_t i = b; i < e; ++i) {
                acc += read_part(reinterpret_cast<const char*>(k.data()) + order[i] * page_bytes, page_bytes);
                acc += read_part(reinterpret_cast<const char*>(v.data()) + order[i] * page_bytes, page_bytes);
            }
            sink_ = acc;
        });
        return now() - t0;
    };
    std::vector<double> tr, td, tp;
    ab(k, v, nt, reps, tr, td, [&] {
        paged_attention(sh, q.data(), qs, k.data(), ks, v.data(), ks, table.data(), sp(maxp), lens.data(), qst.data(),
                        out.data(), qs, po);
    }, &tp, page_read);
    char nm[128];
    std::snprintf(nm, sizeof nm, "paged %s t%d", name, nt);
    std::size_t keys = std::accumulate(lens.begin(), lens.end(), std::size_t(0));
    const double bytes = double(keys) * Hk * D * 2 * sizeof(S);
    std::sort(tp.begin(), tp.end());
    const double pb = 2.0 * order.size() * page_bytes / tp[tp.size() / 2] / 1e9;
    std::sort(td.begin(), td.end());
    std::printf("  pages in the decode's order: med %.1f GB/s; the decode's median %.0f%% of it\n", pb,
                100 * (bytes / td[td.size() / 2] / 1e9) / pb);
    report(nm, tr, td, bytes);
}

int main(int argc, char** argv) {
    std::string what = argc > 1 ? argv[1] : "all";
    int reps = argc > 2 ? std::atoi(argv[2]) : 7;
    int nt = argc > 3 ? std::atoi(argv[3]) : 2;
    if (what == "all" || what == "f32") run_contig<float, float>("f32", 16384, nt, reps);
    if (what == "all" || what == "bf16") run_contig<bfloat16, bfloat16>("bf16", 16384, nt, reps);
    if (what == "all" || what == "f16") run_contig<float16, float16>("f16", 16384, nt, reps);
    if (what == "all" || what == "f32_32k") run_contig<float, float>("f32", 32768, nt, reps);
    if (what == "all" || what == "bf16_32k") run_contig<bfloat16, bfloat16>("bf16", 32768, nt, reps);
    if (what == "all" || what == "pf32") run_paged<float, float>("f32", nt, reps);
    if (what == "all" || what == "pbf16") run_paged<bfloat16, bfloat16>("bf16", nt, reps);
}
