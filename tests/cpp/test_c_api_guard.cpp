// The C API's exception boundary (cpp/src/c_api.hpp): whatever a body throws becomes a status code and
// a message, never an exception in C. Exercised directly, because the public functions validate their
// arguments before anything could throw (an out-of-memory cannot be provoked reliably from outside).
#include <new>
#include <stdexcept>
#include <string>

#include "c_api.hpp"
#include "check.hpp"
#include "normexp/normexp.hpp"

namespace {

template <class F>
void expect(const char* what, int code, const char* msg_part, F&& body) {
    const int rc = normexp::capi::guard("fn_under_test", body);
    CHECK(rc == code, "%s: expected %d, got %d", what, code, rc);
    const std::string msg = normexp_last_error();
    CHECK(msg.rfind("fn_under_test: ", 0) == 0 && msg.find(msg_part) != std::string::npos,
          "%s: message '%s' should start with the function and contain '%s'", what, msg.c_str(), msg_part);
}

}  // namespace

int main() {
    using namespace normexp::capi;
    expect("normexp::error", NORMEXP_ERROR_INVALID_ARGUMENT, "bad temperature",
           []() -> int { throw normexp::error("bad temperature"); });
    expect("bad_alloc", NORMEXP_ERROR_OUT_OF_MEMORY, "out of memory", []() -> int { throw std::bad_alloc(); });
    expect("length_error", NORMEXP_ERROR_OUT_OF_MEMORY, "out of memory", []() -> int { throw std::length_error("vector"); });
    expect("runtime_error", NORMEXP_ERROR_INTERNAL, "internal error: boom", []() -> int { throw std::runtime_error("boom"); });
    expect("throw int", NORMEXP_ERROR_INTERNAL, "unknown exception", []() -> int { throw 42; });
    // A body may also return its own status without throwing; the message it set stays.
    expect("returned status", NORMEXP_ERROR_NULL_POINTER, "q is NULL",
           [] { return fail(NORMEXP_ERROR_NULL_POINTER, "fn_under_test", "q is NULL"); });

    // A very long message is truncated inside the fixed buffer, still terminated.
    const std::string huge(5000, 'z');
    expect("long message", NORMEXP_ERROR_INVALID_ARGUMENT, "zzzz", [&]() -> int { throw normexp::error(huge); });
    const std::size_t len = std::string(normexp_last_error()).size();
    CHECK(len > 100 && len < 1024, "truncated message length %zu", len);

    CHECK(guard("fn_under_test", [] { return 0; }) == NORMEXP_OK, "success");
    CHECK(*normexp_last_error() == '\0', "a success clears the message");

    // Sizes: zero, overflow of the product, byte size beyond PTRDIFF_MAX; a valid product is returned.
    std::size_t n = 0;
    CHECK(check_sizes("f", 0, 5, 4, n) == NORMEXP_ERROR_INVALID_SIZE, "zero");
    CHECK(check_sizes("f", std::size_t(1) << 40, std::size_t(1) << 40, 1, n) == NORMEXP_ERROR_INVALID_SIZE, "overflow");
    CHECK(check_sizes("f", std::size_t(PTRDIFF_MAX) / 8 + 1, 1, 8, n) == NORMEXP_ERROR_INVALID_SIZE, "bytes");
    CHECK(check_sizes("f", std::size_t(PTRDIFF_MAX) / 8, 1, 8, n) == NORMEXP_OK && n == std::size_t(PTRDIFF_MAX) / 8,
          "largest valid size");
    CHECK(check_sizes("f", 3, 5, 4, n) == NORMEXP_OK && n == 15, "3 x 5");
    return check::finish("c_api_guard");
}
