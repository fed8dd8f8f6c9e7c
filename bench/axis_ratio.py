"""Throughput of a reduction along axis 0 against the same reduction along the last axis.

For each shape (n, w), float32, one thread: reduce x (n, w) over axis 0 (the column traversal) and the
C-contiguous transpose x.T.copy() (w, n) over its last axis (the row traversal): the same numbers, the
same work, side by side in one run. Prints G elements/s and the ratio axis-0 / last-axis (medians).

    python bench/axis_ratio.py [--shapes 4096x1024,512x512] [--repeat 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import normexp


def median_time(f, repeat: int) -> float:
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x1024,1024x4096,512x512,8192x256")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    normexp.set_num_threads(args.threads)
    print(f"normexp {normexp.__version__} ({normexp.isa()}), {normexp.get_num_threads()} thread(s), float32")
    print(f"{'shape':>12} {'op':>12} {'axis 0':>10} {'last axis':>10} {'ratio':>6}")
    for spec in args.shapes.split(","):
        n, w = (int(v) for v in spec.lower().split("x"))
        x = (np.random.default_rng(0).standard_normal((n, w)) * 4).astype(np.float32)
        xt = np.ascontiguousarray(x.T)
        y, yt = np.empty_like(x), np.empty_like(xt)
        for op in ("softmax", "log_softmax", "logsumexp"):
            f = getattr(normexp, op)
            if op == "logsumexp":
                a = median_time(lambda: f(x, axis=0), args.repeat)
                b = median_time(lambda: f(xt, axis=-1), args.repeat)
            else:
                a = median_time(lambda: f(x, axis=0, out=y), args.repeat)
                b = median_time(lambda: f(xt, axis=-1, out=yt), args.repeat)
            print(f"{spec:>12} {op:>12} {x.size / a / 1e9:>8.2f} G {x.size / b / 1e9:>8.2f} G {b / a:>6.2f}")


if __name__ == "__main__":
    main()
