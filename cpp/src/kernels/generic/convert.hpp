// The 16-bit conversion kernels (kernel_table.hpp, convert_kernels) over the float32 lane traits F32 of
// generic/lanes.hpp: whole vectors through load_as / store_as, then one tail. Textual include like the
// other generic headers (no #include, no include guard; inside the ISA's anonymous namespace).

template <class F, class S>
void k_widen(const S* x, float* y, std::size_t n) {
    constexpr std::size_t N = F::N;
    std::size_t i = 0;
    for (; i + N <= n; i += N) F::store(y + i, F::template load_as<S>(x + i));
    if (i < n) F::store_tail(y + i, F::tail_mask(n - i), F::template load_as_tail<S>(x + i, n - i));
}

template <class F, class S>
void k_narrow(const float* x, S* y, std::size_t n) {
    constexpr std::size_t N = F::N;
    std::size_t i = 0;
    for (; i + N <= n; i += N) F::template store_as<S>(y + i, F::load(x + i));
    if (i < n) F::template store_as_tail<S>(y + i, n - i, F::load_tail(x + i, F::tail_mask(n - i)));
}

// y = x * c rounded once to S (kernel_table.hpp, convert_kernels::scale_*): F::N products in double per step
// (float32 x widened exactly), rounded to float32 to nearest for a float32 y, else to odd (narrow_odd), so
// that the 16-bit store rounds the double once. The tail through a zeroed buffer of F::N entries.
template <class F, class X, class S>
void k_scale_narrow(const X* x, double c, S* y, std::size_t n) {
    using D = typename F::D;
    constexpr std::size_t N = F::N;
    const typename D::V cv = D::set1(c);
    auto one = [&](const X* p) {
        typename D::V lo, hi;
        if constexpr (std::is_same_v<X, float>) {
            const typename F::V v = F::load(p);
            lo = F::widen_lo(v);
            hi = F::widen_hi(v);
        } else {
            lo = D::load(p);
            hi = D::load(p + D::N);
        }
        lo = D::mul(lo, cv);
        hi = D::mul(hi, cv);
        if constexpr (std::is_same_v<S, float>) return F::narrow(lo, hi);
        else return F::narrow_odd(lo, hi);
    };
    std::size_t i = 0;
    for (; i + N <= n; i += N) F::template store_as<S>(y + i, one(x + i));
    if (i < n) {
        X buf[N] = {};
        for (std::size_t j = i; j < n; ++j) buf[j - i] = x[j];
        F::template store_as_tail<S>(y + i, n - i, one(buf));
    }
}

template <class F>
void add_convert(convert_kernels& c) {
    c.f16_to_f32 = k_widen<F, float16>;
    c.f32_to_f16 = k_narrow<F, float16>;
    c.bf16_to_f32 = k_widen<F, bfloat16>;
    c.f32_to_bf16 = k_narrow<F, bfloat16>;
    c.scale_f32_to_f32 = k_scale_narrow<F, float, float>;
    c.scale_f32_to_f16 = k_scale_narrow<F, float, float16>;
    c.scale_f32_to_bf16 = k_scale_narrow<F, float, bfloat16>;
    c.scale_f64_to_f32 = k_scale_narrow<F, double, float>;
    c.scale_f64_to_f16 = k_scale_narrow<F, double, float16>;
    c.scale_f64_to_bf16 = k_scale_narrow<F, double, bfloat16>;
}
