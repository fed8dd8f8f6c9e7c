// Compiler portability: the one place where the non-standard spellings normexp uses are chosen for
// GCC and Clang (Linux, macOS, MinGW-w64; clang-cl too, which accepts the GNU attributes) and for MSVC.
// Everything else in cpp/src uses only these names, so a new compiler is a change to this file alone.
//
//   NX_LIKELY(x)          branch hint (GCC/Clang __builtin_expect; MSVC: none)
//   NX_INLINE             forced inlining: the exp and its argument reduction must be inlined into every
//                         kernel loop (as calls they spill the vector constants and cost a third of the
//                         kernel)
//   NX_FLATTEN            a kernel entry point inlines everything it calls (GCC's size heuristics otherwise
//                         leave the per-vector lambdas as calls that reload every constant per vector;
//                         MSVC has no equivalent, its inliner decides)
//   NX_NOINLINE           never inlined, not even into an NX_FLATTEN caller: a path that must not grow the
//                         code of the loop it branches from (GCC re-decides that loop's inlining as it grows)
//   NX_UNROLL(n)          unroll the next loop n times (`#pragma GCC unroll n`; MSVC has no such pragma and
//                         would warn C4068 on it, so it expands to nothing there)
//   NX_PREFETCH(p)        prefetch the cache line at p into all levels (prefetcht0 on x86-64)
//   NX_PREFETCH_L2(p)     prefetch it into L2 and beyond (prefetcht1 on x86-64, pldl2keep on aarch64)
//   NX_KEEP_IN_REGISTER(v) an empty asm that takes and gives back the vector v in a register: the compiler
//                         keeps one loaded vector there instead of folding its load into every instruction
//                         that uses it (GCC/Clang on x86-64 and aarch64; elsewhere nothing)
//   NX_PRINTF_FORMAT(f,a) printf-style format checking of argument f against the arguments from a
//   port::kInf, port::kNaN  +infinity and a quiet NaN as double constants (the bit patterns of GCC's
//                         __builtin_huge_val() and __builtin_nan(""): 0x7ff0... and 0x7ff8...)
//   port::ctz32(x)        index of the lowest set bit of a nonzero 32-bit word
//   port::cpu_relax()     the spin-wait hint (x86 pause, aarch64 yield)
#pragma once

#include <cstdint>
#include <limits>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NX_LIKELY(x) __builtin_expect(!!(x), 1)
#define NX_INLINE inline __attribute__((always_inline))
#define NX_FLATTEN __attribute__((flatten))
#define NX_NOINLINE __attribute__((noinline))
#define NX_PRAGMA(text) _Pragma(#text)
#define NX_UNROLL(n) NX_PRAGMA(GCC unroll n)
#define NX_PREFETCH(p) __builtin_prefetch(p)
#define NX_PREFETCH_L2(p) __builtin_prefetch(p, 0, 2)
#if defined(__x86_64__) || defined(__i386__)
#define NX_KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__)
#define NX_KEEP_IN_REGISTER(v) __asm__("" : "+w"(v))
#else
#define NX_KEEP_IN_REGISTER(v) ((void)0)
#endif
#if defined(__MINGW32__)
// MinGW-w64's C++ runtime uses its own C99 printf (__USE_MINGW_ANSI_STDIO), which takes %zu; `printf`
// there would mean the old msvcrt format rules to GCC. Its _mingw.h names the archetype that matches
// (gnu_printf for GCC, which Clang does not know).
#define NX_PRINTF_FORMAT(fmt, args) __attribute__((format(__MINGW_PRINTF_FORMAT, fmt, args)))
#else
#define NX_PRINTF_FORMAT(fmt, args) __attribute__((format(printf, fmt, args)))
#endif
#elif defined(_MSC_VER)
#define NX_LIKELY(x) (x)
#define NX_INLINE __forceinline
#define NX_FLATTEN
#define NX_NOINLINE __declspec(noinline)
#define NX_UNROLL(n)
#define NX_KEEP_IN_REGISTER(v) ((void)0)
#if defined(_M_X64) || defined(_M_IX86)
#define NX_PREFETCH(p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0)
#define NX_PREFETCH_L2(p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1)
#else
#define NX_PREFETCH(p) __prefetch(p)
#define NX_PREFETCH_L2(p) __prefetch(p)
#endif
#define NX_PRINTF_FORMAT(fmt, args)
#else
#error "normexp: unknown compiler (cpp/src/portability.hpp supports GCC, Clang, clang-cl and MSVC)"
#endif

namespace normexp::port {

inline constexpr double kInf = std::numeric_limits<double>::infinity();
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Index of the lowest set bit of x; x must not be 0.
inline int ctz32(std::uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctz(x);
#else
    unsigned long i;
    _BitScanForward(&i, x);
    return static_cast<int>(i);
#endif
}

// The spin-wait hint: tells the core that this is a spin loop (frees the sibling hyperthread, saves power).
inline void cpu_relax() {
#if defined(__GNUC__) || defined(__clang__)
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
#elif defined(_M_X64) || defined(_M_IX86)
    _mm_pause();
#elif defined(_M_ARM64)
    __yield();
#endif
}

}  // namespace normexp::port
