"""Scaled dot-product attention on the CPU: blocked (flash-style), never forming the Lq x Lkv scores.

``attention`` checks and broadcasts its arguments here, turns every tensor into a 4-d strided view
(batch, heads, length, dim) without copying, and calls the native driver (cpp/src/attention.cpp).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Sequence

import numpy as np

from . import _api, _core, _interop
from ._api import is_16bit

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F32 = np.dtype(np.float32)
_ALIGNMENTS = ("top_left", "bottom_right")




def _real_float(dtype: np.dtype) -> bool:
    """A real floating dtype, ml_dtypes.bfloat16 included (a bfloat16 model's sinks, slopes and additive
    masks come in bfloat16; NumPy files it under kind 'V')."""
    return dtype.kind == "f" or is_16bit(dtype)


def _float_tensor(x: Any, name: str, fn: str = "attention") -> np.ndarray:
    a = _api.as_array(x, name)
    if a.dtype in _FLOATS:
        return a
    if is_16bit(a.dtype):
        return _api.native_order(a)
    raise TypeError(
        f"{name}: {fn} takes float32, float64, float16 or bfloat16 arrays, got {a.dtype}; "
        f"cast with {name}.astype(np.float32)"
    )


def check_dtypes(q: np.dtype, k: np.dtype, v: np.dtype, kv_names: tuple[str, str] = ("k", "v"),
                 fn: str = "attention") -> np.dtype:
    """The dtype the kernels compute in (float32 for 16-bit operands) for a supported combination of the
    dtypes of q, k and v (named kv_names in the caller); TypeError naming the supported combinations
    otherwise."""
    if k == v and (q == k or (q == _F32 and is_16bit(k))):
        return _F32 if is_16bit(q) or is_16bit(k) else q
    kn, vn = kv_names
    raise TypeError(
        f"q, {kn}, {vn} have dtypes {q}, {k}, {v}; {fn} takes q, {kn} and {vn} all float32, all float64, all "
        f"float16 or all bfloat16, or float32 q with float16 or bfloat16 {kn} and {vn}"
    )


def _work_buffer(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Where the kernels write: out itself, or a new array when there is no out, when out may share memory
    with an input (may_share_memory: a bounds check, exact overlap tests can be slow; a false positive only
    costs a copy) or when the kernels cannot address it."""
    if out is None or any(np.may_share_memory(out, a) for a in inputs) or out is not _kernel_view(out):
        return np.empty(shape, dtype)
    return out


def _finish(res: np.ndarray, out: np.ndarray | None, lse: np.ndarray | None, return_lse: bool) -> Any:
    """The result, copied into out if the kernels wrote elsewhere; with lse when asked."""
    if out is not None and res is not out:
        np.copyto(out, res)
        res = out
    return (res, lse) if return_lse else res


def _as_4d(a: np.ndarray, nbatch: int) -> np.ndarray | None:
    """a (batch..., H, L, D) as a 4-d view (B, H, L, D); None if the batch dimensions cannot be merged
    without a copy."""
    if nbatch == 1:
        return a
    if nbatch == 0:
        return a.reshape((1,) + a.shape)
    b = a.view()
    try:
        b.shape = (math.prod(a.shape[:nbatch]),) + a.shape[nbatch:]
    except AttributeError:
        return None
    return b


def _per_head_2d(a: np.ndarray | None, nbatch: int) -> np.ndarray | None:
    """A per-head array (batch..., H) as a 2-d view (B, H); None if absent or if the batch dimensions
    cannot be merged without a copy."""
    if a is None:
        return None
    b = _as_4d(a.reshape(a.shape + (1, 1)), nbatch)
    return None if b is None else b[..., 0, 0]


def _kernel_view(a: np.ndarray) -> np.ndarray:
    """a itself when the kernels can read it (aligned, strides a multiple of the item size), else a copy.
    (Item sizes are powers of two: a stride's low bits are zero iff those of all strides or-ed together are,
    a test ~1 us cheaper per array than one remainder per stride, which a decode step paid for four arrays.)"""
    if a.flags.aligned and not functools.reduce(operator.or_, a.strides, 0) % a.itemsize:
        return a
    return np.array(a, copy=True)


@_interop.dlpack_io("q", "k", "v")
def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    is_causal: bool = False,
    scale: float | None = None,
    window: int | None = None,
    softcap: float | None = None,
    alibi_slopes: Any = None,
    causal_alignment: str = "top_left",
    sinks: Any = None,
    return_lse: bool = False,
    out: Any = None,
) -> Any:
    """Scaled dot-product attention ``softmax(q k^T * scale + bias) v``, blocked like FlashAttention.

    The scores are processed in key/value blocks with an online softmax, so the ``Lq x Lkv`` score
    matrix is never formed: extra memory is O(threads x block) whatever the lengths.

    Parameters
    ----------
    q, k, v : array_like or CPU tensors (torch, JAX; results of their type)
        dtypes: all float32, all float64, all float16 or all ``ml_dtypes.bfloat16`` (torch bfloat16
        tensors arrive as such), or a float32 q with a float16 or bfloat16 k and v (a 16-bit KV cache).
        16-bit k and v are read as stored and widened in registers (never copied whole to float32); products,
        the softmax and the output accumulate in float32; the output has q's dtype, rounded once.
        Layout of ``torch.nn.functional.scaled_dot_product_attention``: q ``(..., Hq, Lq, D)``,
        k ``(..., Hkv, Lkv, D)``, v ``(..., Hkv, Lkv, Dv)``; also 3-d ``(H, L, D)`` and 2-d ``(L, D)``.
        Leading batch dimensions must match. Any strides (e.g. a ``(B, L, H, D)`` buffer seen as
        ``(B, H, L, D)`` through ``swapaxes``) are read in place. Grouped-query / multi-query attention:
        ``Hq`` a multiple of ``Hkv``; query head ``h`` reads key/value head ``h // (Hq // Hkv)``.
    mask : array_like, optional
        Broadcastable to ``(..., Hq, Lq, Lkv)`` and never expanded in memory. bool: True keeps a score,
        False masks it out. float: added to the scores (``-inf`` masks out); cast to q's dtype
        (to float32 when q, k or v is 16-bit).
    is_causal : bool
        Query ``i`` sees keys ``j <= diag(i)``; see ``causal_alignment``.
    scale : float, optional
        Multiplies ``q k^T``; default ``1 / sqrt(D)``. Must be finite and non-zero.
    window : int, optional
        Sliding window: query ``i`` sees at most ``window`` keys ending at its diagonal, i.e. keys
        ``j > diag(i) - window`` (with ``is_causal``: ``diag(i) - window < j <= diag(i)``, the
        Mistral/Gemma convention; ``window=w`` is flash-attn's ``window_size=(w - 1, 0)``).
    softcap : float, optional
        Scores become ``softcap * tanh(score / softcap)`` before ALiBi and the mask (Gemma 2).
    alibi_slopes : array_like, optional
        Shape ``(Hq,)`` or broadcastable to ``(..., Hq)``: adds ``-slope * |j - diag(i)|`` to the scores
        (flash-attn's definition; with ``is_causal`` this is the original ALiBi ``slope * (j - i)`` up
        to a per-row constant that the softmax cancels).
    causal_alignment : {"top_left", "bottom_right"}
        Where the diagonal lies when ``Lq != Lkv``: ``diag(i) = i`` (``"top_left"``, PyTorch's
        ``is_causal``) or ``diag(i) = i + Lkv - Lq`` (``"bottom_right"``: the last query sees every
        key, as decoding with a KV cache needs; flash-attn's convention). Also places ``window`` and
        ALiBi.
    sinks : array_like, optional
        Attention-sink logits, shape ``(Hq,)`` or broadcastable to ``(..., Hq)``: one more term of each
        row's softmax with no value row (gpt-oss; ONNX Runtime's and vLLM's ``sinks``),
        ``out_i = sum_j exp(s_ij - M) v_j / (exp(sink_h - M) + sum_j exp(s_ij - M))`` with ``s`` the final
        scores and ``M`` the maximum over the row and the sink. Each is finite in the kernels' dtype
        (float32 for 16-bit inputs), or ``-inf``
        (no effect). The sink is not scaled, soft-capped or masked.
    return_lse : bool
        Also return ``lse`` of shape ``(..., Hq, Lq)``: the log-sum-exp of each row's final scores,
        including the sink (for :func:`merge_attention`); float32 when q, k or v is 16-bit, else q's dtype.
    out : ndarray or torch tensor, optional
        ``(..., Hq, Lq, Dv)`` of q's dtype, writeable; receives the result.

    Returns ``out``, or ``(out, lse)``. A row whose keys are all masked out gives output 0 and lse
    ``-inf`` (never NaN), or ``sink_h`` with sinks. A NaN in a row's scores makes that row NaN.
    """
    is_causal = _api.flag(is_causal, "is_causal")
    return_lse = _api.flag(return_lse, "return_lse")
    q = _float_tensor(q, "q")
    k = _float_tensor(k, "k")
    v = _float_tensor(v, "v")
    cdtype = check_dtypes(q.dtype, k.dtype, v.dtype)  # the kernels' dtype: options, masks and lse are in it
    dtype = q.dtype  # the output's
    nd = q.ndim
    if nd < 2:
        raise ValueError(f"q must have at least 2 dimensions (len, head_dim), got shape {q.shape}")
    if k.ndim != nd or v.ndim != nd:
        raise ValueError(f"q, k and v must have the same number of dimensions; got {q.ndim}, {k.ndim}, {v.ndim}")
    if nd == 2:  # (L, D): one head
        if out is not None:
            out = _api.check_out(out, (q.shape[0], v.shape[1]), dtype)
        r = attention(
            q[None], k[None], v[None], mask=mask, is_causal=is_causal, scale=scale, window=window, softcap=softcap,
            alibi_slopes=alibi_slopes, causal_alignment=causal_alignment, sinks=sinks, return_lse=return_lse,
            out=None if out is None else out[None],
        )
        if return_lse:
            return (out if out is not None else r[0][0]), r[1][0]
        return out if out is not None else r[0]
    nb = max(0, nd - 3)
    batch = q.shape[:nb]
    if k.shape[:nb] != batch or v.shape[:nb] != batch:
        raise ValueError(f"batch dimensions must match: q {batch}, k {k.shape[:nb]}, v {v.shape[:nb]}")
    hq = q.shape[-3] if nd >= 3 else 1
    hk = k.shape[-3] if nd >= 3 else 1
    lq, d = q.shape[-2:]
    lk, dk = k.shape[-2:]
    lv, dv = v.shape[-2:]
    if dk != d:
        raise ValueError(f"head_dim: q has {d} but k has {dk} (the last dimension of q and k must match)")
    if lv != lk:
        raise ValueError(f"key length: k has {lk} but v has {lv} (dimension -2 of k and v must match)")
    if nd >= 3 and v.shape[-3] != hk:
        raise ValueError(f"heads: k has {hk} key/value heads but v has {v.shape[-3]} (dimension -3 must match)")
    if hk == 0 and hq != 0 or hk and hq % hk:
        raise ValueError(f"heads: q has {hq} heads, not a multiple of the {hk} key/value heads of k and v")

    sc = check_scale(scale, cdtype, d)
    win = check_window(window, lq, lk)
    cap = check_softcap(softcap, cdtype)
    bottom_right = _api.choice(causal_alignment, "causal_alignment", _ALIGNMENTS) == "bottom_right"

    full = batch + (hq, lq, lk)
    mask_b = None
    if mask is not None:
        m = _api.as_array(mask, "mask")
        if m.dtype != np.bool_:
            if not _real_float(m.dtype):
                raise TypeError(f"mask must be bool (True keeps) or a float additive mask, got dtype {m.dtype}")
            m = additive_mask(m, cdtype)
        if m.ndim > len(full):
            raise ValueError(f"mask with shape {m.shape} has more dimensions than the scores {full}")
        try:
            mask_b = np.broadcast_to(m, full)
        except ValueError:
            raise ValueError(f"mask with shape {m.shape} cannot be broadcast to the scores' shape {full} (..., Hq, Lq, Lkv)") from None
        mask_b = _kernel_view(mask_b) if mask_b.dtype != np.bool_ else mask_b
    alibi_b = None
    if alibi_slopes is not None:
        s = check_alibi(alibi_slopes, cdtype, lq, lk, bottom_right)
        try:
            alibi_b = np.broadcast_to(s, batch + (hq,))
        except ValueError:
            raise ValueError(f"alibi_slopes with shape {s.shape} cannot be broadcast to (..., Hq) = {batch + (hq,)}") from None

    sinks_b = None
    if sinks is not None:
        s = check_sinks(sinks, cdtype)
        try:
            sinks_b = np.broadcast_to(s, batch + (hq,))
        except ValueError:
            raise ValueError(f"sinks with shape {s.shape} cannot be broadcast to (..., Hq) = {batch + (hq,)}") from None

    out_shape = batch + (hq, lq, dv)
    if out is not None:
        out = _api.check_out(out, out_shape, dtype)
    res = _work_buffer(out, out_shape, dtype, [a for a in (q, k, v, mask_b) if a is not None])
    lse = np.empty(batch + (hq, lq), cdtype) if return_lse else None

    if res.size or (lse is not None and lse.size):
        q, k, v = _kernel_view(q), _kernel_view(k), _kernel_view(v)
        isa = _api.current_isa_override()
        args = dict(is_causal=bool(is_causal), bottom_right=bottom_right, scale=sc, window=win, softcap=cap, isa=isa)
        views = [_as_4d(q, nb), _as_4d(k, nb), _as_4d(v, nb), _as_4d(res, nb)]
        mask4 = _as_4d(mask_b, nb) if mask_b is not None else None
        lse4 = _as_4d(lse.reshape(lse.shape + (1,)), nb)[..., 0] if lse is not None else None
        alibi2 = _per_head_2d(alibi_b, nb)
        sinks2 = _per_head_2d(sinks_b, nb)
        if all(x is not None for x in views) and (mask_b is None or mask4 is not None) and (
            alibi_b is None or alibi2 is not None
        ) and (sinks_b is None or sinks2 is not None):
            _core.attention(*views, lse4, mask4, alibi=alibi2, sinks=sinks2, **args)
        else:  # batch dimensions that cannot be merged without a copy: one call per batch index
            for idx in np.ndindex(*batch):
                one = lambda a: a[idx][None]  # noqa: E731
                _core.attention(
                    one(q), one(k), one(v), one(res),
                    one(lse) if lse is not None else None,
                    one(mask_b) if mask_b is not None else None,
                    alibi=one(alibi_b) if alibi_b is not None else None,
                    sinks=one(sinks_b) if sinks_b is not None else None,
                    **args,
                )
    return _finish(res, out, lse, return_lse)


@_interop.dlpack_io("outs", "lses")
def merge_attention(outs: Sequence[Any], lses: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Combine attentions computed over disjoint key/value blocks into the attention over all of them.

    ``outs[p]`` ``(..., Lq, Dv)`` and ``lses[p]`` ``(..., Lq)`` are the results of
    ``attention(q, k_p, v_p, ..., return_lse=True)`` for the blocks ``k_p, v_p`` of the keys (with the
    same q, scale and options; a block's mask, ALiBi and causal alignment must describe its keys'
    positions in the whole sequence). Uses the log-sum-exp rule::

        lse = log(sum_p exp(lse_p)),   out = sum_p exp(lse_p - lse) * out_p

    which is exact up to rounding: this is how attention over a KV cache is split across threads,
    processes or machines. Returns ``(out, lse)``, so merges compose. Rows that are fully masked in every
    part give 0 and ``-inf``. dtypes: outs all float32, float64, float16 or bfloat16, lses of the same dtype
    (float32 for 16-bit outs, as ``attention`` returns them); 16-bit parts are merged in float32 and double
    and the output is rounded once to their dtype.
    """
    for name, parts in (("outs", outs), ("lses", lses)):
        scalar_array = isinstance(parts, np.ndarray) and parts.ndim == 0
        if isinstance(parts, (str, bytes)) or not hasattr(parts, "__iter__") or scalar_array:
            raise TypeError(f"{name} must be a sequence of arrays (one per key/value block), got {type(parts).__name__}")
    if isinstance(outs, np.ndarray) or isinstance(lses, np.ndarray):
        outs = list(outs)
        lses = list(lses)
    outs = [_float_tensor(o, f"outs[{i}]", "merge_attention") for i, o in enumerate(outs)]
    lses = [_float_tensor(l_, f"lses[{i}]", "merge_attention") for i, l_ in enumerate(lses)]
    if len(outs) != len(lses):
        raise ValueError(f"outs has {len(outs)} parts but lses has {len(lses)}")
    if not outs:
        raise ValueError("merge_attention needs at least one part")
    dtype = outs[0].dtype
    ldtype = _F32 if is_16bit(dtype) else dtype
    for name, parts, want in (("outs", outs, dtype), ("lses", lses, ldtype)):
        for i, a in enumerate(parts):
            if a.dtype != want and name == "outs":
                raise TypeError(f"outs[{i}] has dtype {a.dtype}, but outs[0] has {dtype}; all outs must share a dtype")
            if a.dtype != want:
                why = " (attention returns float32 lses for 16-bit outputs)" if is_16bit(dtype) else " (the outs' dtype)"
                raise TypeError(f"lses[{i}] has dtype {a.dtype}; with {dtype} outs the lses must be {ldtype}{why}")
    shape = outs[0].shape
    if len(shape) < 1:
        raise ValueError("outs[0] must have at least 1 dimension (..., Dv)")
    for i, o in enumerate(outs):
        if o.shape != shape:
            raise ValueError(f"outs[{i}] has shape {o.shape}, but outs[0] has {shape}")
    for i, l_ in enumerate(lses):
        if l_.shape != shape[:-1]:
            raise ValueError(f"lses[{i}] has shape {l_.shape}, expected {shape[:-1]} (the shape of outs without its last dimension)")
    rows = math.prod(shape[:-1])
    dv = shape[-1]
    out = np.empty(shape, dtype)
    lse = np.empty(shape[:-1], ldtype)
    if out.size or lse.size:
        _core.merge_attention(
            [np.ascontiguousarray(o).reshape(rows, dv) for o in outs],
            [np.ascontiguousarray(l_).reshape(rows) for l_ in lses],
            out.reshape(rows, dv),
            lse.reshape(rows),
        )
    return out, lse


_INT32_MAX = 2**31 - 1


def _beyond_int32(a: np.ndarray) -> np.ndarray:
    """Where an integer array holds a value int32 cannot (unsigned: only above; NumPy compares exactly)."""
    return a > _INT32_MAX if a.dtype.kind == "u" else (a > _INT32_MAX) | (a < -_INT32_MAX - 1)


def _index_array(x: Any, name: str, ndim: int, *, convert: bool = True) -> np.ndarray:
    """An integer array of ndim dimensions as C-contiguous int32 (TypeError for other dtypes, ValueError for
    another rank or values beyond int32); with convert=False in its own integer dtype, values unchecked."""
    a = _api.as_array(x, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (int32), got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension{'s' if ndim > 1 else ''}, got shape {a.shape}")
    if not convert:
        return a
    if a.dtype != np.int32 and a.size and (int(a.max()) > _INT32_MAX or int(a.min()) < -_INT32_MAX - 1):
        at = tuple(int(i) for i in np.argwhere(_beyond_int32(a))[0])
        where = ", ".join(str(i) for i in at)
        raise ValueError(f"{name}[{where}] = {int(a[at])} is beyond the int32 range (the library's index type)")
    return np.ascontiguousarray(a, dtype=np.int32)


def _table_int32(table: np.ndarray, lens: np.ndarray, psize: int, npages: int) -> np.ndarray:
    """A block table of another integer type or layout as C-contiguous int32. Only the entries a sequence
    reads (the first ceil(seq_lens[s] / page_size) of its row) are converted; the others become -1, whatever
    they held (an unsigned table's 0xFFFFFFFF padding, int64 beyond int32). A used entry beyond int32 raises
    the library's IndexError here, where its value is still known; the library checks the rest."""
    need = (np.maximum(lens.astype(np.int64), 0) + max(psize, 1) - 1) // max(psize, 1)
    used = np.arange(table.shape[1])[None, :] < need[:, None]
    if table.dtype.itemsize >= 4 and table.dtype != np.int32:
        beyond = _beyond_int32(table) & used
        if beyond.any():
            s, j = (int(i) for i in np.argwhere(beyond)[0])
            raise _core.NormexpIndexError(
                f"normexp.paged_attention: block_table[{s}, {j}] = {int(table[s, j])}: page {j} of sequence {s} is "
                f"not a page of the pool (k_pages has {npages} pages)"
            )
    return np.ascontiguousarray(np.where(used, table.astype(np.int64, copy=False), -1), dtype=np.int32)


@_interop.dlpack_io("q", "k_pages", "v_pages")
def paged_attention(
    q: Any,
    k_pages: Any,
    v_pages: Any,
    block_table: Any,
    seq_lens: Any,
    *,
    query_start: Any = None,
    is_causal: bool = True,
    scale: float | None = None,
    sinks: Any = None,
    window: int | None = None,
    softcap: float | None = None,
    alibi_slopes: Any = None,
    return_lse: bool = False,
    out: Any = None,
) -> Any:
    """Attention of a batch of sequences whose keys and values live in the pages of a shared pool (a paged
    KV cache, as an inference server with continuous batching keeps it).

    Sequence ``s`` has ``seq_lens[s]`` keys; key ``j`` of it is row ``j % page_size`` of page
    ``block_table[s, j // page_size]``. Its new tokens are rows ``query_start[s]:query_start[s + 1]`` of
    ``q``: one for a decoding sequence, many for a prompt being prefilled (in chunks), none for a sequence
    that waits. Each query attends to its own sequence's keys only, with bottom-right causal alignment: the
    last query of a sequence sits at its last key. The result is that of :func:`attention` over each
    sequence's pages gathered into a contiguous cache (``causal_alignment="bottom_right"``), without the
    gather.

    Parameters
    ----------
    q : array_like or CPU tensor, ``(total_queries, Hq, D)``
        The new tokens of all sequences packed one after another.
    k_pages, v_pages : ``(num_pages, page_size, Hkv, D)`` and ``(num_pages, page_size, Hkv, Dv)``
        The pool (any strides). dtypes as :func:`attention`: q and the pages all float32, float64, float16
        or bfloat16, or float32 q over float16 / bfloat16 pages (read in place, widened in registers). ``Hq`` a multiple of ``Hkv`` (grouped-query / multi-query attention:
        query head ``h`` reads key/value head ``h // (Hq // Hkv)``).
    block_table : integer ``(num_seqs, max_pages)``
        Page indices of each sequence in order. Only the first ``ceil(seq_lens[s] / page_size)`` entries
        of row ``s`` are read (the rest may hold anything, e.g. -1); each of those must be a page of the pool.
    seq_lens : integer ``(num_seqs,)``
        Keys of each sequence (>= 0), the new tokens included.
    query_start : integer ``(num_seqs + 1,)``, optional
        Cumulative offsets into q: 0 first, ``total_queries`` last, non-decreasing. Default: one query per
        sequence (a decode step), ``arange(num_seqs + 1)``.
    is_causal : bool
        Query ``r`` of ``n`` new ones sees keys ``j <= seq_len - n + r`` (default True).
    scale, window, softcap, alibi_slopes, sinks :
        As in :func:`attention` (per query head; ``alibi_slopes`` and ``sinks`` of shape ``(Hq,)``), with
        the diagonal ``diag(r) = seq_len - n + r`` of each sequence.
    return_lse : bool
        Also return ``lse`` ``(total_queries, Hq)`` (the sink included); float32 for 16-bit inputs.
    out : ndarray or tensor ``(total_queries, Hq, Dv)`` of q's dtype, optional
        Receives the result.

    Returns ``out``, or ``(out, lse)``. Every page index, length and offset is checked before anything is
    read: a bad table raises ``IndexError`` (a page index outside the pool; also a ``ValueError``) or
    ``ValueError`` (lengths and offsets), naming the sequence and the entry. Work is split over (sequence,
    head, query block) and, for sequences with few new queries, key ranges, so one long sequence does not
    serialize a batch; results are bit-identical for every thread count. A sequence's key split is its share
    of the batch's keys: alone it gives the bits of :func:`attention`, in a batch the same values up to
    rounding.
    """
    is_causal = _api.flag(is_causal, "is_causal")
    return_lse = _api.flag(return_lse, "return_lse")
    q = _float_tensor(q, "q", "paged_attention")
    k_pages = _float_tensor(k_pages, "k_pages", "paged_attention")
    v_pages = _float_tensor(v_pages, "v_pages", "paged_attention")
    cdtype = check_dtypes(q.dtype, k_pages.dtype, v_pages.dtype, ("k_pages", "v_pages"), "paged_attention")
    dtype = q.dtype  # the output's
    if q.ndim != 3:
        raise ValueError(f"q must have 3 dimensions (total_queries, heads_q, head_dim), got shape {q.shape}")
    for name, a in (("k_pages", k_pages), ("v_pages", v_pages)):
        if a.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions (num_pages, page_size, heads_kv, dim), got shape {a.shape}")
    nq_total, hq, d = q.shape
    npages, psize, hk, dk = k_pages.shape
    if v_pages.shape[:3] != k_pages.shape[:3]:
        raise ValueError(f"v_pages {v_pages.shape} and k_pages {k_pages.shape} must agree in (num_pages, page_size, heads_kv)")
    dv = v_pages.shape[3]
    if dk != d:
        raise ValueError(f"head_dim: q has {d} but k_pages has {dk} (the last dimension of q and k_pages must match)")
    if hk == 0 and hq != 0 or hk and hq % hk:
        raise ValueError(f"heads: q has {hq} heads, not a multiple of the {hk} key/value heads of k_pages and v_pages")

    # The library checks every offset, length and page index it reads (normexp.paged_attention: IndexError
    # for a page outside the pool, ValueError for the rest, naming the sequence and the entry); here only the
    # shapes, and a table of another integer type, whose used entries must hold int32 values to be converted.
    table = _index_array(block_table, "block_table", 2, convert=False)
    lens = _index_array(seq_lens, "seq_lens", 1)
    nseq = lens.shape[0]
    if table.shape[0] != nseq:
        raise ValueError(f"block_table has {table.shape[0]} rows but seq_lens has {nseq} sequences")
    if query_start is None:
        if nq_total != nseq:
            raise ValueError(
                f"q has {nq_total} queries but there are {nseq} sequences: without query_start each sequence has "
                "one new query (a decode step); pass query_start for prefills"
            )
        starts = np.arange(nseq + 1, dtype=np.int32)
    else:
        starts = _index_array(query_start, "query_start", 1)
        if starts.shape[0] != nseq + 1:
            raise ValueError(f"query_start must have num_seqs + 1 = {nseq + 1} entries, got {starts.shape[0]}")
    if table.dtype != np.int32 or not table.flags.c_contiguous:
        table = _table_int32(table, lens, psize, npages)

    sc = check_scale(scale, cdtype, d)
    # The longest sequence and the most new queries of one, for the window's clip and the ALiBi range (the
    # library checks the values: a negative length or offset here only loosens these bounds).
    max_len = max_q = 0
    if nseq and (window is not None or alibi_slopes is not None):
        max_len, max_q = max(int(lens.max()), 0), max(int(np.diff(starts).max()), 0)
    win = check_window(window, max_q, max_len)
    cap = check_softcap(softcap, cdtype)
    slopes = None
    if alibi_slopes is not None:
        a = check_alibi(alibi_slopes, cdtype, max_q, max_len, True)
        try:
            slopes = np.ascontiguousarray(np.broadcast_to(a, (hq,)))
        except ValueError:
            raise ValueError(f"alibi_slopes with shape {a.shape} cannot be broadcast to (Hq,) = ({hq},)") from None
    sink_arr = None
    if sinks is not None:
        a = check_sinks(sinks, cdtype)
        try:
            sink_arr = np.ascontiguousarray(np.broadcast_to(a, (hq,)))
        except ValueError:
            raise ValueError(f"sinks with shape {a.shape} cannot be broadcast to (Hq,) = ({hq},)") from None

    out_shape = (nq_total, hq, dv)
    if out is not None:
        out = _api.check_out(out, out_shape, dtype)
    res = _work_buffer(out, out_shape, dtype, (q, k_pages, v_pages))
    lse = np.empty((nq_total, hq), cdtype) if return_lse else None
    # Called even when there is nothing to write: the library checks the table, lengths and offsets.
    _core.paged_attention(
        _kernel_view(q), _kernel_view(k_pages), _kernel_view(v_pages), table, lens, starts, res, lse,
        is_causal=bool(is_causal), scale=sc, window=win, softcap=cap, alibi=slopes, sinks=sink_arr,
        isa=_api.current_isa_override(),
    )
    return _finish(res, out, lse, return_lse)


# ---- scalar options, checked in the dtype the kernels use ----------------------------------------------
# The kernels hold scale, softcap and the ALiBi slopes in q's dtype (kernels/kernel_table.hpp:
# attn_scores), so each is checked there: a float64 value that float32 rounds to inf or 0 would turn the
# scores into NaN (inf * 0) or silently drop the option. normexp.dask.attention uses the same checks.
# For 16-bit inputs that dtype is float32, not q's: the messages say which.
_KERNEL_DTYPE = "(the kernels' dtype: q's, float32 for 16-bit inputs)"


def _normal_range(v: float, name: str, dtype: np.dtype) -> float:
    fin = np.finfo(dtype)
    if not float(fin.tiny) <= abs(v) <= float(fin.max):
        raise ValueError(
            f"{name} {v:g} is outside the range of {np.dtype(dtype).name} {_KERNEL_DTYPE}, "
            f"[{float(fin.tiny):g}, {float(fin.max):g}] in magnitude; use float64 inputs or a smaller {name}"
        )
    return v


def check_scale(scale: Any, dtype: np.dtype, head_dim: int) -> float:
    """scale as a float: finite, non-zero and a normal number of dtype; None: 1 / sqrt(head_dim)."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim) if head_dim else 1.0
    sc = _api.real(scale, "scale")
    if not math.isfinite(sc) or sc == 0:
        raise ValueError(f"scale must be a finite non-zero number, got {_api.shown(scale)}")
    return _normal_range(sc, "scale", dtype)


def check_softcap(softcap: Any, dtype: np.dtype) -> float:
    """softcap as a float: finite, > 0 and a normal number of dtype; None: 0 (no cap)."""
    if softcap is None:
        return 0.0
    cap = _api.real(softcap, "softcap")
    if not (math.isfinite(cap) and cap > 0):
        raise ValueError(f"softcap must be a finite number > 0, got {_api.shown(softcap)}")
    return _normal_range(cap, "softcap", dtype)


def check_alibi(alibi_slopes: Any, dtype: np.dtype, lq: int, lk: int, bottom_right: bool) -> np.ndarray:
    """The slopes as float64 (not broadcast), each finite with |slope| * (the largest key distance)
    finite in dtype: the bias -slope |j - diag(i)| of every score then exists in q's dtype (an
    overflowing bias would be -inf, masking keys that are visible, or +inf, making the row NaN)."""
    s = _api.as_array(alibi_slopes, "alibi_slopes")
    if not (s.dtype.kind in "iu" or _real_float(s.dtype)):
        raise TypeError(f"alibi_slopes must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.all(np.isfinite(s)):
        raise ValueError("alibi_slopes must be finite")
    # diag(i) = i + off; the distance |j - diag(i)| is largest at a corner of the score matrix.
    off = lk - lq if bottom_right else 0
    dist = max(1, abs(lq - 1 + off), abs(lk - 1 - off)) if lq and lk else 1
    big = float(np.max(np.abs(s))) if s.size else 0.0
    limit = float(np.finfo(dtype).max) / dist
    if big > limit:
        raise ValueError(
            f"alibi_slopes: |slope| {big:g} times the largest key distance {dist} overflows "
            f"{np.dtype(dtype).name} {_KERNEL_DTYPE}; slopes must be at most {limit:g} in magnitude here"
        )
    return s


def check_sinks(sinks: Any, dtype: np.dtype) -> np.ndarray:
    """The sink logits as float64 (not broadcast): each finite in dtype (the lse that includes it must be
    representable) or -inf (a sink with no effect); NaN and +inf are refused."""
    s = _api.as_array(sinks, "sinks")
    if not (s.dtype.kind in "iu" or _real_float(s.dtype)):
        raise TypeError(f"sinks must be real numbers (one logit per query head), got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    big = float(np.finfo(dtype).max)
    bad = ~((np.abs(s) <= big) | (s == -np.inf))
    if bad.any():
        raise ValueError(
            f"sinks must be finite {np.dtype(dtype).name} numbers {_KERNEL_DTYPE} or -inf, got {float(s[bad][0]):g}"
        )
    return s


def additive_mask(m: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float additive mask in q's dtype; a finite value that the conversion would turn into +-inf is
    refused (it would mask a key, or make the row NaN, where the given bias does neither)."""
    with np.errstate(over="ignore"):
        c = m.astype(dtype, copy=False)
    if c is not m and m.dtype.itemsize > c.dtype.itemsize:
        bad = np.isinf(c) & np.isfinite(m)
        if bad.any():
            v = float(m[bad][0])
            raise ValueError(
                f"mask: the value {v:g} overflows {np.dtype(dtype).name} {_KERNEL_DTYPE}; clip the additive "
                f"mask to the range of {np.dtype(dtype).name} (or use -inf to mask a key out)"
            )
    return c


def check_window(window: Any, lq: int, lk: int) -> int:
    """The sliding window as an int >= 1, or 0 for None (no window); TypeError/ValueError otherwise.

    Every window above Lq + Lkv lets each query see all its keys (its diagonal is below both lengths),
    so it is clipped to Lq + Lkv + 1: the native size_t would wrap a window >= 2^63 to a negative limit,
    and NumPy's int64 arithmetic on positions could not hold it."""
    if window is None:
        return 0
    win = _api.integer(window, "window")
    if win < 1:
        raise ValueError(f"window must be >= 1 (keys each query may see), got {_api.shown(window)}")
    return min(win, lq + lk + 1)
