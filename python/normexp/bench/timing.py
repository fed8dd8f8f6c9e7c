"""The timing loop shared by every peer (in this process and in the JAX workers).

Method: warm-up calls (at least one, for at least ``warmup`` seconds) so caches, thread pools and JIT
compilers settle; then samples of ``k`` back-to-back calls each, k chosen so that one sample lasts at
least ``min_sample`` seconds (the clock's overhead stays below 0.1 %); the per-call time of each
sample is kept. Sampling stops after ``repeat`` samples, or earlier once ``max_time`` has passed and
``min_repeat`` samples exist (3 when a single call is longer than ``max_time``). Calls cycle through
the prepared buffer sets, so out-of-cache cases never find their data in cache.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Timing:
    warmup: float = 0.05
    repeat: int = 21
    min_repeat: int = 5
    max_time: float = 0.5
    min_sample: float = 0.005

    def __post_init__(self) -> None:
        if self.repeat < 1 or self.min_repeat < 1:
            raise ValueError("repeat and min_repeat must be >= 1")
        if self.warmup < 0 or self.max_time <= 0 or self.min_sample < 0:
            raise ValueError("warmup and min_sample must be >= 0 and max_time > 0")


def time_calls(fns: Sequence[Callable[[], Any]], timing: Timing) -> tuple[list[float], int]:
    """Per-call seconds of each timed sample, and the number of calls per sample."""
    n = len(fns)
    if n == 0:
        raise ValueError("nothing to time")
    clock = time.perf_counter
    i = 0
    t_end = clock() + timing.warmup
    last = 0.0
    while True:
        t0 = clock()
        fns[i % n]()
        last = clock() - t0
        i += 1
        if clock() >= t_end:
            break
    k = max(1, math.ceil(timing.min_sample / last)) if last > 0 else 1000
    min_repeat = min(timing.min_repeat, timing.repeat)
    if last > timing.max_time:
        min_repeat = min(min_repeat, 3)
    samples: list[float] = []
    deadline = clock() + timing.max_time
    single = fns[0] if n == 1 else None
    while len(samples) < timing.repeat:
        if single is not None:
            t0 = clock()
            for _ in range(k):
                single()
            t = clock() - t0
        else:
            t0 = clock()
            for _ in range(k):
                fns[i % n]()
                i += 1
            t = clock() - t0
        samples.append(t / k)
        if len(samples) >= min_repeat and clock() >= deadline:
            break
    return samples, k


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and 90th percentile (linear interpolation, as numpy.percentile's default), and
    the mean."""
    s = sorted(samples)

    def q(p: float) -> float:
        pos = (len(s) - 1) * p
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {"median": q(0.5), "q1": q(0.25), "q3": q(0.75), "p90": q(0.9), "min": s[0], "max": s[-1],
            "mean": math.fsum(s) / len(s)}
