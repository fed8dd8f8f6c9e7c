"""Hostile tests of the several-rows path (many short rows of a 2-d input: short_rows in cpp/src/reduce.cpp,
the pipelined rows_softmax / rows_exp_sum kernels of cpp/src/kernels/generic/reductions.hpp).

The contract under test (docs/architecture.md, "Kernel layout"): every row of a batch gets exactly the bits
that the single-row path (do_row) gives the same row alone, whatever its neighbours are, where it falls in
a batch of 64, and however many threads run; skipped rows (a maximum that is NaN, +inf, all -inf, or above
the SIMD kernels' limit with a temperature) go through do_row and give SciPy's special values. A 1 x n input
never takes the several-rows path (it needs two rows or more), so ``x[i:i + 1]`` is the reference.
"""

from __future__ import annotations

import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import scipy.special
from numpy.lib.stride_tricks import as_strided

import normexp
from conftest import reference, ulp_distance
from normexp import _core

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
DTYPE_IDS = ["float32", "float64", "float16", "bfloat16"]
OPS = ["softmax", "log_softmax", "logsumexp"]
# Around every multiple of 16 / 32 / 64 / 128 (vectors of 4..16 lanes, 8-vector blocks, 4-vector max blocks).
LENGTHS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300]
ROWS = 130  # more than two batches of 64 rows


def raw(a) -> bytes:
    return np.ascontiguousarray(np.atleast_1d(np.asarray(a))).tobytes()


def fmax(dt: np.dtype) -> float:
    return float(ml_dtypes.finfo(dt).max)


def call(op: str, x, temperature: float = 1.0, **kw):
    if op != "logsumexp":
        kw["temperature"] = temperature
    return getattr(normexp, op)(x, axis=-1, **kw)


def hostile_batch(n: int, dt: np.dtype, seed: int) -> np.ndarray:
    """ROWS x n scores with special rows first, last, adjacent, alone in a batch of 64 and at the 63/64
    boundary: NaN, +inf, all -inf, -inf entries, huge maxima (float max, 1e30, 2^103), +0/-0 maxima ties."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, n)) * 4.0
    big = fmax(dt)
    x[0, :] = -np.inf  # all -inf, first
    x[1, n // 2] = np.nan
    x[2, -1] = np.inf
    x[3, :] = 0.0  # +0 / -0 maxima ties
    x[3, ::2] = -0.0
    x[4, :] = -0.0
    x[5, 0] = big
    x[6, :] = -np.inf
    x[6, -1] = 1e30 if dt.itemsize > 2 else 3.0
    x[7, 0] = -np.inf  # a -inf entry in an ordinary row
    x[63, :] = np.inf  # batch boundary: last of the first batch ...
    x[64, 0] = np.nan  # ... first of the second
    x[65, -1] = 2.0**103 if dt.itemsize > 2 or dt == BF16 else 60000.0
    x[100, :] = -big  # alone in its batch
    x[ROWS - 2, :] = -np.inf
    x[ROWS - 1, 0] = np.inf  # last
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dt)


def assert_rows_alone(y, x, op, temperature=1.0, **kw):
    """Each row of y has the bits of the same row computed alone."""
    for i in range(x.shape[0]):
        alone = call(op, np.ascontiguousarray(x[i : i + 1]), temperature, **kw)
        assert raw(y[i]) == raw(alone), f"row {i} of {x.shape}: {x[i][:6]} -> {y[i]!r:.80} alone {alone!r:.80}"


# ---- negative control ----------------------------------------------------------------------------------
def test_row_comparison_detects_one_ulp():
    x = hostile_batch(33, np.dtype(np.float32), 0)
    y = call("softmax", x)
    assert_rows_alone(y, x, "softmax")
    y[20, 5] = np.nextafter(y[20, 5], np.float32(1))
    with pytest.raises(AssertionError, match="row 20"):
        assert_rows_alone(y, x, "softmax")


# ---- every row as alone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("accuracy", ["high", "fast"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_batch_rows_equal_rows_alone(isa, dt, op, accuracy):
    for n in LENGTHS:
        x = hostile_batch(n, dt, n)
        assert_rows_alone(call(op, x, accuracy=accuracy), x, op, accuracy=accuracy)


@pytest.mark.parametrize("temperature", [0.37, 3.0, 1e-3])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_batch_rows_with_temperature(isa, dt, op, temperature):
    # 2^103 > 2^102: with a temperature that row needs the scalar kernels (kernels_for_max), its
    # neighbours the SIMD ones.
    for n in (5, 16, 17, 64, 129):
        x = hostile_batch(n, dt, 7 * n)
        for accuracy in ("high", "fast"):
            y = call(op, x, temperature, accuracy=accuracy)
            assert_rows_alone(y, x, op, temperature, accuracy=accuracy)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_log_family_batches_of_one_row(isa, dt):
    """Rows near kChunkBytes (16 KiB): batches of a single row, and the first length past the short path."""
    lim = 16384 // dt.itemsize
    for n in (lim // 2, lim // 2 + 1, lim - 1, lim, lim + 1):
        x = hostile_batch(n, dt, n)[60:70]
        for op in ("log_softmax", "logsumexp"):
            assert_rows_alone(call(op, x), x, op)


@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_softmax_in_cache_limit(isa, dt):
    """Rows at the in-cache limit (256 KiB or 65536 entries) and one past it (the two-pass path)."""
    lim = min(65536, 262144 // dt.itemsize)
    for n in (lim, lim + 1):
        x = hostile_batch(n, dt, n)[:3].copy()
        x[0] = np.linspace(-5, 5, n).astype(dt)
        assert_rows_alone(call("softmax", x, 0.9), x, "softmax", 0.9)


# ---- layouts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_strided_views_and_out(isa, dt, op):
    for n in (3, 16, 33, 64, 129):
        base = hostile_batch(n, dt, n)
        want = call(op, base)
        wide = np.zeros((2 * ROWS, n + 5), dt)
        wide[::2, 2 : n + 2] = base
        views = {
            "every other row": (wide[::2, 2 : n + 2], 1),
            "reversed rows": (base[::-1], -1),
            "reversed strided rows": (wide[-2::-2, 2 : n + 2], -1),
        }
        for name, (v, order) in views.items():
            got = call(op, v)[::order]
            assert raw(got) == raw(want), name
        # Fortran order takes the column path: another summation order, so agreement within the bound
        # (docs/accuracy.md: 4 ULP, 1 ULP of a 16-bit type; a log result near 0 is ill-conditioned and held
        # to an absolute error of 1 eps instead), not bit for bit; the same special values.
        w = want.astype(np.float64)
        near0 = (np.abs(w) < 0.25) if op != "softmax" else np.zeros(w.shape, bool)
        eps = float(ml_dtypes.finfo(dt).eps)
        for v in (np.asfortranarray(base), np.ascontiguousarray(base.T).T):
            got = call(op, v)
            ulp = ulp_distance(got, w)
            assert np.max(np.where(near0, 0, ulp)) <= (1 if dt.itemsize == 2 else 4)
            with np.errstate(invalid="ignore"):  # inf - inf outside near0
                assert np.all(np.where(near0, np.abs(got.astype(np.float64) - w), 0) <= eps)
        # out=: a padded view (the padding is left alone), and in place
        if op == "logsumexp":
            ob = np.full((ROWS, 3), 7, dt)
            r = normexp.logsumexp(base, axis=-1, out=ob[:, 1])
            assert np.shares_memory(r, ob) and raw(ob[:, 1]) == raw(want)
            assert (ob[:, 0] == 7).all() and (ob[:, 2] == 7).all()
            keep = normexp.logsumexp(base, axis=-1, keepdims=True)
            assert keep.shape == (ROWS, 1) and raw(keep) == raw(want)
        else:
            ob = np.full((ROWS, n + 6), 7, dt)
            r = call(op, base, out=ob[:, 3 : n + 3])
            assert np.shares_memory(r, ob) and raw(ob[:, 3 : n + 3]) == raw(want)
            assert (ob[:, :3] == 7).all() and (ob[:, n + 3 :] == 7).all()
            inplace = wide[::2, 2 : n + 2].copy()
            r = call(op, inplace, out=inplace)
            assert r is inplace and raw(inplace) == raw(want)
            wide2 = wide.copy()  # in place in a padded, strided view: padding untouched
            v = wide2[::2, 2 : n + 2]
            call(op, v, out=v)
            assert raw(v) == raw(want)
            assert (wide2[1::2] == 0).all() and (wide2[:, :2] == 0).all() and (wide2[:, n + 2 :] == 0).all()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_overlapping_and_broadcast_rows(isa, dt, op):
    """Read-only inputs whose rows overlap (sliding windows) or repeat (stride 0)."""
    rng = np.random.default_rng(3)
    for n in (1, 9, 32, 65, 200):
        buf = (rng.standard_normal(71 * n + 3 * 70) * 3).astype(dt)  # room for 70 rows of step <= n
        buf[100] = -np.inf
        for step in (1, 3, n):
            x = as_strided(buf, (70, n), (step * dt.itemsize, dt.itemsize), writeable=False)
            assert_rows_alone(call(op, x), x, op)
        row = buf[:n]
        b = np.broadcast_to(row, (90, n))
        y = call(op, b)
        alone = call(op, row)
        assert all(raw(y[i]) == raw(alone) for i in range(90))


def test_nd_inputs_match_2d(isa):
    for dt in DTYPES:
        x = hostile_batch(33, dt, 1)  # 130 rows
        for op in OPS:
            want = call(op, x)
            for shape in ((13, 10, 33), (1, 130, 33), (130, 1, 33), (2, 5, 13, 33)):
                got = call(op, x.reshape(shape))
                assert raw(got) == raw(want), (op, shape)


def test_threads_bit_identical():
    """Many rows (> 32k entries: the rows are split between threads, so batches start elsewhere)."""
    old = normexp.get_num_threads()
    try:
        for dt in DTYPES:
            for n in (17, 128, 300):
                x = np.concatenate([hostile_batch(n, dt, n)] * 3)
                for op in OPS:
                    for acc in ("high", "fast"):
                        res = []
                        for t in (1, 2):
                            normexp.set_num_threads(t)
                            res.append(raw(call(op, x, 0.8, accuracy=acc)))
                        assert res[0] == res[1], (dt, n, op, acc)
    finally:
        normexp.set_num_threads(old)


# ---- logsumexp_parts (normexp.dask's statistics) ---------------------------------------------------------
@pytest.mark.parametrize("accuracy", [_core.Accuracy.high, _core.Accuracy.fast])
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_logsumexp_parts_rows_alone(isa, dt, accuracy):
    def parts(x, t):
        m = np.empty(x.shape[:-1] + (1,), x.dtype)
        s = np.empty(x.shape[:-1] + (1, 2))
        _core.logsumexp_parts(x, m, s, x.ndim - 1, t, isa, accuracy)
        return m, s

    for n in (1, 16, 17, 100, 257):
        x = hostile_batch(n, dt, n)
        for t in (1.0, 0.37, 1e-3):
            m, s = parts(x, t)
            for i in range(ROWS):
                mi, si = parts(np.ascontiguousarray(x[i : i + 1]), t)
                assert raw(m[i]) == raw(mi) and raw(s[i]) == raw(si), (n, t, i)


# ---- values ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_special_rows_match_scipy(isa, dt):
    """Every row of three entries from {NaN, +-inf, +-0, 1, +-1e30}, as one 512-row batch."""
    import itertools

    vals = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1e30, 1e30]
    with np.errstate(over="ignore"):
        x = np.array(list(itertools.product(vals, repeat=3))).astype(dt)
    xr = x.astype(np.float64)
    for op, ref in (("softmax", scipy.special.softmax), ("log_softmax", scipy.special.log_softmax),
                    ("logsumexp", scipy.special.logsumexp)):
        with np.errstate(all="ignore"):
            want = ref(xr, axis=1).astype(dt).astype(np.float64)
        for acc in ("high", "fast"):
            got = call(op, x, accuracy=acc).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{op} {acc}")
            fin = np.isfinite(want)
            np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
            np.testing.assert_allclose(got[fin], want[fin], rtol=1e-2, atol=1e-6, err_msg=f"{op} {acc}")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dt", DTYPES, ids=DTYPE_IDS)
def test_accuracy_of_batches(isa, dt, op):
    """docs/accuracy.md: float32 / float64 within 4 ULP (log_softmax where |y| >= 1/4), 16-bit within 1 ULP
    of the 16-bit type, against a long double reference; with and without a temperature."""
    rng = np.random.default_rng(17)
    for n in (1, 7, 16, 33, 64, 129, 300):
        for scale in (0.01, 1.0, 30.0):
            x = (rng.standard_normal((ROWS, n)) * scale).astype(dt)
            x[9, 0] = -np.inf
            x[10] = np.round(x[10])  # ties
            for t in ((1.0,) if op == "logsumexp" else (1.0, 0.6)):
                y = call(op, x, t)
                with np.errstate(invalid="ignore"):  # the reference of a row holding -inf
                    ref = np.asarray(reference(x.astype(np.float64), 1, op, t), np.float64).reshape(y.shape)
                ulp = ulp_distance(y, ref)
                if dt.itemsize == 2:
                    bound, mask = 1, np.ones(y.shape, bool)
                else:
                    bound = 4
                    mask = np.ones(y.shape, bool) if op == "softmax" else np.abs(ref) >= 0.25
                assert np.max(np.where(mask, ulp, 0)) <= bound, (n, scale, t)


def test_large_temperature_masked_rows():
    """Masked entries (-inf) with a large temperature give 0, not NaN, up to the largest temperature the
    dtype accepts (float32 and 16-bit: 1/T must not round to 0, T <= 2^149; larger ones are refused:
    test_reliability_regressions.py)."""
    for dt in DTYPES:
        x = np.tile(np.array([0.5, -np.inf, 0.25, -np.inf], dt), (70, 1))
        for t in (1e3, 1e30, 1e38, 1e44) + ((1e46, 1e300) if dt.itemsize == 8 else ()):
            y = call("softmax", x, t)
            with np.errstate(invalid="ignore"):
                want = reference(x.astype(np.float64), 1, "softmax", t)
            assert np.max(ulp_distance(y, want)) <= (1 if dt.itemsize == 2 else 4), (dt, t)
            ly = call("log_softmax", x, t).astype(np.float64)
            assert np.isneginf(ly[:, 1]).all() and np.isfinite(ly[:, 0]).all()


ISA_RUN = r"""
import hashlib, sys, numpy as np, ml_dtypes, normexp
rng = np.random.default_rng(11)
h = hashlib.sha256()
for dt in (np.float32, np.float64, np.float16, ml_dtypes.bfloat16):
    for n in (1, 7, 16, 31, 64, 129):
        x = (rng.standard_normal((67, n)) * 4).astype(dt)
        x[0] = -np.inf; x[10, -1] = np.inf; x[11, 0] = np.nan
        for acc in ("high", "fast"):
            for op in ("softmax", "log_softmax", "logsumexp"):
                kw = {} if op == "logsumexp" else {"temperature": 0.7}
                if len(sys.argv) > 1:
                    with normexp.use_isa(sys.argv[1]):
                        y = getattr(normexp, op)(x, axis=1, accuracy=acc, **kw)
                else:
                    y = getattr(normexp, op)(x, axis=1, accuracy=acc, **kw)
                h.update(np.ascontiguousarray(y).tobytes())
print(h.hexdigest())
"""


def test_normexp_isa_env_matches_use_isa():
    out = {}
    for name in normexp.available_isas():
        env = dict(os.environ, NORMEXP_ISA=name)
        a = subprocess.run([sys.executable, "-c", ISA_RUN], env=env, capture_output=True, text=True, timeout=120)
        env.pop("NORMEXP_ISA")
        b = subprocess.run([sys.executable, "-c", ISA_RUN, name], env=env, capture_output=True, text=True,
                           timeout=120)
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        assert a.stdout == b.stdout, name
        out[name] = a.stdout
    if len(out) > 1:  # negative control: the digest does see the kernel set
        assert len(set(out.values())) > 1


@pytest.mark.parametrize("dt", [np.dtype(np.float32), np.dtype(np.float64)], ids=["float32", "float64"])
def test_near_maximum_relative_accuracy_in_batches(isa, dt):
    """docs/accuracy.md (log1p): log_softmax at the maximum and logsumexp keep full relative accuracy
    (2 ULP) when the other terms are small, in batches of rows as for one row."""
    d = np.linspace(0.01, 80, 401).astype(dt)
    for n in (2, 17, 64):
        x = np.zeros((d.size, n), dt)
        x[:, 1:] = -d[:, None] - np.arange(n - 1, dtype=dt)[None, :]
        ref = np.log1p(np.exp(x[:, 1:].astype(np.longdouble)).sum(axis=1)).astype(np.float64)
        assert np.max(ulp_distance(normexp.log_softmax(x, axis=1)[:, 0], -ref)) <= 2
        assert np.max(ulp_distance(normexp.logsumexp(x, axis=1), ref)) <= 2
