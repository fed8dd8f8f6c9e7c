"""Quick side-by-side timing of normexp.attention and torch's CPU SDPA on the issue's shapes.

    python bench/attention_quick.py [--threads 2] [--repeat 7] [--cpu-time]

Prints, per shape, the median wall time of each library (interleaved runs, same inputs), GFLOP/s
(4 * visible query-key pairs * head_dim; causal counts only the visible half) and its share of the FMA
peak (--peak GFLOP/s per core, default 92 = 2 FMA x 8 lanes x 2 flop x 2.9 GHz on this Zen 3),
and for decode shapes the K/V read rate in GB/s. --cpu-time reports process CPU time instead of wall
time for normexp with one thread (useful when other jobs share the cores). This is a quick check, not
the project benchmark (bench/ harness).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import normexp

try:
    import torch
    import torch.nn.functional as F
except Exception:  # torch is optional
    torch = None

SHAPES = [  # (name, B, H, Lq, Lkv, D, causal)
    ("prefill H8 L1024 D64", 1, 8, 1024, 1024, 64, False),
    ("prefill H8 L1024 D64 causal", 1, 8, 1024, 1024, 64, True),
    ("prefill H8 L4096 D64", 1, 8, 4096, 4096, 64, False),
    ("prefill H8 L4096 D64 causal", 1, 8, 4096, 4096, 64, True),
    ("prefill H16 L2048 D128", 1, 16, 2048, 2048, 128, False),
    ("prefill H16 L2048 D128 causal", 1, 16, 2048, 2048, 128, True),
    ("decode H32 Lkv4096 D128", 1, 32, 1, 4096, 128, False),
    ("decode H32 Lkv32768 D128", 1, 32, 1, 32768, 128, False),
]


def pairs(lq: int, lk: int, causal: bool) -> int:
    if not causal:
        return lq * lk
    return sum(min(lk, i + 1) for i in range(lq))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--peak", type=float, default=92.0, help="FMA peak per core, GFLOP/s")
    ap.add_argument("--only", default="", help="substring filter on the shape names")
    ap.add_argument("--cpu-time", action="store_true")
    a = ap.parse_args()
    normexp.set_num_threads(a.threads)
    if torch is not None:
        torch.set_num_threads(a.threads)
    clock = time.process_time if a.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    peak = a.peak * a.threads
    print(f"normexp {normexp.__version__} isa={normexp.isa()} threads={a.threads} peak={peak:.0f} GFLOP/s"
          f"{' torch ' + torch.__version__ if torch is not None else ' (torch not installed)'}")
    for name, b, h, lq, lk, d, causal in SHAPES:
        if a.only and a.only not in name:
            continue
        q = rng.standard_normal((b, h, lq, d), dtype=np.float32)
        k = rng.standard_normal((b, h, lk, d), dtype=np.float32)
        v = rng.standard_normal((b, h, lk, d), dtype=np.float32)
        out = np.empty_like(q)
        flops = 4.0 * b * h * pairs(lq, lk, causal) * d
        kv_bytes = 2.0 * b * h * lk * d * 4
        runs = {"normexp": lambda: normexp.attention(q, k, v, is_causal=causal, out=out)}
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
            runs["torch"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        for f in runs.values():
            f()  # warm up
        times = {n: [] for n in runs}
        for _ in range(a.repeat):
            for n, f in runs.items():
                t = clock()
                f()
                times[n].append(clock() - t)
        line = f"{name:32s}"
        for n, ts in times.items():
            t = float(np.median(ts))
            gf = flops / t / 1e9
            line += f" | {n} {t * 1e3:8.2f} ms {gf:6.1f} GFLOP/s {100 * gf / peak:4.0f}%"
            if lq == 1:
                line += f" {kv_bytes / t / 1e9:5.1f} GB/s"
        if len(times) == 2:
            line += f" | ratio {np.median(times['torch']) / np.median(times['normexp']):.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
