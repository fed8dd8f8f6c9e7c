"""The wording of the benchmark report (python/normexp/bench/report.py): skipped peers said once, and
the copy bandwidth that '% limit' divides by named as such."""

from __future__ import annotations

import pytest

from normexp.bench import report
from normexp.bench.runner import Results

pytestmark = pytest.mark.bench_harness  # the harness's logic: ci/sanitizers.sh deselects it

LIMITS = {"1": {"read": 10.0, "copy": 12.0, "copy_nt": 14.0, "fma": 50.0},
          "2": {"read": 15.0, "copy": 20.0, "copy_nt": None, "fma": 100.0}}
META = {"normexp": "0.1.0", "isa": "avx2", "available_isas": ["scalar", "avx2"], "cpus_usable": 2, "cpu": "test CPU",
        "caches": {"L3": 32 << 20}, "date_utc": "2026-01-01 00:00 UTC", "peers": {"normexp": "0.1.0", "numpy": "2.0"}}
SKIP = 'skipped jax: not installed (pip install "jax[cpu]")'


def results(notices):
    return Results(meta=dict(META), limits=LIMITS, records=[], notices=list(notices))


def test_skipped_peers_are_listed_once_on_the_peers_line():
    res = results([SKIP, "attention skipped: no attention in this build", SKIP])
    for text in (report.render_text(res), report.render_markdown(res)):
        assert text.count("jax: not installed") == 1
        assert 'not run: jax: not installed (pip install "jax[cpu]")' in text
        assert text.count("attention skipped") == 1  # other notices stay, once each


def test_copy_limit_names_the_bandwidth_it_is():
    text = report.render_text(results([]))
    # 1 thread: non-temporal copy is the better one, and that is the figure '% limit copy' divides by.
    assert "limits at 1 thread: read 10.0 GB/s, copy 14.0 GB/s (the better of regular 12.0 and non-temporal 14.0)" in text
    assert "limits at 2 threads: read 15.0 GB/s, copy 20.0 GB/s," in text
    assert "the better of the regular and the non-temporal copy" in report.LEGEND


def test_huge_pages_of_the_read_probe_and_the_thp_mode_are_named():
    limits = {"1": dict(LIMITS["1"], read_huge_pages=1.0), "2": dict(LIMITS["2"], read_huge_pages=0.25)}
    res = Results(meta=dict(META, transparent_hugepage="madvise"), limits=limits, records=[], notices=[])
    text = report.render_text(res)
    assert "limits at 1 thread: read 10.0 GB/s (100% on huge pages), copy 14.0 GB/s" in text
    assert "limits at 2 threads: read 15.0 GB/s (25% on huge pages), copy 20.0 GB/s" in text
    assert "· THP madvise ·" in text
    assert "huge pages" not in report.render_text(results([])) and "THP" not in report.render_text(results([]))
