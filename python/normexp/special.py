"""Drop-in replacements for ``scipy.special.softmax``, ``log_softmax`` and ``logsumexp``.

Same signatures and defaults as SciPy (``axis=None`` means the whole array; tuple axes allowed;
``b``, ``keepdims``, ``return_sign``) and the same results, including SciPy's special values::

    from normexp import special
    special.logsumexp(a, axis=(0, 2), b=w, return_sign=True)

What is the same as SciPy (checked by running SciPy's own test file for these functions against this
module: tests/python/test_scipy_suite.py):
  * result dtypes: ``logsumexp`` promotes ``a`` and ``b`` together as SciPy does (Python scalars are
    weak: float32 ``a`` with ``b=2.0`` is float32; int32 ``a`` with float32 ``b`` is float64; integer and
    bool inputs give float64). ``softmax``/``log_softmax`` promote like ``np.exp`` (float64 for int32
    and int64, float16 for int8 and uint8), float32 stays float32, float16 stays float16.
  * scalars: a 0-d input gives a NumPy scalar (``softmax(1000)`` is ``np.float64(1.0)``), as does a
    ``logsumexp`` that reduces to 0-d; ``keepdims=True`` on a 0-d input gives shape ``(1,)``.
  * complex input (``a`` or ``b`` complex for ``logsumexp``, ``x`` complex for ``softmax`` /
    ``log_softmax``): computed with NumPy (not the SIMD kernels) by SciPy's algorithm, with its
    conventions: the imaginary part of ``logsumexp`` wrapped into (-pi, pi], ``return_sign=True``
    returning the real ``log|sum|`` and a complex unit phase as the sign, and C99 results where a term
    is infinite.

Real float32/float64 inputs (ints, bools, float16 and bfloat16 too) are computed by normexp's kernels.

Values agree with SciPy's to rounding, except where SciPy's are inaccurate: weighted sums that cancel
(see ``normexp.logsumexp``) and integer ``softmax`` input whose ``x - max`` wraps around in SciPy.
Other differences: ``softmax``/``log_softmax`` of an empty array, and of a bool array (float16, like
``np.exp``), return a result where SciPy raises; ``logsumexp`` over several axes of an empty array gives
-inf where SciPy 1.17 raises IndexError; bfloat16 (ml_dtypes) is accepted, SciPy refuses it; real long
double input is refused with a TypeError where SciPy computes in long double. Of SciPy's other array-API
backends, CPU torch tensors and JAX arrays (any CPU ``__dlpack__`` array) are accepted and give results
of their type, computed as for NumPy; GPU arrays (CuPy, CUDA tensors) are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _api, _interop

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


def _scalar(v: np.ndarray) -> Any:
    """A 0-d array as a NumPy scalar (SciPy's results for 0-d), anything else unchanged."""
    return v[()] if v.ndim == 0 else v


# ---- complex input: plain NumPy, SciPy's algorithm and conventions -----------------------------------------
def _wrap_radians(x: Any, *, xp: Any = np) -> Any:
    """Angles wrapped into (-pi, pi]; those with |x| < pi are returned unchanged (full relative precision).
    The ``xp`` keyword mirrors SciPy's private helper of the same name, so SciPy's test of it runs on this one."""
    wrapped = -((-x + xp.pi) % (2 * xp.pi) - xp.pi)
    return xp.where(xp.abs(x) < xp.pi, x, wrapped)


def _sign(x: np.ndarray) -> np.ndarray:
    """The array-API sign: x / |x| for complex (0 where x == 0; NaN for infinite x, unlike np.sign),
    np.sign for real."""
    if x.dtype.kind != "c":
        return np.sign(x)
    out = np.asarray(x / np.abs(x))
    out[x == 0] = 0
    return out


def _to_complex(x: np.ndarray) -> np.ndarray:
    return x.astype(np.result_type(x.dtype, np.complex64))


def _max_real(a: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per reduction, one element with the largest real part (the last such, in C order) and its mask."""
    real = np.real(a)
    mask = real == np.max(real, axis=axes, keepdims=True)
    idx = np.where(mask, np.arange(a.size).reshape(a.shape), -1)
    mask = idx == np.max(idx, axis=axes, keepdims=True)
    return np.sum(np.where(mask, a, 0), axis=axes, dtype=a.dtype, keepdims=True), mask


def _logsumexp_complex(a: np.ndarray, b: np.ndarray | None, axes: tuple[int, ...], return_sign: bool):
    """log(sum(b exp(a))) and its sign over axes (keepdims), a and b complex of one dtype and shape."""
    if a.size == 0:
        shape = tuple(1 if d in axes else n for d, n in enumerate(a.shape))
        out = np.full(shape, -np.inf, dtype=a.dtype)
        return out, _sign(out)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Where the shifted result is not finite, the direct log(sum(b exp(a))) is used instead: its
        # infinities and NaNs are those of C99's complex exp and log.
        direct = np.sum(np.exp(a) if b is None else b * np.exp(a), axis=axes, keepdims=True)
        sgn_direct = _sign(direct) if return_sign else None
        out_direct = np.log(np.abs(direct) if return_sign else direct)

        # The shifted sum. An entry with b == 0 takes no part, whatever its score.
        if b is not None:
            a = np.where(b == 0, -np.inf, a)
        a_max, i_max = _max_real(a, axes)
        a = np.where(i_max, -np.inf, a)  # the reference term is kept out of the sum, for precision
        m = np.sum(i_max.astype(a.dtype) if b is None else b * i_max, axis=axes, keepdims=True, dtype=a.dtype)
        e = np.exp(a - a_max) if b is None else b * np.exp(a - a_max)
        s = np.sum(e, axis=axes, keepdims=True, dtype=e.dtype)
        s = np.where(s == 0, s, s / m)
        sgn = _sign(s + 1) * _sign(m) * np.exp(np.imag(a_max) * 1.0j)
        out = np.log1p(s) + np.log(m) + a_max
        if return_sign:
            out = np.real(out)

        finite = np.isfinite(out)
        out = np.where(finite, out, out_direct)
        if return_sign:
            sgn = np.where(finite, sgn, sgn_direct)
    return out, sgn


def _complex_result(out: np.ndarray, sgn: np.ndarray, return_sign: bool) -> tuple[np.ndarray, np.ndarray]:
    """The imaginary part of a complex result (the sign's, with return_sign) wrapped into (-pi, pi]."""
    if out.dtype.kind == "c":
        if return_sign:
            sgn = np.real(sgn) + _to_complex(_wrap_radians(np.imag(sgn))) * 1j
        else:
            out = np.real(out) + _to_complex(_wrap_radians(np.imag(out))) * 1j
    return out, sgn


def _elementwise_complex(op: str, x: np.ndarray, axis: Any) -> Any:
    if x.ndim == 0:
        _axes(axis, 1)  # None, 0 or -1, as for real input
        axes = None
    else:
        axes = _axes(axis, x.ndim)
    x_max = np.max(x, axis=axes, keepdims=True)  # NumPy's order for complex: by real part, then imaginary
    if op == "softmax":
        e = np.exp(x - x_max)
        return e / np.sum(e, axis=axes, keepdims=True)
    x_max = np.where(np.isfinite(x_max), x_max, 0)
    tmp = x - x_max
    with np.errstate(divide="ignore"):
        return tmp - np.log(np.sum(np.exp(tmp), axis=axes, keepdims=True))


# ---- dtypes ---------------------------------------------------------------------------------------------
def _promoted(a: Any, arr: np.ndarray, b: Any, bb: np.ndarray | None) -> np.dtype | None:
    """SciPy's result dtype for logsumexp(a, b) (arr, bb: a and b as arrays): NumPy's promotion of a, b
    and the Python float 1.0, array-likes taken as arrays and scalars as they are (Python's weakly).
    None if there is none (not numbers): the argument checks then say what is wrong."""
    args = [arr if np.iterable(a) else a]
    if b is not None:
        args.append(bb if np.iterable(b) else b)
    try:
        dt = np.result_type(*args, 1.0)
    except Exception:  # noqa: BLE001 - strings, objects, unbounded ints...: refused by the checks
        return None
    return dt if dt.kind in "fc" or _api.is_bfloat16(dt) else None


# ---- the public functions -------------------------------------------------------------------------------
def _elementwise(op: str, x: Any, axis: Any) -> Any:
    a = _api.as_array(x)
    if a.dtype.kind == "c":
        return _scalar(np.asarray(_elementwise_complex(op, a, axis)))
    if a.ndim == 0:
        _axes(axis, 1)  # None, 0 or -1
        return _scalar(_api.elementwise(op, a, -1, 1.0, None, None))
    axes = _axes(axis, a.ndim)
    if len(axes) == 1:
        return _api.elementwise(op, a, axes[0], 1.0, None, None)
    rest = [d for d in range(a.ndim) if d not in axes]
    perm = rest + sorted(axes)
    y = _api.elementwise(op, _to_last(a, axes), -1, 1.0, None, None)
    y = y.reshape([a.shape[d] for d in perm])
    return np.transpose(y, np.argsort(perm))


@_interop.dlpack_io("x")
def softmax(x: Any, axis: Any = None) -> Any:
    """``exp(x) / sum(exp(x))`` over ``axis`` (None: all axes; an int or a tuple of ints), like
    ``scipy.special.softmax``.

    Real input runs on normexp's kernels; the result dtype is ``np.exp``'s for ``x`` (float32 stays
    float32, int64 gives float64, float16 and bfloat16 are kept). Complex input is computed with NumPy as
    SciPy does (``exp(x - max(x)) / sum``, the maximum in NumPy's complex order). A 0-d input gives a
    NumPy scalar, as SciPy's does. Unlike SciPy, an empty ``x`` gives an empty result instead of raising.
    """
    return _elementwise("softmax", x, axis)


@_interop.dlpack_io("x")
def log_softmax(x: Any, axis: Any = None) -> Any:
    """``log(softmax(x))`` over ``axis`` (None: all axes; an int or a tuple of ints), like
    ``scipy.special.log_softmax``, accurate where ``softmax`` underflows.

    Dtypes, scalars and complex input as for :func:`softmax` (complex: SciPy's ``x - max - log(sum)``,
    the imaginary part not wrapped, as in SciPy).
    """
    return _elementwise("log_softmax", x, axis)


@_interop.dlpack_io("a", "b")
def logsumexp(a: Any, axis: Any = None, b: Any = None, keepdims: bool = False, return_sign: bool = False) -> Any:
    """``log(sum(b * exp(a)))`` over ``axis``, like ``scipy.special.logsumexp``.

    Parameters and results as SciPy's: ``axis`` None (all axes), an int or a tuple of ints; ``b``
    weights broadcastable with ``a`` (they may enlarge it), zero weights dropping their term whatever its
    score; ``keepdims``; ``return_sign`` giving ``(log|sum|, sign)``, and without it a negative sum gives
    NaN. An empty reduction gives -inf. A 0-d result is a NumPy scalar.

    Dtype: ``a`` and ``b`` promoted together as SciPy does (NumPy's rules with Python scalars weak, and
    at least floating): float32 with float32 or a Python float stays float32, float32 with float64 or
    with an integer array is float64, integers and bools give float64, float16 stays float16.

    Real input runs on normexp's kernels (the weighted sum in at least float64, see
    ``normexp.logsumexp``). Complex ``a`` or ``b`` (complex64, complex128, complex long double; each in
    its own precision) is computed with NumPy by SciPy's algorithm: the result's imaginary part lies in
    (-pi, pi]; with ``return_sign`` the result is the real ``log|sum|`` and the sign the complex phase
    ``sum / |sum|``; infinite terms give C99's results for ``log(sum(exp(a)))``. Real long double input
    is refused (TypeError).
    """
    arr = _api.as_array(a, "a")
    keepdims = _api.flag(keepdims, "keepdims")
    return_sign = _api.flag(return_sign, "return_sign")
    bb = None if b is None else _api.as_array(b, "b")
    target = _promoted(a, arr, b, bb)
    if target is None and bb is not None and arr.dtype.kind == "c":
        raise TypeError(f"b: expected numbers, got an array of dtype {bb.dtype}")
    if target is not None and target.kind == "c":
        return _logsumexp_complex_call(arr, bb, axis, keepdims, return_sign, target)
    if target is not None and target.kind == "f" and target.itemsize <= 8 and arr.dtype != target:
        if arr.dtype.kind in "biuf" or _api.is_bfloat16(arr.dtype):  # bfloat16 with float32 b: float32
            arr = arr.astype(target)  # (a longdouble b is refused as b, below)
    if bb is not None:
        try:
            arr, b = np.broadcast_arrays(arr, bb)
        except ValueError:
            raise ValueError(f"b with shape {bb.shape} cannot be broadcast with a's shape {arr.shape}") from None
    if arr.ndim == 0:  # SciPy reduces a 0-d input as shape (1,)
        _axes(axis, 1)  # None, 0 or -1
        arr = arr.reshape(1)
        b = None if b is None else np.reshape(b, 1)
        axis = None
    axes = _axes(axis, arr.ndim)
    flat = _to_last(arr, axes)
    fb = None if b is None else _to_last(np.asarray(b), axes)
    r = _api.logsumexp(flat, -1, fb, False, return_sign, None, name="a")
    kept = [1 if d in axes else arr.shape[d] for d in range(arr.ndim)]
    final = kept if keepdims else [arr.shape[d] for d in range(arr.ndim) if d not in axes]

    def shape(v: Any) -> Any:
        return _scalar(np.asarray(v).reshape(final))

    if return_sign:
        return shape(r[0]), shape(r[1])
    return shape(r)


def _logsumexp_complex_call(arr: np.ndarray, bb: np.ndarray | None, axis: Any, keepdims: bool, return_sign: bool,
                            dtype: np.dtype) -> Any:
    for name, v in (("a", arr), ("b", bb)):
        if v is not None and v.dtype.kind not in "biufc":
            raise TypeError(f"{name}: expected numbers, got an array of dtype {v.dtype}")
    x = arr.astype(dtype)
    w = None if bb is None else bb.astype(dtype)
    if w is not None:
        try:
            x, w = np.broadcast_arrays(x, w)
        except ValueError:
            raise ValueError(f"b with shape {bb.shape} cannot be broadcast with a's shape {arr.shape}") from None
    if x.ndim == 0:
        x = x.reshape(1)
        w = None if w is None else w.reshape(1)
    axes = _axes(axis, x.ndim)
    out, sgn = _complex_result(*_logsumexp_complex(x, w, axes, return_sign), return_sign)
    if not keepdims:
        out = np.squeeze(out, axis=axes)
        sgn = np.squeeze(sgn, axis=axes)
    return (_scalar(out), _scalar(sgn)) if return_sign else _scalar(out)
