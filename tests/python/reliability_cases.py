"""The table of public functions that the reliability tests (threads, fork, memory) exercise.

One row per way of calling a public function: ``Case(name, make, call)`` where ``make(rng, scale)``
builds the arguments (``scale="small"`` stays on the calling thread, ``"large"`` is big enough to open
an OpenMP team: more than ``kParallelMinElements`` = 2^15 elements and more than one row) and
``call(*args)`` returns an ndarray or a tuple of them. The rows cover every traversal of the driver
(contiguous rows, columns, gathered rows), both native dtypes, the promoted ones, temperature,
``where=``, ``b=``, ``out=``, normexp.special, attention (causal, masks, ALiBi, softcap, window, GQA
decode with split keys, strided q/v/mask, ``out=``), merge_attention, and the output layer (sample, cross_entropy,
fit_temperature, calibration_error, linear_logsumexp, linear_cross_entropy).

To cover a new public function (the C API through ctypes, ...), append rows to
``CASES`` below; test_threads.py, test_fork.py and test_memory.py pick them up unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import normexp
from normexp import special


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[np.random.Generator, str], tuple]
    call: Callable[..., Any]


def _scores(rng: np.random.Generator, scale: str, dtype: Any = np.float32, scores: float = 8.0) -> np.ndarray:
    shape = (3, 5, 17) if scale == "small" else (48, 3001)  # 48*3001 = 144048 > 2^15 elements
    return (rng.standard_normal(shape) * scores).astype(dtype)


def _long_row(rng: np.random.Generator, scale: str) -> tuple:
    # One row longer than the 2^16-element super-chunk: threads split the row itself.
    n = 37 if scale == "small" else 200_003
    return ((rng.standard_normal(n) * 20).astype(np.float32),)


def _as_tuple(r: Any) -> tuple:
    return r if isinstance(r, tuple) else (r,)


CASES: list[Case] = [
    Case("softmax/f32/rows", lambda g, s: (_scores(g, s),), lambda x: normexp.softmax(x)),
    Case("softmax/f64/cols", lambda g, s: (_scores(g, s, np.float64),), lambda x: normexp.softmax(x, axis=0)),
    Case("softmax/f32/gather", lambda g, s: (_scores(g, s)[..., ::-3],), lambda x: normexp.softmax(x, axis=-1)),
    Case("softmax/f32/transposed", lambda g, s: (_scores(g, s).T,), lambda x: normexp.softmax(x, axis=-1)),
    Case("softmax/f32/temperature", lambda g, s: (_scores(g, s),), lambda x: normexp.softmax(x, temperature=0.37)),
    Case("softmax/f16", lambda g, s: (_scores(g, s, np.float16, 4.0),), lambda x: normexp.softmax(x)),
    Case(
        "softmax/f32/where",
        lambda g, s: (_scores(g, s), g.random(_scores(g, s).shape[-1]) < 0.7),
        lambda x, w: normexp.softmax(x, where=w),
    ),
    Case("softmax/f32/long-row", _long_row, lambda x: normexp.softmax(x)),
    Case("softmax/f32/out", lambda g, s: (_scores(g, s),), lambda x: normexp.softmax(x, out=np.empty_like(x))),
    Case("log_softmax/f32/rows", lambda g, s: (_scores(g, s),), lambda x: normexp.log_softmax(x)),
    Case("log_softmax/f64/rows", lambda g, s: (_scores(g, s, np.float64),), lambda x: normexp.log_softmax(x)),
    Case("log_softmax/f32/cols", lambda g, s: (_scores(g, s),), lambda x: normexp.log_softmax(x, axis=0)),
    Case("log_softmax/f32/long-row", _long_row, lambda x: normexp.log_softmax(x)),
    Case(
        "log_softmax/f64/temperature",
        lambda g, s: (_scores(g, s, np.float64),),
        lambda x: normexp.log_softmax(x, axis=-1, temperature=3.5),
    ),
    Case("logsumexp/f32/rows", lambda g, s: (_scores(g, s),), lambda x: normexp.logsumexp(x)),
    Case("logsumexp/f64/cols", lambda g, s: (_scores(g, s, np.float64),), lambda x: normexp.logsumexp(x, axis=0)),
    Case("logsumexp/f32/long-row", _long_row, lambda x: normexp.logsumexp(x)),
    Case(
        "logsumexp/f64/b-sign",
        lambda g, s: (_scores(g, s, np.float64), g.standard_normal(_scores(g, s).shape[-1])),
        lambda x, b: normexp.logsumexp(x, b=b, return_sign=True),
    ),
    Case("logsumexp/int32", lambda g, s: (g.integers(-50, 50, _scores(g, s).shape, dtype=np.int32),), lambda x: normexp.logsumexp(x, keepdims=True)),
    Case("special.softmax", lambda g, s: (_scores(g, s, np.float64),), lambda x: special.softmax(x, axis=(0, 1))),
    Case("special.log_softmax", lambda g, s: (_scores(g, s),), lambda x: special.log_softmax(x)),
    Case("special.logsumexp", lambda g, s: (_scores(g, s, np.float64),), lambda x: special.logsumexp(x, axis=0)),
]


# ---- attention ---------------------------------------------------------------------------------------
# "large" shapes open an OpenMP team: Lq * Lkv * (D + Dv + 8) per head far above 2^15 and more than one
# task (heads x query blocks of 192 rows, or the key splits of a decode step). Kept to a few MFLOP a call.
def _qkv(rng: np.random.Generator, q_shape: tuple, kv_shape: tuple, dv: int, dtype: Any = np.float32) -> tuple:
    q = rng.standard_normal(q_shape).astype(dtype)
    k = rng.standard_normal(kv_shape).astype(dtype)
    v = rng.standard_normal(kv_shape[:-1] + (dv,)).astype(dtype)
    return q, k, v


def _att_causal(rng: np.random.Generator, scale: str) -> tuple:
    if scale == "small":
        return _qkv(rng, (2, 2, 5, 8), (2, 2, 7, 8), 6)
    return _qkv(rng, (2, 2, 200, 32), (2, 2, 200, 32), 24)  # 2 query blocks x 4 heads


def _att_options(rng: np.random.Generator, scale: str) -> tuple:
    h, lq, lk, d = (2, 4, 6, 8) if scale == "small" else (4, 96, 160, 32)
    q, k, v = _qkv(rng, (h, lq, d), (h, lk, d), d, np.float64)
    mask = rng.random((lq, lk)) < 0.8  # bool, broadcast over the heads
    slopes = 2.0 ** -np.arange(1, h + 1)
    return q, k, v, mask, slopes


def _att_decode(rng: np.random.Generator, scale: str) -> tuple:
    # Grouped-query decode (Lq = 1, 4 query heads per key/value head): large splits the 2048 keys.
    return _qkv(rng, (8, 1, 16), (2, 20, 16), 16) if scale == "small" else _qkv(rng, (8, 1, 32), (2, 2048, 32), 32)


def _att_strided(rng: np.random.Generator, scale: str) -> tuple:
    # q and v with a non-unit head_dim stride and a bool mask with a non-unit key stride: the driver
    # copies them per task / per block into per-thread buffers.
    h, lq, lk, d = (2, 5, 7, 8) if scale == "small" else (4, 100, 300, 16)
    q = np.swapaxes(rng.standard_normal((h, d, lq)).astype(np.float32), -1, -2)
    k = rng.standard_normal((h, lk, d)).astype(np.float32)
    v = np.swapaxes(rng.standard_normal((h, d, lk)).astype(np.float32), -1, -2)
    mask = (rng.random((lk, lq)) < 0.8).T
    return q, k, v, mask


def _att_parts(rng: np.random.Generator, scale: str) -> tuple:
    q, k, v = _att_causal(rng, scale)
    cut = k.shape[-2] // 3
    a = normexp.attention(q, k[..., :cut, :], v[..., :cut, :], return_lse=True)
    b = normexp.attention(q, k[..., cut:, :], v[..., cut:, :], return_lse=True)
    return [a[0], b[0]], [a[1], b[1]]


def _att_paged(rng: np.random.Generator, scale: str) -> tuple:
    # A paged pool in a random page order: decodes (split keys at "large"), a sequence without queries, a prefill.
    lens, nqs, ps = ([9, 3, 20], [1, 0, 4], 4) if scale == "small" else ([3000, 1, 700, 40], [1, 1, 0, 130], 16)
    need = [(n + ps - 1) // ps for n in lens]
    k_pages = rng.standard_normal((sum(need) + 1, ps, 2, 16)).astype(np.float32)
    v_pages = rng.standard_normal((sum(need) + 1, ps, 2, 16)).astype(np.float32)
    perm = rng.permutation(sum(need)).astype(np.int32)
    table = np.full((len(lens), max(need)), -1, np.int32)
    at = 0
    for i, n in enumerate(need):
        table[i, :n] = perm[at : at + n]
        at += n
    starts = np.concatenate([[0], np.cumsum(nqs)]).astype(np.int32)
    q = rng.standard_normal((int(starts[-1]), 8, 16)).astype(np.float32)
    return q, k_pages, v_pages, table, np.array(lens, np.int32), starts


# ---- the output layer: sampling, cross-entropy, temperature, calibration --------------------------------
def _labels_for(rng: np.random.Generator, x: np.ndarray, axis: int = -1) -> np.ndarray:
    shape = x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1 :]
    return rng.integers(0, x.shape[axis], shape)


def _ce_case(rng: np.random.Generator, scale: str, dtype: Any = np.float32, axis: int = -1) -> tuple:
    x = _scores(rng, scale, dtype, 3.0)
    return x, _labels_for(rng, x, axis)


def _calibrated_case(rng: np.random.Generator, scale: str) -> tuple:
    # Labels drawn from softmax(x / 2): the fit has an interior optimum near T = 2 (converges, no warning).
    x = _scores(rng, scale, np.float32, 3.0)
    return x, normexp.sample(x, temperature=2.0, rng=rng)


def _probs_case(rng: np.random.Generator, scale: str) -> tuple:
    x, lab = _ce_case(rng, scale, np.float64)
    return normexp.softmax(x), lab


def _lm_case(rng: np.random.Generator, scale: str, dtype: Any = np.float32) -> tuple:
    # large: 200 rows x 9001 vocabulary x 16: two row blocks x three vocabulary pieces of the driver
    rows, vocab, dim = (3, 37, 5) if scale == "small" else (200, 9001, 16)
    h = rng.standard_normal((rows, dim)).astype(dtype)
    w = (rng.standard_normal((vocab, dim)) / 2).astype(dtype)
    return h, w, rng.standard_normal(vocab).astype(dtype), rng.integers(0, vocab, rows)


CASES += [
    Case("attention/f32/causal-bottom-right", _att_causal, lambda q, k, v: normexp.attention(q, k, v, is_causal=True, causal_alignment="bottom_right")),
    Case(
        "attention/f64/mask-alibi-softcap-window-lse",
        _att_options,
        lambda q, k, v, m, s: normexp.attention(q, k, v, mask=m, alibi_slopes=s, softcap=20.0, window=50, return_lse=True),
    ),
    Case("attention/f32/gqa-decode", _att_decode, lambda q, k, v: normexp.attention(q, k, v, return_lse=True)),
    Case("attention/f32/strided-q-v-mask", _att_strided, lambda q, k, v, m: normexp.attention(q, k, v, mask=m, is_causal=True)),
    Case("attention/f32/out", _att_causal, lambda q, k, v: normexp.attention(q, k, v, out=np.empty(q.shape[:-1] + v.shape[-1:], q.dtype))),
    Case("merge_attention", _att_parts, lambda o, l: normexp.merge_attention(o, l)),
    Case(
        "paged_attention/f32/sinks-lse",
        _att_paged,
        lambda q, kp, vp, t, n, st: normexp.paged_attention(q, kp, vp, t, n, query_start=st, sinks=np.linspace(-1, 1, 8), return_lse=True),
    ),
    # A seed, not a Generator: every call draws the same uniforms, so results must be identical.
    Case("sample/f32/top_k-top_p", lambda g, s: (_scores(g, s),), lambda x: normexp.sample(x, temperature=0.8, top_k=50, top_p=0.9, rng=7)),
    Case("sample/f64/min_p", lambda g, s: (_scores(g, s, np.float64),), lambda x: normexp.sample(x, min_p=0.05, rng=8)),
    Case("sample/f32/long-row", _long_row, lambda x: normexp.sample(x, top_p=0.95, rng=9)),
    Case("sample/f16/greedy", lambda g, s: (_scores(g, s, np.float16, 4.0),), lambda x: normexp.sample(x, temperature=0.0)),
    Case("cross_entropy/f32/mean-smoothing", _ce_case, lambda x, y: normexp.cross_entropy(x, y, label_smoothing=0.1)),
    Case(
        "cross_entropy/f64/none-axis0-ignore",
        lambda g, s: _ce_case(g, s, np.float64, 0),
        lambda x, y: normexp.cross_entropy(x, y, axis=0, reduction="none", ignore_index=int(y.flat[0])),
    ),
    Case("fit_temperature", _calibrated_case, lambda x, y: normexp.fit_temperature(x, y)),
    Case("calibration_error", _probs_case, lambda p, y: normexp.calibration_error(p, y, n_bins=10)),
    Case("linear_logsumexp/f32/bias", _lm_case, lambda h, w, b, y: normexp.linear_logsumexp(h, w, bias=b)),
    Case(
        "linear_cross_entropy/f64/none-smoothing-ignore",
        lambda g, s: _lm_case(g, s, np.float64),
        lambda h, w, b, y: normexp.linear_cross_entropy(
            h, w, y, bias=b, label_smoothing=0.1, ignore_index=int(y[0]), reduction="none"
        ),
    ),
]


def run_case(case: Case, args: tuple) -> tuple:
    """The case's result as a tuple of ndarrays."""
    return tuple(np.asarray(r) for r in _as_tuple(case.call(*args)))


def identical(a: tuple, b: tuple) -> bool:
    """Bit-identical results (same dtype, shape and bytes; NaN payloads included)."""
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()
        for x, y in zip(a, b)
    )
