"""The table of public functions that the reliability tests (threads, fork, memory) exercise.

One row per way of calling a public function: ``Case(name, make, call)`` where ``make(rng, scale)``
builds the arguments (``scale="small"`` stays on the calling thread, ``"large"`` is big enough to open
an OpenMP team: more than ``kParallelMinElements`` = 2^15 elements and more than one row) and
``call(*args)`` returns an ndarray or a tuple of them. The rows cover every traversal of the driver
(contiguous rows, columns, gathered rows), both native dtypes, the promoted ones, temperature,
``where=``, ``b=``, ``out=`` and normexp.special.

To cover a new public function (attention, sampling, the C API through ctypes), append rows to
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


def run_case(case: Case, args: tuple) -> tuple:
    """The case's result as a tuple of ndarrays."""
    return tuple(np.asarray(r) for r in _as_tuple(case.call(*args)))


def identical(a: tuple, b: tuple) -> bool:
    """Bit-identical results (same dtype, shape and bytes; NaN payloads included)."""
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()
        for x, y in zip(a, b)
    )
