"""The machine probe of the benchmark (normexp._probe, C++, and normexp.bench.machine): memory bandwidth and
FMA peak passes on tiny buffers, the limit lookup, the machine description. Nothing here asserts a timing.
Unlike the harness tests (test_bench*.py, marked bench_harness), these run under the sanitizers too."""

from __future__ import annotations

import os

import numpy as np
import pytest

import normexp
from normexp import _probe
from normexp.bench import machine

LIMITS = {"1": {"read": 10.0, "copy": 12.0, "copy_nt": 14.0, "fma": 50.0},
          "2": {"read": 15.0, "copy": 20.0, "copy_nt": None, "fma": 100.0}}


def test_probe_memory_small():
    for op in ("read", "copy", "copy_nt"):
        if not _probe.probe_memory_supported(op):
            continue
        r = _probe.probe_memory(op, 1 << 20, 2, 2)
        assert len(r["seconds"]) == 2 and all(s > 0 for s in r["seconds"])
        assert 1 <= r["threads"] <= 2
    for bad in (("read", 100, 1, 1), ("read", 1 << 20, 0, 1), ("read", 1 << 20, 1, 0), ("scan", 1 << 20, 1, 1),
                ("read", -1, 1, 1), ("read", 1 << 20, 2**31, 1), ("read", 1 << 20, 1, 2**31), ("copy", 2**60, 1, 1)):
        with pytest.raises(ValueError):  # never pybind11's TypeError for a negative or huge integer
            _probe.probe_memory(*bad)
    with pytest.raises(ValueError, match="buffer_bytes"):
        machine.probe_limits([1], quick=True, buffer_bytes=-4096)


def test_probe_reads_from_huge_pages_where_linux_offers_them():
    # NumPy puts every array of 4 MiB or more on transparent huge pages (madvise), so the bench's operands
    # live on them; a probe on 4 KiB pages read 1.4-1.5x slower on an Intel Xeon VM and the library's decode
    # rows read "above the machine's bandwidth". Where THP is 'always' or 'madvise' the probe's buffer must
    # be on them too (the OS may leave a few 2 MiB pieces out: most of 64 MiB, not all).
    # The count is the buffer's alone, beside NumPy arrays madvised the same way (a mapping the kernel
    # merged with theirs would count their pages too: 512x a 4 KiB buffer).
    mode = machine.transparent_hugepage()
    neighbours = [np.ones(64 << 20, np.uint8) for _ in range(3)]
    r = _probe.probe_memory("read", 64 << 20, 1, 1)
    small = [_probe.probe_memory(op, 4 << 20, 1, 1) for op in ("read", "copy")]
    del neighbours
    if "huge_page_bytes" in r:
        assert 0 <= r["huge_page_bytes"] <= 64 << 20, r
        assert all(0 <= s["huge_page_bytes"] <= 4 << 20 for s in small), small
    if mode in ("always", "madvise"):
        assert r["huge_page_bytes"] >= 32 << 20, r
    elif mode is None:
        assert "huge_page_bytes" not in r or r["huge_page_bytes"] >= 0
    else:
        assert mode == "never" and r["huge_page_bytes"] == 0, (mode, r)


def test_probe_is_not_part_of_the_library_module():
    # Benchmark code lives in its own module, normexp._probe; the library module has none of it.
    assert not [name for name in dir(normexp._core) if "probe" in name]
    assert {"probe_memory", "probe_memory_supported", "probe_fma"} <= set(dir(_probe))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two usable cores")
def test_probe_runs_the_threads_it_is_asked_for():
    # Its passes run through the library's threading guard with OpenMP (the probe was once compiled
    # without OpenMP inside _core, and every "2-thread" limit was measured on one thread).
    assert _probe.probe_memory("read", 1 << 22, 2, 1)["threads"] == 2
    assert _probe.probe_fma("baseline", 1000, 2, 1)["threads"] == 2


def test_probe_fma_small():
    r = _probe.probe_fma("baseline", 1000, 1, 2)
    assert len(r["seconds"]) == 2 and r["flops_per_thread_pass"] == 1000 * 12 * 4 * 2
    for isa, variant, flops in (("avx2", "avx2-fma", 12 * 8 * 2), ("avx512", "avx512-fma", 16 * 16 * 2)):
        if isa in normexp.available_isas():
            r = _probe.probe_fma(isa, 1000, 1, 1)
            assert r["variant"] == variant and r["flops_per_thread_pass"] == 1000 * flops
        else:  # never an instruction the CPU lacks: a clear error instead
            with pytest.raises(ValueError, match=isa):
                _probe.probe_fma(isa, 1000, 1, 1)
    with pytest.raises(ValueError):
        _probe.probe_fma("sse9", 10, 1, 1)
    for bad in ((-5, 1, 1), (2**62, 1, 1), (10, 2**31, 1), (10, 1, -1)):  # a hang of years is refused too
        with pytest.raises(ValueError):
            _probe.probe_fma("baseline", *bad)


def test_probe_limits_use_the_widest_fma_loop():
    # The FMA peak is the machine's: measured with the widest set it runs (a 256-bit loop halves the peak
    # of a core with two 512-bit FMA units, and every "% of peak" above 100% was that).
    widest = next((i for i in ("avx512", "avx2") if i in normexp.available_isas()), None)
    row = machine.probe_limits([1], quick=True, buffer_bytes=1 << 20)["1"]
    assert row["fma_isa"] == (f"{widest}-fma" if widest else "baseline")


def test_probe_limits_and_limit_lookup():
    lim = machine.probe_limits([1], quick=True, buffer_bytes=1 << 20)
    row = lim["1"]
    assert row["read"] > 0 and row["copy"] > 0 and row["fma"] > 0 and row["read"] >= row["read_median"]
    assert machine.limit_value(LIMITS, 2, "copy") == 20.0
    assert machine.limit_value(LIMITS, 1, "copy") == 14.0
    assert machine.limit_value(LIMITS, 8, "fma") == 100.0  # more threads than probed: the largest probed
    assert machine.limit_value({}, 1, "read") is None


def test_machine_info():
    info = machine.machine_info()
    assert info["isa"] == normexp.isa() and info["cpus_usable"] >= 1 and info["llc_bytes"] > 0
    assert info["libraries"]["numpy"] == np.__version__
    thp = info["transparent_hugepage"]
    assert thp in ("always", "madvise", "never") if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled") \
        else thp is None
