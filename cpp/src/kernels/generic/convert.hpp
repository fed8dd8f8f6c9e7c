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

template <class F>
void add_convert(convert_kernels& c) {
    c.f16_to_f32 = k_widen<F, float16>;
    c.f32_to_f16 = k_narrow<F, float16>;
    c.bf16_to_f32 = k_widen<F, bfloat16>;
    c.f32_to_bf16 = k_narrow<F, bfloat16>;
}
