"""``python -m normexp bench``: the command line of the benchmark suite."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from typing import Sequence

from . import cases as C
from . import contention
from .peers import PEER_NAMES
from .timing import Timing

EPILOG = """\
examples:
  python -m normexp bench --out bench/results            everything, with JSON, Markdown and PNG plots
  python -m normexp bench --ops softmax --shapes 1x32000,1x16M --threads 1
  python -m normexp bench --ops attention --attention-shapes 1x8x1024x64:causal,1x32x1x4096x128
  python -m normexp bench --ops attention --attention-shapes 1x32/8x1x16kx128 --dtypes float32,bfloat16,float32/bfloat16
  python -m normexp bench --ops paged_attention --paged-shapes 16x32/8x2k-16kx128:16 --dtypes float32,bfloat16
  python -m normexp bench --ops softmax --isa avx2,avx512 --peers '' --threads 1   kernel sets side by side
  python -m normexp bench --ops softmax --shapes 512x4096,1x16M --threads 1,2 --contention 1   beside a busy process
  python -m normexp bench --lm-head --threads 2            fused LM head vs torch (time, peak memory)
  python -m normexp bench --from-json bench/results/results.json --out bench/results   re-render only
  python -m normexp bench generate --dtype bfloat16   greedy generation with transformers (its own --help)
  python -m normexp bench --out bench/results --plots bench/figures --readme docs/benchmarks.md  the published run

shapes: ROWSxCOLS[:AXIS] with k = 2^10 and M = 2^20 (4096x1024:0 reduces axis 0);
LM head: TOKENSxDIMxVOCAB (default 2048x1024x32000,512x1024x32000);
attention: BxHxLxD or BxHxLqxLkvxD, H or H/HKV (grouped-query), ':causal' to mask (causal needs Lq = Lkv);
paged attention (a decode step): SEQSxHxMIN-MAXxD[:PAGE], lengths evenly spaced, PAGE keys per page (16);
attention dtypes: float32, float64, float16, bfloat16, or float32/float16, float32/bfloat16 (a float32 q
over a 16-bit K/V cache).
"""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser(prog: str = "python -m normexp bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Benchmark normexp against NumPy, SciPy, PyTorch, ONNX Runtime and JAX, "
        "next to this machine's memory bandwidth and FMA peak.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to measure")
    g.add_argument("--ops", default=None,
                   help=f"comma list of {', '.join(C.OPERATIONS)} (default: all; attention when normexp has it)")
    g.add_argument("--shapes", default=None, help="comma list of reduction shapes (default: the standard list)")
    g.add_argument("--attention-shapes", default=None, help="comma list of attention shapes")
    g.add_argument("--paged-shapes", default=None, help="comma list of paged attention (decode step) shapes")
    g.add_argument("--dtypes", default=None,
                   help="comma list of float32, float64, float16, bfloat16 for every shape (default: float32, plus "
                        "float64 on two shapes and float16 / bfloat16 on four; attention: float32, 16-bit on three "
                        "shapes, and the grouped-query decode in float32, float16, bfloat16 and float32/bfloat16; "
                        "paged attention: float32, bfloat16); attention also takes float32/float16 and "
                        "float32/bfloat16 (a float32 q over a 16-bit K/V cache)")
    g.add_argument("--threads", default=None, help="comma list of thread counts; 'all' = every usable CPU "
                   "(default: 1,all; with --quick: all)")
    g.add_argument("--peers", default=",".join(PEER_NAMES[1:]),
                   help=f"comma list of {', '.join(PEER_NAMES[1:])} (default: all; missing ones are skipped "
                   "with a notice); normexp always runs")
    g.add_argument("--isa", default=None,
                   help="comma list of normexp kernel sets to run side by side (e.g. avx2,avx512; see "
                   "normexp.available_isas()); the first is the 'normexp' column, the others 'normexp[<isa>]', "
                   "and a table of their times and speed-ups over the first follows (default: the selected set)")
    g.add_argument("--accuracy", default=None,
                   help="comma list of normexp accuracy modes (high, fast), one row each per reduction case "
                   "(default: high,fast; with --quick: high)")
    g.add_argument("--lm-head", nargs="?", const="", default=None, metavar="SHAPES",
                   help="instead of the suite: linear_cross_entropy and linear_logsumexp against torch's two steps "
                   "(F.cross_entropy(h @ W.T, y)), time and peak memory growth (fresh interpreter per library), "
                   "for a comma list of TOKENSxDIMxVOCAB shapes (default: 2048x1024x32000,512x1024x32000); "
                   "honours --threads, --repeat, --max-time, --json")
    g.add_argument("--quick", action="store_true",
                   help="the short default run of `python -m normexp` (few shapes, all threads only)")
    g = p.add_argument_group("method")
    g.add_argument("--repeat", type=int, default=None, help="timed samples per measurement (default 21)")
    g.add_argument("--min-repeat", type=int, default=None, help="samples kept even past --max-time (default 5)")
    g.add_argument("--max-time", type=float, default=None,
                   help="seconds of sampling per measurement before stopping early (default 0.5)")
    g.add_argument("--warmup", type=float, default=None, help="seconds of warm-up calls (default 0.05)")
    g.add_argument("--min-sample", type=float, default=None,
                   help="seconds one sample lasts at least (calls are batched; default 0.005)")
    g.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    g.add_argument("--no-probe", action="store_true", help="skip measuring memory bandwidth and FMA peak")
    g.add_argument("--contention", type=int, nargs="?", const=1, default=0, metavar="N",
                   help="run beside N busy processes (default N=1), started after the probe and killed at the "
                   "end; each call is timed alone (per-call timing: 300 samples, at most 1.5 s per measurement "
                   "unless --repeat/--max-time/... say otherwise) and a table of mean and 90th-percentile "
                   "times per thread count, with their ratios to the one-thread run, is added")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="directory for results.json, results.md and <op>.png")
    g.add_argument("--json", default=None, help="write every measurement as JSON here")
    g.add_argument("--markdown", default=None, help="write the Markdown tables here")
    g.add_argument("--plots", default=None, help="write one PNG per operation into this directory")
    g.add_argument("--readme", default=None, metavar="PATH",
                   help="fill the block between '<!-- normexp-bench:begin -->' and '<!-- normexp-bench:end -->' "
                   "in this file with the summary tables and links to the plots")
    g.add_argument("--long", action="store_true", help="also print one row per measurement")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--list", action="store_true", help="print the cases that would run, then exit")
    g.add_argument("--from-json", default=None, metavar="PATH",
                   help="do not measure: render tables and plots from an earlier --json file")
    return p


def parse_threads(text: str, usable: int) -> list[int]:
    out = []
    for tok in _csv(text):
        if tok == "all":
            out.append(usable)
            continue
        try:
            n = int(tok)
        except ValueError:
            raise ValueError(f"bad thread count {tok!r}: use integers or 'all'") from None
        if n < 1:
            raise ValueError(f"thread counts must be >= 1, got {n}")
        out.append(n)
    if not out:
        raise ValueError("--threads is empty")
    return list(dict.fromkeys(out))


def select_cases(args: argparse.Namespace, has_attention: bool,
                 has_paged: bool | None = None) -> tuple[list[C.Case], list[str]]:
    """The cases the arguments ask for, and notices (e.g. attention dropped). ``has_paged`` (default:
    ``has_attention``) says whether normexp has paged_attention."""
    has_paged = has_attention if has_paged is None else has_paged
    notices: list[str] = []
    if args.ops is None:
        ops = ["softmax", "logsumexp"] if args.quick else list(C.OPERATIONS)
        if "attention" in ops and not has_attention and args.attention_shapes is None:
            ops.remove("attention")
            notices.append("attention skipped: this normexp build has no normexp.attention")
        if "paged_attention" in ops and not has_paged and args.paged_shapes is None:
            ops.remove("paged_attention")
            notices.append("paged_attention skipped: this normexp build has no normexp.paged_attention")
    else:
        ops = _csv(args.ops)
        for op in ops:
            if op not in C.OPERATIONS:
                raise ValueError(f"unknown operation {op!r}; choose from {', '.join(C.OPERATIONS)}")
        if "attention" in ops and not has_attention:
            notices.append("normexp.attention is not in this build: attention rows show the peers only")
    dtypes = _csv(args.dtypes) if args.dtypes else None
    for dt in dtypes or ():
        C.split_dtype(dt)  # raises on an unknown or a bad mixed dtype
    red_ops = [op for op in ops if op not in C.ATTENTION_OPS]
    cases: list[C.Case] = []
    if args.shapes is not None:
        shapes = [C.parse_shape(s) for s in _csv(args.shapes)]
    elif args.quick:
        shapes = list(C.QUICK_SHAPES)
    else:
        shapes = None
    for op in red_ops:
        if shapes is None:
            cases += C.default_cases([op], dtypes)
        else:
            cases += [C.Case(op, s, dt, axis=a) for dt in (dtypes or ["float32"]) for s, a in shapes]
    if "attention" in ops:
        if args.attention_shapes is not None:
            specs = [C.parse_attention_shape(s) for s in _csv(args.attention_shapes)]
            for (b, h, lq, lkv, d), causal, hk in specs:
                if causal and lq != lkv:
                    raise ValueError(f"causal attention needs Lq = Lkv in the benchmark (libraries align the "
                                     f"mask differently otherwise), got Lq={lq}, Lkv={lkv}")
            cases += [C.Case("attention", s, q_dt, causal=c, kv_dtype=kv_dt, heads_kv=hk)
                      for q_dt, kv_dt in map(C.split_dtype, dtypes or ["float32"]) for s, c, hk in specs]
        else:
            cases += C.default_cases(["attention"], dtypes)
    if "paged_attention" in ops:
        if args.paged_shapes is not None:
            specs = [C.parse_paged_shape(s) for s in _csv(args.paged_shapes)]
            for q_dt, kv_dt in map(C.split_dtype, dtypes or C.PAGED_DEFAULT_DTYPES):
                if q_dt not in C.PAGED_DTYPES:
                    notices.append(f"paged_attention is measured in {', '.join(C.PAGED_DTYPES)}: {q_dt} left out")
                    continue
                cases += [C.Case("paged_attention", s, q_dt, kv_dtype=kv_dt, heads_kv=hk, page=pg)
                          for s, hk, pg in specs]
        else:
            cases += C.default_cases(["paged_attention"], dtypes)
    accuracies = _csv(args.accuracy or ("high" if args.quick else "high,fast"))
    return C.with_accuracies(cases, accuracies), notices


def timing_from(args: argparse.Namespace) -> Timing:
    kw = {k: v for k, v in dict(repeat=args.repeat, min_repeat=args.min_repeat, max_time=args.max_time,
                                warmup=args.warmup, min_sample=args.min_sample).items() if v is not None}
    if getattr(args, "contention", 0):
        return contention.timing(kw)
    base = Timing(repeat=11, max_time=0.15) if args.quick else Timing()
    return dataclasses.replace(base, **kw)


def output_paths(args: argparse.Namespace) -> dict[str, str | None]:
    paths = {"json": args.json, "markdown": args.markdown, "plots": args.plots}
    if args.out:
        paths["json"] = paths["json"] or os.path.join(args.out, "results.json")
        paths["markdown"] = paths["markdown"] or os.path.join(args.out, "results.md")
        paths["plots"] = paths["plots"] or args.out
    return paths


def main(argv: Sequence[str] | None = None, prog: str = "python -m normexp bench") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "generate":  # end-to-end generation with transformers (bench/generation.py)
        from .generation import main as generate_main

        return generate_main(argv[1:], prog=f"{prog} generate")
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    command = f"{prog} {shlex.join(argv)}".strip()

    import normexp

    from . import machine, plots, report, runner

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    if args.lm_head is not None:
        return _lm_head(args, parser, log)
    if args.from_json:
        results = report.load_json(args.from_json)
        command = results.meta.get("command", command)
    else:
        try:
            threads = parse_threads(args.threads or ("all" if args.quick else "1,all"), machine.usable_cpus())
            cases, notices = select_cases(args, hasattr(normexp, "attention"), hasattr(normexp, "paged_attention"))
            if args.contention < 0:
                raise ValueError(f"--contention takes a number of busy processes >= 0, got {args.contention}")
            timing = timing_from(args)
            peer_names = _csv(args.peers)
            for n in peer_names:
                if n not in PEER_NAMES:
                    raise ValueError(f"unknown peer {n!r}; choose from {', '.join(PEER_NAMES)}")
            isas = _csv(args.isa) if args.isa is not None else []
            for isa in isas:
                if isa not in normexp.available_isas():
                    raise ValueError(f"--isa: {isa!r} is not available on this CPU; available: "
                                     f"{', '.join(normexp.available_isas())}")
        except ValueError as e:
            parser.error(str(e))
        if args.list:
            for c in cases:
                print(c.label)
            return 0
        for n in notices:
            log(n)
        if not cases:
            parser.error("nothing to run: no case matches the arguments")
        results = runner.run(cases, threads=threads, peers=peer_names, timing=timing, seed=args.seed,
                             probe=not args.no_probe, quick_probe=args.quick, progress=not args.no_progress,
                             log=log, isas=isas, contention=args.contention)
        results.notices = notices + results.notices

    print(report.render_text(results, long=args.long))
    paths = output_paths(args)
    for key in ("json", "markdown"):
        if paths[key]:
            os.makedirs(os.path.dirname(os.path.abspath(paths[key])), exist_ok=True)
    if paths["json"] and not args.from_json:
        report.write_json(results, paths["json"], command)
        log(f"wrote {paths['json']}")
    if paths["markdown"]:
        with open(paths["markdown"], "w", encoding="utf-8") as f:
            f.write(report.render_markdown(results, command))
        log(f"wrote {paths['markdown']}")
    figures: list[str] = []
    if paths["plots"]:
        why = plots.available()
        if why:
            log(why)
        else:
            figures = plots.plot_all(results, paths["plots"])
            for path in figures:
                log(f"wrote {path}")
    if args.readme:
        base = os.path.dirname(os.path.abspath(args.readme))
        rel = [os.path.relpath(os.path.abspath(f), base) for f in figures]
        try:
            report.update_readme(args.readme, report.render_readme_block(results, command, rel))
        except (OSError, ValueError) as e:
            log(f"README not updated: {e}")
            return 1
        log(f"updated {args.readme}")
    bad = [r for r in results.records if r["peer"].startswith("normexp") and r["check"] in ("WRONG", "error")]
    return 1 if bad else 0


def _lm_head(args: argparse.Namespace, parser: argparse.ArgumentParser, log) -> int:
    """--lm-head: the fused output layer's table (bench/lm_head.py)."""
    import json

    from . import lm_head, machine

    try:
        shapes = [lm_head.parse_shape(s) for s in _csv(args.lm_head)] or list(lm_head.DEFAULT_SHAPES)
        threads = parse_threads(args.threads or "1,all", machine.usable_cpus())
        kw = {k: v for k, v in dict(repeat=args.repeat, min_repeat=args.min_repeat, max_time=args.max_time,
                                    warmup=args.warmup, min_sample=args.min_sample).items() if v is not None}
        timing = dataclasses.replace(Timing(repeat=7, max_time=2.0, min_sample=0.0), **kw)
    except ValueError as e:
        parser.error(str(e))
    records = lm_head.run(shapes, threads, timing, log=log)
    print(lm_head.render(records))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": shlex.join(sys.argv), "lm_head": records}, f, indent=1)
        log(f"wrote {args.json}")
    return 0
