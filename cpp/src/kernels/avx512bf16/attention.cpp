// AVX512_BF16 attention entries: scores of a bfloat16 q against a bfloat16 K by vdpbf16ps (kernel_table.hpp,
// bf16_dot_kernels: the contracts and the arithmetic, which tests/cpp/test_attention_bf16.cpp specifies in
// scalar code). Compiled with the AVX-512 flags plus -mavx512bf16 (cmake/normexpIsa.cmake). Exports only
// avx512bf16_add_attention (isa_parts.hpp), which the dispatcher calls on the avx512 table where the CPU has
// AVX512_BF16 (dispatch.cpp).
//
// vdpbf16ps acc, a, b: per 32-bit lane l, acc_l += a[2l+1] b[2l+1], then acc_l += a[2l] b[2l], each add
// rounded to nearest even, bfloat16 subnormal inputs read as 0 and subnormal results flushed to 0 (the
// instruction ignores MXCSR). Twice the multiplies of a float32 FMA per instruction; the products of two
// bfloat16 values are exact in float32, so each add is the one rounding of an FMA.
//
// Only QK^T uses it: P V would need p rounded to bfloat16 (a relative error of 2^-9 on every weight, far
// beyond the attention contract's float32 accumulation), so pv stays attn_kv_bf16's float32 FMA.
//
// The kernels (written here rather than in generic/: the pair layout exists only for this instruction):
//  * k_pack_kt_pairs: K^T in pairs of head dimensions, one 32-bit word (two bfloat16) per (pair, key): a
//    16 x 16 transpose of 32-bit words (avx512/attention_traits.hpp's float32 transpose on the bits) where
//    the key rows are contiguous and an even number of elements apart, word by word elsewhere.
//  * k_qk_pairs: avx512's qk register tile, 6 rows x 4 vectors (64 keys), a pair step per instruction: per
//    pair 4 loads of kt words and one broadcast of the row's q pair feed 24 vdpbf16ps (48 multiplies per
//    row and vector against qk's 24 FMAs). q rows are cut into their bfloat16 halves (exact: the values
//    are bfloat16) a chunk of kChunkPairs pairs at a time into a stack buffer.
//  * k_qk_direct_pairs: decoding, four keys x up to four rows per tile as avx512's qk_direct, 32 head
//    dimensions per instruction, the key rows read once and prefetched as there, the q pairs converted by
//    the caller; the four keys of a row summed by avx512's store_hsum4 (a key left over: hsum, by halves).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../exp_constants.hpp"
#include "../isa_parts.hpp"
#include "../avx512/traits.hpp"

namespace normexp::avx512bf16 {
namespace {
#include "traits.hpp"
#include "../generic/lanes.hpp"
#include "../avx512/attention_traits.hpp"

constexpr std::size_t kPanel = kAttnKeyPanel;  // 16 keys = one vector of words
constexpr std::size_t kChunkPairs = 64;        // q pairs converted per chunk (128 head dimensions)
constexpr int kRows = 6;                       // qk_pairs tile rows (avx512's qk tile)
constexpr int kVectors = 4;                    // qk_pairs tile width in vectors of 16 keys
constexpr int kDirectRows = 4;                 // qk_direct_pairs tile rows

inline std::ptrdiff_t sp(std::size_t v) { return static_cast<std::ptrdiff_t>(v); }

inline __m512 dp(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

// The sum of the 16 lanes: halves added (8 + 8, 4 + 4, 2 + 2, 1 + 1). The zero-masked extract with every lane
// selected is the plain instruction (the unmasked intrinsic's undefined merge source draws -Wuninitialized).
inline float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0), _mm512_maskz_extractf32x8_ps(0xff, v, 1));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    const __m128 e = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(e, _mm_movehdup_ps(e)));
}

// The odd 16-bit elements of two vectors of 16 float32 (their bfloat16 halves), in order: vpermt2w.
alignas(64) constexpr std::uint16_t kOddHalves[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                      23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                      45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
// n <= 32 float32 values at q (bfloat16 values widened) as 32 bfloat16 (16 pairs); lanes from n on are 0.
inline __m512i q_halves(const float* q, std::size_t n) {
    const __m512i idx = _mm512_load_si512(kOddHalves);
    if (n >= 32) return _mm512_permutex2var_epi16(_mm512_loadu_si512(q), idx, _mm512_loadu_si512(q + 16));
    const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>(n > 16 ? (1u << (n - 16)) - 1u : 0u);
    return _mm512_permutex2var_epi16(_mm512_maskz_loadu_epi32(m0, q), idx, _mm512_maskz_loadu_epi32(m1, q + 16));
}

#include "subnormal.hpp"  // min_subnormal_key, subnormal_keys
inline bool subnormal(bfloat16 h) { return (h.bits & 0x7F80u) == 0 && (h.bits & 0x007Fu) != 0; }

inline std::uint32_t word_of(const bfloat16* k, std::ptrdiff_t at0, std::ptrdiff_t at1, bool second) {
    return std::uint32_t(k[at0].bits) | (second ? std::uint32_t(k[at1].bits) << 16 : 0u);
}

bool k_pack_kt_pairs(const bfloat16* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys,
                     std::size_t dim, float* kt, std::size_t ldkt) {
    const std::size_t pairs = (dim + 1) / 2, padded = (keys + kPanel - 1) / kPanel * kPanel;
    std::size_t j0 = 0, p0 = 0;  // keys < j0 and pairs < p0 done by 16 x 16 word transposes
    __m512i seen = _mm512_set1_epi16(-1);  // min_subnormal_key of the transposed blocks
    if (k_col == 1 && k_row % 2 == 0) {
        j0 = keys / 16 * 16;
        p0 = dim / 32 * 16;
        for (std::size_t j = 0; j < j0; j += 16)
            for (std::size_t p = 0; p < p0; p += 16) {
                const bfloat16* b = k + static_cast<std::ptrdiff_t>(j) * k_row + static_cast<std::ptrdiff_t>(2 * p);
                for (std::ptrdiff_t i = 0; i < 16; ++i) seen = min_subnormal_key(seen, _mm512_loadu_si512(b + i * k_row));
                AttnF32::transpose_store<float>(reinterpret_cast<const float*>(b), k_row / 2, kt + p * ldkt + j, ldkt);
            }
    }
    bool edge_sub = false;
    for (std::size_t p = 0; p < pairs; ++p) {
        float* row = kt + p * ldkt;
        const bool second = 2 * p + 1 < dim;
        const std::ptrdiff_t a0 = static_cast<std::ptrdiff_t>(2 * p) * k_col, a1 = a0 + k_col;
        for (std::size_t j = p < p0 ? j0 : 0; j < keys; ++j) {
            const std::ptrdiff_t r = static_cast<std::ptrdiff_t>(j) * k_row;
            edge_sub = edge_sub || subnormal(k[r + a0]) || (second && subnormal(k[r + a1]));
            const std::uint32_t w = word_of(k, r + a0, r + a1, second);
            std::memcpy(row + j, &w, sizeof w);
        }
        for (std::size_t j = keys; j < padded; ++j) row[j] = 0.0f;  // +0: the word 0
    }
    return subnormal_keys(seen) == 0 && !edge_sub;
}

// One register tile of qk_pairs: R rows x NV vectors of 16 keys over every pair, a chunk of q pairs at a time.
template <int R, int NV>
inline void pairs_tile(const float* q, std::size_t ldq, const float* kt, std::size_t ldkt, std::size_t dim, float* s,
                       std::size_t lds) {
    const std::size_t pairs = (dim + 1) / 2;
    __m512 a[R][NV];
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) a[r][c] = _mm512_setzero_ps();
    alignas(64) std::uint32_t qw[R][kChunkPairs];
    for (std::size_t p0 = 0; p0 < pairs; p0 += kChunkPairs) {
        const std::size_t np = pairs - p0 < kChunkPairs ? pairs - p0 : kChunkPairs;
        for (int r = 0; r < R; ++r)
            for (std::size_t p = 0; p < np; p += 16) {
                const std::size_t d = 2 * (p0 + p);
                _mm512_store_si512(qw[r] + p, q_halves(q + r * ldq + d, dim - d < 32 ? dim - d : 32));
            }
        for (std::size_t p = 0; p < np; ++p) {
            const float* kp = kt + (p0 + p) * ldkt;
            __m512i b[NV];
NX_UNROLL(4)
            for (int c = 0; c < NV; ++c) b[c] = _mm512_loadu_si512(kp + c * 16);
NX_UNROLL(8)
            for (int r = 0; r < R; ++r) {
                const __m512i qb = _mm512_set1_epi32(static_cast<int>(qw[r][p]));
NX_UNROLL(4)
                for (int c = 0; c < NV; ++c) a[r][c] = dp(a[r][c], qb, b[c]);
            }
        }
    }
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) _mm512_storeu_ps(s + r * lds + c * 16, a[r][c]);
}

// Rows [0, rows) of one key range in tiles of up to R rows (the last one shorter).
template <int R, int NV>
inline void pairs_rows(const float* q, std::size_t ldq, const float* kt, std::size_t ldkt, std::size_t rows,
                       std::size_t dim, float* s, std::size_t lds) {
    std::size_t i = 0;
    for (; i + R <= rows; i += R) pairs_tile<R, NV>(q + i * ldq, ldq, kt, ldkt, dim, s + i * lds, lds);
    if constexpr (R > 1) {
        if (i < rows) pairs_rows<R - 1, NV>(q + i * ldq, ldq, kt, ldkt, rows - i, dim, s + i * lds, lds);
    }
}

void k_qk_pairs(const float* q, std::size_t ldq, const float* kt, std::size_t ldkt, std::size_t rows, std::size_t keys,
                std::size_t dim, float* s, std::size_t lds) {
    constexpr std::size_t W = kVectors * 16;
    const std::size_t padded = (keys + kPanel - 1) / kPanel * kPanel;
    std::size_t j = 0;
    for (; j + W <= padded; j += W) pairs_rows<kRows, kVectors>(q, ldq, kt + j, ldkt, rows, dim, s + j, lds);
    for (; j < padded; j += 16) pairs_rows<kRows, 1>(q, ldq, kt + j, ldkt, rows, dim, s + j, lds);
}

// Decoding: R rows x C keys (C = 4, or 1 for the keys left over), 32 head dimensions per step. The rows' q
// pairs come converted (qv: row r's step t at qv[r * steps + t], zero past dim), the four
// keys' sums of a row are stored by the avx512 attention traits' four-way horizontal sum.
template <int R, int C, bool Pf>
inline void direct_tile(const __m512i* qv, std::size_t steps, const bfloat16* k0, std::ptrdiff_t ldk,
                        std::size_t dim, float* s, std::size_t lds, __mmask32& sub, span_prefetcher& side) {
    __m512 a[R][C];
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < C; ++c) a[r][c] = _mm512_setzero_ps();
    // The four key rows kPrefetchRows ahead, four lines per step (a step reads one line of each row).
    [[maybe_unused]] line_prefetcher<AttnF32> pf{
        Pf ? reinterpret_cast<const char*>(k0 + AttnF32::kPrefetchRows * ldk) : nullptr, ldk * sp(sizeof(bfloat16)),
        dim * sizeof(bfloat16), Pf ? 4u : 0u};
    // The subnormal test of every key vector (min_subnormal_key), reduced to a mask once per tile.
    __m512i seen = _mm512_set1_epi16(-1);
    // 32 head dimensions per step, the last one masked (lanes past dim load as zero and add nothing).
    for (std::size_t d = 0, t = 0; d < dim; d += 32, ++t) {
        const std::size_t n = dim - d < 32 ? dim - d : 32;
        const __mmask32 mk = _cvtu32_mask32(n == 32 ? ~0u : (1u << n) - 1u);
        if constexpr (Pf) pf.next();
        side.next();
        __m512i kv[C];
NX_UNROLL(4)
        for (int c = 0; c < C; ++c) {
            kv[c] = _mm512_maskz_loadu_epi16(mk, k0 + c * ldk + sp(d));
            seen = min_subnormal_key(seen, kv[c]);
        }
NX_UNROLL(8)
        for (int r = 0; r < R; ++r) {
            const __m512i q = _mm512_loadu_si512(qv + std::size_t(r) * steps + t);
NX_UNROLL(4)
            for (int c = 0; c < C; ++c) a[r][c] = dp(a[r][c], q, kv[c]);
        }
    }
    sub |= subnormal_keys(seen);
NX_UNROLL(8)
    for (int r = 0; r < R; ++r) {
        if constexpr (C == 4)
            AttnF32::store_hsum4(s + r * lds, a[r][0], a[r][1], a[r][2], a[r][3]);
        else
            s[r * lds] = hsum(a[r][0]);
    }
}

template <int R, int C, bool Pf>
inline void direct_rows(const __m512i* qv, std::size_t steps, const bfloat16* k0, std::ptrdiff_t ldk,
                        std::size_t rows, std::size_t dim, float* s, std::size_t lds, __mmask32& sub,
                        span_prefetcher& side) {
    std::size_t i = 0;
    for (; i + R <= rows; i += R)
        direct_tile<R, C, Pf>(qv + i * steps, steps, k0, ldk, dim, s + i * lds, lds, sub, side);
    if constexpr (R > 1) {
        if (i < rows)
            direct_rows<R - 1, C, Pf>(qv + i * steps, steps, k0, ldk, rows - i, dim, s + i * lds, lds, sub, side);
    }
}

// The rows' q pairs come converted by the caller (bf16_q_pairs, kernel_table.hpp), once for all the calls of a
// task: converted here per call, a vpermt2w per 32 head dimensions and row, it took a fifth of the score
// kernels' time in a paged decode's calls of 8 keys (two threads: 30.3 -> 27.0 ms without it).
bool k_qk_direct_pairs(const std::uint32_t* qw, std::size_t ldqw, const bfloat16* k, std::ptrdiff_t ldk,
                       std::size_t rows, std::size_t keys, std::size_t dim, float* s, std::size_t lds,
                       std::size_t ahead, prefetch_lines pf) {
    const auto* qv = reinterpret_cast<const __m512i*>(qw);
    const std::size_t steps = ldqw / 16;
    __mmask32 sub = 0;
    // The caller's lines a few at each step (32 head dimensions) of every tile of the four-key groups.
    span_prefetcher side(pf, keys / 4 * ((rows + kDirectRows - 1) / kDirectRows) * ((dim + 31) / 32));
    std::size_t j = 0;
    // The prefetch reaches past the call's key rows only into the `ahead` rows that follow them (as avx512's
    // qk_direct, generic/attention.hpp).
    constexpr std::size_t reach = std::size_t(AttnF32::kPrefetchRows) + 4;
    for (; j + 4 <= keys && j + reach <= keys + ahead; j += 4)
        direct_rows<kDirectRows, 4, true>(qv, steps, k + sp(j) * ldk, ldk, rows, dim, s + j, lds, sub, side);
    for (; j + 4 <= keys; j += 4)
        direct_rows<kDirectRows, 4, false>(qv, steps, k + sp(j) * ldk, ldk, rows, dim, s + j, lds, sub, side);
    for (; j < keys; ++j)
        direct_rows<kDirectRows, 1, false>(qv, steps, k + sp(j) * ldk, ldk, rows, dim, s + j, lds, sub, side);
    side.finish();
    return sub == 0;
}

}  // namespace
}  // namespace normexp::avx512bf16

namespace normexp {
void avx512bf16_add_attention(kernel_table& t) {
    t.bf16_dot.pack_kt_pairs = avx512bf16::k_pack_kt_pairs;
    t.bf16_dot.qk_pairs = avx512bf16::k_qk_pairs;
    t.bf16_dot.qk_direct_pairs = avx512bf16::k_qk_direct_pairs;
}
}  // namespace normexp
