"""Tables from benchmark records: the terminal (plain text), Markdown (for the README), and JSON.

The summary has one row per (case, threads): normexp's median time with its spread, its throughput and
its fraction of the machine's limit, then every peer's median time with its own fraction of the limit,
then the fastest peer whose answer is right and normexp's speed-up over it. Marks in a peer's cell:
``*`` inaccurate (right function, error above the rounding level: see max_error in the JSON),
``WRONG`` (a different answer: not timed), ``error`` (the peer raised; the JSON has the message),
``-`` (the peer has no such operation).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Sequence

from . import contention
from .cases import ATTENTION_OPS
from .runner import Results

LIMIT_NAMES = {"copy": "copy", "read": "read", "fma": "FMA"}
LEGEND = (
    "Times are medians per call (±: interquartile range / median). cache: 'in' when input + output fit in "
    "half the last-level cache (measured hot), 'out' otherwise and for attention decode of 1/16 of it or "
    "more (measured cold). '% limit': achieved GB/s over "
    "the 'limits' line's memory bandwidth (copy for softmax/log_softmax: the better of the regular and the "
    "non-temporal copy; read for logsumexp and attention decode, paged attention included: its GB/s is almost all "
    "K/V read) or GFLOP/s over its FMA peak (attention prefill); in-cache cases can exceed 100% of memory "
    "bandwidth. 'x float32': a 16-bit attention row's speed-up over normexp's float32 row of the same shape. "
    "'*' inaccurate result (right function, error above rounding level), WRONG: wrong answer (not timed), "
    "'-': not offered by that library. 'vs best': best correct peer's time / normexp's time."
)
SKIPPED_PEER = "skipped "  # runner/peers.make_peers: "skipped <peer>: <why>"


def split_notices(notices: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the peers that did not run, as "<peer>: <why>"; the other notices), each once, in order."""
    unique = list(dict.fromkeys(notices))
    skipped = [n[len(SKIPPED_PEER):] for n in unique if n.startswith(SKIPPED_PEER)]
    return skipped, [n for n in unique if not n.startswith(SKIPPED_PEER)]


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return ""


def fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return ""
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_frac(rec: dict[str, Any]) -> str:
    f = rec.get("limit_fraction")
    if f is None:
        return ""
    return f"{100 * f:.0f}% {LIMIT_NAMES.get(rec['limit_kind'], rec['limit_kind'])}"


def peer_cell(rec: dict[str, Any] | None, with_limit: bool = True) -> str:
    if rec is None:
        return ""
    chk = rec["check"]
    if chk == "n/a":
        return "-"
    if chk in ("WRONG", "error"):
        return chk
    cell = fmt_time(rec["time_s"])
    if with_limit and rec.get("limit_fraction") is not None:
        cell += f" ({100 * rec['limit_fraction']:.0f}%)"
    if chk == "inaccurate":
        cell += " *"
    return cell


def _case_key(r: dict[str, Any]) -> tuple:
    # accuracy: records written before the keyword existed are the high rows; kv_dtype, heads_kv and page
    # (attention) likewise default to the case's dtype, its query heads and no paging.
    return (r["op"], r["dtype"], tuple(r["shape"]), r["axis"], r["causal"], r["threads"], r.get("accuracy", "high"),
            r.get("kv_dtype") or r["dtype"], r.get("heads_kv") or (r["shape"][1] if r["causal"] is not None else None),
            r.get("page"))


def float32_key(key: tuple) -> tuple:
    """The key of the float32 row (q, K and V in float32) of the case of `key`: same shape, heads, mask,
    threads."""
    return key[:1] + ("float32",) + key[2:7] + ("float32",) + key[8:]


def group(records: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """{(op, dtype, shape, axis, causal, threads, accuracy, kv_dtype, heads_kv, page): {peer: record}} in
    first-seen order."""
    out: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in records:
        out.setdefault(_case_key(r), {})[r["peer"]] = r
    return out


def best_peer(by_peer: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest peer other than normexp (on any kernel set) whose result passed the check (ok or
    inaccurate)."""
    timed = [r for p, r in by_peer.items()
             if not p.startswith("normexp") and r["check"] in ("ok", "inaccurate") and r["time_s"]]
    return min(timed, key=lambda r: r["time_s"]) if timed else None


def x_float32(key: tuple, nx: dict[str, Any] | None, groups: dict[tuple, dict[str, dict[str, Any]]]) -> str:
    """A 16-bit attention row's speed-up over normexp's float32 row of the same shape (float32 time / this
    time), '' for float32 rows or when either time is missing."""
    if nx is None or not nx.get("time_s") or (key[1] == "float32" and key[7] == "float32"):
        return ""
    base = groups.get(float32_key(key), {}).get("normexp")
    if base is None or not base.get("time_s"):
        return ""
    return f"{base['time_s'] / nx['time_s']:.2f}x"


def summary_tables(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per operation. Attention tables (contiguous and paged) show GFLOP/s and GB/s of
    compulsory traffic (decode: almost all K/V), the fraction of the FMA peak (prefill) or of the read
    bandwidth (decode), and for 16-bit rows the speed-up over the float32 row of the same shape."""
    peers = [p for p in results.meta.get("peers", {}) if p != "normexp"]
    tables = []
    groups = group(results.records)
    for op in dict.fromkeys(k[0] for k in groups):
        attn = op in ATTENTION_OPS
        header = ["case", "dtype", "cache", "thr", "normexp", "±"]
        header += ["GFLOP/s", "GB/s"] if attn else ["Gelem/s", "GB/s"]
        header += ["% limit"] + (["x float32"] if attn else []) + peers + ["best peer", "vs best"]
        rows = []
        for key, by_peer in groups.items():
            if key[0] != op:
                continue
            nx = by_peer.get("normexp")
            any_rec = next(iter(by_peer.values()))
            row = [any_rec["label"], any_rec.get("dtype_label") or any_rec["dtype"], any_rec.get("cache", ""), str(key[5])]
            if nx is not None and nx["time_s"]:
                row += [fmt_time(nx["time_s"]) + (" *" if nx["check"] == "inaccurate" else ""),
                        f"{100 * nx['iqr_rel']:.0f}%" if nx.get("iqr_rel") is not None else ""]
                row += [fmt_rate(nx["gflop_per_s"])] if attn else [fmt_rate(nx["gelem_per_s"])]
                row += [fmt_rate(nx["gb_per_s"]), fmt_frac(nx)]
            else:
                row += [peer_cell(nx, False) if nx else "", "", "", "", ""]
            if attn:
                row.append(x_float32(key, nx, groups))
            row += [peer_cell(by_peer.get(p)) for p in peers]
            b = best_peer(by_peer)
            if b is not None and nx is not None and nx["time_s"]:
                row += [b["peer"], f"{b['time_s'] / nx['time_s']:.2f}x"]
            else:
                row += [b["peer"] if b else "", ""]
            rows.append(row)
        tables.append((op, header, rows))
    return tables


def isa_table(results: Results) -> tuple[list[str], list[list[str]]] | None:
    """With ``--isa A,B,...``: per (case, threads) the median time of normexp on each kernel set and the
    first set's speed-up over each other one (time on B / time on A: above 1 when A is faster); None
    without --isa."""
    from .peers import normexp_isa_name

    isas = results.meta.get("isas") or []
    if len(isas) < 2:
        return None
    names = [normexp_isa_name(isa, i == 0) for i, isa in enumerate(isas)]
    header = ["op", "case", "dtype", "cache", "thr"] + [f"{isa} median" for isa in isas]
    header += [f"{isas[0]} speed-up over {isa}" for isa in isas[1:]]
    rows = []
    for key, by_peer in group(results.records).items():
        recs = [by_peer.get(n) for n in names]
        if all(r is None for r in recs):
            continue
        any_rec = next(r for r in recs if r is not None)
        row = [any_rec["op"], any_rec["label"], any_rec.get("dtype_label") or any_rec["dtype"], any_rec.get("cache", ""),
               str(key[5])]
        row += [fmt_time(r["time_s"]) if r and r["time_s"] else (r["check"] if r else "") for r in recs]
        base = recs[0]["time_s"] if recs[0] else None
        for r in recs[1:]:
            row.append(f"{r['time_s'] / base:.2f}x" if base and r and r["time_s"] else "")
        rows.append(row)
    return header, rows


def detail_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per measurement."""
    header = ["op", "case", "dtype", "cache", "thr", "peer", "median", "q1", "q3", "Gelem/s", "GB/s", "GFLOP/s", "% limit",
              "vs normexp", "max error", "check", "note"]
    rows = []
    groups = group(results.records)
    for by_peer in groups.values():
        nx = by_peer.get("normexp")
        for r in by_peer.values():
            rel = ""
            if nx is not None and nx["time_s"] and r["time_s"] and r["peer"] != "normexp":
                rel = f"{r['time_s'] / nx['time_s']:.2f}x"
            err = r.get("max_error")
            rows.append([r["op"], r["label"], r.get("dtype_label") or r["dtype"], r.get("cache", ""), str(r["threads"]), r["peer"],
                         fmt_time(r["time_s"]),
                         fmt_time(r["time_q1_s"]), fmt_time(r["time_q3_s"]), fmt_rate(r["gelem_per_s"]),
                         fmt_rate(r["gb_per_s"]), fmt_rate(r["gflop_per_s"]), fmt_frac(r), rel,
                         "" if err is None else f"{err:.1e}", r["check"], r["note"]])
    return header, rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    left = {0, 1}  # case and dtype/peer columns read better left-aligned

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|").replace("*", "\\*")

    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join(":---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_lines(results: Results) -> list[str]:
    m = results.meta
    caches = m.get("caches", {})
    llc = max((v for k, v in caches.items() if k[:2] in ("L2", "L3", "L4")), default=m.get("llc_bytes", 0))
    lines = [
        f"normexp {m['normexp']} · ISA {m['isa']} (available: {', '.join(m['available_isas'])}) · "
        f"{m['cpus_usable']} usable CPUs · {m['cpu']} · LLC {llc / 2**20:.0f} MiB"
        + (f" · THP {m['transparent_hugepage']}" if m.get("transparent_hugepage") else "") + f" · {m['date_utc']}",
        "peers: " + ", ".join(f"{p} {v}" for p, v in m.get("peers", {}).items()),
    ]
    skipped, _ = split_notices(results.notices)
    if skipped:
        lines[-1] += "; not run: " + "; ".join(skipped)
    for t, row in sorted(results.limits.items(), key=lambda kv: int(kv[0])):
        huge = row.get("read_huge_pages")
        parts = [f"read {row['read']:.1f} GB/s" + (f" ({huge:.0%} on huge pages)" if huge is not None else "")]
        if row.get("copy_nt"):  # '% limit' of softmax divides by the better of the two (machine.limit_value)
            best = max(row["copy"], row["copy_nt"])
            parts.append(f"copy {best:.1f} GB/s (the better of regular {row['copy']:.1f} and non-temporal {row['copy_nt']:.1f})")
        else:
            parts.append(f"copy {row['copy']:.1f} GB/s")
        isa = f" ({row['fma_isa']})" if row.get("fma_isa") else ""
        parts.append(f"FMA peak {row['fma']:.0f} GFLOP/s{isa}")
        lines.append(f"limits at {t} thread{'s' if t != '1' else ''}: " + ", ".join(parts))
    if not results.limits:
        lines.append("limits: not measured (--no-probe): no '% limit' column values")
    busy = contention.describe(m)
    if busy:
        lines.append(busy)
    return lines


def render_text(results: Results, long: bool = False) -> str:
    out = machine_lines(results) + [""]
    if long:
        header, rows = detail_table(results)
        out += [text_table(header, rows), ""]
    for op, header, rows in summary_tables(results):
        out += [op, text_table(header, rows), ""]
    it = isa_table(results)
    if it is not None:
        out += ["kernel sets (--isa)", text_table(*it), ""]
    if results.meta.get("contention"):
        out += ["beside busy processes (--contention)", text_table(*contention.table(results.records)), ""]
    out.append(LEGEND)
    out += split_notices(results.notices)[1]  # skipped peers are on the "peers:" line
    return "\n".join(out)


def _summary_markdown(results: Results) -> list[str]:
    """The machine and its limits, one summary table per operation, the legend and any notices."""
    out = [line + "  " for line in machine_lines(results)] + [""]
    for op, header, rows in summary_tables(results):
        out += [f"**{op}**", "", markdown_table(header, rows), ""]
    it = isa_table(results)
    if it is not None:
        out += ["**kernel sets (--isa)**", "", markdown_table(*it), ""]
    if results.meta.get("contention"):
        out += ["**beside busy processes (--contention)**", "", markdown_table(*contention.table(results.records)), ""]
    out += [LEGEND, ""]
    notices = split_notices(results.notices)[1]
    if notices:
        out += ["Notices: " + "; ".join(notices), ""]
    return out


def render_markdown(results: Results, command: str = "") -> str:
    out = [f"Command: `{command}`", ""] if command else []
    out += _summary_markdown(results)
    header, rows = detail_table(results)
    out += ["<details><summary>Every measurement</summary>", "", markdown_table(header, rows), "", "</details>", ""]
    return "\n".join(out)


def write_json(results: Results, path: str, command: str = "") -> None:
    data = results.to_json()
    data["meta"] = dict(data["meta"], command=command)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=_jsonable)
        f.write("\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def load_json(path: str) -> Results:
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return Results(meta=d["meta"], limits=d["limits"], records=d["records"], notices=d.get("notices", []))


README_BEGIN = "<!-- normexp-bench:begin -->"
README_END = "<!-- normexp-bench:end -->"


def render_readme_block(results: Results, command: str, figures: Sequence[str] = ()) -> str:
    """The README's benchmark block: the command, the machine and its limits, the summary tables, the
    legend and the figures (paths relative to the README)."""
    out = [f"Measured with `{command}`:", ""] + _summary_markdown(results)
    out += [f"![{os.path.splitext(os.path.basename(f))[0]}]({f})" for f in figures]
    return "\n".join(out).rstrip() + "\n"


def update_readme(path: str, block: str) -> None:
    """Replace the text between the README_BEGIN and README_END marker lines of `path` with `block`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        raise ValueError(f"{path} has no '{README_BEGIN}' ... '{README_END}' block to fill")
    text = text[: i + len(README_BEGIN)] + "\n" + block + text[j:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
