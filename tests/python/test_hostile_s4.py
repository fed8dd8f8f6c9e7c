"""Regression tests for defects found by attacking the 2026-12-03 changes (AVX512_BF16 kernels, the benchmark's
16-bit / grouped-query / paged attention rows).

Each test states the defect. Those not fixed on this branch are xfail(strict=True) with the reason: they
fail today and turn into an XPASS failure (a reminder to drop the marker) once fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import normexp
from normexp.bench.cases import parse_attention_shape, parse_paged_shape
from test_isa_extensions import cpu_has_amx, cpu_has_avx512_bf16, cpu_is_amd


def child(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (NORMEXP_AVX512_BF16 is read once per process) with env applied;
    an empty value removes the variable (the library's default)."""
    e = dict(os.environ)
    for key, val in env.items():
        if val:
            e[key] = val
        else:
            e.pop(key, None)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


# ---- vdpbf16ps reads bfloat16 subnormals as zero --------------------------------------------------------
# docs/attention.md: with AVX512_BF16 the bfloat16 q x bfloat16 K scores come from vdpbf16ps, which reads
# bfloat16 subnormals as 0 (DAZ). Two consequences that no other kernel set (nor NORMEXP_AVX512_BF16=0) has:
#   1. a subnormal q entry times an infinite key entry is 0 * inf = NaN instead of -inf / +inf, so a row that
#      the exact arithmetic masks out entirely (output 0, lse -inf) comes back NaN;
#   2. a subnormal factor times a large one (|k| near 2^127) drops a product of order 1: the scores, and the
#      output, are wrong by far more than the bfloat16 rounding the page calls the term "negligible" against.
# Both on the prefill path (qk_pairs, 30 query rows) and the decode path (qk_direct_pairs, one row).
SUBNORMAL_RUN = r"""
import json, numpy as np, ml_dtypes, normexp
bf = np.dtype(ml_dtypes.bfloat16)
res = {}
with normexp.use_isa("avx512"):
    for lq in (1, 30):
        # 1: q = -2^-133 (the smallest bfloat16 subnormal), one key of +inf: the exact score is -inf.
        q = np.full((1, lq, 1), -2.0**-133, np.float32).astype(bf)
        k = np.full((1, 1, 1), np.inf, np.float32).astype(bf)
        v = np.ones((1, 1, 1), np.float32).astype(bf)
        o, lse = normexp.attention(q, k, v, scale=1.0, return_lse=True)
        res[f"inf {lq}"] = [o.astype(np.float64).ravel().tolist(), lse.astype(np.float64).ravel().tolist()]
        # 2: q = 2^-127 (subnormal) against keys +-2^127: exact scores +2 and -2, output 1 / (1 + e^-4).
        q = np.full((1, lq, 2), 2.0**-127, np.float32).astype(bf)
        k = np.array([[[2.0**127] * 2, [-2.0**127] * 2]], np.float32).astype(bf)
        v = np.array([[[1.0], [0.0]]], np.float32).astype(bf)
        o = normexp.attention(q, k, v, scale=1.0)
        res[f"big {lq}"] = o.astype(np.float64).ravel().tolist()
        # 3: the same scores with the subnormal in K: q = 2^127, keys +-2^-127 (and 40 keys so that the prefill
        # block packs K by 16 x 16 transposes as well as element by element; the other 38 keys score 0).
        q = np.full((1, lq, 32), 2.0**127 / 16, np.float32).astype(bf)
        k = np.zeros((1, 40, 32), np.float32)
        k[0, 17] = 2.0**-127
        k[0, 33] = -(2.0**-127)
        v = np.zeros((1, 40, 1), np.float32)
        v[0, 17] = 1.0
        o = normexp.attention(q, k.astype(bf), v.astype(bf), scale=1.0)
        res[f"kbig {lq}"] = o.astype(np.float64).ravel().tolist()
        # 4: every value a bfloat16 subnormal (2^-130): the output is 2^-130 whatever the weights (a unit that
        # read V's subnormals as zero, as vdpbf16ps and AMX do, would give 0).
        rng = np.random.default_rng(3)
        q = rng.standard_normal((1, lq, 64)).astype(np.float32).astype(bf)
        k = rng.standard_normal((1, 40, 64)).astype(np.float32).astype(bf)
        v = np.full((1, 40, 32), 2.0**-130, np.float32).astype(bf)
        o = normexp.attention(q, k, v)
        res[f"vsub {lq}"] = o.astype(np.float64).ravel().tolist()
print(json.dumps(res).replace("NaN", '"nan"').replace("-Infinity", '"-inf"'))
"""


def run_subnormal(flag: str, amx: str = "") -> dict:
    r = child(SUBNORMAL_RUN, NORMEXP_AVX512_BF16=flag, NORMEXP_AMX=amx)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_subnormal(res: dict) -> None:
    for lq in (1, 30):
        o, lse = res[f"inf {lq}"]
        assert o == [0.0] * lq, f"lq={lq}: a row whose only key scores -inf must give 0, got {o}"
        assert lse == ["-inf"] * lq, f"lq={lq}: lse of a fully masked row must be -inf, got {lse}"
        want = 1.0 / (1.0 + np.exp(-4.0))
        got = np.array(res[f"big {lq}"])
        assert np.all(np.abs(got - want) <= 2.0**-8 * want), f"lq={lq}: got {got}, want {want} within bfloat16 rounding"
        # Scores 2, -2 and 38 zeros: the weight of key 17.
        want = np.exp(2.0) / (np.exp(2.0) + np.exp(-2.0) + 38.0)
        got = np.array(res[f"kbig {lq}"])
        assert np.all(np.abs(got - want) <= 2.0**-8 * want), f"lq={lq} (subnormal K): got {got}, want {want}"
        got = np.array(res[f"vsub {lq}"])
        assert np.all(got == 2.0**-130), f"lq={lq} (subnormal V): got {np.unique(got)}, want 2^-130"


@pytest.mark.skipif("avx512" not in normexp.available_isas(), reason="no avx512 set on this CPU: nothing to compare")
def test_bf16_subnormal_scores_without_the_extension():
    # The control: the plain avx512 set computes both cases exactly (so the xfail below is the extension's).
    check_subnormal(run_subnormal("0"))


@pytest.mark.skipif(not cpu_has_avx512_bf16(), reason="this CPU has no AVX512_BF16: the vdpbf16ps path is NOT tested")
def test_bf16_subnormal_scores_with_the_extension():
    # The driver checks q and the pair kernels report a subnormal in K; either sends the scores to the
    # float32 kernels (cpp/src/attention.cpp, kernel_table.hpp's bf16_dot_kernels).
    check_subnormal(run_subnormal("1"))


@pytest.mark.skipif(not cpu_has_amx(), reason="this CPU (or OS) has no AMX: the tile path is NOT tested")
def test_bf16_subnormal_scores_with_amx():
    # AMX reads bfloat16 subnormals as zero too: the driver's q check, pack_kt_pairs' K report and
    # pack_v_pairs' V report send those blocks to the float32 kernels (kernel_table.hpp, bf16_dot_kernels).
    check_subnormal(run_subnormal("", "1"))


# ---- the benchmark's H/HKV heads: HKV = 0 ------------------------------------------------------------
# '32/0' parsed to heads_kv 0, the internal marker for "no /HKV given", so the run silently measured
# ungrouped attention with 32 K/V heads and labelled the row 'H32'. An explicit 0 K/V heads is now refused.
@pytest.mark.parametrize("spec", ["1x32/0x1x64x16", "1x32/00x1x64x16", "1x8/0x16x16"])
def test_bench_attention_shape_rejects_zero_kv_heads(spec):
    with pytest.raises(ValueError, match="HKV"):
        parse_attention_shape(spec)


def test_bench_paged_shape_rejects_zero_kv_heads():
    with pytest.raises(ValueError, match="HKV"):
        parse_paged_shape("2x4/0x10-20x16:3")
    # Negative control: a grouped and an ungrouped spec still parse.
    assert parse_paged_shape("2x4/2x10-20x16:3") == ((2, 4, 10, 20, 16), 2, 3)
    assert parse_attention_shape("1x32/8x1x64x16") == ((1, 32, 1, 64, 16), False, 8)
    assert parse_attention_shape("1x32x1x64x16") == ((1, 32, 1, 64, 16), False, 0)


# ---- NORMEXP_AVX512_BF16 "read at import" ---------------------------------------------------------------
# isa_extensions()'s docstring and docs/attention.md say the switch is read at import. With NORMEXP_ISA naming
# another set, the import did not read it: a bad value passed the import and surfaced later as a ValueError
# from isa_extensions() (a function without arguments), and a value set after the import still took effect.
@pytest.mark.skipif("avx512" not in normexp.available_isas(), reason="no avx512 set on this CPU: the switch is never read")
@pytest.mark.parametrize("forced", ["scalar", "avx2", ""])
def test_avx512_bf16_switch_is_read_at_import(forced):
    bad = child("import normexp", NORMEXP_ISA=forced, NORMEXP_AVX512_BF16="yes")
    assert bad.returncode != 0 and "NORMEXP_AVX512_BF16" in bad.stderr, bad.stderr
    late = child("import os, normexp\nos.environ['NORMEXP_AVX512_BF16'] = '0'\nos.environ['NORMEXP_AMX'] = '0'\n"
                 "print(normexp.isa_extensions())", NORMEXP_ISA=forced, NORMEXP_AVX512_BF16="", NORMEXP_AMX="")
    assert late.returncode == 0, late.stderr
    # The default (the switch unset at import): the stores, and the scores by AMX where the CPU has it, else
    # by vdpbf16ps on AMD (docs/architecture.md).
    want = ["avx512_bf16"] if cpu_has_avx512_bf16() else []
    if want and (cpu_has_amx() or cpu_is_amd()):
        want.append("amx_bf16" if cpu_has_amx() else "avx512_bf16_dot")
    assert json.loads(late.stdout.replace("'", '"')) == want


# ---- bench/*.py --help ------------------------------------------------------------------------------------
# argparse %-formats help strings: bench/paged_quick.py's "--no-probe" help "(no % column)" made
# `python bench/paged_quick.py --help` die with "TypeError: %c requires int or char". Every bench script's
# --help must print its usage and exit 0.
BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "bench")


@pytest.mark.parametrize("script", sorted(f for f in os.listdir(BENCH) if f.endswith(".py")))
def test_bench_script_help(script):
    r = subprocess.run([sys.executable, os.path.join(BENCH, script), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout


# ---- use_isa("avx512_bf16") --------------------------------------------------------------------------------
# The extension's name is listed by isa_extensions() next to available_isas(), so it is a natural thing to
# pass to use_isa; the answer was "'avx512_bf16' is not available on this CPU" on a CPU that has it. It now
# says that it is an extension of the avx512 set and how to switch it.
@pytest.mark.parametrize("name", ["avx512_bf16", "AVX512_BF16", "avx512bf16", "avx512_bf16_dot", "avx512bf16dot", "AVX512-BF16-DOT",
                                  "amx_bf16", "AMX-BF16"])
def test_use_isa_extension_name_is_explained(name):
    with pytest.raises(ValueError, match=r"extension inside the 'avx512' set.*NORMEXP_(AVX512_BF16|AMX)"):
        with normexp.use_isa(name):
            pass


def test_use_isa_unknown_name_message_unchanged():
    # Negative control: other unknown names keep the generic message.
    with pytest.raises(ValueError, match="is not available on this CPU"):
        with normexp.use_isa("avx512_fp16"):
            pass


# ---- range messages for 16-bit q -------------------------------------------------------------------------
# scale, softcap, ALiBi slopes and a float mask are checked against the kernels' dtype, float32 for a 16-bit
# q; the messages called float32 "the dtype of q" when q was bfloat16 / float16 (and told to clip the mask to
# "the range of q's dtype", 65504 for float16, where float32's range is what counts).
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("what", ["scale", "softcap", "alibi_slopes", "mask"])
def test_attention_range_messages_name_the_kernels_dtype(dtype, what):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    q = np.ones((2, 3, 4), dt)
    kw = {"scale": {"scale": 1e39}, "softcap": {"softcap": 1e-39}, "alibi_slopes": {"alibi_slopes": [3e38, 1.0]},
          "mask": {"mask": np.full((3, 3), 1e39)}}[what]
    with pytest.raises(ValueError) as e:
        normexp.attention(q, q, q, **kw)
    msg = str(e.value)
    assert "float32" in msg, msg
    if dt.itemsize == 2:  # float32 q (the control) was always described right
        assert "the dtype of q" not in msg and "float32 for 16-bit inputs" in msg, msg
