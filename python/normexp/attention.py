"""Scaled dot-product attention on the CPU: blocked (flash-style), never forming the Lq x Lkv scores.

``attention`` checks and broadcasts its arguments here, turns every tensor into a 4-d strided view
(batch, heads, length, dim) without copying, and calls the native driver (cpp/src/attention.cpp).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import _api, _core, _interop

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ALIGNMENTS = ("top_left", "bottom_right")


def _float_tensor(x: Any, name: str) -> np.ndarray:
    a = _api.as_array(x, name)
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name}: attention takes float32 or float64 arrays, got {a.dtype}; cast with {name}.astype(np.float32)")
    return a


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
    """a itself when the kernels can read it (aligned, strides a multiple of the item size), else a copy."""
    if a.flags.aligned and not any(s % a.itemsize for s in a.strides):
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
    q, k, v : array_like or CPU tensors (torch, JAX; results of their type), float32 or float64 (one dtype)
        Layout of ``torch.nn.functional.scaled_dot_product_attention``: q ``(..., Hq, Lq, D)``,
        k ``(..., Hkv, Lkv, D)``, v ``(..., Hkv, Lkv, Dv)``; also 3-d ``(H, L, D)`` and 2-d ``(L, D)``.
        Leading batch dimensions must match. Any strides (e.g. a ``(B, L, H, D)`` buffer seen as
        ``(B, H, L, D)`` through ``swapaxes``) are read in place. Grouped-query / multi-query attention:
        ``Hq`` a multiple of ``Hkv``; query head ``h`` reads key/value head ``h // (Hq // Hkv)``.
    mask : array_like, optional
        Broadcastable to ``(..., Hq, Lq, Lkv)`` and never expanded in memory. bool: True keeps a score,
        False masks it out. float: added to the scores (``-inf`` masks out); cast to q's dtype.
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
        scores and ``M`` the maximum over the row and the sink. Each is finite in q's dtype, or ``-inf``
        (no effect). The sink is not scaled, soft-capped or masked.
    return_lse : bool
        Also return ``lse`` of shape ``(..., Hq, Lq)``: the log-sum-exp of each row's final scores,
        including the sink (for :func:`merge_attention`).
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
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    dtype = q.dtype
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

    sc = check_scale(scale, dtype, d)
    win = check_window(window, lq, lk)
    cap = check_softcap(softcap, dtype)
    bottom_right = _api.choice(causal_alignment, "causal_alignment", _ALIGNMENTS) == "bottom_right"

    full = batch + (hq, lq, lk)
    mask_b = None
    if mask is not None:
        m = _api.as_array(mask, "mask")
        if m.dtype != np.bool_:
            if m.dtype.kind != "f":
                raise TypeError(f"mask must be bool (True keeps) or a float additive mask, got dtype {m.dtype}")
            m = additive_mask(m, dtype)
        if m.ndim > len(full):
            raise ValueError(f"mask with shape {m.shape} has more dimensions than the scores {full}")
        try:
            mask_b = np.broadcast_to(m, full)
        except ValueError:
            raise ValueError(f"mask with shape {m.shape} cannot be broadcast to the scores' shape {full} (..., Hq, Lq, Lkv)") from None
        mask_b = _kernel_view(mask_b) if mask_b.dtype != np.bool_ else mask_b
    alibi_b = None
    if alibi_slopes is not None:
        s = check_alibi(alibi_slopes, dtype, lq, lk, bottom_right)
        try:
            alibi_b = np.broadcast_to(s, batch + (hq,))
        except ValueError:
            raise ValueError(f"alibi_slopes with shape {s.shape} cannot be broadcast to (..., Hq) = {batch + (hq,)}") from None

    sinks_b = None
    if sinks is not None:
        s = check_sinks(sinks, dtype)
        try:
            sinks_b = np.broadcast_to(s, batch + (hq,))
        except ValueError:
            raise ValueError(f"sinks with shape {s.shape} cannot be broadcast to (..., Hq) = {batch + (hq,)}") from None

    out_shape = batch + (hq, lq, dv)
    if out is not None:
        out = _api.check_out(out, out_shape, dtype)
    res = out
    inputs = [a for a in (q, k, v, mask_b) if a is not None]
    # may_share_memory: a bounds check (exact overlap tests can be slow); a false positive only costs a copy.
    if res is None or any(np.may_share_memory(res, a) for a in inputs) or res is not _kernel_view(res):
        res = np.empty(out_shape, dtype)
    lse = np.empty(batch + (hq, lq), dtype) if return_lse else None

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
    if out is not None and res is not out:
        np.copyto(out, res)
        res = out
    if return_lse:
        return res, lse
    return res


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
    part give 0 and ``-inf``.
    """
    for name, parts in (("outs", outs), ("lses", lses)):
        scalar_array = isinstance(parts, np.ndarray) and parts.ndim == 0
        if isinstance(parts, (str, bytes)) or not hasattr(parts, "__iter__") or scalar_array:
            raise TypeError(f"{name} must be a sequence of arrays (one per key/value block), got {type(parts).__name__}")
    if isinstance(outs, np.ndarray) or isinstance(lses, np.ndarray):
        outs = list(outs)
        lses = list(lses)
    outs = [_float_tensor(o, f"outs[{i}]") for i, o in enumerate(outs)]
    lses = [_float_tensor(l_, f"lses[{i}]") for i, l_ in enumerate(lses)]
    if len(outs) != len(lses):
        raise ValueError(f"outs has {len(outs)} parts but lses has {len(lses)}")
    if not outs:
        raise ValueError("merge_attention needs at least one part")
    dtype = outs[0].dtype
    for name, parts in (("outs", outs), ("lses", lses)):
        for i, a in enumerate(parts):
            if a.dtype != dtype:
                raise TypeError(f"{name}[{i}] has dtype {a.dtype}, but outs[0] has {dtype}; all parts must share a dtype")
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
    lse = np.empty(shape[:-1], dtype)
    if out.size or lse.size:
        _core.merge_attention(
            [np.ascontiguousarray(o).reshape(rows, dv) for o in outs],
            [np.ascontiguousarray(l_).reshape(rows) for l_ in lses],
            out.reshape(rows, dv),
            lse.reshape(rows),
        )
    return out, lse


# ---- scalar options, checked in the dtype the kernels use ----------------------------------------------
# The kernels hold scale, softcap and the ALiBi slopes in q's dtype (kernels/kernel_table.hpp:
# attn_scores), so each is checked there: a float64 value that float32 rounds to inf or 0 would turn the
# scores into NaN (inf * 0) or silently drop the option. normexp.dask.attention uses the same checks.
def _normal_range(v: float, name: str, dtype: np.dtype) -> float:
    fin = np.finfo(dtype)
    if not float(fin.tiny) <= abs(v) <= float(fin.max):
        raise ValueError(
            f"{name} {v:g} is outside the range of {np.dtype(dtype).name} (the dtype of q), "
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
    if s.dtype.kind not in "fiu":
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
            f"{np.dtype(dtype).name} (the dtype of q); slopes must be at most {limit:g} in magnitude here"
        )
    return s


def check_sinks(sinks: Any, dtype: np.dtype) -> np.ndarray:
    """The sink logits as float64 (not broadcast): each finite in dtype (the lse that includes it must be
    representable) or -inf (a sink with no effect); NaN and +inf are refused."""
    s = _api.as_array(sinks, "sinks")
    if s.dtype.kind not in "fiu":
        raise TypeError(f"sinks must be real numbers (one logit per query head), got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    big = float(np.finfo(dtype).max)
    bad = ~((np.abs(s) <= big) | (s == -np.inf))
    if bad.any():
        raise ValueError(
            f"sinks must be finite {np.dtype(dtype).name} numbers (the dtype of q) or -inf, got {float(s[bad][0]):g}"
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
                f"mask: the value {v:g} overflows {np.dtype(dtype).name} (the dtype of q); clip the additive "
                "mask to the range of q's dtype (or use -inf to mask a key out)"
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
