"""Smoke checks for the ISA-leak guard (ci/isa_guard.sh), run under ``qemu-x86_64 -cpu <model>``.

Not part of the default suite (pytest's testpaths is tests/python): the guard runs this file with
NORMEXP_EXPECT_ISA set to the kernel set the emulated CPU must select (``scalar`` on Nehalem, which has
no AVX at all; ``avx2`` on Haswell). Any AVX instruction that reached baseline code (the import, the
dispatch, the drivers, the scalar kernels, the bindings) kills the process with SIGILL on Nehalem, so
these tests also exercise every code path of the baseline build: each reduction, both dtypes, rows,
columns, gathers, long and threaded rows, float16 and integer inputs, in place and out=.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import normexp

EXPECT = os.environ.get("NORMEXP_EXPECT_ISA", "")


def test_run_by_the_guard():
    assert EXPECT, "run through ci/isa_guard.sh, which sets NORMEXP_EXPECT_ISA for the emulated CPU"


def test_selects_the_expected_isa():
    assert normexp.isa() == EXPECT
    isas = normexp.available_isas()
    assert isas[0] == "scalar" and isas[-1] == EXPECT
    if EXPECT == "scalar":
        assert isas == ["scalar"]


def test_unsupported_isa_is_a_clear_error():
    if EXPECT != "scalar":
        assert "scalar" in normexp.available_isas()
        return
    with pytest.raises(ValueError, match="not available"):
        with normexp.use_isa("avx2"):
            pass


def _ref(x, op, axis):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    if op == "softmax":
        return e / s
    if op == "log_softmax":
        return x - m - np.log(s)
    return np.squeeze(m + np.log(s), axis=axis)


# Tolerances against the float64 NumPy reference above (itself within ~1e-15 relative):
# float32 results are within a few float32 ULP of the exact value: 2e-6 relative (16 ULP at 2^-23 each,
# with headroom for the reference's own rounding) and 1e-6 absolute for log-values that cancel near 0;
# float64 results: 1e-12 relative / 1e-13 absolute (log(sum) carries a few eps absolute).
TOL = {np.float32: (2e-6, 1e-6), np.float64: (1e-12, 1e-13)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_correct_answers(dtype, op):
    rng = np.random.default_rng(1)
    f = getattr(normexp, op)
    rtol, atol = TOL[dtype]
    x3 = rng.normal(0, 4, (3, 37, 21)).astype(dtype)
    for axis in (0, 1, 2, -1):  # columns, strided gather, rows
        np.testing.assert_allclose(f(x3, axis=axis), _ref(x3, op, axis), rtol=rtol, atol=atol)
    xs = x3[:, ::-2, 1::3]  # negative and non-unit strides
    np.testing.assert_allclose(f(xs, axis=1), _ref(xs, op, 1), rtol=rtol, atol=atol)
    long_rows = (rng.normal(0, 3, (2, 200_003)) + 500).astype(dtype)  # split, blocked, threaded rows
    np.testing.assert_allclose(f(long_rows, axis=-1), _ref(long_rows, op, -1), rtol=rtol, atol=atol)


def test_special_values_and_dtypes():
    x = np.array([[1.0, np.nan, 2.0], [0.0, -np.inf, 1.0], [np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf]])
    lse = normexp.logsumexp(x, axis=-1)
    assert np.isnan(lse[0]) and lse[2] == np.inf and lse[3] == -np.inf
    np.testing.assert_allclose(lse[1], np.log(1 + np.e), rtol=1e-15)
    p = normexp.softmax(x, axis=-1)
    assert np.isnan(p[0]).all() and p[1, 1] == 0 and np.isnan(p[3]).all()
    h = normexp.softmax(np.array([1, 2, 3], dtype=np.float16))
    assert h.dtype == np.float16
    np.testing.assert_allclose(h.astype(np.float64), _ref([1, 2, 3], "softmax", -1), rtol=1e-3)
    i = normexp.log_softmax(np.arange(10, dtype=np.int64))
    assert i.dtype == np.float64
    np.testing.assert_allclose(i, _ref(np.arange(10), "log_softmax", -1), rtol=1e-14)
    y = np.linspace(-3, 3, 64)
    expect = _ref(y, "softmax", -1)
    assert normexp.softmax(y, out=y) is y
    np.testing.assert_allclose(y, expect, rtol=1e-14)


def test_threads():
    normexp.set_num_threads(2)
    try:
        x = np.random.default_rng(2).normal(0, 2, (64, 4096)).astype(np.float32)
        np.testing.assert_allclose(normexp.softmax(x, axis=0), _ref(x, "softmax", 0), rtol=2e-6, atol=1e-6)
    finally:
        normexp.set_num_threads(0)
