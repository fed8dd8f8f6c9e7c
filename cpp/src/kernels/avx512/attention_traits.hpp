// AVX-512 (F + BW + DQ + VL, with FMA) attention traits (16 x float32 / 8 x float64 per __m512 register):
// what only the attention kernels need on top of the element traits F32 = lanes<V32>, F64 = lanes<V64>
// (generic/lanes.hpp over avx512/traits.hpp), which supply every general vector operation, the opmask
// comparisons (B = __mmask16 / __mmask8), the accumulators and the exp. kernels/generic/attention.hpp lists
// what an attention traits struct must provide.
//
// Textual include, like generic/: kernels/avx512/attention.cpp (compiled with the AVX-512 flags,
// cmake/normexpIsa.cmake) includes it INSIDE normexp::avx512::(anonymous), after avx512/traits.hpp and
// generic/lanes.hpp, so everything here has internal linkage (tests/isa/check_isa_objects.cmake). No include
// guard; the includer provides <immintrin.h> (through avx512/traits.hpp).

// The shuffles of the transposes as their merge-masked forms with every lane selected (the same instruction):
// GCC's unmasked intrinsics pass _mm512_undefined_ps() as the merge source, which -Wuninitialized reports
// at each use (see avx512/traits.hpp).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;
inline __m512 unpacklo32(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, kAll16, a, b); }
inline __m512 unpackhi32(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, kAll16, a, b); }
template <int Imm>
inline __m512 shuffle32(__m512 a, __m512 b) { return _mm512_mask_shuffle_ps(a, kAll16, a, b, Imm); }
template <int Imm>
inline __m512 shuffle128x32(__m512 a, __m512 b) { return _mm512_mask_shuffle_f32x4(a, kAll16, a, b, Imm); }
inline __m512d unpacklo64(__m512d a, __m512d b) { return _mm512_mask_unpacklo_pd(a, kAll8, a, b); }
inline __m512d unpackhi64(__m512d a, __m512d b) { return _mm512_mask_unpackhi_pd(a, kAll8, a, b); }
template <int Imm>
inline __m512d shuffle128x64(__m512d a, __m512d b) { return _mm512_mask_shuffle_f64x2(a, kAll8, a, b, Imm); }

// What both lane types share.
struct AttnAvx512 {
    // qk_direct's register tile: 4 query rows x 4 keys (16 accumulators + 4 key vectors + 1 query vector
    // of the 32 registers).
    static constexpr int kDirectRows = 4;
    // qk_direct prefetches the key rows this many rows ahead, into L2 (PREFETCHT1). Measured on Zen 4 (a
    // float32 decode from memory, 32 query heads on 8 K/V heads, 16k keys, one thread): 17-19 GB/s with 16,
    // 32 or 64 rows into L2, 14-15 with 16 rows into L1 (PREFETCHT0).
    // NX_INLINE: GCC 12 took this wrapper, left as a call, for a function without side effects and deleted
    // the calls (the kernels had no prefetch instruction at all until it was forced inline).
    static constexpr std::ptrdiff_t kPrefetchRows = 32;
    NX_INLINE static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }
    // pv's decoding tile: two value rows x 8 vectors (16 accumulators + 2 broadcasts + 8 loads of the 32
    // registers), a whole 128-wide float32 value row per step, read once for both rows.
    static constexpr int kWideRows = 2;
};

struct AttnF32 : F32, AttnAvx512 {
    // qk and pv register tiles: 6 rows x 4 vectors (64 float32 keys, four key panels, or 64 value columns)
    // = 24 accumulators + 4 loads + 1 broadcast of the 32 zmm registers; one broadcast and four loads per 24
    // FMAs. Chosen by measurement (one Zen 4 core, 96 rows x 128 keys, head_dim 64 and 128): 105-110 GFLOP/s
    // for qk and pv, against 54-65 (12 x 1) and 61-70 (12 x 2), and AVX2's 6 x 2 ymm at 84-100. The rows
    // stay 6, so the driver's row groups are the AVX2 set's.
    static constexpr int kTileRows = 6;
    static constexpr int kQkVectors = 4;
    static constexpr int kPvVectors = 4;
    static T hsum(V a) { return _mm512_reduce_add_ps(a); }
    // pv_wide's bfloat16 V in pairs (generic/attention.hpp): 32 bfloat16 in one load, the even elements by a
    // shift left of each 32-bit word and the odd ones by masking its low half (3 instructions per 32, against
    // a widening load and a shift per 16); accumulators to and from that order by vpermt2ps. The load stays
    // in a register (NX_KEEP_IN_REGISTER): GCC otherwise folds it into both the shift and the and, two loads
    // of the same 64 bytes, each split across two lines where the row is not line-aligned (NumPy's 16-byte
    // offset): a decode in L2, one Xeon core, 0.98x the time aligned, 0.94-0.98x at the offset.
    static void load_bf16_pairs(const bfloat16* p, V& even, V& odd) {
        __m512i w = _mm512_loadu_si512(p);
        NX_KEEP_IN_REGISTER(w);
        even = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, w, 16));
        odd = _mm512_castsi512_ps(_mm512_maskz_and_epi32(0xffff, w, _mm512_set1_epi32(int(0xFFFF0000u))));
    }
    static void to_pairs(V lo, V hi, V& even, V& odd) {
        alignas(64) static constexpr std::int32_t ie[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
        alignas(64) static constexpr std::int32_t io[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
        permute2(lo, hi, ie, io, even, odd);
    }
    static void from_pairs(V even, V odd, V& lo, V& hi) {
        alignas(64) static constexpr std::int32_t il[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
        alignas(64) static constexpr std::int32_t ih[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
        permute2(even, odd, il, ih, lo, hi);
    }
    // r0, r1 = the lanes of (a, b) that the index tables i0, i1 pick (vpermt2ps; r0, r1 may alias a, b).
    static void permute2(V a, V b, const std::int32_t* i0, const std::int32_t* i1, V& r0, V& r1) {
        const V x = _mm512_permutex2var_ps(a, _mm512_load_si512(i0), b);
        r1 = _mm512_permutex2var_ps(a, _mm512_load_si512(i1), b);
        r0 = x;
    }
    // s[0..4) = the horizontal sums of a0..a3 (13 instructions, against 4 x 8 for hsum of each): 32-bit then
    // 64-bit unpacks of the pairs, added, leave every 128-bit lane holding the four vectors' partial sums of
    // that lane ((x_i + x_i+2) + (x_i+1 + x_i+3)); then the four lanes are added by two lane swaps
    // ((L0 + L2) + (L1 + L3)). Not hsum's order.
    static void store_hsum4(T* s, V a0, V a1, V a2, V a3) {
        const V x01 = _mm512_add_ps(unpacklo32(a0, a1), unpackhi32(a0, a1));
        const V x23 = _mm512_add_ps(unpacklo32(a2, a3), unpackhi32(a2, a3));
        const __m512d d01 = _mm512_castps_pd(x01), d23 = _mm512_castps_pd(x23);
        const V y = _mm512_add_ps(_mm512_castpd_ps(unpacklo64(d01, d23)), _mm512_castpd_ps(unpackhi64(d01, d23)));
        const V z = _mm512_add_ps(y, shuffle128x32<0x4E>(y, y));
        const V w = _mm512_add_ps(z, shuffle128x32<0xB1>(z, z));
        _mm512_mask_storeu_ps(s, 0x000F, w);  // lanes 0..3 (GCC's castps512_ps128 draws -Wuninitialized)
    }
    static V iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
    // Lanes whose boolean mask byte is non-zero (n valid bytes at p, n <= 16; the others are not read).
    static B keep_in(const std::uint8_t* p, std::size_t n) {
        const __m128i b = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1u), p);
        return _mm_test_epi8_mask(b, b);
    }
    // kt[r * ldkt + c] = k[c * k_row + r] for a 16 x 16 block: unpack 32-bit pairs, shuffle 64-bit pairs,
    // then two rounds of 128-bit lane shuffles (vshuff32x4). Rows of storage S widened as loaded (load_as).
    template <class S>
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        __m512 r[16], t[16];
        for (int i = 0; i < 16; ++i) r[i] = load_as<S>(k + i * k_row);
        for (int i = 0; i < 16; i += 2) {
            t[i] = unpacklo32(r[i], r[i + 1]);
            t[i + 1] = unpackhi32(r[i], r[i + 1]);
        }
        for (int i = 0; i < 16; i += 4) {
            r[i] = shuffle32<0x44>(t[i], t[i + 2]);
            r[i + 1] = shuffle32<0xEE>(t[i], t[i + 2]);
            r[i + 2] = shuffle32<0x44>(t[i + 1], t[i + 3]);
            r[i + 3] = shuffle32<0xEE>(t[i + 1], t[i + 3]);
        }
        for (int h = 0; h < 16; h += 8)
            for (int i = 0; i < 4; ++i) {
                t[h + i] = shuffle128x32<0x88>(r[h + i], r[h + 4 + i]);
                t[h + 4 + i] = shuffle128x32<0xDD>(r[h + i], r[h + 4 + i]);
            }
        for (int i = 0; i < 8; ++i) {
            r[i] = shuffle128x32<0x88>(t[i], t[8 + i]);
            r[8 + i] = shuffle128x32<0xDD>(t[i], t[8 + i]);
        }
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(kt + i * ldkt, r[i]);
    }
};

struct AttnF64 : F64, AttnAvx512 {
    // 6 rows x 4 vectors (32 float64 keys or value columns), as for float32.
    static constexpr int kTileRows = 6;
    static constexpr int kQkVectors = 4;
    static constexpr int kPvVectors = 4;
    static T hsum(V a) { return _mm512_reduce_add_pd(a); }
    static V iota() { return _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7); }
    static B keep_in(const std::uint8_t* p, std::size_t n) {  // n <= 8
        const __m128i b = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1u), p);
        return static_cast<B>(_mm_test_epi8_mask(b, b));
    }
    // 8 x 8 block: unpack 64-bit pairs, then two rounds of 128-bit lane shuffles (vshuff64x2).
    template <class S>  // S = T only (float64 has no 16-bit storage)
    static void transpose_store(const S* k, std::ptrdiff_t k_row, T* kt, std::size_t ldkt) {
        __m512d r[8], t[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(k + i * k_row);
        for (int i = 0; i < 8; i += 2) {
            t[i] = unpacklo64(r[i], r[i + 1]);
            t[i + 1] = unpackhi64(r[i], r[i + 1]);
        }
        for (int h = 0; h < 8; h += 4) {
            r[h] = shuffle128x64<0x88>(t[h], t[h + 2]);
            r[h + 1] = shuffle128x64<0x88>(t[h + 1], t[h + 3]);
            r[h + 2] = shuffle128x64<0xDD>(t[h], t[h + 2]);
            r[h + 3] = shuffle128x64<0xDD>(t[h + 1], t[h + 3]);
        }
        for (int i = 0; i < 4; ++i) {
            t[i] = shuffle128x64<0x88>(r[i], r[4 + i]);
            t[4 + i] = shuffle128x64<0xDD>(r[i], r[4 + i]);
        }
        for (int i = 0; i < 8; ++i) _mm512_storeu_pd(kt + i * ldkt, t[i]);
    }
};
