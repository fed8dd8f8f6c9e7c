"""The benchmark harness itself (normexp.bench, python -m normexp): argument parsing, the case model,
result records, the wrong-answer flag, the reports and plots, the machine probe. Tiny sizes and a
near-zero timing budget throughout; nothing here asserts a timing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import normexp
from normexp.bench import cli, machine, plots, report, runner
from normexp.bench.cases import (Case, default_cases, parse_attention_shape, parse_paged_shape, parse_shape,
                                 split_dtype, with_accuracies)
from normexp.bench.peers import PEER_CLASSES, CallSession, NumpyPeer, Peer, make_peers, numpy_attention
from normexp.bench.timing import Timing, summarize, time_calls

# The harness's own logic (ci/sanitizers.sh deselects it: the library calls it makes are tested elsewhere);
# the C++ probe it measures the machine with is tested, sanitizers included, in test_bench_probe.py.
pytestmark = pytest.mark.bench_harness

# The smallest budget the timing loop accepts: one warm-up call, one or two samples of one call.
FAST = Timing(warmup=0.0, repeat=2, min_repeat=1, max_time=1e-4, min_sample=0.0)
# Fixed machine limits so that no test runs the (slow) probe: GB/s and GFLOP/s at 1 and 2 threads.
LIMITS = {"1": {"read": 10.0, "copy": 12.0, "copy_nt": 14.0, "fma": 50.0},
          "2": {"read": 15.0, "copy": 20.0, "copy_nt": None, "fma": 100.0}}


class WrongSoftmaxPeer(Peer):
    """A deliberately wrong peer: softmax scaled by 1.1 (rows sum to 1.1)."""

    name = "wrong"
    module = "numpy"

    def version(self) -> str:
        return "test"

    def start(self, case, buffers, threads):
        return CallSession([lambda x=x: 1.1 * np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
                            for (x,) in buffers], np.asarray)


class FailingPeer(Peer):
    name = "failing"
    module = "numpy"

    def version(self) -> str:
        return "test"

    def start(self, case, buffers, threads):
        raise RuntimeError("no kernel for this\nsecond line is dropped")


# ---- parsing -----------------------------------------------------------------------------------------


def test_parse_shape():
    assert parse_shape("512x4096") == ((512, 4096), -1)
    assert parse_shape("1x16M") == ((1, 16 << 20), -1)
    assert parse_shape("2x32k") == ((2, 32768), -1)
    assert parse_shape("4096x1024:0") == ((4096, 1024), 0)
    assert parse_shape("8x4x5:-2") == ((8, 4, 5), -2)
    for bad in ("", "x4", "4x", "4xq", "4x4:z", "4x4:2", "4*4"):
        with pytest.raises(ValueError):
            parse_shape(bad)


def test_parse_attention_shape():
    assert parse_attention_shape("1x8x1024x64") == ((1, 8, 1024, 1024, 64), False, 0)
    assert parse_attention_shape("1x8x1024x64:causal") == ((1, 8, 1024, 1024, 64), True, 0)
    assert parse_attention_shape("1x32x1x32kx128") == ((1, 32, 1, 32768, 128), False, 0)
    assert parse_attention_shape("1x32/8x1x16kx128") == ((1, 32, 1, 16384, 128), False, 8)
    for bad in ("1x8x64", "1x8x1024x64:mask", "1x2x3x4x5x6", "1x32/x1x4x4", "1/2x4x4x4", "1x32/8/2x1x4x4"):
        with pytest.raises(ValueError):
            parse_attention_shape(bad)


def test_parse_paged_shape_and_dtypes():
    assert parse_paged_shape("16x32/8x2k-16kx128") == ((16, 32, 2048, 16384, 128), 8, 16)
    assert parse_paged_shape("3x4x5-70x16:8") == ((3, 4, 5, 70, 16), 0, 8)
    for bad in ("16x32x2k-16kx128:0", "16x32x2kx128", "16x32x16k-2kx128", "16x32x2k-16k", "4x4x1-2x8:x"):
        with pytest.raises(ValueError):
            parse_paged_shape(bad)
    assert split_dtype("bfloat16") == ("bfloat16", "") and split_dtype("float32/float16") == ("float32", "float16")
    for bad in ("float16/bfloat16", "float32/float64", "float32/", "int8"):
        with pytest.raises(ValueError):
            split_dtype(bad)


def test_parse_threads():
    assert cli.parse_threads("1,all", 4) == [1, 4]
    assert cli.parse_threads("2,2,1", 4) == [2, 1]
    for bad in ("0", "-1", "x", ""):
        with pytest.raises(ValueError):
            cli.parse_threads(bad, 4)


def _cases(argv, has_attention=False):
    args = cli.build_parser().parse_args(argv)
    return cli.select_cases(args, has_attention)


def test_default_cases_are_the_issue_list():
    cases, notices = _cases([], has_attention=True)
    labels = {(c.op, c.dtype, c.shape_label) for c in cases}
    for op in ("softmax", "log_softmax", "logsumexp"):
        for s in ("1x1000", "1x32000", "4096x128", "512x4096", "1x16777216", "64x65536", "4096x1024 axis 0"):
            assert (op, "float32", s) in labels
        assert any(c.op == op and c.dtype == "float64" for c in cases)
    attn = [c for c in cases if c.is_attention]
    assert {c.shape for c in attn} >= {(1, 8, 1024, 1024, 64), (1, 8, 4096, 4096, 64), (1, 16, 2048, 2048, 128),
                                       (1, 32, 1, 4096, 128), (1, 32, 1, 32768, 128)}
    assert {c.causal for c in attn if c.shape[2] > 1} == {True, False}
    labels = {c.label for c in attn}
    # 16-bit prefill and decode, grouped-query decode in every dtype combination, each with its float32 row
    for dt in ("float16", "bfloat16"):
        assert {f"attention {dt} B1 H16 L2048 D128", f"attention {dt} B1 H16 L2048 D128 causal",
                f"attention {dt} B1 H32 Lq1 Lkv32768 D128"} <= labels
    for lkv in (16384, 32768):
        for dt in ("float32", "float16", "bfloat16", "float32 q, bfloat16 kv"):
            assert f"attention {dt} B1 H32/8 Lq1 Lkv{lkv} D128" in labels
    for c in attn:
        if c.is_16bit:
            assert any(f.shape == c.shape and f.causal == c.causal and f.kv_heads == c.kv_heads and not f.is_16bit
                       for f in attn), c.label
    assert {c.label for c in attn if c.is_paged} == {
        "paged_attention float32 S16 H32/8 Lkv2k-16k D128 page16", "paged_attention bfloat16 S16 H32/8 Lkv2k-16k D128 page16"}
    assert notices == []


def test_attention_dropped_by_default_when_normexp_lacks_it():
    cases, notices = _cases([], has_attention=False)
    assert not any(c.is_attention for c in cases)
    assert any("attention" in n for n in notices)
    cases, notices = _cases(["--ops", "attention"], has_attention=False)  # asked for: peers still run
    assert cases and all(c.is_attention for c in cases)
    args = cli.build_parser().parse_args([])
    cases, notices = cli.select_cases(args, True, has_paged=False)
    assert not any(c.is_paged for c in cases) and any(c.op == "attention" for c in cases)
    assert any("paged_attention skipped" in n for n in notices)


def test_select_cases_options():
    cases, _ = _cases(["--ops", "softmax,logsumexp", "--shapes", "4x8,6x5:0", "--dtypes", "float64", "--accuracy", "high"])
    assert [(c.op, c.shape, c.norm_axis, c.dtype) for c in cases] == [
        ("softmax", (4, 8), 1, "float64"), ("softmax", (6, 5), 0, "float64"),
        ("logsumexp", (4, 8), 1, "float64"), ("logsumexp", (6, 5), 0, "float64")]
    # By default each reduction row is followed by its accuracy="fast" row; attention has one row.
    cases, _ = _cases(["--ops", "softmax,attention", "--shapes", "4x8", "--attention-shapes", "1x2x4x8"])
    assert [(c.op, c.shape_label, c.accuracy) for c in cases] == [
        ("softmax", "4x8", "high"), ("softmax", "4x8 fast", "fast"), ("attention", "B1 H2 L4 D8", "high")]
    assert [c.accuracy for c in _cases(["--ops", "softmax", "--shapes", "4x8", "--accuracy", "fast"])[0]] == ["fast"]
    with pytest.raises(ValueError, match="accuracy"):
        _cases(["--ops", "softmax", "--accuracy", "exact"])
    with pytest.raises(ValueError, match="accuracy"):
        Case("attention", (1, 1, 2, 2, 4), accuracy="fast")
    cases, _ = _cases(["--quick"])
    assert {c.op for c in cases} == {"softmax", "logsumexp"} and all(c.dtype == "float32" for c in cases)
    assert all(c.accuracy == "high" for c in cases)  # the quick run keeps to the default mode
    with pytest.raises(ValueError, match="unknown operation"):
        _cases(["--ops", "softmin"])
    with pytest.raises(ValueError, match="dtype"):
        _cases(["--dtypes", "float8"])
    with pytest.raises(ValueError, match="Lq = Lkv"):
        _cases(["--ops", "attention", "--attention-shapes", "1x2x4x8x16:causal"])
    # grouped-query shapes and mixed dtypes from the command line; paged shapes in their dtypes
    cases, _ = _cases(["--ops", "attention", "--attention-shapes", "1x4/2x1x64x8", "--dtypes", "float16,float32/bfloat16"])
    assert [(c.dtype, c.kv_dtype, c.heads_kv, c.label) for c in cases] == [
        ("float16", "", 2, "attention float16 B1 H4/2 Lq1 Lkv64 D8"),
        ("float32", "bfloat16", 2, "attention float32 q, bfloat16 kv B1 H4/2 Lq1 Lkv64 D8")]
    cases, notices = _cases(["--ops", "paged_attention", "--paged-shapes", "3x4/2x5-70x16:8", "--dtypes", "float64,bfloat16"],
                            has_attention=True)
    assert [(c.dtype, c.page, c.heads_kv) for c in cases] == [("bfloat16", 8, 2)]
    assert any("float64 left out" in n for n in notices)
    with pytest.raises(ValueError, match="heads_kv must divide"):
        _cases(["--ops", "attention", "--attention-shapes", "1x6/4x1x64x8"])
    with pytest.raises(ValueError, match="mixed attention dtype"):
        _cases(["--ops", "attention", "--dtypes", "bfloat16/float16"])


def test_timing_options():
    args = cli.build_parser().parse_args(["--repeat", "7", "--max-time", "0.2"])
    t = cli.timing_from(args)
    assert (t.repeat, t.max_time, t.min_repeat) == (7, 0.2, 5)
    t = cli.timing_from(cli.build_parser().parse_args(["--quick"]))
    assert t.repeat == 11
    with pytest.raises(ValueError):
        Timing(repeat=0)


def test_output_paths(tmp_path):
    args = cli.build_parser().parse_args(["--out", str(tmp_path), "--json", "x.json"])
    p = cli.output_paths(args)
    assert p == {"json": "x.json", "markdown": str(tmp_path / "results.md"), "plots": str(tmp_path)}


# ---- the case model -----------------------------------------------------------------------------------


def test_case_traffic_and_work():
    c = Case("softmax", (4, 1000))
    assert c.elements == 4000 and c.bytes == 2 * 4000 * 4 and c.flops == 0 and c.limit_kind == "copy"
    c = Case("logsumexp", (64, 32), "float64", axis=0)
    assert c.out_shape == (32,) and c.bytes == (64 * 32 + 32) * 8 and c.limit_kind == "read"
    assert c.shape_label == "64x32 axis 0"
    a = Case("attention", (1, 2, 8, 8, 4))
    assert a.flops == 4 * 2 * 8 * 8 * 4 and a.limit_kind == "fma"
    assert Case("attention", (1, 2, 8, 8, 4), causal=True).flops == 4 * 2 * (8 * 9 // 2) * 4
    assert Case("attention", (1, 2, 1, 64, 4)).limit_kind == "read"  # decode is bandwidth-bound
    with pytest.raises(ValueError):
        Case("softmax", (4, 4), axis=2)
    with pytest.raises(ValueError):
        Case("softmax", (4, 4), causal=True)
    with pytest.raises(ValueError):
        Case("attention", (1, 2, 8, 4))


def test_cache_class_and_rotation():
    llc = 32 << 20
    small = Case("softmax", (512, 4096))  # 16 MiB in + out
    assert small.cache_class(llc) == "in" and small.rotation(llc) == 1
    mid = Case("softmax", (64, 65536))  # 32 MiB: out of cache, cycled through 2 copies
    assert mid.cache_class(llc) == "out" and mid.rotation(llc) == 2
    big = Case("softmax", (1, 1 << 24))  # 128 MiB: already far past the cache
    assert big.rotation(llc) == 1
    # A decode reads its KV cache from memory at every step: cold from a sixteenth of the LLC on, even where
    # it fits the cache (8 MiB of K and V here: cycled through 8 copies); a prefill of 16 MiB, or a decode
    # too small to rotate, hot.
    decode = Case("attention", (1, 8, 1, 2048, 64))
    assert decode.bytes >= llc // 16
    assert decode.cache_class(llc) == "out" and decode.rotation(llc) == math.ceil(2 * llc / decode.bytes) > 1
    paged = Case("paged_attention", (4, 8, 256, 512, 64), heads_kv=8, page=16)
    assert llc // 16 <= paged.bytes <= llc // 2
    assert paged.cache_class(llc) == "out" and paged.rotation(llc) > 1
    prefill = Case("attention", (1, 8, 2048, 2048, 64))
    assert prefill.cache_class(llc) == "in" and prefill.rotation(llc) == 1
    tiny = Case("attention", (1, 2, 1, 9, 4))
    assert tiny.cache_class(llc) == "in" and tiny.rotation(llc) == 1


def test_inputs_are_deterministic_and_reference_is_right():
    c = Case("log_softmax", (3, 50))
    (x,), (y,) = c.make_inputs(1), c.make_inputs(1)
    assert x.dtype == np.float32 and np.array_equal(x, y)
    ref = c.reference((x,))
    assert np.allclose(np.exp(ref).sum(axis=-1), 1.0, rtol=1e-12)  # float64 reference: rounding only
    a = Case("attention", (1, 2, 5, 5, 4), causal=True)
    q, k, v = a.make_inputs(0)
    out = a.reference((q, k, v))
    assert np.allclose(out[..., 0, :], v[..., 0, :], rtol=1e-12)  # causal: query 0 sees key 0 only


# ---- errors and the wrong-answer flag ------------------------------------------------------------------


def test_max_error_and_classify():
    c = Case("softmax", (2, 100))
    ref = c.reference(c.make_inputs())
    assert runner.max_error(ref.astype(np.float32), ref, c) < 1e-7
    assert runner.classify(runner.max_error(ref * (1 + 1e-4), ref, c), c) == "inaccurate"
    assert runner.classify(runner.max_error(ref * 1.1, ref, c), c) == "WRONG"
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert runner.max_error(bad, ref, c) == math.inf
    assert runner.max_error(ref[:, :-1], ref, c) == math.inf
    assert runner.classify(math.nan, c) == "WRONG"
    lse = Case("logsumexp", (2, 100))
    r = lse.reference(lse.make_inputs())
    assert runner.classify(runner.max_error(r + 0.5, r, lse), lse) == "WRONG"


def test_wrong_peer_is_flagged_and_not_timed():
    cases = [Case("softmax", (3, 40)), Case("logsumexp", (2, 7))]
    res = runner.run(cases, threads=[1, 2], peers=[NumpyPeer(), WrongSoftmaxPeer(), FailingPeer()],
                     timing=FAST, limits=LIMITS, progress=False, log=lambda s: None)
    assert len(res.records) == 2 * 2 * 3
    by = {(r["op"], r["threads"], r["peer"]): r for r in res.records}
    wrong = by[("softmax", 1, "wrong")]
    assert wrong["check"] == "WRONG" and wrong["time_s"] is None and wrong["max_error"] > 0.05
    ok = by[("softmax", 1, "numpy")]
    assert ok["check"] == "ok" and ok["time_s"] > 0 and 1 <= ok["samples"] <= 2
    assert by[("logsumexp", 2, "wrong")]["check"] == "WRONG"  # softmax where logsumexp was asked
    failing = by[("softmax", 1, "failing")]
    assert failing["check"] == "error" and failing["note"] == "RuntimeError: no kernel for this"
    # the best peer never is a wrong one
    groups = report.group(res.records)
    for by_peer in groups.values():
        b = report.best_peer(by_peer)
        assert b is None or b["check"] in ("ok", "inaccurate")
    text = report.render_text(res)
    assert "WRONG" in text and "error" in text


def test_records_with_named_peers_and_limits():
    res = runner.run([Case("softmax", (4, 64)), Case("logsumexp", (4, 64), axis=0)], threads=[1, 2],
                     peers=["numpy", "scipy"], timing=FAST, limits=LIMITS, progress=False, log=lambda s: None)
    assert [r["peer"] for r in res.records[:3]] == ["normexp", "numpy", "scipy"]
    for r in res.records:
        assert r["check"] == "ok", r
        assert r["time_q1_s"] <= r["time_s"] <= r["time_q3_s"]
        assert r["gb_per_s"] == pytest.approx(r["bytes"] / r["time_s"] / 1e9)
        assert r["gelem_per_s"] == pytest.approx(r["elements"] / r["time_s"] / 1e9)
        kind = "copy" if r["op"] == "softmax" else "read"
        # copy: the better of regular and non-temporal copies; 2 threads has no non-temporal value
        lim = {("copy", 1): 14.0, ("copy", 2): 20.0, ("read", 1): 10.0, ("read", 2): 15.0}[(kind, r["threads"])]
        assert r["limit"] == lim and r["limit_fraction"] == pytest.approx(r["gb_per_s"] / lim)
    json.dumps(res.to_json(), allow_nan=False)  # strict JSON: every number finite
    assert res.meta["peers"]["normexp"].startswith(normexp.__version__)


def test_every_peer_runs_or_says_why():
    """Installed peers compute a tiny softmax / logsumexp / attention correctly; missing ones give a
    one-line notice naming the pip command. Unsupported combinations say why ('n/a')."""
    names = [n for n in PEER_CLASSES if n != "normexp"]
    peers, notices = make_peers(names)
    for n in notices:
        assert "\n" not in n and "pip install" in n
    assert len(peers) + len(notices) == len(names) + 1
    cases = [Case("softmax", (3, 17)), Case("log_softmax", (5, 4), "float64", axis=0),
             Case("logsumexp", (2, 9)), Case("attention", (1, 2, 6, 6, 4), causal=True),
             Case("attention", (1, 2, 1, 9, 4))]
    res = runner.run(cases, threads=[1], peers=peers, timing=FAST, limits=LIMITS, progress=False,
                     log=lambda s: None)
    for r in res.records:
        if r["check"] == "n/a":
            assert r["note"]
            continue
        assert r["check"] == "ok", r


def test_half_precision_cases():
    """float16 / bfloat16 reduction rows: in the default list (once, whatever the accuracies), 16-bit
    inputs, measured by normexp and torch (the others say n/a), checked within the 16-bit tolerances."""
    cases, _ = _cases([], has_attention=True)
    for dt in ("float16", "bfloat16"):
        labels = {(c.op, c.shape_label) for c in cases if c.dtype == dt}
        for op in ("softmax", "log_softmax", "logsumexp"):
            assert {(op, "1x16777216"), (op, "512x4096"), (op, "1x32000"), (op, "4096x128")} <= labels
        assert len(with_accuracies([Case("softmax", (2, 8), dt)], ["high", "fast"])) == 1
        with pytest.raises(ValueError):
            Case("attention", (1, 2, 6, 6, 4), dt, kv_dtype="float16")  # 16-bit K/V go under a float32 q only
        with pytest.raises(ValueError):
            Case("softmax", (2, 8), "float32", kv_dtype=dt)
    cases = [Case(op, (3, 700), dt) for op in ("softmax", "log_softmax", "logsumexp") for dt in ("float16", "bfloat16")]
    assert cases[1].make_inputs()[0].dtype.name == "bfloat16" and cases[1].itemsize == 2
    res = runner.run(cases, threads=[1], peers=["numpy", "torch"], timing=FAST, limits=LIMITS, progress=False,
                     log=lambda s: None)
    by = {(r["op"], r["dtype"], r["peer"]): r for r in res.records}
    for op in ("softmax", "log_softmax", "logsumexp"):
        for dt in ("float16", "bfloat16"):
            assert by[(op, dt, "normexp")]["check"] == "ok", by[(op, dt, "normexp")]
            assert by[(op, dt, "torch")]["check"] in ("ok", "inaccurate"), by[(op, dt, "torch")]
        assert by[(op, "bfloat16", "numpy")]["check"] == "n/a"
    # A result off by a few bfloat16 ULP is not "ok".
    c = Case("softmax", (1, 4), "bfloat16")
    ref = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert runner.classify(runner.max_error(ref * (1 + 2 ** -6), ref, c), c) != "ok"


def test_numpy_attention_matches_reference():
    c = Case("attention", (2, 3, 7, 7, 5), causal=True)
    q, k, v = c.make_inputs(3)
    bias = np.where(np.triu(np.ones((7, 7), bool), 1), -np.inf, 0.0).astype(np.float32)
    got = numpy_attention(q, k, v, bias)
    assert runner.classify(runner.max_error(got, c.reference((q, k, v)), c), c) == "ok"


def test_gqa_16bit_and_paged_traffic_and_inputs():
    """The traffic / work model of the new attention rows, worked by hand, and their inputs."""
    g = Case("attention", (1, 8, 1, 100, 16), "bfloat16", heads_kv=2)
    assert g.input_shapes == [(1, 8, 1, 16), (1, 2, 100, 16), (1, 2, 100, 16)]
    assert g.kv_bytes == 2 * 100 * 2 * 16 * 2 and g.bytes == g.kv_bytes + 2 * (8 * 16) * 2
    assert g.flops == 4 * 8 * 100 * 16 and g.limit_kind == "read" and g.is_16bit
    m = Case("attention", (1, 8, 1, 100, 16), "float32", kv_dtype="float16", heads_kv=2)
    assert m.kv_bytes == g.kv_bytes and m.bytes == m.kv_bytes + 2 * (8 * 16) * 4 and m.is_16bit
    q, k, v = m.make_inputs()
    assert (q.dtype.name, k.dtype.name, v.dtype.name) == ("float32", "float16", "float16")
    # grouped heads in the reference: query head j reads K/V head j // 4, i.e. the same as repeating K/V
    ref = m.reference((q, k, v))
    full = Case("attention", (1, 8, 1, 100, 16))
    np.testing.assert_allclose(ref, full.reference((q, np.repeat(k, 4, axis=1), np.repeat(v, 4, axis=1))), rtol=1e-12)
    p = Case("paged_attention", (3, 4, 20, 70, 16), "float32", heads_kv=2, page=8)
    lens = p.seq_lens
    assert lens.tolist() == [20, 45, 70] and lens.dtype == np.int32
    pages = 3 + 6 + 9
    assert p.input_shapes == [(3, 4, 16), (pages, 8, 2, 16), (pages, 8, 2, 16)] and p.out_shape == (3, 4, 16)
    assert p.kv_bytes == 2 * 135 * 2 * 16 * 4 and p.flops == 4 * 4 * 135 * 16 and p.limit_kind == "read"
    q, kp, vp, table, n = p.make_inputs()
    assert table.shape == (3, 9) and (n == lens).all()
    used = [table[s, : (lens[s] + 7) // 8] for s in range(3)]
    assert sorted(np.concatenate(used).tolist()) == list(range(pages))  # every page once, in a random order
    assert (table[0, 3:] == -1).all() and (table[1, 6:] == -1).all()
    got = p.reference((q, kp, vp, table, n))
    for s in range(3):  # the gathered sequence's keys through the contiguous reference
        ks = kp[used[s]].reshape(-1, 2, 16)[: lens[s]].transpose(1, 0, 2)[None]
        vs = vp[used[s]].reshape(-1, 2, 16)[: lens[s]].transpose(1, 0, 2)[None]
        want = Case("attention", (1, 4, 1, int(lens[s]), 16), heads_kv=2).reference((q[s][None, :, None], ks, vs))
        np.testing.assert_allclose(got[s], want[0, :, 0], rtol=1e-12)
    for bad in (dict(heads_kv=3), dict(page=4), dict(kv_dtype="bfloat16", dtype="float16")):
        with pytest.raises(ValueError):
            Case("attention", (1, 8, 1, 100, 16), **bad)
    with pytest.raises(ValueError):
        Case("paged_attention", (3, 4, 20, 70, 16))  # no page size
    with pytest.raises(ValueError):
        Case("paged_attention", (3, 4, 70, 20, 16), page=8)


class WrongAttentionPeer(Peer):
    """A deliberately wrong attention: the output scaled by 1.25 (normwise error 25%), in q's dtype."""

    name = "wrong"
    module = "numpy"
    dtypes = ("float32", "float16", "bfloat16")
    paged = True

    def version(self) -> str:
        return "test"

    def start(self, case, buffers, threads):
        def f(arrays):
            ref = case.reference(arrays) * 1.25
            return ref.astype(arrays[0].dtype)

        return CallSession([lambda a=a: f(a) for a in buffers], np.asarray)


@pytest.fixture(scope="module")
def attention_16bit_results():
    """16-bit, grouped-query, mixed-dtype and paged rows, with their float32 rows, by normexp, torch, ONNX
    Runtime and a wrong peer."""
    cases = [Case("attention", (1, 4, 1, 96, 16), dt, heads_kv=2, kv_dtype=kv)
             for dt, kv in (("float32", ""), ("float16", ""), ("bfloat16", ""), ("float32", "bfloat16"))]
    cases += [Case("attention", (1, 2, 24, 24, 16), dt, causal=True) for dt in ("float32", "bfloat16")]
    cases += [Case("paged_attention", (3, 4, 20, 70, 16), dt, heads_kv=2, page=8) for dt in ("float32", "bfloat16")]
    peers, _ = make_peers(["torch", "onnxruntime"])
    return runner.run(cases, threads=[1], peers=peers + [WrongAttentionPeer()], timing=FAST, limits=LIMITS,
                      progress=False, log=lambda s: None)


def test_16bit_gqa_and_paged_rows_are_checked(attention_16bit_results):
    by = {(r["op"], r["dtype_label"], r["label"], r["peer"]): r for r in attention_16bit_results.records}
    gqa = "B1 H4/2 Lq1 Lkv96 D16"
    for dt in ("float32", "float16", "bfloat16", "float32 q, bfloat16 kv"):
        r = by[("attention", dt, gqa, "normexp")]
        assert r["check"] == "ok" and r["time_s"] > 0, r
        assert r["gb_per_s"] == pytest.approx(r["bytes"] / r["time_s"] / 1e9)
        assert r["limit_kind"] == "read" and r["limit_fraction"] == pytest.approx(r["gb_per_s"] / LIMITS["1"]["read"])
        assert by[("attention", dt, gqa, "wrong")]["check"] == "WRONG"  # a 25% error is caught in every dtype
    for key in (("paged_attention", "float32", "S3 H4/2 Lkv20-70 D16 page8"),
                ("paged_attention", "bfloat16", "S3 H4/2 Lkv20-70 D16 page8")):
        assert by[key + ("normexp",)]["check"] == "ok", by[key + ("normexp",)]
        assert by[key + ("wrong",)]["check"] == "WRONG"
        assert by[key + ("torch",)]["check"] == "n/a" and "paged" in by[key + ("torch",)]["note"]
    assert by[("attention", "bfloat16", "B1 H2 L24 D16 causal", "normexp")]["limit_kind"] == "fma"
    if ("attention", "bfloat16", gqa, "torch") in by:  # torch SDPA: enable_gqa, 16-bit on the CPU
        assert by[("attention", "bfloat16", gqa, "torch")]["check"] in ("ok", "inaccurate")
        assert by[("attention", "float32 q, bfloat16 kv", gqa, "torch")]["check"] == "n/a"
    if ("attention", "float16", gqa, "onnxruntime") in by:
        assert by[("attention", "float16", gqa, "onnxruntime")]["check"] in ("ok", "inaccurate")
        assert by[("attention", "bfloat16", gqa, "onnxruntime")]["check"] == "n/a"


def test_16bit_rows_in_the_reports(attention_16bit_results, tmp_path):
    res = attention_16bit_results
    tables = {t[0]: t for t in report.summary_tables(res)}
    assert set(tables) == {"attention", "paged_attention"}
    for op, header, rows in tables.values():
        assert {"GFLOP/s", "GB/s", "% limit", "x float32"} <= set(header)
        assert all(len(row) == len(header) for row in rows)
        col = {h: i for i, h in enumerate(header)}
        nx = {(r["label"], r["dtype_label"]): r for r in res.records if r["op"] == op and r["peer"] == "normexp"}
        assert len(rows) == len(nx)  # one row per case: mixed-dtype and grouped rows do not merge with others
        for row in rows:
            r = nx[(row[0], row[1])]
            assert row[col["GB/s"]] == report.fmt_rate(r["gb_per_s"])
            if r["dtype_label"] == "float32":
                assert row[col["x float32"]] == ""
                continue
            f32 = nx[(row[0], "float32")]
            assert row[col["x float32"]] == f"{f32['time_s'] / r['time_s']:.2f}x"
    text = report.render_text(res)
    assert "paged_attention" in text and "float32 q, bfloat16 kv" in text and "x float32" in text
    md = report.render_markdown(res, "cmd")
    assert "| B1 H4/2 Lq1 Lkv96 D16 | float32 q, bfloat16 kv |" in md
    path = tmp_path / "r.json"
    report.write_json(res, str(path))
    assert report.render_text(report.load_json(str(path))) == text
    assert "attention.png" in [os.path.basename(p) for p in plots.plot_all(res, str(tmp_path))]


def test_list_shows_the_new_rows(capsys):
    assert cli.main(["--list", "--ops", "attention,paged_attention", "--attention-shapes", "1x32/8x1x16kx128",
                     "--paged-shapes", "16x32/8x2k-16kx128", "--dtypes", "bfloat16,float32/bfloat16"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "attention bfloat16 B1 H32/8 Lq1 Lkv16384 D128",
        "attention float32 q, bfloat16 kv B1 H32/8 Lq1 Lkv16384 D128",
        "paged_attention bfloat16 S16 H32/8 Lkv2k-16k D128 page16",
        "paged_attention float32 q, bfloat16 kv S16 H32/8 Lkv2k-16k D128 page16"]


def test_onnx_model_or_missing_notice():
    from normexp.bench.peers import OnnxRuntimePeer, onnx_model

    p = OnnxRuntimePeer()
    if p.missing():
        assert "pip install onnxruntime onnx" in p.missing()
        return
    import onnx

    for c in (Case("softmax", (2, 3), axis=0), Case("logsumexp", (2, 3)), Case("attention", (1, 2, 4, 4, 8))):
        onnx.checker.check_model(onnx.load_from_string(onnx_model(c)))


# ---- timing --------------------------------------------------------------------------------------------


def test_time_calls_counts_and_rotation():
    calls = []
    fns = [lambda i=i: calls.append(i) for i in range(3)]
    samples, k = time_calls(fns, Timing(warmup=0.0, repeat=4, min_repeat=4, max_time=1e-4, min_sample=0.0))
    assert len(samples) == 4 and k >= 1 and all(s >= 0 for s in samples)
    assert set(calls) == {0, 1, 2}  # every buffer set is used
    assert calls == [i % 3 for i in range(len(calls))]  # in turn


def test_noise_warnings():
    quiet = [{"iqr_rel": 0.02}] * 10
    meta = {"cpus_usable": 2, "load_average": [0.5, 0.4, 0.3], "load_average_end": [1.0, 0.5, 0.3]}
    assert runner.noise_notices(quiet, meta) == []
    busy = quiet[:7] + [{"iqr_rel": 0.5}] * 3
    assert "3 of 10 measurements" in runner.noise_notices(busy, meta)[0]
    loaded = dict(meta, load_average_end=[6.5, 3.0, 1.0])
    assert "6.5 on 2 usable CPUs" in runner.noise_notices(quiet, loaded)[0]


def test_summarize_quartiles():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"]) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert summarize([2.0])["median"] == 2.0


# ---- reports and plots ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_results():
    cases = [Case("softmax", (2, 64)), Case("softmax", (2, 1024)), Case("logsumexp", (2, 64)),
             Case("attention", (1, 2, 8, 8, 4)), Case("attention", (1, 2, 1, 32, 4))]
    return runner.run(cases, threads=[1, 2], peers=[NumpyPeer(), WrongSoftmaxPeer()], timing=FAST,
                      limits=LIMITS, progress=False, log=lambda s: None)


def test_text_and_markdown_reports(small_results):
    text = report.render_text(small_results, long=True)
    assert "softmax" in text and "logsumexp" in text and "% limit" in text and "limits at 1 thread" in text
    md = report.render_markdown(small_results, command="python -m normexp bench --x")
    assert "`python -m normexp bench --x`" in md
    assert "| case | dtype | cache | thr | normexp |" in md and "<details>" in md
    tables = report.summary_tables(small_results)
    assert [t[0] for t in tables] == ["softmax", "logsumexp", "attention"]
    sm = dict((t[0], t) for t in tables)["softmax"]
    assert all(len(row) == len(sm[1]) for row in sm[2])
    wrong_col = sm[1].index("wrong")
    assert {row[wrong_col] for row in sm[2]} == {"WRONG"}


def test_json_roundtrip(small_results, tmp_path):
    path = tmp_path / "r.json"
    report.write_json(small_results, str(path), command="cmd")
    data = json.loads(path.read_text())
    assert data["meta"]["command"] == "cmd" and len(data["records"]) == len(small_results.records)
    back = report.load_json(str(path))
    assert report.render_text(back) == report.render_text(small_results)


def test_plots(small_results, tmp_path):
    assert plots.available() is None  # matplotlib is part of the test extra
    written = plots.plot_all(small_results, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["attention.png", "logsumexp.png", "softmax.png"]
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_formatting():
    assert report.fmt_time(1.5e-6) == "1.5 us" and report.fmt_time(0.25) == "250 ms"
    assert report.fmt_time(None) == ""
    assert report.markdown_table(["a", "b|c"], [["x*", "1"]]).splitlines()[0] == "| a | b\\|c |"


# ---- the command line, end to end ---------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys):
    rc = cli.main(["--ops", "softmax,log_softmax", "--shapes", "3x33,5x4:0", "--dtypes", "float32,float64",
                   "--threads", "1", "--peers", "numpy", "--no-probe", "--no-progress", "--repeat", "2",
                   "--min-repeat", "1", "--max-time", "0.0001", "--warmup", "0", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "3x33" in out and "5x4 axis 0" in out and "float64" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["records"]) == 2 * 2 * 2 * 2 * 2  # ops x shapes x dtypes x accuracies x peers
    assert all(r["check"] == "ok" for r in data["records"])
    assert "3x33 fast" in out and sum(r["accuracy"] == "fast" for r in data["records"]) == 16
    assert data["meta"]["command"].startswith("python -m normexp bench --ops softmax,log_softmax")
    assert (tmp_path / "results.md").exists() and (tmp_path / "softmax.png").exists()
    # re-render from the JSON without measuring
    rc = cli.main(["--from-json", str(tmp_path / "results.json"), "--markdown", str(tmp_path / "again.md")])
    assert rc == 0 and "5x4 axis 0" in (tmp_path / "again.md").read_text()
    # fill a README's marked block: the tables, the original command, links to the plots
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_BEGIN}\nslot\n{report.README_END}\nafter\n")
    rc = cli.main(["--from-json", str(tmp_path / "results.json"), "--plots", str(tmp_path / "fig"),
                   "--readme", str(readme)])
    text = readme.read_text()
    assert rc == 0 and "slot" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "`python -m normexp bench --ops softmax,log_softmax" in text and "](fig/softmax.png)" in text
    assert "| 5x4 axis 0 | float64 | in |" in text
    readme.write_text("no markers\n")
    assert cli.main(["--from-json", str(tmp_path / "results.json"), "--readme", str(readme)]) == 1


def test_cli_isa_side_by_side(tmp_path, capsys):
    """--isa runs normexp once per kernel set (each session inside use_isa), names the first 'normexp'
    and the others 'normexp[<isa>]', and adds the table of times and speed-ups; an unavailable set is
    a usage error."""
    isas = normexp.available_isas()
    pick = [isas[-1], isas[0]] if len(isas) > 1 else isas
    before = normexp.isa()
    rc = cli.main(["--ops", "softmax", "--shapes", "3x40", "--threads", "1", "--peers", "", "--isa", ",".join(pick),
                   "--accuracy", "high", "--no-probe", "--no-progress", "--repeat", "2", "--min-repeat", "1", "--max-time", "0.0001",
                   "--warmup", "0", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["isas"] == pick
    assert [r["peer"] for r in data["records"]] == ["normexp"] + [f"normexp[{i}]" for i in pick[1:]]
    assert data["meta"]["peers"]["normexp"].endswith(f"({pick[0]})")
    assert all(r["check"] == "ok" for r in data["records"])
    out = capsys.readouterr().out
    if len(pick) > 1:
        assert "kernel sets (--isa)" in out and f"{pick[0]} speed-up over {pick[1]}" in out
        t0, t1 = (r["time_s"] for r in data["records"])
        assert f"{t1 / t0:.2f}x" in out.split("kernel sets (--isa)")[1]  # time on the other set / on the first
    assert normexp.isa() == before  # the override ended with the session
    with pytest.raises(SystemExit):
        cli.main(["--isa", "avx1024", "--shapes", "2x3"])
    assert "not available" in capsys.readouterr().err


def test_cli_list_and_errors(capsys):
    assert cli.main(["--list", "--ops", "logsumexp", "--shapes", "2x3"]) == 0
    assert capsys.readouterr().out.strip() == "logsumexp float32 2x3\nlogsumexp float32 2x3 fast"
    with pytest.raises(SystemExit) as e:
        cli.main(["--shapes", "2xq"])
    assert e.value.code == 2
    assert "bad shape" in capsys.readouterr().err


def test_unknown_peer_and_missing_peer_notice(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--peers", "numpy,tensorflow", "--shapes", "2x3"])
    assert "unknown peer 'tensorflow'" in capsys.readouterr().err

    class Absent(Peer):
        name = "absent"
        module = "normexp_no_such_module"
        install = "pip install absent"

    why = Absent().missing()
    assert why.startswith("absent: not installed (pip install absent)") and "\n" not in why


def test_python_m_normexp_help_and_self_check():
    from normexp import _quick

    assert _quick.self_check(log=lambda s: None)
    r = subprocess.run([sys.executable, "-m", "normexp", "bench", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--attention-shapes" in r.stdout
    r = subprocess.run([sys.executable, "-m", "normexp", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "python -m normexp bench" in r.stdout
