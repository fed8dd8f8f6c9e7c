"""normexp on Dask arrays: softmax, log_softmax and logsumexp along an axis that may be chunked.

Neither dask.array nor xarray offers these functions, and calling SciPy's on a dask array silently
computes the whole array into memory. Here every function is lazy (it returns a ``dask.array.Array`` and
computes nothing) and runs normexp's own kernels inside each chunk, on any scheduler (threads,
processes, ``dask.distributed``).

>>> import dask.array as da, normexp.dask as nd
>>> x = da.random.default_rng(0).standard_normal((4, 1_000_000), chunks=(4, 250_000))
>>> lse = nd.logsumexp(x, axis=-1)          # a dask array: nothing has run yet
>>> p = nd.softmax(x, axis=-1)              # same chunks as x
>>> p.sum(axis=-1).compute()                # doctest: +SKIP
array([1., 1., 1., 1.])

Algorithm. When the reduced axis is one chunk, each block is a plain call of the NumPy API (results are
bit-identical to it). Otherwise:

1. *Parts*: each block's rows are summarized by the native statistics pass that ``normexp.logsumexp``
   uses (``_core.logsumexp_parts``): m, the row's maximum (exact: an entry of x), and the sum of
   exp((x - m) / T) in float64 as count (entries equal to m) + rest. Nothing is rounded to x's dtype, so
   float32 rows with large |m| merge without losing bits, and log1p(rest) stays available.
2. *Tree merge* (``dask.array.reduction``, ``split_every`` inputs per node): the online-softmax rule the
   driver uses between its own super-chunks, M = max m_j, rest += (count_j + rest_j) exp((m_j - M) / T),
   with the exp argument carried as hi + lo. logsumexp is M / T + log(count + rest) (log1p(rest) when
   count is 1), rounded once to the result dtype: the driver's formula.
3. *Map* (softmax, log_softmax): each block runs the native second pass with the row's merged
   statistics (``_core.normalize_with``): y = exp((x - M) / T) / (count + rest), or its log, one read and
   one write per element, with the kernels' accuracy (the merged sum carries a few eps of extra rounding).

Special values are those of the NumPy API (SciPy's): a NaN makes its row NaN (logsumexp NaN); a row whose
maximum is +inf gives logsumexp +inf, softmax NaN, log_softmax NaN at the +inf entries and -inf elsewhere;
a row of only -inf gives logsumexp -inf and softmax/log_softmax NaN; an empty row gives logsumexp -inf.
A chunk that is empty or all -inf inside an otherwise finite row contributes nothing (softmax 0,
log_softmax -inf there).

``normexp.use_isa`` around the *construction* of the graph selects the kernel set the tasks will use.
Importing ``normexp`` never imports dask; ``import normexp.dask`` needs ``pip install 'normexp[dask]'``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask installed
    raise ImportError("normexp.dask needs dask: pip install 'normexp[dask]' (or dask[array])") from e

from . import _api, _core

__all__ = ["softmax", "log_softmax", "logsumexp"]

_F64 = np.dtype(np.float64)


# ------------------------------------------------------------------------------------------------------
# Argument checking (the rules of the NumPy API, _api.py, applied to the array's metadata only).
def _check(x: Any, axis: Any, func: str) -> tuple[da.Array, int, np.dtype, np.dtype]:
    if not isinstance(x, da.Array):
        raise TypeError(
            f"normexp.dask.{func} takes a dask.array.Array, got {type(x).__name__}; "
            f"use normexp.{func} for NumPy arrays, or wrap with dask.array.from_array(x, chunks=...)"
        )
    res, compute = _api.result_dtype(x.dtype)
    if x.ndim == 0:
        raise ValueError(f"normexp.dask.{func}: x is 0-dimensional; use normexp.{func} on x.compute()")
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(
            f"normexp.dask.{func}: x has unknown chunk sizes; call x.compute_chunk_sizes() first"
        )
    return x, _api.normalize_axis(axis, x.ndim), res, compute


def _check_split_every(split_every: Any) -> Any:
    if split_every is None:
        return None
    if isinstance(split_every, (bool, np.bool_)) or not isinstance(split_every, (int, np.integer)):
        raise TypeError(f"split_every must be an integer >= 2 or None, got {type(split_every).__name__}")
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    return int(split_every)


def _meta(ndim: int, dtype: np.dtype) -> np.ndarray:
    return np.empty((0,) * ndim, dtype=dtype)


def _keep_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + (1,) + shape[axis + 1 :]


# ------------------------------------------------------------------------------------------------------
# Block functions: module-level (picklable for the process and distributed schedulers), NumPy in and out.
def _native(op: str, block: np.ndarray, axis: int, temperature: float, isa: str, compute: np.dtype) -> np.ndarray:
    """The native op on one block, in the compute dtype (logsumexp: keepdims)."""
    src = _api._kernel_input(np.asarray(block), compute)
    shape = _keep_shape(src.shape, axis) if op == "logsumexp" else src.shape
    dst = np.empty(shape, dtype=compute)
    if src.size or (op == "logsumexp" and dst.size):
        _core.reduce(op, src, dst, axis, temperature, isa)
    return dst


def _block_whole(block: np.ndarray, op: str, axis: int, temperature: float, isa: str, compute: np.dtype,
                 res: np.dtype, keepdims: bool) -> np.ndarray:
    """The axis is one chunk: the NumPy API's computation on the block, bit for bit."""
    y = _native(op, block, axis, temperature, isa, compute)
    if op == "logsumexp" and not keepdims:
        y = y.reshape(y.shape[:axis] + y.shape[axis + 1 :])
    return y.astype(res, copy=False)


def _block_parts(block: np.ndarray, axis: int, temperature: float, isa: str, compute: np.dtype) -> np.ndarray:
    """(m, count, rest) of each row of the block on a new first axis of length 3 (float64, keepdims)."""
    src = _api._kernel_input(np.asarray(block), compute)
    keep = _keep_shape(src.shape, axis)
    m = np.empty(keep, dtype=compute)
    sums = np.empty(keep + (2,), dtype=_F64)
    if m.size:
        _core.logsumexp_parts(src, m, sums, axis, temperature, isa)
    return np.stack([m.astype(_F64), sums[..., 0], sums[..., 1]])


def _identity_parts(parts: np.ndarray, axis: Any = None, keepdims: bool = True) -> np.ndarray:
    return parts


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly, s = fl(a + b) (Knuth's TwoSum; e = 0 where s is not finite)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = a + b
        bb = s - a
        e = (a - (s - bb)) + (b - bb)
    return s, np.where(np.isfinite(s), e, 0.0)


def _scaled_diff(m: np.ndarray, big_m: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """beta * (m - M) as hi + lo, exact up to the rounding of lo (TwoSum, then Dekker's product).

    The native kernels form x - m exactly before exp; these differences between chunk maxima get the same
    care, since exp turns an absolute error e of its argument into a relative error e (|m - M| of 700
    would otherwise cost ~700 ulp in softmax).
    """
    hi, lo = _two_sum(m, -big_m)
    if beta == 1.0:
        return hi, lo
    with np.errstate(invalid="ignore", over="ignore"):
        p = hi * beta
        split = 134217729.0  # 2**27 + 1: Veltkamp's split of a double into two 26-bit halves
        ah = hi * split
        ah = ah - (ah - hi)
        al = hi - ah
        bh = beta * split
        bh = bh - (bh - beta)
        bl = beta - bh
        err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    err = np.where(np.isfinite(p) & np.isfinite(err), err, 0.0)
    return p, err + lo * beta


def _merge_parts(parts: np.ndarray, axis: Any, keepdims: bool = True, beta: float = 1.0) -> np.ndarray:
    """Merge (m, count, rest) triples along axis into one per row: the online-softmax rule, exactly as the
    native driver merges its super-chunks (reduce.cpp, merge), with a compensated exp argument.

    M = max_j m_j (NaN if any is NaN); count = sum of count_j over the parts whose m_j == M; rest = the
    sum of their rest_j plus (count_j + rest_j) exp(beta (m_j - M)) for the others. Parts that are empty
    or all -inf carry zeros and drop out; rows whose M is not finite get zeros, as the native parts do.
    There are at most split_every parts per row, so this is cheap NumPy.
    """
    ax = (axis[0] if isinstance(axis, tuple) else axis) - 1  # parts' axis 0 is (m, count, rest)
    m, c, r = parts[0], parts[1], parts[2]
    big_m = np.max(m, axis=ax, keepdims=True)
    finite = np.isfinite(big_m)
    at_max = m == big_m
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        u_hi, u_lo = _scaled_diff(np.where(finite, m, 0.0), np.where(finite, big_m, 0.0), beta)
        scaled = (c + r) * (np.exp(u_hi) * (1.0 + u_lo))
    count = np.sum(np.where(at_max, c, 0.0), axis=ax, keepdims=True)
    rest = np.sum(np.where(at_max, r, np.where(m == -np.inf, 0.0, scaled)), axis=ax, keepdims=True)
    count = np.where(finite, count, 0.0)
    rest = np.where(finite, rest, 0.0)
    return np.stack([big_m, count, rest])


def _log_sum(count: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """log(count + rest), via log1p(rest) when count is 1 (full relative accuracy near 0), as the driver."""
    with np.errstate(divide="ignore"):
        return np.where(count == 1, np.log1p(rest), np.log(count + rest))


def _finish_lse(merged: np.ndarray, axis: int, keepdims: bool, compute: np.dtype, res: np.dtype) -> np.ndarray:
    """logsumexp = M + log(count + rest), rounded once to the compute dtype (the driver's formula);
    rows whose M is NaN, +inf or -inf give M."""
    big_m = merged[0]
    with np.errstate(invalid="ignore"):
        v = np.where(np.isfinite(big_m), big_m + _log_sum(merged[1], merged[2]), big_m)
    v = v.astype(compute).astype(res, copy=False)
    return v if keepdims else v.reshape(v.shape[:axis] + v.shape[axis + 1 :])


def _block_normalize(block: np.ndarray, merged: np.ndarray, op: str, axis: int, temperature: float, isa: str,
                     compute: np.dtype, res: np.dtype) -> np.ndarray:
    """softmax / log_softmax of one block of a row split over several blocks, given the row's merged
    (M, count, rest) (stacked on a first axis of length 3): the native pass 2 with those statistics,
    y = exp((x - M) / T) / (count + rest) or its log, so accuracy and special values are the kernels'."""
    src = _api._kernel_input(np.asarray(block), compute)
    dst = np.empty(src.shape, dtype=compute)
    if src.size:
        m = np.ascontiguousarray(merged[0]).astype(compute)  # exact: M is an entry of x (or NaN / inf)
        sums = np.ascontiguousarray(np.stack([merged[1], merged[2]], axis=-1))
        _core.normalize_with(op, src, dst, m, sums, axis, temperature, isa)
    return dst.astype(res, copy=False)


# ------------------------------------------------------------------------------------------------------
# Graph construction.
def _merged_parts(x: da.Array, axis: int, temperature: float, isa: str, compute: np.dtype,
                  split_every: Any) -> tuple[da.Array, da.Array]:
    """(parts, merged): per-block (m, count, rest) with one entry per block along axis, and the
    tree-merged triple per row (length 1 along axis); float64, stacked on a new first axis of length 3
    (first, so that map_blocks aligns the other axes with x's)."""
    nd = x.ndim
    pchunks = ((3,),) + tuple(((1,) * len(c) if i == axis else c) for i, c in enumerate(x.chunks))
    parts = x.map_blocks(
        _block_parts, axis=axis, temperature=temperature, isa=isa, compute=compute,
        chunks=pchunks, new_axis=0, dtype=_F64, meta=_meta(nd + 1, _F64),
        name="normexp-parts",
    )
    merge = functools.partial(_merge_parts, beta=1.0 / temperature)
    merged = da.reduction(
        parts, chunk=_identity_parts, combine=merge, aggregate=merge,
        axis=axis + 1, keepdims=True, dtype=_F64, split_every=split_every, concatenate=True,
        meta=_meta(nd + 1, _F64), name="normexp-merge",
    )
    return parts, merged


def _elementwise(op: str, x: Any, axis: Any, temperature: Any, split_every: Any) -> da.Array:
    x, ax, res, compute = _check(x, axis, op)
    t = _api.check_temperature(temperature)
    split_every = _check_split_every(split_every)
    isa = _api.current_isa_override()
    if x.numblocks[ax] == 1:
        return x.map_blocks(
            _block_whole, op=op, axis=ax, temperature=t, isa=isa, compute=compute, res=res, keepdims=True,
            dtype=res, meta=_meta(x.ndim, res), name=f"normexp-{op}",
        )
    _, merged = _merged_parts(x, ax, t, isa, compute, split_every)
    return da.map_blocks(
        _block_normalize, x, merged,
        op=op, axis=ax, temperature=t, isa=isa, compute=compute, res=res,
        drop_axis=0, chunks=x.chunks, dtype=res, meta=_meta(x.ndim, res), name=f"normexp-{op}",
    )


def softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.softmax` of a dask array along ``axis``, which may span many chunks.

    Parameters
    ----------
    x : dask.array.Array
        Scores (dtype rules of :func:`normexp.softmax`); chunk sizes must be known.
    axis : int
        The axis to normalize (negative counts from the end).
    temperature : float
        Divides the scores; a finite number > 0.
    split_every : int, optional
        Fan-in of the tree that merges the per-chunk statistics (``dask.array.reduction``'s).

    Returns a dask array with x's shape and chunks; nothing is computed until you ask. Special values as
    the NumPy API; an empty or all -inf chunk of a finite row gives 0 there.
    """
    return _elementwise("softmax", x, axis, temperature, split_every)


def log_softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.log_softmax` of a dask array along ``axis``, which may span many chunks.

    Arguments as for :func:`softmax`. Entries near the row's maximum keep full relative accuracy (the
    per-chunk correction is a sum of two non-positive terms).
    """
    return _elementwise("log_softmax", x, axis, temperature, split_every)


def logsumexp(x: Any, axis: int = -1, *, keepdims: bool = False, split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.logsumexp` of a dask array along ``axis``, which may span many chunks.

    Parameters
    ----------
    x : dask.array.Array
        Input (dtype rules of :func:`normexp.logsumexp`); chunk sizes must be known.
    axis : int
        The axis to reduce.
    keepdims : bool
        Keep the reduced axis with length 1.
    split_every : int, optional
        Fan-in of the merge tree (``dask.array.reduction``'s ``split_every``).

    Returns a dask array (0-d for 1-d input). Per-chunk partials are (max, log-sum) pairs merged exactly
    with the online-softmax rule in float64 and rounded once. Weights (``b=``) and ``return_sign`` are
    NumPy-API only.
    """
    x, ax, res, compute = _check(x, axis, "logsumexp")
    split_every = _check_split_every(split_every)
    keepdims = bool(keepdims)
    isa = _api.current_isa_override()
    out_nd = x.ndim if keepdims else x.ndim - 1
    if x.numblocks[ax] == 1:
        return x.map_blocks(
            _block_whole, op="logsumexp", axis=ax, temperature=1.0, isa=isa, compute=compute, res=res,
            keepdims=keepdims, chunks=tuple(
                (1,) if i == ax else c for i, c in enumerate(x.chunks) if keepdims or i != ax),
            drop_axis=[] if keepdims else [ax], dtype=res, meta=_meta(out_nd, res), name="normexp-logsumexp",
        )
    _, merged = _merged_parts(x, ax, 1.0, isa, compute, split_every)
    drop = [0] if keepdims else [0, ax + 1]
    return merged.map_blocks(
        _finish_lse, axis=ax, keepdims=keepdims, compute=compute, res=res,
        drop_axis=drop, dtype=res, meta=_meta(out_nd, res), name="normexp-logsumexp",
    )
