// AMX attention entries: scores of a bfloat16 q against a bfloat16 K on the tile unit (AMX-TILE, AMX-BF16:
// tdpbf16ps). Compiled with the avx512bf16 flags plus -mamx-tile -mamx-bf16 (cmake/normexpIsa.cmake). Exports
// only avx512amx_add_attention (isa_parts.hpp), which the dispatcher calls on the avx512 table after
// avx512bf16_add_attention where the CPU and the OS allow AMX (dispatch.cpp): it replaces qk_pairs and
// qk_direct_pairs and keeps avx512bf16's pack_kt_pairs, whose K^T words are the tile unit's B layout.
//
// tdpbf16ps C, A, B (C: M x N float32, A: M x 2K bfloat16, B: K x 2N bfloat16 in pairs): C[m][n] +=
// sum over k of A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1], bfloat16 subnormal inputs read as zero and
// subnormal results flushed to zero, as vdpbf16ps; its summation is its own (neither pair order of vdpbf16ps:
// measured, the bits differ), and tighter: on an Intel Xeon the scores of 2000 random 4 x 16 x 128 blocks were
// within 0.97 u sum|q_d k_d| (u = 2^-24) of the exact sum, where vdpbf16ps's chain was within 2.19. The tests
// (tests/cpp/test_attention_bf16.cpp) hold both entries to qk's bound, (dim + 1) u sum|q_d k_d|, plus the
// flushes of bf16_dot_kernels (kernel_table.hpp). One instruction does 16 x 16 x 32 multiplies: an Intel Xeon
// core ran four independent chains at 3049 GFLOP/s, 14x its float32 FMA peak (docs/benchmarks.md).
//
//  * qk_pairs (many rows): S = Q K^T with A = q rows in bfloat16 (a tile of 16 rows x 32 head dimensions) and
//    B = the pack_kt_pairs words (16 pairs x 16 keys), 2 x 2 tiles of C (32 rows x 32 keys) per step.
//  * qk_direct_pairs (decoding): S^T = K Q^T with A = 16 key rows read in place (any row stride: no packing)
//    and B = the q pair words transposed (16 pairs x the rows), so one instruction takes 16 keys whatever
//    the number of rows (<= 16); C (keys x rows) is stored and read back transposed into s. The key rows are
//    also read by the vector unit for the bfloat16 subnormal test (the entry's contract).
// Head dimensions that are not a multiple of 32 (a tile's 64-byte row), larger than kMaxDim, and more than 16
// direct rows go to the vdpbf16ps entries (saved by avx512amx_add_attention).
//
// The tile configuration is per thread: each call loads its own (ldtilecfg) and releases the tiles on return
// (tilerelease), so it neither depends on nor leaves state for other AMX code in the thread.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../isa_parts.hpp"

namespace normexp::avx512amx {
namespace {

constexpr std::size_t kMaxDim = 256;  // head dimensions on the tiles (stack buffers below); more: vdpbf16ps
constexpr std::size_t kTileRows = 16;
constexpr std::ptrdiff_t kPrefetchRows = 32;  // decoding: key rows prefetched ahead, as avx512's qk_direct

bf16_dot_kernels vdp;  // avx512bf16's entries, for what the tiles do not take (set before the table is used)

inline std::ptrdiff_t sp(std::size_t v) { return static_cast<std::ptrdiff_t>(v); }

// The palette-1 configuration (Intel SDM, LDTILECFG): per tile its rows and bytes per row.
struct alignas(64) tile_config {
    std::uint8_t palette;
    std::uint8_t start_row;
    std::uint8_t reserved[14];
    std::uint16_t colsb[16];
    std::uint8_t rows[16];
};
static_assert(sizeof(tile_config) == 64, "LDTILECFG reads 64 bytes");

// Loads a configuration for the scope of a call; the tiles are released (their state back to INIT) at its end.
struct tile_scope {
    explicit tile_scope(const tile_config& c) { _tile_loadconfig(&c); }
    ~tile_scope() { _tile_release(); }
    tile_scope(const tile_scope&) = delete;
    tile_scope& operator=(const tile_scope&) = delete;
};

tile_config config(std::uint8_t palette_rows[8], const std::uint16_t colsb[8]) {
    tile_config c;
    std::memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; ++t) {
        c.rows[t] = palette_rows[t];
        c.colsb[t] = colsb[t];
    }
    return c;
}

// bfloat16 subnormals by a running minimum (as avx512bf16's kernels): t = 2 h is 0 for a zero, 2 .. 0xFE for a
// subnormal and at least 0x100 otherwise, so t - 1 (mod 2^16) is below 0xFF exactly for the subnormals.
inline __m512i min_subnormal_key(__m512i acc, __m512i v) {
    const __m512i t = _mm512_add_epi16(v, v);
    return _mm512_min_epu16(acc, _mm512_add_epi16(t, _mm512_set1_epi16(-1)));
}
inline bool any_subnormal(__m512i acc) { return _mm512_cmplt_epu16_mask(acc, _mm512_set1_epi16(0xFF)) != 0; }

// ---- qk_pairs ----------------------------------------------------------------------------------------------
// Tiles: C 0..3 (row tile a, key tile b at 2a + b), A 4..5 (row tiles), B 6..7 (key tiles); all 16 x 64 bytes.
// NR row tiles x NK key tiles of one 32 x 32 step; q rows as bfloat16 at qb (ldb elements apart), kt the
// words of keys [0, 16 NK), C stored to s (rows `valid` of the last row tile; the rest through a buffer).
template <int NR, int NK>
void pairs_step(const std::uint16_t* qb, std::size_t ldb, const float* kt, std::size_t ldkt, std::size_t steps,
                std::size_t valid, float* s, std::size_t lds) {
    _tile_zero(0);
    if (NK > 1) _tile_zero(1);
    if (NR > 1) _tile_zero(2);
    if (NR > 1 && NK > 1) _tile_zero(3);
    const std::size_t qstride = ldb * sizeof(std::uint16_t), kstride = ldkt * sizeof(float);
    for (std::size_t t = 0; t < steps; ++t) {
        _tile_loadd(4, qb + 32 * t, qstride);
        if (NR > 1) _tile_loadd(5, qb + 16 * ldb + 32 * t, qstride);
        _tile_loadd(6, kt + 16 * t * ldkt, kstride);
        if (NK > 1) _tile_loadd(7, kt + 16 * t * ldkt + 16, kstride);
        _tile_dpbf16ps(0, 4, 6);
        if (NK > 1) _tile_dpbf16ps(1, 4, 7);
        if (NR > 1) _tile_dpbf16ps(2, 5, 6);
        if (NR > 1 && NK > 1) _tile_dpbf16ps(3, 5, 7);
    }
    // Row tile a: whole (16 rows) unless it is the last one (a = NR - 1) and valid < 16, which goes through a
    // buffer so that no row past the rows is written. (The tile number must be a literal: a macro.)
    const std::size_t sstride = lds * sizeof(float);
    alignas(64) float buf[kTileRows * kTileRows];
#define NX_STORE_C(c, a, b)                                                                                     \
    do {                                                                                                        \
        float* dst = s + (a) * kTileRows * lds + (b) * kTileRows;                                               \
        const std::size_t n = (a) + 1 == NR ? valid : kTileRows;                                                \
        if (n == kTileRows) {                                                                                   \
            _tile_stored(c, dst, sstride);                                                                      \
        } else {                                                                                                \
            _tile_stored(c, buf, kTileRows * sizeof(float));                                                    \
            for (std::size_t i = 0; i < n; ++i) std::memcpy(dst + i * lds, buf + i * kTileRows, sizeof buf / 16); \
        }                                                                                                       \
    } while (false)
    NX_STORE_C(0, 0, 0);
    if constexpr (NK > 1) NX_STORE_C(1, 0, 1);
    if constexpr (NR > 1) NX_STORE_C(2, 1, 0);
    if constexpr (NR > 1 && NK > 1) NX_STORE_C(3, 1, 1);
#undef NX_STORE_C
}

// q rows (float32 holding bfloat16 values: the bfloat16 is the high half, exactly) as bfloat16, n <= 32 rows
// of dim into qb (ldb apart); rows n .. 32 zero.
void q_rows_bf16(const float* q, std::size_t ldq, std::size_t n, std::size_t dim, std::uint16_t* qb, std::size_t ldb) {
    for (std::size_t i = 0; i < 2 * kTileRows; ++i) {
        std::uint16_t* row = qb + i * ldb;
        if (i >= n) {
            std::memset(row, 0, dim * sizeof(std::uint16_t));
            continue;
        }
        const float* src = q + i * ldq;
        for (std::size_t d = 0; d < dim; d += 16) {
            const __m512i v = _mm512_loadu_si512(src + d);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + d), _mm512_maskz_cvtepi32_epi16(0xFFFF, _mm512_maskz_srli_epi32(0xFFFF, v, 16)));
        }
    }
}

void k_qk_pairs(const float* q, std::size_t ldq, const float* kt, std::size_t ldkt, std::size_t rows, std::size_t keys,
                std::size_t dim, float* s, std::size_t lds) {
    if (dim % 32 != 0 || dim > kMaxDim) {
        vdp.qk_pairs(q, ldq, kt, ldkt, rows, keys, dim, s, lds);
        return;
    }
    const std::size_t steps = dim / 32, padded = (keys + 15) / 16 * 16;
    std::uint8_t tr[8];
    std::uint16_t cb[8];
    for (int t = 0; t < 8; ++t) tr[t] = kTileRows, cb[t] = 64;
    const tile_scope scope(config(tr, cb));
    alignas(64) std::uint16_t qb[2 * kTileRows * kMaxDim];
    for (std::size_t i = 0; i < rows; i += 2 * kTileRows) {
        const std::size_t n = rows - i < 2 * kTileRows ? rows - i : 2 * kTileRows;
        q_rows_bf16(q + i * ldq, ldq, n, dim, qb, dim);
        const bool two = n > kTileRows;
        const std::size_t valid = two ? n - kTileRows : n;
        float* si = s + i * lds;
        std::size_t j = 0;
        for (; j + 32 <= padded; j += 32)
            two ? pairs_step<2, 2>(qb, dim, kt + j, ldkt, steps, valid, si + j, lds)
                : pairs_step<1, 2>(qb, dim, kt + j, ldkt, steps, valid, si + j, lds);
        if (j < padded)
            two ? pairs_step<2, 1>(qb, dim, kt + j, ldkt, steps, valid, si + j, lds)
                : pairs_step<1, 1>(qb, dim, kt + j, ldkt, steps, valid, si + j, lds);
    }
}

// ---- qk_direct_pairs -----------------------------------------------------------------------------------------
// Tiles: C 0..1 (two groups of keys x the rows), A 2..3 (their key rows, 64 bytes of head dimensions), B 4 (q
// pairs transposed: 16 pairs x the rows). One configuration per group height (16, or the keys left over).
tile_config direct_config(std::size_t rows, std::size_t nk) {
    std::uint8_t tr[8] = {};
    std::uint16_t cb[8] = {};
    tr[0] = tr[1] = tr[2] = tr[3] = static_cast<std::uint8_t>(nk);
    cb[0] = cb[1] = static_cast<std::uint16_t>(rows * sizeof(float));
    cb[2] = cb[3] = 64;
    tr[4] = kTileRows;
    cb[4] = static_cast<std::uint16_t>(rows * sizeof(float));
    return config(tr, cb);
}

// s[i * lds + j] = c[j * 16 + i] for j < nk, i < rows (c: a stored C tile, keys x rows, 64 bytes per key).
void store_transposed(const float* c, std::size_t nk, std::size_t rows, float* s, std::size_t lds) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    const __mmask16 m = static_cast<__mmask16>(nk >= 16 ? 0xFFFFu : (1u << nk) - 1u);
    for (std::size_t i = 0; i < rows; ++i)
        _mm512_mask_storeu_ps(s + i * lds, m, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, c + i, 4));
}

// One or two groups of nk keys (k0: the first group's rows; the second group's 16 rows further) against the
// rows; the subnormal test of every key row read; prefetch: the rows kPrefetchRows ahead of each group.
template <bool Two>
void direct_groups(const std::uint32_t* qt, std::size_t steps, const std::uint16_t* k0, std::ptrdiff_t ldk,
                   std::size_t nk, std::size_t rows, std::size_t dim, bool pf, float* s, std::size_t lds,
                   __m512i& seen) {
    const std::uint16_t* k1 = k0 + 16 * ldk;
    const std::size_t kstride = static_cast<std::size_t>(ldk) * sizeof(std::uint16_t);
    _tile_zero(0);
    if (Two) _tile_zero(1);
    for (std::size_t t = 0; t < steps; ++t) {
        _tile_loadd(2, k0 + 32 * t, kstride);
        if (Two) _tile_loadd(3, k1 + 32 * t, kstride);
        _tile_loadd(4, qt + t * kTileRows * kTileRows, kTileRows * sizeof(std::uint32_t));
        _tile_dpbf16ps(0, 2, 4);
        if (Two) _tile_dpbf16ps(1, 3, 4);
    }
    // The vector unit meanwhile: the subnormal test and the prefetch of the rows ahead.
    const std::size_t groups = Two ? 2 : 1;
    for (std::size_t g = 0; g < groups; ++g) {
        const std::uint16_t* kg = g == 0 ? k0 : k1;
        for (std::size_t r = 0; r < nk; ++r) {
            const std::uint16_t* row = kg + sp(r) * ldk;
            if (pf)
                for (std::size_t b = 0; b < dim * sizeof(std::uint16_t); b += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchRows * ldk) + b, _MM_HINT_T0);
            for (std::size_t d = 0; d < dim; d += 32) seen = min_subnormal_key(seen, _mm512_loadu_si512(row + d));
        }
    }
    alignas(64) float c[kTileRows * kTileRows];
    _tile_stored(0, c, kTileRows * sizeof(float));
    store_transposed(c, nk, rows, s, lds);
    if (Two) {
        _tile_stored(1, c, kTileRows * sizeof(float));
        store_transposed(c, nk, rows, s + kTileRows, lds);
    }
}

bool k_qk_direct_pairs(const std::uint32_t* qw, std::size_t ldqw, const bfloat16* k, std::ptrdiff_t ldk,
                       std::size_t rows, std::size_t keys, std::size_t dim, float* s, std::size_t lds,
                       std::size_t ahead) {
    if (dim % 32 != 0 || dim > kMaxDim || rows > kTileRows)
        return vdp.qk_direct_pairs(qw, ldqw, k, ldk, rows, keys, dim, s, lds, ahead);
    if (rows == 0 || keys == 0) return true;
    const std::size_t steps = dim / 32;
    // B: step t's tile, pair p of row i at qt[t][p][i] (rows words used of each 16).
    alignas(64) std::uint32_t qt[kMaxDim / 32][kTileRows][kTileRows];
    for (std::size_t t = 0; t < steps; ++t)
        for (std::size_t p = 0; p < kTileRows; ++p)
            for (std::size_t i = 0; i < rows; ++i) qt[t][p][i] = qw[i * ldqw + t * kTileRows + p];
    const auto* kb = reinterpret_cast<const std::uint16_t*>(k);
    __m512i seen = _mm512_set1_epi16(-1);
    const std::size_t whole = keys / kTileRows * kTileRows;
    std::size_t j = 0;
    if (whole > 0) {
        const tile_scope scope(direct_config(rows, kTileRows));
        // The prefetch reaches past the call's key rows only into the `ahead` rows that follow them.
        auto pf = [&](std::size_t j0, std::size_t n) { return j0 + n + kPrefetchRows <= keys + ahead; };
        for (; j + 2 * kTileRows <= whole; j += 2 * kTileRows)
            direct_groups<true>(&qt[0][0][0], steps, kb + sp(j) * ldk, ldk, kTileRows, rows, dim, pf(j, 32), s + j,
                                lds, seen);
        if (j < whole) {
            direct_groups<false>(&qt[0][0][0], steps, kb + sp(j) * ldk, ldk, kTileRows, rows, dim, pf(j, 16), s + j,
                                 lds, seen);
            j += kTileRows;
        }
    }
    if (j < keys) {  // the keys left over: a configuration of that many rows (no row past them is read)
        const tile_scope scope(direct_config(rows, keys - j));
        direct_groups<false>(&qt[0][0][0], steps, kb + sp(j) * ldk, ldk, keys - j, rows, dim, false, s + j, lds, seen);
    }
    return !any_subnormal(seen);
}

}  // namespace
}  // namespace normexp::avx512amx

namespace normexp {
void avx512amx_add_attention(kernel_table& t) {
    avx512amx::vdp = t.bf16_dot;
    t.bf16_dot.qk_pairs = avx512amx::k_qk_pairs;
    t.bf16_dot.qk_direct_pairs = avx512amx::k_qk_direct_pairs;
}
}  // namespace normexp
