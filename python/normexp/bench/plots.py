"""PNG plots (matplotlib): throughput against problem size, one line per peer, the machine's limit as a
line, one panel per thread count.

* softmax / log_softmax / logsumexp: GB/s of compulsory traffic (input read once, output written once)
  against elements per call, for the float32 last-axis cases; the ceiling is the measured memory
  bandwidth (copy bandwidth, or read bandwidth for logsumexp). In-cache sizes can sit above it: that
  ceiling is DRAM's, and the cache is faster.
* attention: a roofline: GFLOP/s against arithmetic intensity (flops per byte of compulsory traffic),
  one point per case and library (the cases are different shapes, so no line joins them); the ceiling
  is min(FMA peak, intensity x read bandwidth).
"""

from __future__ import annotations

import os
from typing import Any

from . import machine
from .report import group
from .runner import Results

_STYLE = {"normexp": dict(color="black", linewidth=2.4, marker="o", zorder=5)}
_MARKERS = "s^vD<>ph*"


def available() -> str | None:
    """None when matplotlib can be used, else the reason."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib not installed (pip install matplotlib): no plots"
    return None


def _style(peer: str, i: int) -> dict[str, Any]:
    base = peer.removesuffix(" fast")
    style = _STYLE.get(base, dict(marker=_MARKERS[i % len(_MARKERS)], linewidth=1.3, markersize=5))
    return dict(style, linestyle="--") if base != peer else style  # accuracy="fast": its library's style, dashed


def _legend_order(peers: list[str], present: set[str]) -> list[str]:
    """The peers in the results' order, each followed by its " fast" series (normexp's accuracy="fast"
    rows, named by _series and absent from the metadata), then anything else that was measured."""
    order: list[str] = []
    for p in peers:
        order += [q for q in (p, p + " fast") if q in present and q not in order]
    return order + sorted(present - set(order))


def _series(results: Results, op: str, threads: int) -> dict[str, list[tuple[float, float, str]]]:
    """{peer: [(x, y, label)]} of the plotted cases, sorted by x. The accuracy="fast" rows give normexp's
    own series ("<peer> fast"); the peers' times in those rows repeat the high rows' and are left out."""
    series: dict[str, list[tuple[float, float, str]]] = {}
    for key, by_peer in group(results.records).items():
        if key[0] != op or key[5] != threads:
            continue
        fast = key[6] == "fast"
        for peer, r in by_peer.items():
            if not r["time_s"] or r["check"] not in ("ok", "inaccurate"):
                continue
            if fast and not peer.startswith("normexp"):
                continue
            if op == "attention":
                x = r["flops"] / r["bytes"]
                y = r["gflop_per_s"]
            else:
                if r["dtype"] != "float32" or r["axis"] != len(r["shape"]) - 1:
                    continue
                x, y = r["elements"], r["gb_per_s"]
            series.setdefault(peer + " fast" if fast else peer, []).append((x, y, r["label"]))
    for v in series.values():
        v.sort()
    return series


def plot_op(results: Results, op: str, path: str) -> bool:
    """One figure for `op`, one panel per thread count. False when nothing was measured for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r["threads"] for r in results.records if r["op"] == op})
    panels = [(t, _series(results, op, t)) for t in threads]
    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return False
    peers = _legend_order(list(results.meta.get("peers", {})), {p for _, s in panels for p in s})
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False, sharey=True)
    for ax, (t, series) in zip(axes[0], panels):
        xs = [x for v in series.values() for x, _, _ in v]
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        for i, peer in enumerate(peers):
            pts = series.get(peer)
            if pts:
                style = _style(peer, i)
                if op == "attention":  # distinct shapes, not a size sweep: points, no connecting line
                    style = dict(style, linestyle="none", markersize=7)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=peer, **style)
        if op == "attention":
            peak = machine.limit_value(results.limits, t, "fma")
            bw = machine.limit_value(results.limits, t, "read")
            if peak and bw:
                import numpy as np

                grid = np.geomspace(lo, hi, 200)
                ax.plot(grid, np.minimum(peak, grid * bw), "--", color="tab:red", linewidth=1.5,
                        label=f"roofline: {peak:.0f} GFLOP/s, {bw:.1f} GB/s")
            ax.set_xlabel("arithmetic intensity (flop / byte)")
            ax.set_ylabel("GFLOP/s")
        else:
            kind = "read" if op == "logsumexp" else "copy"
            bw = machine.limit_value(results.limits, t, kind)
            if bw:
                ax.axhline(bw, linestyle="--", color="tab:red", linewidth=1.5,
                           label=f"memory {kind} bandwidth {bw:.1f} GB/s")
            ax.set_xlabel("elements per call (float32, last axis)")
            ax.set_ylabel("GB/s (read input + write output)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.grid(True, which="both", alpha=0.25)
        ax.set_title(f"{op}, {t} thread{'s' if t > 1 else ''}")
        ax.legend(fontsize=8, loc="best")
    m = results.meta
    fig.suptitle(f"normexp {m.get('normexp', '')} ({m.get('isa', '')}) on {m.get('cpu', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_all(results: Results, directory: str) -> list[str]:
    """One PNG per operation in `directory`; returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for op in dict.fromkeys(r["op"] for r in results.records):
        path = os.path.join(directory, f"{op}.png")
        if plot_op(results, op, path):
            written.append(path)
    return written
