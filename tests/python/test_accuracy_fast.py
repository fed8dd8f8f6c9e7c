"""accuracy="fast": the stated bound against a float64 / longdouble reference on every ISA, the traversals,
special values equal to the high mode's, agreement of every SIMD set with the scalar specification, dask,
and the keyword's checks.

The contract (docs/accuracy.md): t = x - max rounded once in working precision (with a temperature T,
fl(fl(x - max) * fl(1/T)): three roundings), so exp(t) has relative error <= 2 ULP + |t| u per rounding
(u = 2**-24 float32, 2**-53 float64); the sum adds its own few ULP, the normalization one more.
log_softmax = t - log(sum) in working precision: absolute error <= a few ULP of |t| + |log(sum)|.
"""

from __future__ import annotations

import numpy as np
import pytest

import normexp

from conftest import reference

U = {np.float32: 2.0**-24, np.float64: 2.0**-53}
OPS = ("softmax", "log_softmax", "logsumexp")


def call(op, x, **kw):
    return getattr(normexp, op)(x, accuracy="fast", **kw)


def shifted(x, axis, temperature=1.0):
    """|t| = |x - max| / T per entry, in longdouble."""
    xl = np.asarray(x, dtype=np.longdouble)
    return np.abs(xl - np.max(xl, axis=axis, keepdims=True)) / np.longdouble(temperature)


def check_bound(op, x, got, axis=-1, temperature=1.0):
    """got within the fast bound of the reference (relative for softmax; absolute in the log family)."""
    dt = np.dtype(got.dtype).type
    u = U[dt]
    k = 1 if temperature == 1.0 else 3  # roundings of the argument
    ref = reference(x, axis, op, temperature)
    t = shifted(x, axis, temperature)
    got_l = np.asarray(got, dtype=np.longdouble)
    if op == "softmax":
        tiny = np.finfo(dt).tiny
        # exp(t) or the output subnormal or underflowing: absolute, tiny (the scale 1/sum is <= 1; a subnormal
        # output's rounding alone is beyond the relative bound)
        ok = (np.exp(-t) >= tiny) & (ref >= tiny)
        # exp (1 ULP + two roundings of t) + the sum's rounding (~4 ULP) + the scale and its rounding (2 ULP)
        bound = (8 * u + k * t * u) * ref
        err = np.abs(got_l - ref)
        assert np.all(np.where(ok, err <= bound, err <= 2 * tiny)), float(np.max(err / np.maximum(ref, tiny) / u))
    elif op == "log_softmax":
        lse = np.abs(np.log(np.sum(np.exp(-t), axis=axis, keepdims=True)))
        bound = (8 + k * t + 2 * lse) * u * 2 + 4 * u * np.abs(ref)
        err = np.abs(got_l - ref)
        assert np.all(err <= bound), float(np.max(err / bound))
    else:
        tmax = np.max(t, axis=axis)
        # log(sum (1 + d)) - log(sum): the sum's relative error d, plus the final rounding of m + log(sum)
        bound = (8 + k * tmax) * u + 2 * u * np.abs(ref)
        err = np.abs(got_l - ref)
        assert np.all(err <= bound), float(np.max(err / bound))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_tail_length(isa, op, dtype):
    rng = np.random.default_rng(1)
    for n in range(0, 2 * 16 + 2):
        x = (rng.standard_normal((3, n)) * 8).astype(dtype)
        got = call(op, x)
        if n == 0:
            assert got.shape == ((3, 0) if op != "logsumexp" else (3,))
            continue
        check_bound(op, x, got)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])
def test_large_arguments(isa, op, dtype, scale):
    """|t| up to ~1000: the error grows as |t| u, as stated, and no further."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5, 777)) * scale + 1e3).astype(dtype)
    check_bound(op, x, call(op, x))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5, 100.0])
def test_temperatures(isa, op, dtype, temperature):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 300)) * 10).astype(dtype)
    check_bound(op, x, call(op, x, temperature=temperature), temperature=temperature)


def test_fast_differs_from_high_only_within_the_bound():
    """The fast mode really rounds the argument (so the modes differ on large |t|), by no more than allowed."""
    x = np.linspace(-100, 0, 4001, dtype=np.float32) + np.float32(0.123)
    hi, fa = normexp.softmax(x), normexp.softmax(x, accuracy="fast")
    assert not np.array_equal(hi, fa)
    check_bound("softmax", x, fa)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_where(isa, op):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 50)) * 5).astype(np.float32)
    mask = rng.random((6, 50)) < 0.7
    mask[2] = False
    got = call(op, x, where=mask)
    hi = getattr(normexp, op)(x, where=mask)
    fill = 0.0 if op == "softmax" else -np.inf
    assert np.all(got[2] == fill) and np.all(got[~mask] == fill)
    rows = [0, 1, 3, 4, 5]
    for r in rows:
        xr = x[r][mask[r]]
        check_bound(op, xr, got[r][mask[r]])
    np.testing.assert_allclose(got[mask], hi[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axis0_strided_and_columns(isa, op, dtype):
    """Column traversal (axis 0), gather (strided both ways), and a tall column block (online path)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((70, 37)) * 6).astype(dtype)
    check_bound(op, x, call(op, x, axis=0), axis=0)
    xs = (rng.standard_normal((40, 60)) * 6).astype(dtype)[::2, ::3]
    check_bound(op, xs, call(op, xs, axis=0), axis=0)
    check_bound(op, xs, call(op, xs, axis=1), axis=1)
    tall = (rng.standard_normal((20000, 5)) * 6).astype(dtype)
    check_bound(op, tall, call(op, tall, axis=0), axis=0)


@pytest.mark.parametrize("op", OPS)
def test_long_rows(isa, op):
    """Rows past the in-cache size and the 65536-element super-chunks (online merge of the parts)."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((1, 200_001)) * 4).astype(np.float32)
    check_bound(op, x, call(op, x))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_as_high_mode(isa, op, dtype):
    inf, nan = np.inf, np.nan
    rows = [
        [1.0, nan, 2.0],
        [1.0, inf, 2.0],
        [inf, inf, -inf],
        [-inf, -inf, -inf],
        [-inf, 0.0, -inf],
        [3.0, 3.0, 3.0],
        [-1e30, 0.0, 1e30],
    ]
    for r in rows:
        x = np.array(r + r[:1] * 30, dtype=dtype)  # long enough to take the SIMD body too
        hi = getattr(normexp, op)(x)
        fa = call(op, x)
        np.testing.assert_array_equal(np.isnan(fa), np.isnan(hi), err_msg=str(r))
        np.testing.assert_array_equal(np.isinf(fa), np.isinf(hi), err_msg=str(r))
        np.testing.assert_allclose(fa, hi, rtol=8 * U[dtype] * 64, err_msg=str(r))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_sets_agree_with_the_scalar_specification(op, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((9, 1000)) * 20).astype(dtype)
    with normexp.use_isa("scalar"):
        spec = call(op, x)
    for isa in normexp.available_isas():
        with normexp.use_isa(isa):
            got = call(op, x)
        if op == "softmax":
            # the exps differ by their <= 1 ULP each, the sums and scales by a few ULP more
            normal = spec >= np.finfo(dtype).tiny
            assert np.all(np.abs(got - spec)[normal] <= 8 * U[dtype] * spec[normal]), isa
            assert np.all(np.abs(got - spec)[~normal] <= 2 * np.finfo(dtype).tiny), isa
        else:
            # t is the same rounded value on every set; log(sum) differs by the sums' few ULP
            assert np.all(np.abs(got - spec) <= 8 * U[dtype] * (np.abs(spec) + 8)), isa


@pytest.mark.parametrize("op", OPS)
def test_inplace_and_out(op):
    x = np.random.default_rng(8).standard_normal((4, 100)).astype(np.float32)
    want = call(op, x)
    out = np.empty_like(want)
    assert call(op, x, out=out) is out
    np.testing.assert_array_equal(out, want)
    if op != "logsumexp":
        y = x.copy()
        call(op, y, out=y)
        np.testing.assert_array_equal(y, want)


def test_general_path_and_fast_path_agree():
    """A list input (general path) and an ndarray (one-crossing path) give the same bits."""
    x = np.random.default_rng(9).standard_normal((3, 70))
    for op in OPS:
        np.testing.assert_array_equal(call(op, x.tolist()), call(op, x))


@pytest.mark.parametrize("bad", ["HIGH", "exact", "", None, 1, b"fast", ("fast",)])
@pytest.mark.parametrize("op", OPS)
def test_bad_accuracy_is_a_value_error_naming_the_choices(op, bad):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"accuracy must be one of 'high', 'fast'"):
        getattr(normexp, op)(x, accuracy=bad)


@pytest.mark.parametrize("op", OPS)
def test_dask_passes_accuracy_through(op):
    da = pytest.importorskip("dask.array")
    import normexp.dask as nd

    rng = np.random.default_rng(10)
    x = (rng.standard_normal((5, 3000)) * 10).astype(np.float32)
    whole = getattr(nd, op)(da.from_array(x, chunks=(5, 3000)), accuracy="fast").compute()
    np.testing.assert_array_equal(whole, call(op, x))  # one chunk along the axis: bit for bit
    chunked = getattr(nd, op)(da.from_array(x, chunks=(2, 700)), accuracy="fast").compute()
    check_bound(op, x, chunked)
    with pytest.raises(ValueError, match="accuracy"):
        getattr(nd, op)(da.from_array(x), accuracy="exact")


def test_softmax_subnormal_outputs(isa):
    # An output exp(t) / sum that is subnormal while exp(t) is not: held to the absolute bound (its rounding to
    # a subnormal alone exceeds the relative one), on every ISA.
    x = np.zeros(1001, np.float32)
    x[-1] = -86.9
    y = call("softmax", x)
    assert 0 < y[-1] < np.finfo(np.float32).tiny
    check_bound("softmax", x, y)
