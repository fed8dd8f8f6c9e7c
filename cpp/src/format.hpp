// Numbers in error messages: the shortest %g form that reads back as the same double ("1e-45", "0.1",
// "2.5e+300", "inf", "nan"). std::to_string prints a double with six fixed decimals, so a temperature of
// 1e-45 would read "0.000000" in the very message that says it is too small.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>

namespace normexp::detail {

inline std::string format_number(double v) {
    char buf[32];
    for (int digits = 1; digits <= 17; ++digits) {  // 17 significant digits always read back exactly
        std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}

// An argument check's message: text, or a callable that builds it. The checks call this only when they fail,
// so a message that formats numbers (per row, per sequence) costs nothing on the calls that pass.
template <class Msg>
std::string message(Msg&& m) {
    if constexpr (std::is_invocable_v<Msg>) return std::forward<Msg>(m)();
    else return std::string(std::forward<Msg>(m));
}

}  // namespace normexp::detail
