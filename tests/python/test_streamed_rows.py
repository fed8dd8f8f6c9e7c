"""Rows of at least 8 MiB write softmax and log_softmax past the caches (cpp/src/reduce.cpp: kStreamBytes):
streaming stores from out's first aligned vector on, ordinary stores before it and after the last whole
vector. The values must be the cached path's, bit for bit, at every offset of out, and nothing may be written
outside out, for every dtype, both accuracy modes and a temperature."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import normexp
from conftest import reference, ulp_distance

STREAM_BYTES = 8 << 20
DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
GUARD = 0x5A


def row(dtype, rng):
    n = STREAM_BYTES // np.dtype(dtype).itemsize + 37  # a tail after the last whole vector
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[[5, n // 3, n - 1]] = x.max()  # the maximum three times
    x[123] = -np.inf
    return x


# Marked large: under the sanitizers the streamed rows are taken by the default set's cases below.
@pytest.mark.large
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_streamed_row_bits_and_bounds(isa, dtype, op):
    check_streamed_row(dtype, op)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_streamed_log_softmax_default_set(dtype):
    check_streamed_row(dtype, "log_softmax", offsets=(0, 1), modes=("high",))


def check_streamed_row(dtype, op, offsets=(0, 1, 2, 3, 7, 8, 9, 15), modes=("high", "fast")):
    rng = np.random.default_rng(31)
    x = row(dtype, rng)
    n = x.size
    f = getattr(normexp, op)
    item = np.dtype(dtype).itemsize
    # The same row read through a stride (gathered in pieces, written with ordinary stores): the reference bits.
    base = np.empty(2 * n, dtype=dtype)
    base[::2] = x
    for temperature in (1.0, 0.7):
        want = reference(x, -1, op, temperature)
        fin = np.isfinite(want)
        for accuracy in modes:
            kw = dict(accuracy=accuracy, temperature=temperature)
            what = f"{op} {np.dtype(dtype).name} {accuracy} T={temperature}"
            got = f(x, **kw)
            np.testing.assert_array_equal(got.view(f"u{item}"), f(base[::2], **kw).view(f"u{item}"), err_msg=what)
            if accuracy == "high":
                assert np.array_equal(np.isfinite(got), fin), what
                bound = 1 if item == 2 else 4
                worst = ulp_distance(got[fin], want[fin].astype(np.float64)).max()
                assert worst <= bound, f"{what}: {worst} ULP"
            # out= at element offsets from a 64-byte boundary: the same bits, nothing written outside out.
            buf = np.empty(n + 64, dtype=dtype)
            lead = (-buf.ctypes.data % 64) // item
            for off in offsets:
                buf.view(np.uint8)[:] = GUARD
                out = buf[lead + off : lead + off + n]
                assert f(x, out=out, **kw) is out
                np.testing.assert_array_equal(out.view(f"u{item}"), got.view(f"u{item}"), err_msg=f"{what} offset {off}")
                rest = np.concatenate([buf[: lead + off], buf[lead + off + n :]]).view(np.uint8)
                assert (rest == GUARD).all(), f"{what} offset {off}: written outside out"
