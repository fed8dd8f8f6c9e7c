// The online-softmax statistics shared by the drivers (reduce.cpp, sampling.cpp): a row's maximum m and
// the sum of exp(beta (x - m)) split as count (entries equal to m) + rest. Drivers only, like
// temperature.hpp (ISA files must not include inline code the linker could pick for baseline code).
#pragma once

#include <cmath>

namespace normexp::detail {

// exp(beta (a - b)) for finite a <= b-ish maxima, within ~1 ULP of double: the rescale factor of the
// online rule. a - b is carried as a TwoSum pair and multiplied by beta = hi + lo (split_beta) as a
// TwoProduct, so the argument is exact to ~2^-100 relative; exp(p + e) = exp(p) (1 + e). A plain
// std::exp(beta * (a - b)) has the argument's rounding, |t| 2^-53: 40 ULP at t = -40 (float64 columns
// whose maximum moved by 40 measured 35 ULP).
struct exp_scale {
    double hi = 1, lo = 0;
    double operator()(double a, double b) const {
        // |a - b| > DBL_MAX with a large temperature: the same from the halves (exact here), doubled.
        const double s = std::isinf(a - b) ? 0.5 : 1.0;
        a *= s, b *= s;
        const double d = a - b;
        const double bb = d - a;
        const double dl = (a - (d - bb)) + (-b - bb);
        const double q = hi * d;
        const double r = std::exp(q / s);
        if (!(r > 0) || !std::isfinite(r)) return r;  // underflow (or an argument beyond the checks)
        const double e = (std::fma(hi, d, -q) + (hi * dl + lo * d)) / s;  // TwoProduct error + the lo parts
        return r + r * e;
    }
};

// The online rule's step when the running maximum moves from m_old to m_new > m_old: what was summed
// against m_old is rescaled, or dropped while m_old is not finite (nothing real was summed yet).
inline double rescaled(const exp_scale& ex, double sum, double m_old, double m_new) {
    return std::isfinite(m_old) ? sum * ex(m_old, m_new) : 0.0;
}

// log(count + rest) with full relative accuracy when a single maximum dominates. log1p(r) as
// log(u) + (r - (u - 1)) / u with u = 1 + r rounded: the quotient restores what rounding u lost (the
// classic correction; within ~1 ULP like std::log1p, at the cost of a log, which is 2-3x faster here).
inline double log_sum(double count, double rest) {
    if (count != 1) return std::log(count + rest);
    const double u = 1.0 + rest;
    return u == 1.0 ? rest : std::log(u) + (rest - (u - 1.0)) / u;
}

}  // namespace normexp::detail
