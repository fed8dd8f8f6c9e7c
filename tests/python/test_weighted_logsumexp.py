"""Weighted logsumexp, ``log|sum b exp(a)|`` with its sign, for scores of every magnitude and weights of
both signs: against an exact reference (mpmath at 2200 bits, where a - max(a) is exact), and against
scipy.special.logsumexp on the rows where SciPy itself matches that reference.

The defect class: the terms were compared by c = a + log|b|, formed in floating point. Once |a| is large,
log|b| is below half an ulp of a and is rounded away: b = [1, -0.5] on a = [1e17, 1e17] became two equal
terms of opposite sign, their sum 0, and the result NaN (SciPy: 1e17, sign 1). Equal huge scores must
cancel in the weights alone.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import pytest
import scipy.special as scipy_special
from mpmath import mp

import normexp
from normexp import special

F64_MAGS = [1.0, 2.5, 1e2, 7e2, 1e8, 2.0**52, 1e16, 1e17, 1e30, 1e100, 1e200, 1e300, 1e308,
            float(np.finfo(np.float64).max)]
F32_MAGS = [1.0, 2.5, 1e2, 1e7, 2.0**23, 1e8, 1e17, 1e30, 3e38, float(np.finfo(np.float32).max)]
WIDTH = 6  # every pattern is padded to this length with zero weights (which take no part)


def _lower(x: float, dtype) -> float | None:
    """A score well below x in dtype (at least 800 below, so exp of the difference underflows), or None."""
    with np.errstate(over="ignore"):  # the spacing at the largest finite value is inf
        spacing = float(np.spacing(dtype(abs(x))))
    y = dtype(x - max(800.0, 1024 * spacing))
    return float(y) if np.isfinite(y) and y < x else None


def _patterns(m: float, dtype) -> list[tuple[str, list[float], list[float]]]:
    """(name, a, b) rows around the score m (a float of dtype)."""
    lo = _lower(m, dtype)
    lo2 = _lower(lo, dtype) if lo is not None else None
    fin = np.finfo(dtype)
    big = float(fin.max) / 10  # weights near the ends of the dtype's range
    small, tiniest = float(fin.tiny) * 1e3, float(fin.smallest_subnormal)
    rows = [
        ("half cancels", [m, m], [1, -0.5]),
        ("half cancels, negative", [m, m], [-1, 0.5]),
        ("exact cancel", [m, m], [1, -1]),
        ("exact cancel of three", [m, m, m], [2, -1.5, -0.5]),
        ("exact cancel with a zero weight", [m, m, m], [2, 0, -2]),
        ("all weights zero", [m, m], [0, 0]),
        ("a zero weight on the max", [m, 1.0], [0, -1]) if m > 1 else ("a zero weight on the max", [1.0, m], [0, -1]),
        ("huge weights", [m, m], [big, -big / 10]),
        ("tiny weights", [m, m, m], [small, -small / 3, tiniest]),
        ("tiny weight on the max, one term below", [m, m - 1 if m - 1 != m else m], [1e-30, 1]),
        ("mixed signs of the score", [m, -m], [-1, 2]),
    ]
    if lo is not None:
        rows += [
            ("cancel leaves a far lower term", [m, m, lo], [1, -1, 0.25]),
            ("cancel leaves a far lower negative term", [m, lo, m], [-3, -1, 3]),
            ("lower term dominates nothing", [m, lo], [1, -1]),
        ]
    if lo2 is not None:
        rows += [
            ("two levels cancel", [m, m, lo, lo, lo2], [1, -1, 3, -3, -2]),
            ("cancel, then a partial level", [m, lo, m, lo, lo2], [0.5, 2, -0.5, -1, 7]),
        ]
    return rows


def _reference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Exact log|sum b exp(a)| rounded to float64, and the sign (finite a and b).

    Terms with equal scores are merged first, their weights summed exactly (Fraction): a level that
    cancels is gone however far above the rest it lies, which no fixed working precision could ensure.
    The remaining levels are summed at 2200 bits relative to the largest score (a - r is exact there)."""
    levels: dict[float, Fraction] = {}
    for x, w in zip(a, b):
        if w != 0:
            levels[x] = levels.get(x, Fraction(0)) + Fraction(w)
    levels = {x: w for x, w in levels.items() if w != 0}
    if not levels:
        return -np.inf, 0.0
    with mp.workprec(2200):
        r = max(levels)
        s = mp.fsum(mp.mpf(w.numerator) / w.denominator * mp.exp(mp.mpf(x) - mp.mpf(r)) for x, w in levels.items())
        return float(mp.mpf(r) + mp.log(abs(s))), float(mp.sign(s))


class Sweep(NamedTuple):
    A: np.ndarray  # (rows, WIDTH) scores
    B: np.ndarray  # (rows, WIDTH) weights
    names: list[str]
    want: np.ndarray  # the exact log|sum| rounded to the dtype
    sign: np.ndarray
    scale: np.ndarray  # the magnitudes the float64 log-domain sum cancels: max|a| + max|log|b|| + 1

    def rows(self, order: slice = slice(None)) -> "Sweep":
        return Sweep(self.A[order], self.B[order], self.names[order], self.want[order], self.sign[order],
                     self.scale[order])


def _matrix(dtype) -> Sweep:
    """One padded pattern per row, references rounded to dtype."""
    mags = F64_MAGS if dtype == np.float64 else F32_MAGS
    rows = []
    for mag in mags:
        for m in (mag, -mag):
            m = float(dtype(m))
            for name, a, b in _patterns(m, dtype):
                pad = WIDTH - len(a)
                # Padding entries have weight 0: their scores (even huge ones) take no part.
                rows.append((f"{name} at {m:g}", a + [3.0, -m][:pad] + [0.0] * max(0, pad - 2), b + [0.0] * pad))
    A = np.array([r[1] for r in rows], dtype=dtype)
    B = np.array([r[2] for r in rows], dtype=dtype)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
    ref = [_reference(list(map(float, A[i])), list(map(float, B[i]))) for i in range(len(rows))]
    used = B != 0
    with np.errstate(divide="ignore"):
        logb = np.where(used, np.abs(np.log(np.abs(B.astype(np.float64)))), 0)
    scale = np.max(np.where(used, np.abs(A.astype(np.float64)), 0), axis=1) + np.max(logb, axis=1) + 1
    return Sweep(A, B, [r[0] for r in rows], np.array([v for v, _ in ref]).astype(dtype),
                 np.array([sg for _, sg in ref]), scale)


_MATRICES: dict = {}


def matrix(dtype) -> Sweep:
    if dtype not in _MATRICES:
        _MATRICES[dtype] = _matrix(dtype)
    return _MATRICES[dtype]


def _tolerance(sw: Sweep) -> np.ndarray:
    """Computed in float64 and rounded once to the dtype: 2 ulp of the exact value in its dtype, plus
    the float64 rounding of the log-domain sum r + d with d = (a - r) + log|b|, a few eps of the
    magnitudes that sum cancels (a score of 700 with a weight of 1e-300 gives 8.9, to ~1e-13)."""
    with np.errstate(over="ignore"):
        ulp = np.spacing(np.abs(sw.want)).astype(np.float64)
    return 2 * np.where(np.isfinite(ulp), ulp, 0) + 8 * np.finfo(np.float64).eps * sw.scale


def _agree(got: Any, got_sign: Any, want: np.ndarray, want_sign: np.ndarray, tol: np.ndarray) -> np.ndarray:
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    got_sign = np.asarray(got_sign, dtype=np.float64).reshape(-1)
    w = np.asarray(want, np.float64)
    with np.errstate(invalid="ignore"):
        close = ((got == w) & np.isinf(w)) | (np.abs(got - w) <= tol)
    return close & (got_sign == np.asarray(want_sign, np.float64))


def _check(got: Any, got_sign: Any, sw: Sweep, what: str) -> None:
    ok = _agree(got, got_sign, sw.want, sw.sign, _tolerance(sw))
    bad = np.flatnonzero(~ok)
    got = np.asarray(got, np.float64).reshape(-1)
    got_sign = np.asarray(got_sign, np.float64).reshape(-1)
    assert bad.size == 0, f"{what}: " + "; ".join(
        f"{sw.names[i]}: got ({got[i]!r}, {got_sign[i]}) want ({float(sw.want[i])!r}, {sw.sign[i]})" for i in bad[:8])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_rows_match_the_exact_reference(dtype):
    sw = matrix(dtype)
    val, sign = normexp.logsumexp(sw.A, axis=1, b=sw.B, return_sign=True)
    assert val.dtype == dtype and sign.dtype == dtype
    _check(val, sign, sw, "axis=1")
    # Without return_sign a negative sum is NaN, the rest unchanged.
    plain = normexp.logsumexp(sw.A, axis=1, b=sw.B)
    assert np.array_equal(np.isnan(plain), sw.sign < 0)
    np.testing.assert_array_equal(plain[sw.sign >= 0], val[sw.sign >= 0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("keepdims", [False, True])
def test_weighted_axis_variants(dtype, keepdims):
    sw = matrix(dtype)
    n = len(sw.names)
    # The reduced axis first, then in the middle of a 3-d array.
    val, sign = normexp.logsumexp(sw.A.T, axis=0, b=sw.B.T, keepdims=keepdims, return_sign=True)
    assert val.shape == ((1, n) if keepdims else (n,))
    _check(val, sign, sw, "axis=0")
    A3 = np.stack([sw.A, sw.A[::-1]]).transpose(0, 2, 1)  # (2, WIDTH, rows)
    B3 = np.stack([sw.B, sw.B[::-1]]).transpose(0, 2, 1)
    val, sign = normexp.logsumexp(A3, axis=1, b=B3, keepdims=keepdims, return_sign=True)
    assert val.shape == ((2, 1, n) if keepdims else (2, n))
    val, sign = val.reshape(2, -1), sign.reshape(2, -1)
    _check(val[0], sign[0], sw, "3-d axis=1")
    _check(val[1], sign[1], sw.rows(slice(None, None, -1)), "3-d axis=1, reversed")
    # Weights broadcast along the leading axis.
    val, sign = normexp.logsumexp(A3[:1].repeat(3, axis=0), axis=-2, b=B3[0], keepdims=keepdims, return_sign=True)
    for i in range(3):
        _check(np.reshape(val, (3, -1))[i], np.reshape(sign, (3, -1))[i], sw, "broadcast weights")
    # normexp.special: a tuple of one axis, keepdims.
    val, sign = special.logsumexp(A3, axis=(1,), b=B3, keepdims=keepdims, return_sign=True)
    _check(np.reshape(val, (2, -1))[0], np.reshape(sign, (2, -1))[0], sw, "special axis=(1,)")
    # out= of the NumPy API.
    out = np.empty((n, 1) if keepdims else n, dtype)
    r, sign = normexp.logsumexp(sw.A, axis=-1, b=sw.B, keepdims=keepdims, return_sign=True, out=out)
    assert r is out
    _check(out, sign, sw, "out=")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_rows_one_at_a_time_and_axis_none(dtype):
    sw = matrix(dtype)
    for i in range(len(sw.names)):
        v, s = special.logsumexp(sw.A[i], axis=None, b=sw.B[i], return_sign=True)
        _check([v], [s], sw.rows(slice(i, i + 1)), "axis=None")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_matches_scipy_where_scipy_is_right(dtype):
    sw = matrix(dtype)
    with np.errstate(all="ignore"):
        sv, ss = scipy_special.logsumexp(sw.A, axis=1, b=sw.B, return_sign=True)
    # SciPy works in the input dtype: a float32 sum carries float32 rounding.
    tol = _tolerance(sw) + 8 * np.finfo(dtype).eps * sw.scale
    right = _agree(sv, ss, sw.want, sw.sign, tol)
    # The sweep reaches past SciPy: rows where it answers NaN or a wrong -inf (exact cancellation at a
    # huge score, or a cancelled maximum leaving terms more than 745 below it).
    assert (~right).sum() >= 4 and right.sum() >= len(sw.names) // 2, ((~right).sum(), right.sum())
    val, sign = normexp.logsumexp(sw.A, axis=1, b=sw.B, return_sign=True)
    agree = _agree(val, sign, sv, ss, 2 * tol)
    bad = np.flatnonzero(right & ~agree)
    assert bad.size == 0, [(sw.names[i], float(val[i]), float(sv[i])) for i in bad[:8]]


def test_the_reported_case():
    assert normexp.logsumexp([1e17, 1e17], b=[1.0, -0.5], return_sign=True) == (1e17, 1.0)
    assert special.logsumexp([1e17, 1e17], b=[1.0, -0.5], return_sign=True) == (1e17, 1.0)
    v, s = normexp.logsumexp(np.array([3e38, 3e38], np.float32), b=np.array([-1, 0.5], np.float32), return_sign=True)
    assert (v, s) == (np.float32(3e38), np.float32(-1)) and v.dtype == np.float32
    assert normexp.logsumexp([1e308, 1e308], b=[1, -1], return_sign=True) == (-np.inf, 0.0)


def test_a_long_chain_of_cancelling_levels():
    # Every level cancels but the last, 20000 levels and 1e7 below the largest score.
    n = 20000
    a = np.repeat(np.arange(n, 0, -1, dtype=np.float64) * 1e3, 2)
    b = np.tile([1.0, -1.0], n)
    a = np.append(a, -5e7)
    b = np.append(b, 2.0)
    v, s = normexp.logsumexp(a, b=b, return_sign=True)
    assert s == 1.0 and v == pytest.approx(-5e7 + np.log(2.0), rel=1e-15, abs=0)


@pytest.mark.parametrize(
    "a,b,want",
    [
        # a zero weight takes its entry out, whatever the score
        ([np.inf, np.nan, 1.0], [0, 0, 1], (1.0, 1.0)),
        ([np.inf, np.inf], [0, 1], (np.inf, 1.0)),
        # an infinite term wins over any finite one, however large
        ([np.inf, 1e308], [1, -1], (np.inf, 1.0)),
        ([np.inf, 1e308], [-1, 1e300], (np.inf, -1.0)),
        ([1.0, 2.0], [np.inf, -1], (np.inf, 1.0)),
        # infinities of both signs, NaN, and inf * exp(-inf)
        ([np.inf, np.inf], [1, -1], (np.nan, np.nan)),
        ([1.0, 2.0], [np.inf, -np.inf], (np.nan, np.nan)),
        ([np.nan, 1.0], [1, 1], (np.nan, np.nan)),
        ([1.0, 2.0], [np.nan, 1], (np.nan, np.nan)),
        ([-np.inf, 2.0], [np.inf, 1], (np.nan, np.nan)),
        # empty sums
        ([-np.inf, -np.inf], [1, -1], (-np.inf, 0.0)),
        ([], [], (-np.inf, 0.0)),
    ],
)
def test_weighted_special_values(a, b, want):
    got = normexp.logsumexp(np.array(a, np.float64), b=np.array(b, np.float64), return_sign=True)
    np.testing.assert_array_equal(np.array(got, np.float64), np.array(want, np.float64))
