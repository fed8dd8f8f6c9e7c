// libFuzzer harness for the C++ driver normexp::reduce<T> (softmax, log_softmax, logsumexp).
//
// From the fuzz input it builds: the operation, float or double, a rank 1..4 shape (0-length axes
// included), an axis (negative too), a temperature (valid or not), a kernel set, the input's layout
// (every axis with its own step 1..3, sign and order, so strides are arbitrary, negative and
// permuted), the output's layout (its own, the input's for in place, and for logsumexp an arbitrary
// stride on the reduced axis, which the API says is ignored) and the values (raw bit patterns: NaN,
// +-inf, subnormals, huge, ties).
//
// Only valid memory views are built: each array lives in its own heap buffer just large enough for its
// view, so ASan flags any read or write outside it. Then it checks:
//  * normexp::error is thrown exactly when an argument is invalid (bad axis or temperature);
//  * nothing outside the output view is written (sentinels), the input is unchanged unless in place;
//  * every kernel set gives the same NaN pattern and values within a few ULP of the scalar
//    specification, and for rows of finite values: 0 <= softmax <= 1 summing to 1, log_softmax <= 0,
//    logsumexp >= the row maximum.
// fuzz_attention.cpp and fuzz_c_api.cpp cover attention and the C API (normexp.h).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_views.hpp"
#include "normexp/normexp.hpp"

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_reduce: invariant violated: %s\n", what);
    std::abort();
}

using fuzz::each;
using fuzz::make_view;
using fuzz::view;

template <class T>
T value_from(FuzzedDataProvider& fdp) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
        case 0: {  // raw bit pattern: NaN payloads, infinities, subnormals, huge
            using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
            const U bits = fdp.ConsumeIntegral<U>();
            T v;
            std::memcpy(&v, &bits, sizeof v);
            return v;
        }
        case 1:
            return T(fdp.ConsumeIntegralInRange<int>(-3, 3));  // ties
        case 2:
            return fdp.PickValueInArray<T>({std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                                            std::numeric_limits<T>::quiet_NaN(), T(1e30), T(-1e30), T(0)});
        default:
            return T(fdp.ConsumeFloatingPointInRange<double>(-40.0, 40.0));
    }
}

// Distance in ULPs (NaN == NaN); infinite if exactly one is NaN or they are infinities of different sign.
template <class T>
double ulps(T a, T b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INFINITY;
    if (a == b) return 0;
    if (std::isinf(a) || std::isinf(b)) return INFINITY;
    using I = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
    I ia, ib;
    std::memcpy(&ia, &a, sizeof a);
    std::memcpy(&ib, &b, sizeof b);
    const long double oa = ia < 0 ? -(long double)(ia & std::numeric_limits<I>::max()) : (long double)ia;
    const long double ob = ib < 0 ? -(long double)(ib & std::numeric_limits<I>::max()) : (long double)ib;
    return double(std::fabs(oa - ob));
}

template <class T>
void run(FuzzedDataProvider& fdp) {
    const auto op = fdp.PickValueInArray({normexp::reduction::softmax, normexp::reduction::log_softmax,
                                          normexp::reduction::logsumexp});
    const bool lse = op == normexp::reduction::logsumexp;
    const std::size_t nd = fdp.ConsumeIntegralInRange<std::size_t>(1, 4);
    normexp::shape_t shape(nd);
    std::size_t total = 1;
    for (auto& n : shape) {
        // Mostly short axes; sometimes one long enough for vector bodies and every tail length.
        n = fdp.ConsumeIntegralInRange<int>(0, 9) == 0 ? fdp.ConsumeIntegralInRange<std::size_t>(0, 300)
                                                       : fdp.ConsumeIntegralInRange<std::size_t>(0, 6);
        total *= std::max<std::size_t>(n, 1);
    }
    if (total > 4096) return;  // keep executions fast
    const int axis = fdp.ConsumeIntegralInRange<int>(-int(nd) - 1, int(nd));  // one invalid each side
    double temperature = 1.0;
    switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
        case 0: break;
        case 1: temperature = fdp.PickValueInArray<double>({0.5, 2.0, 0.37, 1e-3, 1e3, 1e-30, 1e30, 1e-40}); break;
        case 2: temperature = fdp.PickValueInArray<double>({0.0, -1.0, -0.0, kInf, -kInf, std::nan("")}); break;  // invalid
        case 3: temperature = fdp.ConsumeFloatingPoint<double>(); break;
        default: break;
    }
    const bool valid_axis = axis >= -int(nd) && axis < int(nd);
    // 1/temperature must be finite in T and, in float32, not round to 0 (cpp/src/temperature.hpp).
    const bool valid_t = std::isfinite(temperature) && temperature > 0 && (!lse || temperature == 1.0) &&
                         1.0 / temperature <= double(std::numeric_limits<T>::max()) &&
                         (sizeof(T) == 8 || 1.0 / temperature >= 0x1p-149);
    const std::size_t ax = valid_axis ? std::size_t(axis < 0 ? axis + int(nd) : axis) : 0;

    // Input view and values.
    view vx = make_view(fdp, shape);
    std::vector<T> xbuf(vx.size);
    for (auto& v : xbuf) v = T(0.25);
    each(shape, vx.strides, vx.base, [&](std::size_t off, const std::vector<std::size_t>&) { xbuf[off] = value_from<T>(fdp); });
    // Output view: in place (same buffer and layout; not with broadcast input axes), or its own.
    normexp::shape_t yshape = shape;
    if (lse && valid_axis) yshape[ax] = 1;
    bool has_zero_stride = false;
    for (std::size_t d = 0; d < nd; ++d) has_zero_stride |= vx.strides[d] == 0 && shape[d] > 1;
    const bool in_place = !lse && !has_zero_stride && fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
    view vy;
    if (in_place) {
        vy = vx;
    } else {
        vy = make_view(fdp, yshape);
        bool zero = false;  // an output may not broadcast (two entries in one place): use a dense layout
        for (std::size_t d = 0; d < nd; ++d) zero |= vy.strides[d] == 0 && yshape[d] > 1;
        if (zero) {
            std::ptrdiff_t s = 1;
            for (std::size_t d = nd; d-- > 0;) vy.strides[d] = s, s *= std::ptrdiff_t(std::max<std::size_t>(yshape[d], 1));
            vy.base = 0;
            vy.size = std::size_t(s);
        }
    }
    std::vector<std::ptrdiff_t> ys = vy.strides;
    if (lse && valid_axis && fdp.ConsumeBool()) ys[ax] = fdp.ConsumeIntegral<std::int32_t>();  // ignored by the API
    const T sentinel = T(-12345.5);
    std::vector<T> ybuf_local;
    if (!in_place) ybuf_local.assign(vy.size, sentinel);
    const std::vector<T> x_before = xbuf;

    const std::vector<std::string> isas = normexp::available_isas();
    std::vector<std::vector<T>> results;
    for (std::size_t k = 0; k < isas.size(); ++k) {
        std::vector<T> xb = xbuf;
        std::vector<T> yb = in_place ? std::vector<T>() : ybuf_local;
        // Exact-size heap copies so ASan sees the real bounds of each view.
        T* xm = new T[std::max<std::size_t>(vx.size, 1)];
        std::copy(xb.begin(), xb.end(), xm);
        T* ym = in_place ? xm : new T[std::max<std::size_t>(vy.size, 1)];
        if (!in_place) std::copy(yb.begin(), yb.end(), ym);
        bool threw = false;
        try {
            normexp::reduce<T>(op, xm + vx.base, vx.strides, ym + vy.base, ys, shape, axis, temperature, isas[k].c_str());
        } catch (const normexp::error&) {
            threw = true;
        }
        const bool valid = valid_axis && valid_t;
        if (threw == valid) {
            std::fprintf(stderr, "axis %d nd %zu temperature %g op %d\n", axis, nd, temperature, int(op));
            fail(valid ? "a valid call threw normexp::error" : "an invalid call did not throw");
        }
        std::vector<T> out(ym, ym + (in_place ? vx.size : vy.size));
        if (!in_place)
            if (std::memcmp(xm, x_before.data(), vx.size * sizeof(T)) != 0) fail("the input was modified");
        if (!in_place) delete[] ym;
        delete[] xm;
        if (!valid) {
            if (!in_place) {
                for (const T& v : out)
                    if (!(v == sentinel)) fail("an invalid call wrote its output");
            }
            return;
        }
        // Nothing outside the output view was written.
        if (!in_place) {
            std::vector<char> inview(vy.size, 0);
            each(yshape, vy.strides, vy.base, [&](std::size_t off, const std::vector<std::size_t>&) { inview[off] = 1; });
            for (std::size_t i = 0; i < vy.size; ++i)
                if (!inview[i] && !(out[i] == sentinel)) fail("a write outside the output view");
        }
        results.push_back(std::move(out));
    }
    if (results.empty()) return;

    // Per-element checks against the scalar specification (results[0]) and the row invariants.
    const std::size_t n = shape[ax];
    normexp::shape_t outer = shape;
    outer[ax] = 1;
    const double eps = std::numeric_limits<T>::epsilon();
    each(outer, vx.strides, vx.base, [&](std::size_t xoff0, const std::vector<std::size_t>& idx) {
        std::ptrdiff_t yoff0 = std::ptrdiff_t(vy.base);
        for (std::size_t d = 0; d < nd; ++d)
            if (d != ax) yoff0 += std::ptrdiff_t(idx[d]) * vy.strides[d];
        bool finite_row = true;
        double m = -INFINITY;
        for (std::size_t i = 0; i < n; ++i) {
            const T v = x_before[xoff0 + std::ptrdiff_t(i) * vx.strides[ax]];
            finite_row &= std::isfinite(v);
            m = std::max(m, double(v));
        }
        const std::size_t cnt = lse ? 1 : n;
        long double sum = 0;  // the check's own rounding must stay far below eps
        for (std::size_t i = 0; i < cnt; ++i) {
            const std::size_t yo = std::size_t(yoff0 + (lse ? 0 : std::ptrdiff_t(i) * vy.strides[ax]));
            const T ref = results[0][yo];
            for (std::size_t k = 1; k < results.size(); ++k) {
                const T got = results[k][yo];
                // 8 ULP: each kernel set is within ~4 ULP of the exact value (see test_properties.py);
                // logsumexp and log_softmax also get an absolute floor of a few ULPs of the row's scale,
                // where m + log(sum) cancels (float64).
                const double scale = std::max(std::fabs(m) / temperature, 1.0);
                // float64 softmax: 16 ULP between sets. The SIMD sets' float64 sums are compensated
                // (after the fuzzer found 9 and 32 ULP from pairwise blocks rounding 1 + tiny terms),
                // but the online column statistics still rescale partial sums by a rounded exp at each
                // new column maximum, a few ULP per rescale that the scalar set accumulates differently.
                const double bound = (sizeof(T) == 8 && op == normexp::reduction::softmax) ? 16 : 8;
                const bool close = ulps(got, ref) <= bound ||
                                   (std::isfinite(got) && std::isfinite(ref) && (op != normexp::reduction::softmax) &&
                                    std::fabs(double(got) - double(ref)) <= 8 * eps * scale);
                if (!close) {
                    std::fprintf(stderr, "isa %s: %a vs scalar %a (op %d, n=%zu, entry %zu, temperature %a, row max %a)\n",
                                 isas[k].c_str(), double(got), double(ref), int(op), n, i, temperature, m);
                    for (std::size_t j = 0; j < n && j < 400; ++j)
                        std::fprintf(stderr, "  x %a\n", double(x_before[xoff0 + std::ptrdiff_t(j) * vx.strides[ax]]));
                    fail("kernel sets disagree");
                }
            }
            if (!finite_row) continue;
            if (op == normexp::reduction::softmax) {
                if (!(ref >= 0 && ref <= 1)) fail("softmax outside [0, 1]");
                sum += (long double)ref;
            } else if (op == normexp::reduction::log_softmax) {
                if (!(ref <= 0)) fail("log_softmax > 0");
            } else if (n > 0 && !(double(ref) >= m)) {
                fail("logsumexp < max");
            }
        }
        // 4 ULP per entry relative (see test_properties.py) -> |sum - 1| <= 4 eps, plus subnormal flushes.
        if (op == normexp::reduction::softmax && finite_row && n > 0 &&
            !(std::fabs(double(sum - 1)) <= 4 * eps + double(n) * std::numeric_limits<T>::denorm_min())) {
            std::fprintf(stderr, "sum - 1 = %g (n=%zu, max %a, temperature %a)\n", double(sum - 1), n, m, temperature);
            for (std::size_t i = 0; i < n && i < 64; ++i)
                std::fprintf(stderr, "  x %a -> %a\n", double(x_before[xoff0 + std::ptrdiff_t(i) * vx.strides[ax]]),
                             double(results[0][std::size_t(yoff0 + std::ptrdiff_t(i) * vy.strides[ax])]));
            fail("softmax does not sum to 1");
        }
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider fdp(data, size);
    if (fdp.ConsumeBool())
        run<float>(fdp);
    else
        run<double>(fdp);
    return 0;
}
