"""normexp.dask.attention: keys and values chunked along the sequence, partials merged with
merge_attention, against normexp.attention on the whole arrays.

Bound (and why): every output is a convex combination of rows of v, computed per chunk by the same
kernels and merged by the log-sum-exp rule, which rescales each partial by exp(lse_p - lse) <= 1; the
split changes only the rounding: within 16 eps * max|v| of the unsplit result (a few eps per partial,
a few more per merge level), and lse within 16 eps * max(1, |lse|).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import normexp

da = pytest.importorskip("dask.array")  # in the test extra (pyproject.toml)
import dask  # noqa: E402

import normexp.dask as nd  # noqa: E402

def close(got, want, v) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    eps = np.finfo(want.dtype).eps
    tol = 16 * eps * max(1.0, float(np.max(np.abs(v), initial=0)))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def close_lse(got, want) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    f = np.isfinite(want)
    eps = np.finfo(want.dtype).eps
    assert np.all(np.abs(got[f] - want[f]) <= 16 * eps * np.maximum(1.0, np.abs(want[f])))


def tensors(rng, dtype, b=2, hq=4, hk=2, lq=5, lkv=37, d=16, dv=8):
    q = rng.standard_normal((b, hq, lq, d)).astype(dtype)
    k = rng.standard_normal((b, hk, lkv, d)).astype(dtype)
    v = rng.standard_normal((b, hk, lkv, dv)).astype(dtype)
    return q, k, v


CHUNKS = [(37,), (10, 0, 17, 10), (1, 36), (5,) * 7 + (2,)]


def chunked(a: np.ndarray, seq_chunks) -> "da.Array":
    return da.from_array(a, chunks=a.shape[:-2] + (seq_chunks, a.shape[-1]))


OPTIONS = [
    {},
    {"is_causal": True},
    {"is_causal": True, "causal_alignment": "bottom_right"},
    {"window": 7},
    {"window": 9, "is_causal": True, "causal_alignment": "bottom_right"},
    {"softcap": 2.0, "scale": 0.7},
    {"alibi_slopes": np.array([0.5, 0.25, 0.125, 0.0625])},
    {"alibi_slopes": np.array([0.5, 0.25, 0.125, 0.0625]), "is_causal": True},
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("seq_chunks", CHUNKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_unsplit_attention(dtype, seq_chunks, opts):
    rng = np.random.default_rng(0)
    q, k, v = tensors(rng, dtype)
    want, want_lse = normexp.attention(q, k, v, return_lse=True, **opts)
    out, lse = nd.attention(q, chunked(k, seq_chunks), chunked(v, seq_chunks), return_lse=True, **opts)
    assert isinstance(out, da.Array) and isinstance(lse, da.Array)
    got, got_lse = dask.compute(out, lse)
    close(got, want, v)
    close_lse(got_lse, want_lse)


@pytest.mark.parametrize("seq_chunks", CHUNKS[1:])
def test_masks(seq_chunks):
    rng = np.random.default_rng(1)
    q, k, v = tensors(rng, np.float64)
    lq, lkv = q.shape[-2], k.shape[-2]
    keep = rng.random((2, 4, lq, lkv)) < 0.6
    keep[0, 1, 2, :] = False  # a fully masked row: output 0, lse -inf
    additive = np.where(rng.random((lkv,)) < 0.8, rng.standard_normal(lkv), -np.inf)
    per_query = rng.random((lq, 1)) < 0.7  # broadcast along the keys
    for mask in (keep, additive, per_query, da.from_array(keep, chunks=(1, 2, lq, 9))):
        for opts in ({}, {"is_causal": True}, {"alibi_slopes": np.array([0.5, 0.25, 0.125, 0.0625])}):
            m_np = mask.compute() if isinstance(mask, da.Array) else mask
            want, want_lse = normexp.attention(q, k, v, mask=m_np, return_lse=True, **opts)
            got, got_lse = dask.compute(*nd.attention(q, chunked(k, seq_chunks), chunked(v, seq_chunks), mask=mask,
                                                      return_lse=True, **opts))
            close(got, want, v)
            close_lse(got_lse, want_lse)
    got, got_lse = dask.compute(*nd.attention(q, chunked(k, seq_chunks), chunked(v, seq_chunks), mask=keep,
                                              return_lse=True))
    assert np.all(got[0, 1, 2] == 0) and got_lse[0, 1, 2] == -np.inf


def test_decoding_with_a_long_cache_and_deep_merge_tree():
    rng = np.random.default_rng(2)
    q, k, v = tensors(rng, np.float32, b=1, hq=8, hk=2, lq=1, lkv=1000, d=32, dv=32)
    for opts in ({}, {"is_causal": True, "causal_alignment": "bottom_right"}, {"window": 300, "causal_alignment": "bottom_right"}):
        want = normexp.attention(q, k, v, **opts)
        got = nd.attention(q, chunked(k, 64), chunked(v, 64), split_every=2, **opts).compute()
        close(got, want, v)


def test_layouts_2d_3d_and_dask_q():
    rng = np.random.default_rng(3)
    q, k, v = tensors(rng, np.float64, b=1, hq=2, hk=2, lq=6, lkv=20)
    q3, k3, v3 = q[0], k[0], v[0]
    close(nd.attention(da.from_array(q3, chunks=(1, 3, 8)), chunked(k3, (7, 13)), chunked(v3, (7, 13)),
                       is_causal=True).compute(),
          normexp.attention(q3, k3, v3, is_causal=True), v3)
    q2, k2, v2 = q3[0], k3[0], v3[0]
    for opts in ({}, {"is_causal": True}, {"alibi_slopes": 0.3}):
        close(nd.attention(q2, chunked(k2, (4, 16)), chunked(v2, (4, 16)), **opts).compute(),
              normexp.attention(q2, k2, v2, **opts), v2)
    # k and v chunked differently along the sequence, and along other dimensions too
    got = nd.attention(q, da.from_array(k, chunks=(1, 1, 6, 8)), da.from_array(v, chunks=(1, 2, 9, 8))).compute()
    close(got, normexp.attention(q, k, v), v)


def test_empty_sequence():
    rng = np.random.default_rng(4)
    q, k, v = tensors(rng, np.float64, lkv=0)
    out, lse = dask.compute(*nd.attention(q, chunked(k, (0,)), chunked(v, (0,)), return_lse=True))
    want, want_lse = normexp.attention(q, k, v, return_lse=True)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(lse, want_lse)


def _refuse(*args, **kwargs):
    raise AssertionError("a computation was triggered while building the graph")


def test_building_the_graph_computes_nothing():
    rng = np.random.default_rng(5)
    q, k, v = tensors(rng, np.float64)
    kd = da.random.default_rng(0).standard_normal(k.shape, chunks=(2, 2, 10, 16))
    with dask.config.set(scheduler=_refuse):
        out = nd.attention(q, kd, chunked(v, (10, 10, 10, 7)), mask=rng.random((5, 37)) < 0.5, is_causal=True,
                           alibi_slopes=np.ones(4), return_lse=True)
    assert all(isinstance(o, da.Array) for o in out)


def test_distributed():
    distributed = pytest.importorskip("distributed")  # in the test extra
    rng = np.random.default_rng(6)
    q, k, v = tensors(rng, np.float32, lkv=300)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        kd, vd = client.persist([chunked(k, 50), chunked(v, 50)])  # the cache lives on the workers
        got = nd.attention(q, kd, vd, is_causal=True, causal_alignment="bottom_right").compute()
    close(got, normexp.attention(q, k, v, is_causal=True, causal_alignment="bottom_right"), v)


def test_errors():
    rng = np.random.default_rng(7)
    q, k, v = tensors(rng, np.float64)
    kd, vd = chunked(k, 10), chunked(v, 10)
    with pytest.raises(TypeError, match="dask.array"):
        nd.attention(q, k, v)
    with pytest.raises(TypeError, match="or float32 q with float16 or bfloat16 k and v"):
        nd.attention(q.astype(np.float32), kd, vd)
    with pytest.raises(ValueError, match="head_dim"):
        nd.attention(q[..., :3], kd, vd)
    with pytest.raises(ValueError, match="heads"):
        nd.attention(q[:, :3], kd, vd)
    with pytest.raises(ValueError, match="key length"):
        nd.attention(q, kd, vd[:, :, :5])
    with pytest.raises(ValueError, match="causal_alignment"):
        nd.attention(q, kd, vd, causal_alignment="middle")
    with pytest.raises(ValueError, match="window"):
        nd.attention(q, kd, vd, window=0)
    with pytest.raises(ValueError, match="mask"):
        nd.attention(q, kd, vd, mask=np.ones((3, 37), bool))
    with pytest.raises(TypeError, match="mask"):
        nd.attention(q, kd, vd, mask=np.ones((5, 37), np.int32))
