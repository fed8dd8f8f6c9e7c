"""normexp.attention with float16 / bfloat16 inputs: q, k, v of one 16-bit type, or a float32 q against a
16-bit K/V cache (cpp/src/attention.cpp, the K/V entries of kernels/kernel_table.hpp).

The reference is float64 arithmetic on the same 16-bit values. The kernels accumulate in float32, so the
float32 bound of test_attention.py (u = 2^-24) holds before the output is rounded; a 16-bit output is then
rounded once, adding at most half an ulp of its dtype: |out - ref| <= b32 + u16 (|ref| + b32), plus half
of float16's smallest subnormal. lse is float32 with the float32 bound.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import normexp
from normexp.attention import _kernel_view

from test_attention import _bounds, reference, reference_for

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
# (q dtype, k/v dtype)
COMBOS = [(F16, F16), (BF16, BF16), (F32, F16), (F32, BF16)]
COMBO_IDS = ["f16", "bf16", "f32q-f16kv", "f32q-bf16kv"]
RNG = np.random.default_rng(20261203)

try:  # optional peer
    import torch
except Exception:  # pragma: no cover - torch is optional
    torch = None


def rand(shape, dtype, sd=1.0):
    return (RNG.standard_normal(shape) * sd).astype(np.float32).astype(dtype)


def half_ulp(dtype):
    """Unit roundoff of the output dtype (0 for float32: the float32 bound covers its rounding)."""
    return {F16: 2.0**-11, BF16: 2.0**-8}.get(np.dtype(dtype), 0.0)


def check16(q, k, v, **kw):
    """normexp.attention(return_lse=True) against the float64 reference of the same values."""
    out, lse = normexp.attention(q, k, v, return_lse=True, **kw)
    q64, k64, v64 = (np.asarray(a).astype(np.float64) for a in (q, k, v))
    r_out, r_lse, extra = reference_for(q64, k64, v64, kw)
    b32, b_lse = _bounds(q64, k64, v64, np.float32, kw.get("scale"), kw.get("softcap"), extra)
    assert out.dtype == q.dtype and lse.dtype == F32
    got = out.astype(np.float64)
    bound = b32 + half_ulp(q.dtype) * (np.abs(r_out) + b32) + 2.0**-25
    assert np.all(np.abs(got - r_out) <= bound), f"max err {np.max(np.abs(got - r_out) - bound)} over the bound"
    assert np.array_equal(np.isneginf(lse), np.isneginf(r_lse))
    fin = np.isfinite(r_lse)
    np.testing.assert_allclose(lse[fin], r_lse[fin], rtol=0, atol=b_lse)
    return out, lse


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("b,hq,hk,lq,lk,d,dv", [
    (1, 1, 1, 1, 1, 1, 1), (2, 4, 2, 37, 300, 24, 20), (1, 8, 2, 1, 1500, 64, 64), (1, 2, 2, 130, 129, 33, 17),
    (2, 32, 8, 1, 700, 128, 128),
])
def test_matches_reference(isa, qt, kt, b, hq, hk, lq, lk, d, dv):
    check16(rand((b, hq, lq, d), qt), rand((b, hk, lk, d), kt), rand((b, hk, lk, dv), kt))


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("d", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129])
def test_head_dims_and_tails(isa, qt, kt, d):
    # Decode (qk_direct, the wide pv rows) and prefill (pack_kt, pv tiles); key counts off every panel.
    check16(rand((2, 1, d), qt), rand((2, 37, d), kt), rand((2, 37, d + 2), kt))
    check16(rand((2, 13, d), qt), rand((2, 45, d), kt), rand((2, 45, d), kt))


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
def test_options(isa, qt, kt):
    q, k, v = rand((2, 4, 20, 16), qt), rand((2, 2, 90, 16), kt), rand((2, 2, 90, 12), kt)
    check16(q, k, v, is_causal=True, causal_alignment="bottom_right", window=30)
    check16(q, k, v, is_causal=True, causal_alignment="top_left")
    check16(q, k, v, softcap=3.0, scale=0.7)
    check16(q, k, v, alibi_slopes=np.array([0.5, 0.25, 0.125, 0.0625]), is_causal=True,
            causal_alignment="bottom_right")
    keep = RNG.random((20, 90)) < 0.7
    check16(q, k, v, mask=keep)
    bias = RNG.standard_normal((4, 1, 90)).astype(np.float32)
    bias[:, :, 5] = -np.inf
    check16(q, k, v, mask=bias)
    # A 16-bit additive mask is used as float32 (exactly its values).
    check16(q, k, v, mask=bias.astype(np.float16))


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("group", [4, 5, 8, 12, 16, 17])
def test_grouped_decode(isa, qt, kt, group):
    # One query position, `group` query heads a key/value head: up to 16 rows a task read the key rows in
    # place (the bfloat16 pair kernels too, whose q rows are converted per task), 17 pack K^T; contiguous and
    # (batch, len, heads, dim) caches, the options that change a decode's steps.
    hk, d, dv = 2, 40, 24
    for lk in (37, 700, 2100):
        q = rand((2, group * hk, 1, d), qt)
        kbuf, vbuf = rand((2, lk, hk, d), kt), rand((2, lk, hk, dv), kt)
        for k, v in ((kbuf.swapaxes(1, 2), vbuf.swapaxes(1, 2)),
                     (np.ascontiguousarray(kbuf.swapaxes(1, 2)), np.ascontiguousarray(vbuf.swapaxes(1, 2)))):
            check16(q, k, v)
            check16(q, k, v, is_causal=True, causal_alignment="bottom_right", window=30, softcap=4.0)
            check16(q, k, v, mask=RNG.random((2, group * hk, 1, lk)) < 0.7)
    # A bfloat16 subnormal in one query row: that task's scores by the float32 kernels instead.
    q[0, 3, 0, 5] = np.float32(2.0**-130)
    check16(q, k, v)


@pytest.mark.parametrize("group,d", [(4, 40), (16, 33), (5, 128)])
def test_one_bfloat16_subnormal_in_a_decode_task(isa, group, d):
    # A decode task checks all its q rows for a bfloat16 subnormal (which vdpbf16ps would read as zero) before
    # it takes the pair kernels. One subnormal (2^-127) anywhere in them, the first, a middle or the last entry
    # of a task's rows, against keys of +-1.5 2^127 in its dimension: a product of +-1.5, which a flush would
    # drop (a score error of 0.2 and more). That dimension's other q entries are 0, so they score nothing.
    # Contiguous (batch, heads, len, dim) and a paged pool of all heads a slot (one task over them all).
    hk, lk, dv = 2, 300, 24
    for head, dim in ((0, 0), (group - 1, d - 1), (group + group // 2, d // 2), (2 * group - 1, d - 1)):
        q = rand((1, group * hk, 1, d), BF16).astype(F32)
        q[..., dim] = 0.0
        q[0, head, 0, dim] = 2.0**-127
        k = rand((1, hk, lk, d), BF16).astype(F32)
        k[..., dim] = np.where(RNG.random((1, hk, lk)) < 0.5, -1.5, 1.5) * 2.0**127
        q, k, v = q.astype(BF16), k.astype(BF16), rand((1, hk, lk, dv), BF16)
        assert q.astype(F32)[0, head, 0, dim] == 2.0**-127 and np.isfinite(k.astype(F32)).all()
        out, _ = check16(q, k, v)
        page = 20
        kp = np.ascontiguousarray(k[0].transpose(1, 0, 2)).reshape(lk // page, page, hk, d)
        vp = np.ascontiguousarray(v[0].transpose(1, 0, 2)).reshape(lk // page, page, hk, dv)
        table = np.arange(lk // page, dtype=np.int32)[None]
        paged = normexp.paged_attention(q[:, :, 0], kp, vp, table, np.array([lk], np.int32))
        np.testing.assert_array_equal(paged.view(np.int16), out[:, :, 0].view(np.int16))


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
def test_strided_views_read_in_place(isa, qt, kt):
    # A (batch, len, heads, dim) cache seen as (batch, heads, len, dim): read through its strides, no copy.
    kbuf, vbuf = rand((2, 300, 2, 32), kt), rand((2, 300, 2, 24), kt)
    k, v = kbuf.swapaxes(1, 2), vbuf.swapaxes(1, 2)
    assert _kernel_view(k) is k and _kernel_view(v) is v
    for lq in (1, 40):
        check16(rand((2, 4, lq, 32), qt), k, v, is_causal=True, causal_alignment="bottom_right")
    # head_dim strides other than 1 (K packed element by element, V blocks packed in their own type).
    k2, v2 = rand((2, 2, 70, 64), kt)[..., ::2], rand((2, 2, 70, 48), kt)[..., ::3]
    check16(rand((2, 4, 9, 32), qt), k2, v2)
    check16(rand((2, 4, 1, 32), qt), k2, v2)


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("lq,causal", [(1, False), (130, False), (130, True)])
def test_single_rounding_of_the_float32_result(isa, qt, kt, lq, causal):
    # The 16-bit kernels are the float32 ones on the widened values, and the output is rounded once from the
    # same double quotient: a 16-bit output equals the float32 attention of the widened inputs rounded to
    # 16 bits, except where that float32 result sits next to a 16-bit midpoint (double rounding): never more
    # than one ulp apart, and almost always equal. Decoding (one row: K and V read in place, widened in
    # registers) and prefill (K packed, a V block widened once for all the row tiles), causal too.
    dot = {"avx512_bf16_dot", "amx_bf16"} & set(normexp.isa_extensions())
    if qt == BF16 and kt == BF16 and isa == "avx512" and dot:
        pytest.skip(f"bfloat16 q x bfloat16 K on avx512 with {dot.pop()}: vdpbf16ps or AMX scores, not the float32 "
                    "kernels (their bound: test_attention_bf16.cpp; the results against float64: check16 above)")
    q, k, v = rand((2, 8, lq, 64), qt), rand((2, 2, 2000, 64), kt), rand((2, 2, 2000, 64), kt)
    out = normexp.attention(q, k, v, is_causal=causal)
    wide = normexp.attention(q.astype(F32), k.astype(F32), v.astype(F32), is_causal=causal)
    if qt == F32:
        np.testing.assert_array_equal(out, wide)  # float32 q: the same kernels, the same bits
        return
    r = wide.astype(qt)
    itype = np.int16
    dist = np.abs(out.view(itype).astype(np.int32) - r.view(itype).astype(np.int32))
    assert dist.max() <= 1
    assert np.mean(dist == 0) >= 0.99


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("lq", [1, 20])
def test_nan_and_inf_in_k_or_v(isa, qt, kt, lq):
    q, k, v = rand((1, 2, lq, 16), qt), rand((1, 2, 600, 16), kt), rand((1, 2, 600, 16), kt)
    kn = k.copy()
    kn[0, 0, 517, 3] = np.nan  # head 0: every row sees key 517
    out = normexp.attention(q, kn, v)
    assert np.isnan(out[0, 0].astype(np.float32)).all()
    assert not np.isnan(out[0, 1].astype(np.float32)).any()
    vi = v.copy()
    vi[0, 1, 33, 5] = np.inf  # head 1, column 5: +inf (p > 0), the other columns finite
    out = normexp.attention(q, k, vi).astype(np.float64)
    ref, _ = reference(q.astype(np.float64), k.astype(np.float64), vi.astype(np.float64))
    assert np.array_equal(np.isinf(out), np.isinf(ref)) and np.isinf(out[0, 1, :, 5]).all()
    assert np.array_equal(np.isnan(out), np.isnan(ref))


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
def test_thread_counts_give_the_same_bits(qt, kt):
    q, k, v = rand((1, 32, 1, 128), qt), rand((1, 8, 9000, 128), kt), rand((1, 8, 9000, 128), kt)
    qp, kp, vp = rand((2, 4, 150, 32), qt), rand((2, 4, 333, 32), kt), rand((2, 4, 333, 32), kt)
    saved = normexp.get_num_threads()
    try:
        normexp.set_num_threads(1)
        a, ap = normexp.attention(q, k, v), normexp.attention(qp, kp, vp, is_causal=True)
        normexp.set_num_threads(0)
        b, bp = normexp.attention(q, k, v), normexp.attention(qp, kp, vp, is_causal=True)
    finally:
        normexp.set_num_threads(saved)
    assert a.tobytes() == b.tobytes() and ap.tobytes() == bp.tobytes()


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
def test_out_argument(qt, kt):
    q, k, v = rand((3, 5, 8), qt), rand((3, 40, 8), kt), rand((3, 40, 8), kt)
    out = np.empty((3, 5, 8), qt)
    r = normexp.attention(q, k, v, out=out)
    assert r is out
    assert out.tobytes() == normexp.attention(q, k, v).tobytes()
    with pytest.raises(TypeError):
        normexp.attention(q, k, v, out=np.empty((3, 5, 8), np.float64))


@pytest.mark.parametrize("qt,kt,vt", [
    (F16, BF16, BF16), (BF16, F16, F16), (F32, F16, BF16), (F16, F16, BF16), (np.float64, F16, F16),
    (F16, F32, F32), (BF16, F32, F32), (np.float64, np.float32, np.float32), (F32, np.float64, np.float64),
])
def test_unsupported_combinations(qt, kt, vt):
    q, k, v = rand((2, 3, 8), qt), rand((2, 5, 8), kt), rand((2, 5, 8), vt)
    with pytest.raises(TypeError, match="all float16 or all bfloat16, or float32 q with float16 or bfloat16 k and v"):
        normexp.attention(q, k, v)


def test_unsupported_dtype_names_the_argument():
    q = rand((2, 3, 8), F16)
    with pytest.raises(TypeError, match="k: attention takes float32, float64, float16 or bfloat16"):
        normexp.attention(q, np.zeros((2, 5, 8), np.int16), q)


@pytest.mark.parametrize("qt,kt", COMBOS, ids=COMBO_IDS)
def test_merge_attention(qt, kt):
    q, k, v = rand((2, 3, 4, 16), qt), rand((2, 3, 500, 16), kt), rand((2, 3, 500, 16), kt)
    full, flse = normexp.attention(q, k, v, return_lse=True)
    parts = [normexp.attention(q, k[..., a:b, :], v[..., a:b, :], return_lse=True) for a, b in ((0, 170), (170, 500))]
    out, lse = normexp.merge_attention([p[0] for p in parts], [p[1] for p in parts])
    assert out.dtype == qt and lse.dtype == F32
    # Each part rounded once, the merge once more: within two roundings of the output of the whole.
    tol = 4 * half_ulp(qt) + 1e-5
    np.testing.assert_allclose(out.astype(np.float64), full.astype(np.float64), rtol=0, atol=tol * 4)
    np.testing.assert_allclose(lse, flse, rtol=0, atol=1e-5)
    if qt != F32:
        name = np.dtype(qt).name
        with pytest.raises(TypeError, match=rf"lses\[0\] has dtype {name}; with {name} outs the lses must be float32 "
                                            r"\(attention returns float32 lses for 16-bit outputs\)"):
            normexp.merge_attention([p[0] for p in parts], [p[1].astype(qt) for p in parts])
        with pytest.raises(TypeError, match=rf"outs\[1\] has dtype float32, but outs\[0\] has {name}; all outs must share"):
            normexp.merge_attention([parts[0][0], parts[1][0].astype(F32)], [p[1] for p in parts])


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_torch_bfloat16_tensors():
    q = torch.randn(1, 8, 3, 64, dtype=torch.bfloat16)
    k = torch.randn(1, 2, 300, 64, dtype=torch.bfloat16)
    v = torch.randn(1, 2, 300, 64, dtype=torch.bfloat16)
    out = normexp.attention(q, k, v, is_causal=True, causal_alignment="bottom_right")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and out.shape == (1, 8, 3, 64)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(4, 1), v.float().repeat_interleave(4, 1),
        attn_mask=torch.ones(3, 300, dtype=torch.bool).tril(297))
    assert float((out.float() - ref).abs().max()) <= 2.0**-8 * float(ref.abs().max()) + 1e-6
    # A float32 query against the bfloat16 cache: a float32 tensor back.
    out32 = normexp.attention(q.float(), k, v)
    assert out32.dtype == torch.float32
    out16 = normexp.attention(q.half(), k.half(), v.half(), return_lse=True)
    assert out16[0].dtype == torch.float16 and out16[1].dtype == torch.float32


def test_dask_attention_16bit():
    da = pytest.importorskip("dask.array")
    import normexp.dask

    for qt, kt in COMBOS:
        q, k, v = rand((2, 4, 3, 16), qt), rand((2, 2, 700, 16), kt), rand((2, 2, 700, 16), kt)
        kd, vd = da.from_array(k, chunks=(2, 2, 200, 16)), da.from_array(v, chunks=(2, 2, 200, 16))
        out, lse = normexp.dask.attention(q, kd, vd, is_causal=True, causal_alignment="bottom_right", return_lse=True)
        o, l_ = out.compute(), lse.compute()
        ref, rlse = normexp.attention(q, k, v, is_causal=True, causal_alignment="bottom_right", return_lse=True)
        assert o.dtype == qt and l_.dtype == F32
        # Float32 partials merged, then one rounding to q's dtype: within one ulp of the single rounding.
        np.testing.assert_allclose(o.astype(np.float64), ref.astype(np.float64), rtol=0,
                                   atol=4 * half_ulp(qt) * float(np.abs(ref.astype(np.float64)).max()) + 1e-5)
        np.testing.assert_allclose(l_, rlse, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="float32 q with float16 or bfloat16 k and v"):
        normexp.dask.attention(rand((2, 3, 8), F16), da.from_array(rand((2, 5, 8), BF16)),
                               da.from_array(rand((2, 5, 8), BF16)))


@pytest.mark.parametrize("fn", ["merge_attention", "paged_attention"])
def test_dtype_errors_name_the_function(fn):
    """A non-float array names the function it was passed to, not attention."""
    ints = np.zeros((2, 1, 3, 4), np.int32)
    if fn == "merge_attention":
        call = lambda: normexp.merge_attention([ints], [np.zeros((2, 1, 3), np.float32)])  # noqa: E731
        name = r"outs\[0\]"
    else:
        pages = np.zeros((2, 4, 1, 4), np.float32)
        call = lambda: normexp.paged_attention(np.zeros((1, 1, 4), np.int32), pages, pages,  # noqa: E731
                                               np.zeros((1, 1), np.int32), np.ones(1, np.int32))
        name = "q"
    with pytest.raises(TypeError, match=rf"{name}: {fn} takes float32, float64, float16 or bfloat16 arrays, got int32"):
        call()
