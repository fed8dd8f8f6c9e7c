// AMX attention entries: bfloat16 attention of many query rows on the tile unit (AMX-TILE, AMX-BF16: tdpbf16ps).
// Compiled with the avx512bf16 flags plus -mamx-tile -mamx-bf16 (cmake/normexpIsa.cmake). Exports only
// avx512amx_add_attention (isa_parts.hpp), which the dispatcher calls on the avx512 table after
// avx512bf16_add_attention where the CPU and the OS allow AMX (dispatch.cpp): it replaces qk_pairs, adds
// pack_v_pairs and pv_pairs, keeps avx512bf16's pack_kt_pairs (its K^T words are the tile unit's B layout) and
// removes qk_direct_pairs, so that decodes take the float32 FMA kernels on widened rows (attn_kv_bf16).
//
// tdpbf16ps C, A, B (C: M x N float32, A: M x 2K bfloat16, B: K x 2N bfloat16 in pairs): C[m][n] +=
// sum over k of A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1], bfloat16 subnormal inputs read as zero and
// subnormal results flushed to zero, as vdpbf16ps; its summation is its own (neither pair order of vdpbf16ps:
// measured, the bits differ), and tighter: on an Intel Xeon the scores of 2000 random 4 x 16 x 128 blocks were
// within 0.97 u sum|q_d k_d| (u = 2^-24) of the exact sum, where vdpbf16ps's chain was within 2.19. The tests
// (tests/cpp/test_attention_bf16.cpp) hold the scores to qk_direct_pairs' bound, (2 ceil(dim / 32) + 4) u
// sum|q_d k_d| plus the flushes (bf16_dot_kernels, kernel_table.hpp). One instruction does 16 x 16 x 32
// multiplies: an Intel Xeon core ran four independent chains at 3049 GFLOP/s, 14x its float32 FMA peak.
//
//  * qk_pairs: S = Q K^T with A = q rows in bfloat16 (a tile of 16 rows x 32 head dimensions) and B = the
//    pack_kt_pairs words (16 pairs x 16 keys), 2 x 2 tiles of C (32 rows x 32 keys) per step. Head dimensions
//    that are not a multiple of 32 (a tile's 64-byte row) or larger than kMaxDim go to the vdpbf16ps entry
//    (saved by avx512amx_add_attention).
//  * pack_v_pairs, pv_pairs: O = alpha O + P V with A = P in three exact bfloat16 parts and B = V in pairs of
//    keys (below). A V block with a value outside [2^-64, 2^120) in magnitude (zeros aside: subnormals, inf and
//    NaN included) is refused (pack_v_pairs: false) and takes the float32 kernels. The unit reads subnormals as
//    zero and flushes products and sums below 2^-126 (V of 2^-120 under weights near 2^-7 lost 83% of an
//    output: with |v| >= 2^-64 only weights below 2^-62 of the row's largest can flush); it adds the products
//    of an instruction in its own order, where partial sums of values from 2^126 up overflowed to inf or NaN
//    that the float32 kernels' sequential sums never reach (below 2^120, 33 terms cannot overflow); and a zero
//    part of a weight times an infinite value would add NaN where the float32 kernels give the infinity.
//  * Decoding (a few rows, each key row read once from memory) stays on the FMA pipes: scores on the tiles took
//    1.4x the time of a paged bfloat16 decode in cache (16 sequences of 256 keys, pages of 16, one thread:
//    3.04 against 2.11 ms), the calls of 8-16 keys paying the configuration, the transposes of q and of the
//    scores, and the subnormal test of K for a few tile instructions each.
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

bf16_dot_kernels vdp;  // avx512bf16's entries, for what the tiles do not take (set before the table is used)

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

// Every tile 64 bytes wide (16 float32 or 32 bfloat16 per row) and `rows` high, but tile 7 always 16: qk_pairs
// takes config(16); pv_pairs config(n) for a row tile of n rows, whose B (tile 7, 16 pair rows) does not shrink.
tile_config config(std::size_t rows) {
    tile_config c;
    std::memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; ++t) {
        c.rows[t] = static_cast<std::uint8_t>(t == 7 ? kTileRows : rows);
        c.colsb[t] = 64;
    }
    return c;
}

#include "../avx512bf16/subnormal.hpp"  // min_subnormal_key, subnormal_keys

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
    const tile_scope scope(config(kTileRows));
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

// ---- pack_v_pairs, pv_pairs --------------------------------------------------------------------------------
// P V with A = P (16 rows x 32 keys in bfloat16) and B = V in pairs of keys (16 pair rows x 16 columns), C = O.
// P is float32; three exact bfloat16 parts by truncation (x = hi + mid + lo: hi keeps the first 8 bits of the
// significand, x - hi is exact and holds at most 16, and so on), so the products with V are exact and the
// result keeps float32's accuracy (two parts would leave 2^-16 relative per weight).

// Words of two V rows (a, b; b = null: zeros), columns [c, c + 32) or the 16 of the last piece, interleaved:
// word n = a[n] | b[n] << 16. kInterleave picks the halves for vpermt2w.
alignas(64) constexpr std::uint16_t kInterleaveLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                         8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
alignas(64) constexpr std::uint16_t kInterleaveHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                         24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};

bool k_pack_v_pairs(const bfloat16* const* rows, std::size_t keys, std::size_t dv, std::uint32_t* vp,
                    std::size_t ldvp) {
    if (dv % 16 != 0) return false;
    const __m512i lo = _mm512_load_si512(kInterleaveLo), hi = _mm512_load_si512(kInterleaveHi);
    const std::size_t pairs = (keys + 31) / 32 * 16;
    __m512i seen = _mm512_set1_epi16(-1), top = _mm512_setzero_si512();
    for (std::size_t k = 0; k < pairs; ++k) {
        const auto* a = 2 * k < keys ? reinterpret_cast<const std::uint16_t*>(rows[2 * k]) : nullptr;
        const auto* b = 2 * k + 1 < keys ? reinterpret_cast<const std::uint16_t*>(rows[2 * k + 1]) : nullptr;
        std::uint32_t* out = vp + k * ldvp;
        for (std::size_t c = 0; c < dv; c += 32) {
            const __mmask32 m = _cvtu32_mask32(dv - c >= 32 ? ~0u : 0xFFFFu);
            const __m512i va = a ? _mm512_maskz_loadu_epi16(m, a + c) : _mm512_setzero_si512();
            const __m512i vb = b ? _mm512_maskz_loadu_epi16(m, b + c) : _mm512_setzero_si512();
            seen = min_subnormal_key(min_subnormal_key(seen, va), vb);
            top = _mm512_max_epu16(top, _mm512_max_epu16(_mm512_add_epi16(va, va), _mm512_add_epi16(vb, vb)));
            _mm512_storeu_si512(out + c, _mm512_permutex2var_epi16(va, lo, vb));
            if (dv - c >= 32) _mm512_storeu_si512(out + c + 16, _mm512_permutex2var_epi16(va, hi, vb));
        }
    }
    // The range of V the unit takes (min_subnormal_key's running minimum of 2 h - 1 and the maximum of 2 h, the
    // sign shifted out): nonzero magnitudes from 2^-64 (2 h - 1 >= 0x3EFF) up to below 2^120 (2 h < 0xF700);
    // zeros, and no subnormal, inf or NaN (pack_v_pairs in kernel_table.hpp).
    return _mm512_cmplt_epu16_mask(seen, _mm512_set1_epi16(0x3EFF)) == 0 &&
           _mm512_cmpge_epu16_mask(top, _mm512_set1_epi16(static_cast<short>(0xF700))) == 0;
}

constexpr std::size_t kPvChunk = 256;  // keys of P split at a time (three parts of 16 rows on the stack)

// Rows [0, n) (n <= 16) of p, keys [0, w) (w <= kPvChunk, zeros up to wp = round_up(w, 32)), as the three parts.
void split_p(const float* p, std::size_t ldp, std::size_t n, std::size_t w, std::size_t wp, std::uint16_t* parts) {
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                         23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i keep = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    const std::size_t plane = kTileRows * kPvChunk;
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = p + i * ldp;
        for (std::size_t j = 0; j < wp; j += 32) {
            const __mmask16 m0 = static_cast<__mmask16>(j >= w ? 0u : w - j >= 16 ? 0xFFFFu : (1u << (w - j)) - 1u);
            const __mmask16 m1 = static_cast<__mmask16>(j + 16 >= w ? 0u : w - j - 16 >= 16 ? 0xFFFFu : (1u << (w - j - 16)) - 1u);
            __m512i x[2] = {_mm512_castps_si512(_mm512_maskz_loadu_ps(m0, row + j)),
                            _mm512_castps_si512(_mm512_maskz_loadu_ps(m1, row + j + 16))};
            __m512i part[3][2];
            for (int h = 0; h < 2; ++h) {
                part[0][h] = _mm512_and_si512(x[h], keep);
                __m512 r = _mm512_sub_ps(_mm512_castsi512_ps(x[h]), _mm512_castsi512_ps(part[0][h]));
                part[1][h] = _mm512_and_si512(_mm512_castps_si512(r), keep);
                r = _mm512_sub_ps(r, _mm512_castsi512_ps(part[1][h]));
                part[2][h] = _mm512_and_si512(_mm512_castps_si512(r), keep);
            }
            for (int t = 0; t < 3; ++t)
                _mm512_storeu_si512(parts + t * plane + i * kPvChunk + j,
                                    _mm512_permutex2var_epi16(part[t][0], odd, part[t][1]));
        }
    }
}

// C tiles 0 .. NC - 1: columns [c, c + 16 NC) of the row tile's o; A tiles 4, 5, 6 the three parts of P; B tile 7
// (vp's pair rows [16 t, 16 t + 16) at step t). A step's words past the call's keys are V's later keys, finite
// (pack_v_pairs), against weights split_p made zero: they add nothing.
template <int NC>
void pv_columns(const std::uint16_t* parts, std::size_t ksteps, const std::uint32_t* vp, std::size_t ldvp, float* o,
                std::size_t ldo) {
    const std::size_t ostride = ldo * sizeof(float), vstride = ldvp * sizeof(std::uint32_t);
    const std::size_t pstride = kPvChunk * sizeof(std::uint16_t), plane = kTileRows * kPvChunk;
    _tile_loadd(0, o, ostride);
    if (NC > 1) _tile_loadd(1, o + 16, ostride);
    if (NC > 2) _tile_loadd(2, o + 32, ostride);
    if (NC > 3) _tile_loadd(3, o + 48, ostride);
    for (std::size_t t = 0; t < ksteps; ++t) {
        _tile_loadd(4, parts + 32 * t, pstride);
        _tile_loadd(5, parts + plane + 32 * t, pstride);
        _tile_loadd(6, parts + 2 * plane + 32 * t, pstride);
        const std::uint32_t* b = vp + 16 * t * ldvp;
#define NX_PV_TILE(c)                                                                                           \
    do {                                                                                                        \
        _tile_loadd(7, b + 16 * (c), vstride);                                                                  \
        _tile_dpbf16ps(c, 4, 7);                                                                                \
        _tile_dpbf16ps(c, 5, 7);                                                                                \
        _tile_dpbf16ps(c, 6, 7);                                                                                \
    } while (false)
        NX_PV_TILE(0);
        if (NC > 1) NX_PV_TILE(1);
        if (NC > 2) NX_PV_TILE(2);
        if (NC > 3) NX_PV_TILE(3);
#undef NX_PV_TILE
    }
    _tile_stored(0, o, ostride);
    if (NC > 1) _tile_stored(1, o + 16, ostride);
    if (NC > 2) _tile_stored(2, o + 32, ostride);
    if (NC > 3) _tile_stored(3, o + 48, ostride);
}

void k_pv_pairs(const float* p, std::size_t ldp, const std::uint32_t* vp, std::size_t ldvp, std::size_t rows,
                std::size_t keys, std::size_t dv, const float* alpha, float* o, std::size_t ldo) {
    for (std::size_t i = 0; i < rows; ++i) {  // o = alpha o (the tiles then add P V); alpha = 1 changes no bit
        if (alpha[i] == 1.0f) continue;
        const __m512 a = _mm512_set1_ps(alpha[i]);
        float* oi = o + i * ldo;
        for (std::size_t c = 0; c < dv; c += 16) _mm512_storeu_ps(oi + c, _mm512_mul_ps(a, _mm512_loadu_ps(oi + c)));
    }
    if (keys == 0) return;
    alignas(64) std::uint16_t parts[3 * kTileRows * kPvChunk];
    // Rows [i, i + n) under the configuration of n rows (ldtilecfg costs as much as a few tile instructions:
    // once for the whole tiles, once more for the rows left over).
    auto row_tile = [&](std::size_t i, std::size_t n) {
        for (std::size_t j = 0; j < keys; j += kPvChunk) {
            const std::size_t w = keys - j < kPvChunk ? keys - j : kPvChunk, wp = (w + 31) / 32 * 32;
            split_p(p + i * ldp + j, ldp, n, w, wp, parts);
            const std::uint32_t* vj = vp + j / 2 * ldvp;
            float* oi = o + i * ldo;
            std::size_t c = 0;
            for (; c + 64 <= dv; c += 64) pv_columns<4>(parts, wp / 32, vj + c, ldvp, oi + c, ldo);
            switch ((dv - c) / 16) {
                case 3: pv_columns<3>(parts, wp / 32, vj + c, ldvp, oi + c, ldo); break;
                case 2: pv_columns<2>(parts, wp / 32, vj + c, ldvp, oi + c, ldo); break;
                case 1: pv_columns<1>(parts, wp / 32, vj + c, ldvp, oi + c, ldo); break;
                default: break;
            }
        }
    };
    const std::size_t whole = rows / kTileRows * kTileRows;
    if (whole > 0) {
        const tile_scope scope(config(kTileRows));
        for (std::size_t i = 0; i < whole; i += kTileRows) row_tile(i, kTileRows);
    }
    if (whole < rows) {
        const tile_scope scope(config(rows - whole));
        row_tile(whole, rows - whole);
    }
}

}  // namespace
}  // namespace normexp::avx512amx

namespace normexp {
void avx512amx_add_attention(kernel_table& t) {
    avx512amx::vdp = t.bf16_dot;
    t.bf16_dot.qk_pairs = avx512amx::k_qk_pairs;
    t.bf16_dot.qk_direct_pairs = nullptr;  // decodes: attn_kv_bf16.qk_direct (see the top of this file)
    t.bf16_dot.pack_v_pairs = avx512amx::k_pack_v_pairs;
    t.bf16_dot.pv_pairs = avx512amx::k_pv_pairs;
}
}  // namespace normexp
