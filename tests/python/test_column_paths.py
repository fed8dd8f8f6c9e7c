"""Reductions along a strided axis (the column traversal) on arrays too large for the cache scratch.

These shapes take the paths small tests never reach: several row super-chunks merged in order (the block
is larger than 1 MiB), softmax's stored-exp path (exp(x - m_c) per chunk kept in the output and rescaled
by exp(m_c - m) / S), its scratch variant when the output rows are not contiguous, the online path with
streaming stores of outputs of 8 MiB and more, in place, threads splitting the rows of a single block, and
special values that appear only in a later chunk.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest
from conftest import reference, ulp_distance

import normexp

OPS = ["softmax", "log_softmax", "logsumexp"]
# float32 results are within 4 ULP of the exact value (the README's contract); float64 within 8 (the
# online rescale of a column's running sum adds a rounded exp at each new maximum, see fuzz_reduce.cpp).
ULP = {np.float32: 4, np.float64: 8}


def _call(op, x, axis, temperature=1.0, out=None):
    f = getattr(normexp, op)
    if op == "logsumexp":
        return f(x, axis=axis, out=out)
    return f(x, axis=axis, temperature=temperature, out=out)


def _check(op, got, x, axis, temperature, dtype, ref=None):
    """got within ULP[dtype] of the reference (computed here unless given: reference(), or a float64 copy
    of it, which ulp_distance rounds the same way)."""
    if ref is None:
        ref = reference(x, axis, op, temperature)
    d = ulp_distance(got, ref)
    if op != "softmax":
        # log-domain results near 0 get an absolute floor of a few ULP of the row's scale (cancellation).
        scale = np.maximum(np.abs(np.max(x, axis=axis, keepdims=op != "logsumexp")) / temperature, 1.0)
        close = np.abs(got.astype(np.float64) - ref.astype(np.float64)) <= 8 * np.finfo(dtype).eps * scale
        d = np.where(close, 0.0, d)
    assert d.max() <= ULP[dtype], (op, float(d.max()))


@functools.lru_cache(maxsize=1)
def _tall_case(op, shape, dtype):
    """The input of test_tall_column_blocks_match_the_reference and its references (float64) per
    temperature: computed once and shared by the kernel sets, which are the fastest-varying parameter (the
    longdouble reference of a 2.5M-element array costs far more than the calls it checks)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    # A new column maximum late in the array: the stored exps of earlier chunks must be rescaled.
    x[-7, ::3] += 40
    temps = (1.0, 0.7) if op != "logsumexp" else (1.0,)
    return x, {t: np.asarray(reference(x, 0, op, t), np.float64) for t in temps}


@pytest.mark.parametrize("isa_name", normexp.available_isas())  # listed last: it varies fastest
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2500, 1030), (300, 2053), (40000, 24)])
@pytest.mark.parametrize("op", OPS)
def test_tall_column_blocks_match_the_reference(op, shape, dtype, isa_name):
    x, refs = _tall_case(op, shape, dtype)
    with normexp.use_isa(isa_name):
        for t, ref in refs.items():
            _check(op, _call(op, x, 0, t), x, 0, t, dtype, ref)


# Blocks below 8 MiB (float32 softmax's stored path) and of 8 MiB and more (the online path with streaming
# stores and several row super-chunks; w = 1030 adds a block of 6 columns).
SPECIAL_SHAPES = {"cached": {np.float32: (3000, 300), np.float64: (3000, 300)},
                  "streamed": {np.float32: (2100, 1030), np.float64: (1100, 1030)}}


@pytest.mark.parametrize("size", ["cached", "streamed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_special_values_in_later_chunks(isa, dtype, size):
    rng = np.random.default_rng(4)
    n, w = SPECIAL_SHAPES[size][dtype]
    x = (rng.standard_normal((n, w)) * 3).astype(dtype)
    k = 2 * n // 3
    x[:k, 1] = -np.inf  # all -inf for the first chunks (and super-chunks), finite later
    x[:, 2] = -np.inf  # all -inf: softmax NaN, logsumexp -inf
    x[n - 100, 3] = np.nan  # NaN in the last chunk only
    x[n // 2, 4] = np.inf  # +inf in a middle chunk
    x[:, 5] = 7.0  # ties everywhere
    x[7, w - 3] = np.nan  # the last block too
    x[:, w - 1] = -np.inf
    for op in OPS:
        got = _call(op, x, 0)
        want = np.stack([_call(op, np.ascontiguousarray(x[:, j]), 0) for j in range(w)], axis=-1)
        assert np.array_equal(np.isnan(got), np.isnan(want)), op
        fin = np.isfinite(want)
        assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)]), op
        d = ulp_distance(got[fin], want[fin])
        assert d.max() <= 2 * ULP[dtype], (op, float(d.max()))
    sm = normexp.softmax(x, axis=0)
    assert np.all(sm[:k, 1] == 0) and np.isclose(sm[:, 1].sum(), 1)
    assert np.all(np.isnan(sm[:, 2])) and np.all(np.isnan(sm[:, 3]))


HALF_AND_FULL = [np.float16, np.dtype(ml_dtypes.bfloat16), np.float32, np.float64]


@pytest.mark.parametrize("shape", [(19, 3), (300, 40), (3000, 300)])
@pytest.mark.parametrize("dtype", HALF_AND_FULL, ids=["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("axis", [0, -1])
def test_in_place_special_values_match_out_of_place(isa, axis, dtype, shape):
    """out=x gives the bits of a fresh output where a column's (row's) maximum is +inf, -inf or NaN and its
    other entries are near the dtype's largest value: log_softmax is NaN at a +inf entry and -inf below it,
    also where the kernels' pass has already overwritten x with values that overflowed to +inf."""
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    big = float(np.finfo(dtype).max) * 0.75
    if axis == -1:
        x = np.ascontiguousarray(x.T)
    lane = (lambda j: x[:, j]) if axis == 0 else (lambda j: x[j])
    lane(0)[::3] = big  # huge entries under a +inf maximum: overflow once scaled by 1 / temperature
    lane(0)[5] = np.inf
    lane(1)[:] = -big
    lane(1)[-1] = np.inf
    lane(2)[2] = np.nan
    lane(2)[4] = np.inf
    if x.shape[1 - (axis % 2)] > 3:
        lane(3)[:] = -np.inf
    for op in ("softmax", "log_softmax"):
        for t in (0.5, 1.0, 2.0):
            want = _call(op, x, axis, temperature=t)
            got = x.copy()
            assert _call(op, got, axis, temperature=t, out=got) is got
            assert np.array_equal(got.astype(np.float64), want.astype(np.float64), equal_nan=True), (op, t)
            if op == "log_softmax":
                col = lane(0) if axis == 0 else x[0]
                res = want[:, 0] if axis == 0 else want[0]
                assert np.isnan(res[5]) and np.all(res[np.isfinite(col)] == -np.inf), (op, t)


@pytest.mark.parametrize("layout", ["padded", "in_place", "reversed_rows"])
def test_column_softmax_output_layouts(isa, layout):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2100, 700)) * 4).astype(np.float32)
    want = normexp.softmax(np.ascontiguousarray(x.T), axis=-1).T
    if layout == "padded":  # output rows not contiguous with the block: the scratch variant
        out = np.full((2100, 709), -1.0, np.float32)[:, 3:703]
        got = normexp.softmax(x, axis=0, out=out)
        assert got is out
    elif layout == "in_place":
        got = x.copy()
        normexp.softmax(got, axis=0, out=got)
    else:
        got = normexp.softmax(x[::-1], axis=0)[::-1]
    assert ulp_distance(got, want).max() <= 2 * ULP[np.float32]


@pytest.mark.parametrize("op", OPS)
def test_column_results_do_not_depend_on_the_thread_count(op):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((5000, 800)) * 4).astype(np.float32)  # one block, rows split among threads
    before = normexp.get_num_threads()
    try:
        normexp.set_num_threads(1)
        one = _call(op, x, 0)
        normexp.set_num_threads(0)
        many = _call(op, x, 0)
    finally:
        normexp.set_num_threads(before)
    assert np.array_equal(one, many)


# Block sizes of the column traversal are formulas of (rows, columns, dtype): softmax gathers a block
# into kInCacheBytes (256 KiB) of scratch when its rows fit there, so a block is floor(256 KiB / (rows *
# itemsize)) columns, rounded down to a multiple of 8. Rows just below and above each step of that
# formula (1..9 columns fitting, none fitting), every narrow width, both dtypes and every op: the block
# size once rounded down to 0 for tall narrow arrays and the driver divided by it (SIGFPE).
def _fit_boundary_rows(itemsize):
    elems = (256 << 10) // itemsize
    rows = set()
    for k in range(1, 10):
        b = elems // k
        rows |= {b - 1, b, b + 1}
    return sorted(rows)


# Marked large: under the sanitizers the block arithmetic is taken by test_column_block_sizes_through_every_
# entry_point (the shape that crashed) and the tall-column tests.
@pytest.mark.large
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_block_sizes_at_every_cache_fit_boundary(dtype):
    rng = np.random.default_rng(7)
    for n in _fit_boundary_rows(np.dtype(dtype).itemsize):
        base = (rng.standard_normal((n, 17)) * 3).astype(dtype)
        # Columns are independent along axis 0: the reference of the first w columns is the first w
        # columns of the reference of all 17 (computed once per n, not once per width).
        refs = {(op, t): np.asarray(reference(base, 0, op, t), np.float64)
                for op, t in [(op, 1.0) for op in OPS] + [("softmax", 0.5)]}
        for w in (2, 3, 4, 5, 7, 8, 9, 16, 17):
            x = base[:, :w]  # rows padded to 17: not contiguous, so axis 0 is a column traversal
            for op in OPS:
                got = _call(op, x, 0)
                _check(op, got, x, 0, 1.0, dtype, refs[(op, 1.0)][..., :w])
            _check("softmax", _call("softmax", x, 0, 0.5), x, 0, 0.5, dtype, refs[("softmax", 0.5)][..., :w])


def test_column_block_sizes_through_every_entry_point():
    # The shape that crashed, through each public function that reaches the column traversal.
    from normexp import special

    x = np.zeros((10000, 4), np.float32)
    want = np.full((10000, 4), np.float32(1e-4))
    np.testing.assert_allclose(normexp.softmax(x, axis=0), want, rtol=1e-6)
    np.testing.assert_allclose(special.softmax(x, axis=0), want, rtol=1e-6)
    np.testing.assert_allclose(normexp.softmax(x, axis=0, temperature=3.0), want, rtol=1e-6)
    w = np.ones_like(x, bool)
    w[::2] = False
    got = normexp.softmax(x, axis=0, where=w)
    np.testing.assert_allclose(got[1::2], np.full((5000, 4), 2e-4), rtol=1e-6)
    assert np.all(got[::2] == 0)
    np.testing.assert_allclose(normexp.log_softmax(x[:, :3], axis=0), np.log(want[:, :3]), rtol=1e-6)
    np.testing.assert_allclose(normexp.logsumexp(np.zeros((20000, 3)), axis=0), np.log(20000.0), rtol=1e-15)
    y = np.zeros((3, 16384, 5), np.float32)  # the middle axis of a 3-d array
    np.testing.assert_allclose(normexp.softmax(y, axis=1), np.full(y.shape, 1 / 16384), rtol=1e-6)


# ---- outputs of 8 MiB and more: the online path with streaming stores (cpp/src/reduce.cpp, run_cols) ----
# Its row super-chunks are a quarter of the block, between 1 and 4 MiB, in whole chunks of 256 KiB: float32
# blocks of 1024 columns have chunks of 64 rows and super-chunks of 256-1024 rows, float64 ones 32 and
# 128-512. The rows below end on a super-chunk, one row past one, in a partial chunk, and at the 4 MiB cap,
# and w = 1030 adds a block of 6 columns (a vector tail) beside the wide one.
STREAMED = {
    np.float32: [(2048, 1030), (2113, 1030), (4097, 1030)],
    np.float64: [(1024, 1030), (1025, 1030), (2081, 1030)],
}


def _streamed_input(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    n = shape[0]
    x[n // 4, ::5] += 30  # new maxima at a super-chunk's first row (or inside one) ...
    x[-1, 1::7] += 35  # ... in the last row ...
    x[n // 2 - 1, 2::9] += 25  # ... and at the end of a chunk
    return x


@functools.lru_cache(maxsize=1)
def _streamed_case(op, shape, dtype):
    x = _streamed_input(shape, dtype, 20)
    temps = (1.0, 0.7) if op != "logsumexp" else (1.0,)
    return x, {t: np.asarray(reference(x, 0, op, t), np.float64) for t in temps}


# Marked large: under the sanitizers the streamed column path is taken by test_column_special_values_in_later_
# chunks (its "streamed" cases, every set).
@pytest.mark.large
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_streamed_column_blocks_at_chunk_and_super_chunk_boundaries(op, dtype):
    for shape in STREAMED[dtype]:
        x, refs = _streamed_case(op, shape, dtype)
        assert x.nbytes >= 8 << 20  # the streamed path (and logsumexp's large super-chunks)
        for isa_name in normexp.available_isas():
            with normexp.use_isa(isa_name):
                for t, ref in refs.items():
                    _check(op, _call(op, x, 0, t), x, 0, t, dtype, ref)


@pytest.mark.parametrize("w", [1030, 1000])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_streamed_column_outputs_in_every_layout_give_the_same_bits(isa, op, w):
    # The streaming stores start at each output row's first 64-byte boundary: rows that start elsewhere
    # (padded rows, an output one element off a boundary, output rows in reverse order) and in place give
    # the bits of a contiguous output, which the non-streaming kernels' values are (test_kernels.cpp checks
    # that). Reversed input rows are another summation order: within the contract of the contiguous bits.
    # w = 1000: one block of whole rows, which a contiguous output (and the shifted and in-place ones) takes
    # as one run of rows (col_runs, cpp/src/kernels/generic/reductions.hpp), the padded one row by row.
    x = _streamed_input((2100, w), np.float32, 22)
    assert x.nbytes >= 8 << 20
    want = _call(op, x, 0)
    padded = np.full((2100, w + 11), -1.0, np.float32)[:, 3:w + 3]
    assert _call(op, x, 0, out=padded) is padded
    buf = np.empty(x.size + 1, np.float32)
    shifted = buf[1:].reshape(x.shape)  # every row 4 bytes past where a contiguous one would start
    _call(op, x, 0, out=shifted)
    in_place = x.copy()
    _call(op, in_place, 0, out=in_place)
    reversed_out = np.empty_like(x)[::-1]
    _call(op, x, 0, out=reversed_out)
    for got in (padded, shifted, in_place, reversed_out):
        np.testing.assert_array_equal(got, want)
    reversed_rows = _call(op, x[::-1], 0)[::-1]
    assert ulp_distance(reversed_rows, want).max() <= 2 * ULP[np.float32]
    assert np.all(padded.base[:, :3] == -1) and np.all(padded.base[:, w + 3:] == -1)  # nothing written outside
    # Negative control: a different input gives different bits.
    assert not np.array_equal(_call(op, x * np.float32(1.5), 0), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_streamed_columns_one_and_two_threads_give_the_same_bits(op, dtype):
    # One block (threads split its rows over the super-chunks) and two blocks (threads take blocks).
    shapes = [(4097, 1024), (2113, 1030)] if dtype == np.float32 else [(2081, 1024), (1025, 2050)]
    before = normexp.get_num_threads()
    try:
        for shape in shapes:
            x = _streamed_input(shape, dtype, 23)
            normexp.set_num_threads(1)
            one = _call(op, x, 0)
            normexp.set_num_threads(2)
            two = _call(op, x, 0)
            np.testing.assert_array_equal(one, two)
    finally:
        normexp.set_num_threads(before)
