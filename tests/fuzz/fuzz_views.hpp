// Helpers shared by the libFuzzer harnesses: strided n-d views into buffers of exactly the size they
// span (so ASan flags any access outside a view), and iteration over their elements.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <utility>
#include <vector>

namespace fuzz {

// An n-d view into its own buffer: element offsets base + sum i_d * strides_d, all inside [0, size).
struct view {
    std::vector<std::ptrdiff_t> strides;
    std::size_t base = 0, size = 0;
};

// A layout for `shape`: axes laid out in a fuzzed order (innermost first), each with a gap factor (step
// 1..3) and a sign, and (if broadcast is allowed) sometimes stride 0 on an axis longer than 1. Offsets of
// every index are in [0, size). The same bytes are consumed whether or not broadcast is allowed.
inline view make_view(FuzzedDataProvider& fdp, const std::vector<std::size_t>& shape, bool broadcast = true) {
    const std::size_t nd = shape.size();
    std::vector<std::size_t> order(nd);
    for (std::size_t d = 0; d < nd; ++d) order[d] = d;
    for (std::size_t d = nd; d > 1; --d) std::swap(order[d - 1], order[fdp.ConsumeIntegralInRange<std::size_t>(0, d - 1)]);
    view v;
    v.strides.assign(nd, 0);
    std::ptrdiff_t extent = 1;  // elements spanned by the axes placed so far
    std::ptrdiff_t lo = 0, hi = 0;
    for (std::size_t k = 0; k < nd; ++k) {
        const std::size_t d = order[k];
        const std::ptrdiff_t step = fdp.ConsumeIntegralInRange<int>(1, 3);
        const bool neg = fdp.ConsumeBool();
        const bool zero = shape[d] > 1 && fdp.ConsumeIntegralInRange<int>(0, 15) == 0 && broadcast;
        std::ptrdiff_t s = zero ? 0 : extent * step;
        if (neg) s = -s;
        v.strides[d] = s;
        if (shape[d] > 0) {
            const std::ptrdiff_t span = s * std::ptrdiff_t(shape[d] - 1);
            (span < 0 ? lo : hi) += span;
            extent = std::max<std::ptrdiff_t>(extent, std::abs(s) * std::ptrdiff_t(shape[d]));
        }
    }
    v.base = std::size_t(-lo);
    v.size = std::size_t(hi - lo + 1);
    return v;
}

// Offset of index idx in view v.
inline std::size_t offset(const view& v, const std::vector<std::size_t>& idx) {
    std::ptrdiff_t off = std::ptrdiff_t(v.base);
    for (std::size_t d = 0; d < idx.size(); ++d) off += std::ptrdiff_t(idx[d]) * v.strides[d];
    return std::size_t(off);
}

// Calls f(offset, index vector) for every index of shape, in C order.
template <class F>
void each(const std::vector<std::size_t>& shape, const std::vector<std::ptrdiff_t>& strides, std::size_t base, F f) {
    const std::size_t nd = shape.size();
    for (std::size_t d = 0; d < nd; ++d)
        if (shape[d] == 0) return;
    std::vector<std::size_t> idx(nd, 0);
    while (true) {
        std::ptrdiff_t off = std::ptrdiff_t(base);
        for (std::size_t d = 0; d < nd; ++d) off += std::ptrdiff_t(idx[d]) * strides[d];
        f(std::size_t(off), idx);
        std::size_t d = nd;
        while (d > 0) {
            --d;
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
            if (d == 0) return;
        }
        if (nd == 0) return;
    }
}

}  // namespace fuzz
