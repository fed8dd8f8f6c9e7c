// The C API (normexp/normexp.h): thin extern "C" wrappers over the C++ API. Every entry point checks its
// pointers and sizes before touching memory and runs the rest inside capi::guard, so no exception
// crosses into C (see c_api.hpp for the rules).
#include "c_api.hpp"

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

#include "dispatch.hpp"
#include "normexp/normexp.hpp"
#include "portability.hpp"

namespace normexp::capi {
namespace {

// The thread's last error message. A fixed buffer: recording an error must not allocate (it also
// reports out-of-memory) and must not throw.
constexpr std::size_t kMessageBytes = 512;
thread_local char t_message[kMessageBytes] = "";

NX_PRINTF_FORMAT(3, 4)
int failf(int status, const char* fn, const char* fmt, ...) noexcept {
    int used = std::snprintf(t_message, kMessageBytes, "%s: ", fn);
    if (used < 0) used = 0;
    if (static_cast<std::size_t>(used) < kMessageBytes) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(t_message + used, kMessageBytes - std::size_t(used), fmt, ap);
        va_end(ap);
    }
    return status;
}

}  // namespace

int fail(int status, const char* fn, const char* message) noexcept { return failf(status, fn, "%s", message); }

void clear_error() noexcept { t_message[0] = '\0'; }

int check_isa(const char* fn) noexcept {
    try {
        (void)detail::active_kernels();
        return NORMEXP_OK;
    } catch (const std::bad_alloc&) {
        return failf(NORMEXP_ERROR_OUT_OF_MEMORY, fn, "out of memory");
    } catch (const std::exception& e) {
        return failf(NORMEXP_ERROR_ISA, fn, "%s", e.what());
    } catch (...) {
        return failf(NORMEXP_ERROR_ISA, fn, "the kernel selection failed");
    }
}

// The C++ API names its function in its messages ("normexp.paged_attention: seq_lens[3] = ..."); the C message
// starts with the C function's name instead, so that prefix is dropped rather than repeated.
namespace {
const char* without_cxx_name(const char* what) noexcept {
    if (std::strncmp(what, "normexp.", 8) != 0) return what;
    const char* colon = std::strstr(what, ": ");
    return colon ? colon + 2 : what;
}
}  // namespace

int translate_exception(const char* fn) noexcept {
    try {
        throw;
    } catch (const normexp::error& e) {
        return failf(NORMEXP_ERROR_INVALID_ARGUMENT, fn, "%s", without_cxx_name(e.what()));
    } catch (const std::bad_alloc&) {
        return failf(NORMEXP_ERROR_OUT_OF_MEMORY, fn, "out of memory");
    } catch (const std::length_error& e) {  // a container asked for more than max_size()
        return failf(NORMEXP_ERROR_OUT_OF_MEMORY, fn, "out of memory (%s)", e.what());
    } catch (const std::exception& e) {
        return failf(NORMEXP_ERROR_INTERNAL, fn, "internal error: %s", e.what());
    } catch (...) {
        return failf(NORMEXP_ERROR_INTERNAL, fn, "internal error: unknown exception");
    }
}

int check_sizes(const char* fn, std::size_t a, std::size_t b, std::size_t elem_size, std::size_t& n) noexcept {
    if (a == 0 || b == 0)
        return failf(NORMEXP_ERROR_INVALID_SIZE, fn, "sizes must be > 0, got %zu x %zu", a, b);
    constexpr std::size_t kMaxBytes = static_cast<std::size_t>(PTRDIFF_MAX);
    if (a > kMaxBytes / elem_size / b)
        return failf(NORMEXP_ERROR_INVALID_SIZE, fn,
                     "%zu x %zu elements of %zu bytes exceed PTRDIFF_MAX bytes (a negative size passed as size_t?)",
                     a, b, elem_size);
    n = a * b;
    return NORMEXP_OK;
}

namespace {

template <class T>
int reduce_rows(const char* fn, reduction op, const T* x, T* y, std::size_t rows, std::size_t cols,
                int accuracy = NORMEXP_ACCURACY_HIGH) noexcept {
    const bool lse = op == reduction::logsumexp;
    if (accuracy != NORMEXP_ACCURACY_HIGH && accuracy != NORMEXP_ACCURACY_FAST)
        return failf(NORMEXP_ERROR_INVALID_ARGUMENT, fn,
                     "accuracy must be NORMEXP_ACCURACY_HIGH (0) or NORMEXP_ACCURACY_FAST (1), got %d", accuracy);
    if (!x) return failf(NORMEXP_ERROR_NULL_POINTER, fn, "x is NULL");
    if (!y) return failf(NORMEXP_ERROR_NULL_POINTER, fn, lse ? "out is NULL" : "y is NULL");
    std::size_t n = 0;
    if (const int rc = check_sizes(fn, rows, cols, sizeof(T), n)) return rc;
    const std::size_t ny = lse ? rows : n;
    if (overlaps(x, n * sizeof(T), y, ny * sizeof(T)) && (lse || static_cast<const void*>(x) != y))
        return failf(NORMEXP_ERROR_OVERLAP, fn,
                     lse ? "out overlaps x (it must be a separate buffer)"
                         : "y overlaps x without being x (pass y == x for in place, or a separate buffer)");
    return guard(fn, [&] {
        const std::ptrdiff_t c = static_cast<std::ptrdiff_t>(cols);
        reduce<T>(op, x, {c, 1}, y, lse ? strides_t{1, 0} : strides_t{c, 1}, {rows, cols}, 1, 1.0, nullptr,
                  accuracy == NORMEXP_ACCURACY_FAST ? normexp::accuracy::fast : normexp::accuracy::high);
        return int(NORMEXP_OK);
    });
}

}  // namespace
}  // namespace normexp::capi

using normexp::reduction;
using normexp::capi::reduce_rows;

extern "C" {

int normexp_softmax_f32(const float* x, float* y, size_t rows, size_t cols) {
    return reduce_rows("normexp_softmax_f32", reduction::softmax, x, y, rows, cols);
}
int normexp_softmax_f64(const double* x, double* y, size_t rows, size_t cols) {
    return reduce_rows("normexp_softmax_f64", reduction::softmax, x, y, rows, cols);
}
int normexp_log_softmax_f32(const float* x, float* y, size_t rows, size_t cols) {
    return reduce_rows("normexp_log_softmax_f32", reduction::log_softmax, x, y, rows, cols);
}
int normexp_log_softmax_f64(const double* x, double* y, size_t rows, size_t cols) {
    return reduce_rows("normexp_log_softmax_f64", reduction::log_softmax, x, y, rows, cols);
}
int normexp_logsumexp_f32(const float* x, float* out, size_t rows, size_t cols) {
    return reduce_rows("normexp_logsumexp_f32", reduction::logsumexp, x, out, rows, cols);
}
int normexp_logsumexp_f64(const double* x, double* out, size_t rows, size_t cols) {
    return reduce_rows("normexp_logsumexp_f64", reduction::logsumexp, x, out, rows, cols);
}
int normexp_softmax_ex_f32(const float* x, float* y, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_softmax_ex_f32", reduction::softmax, x, y, rows, cols, accuracy);
}
int normexp_softmax_ex_f64(const double* x, double* y, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_softmax_ex_f64", reduction::softmax, x, y, rows, cols, accuracy);
}
int normexp_log_softmax_ex_f32(const float* x, float* y, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_log_softmax_ex_f32", reduction::log_softmax, x, y, rows, cols, accuracy);
}
int normexp_log_softmax_ex_f64(const double* x, double* y, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_log_softmax_ex_f64", reduction::log_softmax, x, y, rows, cols, accuracy);
}
int normexp_logsumexp_ex_f32(const float* x, float* out, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_logsumexp_ex_f32", reduction::logsumexp, x, out, rows, cols, accuracy);
}
int normexp_logsumexp_ex_f64(const double* x, double* out, size_t rows, size_t cols, int accuracy) {
    return reduce_rows("normexp_logsumexp_ex_f64", reduction::logsumexp, x, out, rows, cols, accuracy);
}

const char* normexp_last_error(void) { return normexp::capi::t_message; }

const char* normexp_status_string(int status) {
    switch (status) {
        case NORMEXP_OK: return "success";
        case NORMEXP_ERROR_NULL_POINTER: return "null pointer";
        case NORMEXP_ERROR_INVALID_SIZE: return "invalid size";
        case NORMEXP_ERROR_OVERLAP: return "output overlaps input";
        case NORMEXP_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case NORMEXP_ERROR_ISA: return "unusable instruction set (NORMEXP_ISA)";
        case NORMEXP_ERROR_OUT_OF_MEMORY: return "out of memory";
        case NORMEXP_ERROR_INTERNAL: return "internal error";
        default: return "unknown status";
    }
}

const char* normexp_isa(void) {
    return normexp::capi::check_isa("normexp_isa") == NORMEXP_OK ? normexp::detail::active_kernels().name : nullptr;
}

void normexp_set_num_threads(int n) { normexp::set_num_threads(n); }
int normexp_get_num_threads(void) { return normexp::get_num_threads(); }
const char* normexp_version(void) { return normexp::version(); }

}  // extern "C"
