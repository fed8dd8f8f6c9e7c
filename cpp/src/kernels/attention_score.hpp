// The score of one attention entry as the scalar specification forms it (kernel_table.hpp, attn_scores): the
// band and the boolean mask first (-inf, whatever the dot product, even NaN), then in double
//   x = scale * raw;  x = softcap * tanh(x / softcap);  x -= slope * |j - i - centre|;  x += bias
// rounded once to T. Used by kernels/scalar.cpp (the specification); the SIMD softmax_step
// (kernels/generic/attention.hpp) forms the same score in vector arithmetic, rounding after each step.
//
// A function template in an anonymous namespace: every translation unit that includes this file gets its
// own copy, compiled with its own flags, so no ISA's code can be linked into another's (the ODR trap that
// tests/isa/check_isa_objects.cmake guards against).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernel_table.hpp"

namespace normexp {
namespace {

template <class T>
T attn_score(T raw, std::size_t i, std::size_t j, const attn_scores<T>& sc) {
    const auto di = static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(i);
    if (sc.band && (di < sc.band_lo || di > sc.band_hi)) return T(-port::kInf);
    if (sc.keep && !sc.keep[static_cast<std::ptrdiff_t>(i) * sc.keep_ld + static_cast<std::ptrdiff_t>(j)])
        return T(-port::kInf);
    double x = double(raw) * double(sc.scale);
    if (sc.softcap > 0) x = double(sc.softcap) * std::tanh(x / double(sc.softcap));
    if (sc.alibi_slope != 0) x -= double(sc.alibi_slope) * std::fabs(double(di - sc.alibi_center));
    if (sc.bias) x += double(sc.bias[static_cast<std::ptrdiff_t>(i) * sc.bias_ld + static_cast<std::ptrdiff_t>(j)]);
    return static_cast<T>(x);
}

}  // namespace
}  // namespace normexp
