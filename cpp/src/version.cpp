#include "normexp/normexp.hpp"
#include "normexp/version.h"

namespace normexp {
const char* version() { return NORMEXP_VERSION_STRING; }
}  // namespace normexp
