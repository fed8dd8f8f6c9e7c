// The C API's boundary: argument checks and the exception-to-status translation shared by every
// extern "C" function (c_api.cpp; other features add their C functions in their own file with these).
//
// Rules for a C entry point:  int normexp_foo(...) { return capi::guard("normexp_foo", [&] { ...; return 0; }); }
//  * check pointers and sizes first with the helpers below (they return a status, never throw);
//  * everything that can throw runs inside guard(), which catches every exception and maps it to a
//    normexp_status: normexp::error -> INVALID_ARGUMENT, std::bad_alloc -> OUT_OF_MEMORY, anything
//    else -> INTERNAL; guard() also reports an unusable NORMEXP_ISA as NORMEXP_ERROR_ISA up front.
//  * guard() records the message in a thread-local buffer (no allocation), "" on success.
#pragma once

#include <cstddef>
#include <cstdint>

#include "normexp/normexp.h"

namespace normexp::capi {

// Records "<fn>: <message>" (truncated to the buffer) as the thread's last error; returns `status`.
int fail(int status, const char* fn, const char* message) noexcept;
void clear_error() noexcept;

// The active kernels, or NORMEXP_ERROR_ISA with NORMEXP_ISA's complaint recorded.
int check_isa(const char* fn) noexcept;

// Maps the exception in flight to a status (call only from a catch block).
int translate_exception(const char* fn) noexcept;

template <class F>
int guard(const char* fn, F&& body) noexcept {
    try {
        if (const int rc = check_isa(fn)) return rc;
        const int rc = body();
        if (rc == NORMEXP_OK) clear_error();
        return rc;
    } catch (...) {
        return translate_exception(fn);
    }
}

// n = a * b * elem_size without overflow, and within PTRDIFF_MAX bytes (so element strides and pointer
// differences fit ptrdiff_t). Zero sizes are rejected: the C API has no empty calls.
int check_sizes(const char* fn, std::size_t a, std::size_t b, std::size_t elem_size, std::size_t& n) noexcept;

// Do [p, p + pn) and [q, q + qn) (bytes) share a byte?
inline bool overlaps(const void* p, std::size_t pn, const void* q, std::size_t qn) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(q);
    return a < b + qn && b < a + pn;
}

}  // namespace normexp::capi
