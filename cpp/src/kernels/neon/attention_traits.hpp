// NEON (aarch64 Advanced SIMD) attention traits (4 x float32 / 2 x float64 per register): what only the
// attention kernels need on top of the element traits F32 = lanes<V32>, F64 = lanes<V64> (generic/lanes.hpp
// over neon/traits.hpp), which supply every general vector operation, the accumulators and the exp.
// kernels/generic/attention.hpp lists what an attention traits struct must provide.
//
// Textual include, like generic/: kernels/neon/attention.cpp includes it INSIDE normexp::neon::(anonymous),
// after neon/traits.hpp and generic/lanes.hpp (internal linkage; see tests/isa/check_isa_objects.cmake).
// No include guard; the includer provides <cstring> (memcpy) and <arm_neon.h>.

// What both lane types share.
struct AttnNeon {
    // qk_direct's register tile: 4 query rows x 4 keys (16 accumulators + 4 key vectors + 1 query vector
    // of the 32 registers).
    static constexpr int kDirectRows = 4;
    // qk and pv register tiles: 4 rows x 4 vectors (16 float32 keys = one panel, or 8 float64) = 16
    // accumulators + 4 loads + 1 broadcast of the 32 NEON registers; one broadcast and 4 loads per 16 FMAs.
    static constexpr int kTileRows = 4;
    static constexpr int kQkVectors = 4;
    static constexpr int kPvVectors = 4;
    static constexpr std::ptrdiff_t kPrefetchRows = 0;  // no software prefetch
    static void prefetch(const void*) {}
    // pv's decoding tile: one value row x 8 vectors (32 float32 columns).
    static constexpr int kWideRows = 1;
};

struct AttnF32 : F32, AttnNeon {
    // kt[r * ldkt + c] = k[c * k_row + r] for a 4 x 4 block: TRN1/TRN2 on 32-bit, then on 64-bit lanes; rows of
    // storage S widened as loaded (load_as).
    template <class S>
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        const float32x4_t r0 = load_as<S>(k), r1 = load_as<S>(k + k_row), r2 = load_as<S>(k + 2 * k_row),
                          r3 = load_as<S>(k + 3 * k_row);
        const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
        const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
        vst1q_f32(kt, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
        vst1q_f32(kt + ldkt, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
        vst1q_f32(kt + 2 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
        vst1q_f32(kt + 3 * ldkt, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
    }
    // All ones in the lanes whose boolean mask byte is non-zero (n valid bytes at p, n <= N): the bytes
    // widened to 32-bit lanes, then CMTST against themselves.
    static B keep_in(const std::uint8_t* p, std::size_t n) {
        std::uint32_t bits = 0;
        std::memcpy(&bits, p, n < 4 ? n : 4);
        const uint32x4_t w = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bits)))));
        return vreinterpretq_f32_u32(vtstq_u32(w, w));
    }
};

struct AttnF64 : F64, AttnNeon {
    template <class S>  // S = T only (float64 has no 16-bit storage)
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {  // 2 x 2
        const float64x2_t r0 = vld1q_f64(k), r1 = vld1q_f64(k + k_row);
        vst1q_f64(kt, vtrn1q_f64(r0, r1));
        vst1q_f64(kt + ldkt, vtrn2q_f64(r0, r1));
    }
    static B keep_in(const std::uint8_t* p, std::size_t n) {
        const std::uint64_t lanes[2] = {n > 0 && p[0] ? ~std::uint64_t(0) : 0, n > 1 && p[1] ? ~std::uint64_t(0) : 0};
        return vreinterpretq_f64_u64(vld1q_u64(lanes));
    }
};
