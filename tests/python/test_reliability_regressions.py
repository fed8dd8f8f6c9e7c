"""Regression tests for foundation bugs found by the reliability work (each failed before its fix)."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest

import normexp
from normexp import special

FUNCS = [
    ("softmax", normexp.softmax, special.softmax),
    ("log_softmax", normexp.log_softmax, special.log_softmax),
    ("logsumexp", normexp.logsumexp, special.logsumexp),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,f,sf", FUNCS)
def test_unpickled_arrays_are_accepted(name, f, sf, dtype):
    # Bug: the bindings compared dtypes by object identity (py::dtype::is). An array that crossed a
    # process boundary (pickle, multiprocessing with spawn/forkserver) has its own float32 descriptor
    # object and was rejected with "normexp kernels take float32 or float64 arrays".
    x = np.random.default_rng(0).standard_normal((4, 9)).astype(dtype)
    y = pickle.loads(pickle.dumps(x))
    assert y.dtype is not np.dtype(dtype)  # the situation of the bug
    assert np.array_equal(f(y), f(x))
    assert np.array_equal(sf(y, axis=-1), sf(x, axis=-1))
    out = pickle.loads(pickle.dumps(np.empty_like(f(x))))
    assert f(y, out=out) is out and np.array_equal(out, f(x))


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f4", "<f8"])
@pytest.mark.parametrize("name,f,sf", FUNCS)
def test_byte_swapped_input(name, f, sf, dtype):
    # Bug: a non-native byte order float input raised "TypeError: >f4 is not supported; cast to
    # float64". Like np.exp, it now computes in the native type of the same width.
    x = np.random.default_rng(1).standard_normal((3, 8))
    xs = x.astype(dtype)
    native = xs.astype(np.dtype(dtype).newbyteorder("="))
    got = f(xs)
    assert got.dtype == native.dtype and got.dtype.isnative
    assert np.array_equal(got, f(native))
    assert np.array_equal(sf(xs, axis=1), sf(native, axis=1))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_temperature_whose_reciprocal_overflows_is_rejected(op):
    # Bug: float32 scores with temperature < 1/FLT_MAX (e.g. 1e-40) gave all-NaN rows silently: beta =
    # 1/temperature overflowed to inf in float32 and inf * (x - m) = inf * 0 = NaN at the maximum.
    f = getattr(normexp, op)
    x = np.array([1.0, 2.0, 2.0, -1.0], np.float32)
    with pytest.raises(ValueError, match="temperature"):
        f(x, temperature=1e-40)
    # float64 computes it (1/temperature = 1e40 is finite), and float32 just above the limit too.
    assert np.array_equal(normexp.softmax(x.astype(np.float64), temperature=1e-40), [0, 0.5, 0.5, 0])
    assert np.array_equal(normexp.softmax(x, temperature=1e-38), np.float32([0, 0.5, 0.5, 0]))
    with pytest.raises(ValueError, match="temperature"):
        f(x.astype(np.float64), temperature=1e-310)  # subnormal: 1/temperature = inf in float64


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_temperature_whose_reciprocal_rounds_to_zero_is_rejected(dtype, op):
    # Bug (hostile tester): float32 (and 16-bit) scores with temperature > 2^149 gave all-NaN rows wherever an
    # entry was -inf or masked: 1/temperature rounds to 0 in float32 and 0 * -inf = NaN. Now a clear error;
    # float64 (whose 1/temperature never rounds to 0) computes them.
    import ml_dtypes

    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    f = getattr(normexp, op)
    x = np.array([0.5, -np.inf, 0.25, -np.inf], dt)
    where = np.array([True, False, True, True])
    for t in (2.0**149 * 1.01, 1e46):
        if dt.itemsize <= 4:
            with pytest.raises(ValueError, match=re.escape(f"temperature {t!r} is too large for {dt.name} scores")):
                f(x, temperature=t)
            with pytest.raises(ValueError, match="rounds to 0 in float32"):
                f(x, temperature=t, where=where)
        else:
            y = f(x, temperature=t)
            assert (np.array_equal(y, [0.5, 0, 0.5, 0]) if op == "softmax"
                    else np.isneginf(y[[1, 3]]).all() and np.allclose(y[[0, 2]], -np.log(2)))
    # At the limit (1/temperature = 2^-149, the smallest float32): -inf entries give 0 (softmax) / -inf
    # (log_softmax), the others their equal share; float64 down to 1e308.
    for t in (2.0**149,) + ((1e308,) if dt.itemsize == 8 else ()):
        y = f(x, temperature=t).astype(np.float64)
        if op == "softmax":
            assert np.array_equal(y, [0.5, 0, 0.5, 0]), (t, y)
        else:
            assert np.isneginf(y[[1, 3]]).all() and np.allclose(y[[0, 2]], -np.log(2), rtol=8e-3), (t, y)  # bfloat16: 2^-8


@pytest.mark.parametrize("isa", normexp.available_isas())
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_huge_differences_with_huge_temperature(isa, op):
    # Bug (found by the fuzzer): float64 scores whose difference exceeds 2^996 with a temperature large
    # enough to bring t = (x - m) / T back into exp's range gave NaN on the scalar kernels: Dekker's
    # split in the TwoProduct error overflowed (inf - inf).
    x = np.array([0.0, 1e301, 1e301 - 1e287], np.float64)
    t = 1e300
    z = (x - x.max()) / t  # [-10, 0, -1e-13] exactly enough
    want = np.exp(z) / np.exp(z).sum() if op == "softmax" else z - np.log(np.exp(z).sum())
    with normexp.use_isa(isa):
        got = getattr(normexp, op)(x, temperature=t)
    assert np.all(np.isfinite(got))
    assert np.allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_special_with_an_empty_kept_axis(name):
    # Bug: special.* reshaped with -1, which NumPy cannot resolve when another axis has length 0:
    # "ValueError: cannot reshape array of size 0 into shape (0,newaxis)" where SciPy returns an empty
    # result.
    import scipy.special

    x = np.zeros((0, 3, 2), np.float64)
    for axis in [(1, 2), 1, (1,)]:
        got = np.asarray(getattr(special, name)(x, axis=axis))
        try:
            want = np.asarray(getattr(scipy.special, name)(x, axis=axis))
        except IndexError:  # SciPy's logsumexp fails on this one itself: check against NumPy's shapes
            want = np.sum(x, axis=axis) if name == "logsumexp" else x
        assert got.shape == want.shape and got.dtype == want.dtype


@pytest.mark.parametrize("window", [2**63, 2**64 - 1, 2**70])
@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
def test_attention_window_beyond_any_length_is_no_window(window, alignment):
    # The native window is a size_t: 2**64 - 1 used to wrap to a negative lower limit and mask keys
    # (a silently wrong answer), and 2**70 failed with pybind11's "incompatible function arguments".
    # Any window above Lq + Lkv lets every query see all its keys, so the result equals no window.
    g = np.random.default_rng(4)
    q = g.standard_normal((2, 3, 8)).astype(np.float32)
    k = g.standard_normal((2, 5, 8)).astype(np.float32)
    v = g.standard_normal((2, 5, 4)).astype(np.float32)
    for causal in (False, True):
        want = normexp.attention(q, k, v, is_causal=causal, causal_alignment=alignment)
        got = normexp.attention(q, k, v, is_causal=causal, causal_alignment=alignment, window=window)
        assert np.array_equal(got, want)


def test_calibration_error_with_more_bins_than_memory():
    # n_bins = 10**12 used to allocate a 10**12-entry histogram (MemoryError). With confidences at least
    # 1e-3 apart every row has a bin of its own, so ECE = mean |correct - confidence| exactly
    # (up to the float64 rounding of the sums: 1e-15 relative).
    g = np.random.default_rng(6)
    n, c = 40, 3
    conf = 0.4 + 0.5 * np.arange(n) / n  # 0.4 ... 0.8875, distinct, above 1/3 so the row's max
    pred = g.integers(0, c, n)
    probs = np.empty((n, c))
    probs[...] = ((1 - conf) / (c - 1))[:, None]
    probs[np.arange(n), pred] = conf
    labels = np.where(g.random(n) < 0.5, pred, (pred + 1) % c)
    want = np.mean(np.abs((labels == pred) - conf))
    for bins in (10**6, 10**12):
        assert normexp.calibration_error(probs, labels, n_bins=bins) == pytest.approx(want, rel=1e-12)


def _unpickled(a):
    return pickle.loads(pickle.dumps(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpickled_arrays_are_accepted_by_attention_and_the_output_layer(dtype):
    # The same bug in the attention and sampling bindings (dtype::is): found by the spawn/forkserver
    # test once reliability_cases covered them ("normexp attention takes float32 or float64 arrays",
    # "every part must have out's dtype", "normexp kernels take float32 or float64 arrays").
    g = np.random.default_rng(2)
    q, k, v = (g.standard_normal((2, 3, 4)).astype(dtype) for _ in range(3))
    mask = g.random((3, 3)) < 0.7
    mask[:, 0] = True
    out = np.empty_like(q)
    want, lse = normexp.attention(q, k, v, mask=mask, return_lse=True)
    got = normexp.attention(*map(_unpickled, (q, k, v)), mask=_unpickled(mask), return_lse=True, out=_unpickled(out))
    assert np.array_equal(got[0], want) and np.array_equal(got[1], lse)
    parts = [normexp.attention(q, k[:, s], v[:, s], return_lse=True) for s in (slice(0, 1), slice(1, 3))]
    outs, lses = [p[0] for p in parts], [p[1] for p in parts]
    m = normexp.merge_attention(_unpickled(outs), _unpickled(lses))
    w = normexp.merge_attention(outs, lses)
    assert np.array_equal(m[0], w[0]) and np.array_equal(m[1], w[1])
    x = (g.standard_normal((5, 11)) * 2).astype(dtype)
    y = g.integers(0, 11, 5)
    assert np.array_equal(normexp.sample(_unpickled(x), rng=3), normexp.sample(x, rng=3))
    assert normexp.cross_entropy(_unpickled(x), _unpickled(y)) == normexp.cross_entropy(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random labels: the optimum may be at a bound
        assert normexp.fit_temperature(_unpickled(x), _unpickled(y)) == normexp.fit_temperature(x, y)
    p = normexp.softmax(x.astype(np.float64))
    assert normexp.calibration_error(_unpickled(p), _unpickled(y)) == normexp.calibration_error(p, y)


@pytest.mark.parametrize("isa", normexp.available_isas())
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_float64_column_sums_of_many_equal_terms(isa, op):
    # Bug (found by the fuzzer in CI): a float64 reduction over axis 0 summed each column's terms into a
    # plain running double (scalar kernels, and AVX2/NEON across 8-row blocks), rounding at every row:
    # 200 equal terms put log_softmax 11 ULP from the row path. Columns are now Neumaier-summed.
    x = np.zeros(203)
    x[:3] = [float.fromhex("-0x1.93e5939a08ceap+99"), float.fromhex("-0x1.fc7dcf04c57bp+4"),
             float.fromhex("0x1.4a5c393e7a0ap+1")]
    f = getattr(normexp, op)
    with normexp.use_isa(isa):
        row = f(x)
        cols = f(np.tile(x[:, None], (1, 5)), axis=0)
    for j in range(5):
        got = cols[..., j]
        assert np.all(np.abs(got - row) <= 2 * np.spacing(np.abs(row))), (got - row) / np.spacing(np.abs(row))


@pytest.mark.parametrize("isa", normexp.available_isas())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_score_range_beyond_the_dtype_with_a_huge_temperature(isa, dtype, op, axis):
    # Bug (found by the fuzzer): scores spanning more than the dtype's range (x - m overflows to -inf)
    # with a temperature that brings beta (x - m) back to moderate values gave NaN (AVX2 float32: -inf
    # times a beta that rounds to 0) or a silent 0 (float64, every ISA; SciPy divides first and is right).
    big = np.finfo(dtype).max * 0.9
    x = np.array([-big, big, 0.0, big / 3], dtype)
    t = float(big) / 2
    want = getattr(special, op)(x.astype(np.float64) / t)
    with normexp.use_isa(isa):
        got = getattr(normexp, op)(x if axis == -1 else x[:, None], axis=axis, temperature=t).ravel()
    assert np.all(np.isfinite(got))
    assert np.allclose(got, want, rtol=8 * np.finfo(dtype).eps, atol=0)
    # Long rows: super-chunks whose maxima differ by more than the range merge through the same rule.
    xl = np.zeros(200_000, dtype)
    xl[0], xl[-1] = -big, big
    with normexp.use_isa(isa):
        gl = getattr(normexp, op)(xl, temperature=t)
    wl = getattr(special, op)(xl.astype(np.float64) / t)
    assert np.allclose(gl, wl, rtol=16 * np.finfo(dtype).eps, atol=0)
