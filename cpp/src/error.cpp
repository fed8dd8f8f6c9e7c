#include "normexp/normexp.hpp"

namespace normexp {
// The key function: normexp::error's vtable and typeinfo live in the library (exported), so a
// consumer of the shared library catches the same type the library throws.
error::~error() = default;
index_error::~index_error() = default;
}  // namespace normexp
