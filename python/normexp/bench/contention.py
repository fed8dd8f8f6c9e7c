"""``--contention N``: the suite measured beside N busy processes, the normal state of a shared machine.

Each busy process is a child Python interpreter spinning in ``while True: pass`` (one core's worth of
work each), started after the machine probe and before the first measurement, and killed when the run
ends, also on an error or Ctrl-C. The output header names them. Every call is timed on its own (no
batching), so a call that waited for a descheduled thread shows up as a slow sample: the contention
table gives the mean and the 90th percentile per call and, for each thread count, their ratios to the
one-thread run of the same case and library ("2 threads are never slower than one" reads as ratios at
or below 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from typing import Any, Iterator, Sequence

from .timing import Timing

BUSY_CODE = "while True: pass"

# Per-call samples: min_sample=0 times each call alone; enough of them for a 90th percentile.
TIMING = Timing(warmup=0.1, repeat=300, min_repeat=50, max_time=1.5, min_sample=0.0)


def timing(user: dict[str, Any]) -> Timing:
    """The contention timing, with what the user set explicitly on the command line on top."""
    return dataclasses.replace(TIMING, **user)


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[subprocess.Popen]]:
    """n child processes, each spinning on one core, for the duration of the block."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def describe(meta: dict[str, Any]) -> str | None:
    """The output header's line for a run with --contention, None without."""
    c = meta.get("contention")
    if not c:
        return None
    n = c["processes"]
    return (f"contention: {n} busy process{'es' if n != 1 else ''} beside every measurement "
            f"(`python -c \"{BUSY_CODE}\"`, pids {', '.join(map(str, c['pids']))}); "
            "calls timed one at a time")


def table(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per (case, library, thread count): median, mean and 90th percentile per call, and the ratios of
    mean and p90 to the same case and library at the fewest threads measured (normally 1)."""
    from .report import fmt_time

    header = ["op", "case", "dtype", "peer", "thr", "median", "mean", "p90", "mean / 1t", "p90 / 1t"]
    base: dict[tuple, dict[str, Any]] = {}
    timed = [r for r in records if r.get("time_mean_s")]
    for r in sorted(timed, key=lambda r: r["threads"]):
        base.setdefault((r["op"], r["label"], r["dtype"], r["peer"]), r)
    rows = []
    for r in timed:
        b = base[(r["op"], r["label"], r["dtype"], r["peer"])]
        rows.append([r["op"], r["label"], r["dtype"], r["peer"], str(r["threads"]), fmt_time(r["time_s"]),
                     fmt_time(r["time_mean_s"]), fmt_time(r["time_p90_s"]),
                     f"{r['time_mean_s'] / b['time_mean_s']:.2f}x", f"{r['time_p90_s'] / b['time_p90_s']:.2f}x"])
    return header, rows
