"""Quick benchmark: normexp.sample against the usual PyTorch decoding sequence, medians side by side.

    python bench/sampling_quick.py [--logits peaked|flat] [--threads N] [--clock wall|cpu] [--json out.json]

Cases (vocab 32000 and 128256, batch 1 and 64):
  temperature  T = 0.8:                torch: softmax(x / T) + multinomial
  top_k+top_p  k = 50, p = 0.9, T=0.8:  torch: topk + softmax + cumsum + mask + multinomial (Hugging Face order)
  top_p        p = 0.9, T = 0.8:        torch: sort + softmax + cumsum + mask + multinomial
  greedy       T = 0:                   torch: argmax
Logits: "peaked" (default) is N(0, 2^2) plus 20 tokens raised by U(6, 12), so a few tokens carry most of
the mass as in a language model; "flat" is N(0, 2^2) alone (the top-p set then holds thousands of tokens).
Both libraries get the same float32 logits and the same thread count. Timings are medians of repeated
calls (at least 5, about 0.3 s per measurement). The ratio is torch / normexp (> 1: normexp faster).
``--clock cpu`` times the calling thread's CPU time instead of the wall clock (single-threaded only): on
a shared, oversubscribed machine it removes the time the process spends descheduled.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import normexp


def median_time(fn, min_reps=5, budget=0.3, clock=time.perf_counter):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 1000):
        t = clock()
        fn()
        times.append(clock() - t)
    return float(np.median(times))


def make_logits(batch, vocab, kind, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, vocab)).astype(np.float32) * 2
    if kind == "peaked":
        for r in range(batch):
            hot = rng.choice(vocab, 20, replace=False)
            x[r, hot] += rng.uniform(6, 12, 20).astype(np.float32)
    return x


def torch_cases(torch):
    F = torch.nn.functional

    def temperature(x, g):
        return torch.multinomial(F.softmax(x / 0.8, dim=-1), 1, generator=g)

    def top_k_top_p(x, g):
        v, idx = torch.topk(x / 0.8, 50, dim=-1)
        probs = F.softmax(v, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        probs = probs.masked_fill(cum - probs > 0.9, 0.0)
        return idx.gather(-1, torch.multinomial(probs, 1, generator=g))

    def top_p(x, g):
        v, idx = torch.sort(x / 0.8, dim=-1, descending=True)
        probs = F.softmax(v, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        probs = probs.masked_fill(cum - probs > 0.9, 0.0)
        return idx.gather(-1, torch.multinomial(probs, 1, generator=g))

    def greedy(x, g):
        return torch.argmax(x, dim=-1)

    return {"temperature": temperature, "top_k+top_p": top_k_top_p, "top_p": top_p, "greedy": greedy}


NORMEXP_CASES = {
    "temperature": dict(temperature=0.8),
    "top_k+top_p": dict(temperature=0.8, top_k=50, top_p=0.9),
    "top_p": dict(temperature=0.8, top_p=0.9),
    "greedy": dict(temperature=0.0),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logits", choices=["peaked", "flat"], default="peaked")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0: normexp's default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: thread CPU time (needs --threads 1)")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("PyTorch is not installed: pip install torch==2.13.0")
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu measures one thread: pass --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        normexp.set_num_threads(args.threads)
    threads = normexp.get_num_threads()
    torch.set_num_threads(threads)
    tc = torch_cases(torch)
    print(f"normexp {normexp.__version__} ({normexp.isa()}), torch {torch.__version__}, {threads} threads, "
          f"{args.logits} logits, {args.clock} clock")
    print(f"{'case':<13}{'vocab':>8}{'batch':>6}{'normexp us':>12}{'torch us':>11}{'ratio':>8}")
    rows = []
    for vocab in (32000, 128256):
        for batch in (1, 64):
            x = make_logits(batch, vocab, args.logits)
            xt = torch.from_numpy(x)
            for name, kw in NORMEXP_CASES.items():
                rng = np.random.default_rng(0)
                g = torch.Generator().manual_seed(0)
                t_ne = median_time(lambda: normexp.sample(x, rng=rng, **kw), clock=clock)
                t_pt = median_time(lambda: tc[name](xt, g), clock=clock)
                rows.append(dict(case=name, vocab=vocab, batch=batch, normexp_s=t_ne, torch_s=t_pt,
                                 ratio=t_pt / t_ne, logits=args.logits, threads=threads, clock=args.clock))
                print(f"{name:<13}{vocab:>8}{batch:>6}{t_ne * 1e6:>12.1f}{t_pt * 1e6:>11.1f}{t_pt / t_ne:>7.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
