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
   with the exp argument carried as hi + lo: the driver's own code (``_core.merge_parts``), not a copy.
   logsumexp is M + log(count + rest) (log1p(rest) when count is 1), rounded once to the result dtype:
   the driver's formula (``_core.logsumexp_from_parts``). Chunks that split the axis at multiples of
   65536 elements, merged in one step (``split_every`` at least the number of chunks), give the NumPy
   API's results bit for bit: the driver splits long rows into such super-chunks itself.
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
import math
from typing import Any

import numpy as np

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask installed
    raise ImportError("normexp.dask needs dask: pip install 'normexp[dask]' (or dask[array])") from e

from . import _api, _core

__all__ = ["softmax", "log_softmax", "logsumexp", "attention"]

_F64 = np.dtype(np.float64)


# ------------------------------------------------------------------------------------------------------
# Argument checking (the rules of the NumPy API, _api.py, applied to the array's metadata only).
def _check(x: Any, axis: Any, func: str) -> tuple[da.Array, int, np.dtype, np.dtype]:
    if not isinstance(x, da.Array):
        raise TypeError(
            f"normexp.dask.{func}: x must be a dask.array.Array, got {type(x).__name__}; "
            f"use normexp.{func} for NumPy arrays, or wrap with dask.array.from_array(x, chunks=...)"
        )
    res, compute = _api.result_dtype(x.dtype)
    compute = _api.kernel_dtype(res, compute)  # float16 / bfloat16 chunks go to the kernels as they are
    if x.ndim == 0:
        raise ValueError(f"normexp.dask.{func}: x is 0-dimensional; use normexp.{func} on x.compute()")
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(
            f"normexp.dask.{func}: x has unknown chunk sizes; call x.compute_chunk_sizes() first"
        )
    return x, _api.normalize_axis(axis, x.ndim), res, compute


def _check_split_every(split_every: Any, blocks: int) -> Any:
    """split_every as an int >= 2 (or None), clipped to the number of blocks it merges: a larger fan-in
    merges them all in one step just the same, and dask sizes work by it (2**31 raised MemoryError)."""
    if split_every is None:
        return None
    try:
        n = _api.integer(split_every, "split_every")
    except TypeError:
        raise TypeError(f"split_every must be an integer >= 2 or None, got {type(split_every).__name__}") from None
    if n < 2:
        raise ValueError(f"split_every must be >= 2, got {_api.shown(split_every)}")
    return min(n, max(2, blocks))


def _meta(ndim: int, dtype: np.dtype) -> np.ndarray:
    return np.empty((0,) * ndim, dtype=dtype)


def _keep_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + (1,) + shape[axis + 1 :]


# ------------------------------------------------------------------------------------------------------
# Block functions: module-level (picklable for the process and distributed schedulers), NumPy in and out.
# The compute dtype travels as its name: an unpickled np.dtype is equal to NumPy's float32 / float64 but
# not the same object, and np.dtype(name) gives back the canonical one.
def _native(op: str, block: np.ndarray, axis: int, temperature: float, isa: str, compute: str,
            accuracy: str = "high") -> np.ndarray:
    """The native op on one block, in the compute dtype (logsumexp: keepdims)."""
    compute = np.dtype(compute)
    src = _api._kernel_input(np.asarray(block), compute)
    shape = _keep_shape(src.shape, axis) if op == "logsumexp" else src.shape
    dst = np.empty(shape, dtype=compute)
    if src.size or (op == "logsumexp" and dst.size):
        _core.reduce(_api.REDUCTION[op], src, dst, axis, temperature, isa, _api.ACCURACY[accuracy])
    return dst


def _block_whole(block: np.ndarray, op: str, axis: int, temperature: float, isa: str, compute: str,
                 res: np.dtype, keepdims: bool, accuracy: str = "high") -> np.ndarray:
    """The axis is one chunk: the NumPy API's computation on the block, bit for bit."""
    y = _native(op, block, axis, temperature, isa, compute, accuracy)
    if op == "logsumexp" and not keepdims:
        y = y.reshape(y.shape[:axis] + y.shape[axis + 1 :])
    return y.astype(res, copy=False)


def _block_parts(block: np.ndarray, axis: int, temperature: float, isa: str, compute: str,
                 accuracy: str = "high") -> np.ndarray:
    """(m, count, rest) of each row of the block on a new first axis of length 3 (float64, keepdims);
    accuracy "fast" counts nothing (count 0, rest the whole sum), which merges by the same rule."""
    compute = np.dtype(compute)
    src = _api._kernel_input(np.asarray(block), compute)
    keep = _keep_shape(src.shape, axis)
    m = np.empty(keep, dtype=compute)
    sums = np.empty(keep + (2,), dtype=_F64)
    if m.size:
        _core.logsumexp_parts(src, m, sums, axis, temperature, isa, _api.ACCURACY[accuracy])
    return np.stack([m.astype(_F64), sums[..., 0], sums[..., 1]])


def _identity_parts(parts: np.ndarray, axis: Any = None, keepdims: bool = True) -> np.ndarray:
    return parts


def _merge_parts(parts: np.ndarray, axis: Any, keepdims: bool = True, temperature: float = 1.0) -> np.ndarray:
    """Merge (m, count, rest) triples along axis into one per row, in their order: the native driver's
    own online-softmax rule (``_core.merge_parts``, normexp::merge_parts in cpp/src/reduce.cpp, the merge
    of a long row's super-chunks, with its compensated exp argument).

    M = max_j m_j (NaN if any is NaN); count and rest sum what was summed against M, the other parts
    rescaled by exp((m_j - M) / T). Parts that are empty or all -inf carry zeros and drop out; rows whose
    M is not finite get zeros, as the native parts do. keepdims: the result keeps axis, with length 1.
    """
    ax = (axis[0] if isinstance(axis, tuple) else axis) - 1  # parts' axis 0 is (m, count, rest)
    stats = np.moveaxis(parts, ax + 1, 1)  # (3, parts, *rows)
    rows = stats.shape[2:]
    n, k = math.prod(rows), stats.shape[1]
    m = np.ascontiguousarray(stats[0]).reshape(k, n)
    sums = np.ascontiguousarray(np.moveaxis(stats[1:], 0, -1)).reshape(k, n, 2)
    big_m, merged = _core.merge_parts(m, sums, temperature)
    out = np.concatenate([big_m[None], merged.T]).reshape((3,) + rows)
    return np.expand_dims(out, ax + 1)


def _finish_lse(merged: np.ndarray, axis: int, keepdims: bool, compute: str, res: np.dtype) -> np.ndarray:
    """logsumexp = M + log(count + rest) (log1p(rest) when count is 1), rounded once to the compute dtype:
    the driver's formula (``_core.logsumexp_from_parts``); rows whose M is NaN, +inf or -inf give M."""
    compute = np.dtype(compute)
    shape = merged.shape[1:]
    m = np.ascontiguousarray(merged[0]).reshape(-1)
    sums = np.ascontiguousarray(np.moveaxis(merged[1:], 0, -1)).reshape(-1, 2)
    v = _core.logsumexp_from_parts(m, sums, compute.itemsize < 8).reshape(shape)
    v = v.astype(compute).astype(res, copy=False)
    return v if keepdims else v.reshape(v.shape[:axis] + v.shape[axis + 1 :])


def _block_normalize(block: np.ndarray, merged: np.ndarray, op: str, axis: int, temperature: float, isa: str,
                     compute: str, res: np.dtype, accuracy: str = "high") -> np.ndarray:
    """softmax / log_softmax of one block of a row split over several blocks, given the row's merged
    (M, count, rest) (stacked on a first axis of length 3): the native pass 2 with those statistics,
    y = exp((x - M) / T) / (count + rest) or its log, so accuracy and special values are the kernels'."""
    compute = np.dtype(compute)
    src = _api._kernel_input(np.asarray(block), compute)
    dst = np.empty(src.shape, dtype=compute)
    if src.size:
        m = np.ascontiguousarray(merged[0]).astype(compute)  # exact: M is an entry of x (or NaN / inf)
        sums = np.ascontiguousarray(np.stack([merged[1], merged[2]], axis=-1))
        _core.normalize_with(_api.REDUCTION[op], src, dst, m, sums, axis, temperature, isa, _api.ACCURACY[accuracy])
    return dst.astype(res, copy=False)


# ------------------------------------------------------------------------------------------------------
# Graph construction.
def _merged_parts(x: da.Array, axis: int, temperature: float, isa: str, compute: np.dtype,
                  split_every: Any, accuracy: str = "high") -> tuple[da.Array, da.Array]:
    """(parts, merged): per-block (m, count, rest) with one entry per block along axis, and the
    tree-merged triple per row (length 1 along axis); float64, stacked on a new first axis of length 3
    (first, so that map_blocks aligns the other axes with x's)."""
    nd = x.ndim
    pchunks = ((3,),) + tuple(((1,) * len(c) if i == axis else c) for i, c in enumerate(x.chunks))
    parts = x.map_blocks(
        _block_parts, axis=axis, temperature=temperature, isa=isa, compute=compute.name, accuracy=accuracy,
        chunks=pchunks, new_axis=0, dtype=_F64, meta=_meta(nd + 1, _F64),
        name="normexp-parts",
    )
    merge = functools.partial(_merge_parts, temperature=temperature)
    merged = da.reduction(
        parts, chunk=_identity_parts, combine=merge, aggregate=merge,
        axis=axis + 1, keepdims=True, dtype=_F64, split_every=split_every, concatenate=True,
        meta=_meta(nd + 1, _F64), name="normexp-merge",
    )
    return parts, merged


def _where_mask(where: Any, x: da.Array) -> da.Array:
    """where= as a boolean dask array with x's shape and chunks (the NumPy API's rules)."""
    w = where if isinstance(where, da.Array) else _api.as_array(where, "where")
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {w.dtype}")
    w = w if isinstance(w, da.Array) else da.from_array(w)
    try:
        ok = np.broadcast_shapes(w.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"where with shape {w.shape} cannot be broadcast to the input's shape {x.shape}")
    return da.broadcast_to(w, x.shape).rechunk(x.chunks)


def _elementwise(op: str, x: Any, axis: Any, temperature: Any, where: Any, split_every: Any,
                 accuracy: Any = "high") -> da.Array:
    acc = _api.accuracy(accuracy).name  # checked now; the blocks take the name (picklable)
    x, ax, res, compute = _check(x, axis, op)
    t = _api.check_temperature(temperature, compute)
    split_every = _check_split_every(split_every, x.numblocks[ax])
    isa = _api.current_isa_override()
    mask = None
    if where is not None:
        # As the NumPy API: masked entries become -inf (probability 0), rows with no True entry are
        # filled afterwards (softmax 0, log_softmax -inf) instead of the all -inf row's NaN.
        mask = _where_mask(where, x)
        x = da.where(mask, x.astype(compute), compute.type(-np.inf))
    if x.numblocks[ax] == 1:
        y = x.map_blocks(
            _block_whole, op=op, axis=ax, temperature=t, isa=isa, compute=compute.name, res=res, keepdims=True,
            accuracy=acc, dtype=res, meta=_meta(x.ndim, res), name=f"normexp-{op}",
        )
    else:
        _, merged = _merged_parts(x, ax, t, isa, compute, split_every, acc)
        y = da.map_blocks(
            _block_normalize, x, merged,
            op=op, axis=ax, temperature=t, isa=isa, compute=compute.name, res=res, accuracy=acc,
            drop_axis=0, chunks=x.chunks, dtype=res, meta=_meta(x.ndim, res), name=f"normexp-{op}",
        )
    if mask is not None:
        empty_rows = ~mask.any(axis=ax, keepdims=True)
        y = da.where(empty_rows, res.type(0.0 if op == "softmax" else -np.inf), y)
    return y


def softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None, accuracy: str = "high",
            split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.softmax` of a dask array along ``axis``, which may span many chunks.

    Parameters
    ----------
    x : dask.array.Array
        Scores (dtype rules of :func:`normexp.softmax`); chunk sizes must be known.
    axis : int
        The axis to normalize (negative counts from the end).
    temperature : float
        Divides the scores; a finite number > 0.
    where : array_like or dask.array.Array of bool, optional
        Broadcastable mask; False entries get probability 0, and a row with no True entry is all zeros.
    accuracy : {"high", "fast"}
        As :func:`normexp.softmax`: ``"fast"`` rounds ``(x - max) / T`` once (relative error about
        2 ULP + ``|t| * 2**-24``), chunk by chunk, with the same merge of the chunks' statistics.
    split_every : int, optional
        Fan-in of the tree that merges the per-chunk statistics (``dask.array.reduction``'s).

    Returns a dask array with x's shape and chunks; nothing is computed until you ask. Special values as
    the NumPy API; an empty or all -inf chunk of a finite row gives 0 there.
    """
    return _elementwise("softmax", x, axis, temperature, where, split_every, accuracy)


def log_softmax(x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None, accuracy: str = "high",
                split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.log_softmax` of a dask array along ``axis``, which may span many chunks.

    Arguments as for :func:`softmax`; masked entries (``where=False``) are -inf, and a row with no True
    entry is all -inf. Entries near the row's maximum keep full relative accuracy (log1p of the other
    terms, as in the NumPy API, also when they lie in other chunks); ``accuracy="fast"`` as
    :func:`normexp.log_softmax`.
    """
    return _elementwise("log_softmax", x, axis, temperature, where, split_every, accuracy)


def logsumexp(x: Any, axis: int = -1, *, keepdims: bool = False, accuracy: str = "high",
              split_every: Any = None) -> da.Array:
    """Lazy :func:`normexp.logsumexp` of a dask array along ``axis``, which may span many chunks.

    Parameters
    ----------
    x : dask.array.Array
        Input (dtype rules of :func:`normexp.logsumexp`); chunk sizes must be known.
    axis : int
        The axis to reduce.
    keepdims : bool
        Keep the reduced axis with length 1.
    accuracy : {"high", "fast"}
        As :func:`normexp.logsumexp`.
    split_every : int, optional
        Fan-in of the merge tree (``dask.array.reduction``'s ``split_every``).

    Returns a dask array (0-d for 1-d input). Per-chunk partials are (max, log-sum) pairs merged exactly
    with the online-softmax rule in float64 and rounded once. Weights (``b=``) and ``return_sign`` are
    NumPy-API only.
    """
    acc = _api.accuracy(accuracy).name
    x, ax, res, compute = _check(x, axis, "logsumexp")
    split_every = _check_split_every(split_every, x.numblocks[ax])
    keepdims = _api.flag(keepdims, "keepdims")
    isa = _api.current_isa_override()
    out_nd = x.ndim if keepdims else x.ndim - 1
    if x.numblocks[ax] == 1:
        return x.map_blocks(
            _block_whole, op="logsumexp", axis=ax, temperature=1.0, isa=isa, compute=compute.name, res=res,
            keepdims=keepdims, accuracy=acc, chunks=tuple(
                (1,) if i == ax else c for i, c in enumerate(x.chunks) if keepdims or i != ax),
            drop_axis=[] if keepdims else [ax], dtype=res, meta=_meta(out_nd, res), name="normexp-logsumexp",
        )
    _, merged = _merged_parts(x, ax, 1.0, isa, compute, split_every, acc)
    drop = [0] if keepdims else [0, ax + 1]
    return merged.map_blocks(
        _finish_lse, axis=ax, keepdims=keepdims, compute=compute.name, res=res,
        drop_axis=drop, dtype=res, meta=_meta(out_nd, res), name="normexp-logsumexp",
    )


# ------------------------------------------------------------------------------------------------------
# Attention over a key/value sequence split into chunks (a KV cache spread over workers).
_ALIGNMENTS = ("top_left", "bottom_right")


def _canonical_float(a: np.ndarray) -> np.ndarray:
    """a with NumPy's own dtype object of its float type, in native byte order: a view where a already is
    native, else a converted copy (a view would reinterpret the swapped bytes)."""
    canon = np.dtype(a.dtype.name)
    return a.view(canon) if a.dtype.isnative else a.astype(canon)


def _np_attention():
    """normexp.attention and normexp.merge_attention (module normexp.attention), looked up when a task
    runs."""
    from .attention import attention as att, merge_attention as merge  # noqa: PLC0415

    return att, merge


def _position_mask(lq: int, lkv: int, start: int, length: int, is_causal: bool, window: int,
                   bottom_right: bool) -> np.ndarray | None:
    """Which keys start..start+length of a length-lkv sequence each of lq queries sees (is_causal and
    window, normexp.attention's definitions with diag(i) = i or i + lkv - lq); None if all of them."""
    if not is_causal and not window:
        return None
    diag = np.arange(lq)[:, None] + (lkv - lq if bottom_right else 0)
    j = start + np.arange(length)[None, :]
    keep = np.ones((lq, length), dtype=bool)
    if is_causal:
        keep &= j <= diag
    if window:
        keep &= j > diag - window
    return None if keep.all() else keep


def _attention_chunk(k: np.ndarray, v: np.ndarray, q: np.ndarray, start: np.ndarray, *rest: np.ndarray,
                     has_mask: bool, lkv: int, scale: float | None, softcap: float | None, alibi: np.ndarray | None,
                     is_causal: bool, window: int, bottom_right: bool, isa: str) -> np.ndarray:
    """Partial attention of q over one key/value chunk: (out, lse) packed as (1, ..., Hq, Lq, Dv + 1).

    The chunk's keys are positions start..start+Lc of the whole sequence; causal, window and ALiBi refer
    to those positions, so they are given to normexp.attention as an explicit mask of the chunk (bool,
    or additive float with ALiBi's -slope |j - diag(i)|) unless the chunk is the whole sequence. A chunk
    no query can see is not computed: output 0, lse -inf, which merge_attention ignores.
    """
    att, _ = _np_attention()
    from .attention import additive_mask

    # Arrays that were pickled (dask.distributed moves blocks between workers) carry a dtype object equal
    # to, but not the same object as, NumPy's float32/float64; native bindings that compare dtypes by
    # identity reject them. A view with the canonical dtype is free where the byte order is native; a
    # byte-swapped chunk ('>f2' here) is converted, never reinterpreted.
    # (bfloat16, ml_dtypes' kind 'V' dtype, is left as it is: normexp.attention handles its byte order.)
    k, v, q = (np.asarray(a) for a in (k, v, q))
    k, v, q = (_canonical_float(a) if a.dtype.kind == "f" else a for a in (k, v, q))
    user = rest[0] if has_mask else None
    lq, lc = q.shape[-2], k.shape[-2]
    s = int(start[0])
    out_shape = q.shape[:-1] + (v.shape[-1] + 1,)
    whole = s == 0 and lc == lkv
    kw: dict[str, Any] = dict(scale=scale, softcap=softcap, return_lse=True)
    mask = user
    if whole:
        kw.update(is_causal=is_causal, window=window or None, alibi_slopes=alibi,
                  causal_alignment="bottom_right" if bottom_right else "top_left")
    else:
        keep = _position_mask(lq, lkv, s, lc, is_causal, window, bottom_right)
        if lc == 0 or (keep is not None and not keep.any()):
            part = np.zeros(out_shape, dtype=q.dtype)
            part[..., -1] = -np.inf
            return part[None]
        if alibi is not None:
            diag = np.arange(lq)[:, None] + (lkv - lq if bottom_right else 0)
            dist = np.abs(s + np.arange(lc)[None, :] - diag).astype(np.float64)
            bias = (-np.asarray(alibi, np.float64)[..., None, None] * dist).astype(q.dtype)  # (..., Hq, Lq, Lc)
            if user is not None and user.dtype == np.bool_:
                bias = np.where(user, bias, q.dtype.type(-np.inf))
            elif user is not None:
                bias = bias + additive_mask(user, q.dtype)
            mask = bias if keep is None else np.where(keep, bias, q.dtype.type(-np.inf))
        elif keep is not None:
            if user is None:
                mask = keep
            elif user.dtype == np.bool_:
                mask = user & keep
            else:
                mask = np.where(keep, additive_mask(user, q.dtype), q.dtype.type(-np.inf))
    if isa:
        with _api.use_isa(isa):
            out, lse = att(q, k, v, mask=mask, **kw)
    else:
        out, lse = att(q, k, v, mask=mask, **kw)
    part = np.empty(out_shape, dtype=q.dtype)
    part[..., :-1] = out
    part[..., -1] = lse
    return part[None]


def _merge_sinks(merged: np.ndarray, sinks: np.ndarray) -> np.ndarray:
    """The attention sinks (..., Hq) merged into (out, lse) packed as (..., Hq, Lq, Dv + 1): a sink is a
    part with output 0 and lse sink_h (merge_attention's rule, as the native attention applies it)."""
    _, merge = _np_attention()
    merged = _canonical_float(np.asarray(merged))
    out = np.ascontiguousarray(merged[..., :-1])
    lse = np.ascontiguousarray(merged[..., -1])
    sink_lse = np.ascontiguousarray(np.broadcast_to(np.asarray(sinks, merged.dtype)[..., None], lse.shape))
    o, l_ = merge([out, np.zeros_like(out)], [lse, sink_lse])
    res = np.empty(merged.shape, dtype=merged.dtype)
    res[..., :-1] = o
    res[..., -1] = l_
    return res


def _merge_attention_parts(parts: np.ndarray, axis: Any = 0, keepdims: bool = True) -> np.ndarray:
    """merge_attention over the parts stacked on axis 0 (out and lse packed as in _attention_chunk)."""
    _, merge = _np_attention()
    parts = _canonical_float(np.asarray(parts))  # canonical dtype (see _attention_chunk)
    outs = [np.ascontiguousarray(parts[i, ..., :-1]) for i in range(parts.shape[0])]
    lses = [np.ascontiguousarray(parts[i, ..., -1]) for i in range(parts.shape[0])]
    out, lse = merge(outs, lses)
    merged = np.empty(parts.shape[1:], dtype=parts.dtype)
    merged[..., :-1] = out
    merged[..., -1] = lse
    return merged[None]


def attention(q: Any, k: Any, v: Any, *, mask: Any = None, is_causal: bool = False, scale: float | None = None,
              window: int | None = None, softcap: float | None = None, alibi_slopes: Any = None,
              causal_alignment: str = "top_left", sinks: Any = None, return_lse: bool = False,
              split_every: Any = None) -> Any:
    """Lazy :func:`normexp.attention` with keys and values chunked along the sequence (dimension -2).

    Each key/value chunk's partial attention and its log-sum-exp come from
    ``normexp.attention(q, k_chunk, v_chunk, return_lse=True)`` on the worker that holds the chunk, and
    the partials are tree-merged with ``normexp.merge_attention`` (the log-sum-exp rule): exact, for a
    KV cache that lives on many workers. Only q (small when decoding) and the partial results travel.

    Parameters are those of :func:`normexp.attention` (layout ``(..., H, L, D)``, grouped-query heads,
    bool or additive ``mask`` broadcastable to ``(..., Hq, Lq, Lkv)``, ``is_causal``, ``window``,
    ``softcap``, ``alibi_slopes``, ``causal_alignment``, ``sinks``), plus ``split_every`` (the merge tree's
    fan-in). Sinks join once, after the chunks are merged: one more part with output 0 and lse ``sink_h``.
    k and v are dask arrays (the other dimensions are made single chunks); q and mask may be NumPy or
    dask arrays (q is given whole to every chunk; a mask's key dimension follows k's chunks). Causal,
    window and ALiBi refer to positions in the whole sequence: chunks that straddle the diagonal or the
    window edge get them as an explicit mask of their size, chunks no query sees are skipped.

    dtypes as :func:`normexp.attention` (16-bit k/v chunks are read as stored). With 16-bit operands the
    chunks compute against q in float32 (a 16-bit q is widened once, it is small), the partials and their
    merge are float32 and lse is float32; the output is rounded to q's dtype at the end (within one 16-bit
    rounding of the float32 result, not the single rounding of normexp.attention).

    Returns a dask array ``(..., Hq, Lq, Dv)``, or ``(out, lse)`` with lse ``(..., Hq, Lq)``.
    """
    if not isinstance(k, da.Array) or not isinstance(v, da.Array):
        raise TypeError(
            "normexp.dask.attention takes k and v as dask.array.Array (chunked along the sequence); "
            "use normexp.attention for NumPy arrays"
        )
    from .attention import check_dtypes, is_16bit

    q = q if isinstance(q, da.Array) else _api.as_array(q, "q")
    for a, name in ((q, "q"), (k, "k"), (v, "v")):
        if a.dtype not in (np.dtype(np.float32), np.dtype(np.float64)) and not is_16bit(a.dtype):
            raise TypeError(f"{name}: attention takes float32, float64, float16 or bfloat16 arrays, got {a.dtype}")
    cdtype = check_dtypes(q.dtype, k.dtype, v.dtype)  # the partials' dtype (float32 for 16-bit operands)
    out_dtype = q.dtype
    q = q if isinstance(q, da.Array) else da.from_array(q)
    q = q.astype(cdtype) if q.dtype != cdtype else q  # a 16-bit q widened (small); k and v stay as stored
    nd = q.ndim
    if nd < 2 or k.ndim != nd or v.ndim != nd:
        raise ValueError(f"q, k and v must have the same number of dimensions (at least 2: len, head_dim); "
                         f"got shapes {q.shape}, {k.shape}, {v.shape}")
    for a, name in ((q, "q"), (k, "k"), (v, "v")):
        if any(np.isnan(c) for cs in a.chunks for c in cs):
            raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    if q.shape[:-3] != k.shape[:-3] or q.shape[:-3] != v.shape[:-3]:
        raise ValueError(f"batch dimensions must match: q {q.shape[:-3]}, k {k.shape[:-3]}, v {v.shape[:-3]}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"head_dim: q has {q.shape[-1]} but k has {k.shape[-1]} (the last dimension of q and k must match)")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"key length: k has {k.shape[-2]} but v has {v.shape[-2]} (dimension -2 of k and v must match)")
    if nd >= 3:
        hq, hk = q.shape[-3], k.shape[-3]
        if v.shape[-3] != hk:
            raise ValueError(f"heads: k has {hk} key/value heads but v has {v.shape[-3]} (dimension -3 must match)")
        if (hk == 0 and hq != 0) or (hk and hq % hk):
            raise ValueError(f"heads: q has {hq} heads, not a multiple of the {hk} key/value heads of k and v")
    from .attention import additive_mask, check_alibi, check_scale, check_sinks, check_softcap, check_window, is_16bit

    bottom_right = _api.choice(causal_alignment, "causal_alignment", _ALIGNMENTS) == "bottom_right"
    is_causal = _api.flag(is_causal, "is_causal")
    return_lse = _api.flag(return_lse, "return_lse")
    lq, lkv, dv = q.shape[-2], k.shape[-2], v.shape[-1]
    win = check_window(window, lq, lkv)
    # Checked here, in q's dtype, so that the graph is refused when it is built; the values are passed
    # on as given (the chunks' normexp.attention calls take them).
    check_scale(scale, cdtype, q.shape[-1])
    check_softcap(softcap, cdtype)
    split_every = _check_split_every(split_every, k.numblocks[-2])
    full = q.shape[:-2] + (lq, lkv)
    alibi = None
    if alibi_slopes is not None:
        alibi = check_alibi(alibi_slopes, q.dtype, lq, lkv, bottom_right)
        if nd == 2:  # one head
            if alibi.size != 1:
                raise ValueError(f"alibi_slopes with shape {alibi.shape} for 2-d inputs (one head) must have one value")
            alibi = alibi.reshape(())
        else:
            try:
                alibi = np.broadcast_to(alibi, q.shape[:-2]).copy()
            except ValueError:
                raise ValueError(f"alibi_slopes with shape {alibi.shape} cannot be broadcast to (..., Hq) = {q.shape[:-2]}") from None

    sinks_b = None
    if sinks is not None:
        sinks_b = check_sinks(sinks, q.dtype)
        heads = q.shape[:-2]  # (..., Hq); () for 2-d inputs (one head)
        try:
            sinks_b = np.broadcast_to(sinks_b.reshape(()) if nd == 2 and sinks_b.size == 1 else sinks_b, heads).copy()
        except ValueError:
            raise ValueError(f"sinks with shape {sinks_b.shape} cannot be broadcast to (..., Hq) = {heads}") from None

    # Every dimension one chunk except the sequence of k and v (v follows k's chunks).
    seq = nd - 2
    k = k.rechunk({d: -1 for d in range(nd) if d != seq})
    v = v.rechunk({d: (k.chunks[seq] if d == seq else -1) for d in range(nd)})
    q = q.rechunk(-1)
    starts = np.concatenate([[0], np.cumsum(k.chunks[seq])[:-1]]).astype(np.int64)
    start_arr = da.from_array(starts, chunks=1)

    kidx = tuple(f"k{d}" for d in range(nd))
    kidx = kidx[:seq] + ("seq",) + kidx[seq + 1 :]
    vidx = tuple(f"v{d}" for d in range(nd))
    vidx = vidx[:seq] + ("seq",) + vidx[seq + 1 :]
    qidx = tuple(f"q{d}" for d in range(nd))
    args: list[Any] = [k, kidx, v, vidx, q, qidx, start_arr, ("seq",)]
    if mask is not None:
        m = mask if isinstance(mask, da.Array) else _api.as_array(mask, "mask")
        if m.dtype != np.bool_ and not (m.dtype.kind == "f" or is_16bit(m.dtype)):
            raise TypeError(f"mask must be bool (True keeps) or a float additive mask, got dtype {m.dtype}")
        if not isinstance(m, da.Array):
            if m.dtype != np.bool_:
                additive_mask(m, q.dtype)  # refused now, not when a task casts it
            m = da.from_array(m)
        if m.ndim > len(full):
            raise ValueError(f"mask with shape {m.shape} has more dimensions than the scores {full}")
        try:
            np.broadcast_shapes(m.shape, full)
        except ValueError:
            raise ValueError(f"mask with shape {m.shape} cannot be broadcast to the scores' shape {full} (..., Hq, Lq, Lkv)") from None
        keyed = m.ndim >= 1 and m.shape[-1] == lkv and lkv != 1
        m = m.rechunk({d: (k.chunks[seq] if keyed and d == m.ndim - 1 else -1) for d in range(m.ndim)})
        midx = tuple(f"m{d}" for d in range(m.ndim))
        if keyed:
            midx = midx[:-1] + ("seq",)
        args += [m, midx]
    out_idx = ("seq",) + qidx[:-1] + ("dvp",)
    parts = da.blockwise(
        _attention_chunk, out_idx, *args,
        new_axes={"dvp": dv + 1}, adjust_chunks={"seq": 1}, concatenate=True, align_arrays=False,
        dtype=q.dtype, meta=_meta(nd + 1, q.dtype), name="normexp-attention-part",
        has_mask=mask is not None, lkv=lkv, scale=scale, softcap=softcap, alibi=alibi,
        is_causal=is_causal, window=win, bottom_right=bottom_right,
        isa=_api.current_isa_override(),
    )
    merged = da.reduction(
        parts, chunk=_identity_parts, combine=_merge_attention_parts, aggregate=_merge_attention_parts,
        axis=0, keepdims=True, dtype=q.dtype, split_every=split_every, concatenate=True,
        meta=_meta(nd + 1, q.dtype), name="normexp-attention-merge",
    )[0]
    if sinks_b is not None:
        merged = merged.map_blocks(_merge_sinks, sinks=sinks_b, dtype=q.dtype, meta=_meta(nd, q.dtype),
                                   name="normexp-attention-sinks")
    out = merged[..., :dv]
    if out_dtype != cdtype:
        out = out.astype(out_dtype)
    if return_lse:
        return out, merged[..., dv]
    return out
