"""The benchmark's ``--contention`` mode: busy processes started and killed by the run, per-call timing,
mean and p90 per record, the ratio table, the header line, and the command-line option."""

from __future__ import annotations

import os

import pytest

from normexp.bench import cli, contention, report, runner
from normexp.bench.cases import Case
from normexp.bench.peers import NumpyPeer
from normexp.bench.timing import Timing, summarize

pytestmark = pytest.mark.bench_harness  # the harness's logic: ci/sanitizers.sh deselects it

FAST = Timing(warmup=0.0, repeat=3, min_repeat=3, max_time=1e-4, min_sample=0.0)
LIMITS = {"1": {"read": 10.0, "copy": 12.0, "copy_nt": 14.0, "fma": 50.0},
          "2": {"read": 15.0, "copy": 20.0, "copy_nt": None, "fma": 100.0}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(pid, 0); its state in /proc says it has exited.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_busy_processes_run_during_the_block_and_are_killed_after():
    with contention.busy_processes(2) as procs:
        pids = [p.pid for p in procs]
        assert len(set(pids)) == 2
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    assert not any(_alive(pid) for pid in pids)


def test_busy_processes_are_killed_when_the_block_raises():
    with pytest.raises(RuntimeError):
        with contention.busy_processes(1) as procs:
            raise RuntimeError("stop")
    assert procs[0].poll() is not None


def test_summarize_has_mean_and_p90():
    s = summarize([float(v) for v in range(1, 11)])  # 1..10
    assert s["mean"] == pytest.approx(5.5)
    assert s["p90"] == pytest.approx(9.1)  # linear interpolation, as numpy.percentile
    assert s["median"] == pytest.approx(5.5)


def test_run_with_contention_records_mean_p90_and_the_busy_processes():
    cases = [Case("softmax", (4, 256)), Case("logsumexp", (4, 256))]
    res = runner.run(cases, threads=[1, 2], peers=[NumpyPeer()], timing=FAST, limits=LIMITS, progress=False,
                     log=lambda s: None, contention=1)
    info = res.meta["contention"]
    assert info["processes"] == 1 and len(info["pids"]) == 1
    assert not _alive(info["pids"][0]), "the busy process outlived the run"
    for r in res.records:
        assert r["time_mean_s"] > 0 and r["time_p90_s"] >= r["time_min_s"], r
    text = report.render_text(res)
    assert "contention: 1 busy process beside every measurement" in text
    assert "beside busy processes (--contention)" in text
    header, rows = contention.table(res.records)
    assert header[-2:] == ["mean / 1t", "p90 / 1t"]
    one = [r for r in rows if r[4] == "1"]
    assert one and all(r[-2] == "1.00x" and r[-1] == "1.00x" for r in one)
    assert "beside busy processes" in report.render_markdown(res)


def test_run_without_contention_has_no_table():
    res = runner.run([Case("softmax", (4, 64))], threads=[1], peers=[NumpyPeer()], timing=FAST, limits=LIMITS,
                     progress=False, log=lambda s: None)
    assert "contention" not in res.meta
    assert "beside busy processes" not in report.render_text(res)


def test_ratio_table_divides_by_the_fewest_threads():
    def rec(threads, mean, p90, peer="normexp"):
        return dict(op="softmax", label="512x4096", dtype="float32", peer=peer, threads=threads, time_s=mean,
                    time_mean_s=mean, time_p90_s=p90)

    _, rows = contention.table([rec(1, 1e-3, 2e-3), rec(2, 0.5e-3, 3e-3), rec(2, 4e-3, 4e-3, "torch"),
                                rec(1, 2e-3, 2e-3, "torch")])
    by = {(r[3], r[4]): r for r in rows}
    assert by[("normexp", "2")][-2:] == ["0.50x", "1.50x"]
    assert by[("torch", "2")][-2:] == ["2.00x", "2.00x"]


def test_command_line_option():
    p = cli.build_parser()
    assert p.parse_args([]).contention == 0
    assert p.parse_args(["--contention"]).contention == 1
    assert p.parse_args(["--contention", "3"]).contention == 3
    args = p.parse_args(["--contention", "--repeat", "40"])
    t = cli.timing_from(args)
    assert t.min_sample == 0.0 and t.repeat == 40 and t.max_time == contention.TIMING.max_time
    assert cli.timing_from(p.parse_args([])).min_sample > 0  # the batched default without it
    with pytest.raises(SystemExit):
        cli.main(["--contention", "-1", "--ops", "softmax", "--no-probe", "--peers", ""])
