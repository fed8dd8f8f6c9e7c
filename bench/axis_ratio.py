"""Throughput of a reduction along axis 0 against the same reduction along the last axis.

For each shape (n, w), float32: reduce x (n, w) over axis 0 (the column traversal) and the C-contiguous
transpose x.T.copy() (w, n) over its last axis (the row traversal): the same numbers, the same work. The
two calls alternate, so both see the same load (on a shared machine the load drifts between runs). Prints
G elements/s (medians) and the ratio axis-0 / last-axis of the medians and of the minima, for each thread
count. --cpu-time times the calling thread's CPU time instead of the wall clock (one thread only): time
the process spends descheduled by its neighbours on a busy machine is left out.

    python bench/axis_ratio.py [--shapes 4096x1024,512x512] [--repeat 15] [--threads 1,2] [--cpu-time]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import normexp


def alternating_times(f, g, repeat: int, clock=time.perf_counter) -> tuple[np.ndarray, np.ndarray]:
    """Times of f and g (seconds of clock), called alternately repeat times each after one warm-up call."""
    f(), g()
    tf, tg = [], []
    for _ in range(repeat):
        t = clock()
        f()
        tf.append(clock() - t)
        t = clock()
        g()
        tg.append(clock() - t)
    return np.array(tf), np.array(tg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x1024,1024x4096,512x512,8192x256")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--cpu-time", action="store_true", help="the calling thread's CPU time (one thread only)")
    args = ap.parse_args()
    threads = [int(v) for v in args.threads.split(",")]
    if args.cpu_time and threads != [1]:
        ap.error("--cpu-time measures the calling thread only: use it with --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    print(f"normexp {normexp.__version__} ({normexp.isa()}), float32, {'thread CPU time' if args.cpu_time else 'wall clock'}")
    print(f"{'shape':>12} {'op':>12} {'thr':>3} {'axis 0':>10} {'last axis':>10} {'ratio':>6} {'(min)':>6}")
    for spec in args.shapes.split(","):
        n, w = (int(v) for v in spec.lower().split("x"))
        x = (np.random.default_rng(0).standard_normal((n, w)) * 4).astype(np.float32)
        xt = np.ascontiguousarray(x.T)
        y, yt = np.empty_like(x), np.empty_like(xt)
        for nt in threads:
            normexp.set_num_threads(nt)
            for op in ("softmax", "log_softmax", "logsumexp"):
                f = getattr(normexp, op)
                if op == "logsumexp":
                    a, b = alternating_times(lambda: f(x, axis=0), lambda: f(xt, axis=-1), args.repeat, clock)
                else:
                    a, b = alternating_times(lambda: f(x, axis=0, out=y), lambda: f(xt, axis=-1, out=yt), args.repeat, clock)
                ma, mb = np.median(a), np.median(b)
                print(f"{spec:>12} {op:>12} {normexp.get_num_threads():>3} {x.size / ma / 1e9:>8.2f} G "
                      f"{x.size / mb / 1e9:>8.2f} G {mb / ma:>6.2f} {b.min() / a.min():>6.2f}")


if __name__ == "__main__":
    main()
