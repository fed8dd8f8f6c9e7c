// 1/temperature as the unevaluated pair the kernels take (kernel_table.hpp: scale2). Drivers and tests
// only: ISA files must not include this (an inline function compiled with their flags could be the copy
// the linker keeps for baseline code).
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include "format.hpp"
#include "kernels/kernel_table.hpp"

namespace normexp::detail {

template <class T>
scale2<T> split_beta(double temperature) {
    const double b = 1.0 / temperature;
    if constexpr (sizeof(T) == 4) {
        // float32: the double reciprocal split into two floats (48 significant bits).
        const float hi = static_cast<float>(b);
        return {hi, static_cast<float>(b - static_cast<double>(hi))};
    } else {
        // float64: lo = (1 - hi*T)/T, the residual of the rounded reciprocal computed exactly with an FMA.
        return {b, -std::fma(b, temperature, -1.0) / temperature};
    }
}

// The smallest 1/temperature the kernels can scale float32 scores by: below 2^-149 it rounds to 0 in
// float32, and an entry at -inf (or masked out) would give 0 * -inf = NaN. float64: every finite temperature
// has a nonzero reciprocal. (Between 2^-149 and ~2^-100 the pair's lo part is subnormal and beta carries
// fewer than 48 bits: docs/accuracy.md states what that costs.)
template <class T>
constexpr double kMinBeta = sizeof(T) == 4 ? 0x1p-149 : 0.0;

// "" when 1/temperature fits T as the kernels need it (finite in T, at least kMinBeta<T>), else the end of
// the caller's message: "temperature <t> is too small (or too large) for <dtype> <noun> (...); use ...".
// temperature is finite and > 0 (checked first by the caller).
template <class T>
std::string temperature_range_error(double temperature, const std::string& dtype, const char* noun) {
    const double b = 1.0 / temperature;
    const std::string t = "temperature " + format_number(temperature);
    if (!(b <= double(std::numeric_limits<T>::max())))
        return t + " is too small for " + dtype + " " + noun + " (1/temperature overflows); use a larger one or float64";
    if (!(b >= kMinBeta<T>))
        return t + " is too large for " + dtype + " " + noun +
               " (1/temperature rounds to 0 in float32); use a smaller one or float64";
    return "";
}

}  // namespace normexp::detail
