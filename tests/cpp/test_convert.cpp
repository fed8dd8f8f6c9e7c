// The 16-bit conversions: the specification (half_convert.hpp) against independent references, and every
// kernel set's convert_kernels (its traits' load_f16 / store_f16 / load_bf16 / store_bf16 and their tails)
// against the specification, bit for bit.
//
//  * widening: all 65536 float16 and bfloat16 patterns; float16 against the compiler's _Float16 (numbers
//    exactly, NaN as a quiet NaN with the payload on top), bfloat16 against the 16-bit shift.
//  * narrowing: float32 values of every class (random bit patterns: NaNs with payloads, infinities,
//    subnormals, both signs) and the hard cases (exact ties between two 16-bit neighbours, around the
//    overflow threshold 65520 and the float16 subnormal range), against the nearest-even neighbour chosen
//    with exact double arithmetic (for float16 also against _Float16's conversion).
//  * every ISA: identical bits to the specification for whole vectors and every tail length 0..40 at
//    every offset 0..3, and nothing written past n (canaries).
//  * every ISA's scale_* kernels (attention's o / l rows): x * c in double rounded once to float32 / 16 bits,
//    bit for bit against the specification's cast and to_f16 / to_bf16 of the double, on products that land
//    on 16-bit ties and just beside them (where rounding through float32 to nearest is wrong), overflow,
//    subnormal results, infinities and NaN.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "half_convert.hpp"

// _Float16 in C++: GCC 12 has it on x86-64 (not on aarch64, where the nearest-even reference remains).
#if defined(__x86_64__) && defined(__FLT16_MAX__)
#define NX_HAVE_FLOAT16 1
#else
#define NX_HAVE_FLOAT16 0
#endif

namespace {

using normexp::bfloat16;
using normexp::float16;
namespace d = normexp::detail;

bool is_nan32(std::uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

// The nearest-even 16-bit neighbour of a finite float f, given the value of each 16-bit magnitude code c
// (codes ordered by value; `top` the first code that is infinite, treated as the value 2^(emax+1) as IEEE
// rounding does) and the code's sign bit.
template <class Value>
std::uint16_t nearest(double f, std::uint16_t sign_bit, std::uint16_t top, Value value) {
    const double a = std::fabs(double(f));
    std::uint16_t lo = 0, hi = top;  // value(lo) <= a < value(hi), by bisection over the codes
    if (a >= value(top)) return static_cast<std::uint16_t>((std::signbit(f) ? sign_bit : 0) | top);
    while (hi - lo > 1) {
        const std::uint16_t mid = static_cast<std::uint16_t>((lo + hi) / 2);
        (value(mid) <= a ? lo : hi) = mid;
    }
    const double dl = a - value(lo), dh = value(hi) - a;  // exact (Sterbenz) where the two are close
    const std::uint16_t c = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
    return static_cast<std::uint16_t>((std::signbit(f) ? sign_bit : 0) | c);
}
double f16_value(std::uint16_t c) {  // magnitude codes 0..0x7c00 (0x7c00: 2^16)
    if (c >= 0x7c00) return 65536.0;
    const int e = c >> 10, m = c & 0x3ff;
    return e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
}
double bf16_value(std::uint16_t c) {  // magnitude codes 0..0x7f80 (0x7f80: 2^128)
    if (c >= 0x7f80) return std::ldexp(1.0, 128);
    return double(d::f32_from_bits(std::uint32_t(c) << 16));
}

std::uint16_t spec_f16_nan(std::uint32_t u) {
    return static_cast<std::uint16_t>(((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu));
}

void check_spec(const std::vector<float>& xs) {
    // widening
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float fb = d::to_f32(bfloat16{static_cast<std::uint16_t>(h)});
        CHECK(d::f32_bits(fb) == h << 16, "bf16 widen %04x", h);
        const float ff = d::to_f32(float16{static_cast<std::uint16_t>(h)});
        const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        if (nan) {
            const std::uint32_t want = ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
            CHECK(d::f32_bits(ff) == want, "f16 widen NaN %04x: %08x", h, d::f32_bits(ff));
        } else {
#if NX_HAVE_FLOAT16
            _Float16 r;
            const std::uint16_t hb = static_cast<std::uint16_t>(h);
            std::memcpy(&r, &hb, 2);
            CHECK(d::f32_bits(ff) == d::f32_bits(static_cast<float>(r)), "f16 widen %04x", h);
#endif
            const double v = f16_value(h & 0x7fffu) * ((h & 0x8000u) ? -1 : 1);
            CHECK((h & 0x7fffu) == 0x7c00u ? std::isinf(ff) && std::signbit(ff) == bool(h & 0x8000u) : double(ff) == v,
                  "f16 widen %04x value", h);
        }
    }
    // narrowing
    for (const float f : xs) {
        const std::uint32_t u = d::f32_bits(f);
        const std::uint16_t h = d::to_f16(f).bits, b = d::to_bf16(f).bits;
        if (is_nan32(u)) {
            CHECK(h == spec_f16_nan(u), "f16 narrow NaN %08x -> %04x", u, h);
            CHECK(b == static_cast<std::uint16_t>((u >> 16) | 0x40u), "bf16 narrow NaN %08x -> %04x", u, b);
            continue;
        }
        if (std::isinf(f)) {
            CHECK(h == ((u >> 16) & 0x8000u) + 0x7c00u, "f16 narrow inf");
            CHECK(b == (u >> 16), "bf16 narrow inf");
            continue;
        }
        CHECK(h == nearest(f, 0x8000, 0x7c00, f16_value), "f16 narrow %a (%08x) -> %04x", double(f), u, h);
        CHECK(b == nearest(f, 0x8000, 0x7f80, bf16_value), "bf16 narrow %a (%08x) -> %04x", double(f), u, b);
#if NX_HAVE_FLOAT16
        const _Float16 r = static_cast<_Float16>(f);
        std::uint16_t rb;
        std::memcpy(&rb, &r, 2);
        CHECK(h == rb, "f16 narrow %a: spec %04x, _Float16 %04x", double(f), h, rb);
#endif
    }
}

// Floats of every class plus the ties and thresholds of both 16-bit formats.
std::vector<float> narrowing_inputs() {
    std::vector<float> xs;
    std::mt19937 rng(12345);
    for (int i = 0; i < 1 << 20; ++i) xs.push_back(d::f32_from_bits(static_cast<std::uint32_t>(rng())));
    for (std::uint32_t c = 0; c < 0x7c00; ++c)  // float16: every code, its midpoint to the next, +-1 ulp of float32
        for (const double v : {f16_value(c), (f16_value(c) + f16_value(c + 1)) / 2}) {
            const float f = static_cast<float>(v);  // exact: float16 midpoints need 12 bits
            for (const float g : {f, std::nextafter(f, 0.0f), std::nextafter(f, 1e30f)}) {
                xs.push_back(g);
                xs.push_back(-g);
            }
        }
    for (std::uint32_t c = 0; c < 0x7f80; c += 7)  // bfloat16 midpoints (exact in float32) and neighbours
        for (const std::uint32_t u : {(c << 16) | 0x8000u, (c << 16) | 0x7fffu, (c << 16) | 0x8001u}) {
            xs.push_back(d::f32_from_bits(u));
            xs.push_back(d::f32_from_bits(u | 0x80000000u));
        }
    for (const float f : {65504.0f, 65519.996f, 65520.0f, 65536.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1.000002p-25f,
                          0x1.8p-24f, 0x1.4p-23f, 0x1.ffcp-15f, 0x1.ffep-15f, 3.4028235e38f, 0x1.fffep127f, 0x1.ff7p127f})
        xs.push_back(f);
    return xs;
}

template <class S>
std::uint16_t bits_of(S s) { return s.bits; }

void check_isa(const std::string& name, const normexp::kernel_table& table, const std::vector<float>& xs) {
    const int failures_before = check::failures();
    const normexp::convert_kernels& c = table.cvt;
    // Widen all 65536 patterns at once, then every short length and offset.
    std::vector<float16> h(65536 + 64);
    std::vector<bfloat16> b(65536 + 64);
    for (std::uint32_t i = 0; i < 65536 + 64; ++i) {
        h[i].bits = static_cast<std::uint16_t>(i * 40503u);
        b[i].bits = static_cast<std::uint16_t>(i * 40503u);
    }
    std::vector<float> y(65536 + 64);
    auto widen_check = [&](std::size_t off, std::size_t n) {
        std::fill(y.begin(), y.end(), -7.0f);
        c.f16_to_f32(h.data() + off, y.data(), n);
        for (std::size_t i = 0; i < n; ++i)
            CHECK(d::f32_bits(y[i]) == d::f32_bits(d::to_f32(h[off + i])), "%s f16->f32 [%zu] %04x", name.c_str(), i, h[off + i].bits);
        CHECK(y[n] == -7.0f, "%s f16->f32 wrote past n = %zu", name.c_str(), n);
        std::fill(y.begin(), y.end(), -7.0f);
        c.bf16_to_f32(b.data() + off, y.data(), n);
        for (std::size_t i = 0; i < n; ++i)
            CHECK(d::f32_bits(y[i]) == d::f32_bits(d::to_f32(b[off + i])), "%s bf16->f32 [%zu]", name.c_str(), i);
        CHECK(y[n] == -7.0f, "%s bf16->f32 wrote past n = %zu", name.c_str(), n);
    };
    widen_check(0, 65536);
    for (std::size_t off = 0; off < 4; ++off)
        for (std::size_t n = 0; n <= 40; ++n) widen_check(off, n);

    std::vector<float16> ho(xs.size() + 1);
    std::vector<bfloat16> bo(xs.size() + 1);
    auto narrow_check = [&](std::size_t off, std::size_t n) {
        for (auto& v : ho) v.bits = 0x5555;
        for (auto& v : bo) v.bits = 0x5555;
        c.f32_to_f16(xs.data() + off, ho.data(), n);
        c.f32_to_bf16(xs.data() + off, bo.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            CHECK(ho[i].bits == d::to_f16(xs[off + i]).bits, "%s f32->f16 %a (%08x): %04x, spec %04x", name.c_str(),
                  double(xs[off + i]), d::f32_bits(xs[off + i]), ho[i].bits, d::to_f16(xs[off + i]).bits);
            CHECK(bo[i].bits == d::to_bf16(xs[off + i]).bits, "%s f32->bf16 %a (%08x): %04x, spec %04x", name.c_str(),
                  double(xs[off + i]), d::f32_bits(xs[off + i]), bo[i].bits, d::to_bf16(xs[off + i]).bits);
        }
        CHECK(ho[n].bits == 0x5555 && bo[n].bits == 0x5555, "%s narrowing wrote past n = %zu", name.c_str(), n);
    };
    narrow_check(0, xs.size() - 4);
    for (std::size_t off = 0; off < 4; ++off)
        for (std::size_t n = 0; n <= 40; ++n) narrow_check(off + 1000 * n, n);
    if (check::failures() == failures_before)
        std::printf("%s: 16-bit conversions identical to the specification\n", name.c_str());
}

}  // namespace

// double -> 16 bits (to_f16, to_bf16: float32 rounded to odd, then nearest even) against the nearest-even
// neighbour of the double itself: random doubles over both ranges (overflow and subnormals included) and the
// hard cases, the exact midpoints of two 16-bit neighbours and the doubles just beside them (2^-40 relative),
// where a plain double -> float -> 16-bit chain rounds twice; the test counts how often that chain is wrong
// (negative control: it must be wrong somewhere, or these cases do not test the single rounding).
template <class S>
void check_from_double(std::uint16_t top, double (*value)(std::uint16_t), S (*conv)(double), S (*naive)(float),
                       const char* name) {
    std::mt19937_64 rng(11);
    std::vector<double> ds;
    std::uniform_real_distribution<double> e(-30.0, 17.0), e_bf(-140.0, 130.0);
    const bool f16 = top == 0x7c00;
    for (int i = 0; i < 200000; ++i) {
        const double d = std::ldexp(1.0 + std::uniform_real_distribution<double>(0.0, 1.0)(rng), int(f16 ? e(rng) : e_bf(rng)));
        ds.push_back(i % 2 ? -d : d);
    }
    for (std::uint16_t c = 0; c < top; c = static_cast<std::uint16_t>(c + (f16 ? 1 : 3))) {
        const double mid = (value(c) + value(static_cast<std::uint16_t>(c + 1))) / 2;  // exact in double
        for (double d : {mid, mid * (1 + 0x1p-40), mid * (1 - 0x1p-40), -mid * (1 + 0x1p-40)}) ds.push_back(d);
    }
    int bad = 0, naive_wrong = 0;
    for (double d : ds) {
        const std::uint16_t want = nearest(d, 0x8000, top, value);
        const std::uint16_t got = conv(d).bits;
        if (got != want && bad++ < 5) std::fprintf(stderr, "%s(%a) = 0x%04x, want 0x%04x\n", name, d, got, want);
        naive_wrong += naive(static_cast<float>(d)).bits != want;
    }
    CHECK(bad == 0, "%s: %d of %zu doubles not rounded to nearest even", name, bad, ds.size());
    CHECK(naive_wrong > 0, "%s: the double-rounding chain was never wrong (the hard cases test nothing)", name);
    const std::uint16_t qnan = conv(std::numeric_limits<double>::quiet_NaN()).bits;
    CHECK((qnan & 0x7fffu) > top, "%s(NaN) = 0x%04x is not a NaN", name, qnan);
    std::printf("%s: %zu doubles correctly rounded (the double-rounding chain: %d wrong)\n", name, ds.size(), naive_wrong);
}

// Every set's scale_* kernels against the specification (the cast, to_f16 / to_bf16 of the double product).
// The doubles: random magnitudes over both 16-bit ranges and float32's, the 16-bit ties (exact in double)
// and their neighbours 2^-40 apart, values around float32's overflow and underflow, infinities and NaN; each
// comes as x = value / c for the float64 kernels (c a power of two, so x * c is the value) and, rounded to
// float32, for the float32 kernels. Bits compared for every tail length 0..40 at offsets 0..3, with canaries.
void check_scale(const std::string& name, const normexp::convert_kernels& c) {
    const int failures_before = check::failures();
    std::mt19937_64 rng(5);
    std::vector<double> vals;
    std::uniform_real_distribution<double> u(1.0, 2.0);
    std::uniform_int_distribution<int> e(-160, 140);
    for (int i = 0; i < 100000; ++i) vals.push_back((i % 2 ? -1 : 1) * std::ldexp(u(rng), e(rng)));
    for (std::uint16_t cd = 0; cd < 0x7c00; cd = static_cast<std::uint16_t>(cd + 3)) {
        const double mid = (f16_value(cd) + f16_value(static_cast<std::uint16_t>(cd + 1))) / 2;
        for (double v : {mid, mid * (1 + 0x1p-40), mid * (1 - 0x1p-40), -mid * (1 + 0x1p-40)}) vals.push_back(v);
    }
    for (std::uint16_t cd = 0; cd < 0x7f80; cd = static_cast<std::uint16_t>(cd + 5)) {
        const double mid = (bf16_value(cd) + bf16_value(static_cast<std::uint16_t>(cd + 1))) / 2;
        for (double v : {mid, mid * (1 + 0x1p-40), mid * (1 - 0x1p-40), -mid * (1 + 0x1p-40)}) vals.push_back(v);
    }
    for (double v : {0.0, -0.0, 0x1p-149, 0x1p-150, 0x1.8p-150, 0x1p-160, 3.4028235677973366e38, 3.4028235677973366e38 * (1 + 0x1p-30),
                     0x1.fffffefffffffp127, 0x1p128, 1e300, std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()})
        vals.push_back(v), vals.push_back(-v);
    const std::size_t n = vals.size();
    const double scales[] = {1.0, 0x1p-3, 0x1p5};
    std::vector<double> x64(n + 4);
    std::vector<float> x32(n + 4), y32(n + 5);
    std::vector<float16> yh(n + 5);
    std::vector<bfloat16> yb(n + 5);
    auto run = [&](auto kind, double cc, std::size_t off, std::size_t len) {
        constexpr bool wide = decltype(kind)::value;  // float64 x
        std::fill(y32.begin(), y32.end(), -7.0f);
        for (auto& v : yh) v.bits = 0x5555;
        for (auto& v : yb) v.bits = 0x5555;
        if constexpr (wide) {
            c.scale_f64_to_f32(x64.data() + off, cc, y32.data(), len);
            c.scale_f64_to_f16(x64.data() + off, cc, yh.data(), len);
            c.scale_f64_to_bf16(x64.data() + off, cc, yb.data(), len);
        } else {
            c.scale_f32_to_f32(x32.data() + off, cc, y32.data(), len);
            c.scale_f32_to_f16(x32.data() + off, cc, yh.data(), len);
            c.scale_f32_to_bf16(x32.data() + off, cc, yb.data(), len);
        }
        int shown = 0;
        for (std::size_t i = 0; i < len; ++i) {
            const double p = (wide ? x64[off + i] : double(x32[off + i])) * cc;
            const bool ok = d::f32_bits(y32[i]) == d::f32_bits(static_cast<float>(p)) && yh[i].bits == d::to_f16(p).bits &&
                            yb[i].bits == d::to_bf16(p).bits;
            if (!ok && shown++ < 3)
                CHECK(false, "%s scale_%s(%a * %a): f32 %08x f16 %04x bf16 %04x, spec %08x %04x %04x", name.c_str(),
                      wide ? "f64" : "f32", wide ? x64[off + i] : double(x32[off + i]), cc, d::f32_bits(y32[i]),
                      yh[i].bits, yb[i].bits, d::f32_bits(static_cast<float>(p)), d::to_f16(p).bits, d::to_bf16(p).bits);
        }
        CHECK(y32[len] == -7.0f && yh[len].bits == 0x5555 && yb[len].bits == 0x5555, "%s scale wrote past n = %zu",
              name.c_str(), len);
    };
    for (const double cc : scales) {
        for (std::size_t i = 0; i < n; ++i) {
            x64[i] = vals[i] / cc;
            x32[i] = static_cast<float>(vals[i] / cc);
        }
        run(std::true_type{}, cc, 0, n);
        run(std::false_type{}, cc, 0, n);
        for (std::size_t off = 0; off < 4; ++off)
            for (std::size_t len = 0; len <= 40; ++len) {
                run(std::true_type{}, cc, off, len);
                run(std::false_type{}, cc, off, len);
            }
    }
    if (check::failures() == failures_before)
        std::printf("%s: scale kernels identical to the specification (%zu values x %zu scales)\n", name.c_str(), n,
                    std::size(scales));
}

// f32_to_bf16 of every float32 bit pattern against to_bf16, 2^20 at a time.
void check_all_f32_to_bf16(const std::string& name, const normexp::convert_kernels& c) {
    constexpr std::size_t kChunk = std::size_t(1) << 20;
    std::vector<std::uint32_t> u(kChunk);
    std::vector<float> x(kChunk);
    std::vector<bfloat16> y(kChunk);
    std::size_t bad = 0;
    for (std::uint64_t base = 0; base < (std::uint64_t(1) << 32); base += kChunk) {
        for (std::size_t i = 0; i < kChunk; ++i) u[i] = static_cast<std::uint32_t>(base + i);
        std::memcpy(x.data(), u.data(), kChunk * sizeof(float));
        c.f32_to_bf16(x.data(), y.data(), kChunk);
        for (std::size_t i = 0; i < kChunk; ++i) {
            const std::uint16_t want = d::to_bf16(x[i]).bits;
            if (y[i].bits != want && bad++ < 5)
                std::fprintf(stderr, "%s f32->bf16 0x%08x: 0x%04x, spec 0x%04x\n", name.c_str(), u[i], y[i].bits, want);
        }
    }
    CHECK(bad == 0, "%s: %zu of the 2^32 float32 patterns rounded to other bfloat16 bits", name.c_str(), bad);
    if (bad == 0) std::printf("%s: all 2^32 float32 -> bfloat16 identical to the specification\n", name.c_str());
}

int main() {
    const std::vector<float> xs = narrowing_inputs();
    check_spec(xs);
    check_from_double<normexp::float16>(0x7c00, f16_value, d::to_f16, d::to_f16, "to_f16");
    check_from_double<normexp::bfloat16>(0x7f80, bf16_value, d::to_bf16, d::to_bf16, "to_bf16");
    for (const auto& name : d::available_isas()) {
        check_isa(name, d::kernels_for(name), xs);
        check_scale(name, d::kernels_for(name).cvt);
        // The set without its optional extensions too (avx512 without AVX512_BF16's vcvtneps2bf16 stores).
        const normexp::kernel_table& plain = d::kernels_without_extensions(name);
        if (&plain != &d::kernels_for(name)) check_isa(name + " (no extensions)", plain, xs);
    }
    // AVX512_BF16's vcvtneps2bf16 flushes subnormal inputs and its stores blend in the exact rounding there
    // (kernels/avx512bf16/traits.hpp): every one of the 2^32 float32 patterns through that table.
    for (const auto& e : d::isa_extensions())
        if (e == "avx512_bf16") check_all_f32_to_bf16("avx512 (avx512_bf16)", d::kernels_for("avx512").cvt);
    if (check::failures()) std::fprintf(stderr, "%d failures\n", check::failures());
    return check::failures() ? 1 : 0;
}
