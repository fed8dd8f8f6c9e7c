// AVX2 + FMA attention traits (8 x float32 / 4 x float64 per __m256 register): what only the attention
// kernels need on top of the element traits F32 = lanes<V32>, F64 = lanes<V64> (generic/lanes.hpp over
// avx2/traits.hpp), which supply every general vector operation, the accumulators and the exp.
// kernels/generic/attention.hpp lists what an attention traits struct must provide.
//
// Textual include, like generic/: kernels/avx2/attention.cpp (compiled with -mavx2 -mfma) includes it INSIDE
// normexp::avx2::(anonymous), after avx2/traits.hpp and generic/lanes.hpp, so everything here has internal
// linkage (the ODR trap that tests/isa/check_isa_objects.cmake guards against). No include guard; the includer
// provides <cstring> (memcpy) and <immintrin.h>.

// What both lane types share.
struct AttnAvx2 {
    // qk_direct's register tile: 2 query rows x 4 keys (8 accumulators + 4 key vectors + 1 query vector
    // of the 16 registers).
    static constexpr int kDirectRows = 2;
    // qk and pv register tiles: 6 rows x 2 vectors (16 float32 keys = one panel, or 8 float64) = 12
    // accumulators + 2 loads + 1 broadcast of the 16 ymm registers; one broadcast and two loads per 12 FMAs.
    static constexpr int kTileRows = 6;
    static constexpr int kQkVectors = 2;
    static constexpr int kPvVectors = 2;
    // qk_direct prefetches the key rows this many rows ahead (each key is used once, so the loads are
    // DRAM-latency bound). NX_INLINE: as a call GCC 12 deleted it (avx512/attention_traits.hpp).
    static constexpr std::ptrdiff_t kPrefetchRows = 16;
    NX_INLINE static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    // pv's decoding tile: one value row x 8 vectors (8 accumulators of the 16 registers).
    static constexpr int kWideRows = 1;
};

struct AttnF32 : F32, AttnAvx2 {
    // pv_wide's bfloat16 V in pairs (generic/attention.hpp): 16 bfloat16 in one load, the even elements by a
    // shift left of each 32-bit word and the odd ones by masking its low half (3 instructions per 16, against
    // a widening load and a shift per 8); accumulators to and from that order by in-lane shuffles and a
    // 64-bit or 128-bit lane permute.
    static void load_bf16_pairs(const bfloat16* p, V& even, V& odd) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        even = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        odd = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(int(0xFFFF0000u))));
    }
    static void to_pairs(V lo, V hi, V& even, V& odd) {  // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], qwords 0 2 1 3
        const __m256d e = _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88));
        const __m256d o = _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD));
        even = _mm256_castpd_ps(_mm256_permute4x64_pd(e, 0xD8));
        odd = _mm256_castpd_ps(_mm256_permute4x64_pd(o, 0xD8));
    }
    static void from_pairs(V even, V odd, V& lo, V& hi) {
        const __m256 a = _mm256_unpacklo_ps(even, odd), b = _mm256_unpackhi_ps(even, odd);
        lo = _mm256_permute2f128_ps(a, b, 0x20);
        hi = _mm256_permute2f128_ps(a, b, 0x31);
    }
    // All ones in the lanes whose boolean mask byte is non-zero (n valid bytes at p, n <= N; the bytes are
    // zero-extended, so non-zero is > 0).
    static B keep_in(const std::uint8_t* p, std::size_t n) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, p, n < 8 ? n : 8);
        const __m256i w = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bits)));
        return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
    }
    // kt[r * ldkt + c] = k[c * k_row + r] for an 8 x 8 block (unpack/shuffle/permute2f128 transpose); the rows
    // of storage S (float, float16, bfloat16) are widened as they are loaded (load_as).
    template <class S>
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        __m256 r0 = load_as<S>(k), r1 = load_as<S>(k + k_row), r2 = load_as<S>(k + 2 * k_row),
               r3 = load_as<S>(k + 3 * k_row), r4 = load_as<S>(k + 4 * k_row), r5 = load_as<S>(k + 5 * k_row),
               r6 = load_as<S>(k + 6 * k_row), r7 = load_as<S>(k + 7 * k_row);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
        r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
        r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
        r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
        r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
        r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
        r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
        r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
        _mm256_storeu_ps(kt, r0);
        _mm256_storeu_ps(kt + ldkt, r1);
        _mm256_storeu_ps(kt + 2 * ldkt, r2);
        _mm256_storeu_ps(kt + 3 * ldkt, r3);
        _mm256_storeu_ps(kt + 4 * ldkt, r4);
        _mm256_storeu_ps(kt + 5 * ldkt, r5);
        _mm256_storeu_ps(kt + 6 * ldkt, r6);
        _mm256_storeu_ps(kt + 7 * ldkt, r7);
    }
    // s[0..4) = the horizontal sums of a0..a3 by two rounds of HADDPS and a cross-lane add: lane pairs
    // ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) (not hsum's order).
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
    }
};

struct AttnF64 : F64, AttnAvx2 {
    static B keep_in(const std::uint8_t* p, std::size_t n) {
        std::uint32_t bits = 0;
        std::memcpy(&bits, p, n < 4 ? n : 4);
        const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(bits)));
        return _mm256_castsi256_pd(_mm256_cmpgt_epi64(w, _mm256_setzero_si256()));
    }
    template <class S>  // S = T only (float64 has no 16-bit storage)
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {  // 4 x 4
        const __m256d r0 = _mm256_loadu_pd(k), r1 = _mm256_loadu_pd(k + k_row), r2 = _mm256_loadu_pd(k + 2 * k_row),
                      r3 = _mm256_loadu_pd(k + 3 * k_row);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(kt, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(kt + ldkt, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(kt + 2 * ldkt, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(kt + 3 * ldkt, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
    // s[0..4) = (a_0 + a_1) + (a_2 + a_3) for a = a0..a3 (HADDPD, then the two 128-bit halves added).
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        const __m256d t0 = _mm256_hadd_pd(a0, a1), t1 = _mm256_hadd_pd(a2, a3);  // (a0 01, a1 01, a0 23, a1 23)
        const __m256d lo = _mm256_permute2f128_pd(t0, t1, 0x20), hi = _mm256_permute2f128_pd(t0, t1, 0x31);
        _mm256_storeu_pd(s, _mm256_add_pd(lo, hi));
    }
};
