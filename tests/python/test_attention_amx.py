"""bfloat16 attention on the AMX tile unit (kernels/avx512amx/attention.cpp: the scores and P V of prefill
blocks) against the avx512 set's float32 kernels on the same values (NORMEXP_AMX=0), each in a child
interpreter (the switch is read at import). The tile unit rounds in its own order, so the two agree within the
bfloat16 output's rounding, not bit for bit; a run that took the same path twice would agree everywhere (the
negative control). Tested where the CPU and the OS have AMX; elsewhere skipped with that reason. The kernels
themselves against float64: tests/cpp/test_attention_bf16.cpp (`amx`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_isa_extensions import cpu_has_amx

pytestmark = pytest.mark.skipif(not cpu_has_amx(), reason="this CPU (or OS) has no AMX: the tile path is NOT tested")

RUN = r"""
import json, numpy as np, ml_dtypes, normexp
bf = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(11)
out = {"ext": normexp.isa_extensions()}
with normexp.use_isa("avx512"):
    # Query rows around the 16-row tiles, key counts around the 32-key steps and the 128-key blocks, head dims
    # on the tiles (multiples of 32) and off them (48, 80: P V on the tiles, scores by the fallback), GQA.
    for b, hq, hkv, lq, lk, d, dv in [(1, 2, 2, 5, 1, 32, 32), (1, 2, 1, 17, 33, 64, 64), (2, 4, 2, 40, 300, 128, 128),
                                      (1, 2, 2, 130, 129, 96, 48), (1, 1, 1, 33, 257, 80, 80), (1, 2, 2, 64, 64, 256, 256)]:
        q = rng.standard_normal((b, hq, lq, d)).astype(np.float32).astype(bf)
        k = rng.standard_normal((b, hkv, lk, d)).astype(np.float32).astype(bf)
        v = (rng.standard_normal((b, hkv, lk, dv)) * 3).astype(np.float32).astype(bf)
        for causal in (False, True):
            o, lse = normexp.attention(q, k, v, is_causal=causal, return_lse=True)
            out[f"{lq} {lk} {d} {dv} {causal}"] = [o.view(np.uint16).tolist(), lse.tolist()]
    # An infinite value at key 37 and a NaN at key 50 of a causal call: the tile unit's P V reads the pair words
    # of whole 32-key steps, and those past a step's keys must not reach the output (a zero weight times inf
    # is NaN); the outputs must be non-finite exactly where the float32 kernels' are.
    q = rng.standard_normal((1, 1, 70, 64)).astype(np.float32).astype(bf)
    k = rng.standard_normal((1, 1, 70, 64)).astype(np.float32).astype(bf)
    v = rng.standard_normal((1, 1, 70, 64)).astype(np.float32)
    v[0, 0, 37] = np.inf
    v[0, 0, 50, 3] = np.nan
    o = normexp.attention(q, k, v.astype(bf), is_causal=True)
    out["inf"] = o.astype(np.float32).astype(np.float64).tolist()
    # The edges of the unit's range (found by a hostile test; each went wrong on the tiles before the driver sent
    # them to the float32 kernels): values from 2^126 up, whose partial sums inside an instruction overflowed
    # (alternating signs, equal weights); values of 2^-120 under weights near 2^-7, whose products the unit
    # flushed below 2^-126; and a scale of 2^125 on q, k near 2^-65, whose products it flushed in the scores.
    z = np.zeros((1, 16, 32), np.float32)
    big = (np.float32(2.0**126) * np.array([1, -1, 1, -1, 1, -1, 1], np.float32))[None, :, None] * np.ones((1, 7, 32), np.float32)
    out["big"] = normexp.attention(z.astype(bf), np.zeros((1, 7, 32), np.float32).astype(bf), big.astype(bf)).astype(np.float64).tolist()
    qt = np.zeros((1, 16, 32), np.float32); qt[..., 0] = 1
    kt = np.zeros((1, 512, 32), np.float32); kt[0, 1:, 0] = -4.875
    vt = np.full((1, 512, 32), 1.5 * 2.0**-120, np.float32); vt[0, 0] = 2.0**-120
    out["tiny_v"] = normexp.attention(qt.astype(bf), kt.astype(bf), vt.astype(bf), scale=1.0).astype(np.float64).tolist()
    qs = np.full((1, 8, 32), 2.0**-65, np.float32)
    ks = (2.0**-65 * (1 + np.arange(8, dtype=np.float32) / 8))[None, :, None] * np.ones((1, 8, 32), np.float32) / 32
    vs = rng.standard_normal((1, 8, 32)).astype(np.float32)
    o, lse = normexp.attention(qs.astype(bf), ks.astype(bf), vs.astype(bf), scale=2.0**125, return_lse=True)
    out["scale"] = [o.astype(np.float64).tolist(), lse.astype(np.float64).tolist()]
print(json.dumps(out).replace("NaN", '"nan"').replace("-Infinity", '"-inf"').replace("Infinity", '"inf"'))
"""


def run(amx: str) -> dict:
    r = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NORMEXP_AMX": amx, "NORMEXP_AVX512_BF16": ""})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_amx_agrees_with_the_float32_kernels():
    import ml_dtypes

    bf = np.dtype(ml_dtypes.bfloat16)
    on, off = run("1"), run("0")
    assert "amx_bf16" in on["ext"] and "amx_bf16" not in off["ext"]
    differ = 0
    for key in on:
        if key in ("ext", "inf", "big", "tiny_v", "scale"):
            continue
        a = np.array(on[key][0], np.uint16).view(bf).astype(np.float64)
        b = np.array(off[key][0], np.uint16).view(bf).astype(np.float64)
        # Both within the float32 accumulation bound before one bfloat16 rounding: two ulps apart at most.
        assert np.all(np.abs(a - b) <= 2.0**-7 * np.abs(b) + 2.0**-20), key
        la, lb = np.array(on[key][1]), np.array(off[key][1])
        np.testing.assert_allclose(la, lb, rtol=2.0**-20, atol=2.0**-20, err_msg=key)
        differ += int(np.count_nonzero(a != b))
    assert differ > 0  # the negative control: the two runs took different paths


def test_amx_infinite_values_past_the_diagonal():
    on, off = run("1"), run("0")
    a = np.array([[float(x) for x in row] for row in on["inf"][0][0]])
    b = np.array([[float(x) for x in row] for row in off["inf"][0][0]])
    # The first rows see finite values only (the float32 kernels' causal row groups of 24 already take key 37
    # with weight 0 from row 24 on: NaN there, docs/attention.md), the same rows non-finite on both paths.
    assert np.all(np.isfinite(a[:24])) and not np.all(np.isfinite(a))
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.isinf(a), np.isinf(b))
    fin = np.isfinite(b)
    assert np.all(np.abs(a[fin] - b[fin]) <= 2.0**-7 * np.abs(b[fin]) + 2.0**-20)


def test_amx_range_edges():
    import ml_dtypes

    bf = np.dtype(ml_dtypes.bfloat16)
    for amx in ("1", "0"):
        r = run(amx)
        # Seven equal weights over +-2^126 alternating: (4 - 3) 2^126 / 7 in every column, finite.
        big = np.array(r["big"], dtype=np.float64)
        want = np.float64(np.float32(2.0**126)) / 7
        assert np.all(np.abs(np.abs(big) - want) <= 2.0**-7 * want), (amx, np.unique(big))
        # One key of weight 1 and 511 of e^-4.875 over values near 2^-120: the float64 weighted mean.
        w = np.exp(np.float64(np.float32(-4.875)))
        ref = (2.0**-120 + 511 * w * 1.5 * 2.0**-120) / (1 + 511 * w)
        tiny = np.array(r["tiny_v"])
        assert np.all(np.abs(tiny - ref) <= 2.0**-7 * ref), (amx, np.unique(tiny) / 2.0**-120)
        # Scores 2^125 (q . k): exactly 1 + j / 8 for key j (q, k, and their products exact in float64).
        o, lse = (np.array(x) for x in r["scale"])
        qk = np.float64(bf.type(2.0**-65)) * np.array([np.float64(bf.type(2.0**-65 * (1 + j / 8) / 32)) for j in range(8)])
        s = 2.0**125 * 32 * qk
        want_lse = np.log(np.sum(np.exp(s)))
        np.testing.assert_allclose(lse, want_lse, rtol=2.0**-20, err_msg=f"NORMEXP_AMX={amx}: lse")
