"""Shared fixtures: every test that takes ``isa`` runs once per kernel set this CPU supports."""

from __future__ import annotations

import numpy as np
import pytest

import normexp


@pytest.fixture(params=normexp.available_isas())
def isa(request):
    with normexp.use_isa(request.param):
        yield request.param


def ulp_distance(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance in ULPs of got's dtype between got and ref rounded to that dtype (NaN == NaN)."""
    got = np.asarray(got)
    dt = got.dtype
    r = np.asarray(ref, dtype=np.float64).astype(dt)
    itype = {4: np.int32, 8: np.int64, 2: np.int16}[dt.itemsize]
    # Map the bit patterns to a monotonic integer line; longdouble (64-bit significand) holds int64 exactly,
    # and int64 holds every difference of 16- and 32-bit patterns exactly (the same numbers, several times
    # faster than longdouble arithmetic).
    wide = np.int64 if dt.itemsize <= 4 else np.longdouble
    a = got.view(itype).astype(wide)
    b = r.view(itype).astype(wide)
    lo = wide(np.iinfo(itype).min)
    a = np.where(a < 0, lo - a, a)
    b = np.where(b < 0, lo - b, b)
    d = np.abs(a - b).astype(np.float64)
    both_nan = np.isnan(got.astype(np.float64)) & np.isnan(r.astype(np.float64))
    same_inf = (got == r) & np.isinf(r)
    return np.where(both_nan | same_inf, 0.0, d)


def reference(x: np.ndarray, axis: int, op: str, temperature: float = 1.0) -> np.ndarray:
    """float64 (longdouble where available) reference with log1p of the non-maximal terms."""
    xl = np.asarray(x, dtype=np.longdouble) / np.longdouble(temperature)
    m = np.max(xl, axis=axis, keepdims=True)
    e = np.exp(xl - m)
    # Sum all terms but one maximal entry per row, so log(1 + rest) is formed as log1p(rest).
    first_max = np.argmax(xl == m, axis=axis)
    onehot = np.expand_dims(first_max, axis) == np.expand_dims(
        np.arange(xl.shape[axis]).reshape([-1 if d == axis % xl.ndim else 1 for d in range(xl.ndim)]), 0
    ).squeeze(0)
    rest = np.sum(np.where(onehot, 0, e), axis=axis, keepdims=True)
    if op == "softmax":
        return e / (1 + rest)
    if op == "log_softmax":
        return (xl - m) - np.log1p(rest)
    return np.squeeze(m + np.log1p(rest), axis=axis)
