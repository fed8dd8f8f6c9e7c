"""Property tests (hypothesis) for every public reduction: normexp.softmax / log_softmax / logsumexp and
normexp.special.softmax / log_softmax / logsumexp.

Inputs: arbitrary shapes (0-length axes included), every axis, strided views (steps, negative steps,
transposes), every supported dtype (float16, bfloat16, float32, float64, ints, bool), magnitudes up to
1e30, ties, special values, ``where=`` masks, ``out=`` (fresh, strided, in place, overlapping).
Checked against a long double reference (80-bit on x86-64) with SciPy's conventions, on every ISA, plus
invariants that need no reference.

Determinism: the "ci" profile (selected by CI=true, or HYPOTHESIS_PROFILE=ci) is derandomized with a
fixed example budget and no example database, so CI runs the same examples every time.
"""

from __future__ import annotations

import os
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import normexp
from normexp import special

settings.register_profile(
    "ci", derandomize=True, max_examples=100, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
PROPS = settings(settings.get_profile(_PROFILE))

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOATS = [np.dtype(np.float16), BF16, np.dtype(np.float32), np.dtype(np.float64)]
INTS = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.bool_)]
ISAS = normexp.available_isas()
LD = np.longdouble

# ---- error bounds (in ULPs of the result dtype), with their reasons --------------------------------------
# float32 (kernels compute float32 in float32 lanes with a 1 ULP exp and compensated arguments):
#   softmax: exp 1 ULP + product with the rounded 1/sum 0.5 ULP + the sum's relative error (blocked,
#   flushed to double) ~ 0.5 ULP, + rounding of 1/sum 0.5 ULP -> 3 ULP; 4 leaves one for the reference's
#   rounding to float32.
#   log_softmax: t - log(sum) evaluated in double and rounded once; t <= 0 <= log(sum) so nothing
#   cancels -> 1 ULP; 2 with the reference's rounding.
#   logsumexp: m + log(sum) in double, rounded once -> 1 ULP; 2 with the reference's rounding.
# float64: the same analysis with a 1 ULP float64 exp and TwoSum/TwoProduct-corrected arguments.
# float16 / bfloat16: computed in float32 (error < 2^-19 relative), rounded to 16 bits: <= 1 ULP, plus
#   1 for the reference, which is rounded to 16 bits through float64.
ULP_BOUND = {
    ("softmax", 4): 4, ("log_softmax", 4): 2, ("logsumexp", 4): 2,
    ("softmax", 8): 4, ("log_softmax", 8): 4, ("logsumexp", 8): 4,
    ("softmax", 2): 2, ("log_softmax", 2): 2, ("logsumexp", 2): 2,
}
# logsumexp = m + log(sum) cancels when m < 0 < log(sum): the result is then only accurate to a few ULPs
# of max(|m|, log(sum)), the terms' size (float32 avoids this by working in double; float64 cannot).
LSE_ABS_ULPS = 4


def eps_of(dtype: np.dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps) if dtype == BF16 else float(np.finfo(dtype).eps)


def ordered_bits(a: np.ndarray) -> np.ndarray:
    itype = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    i = np.ascontiguousarray(a).view(itype).astype(object if itype == np.int64 else np.int64)
    lo = int(np.iinfo(itype).min)
    return np.where(i < 0, lo - i, i)


def ulp_distance(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in ULPs of got's dtype, ref (long double) rounded to that dtype; NaN==NaN and equal
    infinities are 0 apart, NaN vs a number is infinitely far."""
    got = np.asarray(got)
    r = np.asarray(ref, dtype=LD)
    with np.errstate(over="ignore"):  # a reference beyond a 16-bit range rounds to +-inf, as the result does
        r = r.astype(np.float64).astype(got.dtype) if got.dtype.itemsize == 2 else r.astype(got.dtype)
    gn, rn = np.isnan(got.astype(np.float64)), np.isnan(r.astype(np.float64))
    d = np.abs(ordered_bits(got) - ordered_bits(r)).astype(np.float64)
    d = np.where(gn | rn, np.inf, d)
    return np.where((gn & rn) | (got.astype(np.float64) == r.astype(np.float64)), 0.0, d)


# ---- the reference ------------------------------------------------------------------------------------
def ref_rows(op: str, z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """op along the last axis of z (long double), SciPy's special values. Returns long double."""
    z = z.astype(LD)
    n = z.shape[-1]
    if n == 0:
        return np.full(z.shape[:-1], -np.inf, LD) if op == "logsumexp" else z.copy()
    with np.errstate(all="ignore"):
        nan = np.isnan(z).any(axis=-1, keepdims=True)
        m = np.max(np.where(np.isnan(z), -np.inf, z), axis=-1, keepdims=True)
        pinf, allneg = m == np.inf, m == -np.inf
        ok = ~(nan | pinf | allneg)
        ms = np.where(ok, m, 0)
        # t = (x - m) / T: the difference first (correctly rounded, so relative to t), then the scale.
        t = (z - ms) / LD(temperature)
        e = np.exp(t)
        # log(sum) = log1p(sum of all terms but one maximal entry): full accuracy near the maximum.
        first = np.argmax(np.where(ok, z == ms, True), axis=-1)[..., None]
        onehot = np.arange(n) == first
        rest = np.sum(np.where(onehot, 0, e), axis=-1, keepdims=True)
        if op == "softmax":
            r = e / (1 + rest)
            r = np.where(ok, r, np.nan)
        elif op == "log_softmax":
            r = t - np.log1p(rest)
            special_v = np.where(~nan & pinf & (z != np.inf), -np.inf, np.nan)
            r = np.where(ok, r, special_v)
        else:
            r = ms / LD(temperature) + np.log1p(rest)
            r = np.where(ok, r, np.where(nan, np.nan, m))[..., 0]
    return r


def reference(op: str, x: np.ndarray, axis: int, temperature: float = 1.0, where: Any = None) -> np.ndarray:
    """op of x along axis; masked entries are scores of -inf, rows with no unmasked entry are 0 (softmax)
    or -inf (log_softmax)."""
    xa = np.asarray(x)
    if xa.dtype not in FLOATS:
        # normexp computes on the promoted input, as np.exp does: int64 above 2^53 rounds to float64 first
        # (the reference once took the exact integers and found "errors" of 1e17 ULP that were promotion).
        xa = xa.astype(compute_dtype(xa.dtype))
    z = xa.astype(np.float64).astype(LD) if xa.dtype == BF16 else xa.astype(LD)
    if where is not None:
        w = np.broadcast_to(where, z.shape)
        z = np.where(w, z, LD(-np.inf))
    r = np.moveaxis(ref_rows(op, np.moveaxis(z, axis, -1), temperature), -1, axis) if op != "logsumexp" else ref_rows(
        op, np.moveaxis(z, axis, -1), temperature
    )
    if where is not None and op != "logsumexp":
        empty = ~np.any(np.broadcast_to(where, z.shape), axis=axis, keepdims=True)
        r = np.where(empty, 0.0 if op == "softmax" else -np.inf, r)
    return r


def assert_close(op: str, got: np.ndarray, ref: np.ndarray, temperature: float = 1.0, x: Any = None, axis: int = -1):
    got = np.asarray(got)
    bound = ULP_BOUND[(op, got.dtype.itemsize)]
    d = ulp_distance(got, ref)
    bad = d > bound
    if op == "logsumexp" and bad.any() and x is not None:
        # Absolute floor where m + log(sum) cancels (see LSE_ABS_ULPS).
        xl = np.moveaxis(np.asarray(x).astype(np.float64), axis, -1)
        with np.errstate(all="ignore"):
            m = np.max(np.abs(np.where(np.isfinite(xl), xl, 0)), axis=-1, initial=0.0)
            err = np.abs(got.astype(np.float64) - np.asarray(ref, np.float64))
            size = np.maximum(m / temperature, np.abs(np.asarray(ref, np.float64)))
            bad &= ~(err <= LSE_ABS_ULPS * eps_of(got.dtype) * size)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{op}: {int(bad.sum())} of {bad.size} entries off by more than {bound} ULP; first at {i}: "
            f"got {got[i]!r}, reference {ref[i]!r} ({d[i]} ULP)"
        )


# ---- strategies ---------------------------------------------------------------------------------------
def elements_for(dtype: np.dtype, special_values: bool) -> st.SearchStrategy:
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.one_of(st.integers(-3, 3).filter(lambda v: info.min <= v <= info.max), st.integers(int(info.min), int(info.max)))
    width = {np.dtype(np.float16): 16, np.dtype(np.float32): 32, BF16: 32, np.dtype(np.float64): 64}[dtype]
    lim = 6e4 if dtype == np.float16 else float(np.float32(1e30))  # float32-representable bound
    parts = [
        st.floats(-lim, lim, width=width),  # magnitudes up to 1e30 (float16: its range)
        st.floats(-30, 30, width=width),  # the range where several terms of a row matter
        st.integers(-3, 3).map(float),  # ties at the maximum
    ]
    if special_values:
        parts.append(st.sampled_from([np.nan, np.inf, -np.inf]))
    return st.one_of(*parts)


@st.composite
def arrays(draw, dtypes=FLOATS + INTS, special_values=False, max_dims=4):
    """A (possibly) strided view: base array, per-axis steps (negative too), then an axis permutation."""
    dtype = draw(st.sampled_from(dtypes))
    ndim = draw(st.integers(1, max_dims))
    shape = list(draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=5)))
    if draw(st.booleans()):  # one long axis: vector bodies, tails of every length
        shape[draw(st.integers(0, ndim - 1))] = draw(st.integers(6, 70))
    steps = [draw(st.sampled_from([1, 1, 1, 2, -1, -2, 3])) for _ in range(ndim)]
    base_shape = tuple(max(1, n * abs(s)) if n else 0 for n, s in zip(shape, steps))
    base_dtype = np.float32 if dtype == BF16 else dtype
    base = draw(hnp.arrays(base_dtype, base_shape, elements=elements_for(dtype, special_values)))
    if dtype == BF16:
        base = base.astype(BF16)
    view = base[tuple(slice(None, None, s) for s in steps)]
    perm = draw(st.permutations(range(ndim)))
    return view.transpose(perm)


def shapes_broadcasting_to(shape: tuple) -> st.SearchStrategy:
    """Shapes that broadcast to exactly ``shape`` (dropped leading axes, axes of length 1)."""
    return hnp.broadcastable_shapes(shape, min_dims=0, max_dims=len(shape), min_side=0).filter(
        lambda s: np.broadcast_shapes(s, shape) == tuple(shape)
    )


def masks_for(shape: tuple) -> st.SearchStrategy:
    return st.one_of(st.none(), shapes_broadcasting_to(shape).flatmap(lambda s: hnp.arrays(np.bool_, s)))


temperatures = st.one_of(st.just(1.0), st.sampled_from([0.5, 2.0, 0.37, 3.5, 1e-3, 50.0]))


def compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.exp(np.zeros(1, dtype)).dtype if dtype.kind in "biu" else (np.dtype(np.float32) if dtype == BF16 else dtype)


# ---- properties: accuracy against the reference, on every ISA --------------------------------------
@PROPS
@given(data=st.data(), op=st.sampled_from(["softmax", "log_softmax"]))
def test_elementwise_matches_reference(data, op):
    x = data.draw(arrays())
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    temperature = data.draw(temperatures)
    where = data.draw(masks_for(x.shape))
    f = getattr(normexp, op)
    ref = reference(op, x, axis, temperature, where)
    for isa in ISAS:
        with normexp.use_isa(isa):
            y = f(x, axis, temperature=temperature, where=where)
        note(f"isa={isa}")
        assert y.shape == x.shape
        assert y.dtype == (x.dtype if x.dtype in FLOATS else compute_dtype(x.dtype))
        assert_close(op, y, ref)


@PROPS
@given(data=st.data())
def test_logsumexp_matches_reference(data):
    x = data.draw(arrays())
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    keepdims = data.draw(st.booleans())
    ref = reference("logsumexp", x, axis)
    for isa in ISAS:
        with normexp.use_isa(isa):
            r, sign = normexp.logsumexp(x, axis, keepdims=keepdims, return_sign=True)
        r = np.asarray(r)
        exp_shape = np.sum(np.zeros(x.shape), axis=axis, keepdims=keepdims).shape
        assert r.shape == exp_shape and np.shape(sign) == exp_shape
        r0 = r.reshape(ref.shape)
        assert_close("logsumexp", r0, ref, x=x, axis=axis)
        s0 = np.asarray(sign).reshape(ref.shape)
        assert np.all((s0 == 1) | (s0 == 0) | np.isnan(s0))
        assert np.array_equal(np.isnan(s0), np.isnan(ref.astype(np.float64)))


@PROPS
@given(data=st.data())
def test_special_values_follow_scipy_conventions(data):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)], special_values=True))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    for op in ("softmax", "log_softmax", "logsumexp"):
        ref = reference(op, x, axis)
        for isa in ISAS:
            with normexp.use_isa(isa):
                y = getattr(normexp, op)(x, axis)
            assert_close(op, np.asarray(y), ref, x=x, axis=axis)


@PROPS
@given(data=st.data())
def test_weighted_logsumexp(data):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64)], max_dims=3))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    bshape = data.draw(shapes_broadcasting_to(x.shape))
    b = data.draw(hnp.arrays(np.float64, bshape, elements=st.one_of(st.floats(-4, 4), st.just(0.0))))
    r, sign = normexp.logsumexp(x, axis, b=b, return_sign=True)
    # Reference: S = sum b exp(x), in long double, scaled by the row max of |b| exp(x) so nothing
    # overflows. The computed sign * exp(r - m) must match S / exp(m) to within a few ULPs of
    # sum |b| exp(x - m) (mixed signs cancel: relative accuracy of S itself is not achievable).
    xl = np.moveaxis(x.astype(LD), axis, -1)
    bl = np.moveaxis(np.broadcast_to(b, x.shape).astype(LD), axis, -1)
    xm = np.where(bl == 0, LD(-np.inf), xl)
    assume(np.all(np.isfinite(xl)))
    with np.errstate(all="ignore"):
        m = np.max(xm, axis=-1, keepdims=True) if xl.shape[-1] else np.full(xl.shape[:-1] + (1,), -np.inf, LD)
        ms = np.where(np.isfinite(m), m, 0)
        S = np.sum(bl * np.exp(xm - ms), axis=-1)
        A = np.sum(np.abs(bl) * np.exp(xm - ms), axis=-1)
        got = np.asarray(sign, LD) * np.exp(np.asarray(r, LD) - ms[..., 0])
    got = np.where(np.asarray(sign) == 0, 0, got)
    # Weights are used in the compute dtype; below its smallest subnormal they are lost: a few of those
    # per entry (absolute) on top of the relative bound.
    n = max(xl.shape[-1], 1)
    # Where mixed signs cancel, only an absolute bound of 8 ULP of sum |b| exp(x - m) holds, plus a few
    # subnormal weights lost per entry. Elsewhere the result r is good to 8 ULPs of its own size:
    # compared in the exponent (log|got| vs log|S|), since a few ULPs of a huge r are many e-folds.
    tol = 8 * eps_of(x.dtype) * A
    with np.errstate(over="ignore", divide="ignore"):  # exp of a huge maximum: tol is then inf or 0, as meant
        tol = tol + 4 * n * float(np.finfo(x.dtype).smallest_subnormal) / np.where(np.isfinite(ms[..., 0]), np.exp(ms[..., 0]), 1)
    log_tol = 8 * eps_of(x.dtype) * (1 + np.abs(np.where(np.isfinite(r), np.asarray(r, LD), 0)))
    with np.errstate(all="ignore"):
        log_err = np.abs(np.log(np.abs(got)) - np.log(np.abs(S)))
    assert np.all((np.abs(got - S) <= tol) | (log_err <= log_tol)), (got, S, tol, log_tol)
    assert np.all(np.sign(S[np.abs(S) > tol]) == np.asarray(sign)[np.abs(S) > tol])


# ---- invariants that need no reference ------------------------------------------------------------------
@PROPS
@given(data=st.data())
def test_softmax_sums_to_one(data):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64)]))
    assume(x.size and np.all(np.isfinite(x)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    for isa in ISAS:
        with normexp.use_isa(isa):
            p = normexp.softmax(x, axis, temperature=data.draw(temperatures))
        assert np.all(p >= 0) and np.all(p <= 1)
        s = np.sum(p.astype(LD), axis=axis)
        # Each entry is within 4 ULP (<= 4 * eps relative) of the exact value, and the exact values sum
        # to 1: |sum - 1| <= 4 eps, plus 2^-149 (float32) per entry for subnormal results.
        n = x.shape[axis]
        tol = 4 * eps_of(x.dtype) + n * float(np.finfo(x.dtype).smallest_subnormal)
        assert np.all(np.abs(s - 1) <= tol), (isa, np.max(np.abs(s - 1)), tol)


@PROPS
@given(data=st.data(), op=st.sampled_from(["softmax", "log_softmax"]))
def test_invariant_to_a_per_row_constant(data, op):
    # Dyadic scores (k/16, |k| < 2^19) plus a per-row constant c/16 (|c| < 2^19): every sum is exact in
    # float32, so x - max is the same bits with and without the constant, and log_softmax, which depends on x
    # only through x - max, must be bit-identical. softmax takes a row's exps against 0 where its maximum is in
    # [0, 64] at unit temperature (kernel_table.hpp: softmax_shift), so a constant that moves the maximum in or
    # out of that range may move bits: there both results are within the contract's 4 ULP of the reference.
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=40))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(-(2**19), 2**19))).astype(dtype) / 16
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    cshape = list(x.shape)
    cshape[axis] = 1
    c = data.draw(hnp.arrays(np.int32, tuple(cshape), elements=st.integers(-(2**19), 2**19))).astype(dtype) / 16
    t = data.draw(temperatures)
    f = getattr(normexp, op)
    for isa in ISAS:
        with normexp.use_isa(isa):
            got, shifted = f(x, axis, temperature=t), f(x + c, axis, temperature=t)
            if op == "log_softmax":
                assert np.array_equal(shifted, got)
            else:
                ref = reference(op, x, axis, t)
                bound = ULP_BOUND[(op, np.dtype(dtype).itemsize)]
                assert ulp_distance(got, ref).max() <= bound and ulp_distance(shifted, ref).max() <= bound
            # logsumexp shifts by the constant: (m + c) + log(sum) against (m + log(sum)) + c, each rounded
            # once or twice; m + log(sum) may cancel (float64), so the bound is a few ULPs of the terms'
            # size |m| + |c| + log(sum).
            a = normexp.logsumexp(x + c, axis).astype(np.float64)
            lse = normexp.logsumexp(x, axis).astype(np.float64)
            cs = np.squeeze(c, axis).astype(np.float64)
            size = np.max(np.abs(x), axis=axis).astype(np.float64) + np.abs(cs) + np.abs(lse) + np.abs(a)
            assert np.all(np.abs(a - (lse + cs)) <= 4 * eps_of(np.dtype(dtype)) * size)


@PROPS
@given(data=st.data())
def test_log_softmax_is_log_of_softmax(data):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64)]))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    t = data.draw(temperatures)
    for isa in ISAS:
        with normexp.use_isa(isa):
            p = normexp.softmax(x, axis, temperature=t)
            lp = normexp.log_softmax(x, axis, temperature=t)
        normal = np.isfinite(p) & (p >= np.finfo(x.dtype).tiny)
        # p has <= 4 ULP relative error -> log(p) is off by <= 4 eps absolute; log_softmax by 2 ULP of
        # itself; log(p) in float64 adds 2^-53 relative.
        eps = eps_of(x.dtype)
        with np.errstate(divide="ignore"):  # p == 0 (underflow): -inf, outside `normal`
            lpp = np.log(p.astype(np.float64))
        tol = 4 * eps + 2 * eps * np.abs(lp.astype(np.float64)) + 1e-15 * np.abs(lpp)
        assert np.all(np.abs(lp - lpp)[normal] <= tol[normal])
        # Where softmax is NaN, so is log_softmax (but not conversely: a +inf row's other entries are
        # -inf in log_softmax), and where softmax is exactly 0 log_softmax is below log(tiny).
        assert np.all(np.isnan(lp[np.isnan(p) & ~np.isinf(x)]))
        zero = p == 0
        assert np.all(lp[zero] <= np.log(np.finfo(x.dtype).smallest_subnormal) + 1)


@PROPS
@given(data=st.data())
def test_logsumexp_bounds(data):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64)]))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assume(x.shape[axis] > 0 and np.all(np.isfinite(x)))
    m = np.max(x, axis=axis)
    n = x.shape[axis]
    for isa in ISAS:
        with normexp.use_isa(isa):
            r = np.asarray(normexp.logsumexp(x, axis))
        # m + log(sum) with log(sum) >= 0 rounds to >= m (m is representable): exact, no tolerance.
        assert np.all(r >= m)
        # and <= m + log(n): 1 ULP for the final rounding.
        hi = (m.astype(np.float64) + np.log(n)).astype(x.dtype)
        assert np.all(r <= hi + np.spacing(np.abs(hi)))


@PROPS
@given(data=st.data())
def test_isas_agree(data):
    x = data.draw(arrays(special_values=data.draw(st.booleans())))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    for op in ("softmax", "log_softmax", "logsumexp"):
        res = []
        for isa in ISAS:
            with normexp.use_isa(isa):
                res.append(np.asarray(getattr(normexp, op)(x, axis)))
        for r in res[1:]:
            # Both are within the bound of the exact answer: at most twice the bound apart.
            d = ulp_distance(r, res[0].astype(LD))
            lim = 2 * ULP_BOUND[(op, r.dtype.itemsize)]
            if op == "logsumexp":
                with np.errstate(invalid="ignore"):  # inf - inf where both are inf: d decides there
                    ok = (d <= lim) | (np.abs(r.astype(np.float64) - res[0].astype(np.float64))
                                       <= 2 * LSE_ABS_ULPS * eps_of(r.dtype) * np.max(np.abs(np.where(np.isfinite(x), x, 0)).astype(np.float64), initial=1.0))
            else:
                ok = d <= lim
            assert np.all(ok), (op, d.max())


# ---- out= -----------------------------------------------------------------------------------------------
@PROPS
@given(data=st.data(), op=st.sampled_from(["softmax", "log_softmax"]))
def test_out_fresh_strided_inplace_overlapping(data, op):
    x = data.draw(arrays(dtypes=FLOATS, special_values=data.draw(st.booleans())))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    t = data.draw(temperatures)
    f = getattr(normexp, op)
    expected = f(x.copy(), axis, temperature=t)
    kind = data.draw(st.sampled_from(["fresh", "strided", "inplace", "reversed-alias", "shifted-alias"]))
    if kind == "fresh":
        out = np.empty_like(x)
        xin = x
    elif kind == "strided":
        big = np.full(tuple(2 * n + 1 for n in x.shape), 7, x.dtype)
        out = big[tuple(slice(1, None, 2) for _ in x.shape)][tuple(slice(None, None, -1) for _ in x.shape)]
        xin = x
    elif kind == "inplace":
        xin = x.copy()
        out = xin
    elif kind == "reversed-alias":  # same memory as the input, another layout
        xin = x.copy()
        out = xin[::-1]
        expected = f(xin.copy(), axis, temperature=t)
    else:  # shifted-alias: the input and out overlap with an offset of one element
        buf = np.zeros(x.size + 1, x.dtype)
        xin = buf[1:].reshape(x.shape)
        xin[...] = x
        out = buf[:-1].reshape(x.shape)
        expected = f(xin.copy(), axis, temperature=t)
    if kind in ("fresh", "strided"):
        expected = f(x, axis, temperature=t)
    r = f(xin, axis, temperature=t, out=out)
    assert r is out
    if kind == "inplace":  # the same traversal on the same values: bit-identical
        assert np.array_equal(out.astype(np.float64), expected.astype(np.float64), equal_nan=True)
    else:  # out's layout may select another traversal (rows, columns, gather): both within the bound
        assert np.all(ulp_distance(np.asarray(out), expected.astype(LD)) <= 2 * ULP_BOUND[(op, out.dtype.itemsize)])
    if kind == "strided":
        assert np.all(big[tuple(slice(0, None, 2) for _ in x.shape)] == 7)  # nothing written outside out


@PROPS
@given(data=st.data())
def test_logsumexp_out(data):
    x = data.draw(arrays(dtypes=FLOATS))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    keepdims = data.draw(st.booleans())
    expected = np.asarray(normexp.logsumexp(x, axis, keepdims=keepdims))
    res_dtype = x.dtype
    if data.draw(st.booleans()) or expected.ndim == 0:
        out = np.empty(expected.shape, res_dtype)
    else:
        big = np.full(tuple(2 * n for n in expected.shape), 7, res_dtype)
        out = big[tuple(slice(None, None, -2) for _ in expected.shape)]
    r = normexp.logsumexp(x, axis, keepdims=keepdims, out=out)
    assert r is out
    assert np.array_equal(out.astype(np.float64), expected.astype(np.float64), equal_nan=True)


# ---- normexp.special: a drop-in for scipy.special --------------------------------------------------------
@st.composite
def axis_args(draw, ndim):
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


def _flatten_axes(x: np.ndarray, axis) -> tuple[np.ndarray, list]:
    axes = list(range(x.ndim)) if axis is None else [a % x.ndim for a in (axis if isinstance(axis, tuple) else (axis,))]
    rest = [d for d in range(x.ndim) if d not in axes]
    perm = rest + sorted(axes)
    moved = np.transpose(x, perm)
    merged = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return moved.reshape(moved.shape[: len(rest)] + (merged,)), perm


@PROPS
@given(data=st.data(), name=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_special_is_a_scipy_drop_in(data, name):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)],
                         special_values=data.draw(st.booleans()), max_dims=3))
    axis = data.draw(axis_args(x.ndim))
    assume(x.size > 0 or name == "logsumexp")  # SciPy raises on empty softmax input
    kwargs = {}
    if name == "logsumexp":
        kwargs = {"keepdims": data.draw(st.booleans()), "return_sign": data.draw(st.booleans())}
    with np.errstate(all="ignore"):
        try:
            want = getattr(scipy.special, name)(x, axis=axis, **kwargs)
        except Exception as e:  # SciPy rejects it: so must we, unless the input is empty (documented:
            note(f"scipy raised {e!r}")  # normexp gives the empty result / -inf where SciPy raises)
            if x.size:
                with pytest.raises(Exception):
                    getattr(special, name)(x, axis=axis, **kwargs)
            return
    got = getattr(special, name)(x, axis=axis, **kwargs)
    if kwargs.get("return_sign"):
        (got, got_sign), (want, want_sign) = got, want
        assert np.shape(got_sign) == np.shape(want_sign)
        both = np.isfinite(np.asarray(want, np.float64))
        if x.dtype.kind == "f":
            assert np.array_equal(np.asarray(got_sign)[both], np.asarray(want_sign)[both])
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    # NaN and infinities where SciPy has them (float inputs: SciPy's x - max wraps around for ints).
    gw, ww = got.astype(np.float64), want.astype(np.float64)
    if x.dtype.kind == "f":
        assert np.array_equal(np.isnan(gw), np.isnan(ww))
        assert np.array_equal(gw[np.isinf(ww)], ww[np.isinf(ww)])
    # Values: within our bound of the long double reference (SciPy's own error is not our contract).
    flat, perm = _flatten_axes(x, axis)
    ref = reference(name, flat, -1)
    if name == "logsumexp":
        g = got.reshape(ref.shape)
        assert_close(name, g, ref, x=flat, axis=-1)
    else:
        g = np.transpose(got, perm).reshape(flat.shape)
        assert_close(name, g, ref)


# ---- axes: any axis, no transposing copy -----------------------------------------------------------------
@PROPS
@given(data=st.data(), op=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_every_axis_equals_moved_axis(data, op):
    x = data.draw(arrays(dtypes=[np.dtype(np.float32), np.dtype(np.float64)], special_values=data.draw(st.booleans())))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    f = getattr(normexp, op)
    got = np.asarray(f(x, axis))
    last = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    want = np.asarray(f(last, -1))
    if op != "logsumexp":
        want = np.moveaxis(want, -1, axis)
    # Different traversals (rows, columns, gather) may differ in the last bits; both meet the bound.
    d = ulp_distance(got, want.astype(LD))
    lim = 2 * ULP_BOUND[(op, got.dtype.itemsize)]
    if op == "logsumexp":
        scale = np.max(np.abs(np.where(np.isfinite(x), x, 0)).astype(np.float64), initial=1.0)
        with np.errstate(invalid="ignore"):  # inf - inf where both are inf: d decides there
            ok = (d <= lim) | (np.abs(got.astype(np.float64) - want.astype(np.float64)) <= 2 * LSE_ABS_ULPS * eps_of(x.dtype) * scale)
    else:
        ok = d <= lim
    assert np.all(ok)
