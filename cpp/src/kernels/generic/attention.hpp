// The attention micro-kernels (kernel_table.hpp, attention_kernels), written once over an attention traits
// struct F (kernels/<isa>/attention_traits.hpp: AttnF32, AttnF64) and compiled once per SIMD ISA. The entries
// that read K or V (pack_kt, qk_direct, pv) are templates on the storage S of K/V as well: S = T for
// attention_kernels, S = float16 / bfloat16 with T = float for attention_kv_kernels (make_attention_kv_table),
// where each vector of K or V is loaded widened to float32 in registers (F::load_as<S>, exact) and the
// arithmetic is the float32 kernel's, instruction for instruction. S = T loads exactly as before, so the
// float32 and float64 kernels are unchanged (the goldens pin them).
//
// Textual include, the pattern of generic/lanes.hpp and generic/reductions.hpp: an ISA's attention translation
// unit (kernels/<isa>/attention.cpp, compiled with that ISA's flags) includes <isa>/traits.hpp, then INSIDE its
// namespace normexp::<isa>::(anonymous) generic/lanes.hpp, <isa>/attention_traits.hpp and this file, and
// exports only <isa>_add_attention (kernels/isa_parts.hpp), which calls make_attention_table<AttnF32/AttnF64>.
// Everything here therefore has internal linkage in that ISA's namespace (tests/isa/check_isa_objects.cmake).
// No #include and no include guard; the includer provides <cmath>, <cstddef>, <cstdint>, <type_traits>,
// exp_constants.hpp and kernel_table.hpp.
//
// What an attention traits struct F must provide. Derive it from the element traits lanes<P> (F32/F64 of
// generic/lanes.hpp), which give every general operation, and add the attention-specific members:
//  from lanes<P> / the ISA's traits.hpp (general; add a missing one there, for every ISA):
//    T, V, M, B, N; load, store, tail_mask, load_tail, store_tail, mask_v; set1, zero, add, sub, mul, div,
//    fmadd, fnmadd, max, min, eq, ge, lt, le, and_, andnot, or_ (bitwise, on values only); the masks B of
//    the comparisons through mand, mor, zero_unless, zero_if, blend; hmax; Acc and flush(acc, v) (the double
//    accumulator of the row sums); exp_core<false>(t, tl), poly_split, pow2, int_of_shifted; clamp_below(m);
//    kMinArg, kNormalMinArg; exp_minus(x, -m, clamp_below(m)) = exp(x - m) for x <= m with an exact argument.
//  attention-specific (kernels/<isa>/attention_traits.hpp):
//    kTileRows, kQkVectors, kPvVectors   register tile of qk and pv: kTileRows query rows x kQkVectors
//                                        (kPvVectors) vectors; kQkVectors * N must divide kAttnKeyPanel or be
//                                        a multiple of it (static_assert; the panels after the last whole
//                                        tile then go one vector at a time), and kTileRows should divide
//                                        kQkRowGroup (24), or each row group ends in a short tile.
//                                        kTileRows is the table's tile_rows.
//    kPrefetchRows, prefetch(p)          software prefetch distance of the decoding kernels in rows (0: none).
//    kWideRows                           value rows per tile of pv's decoding form (pv_wide: kWideRows x 8
//                                        vectors of accumulators; 1 on 16-register ISAs, 2 with 32).
//    kDirectRows                         query rows per register tile of qk_direct (x 4 keys: 4 kDirectRows
//                                        accumulators, so 2 on 16-register ISAs, 4 with 32 registers).
//    transpose_store<S>(k, k_row, kt, ldkt)  N x N block transpose of pack_kt (k rows of storage S with unit
//                                        stride, widened as they are loaded; S = T for float64).
//    hsum(v)                             the horizontal sum of a vector (qk_direct).
//    store_hsum4(s, a0..a3) (optional)   s[0..4) = the horizontal sums of four vectors where the ISA has a
//                                        cheaper four-way form (qk_direct); without it, hsum of each.
//    load_bf16_pairs(p, even, odd),      (optional, together) 2N bfloat16 at p as their N even-index and N
//    to_pairs(lo, hi, even, odd),        odd-index elements widened; two vectors of 2N consecutive float32 as
//    from_pairs(even, odd, lo, hi)       their even / odd elements and back (pv_wide's bfloat16 V).
//    iota()                              lane i holds i (the key index of a lane, for the band and ALiBi).
//    keep_in(p, n)                       a mask B: lane i set where the boolean mask byte p[i] is non-zero
//                                        (n valid bytes at p, n <= N; lanes from n on are clear).
//  The tile shapes do not change results (every product is one FMA chain in the order of its reduction
//  index); the summation orders of hsum and store_hsum4 do. NX_INLINE comes from generic/lanes.hpp.
//
// Products (qk, qk_direct, pv) are register-blocked like a GEMM; each output is one FMA chain in the order of
// the reduction index (d for qk, j for pv) starting from 0 (qk) or alpha * o (pv), so the result does not
// depend on the tile shape: |err| <= (dim + 1) u sum_d |q_d k_d| for qk (the gamma_n bound plus the final
// rounding, u = unit roundoff of T) and (keys + 2) u (|alpha o| + sum_j |p_j v_j|) for pv, the bounds
// tests/cpp/test_attention_kernels.cpp checks against the scalar specification (kernels/scalar.cpp).

// qk visits the key panels for groups of this many query rows, so the group's q rows (<= 12 KiB at head_dim
// 128, float32) stay in L1 while the packed K^T streams by. A multiple of every ISA's tile height (6, 4).
constexpr std::size_t kQkRowGroup = 24;

inline std::size_t padded_keys(std::size_t keys) {
    return (keys + kAttnKeyPanel - 1) / kAttnKeyPanel * kAttnKeyPanel;
}

// One vector of K or V of storage S, widened to T (S = T: the plain load), and its tail of n lanes (mk =
// F::tail_mask(n)).
template <class F, class S>
NX_INLINE typename F::V load_kv(const S* p) {
    if constexpr (std::is_same_v<S, typename F::T>) return F::load(p);
    else return F::template load_as<S>(p);
}
template <class F, class S>
NX_INLINE typename F::V load_kv_tail(const S* p, typename F::M mk, std::size_t n) {
    if constexpr (std::is_same_v<S, typename F::T>) return F::load_tail(p, mk);
    else return F::template load_as_tail<S>(p, n);
}

// Calls tile(i, std::integral_constant<int, R>{}) over [0, rows): full tiles of F::kTileRows rows, then one
// tile of the remaining 1 .. kTileRows - 1 rows (R is a compile-time constant, so the accumulators of every
// tile height live in registers).
template <int R, class Tile>
inline void row_tail(std::size_t n, std::size_t i, Tile& tile) {
    if constexpr (R > 0) {
        if (n == R)
            tile(i, std::integral_constant<int, R>{});
        else
            row_tail<R - 1>(n, i, tile);
    }
}
template <class F, class Tile>
inline void for_row_tiles(std::size_t rows, Tile tile) {
    constexpr int R = F::kTileRows;
    std::size_t i = 0;
    for (; i + R <= rows; i += R) tile(i, std::integral_constant<int, R>{});
    row_tail<R - 1>(rows - i, i, tile);
}

// ---- pack_kt -----------------------------------------------------------------------------------------
// N x N register transposes (F::transpose_store) where the key rows have unit stride along the head dimension,
// element by element for the edges and other layouts; columns keys .. padded are zero. 16-bit S: the edges
// gather up to N elements of one kt row into a small buffer of S and widen it as one vector (the ISA's own
// exact widening; no scalar conversion in ISA code).
template <class F, class S = typename F::T>
void k_pack_kt(const S* k, std::ptrdiff_t k_row, std::ptrdiff_t k_col, std::size_t keys, std::size_t dim,
               typename F::T* kt, std::size_t ldkt) {
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    const std::size_t padded = padded_keys(keys);
    std::size_t j0 = 0, d0 = 0;  // the part done by N x N transposes: keys < j0, dims < d0
    if (k_col == 1) {
        j0 = keys / N * N;
        d0 = dim / N * N;
        for (std::size_t j = 0; j < j0; j += N)
            for (std::size_t d = 0; d < d0; d += N)
                F::template transpose_store<S>(k + static_cast<std::ptrdiff_t>(j) * k_row +
                                                   static_cast<std::ptrdiff_t>(d),
                                               k_row, kt + d * ldkt + j, ldkt);
    }
    for (std::size_t d = 0; d < dim; ++d) {
        T* row = kt + d * ldkt;
        const S* kd = k + static_cast<std::ptrdiff_t>(d) * k_col;
        if constexpr (std::is_same_v<S, T>) {
            for (std::size_t j = d < d0 ? j0 : 0; j < keys; ++j) row[j] = kd[static_cast<std::ptrdiff_t>(j) * k_row];
        } else {
            for (std::size_t j = d < d0 ? j0 : 0; j < keys; j += N) {
                const std::size_t n = keys - j < N ? keys - j : N;
                S buf[N];
                for (std::size_t t = 0; t < n; ++t) buf[t] = kd[static_cast<std::ptrdiff_t>(j + t) * k_row];
                if (n == N) F::store(row + j, F::template load_as<S>(buf));
                else F::store_tail(row + j, F::tail_mask(n), F::template load_as_tail<S>(buf, n));
            }
        }
        for (std::size_t j = keys; j < padded; ++j) row[j] = T(0);
    }
}

// ---- qk ----------------------------------------------------------------------------------------------
// One step of a register tile: a[r][c] = fma(x[r * ldx], b[c], a[r][c]), a rank-1 update (one broadcast per row,
// R * NV FMAs). qk and pv are chains of these in the order of their reduction index.
template <class F, int R, int NV>
NX_INLINE void rank1_update(typename F::V (&a)[R][NV], const typename F::V (&b)[NV], const typename F::T* x,
                            std::size_t ldx) {
NX_UNROLL(8)
    for (int r = 0; r < R; ++r) {
        const typename F::V xr = F::set1(x[r * ldx]);
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) a[r][c] = F::fmadd(xr, b[c], a[r][c]);
    }
}

// One register tile: R query rows x NV vectors of keys (F::kQkVectors, or 1 for the last panels); per
// head-dimension step one broadcast of q[r][d] per row and NV loads of kt[d] feed R * NV FMAs.
template <class F, int R, int NV>
inline void qk_tile(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt,
                    std::size_t dim, typename F::T* s, std::size_t lds) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    V a[R][NV];
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) a[r][c] = F::zero();
    for (std::size_t d = 0; d < dim; ++d) {
        V b[NV];
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) b[c] = F::load(kt + d * ldkt + c * N);
        rank1_update<F, R, NV>(a, b, q + d, ldq);
    }
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) F::store(s + r * lds + c * N, a[r][c]);
}

template <class F>
void k_qk(const typename F::T* q, std::size_t ldq, const typename F::T* kt, std::size_t ldkt, std::size_t rows,
          std::size_t keys, std::size_t dim, typename F::T* s, std::size_t lds) {
    constexpr std::size_t N = F::N;
    constexpr std::size_t W = F::kQkVectors * N;  // keys per tile
    static_assert(kAttnKeyPanel % N == 0 && (kAttnKeyPanel % W == 0 || W % kAttnKeyPanel == 0),
                  "a key panel is whole vectors, and tiles are whole panels or divide one");
    const std::size_t padded = padded_keys(keys);
    for (std::size_t i0 = 0; i0 < rows; i0 += kQkRowGroup) {
        const std::size_t nr = rows - i0 < kQkRowGroup ? rows - i0 : kQkRowGroup;
        std::size_t j = 0;
        for (; j + W <= padded; j += W)
            for_row_tiles<F>(nr, [&](std::size_t i, auto r) {
                const std::size_t row = i0 + i;
                qk_tile<F, decltype(r)::value, F::kQkVectors>(q + row * ldq, ldq, kt + j, ldkt, dim, s + row * lds + j,
                                                              lds);
            });
        for (; j < padded; j += N)  // the panels after the last whole tile (W > kAttnKeyPanel): one vector wide
            for_row_tiles<F>(nr, [&](std::size_t i, auto r) {
                const std::size_t row = i0 + i;
                qk_tile<F, decltype(r)::value, 1>(q + row * ldq, ldq, kt + j, ldkt, dim, s + row * lds + j, lds);
            });
    }
}

// ---- qk_direct (decoding) ----------------------------------------------------------------------------
// s[0..4) = the horizontal sums of a0..a3: F::store_hsum4 where the traits have it, else F::hsum of each.
template <class F, class = void>
struct has_store_hsum4 : std::false_type {};
template <class F>
struct has_store_hsum4<F, std::void_t<decltype(F::store_hsum4(static_cast<typename F::T*>(nullptr), F::zero(), F::zero(),
                                                                F::zero(), F::zero()))>> : std::true_type {};
template <class F>
NX_INLINE void store_hsum4(typename F::T* s, typename F::V a0, typename F::V a1, typename F::V a2, typename F::V a3) {
    if constexpr (has_store_hsum4<F>::value) {
        F::store_hsum4(s, a0, a1, a2, a3);
    } else {
        s[0] = F::hsum(a0);
        s[1] = F::hsum(a1);
        s[2] = F::hsum(a2);
        s[3] = F::hsum(a3);
    }
}

// R query rows x four keys: 4 R accumulators over the head dimension (FMAs; the tail lanes load as zeros and add
// nothing), then per row the four horizontal sums (store_hsum4 above). Each key vector is loaded (and, for a
// 16-bit cache, widened) once for all R rows, and the four key rows are read once, contiguously,
// F::kPrefetchRows rows ahead where the ISA prefetches; the caller's lines (side) a few at each cache line of
// the four rows. The chain of each (row, key) is the one of a single row: fma over d in order from 0, so R
// does not change results.
template <class F, int R, bool Pf, class S>
NX_INLINE void qk_direct_tile(const typename F::T* q, std::size_t ldq, const S* k0, std::ptrdiff_t ldk,
                              std::size_t dim, std::size_t full, typename F::M mk, std::size_t tn,
                              typename F::T* s, std::size_t lds, span_prefetcher& side) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    V a[R][4];
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < 4; ++c) a[r][c] = F::zero();
    // The four key rows kPrefetchRows ahead, four lines per cache line of a row stepped through here.
    [[maybe_unused]] line_prefetcher<F> pf{Pf ? reinterpret_cast<const char*>(k0 + F::kPrefetchRows * ldk) : nullptr,
                                           ldk * std::ptrdiff_t(sizeof(S)), dim * sizeof(S), Pf ? 4u : 0u};
    std::size_t d = 0;
    for (; d < full; d += N) {
        if ((d * sizeof(S)) % 64 == 0) {
            if constexpr (Pf && F::kPrefetchRows > 0) pf.next();
            side.next();
        }
        V kv[4];
NX_UNROLL(4)
        for (int c = 0; c < 4; ++c) kv[c] = load_kv<F>(k0 + c * ldk + d);
NX_UNROLL(8)
        for (int r = 0; r < R; ++r) {
            const V qv = F::load(q + r * ldq + d);
NX_UNROLL(4)
            for (int c = 0; c < 4; ++c) a[r][c] = F::fmadd(qv, kv[c], a[r][c]);
        }
    }
    if (d < dim) {
        V kv[4];
NX_UNROLL(4)
        for (int c = 0; c < 4; ++c) kv[c] = load_kv_tail<F>(k0 + c * ldk + d, mk, tn);
NX_UNROLL(8)
        for (int r = 0; r < R; ++r) {
            const V qv = F::load_tail(q + r * ldq + d, mk);
NX_UNROLL(4)
            for (int c = 0; c < 4; ++c) a[r][c] = F::fmadd(qv, kv[c], a[r][c]);
        }
    }
NX_UNROLL(8)
    for (int r = 0; r < R; ++r) store_hsum4<F>(s + r * lds, a[r][0], a[r][1], a[r][2], a[r][3]);
}

// Rows [i, rows) of one four-key group in tiles of up to Rmax rows (the last one shorter).
template <class F, int Rmax, bool Pf, class S>
NX_INLINE void qk_direct_rows(const typename F::T* q, std::size_t ldq, const S* k0, std::ptrdiff_t ldk,
                              std::size_t rows, std::size_t dim, std::size_t full, typename F::M mk, std::size_t tn,
                              typename F::T* s, std::size_t lds, span_prefetcher& side) {
    std::size_t i = 0;
    for (; i + Rmax <= rows; i += Rmax)
        qk_direct_tile<F, Rmax, Pf>(q + i * ldq, ldq, k0, ldk, dim, full, mk, tn, s + i * lds, lds, side);
    if constexpr (Rmax > 1) {
        if (i < rows)
            qk_direct_rows<F, Rmax - 1, Pf>(q + i * ldq, ldq, k0, ldk, rows - i, dim, full, mk, tn, s + i * lds, lds,
                                            side);
    }
}

// Decoding (a few query rows, each key used once): keys in groups of four, each group against all the rows in
// register tiles of F::kDirectRows rows (so a key row is read from memory once, not once per query row, and a
// 16-bit one widened once per tile); the single keys left over use F::hsum, whose lane order may differ from
// store_hsum4's. |err| <= (dim + 1) u sum|q k| as for qk. The prefetch (F::kPrefetchRows ahead) reaches past
// the call's own key rows only into the `ahead` rows the caller says follow them (the next block of a
// contiguous cache: the prefetch then runs on from one call into the next, where stopping at each call's end
// left the stream prefetcher to start again every block); past those the rows may not be the next keys (a
// paged cache's segment ends at its page; the driver, which knows where the next keys are, prefetches them,
// attention.cpp: through `pf`, whose lines go out a few at each cache line of key rows read, span_prefetcher).
template <class F, class S = typename F::T>
void k_qk_direct(const typename F::T* q, std::size_t ldq, const S* k, std::ptrdiff_t ldk, std::size_t rows,
                 std::size_t keys, std::size_t dim, typename F::T* s, std::size_t lds, std::size_t ahead,
                 prefetch_lines pf) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    const std::size_t full = dim / N * N, tn = dim - full;
    const auto mk = F::tail_mask(tn);
    // side.next() runs once per 64 bytes of the whole vectors of each tile: tiles = four-key groups x row tiles.
    const std::size_t tiles = keys / 4 * ((rows + F::kDirectRows - 1) / F::kDirectRows);
    span_prefetcher side(pf, tiles * ((full * sizeof(S) + 63) / 64));
    std::size_t j = 0;
    constexpr std::size_t reach = F::kPrefetchRows > 0 ? static_cast<std::size_t>(F::kPrefetchRows) + 4 : 0;
    for (; j + 4 <= keys && j + reach <= keys + ahead; j += 4)
        qk_direct_rows<F, F::kDirectRows, true>(q, ldq, k + static_cast<std::ptrdiff_t>(j) * ldk, ldk, rows, dim, full,
                                                mk, tn, s + j, lds, side);
    for (; j + 4 <= keys; j += 4)
        qk_direct_rows<F, F::kDirectRows, false>(q, ldq, k + static_cast<std::ptrdiff_t>(j) * ldk, ldk, rows, dim, full,
                                                 mk, tn, s + j, lds, side);
    side.finish();
    for (; j < keys; ++j) {
        const auto* kj = k + static_cast<std::ptrdiff_t>(j) * ldk;
        for (std::size_t i = 0; i < rows; ++i) {
            const auto* qi = q + i * ldq;
            V a = F::zero();
            std::size_t d = 0;
            for (; d < full; d += N) a = F::fmadd(F::load(qi + d), load_kv<F>(kj + d), a);
            if (d < dim) a = F::fmadd(F::load_tail(qi + d, mk), load_kv_tail<F>(kj + d, mk, tn), a);
            s[i * lds + j] = F::hsum(a);
        }
    }
}

// ---- pv ----------------------------------------------------------------------------------------------
// o = alpha o + p V on R rows x NV vectors of the value dimension (V rows read in place, unit stride along dv);
// Tail: NV == 1 and only tn columns (mk = F::tail_mask(tn)).
template <class F, int R, int NV, bool Tail, class S>
inline void pv_tile(const typename F::T* p, std::size_t ldp, const S* v, std::ptrdiff_t ldv,
                    std::size_t keys, const typename F::T* alpha, typename F::T* o, std::size_t ldo,
                    typename F::M mk, std::size_t tn) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    static_assert(!Tail || NV == 1, "only single-vector tiles have a tail");
    V a[R][NV];
NX_UNROLL(8)
    for (int r = 0; r < R; ++r) {
        const V al = F::set1(alpha[r]);
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c)
            a[r][c] = F::mul(al, Tail ? F::load_tail(o + r * ldo, mk) : F::load(o + r * ldo + c * N));
    }
    for (std::size_t j = 0; j < keys; ++j) {
        const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
        V b[NV];
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) b[c] = Tail ? load_kv_tail<F>(vj, mk, tn) : load_kv<F>(vj + c * N);
        rank1_update<F, R, NV>(a, b, p + j, ldp);
    }
NX_UNROLL(8)
    for (int r = 0; r < R; ++r)
NX_UNROLL(4)
        for (int c = 0; c < NV; ++c) {
            if (Tail)
                F::store_tail(o + r * ldo, mk, a[r][c]);
            else
                F::store(o + r * ldo + c * N, a[r][c]);
        }
}

// R rows x 8 vectors (R = 1 or F::kWideRows): for a few rows (decoding) the value rows are read in long
// contiguous pieces (8 N columns: all of a 128-wide float32 row on AVX-512), one row after the other, each
// vector loaded once for the R rows (NX_KEEP_IN_REGISTER: GCC otherwise folds the load into each of the R
// FMAs, and two loads per FMA pair made this loop load-bound: 31 against 50 GB/s from L2 on Zen 4; on a local,
// not on b[c]: the asm on an array element made GCC 12 store all eight vectors to the stack at every value
// row; the pair path needs none, its vectors come from a shift and an and that no FMA folds). The rows in
// address order are what the stream prefetcher follows from memory; pv_tile's column strips read every row
// in pieces, one strip after the other (a decode's P V from memory, one Zen 4 core: 13.9 GB/s as strips,
// 18.0 as whole rows; a software prefetch of the rows ahead made it slower, on AVX2 too).
//
// bfloat16 V where the traits have the pair widening (F::load_bf16_pairs, optional): each 2N-element piece of a
// value row is one load, its even elements widened by a shift and its odd ones by an and (a bfloat16 is the
// high half of its float32), against a widening load and a shift per N elements; the accumulators of that
// piece then hold its even and odd columns (F::to_pairs when loaded, F::from_pairs when stored). Every output
// keeps its FMA chain, so the bits are the plain loop's. The caller's prefetch lines (side) go out a few at
// each value row.
template <class F, class = void>
struct has_bf16_pairs : std::false_type {};
template <class F>
struct has_bf16_pairs<F, std::void_t<decltype(F::load_bf16_pairs(static_cast<const bfloat16*>(nullptr),
                                                                  std::declval<typename F::V&>(),
                                                                  std::declval<typename F::V&>()))>>
    : std::true_type {};

template <class F, int R, class S>
void pv_wide(const typename F::T* p, std::size_t ldp, const S* v, std::ptrdiff_t ldv, std::size_t keys,
             const typename F::T* alpha, typename F::T* o, std::size_t ldo, span_prefetcher& side) {
    using V = typename F::V;
    constexpr std::size_t N = F::N;
    constexpr bool pairs = std::is_same_v<S, bfloat16> && has_bf16_pairs<F>::value;
    V a[R][8];
NX_UNROLL(2)
    for (int r = 0; r < R; ++r) {
        const V al = F::set1(alpha[r]);
NX_UNROLL(8)
        for (int c = 0; c < 8; ++c) a[r][c] = F::mul(al, F::load(o + r * ldo + c * N));
        if constexpr (pairs) {
NX_UNROLL(4)
            for (int c = 0; c < 8; c += 2) F::to_pairs(a[r][c], a[r][c + 1], a[r][c], a[r][c + 1]);
        }
    }
    for (std::size_t j = 0; j < keys; ++j) {
        const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
        side.next();
        V b[8];
NX_UNROLL(8)
        for (int c = 0; c < 8; ++c) {
            if constexpr (pairs) {
                if (c % 2 == 0) F::load_bf16_pairs(vj + c * N, b[c], b[c + 1]);
            } else {
                V x = load_kv<F>(vj + c * N);
                if constexpr (R > 1) NX_KEEP_IN_REGISTER(x);
                b[c] = x;
            }
        }
NX_UNROLL(2)
        for (int r = 0; r < R; ++r) {
            const V pj = F::set1(p[r * ldp + j]);
NX_UNROLL(8)
            for (int c = 0; c < 8; ++c) a[r][c] = F::fmadd(pj, b[c], a[r][c]);
        }
    }
NX_UNROLL(2)
    for (int r = 0; r < R; ++r) {
        if constexpr (pairs) {
NX_UNROLL(4)
            for (int c = 0; c < 8; c += 2) F::from_pairs(a[r][c], a[r][c + 1], a[r][c], a[r][c + 1]);
        }
NX_UNROLL(8)
        for (int c = 0; c < 8; ++c) F::store(o + r * ldo + c * N, a[r][c]);
    }
}

// Decoding (rows <= kWideDecodeRows, at least 8 N columns): the keys in pieces of about kWidePieceBytes of
// value rows, and on each piece pv_wide over tiles of kWideRows rows (the last one shorter), the column pieces
// of a tile inner: each tile reads the piece's value rows in order, the first from memory, the others from
// L1. Over a whole 128-key block the later tiles read it again from L2: on AVX2 (one row per tile) four
// passes over 64 KiB made a 4-row P V in cache 1.9x pv_tile's time; in 16 KiB pieces 1.33x, and a decode of
// 1k keys in L3 0.90x the time of pv_tile's (AVX-512: 1.02x), from memory the same. Each output's chain runs
// on from piece to piece with alpha = 1 (exact): the bits of one call. The columns past the last whole 8 N by
// the tiles below.
constexpr std::size_t kWideDecodeRows = 4;
constexpr std::size_t kWidePieceBytes = 16384;

template <class F, class S = typename F::T>
void k_pv(const typename F::T* p, std::size_t ldp, const S* v, std::ptrdiff_t ldv, std::size_t rows,
          std::size_t keys, std::size_t dv, const typename F::T* alpha, typename F::T* o, std::size_t ldo,
          prefetch_lines pf) {
    constexpr std::size_t N = F::N;
    constexpr int NV = F::kPvVectors;
    constexpr std::size_t W = F::kWideRows;
    static_assert(W == 1 || W == 2, "pv_wide tiles of one or two rows");
    if (rows <= kWideDecodeRows && dv >= 8 * N) {
        using T = typename F::T;
        const std::size_t wide = dv / (8 * N) * (8 * N);
        const std::size_t row_bytes = dv * sizeof(S), fit = kWidePieceBytes / row_bytes;
        const std::size_t piece = fit < 8 ? 8 : fit;
        span_prefetcher side(pf, ((rows + W - 1) / W) * (wide / (8 * N)) * keys);
        T ones[kWideDecodeRows];
        for (auto& x : ones) x = T(1);
        for (std::size_t j = 0; j == 0 || j < keys; j += piece) {  // keys = 0 too: o = alpha o
            const std::size_t nk = keys - j < piece ? keys - j : piece;
            const T* al = j == 0 ? alpha : ones;
            const auto* vj = v + static_cast<std::ptrdiff_t>(j) * ldv;
            std::size_t i = 0;
            for (; i + W <= rows; i += W)
                for (std::size_t c = 0; c < wide; c += 8 * N)
                    pv_wide<F, int(W)>(p + i * ldp + j, ldp, vj + c, ldv, nk, al + i, o + i * ldo + c, ldo, side);
            for (; i < rows; ++i)
                for (std::size_t c = 0; c < wide; c += 8 * N)
                    pv_wide<F, 1>(p + i * ldp + j, ldp, vj + c, ldv, nk, al + i, o + i * ldo + c, ldo, side);
        }
        side.finish();
        if (wide < dv) k_pv<F, S>(p, ldp, v + wide, ldv, rows, keys, dv - wide, alpha, o + wide, ldo, {});
        return;
    }
    span_prefetcher(pf, 0).finish();  // many rows: the caller's lines at once
    const auto full = F::tail_mask(N);
    // Row tiles outer, column tiles inner: a tile's P rows stay in L1 while V streams by.
    for_row_tiles<F>(rows, [&](std::size_t i, auto r) {
        constexpr int R = decltype(r)::value;
        const auto* pi = p + i * ldp;
        const auto* ai = alpha + i;
        auto* oi = o + i * ldo;
        std::size_t c = 0;
        for (; c + NV * N <= dv; c += NV * N)
            pv_tile<F, R, NV, false>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, full, N);
        for (; c + N <= dv; c += N) pv_tile<F, R, 1, false>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, full, N);
        if (c < dv) pv_tile<F, R, 1, true>(pi, ldp, v + c, ldv, keys, ai, oi + c, ldo, F::tail_mask(dv - c), dv - c);
    });
}

// ---- softmax_step ------------------------------------------------------------------------------------
// The online-softmax update of kernel_table.hpp, one algorithm on every SIMD ISA. The score is formed in
// vector arithmetic, rounded after each of scale, softcap, ALiBi and bias (the bound kernel_table.hpp allows;
// the scalar specification, kernels/scalar.cpp with attention_score.hpp, rounds once in double). p = exp(x - m)
// uses the library's exp core (generic/lanes.hpp, <= 1 ULP): with the exact argument x - m (F::exp_minus) in
// general, and on the plain path (only a scale and the band) with t = x - m rounded once (exp_normal below,
// where that rounding is harmless). Comparison results are the traits' mask type F::B (vector lanes on
// AVX2/NEON, opmask registers on AVX-512), combined only through mand/mor/zero_unless/zero_if/blend.

// Band limits as T: j - i is an exact small integer; limits outside +-2^22 act as "none".
template <class T>
inline T band_limit(std::ptrdiff_t v) {
    return T(v < -(1 << 22) ? -(1 << 22) : v > (1 << 22) ? (1 << 22) : v);
}

// exp(t) for t <= ~0, and +0 where t < kNormalMinArg (so every result is normal or zero; NaN stays NaN). The
// reduction of lanes' exp_core without its subnormal branch: k = round(t log2e) by the shifter S = 0x1.8p23
// (fma(t, log2e, S) - S), r = t - k LN2_HI - k LN2_LO (Cody-Waite), p(r) evaluated as lanes' poly_split (1 + (r
// + r^2 q), the coefficients of exp_core, one rounding more than its Horner form, both <= 1 ULP; the attention
// goldens pin this form), times 2^k: RN(p 2^k) by vscalefps where the ISA has it (F::kScalef), else a product
// with 2^k built in the exponent field from k's integer (the bit difference ks - S), for which t is first
// clamped at kNormalMinArg so that 2^k stays normal. Both are the same exact product wherever t >=
// kNormalMinArg, and every other lane is zeroed: the same bits either way (vscalefps saves the clamp and the
// two integer operations, 3 of the plain step's 20 per vector, and its zero-mask the masked move that zeroes
// the lanes below: float32 prefill of 8 heads x 1024 x 64, one Xeon core, 0.98x the time). float64: exp_core
// itself with tl = 0 (its subnormal branch is never taken for t >= kNormalMinArg).
template <class F>
NX_INLINE typename F::V exp_normal_or_zero(typename F::V t) {
    using V = typename F::V;
    const V tnorm = F::set1(F::kNormalMinArg);
    const auto below = F::lt(t, tnorm);
    if constexpr (sizeof(typename F::T) == 4) {
        const V shifter = F::set1(0x1.8p23f);
        if constexpr (!F::kScalef) t = F::max(tnorm, t);  // NaN stays NaN (max returns t)
        const V ks = F::fmadd(t, F::set1(kLog2eF), shifter);
        const V k = F::sub(ks, shifter);
        V r = F::fnmadd(k, F::set1(kLn2HiF), t);
        r = F::fnmadd(k, F::set1(kLn2LoF), r);
        if constexpr (F::kScalef) return F::scalef_zero_if(below, F::poly_split(r), k);
        else return F::zero_if(below, F::mul(F::poly_split(r), F::pow2(F::int_of_shifted(ks, shifter))));
    } else {
        return F::zero_if(below, F::template exp_core<false>(F::max(tnorm, t), F::zero()));
    }
}

// softcap * tanh(x / softcap): tanh|y| = (1 - e) / (1 + e) with e = exp(-2|y|) from the library's exp.
// Absolute error <= ~2 ulp(1) of tanh, i.e. <= 2 ulp(softcap) on the capped score.
template <class F>
inline typename F::V soft_cap(typename F::V x, typename F::V cap, typename F::V tmin) {
    using V = typename F::V;
    const V sign = F::set1(typename F::T(-0.0));
    const V y = F::div(x, cap);
    const V a = F::andnot(sign, y);
    const V e = F::template exp_core<false>(F::max(tmin, F::mul(F::set1(-2), a)), F::zero());
    const V one = F::set1(1);
    const V th = F::div(F::sub(one, e), F::add(one, e));
    return F::mul(cap, F::or_(th, F::and_(sign, y)));
}

// alpha = exp(m_old - m_new) (1 when the maximum did not move or is still -inf), with the library's exp.
template <class F>
inline typename F::T rescale_factor(typename F::T m_old, typename F::T m_new) {
    using T = typename F::T;
    if (m_old == m_new || m_new == -port::kInf) return T(1);
    alignas(64) T tmp[F::N];
    F::store(tmp, F::exp_minus(F::set1(m_old), F::set1(-m_new), F::set1(F::clamp_below(m_new))));
    return tmp[0];
}

// The common case: only a scale, and possibly the causal/window band (no softcap, ALiBi or mask). The score
// is x = scale s rounded once to T (the specification's). Pass 1 is the maximum of the raw dot products
// (max(scale s) = scale max(s) for scale > 0, min for scale < 0: rounding is monotonic, so m = round(scale
// max s) is exactly the maximum of the rounded scores x); pass 2 forms x again and t = x - m, rounded once,
// and p = exp(t). Every x <= m, so t <= 0, and t = 0 exactly for the maximal entry. The subtraction rounds
// once: |dt| <= u |t| (0 when x and m are within a factor 2), so |dp| <= u |t| e^t <= u/e, below half an ulp
// of 1; and p = 0 below exp(kNormalMinArg) (~2^-126 float32, ~2^-1022 float64), an absolute change far below
// the rounding of the row sum (>= 1). One FMA, scale s - m rounded once, would not do: for the maximal entry
// it is the rounding error of m, up to ulp(m)/2, far outside exp's range for large |m|. With Band, key j of
// row i counts only if band_lo <= j - i <= band_hi; the others get p = 0 (row i's visible keys are one
// interval, so this is a lane compare, not a mask load).
template <class F, bool Band>
void softmax_step_plain(typename F::T* s, std::size_t lds, std::size_t rows, std::size_t keys,
                        const attn_scores<typename F::T>& sc, typename F::T* m, double* l, typename F::T* alpha) {
    using V = typename F::V;
    using B = typename F::B;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    constexpr std::size_t kChunk = 64;  // rows per phase (the per-row maxima live on the stack)
    const T scale = sc.scale;
    const V ninf = F::set1(-port::kInf), pinf = F::set1(port::kInf);
    const V vscale = F::set1(scale);
    const V lanes = F::iota();
    const bool neg = scale < 0;
    const std::size_t full = keys / N * N;
    const auto mk = F::tail_mask(keys - full);
    // Lanes of row i that count: inside the band (all of them without Band).
    auto inside = [&](std::size_t i, std::size_t j) {
        const V jv = F::add(F::set1(T(j)), lanes);
        return F::mand(F::ge(jv, F::set1(band_limit<T>(sc.band_lo + static_cast<std::ptrdiff_t>(i)))),
                       F::le(jv, F::set1(band_limit<T>(sc.band_hi + static_cast<std::ptrdiff_t>(i)))));
    };
    // The extreme raw score of row i among the lanes that count: the largest, or for a negative scale the
    // smallest (then the largest x = scale s), as -hmax(-min); -inf (+inf) where no lane counts. One of
    // the two per row, chosen outside the loop.
    auto extreme = [&](std::size_t i, auto neg_c) -> T {
        constexpr bool Neg = decltype(neg_c)::value;
        const T* si = s + i * lds;
        const V none = Neg ? pinf : ninf;
        auto acc = [](V a, V b) { return Neg ? F::min(a, b) : F::max(a, b); };
        V e0 = none, e1 = none;
        std::size_t j = 0;
        for (; j + 2 * N <= full; j += 2 * N) {
            const V a = F::load(si + j), b = F::load(si + j + N);
            if constexpr (Band) {
                e0 = acc(e0, F::blend(none, a, inside(i, j)));
                e1 = acc(e1, F::blend(none, b, inside(i, j + N)));
            } else {
                e0 = acc(e0, a);
                e1 = acc(e1, b);
            }
        }
        for (; j < keys; j += N) {
            B in = j < full ? F::eq(F::zero(), F::zero()) : F::mask_v(mk);
            if constexpr (Band) in = F::mand(in, inside(i, j));
            e1 = acc(e1, F::blend(none, j < full ? F::load(si + j) : F::load_tail(si + j, mk), in));
        }
        const V e = acc(e0, e1);
        return Neg ? -F::hmax(F::sub(F::zero(), e)) : F::hmax(e);
    };
    // Three phases per chunk of rows, so the short serial parts of each row (the horizontal max, the
    // rescale factor, the horizontal sum) are batched instead of sitting between the long loops:
    // (1) row maxima, (2) the rescale factors of N rows at once, (3) p = exp(t) and the row sums.
    alignas(64) T m_new[kChunk + 16];
    for (std::size_t c0 = 0; c0 < rows; c0 += kChunk) {
        const std::size_t nr = rows - c0 < kChunk ? rows - c0 : kChunk;
        for (std::size_t r = 0; r < nr; ++r) {
            const std::size_t i = c0 + r;
            const T ext = neg ? extreme(i, std::true_type{}) : extreme(i, std::false_type{});
            const T m_old = m[i];
            T mn = static_cast<T>(ext * scale);
            if (!(mn >= m_old)) mn = m_old == m_old ? m_old : mn;  // the running max (NaN-safe)
            m_new[r] = mn;
        }
        // alpha = exp(m_old - m_new); 1 while the maximum is -inf (and exactly 1 when it did not move).
        for (std::size_t r = 0; r < nr; r += N) {
            alignas(64) T mo[N], mn[N], xl[N], a[N];
            for (std::size_t t = 0; t < N; ++t) {
                const bool live = r + t < nr;
                mo[t] = live ? m[c0 + r + t] : T(0);
                mn[t] = live ? m_new[r + t] : T(0);
                xl[t] = F::clamp_below(mn[t]);  // m_old = -inf is clamped there: exp underflows to 0
            }
            const V vn = F::load(mn);
            V av = F::exp_minus(F::load(mo), F::sub(F::zero(), vn), F::load(xl));
            av = F::blend(av, F::set1(T(1)), F::mor(F::eq(vn, ninf), F::eq(F::load(mo), vn)));
            F::store(a, av);
            for (std::size_t t = 0; t < N && r + t < nr; ++t) alpha[c0 + r + t] = a[t];
        }
        for (std::size_t r = 0; r < nr; ++r) {
            const std::size_t i = c0 + r;
            T* si = s + i * lds;
            const V mv = F::set1(m_new[r] == -port::kInf ? T(0) : m_new[r]);
            V sum0 = F::zero(), sum1 = F::zero();
            auto pexp = [&](V x) { return exp_normal_or_zero<F>(F::sub(F::mul(x, vscale), mv)); };
            std::size_t j = 0;
            for (; j + 2 * N <= full; j += 2 * N) {
                V p0 = pexp(F::load(si + j)), p1 = pexp(F::load(si + j + N));
                if constexpr (Band) {
                    p0 = F::zero_unless(inside(i, j), p0);
                    p1 = F::zero_unless(inside(i, j + N), p1);
                }
                F::store(si + j, p0);
                F::store(si + j + N, p1);
                sum0 = F::add(sum0, p0);
                sum1 = F::add(sum1, p1);
            }
            for (; j < keys; j += N) {
                if (j < full) {
                    V p0 = pexp(F::load(si + j));
                    if constexpr (Band) p0 = F::zero_unless(inside(i, j), p0);
                    F::store(si + j, p0);
                    sum0 = F::add(sum0, p0);
                } else {
                    V p1 = F::zero_unless(F::mask_v(mk), pexp(F::load_tail(si + j, mk)));
                    if constexpr (Band) p1 = F::zero_unless(inside(i, j), p1);
                    F::store_tail(si + j, mk, p1);
                    sum1 = F::add(sum1, p1);
                }
            }
            typename F::Acc acc;
            F::flush(acc, F::add(sum0, sum1));
            l[i] = l[i] * double(alpha[i]) + acc.total();
            m[i] = m_new[r];
        }
    }
}

// Softcap, ALiBi, bias or a boolean mask: each step of the score in vector arithmetic (rounded after each,
// at most 5 roundings plus tanh's ~2 ulp(softcap)), then p = exp(x - m) with the exact argument and the row
// sum in working precision (at most one key block) flushed to double. The maximum is F::max over the row, so
// a NaN score may or may not reach m (max's NaN rule is the ISA's); it makes its p, and so l, NaN either way.
template <class F>
void k_softmax_step(typename F::T* s, std::size_t lds, std::size_t rows, std::size_t keys,
                    const attn_scores<typename F::T>& sc, typename F::T* m, double* l, typename F::T* alpha) {
    using V = typename F::V;
    using B = typename F::B;
    using T = typename F::T;
    constexpr std::size_t N = F::N;
    if (!(sc.softcap > 0) && sc.alibi_slope == 0 && !sc.bias && !sc.keep)
        return sc.band ? softmax_step_plain<F, true>(s, lds, rows, keys, sc, m, l, alpha)
                       : softmax_step_plain<F, false>(s, lds, rows, keys, sc, m, l, alpha);
    const V ninf = F::set1(-port::kInf);
    const V scale = F::set1(sc.scale), cap = F::set1(sc.softcap), slope = F::set1(sc.alibi_slope);
    const V tmin = F::set1(F::kMinArg);
    const V lanes = F::iota();
    const bool capped = sc.softcap > 0, alibi = sc.alibi_slope != 0;
    for (std::size_t i = 0; i < rows; ++i) {
        T* si = s + i * lds;
        const V band_lo = F::set1(band_limit<T>(sc.band_lo + static_cast<std::ptrdiff_t>(i)));
        const V band_hi = F::set1(band_limit<T>(sc.band_hi + static_cast<std::ptrdiff_t>(i)));
        const V centre = F::set1(T(static_cast<std::ptrdiff_t>(i) + sc.alibi_center));
        const T* brow = sc.bias ? sc.bias + static_cast<std::ptrdiff_t>(i) * sc.bias_ld : nullptr;
        const std::uint8_t* krow = sc.keep ? sc.keep + static_cast<std::ptrdiff_t>(i) * sc.keep_ld : nullptr;
        V mx = ninf;
        // Pass 1: scores (stored back) and their maximum; lanes past `keys` are -inf.
        for (std::size_t j = 0; j < keys; j += N) {
            const std::size_t n = keys - j < N ? keys - j : N;
            const auto mk = F::tail_mask(n);
            V x = F::mul(n == N ? F::load(si + j) : F::load_tail(si + j, mk), scale);
            const V jv = F::add(F::set1(T(j)), lanes);
            if (capped) x = soft_cap<F>(x, cap, tmin);
            if (alibi) {
                const V dist = F::andnot(F::set1(T(-0.0)), F::sub(jv, centre));
                x = F::fnmadd(slope, dist, x);
            }
            if (brow) x = F::add(x, n == N ? F::load(brow + j) : F::load_tail(brow + j, mk));
            B in = F::mask_v(mk);  // lanes that count: before the end, kept by the mask, inside the band
            if (krow) in = F::mand(in, F::keep_in(krow + j, n));
            if (sc.band) in = F::mand(in, F::mand(F::ge(jv, band_lo), F::le(jv, band_hi)));
            x = F::blend(ninf, x, in);
            if (n == N) F::store(si + j, x); else F::store_tail(si + j, mk, x);
            mx = F::max(mx, x);
        }
        const T m_old = m[i];
        T m_new = F::hmax(mx);
        if (!(m_new >= m_old)) m_new = m_old == m_old ? m_old : m_new;  // keep the running max (NaN-safe)
        const T mu = m_new == -port::kInf ? T(0) : m_new;
        const V negm = F::set1(-mu), xlow = F::set1(F::clamp_below(mu)), tnorm = F::set1(F::kNormalMinArg);
        const T a = rescale_factor<F>(m_old, m_new);
        // Pass 2: p = exp(x - m) and its sum (working precision within the block, then double); 0 below the
        // normal range (x - m < kNormalMinArg, as the plain path's exp_normal), as kernel_table.hpp specifies.
        auto pexp = [&](V x) { return F::zero_if(F::lt(F::add(x, negm), tnorm), F::exp_minus(x, negm, xlow)); };
        V sum = F::zero();
        for (std::size_t j = 0; j < keys; j += N) {
            const std::size_t n = keys - j < N ? keys - j : N;
            if (n == N) {
                const V p = pexp(F::load(si + j));
                F::store(si + j, p);
                sum = F::add(sum, p);
            } else {
                const auto mk = F::tail_mask(n);
                const V p = F::zero_unless(F::mask_v(mk), pexp(F::load_tail(si + j, mk)));
                F::store_tail(si + j, mk, p);
                sum = F::add(sum, p);
            }
        }
        typename F::Acc acc;
        F::flush(acc, sum);
        l[i] = l[i] * double(a) + acc.total();
        m[i] = m_new;
        alpha[i] = a;
    }
}

// ---- the table entries ---------------------------------------------------------------------------------
template <class F>
attention_kernels<typename F::T> make_attention_table() {
    attention_kernels<typename F::T> k{};
    k.pack_kt = k_pack_kt<F>;
    k.qk = k_qk<F>;
    k.softmax_step = k_softmax_step<F>;
    k.pv = k_pv<F>;
    k.qk_direct = k_qk_direct<F>;
    k.tile_rows = static_cast<std::size_t>(F::kTileRows);
    k.pv_split = 1;
    return k;
}

// The K/V-reading entries for a 16-bit cache S (F: the float32 attention traits).
template <class F, class S>
attention_kv_kernels<S> make_attention_kv_table() {
    attention_kv_kernels<S> k{};
    k.pack_kt = k_pack_kt<F, S>;
    k.pv = k_pv<F, S>;
    k.qk_direct = k_qk_direct<F, S>;
    return k;
}
