// The sampling kernels (kernel_table.hpp: row_collect_ge, row_sample_weights), written once over the
// element traits of lanes.hpp. Textual include INSIDE an ISA's namespace after lanes.hpp (see there): no
// #include, no include guard. Instantiated by <isa>/sampling.cpp through add_sampling<F>().
//
// row_sample_weights must be BIT-IDENTICAL to the scalar specification (sampling_weights.hpp), so it is
// the exact float32 operation sequence written there, one IEEE operation per trait call: separate mul
// and add, never fmadd (the library is built with -ffp-contract=off, so nothing is fused behind our
// back either), and the block sums in the specified lane order. The weights are computed kStep =
// max(8, F32::N) entries at a time; the 8 lane sums L_0..L_7 of a block are kSampleVecs = max(1, 8 /
// F32::N) float32 vectors (one on AVX2, two on NEON; on AVX-512 lanes 0..7 of one vector, which takes
// the two groups of 8 of each 16-lane weight vector one after the other: L_j += w[16p + j], then
// L_j += w[16p + 8 + j], the specified order).

// row_collect_ge: compare 4 vectors with the threshold and, only if a lane passes (rare after the first
// chunks), turn the lane masks into indices. NaN compares false, so it is never collected.
template <class F>
std::size_t k_row_collect_ge(const typename F::T* x, std::size_t n, typename F::T thr, std::uint32_t* idx) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    const V t = F::set1(thr);
    std::size_t c = 0, i = 0;
    auto emit = [&](std::uint32_t bits, std::size_t base) {
        while (bits) {
            idx[c++] = static_cast<std::uint32_t>(base + static_cast<std::size_t>(port::ctz32(bits)));
            bits &= bits - 1;
        }
    };
    for (; i + 4 * N <= n; i += 4 * N) {
        const typename F::B a = F::ge(F::load(x + i), t), b = F::ge(F::load(x + i + N), t);
        const typename F::B cc = F::ge(F::load(x + i + 2 * N), t), d = F::ge(F::load(x + i + 3 * N), t);
        if (!F::any(F::mor(F::mor(a, b), F::mor(cc, d)))) continue;
        emit(F::movemask(a), i);
        emit(F::movemask(b), i + N);
        emit(F::movemask(cc), i + 2 * N);
        emit(F::movemask(d), i + 3 * N);
    }
    for (; i + N <= n; i += N) emit(F::movemask(F::ge(F::load(x + i), t)), i);
    if (i < n) {  // the tail's unused lanes load as 0, which may pass: cut them off
        const auto mk = F::tail_mask(n - i);
        emit(F::movemask(F::ge(F::load_tail(x + i, mk), t)) & ((1u << (n - i)) - 1u), i);
    }
    return c;
}

// Entries per step (whole groups of 8, whole float32 vectors) and float32 vectors per step; the lane
// sums L_0..L_7 take kSampleVecs vectors (lanes 0..7 of the one vector when F32::N = 16).
constexpr std::size_t kStep = F32::N > 8 ? F32::N : 8;
constexpr std::size_t kStepVecs = kStep / F32::N;
constexpr std::size_t kSampleVecs = F32::N > 8 ? 1 : 8 / F32::N;
static_assert(kStep % 8 == 0 && normexp::sampling::kSampleBlock % kStep == 0 && F32::N == 2 * F64::N &&
                  kStepVecs == kSampleVecs,
              "steps of whole groups of 8 and whole float32 vectors (one accumulator each); float64 vectors in pairs");

// The sampling arguments of the kStep / F::N vectors of x[0..kStep) in F's own precision:
// t = (x - m) * beta and keep = x >= thr, restricted to the `valid` first lanes (lanes past them load as
// 0 and are dropped).
template <class F>
void sample_args_native(const typename F::T* x, std::size_t valid, typename F::T m, typename F::T beta,
                        typename F::T thr, typename F::V* t, typename F::B* keep) {
    for (std::size_t q = 0; q < kStep / F::N; ++q) {
        const std::size_t vq = valid > q * F::N ? valid - q * F::N : 0;
        typename F::V v;
        typename F::B in;
        if (vq >= F::N) {
            v = F::load(x + q * F::N);
            in = F::mask_v(F::tail_mask(F::N));
        } else {
            const auto mk = F::tail_mask(vq);
            v = F::load_tail(x + q * F::N, mk);
            in = F::mask_v(mk);
        }
        keep[q] = F::mand(F::ge(v, F::set1(thr)), in);
        t[q] = F::mul(F::sub(v, F::set1(m)), F::set1(beta));
    }
}
// As float32 vectors: float32 input computes in float32; float64 input in float64, then each t is
// rounded once to float32 (round to nearest even) and the masks are narrowed to 32-bit lanes.
inline void sample_args(const float* x, std::size_t valid, float m, float beta, float thr, F32::V* t, F32::B* keep) {
    sample_args_native<F32>(x, valid, m, beta, thr, t, keep);
}
inline void sample_args(const double* x, std::size_t valid, double m, double beta, double thr, F32::V* t,
                        F32::B* keep) {
    F64::V tq[2 * kStepVecs];
    F64::B kq[2 * kStepVecs];
    sample_args_native<F64>(x, valid, m, beta, thr, tq, kq);
    for (std::size_t h = 0; h < kStepVecs; ++h) {
        t[h] = F32::narrow(tq[2 * h], tq[2 * h + 1]);
        keep[h] = F32::narrow_mask(kq[2 * h], kq[2 * h + 1]);
    }
}

// sample_exp of sampling_weights.hpp per lane; lanes with !keep or t < kSampleMinArg give +0.
//   kd = (t log2e + S) - S with S = 1.5*2^23 (round to nearest even, exact); 2^kd from the bits of
//   t log2e + S (kd in [-124, 0]: a normal power of two); r = (t - kd LN2_HI) - kd LN2_LO;
//   p = ((r r) q(r) + r) + 1 with q(r) = (((C6 r + C5) r + C4) r + C3) r + C2.
inline F32::V sample_exp(F32::V t, F32::B keep) {
    using namespace normexp::sampling;
    using F = F32;
    const F::V tmin = F::set1(kSampleMinArg);
    keep = F::mand(keep, F::ge(t, tmin));
    t = F::blend(tmin, t, keep);  // the dropped lanes (NaN included) compute something harmless
    const F::V sh = F::set1(kSampleShifter);
    const F::V ks = F::add(F::mul(t, F::set1(kLog2eF)), sh);
    const F::V kd = F::sub(ks, sh);
    const F::V r = F::sub(F::sub(t, F::mul(kd, F::set1(kLn2HiF))), F::mul(kd, F::set1(kLn2LoF)));
    F::V q = F::add(F::mul(F::set1(kC6F), r), F::set1(kC5F));
    q = F::add(F::mul(q, r), F::set1(kC4F));
    q = F::add(F::mul(q, r), F::set1(kC3F));
    q = F::add(F::mul(q, r), F::set1(kC2F));
    const F::V p = F::add(F::add(F::mul(F::mul(r, r), q), r), F::set1(1.0f));
    return F::zero_unless(keep, F::mul(p, F::pow2(F::int_of_shifted(ks, sh))));
}

// acc + wv, one group of 8 lanes after the other: L_j = (L_j + w[j]) + w[8 + j] for 16 lanes (G::hi8
// moves lanes 8..15 to 0..7; lanes 8..15 of acc are never read), L_j + w[j] otherwise.
template <class G>
NX_INLINE typename G::V add_groups(typename G::V acc, typename G::V wv) {
    if constexpr (G::N > 8) return G::add(G::add(acc, wv), G::hi8(wv));
    else return G::add(acc, wv);
}

template <class F>
void k_row_sample_weights(const typename F::T* x, std::size_t n, typename F::T m, typename F::T beta,
                          typename F::T thr, float* w, float* block_sums) {
    constexpr std::size_t B = normexp::sampling::kSampleBlock;
    constexpr std::size_t NS = F32::N;
    for (std::size_t b0 = 0; b0 < n; b0 += B) {
        F32::V acc[kSampleVecs];
        for (std::size_t h = 0; h < kSampleVecs; ++h) acc[h] = F32::zero();
        for (std::size_t q = 0; q < B / kStep && b0 + kStep * q < n; ++q) {
            const std::size_t i = b0 + kStep * q, valid = n - i;
            F32::V t[kStepVecs];
            F32::B keep[kStepVecs];
            sample_args(x + i, valid, m, beta, thr, t, keep);
            for (std::size_t h = 0; h < kStepVecs; ++h) {
                const F32::V wv = sample_exp(t[h], keep[h]);
                // L_j = ((w[j] + w[8+j]) + ...): the first add is 0 + w[j] = w[j] exactly (w >= +0).
                // 16 lanes: lanes past the row are +0 (keep), and adding +0 to a sum >= +0 changes no bit.
                acc[h] = add_groups<F32>(acc[h], wv);
                if (w) {
                    const std::size_t vh = valid > h * NS ? valid - h * NS : 0;
                    if (vh >= NS)
                        F32::store(w + i + h * NS, wv);
                    else if (vh > 0)
                        F32::store_tail(w + i + h * NS, F32::tail_mask(vh), wv);
                }
            }
        }
        if (block_sums) {
            // s_j = L_j + L_{j+4}; S = (s_0 + s_2) + (s_1 + s_3). Missing vectors of a short last block
            // would add +0, which changes no bit, so they are skipped.
            alignas(64) float L[kSampleVecs * NS];
            for (std::size_t h = 0; h < kSampleVecs; ++h) F32::store(L + h * NS, acc[h]);
            const float s0 = L[0] + L[4], s1 = L[1] + L[5], s2 = L[2] + L[6], s3 = L[3] + L[7];
            block_sums[b0 / B] = (s0 + s2) + (s1 + s3);
        }
    }
}

template <class F>
void add_sampling(reduction_kernels<typename F::T>& k) {
    k.row_collect_ge = k_row_collect_ge<F>;
    k.row_sample_weights = k_row_sample_weights<F>;
}
