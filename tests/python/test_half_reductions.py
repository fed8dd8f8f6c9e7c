"""float16 / bfloat16 softmax, log_softmax and logsumexp read and written in place by the kernels
(storage_kernels, cpp/src/kernels/kernel_table.hpp): within 1 ULP of the 16-bit result against a float64
reference, on every ISA, every tail length, both traversals (rows and columns), strided views, out=,
where=, special values and the extremes of each type; the same bits for every thread count; and no
O(n) allocation on the Python side."""

from __future__ import annotations

import tracemalloc

import ml_dtypes
import numpy as np
import pytest

import normexp
from conftest import reference, ulp_distance

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
DTYPES = [F16, BF16]
OPS = ["softmax", "log_softmax", "logsumexp"]


def call(op, x, axis=-1, **kw):
    return getattr(normexp, op)(x, axis=axis, **kw)


def expected(op, x, axis, temperature=1.0):
    """The float64 reference of the 16-bit input (exact when widened), special values as the float64 API."""
    x64 = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        ref = reference(x64, axis, op, temperature)
        # Rows whose maximum is not finite: the float64 API's SciPy values.
        kw = {"temperature": temperature} if op != "logsumexp" else {}
        api = getattr(normexp, op)(x64, axis=axis, **kw)
    special = ~np.isfinite(np.max(x64, axis=axis, keepdims=op != "logsumexp"))
    return np.where(np.broadcast_to(special, np.shape(ref)), api, ref)


def assert_within_1ulp(got, ref, dtype, what=""):
    assert got.dtype == dtype, (got.dtype, dtype)
    with np.errstate(over="ignore"):  # a reference beyond the 16-bit range rounds to inf
        d = ulp_distance(got, ref)
    assert d.max(initial=0) <= 1, f"{what}: {d.max()} ULP at {np.unravel_index(d.argmax(), d.shape)}"


def scores(rng, shape, dtype, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def test_ulp_check_detects_two_ulp():
    # Negative control: the check fails for a result two ULP away (it is not vacuous for 16-bit types).
    for dt in DTYPES:
        x = np.array([0.5, -1.0, 3.0], dtype=dt)
        ref = expected("softmax", x, -1)
        bad = ref.astype(dt)
        bad.view(np.int16)[0] += 2
        with pytest.raises(AssertionError):
            assert_within_1ulp(bad, ref, dt)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", OPS)
def test_every_tail_length_rows_and_columns(isa, dtype, op):
    rng = np.random.default_rng(1)
    for n in list(range(1, 70)) + [127, 1000, 4099]:
        x = scores(rng, (3, n), dtype)
        got = call(op, x)
        assert_within_1ulp(got, expected(op, x, -1), dtype, f"{isa} rows n={n}")
        xt = np.ascontiguousarray(x.T)  # axis 0 of an (n, 3) array: the column kernels, w = 3
        got = call(op, xt, axis=0)
        assert_within_1ulp(got, expected(op, xt, 0), dtype, f"{isa} axis 0 n={n}")
        xw = scores(rng, (5, n), dtype)  # columns of width n (every tail of the column vectors)
        got = call(op, xw, axis=0)
        assert_within_1ulp(got, expected(op, xw, 0), dtype, f"{isa} axis 0 w={n}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_temperature(isa, dtype, op):
    rng = np.random.default_rng(2)
    x = scores(rng, (4, 333), dtype)
    for t in (0.3, 1.7):
        for ax in (0, 1):
            got = call(op, x, axis=ax, temperature=t)
            assert_within_1ulp(got, expected(op, x, ax, t), dtype, f"{isa} T={t} axis {ax}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", OPS)
def test_strided_and_negative_strides(isa, dtype, op):
    rng = np.random.default_rng(3)
    base = scores(rng, (9, 2 * 301), dtype)
    for v in (base[:, ::2], base[::-2, ::-3], base.T[::3]):
        for ax in (0, -1):
            got = call(op, v, axis=ax)
            assert_within_1ulp(got, expected(op, v, ax), dtype, f"{isa} strides {v.strides} axis {ax}")
    # A long strided row (pieces gathered into 16-bit buffers) and a 3-d array.
    long = scores(rng, 2 * 70001, dtype)[::2]
    assert_within_1ulp(call(op, long), expected(op, long, -1), dtype, "long strided row")
    cube = scores(rng, (3, 50, 7), dtype)
    for ax in range(3):
        assert_within_1ulp(call(op, cube, axis=ax), expected(op, cube, ax), dtype, f"3-d axis {ax}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", OPS)
def test_strided_rows_give_the_contiguous_bits(dtype, op):
    # Rows past one super-chunk (65536 elements) are cut at the super-chunks whether gathered or not.
    rng = np.random.default_rng(13)
    for n in (65536, 65537, 100_000, 140_000):
        base = scores(rng, 2 * n, dtype)
        v = base[::2]
        c = np.ascontiguousarray(v)
        np.testing.assert_array_equal(np.asarray(call(op, v)).view(np.int16), np.asarray(call(op, c)).view(np.int16))
        rows = scores(rng, (3, n), dtype)  # several rows (short_rows) against one at a time
        one = np.stack([call(op, r) for r in rows])
        np.testing.assert_array_equal(np.asarray(call(op, rows)).view(np.int16), one.view(np.int16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_out_and_in_place(dtype):
    rng = np.random.default_rng(4)
    x = scores(rng, (6, 513), dtype)
    for op in ("softmax", "log_softmax"):
        out = np.empty_like(x)
        r = call(op, x, out=out)
        assert r is out
        np.testing.assert_array_equal(out.view(np.int16), call(op, x).view(np.int16))
        y = x.copy()
        call(op, y, out=y)
        np.testing.assert_array_equal(y.view(np.int16), out.view(np.int16))
    out = np.empty(6, dtype=dtype)
    assert normexp.logsumexp(x, axis=-1, out=out) is out
    np.testing.assert_array_equal(out.view(np.int16), normexp.logsumexp(x, axis=-1).view(np.int16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_where(isa, dtype, op):
    rng = np.random.default_rng(5)
    x = scores(rng, (5, 200), dtype)
    mask = rng.random((5, 200)) < 0.6
    mask[2] = False  # a row with no True entry
    got = call(op, x, where=mask)
    ref = expected(op, np.where(mask, x.astype(np.float64), -np.inf), -1)
    ref[2] = 0.0 if op == "softmax" else -np.inf
    assert_within_1ulp(got, ref, dtype, f"{isa} where")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", OPS)
def test_special_rows(isa, dtype, op):
    inf, nan = np.inf, np.nan
    rows = [
        [1.0, nan, 2.0, 0.5],
        [inf, 1.0, -inf, 2.0],
        [inf, inf, 0.0, 1.0],
        [-inf, -inf, -inf, -inf],
        [-inf, 3.0, -inf, 2.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    x = np.array(rows, dtype=dtype)
    for ax, xv in ((-1, x), (0, np.ascontiguousarray(x.T))):
        got = call(op, xv, axis=ax)
        assert_within_1ulp(got, expected(op, xv, ax), dtype, f"{isa} special axis {ax}")
    # The same rows inside a long row (the online statistics and the threaded path).
    long = np.zeros(200_000, dtype=dtype)
    long[123_456] = np.nan
    assert np.isnan(call(op, long)).all()
    long[123_456] = -np.inf
    assert_within_1ulp(call(op, long), expected(op, long, -1), dtype, "long row with -inf")


@pytest.mark.parametrize("op", OPS)
def test_extremes_float16(isa, op):
    big = np.array([65504.0, 65504.0, -65504.0, 60000.0, 0.0], dtype=F16)
    tiny = np.array([6e-8, -6e-8, 0.0, 1e-5, -1e-4], dtype=F16)
    for x in (big, tiny):
        assert_within_1ulp(call(op, x), expected(op, x, -1), F16, f"{isa} {x}")
    if op != "logsumexp":
        assert_within_1ulp(call(op, big, temperature=1e-3), expected(op, big, -1, 1e-3), F16, "big, T=1e-3")


@pytest.mark.parametrize("op", OPS)
def test_extremes_bfloat16(isa, op):
    big = np.array([3.3e38, 3.3e38, -3.3e38, 1e38, 0.0], dtype=BF16)
    tiny = np.array([1e-38, -1e-39, 0.0, 1e-30], dtype=BF16)
    for x in (big, tiny):
        assert_within_1ulp(call(op, x), expected(op, x, -1), BF16, f"{isa} {x}")
    if op != "logsumexp":  # m above 2^102 with a temperature: the scalar specification's exact argument
        assert_within_1ulp(call(op, big, temperature=1e36), expected(op, big, -1, 1e36), BF16, "big, T=1e36")


def test_subnormal_float16_results(isa):
    # softmax entries down to the float16 subnormals (2^-24 ~ 6e-8), and log_softmax values near 0 whose
    # float16 results are subnormal (the maximum dominates: they need log1p of the other terms).
    x = np.array([0.0, -10.0, -12.0, -14.0, -16.0, -16.5, -17.0, -20.0], dtype=F16)
    p = normexp.softmax(x)
    assert (p[2:6] > 0).all() and (p[2:6] < 6.1e-5).all()
    assert_within_1ulp(p, expected("softmax", x, -1), F16, f"{isa} subnormal softmax")
    y = np.array([0.0, -11.0, -12.5, -13.0], dtype=F16)
    ls = normexp.log_softmax(y)
    assert 0 < -ls[0] < 6.1e-5  # a subnormal float16
    assert_within_1ulp(ls, expected("log_softmax", y, -1), F16, f"{isa} subnormal log_softmax")
    assert_within_1ulp(normexp.logsumexp(y), expected("logsumexp", y, -1), F16, f"{isa} logsumexp near the max")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", OPS)
def test_fast_path_and_general_path_agree(dtype, op):
    # The fast path (bindings) and the general path (_api.py, which a NumPy-int axis takes) give the same bits.
    rng = np.random.default_rng(6)
    x = scores(rng, (3, 1000), dtype)
    a = call(op, x, axis=-1)
    b = call(op, x, axis=np.int64(-1))
    np.testing.assert_array_equal(a.view(np.int16), b.view(np.int16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_accuracy_keyword_does_not_change_16_bit(dtype):
    x = scores(np.random.default_rng(7), (4, 777), dtype)
    for op in OPS:
        np.testing.assert_array_equal(call(op, x, accuracy="fast").view(np.int16), call(op, x).view(np.int16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_thread_counts_give_the_same_bits(dtype):
    x = scores(np.random.default_rng(8), 3 * 65536 + 77, dtype)
    cols = scores(np.random.default_rng(9), (300, 2000), dtype)
    saved = normexp.get_num_threads()
    try:
        results = []
        for nt in (1, 2, 3, 4):
            normexp.set_num_threads(nt)
            results.append([call(op, x).view(np.int16).copy() for op in OPS]
                           + [call(op, cols, axis=0).view(np.int16).copy() for op in OPS])
    finally:
        normexp.set_num_threads(saved)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


# A softmax row of at least 8 MiB streams its outputs past the caches (cpp/src/reduce.cpp: kStreamBytes): 4M
# 16-bit elements; its super-chunk sums leave out the count of the entries at the maximum (row_exp_total).
STREAM_N = 4 * 1024 * 1024 + 37


# Marked large: under the sanitizers the streamed 16-bit row is taken by test_streamed_long_row_special_
# values_and_threads (the default set; the other sets' row kernels by the shorter rows of this file).
@pytest.mark.large
@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_streamed_long_row(isa, dtype):
    rng = np.random.default_rng(14)
    x = scores(rng, STREAM_N, dtype)
    x[[5, 777_777, STREAM_N - 1]] = x.max()  # the maximum three times
    x[123] = -np.inf
    want = expected("softmax", x, -1)
    got = normexp.softmax(x)
    assert_within_1ulp(got, want, dtype, f"{isa} streamed row")
    assert abs(got.astype(np.float64).sum() - 1) < 1e-2
    # out= at every 2-byte offset from a 64-byte boundary (the streamed part starts at the first boundary):
    # the same bits, nothing written outside out.
    buf = np.empty(STREAM_N + 64, dtype=dtype)
    lead = (-buf.ctypes.data % 64) // 2
    for off in (0, 1, 2, 15, 16, 17, 31):
        buf.view(np.uint16)[:] = 0x7E5A
        out = buf[lead + off: lead + off + STREAM_N]
        assert normexp.softmax(x, out=out) is out
        np.testing.assert_array_equal(out.view(np.int16), got.view(np.int16), err_msg=f"offset {off}")
        rest = np.concatenate([buf[: lead + off], buf[lead + off + STREAM_N:]]).view(np.uint16)
        assert (rest == 0x7E5A).all(), f"offset {off}: written outside out"
    # A temperature, a strided view (gathered pieces: not streamed, the same bits), where=.
    assert_within_1ulp(normexp.softmax(x, temperature=0.7), expected("softmax", x, -1, 0.7), dtype, "T=0.7")
    base = np.empty(2 * STREAM_N, dtype=dtype)
    base[::2] = x
    np.testing.assert_array_equal(normexp.softmax(base[::2]).view(np.int16), got.view(np.int16))
    mask = np.ones(STREAM_N, dtype=bool)
    mask[::3] = False
    want_w = expected("softmax", np.where(mask, x.astype(np.float64), -np.inf), -1)
    assert_within_1ulp(normexp.softmax(x, where=mask), want_w, dtype, "where=")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_streamed_long_row_special_values_and_threads(dtype):
    rng = np.random.default_rng(15)
    x = scores(rng, STREAM_N, dtype)
    saved = normexp.get_num_threads()
    try:
        bits = []
        for nt in (1, 2, 3):
            normexp.set_num_threads(nt)
            bits.append(normexp.softmax(x).view(np.int16).copy())
    finally:
        normexp.set_num_threads(saved)
    for b in bits[1:]:
        np.testing.assert_array_equal(b, bits[0])
    for special in (np.nan, np.inf):
        y = x.copy()
        y[3_000_001] = special
        got = normexp.softmax(y)
        assert_within_1ulp(got, expected("softmax", y, -1), dtype, f"row with {special}")
    y = np.full(STREAM_N, -np.inf, dtype=dtype)
    assert np.isnan(normexp.softmax(y)).all()  # all -inf: NaN, as SciPy


def peak_bytes(f):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_no_float32_copy(dtype):
    n = 1 << 21
    x = scores(np.random.default_rng(10), n, dtype)
    out = np.empty_like(x)
    lse = np.empty((), dtype=dtype)
    for op in ("softmax", "log_softmax"):
        call(op, x, out=out)  # warm
        assert peak_bytes(lambda: call(op, x, out=out)) < 0.1 * n, op
        assert peak_bytes(lambda: call(op, x)) < 2.1 * n, op  # the 2-byte result only
    assert peak_bytes(lambda: normexp.logsumexp(x, out=lse)) < 0.1 * n
    strided = scores(np.random.default_rng(11), (64, 2 * 4096), dtype)[:, ::2]  # gathered rows, columns
    assert peak_bytes(lambda: call("softmax", strided, axis=0)) < 2.1 * strided.size
    # Negative control: the measurement sees a float32 copy.
    assert peak_bytes(lambda: x.astype(np.float32)) >= 4 * n


def test_dask_matches_numpy():
    da = pytest.importorskip("dask.array")
    import normexp.dask  # noqa: F401
    rng = np.random.default_rng(12)
    for dt in DTYPES:
        x = scores(rng, (6, 3000), dt)
        dx = da.from_array(x, chunks=(3, 1000))
        for op in OPS:
            got = getattr(normexp.dask, op)(dx, axis=-1).compute()
            assert got.dtype == dt
            assert_within_1ulp(got, expected(op, x, -1), dt, f"dask {op}")
        whole = da.from_array(x, chunks=(3, 3000))  # the axis in one chunk: the NumPy API's bits
        np.testing.assert_array_equal(normexp.dask.softmax(whole).compute().view(np.int16),
                                      normexp.softmax(x).view(np.int16))


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 1000) * 3
    for tdt, ndt in ((torch.float16, F16), (torch.bfloat16, BF16)):
        t = x.to(tdt)
        y = normexp.softmax(t)
        assert isinstance(y, torch.Tensor) and y.dtype == tdt
        ref = normexp.softmax(t.view(torch.int16).numpy().view(ndt))
        np.testing.assert_array_equal(y.view(torch.int16).numpy(), ref.view(np.int16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float16", "bfloat16"])
def test_tall_columns_over_several_row_super_chunks(dtype):
    # axis 0 of a 5 MiB 16-bit block: chunks of 128 rows, row super-chunks of 640 (a quarter of the block,
    # cpp/src/reduce.cpp: col_super_rows), the last one partial; new maxima planted late. Within 1 ULP on
    # every ISA, and no float32 copy.
    rng = np.random.default_rng(24)
    x = scores(rng, (2600, 1030), dtype)
    x[650, ::5] = dtype.type(20)
    x[-1, 1::7] = dtype.type(24)
    refs = {op: expected(op, x, 0) for op in OPS}
    for isa_name in normexp.available_isas():
        with normexp.use_isa(isa_name):
            for op in OPS:
                assert_within_1ulp(call(op, x, axis=0), refs[op], dtype, f"{isa_name} {op}")
    out = np.empty_like(x)
    call("softmax", x, axis=0, out=out)  # warm
    assert peak_bytes(lambda: call("softmax", x, axis=0, out=out)) < 0.1 * x.size
