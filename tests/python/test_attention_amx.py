"""bfloat16 attention on the AMX tile unit (kernels/avx512amx/attention.cpp: the scores and P V of prefill
blocks) against the avx512 set's float32 kernels on the same values (NORMEXP_AMX=0), each in a child
interpreter (the switch is read at import). The tile unit rounds in its own order, so the two agree within the
bfloat16 output's rounding, not bit for bit; a run that took the same path twice would agree everywhere (the
negative control). Tested where the CPU and the OS have AMX; elsewhere skipped with that reason. The kernels
themselves against float64: tests/cpp/test_attention_bf16.cpp (`amx`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import normexp
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
print(json.dumps(out).replace("NaN", '"nan"').replace("-Infinity", '"-inf"').replace("Infinity", '"inf"'))
"""


def run(amx: str) -> dict:
    r = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "NORMEXP_AMX": amx, "NORMEXP_AVX512_BF16": ""})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_amx_agrees_with_the_float32_kernels():
    import ml_dtypes

    bf = np.dtype(ml_dtypes.bfloat16)
    on, off = run("1"), run("0")
    assert "amx_bf16" in on["ext"] and "amx_bf16" not in off["ext"]
    differ = 0
    for key in on:
        if key in ("ext", "inf"):
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
