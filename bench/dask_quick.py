"""Quick Dask benchmark: normexp.dask.logsumexp / softmax against the plain dask.array expressions.

    python bench/dask_quick.py [--rows 16] [--cols 1048576] [--chunk 262144] [--repeat 7] [--workers 2]

The input is a NumPy array wrapped by ``dask.array.from_array`` (in memory, chunked along the reduced
axis too), so the timings are the reductions, not data generation. Peers, all on the threaded scheduler
with the same workers, in one run:
  * ``da.log(da.exp(x).sum(axis))``: the naive expression (overflows for large x; fine for N(0, 1) data)
  * ``m + da.log(da.exp(x - m).sum(axis))``, m = x.max(axis): the stable dask expression
  * softmax: ``e = da.exp(x - m); e / e.sum(axis)``
Prints medians side by side and writes bench/results/dask_quick.json. Timings on a shared machine are
noisy: compare medians from the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import dask
import dask.array as da

import normexp
import normexp.dask as nd


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up (thread pool, first-touch of the output)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=1 << 20)
    ap.add_argument("--chunk", type=int, default=1 << 18, help="chunk length along the reduced axis")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()

    # One thread per normexp call: dask supplies the parallelism across chunks.
    normexp.set_num_threads(1)
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((args.rows, args.cols)).astype(args.dtype)
    x = da.from_array(xn, chunks=(args.rows, args.chunk))
    axis = -1
    m = x.max(axis=axis, keepdims=True)

    cases = {
        "logsumexp": {
            "normexp.dask": lambda: nd.logsumexp(x, axis=axis),
            "dask naive log(exp(x).sum())": lambda: da.log(da.exp(x).sum(axis=axis)),
            "dask stable m+log(exp(x-m).sum())": lambda: (m + da.log(da.exp(x - m).sum(axis=axis, keepdims=True)))[..., 0],
        },
        "softmax": {
            "normexp.dask": lambda: nd.softmax(x, axis=axis),
            "dask stable exp(x-m)/sum": lambda: (lambda e: e / e.sum(axis=axis, keepdims=True))(da.exp(x - m)),
        },
    }
    results = {"rows": args.rows, "cols": args.cols, "chunk": args.chunk, "dtype": args.dtype,
               "workers": args.workers, "isa": normexp.isa(), "cpus": os.cpu_count(), "cases": {}}
    ref = {"logsumexp": normexp.logsumexp(xn, axis=axis), "softmax": normexp.softmax(xn, axis=axis)}
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        for op, peers in cases.items():
            print(f"\n{op}: ({args.rows}, {args.cols}) {args.dtype}, chunks of {args.chunk} along the axis, "
                  f"{args.workers} workers, median of {args.repeat}")
            base = None
            for name, build in peers.items():
                got = build().compute()
                err = float(np.max(np.abs(got - ref[op]) / np.maximum(np.abs(ref[op]), np.finfo(np.float32).tiny)))
                ts = timed(lambda: build().compute(), args.repeat)
                med = statistics.median(ts)
                base = base or med
                gbs = xn.nbytes / med / 1e9
                print(f"  {name:38s} {med * 1e3:9.1f} ms  {gbs:6.2f} GB/s of input  x{med / base:5.2f}  "
                      f"max rel. diff to normexp {err:.1e}")
                results["cases"].setdefault(op, {})[name] = {"median_s": med, "times_s": ts, "max_rel_diff": err}
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "dask_quick.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
