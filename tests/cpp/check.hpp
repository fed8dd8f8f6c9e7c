// Minimal test helpers for the C++ tests (no framework dependency): CHECK records a failure and goes on.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace check {

inline int& failures() {
    static int n = 0;
    return n;
}

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            ++check::failures();                                           \
            if (check::failures() <= 20) {                                 \
                std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
                std::fprintf(stderr, __VA_ARGS__);                         \
                std::fprintf(stderr, "\n");                                \
            }                                                              \
        }                                                                  \
    } while (0)

// Distance in units in the last place between two values of the same type (NaN == NaN is 0).
inline std::int64_t ordered(float v) {
    std::int32_t i;
    std::memcpy(&i, &v, 4);
    return i < 0 ? std::int64_t(INT32_MIN) - i : i;
}
inline std::int64_t ordered(double v) {
    std::int64_t i;
    std::memcpy(&i, &v, 8);
    return i < 0 ? INT64_MIN - i : i;
}
template <class T>
double ulp_diff(T a, T b) {
    if (std::isnan(a) && std::isnan(b)) return 0;
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::infinity();
    if (a == b) return 0;
    const std::int64_t d = ordered(a) - ordered(b);
    return std::fabs(static_cast<double>(d));
}

inline int finish(const char* name) {
    if (failures()) {
        std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
        return 1;
    }
    std::printf("%s: all checks passed\n", name);
    return 0;
}

}  // namespace check
