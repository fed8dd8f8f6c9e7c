"""normexp.dask: lazy softmax / log_softmax / logsumexp over chunked axes, against the NumPy API and a
longdouble reference, on every ISA, with special values, empty and all -inf chunks, every scheduler.

Bounds (and why), the same as test_numerics.py's for the NumPy API:
  * softmax: 4 ULP. Each block is the native second pass with the row's merged statistics (exp 1 ULP,
    the product 0.5 ULP); the merged sum has a relative error of ~1-2 eps (each chunk's sum ~1 eps, the
    merge's exp of a compensated argument ~1 eps, in float64): within the NumPy API's own bound.
  * log_softmax / logsumexp: 4 ULP or an absolute error of 8 eps (where the result cancels towards 0 a
    log-sum's absolute error of a few eps is many ULP of a tiny result; see test_numerics.py).
  * An axis that is one chunk is the NumPy API's own computation on each block: bit-identical.
  * Special values (NaN, +inf, -inf, empty) are compared exactly with the NumPy API.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

import normexp
from conftest import reference, ulp_distance

da = pytest.importorskip("dask.array")  # in the test extra (pyproject.toml): installed wherever tests run
import dask  # noqa: E402

import normexp.dask as nd  # noqa: E402

OPS = ["softmax", "log_softmax", "logsumexp"]


def assert_close(op: str, got: np.ndarray, ref: np.ndarray, ulps: float = 4, abs_eps: float = 8) -> None:
    got = np.asarray(got)
    eps = np.finfo(got.dtype).eps
    d = ulp_distance(got, ref)
    ok = d <= ulps
    if op != "softmax":
        ok |= np.abs(got.astype(np.float64) - np.asarray(ref, np.float64)) <= abs_eps * eps
    assert ok.all(), f"{op}: max {d[~ok].max():.0f} ULP at {np.argwhere(~ok)[:3].tolist()}"


def assert_same_specials(got: np.ndarray, want: np.ndarray) -> None:
    """NaN exactly where want is NaN, the same infinities, and finite values within 8 ULP of each other
    (each is within 4 ULP of the exact result)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    assert ulp_distance(got, want).max(initial=0) <= 8


def lazy(op: str, x, axis: int, **kw):
    return getattr(nd, op)(x, axis=axis, **kw)


def numpy_api(op: str, x: np.ndarray, axis: int, **kw) -> np.ndarray:
    return np.asarray(getattr(normexp, op)(x, axis=axis, **kw))


# ------------------------------------------------------------------------------------------------------
# Importing normexp must not import dask.
def test_importing_normexp_does_not_import_dask():
    code = "import sys, normexp; import numpy as np; normexp.softmax(np.ones(3)); assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------------
# Accuracy and agreement with the NumPy API.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_unchunked_axis_is_bit_identical(op, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 300)) * 20).astype(dtype)
    d = da.from_array(x, chunks=(4, 300))  # rows chunked, the reduced axis is one chunk
    got = lazy(op, d, -1).compute()
    np.testing.assert_array_equal(got, numpy_api(op, x, -1))
    assert got.dtype == dtype


@pytest.mark.parametrize(
    "chunks",
    [
        (4, 250),                       # even chunks along the axis
        (3, (1, 999)),                  # a one-element chunk (the max alone)
        (7, (13, 400, 87, 500)),        # uneven
        (5, (300, 0, 400, 0, 300)),     # empty chunks
        (2, 64),                        # many chunks: a deep merge tree
    ],
)
@pytest.mark.parametrize("scale,offset", [(1, 0), (30, 0), (3, 1e4), (1e-3, 1e3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_chunked_axis_matches_reference(op, dtype, scale, offset, chunks):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 1000)) * scale + offset).astype(dtype)
    got = lazy(op, da.from_array(x, chunks=chunks), -1).compute()
    assert got.dtype == dtype and got.shape == numpy_api(op, x, -1).shape
    assert_close(op, got, reference(x, -1, op))


@pytest.mark.parametrize("op", OPS)
def test_every_isa(isa, op):
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((5, 777)) * 10).astype(dtype)
        with normexp.use_isa(isa):  # selected while building the graph; the tasks run on that ISA
            y = lazy(op, da.from_array(x, chunks=(2, 100)), -1)
        assert_close(op, y.compute(), reference(x, -1, op))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("op", OPS)
def test_any_axis_and_chunking_of_other_axes(op, axis):
    # Columns traversal (axis not the last) and blocks chunked along every axis.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 10, 11)) * 8
    d = da.from_array(x, chunks=(4, 3, 5))
    got = lazy(op, d, axis).compute()
    assert_close(op, got, reference(x, axis, op))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("temperature", [0.25, 3.0])
def test_temperature(op, temperature):
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((4, 600)) * 10).astype(dtype)
        got = lazy(op, da.from_array(x, chunks=(4, (50, 250, 300))), -1, temperature=temperature).compute()
        assert_close(op, got, reference(x, -1, op, temperature))


def test_log_softmax_keeps_relative_accuracy_at_the_maximum():
    # One dominant entry: log_softmax there is -log1p(tiny), ~1e-20, which naive chunk merging (a
    # rounded log of the sum) returns as 0. The other chunks hold the tiny terms.
    x = np.full(4000, -46.0)
    x[1234] = 0.0
    ref = -np.log1p(3999 * np.exp(-46.0))
    for chunks in [(1000,), ((1234, 1, 2765),)]:
        got = nd.log_softmax(da.from_array(x, chunks=chunks)).compute()
        assert ulp_distance(got[1234:1235], np.array([ref])).max() <= 2
        lse = nd.logsumexp(da.from_array(x, chunks=chunks)).compute()
        assert ulp_distance(np.array([lse]), np.array([-ref])).max() <= 2


@pytest.mark.parametrize("op", OPS)
def test_float32_large_offsets_stay_accurate(op):
    # |x| ~ 1e4 with float32: a chunk logsumexp rounded to float32 has an absolute error of ~5e-4, which
    # would be ~5e-4 relative (~4000 ULP) in softmax. The merged statistics avoid it.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 3000)) + 1e4).astype(np.float32)
    got = lazy(op, da.from_array(x, chunks=(3, 700)), -1).compute()
    assert_close(op, got, reference(x, -1, op))


SUPER = 1 << 16  # the driver's super-chunk (cpp/src/reduce.cpp): it merges a long row's pieces of this size


def adversarial_rows(n: int, dtype) -> np.ndarray:
    """Rows of 4 pieces of n elements that stress the merge: piece maxima far apart (rescale factors
    near exp's underflow), ties at the maximum in several pieces (counts that merge), a maximum alone
    among -inf, a first piece of only -inf, one dominant entry (count 1 and a tiny rest: log1p), and
    large offsets."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((6, 4 * n))
    x[0] += np.repeat([-80.0, 0.0, 60.25, 5.0], n)
    x[1] = np.round(x[1])
    x[1, [10, n + 10, 3 * n + 10]] = 40.0
    x[2, n : 2 * n] = -np.inf
    x[2, n + 7] = 9.0
    x[3] = -46.0
    x[3, 2 * n + 5] = 0.0
    x[4, :n] = -np.inf
    x[5] = x[5] * 30 + 1e4
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_at_super_chunk_boundaries_are_bit_identical(dtype):
    # The merge is the driver's own code (_core.merge_parts): chunks cut where the driver cuts a long
    # row, merged in one step in order, give the NumPy API's results bit for bit. A fifth piece takes the
    # float32 rows past 1 MiB, where softmax too cuts them at the super-chunks (up to 1 MiB the NumPy API takes
    # such a row whole, in 16 KiB chunks: the next test).
    x = adversarial_rows(SUPER, dtype)
    x = np.concatenate([x, x[:, :SUPER]], axis=-1)
    d = da.from_array(x, chunks=(3, SUPER))
    for op in OPS:
        got = lazy(op, d, -1, split_every=8).compute()
        np.testing.assert_array_equal(got, numpy_api(op, x, -1), err_msg=op)


def test_chunked_float32_softmax_rows_stay_within_the_bound():
    # float32 softmax rows of 65537 to 262144 entries (cpp/src/reduce.cpp: chunked_long_row) are one pass of
    # exps in 16 KiB chunks in the NumPy API and super-chunk statistics merged in dask: not the same bits,
    # each within the bound, the same special values.
    x = adversarial_rows(SUPER, np.float32)
    got = lazy("softmax", da.from_array(x, chunks=(3, SUPER)), -1, split_every=4).compute()
    assert_close("softmax", got, reference(x, -1, "softmax"))
    assert_same_specials(got, numpy_api("softmax", x, -1))


@pytest.mark.parametrize(
    "chunks,split_every",
    [
        ((1, 4999, 2, 6998, 8000), None),  # the maxima alone or cut off at chunk edges
        (500, 2),                          # 40 chunks in a binary tree: the deepest merge
        ((7000, 13000), None),             # pieces that hold several of the rows' regions
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_adversarial_chunkings_stay_within_the_bound(op, dtype, chunks, split_every):
    # Any chunking and merge tree: within the documented bound of the longdouble reference, and within
    # 8 ULP of the one-shot NumPy API (each is within 4 ULP).
    x = adversarial_rows(5000, dtype)
    got = lazy(op, da.from_array(x, chunks=(6, chunks)), -1, split_every=split_every).compute()
    with np.errstate(invalid="ignore"):  # -inf - -inf where both give log_softmax -inf
        assert_close(op, got, reference(x, -1, op))
    assert_same_specials(got, numpy_api(op, x, -1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_merge_parts_is_the_drivers_merge(dtype):
    # _core.merge_parts over statistics of a row's super-chunks gives the statistics of the whole row,
    # bit for bit, and logsumexp_from_parts its logsumexp (float32: with float_result, the float32 log);
    # special pieces follow logsumexp_parts.
    core = normexp._core
    x = adversarial_rows(SUPER, dtype)
    rows = x.shape[0]
    m, sums = np.empty((rows, 1), dtype), np.empty((rows, 1, 2))
    core.logsumexp_parts(x, m, sums, 1)
    pm, ps = np.empty((4, rows), dtype), np.empty((4, rows, 2))
    for p in range(4):
        core.logsumexp_parts(np.ascontiguousarray(x[:, p * SUPER : (p + 1) * SUPER]), pm[p].reshape(rows, 1),
                             ps[p].reshape(rows, 1, 2), 1)
    big_m, merged = core.merge_parts(pm.astype(np.float64), ps)
    np.testing.assert_array_equal(big_m, m[:, 0])
    np.testing.assert_array_equal(merged, sums[:, 0])
    lse = core.logsumexp_from_parts(big_m, merged, dtype == np.float32).astype(dtype)
    np.testing.assert_array_equal(lse, normexp.logsumexp(x, axis=-1))


def test_native_merge_parts_of_special_pieces():
    # Special pieces: NaN wins, +inf keeps no sums, empty / all -inf pieces drop out, no pieces is empty.
    core = normexp._core
    inf, nan = np.inf, np.nan
    pm = np.array([[nan, inf, -inf, 2.0], [1.0, 3.0, -inf, -inf]])
    ps = np.array([[[0, 0], [0, 0], [0, 0], [1, 0.5]], [[1, 0.25], [0, 0], [0, 0], [0, 0]]], float)
    big_m, merged = core.merge_parts(pm, ps)
    np.testing.assert_array_equal(big_m, [nan, inf, -inf, 2.0])
    np.testing.assert_array_equal(merged, [[0, 0], [0, 0], [0, 0], [1, 0.5]])
    big_m, merged = core.merge_parts(np.empty((0, 3)), np.empty((0, 3, 2)))
    np.testing.assert_array_equal(big_m, [-inf] * 3)
    np.testing.assert_array_equal(core.logsumexp_from_parts(big_m, merged), [-inf] * 3)
    # Sums below 1 (never the kernels': their maximum's term is 1) take std::log with float_result too.
    m0, odd = np.zeros(4), np.array([[1, -0.5], [1, -0.999], [0, 1 - 1e-9], [0, 0.75]])
    np.testing.assert_array_equal(core.logsumexp_from_parts(m0, odd, True), core.logsumexp_from_parts(m0, odd))
    with pytest.raises(TypeError):
        core.logsumexp_from_parts(m0, odd, 1)
    with pytest.raises(ValueError, match="C-contiguous float64"):
        core.merge_parts(pm.astype(np.float32), ps)
    with pytest.raises(ValueError, match="temperature"):
        core.merge_parts(pm, ps, 0.0)


def test_logsumexp_keepdims_and_scalar():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 50))
    d = da.from_array(x, chunks=(2, 20))
    for axis in (0, 1):
        for keepdims in (False, True):
            got = nd.logsumexp(d, axis=axis, keepdims=keepdims)
            want = normexp.logsumexp(x, axis=axis, keepdims=keepdims)
            assert got.shape == want.shape
            assert_close("logsumexp", got.compute(), reference(x, axis, "logsumexp").reshape(want.shape))
    v = da.from_array(x[0], chunks=7)
    s = nd.logsumexp(v)
    assert s.shape == () and s.ndim == 0
    assert_close("logsumexp", np.array([s.compute()]), np.array([reference(x[0], 0, "logsumexp")]))


@pytest.mark.parametrize("dtype", ["float16", "int32", "int8", "bool"])
@pytest.mark.parametrize("op", OPS)
def test_dtypes_follow_the_numpy_api(op, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 40)) * 4).astype(dtype)
    want = numpy_api(op, x, -1)
    for chunks in [(3, 40), (3, 15)]:
        got = lazy(op, da.from_array(x, chunks=chunks), -1)
        assert got.dtype == want.dtype
        out = got.compute()
        assert out.dtype == want.dtype
        if want.dtype == np.float64:  # int32 promotes to float64: the float64 bounds
            assert_close(op, out, reference(x.astype(np.float64), -1, op))
        else:  # half results: computed in float32 (a few float32 ULP), rounded once: within 1 half ULP
            assert ulp_distance(out, want.astype(np.float64)).max() <= 1


# ------------------------------------------------------------------------------------------------------
# Special values: the NumPy API's (SciPy's) conventions, with the specials in any chunk.
def special_rows(dtype) -> np.ndarray:
    inf, nan = np.inf, np.nan
    base = np.linspace(-3, 3, 12)
    rows = [base.copy() for _ in range(12)]
    rows[1][5] = nan                       # NaN in the second chunk
    rows[2][9] = inf                       # +inf in the last chunk
    rows[3][[0, 9]] = inf                  # +inf in two chunks
    rows[4][2], rows[4][7] = inf, nan      # +inf and NaN
    rows[5][:] = -inf                      # all -inf
    rows[6][:4] = -inf                     # the first chunk all -inf, the row finite
    rows[7][4:8] = -inf                    # a middle chunk all -inf
    rows[8][[1, 6, 10]] = -inf             # scattered -inf
    rows[9][:] = 1e30                      # huge equal values (overflow if not shifted)
    rows[10][:8] = -inf
    rows[10][8:] = -1e30                   # the finite part is hugely negative, in the last chunk
    rows[11][:] = -inf
    rows[11][6] = inf                      # +inf among -inf
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_special_values_match_numpy_api(op, dtype):
    x = special_rows(dtype)
    want = numpy_api(op, x, -1)
    for chunks in [(12, 4), (5, (4, 0, 4, 4)), (12, 12)]:
        with np.errstate(all="raise"):  # no floating-point warnings escape from the tasks either
            got = lazy(op, da.from_array(x, chunks=chunks), -1).compute()
        assert_same_specials(got, want)
        # and along the columns traversal
        got_t = lazy(op, da.from_array(np.ascontiguousarray(x.T), chunks=chunks[::-1]), 0).compute()
        assert_same_specials(got_t, numpy_api(op, np.ascontiguousarray(x.T), 0))


@pytest.mark.parametrize("op", OPS)
def test_empty_axis_and_empty_arrays(op):
    for shape, chunks in [((3, 0), (2, 0)), ((0, 5), (0, 2)), ((0, 0), (0, 0))]:
        x = np.empty(shape)
        got = lazy(op, da.from_array(x, chunks=chunks), -1).compute()
        want = numpy_api(op, x, -1)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)  # logsumexp of an empty row: -inf
    # an axis made only of empty chunks (from slicing), several of them
    d = da.concatenate([da.from_array(np.empty((2, 0)), chunks=(2, 0))] * 3, axis=1)
    assert d.numblocks[1] == 3
    got = lazy(op, d, -1).compute()
    np.testing.assert_array_equal(got, numpy_api(op, np.empty((2, 0)), -1))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_where_matches_numpy_api(op):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 40)) * 5
    keep = rng.random((6, 40)) < 0.5
    keep[2] = False                       # a row with no True entry: 0 / -inf, not NaN
    keep[3, :20] = False                  # the first chunks of a row all masked out
    for where in (keep, keep[:, :1] | True, da.from_array(keep, chunks=(4, 7))):
        w_np = where.compute() if isinstance(where, da.Array) else where
        want = numpy_api(op, x, -1, where=w_np)
        for chunks in [(6, 40), (3, (10, 10, 0, 20)), (6, 7)]:
            got = lazy(op, da.from_array(x, chunks=chunks), -1, where=where).compute()
            assert_same_specials(got, want)
    x16 = x.astype(np.float16)  # the result keeps the input's dtype
    got = lazy(op, da.from_array(x16, chunks=(6, 9)), -1, where=keep).compute()
    assert got.dtype == np.float16
    assert_same_specials(got, numpy_api(op, x16, -1, where=keep))
    with pytest.raises(TypeError, match="boolean"):
        lazy(op, da.from_array(x, chunks=8), -1, where=keep.astype(int))
    with pytest.raises(ValueError, match="broadcast"):
        lazy(op, da.from_array(x, chunks=8), -1, where=keep[:3])


# ------------------------------------------------------------------------------------------------------
# Laziness: building the graph computes nothing.
def _refuse(*args, **kwargs):
    raise AssertionError("a computation was triggered while building the graph")


@pytest.mark.parametrize("op", OPS)
def test_building_the_graph_computes_nothing(op, monkeypatch):
    calls = []
    for name in ("reduce", "logsumexp_parts", "normalize_with"):
        real = getattr(normexp._core, name)
        monkeypatch.setattr(nd._core, name, lambda *a, _real=real, _name=name: (calls.append(_name), _real(*a))[1])
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 500))
    # A lazily generated input too, so that any conversion to NumPy would have to run the scheduler.
    inputs = [da.from_array(x, chunks=(3, 120)), da.from_array(x, chunks=(3, 500)),
              da.random.default_rng(0).standard_normal((6, 500), chunks=(2, 100)) * 3]
    with dask.config.set(scheduler=_refuse):
        outs = [lazy(op, d, -1) for d in inputs]
        outs += [lazy(op, d, 0) for d in inputs]
        outs.append(lazy(op, da.from_array(x, chunks=(3, 120)) + 1, -1, split_every=2))
        if op != "logsumexp":
            outs.append(lazy(op, inputs[2], -1, where=inputs[2] > 0))
    assert all(isinstance(o, da.Array) for o in outs)
    assert calls == [], "a kernel ran while building the graph"
    with dask.config.set(scheduler="sync"):
        outs[0].compute()
    assert calls  # the counters do see the kernels when computing


# ------------------------------------------------------------------------------------------------------
# Schedulers.
def _check_all_ops(x: np.ndarray, d, **compute_kw):
    # One compute for the three results (one worker pool for the process scheduler).
    got = dask.compute(*[lazy(op, d, -1) for op in OPS], **compute_kw)
    for op, g in zip(OPS, got):
        assert_close(op, g, reference(x, -1, op))


@pytest.mark.parametrize("scheduler", ["threads", "processes", "sync"])
def test_local_schedulers(scheduler):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 2000)).astype(np.float32) * 6
    kw = {"num_workers": 2} if scheduler != "sync" else {}
    _check_all_ops(x, da.from_array(x, chunks=(2, 300)), scheduler=scheduler, **kw)


@pytest.mark.parametrize("processes", [False, True])
def test_distributed_local_cluster(processes):
    distributed = pytest.importorskip("distributed")  # in the test extra: installed wherever tests run
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 3000)) * 6
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        d = client.persist(da.from_array(x, chunks=(2, 500)))  # chunks live on the workers
        _check_all_ops(x, d)
        p = nd.softmax(d, axis=-1)
        assert np.allclose(p.sum(axis=-1).compute(), 1.0, rtol=0, atol=1e-12)  # 3000 terms, eps each


# ------------------------------------------------------------------------------------------------------
# Bad input.
def test_errors():
    x = da.from_array(np.ones((3, 4)), chunks=2)
    with pytest.raises(TypeError, match="dask.array"):
        nd.softmax(np.ones((3, 4)))
    with pytest.raises(np.exceptions.AxisError):
        nd.softmax(x, axis=2)
    with pytest.raises(TypeError, match="axis"):
        nd.logsumexp(x, axis=1.5)
    with pytest.raises(ValueError, match="temperature"):
        nd.log_softmax(x, temperature=0)
    with pytest.raises(ValueError, match="split_every"):
        nd.logsumexp(x, split_every=1)
    with pytest.raises(TypeError, match="complex"):
        nd.softmax(x.astype(np.complex128))
    with pytest.raises(ValueError, match="0-dimensional"):
        nd.softmax(da.from_array(np.float64(1.0)))
    unknown = x[x[:, 0] > 0]  # boolean indexing: unknown chunk sizes along axis 0
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        nd.softmax(unknown, axis=0)


def test_native_parts_entry_point():
    # The native statistics directly: m is the max, count the entries equal to it, and
    # m/T + log(count + rest) the logsumexp, through rows and columns traversals.
    rng = np.random.default_rng(11)
    x = np.round(rng.standard_normal((5, 300)) * 4)  # ties at the maximum
    for axis, xx in [(1, x), (0, np.ascontiguousarray(x.T))]:
        keep = list(xx.shape)
        keep[axis] = 1
        m = np.empty(keep)
        sums = np.empty(keep + [2])
        normexp._core.logsumexp_parts(xx, m, sums, axis, 2.0)
        np.testing.assert_array_equal(m, xx.max(axis=axis, keepdims=True))
        np.testing.assert_array_equal(sums[..., 0], (xx == m).sum(axis=axis, keepdims=True))
        lse = m / 2 + np.log(sums[..., 0] + sums[..., 1])
        assert_close("logsumexp", lse.squeeze(axis), reference(xx, axis, "logsumexp", 2.0))
    with pytest.raises(ValueError, match="twice"):
        normexp._core.logsumexp_parts(x, np.empty((5, 1)), np.empty((5, 1, 4))[..., :2], 1, 1.0)
    with pytest.raises(TypeError):
        normexp._core.logsumexp_parts(x, np.empty((5, 1), np.float32), np.empty((5, 1, 2)), 1, 1.0)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_native_normalize_with_own_statistics_is_the_numpy_api(op):
    # normalize_with given a row's own statistics (from logsumexp_parts) is the second pass of the NumPy
    # API: the same kernels with the same statistics, through rows and columns, with special rows.
    x = special_rows(np.float64)
    rng = np.random.default_rng(12)
    x = np.concatenate([x, rng.standard_normal((3, 12)) * 9])
    for axis, xx in [(1, x), (0, np.ascontiguousarray(x.T))]:
        for temperature in (1.0, 0.5):
            keep = list(xx.shape)
            keep[axis] = 1
            m, sums = np.empty(keep), np.empty(keep + [2])
            normexp._core.logsumexp_parts(xx, m, sums, axis, temperature)
            y = np.empty_like(xx)
            normexp._core.normalize_with(normexp._core.Reduction.__members__[op], xx, y, m, sums, axis, temperature)
            assert_same_specials(y, numpy_api(op, xx, axis, temperature=temperature))
    with pytest.raises(ValueError, match="softmax"):
        normexp._core.normalize_with(normexp._core.Reduction.logsumexp, x, np.empty_like(x), np.empty((15, 1)),
                                     np.empty((15, 1, 2)), 1)
