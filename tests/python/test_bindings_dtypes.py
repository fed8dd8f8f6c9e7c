"""How the native bindings recognize float32 / float64 arrays: by dtype equality and native byte order,
never by the identity of the dtype object.

Found while running normexp under dask's process and distributed schedulers (tests/python/test_dask.py).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import normexp

OPS = ["softmax", "log_softmax", "logsumexp"]


def test_unpickled_arrays_are_accepted():
    # Arrays that crossed a process boundary carry an unpickled dtype object that is equal to, but not
    # the same object as, NumPy's float32 / float64. Identity checks rejected every such array.
    for dtype in (np.float32, np.float64):
        fresh = np.linspace(-3, 3, 50, dtype=dtype).reshape(5, 10)
        x = pickle.loads(pickle.dumps(fresh))
        assert x.dtype is not np.dtype(dtype)
        for op in OPS:
            np.testing.assert_array_equal(getattr(normexp, op)(x), getattr(normexp, op)(fresh))
        y = np.empty((5, 10), dtype=pickle.loads(pickle.dumps(np.dtype(dtype))))
        normexp._core.reduce(normexp._core.Reduction.softmax, x, y, 1, 1.0, "")
        np.testing.assert_array_equal(y, normexp.softmax(fresh))


@pytest.mark.parametrize("op", OPS)
def test_non_native_byte_order_is_never_misread(op):
    # '>f8' has NumPy's float64 type number; read natively it is garbage (softmax gave 1e103). The result
    # must be right or a TypeError that says what to do.
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    swapped = x.astype(x.dtype.newbyteorder())
    try:
        got = getattr(normexp, op)(swapped)
    except TypeError as e:
        assert "cast" in str(e)
    else:
        np.testing.assert_allclose(got, getattr(normexp, op)(x), rtol=1e-15)
