"""Reductions along a strided axis (the column traversal) on arrays too large for the cache scratch.

These shapes take the paths small tests never reach: several row super-chunks merged in order (the block
is larger than 1 MiB), softmax's stored-exp path (exp(x - m_c) per chunk kept in the output and rescaled
by exp(m_c - m) / S), its scratch variant when the output rows are not contiguous, in place, threads
splitting the rows of a single block, and special values that appear only in a later chunk.
"""

from __future__ import annotations

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


def _check(op, got, x, axis, temperature, dtype):
    ref = reference(x, axis, op, temperature)
    d = ulp_distance(got, ref)
    if op != "softmax":
        # log-domain results near 0 get an absolute floor of a few ULP of the row's scale (cancellation).
        scale = np.maximum(np.abs(np.max(x, axis=axis, keepdims=op != "logsumexp")) / temperature, 1.0)
        close = np.abs(got.astype(np.float64) - ref.astype(np.float64)) <= 8 * np.finfo(dtype).eps * scale
        d = np.where(close, 0.0, d)
    assert d.max() <= ULP[dtype], (op, float(d.max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2500, 1030), (300, 2053), (40000, 24)])
@pytest.mark.parametrize("op", OPS)
def test_tall_column_blocks_match_the_reference(isa, op, shape, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    # A new column maximum late in the array: the stored exps of earlier chunks must be rescaled.
    x[-7, ::3] += 40
    for t in (1.0, 0.7) if op != "logsumexp" else (1.0,):
        _check(op, _call(op, x, 0, t), x, 0, t, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_special_values_in_later_chunks(isa, dtype):
    rng = np.random.default_rng(4)
    n, w = 3000, 300
    x = (rng.standard_normal((n, w)) * 3).astype(dtype)
    x[:2000, 1] = -np.inf  # all -inf for the first chunks, finite later
    x[:, 2] = -np.inf  # all -inf: softmax NaN, logsumexp -inf
    x[2900, 3] = np.nan  # NaN in the last chunk only
    x[1500, 4] = np.inf  # +inf in a middle chunk
    x[:, 5] = 7.0  # ties everywhere
    for op in OPS:
        got = _call(op, x, 0)
        want = np.stack([_call(op, np.ascontiguousarray(x[:, j]), 0) for j in range(w)], axis=-1)
        assert np.array_equal(np.isnan(got), np.isnan(want)), op
        fin = np.isfinite(want)
        assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)]), op
        d = ulp_distance(got[fin], want[fin])
        assert d.max() <= 2 * ULP[dtype], (op, float(d.max()))
    sm = normexp.softmax(x, axis=0)
    assert np.all(sm[:2000, 1] == 0) and np.isclose(sm[:, 1].sum(), 1)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_softmax_when_fewer_than_8_columns_fit_the_cache_scratch(isa, dtype):
    # softmax along axis 0 gathers blocks of columns into a 256 KiB scratch, a multiple of 8 columns wide;
    # when the column is so long that only 2..7 columns fit (and the array is that narrow), the block was
    # 0 columns wide and the driver divided by zero (SIGFPE killed the process).
    rng = np.random.default_rng(7)
    itemsize = np.dtype(dtype).itemsize
    for fit in range(2, 8):
        n = (256 << 10) // (fit * itemsize)  # exactly `fit` columns fit
        for w in sorted({2, fit}):
            x = (rng.standard_normal((n, w)) * 4).astype(dtype)
            x[n // 2, 0] += 30  # a late maximum
            _check("softmax", normexp.softmax(x, axis=0), x, 0, 1.0, dtype)
            _check("softmax", normexp.softmax(x, axis=0, temperature=0.5), x, 0, 0.5, dtype)
