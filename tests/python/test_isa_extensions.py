"""AVX512_BF16 inside the avx512 set (docs/architecture.md, "Dispatch"): normexp.isa_extensions(), the
NORMEXP_AVX512_BF16 switch, and bfloat16 results with the extension against the plain avx512 set.

The environment variable is read once, when the avx512 table is first used, so each setting runs in a child
interpreter. On a CPU without AVX512_BF16 the comparisons are skipped with that reason (visible in the pytest
summary), as the per-ISA tests do for avx512 itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import normexp


def cpu_has_avx512_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512_bf16" in f.read() and "avx512" in normexp.available_isas()
    except OSError:
        return False


def cpu_has_amx() -> bool:
    """AMX-TILE and AMX-BF16 as Linux lists them (only where the kernel enabled the tile state), beside
    AVX512_BF16: where the dispatcher takes the AMX scores by default (docs/architecture.md, "Dispatch")."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return cpu_has_avx512_bf16() and " amx_bf16" in flags and " amx_tile" in flags and sys.platform == "linux"


def child(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


def cpu_is_amd() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "AuthenticAMD" in f.read()
    except OSError:
        return False


def test_isa_extensions_lists_what_the_cpu_has():
    ext = normexp.isa_extensions()
    assert isinstance(ext, list) and all(isinstance(x, str) for x in ext)
    flag = os.environ.get("NORMEXP_AVX512_BF16", "")
    want = cpu_has_avx512_bf16() and flag != "0"
    assert ("avx512_bf16" in ext) == want
    # AMX's scores wherever the CPU and the OS have it, unless NORMEXP_AMX=0 or NORMEXP_AVX512_BF16=1 asks for
    # vdpbf16ps (NORMEXP_AMX unset); the vdpbf16ps dot products otherwise only where they outrun float32 FMA
    # (AMD Zen 4/5; half its rate on the Intel cores with AVX512_BF16): docs/architecture.md, "Dispatch".
    amx_flag = os.environ.get("NORMEXP_AMX", "")
    want_amx = want and cpu_has_amx() and amx_flag != "0" and not (flag == "1" and amx_flag == "")
    assert ("amx_bf16" in ext) == want_amx
    assert ("avx512_bf16_dot" in ext) == (want and (flag == "1" or (flag == "" and cpu_is_amd())) and not want_amx)


def test_amx_switch():
    # NORMEXP_AMX=0 leaves the tiles out; =1 insists (an error where there is no AMX); other values are errors;
    # NORMEXP_AVX512_BF16=1 alone takes the vdpbf16ps scores; NORMEXP_AVX512_BF16=0 leaves AMX out too.
    off = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AMX="0", NORMEXP_AVX512_BF16="")
    assert off.returncode == 0 and "amx_bf16" not in off.stdout, off.stderr
    if "avx512" not in normexp.available_isas():
        pytest.skip("no avx512 set on this CPU: NORMEXP_AMX is never read")
    bad = child("import normexp", NORMEXP_AMX="yes")
    assert bad.returncode != 0 and "NORMEXP_AMX" in bad.stderr and "expected 0 or 1" in bad.stderr, bad.stderr
    on = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AMX="1", NORMEXP_AVX512_BF16="")
    vdp = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AMX="", NORMEXP_AVX512_BF16="1")
    plain = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AMX="1", NORMEXP_AVX512_BF16="0")
    assert plain.returncode != 0 and "NORMEXP_AMX=1" in plain.stderr, plain.stderr
    if cpu_has_amx():
        assert on.returncode == 0 and "'amx_bf16'" in on.stdout and "avx512_bf16_dot" not in on.stdout, on.stderr
        assert vdp.returncode == 0 and "amx_bf16" not in vdp.stdout and "'avx512_bf16_dot'" in vdp.stdout, vdp.stderr
    else:
        assert on.returncode != 0 and "NORMEXP_AMX=1" in on.stderr, on.stderr


@pytest.mark.skipif(not cpu_has_avx512_bf16(), reason="this CPU has no AVX512_BF16: its kernels are NOT tested here")
def test_switch_on_takes_the_dot_products_on_any_cpu_with_the_extension():
    on = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AVX512_BF16="1")
    assert on.returncode == 0, on.stderr
    assert "'avx512_bf16'" in on.stdout and "'avx512_bf16_dot'" in on.stdout


def test_switch_off_and_bad_value():
    off = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AVX512_BF16="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "[]"
    if "avx512" not in normexp.available_isas():
        pytest.skip("no avx512 set on this CPU: NORMEXP_AVX512_BF16 is never read")
    bad = child("import normexp", NORMEXP_AVX512_BF16="yes")
    assert bad.returncode != 0
    assert "NORMEXP_AVX512_BF16" in bad.stderr and "expected 0 or 1" in bad.stderr
    on = child("import normexp; print(normexp.isa_extensions())", NORMEXP_AVX512_BF16="1")
    if cpu_has_avx512_bf16():
        assert on.returncode == 0 and "avx512_bf16" in on.stdout, on.stderr
    else:
        assert on.returncode != 0 and "does not support AVX512_BF16" in on.stderr


# bfloat16 attention (q, k, v bfloat16: the vdpbf16ps scores) and softmax (vcvtneps2bf16 stores) in a child,
# with the extension on and off; the outputs as uint16 bits.
RUN = r"""
import json, numpy as np, ml_dtypes, normexp
bf = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(5)
out = {}
normexp_ctx = normexp.use_isa("avx512")
normexp_ctx.__enter__()
for lq, lk, d in [(1, 300, 64), (3, 77, 33), (37, 200, 128), (130, 129, 17)]:
    q = rng.standard_normal((2, lq, d), dtype=np.float32).astype(bf)
    k = rng.standard_normal((2, lk, d), dtype=np.float32).astype(bf)
    v = rng.standard_normal((2, lk, d), dtype=np.float32).astype(bf)
    for causal in (False, True):
        o = normexp.attention(q, k, v, is_causal=causal)
        out[f"att {lq} {lk} {d} {causal}"] = o.view(np.uint16).tolist()
x = (rng.standard_normal((5, 1000), dtype=np.float32) * 30).astype(bf)
out["softmax"] = normexp.softmax(x, axis=-1).view(np.uint16).tolist()
out["log_softmax"] = normexp.log_softmax(x, axis=-1).view(np.uint16).tolist()
print(json.dumps(out))
"""


@pytest.mark.skipif(not cpu_has_avx512_bf16(), reason="this CPU has no AVX512_BF16: its kernels are NOT tested here")
def test_bf16_results_with_and_without_the_extension():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    runs = {}
    for flag in ("0", "1"):
        r = child(RUN, NORMEXP_AVX512_BF16=flag)
        assert r.returncode == 0, r.stderr
        runs[flag] = json.loads(r.stdout)
    # The reductions' bfloat16 stores: the same bits (vcvtneps2bf16 with the exact rounding where it differs).
    for key in ("softmax", "log_softmax"):
        assert runs["0"][key] == runs["1"][key], key
    # Attention: the scores differ in rounding (pairwise vdpbf16ps against FMA chains), the outputs only in the
    # last bits of a few entries: within 2 bfloat16 ulps (2^-7 relative) plus a small absolute floor.
    bf = np.dtype(ml_dtypes.bfloat16)
    differ = 0
    for key in runs["0"]:
        if not key.startswith("att"):
            continue
        a = np.array(runs["0"][key], dtype=np.uint16).view(bf).astype(np.float64)
        b = np.array(runs["1"][key], dtype=np.uint16).view(bf).astype(np.float64)
        assert np.all(np.abs(a - b) <= 2.0**-7 * np.abs(a) + 2.0**-12), key
        differ += int(np.count_nonzero(a != b))
    # Negative control: the two runs did take different paths (some output bits differ).
    assert differ > 0
