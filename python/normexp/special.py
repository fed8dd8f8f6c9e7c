"""Drop-in replacements for ``scipy.special.softmax``, ``log_softmax`` and ``logsumexp``.

Same signatures and defaults as SciPy (``axis=None`` means the whole array; tuple axes allowed;
``b``, ``keepdims``, ``return_sign``) and the same results, including SciPy's special values, computed
by normexp's kernels::

    from normexp import special
    special.logsumexp(a, axis=(0, 2), b=w, return_sign=True)

Differences: integer and bool inputs to logsumexp give float64 like SciPy; softmax of an empty array
returns an empty array where SciPy raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _api

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        axes = tuple(_api.normalize_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {axis}")
        return axes
    return (_api.normalize_axis(axis, ndim),)


def _to_last(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """a with the reduced axes merged into one trailing axis (a view when possible)."""
    rest = [d for d in range(a.ndim) if d not in axes]
    moved = np.transpose(a, rest + sorted(axes))
    # The merged length explicitly: reshape(..., -1) is ambiguous (an error) when another axis is 0.
    return moved.reshape(moved.shape[: len(rest)] + (int(np.prod([a.shape[d] for d in axes], dtype=np.int64)),))


def _elementwise(op: str, x: Any, axis: Any) -> np.ndarray:
    a = _api.as_array(x)
    if a.ndim == 0:
        _axes(axis, 1)  # None, 0 or -1
        return _api.elementwise(op, a, -1, 1.0, None, None)
    axes = _axes(axis, a.ndim)
    if len(axes) == 1:
        return _api.elementwise(op, a, axes[0], 1.0, None, None)
    rest = [d for d in range(a.ndim) if d not in axes]
    perm = rest + sorted(axes)
    y = _api.elementwise(op, _to_last(a, axes), -1, 1.0, None, None)
    y = y.reshape([a.shape[d] for d in perm])
    return np.transpose(y, np.argsort(perm))


def softmax(x: Any, axis: Any = None) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` over ``axis`` (None: all axes), like ``scipy.special.softmax``."""
    return _elementwise("softmax", x, axis)


def log_softmax(x: Any, axis: Any = None) -> np.ndarray:
    """``log(softmax(x))`` over ``axis`` (None: all axes), like ``scipy.special.log_softmax``."""
    return _elementwise("log_softmax", x, axis)


def logsumexp(a: Any, axis: Any = None, b: Any = None, keepdims: bool = False, return_sign: bool = False) -> Any:
    """``log(sum(b * exp(a)))`` over ``axis``, like ``scipy.special.logsumexp``."""
    arr = _api.as_array(a, "a")
    keepdims = _api.flag(keepdims, "keepdims")
    return_sign = _api.flag(return_sign, "return_sign")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)  # SciPy promotes integers to float64 here
    if b is not None:
        bb = _api.as_array(b, "b")
        if bb.dtype.kind == "f" and arr.dtype.kind == "f":
            promoted = np.result_type(arr.dtype, bb.dtype)
            if promoted.itemsize <= 8:  # SciPy's result dtype; a longdouble b is refused as b
                arr = arr.astype(promoted, copy=False)
        try:
            arr, b = np.broadcast_arrays(arr, bb)
        except ValueError:
            raise ValueError(f"b with shape {bb.shape} cannot be broadcast with a's shape {arr.shape}") from None
    if arr.ndim == 0:
        _axes(axis, 1)  # None, 0 or -1
        arr = arr.reshape(1)
        b = None if b is None else np.reshape(b, 1)
        return _api.logsumexp(arr, 0, b, False, return_sign, None, name="a")
    axes = _axes(axis, arr.ndim)
    flat = _to_last(arr, axes)
    fb = None if b is None else _to_last(np.asarray(b), axes)
    r = _api.logsumexp(flat, -1, fb, False, return_sign, None, name="a")
    kept = [1 if d in axes else arr.shape[d] for d in range(arr.ndim)]
    final = kept if keepdims else [arr.shape[d] for d in range(arr.ndim) if d not in axes]

    def shape(v: Any) -> Any:
        v = np.asarray(v).reshape(final)
        return v[()] if v.ndim == 0 else v

    if return_sign:
        return shape(r[0]), shape(r[1])
    return shape(r)
