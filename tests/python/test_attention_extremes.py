"""normexp.attention at extreme score magnitudes and scales: every SIMD kernel set against the scalar
specification and a long double reference, on every ISA this CPU runs.

The specification (cpp/src/kernels/scalar.cpp, attn_score and k_softmax_step): a score is
x = scale * (q . k), with softcap, ALiBi and an additive mask applied, rounded once to the dtype; the
row's maximum m is taken over those rounded scores and p = exp(x - m) uses the exact difference, so the
maximal entry has p = 1 and no p exceeds 1 however large |x| is. At |x| ~ 1e10 (float32) the rounding of
x is hundreds of units: a kernel that forms x - m from the unrounded product instead gets
p = exp(+-hundreds) for the maximal entry, i.e. an overflow (NaN output) or every p clamped alike (a
uniform row).

Inputs are built so that the dot products are exact in every kernel set: q and k hold integers below 64
in magnitude times powers of two, so every partial sum of q . k, in any order and with or without FMAs, is
an integer multiple of one power of two u below 2^19 u (within float32's 24 bits) and below the case's
magnitude. The score's rounding is then the specification's alone, and the comparison tests the softmax,
not the GEMM. Features that round again use exact values: ALiBi slopes and additive
masks are powers of two (times small integers) close to the scores' units with a power-of-two scale, and
softcap is used saturated (|x| >= 20 softcap, where tanh rounds to +-1 in both dtypes) or at x = 0, so
every kernel set forms the same scores.

Bounds (eps of the dtype): with exact scores each p is within 2 eps relative (exp within 1 ULP, plus one
rounding of x - m or none), the row sum and P V add at most (Lkv + 2) eps / 2 relative, the division one
rounding: |d out| <= max|v| (Lkv + 16) eps. lse = m + log(l) rounded once: |d lse| <= (Lkv + 8) eps +
ulp(lse). A score of +inf (an overflowing product) makes its row NaN, and a row whose scores are all -inf
is 0 with lse -inf, in every set. SIMD against scalar: twice these bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import normexp

ISAS = normexp.available_isas()
SIMD_ISAS = [i for i in ISAS if i != "scalar"]
DTYPES = [np.float32, np.float64]
LD = np.longdouble

# Largest |q . k| of a case; float32 up to its overflow threshold, float64 up to 1e300.
MAGNITUDES = {
    np.float32: [1e3, 6e4**2, 1e12, 1e20, 1e30, 3e38],
    np.float64: [1e3, 1e12, 1e19**2, 1e100, 1e200, 1e300],
}
# Scales: tiny to huge, negative too; powers of two make the product exact, the others round it.
SCALES = [None, 1e-30, -1e-30, 2.0**-40, 1e-10, 0.1, -1 / 3, 1.0, -7.0, 1e10, -1e10, 1e30, -1e30]


# ---------------------------------------------------------------------------------------------------------
# Inputs with exact dot products, and the reference.
def exact_qk(rng, qshape, kshape, dtype, magnitude, ties=0, width=63):
    """q, k of integers below 64 in magnitude times powers of two, with sum_d |q_d k_d| in
    (magnitude / 2, magnitude]; and the power of two u with q . k an integer multiple of u (< 2^19 u).

    ties > 0: the key rows are copies of `ties` distinct rows, so equal scores sit in different key
    blocks (and decode splits)."""
    nq = rng.integers(-width, width + 1, qshape)
    nk = rng.integers(-width, width + 1, kshape)
    if ties:
        nk = nk[..., rng.integers(0, min(ties, kshape[-2]), kshape[-2]), :]
    rep = qshape[-3] // kshape[-3]
    n = np.abs(nq) @ np.swapaxes(np.repeat(np.abs(nk), rep, axis=-3), -1, -2)
    e = math.floor(math.log2(magnitude / max(1, int(n.max()))))
    ea = e // 2
    return (nq * 2.0**ea).astype(dtype), (nk * 2.0 ** (e - ea)).astype(dtype), 2.0**e


def values(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def spec_scores(q, k, scale=None, softcap=None, alibi=None, mask=None, is_causal=False, window=None,
                alignment="top_left"):
    """The specification's scores (rounded to q's dtype; -inf where masked), shape (..., Hq, Lq, Lkv)."""
    dtype = q.dtype.type
    hq, hk = q.shape[-3], k.shape[-3]
    kr = np.repeat(k, hq // hk, axis=-3)
    raw = (q.astype(LD) @ np.swapaxes(kr.astype(LD), -1, -2)).astype(np.float64)  # exact by construction
    d, lq, lk = q.shape[-1], q.shape[-2], k.shape[-2]
    sc = float(dtype(1.0 / math.sqrt(d) if scale is None else scale))  # the kernels' scale, in the dtype
    with np.errstate(over="ignore", invalid="ignore"):
        x = raw * sc  # exact for float32 (a double product of two floats); rounded once for float64
        if softcap is not None:
            cap = float(dtype(softcap))
            x = cap * np.tanh(x / cap)
        diag = np.arange(lq)[:, None] + (lk - lq if alignment == "bottom_right" else 0)
        j = np.arange(lk)[None, :]
        if alibi is not None:
            sl = np.broadcast_to(np.asarray(alibi, dtype).astype(np.float64), x.shape[:-2])
            x = x - sl[..., None, None] * np.abs(j - diag)
        if mask is not None and mask.dtype != np.bool_:
            x = x + mask.astype(dtype).astype(np.float64)
        x = x.astype(dtype)  # the one rounding
    keep = np.ones(x.shape, bool)
    if mask is not None and mask.dtype == np.bool_:
        keep &= mask
    if is_causal:
        keep &= j <= diag
    if window is not None:
        keep &= j > diag - window
    return np.where(keep, x, dtype(-np.inf))


def softmax_reference(x, v, hq):
    """(out, lse) of the scores x in long double: NaN rows for a NaN or +inf score, 0 / -inf for rows
    with every score -inf."""
    vr = np.repeat(v, hq // v.shape[-3], axis=-3).astype(LD)
    xl = x.astype(LD)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        nan_row = np.isnan(xl).any(-1) | np.isposinf(xl).any(-1)
        m = np.max(np.where(np.isnan(xl), -np.inf, xl), axis=-1, keepdims=True)
        dead = np.isneginf(m[..., 0])
        ms = np.where(np.isfinite(m), m, 0)
        p = np.where(np.isneginf(xl), 0, np.exp(xl - ms))
        p = np.where(np.isnan(p), 0, p)
        lsum = p.sum(-1)
        out = (p @ vr) / np.where(lsum > 0, lsum, 1)[..., None]
        lse = m[..., 0] + np.log(np.where(lsum > 0, lsum, 1))
    out = np.where(dead[..., None], 0, out)
    lse = np.where(dead, -np.inf, lse)
    out = np.where(nan_row[..., None], np.nan, out)
    lse = np.where(nan_row, np.nan, lse)
    return out, lse


# ---------------------------------------------------------------------------------------------------------
# Comparison.
def assert_close(got, want, v, lk, dtype, what, factor=1.0):
    """got = (out, lse) against want within `factor` times the module's bounds; identical NaN rows,
    identical infinite lse."""
    g_out, g_lse = (np.asarray(a) for a in got)
    w_out, w_lse = (np.asarray(a) for a in want)
    assert g_out.dtype == dtype and g_lse.dtype == dtype, what
    eps = float(np.finfo(dtype).eps)
    vmax = float(np.max(np.abs(v), initial=0.0))
    nan_g, nan_w = np.isnan(g_out), np.isnan(w_out)
    assert np.array_equal(nan_g, nan_w), f"{what}: NaN outputs at {np.argwhere(nan_g != nan_w)[:4].tolist()}"
    assert np.array_equal(np.isnan(g_lse), np.isnan(w_lse)), f"{what}: NaN lse differ"
    fin = ~nan_w
    err = np.abs(g_out[fin].astype(LD) - w_out[fin].astype(LD))
    tol = factor * vmax * (lk + 16) * eps
    worst = float(np.max(err, initial=0.0))
    assert worst <= tol, f"{what}: |d out| = {worst:.3g} > {tol:.3g}"
    for sign in (np.isposinf, np.isneginf):
        assert np.array_equal(sign(g_lse), sign(w_lse)), f"{what}: infinite lse differ"
    f = np.isfinite(w_lse)
    wl = w_lse[f].astype(LD)
    ulp = np.spacing(np.abs(w_lse[f].astype(dtype))).astype(LD)
    lerr = np.abs(g_lse[f].astype(LD) - wl)
    ltol = factor * ((lk + 8) * eps + ulp)
    bad = lerr > ltol
    assert not bad.any(), f"{what}: |d lse| = {float(np.max(lerr[bad])):.3g} > {float(np.min(ltol[bad])):.3g}"


def run(isa, q, k, v, **kw):
    with normexp.use_isa(isa):
        return normexp.attention(q, k, v, return_lse=True, **kw)


def check_every_isa(q, k, v, what, **kw):
    """Every ISA against the reference, every SIMD set against scalar; returns the scalar result."""
    ref = softmax_reference(spec_scores(q, k, **_ref_kw(kw)), v, q.shape[-3])
    dtype, lk = q.dtype.type, k.shape[-2]
    res = {isa: run(isa, q, k, v, **kw) for isa in ISAS}
    for isa in ISAS:
        assert_close(res[isa], ref, v, lk, dtype, f"{what} {isa} vs reference")
    for isa in SIMD_ISAS:
        assert_close(res[isa], res["scalar"], v, lk, dtype, f"{what} {isa} vs scalar", factor=2.0)
    return res["scalar"]


def _ref_kw(kw):
    r = dict(kw)
    if "causal_alignment" in r:
        r["alignment"] = r.pop("causal_alignment")
    if "alibi_slopes" in r:
        r["alibi"] = r.pop("alibi_slopes")
    return r


# ---------------------------------------------------------------------------------------------------------
def test_reported_cases():
    # One key's score is 7.5e9 (float32: rounded by 256), the other's 0: the output is v of the first key.
    for isa in ISAS:
        out = run(isa, np.ones((1, 1), np.float32), np.array([[0.75], [0.0]], np.float32),
                  np.array([[0.0], [1.0]], np.float32), scale=1e10)[0]
        assert out.tolist() == [[0.0]], f"{isa}: {out.tolist()}"
    # Entries around 6e4 with the default scale (1/sqrt(3) rounds every product), and float64 entries
    # around 1e19 (scores ~1e38, rounded by ~1e22).
    rng = np.random.default_rng(6)
    for dtype, unit in ((np.float32, 2.0**13), (np.float64, 2.0**60)):
        q = (rng.integers(-7, 8, (2, 4, 3)) * unit).astype(dtype)
        k = (rng.integers(-7, 8, (2, 40, 3)) * unit).astype(dtype)
        v = values(rng, (2, 40, 5), dtype)
        check_every_isa(q, k, v, f"{np.dtype(dtype).name} entries {unit:g}")


@pytest.mark.parametrize("magnitude_index", range(6))
@pytest.mark.parametrize("dtype", DTYPES)
def test_scales_and_magnitudes(dtype, magnitude_index):
    """Plain attention (scale only) over the scale sweep, at one magnitude of q . k."""
    magnitude = MAGNITUDES[dtype][magnitude_index]
    rng = np.random.default_rng(magnitude_index)
    shapes = [  # (B, Hq, Hk, Lq, Lkv, D, Dv)
        (1, 1, 1, 1, 1, 1, 1),
        (1, 2, 1, 3, 7, 3, 5),
        (1, 1, 1, 5, 17, 9, 3),
        (1, 2, 2, 13, 129, 17, 8),
        (1, 1, 1, 7, 300, 130, 4),
    ]
    for scale in SCALES:
        for b, hq, hk, lq, lk, d, dv in shapes:
            for ties in (0, 3):
                q, k, _ = exact_qk(rng, (b, hq, lq, d), (b, hk, lk, d), dtype, magnitude, ties=ties)
                v = values(rng, (b, hk, lk, dv), dtype)
                check_every_isa(q, k, v, f"|qk|<={magnitude:g} scale={scale} shape={(b, hq, hk, lq, lk, d)} "
                                f"ties={ties}", scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_head_dims(dtype):
    """Head dimensions 1..130 (vector, tile and panel tails), a score rounding by ~2^8 units."""
    rng = np.random.default_rng(11)
    magnitude = 3e11 if dtype == np.float32 else 3e20
    for d in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 130]:
        for scale in (None, -0.3):
            q, k, _ = exact_qk(rng, (1, 1, 6, d), (1, 1, 40, d), dtype, magnitude, ties=4)
            v = values(rng, (1, 1, 40, 3), dtype)
            check_every_isa(q, k, v, f"D={d} scale={scale}", scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_key_lengths_and_query_blocks(dtype):
    """Lkv across key-block (128) and vector tails, Lq across the query block (192)."""
    rng = np.random.default_rng(12)
    magnitude = 1e10 if dtype == np.float32 else 1e19
    for lk in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 127, 128, 129, 130, 200, 255, 256, 257, 300]:
        q, k, _ = exact_qk(rng, (1, 2, 5, 12), (1, 2, lk, 12), dtype, magnitude, ties=lk % 4)
        v = values(rng, (1, 2, lk, 6), dtype)
        check_every_isa(q, k, v, f"Lkv={lk}")
    for lq in (95, 191, 192, 193, 385):
        q, k, _ = exact_qk(rng, (1, 1, lq, 8), (1, 1, 150, 8), dtype, magnitude, ties=5)
        v = values(rng, (1, 1, 150, 4), dtype)
        check_every_isa(q, k, v, f"Lq={lq}", scale=3.3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_key_split(dtype):
    """len_q = 1 with long key ranges: the keys are split into pieces merged by the log-sum-exp rule;
    equal maxima in different pieces, plain and grouped-query heads, with and without the band."""
    rng = np.random.default_rng(13)
    for magnitude in MAGNITUDES[dtype][1::2]:
        for lk, hq, hk in ((1024, 1, 1), (1100, 2, 1), (2100, 4, 2), (4096, 1, 1)):
            for ties in (0, 6):
                q, k, _ = exact_qk(rng, (1, hq, 1, 16), (1, hk, lk, 16), dtype, magnitude, ties=ties)
                v = values(rng, (1, hk, lk, 4), dtype)
                what = f"decode |qk|<={magnitude:g} Lkv={lk} Hq={hq} Hk={hk} ties={ties}"
                check_every_isa(q, k, v, what)
                check_every_isa(q, k, v, what + " causal window", scale=-0.7, is_causal=True,
                                causal_alignment="bottom_right", window=lk - 300)


BANDS = [
    {"is_causal": True},
    {"is_causal": True, "causal_alignment": "bottom_right"},
    {"window": 5},
    {"window": 40, "is_causal": True},
    {"window": 130, "is_causal": True, "causal_alignment": "bottom_right"},
]


@pytest.mark.parametrize("band", BANDS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_and_window(dtype, band):
    rng = np.random.default_rng(14)
    for magnitude in MAGNITUDES[dtype]:
        for scale in (None, 1e-30, 0.1, -7.0, 1e10, -1e30):
            for lq, lk in ((7, 7), (20, 150), (150, 140), (3, 300)):
                q, k, _ = exact_qk(rng, (1, 2, lq, 10), (1, 1, lk, 10), dtype, magnitude, ties=3)
                v = values(rng, (1, 1, lk, 3), dtype)
                check_every_isa(q, k, v, f"|qk|<={magnitude:g} scale={scale} Lq={lq} Lkv={lk}", scale=scale, **band)


FEATURES = ["softcap", "alibi", "bias", "keep", "bias+causal", "alibi+keep+window", "softcap+alibi+bias+causal"]


@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_score_features(dtype, feature):
    """softcap, ALiBi, additive and boolean masks (the kernels' general path) at every magnitude."""
    rng = np.random.default_rng(15)
    b, hq, hk, lq, lk, d = 2, 2, 1, 9, 140, 7
    for magnitude in MAGNITUDES[dtype]:
        for scale in (2.0**-20, 1.0, -(2.0**10)):
            if magnitude * abs(scale) > 0.5 * float(np.finfo(dtype).max):
                continue  # no overflow: an ALiBi or mask term must not meet an infinite score
            q, k, unit = exact_qk(rng, (b, hq, lq, d), (b, hk, lk, d), dtype, magnitude, ties=4)
            v = values(rng, (b, hk, lk, 5), dtype)
            unit *= abs(scale)  # every score is an integer multiple of unit, below 2^19 units
            kw = {"scale": scale}
            if "softcap" in feature:
                kw["softcap"] = unit / 32  # every nonzero score saturates: tanh = +-1 exactly
            if "alibi" in feature:
                kw["alibi_slopes"] = np.array([[unit * 4, unit / 4], [unit, unit * 16]])
            if "bias" in feature:
                bias = (rng.integers(-7, 8, (b, hq, lq, lk)) * (unit * 8)).astype(dtype)
                bias[..., 3, :] = -np.inf
                bias[..., ::7] = -np.inf
                kw["mask"] = bias
            if "keep" in feature:
                keep = rng.random((b, 1, lq, lk)) < 0.6
                keep[..., 2, :] = False  # a fully masked row
                kw["mask"] = keep
            if "causal" in feature:
                kw["is_causal"] = True
            if "window" in feature:
                kw["window"] = 50
            check_every_isa(q, k, v, f"{feature} |qk|<={magnitude:g} scale={scale}", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_scores(dtype):
    """Finite dot products whose scaled scores overflow: a +inf score makes its row NaN, -inf scores
    weigh 0, and a row whose scores are all -inf is 0 with lse -inf, in every kernel set."""
    rng = np.random.default_rng(16)
    top = float(np.finfo(dtype).max)
    e = math.floor(math.log2(top / 8 / 3969))  # 3969 u = 63^2 u in (top/16, top/8]
    ea = e // 2
    lk = 70
    nq = np.array([[63, 63], [0, 0], [-63, 0], [1, -1], [63, 0], [0, 1], [-63, 63]])
    nk = np.stack([np.full(lk, 63), rng.integers(-63, 64, lk)], axis=-1)
    nk[5] = [63, 63]
    q = (nq * 2.0**ea).astype(dtype)[None]
    k = (nk * 2.0 ** (e - ea)).astype(dtype)[None]
    v = values(rng, (1, lk, 3), dtype)
    for scale in (4.0, 16.5, -16.5, 1e30, -1e30):
        check_every_isa(q, k, v, f"overflow scale={scale}", scale=scale)
        check_every_isa(q, k, v, f"overflow scale={scale} causal", scale=scale, is_causal=True)


# ---------------------------------------------------------------------------------------------------------
# Merging partial attentions (normexp.merge_attention, normexp.dask.attention) at large lse: there
# lse = M + log(sum_p e^(lse_p - M)) rounds to M, and the weights must still sum to 1.
def merge_reference(outs, lses):
    ls = np.stack([np.asarray(x, LD) for x in lses])
    os_ = np.stack([np.asarray(x, LD) for x in outs])
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.max(ls, axis=0)
        dead = np.isneginf(m)
        w = np.exp(ls - np.where(dead, 0, m))
        s = w.sum(axis=0)
        out = np.where(dead[..., None], 0, (w[..., None] * os_).sum(axis=0) / np.where(dead, 1, s)[..., None])
        lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1, s)))
    return out, lse


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_attention_at_large_lse(dtype):
    """merge_attention's rule on its inputs, lse = log sum_p e^(lse_p) and out = sum_p e^(lse_p - lse) out_p
    (a convex combination of the parts), for |lse| up to the dtype's range: parts tied at the maximum,
    parts a few ulp below it, and fully masked parts (-inf)."""
    rng = np.random.default_rng(17)
    top = float(np.finfo(dtype).max)
    for big in (0.0, 1e3, 1e15, 1e17, 1e30, -1e30, top / 2, -top / 2):
        for parts in (1, 2, 3, 5):
            rows, dv = 6, 3
            lses = []
            for p in range(parts):
                lp = np.full(rows, dtype(big))
                for _ in range(2):  # 0, 1 or 2 ulp below the top value
                    lp = np.where(rng.random(rows) < 0.5, np.nextafter(lp, dtype(-np.inf)), lp)
                if p:
                    lp[p % (rows - 1)] = -np.inf  # a part that saw no key of this row
                lp[rows - 1] = -np.inf  # a row no part saw a key of: out 0, lse -inf
                lses.append(lp)
            outs = [values(rng, (rows, dv), dtype) for _ in range(parts)]
            got = normexp.merge_attention(outs, lses)
            want = merge_reference(outs, lses)
            assert_close(got, want, np.stack(outs), 8, dtype, f"merge parts={parts} lse~{big:g}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dask_attention_at_large_scores(dtype):
    """normexp.dask.attention over chunks that hold the same keys (so every chunk's lse is the same
    value): the merge averages the chunks exactly as the unsplit attention does, at every magnitude."""
    da = pytest.importorskip("dask.array")  # in the test extra (pyproject.toml)
    import normexp.dask as nd

    rng = np.random.default_rng(18)
    for magnitude in MAGNITUDES[dtype]:
        q, k8, _ = exact_qk(rng, (1, 2, 3, 4), (1, 1, 8, 4), dtype, magnitude, ties=3)
        k = np.concatenate([k8] * 4, axis=-2)
        v = values(rng, (1, 1, 32, 5), dtype)
        want = normexp.attention(q, k, v, scale=0.37, return_lse=True)
        for chunks in ((8, 8, 8, 8), (16, 16)):
            lazy = nd.attention(q, da.from_array(k, chunks=(1, 1, chunks, 4)), da.from_array(v, chunks=(1, 1, chunks, 5)),
                                scale=0.37, return_lse=True, split_every=2)
            got = tuple(x.compute() for x in lazy)
            assert_close(got, want, v, 32, dtype, f"dask |qk|<={magnitude:g} chunks={chunks}")


# An infinite value under a tiny weight. A weight below the dtype's normal range (a score more than
# kNormalMinArg = 87.3 (float32) / 708.3 (float64) below its key block's running maximum) is 0 in every
# kernel set (kernel_table.hpp, softmax_step), so an infinite v there gives 0 * inf = NaN on every set alike,
# and a larger weight gives inf on every set, however the maximum moves afterwards (later rescaling keeps
# inf: its factor only underflows to 0 for a jump of more than ~104 / ~745). Scores are exact small integers
# (q = 1, scale 1); key 0 holds v = +inf in column 0, key 1 (same block) scores `gap` above it, and a key
# in a later block (or a later decode split) scores `later` above that: the final gap is gap + later.
@pytest.mark.parametrize("layout", ["decode", "decode_split", "prefill"])
@pytest.mark.parametrize("feature", ["plain", "softcap", "alibi", "bias", "keep"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_value_under_tiny_weight(dtype, feature, layout):
    normal = 87.3 if dtype == np.float32 else 708.3
    lk, lq, late = {"decode": (300, 1, 260), "decode_split": (1100, 1, 1050), "prefill": (300, 5, 260)}[layout]
    kw = {"scale": 1.0}
    if feature == "softcap":
        kw["softcap"] = 1e7  # x ~ softcap tanh(x / softcap): moves these scores by < 0.03
    elif feature == "alibi":
        kw["alibi_slopes"] = np.array([2.0**-24])  # moves a score by < 1e-4 per key of distance
    elif feature == "bias":
        kw["mask"] = np.zeros((lq, lk), dtype)
    elif feature == "keep":
        kw["mask"] = np.ones((lq, lk), bool)
    for gap, later in ((50.0, 20.0), (normal - 5, 30.0), (normal + 5, 0.0), (normal + 5, 30.0), (normal + 60, 20.0)):
        k = np.full((1, 1, lk, 1), -3 * normal, dtype)  # weight 0 for the background keys
        v = np.ones((1, 1, lk, 2), dtype)
        k[0, 0, 0, 0], k[0, 0, 1, 0], k[0, 0, late, 0] = 0.0, gap, gap + later
        v[0, 0, 0, 0] = np.inf
        q = np.ones((1, 1, lq, 1), dtype)
        want_nan = gap > normal  # the weight exp(-gap) in key 0's block
        for isa in ISAS:
            out, lse = run(isa, q, k, v, **kw)
            what = f"{isa} {feature} {layout} gap {gap} then {later}: {out[0, 0, :, 0].tolist()}"
            if want_nan:
                assert np.isnan(out[..., 0]).all(), what
            else:
                assert np.isposinf(out[..., 0]).all(), what
            assert np.allclose(out[..., 1], 1.0, rtol=1e-6), what
            assert np.isfinite(lse).all(), what
