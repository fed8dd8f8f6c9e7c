// The online-softmax statistics shared by the drivers (reduce.cpp, sampling.cpp, attention.cpp): a row's
// maximum m and the sum of exp(beta (x - m)) split as count (entries equal to m) + rest; the rescaling when
// the maximum moves; the merge of partial results over disjoint pieces of a row (merge_pieces). Drivers
// only, like temperature.hpp (ISA files must not include inline code the linker could pick for baseline code).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

namespace normexp::detail {

// exp(beta (a - b)) for finite a <= b-ish maxima, within ~1 ULP of double: the rescale factor of the
// online rule. a - b is carried as a TwoSum pair and multiplied by beta = hi + lo (split_beta) as a
// TwoProduct, so the argument is exact to ~2^-100 relative; exp(p + e) = exp(p) (1 + e). A plain
// std::exp(beta * (a - b)) has the argument's rounding, |t| 2^-53: 40 ULP at t = -40 (float64 columns
// whose maximum moved by 40 measured 35 ULP).
struct exp_scale {
    double hi = 1, lo = 0;
    double operator()(double a, double b) const { return times(1.0, a, b); }
    // v exp(beta (a - b)), v >= 0: v (r + r e) where the factor r + r e is normal. Where it is not (the two
    // maxima more than 708 / beta apart), from h = exp(q / 2) as (v h) h (1 + e), so that the factor is not
    // rounded to a subnormal before the product (a float64 sum of terms that small, rescaled, kept 2^-1075 of
    // absolute accuracy instead of its own 2^-53 relative: 463 ULP of a logsumexp of 131072 entries).
    // Measured against long double (10^7 random v, a - b in [0, 1600 T], T from 1e-3 to 50): normal results
    // within 2.5 ULP where the factor is normal and 3.5 where it is not, subnormal ones within 2 steps.
    double times(double v, double a, double b) const {
        // |a - b| > DBL_MAX with a large temperature: the same from the halves (exact here), doubled.
        const double s = std::isinf(a - b) ? 0.5 : 1.0;
        a *= s, b *= s;
        const double d = a - b;
        const double bb = d - a;
        const double dl = (a - (d - bb)) + (-b - bb);
        const double q = hi * d;
        const double t = q / s;
        const double r = std::exp(t);
        const bool tiny = r < std::numeric_limits<double>::min() && t > -1490;  // exp(t / 2) still normal
        if (!tiny && (!(r > 0) || !std::isfinite(r))) return v * r;  // 0, or an argument beyond the checks
        const double e = (std::fma(hi, d, -q) + (hi * dl + lo * d)) / s;  // TwoProduct error + the lo parts
        if (!tiny) return v * (r + r * e);
        const double h = std::exp(t * 0.5);
        const double p = (v * h) * h;
        return p + p * e;
    }
};

// The online rule's step when the running maximum moves from m_old to m_new > m_old: what was summed
// against m_old is rescaled, or dropped while m_old is not finite (nothing real was summed yet).
inline double rescaled(const exp_scale& ex, double sum, double m_old, double m_new) {
    return std::isfinite(m_old) ? ex.times(sum, m_old, m_new) : 0.0;
}

// Partial results of the online rule over disjoint pieces of a row, merged in piece order (attention's key
// splits and merge_attention; reduce.cpp's `merge` is the same rule on (m, count, rest)). Piece s has a
// maximum m_s, a sum l_s = sum_j exp(x_j - m_s) (0: the piece saw nothing) and a vector o_s of dv values,
// o_s = sum_j exp(x_j - m_s) v_j (or any vector the weights apply to):
//   M = max_s m_s,  w_s = exp(m_s - M),  L = sum_s l_s w_s,  acc = sum_s w_s o_s  (in double).
// w_s comes from exp_scale (beta = 1), so the argument m_s - M is exact even where the double subtraction
// rounds (float64 maxima): w_s within ~1 ULP of double. Where the subtraction is exact, as for float32 maxima,
// w_s is std::exp(m_s - M) itself. Pieces with l_s = 0 add nothing. If M is not finite (every piece saw
// nothing, or an infinite maximum) or any m_s or l_s is NaN, acc and L are left 0 and the caller decides
// (the flags say which). piece(s) returns {m_s, l_s, o_s}. A piece whose weight underflows to 0 still adds
// 0 * o_s (NaN where o_s is not finite), as the rescaling by alpha = 0 does inside the kernels.
template <class T>
struct piece {
    double m, l;
    const T* o;
};
struct merged {
    double m = -std::numeric_limits<double>::infinity();  // M
    double l = 0;                                          // L
    bool nan = false;                                      // some m_s or l_s is NaN
};
template <class T, class Piece>
merged merge_pieces(std::size_t n, Piece piece_at, double* acc, std::size_t dv) {
    merged r;
    for (std::size_t s = 0; s < n; ++s) {
        const piece<T> p = piece_at(s);
        r.nan |= p.m != p.m || p.l != p.l;
        if (p.m > r.m) r.m = p.m;
    }
    for (std::size_t c = 0; c < dv; ++c) acc[c] = 0;
    if (r.nan || !std::isfinite(r.m)) return r;
    const exp_scale ex;
    for (std::size_t s = 0; s < n; ++s) {
        const piece<T> p = piece_at(s);
        if (p.l == 0) continue;
        const double w = ex(p.m, r.m);
        r.l += p.l * w;
        for (std::size_t c = 0; c < dv; ++c) acc[c] += w * double(p.o[c]);
    }
    return r;
}

}  // namespace normexp::detail
