"""The Python API contract: dtypes, axes, layouts, out=, where=, errors, special values, SciPy parity."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import normexp
from normexp import special

scipy_special = pytest.importorskip("scipy.special", reason="scipy is in the test extra")


# ---- dtypes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype,expected",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float16),
        (np.int8, np.float16),
        (np.uint8, np.float16),
        (np.bool_, np.float16),
        (np.int16, np.float32),
        (np.int32, np.float64),
        (np.int64, np.float64),
    ],
)
def test_result_dtype_follows_np_exp(dtype, expected):
    x = np.array([[0, 1, 1]], dtype=dtype)
    for f in (normexp.softmax, normexp.log_softmax, normexp.logsumexp):
        assert f(x).dtype == expected
    np.testing.assert_allclose(normexp.softmax(x).astype(np.float64), scipy_special.softmax(x.astype(np.float64), axis=-1), rtol=2e-3)


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array(["a", "b"]), np.array([object(), 1], dtype=object)])
def test_bad_dtypes_raise_typeerror(bad):
    for f in (normexp.softmax, normexp.log_softmax, normexp.logsumexp):
        with pytest.raises(TypeError):
            f(bad)


def test_longdouble_is_rejected_not_silently_rounded():
    with pytest.raises(TypeError, match="float64"):
        normexp.softmax(np.ones(3, dtype=np.longdouble))


def test_python_lists_and_scalars():
    np.testing.assert_allclose(normexp.softmax([1.0, 2.0, 3.0]), scipy_special.softmax([1.0, 2.0, 3.0]), rtol=1e-14)
    assert normexp.softmax(3.0) == 1.0
    assert normexp.log_softmax(3.0) == 0.0
    assert normexp.logsumexp(3.0) == 3.0


# ---- axes and shapes ---------------------------------------------------------------------------------------
def test_axis_errors():
    x = np.zeros((2, 3))
    with pytest.raises(np.exceptions.AxisError):
        normexp.softmax(x, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        normexp.logsumexp(x, axis=-3)
    with pytest.raises(TypeError):
        normexp.softmax(x, axis=1.5)
    with pytest.raises(TypeError):
        normexp.softmax(x, axis=(0, 1))  # tuple axes live in normexp.special


def test_empty_arrays():
    assert normexp.softmax(np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert normexp.softmax(np.zeros((3, 0), np.float32)).shape == (3, 0)
    lse = normexp.logsumexp(np.zeros((3, 0)), axis=-1)
    assert lse.shape == (3,) and np.all(lse == -np.inf)
    assert normexp.logsumexp(np.zeros((0, 4)), axis=-1).shape == (0,)


def test_logsumexp_keepdims_and_scalar_result():
    x = np.arange(12.0).reshape(3, 4)
    assert normexp.logsumexp(x, axis=0, keepdims=True).shape == (1, 4)
    r = normexp.logsumexp(np.arange(4.0))
    assert np.ndim(r) == 0
    np.testing.assert_allclose(r, scipy_special.logsumexp(np.arange(4.0)), rtol=1e-15)


# ---- out= ---------------------------------------------------------------------------------------------------
def test_out_is_used_and_returned():
    x = np.random.default_rng(0).standard_normal((4, 50)).astype(np.float32)
    out = np.empty_like(x)
    r = normexp.softmax(x, out=out)
    assert r is out
    np.testing.assert_allclose(out, scipy_special.softmax(x, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1])
def test_in_place(op, axis):
    x = np.random.default_rng(1).standard_normal((40, 50)).astype(np.float32)
    expected = getattr(normexp, op)(x.copy(), axis=axis)
    r = getattr(normexp, op)(x, axis=axis, out=x)
    assert r is x and np.shares_memory(r, x)
    np.testing.assert_array_equal(x, expected)


def test_overlapping_out_with_another_layout_is_still_right():
    buf = np.random.default_rng(2).standard_normal(101).astype(np.float64)
    x = buf[:100]
    expected = normexp.softmax(x.copy())
    normexp.softmax(x, out=buf[1:])  # shifted overlap: must not read already-written values
    np.testing.assert_allclose(buf[1:], expected, rtol=1e-15)


def test_out_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        normexp.softmax(x, out=np.empty((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        normexp.softmax(x, out=np.empty((2, 3), np.float64))
    ro = np.empty((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        normexp.softmax(x, out=ro)
    with pytest.raises(TypeError):
        normexp.softmax(x, out=[[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="shape"):
        normexp.logsumexp(x, out=np.empty((3,), np.float32))


def test_out_of_half_type():
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    out = np.empty_like(x)
    assert normexp.softmax(x, out=out) is out
    np.testing.assert_allclose(out.astype(np.float32), scipy_special.softmax(x.astype(np.float32), axis=-1), rtol=1e-3)


def test_logsumexp_out():
    x = np.random.default_rng(3).standard_normal((5, 7))
    out = np.empty(7)
    assert normexp.logsumexp(x, axis=0, out=out) is out
    np.testing.assert_allclose(out, scipy_special.logsumexp(x, axis=0), rtol=1e-15)
    out2 = np.empty((1, 7))[:, ::1]
    normexp.logsumexp(x, axis=0, keepdims=True, out=out2)
    np.testing.assert_allclose(out2[0], out, rtol=0)


# ---- where= and temperature ----------------------------------------------------------------------------
def test_where_masks_entries():
    x = np.array([[1.0, 2.0, np.nan, 3.0], [5.0, 5.0, 5.0, 5.0]])
    where = np.array([[True, True, False, True], [False, False, False, False]])
    p = normexp.softmax(x, where=where)
    np.testing.assert_allclose(p[0], np.r_[scipy_special.softmax([1.0, 2.0]), 0, 0][[0, 1, 2, 2]] * 0 + p[0])
    ref = scipy_special.softmax(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(p[0, [0, 1, 3]], ref, rtol=1e-15)
    assert p[0, 2] == 0
    assert np.all(p[1] == 0)  # a fully masked row is all zeros
    lp = normexp.log_softmax(x, where=where)
    assert lp[0, 2] == -np.inf and np.all(lp[1] == -np.inf)
    np.testing.assert_allclose(lp[0, [0, 1, 3]], np.log(ref), rtol=1e-14)


def test_where_broadcasts_and_is_checked():
    x = np.zeros((3, 4))
    p = normexp.softmax(x, where=np.array([True, False, True, True]))
    np.testing.assert_allclose(p, np.tile([1 / 3, 0, 1 / 3, 1 / 3], (3, 1)))
    with pytest.raises(TypeError, match="bool"):
        normexp.softmax(x, where=np.ones(4))
    with pytest.raises(ValueError, match="broadcast"):
        normexp.softmax(x, where=np.ones(3, bool))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        normexp.softmax(np.zeros(3), temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        normexp.log_softmax(np.zeros(3), temperature=bad)


def test_temperature_type():
    with pytest.raises(TypeError):
        normexp.softmax(np.zeros(3), temperature="hot")
    with pytest.raises(TypeError):
        normexp.softmax(np.zeros(3), temperature=True)


def test_temperature_matches_scaling():
    x = np.random.default_rng(4).standard_normal(100)
    np.testing.assert_allclose(normexp.softmax(x, temperature=0.5), scipy_special.softmax(x / 0.5), rtol=1e-13)


# ---- special values (SciPy's conventions) -----------------------------------------------------------------
SPECIAL_ROWS = [
    [0.0, -np.inf],
    [-np.inf, -np.inf],
    [np.inf, 1.0],
    [np.inf, np.inf],
    [np.nan, 1.0],
    [np.inf, -np.inf],
    [np.inf, np.nan],
    [1.0, 2.0, np.nan, 3.0],
    [5.0],
    [-np.inf],
]


@pytest.mark.parametrize("row", SPECIAL_ROWS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_match_scipy(isa, row, dtype):
    x = np.array(row, dtype=dtype)
    with np.errstate(all="ignore"):
        for name in ("softmax", "log_softmax", "logsumexp"):
            got = getattr(normexp, name)(x)
            ref = getattr(scipy_special, name)(x.astype(np.float64))
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=name)
            np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-6, atol=0, err_msg=name)


def test_special_values_along_columns(isa):
    # The column traversal handles non-finite maxima per column.
    rows = np.array([[0.0, -np.inf, np.inf, np.nan, 1.0], [1.0, -np.inf, 1.0, 2.0, 1.0], [2.0, -np.inf, -np.inf, 3.0, 1.0]])
    with np.errstate(all="ignore"):
        for name in ("softmax", "log_softmax", "logsumexp"):
            got = getattr(normexp, name)(rows, axis=0)
            ref = getattr(scipy_special, name)(rows, axis=0)
            np.testing.assert_allclose(got, ref, rtol=1e-14, err_msg=name)


# ---- normexp.special: SciPy's signatures and results ---------------------------------------------------------
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_special_elementwise_matches_scipy(name, axis):
    x = np.random.default_rng(5).standard_normal((3, 4, 5)) * 3
    np.testing.assert_allclose(getattr(special, name)(x, axis=axis), getattr(scipy_special, name)(x, axis=axis), rtol=1e-13)


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_special_logsumexp_matches_scipy(axis, keepdims, weighted):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 4, 5)) * 3
    b = rng.standard_normal((3, 4, 5)) if weighted else None
    for return_sign in (False, True):
        with np.errstate(all="ignore"):
            got = special.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
            ref = scipy_special.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
        if return_sign:
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
            np.testing.assert_array_equal(got[1], ref[1])
            assert np.shape(got[0]) == np.shape(ref[0])
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-12)
            assert np.shape(got) == np.shape(ref)


@pytest.mark.parametrize(
    "a,b",
    [
        ([1.0, 2.0], [1, -1]),
        ([1.0, 2.0], [1, -2]),
        ([1.0, 2.0], [0, 0]),
        ([1.0, 1.0], [1, -1]),
        ([np.inf, -np.inf], [0, 1]),
        ([np.nan, 1.0], [0, 1]),
        ([np.inf, 1.0], [1, 1]),
        ([0.0, -100.0], [1, 1]),
    ],
)
def test_special_logsumexp_weighted_edge_cases(a, b):
    with np.errstate(all="ignore"):
        for rs in (False, True):
            got = special.logsumexp(np.array(a), b=np.array(b), return_sign=rs)
            ref = scipy_special.logsumexp(np.array(a), b=np.array(b), return_sign=rs)
            if a == [np.inf, -np.inf] and b == [0, 1]:
                # A zero weight takes its entry out of the sum (SciPy's rule: [inf, 1] with [0, 1] gives
                # 1), leaving exp(-inf) = 0. SciPy answers NaN here: its shift by the maximum of what is
                # left, -inf, forms -inf - (-inf).
                ref = (-np.inf, 0.0) if rs else -np.inf
            np.testing.assert_allclose(got, ref, rtol=1e-14)


def test_special_signatures_match_scipy():
    import inspect

    for name in ("softmax", "log_softmax", "logsumexp"):
        ours = inspect.signature(getattr(special, name))
        theirs = inspect.signature(getattr(scipy_special, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        for p in ours.parameters:
            assert ours.parameters[p].default == theirs.parameters[p].default, (name, p)


def test_special_dtypes_match_scipy():
    for dt in (np.float32, np.float64, np.int32, np.int8):
        x = np.arange(6, dtype=dt).reshape(2, 3)
        assert special.softmax(x).dtype == scipy_special.softmax(x).dtype, dt
        assert special.logsumexp(x, axis=1).dtype == scipy_special.logsumexp(x, axis=1).dtype, dt


# ---- dispatch ----------------------------------------------------------------------------------------------
def test_isa_introspection():
    assert normexp.isa() in normexp.available_isas()
    assert normexp.available_isas()[0] == "scalar"
    default = normexp.isa()
    for name in normexp.available_isas():
        with normexp.use_isa(name):
            assert normexp.isa() == name  # what the calls in the block run
            assert normexp.softmax(np.zeros(3))[0] == pytest.approx(1 / 3)
        assert normexp.isa() == default
    with pytest.raises(ValueError, match="not available"):
        with normexp.use_isa("sve9000"):
            pass


def _run_with_isa(value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NORMEXP_ISA=value)
    code = "import normexp, numpy as np; print(normexp.isa()); normexp.softmax(np.zeros(3))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_forced_isa_env():
    r = _run_with_isa("scalar")
    assert r.returncode == 0 and r.stdout.strip() == "scalar"


# "avx1024": unknown everywhere; then an ISA that is built in elsewhere but cannot run here.
@pytest.mark.parametrize("value", ["bogus", "avx1024", "neon" if "neon" not in normexp.available_isas() else "avx2-nope"])
def test_unknown_or_unsupported_isa_is_an_error(value):
    r = _run_with_isa(value)
    assert r.returncode != 0
    assert "NORMEXP_ISA" in r.stderr
