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


def test_bfloat16_is_recognized_by_its_type_number_only_after_its_name():
    # ml_dtypes.bfloat16 is found by name once and by its user type number after that (python/bindings/
    # reductions.cpp, normexp._api.is_bfloat16): other 2-byte kind-'V' dtypes and other ml_dtypes types
    # must stay refused after a bfloat16 call, and unpickled bfloat16 arrays stay accepted.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = np.dtype(ml_dtypes.bfloat16)
    x = np.linspace(-3, 3, 40, dtype=np.float32).reshape(4, 10)
    want = normexp.softmax(x.astype(bf))
    assert want.dtype == bf
    assert normexp._api.is_bfloat16(bf) and bf.num in normexp._api._BF16_NUMS
    again = pickle.loads(pickle.dumps(x.astype(bf)))
    np.testing.assert_array_equal(normexp.softmax(again).view(np.uint16), want.view(np.uint16))
    for other in (np.dtype("V2"), np.dtype([("a", "u1"), ("b", "u1")]), np.dtype(ml_dtypes.float8_e4m3fn),
                  np.dtype(np.int16), np.dtype(np.uint16)):
        assert not normexp._api.is_bfloat16(other)
        a = np.zeros((4, 10), dtype=other)
        if other.kind in "iu":
            continue  # integers are accepted as numbers (promoted), not as bfloat16
        with pytest.raises(TypeError):
            normexp.softmax(a)
        with pytest.raises(TypeError):
            normexp._core.reduce(normexp._core.Reduction.softmax, a, np.zeros((4, 10), dtype=other), 1, 1.0, "")


def test_byte_swapped_16_bit_inputs_are_converted_or_refused_never_misread():
    # A '>f2' array or a bfloat16 with swapped bytes has the name (and, for bfloat16, the type number) of the
    # native type: read in place it is garbage. Every entry point gives the native result or a TypeError.
    # (normexp.dask.attention viewed '>f2' chunks as native float16; linear_logsumexp read a swapped 16-bit
    # weight as native.)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    da = pytest.importorskip("dask.array")
    import normexp.dask as nd

    x = np.array([[[1.0, 2.0], [3.0, -1.0]]])
    h = np.ones((1, 2), np.float32)
    w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    for native in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)):
        swapped = native.newbyteorder(">" if native.isnative and np.little_endian else "<")
        assert not swapped.isnative
        cases = {
            "softmax": lambda d: normexp.softmax(x.astype(d), axis=-1),
            "logsumexp": lambda d: normexp.logsumexp(x.astype(d), axis=-1),
            "attention": lambda d: normexp.attention(x.astype(d), x.astype(d), x.astype(d)),
            "dask.attention": lambda d: nd.attention(x.astype(d), da.from_array(x.astype(d), chunks=1),
                                                     da.from_array(x.astype(d), chunks=1)).compute(),
            "linear_logsumexp": lambda d: normexp.linear_logsumexp(h, w.astype(d)),
        }
        for name, f in cases.items():
            want = np.asarray(f(native), dtype=np.float64)
            try:
                got = np.asarray(f(swapped)).astype(np.float64)  # converts values, whatever the byte order
            except TypeError:
                continue
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {swapped}")
