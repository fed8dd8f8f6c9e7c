"""The language model's output layer fused with its reduction: ``linear_logsumexp`` and
``linear_cross_entropy`` compute the logits ``hidden @ weight.T + bias`` a block of the vocabulary at a
time and fold each block into a running log-sum-exp, so the (tokens x vocabulary) logits never exist
(2048 tokens x 128k vocabulary would be 1 GiB of float32).

The native driver is cpp/src/linear_head.cpp: the products are attention's register-blocked Q K^T kernels
with the vocabulary as the keys, the reduction is attention's online softmax step, and the pieces of the
vocabulary are merged in a fixed order, so results are the same for every thread count. The GIL is
released while it runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _api, _core, _interop
from .sampling import _labels

__all__ = ["linear_logsumexp", "linear_cross_entropy"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_REDUCTIONS = ("mean", "sum", "none")


def _matrix(x: Any, name: str) -> np.ndarray:
    a = _api.as_array(x, name)
    if a.dtype.kind == "f" or _api.is_16bit(a.dtype):  # bfloat16 is kind 'V'
        a = _api.native_order(a)
    if a.dtype not in _FLOATS and not _api.is_16bit(a.dtype):
        raise TypeError(f"{name}: the fused head takes float32, float64, float16 or bfloat16 arrays, got {a.dtype}")
    return a


def _rows_layout(a: np.ndarray) -> bool:
    """True if the kernels read a (rows, dim) in place: unit stride along dim, rows going forward (a
    broadcast row, stride 0, is copied)."""
    return (a.shape[1] <= 1 or a.strides[1] == a.itemsize) and (a.shape[0] <= 1 or a.strides[0] > 0)


def _prepare(hidden: Any, weight: Any, bias: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """hidden as (rows, dim), weight (vocab, dim) and bias (vocab,) in the kernels' layout (unit stride
    along dim: copies only where an array is not), and the batch shape hidden.shape[:-1]."""
    h = _matrix(hidden, "hidden")
    w = _matrix(weight, "weight")
    if h.ndim == 0:
        raise ValueError("hidden must have at least one dimension (..., dim), got a scalar")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-d (vocab, dim) as a model stores it, got shape {w.shape}")
    if _api.is_16bit(w.dtype):
        # A 16-bit weight is read in place (widened in registers); hidden (rows x dim, small beside the
        # weight) is taken as float32, the type of the computation and of the results.
        if h.dtype != w.dtype and h.dtype != np.float32:
            raise TypeError(f"hidden ({h.dtype}) must be float32 or the weight's dtype ({w.dtype})")
        h = h.astype(np.float32, copy=False)
    elif h.dtype != w.dtype:
        raise TypeError(f"hidden ({h.dtype}) and weight ({w.dtype}) must have the same dtype")
    if h.shape[-1] != w.shape[1]:
        raise ValueError(f"hidden has dim {h.shape[-1]} (last axis) but weight has dim {w.shape[1]} (shape {w.shape})")
    batch = h.shape[:-1]
    h2 = _api._kernel_input(h, h.dtype).reshape(math.prod(batch), h.shape[-1])
    w2 = w if _api.is_16bit(w.dtype) else _api._kernel_input(w, w.dtype)
    if not _rows_layout(h2):
        h2 = np.ascontiguousarray(h2)
    if not _rows_layout(w2):
        w2 = np.ascontiguousarray(w2)
    b = None
    if bias is not None:
        b = _api.as_array(bias, "bias")
        if b.dtype.kind not in "fiu" and not _api.is_bfloat16(b.dtype):
            raise TypeError(f"bias must be real numbers, got dtype {b.dtype}")
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},) (one entry per vocabulary row of weight), got {b.shape}")
        with np.errstate(over="ignore"):
            cast = np.ascontiguousarray(b, dtype=h.dtype)
        # A finite bias that the cast turns into +-inf would silently make its rows NaN (or ban a token):
        # refused, as attention refuses such an additive mask.
        bad = np.isinf(cast) & ~np.isinf(b)
        if bad.any():
            raise ValueError(
                f"bias: the value {float(b[bad][0]):g} overflows {h.dtype} (the dtype of the logits); "
                "clip it to that range (or use -inf to exclude a token)"
            )
        b = cast
    return h2, w2, b, batch


@_interop.dlpack_io("hidden", "weight")
def linear_logsumexp(hidden: Any, weight: Any, *, bias: Any = None) -> Any:
    """``logsumexp(hidden @ weight.T + bias, axis=-1)`` without forming the logits.

    Parameters
    ----------
    hidden : array_like, shape ``(..., dim)``
        float32 or float64 hidden states (the last axis is the model dimension).
    weight : array_like, shape ``(vocab, dim)``
        The output layer's weight as a model stores it (``lm_head.weight``): ``hidden``'s dtype, or float16 /
        bfloat16 (read in place and widened in registers; ``hidden`` is then taken as float32, and the
        results are float32).
    bias : array_like, shape ``(vocab,)``, optional
        Added to every row's logits (cast to ``hidden``'s dtype).

    Returns an array of shape ``hidden.shape[:-1]`` (a NumPy scalar for 1-d ``hidden``) of ``hidden``'s
    dtype. A NaN (or +inf) logit makes its row NaN; a row of only -inf logits gives -inf. The logits are
    computed in vocabulary blocks by the attention kernels and reduced with the online log-sum-exp rule;
    results are identical for every thread count. TypeError for other dtypes or mismatched dtypes;
    ValueError for mismatched shapes or a finite bias that overflows the dtype.
    """
    h, w, b, batch = _prepare(hidden, weight, bias)
    out = np.empty(h.shape[0], dtype=h.dtype)
    if h.shape[0]:
        _core.linear_logsumexp(h, w, b, out, _api.current_isa_override())
    out = out.reshape(batch)
    return out[()] if out.ndim == 0 else out


@_interop.dlpack_io("hidden", "weight")
def linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    bias: Any = None,
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Any:
    """``torch.nn.functional.cross_entropy(hidden @ weight.T + bias, labels, ...)`` without forming the
    logits.

    Per row: ``loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x))`` with ``x`` the row's logits,
    ``lse = logsumexp(x)`` and ``eps = label_smoothing``: PyTorch's definition (and
    :func:`normexp.cross_entropy`'s).

    Parameters
    ----------
    hidden : array_like, shape ``(..., dim)``
        float32 or float64 hidden states.
    weight : array_like, shape ``(vocab, dim)``
        The output layer's weight as a model stores it: ``hidden``'s dtype, or float16 / bfloat16 (read in
        place, widened in registers; ``hidden`` taken as float32, results float32).
    labels : array_like of int, shape ``hidden.shape[:-1]``
        The target token of each row, in ``[0, vocab)`` or ``ignore_index``.
    bias : array_like, shape ``(vocab,)``, optional
        Added to every row's logits.
    ignore_index : int or None
        Rows with this label contribute nothing (PyTorch's default, -100); None ignores no row.
    label_smoothing : float
        In [0, 1].
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over the rows that are not ignored (NaN if all are, like PyTorch); ``"none"``
        returns the per-row losses (0 for ignored rows) with the shape of ``labels``.

    Returns a NumPy scalar (``"mean"``, ``"sum"``) or an array (``"none"``) of ``hidden``'s dtype (a
    torch tensor for torch inputs). A NaN or +inf logit makes its row's loss NaN. IndexError (also a
    ValueError: ``sampling.LabelError``) for a label out of range; TypeError for non-integer labels or
    unsupported dtypes; ValueError for mismatched shapes, a bad option or a finite bias that overflows the
    dtype.
    """
    _api.choice(reduction, "reduction", _REDUCTIONS)
    eps = _api.real(label_smoothing, "label_smoothing")
    if not 0 <= eps <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {_api.shown(label_smoothing)}")
    ign = None if ignore_index is None else _api.integer(ignore_index, "ignore_index")
    if ign is not None and not -(2**63) <= ign < 2**63:
        ign = None  # equal to no label (they are int64): nothing is ignored
    h, w, b, batch = _prepare(hidden, weight, bias)
    lab = _labels(labels, batch, w.shape[0], ign, "logits hidden @ weight.T")
    loss = np.zeros(lab.size, dtype=np.float64)
    if lab.size:
        _core.linear_cross_entropy(
            h, w, lab.reshape(-1), b, loss, eps, ign is not None, 0 if ign is None else ign,
            _api.current_isa_override(),
        )
    if reduction == "none":
        out = loss.reshape(batch).astype(h.dtype)
        return out[()] if out.ndim == 0 else out
    total = float(np.sum(loss))
    if reduction == "sum":
        return np.asarray(total, dtype=h.dtype)[()]
    count = int(lab.size if ign is None else np.count_nonzero(lab != ign))
    return np.asarray(total / count if count else math.nan, dtype=h.dtype)[()]

