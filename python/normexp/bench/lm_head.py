"""``python -m normexp bench --lm-head``: the fused output layer against PyTorch's two steps.

normexp.linear_cross_entropy(h, W, y) against ``F.cross_entropy(h @ W.T, y)`` and normexp.linear_logsumexp(h, W)
against ``torch.logsumexp(h @ W.T, -1)``, for (tokens x dim x vocab) shapes and thread counts, with

* time: the median of the shared timing loop (timing.py), both libraries in this process, with
  ``normexp.set_num_threads(n)`` and ``torch.set_num_threads(n)``;
* memory: the peak resident-set growth of one call, measured in a fresh interpreter per (library, shape,
  thread count), since tracemalloc sees neither library's native allocations. The interpreter makes the
  inputs, makes one warm-up call (thread pools, lazy initialisation), returns the heap memory that call
  freed to the system (glibc ``malloc_trim``, so that the measured call cannot reuse it unseen), resets the
  kernel's high-water mark (``/proc/self/clear_refs`` "5"), and reports VmHWM after the call minus VmRSS
  before it. Where the reset
  is not allowed it makes no warm-up call and reports the growth of ``ru_maxrss`` instead (``method``).

The logits the fused call avoids are ``tokens x vocab x 4`` bytes of float32 (262 MB at 2048 x 32000); the
table gives each peak as a percentage of that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .timing import Timing, summarize, time_calls

OPS = ("linear_cross_entropy", "linear_logsumexp")
DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = ((2048, 1024, 32000), (512, 1024, 32000))


def parse_shape(spec: str) -> tuple[int, int, int]:
    """'TOKENSxDIMxVOCAB' (k = 2^10 allowed), e.g. '2048x1024x32000'."""
    s = spec.strip()
    if not re.fullmatch(r"\d+[kK]?x\d+[kK]?x\d+[kK]?", s):
        raise ValueError(f"bad LM-head shape {spec!r}: expected TOKENSxDIMxVOCAB, e.g. 2048x1024x32000")
    dims = tuple(int(t[:-1]) * 1024 if t[-1] in "kK" else int(t) for t in s.split("x"))
    if min(dims) < 1:
        raise ValueError(f"every dimension must be >= 1, got {spec!r}")
    return dims  # type: ignore[return-value]


def make_inputs(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hidden ~ N(0, 1), weight ~ N(0, 1/dim) (logits of order 1), labels uniform."""
    tokens, dim, vocab = shape
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((tokens, dim), dtype=np.float32)
    w = rng.standard_normal((vocab, dim), dtype=np.float32)
    w *= np.float32(1 / np.sqrt(dim))
    y = rng.integers(0, vocab, tokens)
    return h, w, y


def calls(lib: str, op: str, h: np.ndarray, w: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    """One call of op by lib ('normexp' or 'torch') on these inputs."""
    if lib == "normexp":
        import normexp

        if op == "linear_cross_entropy":
            return lambda: normexp.linear_cross_entropy(h, w, y)
        return lambda: normexp.linear_logsumexp(h, w)
    import torch
    import torch.nn.functional as F

    ht, wt, yt = torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(y)
    if op == "linear_cross_entropy":
        return lambda: F.cross_entropy(ht @ wt.T, yt)
    return lambda: torch.logsumexp(ht @ wt.T, -1)


def _set_threads(n: int) -> dict[str, int]:
    """n threads for both libraries, torch first: torch.set_num_threads calls omp_set_num_threads, which caps
    normexp too (one OpenMP runtime), so normexp is set after it. Returns the counts each will run."""
    import normexp

    got = {}
    torch = sys.modules.get("torch")  # only where it is loaded (not in normexp's peak-memory interpreter)
    if torch is not None:
        torch.set_num_threads(n)
        got["torch"] = torch.get_num_threads()
    normexp.set_num_threads(n)
    got["normexp"] = normexp.get_num_threads()
    return got


# ---- peak memory, in a fresh interpreter -------------------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _trim() -> None:
    """glibc's malloc_trim(0): heap memory freed by the warm-up call is returned to the system instead of
    staying resident, where the measured call would reuse it unseen. Nothing where it is missing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_main(argv: Sequence[str]) -> None:
    """Child entry: LIB OP TOKENS DIM VOCAB THREADS -> one JSON line {"growth": bytes, "method": ...}."""
    lib, op = argv[0], argv[1]
    tokens, dim, vocab, threads = (int(a) for a in argv[2:6])
    import gc
    import resource

    import normexp  # noqa: F401  (both libraries loaded before the baseline)

    if lib == "torch":
        import torch  # noqa: F401
    h, w, y = make_inputs((tokens, dim, vocab))
    _set_threads(threads)
    f = calls(lib, op, h, w, y)
    try:
        f()  # warm-up: thread pools and lazy initialisation are not the call's memory
        gc.collect()
        _trim()  # what the warm-up freed goes back to the system, so reusing it counts again
        with open("/proc/self/clear_refs", "w", encoding="ascii") as c:
            c.write("5")  # VmHWM := VmRSS
        base = _status("VmRSS")
        f()
        growth, method = _status("VmHWM") - base, "VmHWM"
    except OSError:
        gc.collect()
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        f()
        growth, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, "ru_maxrss"
    print(json.dumps({"growth": max(0, growth), "method": method}))


def peak_growth(lib: str, op: str, shape: tuple[int, int, int], threads: int) -> dict[str, Any]:
    code = "import sys; from normexp.bench.lm_head import peak_main; peak_main(sys.argv[1:])"
    args = [sys.executable, "-c", code, lib, op, *(str(n) for n in shape), str(threads)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    if r.returncode != 0:
        raise RuntimeError(f"peak-memory child failed ({lib} {op} {shape}): {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- the run -----------------------------------------------------------------------------------------
def run(shapes: Sequence[tuple[int, int, int]], threads: Sequence[int], timing: Timing, ops: Sequence[str] = OPS,
        memory: bool = True, log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """One record per (op, shape, thread count): median seconds and peak growth of each library, and the
    thread counts each really ran (``<lib>_threads``). Both libraries' thread settings are restored."""
    import normexp

    before: dict[str, int] = {"normexp": normexp.get_num_threads()}
    try:
        import torch

        libs = ["normexp", "torch"]
        before["torch"] = torch.get_num_threads()
    except ImportError:
        log("torch is not installed: normexp only")
        libs = ["normexp"]
    records = []
    try:
        for shape in shapes:
            h, w, y = make_inputs(shape)
            for op in ops:
                for n in threads:
                    rec: dict[str, Any] = {"op": op, "shape": list(shape), "threads": n,
                                           "logits_bytes": shape[0] * shape[2] * 4}
                    for lib in libs:
                        log(f"{op} {'x'.join(map(str, shape))} {n} thread(s): {lib}")
                        rec[f"{lib}_threads"] = _set_threads(n)[lib]
                        samples, _ = time_calls([calls(lib, op, h, w, y)], timing)
                        rec[f"{lib}_s"] = summarize(samples)["median"]
                        if memory:
                            p = peak_growth(lib, op, shape, n)
                            rec[f"{lib}_peak"] = p["growth"]
                            rec["method"] = p["method"]
                    records.append(rec)
    finally:
        if "torch" in before:
            torch.set_num_threads(before["torch"])
        normexp.set_num_threads(before["normexp"])
    return records


def render(records: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: times, torch's time over normexp's, peak growths and their share of the logits."""
    head = ("| op | tokens x dim x vocab | threads | normexp ms | torch ms | speed-up | normexp peak MB "
            "(% of logits) | torch peak MB |")
    lines = [head, "|" + "---|" * 8]
    for r in records:
        mb = 1e6
        t_n, t_t = r.get("normexp_s"), r.get("torch_s")
        speed = f"{t_t / t_n:.2f}x" if t_n and t_t else "-"
        pn, pt = r.get("normexp_peak"), r.get("torch_peak")
        pn_s = f"{pn / mb:.1f} ({100 * pn / r['logits_bytes']:.1f}%)" if pn is not None else "-"
        pt_s = f"{pt / mb:.1f}" if pt is not None else "-"
        lines.append(
            f"| {r['op']} | {'x'.join(map(str, r['shape']))} | {r['threads']} | {1e3 * t_n:.1f} | "
            f"{1e3 * t_t:.1f} | {speed} | {pn_s} | {pt_s} |" if t_t is not None else
            f"| {r['op']} | {'x'.join(map(str, r['shape']))} | {r['threads']} | {1e3 * t_n:.1f} | - | - | {pn_s} | - |"
        )
    short = [f"{r['op']} {'x'.join(map(str, r['shape']))}: {lib} ran {r[lib + '_threads']} thread(s), not {r['threads']}"
             for r in records for lib in ("normexp", "torch") if r.get(lib + "_threads", r["threads"]) != r["threads"]]
    if short:
        lines += [""] + short
    method = {r.get("method") for r in records} - {None}
    if method:
        lines.append("")
        lines.append(f"Peak = resident-set high-water growth of one call in a fresh interpreter ({', '.join(sorted(method))}); "
                     "speed-up = torch time / normexp time.")
    return "\n".join(lines)
