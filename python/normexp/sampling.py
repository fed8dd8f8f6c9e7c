"""The language-model output layer: token sampling, the cross-entropy loss, temperature scaling and the
expected calibration error.

``sample`` draws one token per row in one or two streaming passes over the vocabulary (no softmax array,
no sort); ``cross_entropy`` computes logsumexp and the label's score in one fused pass per row. Both run
rows in parallel (OpenMP) with the GIL released. Randomness is one ``Generator.random()`` double per row,
drawn here and handed to the native code, so a seed gives the same tokens on every ISA and thread count.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _api, _core, _interop

__all__ = ["sample", "cross_entropy", "fit_temperature", "calibration_error", "TemperatureFit"]


class TemperatureFit(NamedTuple):
    """Result of :func:`fit_temperature`."""

    temperature: float
    """The fitted temperature T (divide the logits by it)."""
    nll_before: float
    """Mean negative log-likelihood at T = 1."""
    nll_after: float
    """Mean negative log-likelihood at the fitted T."""
    iterations: int
    """Evaluations of the NLL and its derivatives (one pass over the data each)."""
    converged: bool
    """False when the optimum lies at a bound of ``bounds`` (a warning is issued too)."""


# ---- argument checking (specific to this module; array handling comes from _api) ----------------------
def _real(value: Any, name: str) -> float:
    v = _api.real(value, name)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


_int = _api.integer


def _generator(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_, np.timedelta64)):
        if rng < 0:
            raise ValueError(f"rng: a seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an integer seed or None, got {type(rng).__name__}")


def _logits(x: Any, name: str = "logits") -> tuple[np.ndarray, np.dtype, np.dtype]:
    a = _api.as_array(x, name)
    res, compute = _api.result_dtype(a.dtype, name)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (a class/vocabulary axis), got a scalar")
    return a, res, compute


class LabelError(IndexError, ValueError):
    """A class label outside [0, classes): an IndexError, as PyTorch raises for such a target, and a
    ValueError, as for the other bad argument values (numpy.exceptions.AxisError is both, for an axis)."""


def _labels(
    labels: Any, shape: tuple[int, ...], classes: int, ignore_index: int | None, scores: str = "logits"
) -> np.ndarray:
    """labels as contiguous int64, checked for shape and range (ignore_index entries are exempt; a label
    out of range raises LabelError)."""
    lab = _api.as_array(labels, "labels")
    if lab.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be integer class indices, got dtype {lab.dtype} "
            "(class-probability targets are not supported; pass the index of the true class)"
        )
    if lab.shape != shape:
        raise ValueError(f"labels have shape {lab.shape}, but the {scores} without the class axis have shape {shape}")
    if lab.dtype == np.uint64 and lab.size and int(lab.max()) > np.iinfo(np.int64).max:
        raise LabelError(f"labels: {int(lab.max())} is out of range [0, {classes})")
    lab64 = np.ascontiguousarray(lab, dtype=np.int64)
    bad = (lab64 < 0) | (lab64 >= classes)
    if ignore_index is not None:
        bad &= lab64 != ignore_index
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        val = int(lab64[pos])
        hint = " (pass ignore_index=-100 to skip such rows, as PyTorch does by default)" if val == -100 and ignore_index is None else ""
        raise LabelError(f"labels: {val} at position {pos} is out of range [0, {classes}){hint}")
    return lab64


# ---- sampling ----------------------------------------------------------------------------------------
def _rows_checked(a: np.ndarray, ok: np.ndarray, name: str, batch: tuple[int, ...], rule: str) -> None:
    """ValueError naming the first row of a per-row option whose value breaks ``rule`` (ok is False)."""
    if not ok.all():
        i = int(np.argmin(ok))
        pos = tuple(int(j) for j in np.unravel_index(i, batch))
        where = pos[0] if len(pos) == 1 else pos
        raise ValueError(f"{name}[{where}] must be {rule}, got {_api.shown(a[i].item())}")


def _real_option(value: Any, name: str, batch: tuple[int, ...], test: Any, rule: str, default: float) -> tuple[float, np.ndarray | None]:
    """A float option, scalar or per row (see _api.per_row), with its range rule: test(v) -> bool (arrays
    elementwise). None means the default."""
    if value is None:
        return default, None
    v, arr = _api.per_row(value, name, batch)
    if arr is None:
        if math.isnan(v):
            raise ValueError(f"{name} must not be NaN")
        if not test(v):
            raise ValueError(f"{name} must be {rule}, got {_api.shown(value)}")
        return v, None
    with np.errstate(invalid="ignore"):
        _rows_checked(arr, test(arr), name, batch, rule)
    return default, arr


def _prev_tokens(value: Any, batch: tuple[int, ...], vocab: int) -> np.ndarray:
    """prev_tokens as a C-contiguous int64 (rows, n) array, every entry in [0, vocab) or -1."""
    a = _api.as_array(value, "prev_tokens")
    if a.dtype.kind not in "iu":
        raise TypeError(f"prev_tokens must be integer token ids (padded with -1), got dtype {a.dtype}")
    if a.ndim != len(batch) + 1 or a.shape[:-1] != batch:
        raise ValueError(
            f"prev_tokens has shape {a.shape}, but the logits' rows need shape {batch + ('n',)} "
            "(the logits' shape with the vocabulary axis replaced by the tokens seen, padded with -1)"
        )
    flat = a.reshape(math.prod(batch), a.shape[-1])
    bad = flat >= vocab
    if a.dtype.kind == "i":
        bad |= flat < -1
    if bad.any():
        r, j = (int(v) for v in np.argwhere(bad)[0])
        row = tuple(int(v) for v in np.unravel_index(r, batch)) if batch else ()
        where = f"row {row[0] if len(row) == 1 else row}" if batch else "the row"
        raise IndexError(
            f"prev_tokens: token {int(flat[r, j])} at position {j} of {where} is out of range "
            f"[0, {vocab}) (the vocabulary; -1 is padding)"
        )
    return np.ascontiguousarray(flat, dtype=np.int64)


def _logit_bias(value: Any, shape: tuple[int, ...], compute: np.dtype) -> np.ndarray:
    """logit_bias in the kernels' dtype, (vocab,) or (rows, vocab), unit stride along the vocabulary (a
    copy only for another dtype or layout: never of the logits)."""
    b = _api.as_array(value, "logit_bias")
    _api.result_dtype(b.dtype, "logit_bias")  # a TypeError naming it for complex, strings, objects
    if b.dtype.kind == "b":
        raise TypeError("logit_bias must hold real numbers, got a bool array")
    if b.shape not in (shape[-1:], shape):
        raise ValueError(f"logit_bias has shape {b.shape}; it must be ({shape[-1]},) (one value per token) or the logits' shape {shape}")
    with np.errstate(over="ignore"):
        b = b.astype(compute, copy=False)
    bad = np.isnan(b) | np.isposinf(b)  # -inf bans a token; NaN or +inf would make every weight NaN
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"logit_bias[{', '.join(map(str, at))}] = {float(b[at])}: a bias must be finite or -inf (which bans the "
            "token); NaN and +inf are refused"
        )
    b = b.reshape(-1) if b.ndim == 1 else b.reshape(-1, shape[-1])
    if not b.flags.aligned or any(st % b.itemsize for st in b.strides) or (shape[-1] > 1 and b.strides[-1] != b.itemsize):
        b = np.ascontiguousarray(b)
    return b


@_interop.dlpack_io("logits")
def sample(
    logits: Any,
    *,
    temperature: npt.ArrayLike = 1.0,
    top_k: npt.ArrayLike | None = None,
    top_p: npt.ArrayLike | None = None,
    min_p: npt.ArrayLike | None = None,
    logit_bias: npt.ArrayLike | None = None,
    prev_tokens: npt.ArrayLike | None = None,
    repetition_penalty: npt.ArrayLike = 1.0,
    presence_penalty: npt.ArrayLike = 0.0,
    frequency_penalty: npt.ArrayLike = 0.0,
    return_logprobs: bool = False,
    rng: Any = None,
) -> Any:
    """Draw one token per row of ``logits`` (shape ``(..., vocab)``); returns int64 indices of shape ``(...)``
    (a NumPy integer for 1-d logits), and with ``return_logprobs=True`` the pair ``(tokens, logprobs)``.

    The controls of a serving stack apply in this order, as in the common LLM samplers (Hugging Face,
    vLLM, llama.cpp):

    1. ``logit_bias`` b: the scores become ``logits + b`` (added in the computing dtype).
    2. Penalties over ``prev_tokens``: for each token t seen c > 0 times in the row's ``prev_tokens``,
       ``x_t = x_t / r if x_t > 0 else x_t * r`` (``repetition_penalty`` r), then
       ``x_t -= p + f * c`` (``presence_penalty`` p, ``frequency_penalty`` f), in float64, rounded to the
       computing dtype. Only the seen tokens change; the caller's logits are never written (a changed row
       is built in a per-thread buffer).
    3. ``temperature`` T: the scores become ``x / T``. ``T = 0`` is greedy decoding for that row: the index
       of the maximum (the lowest index on ties), and the cuts are moot.
    4. ``top_k``: keep the entries whose score is at least the k-th largest (ties at the boundary are kept,
       so more than k may remain). ``k >= vocab`` and ``k = 0`` keep everything.
    5. ``top_p``: of those, keep the smallest set of most probable entries whose probability (renormalized
       over the top-k set) reaches ``top_p``, plus entries tied with its least probable member.
    6. ``min_p``: of those, keep the entries whose probability is at least ``min_p`` times the largest.

    The token is then drawn with probability proportional to ``exp((x - max) / T)`` over the kept
    entries (inverse CDF in index order at one uniform per row). The vocabulary is never sorted: top-k is
    a streaming selection, top-p a threshold search among the entries that can matter.

    ``temperature``, ``top_k``, ``top_p``, ``min_p`` and the three penalties each take a scalar (every
    row) or an array of shape ``logits.shape[:-1]`` (one value per row, e.g. per request of a batch).

    Parameters
    ----------
    logits : array_like
        Scores, at least 1-d; the last axis is the vocabulary. float32/float64 compute in their own
        precision for the cuts (float16/bfloat16/integers as in :func:`softmax`); the sampling
        probabilities are computed in float32 (relative error < 1e-6, far below anything a sample can
        resolve) with a weight flushed to 0 below ``exp(-86)`` relative to the maximum.
    temperature : float or array
        Finite, >= 0 (0: greedy).
    top_k : int or array of int, optional
        >= 0 (0 or None: no cut).
    top_p : float or array, optional
        In (0, 1]. None or 1: no cut.
    min_p : float or array, optional
        In [0, 1]. None or 0: no cut.
    logit_bias : array_like, optional
        Added to the scores: shape ``(vocab,)`` (every row) or the logits' shape. ``-inf`` bans a token;
        a row left with NaN, +inf or only -inf is an error.
    prev_tokens : array_like of int, optional
        The tokens each row has seen (the prompt and what was generated, as the caller chooses): shape
        ``logits.shape[:-1] + (n,)``, each in ``[0, vocab)`` or -1 (padding, ignored). The counts c of
        the penalties come from it.
    repetition_penalty : float or array
        Finite, > 0 (1: none; > 1 discourages repeats).
    presence_penalty, frequency_penalty : float or array
        Finite, >= 0 (0: none).
    return_logprobs : bool
        Also return the log-probability of each drawn token under the distribution it was drawn from
        (after every step above; the float32 weights of the kept set), in the logits' result dtype;
        0 for a greedy row.
    rng : numpy.random.Generator, int or None
        The randomness: one ``rng.random()`` double per row (rows in C order), not consumed when every
        row is greedy (greedy rows among sampled ones ignore theirs). An int is a seed for
        ``numpy.random.default_rng`` (a new Generator per call, ~25 us: when decoding token by token,
        create one Generator and pass it); None draws fresh entropy. The same seed gives the same
        tokens on every ISA (``normexp.use_isa``) and thread count.

    Raises ValueError for NaN or +inf scores, a row of only -inf, an empty vocabulary, options out of
    range or of the wrong shape (naming the option and the row); IndexError for a ``prev_tokens`` id
    outside the vocabulary (naming the row); TypeError for non-numeric arguments. Every argument is
    checked before any row is sampled.
    """
    a, res, compute = _logits(logits)
    batch = a.shape[:-1]
    t, ts = _real_option(temperature, "temperature", batch, lambda v: np.isfinite(v) & (v >= 0),
                         "a finite number >= 0 (0 means greedy)", 1.0)
    k, ks = 0, None
    if top_k is not None:
        k, ks = _api.per_row(top_k, "top_k", batch, ints=True)
        if ks is None and k < 0:
            raise ValueError(f"top_k must be >= 0 (0 or None: no top-k cut), got {k}")
        if ks is not None:
            _rows_checked(ks, ks >= 0, "top_k", batch, ">= 0 (0: no top-k cut)")
        k = k or 0
    p, ps = _real_option(top_p, "top_p", batch, lambda v: (v > 0) & (v <= 1), "in (0, 1] (or None for no cut)", 1.0)
    mp, mps = _real_option(min_p, "min_p", batch, lambda v: (v >= 0) & (v <= 1), "in [0, 1] (or None for no cut)", 0.0)
    rp, rps = _real_option(repetition_penalty, "repetition_penalty", batch, lambda v: np.isfinite(v) & (v > 0),
                           "a finite number > 0 (1: none)", 1.0)
    pp, pps = _real_option(presence_penalty, "presence_penalty", batch, lambda v: np.isfinite(v) & (v >= 0),
                           "a finite number >= 0 (0: none)", 0.0)
    fp, fps = _real_option(frequency_penalty, "frequency_penalty", batch, lambda v: np.isfinite(v) & (v >= 0),
                           "a finite number >= 0 (0: none)", 0.0)
    want_logprobs = _api.flag(return_logprobs, "return_logprobs")
    vocab = a.shape[-1]
    if vocab == 0:
        raise ValueError("logits: the vocabulary (last axis) is empty; there is nothing to sample")
    prev = None if prev_tokens is None else _prev_tokens(prev_tokens, batch, vocab)
    bias = None if logit_bias is None else _logit_bias(logit_bias, a.shape, compute)
    k = min(k, vocab)  # k >= vocab keeps everything (and fits the native size type)
    if ks is not None:
        ks = np.minimum(ks, vocab)
    sampled = bool(np.any(ts > 0)) if ts is not None else t > 0
    gen = _generator(rng) if sampled else None
    x = _api._kernel_input(a, compute).reshape(-1, vocab)
    if vocab > 1 and x.strides[1] != x.itemsize:
        x = np.ascontiguousarray(x)
    rows = x.shape[0]
    if prev is not None and (prev.shape[1] == 0 or (rps is None and pps is None and fps is None and rp == 1 and pp == 0 and fp == 0)):
        prev = None  # nothing to count, or no penalty to apply
    if bias is not None and bias.ndim == 2 and rows == 0:
        bias = None
    out = np.empty(rows, dtype=np.int64)
    lp = np.zeros(rows, dtype=np.float64) if want_logprobs else None
    u = gen.random(rows) if gen is not None else None
    if rows:
        _core.sample(
            x, u, out, t, k, p, mp, _api.current_isa_override(),
            repetition_penalty=rp, presence_penalty=pp, frequency_penalty=fp,
            temperatures=ts, top_ks=ks, top_ps=ps, min_ps=mps,
            repetition_penalties=rps, presence_penalties=pps, frequency_penalties=fps,
            prev_tokens=prev, logit_bias=bias, logprobs=lp,
        )
    out = out.reshape(batch)
    tokens = out[()] if out.ndim == 0 else out
    if not want_logprobs:
        return tokens
    lpr = _api.narrow(lp.reshape(batch), res)
    return tokens, (lpr[()] if lpr.ndim == 0 else lpr)


# ---- cross-entropy -----------------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


def _ce_prepare(logits: Any, labels: Any, axis: Any, ignore_index: Any):
    a, res, compute = _logits(logits)
    ax = _api.normalize_axis(axis, a.ndim)
    ign = None if ignore_index is None else _int(ignore_index, "ignore_index")
    if ign is not None and not -(2**63) <= ign < 2**63:
        ign = None  # equal to no label (they are int64): nothing is ignored
    shape = a.shape[:ax] + a.shape[ax + 1 :]
    lab = _labels(labels, shape, a.shape[ax], ign)
    if a.shape[ax] == 0 and lab.size:
        raise ValueError("logits: the class axis is empty")
    return _api._kernel_input(a, compute), res, ax, lab, ign, shape


@_interop.dlpack_io("logits")
def cross_entropy(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
) -> Any:
    """Cross-entropy of ``softmax(logits)`` along ``axis`` against integer ``labels``, with the values of
    ``torch.nn.functional.cross_entropy``.

    Per row: ``loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x))`` with ``lse = logsumexp(x)``
    and ``eps = label_smoothing``, computed in one fused pass (logsumexp and the label's score together).

    Parameters
    ----------
    logits : array_like
        Scores; ``axis`` is the class axis (PyTorch's layout ``(N, C, d1, ...)`` is ``axis=1``).
    labels : array_like of int
        Class indices, shape ``logits.shape`` without ``axis``; each in ``[0, classes)`` or ``ignore_index``.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over the rows that are not ignored (NaN if all are, like PyTorch); ``"none"``
        returns the per-row losses (0 for ignored rows) with the shape of ``labels``.
    ignore_index : int, optional
        Rows with this label contribute nothing (PyTorch's default is -100; here the default is None).
    label_smoothing : float
        In [0, 1].

    Returns a NumPy scalar (``"mean"``, ``"sum"``) or an array (``"none"``) of the logits' result dtype.
    A -inf score gives the row an infinite loss where it is the label's, or anywhere in the row when
    ``label_smoothing > 0`` (as PyTorch; with ``label_smoothing = 1`` the label's term has weight 0, so
    the loss is inf where PyTorch's 0 * inf gives NaN). Raises IndexError (also a ValueError:
    ``sampling.LabelError``) for labels out of range, as PyTorch; ValueError for NaN or +inf logits in a
    row that is used, a row of only -inf, or a bad option; TypeError for non-integer labels. An ``ignore_index`` beyond int64 matches no label.
    """
    _api.choice(reduction, "reduction", _REDUCTIONS)
    eps = _real(label_smoothing, "label_smoothing")
    if not 0 <= eps <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {_api.shown(label_smoothing)}")
    x, res, ax, lab, ign, shape = _ce_prepare(logits, labels, axis, ignore_index)
    loss = np.zeros(lab.size, dtype=np.float64)
    if lab.size:
        _core.cross_entropy(
            x, lab.reshape(-1), loss, ax, 1.0, eps, ign is not None, 0 if ign is None else ign,
            None, None, _api.current_isa_override(),
        )
    if reduction == "none":
        out = _api.narrow(loss.reshape(shape), res)
        return out[()] if out.ndim == 0 else out
    total = float(np.sum(loss))
    if reduction == "sum":
        return _api.narrow(np.asarray(total), res)[()]
    count = int(lab.size if ign is None else np.count_nonzero(lab != ign))
    return _api.narrow(np.asarray(total / count if count else math.nan), res)[()]


# ---- temperature scaling -----------------------------------------------------------------------------
def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    ignore_index: int | None = None,
    bounds: tuple[float, float] = (1e-3, 1e3),
    max_iter: int = 100,
) -> TemperatureFit:
    """The temperature T minimizing the mean negative log-likelihood of ``softmax(logits / T)`` on held-out
    ``(logits, labels)`` (temperature scaling, Guo et al. 2017).

    Solver: the NLL is convex in beta = 1/T (a log-sum-exp minus a linear term), so its derivative is
    increasing. The derivative and the curvature come with the loss from one fused pass per evaluation
    (``d/dbeta = E_p[x] - x[label]``, ``d2/dbeta2 = Var_p[x] >= 0``). Starting at T = 1 the root is
    bracketed by steps of 4x in beta, then found by Newton steps safeguarded by bisection (in log beta)
    inside the bracket, to a relative step of 1e-10 (or where float rounding stops progress). If the NLL
    still decreases at a bound, that bound is returned with ``converged=False`` and a RuntimeWarning
    (e.g. perfectly separated data, where the optimum is T -> 0).

    Returns :class:`TemperatureFit` ``(temperature, nll_before, nll_after, iterations, converged)``.
    """
    pair = isinstance(bounds, (tuple, list)) or (isinstance(bounds, np.ndarray) and bounds.ndim == 1)
    if not pair or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (low, high) of temperatures, got {_api.shown(bounds)}")
    lo_t, hi_t = (_real(bounds[0], "bounds[0]"), _real(bounds[1], "bounds[1]"))
    if not (0 < lo_t < hi_t and math.isfinite(hi_t)):
        raise ValueError(f"bounds must be (low, high) with 0 < low < high < inf, got {_api.shown(bounds)}")
    max_iter = _int(max_iter, "max_iter")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    x, _, ax, lab, ign, _ = _ce_prepare(logits, labels, axis, ignore_index)
    if not 1.0 / lo_t <= float(np.finfo(x.dtype).max):  # the kernels scale by 1/T in the logits' dtype
        raise ValueError(
            f"bounds[0] = {lo_t:g} is too small for {x.dtype} logits (1/T overflows {x.dtype}); "
            "use a larger low bound or float64 logits"
        )
    flat = lab.reshape(-1)
    count = int(flat.size if ign is None else np.count_nonzero(flat != ign))
    if count == 0:
        raise ValueError("fit_temperature needs at least one labelled row (all rows are empty or ignored)")
    loss = np.empty(flat.size)
    d1 = np.empty(flat.size)
    d2 = np.empty(flat.size)
    isa = _api.current_isa_override()
    evals = 0

    def evaluate(beta: float) -> tuple[float, float, float]:
        nonlocal evals
        evals += 1
        _core.cross_entropy(x, flat, loss, ax, 1.0 / beta, 0.0, ign is not None, 0 if ign is None else ign, d1, d2, isa)
        return float(np.sum(loss)) / count, float(np.sum(d1)) / count, float(np.sum(d2)) / count

    b_min, b_max = 1.0 / hi_t, 1.0 / lo_t
    f1, g1, h1 = evaluate(1.0)
    nll_before = f1
    beta = min(max(1.0, b_min), b_max)
    f, g, h = (f1, g1, h1) if beta == 1.0 else evaluate(beta)
    best = (beta, f)
    # Bracket the root of g (increasing in beta): lo has g < 0, hi has g > 0.
    lo, hi = (beta, None) if g < 0 else (None, beta)
    converged = True
    while g != 0 and (lo is None or hi is None) and evals < max_iter:
        if hi is None:
            if beta >= b_max:
                converged = False
                break
            beta = min(beta * 4, b_max)
        else:
            if beta <= b_min:
                converged = False
                break
            beta = max(beta / 4, b_min)
        f, g, h = evaluate(beta)
        if g < 0:
            lo = beta
        elif g > 0:
            hi = beta
    if g != 0 and (lo is None or hi is None):
        converged = False  # at a bound, or out of iterations while bracketing
    if converged and g != 0 and lo is not None and hi is not None:
        while evals < max_iter:
            step_ok = h > 0 and math.isfinite(h)
            cand = beta - g / h if step_ok else math.nan
            if not (lo < cand < hi):
                cand = math.sqrt(lo * hi)  # bisection in log beta
            done = abs(cand - beta) <= 1e-10 * beta or hi / lo - 1 <= 1e-12
            beta = cand
            f, g, h = evaluate(beta)
            if g < 0:
                lo = beta
            elif g > 0:
                hi = beta
            if done or g == 0:
                break
    if f > best[1] and converged:  # keep the better of the start and the end (rounding-level safety)
        beta, f = best
    if not converged:
        warnings.warn(
            f"fit_temperature: no minimum found inside the bounds (stopped at T = {1 / beta:g} after {evals} "
            "evaluations); the NLL may keep decreasing towards a bound (separable data) or max_iter is too small",
            RuntimeWarning,
            stacklevel=2,
        )
    return TemperatureFit(1.0 / beta, nll_before, f, evals, converged)


# ---- calibration -------------------------------------------------------------------------------------
def calibration_error(probs: Any, labels: Any, *, n_bins: int = 15, axis: int = -1) -> float:
    """Expected calibration error (ECE, Guo et al. 2017) of class probabilities ``probs`` against ``labels``.

    Each row's confidence is its largest probability and its prediction the class holding it (the lowest
    index on ties). Confidences fall into ``n_bins`` equal-width bins ``(b/n, (b+1)/n]`` (a confidence of
    exactly 0 goes to the first bin). ``ECE = sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|``,
    in [0, 1]; 0 is perfectly calibrated. Compute ``probs`` with ``normexp.softmax(logits / T)``.

    Raises ValueError if probs has a value outside [0, 1] (or NaN), labels are out of range (an IndexError
    too: ``sampling.LabelError``) or of the wrong shape, or n_bins < 1.
    """
    n_bins = _int(n_bins, "n_bins")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p = _api.as_array(probs, "probs")
    if p.dtype.kind not in "fiub" and not _api.is_bfloat16(p.dtype):  # bfloat16: softmax's own output dtype
        raise TypeError(f"probs must be real numbers, got dtype {p.dtype}")
    if p.ndim == 0:
        raise ValueError("probs must have at least one dimension (the class axis)")
    ax = _api.normalize_axis(axis, p.ndim)
    p = np.moveaxis(np.asarray(p, dtype=np.float64), ax, -1)
    classes = p.shape[-1]
    if classes == 0:
        raise ValueError("probs: the class axis is empty")
    lab = _labels(labels, p.shape[:-1], classes, None, "probs").reshape(-1)
    p = p.reshape(-1, classes)
    if lab.size == 0:
        return 0.0
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probs must be probabilities in [0, 1] (no NaN); to start from logits use normexp.softmax")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == lab).astype(np.float64)
    if n_bins <= 2**53:  # conf * n_bins <= 2^53: ceil of the float product fits an int64
        b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    else:  # bins finer than float64 resolves: each confidence's bin exactly, in Python integers
        b = np.array([max(math.ceil(Fraction(c) * n_bins) - 1, 0) for c in conf.tolist()], dtype=object)
    # Sum over the occupied bins only (empty bins add 0): n_bins = 10**12 must not allocate an 8 TB
    # histogram (np.bincount(b, minlength=n_bins) raised MemoryError).
    gap = np.bincount(np.unique(b, return_inverse=True)[1].reshape(-1), weights=correct - conf)
    return float(np.sum(np.abs(gap)) / lab.size)
