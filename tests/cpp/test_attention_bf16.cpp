// The bfloat16 x bfloat16 attention scores (kernel_table.hpp, bf16_dot_kernels; x86 AVX512_BF16's vdpbf16ps in
// kernels/avx512bf16/attention.cpp), against the scalar specification of the instruction's arithmetic written
// here, and against a float64 reference within the stated error bound.
//
// The specification (what vdpbf16ps computes per 32-bit lane, the Intel SDM's pseudocode): for the pair of
// head dimensions (2p, 2p + 1), the odd one first,
//   acc = ftz(fma(daz(q[2p+1]), daz(k[2p+1]), acc));  acc = ftz(fma(daz(q[2p]), daz(k[2p]), acc))
// daz: a bfloat16 subnormal reads as a zero of its sign; ftz: a float32 subnormal result becomes a zero of its
// sign; fma: one rounding to nearest even (a bfloat16 product is exact in float32, so this is the instruction's
// add). qk_pairs must give these bits exactly, for every row and key tail (rows 1..13, keys 1..70, head_dim
// 1..70: the 6-row x 64-key tile, its shorter row tiles and the 16-key panels, odd head dimensions). Negative
// controls: the same chain with the even element first, or without the flushes, differs from the kernel on
// the data below, so the comparison can fail (a kernel that paired or flushed otherwise would be caught).
// qk_direct_pairs (16 lane chains summed by halves) is held to the bound against float64 and to the
// specification within the same bound; pack_kt_pairs to its word layout exactly, padding included.
//
// `test_attention_bf16 amx`: the AMX entries (kernels/avx512amx/, the dispatcher's choice where the CPU and the OS
// have AMX): qk_pairs on the tiles (head dimensions a multiple of 32, up to 256) is held to qk_direct_pairs'
// bound against float64 (the tile unit sums in its own order; the specification's bits do not apply), the other
// head dimensions (the vdpbf16ps entry it falls back to) to the specification as above; row and key counts
// around the 16 x 16 tiles, with a guard row and key that no call may write; P V (check_pv_pairs below); and
// no qk_direct_pairs (decodes keep the float32 kernels).
//
// Tested where the CPU has AVX512_BF16 (the avx512 table's bf16_dot entries) or AMX; elsewhere the test says so.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "half_convert.hpp"

namespace {

using normexp::bfloat16;
namespace d = normexp::detail;

float daz(float x) { return std::fabs(x) < 0x1p-126f ? std::copysign(0.0f, x) : x; }

// One pair step of the specification; even_first / no_flush are the negative controls.
struct spec_mode {
    bool even_first = false;
    bool no_flush = false;
};
float step(float acc, float a, float b, spec_mode m) {
    if (!m.no_flush) {
        a = daz(a);
        b = daz(b);
    }
    const float r = std::fma(a, b, acc);
    return m.no_flush ? r : daz(r);  // ftz of the result is daz's rule
}
// q row (float32 holding bfloat16 values), k row (bfloat16, unit stride), dim: the chain over the pairs.
float spec_dot(const float* q, const bfloat16* k, std::size_t dim, spec_mode m = {}) {
    float acc = 0.0f;
    for (std::size_t p = 0; 2 * p < dim; ++p) {
        const std::size_t e = 2 * p, o = 2 * p + 1;
        const float qe = q[e], ke = d::to_f32(k[e]);
        const float qo = o < dim ? q[o] : 0.0f, ko = o < dim ? d::to_f32(k[o]) : 0.0f;
        if (m.even_first) {
            acc = step(acc, qe, ke, m);
            acc = step(acc, qo, ko, m);
        } else {
            acc = step(acc, qo, ko, m);
            acc = step(acc, qe, ke, m);
        }
    }
    return acc;
}

bool same_bits(float a, float b) { return d::f32_bits(a) == d::f32_bits(b); }

// Random bfloat16 values: normal ones of both signs over a few binades, and (tiny) products that fall below
// 2^-126 together with bfloat16 subnormals, where daz / ftz decide the result.
bfloat16 random_bf16(std::mt19937& g, bool tiny) {
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    if (!tiny) return d::to_bf16(u(g));
    switch (g() % 4) {
        case 0: return {static_cast<std::uint16_t>((g() & 0x8000u) | (1u + g() % 0x7fu))};  // subnormal
        case 1: return d::to_bf16(std::ldexp(u(g), -64));                                  // product ~2^-128
        case 2: return d::to_bf16(std::ldexp(u(g), 60));                                   // brings a subnormal up
        default: return d::to_bf16(u(g));
    }
}

void check_pack(const normexp::bf16_dot_kernels& b) {
    std::mt19937 g(7);
    std::size_t cases = 0;
    for (std::size_t keys = 1; keys <= 40; keys += (keys < 20 ? 1 : 7))
        for (std::size_t dim = 1; dim <= 70; dim += (dim < 36 ? 1 : 11))
            for (int layout = 0; layout < 3; ++layout) {
                // 0: rows dim apart rounded up to even (the transposes); 1: rows an odd number apart; 2: strided.
                const std::ptrdiff_t k_col = layout == 2 ? 3 : 1;
                const std::ptrdiff_t k_row = layout == 0 ? std::ptrdiff_t((dim + 1) / 2 * 2 + 2)
                                             : layout == 1 ? std::ptrdiff_t(dim | 1) + 2
                                                           : std::ptrdiff_t(3 * dim + 1);
                std::vector<bfloat16> k(keys * std::size_t(k_row) + 8);
                for (auto& x : k) x = random_bf16(g, false);
                const std::size_t padded = (keys + 15) / 16 * 16, ldkt = padded + 16, pairs = (dim + 1) / 2;
                std::vector<float> kt(pairs * ldkt + 1, -1.0f);
                b.pack_kt_pairs(k.data(), k_row, k_col, keys, dim, kt.data(), ldkt);
                for (std::size_t p = 0; p < pairs; ++p)
                    for (std::size_t j = 0; j < padded; ++j) {
                        std::uint32_t want = 0;
                        if (j < keys) {
                            const auto at = [&](std::size_t dd) { return k[j * std::size_t(k_row) + dd * std::size_t(k_col)].bits; };
                            want = at(2 * p) | (2 * p + 1 < dim ? std::uint32_t(at(2 * p + 1)) << 16 : 0u);
                        }
                        CHECK(d::f32_bits(kt[p * ldkt + j]) == want, "pack_kt_pairs keys %zu dim %zu layout %d: word (%zu, %zu)",
                              keys, dim, layout, p, j);
                    }
                CHECK(d::f32_bits(kt[pairs * ldkt]) == d::f32_bits(-1.0f), "pack_kt_pairs wrote past its rows");
                ++cases;
            }
    std::printf("pack_kt_pairs: %zu shapes and layouts, words as specified\n", cases);
}

// Whether the AMX entries compute (head_dim) on the tiles: kernels/avx512amx/attention.cpp.
bool on_tiles(bool amx, std::size_t dim) { return amx && dim % 32 == 0 && dim <= 256; }

// The float64 bound of qk_direct_pairs (and of the AMX entries): (2 ceil(dim / 32) + 4) u sum|q k| + sum|q k| over
// the products with a subnormal factor (read as 0) + 2 dim 2^-126 (flushed partial sums). Returns the error in
// units of the bound after checking it (what names the call in a failure).
double check_bound(const float* qi, const bfloat16* kj, std::size_t dim, float got, const char* what, std::size_t rows,
                   std::size_t keys, std::size_t i, std::size_t j) {
    double ref = 0, mag = 0, lost = 0;
    for (std::size_t dd = 0; dd < dim; ++dd) {
        const float kd = d::to_f32(kj[dd]);
        const double t = double(qi[dd]) * double(kd);
        ref += t;
        mag += std::fabs(t);
        if (daz(qi[dd]) != qi[dd] || daz(kd) != kd) lost += std::fabs(t);
    }
    const double u = 0x1p-24, n = 2.0 * double((dim + 31) / 32) + 4.0;
    const double bound = n * u / (1 - n * u) * mag + lost + 2.0 * double(dim) * 0x1p-126;
    const double err = std::fabs(double(got) - ref);
    CHECK(err <= bound, "%s rows %zu keys %zu dim %zu (%zu, %zu): %a vs %a, bound %g", what, rows, keys, dim, i, j,
          double(got), ref, bound);
    const double spec = spec_dot(qi, kj, dim);
    CHECK(std::fabs(double(got) - spec) <= 2 * bound, "%s vs the specification (%zu, %zu)", what, i, j);
    return bound > 0 ? err / bound : 0.0;
}

// qk_pairs bit for bit against the specification (amx: the head dimensions on the tiles within the bound instead);
// the negative controls must find differences.
void check_qk_pairs(const normexp::bf16_dot_kernels& b, bool amx) {
    std::mt19937 g(11);
    std::size_t scores = 0, tiles = 0, even_first_wrong = 0, no_flush_wrong = 0;
    double worst = 0;
    std::vector<std::size_t> row_list, key_list, dim_list;
    for (std::size_t rows = 1; rows <= 13; rows += (rows < 7 ? 1 : 6)) row_list.push_back(rows);
    for (std::size_t keys = 1; keys <= 70; keys += (keys < 18 ? 1 : 13)) key_list.push_back(keys);
    for (std::size_t dim = 1; dim <= 70; dim += (dim < 8 ? 1 : dim < 40 ? 7 : 15)) dim_list.push_back(dim);
    if (amx) {  // around the 16 x 16 tiles and the 32 x 32 steps; head dimensions on the tiles and past them
        row_list.insert(row_list.end(), {16, 17, 31, 32, 33, 47});
        key_list.insert(key_list.end(), {31, 32, 33, 48, 64});
        dim_list.insert(dim_list.end(), {32, 64, 96, 128, 256, 288});
    }
    for (int tiny = 0; tiny < 2; ++tiny)
        for (std::size_t rows : row_list)
            for (std::size_t keys : key_list)
                for (std::size_t dim : dim_list) {
                    const std::size_t ldq = dim + 3, ldk = dim + 1;
                    std::vector<float> q(rows * ldq);
                    for (auto& x : q) x = d::to_f32(random_bf16(g, tiny));
                    std::vector<bfloat16> k(keys * ldk);
                    for (auto& x : k) x = random_bf16(g, tiny);
                    const std::size_t padded = (keys + 15) / 16 * 16, ldkt = padded, lds = padded + 5;
                    std::vector<float> kt((dim + 1) / 2 * ldkt), s((rows + 1) * lds, -7.0f);  // + a guard row
                    b.pack_kt_pairs(k.data(), std::ptrdiff_t(ldk), 1, keys, dim, kt.data(), ldkt);
                    b.qk_pairs(q.data(), ldq, kt.data(), ldkt, rows, keys, dim, s.data(), lds);
                    const bool tiled = on_tiles(amx, dim);
                    for (std::size_t i = 0; i < rows; ++i) {
                        for (std::size_t j = 0; j < keys; ++j) {
                            const float got = s[i * lds + j];
                            const float* qi = q.data() + i * ldq;
                            const bfloat16* kj = k.data() + j * ldk;
                            if (tiled) {
                                worst = std::fmax(worst, check_bound(qi, kj, dim, got, "qk_pairs (AMX)", rows, keys, i, j));
                                ++tiles;
                                continue;
                            }
                            const float want = spec_dot(qi, kj, dim);
                            CHECK(same_bits(got, want), "qk_pairs rows %zu keys %zu dim %zu tiny %d (%zu, %zu): %a, spec %a",
                                  rows, keys, dim, tiny, i, j, double(got), double(want));
                            even_first_wrong += !same_bits(got, spec_dot(qi, kj, dim, {true, false}));
                            no_flush_wrong += !same_bits(got, spec_dot(qi, kj, dim, {false, true}));
                            ++scores;
                        }
                        for (std::size_t j = keys; j < padded; ++j)
                            CHECK(s[i * lds + j] == 0.0f, "qk_pairs: padded key %zu of row %zu is %a", j, i, double(s[i * lds + j]));
                        CHECK(s[i * lds + padded] == -7.0f, "qk_pairs wrote past the padded keys");
                    }
                    for (std::size_t j = 0; j < lds; ++j)
                        CHECK(s[rows * lds + j] == -7.0f, "qk_pairs rows %zu keys %zu dim %zu wrote past its rows", rows, keys, dim);
                }
    CHECK(even_first_wrong > 0, "negative control: the even-first pairing agrees with the kernel everywhere");
    CHECK(no_flush_wrong > 0, "negative control: the chain without daz/ftz agrees with the kernel everywhere");
    std::printf("qk_pairs: %zu scores identical to the specification (negative controls: even-first pairing "
                "differs on %zu, no flush on %zu)\n", scores, even_first_wrong, no_flush_wrong);
    if (amx) {
        CHECK(tiles > 0, "no qk_pairs score came from the tiles");
        std::printf("qk_pairs on the AMX tiles: %zu scores within the bound (largest error %.3f of it)\n", tiles, worst);
    }
}

// qk_direct_pairs (vdpbf16ps) within the bound of float64 and of the specification (check_bound); with and
// without `ahead` the same scores.
void check_qk_direct_pairs(const normexp::bf16_dot_kernels& b) {
    std::mt19937 g(13);
    std::size_t scores = 0;
    double worst = 0;  // the largest error seen, in units of the bound
    for (int tiny = 0; tiny < 2; ++tiny)
        for (std::size_t rows = 1; rows <= 6; ++rows)
            for (std::size_t keys = 1; keys <= 9; ++keys)
                for (std::size_t dim = 1; dim <= 100; dim += (dim < 70 ? 1 : 9)) {
                    const std::size_t ldq = dim + 1;
                    const std::ptrdiff_t ldk = std::ptrdiff_t(dim + 5);
                    std::vector<float> q(rows * ldq);
                    for (auto& x : q) x = d::to_f32(random_bf16(g, tiny));
                    std::vector<bfloat16> k((keys + 40) * std::size_t(ldk));
                    for (auto& x : k) x = random_bf16(g, tiny);
                    const std::size_t lds = keys + 2;
                    std::vector<float> s((rows + 1) * lds, -7.0f), s0((rows + 1) * lds, -7.0f);  // + a guard row
                    // The prefetching tiles (ahead: the rows past the keys may be prefetched) and the others
                    // give the same scores.
                    const std::size_t ahead = (k.size() - keys * std::size_t(ldk)) / std::size_t(ldk);
                    // q as pair words, rows a whole vector apart beyond the least (ldqw: any multiple of 16).
                    const std::size_t ldqw = normexp::bf16_pair_words(dim) + 16;
                    std::vector<std::uint32_t> qw(rows * ldqw, 0xDEADBEEFu);
                    for (std::size_t i = 0; i < rows; ++i) normexp::bf16_q_pairs(q.data() + i * ldq, dim, qw.data() + i * ldqw);
                    // And lines of the caller's to prefetch (prefetch_lines): up to 150 whole lines inside k.
                    const auto k0 = reinterpret_cast<std::uintptr_t>(k.data()), line0 = (k0 + 63) & ~std::uintptr_t(63);
                    const normexp::prefetch_lines side{
                        line0, std::min<std::size_t>((rows * 31 + keys * 7 + dim) % 150,
                                                     (k0 + k.size() * sizeof(bfloat16) - line0) / 64)};
                    b.qk_direct_pairs(qw.data(), ldqw, k.data(), ldk, rows, keys, dim, s.data(), lds, ahead, side);
                    b.qk_direct_pairs(qw.data(), ldqw, k.data(), ldk, rows, keys, dim, s0.data(), lds, 0, {});
                    CHECK(std::memcmp(s.data(), s0.data(), s.size() * sizeof(float)) == 0,
                          "qk_direct_pairs rows %zu keys %zu dim %zu: ahead or pf changed the scores", rows, keys, dim);
                    for (std::size_t i = 0; i < rows; ++i) {
                        for (std::size_t j = 0; j < keys; ++j) {
                            worst = std::fmax(worst, check_bound(q.data() + i * ldq, k.data() + j * std::size_t(ldk), dim,
                                                                 s[i * lds + j], "qk_direct_pairs", rows, keys, i, j));
                            ++scores;
                        }
                        CHECK(s[i * lds + keys] == -7.0f, "qk_direct_pairs wrote past its keys");
                    }
                    for (std::size_t j = 0; j < lds; ++j)
                        CHECK(s[rows * lds + j] == -7.0f, "qk_direct_pairs rows %zu keys %zu dim %zu wrote past its rows", rows, keys, dim);
                }
    std::printf("qk_direct_pairs: %zu scores within the bound (largest error %.3f of it)\n", scores, worst);
}

// The AMX P V (pack_v_pairs, pv_pairs): o = alpha o + p V against float64 within (3 ceil(keys / 32) + 2) u
// (|alpha o| + sum|p v|) (kernel_table.hpp; measured up to 3.2 u at 2 keys, 1.5 at 300) plus what the tile unit loses (a weight part below 2^-126: weights under 2^-110 lose at most 2^-16 of
// themselves; flushed partial sums: 2 keys 2^-126 per output), for rows around the 16-row tiles, key counts
// around the 32-key steps and the 256-key chunks, every dv multiple of 16 up to 272 (column groups of 4, 3, 2,
// 1 tiles), weights of every size down to 0; the words of keys past `keys` (+-2^100, under NaN weights) never reach
// the output; dv not a multiple of 16 and V with a value out of the unit's range are refused by pack_v_pairs.
void check_pv_pairs(const normexp::bf16_dot_kernels& b) {
    std::mt19937 g(17);
    std::uniform_real_distribution<float> u01(0.0f, 1.0f);
    std::size_t outputs = 0;
    double worst = 0;
    for (std::size_t rows : {1, 5, 15, 16, 17, 33})
        for (std::size_t keys : {1, 2, 31, 32, 33, 64, 100, 128, 257, 300})
            for (std::size_t dv : {16, 32, 48, 64, 80, 128, 272}) {
                const std::size_t stored = keys + 20;  // V rows past `keys`: +-2^100, under weights of NaN (unread)
                const std::size_t ldv = dv + 8;
                std::vector<bfloat16> v(stored * ldv);
                for (std::size_t j = 0; j < stored; ++j)
                    for (std::size_t c = 0; c < ldv; ++c)
                        v[j * ldv + c] = j < keys ? random_bf16(g, false) : bfloat16{static_cast<std::uint16_t>(0x7180 | (c % 2) << 15)};
                std::vector<const bfloat16*> vr(stored);
                for (std::size_t j = 0; j < stored; ++j) vr[j] = v.data() + j * ldv;
                const std::size_t ldvp = dv + 16, pairs = (stored + 31) / 32 * 16;
                std::vector<std::uint32_t> vp(pairs * ldvp + 1, 0xDEADBEEFu);
                // Packed with the later rows (the driver packs a whole block; a causal step reads fewer keys).
                CHECK(b.pack_v_pairs(vr.data(), stored, dv, vp.data(), ldvp), "pack_v_pairs keys %zu dv %zu refused", stored, dv);
                for (std::size_t k = 0; k < pairs; ++k)
                    for (std::size_t c = 0; c < dv; ++c) {
                        const std::uint32_t lo = 2 * k < stored ? v[2 * k * ldv + c].bits : 0u;
                        const std::uint32_t hi = 2 * k + 1 < stored ? v[(2 * k + 1) * ldv + c].bits : 0u;
                        CHECK(vp[k * ldvp + c] == (lo | hi << 16), "pack_v_pairs keys %zu dv %zu: word (%zu, %zu)", stored, dv, k, c);
                    }
                CHECK(vp[pairs * ldvp] == 0xDEADBEEFu, "pack_v_pairs wrote past its pair rows");
                const std::size_t ldp = keys + 3, ldo = dv + 5;
                std::vector<float> p(rows * ldp, std::numeric_limits<float>::quiet_NaN()), alpha(rows);
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < keys; ++j) {
                        const int kind = int(g() % 8);
                        p[i * ldp + j] = kind == 0 ? 0.0f : kind == 1 ? std::ldexp(u01(g), -115) : kind == 2 ? 1.0f : u01(g);
                    }
                for (auto& a : alpha) a = u01(g);
                std::vector<float> o((rows + 1) * ldo);
                for (auto& x : o) x = d::to_f32(random_bf16(g, false));
                const std::vector<float> o0 = o;
                b.pv_pairs(p.data(), ldp, vp.data(), ldvp, rows, keys, dv, alpha.data(), o.data(), ldo);
                const double un = 0x1p-24 * double(3 * ((keys + 31) / 32) + 2);
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t c = 0; c < dv; ++c) {
                        double ref = double(alpha[i]) * o0[i * ldo + c], mag = std::fabs(ref), lost = 0;
                        for (std::size_t j = 0; j < keys; ++j) {
                            const double t = double(p[i * ldp + j]) * d::to_f32(v[j * ldv + c]);
                            ref += t;
                            mag += std::fabs(t);
                            if (p[i * ldp + j] < 0x1p-110f) lost += std::fabs(t) * 0x1p-16;
                        }
                        const double bound = un / (1 - un) * mag + lost + 2.0 * double(keys) * 0x1p-126;
                        const double err = std::fabs(double(o[i * ldo + c]) - ref);
                        CHECK(err <= bound, "pv_pairs rows %zu keys %zu dv %zu (%zu, %zu): %a vs %a, bound %g", rows, keys,
                              dv, i, c, double(o[i * ldo + c]), ref, bound);
                        if (bound > 0) worst = std::fmax(worst, err / bound);
                        ++outputs;
                    }
                for (std::size_t i = 0; i <= rows; ++i)
                    for (std::size_t c = (i < rows ? dv : 0); c < ldo; ++c)
                        CHECK(same_bits(o[i * ldo + c], o0[i * ldo + c]), "pv_pairs rows %zu keys %zu dv %zu wrote (%zu, %zu) outside o",
                              rows, keys, dv, i, c);
            }
    // Refusals: dv not a multiple of 16; anywhere in V (either row of a pair) a value other than 0 outside
    // [2^-64, 2^120) in magnitude: bfloat16 subnormals, 2^-65, 2^120, the largest finite, inf, NaN; and the
    // edges that stay in: 2^-64 and the largest below 2^120.
    std::vector<bfloat16> v(40 * 48);
    for (auto& x : v) x = random_bf16(g, false);
    std::vector<const bfloat16*> vr(40);
    for (std::size_t j = 0; j < 40; ++j) vr[j] = v.data() + j * 48;
    std::vector<std::uint32_t> vp(32 * 48);
    CHECK(!b.pack_v_pairs(vr.data(), 40, 24, vp.data(), 48), "pack_v_pairs took dv = 24");
    CHECK(b.pack_v_pairs(vr.data(), 40, 48, vp.data(), 48), "pack_v_pairs refused normal values");
    std::size_t placements = 0;
    for (std::size_t j = 0; j < 40; j += 3)
        for (std::size_t c = 0; c < 48; c += 5) {
            const std::uint16_t keep = v[j * 48 + c].bits;
            const std::uint16_t sign = static_cast<std::uint16_t>(0x8000u * (c % 2));
            for (std::uint16_t bad : {static_cast<std::uint16_t>(1u + (j % 0x7Fu)), std::uint16_t(0x1F00), std::uint16_t(0x7B80),
                                      std::uint16_t(0x7F7F), std::uint16_t(0x7F80), std::uint16_t(0x7FC1)}) {
                v[j * 48 + c].bits = static_cast<std::uint16_t>(sign | bad);
                CHECK(!b.pack_v_pairs(vr.data(), 40, 48, vp.data(), 48), "pack_v_pairs: %04x at (%zu, %zu) not reported",
                      unsigned(sign | bad), j, c);
                ++placements;
            }
            for (std::uint16_t fine : {std::uint16_t(0x1F80), std::uint16_t(0x7B7F), std::uint16_t(0x0000)}) {
                v[j * 48 + c].bits = static_cast<std::uint16_t>(sign | fine);
                CHECK(b.pack_v_pairs(vr.data(), 40, 48, vp.data(), 48), "pack_v_pairs refused %04x at (%zu, %zu)",
                      unsigned(sign | fine), j, c);
            }
            v[j * 48 + c].bits = keep;
            CHECK(b.pack_v_pairs(vr.data(), 40, 48, vp.data(), 48), "pack_v_pairs refused a normal block");
        }
    std::printf("pv_pairs: %zu outputs within the bound (largest error %.3f of it); pack_v_pairs refused dv 24 and "
                "%zu placements of values out of its range\n", outputs, worst, placements);
}

}  // namespace

// pack_kt_pairs and qk_direct_pairs return false exactly when K holds a bfloat16 subnormal (vdpbf16ps would read
// it as zero; the driver then computes those scores with the float32 kernels): one subnormal placed at every
// (key, dimension) of blocks whose keys go through the 16 x 16 transposes and the element-by-element edges, of
// either sign and any fraction; and none reported for zeros, the smallest normal, inf or NaN.
void check_subnormal_report(const normexp::bf16_dot_kernels& b) {
    std::size_t cases = 0;
    const std::uint16_t quiet[] = {0x0000, 0x8000, 0x0080, 0x8080, 0x7F80, 0xFF80, 0x7FC1, 0x3F80};
    const std::uint16_t subs[] = {0x0001, 0x807F, 0x0040};
    const std::uint32_t qrow[32] = {};  // pair words of a zero q row of up to 64 head dimensions
    for (std::size_t keys : {3, 17, 33})
        for (std::size_t dim : {5, 32, 64}) {
            const std::ptrdiff_t ldk = std::ptrdiff_t(dim + (dim % 2));  // even: the transpose path for dim >= 32
            std::vector<bfloat16> k(keys * std::size_t(ldk));
            std::vector<float> kt((dim + 1) / 2 * 48 + 48), s(4 * 48);
            for (std::size_t n = 0; n < k.size(); ++n) k[n].bits = quiet[n % 8];
            CHECK(b.pack_kt_pairs(k.data(), ldk, 1, keys, dim, kt.data(), 48), "pack_kt_pairs keys %zu dim %zu: no subnormal, reported one", keys, dim);
            CHECK(!b.qk_direct_pairs || b.qk_direct_pairs(qrow, normexp::bf16_pair_words(dim), k.data(), ldk, 1, keys, dim, s.data(), 48, 0, {}), "qk_direct_pairs keys %zu dim %zu: no subnormal, reported one", keys, dim);
            for (std::size_t j = 0; j < keys; ++j)
                for (std::size_t e = 0; e < dim; ++e) {
                    bfloat16& x = k[j * std::size_t(ldk) + e];
                    const std::uint16_t keep = x.bits;
                    x.bits = subs[(j + e) % 3];
                    CHECK(!b.pack_kt_pairs(k.data(), ldk, 1, keys, dim, kt.data(), 48), "pack_kt_pairs keys %zu dim %zu: subnormal at (%zu, %zu) not reported", keys, dim, j, e);
                    CHECK(!b.qk_direct_pairs || !b.qk_direct_pairs(qrow, normexp::bf16_pair_words(dim), k.data(), ldk, 1, keys, dim, s.data(), 48, 0, {}), "qk_direct_pairs keys %zu dim %zu: subnormal at (%zu, %zu) not reported", keys, dim, j, e);
                    x.bits = keep;
                    ++cases;
                }
        }
    std::printf("subnormal report: %zu placements, each reported by pack_kt_pairs%s\n", cases,
                b.qk_direct_pairs ? " and qk_direct_pairs" : "");
}

int main(int argc, char** argv) {
    const bool amx_mode = argc > 1 && std::strcmp(argv[1], "amx") == 0;
#if defined(__x86_64__) && !defined(_WIN32)
    // The dispatcher takes the vdpbf16ps dot products by default only where vdpbf16ps outruns float32 FMA (AMD),
    // and the AMX entries where the CPU has AMX: without `amx`, on any other CPU with AVX512_BF16 the switch,
    // read at the avx512 table's first use (below), puts the vdpbf16ps ones in for this test (AMX out), unless
    // the caller chose. With `amx`, the dispatcher's default.
    __builtin_cpu_init();
    const char* chosen = std::getenv("NORMEXP_AVX512_BF16");  // "" is unset, as for the dispatcher
    if (!amx_mode && (!chosen || !*chosen) && __builtin_cpu_supports("avx512bf16") &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        setenv("NORMEXP_AVX512_BF16", "1", 1);
#endif
    bool amx = false;
    for (const auto& e : d::isa_extensions()) amx = amx || e == "amx_bf16";
    bool tested = false;
    for (const auto& name : d::available_isas()) {
        const normexp::kernel_table& t = d::kernels_for(name);
        if (!t.bf16_dot.qk_pairs || (amx_mode && !(amx && name == "avx512"))) continue;
        std::printf("%s: bfloat16 dot products (bf16_dot%s)\n", name.c_str(), amx ? ", AMX" : ", vdpbf16ps");
        check_pack(t.bf16_dot);
        check_qk_pairs(t.bf16_dot, amx);
        CHECK((t.bf16_dot.pv_pairs != nullptr) == amx && (t.bf16_dot.pack_v_pairs != nullptr) == amx &&
                  (t.bf16_dot.qk_direct_pairs != nullptr) == !amx,
              "with AMX exactly: P V on the tiles, and no qk_direct_pairs (decodes keep the float32 kernels)");
        if (t.bf16_dot.qk_direct_pairs) check_qk_direct_pairs(t.bf16_dot);
        check_subnormal_report(t.bf16_dot);
        if (amx) check_pv_pairs(t.bf16_dot);
        tested = true;
    }
    if (!tested)
        std::printf(amx_mode ? "test_attention_bf16 amx: no AMX here (the CPU, the OS, the build, or NORMEXP_AMX=0): "
                               "the AMX scores NOT tested on this machine\n"
                             : "test_attention_bf16: no kernel set here has bfloat16 dot products (AVX512_BF16 absent or "
                               "NORMEXP_AVX512_BF16=0): NOT tested on this machine\n");
    if (check::failures()) std::fprintf(stderr, "%d failures\n", check::failures());
    return check::failures() ? 1 : 0;
}
