"""A decode step of a batched server on a paged KV cache: normexp.paged_attention against the machine's read
bandwidth, and against normexp.attention over the same keys stored contiguously (one call per sequence).

    python bench/paged_quick.py [--threads 1,2] [--repeat 9] [--page 16] [--dtype float32]

The batch: 16 sequences of 2k to 16k keys (evenly spaced, 147k keys in all), one new query each, 32 query
heads over 8 key/value heads of dimension 128 (Llama-3-8B's attention), pages of --page keys in a random
order in the pool, attention sinks on. A decode step reads every key and value once (0.5 flop/byte), so it
is bound by memory read bandwidth: the figure is K/V bytes / median time, and its share of the read
bandwidth the bench's probe measures at the same thread count. The pool is timed in the issue's layout
(page, slot, head, dim), where one head's rows are 4 KiB apart, and stored head-major (page, head, slot,
dim), read in place through strides (normexp.bench.machine.probe_limits, the best
of its passes). Medians of interleaved runs, the same inputs for both layouts; the K/V working set (1.2 GB
in float32) is far beyond the last-level cache, so every call streams from memory. A quick check, not the
project benchmark (python -m normexp bench, whose paged_attention rows measure the same batch in the
issue's layout: normexp.bench.cases makes the pool, the block table and the lengths for both).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import normexp
from normexp.bench import machine
from normexp.bench.cases import DEFAULT_PAGED, PAGED_DTYPES, Case

(SHAPE, HEADS_KV, _PAGE), = DEFAULT_PAGED
SEQS, HEADS_Q, DIM = SHAPE[0], SHAPE[1], SHAPE[4]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--page", type=int, default=16, help="keys per page")
    ap.add_argument("--dtype", default="float32", choices=list(PAGED_DTYPES))
    ap.add_argument("--no-probe", action="store_true", help="skip the bandwidth probe (no %% column)")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    case = Case("paged_attention", SHAPE, a.dtype, heads_kv=HEADS_KV, page=a.page)
    q, k_pages, v_pages, table, lens = case.make_inputs(0)
    need = (lens + a.page - 1) // a.page
    dt = q.dtype
    rng = np.random.default_rng(1)
    # The same pool stored head-major, (page, head, slot, dim), seen as (page, slot, head, dim): one head's
    # rows of a page are contiguous.
    k_hm = np.ascontiguousarray(k_pages.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    v_hm = np.ascontiguousarray(v_pages.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    sinks = rng.standard_normal(HEADS_Q)
    # The same keys, contiguous per sequence ((1, Hkv, L, D), as attention takes a KV cache).
    ks = [np.ascontiguousarray(k_pages[table[s, : need[s]]].reshape(-1, HEADS_KV, DIM)[: lens[s]].transpose(1, 0, 2))[None]
          for s in range(SEQS)]
    vs = [np.ascontiguousarray(v_pages[table[s, : need[s]]].reshape(-1, HEADS_KV, DIM)[: lens[s]].transpose(1, 0, 2))[None]
          for s in range(SEQS)]
    kv_bytes = case.kv_bytes

    out = np.empty((SEQS, HEADS_Q, DIM), dt)
    outs = [np.empty((1, HEADS_Q, 1, DIM), dt) for _ in range(SEQS)]

    def paged() -> None:
        normexp.paged_attention(q, k_pages, v_pages, table, lens, sinks=sinks, out=out)

    def paged_hm() -> None:
        normexp.paged_attention(q, k_hm, v_hm, table, lens, sinks=sinks, out=out)

    def contiguous() -> None:
        for s in range(SEQS):
            normexp.attention(q[s][None, :, None], ks[s], vs[s], sinks=sinks, out=outs[s])

    paged()
    contiguous()
    err = max(float(np.abs(out[s].astype(np.float64) - outs[s][0, :, 0]).max()) for s in range(SEQS))
    limits = {} if a.no_probe else machine.probe_limits(threads, quick=True)
    print(f"normexp {normexp.__version__} isa={normexp.isa()} {a.dtype} page={a.page}: {SEQS} sequences, "
          f"{int(lens.min())}..{int(lens.max())} keys ({int(lens.sum())} in all), Hq={HEADS_Q} Hkv={HEADS_KV} "
          f"D={DIM}, sinks; K/V {kv_bytes / 1e9:.2f} GB; load average {os.getloadavg()[0]:.2f} on "
          f"{machine.usable_cpus()} CPUs; max |paged - contiguous| {err:.1e}")
    print("| threads | read bandwidth (probe) | layout | median | K/V read | % of read bw | time / contiguous |")
    print("|---|---|---|---|---|---|---|")
    runs = [("paged (page, slot, head, dim)", paged), ("paged (page, head, slot, dim)", paged_hm),
            ("contiguous, 16 attention calls", contiguous)]
    for t in threads:
        normexp.set_num_threads(t)
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(a.repeat):  # interleaved
            for i, (_, f) in enumerate(runs):
                t0 = time.perf_counter()
                f()
                times[i].append(time.perf_counter() - t0)
        med = [statistics.median(x) for x in times]
        bw = machine.limit_value(limits, t, "read") if limits else None
        bws = f"{bw:.1f} GB/s" if bw else "-"
        for (name, _), m in zip(runs, med):
            rate = kv_bytes / m / 1e9
            pct = f"{100 * rate / bw:.0f}%" if bw else "-"
            print(f"| {t} | {bws} | {name} | {m * 1e3:.1f} ms | {rate:.1f} GB/s | {pct} | {m / med[-1]:.2f} |")


if __name__ == "__main__":
    main()
