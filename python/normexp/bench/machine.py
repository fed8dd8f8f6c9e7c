"""The machine a benchmark ran on: CPU, caches, library versions, and its measured limits (memory
bandwidth and FP32 FMA peak, from the benchmark's own native module ``normexp._probe``)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from importlib import metadata
from typing import Any, Callable, Sequence


import normexp
from normexp import _probe

_LIBRARIES = ("numpy", "scipy", "torch", "onnxruntime", "onnx", "jax", "jaxlib", "threadpoolctl", "matplotlib")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:  # closed at once (no ResourceWarning)
        return f.read().strip()


def caches() -> dict[str, int]:
    """Cache sizes in bytes of CPU 0, e.g. {'L1d': 32768, 'L2': 524288, 'L3': 33554432} (Linux sysfs)."""
    out: dict[str, int] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for e in entries:
        if not e.startswith("index"):
            continue
        try:
            level, kind, size = (_read(f"{base}/{e}/{field}") for field in ("level", "type", "size"))
        except OSError:
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        num = size[:-1] if size[-1:] in "KMG" else size
        name = f"L{level}" + ("d" if kind == "Data" else "")
        try:
            out[name] = int(num) * mult
        except ValueError:
            pass
    return out


def llc_bytes() -> int:
    """Size of the last-level cache; 32 MiB when the OS does not say (errs towards larger buffers)."""
    c = caches()
    sizes = [v for k, v in c.items() if k in ("L2", "L3", "L4")]
    return max(sizes) if sizes else 32 << 20


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                      "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NORMEXP_ISA", "XLA_FLAGS")
           if k in os.environ}
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpus_usable": usable_cpus(),
        "cpus_total": os.cpu_count(),
        "caches": caches(),
        "llc_bytes": llc_bytes(),
        "python": sys.version.split()[0],
        "normexp": normexp.__version__,
        "isa": normexp.isa(),
        "available_isas": normexp.available_isas(),
        "normexp_threads": normexp.get_num_threads(),
        "libraries": library_versions(),
        "env": env,
        "load_average": load_average(),
        "transparent_hugepage": transparent_hugepage(),
    }


def transparent_hugepage() -> str | None:
    """The kernel's transparent huge page mode ('always', 'madvise' or 'never'; Linux), None elsewhere."""
    try:
        text = _read("/sys/kernel/mm/transparent_hugepage/enabled")
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (runnable threads), None where the OS does not say. Above the
    usable CPU count the machine was busy during the run and its numbers are noisy."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def probe_limits(threads: Sequence[int], *, quick: bool = False, llc: int | None = None,
                 buffer_bytes: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Memory read / copy / non-temporal copy bandwidth (GB/s = 1e9 B/s) and FP32 FMA peak (GFLOP/s) at
    each thread count, keyed by str(threads).

    The buffers ask for transparent huge pages, as NumPy does for every array of 4 MiB or more, so the
    limit is the one of the memory the benchmark's operands live in (on 4 KiB pages, a TLB miss every 4
    KiB, the probe read 25-35% slower on an Intel Xeon VM); `read_huge_pages` is the share of the read
    buffer the OS gave on them, where it says.

    Buffers are 8x the last-level cache (at least 256 MiB; 4x and 128 MiB when quick) so every pass
    streams from memory. The limit is the best pass (the machine's capability; a loaded machine only
    makes passes slower) and the median is kept beside it. The FMA loop runs the widest vectors the
    machine runs: 512-bit FMA when normexp.available_isas() lists avx512 (twice the AVX2 rate on cores with
    two 512-bit FMA units, such as most Xeons; the same on Zen 4), 256-bit when it lists avx2, else 128-bit
    vectors of the baseline ISA.
    """
    llc = llc or llc_bytes()
    if buffer_bytes is not None and buffer_bytes < 4096:
        raise ValueError(f"probe_limits: buffer_bytes must be at least 4096, got {buffer_bytes}")
    if buffer_bytes is None:
        buffer_bytes = max(4 * llc, 128 << 20) if quick else max(8 * llc, 256 << 20)
    reps = 4 if quick else 10
    out: dict[str, dict[str, Any]] = {}
    for t in dict.fromkeys(threads):
        row: dict[str, Any] = {"buffer_bytes": buffer_bytes}
        for op in ("read", "copy", "copy_nt"):
            if not _probe.probe_memory_supported(op):
                row[op] = None
                continue
            r = _probe.probe_memory(op, buffer_bytes, t, reps)
            moved = buffer_bytes * (1 if op == "read" else 2)  # copy: read + write (STREAM's count)
            rates = [moved / s / 1e9 for s in r["seconds"]]
            row[op] = max(rates)
            row[op + "_median"] = statistics.median(rates)
            row["threads_run"] = r["threads"]
            if op == "read" and "huge_page_bytes" in r:
                row["read_huge_pages"] = min(1.0, r["huge_page_bytes"] / buffer_bytes)
        row["fma"], row["fma_median"], row["fma_isa"] = fma_peak(t, quick=quick)
        out[str(t)] = row
        if log:
            huge = f" ({row['read_huge_pages']:.0%} on huge pages)" if "read_huge_pages" in row else ""
            log(f"  {t} thread{'s' if t > 1 else ' '}: read {row['read']:.1f} GB/s{huge}, copy {row['copy']:.1f} GB/s"
                + (f", non-temporal copy {row['copy_nt']:.1f} GB/s" if row.get("copy_nt") else "")
                + f", FMA peak {row['fma']:.1f} GFLOP/s ({row['fma_isa']})")
    return out


def fma_peak(threads: int, *, quick: bool = False) -> tuple[float, float, str]:
    """FP32 FMA peak at `threads` (GFLOP/s, best and median pass) and the loop that ran ('avx512-fma',
    'avx2-fma' or 'baseline'): the widest vectors normexp.available_isas() says the machine runs."""
    isa = next((i for i in ("avx512", "avx2") if i in normexp.available_isas()), "baseline")
    # Short FMA passes (a few ms each), many of them: the best one is the peak, and on a shared machine
    # a short pass is more likely to find its core free.
    iters, reps = (1_000_000, 8) if quick else (2_000_000, 20)
    r = _probe.probe_fma(isa, iters, threads, reps)
    rates = [r["flops_per_thread_pass"] * r["threads"] / s / 1e9 for s in r["seconds"]]
    return max(rates), statistics.median(rates), r["variant"]


def limit_value(limits: dict[str, dict[str, Any]], threads: int, kind: str) -> float | None:
    """The limit of `kind` ('read', 'copy', 'fma') at `threads`: the probe's value at that thread count,
    or at the largest probed count below it. 'copy' is the better of regular and non-temporal copies
    (a library may use either)."""
    if not limits:
        return None
    keys = sorted(int(k) for k in limits)
    below = [k for k in keys if k <= threads] or keys[:1]
    row = limits[str(below[-1])]
    if kind == "copy":
        vals = [v for v in (row.get("copy"), row.get("copy_nt")) if v]
        return max(vals) if vals else None
    return row.get(kind)


