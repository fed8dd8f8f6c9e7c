"""Quick side-by-side timing of normexp.attention and torch's CPU SDPA on the issue's shapes.

    python bench/attention_quick.py [--threads 2] [--repeat 7] [--cpu-time] [--dtypes float32,bfloat16]
                                    [--read-bw]

Prints, per shape and dtype, the median wall time of each library (interleaved runs, same inputs),
GFLOP/s (4 * visible query-key pairs * head_dim; causal counts only the visible half) and its share of
the FMA peak (the benchmark probe's, normexp.bench.machine.fma_peak, at --threads with the widest vectors the
machine runs; or --peak GFLOP/s per core),
and for decode shapes the K/V read rate in GB/s (with --read-bw: as a share of the read bandwidth the
bench's machine probe measures at --threads). dtypes: float32, float16, bfloat16 (q, k, v all of it;
torch SDPA in the same dtype) and f32q-float16 / f32q-bfloat16 (a float32 query against a 16-bit K/V
cache; torch then takes float32 copies, made outside the timing). A 16-bit row also shows normexp's
speed-up over its float32 row of the same shape. --cpu-time reports process CPU time instead of wall
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

SHAPES = [  # (name, B, H, Hkv, Lq, Lkv, D, causal)
    ("prefill H8 L1024 D64", 1, 8, 8, 1024, 1024, 64, False),
    ("prefill H8 L1024 D64 causal", 1, 8, 8, 1024, 1024, 64, True),
    ("prefill H8 L4096 D64", 1, 8, 8, 4096, 4096, 64, False),
    ("prefill H8 L4096 D64 causal", 1, 8, 8, 4096, 4096, 64, True),
    ("prefill H16 L2048 D128", 1, 16, 16, 2048, 2048, 128, False),
    ("prefill H16 L2048 D128 causal", 1, 16, 16, 2048, 2048, 128, True),
    ("decode H32 Lkv4096 D128", 1, 32, 32, 1, 4096, 128, False),
    ("decode H32 Lkv32768 D128", 1, 32, 32, 1, 32768, 128, False),
    ("decode H32/8 Lkv16384 D128", 1, 32, 8, 1, 16384, 128, False),  # grouped-query: 32 query heads, 8 K/V heads
    ("decode H32/8 Lkv32768 D128", 1, 32, 8, 1, 32768, 128, False),
]
DTYPES = ("float32", "float16", "bfloat16", "f32q-float16", "f32q-bfloat16")


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def to_torch(x: np.ndarray):
    """A torch view of x (bfloat16 through an int16 view: NumPy has no bfloat16)."""
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def pairs(lq: int, lk: int, causal: bool) -> int:
    if not causal:
        return lq * lk
    return sum(min(lk, i + 1) for i in range(lq))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--peak", type=float, default=None,
                    help="FMA peak per core, GFLOP/s (default: probed at --threads)")
    ap.add_argument("--only", default="", help="substring filter on the shape names")
    ap.add_argument("--cpu-time", action="store_true")
    ap.add_argument("--dtypes", default="float32", help=f"comma-separated, from {', '.join(DTYPES)}")
    ap.add_argument("--read-bw", action="store_true", help="probe the read bandwidth at --threads first")
    a = ap.parse_args()
    dtypes = [t.strip() for t in a.dtypes.split(",") if t.strip()]
    for t in dtypes:
        if t not in DTYPES:
            ap.error(f"unknown dtype {t!r}; choose from {', '.join(DTYPES)}")
    normexp.set_num_threads(a.threads)
    if torch is not None:
        torch.set_num_threads(a.threads)
    clock = time.process_time if a.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    if a.peak is None:
        from normexp.bench.machine import fma_peak

        peak, _, peak_isa = fma_peak(a.threads, quick=True)
    else:
        peak, peak_isa = a.peak * a.threads, "--peak"
    print(f"normexp {normexp.__version__} isa={normexp.isa()} threads={a.threads} peak={peak:.0f} GFLOP/s"
          f" ({peak_isa})"
          f"{' torch ' + torch.__version__ if torch is not None else ' (torch not installed)'}")
    read_bw = None
    if a.read_bw:
        from normexp.bench.machine import probe_limits

        read_bw = probe_limits([a.threads], quick=True)[str(a.threads)]["read"]
        print(f"read bandwidth ({a.threads} threads, best pass): {read_bw:.1f} GB/s")
    for name, b, h, hk, lq, lk, d, causal in SHAPES:
        if a.only and a.only not in name:
            continue
        f32_time = None
        for dt in dtypes:
            qdt = np_dtype("float32" if dt.startswith("f32q-") else dt)
            kdt = np_dtype(dt.removeprefix("f32q-"))
            q = rng.standard_normal((b, h, lq, d), dtype=np.float32).astype(qdt)
            k = rng.standard_normal((b, hk, lk, d), dtype=np.float32).astype(kdt)
            v = rng.standard_normal((b, hk, lk, d), dtype=np.float32).astype(kdt)
            out = np.empty_like(q)
            flops = 4.0 * b * h * pairs(lq, lk, causal) * d
            kv_bytes = 2.0 * b * hk * lk * d * kdt.itemsize
            runs = {"normexp": lambda: normexp.attention(q, k, v, is_causal=causal, out=out)}
            if torch is not None:
                tq = to_torch(q)
                tk, tv = (to_torch(x) if qdt == kdt else torch.from_numpy(x.astype(np.float32)) for x in (k, v))
                runs["torch"] = lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, enable_gqa=hk != h)
            for f in runs.values():
                f()  # warm up
            times = {n: [] for n in runs}
            for _ in range(a.repeat):
                for n, f in runs.items():
                    t = clock()
                    f()
                    times[n].append(clock() - t)
            line = f"{name:28s} {dt:13s}"
            for n, ts in times.items():
                t = float(np.median(ts))
                gf = flops / t / 1e9
                line += f" | {n} {t * 1e3:8.2f} ms {gf:6.1f} GFLOP/s {100 * gf / peak:4.0f}%"
                if lq == 1:
                    line += f" {kv_bytes / t / 1e9:5.1f} GB/s"
                    if read_bw and n == "normexp":
                        line += f" ({100 * kv_bytes / t / 1e9 / read_bw:3.0f}% of read)"
            if len(times) == 2:
                line += f" | ratio {np.median(times['torch']) / np.median(times['normexp']):.2f}x"
            tn = float(np.median(times["normexp"]))
            if dt == "float32":
                f32_time = tn
            elif f32_time:
                line += f" | {f32_time / tn:.2f}x float32"
            print(line, flush=True)


if __name__ == "__main__":
    main()
