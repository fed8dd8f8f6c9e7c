// Bit-for-bit regression test of normexp::attention on every ISA this CPU runs (scalar, avx2, avx512 on x86-64,
// scalar and neon on aarch64, the latter under qemu-aarch64 in ci/cross_aarch64.sh).
//
// Each case runs attention (out and lse) and hashes the bytes of both with FNV-1a 64; the hashes are
// compared with tests/cpp/attention_golden.txt ("isa case hash" per line), recorded from the kernels as
// they were before the attention kernels moved to the shared generic header (kernels/generic/attention.hpp).
// A refactor of the kernels or the driver that changes a single bit of any output fails here. A deliberate
// numerical change regenerates the file:
//     test_attention_golden --write > tests/cpp/attention_golden.txt      (on x86-64 and on aarch64, merged)
// Every (isa, case) this run computes must be in the file.
//
// The cases cover float32 and float64; decoding (len_q 1: qk_direct, the wide-row pv, split keys merged
// with the log-sum-exp rule) and prefill (packed K^T, register tiles, the causal-diagonal row groups,
// several query and key blocks); every head dimension 1..17 (every tail of the 8/4-lane vectors and of the
// 16/8-column tiles) and wider ones around 32, 64 and 128; causal (both alignments), sliding windows,
// softcap, ALiBi, boolean and additive masks (broadcast rows and strided keys), grouped-query attention,
// strided q/k/v layouts, scores large enough for subnormal probabilities, fully masked rows and NaN input.
// Inputs come from a fixed integer hash (splitmix64), not from <random>, so they are the same bits on every
// platform and standard library.
//
// Below the driver, each micro-kernel of the table (kernel_table.hpp, attention_kernels) is also hashed over a
// sweep of shapes (every row tail of the register tiles, every key and head-dimension tail, leading
// dimensions larger than the data, two consecutive softmax steps so the running maximum moves), one hash per
// (isa, kernel, dtype): lines "isa kernel:<name>_<dtype> hash" in the same file.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"
#include "normexp/normexp.hpp"

namespace {

std::uint64_t splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// n values in [-amp, amp) with full significands: a 24-bit (float32) or 53-bit (float64) integer of the hash
// times 2^-23 or 2^-52 (exact; amp is a power of two or small). Full float64 significands matter: products of
// 24-bit values are exact in double, which would hide a change between FMA and separate rounding.
template <class T>
std::vector<T> fill(std::size_t n, std::uint64_t seed, double amp = 1.0) {
    constexpr int bits = sizeof(T) == 4 ? 24 : 53;
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto r = static_cast<std::int64_t>(splitmix(seed * 0x100000001b3ull + i) >> (64 - bits)) -
                       (std::int64_t(1) << (bits - 1));
        v[i] = static_cast<T>(double(r) * amp / double(std::int64_t(1) << (bits - 1)));
    }
    return v;
}

struct fnv {
    std::uint64_t h = 0xcbf29ce484222325ull;
    void add(const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    }
};

struct spec {
    std::string name;
    std::size_t batch = 1, hq = 1, hkv = 1, lq = 1, lkv = 1, d = 8, dv = 8;
    bool causal = false, bottom_right = false;
    std::size_t window = 0;
    double scale = 0, softcap = 0, amp = 1.0;
    bool alibi = false;
    int mask = 0;            // 0 none, 1 keep, 2 additive
    bool mask_bcast = false;  // one mask row for all queries (row stride 0)
    bool mask_strided = false;  // key stride 2 (the driver copies the block)
    bool strided = false;     // q with head_dim stride 2 (packed), k with head_dim stride 2 (scalar pack path),
                              // v with head_dim_v stride 2 (copied), out with stride 2
    bool nan = false;         // one NaN in k
    bool dead_row = false;    // keep mask with one query row fully masked
};

std::vector<spec> cases() {
    std::vector<spec> v;
    // Every head dimension tail, decode and prefill (d == dv, and dv != d).
    const std::size_t dims[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13,  14,  15, 16,
                                17, 24, 31, 32, 33, 48, 63, 64, 65, 80, 96, 100, 127, 128, 130};
    for (std::size_t d : dims) {
        spec a;
        a.name = "decode_d" + std::to_string(d);
        a.lq = 1, a.lkv = 45, a.d = a.dv = d, a.hq = 2, a.hkv = 2;
        v.push_back(a);
        spec b;
        b.name = "prefill_causal_d" + std::to_string(d);
        b.lq = 29, b.lkv = 37, b.d = b.dv = d, b.causal = true;
        v.push_back(b);
        spec c;
        c.name = "prefill_dv_d" + std::to_string(d);
        c.lq = 7, c.lkv = 19, c.d = 40, c.dv = d;
        v.push_back(c);
    }
    auto add = [&](const std::string& name, auto set) {
        spec s;
        s.name = name;
        s.lq = 61, s.lkv = 83, s.d = 40, s.dv = 24, s.hq = 2, s.hkv = 2;
        set(s);
        v.push_back(s);
    };
    add("plain", [](spec&) {});
    add("scale", [](spec& s) { s.scale = 0.37; });
    add("neg_scale", [](spec& s) { s.scale = -0.5; });
    add("causal", [](spec& s) { s.causal = true; });
    add("causal_br", [](spec& s) { s.causal = true, s.bottom_right = true; });
    add("window", [](spec& s) { s.window = 9; });
    add("causal_window", [](spec& s) { s.causal = true, s.window = 17; });
    add("causal_window_br", [](spec& s) { s.causal = true, s.window = 5, s.bottom_right = true; });
    add("softcap", [](spec& s) { s.softcap = 2.5, s.amp = 3; });
    add("alibi", [](spec& s) { s.alibi = true; });
    add("alibi_causal", [](spec& s) { s.alibi = true, s.causal = true; });
    add("keep", [](spec& s) { s.mask = 1; });
    add("keep_bcast", [](spec& s) { s.mask = 1, s.mask_bcast = true; });
    add("keep_strided", [](spec& s) { s.mask = 1, s.mask_strided = true; });
    add("additive", [](spec& s) { s.mask = 2; });
    add("additive_bcast_causal", [](spec& s) { s.mask = 2, s.mask_bcast = true, s.causal = true; });
    add("additive_strided", [](spec& s) { s.mask = 2, s.mask_strided = true; });
    add("all_features", [](spec& s) { s.softcap = 4, s.alibi = true, s.mask = 2, s.causal = true, s.window = 30; });
    add("keep_softcap_alibi", [](spec& s) { s.mask = 1, s.softcap = 1.5, s.alibi = true; });
    add("dead_row", [](spec& s) { s.mask = 1, s.dead_row = true; });
    add("nan", [](spec& s) { s.nan = true; });
    add("big_scores", [](spec& s) { s.scale = 60, s.amp = 2; });   // subnormal and underflowing p
    add("big_scores_causal", [](spec& s) { s.scale = 200, s.amp = 2, s.causal = true; });
    add("strided", [](spec& s) { s.strided = true; });
    add("strided_causal_keep", [](spec& s) { s.strided = true, s.causal = true, s.mask = 1; });
    add("gqa_prefill", [](spec& s) { s.hq = 6, s.hkv = 2, s.causal = true; });
    add("gqa_decode", [](spec& s) { s.hq = 8, s.hkv = 2, s.lq = 1, s.lkv = 300; });
    add("gqa_decode_window", [](spec& s) { s.hq = 8, s.hkv = 2, s.lq = 1, s.lkv = 300, s.window = 70, s.causal = true, s.bottom_right = true; });
    add("gqa_decode_keep", [](spec& s) { s.hq = 4, s.hkv = 1, s.lq = 1, s.lkv = 200, s.mask = 1; });
    add("decode_split", [](spec& s) { s.lq = 1, s.lkv = 2100, s.d = 64, s.dv = 64, s.hq = 1, s.hkv = 1; });
    add("decode_split_gqa", [](spec& s) { s.lq = 1, s.lkv = 1500, s.d = 32, s.dv = 72, s.hq = 4, s.hkv = 2; });
    add("decode_rows3", [](spec& s) { s.lq = 3, s.lkv = 130, s.causal = true, s.bottom_right = true; });
    add("long_causal", [](spec& s) { s.lq = 250, s.lkv = 260, s.d = 64, s.dv = 64, s.causal = true, s.hq = 1, s.hkv = 1; });
    add("long_window", [](spec& s) { s.lq = 230, s.lkv = 400, s.causal = true, s.window = 100, s.bottom_right = true, s.hq = 1, s.hkv = 1; });
    add("batch2", [](spec& s) { s.batch = 2, s.lq = 13, s.lkv = 150, s.d = 16, s.dv = 16; });
    return v;
}

template <class T>
std::uint64_t run(const spec& c, const char* isa) {
    fnv nh;
    nh.add(c.name.data(), c.name.size());
    const std::uint64_t seed = nh.h & 0xffff;  // a different data set per case
    const std::ptrdiff_t st = c.strided ? 2 : 1;
    const auto sz = [](std::size_t n) { return static_cast<std::ptrdiff_t>(n); };
    // Strides: (batch, head, row, dim), with the dimension stride st.
    const normexp::strides4 qs{sz(c.hq * c.lq * c.d) * st, sz(c.lq * c.d) * st, sz(c.d) * st, st};
    const normexp::strides4 ks{sz(c.hkv * c.lkv * c.d) * st, sz(c.lkv * c.d) * st, sz(c.d) * st, st};
    const normexp::strides4 vs{sz(c.hkv * c.lkv * c.dv) * st, sz(c.lkv * c.dv) * st, sz(c.dv) * st, st};
    const normexp::strides4 os{sz(c.hq * c.lq * c.dv) * st, sz(c.lq * c.dv) * st, sz(c.dv) * st, st};
    auto q = fill<T>(c.batch * c.hq * c.lq * c.d * st, seed * 4 + 1, c.amp);
    auto k = fill<T>(c.batch * c.hkv * c.lkv * c.d * st, seed * 4 + 2, c.amp);
    const auto v = fill<T>(c.batch * c.hkv * c.lkv * c.dv * st, seed * 4 + 3, 4.0);
    if (c.nan) k[(c.lkv / 2) * c.d * st] = T(std::numeric_limits<double>::quiet_NaN());
    std::vector<T> out(c.batch * c.hq * c.lq * c.dv * st, T(0)), lse(c.batch * c.hq * c.lq, T(0));

    normexp::attention_options<T> opt;
    opt.isa = isa;
    opt.scale = c.scale;
    opt.is_causal = c.causal;
    opt.alignment = c.bottom_right ? normexp::causal_alignment::bottom_right : normexp::causal_alignment::top_left;
    opt.window = c.window;
    opt.softcap = c.softcap;
    std::vector<double> slopes(c.batch * c.hq);
    for (std::size_t i = 0; i < slopes.size(); ++i) slopes[i] = 0.0625 * double(i + 1);
    if (c.alibi) {
        opt.alibi_slopes = slopes.data();
        opt.alibi_strides = {sz(c.hq), 1};
    }
    // Mask (batch, heads_q, len_q, len_kv) with key stride ks2 and row stride 0 when broadcast.
    const std::ptrdiff_t mk = c.mask_strided ? 2 : 1;
    const std::size_t mrows = c.mask_bcast ? 1 : c.lq;
    const std::size_t mlen = c.batch * c.hq * mrows * c.lkv * std::size_t(mk);
    std::vector<unsigned char> keep(mlen);
    std::vector<T> bias(mlen);
    for (std::size_t i = 0; i < mlen; ++i) {
        const std::uint64_t h = splitmix(seed * 7919 + i);
        keep[i] = (h % 5) != 0;  // 80% kept
        bias[i] = (h % 11) == 0 ? -T(std::numeric_limits<double>::infinity()) : T(double(std::int64_t(h >> 44) - (1 << 19)) * 0x1p-19);
    }
    if (c.dead_row)
        for (std::size_t j = 0; j < c.lkv; ++j) keep[(3 * c.lkv + j) * std::size_t(mk)] = 0;  // row 3 of head 0
    if (c.mask) {
        opt.mask_kind = c.mask == 1 ? normexp::attention_mask_kind::keep : normexp::attention_mask_kind::additive;
        opt.mask = c.mask == 1 ? static_cast<const void*>(keep.data()) : static_cast<const void*>(bias.data());
        opt.mask_strides = {sz(c.hq * mrows * c.lkv) * mk, sz(mrows * c.lkv) * mk, c.mask_bcast ? 0 : sz(c.lkv) * mk, mk};
    }
    opt.lse = lse.data();
    opt.lse_strides = {sz(c.hq * c.lq), sz(c.lq), 1};
    normexp::attention<T>({c.batch, c.hq, c.hkv, c.lq, c.lkv, c.d, c.dv}, q.data(), qs, k.data(), ks, v.data(), vs,
                          out.data(), os, opt);
    fnv h;
    for (std::size_t i = 0; i < out.size(); i += std::size_t(st)) h.add(&out[i], sizeof(T));
    h.add(lse.data(), lse.size() * sizeof(T));
    return h.h;
}


// ---- the micro-kernels, called directly -------------------------------------------------------------------
using normexp::attention_kernels;
using normexp::attn_scores;

std::size_t padded(std::size_t keys) {
    return (keys + normexp::kAttnKeyPanel - 1) / normexp::kAttnKeyPanel * normexp::kAttnKeyPanel;
}

template <class T>
void hash_vec(fnv& h, const std::vector<T>& v) {
    h.add(v.data(), v.size() * sizeof(T));
}

template <class T>
std::uint64_t kernel_pack(const attention_kernels<T>& k) {
    fnv h;
    std::uint64_t seed = 100;
    for (std::size_t keys = 0; keys <= 41; ++keys)
        for (std::size_t dim : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64})
            for (std::ptrdiff_t kcol : {1, 3}) {
                const std::ptrdiff_t krow = std::ptrdiff_t(dim) * kcol + 5;
                const auto src = fill<T>(keys * std::size_t(krow) + dim * std::size_t(kcol) + 1, ++seed);
                const std::size_t ld = padded(keys) + 3;
                std::vector<T> kt(dim * ld, T(7));
                k.pack_kt(src.data(), krow, kcol, keys, dim, kt.data(), ld);
                hash_vec(h, kt);
            }
    return h.h;
}

template <class T>
std::uint64_t kernel_qk(const attention_kernels<T>& k) {
    fnv h;
    std::uint64_t seed = 200;
    for (std::size_t rows = 1; rows <= 13; ++rows)
        for (std::size_t keys : {1, 5, 8, 15, 16, 17, 31, 33, 64, 128})
            for (std::size_t dim : {1, 3, 8, 9, 17, 64, 129}) {
                const std::size_t ldq = dim + 2, ldkt = padded(keys) + 16, lds = padded(keys) + 8;
                const auto q = fill<T>(rows * ldq, ++seed), kt = fill<T>(dim * ldkt, ++seed);
                std::vector<T> s(rows * lds, T(0));
                k.qk(q.data(), ldq, kt.data(), ldkt, rows, keys, dim, s.data(), lds);
                hash_vec(h, s);
            }
    for (std::size_t rows : {30, 50}) {  // more than one row group
        const std::size_t keys = 128, dim = 40, ldq = dim, ldkt = keys, lds = keys;
        const auto q = fill<T>(rows * ldq, ++seed), kt = fill<T>(dim * ldkt, ++seed);
        std::vector<T> s(rows * lds, T(0));
        k.qk(q.data(), ldq, kt.data(), ldkt, rows, keys, dim, s.data(), lds);
        hash_vec(h, s);
    }
    return h.h;
}

template <class T>
std::uint64_t kernel_qk_direct(const attention_kernels<T>& k) {
    fnv h;
    std::uint64_t seed = 300;
    for (std::size_t rows = 1; rows <= 5; ++rows)
        for (std::size_t keys = 0; keys <= 19; ++keys)
            for (std::size_t dim : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 64, 129}) {
                const std::size_t ldq = dim + 1, lds = keys + 2;
                const std::ptrdiff_t ldk = std::ptrdiff_t(dim) + 3;
                const auto q = fill<T>(rows * ldq, ++seed);
                const auto kk = fill<T>((keys + 1) * std::size_t(ldk), ++seed);
                std::vector<T> s(rows * lds, T(5));
                k.qk_direct(q.data(), ldq, kk.data(), ldk, rows, keys, dim, s.data(), lds, 0, {});
                hash_vec(h, s);
            }
    return h.h;
}

template <class T>
std::uint64_t kernel_pv(const attention_kernels<T>& k) {
    fnv h;
    std::uint64_t seed = 400;
    for (std::size_t rows = 1; rows <= 13; ++rows)
        for (std::size_t keys : {0, 1, 5, 16, 17, 33, 128})
            for (std::size_t dv : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 24, 31, 32, 33, 40, 63, 64,
                                   65, 72, 100, 128, 130}) {
                const std::size_t ldp = keys + 3, ldo = dv + 5;
                const std::ptrdiff_t ldv = std::ptrdiff_t(dv) + 2;
                auto p = fill<T>(rows * ldp, ++seed);
                for (auto& x : p) x = x < 0 ? -x : x;  // probabilities are >= 0 (not that pv cares)
                const auto v = fill<T>((keys + 1) * std::size_t(ldv), ++seed, 4.0);
                auto alpha = fill<T>(rows, ++seed);
                auto o = fill<T>(rows * ldo, ++seed, 3.0);
                k.pv(p.data(), ldp, v.data(), ldv, rows, keys, dv, alpha.data(), o.data(), ldo, {});
                hash_vec(h, o);
            }
    return h.h;
}

template <class T>
std::uint64_t kernel_softmax(const attention_kernels<T>& k) {
    fnv h;
    std::uint64_t seed = 500;
    const T inf = T(std::numeric_limits<double>::infinity());
    for (int feature = 0; feature < 10; ++feature)
        for (std::size_t rows : {1, 2, 3, 5, 7, 13, 70})
            for (std::size_t keys = 1; keys <= 128; keys += keys < 40 ? 1 : 29) {
                const std::size_t lds = padded(keys) + 3;
                attn_scores<T> sc{};
                sc.scale = T(0.37);
                const auto bias = fill<T>(rows * keys + 1, ++seed, 2.0);
                std::vector<std::uint8_t> keep(rows * keys + 1);
                for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = splitmix(seed * 31 + i) % 4 != 0;
                switch (feature) {
                    case 1: sc.band = true, sc.band_lo = -3, sc.band_hi = 2; break;    // window + causal
                    case 2: sc.band = true, sc.band_lo = -1000000, sc.band_hi = 0; break;  // causal
                    case 3: sc.softcap = T(1.7); break;
                    case 4: sc.alibi_slope = T(0.25), sc.alibi_center = 3; break;
                    case 5: sc.bias = bias.data(), sc.bias_ld = std::ptrdiff_t(keys); break;
                    case 6: sc.keep = keep.data(), sc.keep_ld = std::ptrdiff_t(keys); break;
                    case 7: sc.keep = keep.data(), sc.keep_ld = 0, sc.band = true, sc.band_lo = -5, sc.band_hi = 1; break;
                    case 8: sc.softcap = T(3), sc.alibi_slope = T(-0.5), sc.bias = bias.data(), sc.bias_ld = 0; break;
                    case 9: sc.scale = T(-45); break;  // negative scale, scores far apart (subnormal p)
                    default: break;
                }
                std::vector<T> m(rows, -inf), alpha(rows, T(9));
                std::vector<double> l(rows, 0.0);
                for (int step = 0; step < 2; ++step) {  // the second step rescales (alpha != 1)
                    auto s = fill<T>(rows * lds, ++seed, step ? 6.0 : 3.0);
                    if (feature == 0 && step == 1 && rows > 1) s[lds] = T(std::numeric_limits<double>::quiet_NaN());  // a NaN score
                    k.softmax_step(s.data(), lds, rows, keys, sc, m.data(), l.data(), alpha.data());
                    for (std::size_t i = 0; i < rows; ++i) h.add(s.data() + i * lds, keys * sizeof(T));
                    hash_vec(h, m);
                    hash_vec(h, l);
                    hash_vec(h, alpha);
                }
            }
    return h.h;
}

template <class T>
void kernel_hashes(const normexp::kernel_table& t, const std::string& isa, const char* dt,
                   std::vector<std::pair<std::string, std::uint64_t>>& out) {
    const attention_kernels<T>& k = [&]() -> const attention_kernels<T>& {
        if constexpr (sizeof(T) == 4) return t.attn_f32; else return t.attn_f64;
    }();
    const std::string p = isa + " kernel:";
    out.emplace_back(p + "pack_kt_" + dt, kernel_pack(k));
    out.emplace_back(p + "qk_" + dt, kernel_qk(k));
    out.emplace_back(p + "qk_direct_" + dt, kernel_qk_direct(k));
    out.emplace_back(p + "softmax_step_" + dt, kernel_softmax(k));
    out.emplace_back(p + "pv_" + dt, kernel_pv(k));
}

}  // namespace

int main(int argc, char** argv) {
    const bool write = argc > 1 && std::strcmp(argv[1], "--write") == 0;
    std::map<std::string, std::string> golden;
    if (!write) {
        if (argc < 2) {
            std::fprintf(stderr, "usage: test_attention_golden GOLDEN_FILE | --write\n");
            return 2;
        }
        std::ifstream in(argv[1]);
        CHECK(in.good(), "cannot read %s", argv[1]);
        std::string isa, name, hash;
        while (in >> isa >> name >> hash) golden[isa + " " + name] = hash;
    }
    std::size_t compared = 0;
    // --write: print "key hash"; else compare with the recorded hash.
    auto record = [&](const std::string& key, std::uint64_t h) {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
        if (write) {
            std::printf("%s %s\n", key.c_str(), hex);
            return;
        }
        const auto it = golden.find(key);
        CHECK(it != golden.end(), "%s: no recorded hash", key.c_str());
        if (it == golden.end()) return;
        CHECK(it->second == hex, "%s: hash %s, recorded %s (output changed)", key.c_str(), hex, it->second.c_str());
        ++compared;
    };
    for (const std::string& isa : normexp::available_isas()) {
        for (const spec& c : cases()) {
            for (int dt = 0; dt < 2; ++dt) {
                const std::string key = isa + " " + c.name + (dt ? "_f64" : "_f32");
                record(key, dt ? run<double>(c, isa.c_str()) : run<float>(c, isa.c_str()));
            }
        }
    }
    for (const std::string& isa : normexp::available_isas()) {
        std::vector<std::pair<std::string, std::uint64_t>> ks;
        const normexp::kernel_table& t = normexp::detail::kernels_for(isa);
        // The driver's row groups (24-row diagonal groups, 192-row query blocks: attention.cpp, blocking_for)
        // are whole register tiles for every tile height that divides 24; the recorded results assume them.
        const std::size_t tile = t.attn_f32.tile_rows;
        CHECK(tile >= 1 && 24 % tile == 0 && t.attn_f64.tile_rows == tile, "%s: tile_rows %zu / %zu", isa.c_str(),
              tile, t.attn_f64.tile_rows);
        if (!write) std::printf("%s: register tile %zu rows\n", isa.c_str(), tile);
        kernel_hashes<float>(t, isa, "f32", ks);
        kernel_hashes<double>(t, isa, "f64", ks);
        for (const auto& [key, h] : ks) record(key, h);
    }
    if (!write) std::printf("attention_golden: %zu (isa, case) results compared bit for bit\n", compared);
    return check::failures() ? 1 : 0;
}
