// 1/temperature as the unevaluated pair the kernels take (kernel_table.hpp: scale2). Drivers and tests
// only: ISA files must not include this (an inline function compiled with their flags could be the copy
// the linker keeps for baseline code).
#pragma once

#include <cmath>

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

}  // namespace normexp::detail
