"""Attention sinks (``sinks=`` of normexp.attention and normexp.dask.attention) against a float64 reference
that appends the sink as one more key with logit sink_h and a zero value row, on every ISA.

The error bounds are test_attention's (the sink adds one exactly known term to the denominator, which
the merge rule rounds in double). Special cases are checked exactly: a sink of -inf changes no bit, a
dominating sink drives the output to 0 with lse = sink, a row with no visible key gives 0 and lse = sink.
"""

from __future__ import annotations

import numpy as np
import pytest

import normexp
import normexp.dask
from test_attention import _bounds, rand, reference

RNG = np.random.default_rng(20261203)


def reference_sinks(q, k, v, sinks, **kw):
    """float64 (out, lse) with the sinks: the reference's (out, lse) of the keys merged with a part of
    output 0 and lse sink (the softmax over the keys and the sink, written out)."""
    out, lse = reference(q, k, v, **kw)
    s = np.asarray(sinks, np.float64)
    if q.ndim == 2:  # one head: one sink
        s = np.broadcast_to(s.reshape(()), lse.shape)
    else:
        s = np.broadcast_to(np.broadcast_to(s, q.shape[:-2])[..., None], lse.shape)
    big = np.maximum(lse, s)
    dead = np.isneginf(big)
    b = np.where(dead, 0, big)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        wk = np.exp(lse - b)
        ws = np.exp(s - b)
        tot = wk + ws
        new_out = np.where(dead[..., None], 0, out * (wk / np.where(dead, 1, tot))[..., None])
        new_lse = np.where(dead, -np.inf, b + np.log(np.where(dead, 1, tot)))
    return new_out, new_lse


def check_sinks(q, k, v, sinks, isa=None, **kw):
    with normexp.use_isa(isa) if isa else normexp.use_isa(normexp.isa()):
        out, lse = normexp.attention(q, k, v, sinks=sinks, return_lse=True, **kw)
    ref_kw = {("alignment" if a == "causal_alignment" else "alibi" if a == "alibi_slopes" else a): b for a, b in kw.items()}
    r_out, r_lse = reference_sinks(q, k, v, sinks, **ref_kw)
    extra = 0.0
    if kw.get("alibi_slopes") is not None:
        extra += float(np.abs(kw["alibi_slopes"]).max()) * (q.shape[-2] + k.shape[-2])
    b_out, b_lse = _bounds(q, k, v, q.dtype, kw.get("scale"), kw.get("softcap"), extra)
    assert out.dtype == q.dtype and lse.dtype == q.dtype and out.shape == r_out.shape
    np.testing.assert_allclose(out, r_out, rtol=0, atol=b_out)
    fin = np.isfinite(r_lse)
    assert np.array_equal(np.isneginf(lse), np.isneginf(r_lse))
    np.testing.assert_allclose(lse[fin], r_lse[fin], rtol=0, atol=b_lse + 4 * np.finfo(q.dtype).eps * float(np.abs(r_lse[fin]).max(initial=0)))
    return out, lse


@pytest.mark.parametrize("isa", normexp.available_isas())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "b,hq,hk,lq,lk,d",
    # one query block; decode with split keys (1 query, 2k keys); GQA decode (grouped rows); prefill of two
    # query blocks (192 rows each: attention.cpp, kBlockQMin)
    [(2, 3, 3, 5, 7, 8), (1, 2, 2, 1, 2100, 16), (1, 8, 2, 1, 700, 16), (1, 4, 2, 230, 300, 24)],
)
def test_sinks_match_reference(isa, dtype, b, hq, hk, lq, lk, d):
    q, k, v = rand((b, hq, lq, d), dtype), rand((b, hk, lk, d), dtype), rand((b, hk, lk, d), dtype)
    sinks = RNG.standard_normal(hq) * 2
    check_sinks(q, k, v, sinks, isa=isa)
    check_sinks(q, k, v, sinks, isa=isa, is_causal=True, causal_alignment="bottom_right")


@pytest.mark.parametrize("isa", normexp.available_isas())
def test_sinks_with_every_option(isa):
    b, hq, hk, lq, lk, d = 2, 4, 2, 9, 150, 16
    q, k, v = rand((b, hq, lq, d)), rand((b, hk, lk, d)), rand((b, hk, lk, d))
    mask = RNG.random((b, 1, lq, lk)) < 0.8
    sinks = RNG.standard_normal((b, hq))  # per (batch, head): broadcast like alibi_slopes
    check_sinks(q, k, v, sinks, isa=isa, mask=mask, is_causal=True, causal_alignment="bottom_right", window=40,
                softcap=5.0, alibi_slopes=np.linspace(0.01, 0.1, hq), scale=0.3)


def test_sinks_minus_inf_change_no_bit(isa):
    for lq, lk in [(5, 77), (1, 3000), (130, 140)]:
        q, k, v = rand((1, 4, lq, 16)), rand((1, 2, lk, 16)), rand((1, 2, lk, 16))
        o1, l1 = normexp.attention(q, k, v, return_lse=True, is_causal=True, causal_alignment="bottom_right")
        o2, l2 = normexp.attention(q, k, v, return_lse=True, is_causal=True, causal_alignment="bottom_right",
                                   sinks=np.full(4, -np.inf))
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(l1, l2)
        # Negative control: a finite sink does change the result.
        o3 = normexp.attention(q, k, v, is_causal=True, causal_alignment="bottom_right", sinks=np.zeros(4))
        assert not np.array_equal(o1, o3)


def test_dominating_sink_and_rows_without_keys(isa):
    q, k, v = rand((1, 2, 4, 8)), rand((1, 2, 6, 8)), rand((1, 2, 6, 8))
    out, lse = normexp.attention(q, k, v, sinks=[1e30, 0.0], return_lse=True)
    assert np.all(out[0, 0] == 0) and np.all(lse[0, 0] == np.float32(1e30))
    assert np.all(np.abs(out[0, 1]) > 0)
    # Fully masked rows: output 0 and lse = sink (-inf sink: -inf, as without sinks).
    mask = np.zeros((4, 6), bool)
    mask[0] = True
    out, lse = normexp.attention(q, k, v, mask=mask, sinks=[0.5, -np.inf], return_lse=True)
    assert np.all(out[:, :, 1:] == 0) and not np.isnan(out).any()
    np.testing.assert_array_equal(lse[0, 0, 1:], np.float32(0.5))
    assert np.all(np.isneginf(lse[0, 1, 1:]))
    # The visible row: the sink 0.5 is one more term of the denominator.
    r_out, r_lse = reference_sinks(q[:, :1], k[:, :1], v[:, :1], [0.5])
    np.testing.assert_allclose(out[0, 0, 0], r_out[0, 0, 0], atol=1e-6)


def test_sinks_shapes_and_two_d():
    q, k, v = rand((3, 5, 8)), rand((3, 7, 8)), rand((3, 7, 8))
    check_sinks(q, k, v, [0.1, -0.2, 0.3])
    check_sinks(q[0], k[0], v[0], [0.7])
    check_sinks(q[0], k[0], v[0], 0.7)
    check_sinks(rand((2, 2, 3, 5, 8)), rand((2, 2, 3, 7, 8)), rand((2, 2, 3, 7, 8)), RNG.standard_normal((2, 1, 3)))


@pytest.mark.parametrize(
    "sinks,exc,words",
    [
        ([0.0, 1.0], ValueError, ("sinks", "broadcast")),
        ([np.nan, 0, 0], ValueError, ("sinks", "-inf")),
        ([np.inf, 0, 0], ValueError, ("sinks", "finite")),
        ([1e39, 0, 0], ValueError, ("sinks", "float32")),
        (["a", "b", "c"], TypeError, ("sinks",)),
        ([1 + 1j, 0, 0], TypeError, ("sinks",)),
    ],
)
def test_bad_sinks(sinks, exc, words):
    q, k, v = rand((3, 5, 8)), rand((3, 7, 8)), rand((3, 7, 8))
    with pytest.raises(exc) as e:
        normexp.attention(q, k, v, sinks=sinks)
    for w in words:
        assert w in str(e.value)


def same_for_thread_counts(call, counts=(1, 2, 3, 4)):
    """call() -> (out, lse) gives the same bits at every thread count."""
    old = normexp.get_num_threads()
    try:
        res = []
        for n in counts:
            normexp.set_num_threads(n)
            res.append(call())
    finally:
        normexp.set_num_threads(old)
    for o, l_ in res[1:]:
        np.testing.assert_array_equal(o, res[0][0])
        np.testing.assert_array_equal(l_, res[0][1])


def test_sinks_thread_counts():
    q, k, v = rand((1, 8, 1, 64)), rand((1, 2, 9000, 64)), rand((1, 2, 9000, 64))
    sinks = RNG.standard_normal(8)
    same_for_thread_counts(lambda: normexp.attention(q, k, v, sinks=sinks, return_lse=True))


def test_dask_sinks():
    import dask.array as da
    q, k, v = rand((2, 4, 3, 16)), rand((2, 2, 300, 16)), rand((2, 2, 300, 16))
    sinks = RNG.standard_normal(4)
    want, want_lse = normexp.attention(q, k, v, sinks=sinks, is_causal=True, causal_alignment="bottom_right",
                                       return_lse=True)
    out, lse = normexp.dask.attention(q, da.from_array(k, chunks=(2, 2, 70, 16)), da.from_array(v, chunks=(2, 2, 70, 16)),
                                      sinks=sinks, is_causal=True, causal_alignment="bottom_right", return_lse=True)
    np.testing.assert_allclose(out.compute(), want, atol=2e-6)
    np.testing.assert_allclose(lse.compute(), want_lse, atol=2e-6)
    # Negative control: without the sinks the dask result differs.
    plain = normexp.dask.attention(q, da.from_array(k, chunks=(2, 2, 70, 16)), da.from_array(v, chunks=(2, 2, 70, 16)),
                                   is_causal=True, causal_alignment="bottom_right").compute()
    assert np.abs(plain - want).max() > 1e-3
    # One head, 2-d.
    o2 = normexp.dask.attention(q[0, 0], da.from_array(k[0, 0], chunks=(70, 16)), da.from_array(v[0, 0], chunks=(70, 16)),
                                sinks=[0.3]).compute()
    np.testing.assert_allclose(o2, normexp.attention(q[0, 0], k[0, 0], v[0, 0], sinks=[0.3]), atol=2e-6)
