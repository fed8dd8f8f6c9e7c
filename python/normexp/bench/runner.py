"""Runs the cases: same inputs for every peer, results checked against a float64 reference before
anything is timed, threads pinned per run, one record per (case, threads, peer)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import sys
from typing import Any, Callable, Sequence

import numpy as np

from . import machine
from .cases import Case
from .contention import BUSY_CODE, busy_processes
from .peers import Peer, make_peers
from .timing import Timing, summarize

# Accuracy classes of a peer's result against the float64 reference (see max_error for the metric):
#   ok          error <= OK bound: rounding-level agreement.
#   inaccurate  OK bound < error <= WRONG bound: the right function, computed with avoidable error
#               (e.g. a float32 running sum over a 16M-element row is off by ~1e-3); timed and shown.
#   WRONG       error > WRONG bound, or NaN / inf / shape where the reference has none: a different
#               answer. Flagged and not timed (a wrong answer's speed means nothing).
# float32 OK bound 1e-5: forming x - max in float32 already costs up to |x - max| * 2^-24 ~ 3e-6 of
# relative error for inputs spread over +-20, so any correct float32 code lands within ~1e-5.
# float32 attention (normwise) 1e-4: GEMMs accumulate up to 32k products in float32.
# float64 OK bound 1e-12: the same argument with 2^-53, plus summation over up to 16M terms.
# WRONG bounds: 1 % (float32) and 1e-6 (float64) are far beyond any rounding effect.
TOLERANCES: dict[tuple[str, bool], tuple[float, float]] = {
    ("float32", False): (1e-5, 1e-2),
    ("float32", True): (1e-4, 1e-2),
    ("float64", False): (1e-12, 1e-6),
    ("float64", True): (1e-12, 1e-6),
    # 16-bit results: within a unit roundoff of the type is right (2^-11, 2^-8 relative); attention
    # (normwise) accumulates in float32 and rounds once, so the same bounds hold (a float32 q over a
    # 16-bit cache has a float32 output: the float32 bound, against a reference from the same 16-bit K/V).
    ("float16", False): (1e-3, 1e-1),
    ("bfloat16", False): (8e-3, 1e-1),
    ("float16", True): (1e-3, 1e-1),
    ("bfloat16", True): (8e-3, 1e-1),
}


def max_error(got: Any, ref: np.ndarray, case: Case) -> float:
    """Largest error of `got` against the float64 reference: relative for probabilities (softmax;
    below 1e-30 / 1e-300 absolute, so flushed subnormals do not count), relative above 1 and absolute
    below 1 for log-domain results (log_softmax, logsumexp), normwise (max |diff| / max |ref|) for
    attention. inf when shapes, NaNs or infinities disagree."""
    g = np.asarray(got)
    if g.shape != ref.shape:
        return math.inf
    g = g.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(ref)):
        return math.inf
    ref_inf = np.isinf(ref)
    if not np.array_equal(g[ref_inf], ref[ref_inf]) or np.isinf(g[~ref_inf]).any():
        return math.inf
    fin = np.isfinite(ref)
    if not fin.any():
        return 0.0
    d = np.abs(g[fin] - ref[fin])
    r = np.abs(ref[fin])
    if case.is_attention:
        return float(d.max() / max(r.max(), 1e-300))
    if case.op == "softmax":
        # float16 below its normal range (6.1e-5) is absolute (2^-24 steps), as is bfloat16 below float32's.
        floor = {"float32": 1e-30, "float16": 1e-4, "bfloat16": 1e-30}.get(case.dtype, 1e-300)
        return float((d / np.maximum(r, floor)).max())
    return float((d / np.maximum(r, 1.0)).max())


def classify(err: float, case: Case) -> str:
    ok, wrong = TOLERANCES[(case.dtype, case.is_attention)]
    if not err <= wrong:  # also catches NaN
        return "WRONG"
    return "ok" if err <= ok else "inaccurate"


@dataclasses.dataclass
class Results:
    meta: dict[str, Any]
    limits: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    notices: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "limits": self.limits, "records": self.records, "notices": self.notices}


def make_record(case: Case, peer: str, version: str, threads: int, llc: int, rotation: int,
                limits: dict[str, dict[str, Any]], *, samples: Sequence[float] | None = None,
                calls_per_sample: int = 0, err: float | None = None, check: str, note: str = "") -> dict[str, Any]:
    """One measurement as a flat, JSON-ready dict (times in seconds, rates in 1e9 units)."""
    rec: dict[str, Any] = case.to_dict()
    rec.update(
        peer=peer, version=version, threads=threads, cache=case.cache_class(llc), buffers=rotation,
        elements=case.elements, bytes=case.bytes, flops=case.flops, check=check,
        max_error=None if err is None or not math.isfinite(err) else err, note=note,
        limit_kind=case.limit_kind,
    )
    lim = machine.limit_value(limits, threads, case.limit_kind)
    rec["limit"] = lim
    if samples:
        s = summarize(samples)
        t = s["median"]
        rec.update(time_s=t, time_q1_s=s["q1"], time_q3_s=s["q3"], time_min_s=s["min"], time_mean_s=s["mean"],
                   time_p90_s=s["p90"],
                   iqr_rel=(s["q3"] - s["q1"]) / t if t > 0 else None, samples=len(samples),
                   calls_per_sample=calls_per_sample)
        rec["gelem_per_s"] = case.elements / t / 1e9 if not case.is_attention else None
        rec["gb_per_s"] = case.bytes / t / 1e9
        rec["gflop_per_s"] = case.flops / t / 1e9 if case.is_attention else None
        achieved = rec["gflop_per_s"] if case.limit_kind == "fma" else rec["gb_per_s"]
        rec["limit_fraction"] = achieved / lim if lim else None
    else:
        rec.update(time_s=None, time_q1_s=None, time_q3_s=None, time_min_s=None, time_mean_s=None, time_p90_s=None,
                   iqr_rel=None, samples=0,
                   calls_per_sample=0, gelem_per_s=None, gb_per_s=None, gflop_per_s=None, limit_fraction=None)
    return rec


class _Progress:
    """tqdm when installed and enabled; otherwise a plain counter line on a terminal, or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.plain = False
        self.n, self.total = 0, total
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI, pipes).
            self.bar = tqdm(total=total, unit="run", leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)
        except ImportError:
            self.plain = sys.stderr.isatty()

    def describe(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.set_description_str(text[:60])
        elif self.plain:
            sys.stderr.write(f"\r[{self.n}/{self.total}] {text[:70]:<70}")
            sys.stderr.flush()

    def step(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            if self.plain:
                sys.stderr.write("\r" + " " * 80 + "\r")
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.plain:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


def run(cases: Sequence[Case], *, threads: Sequence[int], peers: Sequence[str | Peer] = ("numpy",),
        timing: Timing = Timing(), seed: int = 0, probe: bool = True, quick_probe: bool = False,
        limits: dict[str, dict[str, Any]] | None = None, progress: bool = True,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), isas: Sequence[str] = (),
        contention: int = 0) -> Results:
    """Measure every case at every thread count with every peer.

    `peers` names peers (normexp is then added first) and/or passes Peer objects, which run as given
    (tests inject a deliberately wrong one this way; with objects only, normexp runs only if passed). `limits` skips the probe and uses the given machine limits.
    `isas` runs normexp once per named kernel set, side by side (peers.make_peers; meta["isas"]).
    `contention` busy processes run beside every measurement (after the probe; see contention.py, which
    also has the per-call timing such a run should use; meta["contention"]).
    """
    notices: list[str] = []
    objs: list[Peer] = []
    names = [p for p in peers if isinstance(p, str)]
    if names or not any(isinstance(p, Peer) for p in peers):
        found, notes = make_peers(names, isas)
        objs += found
        notices += notes
    objs += [p for p in peers if isinstance(p, Peer)]
    for n in notices:
        log(n)

    meta = machine.machine_info()
    llc = meta["llc_bytes"]
    meta["peers"] = {}
    for p in objs:
        try:
            meta["peers"][p.name] = p.version()
        except Exception as e:  # a version lookup must not stop the run
            meta["peers"][p.name] = f"? ({type(e).__name__})"
    meta["threads"] = list(threads)
    meta["isas"] = list(dict.fromkeys(isas))
    meta["timing"] = dataclasses.asdict(timing)
    meta["seed"] = seed

    if limits is None:
        limits = {}
        if probe:
            log("measuring this machine's limits (memory bandwidth, FMA peak) ...")
            limits = machine.probe_limits(threads, quick=quick_probe, llc=llc, log=log)

    import normexp

    records: list[dict[str, Any]] = []
    bar = _Progress(len(cases) * len(threads) * len(objs), progress)
    busy = contextlib.ExitStack()
    try:
        if contention > 0:
            procs = busy.enter_context(busy_processes(contention))
            meta["contention"] = {"processes": contention, "pids": [p.pid for p in procs], "code": BUSY_CODE}
        for case in cases:
            bar.describe(f"{case.label}: inputs and reference")
            inputs = case.make_inputs(seed)
            ref = case.reference(inputs)
            rot = case.rotation(llc)
            buffers = [inputs] + [tuple(a.copy() for a in inputs) for _ in range(rot - 1)]
            for t in threads:
                for p in objs:
                    bar.describe(f"{case.label} {t}t {p.name}")
                    records.append(_measure(case, p, buffers, ref, t, llc, rot, limits, timing, meta))
                    bar.step()
            del inputs, ref, buffers
            gc.collect()
        if contention > 0:
            gone = [p.pid for p in procs if p.poll() is not None]
            if gone:
                notices.append(f"warning: busy process(es) {gone} exited during the run: the contention was partial")
    finally:
        bar.close()
        busy.close()
        for p in objs:
            p.close()
        normexp.set_num_threads(0)
    meta["load_average_end"] = machine.load_average()
    notices += noise_notices(records, meta)
    return Results(meta=meta, limits=limits, records=records, notices=notices)


# Spread above which a measurement counts as noisy: on an idle machine the interquartile range of a
# median-of-samples timing is a few percent.
NOISY_IQR = 0.10


def noise_notices(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Warnings that the machine was busy: many wide spreads, or a load above the usable CPU count."""
    out = []
    timed = [r for r in records if r.get("iqr_rel") is not None]
    noisy = [r for r in timed if r["iqr_rel"] > NOISY_IQR]
    if timed and len(noisy) > 0.2 * len(timed):
        out.append(f"warning: {len(noisy)} of {len(timed)} measurements have a spread (IQR/median) above "
                   f"{100 * NOISY_IQR:.0f}%: the machine was busy, rerun on a quiet machine before publishing")
    cpus = meta.get("cpus_usable") or 1
    loads = [v for key in ("load_average", "load_average_end") for v in (meta.get(key) or [])[:1]]
    if loads and max(loads) > cpus:
        out.append(f"warning: the load average reached {max(loads):.1f} on {cpus} usable CPUs during the run: "
                   "other programs competed for the cores")
    return out


def _measure(case: Case, peer: Peer, buffers: list[tuple[np.ndarray, ...]], ref: np.ndarray, threads: int,
             llc: int, rot: int, limits: dict[str, dict[str, Any]], timing: Timing,
             meta: dict[str, Any]) -> dict[str, Any]:
    version = meta["peers"].get(peer.name, "?")
    common = dict(case=case, peer=peer.name, version=version, threads=threads, llc=llc, rotation=rot,
                  limits=limits)
    why = peer.supports(case)
    if not why and case.is_paged and not peer.paged:
        why = f"{peer.name} has no paged KV cache (block table) attention"
    if not why and case.dtype not in peer.dtypes:
        why = f"{peer.name} is not measured on {case.dtype}"
    if why:
        return make_record(**common, check="n/a", note=why)
    session = None
    try:
        session = peer.start(case, buffers, threads)
        got = session.result()
        err = max_error(got, ref, case)
        check = classify(err, case)
        if check == "WRONG":
            return make_record(**common, err=err, check=check, note=session.note)
        samples, k = session.time(timing)
        return make_record(**common, samples=samples, calls_per_sample=k, err=err, check=check, note=session.note)
    except Exception as e:  # a peer that fails is reported, never fatal to the run
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        return make_record(**common, check="error", note=msg)
    finally:
        if session is not None:
            try:
                session.close()
            except Exception:
                pass
