"""``python -m normexp bench --lm-head`` (python/normexp/bench/lm_head.py): shapes, the table, the JSON, and
the peak-memory measurement, which must see PyTorch's logits (a control that the method measures what it
claims) and must not see normexp allocate them. Times are reported, never asserted."""

from __future__ import annotations

import json

import pytest

from normexp.bench import cli, lm_head
from normexp.bench.timing import Timing

pytestmark = pytest.mark.bench_harness  # the harness's logic: ci/sanitizers.sh deselects it


def test_parse_shape():
    assert lm_head.parse_shape("2048x1024x32000") == (2048, 1024, 32000)
    assert lm_head.parse_shape("2kx1kx32k") == (2048, 1024, 32768)
    for bad in ("2048x1024", "0x1x1", "axbxc", ""):
        with pytest.raises(ValueError):
            lm_head.parse_shape(bad)


def test_peak_memory_sees_torch_logits_not_normexp():
    pytest.importorskip("torch")
    shape = (512, 16, 20000)  # 41 MB of float32 logits
    logits = shape[0] * shape[2] * 4
    torch_peak = lm_head.peak_growth("torch", "linear_cross_entropy", shape, 1)
    ours = lm_head.peak_growth("normexp", "linear_cross_entropy", shape, 1)
    assert torch_peak["growth"] >= 0.9 * logits, torch_peak  # the control: the logits are seen
    assert ours["growth"] < 0.05 * logits, ours


def test_cli_table_and_json(tmp_path, capsys):
    path = tmp_path / "lm.json"
    rc = cli.main(["--lm-head", "16x8x300", "--threads", "1", "--repeat", "1", "--max-time", "0.01",
                   "--warmup", "0", "--json", str(path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "linear_cross_entropy | 16x8x300 | 1 |" in out and "linear_logsumexp" in out
    data = json.loads(path.read_text())
    recs = data["lm_head"]
    assert {r["op"] for r in recs} == set(lm_head.OPS)
    for r in recs:
        assert r["normexp_s"] > 0 and r["normexp_peak"] >= 0 and r["logits_bytes"] == 16 * 300 * 4


def test_run_sets_both_libraries_and_restores_them():
    # torch.set_num_threads caps normexp too (one OpenMP runtime): a normexp row after a one-thread torch row
    # must still run the threads it asks for, and the caller's settings come back afterwards.
    import normexp

    torch = pytest.importorskip("torch")
    before = (normexp.get_num_threads(), torch.get_num_threads())
    recs = lm_head.run([(8, 4, 100)], [1, 2], Timing(repeat=1, min_repeat=1, max_time=0.01, warmup=0),
                       ops=("linear_logsumexp",), memory=False)
    assert (normexp.get_num_threads(), torch.get_num_threads()) == before
    assert [r["threads"] for r in recs] == [1, 2] and "normexp_peak" not in recs[0]
    assert recs[1]["normexp_threads"] == recs[1]["torch_threads"] == 2, recs
    assert "linear_logsumexp | 8x4x100 | 1 |" in lm_head.render(recs)
