"""The quick default run of ``python -m normexp``: a self-check against a float64 reference and a
short table of normexp against NumPy's stable softmax and SciPy on this machine (under 20 seconds)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

import normexp


def ulp_error(got: np.ndarray, ref64: np.ndarray) -> float:
    """Max distance in float32 ULPs between got (float32) and the float64 reference rounded to float32."""
    ref = ref64.astype(np.float32)
    a = got.view(np.int32).astype(np.int64)
    b = ref.view(np.int32).astype(np.int64)
    a = np.where(a < 0, -(2**31) - a, a)
    b = np.where(b < 0, -(2**31) - b, b)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def self_check() -> bool:
    rng = np.random.default_rng(0)
    ok = True
    for n in (1, 7, 1000, 32000):
        x = (rng.standard_normal((4, n)) * 8).astype(np.float32)
        x64 = x.astype(np.float64)
        m = x64.max(axis=-1, keepdims=True)
        s = np.exp(x64 - m).sum(axis=-1, keepdims=True)
        checks = {
            "softmax": (normexp.softmax(x), np.exp(x64 - m) / s),
            "log_softmax": (normexp.log_softmax(x), x64 - m - np.log(s)),
            "logsumexp": (normexp.logsumexp(x), (m + np.log(s))[:, 0]),
        }
        for name, (got, ref) in checks.items():
            err = ulp_error(got, ref)
            bound = 4 if name == "softmax" else 8
            if err > bound:
                print(f"  FAIL {name} n={n}: {err:.0f} ULP (bound {bound})")
                ok = False
    return ok


def median_time(f: Callable[[], object], budget: float = 0.4) -> float:
    f()
    times = []
    t_end = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < t_end and len(times) < 200):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    print(f"normexp {normexp.__version__}  isa={normexp.isa()}  available={','.join(normexp.available_isas())}"
          f"  threads={normexp.get_num_threads()}")
    ok = self_check()
    print(f"self-check: {'ok' if ok else 'FAILED'} (float32 softmax <= 4 ULP, log_softmax/logsumexp <= 8 ULP)")
    try:
        import scipy.special as sps
    except ImportError:
        sps = None
        print("scipy not installed: skipped")
    rng = np.random.default_rng(1)
    shapes = [(1, 1000), (1, 32000), (4096, 128), (512, 4096), (1, 1 << 22)]
    print(f"\nsoftmax float32, last axis (median time; speed-up of normexp)")
    print(f"{'shape':>12} {'normexp':>10} {'numpy':>10} {'scipy':>10} {'vs numpy':>9} {'vs scipy':>9} {'Gelem/s':>8}")
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        out = np.empty_like(x)
        t_nx = median_time(lambda: normexp.softmax(x, out=out))
        t_np = median_time(lambda: numpy_softmax(x))
        t_sp = median_time(lambda: sps.softmax(x, axis=-1)) if sps else float("nan")
        print(f"{'x'.join(map(str, shape)):>12} {t_nx*1e6:>8.1f}us {t_np*1e6:>8.1f}us {t_sp*1e6:>8.1f}us"
              f" {t_np/t_nx:>8.1f}x {t_sp/t_nx:>8.1f}x {x.size/t_nx/1e9:>8.2f}")
    return 0 if ok else 1
