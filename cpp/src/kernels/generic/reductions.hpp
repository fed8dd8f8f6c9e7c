// The reduction kernels (kernel_table.hpp: exp, row_* and col_*), written once over the element traits
// F32/F64 of lanes.hpp. Textual include INSIDE an ISA's namespace after lanes.hpp (see there): no
// #include, no include guard. Instantiated by <isa>/reductions.cpp through add_reductions<F>().
//
// Summation contract (kernel_table.hpp): float32 terms are added in working precision in blocks (8
// vectors pairwise along rows: 3 roundings per block; 4 rows along columns) and flushed into double,
// so the error does not grow with the length; float64 terms go one by one into Neumaier-compensated
// double lanes (acc_neumaier: error ~2u |sum| independent of the length), along rows and along columns.
// Column passes that read from memory walk rows outer (each row's w contiguous entries stream once), with
// the per-column parameters of a panel of kColPanel columns in stack arrays that stay in L1; col_exp_sum,
// whose block is in cache, walks strips of one or two column vectors down the rows with the running sums in
// registers (col_sums_strips); col_exp_store, which writes what it reads, stays rows outer
// (col_sums_rows_outer).

// Every kernel with a temperature is instantiated twice: Scaled = false for beta == 1 exactly (t = x - m,
// no product and no TwoProduct error term), Scaled = true otherwise; the k_* entry points pick one.
// Every kernel whose result depends on the accuracy mode takes Fast (kernel_table.hpp): false for
// accuracy::high (the exact argument arg, entries equal to the maximum counted), true for accuracy::fast
// (fast_arg, no counting: count is 0 and rest the whole sum; log_softmax in working precision).
// add_reductions<F, Fast> fills a table of either mode from the same templates.
template <class T>
NX_INLINE bool unit_beta(scale2<T> b) {
    return b.lo == 0 && b.hi == 1;
}

// Element-wise passes (map_range, log_softmax_range) and row maxima over more than kPeelBytes start with a masked
// head up to the line alignment (F::align_head), so that their whole vectors never straddle two cache lines:
// such passes are bound by loads and stores (AVX-512, Zen 4, one thread, float32 at numpy's 16-byte offset:
// one row of 32000 softmax 11.5 -> 10.2 us, 512 rows of 4096 664 against 682-702 us). Shorter ones ride in the
// several-rows pipeline beside an exp pass that bounds it, where the head's masked operations cost more than
// the straddling (4096 rows of 128: 1.02-1.07x the time with the head).
constexpr std::size_t kPeelBytes = 4096;
template <class F, class S>
NX_INLINE std::size_t peel_head(const S* p, std::size_t n) {
    return n * sizeof(S) > kPeelBytes ? F::align_head(p, n) : 0;
}

// Storage S of x and y: T itself (reduction_kernels) or, for float32 lanes, float16 / bfloat16
// (storage_kernels, kernel_table.hpp), widened on load and rounded once on store by lanes::load_as /
// store_as. Tails take the lane mask (S = T: the masked load and store as ever) and the lane count (16-bit
// storage). Kernels with a storage parameter S default it to T, the instantiations of reduction_kernels.
template <class F, class S>
NX_INLINE typename F::V load_s_tail(const S* p, typename F::M mk, std::size_t n) {
    if constexpr (std::is_same_v<S, typename F::T>) return F::load_tail(p, mk);
    else return F::template load_as_tail<S>(p, n);
}
template <class F, class S>
NX_INLINE void store_s_tail(S* p, typename F::M mk, std::size_t n, typename F::V v) {
    if constexpr (std::is_same_v<S, typename F::T>) F::store_tail(p, mk, v);
    else F::template store_as_tail<S>(p, n, v);
}
// The exp argument of a kernel with storage S: the mode's, except that 16-bit storage always takes the fast
// one, which is exact to its precision (kernel_table.hpp, storage_kernels), also where the maximum is
// counted. With 16-bit storage, Fast marks the kernels of softmax alone (its outputs and its uncounted sum,
// row_exp_total): their results are relative (y = exp(t) / sum), so they take the 16-bit exp
// (exp_core_half, 2^-17); the counting sums (Fast = false) feed log(sum) of logsumexp and log_softmax, whose
// results cancel towards 0 (m + log(sum) ~ 0 needs log(sum) to float32's absolute accuracy), and keep the
// float32 exp.
template <class F, bool Scaled, bool Fast, class S>
using storage_arg = std::conditional_t<std::is_same_v<S, typename F::T>, mode_arg<F, Scaled, Fast>,
                                       fast_arg<F, Scaled, Fast ? exp_kind::half : exp_kind::lifted>>;
// The argument of a counting sum (accuracy::high's rest, which feeds log1p): storage_arg's, its exp lifted by
// 2^kLift (exp_constants.hpp), the sum scaled back by F::kUnlift in double where it is flushed (row_exp_sum_impl,
// col_sums_strips).
template <class F, bool Scaled, class S>
using count_arg = std::conditional_t<std::is_same_v<S, typename F::T>, arg<F, Scaled, true>,
                                     fast_arg<F, Scaled, exp_kind::lifted>>;
// The argument of a float32 counting sum whose exps are taken against 0 (kernel_table.hpp: unshifted; constructed
// with m = 0): x itself, exact, lifted as count_arg's; the sum is scaled back by exp_neg(m) = exp(-m).
template <class F>
using unshifted_count_arg = fast_arg<F, false, exp_kind::lifted>;

template <class F>
NX_FLATTEN void k_exp(const typename F::T* x, typename F::T* y, std::size_t n) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr T lo = sizeof(T) == 4 ? T(kMinArgF) : T(kMinArgD);
    constexpr T hi = sizeof(T) == 4 ? T(kMaxArgF) : T(kMaxArgD);
    auto one = [&](V v) { return F::template exp_core<true>(F::min(F::set1(hi), F::max(F::set1(lo), v)), F::zero()); };
    std::size_t i = 0;
    for (; i + F::N <= n; i += F::N) F::store(y + i, one(F::load(x + i)));
    if (i < n) {
        const auto mk = F::tail_mask(n - i);
        F::store_tail(y + i, mk, one(F::load_tail(x + i, mk)));
    }
}

// The running maximum of a row, in the steps of k_row_max (block4, then one, then tail): four accumulators
// and a NaN flag. The several-rows kernels drive the same steps at the same offsets, so the same maximum
// (k_row_max's: up to the zero, where +0 and -0 tie). Nan = false leaves the flag out (half the operations
// of the pass: AVX-512 on Zen 4, a 4096x128 float32 batch's maxima took 0.65x the time): then a row with a
// NaN gets NaN or some number, and the caller must find the NaN another way (rows_pipeline: from its sum).
template <class F, class S, bool Nan = true>
struct max_acc {
    using V = typename F::V;
    using T = typename F::T;
    static constexpr std::size_t N = F::N;
    V m0 = F::set1(-port::kInf), m1 = m0, m2 = m0, m3 = m0;
    typename F::B nan = F::mnone();
    NX_INLINE void block4(const S* p) {
        const V a = F::template load_as<S>(p), b = F::template load_as<S>(p + N);
        const V c = F::template load_as<S>(p + 2 * N), d = F::template load_as<S>(p + 3 * N);
        m0 = F::max(m0, a);
        m1 = F::max(m1, b);
        m2 = F::max(m2, c);
        m3 = F::max(m3, d);
        if constexpr (Nan) nan = F::mor(nan, F::mor(F::unord(a, b), F::unord(c, d)));
    }
    // Entries [i, n) of the row at x, i a multiple of 4 N: the rest of k_row_max's loops from i.
    NX_INLINE void from(const S* x, std::size_t i, std::size_t n) {
        for (; i + 4 * N <= n; i += 4 * N) block4(x + i);
        for (; i + N <= n; i += N) {
            const V a = F::template load_as<S>(x + i);
            m0 = F::max(m0, a);
            if constexpr (Nan) nan = F::mor(nan, F::unord(a, a));
        }
        if (i < n) part(x + i, n - i);
    }
    // Entries [0, k) of p, k < N, as one masked vector.
    NX_INLINE void part(const S* p, std::size_t k) {
        const auto mk = F::tail_mask(k);
        const V a = F::blend(F::set1(-port::kInf), load_s_tail<F>(p, mk, k), F::mask_v(mk));
        m0 = F::max(m0, a);
        if constexpr (Nan) nan = F::mor(nan, F::unord(a, a));
    }
    // The four accumulators in one vector (its lanes' maximum is the row's, but for the NaN flag).
    NX_INLINE V folded() const { return F::max(F::max(m0, m1), F::max(m2, m3)); }
    NX_INLINE T result() const {
        if (Nan && F::any(nan)) return T(port::kNaN);
        return F::hmax(folded());
    }
};

// The maximum of another row (x, n entries) carried by a pass over this one (its side hook, generic/lanes.hpp):
// block(i) takes the other row's entries [i, i + kSideBlock N) while they exist, result() the rest, so the
// accumulators see k_row_max's offsets in its order and the maximum has its bits (with Nan, its NaN flag too).
template <class F, class S, bool Nan = true>
struct max_carry {
    max_acc<F, S, Nan> ma;
    const S* x;
    std::size_t n, done = 0;
    max_carry(const S* x_, std::size_t n_) : x(x_), n(n_) {}
    NX_INLINE void block(std::size_t i) {
        if (i + kSideBlock * F::N <= n) {
            ma.block4(x + i);
            ma.block4(x + i + 4 * F::N);
            done = i + kSideBlock * F::N;
        }
    }
    NX_INLINE typename F::T result() {
        ma.from(x, done, n);
        return ma.result();
    }
};

// A long row takes a masked head up to x's line alignment (peel_head), then max_acc's steps from there. Its
// steps differ from those of the several-rows kernels' stage A (at the exp pass's offsets) only in which
// accumulator sees which entry: the same maximum, except which zero where +0 and -0 tie, which no result
// depends on (x - m is +-0 at such entries and the sum is at least 2: every output is that of +0).
template <class F, class S = typename F::T>
NX_FLATTEN typename F::T k_row_max(const S* x, std::size_t n) {
    max_acc<F, S> a;
    const std::size_t h = peel_head<F>(x, n);
    if (h) a.part(x, h);
    a.from(x + h, 0, n - h);
    return a.result();
}

// side (generic/lanes.hpp: no_side): work carried along for another row (the several-rows kernels).
// Lifted: rest times kSumLift (row_exp_sum_max, kernel_table.hpp).
// The counting sum of accuracy::high over x[0, n) with the argument a (count_arg, or unshifted_count_arg with
// its rest scaled back by u = exp_neg(m): kernel_table.hpp, unshifted): {rest, #(x == m)}.
template <class F, class S, bool Lifted, class A, class Side>
NX_INLINE exp_sum counted_sum(const A& a, const S* x, std::size_t n, typename F::T m, double u, Side&& side) {
    using V = typename F::V;
    const V mv = F::set1(m);
    typename F::C cnt = F::count_zero();
    double total_count = 0;
    // Counts are flushed with the sums: int32 lanes would overflow past 2^31 elements per lane. (A side
    // goes with rows of one chunk: the several-rows kernels take rows of at most kSuperChunk entries.)
    constexpr std::size_t kChunk = std::size_t(1) << 24;
    double rest = 0;
    for (std::size_t base = 0; base < n; base += kChunk) {
        const std::size_t len = n - base < kChunk ? n - base : kChunk;
        const S* xb = x + base;
        auto full = [&](std::size_t i) {
            const V v = F::template load_as<S>(xb + i);
            const typename F::B e = F::eq(v, mv);
            cnt = F::count_add(cnt, e);
            return a.exp_zero_if(e, v);
        };
        auto tail = [&](std::size_t i, typename F::M mk) {
            const V v = load_s_tail<F>(xb + i, mk, len - i);
            const typename F::B e = F::mand(F::eq(v, mv), F::mask_v(mk));
            cnt = F::count_add(cnt, e);
            return F::zero_unless(F::mask_v(mk), a.exp_zero_if(e, v));
        };
        // The terms are lifted (count_arg): scaled back, or to kSumLift's scale, then unshifted.
        rest += blocked_sum<F>(len, full, tail, side) * (Lifted ? kSumLift * F::kUnlift : F::kUnlift) * u;
        total_count += F::count_total(cnt);
        cnt = F::count_zero();
    }
    return {rest, total_count};
}

// side (generic/lanes.hpp: no_side): work carried along for another row (the several-rows kernels).
// Lifted: rest times kSumLift (row_exp_sum_max, kernel_table.hpp).
template <class F, bool Scaled, bool Fast, class S = typename F::T, class Side = no_side, bool Lifted = false>
NX_FLATTEN exp_sum row_exp_sum_impl(const S* x, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                    Side&& side = Side{}) {
    if constexpr (Fast) {  // the whole sum, entries at the maximum included (exp(0) = 1 exactly)
        const storage_arg<F, Scaled, Fast, S> a(m, beta);
        auto full = [&](std::size_t i) { return a.exp_of(F::template load_as<S>(x + i)); };
        auto tail = [&](std::size_t i, typename F::M mk) {
            return F::zero_unless(F::mask_v(mk), a.exp_of(load_s_tail<F>(x + i, mk, n - i)));
        };
        const double total = blocked_sum<F>(n, full, tail, side);
        return {Lifted ? total * kSumLift : total, 0.0};
    } else {
        if constexpr (!Scaled && std::is_same_v<S, float> && std::is_same_v<typename F::T, float>)
            if (unshifted_sum(m, beta, n))
                return counted_sum<F, S, Lifted>(unshifted_count_arg<F>(0, beta), x, n, m, exp_neg(m), side);
        return counted_sum<F, S, Lifted>(count_arg<F, Scaled, S>(m, beta), x, n, m, 1.0, side);
    }
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN exp_sum k_row_exp_sum(const S* x, std::size_t n, typename F::T m, scale2<typename F::T> beta) {
    return unit_beta(beta) ? row_exp_sum_impl<F, false, Fast, S>(x, n, m, beta)
                           : row_exp_sum_impl<F, true, Fast, S>(x, n, m, beta);
}

// row_exp_sum of one chunk of a row, and row_max of the next (xn, nn entries: at most kSuperChunk) read
// during the exp pass, four vectors at a time at k_row_max's offsets with its NaN flag: *mn is row_max(xn, nn)
// bit for bit, and the sum is row_exp_sum's times kSumLift (the side does not touch it). The driver's online statistics
// (reduce.cpp: segment_stats) walk a row chunk by chunk; a chunk's maximum read on its own was a pass over L2
// that the exp pass, bound by the FP pipes, has room for.
// Passes that read a long row from memory (this one's next chunk, read by the side hook; the streaming pass
// below) have an exp's length per vector, so the core's window holds few steps and so few loads in flight:
// on an Intel Xeon core (AVX-512) they waited on their loads. Each step prefetches the row
// kStreamPrefetchBytes ahead (any distance of 1-4 KiB did as well). One thread, 16M entries, builds
// alternated (the host's memory bandwidth moves between runs): the streaming pass alone took a softmax
// 15.2-17.1 -> 8.7-10.4 ms in bfloat16, 12.4-13.0 -> 8.2-10.3 in float16, 21.5-22.2 -> 18.6-20.2 in
// float32; then this pass's: float32 logsumexp 11.5-11.6 -> 6.0-7.7 ms, log_softmax 21.7 -> 16.3-17.2,
// softmax 18.9-20.6 -> 11.9-15.2. A prefetch past the end of a row is harmless (it never faults); its
// address is formed as an integer (prefetch_ahead).
constexpr std::size_t kStreamPrefetchBytes = 2048;
// The cache lines of [p, p + bytes) prefetched kStreamPrefetchBytes ahead.
template <class S>
NX_INLINE void prefetch_ahead(const S* p, std::size_t bytes) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p) + kStreamPrefetchBytes;
    for (std::size_t b = 0; b < bytes; b += 64) NX_PREFETCH(reinterpret_cast<const char*>(a + b));
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN exp_sum k_row_exp_sum_max(const S* x, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                     const S* xn, std::size_t nn, typename F::T* mn) {
    max_carry<F, S> next(xn, nn);
    auto side = make_side(
        [&](std::size_t i) {
            prefetch_ahead(xn + i, kSideBlock * F::N * sizeof(S));
            next.block(i);
        },
        [](std::size_t) {});
    using Side = decltype(side)&;
    const exp_sum e = unit_beta(beta) ? row_exp_sum_impl<F, false, Fast, S, Side, true>(x, n, m, beta, side)
                                      : row_exp_sum_impl<F, true, Fast, S, Side, true>(x, n, m, beta, side);
    *mn = next.result();
    return e;
}

// The whole vectors of a pass stored in order at y, y + N, ... (put(i, v): v is y[i, i + N)), where a vector is a
// line (P::kLineAlign) and the traits have a funnel (AVX-512): at y's offset from a line every plain store would
// straddle two lines, and split stores stall the core once the pass writes lines that are not in L1; put stores
// instead each line that ends inside v, joined from v and the vector before by one permute (the first line's
// part with a masked store), and finish(i_end) the last vector's part past the last boundary. The values are
// the plain stores' (y's whole vectors only; the caller stores the tail). Lines: the caller's choice, for the
// batches of long rows (rows_long, rows_softmax_chunked); rows in L1 pay the permute for nothing. An Intel Xeon
// core (AVX-512), one thread, float32 rows at numpy's 16-byte offset: fast softmax of 512 x 4096 831 -> 674 us
// (aligned rows: 651), 128 x 16384 876-915 -> 715-723, 16 x 65536 465-469 -> 387-388; the default mode ~4%;
// a single in-cache row of 32000 entries and 4096 x 128 (the pipeline) took 1.03x with it (misaligned loads
// cost nothing there: only the stores).
template <class F, class = void>
struct has_funnel : std::false_type {};
template <class F>
struct has_funnel<F, std::void_t<decltype(static_cast<void>(F::funnel(F::zero(), F::funnel_index(1), F::zero())))>>
    : std::bool_constant<F::kLineAlign == F::N * sizeof(typename F::T)> {};

template <class F, bool = has_funnel<F>::value>
struct line_stores {  // plain stores
    typename F::T* y;
    explicit line_stores(typename F::T* y_) : y(y_) {}
    NX_INLINE void put(std::size_t i, typename F::V v) { F::store(y + i, v); }
    NX_INLINE void finish(std::size_t) {}
};
template <class F>
struct line_stores<F, true> {
    using V = typename F::V;
    typename F::T* y;
    std::size_t s;  // y's lanes past its line
    typename F::I idx;
    V prev = F::zero();
    explicit line_stores(typename F::T* y_)
        : y(y_), s(reinterpret_cast<std::uintptr_t>(y_) % F::kLineAlign / sizeof(typename F::T)),
          idx(F::funnel_index(s ? s : 1)) {}
    NX_INLINE void put(std::size_t i, V v) {
        if (s == 0) {
            F::store(y + i, v);
            return;
        }
        if (i == 0)
            F::store_tail(y, F::tail_mask(F::N - s), v);  // up to the first boundary
        else
            F::store(y + i - s, F::funnel(prev, idx, v));
        prev = v;
    }
    NX_INLINE void finish(std::size_t i_end) {
        if (s != 0 && i_end != 0) F::store_tail(y + i_end - s, F::tail_mask(s), F::funnel(prev, idx, prev));
    }
};

// The argument of row_exp_store: the mode's, or with Unshifted (m = 0 at unit temperature, accuracy::high) x
// itself, exact without an error term (kernel_table.hpp: softmax_shift); both give the same bits for m = 0.
template <class F, bool Scaled, bool Fast, bool Unshifted>
using store_arg = std::conditional_t<Unshifted, fast_arg<F, false, exp_kind::exact>, mode_arg<F, Scaled, Fast>>;

template <class F, bool Scaled, bool Fast, class Side = no_side, bool Lines = false, bool Unshifted = false>
NX_FLATTEN double row_exp_store_impl(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                                     scale2<typename F::T> beta, Side&& side = Side{}) {
    using V = typename F::V;
    static_assert(!Unshifted || (!Scaled && !Fast), "the unshifted argument is accuracy::high's at unit temperature");
    const store_arg<F, Scaled, Fast, Unshifted> a(m, beta);
    line_stores<F, Lines && has_funnel<F>::value> out(y);
    auto full = [&](std::size_t i) {
        const V e = a.exp_of(F::load(x + i));
        out.put(i, e);
        return e;
    };
    auto tail = [&](std::size_t i, typename F::M mk) {
        const V e = F::zero_unless(F::mask_v(mk), a.exp_of(F::load_tail(x + i, mk)));
        F::store_tail(y + i, mk, e);
        return e;
    };
    const double sum = blocked_sum<F>(n, full, tail, side);
    out.finish(n / F::N * F::N);
    return sum;
}

template <class F, bool Fast>
NX_FLATTEN double k_row_exp_store(const typename F::T* x, typename F::T* y, std::size_t n, typename F::T m,
                       scale2<typename F::T> beta) {
    if (!unit_beta(beta)) return row_exp_store_impl<F, true, Fast>(x, y, n, m, beta);
    if constexpr (!Fast)
        if (m == 0) return row_exp_store_impl<F, false, false, no_side, false, true>(x, y, n, m, beta);
    return row_exp_store_impl<F, false, Fast>(x, y, n, m, beta);
}

// y[j] = op(x[j]) for j in [0, len) (x may be y): with Peel (a whole row's pass) a masked head up to y's
// line alignment (peel_head), then whole vectors, one masked tail. Element by element: any split gives the
// same bits.
// y[0, k) = op(x[0, k)) as one masked vector, k < N: an element-wise pass's head or tail.
template <class F, class S, class Op>
NX_INLINE void map_part(const S* x, S* y, std::size_t k, Op op) {
    const auto mk = F::tail_mask(k);
    store_s_tail<F>(y, mk, k, op(load_s_tail<F>(x, mk, k)));
}
template <class F, bool Peel, class S, class Op>
NX_INLINE void map_range(const S* x, S* y, std::size_t len, Op op) {
    std::size_t j = Peel ? peel_head<F>(y, len) : 0;
    if (j) map_part<F>(x, y, j, op);
    for (; j + F::N <= len; j += F::N) F::template store_as<S>(y + j, op(F::template load_as<S>(x + j)));
    if (j < len) map_part<F>(x + j, y + j, len - j, op);
}

template <class F>
NX_FLATTEN void k_row_scale(typename F::T* y, std::size_t n, typename F::T c) {
    const auto cv = F::set1(c);
    map_range<F, true>(y, y, n, [&](typename F::V v) { return F::mul(v, cv); });
}

template <class F, bool Scaled, bool Fast, class S = typename F::T>
NX_FLATTEN void row_exp_scale_impl(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                   typename F::T c) {
    const storage_arg<F, Scaled, Fast, S> a(m, beta);
    const auto cv = F::set1(c);
    map_range<F, true>(x, y, n, [&](typename F::V v) { return F::mul(a.exp_of(v), cv); });
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_row_exp_scale(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                typename F::T c) {
    unit_beta(beta) ? row_exp_scale_impl<F, false, Fast, S>(x, y, n, m, beta, c)
                    : row_exp_scale_impl<F, true, Fast, S>(x, y, n, m, beta, c);
}

// y = op(x) on [0, n) for outputs far larger than the caches (reduce.cpp: kStreamBytes): the whole vectors from
// y's first boundary where a vector of S is aligned (kStreamAlignAs: 64 bytes for float32 on AVX-512, a vector's
// 32 bytes of float16 / bfloat16) go out with streaming stores (no read-for-ownership of y's lines), each step
// prefetching x (prefetch_ahead); the head before that boundary and the tail go through `ordinary`, the cached
// pass over a range, whose values are op's (only the store instruction differs). y is aligned to its element
// (the drivers' contract), so the head is a whole number of elements. Without a cache-bypassing vector store
// worth using (F::kStream false: NEON, whose STNP is only a hint that most cores ignore), the whole range is
// `ordinary`'s: same results.
template <class F, class S, class Op, class Ordinary>
NX_INLINE void stream_range(const S* x, S* y, std::size_t n, Op op, Ordinary ordinary) {
    if constexpr (!F::kStream) {
        (void)op;
        ordinary(x, y, n);
    } else {
        constexpr std::size_t A = F::template kStreamAlignAs<S>;
        std::size_t head = (A - reinterpret_cast<std::uintptr_t>(y) % A) % A / sizeof(S);
        if (head > n) head = n;
        ordinary(x, y, head);
        std::size_t i = head;
        for (; i + F::N <= n; i += F::N) {
            prefetch_ahead(x + i, F::N * sizeof(S));
            F::template stream_as<S>(y + i, op(F::template load_as<S>(x + i)));
        }
        F::stream_fence();  // order the streaming stores before anything that follows
        ordinary(x + i, y + i, n - i);
    }
}

template <class F, bool Scaled, bool Fast, class S = typename F::T>
void row_exp_scale_stream_impl(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                               typename F::T c) {
    const storage_arg<F, Scaled, Fast, S> a(m, beta);
    const auto cv = F::set1(c);
    stream_range<F>(
        x, y, n, [&](typename F::V v) { return F::mul(a.exp_of(v), cv); },
        [&](const S* xr, S* yr, std::size_t len) { row_exp_scale_impl<F, Scaled, Fast, S>(xr, yr, len, m, beta, c); });
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_row_exp_scale_stream(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                       typename F::T c) {
    unit_beta(beta) ? row_exp_scale_stream_impl<F, false, Fast, S>(x, y, n, m, beta, c)
                    : row_exp_scale_stream_impl<F, true, Fast, S>(x, y, n, m, beta, c);
}

// log_softmax per vector (the scalar specification's arithmetic, scalar.cpp: log_softmax_one):
//  * float32 with a temperature: beta (x - m) - c in double (x - m of two floats is exact in double), rounded
//    once to float. (Unit temperature: fl(fl(x - m) - fl(c)) in float32, kernel_table.hpp: log_sum_out.)
//  * float64: beta (x - m) as a double-double (TwoSum of x - m, TwoProduct by FMA with {beta.hi, beta.lo})
//    and then (hi + lo) - c with the TwoSum error of hi - c folded back in: one final rounding.
template <class F, bool = (sizeof(typename F::T) == 4)>
struct log_softmax_op {  // float32, taken with a temperature only (a unit beta would multiply by 1 exactly)
    using V = typename F::V;
    using D = typename F::D;
    double m, beta;
    log_softmax_op(float m_, scale2<float> b) : m(m_), beta(double(b.hi) + double(b.lo)) {}
    V finish(typename D::V lo, typename D::V hi, typename D::V clo, typename D::V chi) const {
        lo = D::mul(lo, D::set1(beta));
        hi = D::mul(hi, D::set1(beta));
        return F::narrow(D::sub(lo, clo), D::sub(hi, chi));
    }
    V row(V x, double c) const {
        const typename D::V md = D::set1(m), cd = D::set1(c);
        return finish(D::sub(F::widen_lo(x), md), D::sub(F::widen_hi(x), md), cd, cd);
    }
    // row() for the D::N entries at x, memory to memory (traits with kConvertHalves): the same operations
    // on each lane, without the shuffles that split a float32 vector into its halves and join them again
    // (AVX-512 on Zen 4: the pass runs at 1.33x the rate of row()).
    void row_half(const float* x, float* y, typename D::V md, typename D::V cd) const {
        const typename D::V d = D::mul(D::sub(F::load_widen(x), md), D::set1(beta));
        F::store_narrow(y, D::sub(d, cd));
    }
    V col(V x, V mv, const double* c) const {
        return finish(D::sub(F::widen_lo(x), F::widen_lo(mv)), D::sub(F::widen_hi(x), F::widen_hi(mv)), D::load(c),
                      D::load(c + D::N));
    }
};
template <class F>
struct log_softmax_op<F, false> {  // float64
    using V = typename F::V;
    V bh, bl;
    bool scaled;
    double m;
    log_softmax_op(double m_, scale2<double> b) : bh(F::set1(b.hi)), bl(F::set1(b.lo)), scaled(!unit_beta(b)), m(m_) {}
    V two(V x, V mv, V c) const {
        const V d = F::sub(x, mv);
        const V bb = F::sub(d, x);
        V e = F::add(F::sub(x, F::sub(d, bb)), F::sub(F::sub(F::zero(), mv), bb));  // TwoSum: x - m = d + e
        V hi = d;
        if (scaled) {
            hi = F::mul(d, bh);
            e = F::fmadd(e, bh, F::fmadd(d, bl, F::fmsub(d, bh, hi)));
        }
        // (hi + e) - c with the TwoSum error of hi - c folded back in.
        const V s = F::sub(hi, c);
        const V b2 = F::sub(s, hi);
        const V err = F::add(F::sub(hi, F::sub(s, b2)), F::sub(F::sub(F::zero(), c), b2));
        // The correction is NaN only when hi or c is infinite (x = -inf); the result is s then.
        V corr = F::add(e, err);
        corr = F::zero_unless(F::eq(corr, corr), corr);
        return F::add(s, corr);
    }
    V row(V x, double c) const { return two(x, F::set1(m), F::set1(c)); }
    V col(V x, V mv, const double* c) const { return two(x, mv, F::load(c)); }
};

// log_softmax of accuracy::fast, both element types: fl(t - c) in working precision with t = fast_arg's
// argument and c = log(sum) rounded to T (as the peers compute it). Error: |t| 2^-24 (float64 2^-53) per
// rounding of t, |c| 2^-24 from rounding c, and the final rounding: ~2 ULP + (|t| + |c|) 2^-24 absolute
// against y = t - c, i.e. relative ~2 ULP wherever y is not cancelling towards 0.
template <class F>
NX_INLINE typename F::V load_doubles_as_t(const double* c) {  // F::N doubles, each rounded to T
    if constexpr (sizeof(typename F::T) == 4) return F::narrow(F::D::load(c), F::D::load(c + F::D::N));
    else return F::load(c);
}

// Whether log_softmax's output is fl(t - fl(c)) in working precision, two operations per vector: the fast mode's,
// and the float32 high mode's of unit temperature (kernel_table.hpp, below log_sum_out). The rest (a temperature
// in the float32 high mode: rounded once from double; float64: double-double) costs a dozen.
template <class F, bool Scaled, bool Fast>
constexpr bool kCheapLogSoftmax = Fast || (sizeof(typename F::T) == 4 && !Scaled);

// y = beta (x - m) - c on [0, n): fl(t - fl(c)) where kCheapLogSoftmax, else log_softmax_op's one rounding
// from double (float64: double-double). Element by element, so any split of a row into ranges gives the same
// bits (the several-rows kernels write a row in blocks). Peel: a whole row's pass (map_range).
// log_softmax of one vector where kCheapLogSoftmax: fl(t - fl(c)), t = fast_arg's argument.
template <class F, bool Scaled>
struct cheap_log_softmax {
    using V = typename F::V;
    fast_arg<F, Scaled> a;
    V cv;
    cheap_log_softmax(typename F::T m, scale2<typename F::T> beta, double c)
        : a(m, beta), cv(F::set1(static_cast<typename F::T>(c))) {}
    V operator()(V v) const { return F::sub(a.t_of(v, a.nm), cv); }
};

template <class F, bool Scaled, bool Fast, class S, bool Peel = true>
NX_INLINE void log_softmax_range(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                 double c) {
    std::size_t i = 0;
    if constexpr (kCheapLogSoftmax<F, Scaled, Fast>) {
        const cheap_log_softmax<F, Scaled> one(m, beta, c);
        if ((i = Peel ? peel_head<F>(y, n) : 0)) map_part<F>(x, y, i, one);  // up to y's line alignment
        for (; i + 2 * F::N <= n; i += 2 * F::N) {
            F::template store_as<S>(y + i, one(F::template load_as<S>(x + i)));
            F::template store_as<S>(y + i + F::N, one(F::template load_as<S>(x + i + F::N)));
        }
        for (; i + F::N <= n; i += F::N) F::template store_as<S>(y + i, one(F::template load_as<S>(x + i)));
        if (i < n) map_part<F>(x + i, y + i, n - i, one);
    } else {
        static_assert(std::is_same_v<S, typename F::T>, "16-bit storage takes the fast arithmetic (kernel_table.hpp)");
        const log_softmax_op<F> op(m, beta);
        if constexpr (sizeof(typename F::T) == 4) {
            if constexpr (F::kConvertHalves) {  // by float64 halves; the last < D::N entries below
                using D = typename F::D;
                const typename D::V md = D::set1(op.m), cd = D::set1(c);
                for (; i + D::N <= n; i += D::N) op.row_half(x + i, y + i, md, cd);
            }
        }
        for (; i + F::N <= n; i += F::N) F::store(y + i, op.row(F::load(x + i), c));
        if (i < n) {
            const auto mk = F::tail_mask(n - i);
            F::store_tail(y + i, mk, op.row(F::load_tail(x + i, mk), c));
        }
    }
}

// log_softmax_range's values with streaming stores (stream_range), for outputs far larger than the caches.
template <class F, bool Scaled, bool Fast, class S>
void log_softmax_stream_range(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta, double c) {
    auto ordinary = [&](const S* xr, S* yr, std::size_t len) { log_softmax_range<F, Scaled, Fast, S>(xr, yr, len, m, beta, c); };
    if constexpr (kCheapLogSoftmax<F, Scaled, Fast>) {
        stream_range<F>(x, y, n, cheap_log_softmax<F, Scaled>(m, beta, c), ordinary);
    } else {
        const log_softmax_op<F> op(m, beta);
        stream_range<F>(x, y, n, [&](typename F::V v) { return op.row(v, c); }, ordinary);
    }
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_row_log_softmax_stream(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                         double c) {
    unit_beta(beta) ? log_softmax_stream_range<F, false, Fast, S>(x, y, n, m, beta, c)
                    : log_softmax_stream_range<F, true, Fast, S>(x, y, n, m, beta, c);
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_row_log_softmax(const S* x, S* y, std::size_t n, typename F::T m, scale2<typename F::T> beta,
                                  double c) {
    unit_beta(beta) ? log_softmax_range<F, false, Fast, S>(x, y, n, m, beta, c)
                    : log_softmax_range<F, true, Fast, S>(x, y, n, m, beta, c);
}

// ---- several short rows per call (kernel_table.hpp: rows_softmax, rows_exp_sum, rows_log_softmax) -----
// The single-row kernels inlined into one loop over the rows: the same operations, so the same bits.

// A software pipeline over the rows: while stage B runs the exp pass of row r, the same loop reads row r + 1
// for its maximum (stage A: max_acc, at k_row_max's offsets) and writes the outputs of row r - 1 (stage C),
// kSideBlock vectors at a time (blocked_sum's side). A short row is a chain of dependent steps (maximum, its
// horizontal reduction, exp, sum, reciprocal or log, outputs) whose latency exceeds its throughput cost: one
// row after another, the core waited on the chain (128 float32 entries took 1.2x the time on AVX-512 and left
// the FMA pipes half idle). Each row gets the single-row kernels' operations in their order: the same bits.
//
// Stage A reduces without the NaN flag (max_acc<F, S, false>): a row with a NaN gets NaN, which skips it, or
// a number, and then stage B's sum is NaN (a NaN entry's term is NaN whatever m is; every other term is in
// [0, 1] when m is the maximum), and pass marks the row skipped with m[r] = NaN. A row skipped for +inf,
// -inf or the limit may hide a NaN in its m[r]: the driver redoes every skipped row with the single-row
// kernels (reduce.cpp: short_rows), whose maximum has the flag.
//
// pass(r, side) is stage B of a row that is not skipped and returns what stage C needs; out(p, c, i, len, peel)
// writes outputs [i, i + len) of row p (Out = false: no stage C, rows_exp_sum), peel: std::true_type for a
// whole row's pass of rows_long (map_range's Peel), std::false_type in the pipeline. With a stage C the pipeline
// touches four rows at once (x of rows r + 1 and r, y of rows r and r - 1): for rows longer than
// kPipelineRowBytes they no longer fit in half of a 32 KiB L1 and the callers take rows_long instead (8 KiB
// float32 rows took 1.3x the time pipelined, 2 KiB rows 0.85x; AVX-512); rows_exp_sum, with no stage C,
// pipelines rows of any length.
constexpr std::size_t kPipelineRowBytes = 4096;

// Depth: stage C runs Depth rows behind stage B (1: row r - 1). rows_softmax and the fast rows_log_softmax
// take 2 for rows of at most kDeepRowBytes: the reciprocal (or the log) of row r's sum then has a whole row's
// step to arrive before the first output of row r needs it (AVX-512, one thread, 128 float32 entries per row:
// fast softmax 165 -> 153 us for 4096 rows, 64 entries 217 -> 202, 256 entries 131 -> 128; at 512 entries,
// six rows of L1, 111 -> 117; fast log_softmax, 512 Ki entries: 128 per row 191 -> 178 us, 256 149 -> 146,
// 512 129 -> 138; AVX2 248 -> 237 at 128, bfloat16 at 64 545 -> 467).
constexpr std::size_t kDeepRowBytes = 1024;

// seal(P&) finishes what pass gave (no_seal: nothing to finish): rows_log_softmax's log of the sum. At depth 1
// a row is sealed at the end of its own step; deeper, a row at the end of the next step, when its sum has long
// been ready: a seal whose inputs arrive last holds up the instructions behind it until its chain is done
// (sealing each row at the start of the next step took 1.15x the time).
struct no_seal {
    template <class P>
    void operator()(P&) const {}
};

template <class F, bool Out, std::size_t Depth, class S, class Pass, class Emit, class Seal = no_seal>
NX_INLINE void rows_pipeline(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, typename F::T m_limit,
                             typename F::T* m, Pass&& pass, Emit&& out, Seal&& seal = Seal{}) {
    constexpr std::size_t N = F::N;
    using P = decltype(pass(std::size_t(0), std::declval<no_side&>()));
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    if (rows == 0) return;
    m[0] = k_row_max<F, S>(x, n);
    // Rows awaiting stage C, oldest first: wait[0], cq[0] are row r - D's, wait[D - 1], cq[D - 1] row r - 1's.
    constexpr std::size_t D = Depth;
    static_assert(D >= 1, "stage C runs behind stage B");
    // The queue entry sealed at the end of step r: row r itself at depth 1, row r - 1 deeper (see no_seal).
    constexpr std::size_t kSealPos = D >= 2 ? D - 2 : 0;
    bool wait[D] = {};
    P cq[D] = {};
    for (std::size_t r = 0; r < rows; ++r) {
        const bool next = r + 1 < rows;
        const S* const xa = next ? xr(r + 1) : x;
        max_acc<F, S, false> ma;
        const bool c_on = Out && wait[0];
        const P c = cq[0];
        auto side = make_side(
            [&](std::size_t i) {
                if (next) ma.block4(xa + i), ma.block4(xa + i + 4 * N);
                if (c_on) out(r - D, c, i, kSideBlock * N, std::false_type{});
            },
            [&](std::size_t i) {
                if (next) ma.from(xa, i, n);
                if (c_on) out(r - D, c, i, n - i, std::false_type{});
            });
        for (std::size_t k = 0; k + 1 < D; ++k) wait[k] = wait[k + 1], cq[k] = cq[k + 1];
        bool live = !rows_skip(m[r], m_limit);
        P cr{};
        if (live) {
            cr = pass(r, side);
            live = !rows_skip(m[r], m_limit);  // pass found a NaN
        } else {
            side.rest(0);
        }
        if (next) m[r + 1] = ma.result();
        wait[D - 1] = live;
        cq[D - 1] = cr;
        if (wait[kSealPos]) seal(cq[kSealPos]);
    }
    if constexpr (Out) {
        for (std::size_t k = 0; k < D; ++k)
            if (rows + k >= D && wait[k]) {
                if (k > kSealPos) seal(cq[k]);
                out(rows + k - D, cq[k], 0, n, std::false_type{});
            }
    }
}

// Rows longer than kPipelineRowBytes, one after another: stage B of row r, then its stage C, with stage A of
// row r + 1 riding in row r's stage B (the side hook, as in rows_pipeline; the exp pass, bound by the FP pipes,
// has room for A's loads and maxima). Against A after C (2-4 MiB of float32 rows in L3, one thread, Zen 4):
// rows_softmax AVX-512 0.85-0.93x the time (high accuracy) and 0.82-0.85x (fast), AVX2 0.90-0.96x and
// 0.83-0.87x; the fast rows_log_softmax AVX-512 0.80-0.86x, AVX2 0.91-0.95x (rows of 6-64 KiB). (A sweep of
// row r's stage C with row r + 1's stage A, tried first, did as well at 8 KiB and gained nothing at 64 KiB.)
// Stage A without the NaN flag, as in rows_pipeline.
template <class F, class S, class Pass, class Emit, class Seal = no_seal>
NX_INLINE void rows_long(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n, typename F::T m_limit,
                         typename F::T* m, Pass&& pass, Emit&& out, Seal&& seal = Seal{}) {
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    if (rows == 0) return;
    m[0] = k_row_max<F, S>(x, n);
    for (std::size_t r = 0; r < rows; ++r) {
        const bool next = r + 1 < rows;
        max_carry<F, S, false> carry(next ? xr(r + 1) : x, next ? n : 0);
        auto side = make_side([&](std::size_t i) { carry.block(i); }, [](std::size_t) {});
        bool live = !rows_skip(m[r], m_limit);
        decltype(pass(r, side)) c{};
        if (live) {
            c = pass(r, side);
            live = !rows_skip(m[r], m_limit);  // pass found a NaN
            if (live) seal(c);
        }
        if (live) out(r, c, 0, n, std::true_type{});  // a long row's whole pass: peeled (map_range)
        if (next) m[r + 1] = carry.result();
    }
}

// rows_softmax's chunked float32 rows (kernel_table.hpp: rows_softmax, kSoftmaxChunkedMin, softmax_chunk,
// chunk_rescale): each chunk's exp pass against the running maximum reads the next chunk's maximum as it goes
// (max_carry through the side hook; after a row's last chunk, the next row's first chunk), so a row is read
// twice (exp and scale) instead of three times, with exp once per entry where the driver's super-chunk path
// takes it twice. One thread, Zen 4, AVX-512, end to end from Python: 128000 entries 71 -> 44 us (high
// accuracy), 43 -> 31 us (fast).
template <class F, bool Fast>
NX_INLINE void rows_softmax_chunked(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy,
                                    std::size_t rows, std::size_t n, scale2<typename F::T> beta, typename F::T* m) {
    using T = typename F::T;
    using V = typename F::V;
    constexpr T kNegInf = -port::kInf, kMax = std::numeric_limits<T>::max();
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    auto yr = [&](std::size_t r) { return y + static_cast<std::ptrdiff_t>(r) * sy; };
    const std::size_t C = softmax_chunk<T>(n), nc = (n + C - 1) / C;
    T mc[kSoftmaxMaxChunks];
    T first = k_row_max<F, T>(x, C < n ? C : n);  // M_0 of the current row (the carried ones have no NaN flag)
    for (std::size_t r = 0; r < rows; ++r) {
        const bool next = r + 1 < rows;
        const T* const xc = xr(r);
        T* const yc = yr(r);
        T mr = first;  // m_c
        double s = 0;
        bool live = !(mr > kMax || mr != mr);  // NaN or +inf: skipped (-inf goes on)
        for (std::size_t c = 0; c < nc; ++c) {
            const bool last = c + 1 == nc;
            if (!live && !last) continue;
            const std::size_t i0 = c * C, len = n - i0 < C ? n - i0 : C;
            // The maximum read along: the next chunk's, or after the last one the next row's first chunk's.
            const T* const xa = last ? (next ? xr(r + 1) : x) : xc + i0 + len;
            const std::size_t na = last ? (next ? (C < n ? C : n) : 0) : (n - i0 - len < C ? n - i0 - len : C);
            max_carry<F, T, false> carry(xa, na);
            if (live && mr != kNegInf) {
                auto side = make_side([&](std::size_t i) { carry.block(i); }, [](std::size_t) {});
                s += row_exp_store_impl<F, false, Fast, decltype(side)&, true>(xc + i0, yc + i0, len, mr, beta, side);
            } else if (live && k_row_max<F, T>(xc + i0, len) != kNegInf) {
                live = false, mr = T(port::kNaN);  // a NaN that the carried maximum did not show
            }
            mc[c] = mr;
            const T cm = carry.result();
            if (last) {
                first = cm;
                break;
            }
            if (!live) continue;
            if (cm > mr) {
                if (cm > kMax) live = false;  // +inf
                else s *= chunk_rescale(mr, cm);
                mr = cm;
            } else if (cm != cm) {
                live = false, mr = cm;
            }
        }
        if (live && (s != s || mr == kNegInf)) live = false, mr = s != s ? T(port::kNaN) : mr;
        m[r] = mr;
        if (!live) continue;
        const double inv = 1.0 / s;
        for (std::size_t c = 0; c < nc; ++c) {
            const std::size_t i0 = c * C, len = n - i0 < C ? n - i0 : C;
            if (mc[c] == kNegInf) {
                map_range<F, true>(yc + i0, yc + i0, len, [](V) { return F::zero(); });
                continue;
            }
            const V f = F::set1(chunk_factor(mc[c], mr, inv));
            map_range<F, true>(yc + i0, yc + i0, len, [&](V v) { return F::mul(v, f); });
        }
    }
}

// ---- groups of short rows (float32 rows_softmax, rows_log_softmax, rows_exp_sum) -----------------------------
// F::N rows at a time: (A) each row's maximum (k_row_max's steps without the NaN flag, as the pipeline's stage
// A), the rows' accumulator vectors transposed into one vector of maxima (fold_rows), from which every row's -m
// and clamp (clamp_below_v) come in vector arithmetic; (B) each row's exp pass (pass), which keeps its double
// accumulator; the group's sums are the accumulators' totals by the transposed pairwise fold (fold_rows:
// pairwise_sum's additions in its order), and seal (told which rows ran) turns them into what stage C needs,
// for all the rows at once where it can (a vector division); (C) each row's outputs (out). Phase A of the next
// group and phase C of the group before ride in each row's exp pass (the side hook: row k carries row k of
// both), as the stages of rows_pipeline do (with phase C after the group's phase B, rows of 128 float32 entries
// took 1.1x the time).
// The same operations on the same values as the single-row kernels, so the same bits (up to the zero where +0
// and -0 tie as the maximum, which no output depends on, and a NaN row's maximum, which only has to skip it).
// What a short row spends outside its exp pass (a horizontal maximum, the clamp in double, a horizontal sum in
// double, a division, and the chain that joins them) is paid once per group. The groups' entry points are out
// of line (NX_NOINLINE): inlined into the kernels, they grew the functions that hold the pipelines, and GCC's
// code for those took 1.04-1.07x the time.
//
// Each entry point takes the row length as a template argument K where it is a power-of-two multiple of F::N
// up to the groups' longest row (fixed_length), and K = 0 (known at run time only) otherwise. With the length
// a constant, the loops over a row's vectors (maximum, exp pass, outputs, side work) unroll and their bounds
// and branches fold away, most of a short row's cost beside its exp: float32 softmax of 2048 rows of 32
// entries, one thread, AVX-512, 40.1 -> 33.0 us in the high mode and 34.4 -> 27.2 us in the fast one. (A
// constant length in rows_pipeline, 512 rows of 128 entries, gained nothing in the high mode and took 1.25x
// the time in the fast one, whose kernel grew.)
//
// Which rows take the groups (one thread, float32, Intel Xeon with a 48 KiB L1; rows_pipeline's time = 1):
// - the high mode's three kernels, rows of up to kGroupRowBytes. With constant lengths, AVX-512 / AVX2:
//   softmax 0.82x / 0.87x at 32 entries, 0.81x / 0.95x at 128 (4096 rows, from L3: 0.84x); log_softmax
//   0.87x / 0.89x at 32, 0.85x / 0.90x at 128; logsumexp 0.90x / 0.86x at 32, 0.77x / 0.85x at 128. Rows of
//   a length known at run time gain less (AVX-512, 96 entries 0.77-0.88x, 120 entries 0.84-0.95x). Without
//   the constant lengths, rows of 128 took 1.01-1.07x the time on Zen 4, whose 32 KiB L1 the four groups'
//   rows that one step touches fill.
// - the fast mode, with 16 lanes only (kGroupFastLanes: on AVX2 the pipeline's stages hide more of its cheap
//   exp; softmax 1.02-1.07x the time): logsumexp rows of up to kGroupRowBytes (0.81x at 128 entries),
//   softmax and log_softmax, whose outputs the pipeline overlaps better on longer rows, of up to
//   kGroupFastOutBytes (softmax 2048 rows of 32 entries 0.79x, 128 entries 0.98x in L2 but 1.10x from L3, 96
//   entries 1.09x; log_softmax 0.66x at 16, 0.75x at 32, 0.86x at 64, 0.93x at 128 but 1.12x from L3).
constexpr std::size_t kGroupRowBytes = 512, kGroupFastOutBytes = 256, kGroupFastLanes = 16;

template <class F, std::size_t K = F::N, class Call>
NX_INLINE void fixed_length(std::size_t n, Call&& call) {
    if constexpr (K * sizeof(typename F::T) > kGroupRowBytes) call(std::integral_constant<std::size_t, 0>{});
    else if (n == K) call(std::integral_constant<std::size_t, K>{});
    else fixed_length<F, 2 * K>(n, call);
}

// Prefetches (NX_PREFETCH: into L1) a row's n entries from p on, a cache line's worth at a time.
template <class T>
NX_INLINE void prefetch_row(const T* p, std::size_t n) {
    const char* c = reinterpret_cast<const char*>(p);
    for (std::size_t b = 0; b < n * sizeof(T); b += 64) NX_PREFETCH(c + b);
}

// Software prefetch: phase A reads row r + G during row r's exp pass, and where the rows come from L3 (four
// arrays of 4096 rows of 128 float32 entries taken in turn, 16 MiB) those demand loads stalled the pass. So
// each row's pass first prefetches row r + 2G, and the log_softmax groups also the outputs of row r, which
// the next group's pass writes (phase C). One thread, AVX-512, four arrays in turn:
// 4096 x 128 log_softmax 0.88-0.92x the time (0.93-0.96x with the inputs alone), softmax 0.90-0.96x,
// logsumexp 0.96x (fast 0.91x); 16384 x 32 log_softmax 0.90x, softmax 1.0x; AVX2 log_softmax 0.94x; rows
// in L2 (512 x 128, 2048 x 32) and one hot 4096 x 128 array (the bench's in-cache case) unchanged. Prefetching softmax's outputs too (its pass stores them) took
// 1.06x the time at 16384 x 32. (rows_pipeline gains nothing from it: x and y prefetched 8 rows ahead left
// the fast 4096 x 128 unchanged and took 1.13x the time at 2048 x 256 from L3, 1.32x at 256 x 1024 in L2.)
template <class F, class Pass, class Seal, class Emit>
NX_INLINE void rows_groups(const typename F::T* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n,
                           typename F::T m_limit, typename F::T* m, Pass&& pass, Seal&& seal, Emit&& out) {
    using T = typename F::T;
    using V = typename F::V;
    using D = typename F::D;
    constexpr std::size_t G = F::N, H = D::N;  // rows per group; per double vector of sums
    static_assert(G == 2 * H, "float32 lanes: a group's sums are two double vectors");
    auto max = [](V p, V q) { return F::max(p, q); };
    auto add = [](typename D::V p, typename D::V q) { return D::add(p, q); };
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    alignas(64) T mg[G], nm[G], xl[G];
    alignas(64) double tot[G];
    bool wait[G] = {};  // row r0 - G + k awaits phase C
    bool ran[G];        // pass ran on row r0 + k (a row of the group that is not skipped)
    V mx[G];            // row r0 + k's maximum accumulators
    for (std::size_t k = 0; k < G; ++k) {
        max_acc<F, T, false> ma;
        if (k < rows) ma.from(xr(k), 0, n);
        mx[k] = ma.folded();
    }
    for (std::size_t r0 = 0; r0 < rows; r0 += G) {
        const std::size_t g = rows - r0 < G ? rows - r0 : G;
        const V mv = fold_rows<F>(mx, max);
        F::store(mg, mv);
        F::store(nm, F::sub(F::set1(T(-0.0)), mv));  // -m exactly (-0 - m: also for m = +-0)
        F::store(xl, F::clamp_below_v(mv));
        typename D::V acc[G];
        for (std::size_t k = 0; k < G; ++k) {
            acc[k] = D::zero();
            const bool next = r0 + G + k < rows, c_on = wait[k];
            const T* xn = next ? xr(r0 + G + k) : x;
            max_acc<F, T, false> ma;
            auto side = make_side(
                [&](std::size_t i) {
                    if (next) ma.block4(xn + i), ma.block4(xn + i + 4 * F::N);
                    if (c_on) out(r0 - G + k, k, i, kSideBlock * F::N);
                },
                [&](std::size_t i) {
                    if (next) ma.from(xn, i, n);
                    if (c_on) out(r0 - G + k, k, i, n - i);
                });
            if (k < g) m[r0 + k] = mg[k];
            if (r0 + 2 * G + k < rows) prefetch_row(xr(r0 + 2 * G + k), n);
            ran[k] = k < g && !rows_skip(mg[k], m_limit);
            if (ran[k])
                acc[k] = pass(r0 + k, k, F::set1(nm[k]), F::set1(xl[k]), side);
            else
                side.rest(0);
            mx[k] = ma.folded();
        }
        D::store(tot, fold_rows<D>(acc, add));
        D::store(tot + H, fold_rows<D>(acc + H, add));
        seal(r0, tot, ran);
        for (std::size_t k = 0; k < G; ++k) {
            wait[k] = ran[k] && tot[k] == tot[k];
            if (k < g && tot[k] != tot[k]) m[r0 + k] = T(port::kNaN);  // a NaN in the row (y may be written)
        }
    }
    const std::size_t last = rows == 0 ? 0 : (rows - 1) / G * G;  // the last group's first row
    for (std::size_t k = 0; k < G; ++k)
        if (wait[k]) out(last + k, k, 0, n);
}

// rows_softmax's groups: B row_exp_store's exp pass, C the scale by T(1 / sum).
template <class F, bool Scaled, bool Fast, std::size_t K>
NX_NOINLINE NX_FLATTEN void rows_softmax_groups(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y,
                                                std::ptrdiff_t sy, std::size_t rows, std::size_t n_,
                                                scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m) {
    const std::size_t n = K ? K : n_;  // fixed_length
    using T = typename F::T;
    using V = typename F::V;
    using D = typename F::D;
    constexpr std::size_t H = D::N;
    // Each row's -m and clamp are passed to exp_of; a row whose softmax_shift is 0 takes the unshifted argument.
    const mode_arg<F, Scaled, Fast> a(0, beta);
    const store_arg<F, false, false, true> u(0, beta);
    alignas(64) T inv[F::N];
    auto yr = [&](std::size_t r) { return y + static_cast<std::ptrdiff_t>(r) * sy; };
    auto pass = [&](std::size_t r, std::size_t, V negm, V xlow, auto& side) {
        const T* xk = x + static_cast<std::ptrdiff_t>(r) * sx;
        T* yk = yr(r);
        auto run = [&](const auto& arg, V nm, V xl) {
            auto full = [&](std::size_t i) {
                const V e = arg.exp_of(F::load(xk + i), nm, xl);
                F::store(yk + i, e);
                return e;
            };
            auto tail = [&](std::size_t i, typename F::M mk) {
                const V e = F::zero_unless(F::mask_v(mk), arg.exp_of(F::load_tail(xk + i, mk), nm, xl));
                F::store_tail(yk + i, mk, e);
                return e;
            };
            return blocked_acc<F>(n, full, tail, side).s;
        };
        if constexpr (!Scaled && !Fast)
            if (softmax_shift(m[r], beta, Fast) == 0) return run(u, u.nm, xlow);
        return run(a, negm, xlow);
    };
    auto seal = [&](std::size_t, const double* tot, const bool*) {
        const typename D::V one = D::set1(1.0);
        F::store(inv, F::narrow(D::div(one, D::load(tot)), D::div(one, D::load(tot + H))));
    };
    auto out = [&](std::size_t r, std::size_t k, std::size_t i, std::size_t len) {
        const V c = F::set1(inv[k]);
        map_range<F, false>(yr(r) + i, yr(r) + i, len, [&](V v) { return F::mul(v, c); });
    };
    rows_groups<F>(x, sx, rows, n, m_limit, m, pass, seal, out);
}

// The exp-sum pass of a group's row (row_exp_sum_impl's at unit temperature, with the row's -m and clamp
// given): returns the double accumulator of the terms and sets count. The high mode counts the entries equal
// to the maximum m and sums the others lifted (count_arg; kScale scales the total back); the fast mode sums
// every term (count 0).
template <class F, bool Fast>
struct group_sum_pass {
    using T = typename F::T;
    using V = typename F::V;
    static constexpr double kScale = Fast ? 1.0 : F::kUnlift;
    const std::conditional_t<Fast, storage_arg<F, false, true, T>, count_arg<F, false, T>> a;
    explicit group_sum_pass(scale2<T> beta) : a(0, beta) {}
    template <class Side>
    NX_INLINE typename F::D::V operator()(const T* xk, std::size_t n, T m, V negm, V xlow, Side& side,
                                          double& count) const {
        if constexpr (Fast) {
            auto full = [&](std::size_t i) { return a.exp_of(F::load(xk + i), negm, xlow); };
            auto tail = [&](std::size_t i, typename F::M mk) {
                return F::zero_unless(F::mask_v(mk), a.exp_of(F::load_tail(xk + i, mk), negm, xlow));
            };
            count = 0;
            return blocked_acc<F>(n, full, tail, side).s;
        } else {
            const V mv = F::set1(m);
            typename F::C cnt = F::count_zero();
            auto full = [&](std::size_t i) {
                const V v = F::load(xk + i);
                const typename F::B e = F::eq(v, mv);
                cnt = F::count_add(cnt, e);
                return a.exp_zero_if(e, v, negm, xlow);
            };
            auto tail = [&](std::size_t i, typename F::M mk) {
                const V v = F::load_tail(xk + i, mk);
                const typename F::B e = F::mand(F::eq(v, mv), F::mask_v(mk));
                cnt = F::count_add(cnt, e);
                return F::zero_unless(F::mask_v(mk), a.exp_zero_if(e, v, negm, xlow));
            };
            const auto acc = blocked_acc<F>(n, full, tail, side);
            count = F::count_total(cnt);
            return acc.s;
        }
    }
};

// rows_log_softmax's groups (unit temperature): B the counting pass (Fast: the uncounted sum), the seal
// c = log_sum_out of each row's count and rest, C log_softmax_range (Fast: the fast outputs).
template <class F, bool Fast, std::size_t K>
NX_NOINLINE NX_FLATTEN void rows_log_softmax_groups(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y,
                                                    std::ptrdiff_t sy, std::size_t rows, std::size_t n_,
                                                    scale2<typename F::T> beta, typename F::T m_limit,
                                                    typename F::T* m) {
    const std::size_t n = K ? K : n_;  // fixed_length
    using T = typename F::T;
    using V = typename F::V;
    using Pass = group_sum_pass<F, Fast>;
    const Pass sum_pass(beta);
    double cnt[F::N] = {}, c[F::N];
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    auto pass = [&](std::size_t r, std::size_t k, V negm, V xlow, auto& side) {
        prefetch_row(y + static_cast<std::ptrdiff_t>(r) * sy, n);  // written in the next group's pass
        return sum_pass(xr(r), n, m[r], negm, xlow, side, cnt[k]);
    };
    auto seal = [&](std::size_t, const double* tot, const bool* ran) {
        for (std::size_t k = 0; k < F::N; ++k)
            c[k] = ran[k] && tot[k] == tot[k] ? log_sum_out<T>(cnt[k], tot[k] * Pass::kScale) : 0.0;
    };
    auto out = [&](std::size_t r, std::size_t k, std::size_t i, std::size_t len) {
        log_softmax_range<F, false, Fast, T, false>(xr(r) + i, y + static_cast<std::ptrdiff_t>(r) * sy + i, len, m[r],
                                                     beta, c[k]);
    };
    rows_groups<F>(x, sx, rows, n, m_limit, m, pass, seal, out);
}

// rows_exp_sum's groups (unit temperature): B the sum pass, sealed into s; no C.
template <class F, bool Fast, std::size_t K>
NX_NOINLINE NX_FLATTEN void rows_exp_sum_groups(const typename F::T* x, std::ptrdiff_t sx, std::size_t rows,
                                                std::size_t n_, scale2<typename F::T> beta, typename F::T m_limit,
                                                typename F::T* m, exp_sum* s) {
    const std::size_t n = K ? K : n_;  // fixed_length
    using V = typename F::V;
    using Pass = group_sum_pass<F, Fast>;
    const Pass sum_pass(beta);
    double cnt[F::N] = {};
    auto pass = [&](std::size_t r, std::size_t k, V negm, V xlow, auto& side) {
        return sum_pass(x + static_cast<std::ptrdiff_t>(r) * sx, n, m[r], negm, xlow, side, cnt[k]);
    };
    auto seal = [&](std::size_t r0, const double* tot, const bool* ran) {
        for (std::size_t k = 0; k < F::N; ++k)
            if (ran[k] && tot[k] == tot[k]) s[r0 + k] = exp_sum{tot[k] * Pass::kScale, cnt[k]};
    };
    rows_groups<F>(x, sx, rows, n, m_limit, m, pass, seal, [](std::size_t, std::size_t, std::size_t, std::size_t) {});
}

// rows_softmax: B is row_exp_store and C the scale by T(1 / sum); for 16-bit storage (S != T) a stored exp
// read back would round twice, so B is row_exp_sum (the counting one) and C row_exp_scale's exp and scale
// (storage_kernels in kernel_table.hpp).
template <class F, bool Scaled, bool Fast, class S>
NX_INLINE void rows_softmax_pipe(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                                 scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m) {
    using T = typename F::T;
    using V = typename F::V;
    constexpr bool Half = !std::is_same_v<S, T>;
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    auto yr = [&](std::size_t r) { return y + static_cast<std::ptrdiff_t>(r) * sy; };
    // lines: rows_long's (line_stores).
    auto pass_for = [&](auto lines) {
        return [&](std::size_t r, auto&& side) {
            double sum;
            if constexpr (Half) {
                const exp_sum e = row_exp_sum_impl<F, Scaled, false, S>(xr(r), n, m[r], beta, side);
                sum = e.count + e.rest;
            } else if (!Scaled && !Fast && softmax_shift(m[r], beta, Fast) == 0) {
                sum = row_exp_store_impl<F, false, false, decltype(side), decltype(lines)::value, true>(xr(r), yr(r), n,
                                                                                                      T(0), beta, side);
            } else {
                sum = row_exp_store_impl<F, Scaled, Fast, decltype(side), decltype(lines)::value>(xr(r), yr(r), n, m[r],
                                                                                                beta, side);
            }
            if (sum != sum) m[r] = T(port::kNaN);  // a NaN in the row (rows_pipeline); y may be written
            return static_cast<T>(1.0 / sum);
        };
    };
    auto pass = pass_for(std::false_type{});
    auto pass_long = pass_for(std::true_type{});
    auto out = [&](std::size_t p, T c, std::size_t i, std::size_t len, auto peel) {
        constexpr bool Peel = decltype(peel)::value;
        const V cv = F::set1(c);
        if constexpr (Half) {
            const storage_arg<F, Scaled, Fast, S> a(m[p], beta);  // as row_exp_scale_impl
            map_range<F, Peel>(xr(p) + i, yr(p) + i, len, [&](V v) { return F::mul(a.exp_of(v), cv); });
        } else {
            map_range<F, Peel>(yr(p) + i, yr(p) + i, len, [&](V v) { return F::mul(v, cv); });
        }
    };
    const std::size_t bytes = n * sizeof(S);
    if constexpr (!Half && (!Fast || F::N >= kGroupFastLanes) && std::is_same_v<T, float>) {
        if (bytes <= (Fast ? kGroupFastOutBytes : kGroupRowBytes))
            return fixed_length<F>(n, [&](auto k) {
                rows_softmax_groups<F, Scaled, Fast, k.value>(x, sx, y, sy, rows, n, beta, m_limit, m);
            });
    }
    if (bytes <= kDeepRowBytes)
        rows_pipeline<F, true, 2, S>(x, sx, rows, n, m_limit, m, pass, out);
    else if (bytes <= kPipelineRowBytes)
        rows_pipeline<F, true, 1, S>(x, sx, rows, n, m_limit, m, pass, out);
    else if constexpr (!Half && !Scaled && std::is_same_v<T, float>)
        n > kSoftmaxChunkedMin && m_limit == std::numeric_limits<T>::max()
            ? rows_softmax_chunked<F, Fast>(x, sx, y, sy, rows, n, beta, m)
            : rows_long<F>(x, sx, rows, n, m_limit, m, pass_long, out);
    else
        rows_long<F>(x, sx, rows, n, m_limit, m, pass_long, out);
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_rows_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows, std::size_t n,
                               scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m) {
    unit_beta(beta) ? rows_softmax_pipe<F, false, Fast, S>(x, sx, y, sy, rows, n, beta, m_limit, m)
                    : rows_softmax_pipe<F, true, Fast, S>(x, sx, y, sy, rows, n, beta, m_limit, m);
}

// rows_exp_sum: stages A and B of the pipeline, for rows of any length (x of two rows at once).
template <class F, bool Scaled, bool Fast, class S>
NX_INLINE void rows_exp_sum_pipe(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n,
                                 scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m, exp_sum* s) {
    for (std::size_t r = 0; r < rows; ++r) s[r] = exp_sum{0, 0};  // what skipped rows keep
    if constexpr (!Scaled && (!Fast || F::N >= kGroupFastLanes) && std::is_same_v<S, typename F::T> && F::f32) {
        if (n * sizeof(S) <= kGroupRowBytes)
            return fixed_length<F>(n, [&](auto k) {
                rows_exp_sum_groups<F, Fast, k.value>(x, sx, rows, n, beta, m_limit, m, s);
            });
    }
    auto pass = [&](std::size_t r, auto&& side) {
        s[r] = row_exp_sum_impl<F, Scaled, Fast, S>(x + static_cast<std::ptrdiff_t>(r) * sx, n, m[r], beta, side);
        if (s[r].rest != s[r].rest) m[r] = typename F::T(port::kNaN), s[r] = exp_sum{0, 0};  // a NaN in the row
        return 0;
    };
    rows_pipeline<F, false, 1, S>(x, sx, rows, n, m_limit, m, pass,
                                  [](std::size_t, int, std::size_t, std::size_t, auto) {});
}

// rows_log_softmax: B is row_exp_sum (SumFast: the fast table's, nothing counted), its seal c = log_sum_out of
// it, C log_softmax_range (OutFast: the fast output; 16-bit storage takes it with the counting sum). An output
// of a dozen vector operations per vector (kCheapLogSoftmax false: float64, or float32 with a temperature in
// the high mode) leaves no idle slots in the exp pass for stage C to fill: there the rows of a batch that fits
// in 16 KiB of L1 take stages A and B pipelined, and then each row its log and outputs, the order the driver
// had before. The two-operation outputs take the row pipeline. Against the driver's two-phase order (the two
// builds alternating, AVX-512, float32, one thread, a loaded machine) the fast mode's took 0.99-1.07x the time
// at 64 entries per row (one round 1.39x), 0.80-1.03x at 128 (one 1.26x), 0.73-0.89x at 256 and 0.64-0.87x at
// 1024; the two-phase order inside the kernel took 1.16x at 64 and 1.08x at 128. The float32 high mode's took
// 0.96-1.03x the time of the two-phase order inside the kernel (rows of 64-4096 entries).
template <class F, bool Scaled, bool SumFast, bool OutFast, class S>
NX_INLINE void rows_log_softmax_pipe(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                                     std::size_t n, scale2<typename F::T> beta, typename F::T m_limit,
                                     typename F::T* m) {
    auto xr = [&](std::size_t r) { return x + static_cast<std::ptrdiff_t>(r) * sx; };
    auto yr = [&](std::size_t r) { return y + static_cast<std::ptrdiff_t>(r) * sy; };
    if constexpr (!kCheapLogSoftmax<F, Scaled, OutFast>) {
        constexpr std::size_t kBatch = 64, kBatchBytes = std::size_t(16) << 10;
        const std::size_t fit = kBatchBytes / (n > 0 ? n * sizeof(S) : 1);
        const std::size_t batch = fit < 1 ? 1 : fit < kBatch ? fit : kBatch;
        exp_sum s[kBatch];
        for (std::size_t b = 0; b < rows; b += batch) {
            const std::size_t cnt = rows - b < batch ? rows - b : batch;
            rows_exp_sum_pipe<F, Scaled, SumFast, S>(xr(b), sx, cnt, n, beta, m_limit, m + b, s);
            for (std::size_t i = 0; i < cnt; ++i)
                if (!rows_skip(m[b + i], m_limit))
                    log_softmax_range<F, Scaled, OutFast, S>(xr(b + i), yr(b + i), n, m[b + i], beta,
                                                             log_sum_out<typename F::T>(s[i].count, s[i].rest));
        }
    } else {
        if constexpr (SumFast == OutFast && (!SumFast || F::N >= kGroupFastLanes) && !Scaled &&
                      std::is_same_v<S, typename F::T> && F::f32) {
            if (n * sizeof(S) <= (SumFast ? kGroupFastOutBytes : kGroupRowBytes))
                return fixed_length<F>(n, [&](auto k) {
                    rows_log_softmax_groups<F, SumFast, k.value>(x, sx, y, sy, rows, n, beta, m_limit, m);
                });
        }
        // What stage C needs of a row: its sum and log. The fast mode's rows keep them in slot r % 4 (rows r - 2
        // .. r are in flight: stage C, seal, stage B) and the pipeline passes the slot along: its queue copies
        // what pass returns as a whole, and that 16-byte copy of a sum just stored as two doubles missed store
        // forwarding, a stall per row (one thread, Zen 4: 4096x128 float32 182 against 190 us on AVX-512,
        // 230 against 274 on AVX2). The counting sums' rows pass the values: with the slots the high mode's
        // 4096x128 took 1.10x the time (the same instructions, otherwise allocated), and 4096x64 gained
        // nothing.
        struct row_c {
            exp_sum e;
            double c;
        };
        row_c slots[4];
        auto pass = [&](std::size_t r, auto&& side) {
            if constexpr (SumFast) {
                row_c& rc = slots[r % 4];
                rc.e = row_exp_sum_impl<F, Scaled, SumFast, S>(xr(r), n, m[r], beta, side);
                if (rc.e.rest != rc.e.rest) m[r] = typename F::T(port::kNaN);  // a NaN in the row
                return r % 4;
            } else {
                const row_c rc{row_exp_sum_impl<F, Scaled, SumFast, S>(xr(r), n, m[r], beta, side), 0.0};
                if (rc.e.rest != rc.e.rest) m[r] = typename F::T(port::kNaN);  // a NaN in the row
                return rc;
            }
        };
        auto at = [&](auto&& q) -> decltype(auto) {  // the row_c of what pass returned
            if constexpr (SumFast) return (slots[q]);
            else return (q);
        };
        auto seal = [&](auto& q) { at(q).c = log_sum_out<typename F::T>(at(q).e.count, at(q).e.rest); };
        auto out = [&](std::size_t p, const auto& q, std::size_t i, std::size_t len, auto peel) {
            log_softmax_range<F, Scaled, OutFast, S, decltype(peel)::value>(xr(p) + i, yr(p) + i, len, m[p], beta,
                                                                            at(q).c);
        };
        const std::size_t bytes = n * sizeof(S);
        if (bytes <= kDeepRowBytes)
            rows_pipeline<F, true, 2, S>(x, sx, rows, n, m_limit, m, pass, out, seal);
        else if (bytes <= kPipelineRowBytes)
            rows_pipeline<F, true, 1, S>(x, sx, rows, n, m_limit, m, pass, out, seal);
        else
            rows_long<F>(x, sx, rows, n, m_limit, m, pass, out, seal);
    }
}

template <class F, bool SumFast, bool OutFast, class S = typename F::T>
NX_FLATTEN void k_rows_log_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                                   std::size_t n, scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m) {
    unit_beta(beta) ? rows_log_softmax_pipe<F, false, SumFast, OutFast, S>(x, sx, y, sy, rows, n, beta, m_limit, m)
                    : rows_log_softmax_pipe<F, true, SumFast, OutFast, S>(x, sx, y, sy, rows, n, beta, m_limit, m);
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_rows_exp_sum(const S* x, std::ptrdiff_t sx, std::size_t rows, std::size_t n,
                               scale2<typename F::T> beta, typename F::T m_limit, typename F::T* m, exp_sum* s) {
    unit_beta(beta) ? rows_exp_sum_pipe<F, false, Fast, S>(x, sx, rows, n, beta, m_limit, m, s)
                    : rows_exp_sum_pipe<F, true, Fast, S>(x, sx, rows, n, beta, m_limit, m, s);
}

// ---- columns -----------------------------------------------------------------------------------------
// Iterate column vectors j (N lanes, masked at the tail of w): body(j, mask, full) where full is
// std::true_type for whole vectors and std::false_type for the masked tail (a compile-time choice, so
// the hot loop carries no branch per load).
// The mask argument is a col_lanes: the lane mask (it converts to F::M) and the number of lanes in use, which
// the 16-bit tails take.
template <class F>
struct col_lanes {
    typename F::M mk;
    std::size_t n;
    operator typename F::M() const { return mk; }
};

// body(j, lanes, full) for the column vectors of a row of w columns: the first h (< N; col_head) as one
// masked vector, then whole vectors from h on, then the tail.
template <class F, class Body>
void for_col_vectors(std::size_t w, Body body, std::size_t h = 0) {
    std::size_t j = 0;
    if (h) body(j, col_lanes<F>{F::tail_mask(h), h}, std::false_type{}), j = h;
    const col_lanes<F> all{F::tail_mask(F::N), F::N};
    for (; j + F::N <= w; j += F::N) body(j, all, std::true_type{});
    if (j < w) body(j, col_lanes<F>{F::tail_mask(w - j), w - j}, std::false_type{});
}

template <class F, class Full>
typename F::V load_any(const typename F::T* p, typename F::M mk, Full) {
    if constexpr (Full::value) return F::load(p); else return F::load_tail(p, mk);
}
template <class F, class Full>
void store_any(typename F::T* p, typename F::M mk, Full, typename F::V v) {
    if constexpr (Full::value) F::store(p, v); else F::store_tail(p, mk, v);
}
// x and y in a storage S (float16 / bfloat16, or T itself).
template <class F, class Full, class S>
typename F::V load_any(const S* p, const col_lanes<F>& l, Full) {
    if constexpr (Full::value) return F::template load_as<S>(p); else return load_s_tail<F>(p, l.mk, l.n);
}
template <class F, class Full, class S>
void store_any(S* p, const col_lanes<F>& l, Full, typename F::V v) {
    if constexpr (Full::value) F::template store_as<S>(p, v); else store_s_tail<F>(p, l.mk, l.n, v);
}

// Column kernels stage per-column parameters for up to this many columns in stack arrays.
constexpr std::size_t kColPanel = 1024;

// The head of a column walk over w columns whose row 0 starts at x: the columns before x's first line
// boundary (lanes::align_head: fewer than a vector), taken as one masked vector so that the whole vectors
// after it lie in one cache line each (in every row, when the row stride is a multiple of the line). Arrays
// are mostly 16 bytes past a line (malloc, numpy), where each 64-byte vector straddled two lines: axis 0 of a
// (4096, 1024) float32 softmax took 1.24x the time of the same array line-aligned (AVX-512, Intel Xeon, one
// thread). A column's arithmetic is lane-wise, so the grouping of columns into vectors changes no result.
template <class F, class S>
NX_INLINE std::size_t col_head(const S* x, std::size_t w) {
    return F::align_head(x, w);
}

// col_max's steps on a panel's running maxima mp and NaN flags nanf (col_max_impl; col_exp_sum_max drives
// the same steps on the next chunk): the flags from the maxima, rows i..i+3 or row i of column vector j
// (xi: row i's entry of the panel's column 0), and the NaN blend at the end.
template <class F>
NX_INLINE void col_max_begin(const typename F::T* mp, std::size_t pw, typename F::T* nanf) {
    for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
        const typename F::V acc = load_any<F>(mp + j, mk, full);
        F::store_mask(nanf + j, F::unord(acc, acc));
    });
}
template <class F, class Full>
NX_INLINE void col_max_step4(typename F::V v0, typename F::V v1, typename F::V v2, typename F::V v3, std::size_t j,
                             const col_lanes<F>& mk, Full full, typename F::T* mp, typename F::T* nanf) {
    using V = typename F::V;
    const V acc = F::max(load_any<F>(mp + j, mk, full), F::max(F::max(v0, v1), F::max(v2, v3)));
    store_any<F>(mp + j, mk, full, acc);
    F::store_mask(nanf + j, F::mor(F::load_mask(nanf + j), F::mor(F::unord(v0, v1), F::unord(v2, v3))));
}
template <class F, class Full>
NX_INLINE void col_max_step1(typename F::V v, std::size_t j, const col_lanes<F>& mk, Full full, typename F::T* mp,
                             typename F::T* nanf) {
    store_any<F>(mp + j, mk, full, F::max(load_any<F>(mp + j, mk, full), v));
    F::store_mask(nanf + j, F::mor(F::load_mask(nanf + j), F::unord(v, v)));
}
template <class F>
NX_INLINE void col_max_end(typename F::T* mp, std::size_t pw, const typename F::T* nanf) {
    using T = typename F::T;
    for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
        store_any<F>(mp + j, mk, full, F::blend(load_any<F>(mp + j, mk, full), F::set1(T(port::kNaN)), F::load_mask(nanf + j)));
    });
}

template <class F, bool Copy, class S = typename F::T>
NX_FLATTEN void col_max_impl(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m,
                  S* copy) {
    // Rows outer (4 at a time), so wide blocks stream from memory row by row; the running maxima and
    // NaN flags of a panel of columns stay in L1.
    using V = typename F::V;
    using T = typename F::T;
    alignas(64) T nanf[kColPanel + F::N];  // a head shifts the tail vector up to N - 1 past the panel
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        T* mp = m + j0;
        col_max_begin<F>(mp, pw, nanf);
        auto xrow = [&](std::size_t i) { return x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0); };
        const std::size_t h = col_head<F>(xrow(0), pw);
        std::size_t i = 0;
        for (; i + 4 <= rows; i += 4) {
            for_col_vectors<F>(pw, [&](std::size_t j, auto mk, auto full) {
                V v[4];
                for (std::size_t r = 0; r < 4; ++r) {
                    v[r] = load_any<F>(xrow(i + r) + j, mk, full);
                    if constexpr (Copy) store_any<F>(copy + (i + r) * w + j0 + j, mk, full, v[r]);
                }
                col_max_step4<F>(v[0], v[1], v[2], v[3], j, mk, full, mp, nanf);
            }, h);
        }
        for (; i < rows; ++i) {
            for_col_vectors<F>(pw, [&](std::size_t j, auto mk, auto full) {
                const V v = load_any<F>(xrow(i) + j, mk, full);
                if constexpr (Copy) store_any<F>(copy + i * w + j0 + j, mk, full, v);
                col_max_step1<F>(v, j, mk, full, mp, nanf);
            }, h);
        }
        col_max_end<F>(mp, pw, nanf);
    }
}

template <class F, class S = typename F::T>
NX_FLATTEN void k_col_max(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, typename F::T* m, S* copy) {
    if constexpr (!std::is_same_v<S, typename F::T>)  // storage_kernels: no copy
        col_max_impl<F, false, S>(x, rows, sx, w, m, nullptr);
    else if (copy)
        col_max_impl<F, true, S>(x, rows, sx, w, m, copy);
    else
        col_max_impl<F, false, S>(x, rows, sx, w, m, nullptr);
}

// Column sums in strips of one or two column vectors, rows inner: a strip's running sums (and counts) stay
// in registers for all the rows, and the rows are read down the strip (the block is in L2: the caller just
// read it for its maximum, or stored it). The previous walk, rows outer with the running sums in stack
// arrays, loaded and stored them for every vector of every row, and the stores bound the loop at half the
// rate of the row kernels. term(i, j, mask, full, m, -m, xlow, count) returns the row-i vector of column
// vector j to add.
// float32: each column's terms are added in float in row order and flushed into its double sum every
// kFlushRows rows and after the last (3 roundings per flush, as a pairwise block of 8).
// float64: every term goes into a per-column Neumaier pair, added to the sum after the last row.
// Counts (entries equal to the maximum) are integers, exact in T: flushed every kCountRows rows.
// Count: the terms are a counting sum's, lifted by 2^kLift (count_arg): the double sums are lifted on entry
// and scaled back on exit (F::kUnlift), exactly.
template <class F>
struct col_strip {  // one column vector's state
    typename F::V mv, negm, xlow, part, comp, cnt;
    typename F::D::V slo, shi;  // float32: the double sums of lanes [0, D::N) and [D::N, N)
};

// step(): called after each row of each strip (col_exp_sum_max's work on the next chunk); no_step does nothing.
struct no_step {
    NX_INLINE void operator()() const {}
};
// The strips of col_sums_strips over w columns with a head of h (col_head): the head's, then two vectors at a
// time, then the last one or two.
template <class F>
constexpr std::size_t col_strip_count(std::size_t w, std::size_t h) {
    const std::size_t b = w - h;
    return (h ? 1 : 0) + b / (2 * F::N) + (b % (2 * F::N) >= F::N ? 1 : 0) + (b % F::N ? 1 : 0);
}
// h: the head (col_head), a strip of its own.
template <class F, bool Count, class Term, class Step = no_step>
NX_INLINE void col_sums_strips(std::size_t rows, std::size_t w, std::size_t h, const typename F::T* m, double* sum,
                               double* count, Term term, Step step_done = Step{}) {
    using V = typename F::V;
    using D = typename F::D;
    using A = col_strip<F>;
    constexpr bool f64 = sizeof(typename F::T) == 8;
    constexpr std::size_t N = F::N, kFlushRows = 4, kCountRows = std::size_t(1) << 20;
    // The double sums in the lifted scale (Count): multiplied on entry and exit, outside the row loops.
    auto lift = [](typename D::V v) { return Count ? D::mul(v, D::set1(1 / F::kUnlift)) : v; };
    auto unlift = [](typename D::V v) { return Count ? D::mul(v, D::set1(F::kUnlift)) : v; };
    // s: the strip's N sums (a copy for a tail vector, whose lanes past w are padding).
    auto init = [&](A& a, std::size_t j, auto mk, auto full, const double* s) {
        const V v = load_any<F>(m + j, mk, full);
        a.mv = v;
        a.negm = F::sub(F::zero(), v);
        a.xlow = F::clamp_below_v(v);
        a.part = a.comp = a.cnt = F::zero();
        if constexpr (!f64) a.slo = lift(D::load(s)), a.shi = lift(D::load(s + D::N));
    };
    auto step = [&](A& a, std::size_t i, std::size_t j, auto mk, auto full) {
        V c = a.cnt;
        V e = term(i, j, mk, full, a.mv, a.negm, a.xlow, c);
        if constexpr (Count) a.cnt = c;
        if constexpr (!decltype(full)::value) e = F::zero_unless(F::mask_v(mk), e);
        if constexpr (f64) {
            acc_neumaier<D> acc;
            acc.s = a.part, acc.c = a.comp;
            acc.add(e);
            a.part = acc.s, a.comp = acc.c;
        } else {
            a.part = F::add(a.part, e);
        }
    };
    auto flush = [&](A& a) {
        if constexpr (!f64) {
            a.slo = D::add(a.slo, F::widen_lo(a.part));
            a.shi = D::add(a.shi, F::widen_hi(a.part));
            a.part = F::zero();
        }
    };
    auto flush_count = [&](A& a, std::size_t j, std::size_t nl) {
        if constexpr (Count) {
            F::add_to_doubles(count + j, a.cnt, nl);
            a.cnt = F::zero();
        }
    };
    auto finish = [&](A& a, std::size_t j, std::size_t nl, double* s) {
        if constexpr (f64) {
            if (rows > 0) F::add_to_doubles(s, unlift(F::add(a.part, a.comp)), nl);
        } else {
            D::store(s, unlift(a.slo));
            D::store(s + D::N, unlift(a.shi));
        }
        flush_count(a, j, nl);
    };
    auto rows_of = [&](auto&& each, auto&& flush_all, auto&& count_all) {
        for (std::size_t i = 0; i < rows; ++i) {
            each(i);
            step_done();
            if ((i + 1) % kFlushRows == 0 || i + 1 == rows) flush_all();
            if ((i + 1) % kCountRows == 0) count_all();
        }
    };
    const col_lanes<F> all{F::tail_mask(N), N};
    constexpr std::true_type full{};
    std::size_t j = 0;
    // The head and the last one or two vectors, one at a time; their sums through a padded copy.
    auto single = [&](std::size_t nl, auto mk, auto is_full) {
        alignas(64) double s[N] = {};
        for (std::size_t l = 0; l < nl; ++l) s[l] = sum[j + l];
        A a;
        init(a, j, mk, is_full, s);
        rows_of([&](std::size_t i) { step(a, i, j, mk, is_full); }, [&] { flush(a); }, [&] { flush_count(a, j, nl); });
        if constexpr (f64) {
            for (std::size_t l = 0; l < nl; ++l) s[l] = 0;
            finish(a, j, nl, s);
            for (std::size_t l = 0; l < nl; ++l) sum[j + l] += s[l];
        } else {
            finish(a, j, nl, s);
            for (std::size_t l = 0; l < nl; ++l) sum[j + l] = s[l];
        }
    };
    if (h) single(h, col_lanes<F>{F::tail_mask(h), h}, std::false_type{}), j = h;
    for (; j + 2 * N <= w; j += 2 * N) {
        A a, b;
        init(a, j, all, full, sum + j);
        init(b, j + N, all, full, sum + j + N);
        rows_of([&](std::size_t i) { step(a, i, j, all, full), step(b, i, j + N, all, full); },
                [&] { flush(a), flush(b); }, [&] { flush_count(a, j, N), flush_count(b, j + N, N); });
        finish(a, j, N, sum + j);
        finish(b, j + N, N, sum + j + N);
    }
    if (j + N <= w) single(N, all, full), j += N;
    if (j < w) single(w - j, col_lanes<F>{F::tail_mask(w - j), w - j}, std::false_type{});
}

// Column sums, rows outer, each column's running sum in a stack array: col_exp_store's walk. It stores
// what it reads, and down a strip (col_sums_strips) a store to row i and the load of row i + 1 are 4096
// bytes apart whenever a row is (w = 1024 float32): the loads wait on the stores (4K aliasing; measured
// 10-35% slower in L2 on AVX-512 and AVX2). The arithmetic is col_sums_strips', in the same order, so the
// same bits.
template <class F, bool Count, class Term>
NX_INLINE void col_sums_rows_outer(std::size_t rows, std::size_t w, const typename F::T* m, double* sum, double* count,
                                   Term term) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr bool f64 = sizeof(T) == 8;
    constexpr std::size_t kFlushRows = 4;
    alignas(64) T mv[kColPanel], negm[kColPanel], xlow[kColPanel], part[kColPanel];
    alignas(64) T comp[f64 ? kColPanel : 1], cnt[Count ? kColPanel : 1];
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for_col_vectors<F>(pw, [&](std::size_t j, typename F::M mk, auto full) {
            const V v = load_any<F>(m + j0 + j, mk, full);
            F::store(mv + j, v);
            F::store(negm + j, F::sub(F::zero(), v));
            F::store(xlow + j, F::clamp_below_v(v));
            F::store(part + j, F::zero());
            if constexpr (f64) F::store(comp + j, F::zero());
            if constexpr (Count) F::store(cnt + j, F::zero());
        });
        auto flush = [&](auto with_comp) {
            for_col_vectors<F>(pw, [&](std::size_t j, typename F::M, auto full) {
                const std::size_t nl = decltype(full)::value ? F::N : pw - j;
                V s = F::load(part + j);
                if constexpr (decltype(with_comp)::value) s = F::add(s, F::load(comp + j));
                F::add_to_doubles(sum + j0 + j, s, nl);
                F::store(part + j, F::zero());
                if constexpr (Count) {
                    F::add_to_doubles(count + j0 + j, F::load(cnt + j), nl);
                    F::store(cnt + j, F::zero());
                }
            });
        };
        for (std::size_t i = 0; i < rows; ++i) {
            for_col_vectors<F>(pw, [&](std::size_t j, auto mk, auto full) {
                V c = Count ? F::load(cnt + j) : F::zero();
                V e = term(i, j0 + j, mk, full, F::load(mv + j), F::load(negm + j), F::load(xlow + j), c);
                if constexpr (Count) F::store(cnt + j, c);
                if constexpr (!decltype(full)::value) e = F::zero_unless(F::mask_v(mk), e);
                if constexpr (f64) {
                    acc_neumaier<typename F::D> acc;
                    acc.s = F::load(part + j), acc.c = F::load(comp + j);
                    acc.add(e);
                    F::store(part + j, acc.s);
                    F::store(comp + j, acc.c);
                } else {
                    F::store(part + j, F::add(F::load(part + j), e));
                }
            });
            if (!f64 && ((i + 1) % kFlushRows == 0 || i + 1 == rows)) flush(std::false_type{});
        }
        if (f64 && rows > 0) flush(std::true_type{});
    }
}

// The summed term of a column entry v against its vector's maximum mv: exp(beta (v - mv)), or with Count
// 0 where v == mv, counted in c instead (col_exp_sum, col_exp_sum_max).
template <class F, bool Count, class A>
NX_INLINE typename F::V col_term(const A& a, typename F::V v, typename F::V mv, typename F::V negm,
                                 typename F::V xlow, typename F::V& c) {
    if constexpr (Count) {
        const typename F::B e = F::eq(v, mv);
        c = F::add(c, F::zero_unless(e, F::set1(1)));
        return a.exp_zero_if(e, v, negm, xlow);
    } else {
        return a.exp_of(v, negm, xlow);
    }
}

template <class F, bool Scaled, bool Fast, class S = typename F::T>
NX_FLATTEN void col_exp_sum_impl(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w,
                      const typename F::T* m, scale2<typename F::T> beta, double* rest, double* count) {
    using V = typename F::V;
    const std::conditional_t<Fast, storage_arg<F, Scaled, Fast, S>, count_arg<F, Scaled, S>> a(0, beta);
    col_sums_strips<F, !Fast>(rows, w, col_head<F>(x, w), m, rest, count,
                                 [&](std::size_t i, std::size_t j, auto mk, auto full, V mv, V negm, V xlow, V& c) {
                                     const V v = load_any<F>(x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j), mk, full);
                                     return col_term<F, !Fast>(a, v, mv, negm, xlow, c);
                                 });
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_col_exp_sum(const S* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w, const typename F::T* m,
                   scale2<typename F::T> beta, double* rest, double* count) {
    unit_beta(beta) ? col_exp_sum_impl<F, false, Fast, S>(x, rows, sx, w, m, beta, rest, count)
                    : col_exp_sum_impl<F, true, Fast, S>(x, rows, sx, w, m, beta, rest, count);
}

// col_exp_sum of a chunk in cache fused with col_max of the next chunk (kernel_table.hpp: col_exp_sum_max), so
// that the next chunk streams from memory while this one's exps run: a separate col_max pass over memory did
// no arithmetic to overlap its reads (a fifth of the online column statistics' time). col_sums_strips walks
// this chunk (the terms of col_exp_sum_impl, nothing counted: every entry's term summed); after each of its
// row steps, step_done advances col_max_impl's walk of the next chunk (units of 4 rows by one column vector,
// rows outer, spread evenly over the steps by an integer error term), whose rows left over from the groups
// of 4 and NaN blend follow the strips. Each column gets col_max_impl's operations in its order and
// col_exp_sum_impl's: the same bits. A counting sum (count not null, accuracy::high) holds a count per
// strip vector too: with 16 vector registers (F::kRegisters, AVX2) it takes the two kernels one after the
// other, since fused they ran out of registers (log_softmax 1.15x, logsumexp 1.05x the time of the two
// kernels, (4096, 1024) float32, one thread); with 32 (AVX-512, NEON) it is fused as well (AVX-512 on Zen 4,
// the same shapes: 0.97x and 0.98x the time of the two kernels).
template <class F, bool Scaled, bool Fast, bool Count>
NX_FLATTEN void col_exp_sum_max_impl(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w,
                                     const typename F::T* m, scale2<typename F::T> beta, double* rest,
                                     double* count, const typename F::T* xn, std::size_t rows_n,
                                     typename F::T* mn) {
    using V = typename F::V;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    const std::conditional_t<Count, count_arg<F, Scaled, T>, storage_arg<F, Scaled, Fast, T>> a(0, beta);
    alignas(64) T nanf[kColPanel + F::N];  // a head shifts the tail vector up to N - 1 past the panel
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        T* const mp = mn + j0;
        const T* const xp = x + static_cast<std::ptrdiff_t>(j0);
        const T* const xnp = xn ? xn + static_cast<std::ptrdiff_t>(j0) : nullptr;
        col_max_begin<F>(mp, pw, nanf);
        // x and the next chunk xn share the head (their rows are sx apart) when the row stride is a multiple
        // of the line; otherwise the results are the same and some of xn's vectors straddle lines.
        const std::size_t h = col_head<F>(xp, pw);
        // The next chunk's units (g, v): rows 4g..4g+3 of column vector v (the head, if any, is vector 0);
        // `units` of them over `steps`.
        const std::size_t nv = (h ? 1 : 0) + (pw - h + N - 1) / N, groups = rows_n / 4, units = groups * nv;
        const std::size_t steps = col_strip_count<F>(pw, h) * rows;
        std::size_t g = 0, v = 0, err = 0;
        auto unit = [&] {
            const T* xi = xnp + static_cast<std::ptrdiff_t>(4 * g) * sx;
            const std::size_t j = !h ? v * N : v ? h + (v - 1) * N : 0, cap = v || !h ? N : h;
            const std::size_t len = pw - j < cap ? pw - j : cap;
            auto four = [&](const col_lanes<F>& mk, auto full) {
                col_max_step4<F>(load_any<F>(xi + j, mk, full), load_any<F>(xi + sx + j, mk, full),
                                 load_any<F>(xi + 2 * sx + j, mk, full), load_any<F>(xi + 3 * sx + j, mk, full), j,
                                 mk, full, mp, nanf);
            };
            if (len == N)
                four(col_lanes<F>{F::tail_mask(N), N}, std::true_type{});
            else
                four(col_lanes<F>{F::tail_mask(len), len}, std::false_type{});
            if (++v == nv) v = 0, ++g;
        };
        auto step_done = [&] {
            err += units;
            while (err >= steps) err -= steps, unit();
        };
        col_sums_strips<F, Count>(
            rows, pw, h, m + j0, rest + j0, Count ? count + j0 : nullptr,
            [&](std::size_t i, std::size_t j, auto mk, auto full, V mv, V negm, V xlow, V& c) {
                const V v = load_any<F>(xp + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j), mk, full);
                return col_term<F, Count>(a, v, mv, negm, xlow, c);
            },
            step_done);
        while (g < groups) unit();  // none left unless rows == 0
        for (std::size_t i = 4 * groups; i < rows_n; ++i) {
            const T* xi = xnp + static_cast<std::ptrdiff_t>(i) * sx;
            for_col_vectors<F>(pw, [&](std::size_t j, auto mk, auto full) {
                col_max_step1<F>(load_any<F>(xi + j, mk, full), j, mk, full, mp, nanf);
            }, h);
        }
        col_max_end<F>(mp, pw, nanf);
    }
}

template <class F, bool Fast>
NX_FLATTEN void k_col_exp_sum_max(const typename F::T* x, std::size_t rows, std::ptrdiff_t sx, std::size_t w,
                                  const typename F::T* m, scale2<typename F::T> beta, double* rest, double* count,
                                  const typename F::T* xn, std::size_t rows_n, typename F::T* mn) {
    const bool counted = !Fast && count;
    if constexpr (F::kRegisters < 32) {
        if (counted) {  // the two kernels (see above)
            k_col_exp_sum<F, Fast>(x, rows, sx, w, m, beta, rest, count);
            col_max_impl<F, false, typename F::T>(xn, rows_n, sx, w, mn, nullptr);
            return;
        }
    }
    auto fused = [&](auto counts) {
        constexpr bool C = decltype(counts)::value;
        double* const c = C ? count : nullptr;
        unit_beta(beta) ? col_exp_sum_max_impl<F, false, Fast, C>(x, rows, sx, w, m, beta, rest, c, xn, rows_n, mn)
                        : col_exp_sum_max_impl<F, true, Fast, C>(x, rows, sx, w, m, beta, rest, c, xn, rows_n, mn);
    };
    counted ? fused(std::true_type{}) : fused(std::false_type{});
}

// Pass-2 column kernels walk rows in the outer loop so each row's w contiguous entries stream once
// from memory; the per-column parameters are staged in small arrays (kColPanel) that stay in L1.

// Whether a pass-2 column kernel may store y non-temporally (the *_stream entries): the ISA has such a
// store (F::kStream), the storage is T itself (no 16-bit streaming store) and y is aligned to its element,
// so that whole vectors can start on a kStreamAlign-byte boundary.
template <class F, bool Stream, class S>
NX_INLINE bool col_streams(const S* y) {
    if constexpr (Stream && F::kStream && std::is_same_v<S, typename F::T>)
        return reinterpret_cast<std::uintptr_t>(y) % sizeof(S) == 0;
    else
        return false;
}

// Columns [0, h) of an output row yi whose stores come before its first kStreamAlign-byte boundary (at most
// pw): the head a streaming row writes with an ordinary masked store.
template <class F, class S>
NX_INLINE std::size_t col_stream_head(const S* yi, std::size_t pw) {
    constexpr std::size_t A = F::kStreamAlign;
    const std::size_t h = (A - reinterpret_cast<std::uintptr_t>(yi) % A) % A / sizeof(S);
    return h < pw ? h : pw;
}

// A streamed block whose rows are contiguous in x and y (both rows w apart, N <= w <= kColPanel) is walked as
// one run of rows * w entries instead of row by row (col_stream_run): a row's last vector runs on into the
// next row, so only the run's first and last lines take ordinary masked stores. Row by row, a row that does
// not start on a line (numpy's arrays are mostly 16 bytes past one) begins and ends in a line shared with its
// neighbour, written by two masked stores with a read for ownership among the streaming stores: axis 0 of a
// (4096, 1024) float32 softmax 16 bytes past a line took 1.09-1.18x the time of the same array on a line
// (AVX-512, Intel Xeon, one thread); as a run, at most 1.06x.
template <class F>
NX_INLINE bool col_runs(bool stream, std::ptrdiff_t sx, std::ptrdiff_t sy, std::size_t w, std::size_t rows) {
    return stream && rows > 1 && w >= F::N && w <= kColPanel && sx == std::ptrdiff_t(w) && sy == std::ptrdiff_t(w);
}
// Per-column parameters for a run: f(t, t mod w) for t < w + pad, so that a vector of pad entries starting in
// any column reads its parameters at t = that column, across the row's end. w + pad <= kColPanel + pad.
template <class Fn>
NX_INLINE void stage_circular(std::size_t w, std::size_t pad, Fn f) {
    for (std::size_t t = 0, j = 0; t < w + pad; ++t, j = j + 1 == w ? 0 : j + 1) f(t, j);
}
// The run y[0, total) with streaming stores from its first kStreamAlign-byte boundary: value(k, j, lanes,
// full) is the vector of entries [k, k + lanes), k in column j. The head before the boundary and the tail
// (each within one row, as w >= N) take ordinary masked stores. The caller fences.
template <class F, class Value>
NX_INLINE void col_stream_run(typename F::T* y, std::size_t total, std::size_t w, Value value) {
    constexpr std::size_t N = F::N;
    std::size_t k = col_stream_head<F>(y, N < total ? N : total), j = k;
    if (k) {
        const col_lanes<F> l{F::tail_mask(k), k};
        store_any<F>(y, l, std::false_type{}, value(std::size_t(0), std::size_t(0), l, std::false_type{}));
    }
    const col_lanes<F> all{F::tail_mask(N), N};
    for (; k + N <= total; k += N) {
        F::stream(y + k, value(k, j, all, std::true_type{}));
        j += N;
        if (j >= w) j -= w;  // N <= w
    }
    if (k < total) {
        const col_lanes<F> l{F::tail_mask(total - k), total - k};
        store_any<F>(y + k, l, std::false_type{}, value(k, j, l, std::false_type{}));
    }
}

// One output row yi of pw columns: value(j, lanes, full) is the vector of columns [j, j + lanes). stream:
// the row as a run (col_stream_run: the whole vectors from its first kStreamAlign-byte boundary on go out
// with non-temporal stores, F::stream: no read-for-ownership of the output lines; the head before it and
// the tail with ordinary masked stores); the values are the same either way (the caller fences after its
// last row). Otherwise ordinary stores, for_col_vectors' walk with the head h (col_head of the row read).
template <class F, class S, class Value>
NX_INLINE void col_store_row(S* yi, std::size_t pw, bool stream, std::size_t h, Value value) {
    if constexpr (F::kStream && std::is_same_v<S, typename F::T>) {
        if (stream) {  // one row is a run of pw entries in pw columns
            col_stream_run<F>(yi, pw, pw,
                              [&](std::size_t, std::size_t j, auto mk, auto full) { return value(j, mk, full); });
            return;
        }
    }
    (void)stream;
    for_col_vectors<F>(pw, [&](std::size_t j, auto mk, auto full) { store_any<F>(yi + j, mk, full, value(j, mk, full)); }, h);
}

// Stream: the col_exp_scale_stream entry (col_store_row), same values.
template <class F, bool Scaled, bool Fast, class S = typename F::T, bool Stream = false>
NX_FLATTEN void col_exp_scale_impl(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy,
                        std::size_t rows, std::size_t w, const typename F::T* m, scale2<typename F::T> beta,
                        const typename F::T* c) {
    using V = typename F::V;
    using T = typename F::T;
    const storage_arg<F, Scaled, Fast, S> a(0, beta);
    const bool stream = col_streams<F, Stream>(y);
    // A streamed row's tail vector starts at the row's first aligned boundary plus whole vectors, so it can
    // reach up to N - 1 entries past pw = kColPanel: those lanes read the zeros of the padding (not stored).
    alignas(64) T negm[kColPanel + F::N], xlow[kColPanel + F::N];
    if constexpr (F::kStream && std::is_same_v<S, T>) {
        if (col_runs<F>(stream, sx, sy, w, rows)) {
            alignas(64) T cc[kColPanel + F::N];
            stage_circular(w, F::N, [&](std::size_t t, std::size_t j) {
                negm[t] = -m[j], xlow[t] = F::clamp_below(m[j]), cc[t] = c[j];
            });
            col_stream_run<F>(y, rows * w, w, [&](std::size_t k, std::size_t j, auto mk, auto full) {
                const V e = a.exp_of(load_any<F>(x + k, mk, full), F::load(negm + j), F::load(xlow + j));
                return F::mul(e, F::load(cc + j));
            });
            F::stream_fence();  // order the streaming stores before anything that follows
            return;
        }
    }
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for (std::size_t j = 0; j < pw; ++j) negm[j] = -m[j0 + j], xlow[j] = F::clamp_below(m[j0 + j]);
        for (std::size_t j = pw; j < pw + F::N; ++j) negm[j] = 0, xlow[j] = 0;
        const std::size_t h = col_head<F>(x + static_cast<std::ptrdiff_t>(j0), pw);
        for (std::size_t i = 0; i < rows; ++i) {
            const S* xi = x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0);
            S* yi = y + static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j0);
            col_store_row<F>(yi, pw, stream, h, [&](std::size_t j, auto mk, auto full) {
                const V v = load_any<F>(xi + j, mk, full);
                const V e = a.exp_of(v, F::load(negm + j), F::load(xlow + j));
                return F::mul(e, load_any<F>(c + j0 + j, mk, full));
            });
        }
    }
    if constexpr (F::kStream) {
        if (stream) F::stream_fence();  // order the streaming stores before anything that follows
    }
}

template <class F, bool Fast, class S = typename F::T>
NX_FLATTEN void k_col_exp_scale(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                     std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const typename F::T* c) {
    unit_beta(beta) ? col_exp_scale_impl<F, false, Fast, S>(x, sx, y, sy, rows, w, m, beta, c)
                    : col_exp_scale_impl<F, true, Fast, S>(x, sx, y, sy, rows, w, m, beta, c);
}

template <class F, bool Fast>
NX_FLATTEN void k_col_exp_scale_stream(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy,
                                       std::size_t rows, std::size_t w, const typename F::T* m,
                                       scale2<typename F::T> beta, const typename F::T* c) {
    using T = typename F::T;
    unit_beta(beta) ? col_exp_scale_impl<F, false, Fast, T, true>(x, sx, y, sy, rows, w, m, beta, c)
                    : col_exp_scale_impl<F, true, Fast, T, true>(x, sx, y, sy, rows, w, m, beta, c);
}

// k_col_log_softmax's high-accuracy float32 panel (columns [j0, j0 + pw)) for traits with kConvertHalves:
// log_softmax_op::col's operations on each lane, D::N columns at a time converted straight from and to
// memory (log_softmax_op::row_half), so the same bits without the shuffles; the columns before the first
// whole half (stream: up to the row's first kStreamAlign-byte boundary, where the halves' non-temporal
// stores F::stream_narrow start) and the last < D::N columns by col.
template <class F>
NX_INLINE void col_log_softmax_halves(const log_softmax_op<F>& op, const float* x, std::ptrdiff_t sx, float* y,
                                      std::ptrdiff_t sy, std::size_t rows, std::size_t pw, std::size_t j0,
                                      const float* m, const double* cbuf, bool stream) {
    using D = typename F::D;
    alignas(64) double mbuf[kColPanel];
    for (std::size_t j = 0; j < pw; ++j) mbuf[j] = m[j0 + j];
    const typename D::V beta = D::set1(op.beta);
    auto by_col = [&](const float* xi, float* yi, std::size_t j, std::size_t n) {
        const auto mk = F::tail_mask(n);
        F::store_tail(yi + j, mk, op.col(F::load_tail(xi + j, mk), F::load_tail(m + j0 + j, mk), cbuf + j));
    };
    for (std::size_t i = 0; i < rows; ++i) {
        const float* xi = x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0);
        float* yi = y + static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j0);
        const std::size_t h = stream ? col_stream_head<F>(yi, pw) : col_head<F>(xi, pw);
        const std::size_t end = h + (pw - h) / D::N * D::N;
        if (h) by_col(xi, yi, 0, h);
        for (std::size_t j = h; j < end; j += D::N) {
            const typename D::V d = D::mul(D::sub(F::load_widen(xi + j), D::load(mbuf + j)), beta);
            if constexpr (F::kStream) {
                if (stream) {
                    F::stream_narrow(yi + j, D::sub(d, D::load(cbuf + j)));
                    continue;
                }
            }
            F::store_narrow(yi + j, D::sub(d, D::load(cbuf + j)));
        }
        if (end < pw) by_col(xi, yi, end, pw - end);
    }
}

// col_log_softmax_halves of a run (col_runs: rows * w entries from x to y, streamed), with the per-column
// maxima and log-sums staged circularly (stage_circular: md, mc, cc): the same operations on each entry.
template <class F>
NX_INLINE void col_log_softmax_halves_run(const log_softmax_op<F>& op, const float* x, float* y, std::size_t total,
                                          std::size_t w, const double* md, const float* mc, const double* cc) {
    using D = typename F::D;
    constexpr std::size_t H = D::N;
    const typename D::V beta = D::set1(op.beta);
    auto by_col = [&](std::size_t k, std::size_t j, std::size_t n) {  // n < N entries of one row
        const auto mk = F::tail_mask(n);
        F::store_tail(y + k, mk, op.col(F::load_tail(x + k, mk), F::load_tail(mc + j, mk), cc + j));
    };
    std::size_t k = col_stream_head<F>(y, F::N < total ? F::N : total), j = k;
    if (k) by_col(0, 0, k);
    for (; k + H <= total; k += H) {
        const typename D::V d = D::mul(D::sub(F::load_widen(x + k), D::load(md + j)), beta);
        F::stream_narrow(y + k, D::sub(d, D::load(cc + j)));
        j += H;
        if (j >= w) j -= w;  // H <= w
    }
    if (k < total) by_col(k, j, total - k);
}

// Stream: the col_log_softmax_stream entry (col_store_row), same values.
template <class F, bool Fast, class S = typename F::T, bool Scaled = false, bool Stream = false>
NX_FLATTEN void k_col_log_softmax(const S* x, std::ptrdiff_t sx, S* y, std::ptrdiff_t sy, std::size_t rows,
                       std::size_t w, const typename F::T* m, scale2<typename F::T> beta, const double* c) {
    using V = typename F::V;
    static_assert(Fast || std::is_same_v<S, typename F::T>, "16-bit storage takes the fast arithmetic (kernel_table.hpp)");
    if constexpr (!Scaled && kCheapLogSoftmax<F, false, Fast>) {
        if (!unit_beta(beta)) return k_col_log_softmax<F, Fast, S, true, Stream>(x, sx, y, sy, rows, w, m, beta, c);
    }
    constexpr bool kCheap = kCheapLogSoftmax<F, Scaled, Fast>;
    const log_softmax_op<F> op(0, beta);
    const fast_arg<F, Scaled> fa(0, beta);
    const bool stream = col_streams<F, Stream>(y);
    alignas(64) double cbuf[kColPanel + F::N];  // a tail vector's lanes past pw read zeros
    if constexpr (F::kStream && std::is_same_v<S, typename F::T>) {
        if (col_runs<F>(stream, sx, sy, w, rows)) {
            using T = typename F::T;
            alignas(64) T mc[kColPanel + F::N];
            alignas(64) double md[kColPanel + F::N];
            stage_circular(w, F::N, [&](std::size_t t, std::size_t j) { mc[t] = m[j], md[t] = m[j], cbuf[t] = c[j]; });
            auto run = [&] {
                col_stream_run<F>(y, rows * w, w, [&](std::size_t k, std::size_t j, auto mk, auto full) {
                    const V v = load_any<F>(x + k, mk, full), mv = F::load(mc + j);
                    if constexpr (kCheap)  // fl(fl(x - m) beta - fl(c)), as log_softmax_range
                        return F::sub(fa.t_of(v, F::sub(F::zero(), mv)), load_doubles_as_t<F>(cbuf + j));
                    else
                        return op.col(v, mv, cbuf + j);
                });
            };
            if constexpr (!kCheap && sizeof(T) == 4) {
                if constexpr (F::kConvertHalves)  // by float64 halves, as below
                    col_log_softmax_halves_run<F>(op, x, y, rows * w, w, md, mc, cbuf);
                else
                    run();
            } else {
                run();
            }
            F::stream_fence();  // order the streaming stores before anything that follows
            return;
        }
    }
    for (std::size_t j0 = 0; j0 < w; j0 += kColPanel) {
        const std::size_t pw = w - j0 < kColPanel ? w - j0 : kColPanel;
        for (std::size_t j = 0; j < pw + F::N; ++j) cbuf[j] = j < pw ? c[j0 + j] : 0.0;
        if constexpr (!kCheap && sizeof(typename F::T) == 4) {
            if constexpr (F::kConvertHalves) {  // by float64 halves from memory, as k_row_log_softmax
                col_log_softmax_halves<F>(op, x, sx, y, sy, rows, pw, j0, m, cbuf, stream);
                continue;
            }
        }
        const std::size_t h = col_head<F>(x + static_cast<std::ptrdiff_t>(j0), pw);
        for (std::size_t i = 0; i < rows; ++i) {
            const S* xi = x + static_cast<std::ptrdiff_t>(i) * sx + static_cast<std::ptrdiff_t>(j0);
            S* yi = y + static_cast<std::ptrdiff_t>(i) * sy + static_cast<std::ptrdiff_t>(j0);
            col_store_row<F>(yi, pw, stream, h, [&](std::size_t j, auto mk, auto full) {
                const V v = load_any<F>(xi + j, mk, full), mv = load_any<F>(m + j0 + j, mk, full);
                if constexpr (kCheap)  // fl(fl(x - m) beta - fl(c)), as log_softmax_range
                    return F::sub(fa.t_of(v, F::sub(F::zero(), mv)), load_doubles_as_t<F>(cbuf + j));
                else
                    return op.col(v, mv, cbuf + j);
            });
        }
    }
    if constexpr (F::kStream) {
        if (stream) F::stream_fence();  // order the streaming stores before anything that follows
    }
}

template <class F, bool Fast>
NX_FLATTEN void k_col_log_softmax_stream(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y,
                                         std::ptrdiff_t sy, std::size_t rows, std::size_t w, const typename F::T* m,
                                         scale2<typename F::T> beta, const double* c) {
    k_col_log_softmax<F, Fast, typename F::T, false, true>(x, sx, y, sy, rows, w, m, beta, c);
}

template <class F, bool Scaled, bool Fast>
NX_FLATTEN void col_exp_store_impl(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                        scale2<typename F::T> beta, double* sum) {
    using V = typename F::V;
    const mode_arg<F, Scaled, Fast> a(0, beta);
    col_sums_rows_outer<F, false>(rows, w, m, sum, nullptr,
                                  [&](std::size_t i, std::size_t j, typename F::M mk, auto full, V, V negm, V xlow, V&) {
                                      typename F::T* p = x + i * w + j;
                                      const V e = a.exp_of(load_any<F>(p, mk, full), negm, xlow);
                                      store_any<F>(p, mk, full, e);
                                      return e;
                                  });
}

template <class F, bool Fast>
NX_FLATTEN void k_col_exp_store(typename F::T* x, std::size_t rows, std::size_t w, const typename F::T* m,
                     scale2<typename F::T> beta, double* sum) {
    unit_beta(beta) ? col_exp_store_impl<F, false, Fast>(x, rows, w, m, beta, sum)
                    : col_exp_store_impl<F, true, Fast>(x, rows, w, m, beta, sum);
}

template <class F>
NX_FLATTEN void k_col_scale(const typename F::T* x, std::ptrdiff_t sx, typename F::T* y, std::ptrdiff_t sy, std::size_t rows,
                 std::size_t w, const typename F::T* c) {
    const std::size_t h = col_head<F>(x, w);
    for (std::size_t i = 0; i < rows; ++i) {
        const auto* xi = x + static_cast<std::ptrdiff_t>(i) * sx;
        auto* yi = y + static_cast<std::ptrdiff_t>(i) * sy;
        for_col_vectors<F>(w, [&](std::size_t j, typename F::M mk, auto full) {
            store_any<F>(yi + j, mk, full, F::mul(load_any<F>(xi + j, mk, full), load_any<F>(c + j, mk, full)));
        }, h);
    }
}

// Fills the reduction entries of k for one accuracy mode (Fast: the table's f32_fast / f64_fast); the
// entries that do not depend on the mode are the same functions in both. The sampling entries come from
// generic/sampling.hpp: add_sampling.
template <class F, bool Fast = false>
void add_reductions(reduction_kernels<typename F::T>& k) {
    k.exp = k_exp<F>;
    k.row_max = k_row_max<F>;
    k.row_exp_sum = k_row_exp_sum<F, Fast>;
    k.row_exp_store = k_row_exp_store<F, Fast>;
    k.row_scale = k_row_scale<F>;
    k.row_exp_scale = k_row_exp_scale<F, Fast>;
    k.row_log_softmax = k_row_log_softmax<F, Fast>;
    k.col_max = k_col_max<F>;
    k.col_exp_sum = k_col_exp_sum<F, Fast>;
    k.col_exp_scale = k_col_exp_scale<F, Fast>;
    k.col_log_softmax = k_col_log_softmax<F, Fast>;
    k.col_exp_store = k_col_exp_store<F, Fast>;
    k.col_scale = k_col_scale<F>;
    k.row_exp_scale_stream = k_row_exp_scale_stream<F, Fast>;  // ordinary stores where !F::kStream (stream_range)
    k.row_log_softmax_stream = k_row_log_softmax_stream<F, Fast>;
    k.col_exp_scale_stream = k_col_exp_scale_stream<F, Fast>;  // ordinary stores where !F::kStream
    k.col_log_softmax_stream = k_col_log_softmax_stream<F, Fast>;
    k.rows_softmax = k_rows_softmax<F, Fast>;
    k.rows_exp_sum = k_rows_exp_sum<F, Fast>;
    k.rows_log_softmax = k_rows_log_softmax<F, Fast, Fast>;
    k.col_exp_sum_max = k_col_exp_sum_max<F, Fast>;
    k.row_exp_sum_max = k_row_exp_sum_max<F, Fast>;
}

// Fills a storage_kernels table (16-bit scores, kernel_table.hpp) from the same templates, with the
// storage S: accuracy::fast's argument, but the sums count the entries at the maximum, as the high mode's
// (storage_arg); softmax's own entries (Fast = true: the outputs, and row_exp_total, which counts nothing)
// take the 16-bit exp.
template <class F, class S>
void add_storage_reductions(storage_kernels<S>& k) {
    k.row_max = k_row_max<F, S>;
    k.row_exp_sum = k_row_exp_sum<F, false, S>;
    k.row_exp_scale = k_row_exp_scale<F, true, S>;
    k.row_log_softmax = k_row_log_softmax<F, true, S>;
    k.col_max = k_col_max<F, S>;
    k.col_exp_sum = k_col_exp_sum<F, false, S>;
    k.col_exp_scale = k_col_exp_scale<F, true, S>;
    k.col_log_softmax = k_col_log_softmax<F, true, S>;
    k.rows_softmax = k_rows_softmax<F, true, S>;
    k.rows_exp_sum = k_rows_exp_sum<F, false, S>;
    k.rows_log_softmax = k_rows_log_softmax<F, false, true, S>;
    k.row_exp_total = k_row_exp_sum<F, true, S>;  // Fast: nothing counted, the same (fast) argument
    k.row_exp_sum_max = k_row_exp_sum_max<F, false, S>;
    k.row_exp_total_max = k_row_exp_sum_max<F, true, S>;
    k.row_exp_scale_stream = k_row_exp_scale_stream<F, true, S>;
    k.row_log_softmax_stream = k_row_log_softmax_stream<F, true, S>;
}
